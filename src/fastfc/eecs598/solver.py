"""The course's eecs598.solver: Solver, minibatch training of a classifier
whose parameters are tensors.

    solver = Solver(model, data, update_rule=adam, optim_config={'learning_rate': 1e-3},
                    lr_decay=0.95, num_epochs=10, batch_size=100, print_every=100,
                    device='cpu')
    solver.train()   # model.params ends as the best-validation parameters

The model is any course-style model (params a dict of tensors, loss(X,
y=None)); data holds the tensors X_train, y_train, X_val, y_val (on the
CPU, in any layout). The behaviour is the course's: batches of batch_size
samples without replacement from torch.randperm, max(N // batch_size, 1)
iterations per epoch, every config's learning_rate multiplied by lr_decay
after each epoch, accuracies checked after the first iteration, each
epoch and the last iteration (the training one on num_train_samples
samples), the course's printed lines, train(time_limit=None,
return_best_params=True).

Differences, on purpose:
- device must be 'cpu' (a ValueError otherwise: fastfc runs on the CPU);
- with a fastfc.eecs598 model and one of fastfc.eecs598's update rules,
  a step runs on the model's no-copy path: the batch is gathered into
  buffers kept between steps and every parameter is updated in one fused
  C call (optim_configs still hold the rule's state tensors); any other
  model or rule takes the course's loop, model.params[p] = next_w;
- checkpoint_name writes "<name>_epoch_<e>.npz" (the parameters) and
  ".json" (the rest of the course's checkpoint), not a pickle;
- arguments are checked up front, and best_params are restored at the end
  only if some validation accuracy was above 0 (the course would set
  model.params = {}).
"""
import json
import time


from ..cs231n.solver import _count, _plain
from ..io import save_arrays, write_atomically
from ..solver import _BatchBuffers
from . import _rules
from ._tensors import check_device, data_array, torch

__all__ = ["Solver"]

# The rules whose steps fuse into one C call: rule -> its name in fastfc.optim.
_FUSED_RULES = {getattr(_rules, name): name for name in ("sgd", "sgd_momentum", "rmsprop", "adam")}


class Solver:
    """Trains a classification model by minibatch gradient descent.

    Inputs: model, data (dict with 'X_train', 'y_train', 'X_val', 'y_val'
    tensors), and the optional keyword arguments:
    - update_rule: rule(w, dw, config) -> (next_w, config); default Solver.sgd
    - optim_config: hyperparameters passed to the rule (each parameter gets
      its own copy), e.g. {'learning_rate': 1e-3}
    - lr_decay: after each epoch every config's learning_rate is multiplied by this
    - batch_size (100), num_epochs (10)
    - num_train_samples: samples used for the training accuracy (1000; None: all)
    - num_val_samples: samples used for the validation accuracy (None: all)
    - device: 'cpu'
    - checkpoint_name: None, or a path prefix for the checkpoints written at
      each accuracy check
    - print_every: with verbose, print the loss every this many iterations (10)
    - print_acc_every: print the accuracies every this many epochs (1)
    - verbose: print progress (True)
    An unknown keyword is a ValueError, as in the course.

    Attributes after train(): loss_history, train_acc_history,
    val_acc_history, best_val_acc, best_params, epoch, optim_configs.
    """

    sgd = staticmethod(_rules.sgd)

    def __init__(self, model, data, **kwargs):
        self.model = model
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        for key in ("X_train", "y_train", "X_val", "y_val"):
            if key not in data:
                raise ValueError(f"data is missing {key!r} (it needs X_train, y_train, X_val, y_val)")
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]
        for split in ("train", "val"):
            X, y = self._split(split)
            if X.shape[0] == 0 or X.shape[0] != y.shape[0]:
                raise ValueError(f"X_{split} and y_{split} must hold the same number (>= 1) of "
                                 f"samples, got {X.shape[0]} and {y.shape[0]}")

        self.update_rule = kwargs.pop("update_rule", self.sgd)
        if not callable(self.update_rule):
            raise TypeError(f"update_rule must be a function rule(w, dw, config), got "
                            f"{self.update_rule!r}")
        self.optim_config = kwargs.pop("optim_config", {})
        if not isinstance(self.optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = _count("batch_size", kwargs.pop("batch_size", 100), 1)
        self.num_epochs = _count("num_epochs", kwargs.pop("num_epochs", 10), 0)
        self.num_train_samples = _count("num_train_samples", kwargs.pop("num_train_samples", 1000),
                                        1, True)
        self.num_val_samples = _count("num_val_samples", kwargs.pop("num_val_samples", None), 1,
                                      True)
        self.device = kwargs.pop("device", "cpu")
        check_device(self.device)
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = _count("print_every", kwargs.pop("print_every", 10), 1)
        self.print_acc_every = _count("print_acc_every", kwargs.pop("print_acc_every", 1), 1)
        self.verbose = kwargs.pop("verbose", True)
        if kwargs:
            extra = ", ".join('"%s"' % k for k in kwargs)
            raise ValueError("Unrecognized arguments %s" % extra)
        self._reset()

    def _split(self, split):
        """(X, y) of a split as NumPy views, checked to be CPU tensors."""
        return (data_array(getattr(self, f"X_{split}"), f"data['X_{split}']"),
                data_array(getattr(self, f"y_{split}"), f"data['y_{split}']"))

    def _reset(self):
        """Sets up the book-keeping of a training run (called by __init__)."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}
        # A fastfc.eecs598 model with one of its rules: the fused step on the
        # model's arrays and batch buffers (allocated at the first step).
        fused = (_FUSED_RULES.get(self.update_rule) if hasattr(self.model, "_loss_into_grads")
                 and hasattr(self.model, "named_parameters") else None)
        self._fused_rule = fused
        self._parameters = self.model.named_parameters() if fused else None
        self._batches = None

    def _step(self):
        """One gradient update on a minibatch (called by train())."""
        num_train = self.X_train.shape[0]
        batch_mask = torch.randperm(num_train)[:self.batch_size]
        if self._fused_rule is None:
            loss, grads = self.model.loss(self.X_train[batch_mask], self.y_train[batch_mask])
            self.loss_history.append(loss.item())
            with torch.no_grad():
                for p, w in self.model.params.items():
                    next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
                    self.model.params[p] = next_w
                    self.optim_configs[p] = next_config
            return
        if self._batches is None:
            X, y = self._split("train")
            self._batches = _BatchBuffers(X, y, self.batch_size, self.model.dtype)
        X_batch, y_batch = self._batches.gather(batch_mask.numpy())
        self.loss_history.append(self.model._loss_into_grads(X_batch, y_batch))
        names = [name for name, _ in self._parameters]
        _rules.update_tensors(self._fused_rule, [p.data for _, p in self._parameters],
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
        save_arrays(base + ".npz", {name: w.numpy() for name, w in self.model.params.items()})
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
        - X: (N, d_1, ..., d_k) tensor of samples; y: (N,) tensor of labels
        - num_samples: if not None and below N, the accuracy of num_samples
          samples drawn without replacement (torch.randperm, as the course)
        - batch_size: samples per forward pass

        Returns the accuracy, a float.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = torch.randperm(N)[:num_samples]
            N = num_samples
            X, y = X[mask], y[mask]
        batch_size = _count("batch_size", batch_size, 1)
        y_pred = torch.cat([torch.argmax(self.model.loss(X[start:start + batch_size]), dim=1)
                            for start in range(0, N, batch_size)])
        return (y_pred == y).to(torch.float).mean().item()

    def train(self, time_limit=None, return_best_params=True):
        """Runs the optimization.

        Inputs:
        - time_limit: None, or seconds: training stops before an iteration
          that would end past it (judged by the last iteration's time)
        - return_best_params: end with model.params set to the parameters of
          the best validation accuracy (else keep the last ones)
        """
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        prev_time = start_time = time.time()

        for t in range(num_iterations):
            cur_time = time.time()
            if time_limit is not None and t > 0:
                next_time = cur_time - prev_time
                if cur_time - start_time + next_time > time_limit:
                    print("(Time %.2f sec; Iteration %d / %d) loss: %f"
                          % (cur_time - start_time, t, num_iterations, self.loss_history[-1]))
                    print("End of training; next iteration will exceed the time limit.")
                    break
            prev_time = cur_time

            self._step()
            if self.verbose and t % self.print_every == 0:
                print("(Time %.2f sec; Iteration %d / %d) loss: %f"
                      % (time.time() - start_time, t + 1, num_iterations, self.loss_history[-1]))

            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for config in self.optim_configs.values():
                    if "learning_rate" in config:
                        config["learning_rate"] *= self.lr_decay
            if t == 0 or t == num_iterations - 1 or epoch_end:
                self._check()

        if return_best_params and self.best_params:
            self.model.params = self.best_params

    def _check(self):
        """The accuracy check: histories, checkpoint, progress line, best parameters."""
        train_acc = self.check_accuracy(self.X_train, self.y_train,
                                        num_samples=self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        self._save_checkpoint()
        if self.verbose and self.epoch % self.print_acc_every == 0:
            print("(Epoch %d / %d) train acc: %f; val_acc: %f"
                  % (self.epoch, self.num_epochs, train_acc, val_acc))
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params = {k: v.clone() for k, v in self.model.params.items()}
