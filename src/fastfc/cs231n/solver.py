"""The course's solver.py: Solver, minibatch training of a classifier with
the update rules of fastfc.cs231n.optim.

    solver = Solver(model, data, update_rule='sgd',
                    optim_config={'learning_rate': 1e-3}, lr_decay=0.95,
                    num_epochs=10, batch_size=100, print_every=100)
    solver.train()      # model.params ends as the best-validation parameters

The model is any course-style model: `model.params` a dict of arrays and
`model.loss(X, y=None)` returning scores (y None) or (loss, grads). The
behaviour is the course's (2017 and 2018+ alike): batches of batch_size
drawn with replacement by np.random.choice, max(N // batch_size, 1)
iterations per epoch, the learning rate of every config multiplied by
lr_decay after each epoch, accuracies checked after the first iteration
(the "epoch 0" entry), after each epoch and after the last iteration, the
training accuracy on num_train_samples samples drawn with replacement, the
course's printed lines, and model.params = best_params at the end.

Differences, on purpose:
- checkpoint_name writes "<name>_epoch_<e>.npz" (the parameters, and a
  fastfc model's batch-norm running statistics, a plain .npz that
  model.load reads) and "<name>_epoch_<e>.json" (the rest of the course's
  checkpoint: update rule, hyperparameters, histories) instead of pickling
  the model.
- With a fastfc model (fastfc.cs231n.classifiers, fastfc.models) and one of
  the rules of fastfc.cs231n.optim, a step runs on the model's no-copy path
  and updates every parameter in one fused C call (the configs in
  optim_configs still hold the rule's state arrays, updated in place);
  any other model or a callable rule takes the course's loop,
  model.params[p] = next_w.
- Arguments are checked up front (a ValueError naming the one at fault;
  an unknown keyword is Python's TypeError), lr_decay leaves alone a
  config without a learning_rate (a callable rule's; the course raises a
  KeyError), and the end of training restores best_params only if some
  validation accuracy was above 0 (the course would set model.params = {}).
"""
import json

import numpy as np

from .. import optim as _fastfc_optim
from .._validation import check_int, check_real
from ..io import save_arrays, write_atomically
from ..models import Sequential
from ..solver import _BatchBuffers
from . import optim

__all__ = ["Solver"]

# The rules a fastfc model's step runs in one fused call: rule -> its name
# in fastfc.optim.COURSE_RULES.
_FUSED_RULES = {getattr(optim, name): name for name in _fastfc_optim.COURSE_RULES}


def _count(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    return check_int(name, value, low=minimum)


def _plain(value):
    """A JSON-able stand-in for what json cannot write (NumPy numbers and arrays)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


class Solver:
    """Trains a classification model by minibatch gradient descent.

    Inputs:
    - model: a course-style model (params dict, loss(X, y=None))
    - data: dict with 'X_train', 'y_train', 'X_val', 'y_val'
    - update_rule: the name of a rule in fastfc.cs231n.optim ('sgd',
      'sgd_momentum', 'rmsprop', 'adam'), or a callable
      rule(w, dw, config) -> (next_w, config)
    - optim_config: hyperparameters passed to the rule (each parameter gets
      its own copy of the dict), e.g. {'learning_rate': 1e-3}
    - lr_decay: after each epoch, every config's learning_rate is multiplied by this
    - batch_size: samples per iteration (drawn with replacement)
    - num_epochs: epochs to train
    - num_train_samples: samples used for the training accuracy (None: all)
    - num_val_samples: samples used for the validation accuracy (None: all)
    - checkpoint_name: None, or a path prefix for the checkpoints written
      at each accuracy check (see the module docstring)
    - print_every: with verbose, print the loss every this many iterations
    - verbose: print progress

    Attributes after train(): loss_history (per iteration),
    train_acc_history and val_acc_history (per check), best_val_acc,
    best_params, epoch, optim_configs (per parameter).
    """

    def __init__(self, model, data, *, update_rule="sgd", optim_config=None, lr_decay=1.0,
                 batch_size=100, num_epochs=10, num_train_samples=1000, num_val_samples=None,
                 checkpoint_name=None, print_every=10, verbose=True):
        self.model = model
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        for key in ("X_train", "y_train", "X_val", "y_val"):
            if key not in data:
                raise ValueError(f"data is missing {key!r} (it needs X_train, y_train, X_val, y_val)")
        self.X_train, self.y_train = np.asarray(data["X_train"]), np.asarray(data["y_train"])
        self.X_val, self.y_val = np.asarray(data["X_val"]), np.asarray(data["y_val"])
        for split in ("train", "val"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if X.ndim == 0 or len(X) == 0 or y.shape != (len(X),):
                raise ValueError(f"X_{split} and y_{split} must hold the same number (>= 1) of "
                                 f"samples, got {len(X)} and {len(y)}")

        if isinstance(update_rule, str):
            if update_rule not in optim.__all__:
                raise ValueError(f"Invalid update_rule {update_rule!r}: choose one of "
                                 f"{', '.join(optim.__all__)} or pass a callable")
            update_rule = getattr(optim, update_rule)
        elif not callable(update_rule):
            raise TypeError(f"update_rule must be a name or a callable, got {update_rule!r}")
        self.update_rule = update_rule
        if optim_config is None:
            optim_config = {}
        if not isinstance(optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(optim_config).__name__}")
        self.optim_config = optim_config
        self.lr_decay = check_real("lr_decay", lr_decay, finite=False)
        self.batch_size = _count("batch_size", batch_size, 1)
        self.num_epochs = _count("num_epochs", num_epochs, 0)
        self.num_train_samples = _count("num_train_samples", num_train_samples, 1, True)
        self.num_val_samples = _count("num_val_samples", num_val_samples, 1, True)
        self.checkpoint_name = checkpoint_name
        self.print_every = _count("print_every", print_every, 1)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        """Sets up the book-keeping of a training run (called by __init__)."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}
        # A fastfc model with a fastfc.cs231n.optim rule: the fused step
        # (its Parameters, and batch buffers of the model's dtype, allocated
        # at the first step).
        fused = (_FUSED_RULES.get(self.update_rule) if hasattr(self.model, "_loss_into_grads")
                 and hasattr(self.model, "named_parameters") else None)
        self._fused_rule = fused
        self._parameters = self.model.named_parameters() if fused else None
        self._batches = None

    def _step(self):
        """One gradient update on a minibatch (called by train())."""
        num_train = self.X_train.shape[0]
        batch_mask = np.random.choice(num_train, self.batch_size)
        if self._fused_rule is None:
            X_batch, y_batch = self.X_train[batch_mask], self.y_train[batch_mask]
            loss, grads = self.model.loss(X_batch, y_batch)
            self.loss_history.append(loss)
            for p, w in self.model.params.items():
                next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
                self.model.params[p] = next_w
                self.optim_configs[p] = next_config
            return
        if self._batches is None:
            self._batches = _BatchBuffers(self.X_train, self.y_train, self.batch_size,
                                          self.model.dtype)
        X_batch, y_batch = self._batches.gather(batch_mask)
        self.loss_history.append(self.model._loss_into_grads(X_batch, y_batch))
        names = [name for name, _ in self._parameters]
        _fastfc_optim.course_step(self._fused_rule, [p.data for _, p in self._parameters],
                                  [p.grad for _, p in self._parameters],
                                  [self.optim_configs[name] for name in names], names)

    def _save_checkpoint(self):
        """Writes <checkpoint_name>_epoch_<epoch>.npz (the parameters) and
        .json (the rest), when checkpoint_name is set."""
        if self.checkpoint_name is None:
            return
        base = "%s_epoch_%d" % (self.checkpoint_name, self.epoch)
        if self.verbose:
            print('Saving checkpoint to "%s.npz"' % base)
        if isinstance(self.model, Sequential):  # with batch norm's running statistics
            self.model.save(base + ".npz")
        else:
            save_arrays(base + ".npz", {name: np.asarray(w) for name, w in self.model.params.items()})
        rule = self.update_rule
        record = {
            "model": type(self.model).__name__,
            "update_rule": getattr(rule, "__qualname__", repr(rule)),
            "lr_decay": self.lr_decay,
            "optim_config": self.optim_config,
            "batch_size": self.batch_size,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "epoch": self.epoch,
            "loss_history": self.loss_history,
            "train_acc_history": self.train_acc_history,
            "val_acc_history": self.val_acc_history,
        }
        text = json.dumps(record, indent=1, default=_plain)
        write_atomically(base + ".json", lambda f: f.write(text.encode()))

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of X classified as y by the model.

        Inputs:
        - X: (N, d_1, ..., d_k) samples; y: (N,) labels
        - num_samples: if not None and below N, the accuracy of num_samples
          samples drawn with replacement (np.random.choice, as the course)
        - batch_size: samples per forward pass

        Returns the accuracy, a float.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = np.random.choice(N, num_samples)
            N = num_samples
            X, y = X[mask], y[mask]
        batch_size = _count("batch_size", batch_size, 1)
        y_pred = [np.argmax(self.model.loss(X[start:start + batch_size]), axis=1)
                  for start in range(0, N, batch_size)]
        return np.mean(np.hstack(y_pred) == y)

    def train(self):
        """Runs the optimization; model.params ends as the parameters of the
        best validation accuracy."""
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch

        for t in range(num_iterations):
            self._step()
            if self.verbose and t % self.print_every == 0:
                print("(Iteration %d / %d) loss: %f" % (t + 1, num_iterations,
                                                       self.loss_history[-1]))
            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for config in self.optim_configs.values():
                    if "learning_rate" in config:
                        config["learning_rate"] *= self.lr_decay
            if t == 0 or t == num_iterations - 1 or epoch_end:
                self._check()
        if self.best_params:
            self.model.params = self.best_params

    def _check(self):
        """The accuracy check after an epoch (and after the first and last
        iterations): histories, checkpoint, progress line, best parameters."""
        train_acc = self.check_accuracy(self.X_train, self.y_train,
                                        num_samples=self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        self._save_checkpoint()
        if self.verbose:
            print("(Epoch %d / %d) train acc: %f; val_acc: %f"
                  % (self.epoch, self.num_epochs, train_acc, val_acc))
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params = {k: np.array(v, copy=True) for k, v in self.model.params.items()}
