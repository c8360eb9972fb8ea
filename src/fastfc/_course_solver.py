"""CourseSolver: what the course Solvers of fastfc.cs231n (NumPy arrays) and
fastfc.eecs598 (torch tensors) share: the training loop, the epoch and
iteration book-keeping, the learning-rate decay, the accuracy checks with
best-parameter tracking, the two-path step (the course's loop over
model.params, or a fastfc model's fused update) and the checkpoint files.

A subclass sets up its arguments in __init__ (their defaults and checks
differ between the courses) and supplies the few places where arrays and
tensors part: how samples are drawn, how a loss becomes a number, how
parameters are copied and saved, how accuracy is counted.
"""
import contextlib
import json
import time

import numpy as np

from ._validation import check_int
from .io import write_atomically
from .solver import _BatchBuffers


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


def _check_optim_config(optim_config):
    if not isinstance(optim_config, dict):
        raise TypeError(f"optim_config must be a dict, got {type(optim_config).__name__}")
    return optim_config


class CourseSolver:
    """The shared part of the course Solvers (see the module docstring).

    A subclass's __init__ sets model, the data (through _set_data),
    update_rule, optim_config (checked by _check_optim_config), lr_decay,
    the sizes (through _set_sizes), checkpoint_name, print_every and
    verbose, then calls _reset(); its train() calls _train(). It defines
    the hooks below.
    """

    # Hooks a subclass defines: update rule -> its name in
    # fastfc.optim.COURSE_RULES; the static method update(rule, ws, dws,
    # configs, names) that steps those rules in place; the loss line,
    # %-formatted with iteration, iterations, seconds and loss.
    _fused_rules = {}
    _fused_update = None
    _loss_line = None
    print_acc_every = 1  # print the accuracies every this many epochs

    def _split(self, split):
        """(X, y) of the split 'train' or 'val' as NumPy arrays."""
        raise NotImplementedError

    @staticmethod
    def _holds_samples(X, y):
        """Whether X and y (NumPy arrays of a split) hold the same number (>= 1) of samples."""
        raise NotImplementedError

    @staticmethod
    def _sample(n, k):
        """k indices in range(n), drawn as the course's solver draws them."""
        raise NotImplementedError

    @staticmethod
    def _loss_value(loss):
        """The number of what model.loss returned as the loss."""
        raise NotImplementedError

    @staticmethod
    def _index_array(index):
        """A sample index as a NumPy array."""
        raise NotImplementedError

    @staticmethod
    def _copy(value):
        """A copy of a parameter (for best_params)."""
        raise NotImplementedError

    @staticmethod
    def _fraction_correct(score_batches, y):
        """The fraction of the samples whose scores (an iterable of (batch, C)
        scores) are highest for their label in y, a float."""
        raise NotImplementedError

    def _save_parameters(self, path):
        """Writes the model's parameters to the .npz file path."""
        raise NotImplementedError

    def _no_grad(self):
        """The context the course's loop updates model.params in."""
        return contextlib.nullcontext()

    def _set_data(self, data, convert):
        """Checks data and stores convert() of its four entries as X_train, y_train, X_val, y_val."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        for key in ("X_train", "y_train", "X_val", "y_val"):
            if key not in data:
                raise ValueError(f"data is missing {key!r} (it needs X_train, y_train, X_val, y_val)")
        self.X_train, self.y_train = convert(data["X_train"]), convert(data["y_train"])
        self.X_val, self.y_val = convert(data["X_val"]), convert(data["y_val"])
        for split in ("train", "val"):
            X, y = self._split(split)
            if not self._holds_samples(X, y):
                raise ValueError(f"X_{split} and y_{split} must hold the same number (>= 1) of "
                                 f"samples, got {len(X)} and {len(y)}")

    def _set_sizes(self, batch_size, num_epochs, num_train_samples, num_val_samples):
        """Checks and stores the sizes."""
        self.batch_size = _count("batch_size", batch_size, 1)
        self.num_epochs = _count("num_epochs", num_epochs, 0)
        self.num_train_samples = _count("num_train_samples", num_train_samples, 1, True)
        self.num_val_samples = _count("num_val_samples", num_val_samples, 1, True)

    def _reset(self):
        """Sets up the book-keeping of a training run (called by __init__)."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}
        # A fastfc model with one of the course's rules: the fused step on the
        # model's Parameters, and batch buffers of the model's dtype,
        # allocated at the first step.
        fused = (self._fused_rules.get(self.update_rule)
                 if hasattr(self.model, "_loss_into_grads")
                 and hasattr(self.model, "named_parameters") else None)
        self._fused_rule = fused
        self._parameters = self.model.named_parameters() if fused else None
        self._batches = None

    def _step(self):
        """One gradient update on a minibatch (called by train())."""
        num_train = self.X_train.shape[0]
        batch_mask = self._sample(num_train, self.batch_size)
        if self._fused_rule is None:
            X_batch, y_batch = self.X_train[batch_mask], self.y_train[batch_mask]
            loss, grads = self.model.loss(X_batch, y_batch)
            self.loss_history.append(self._loss_value(loss))
            with self._no_grad():
                for p, w in self.model.params.items():
                    next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
                    self.model.params[p] = next_w
                    self.optim_configs[p] = next_config
            return
        if self._batches is None:
            X, y = self._split("train")
            self._batches = _BatchBuffers(X, y, self.batch_size, self.model.dtype)
        X_batch, y_batch = self._batches.gather(self._index_array(batch_mask))
        self.loss_history.append(self.model._loss_into_grads(X_batch, y_batch))
        names = [name for name, _ in self._parameters]
        self._fused_update(self._fused_rule, [p.data for _, p in self._parameters],
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
        self._save_parameters(base + ".npz")
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
        - X: (N, d_1, ..., d_k) samples; y: (N,) labels (arrays, or tensors
          for fastfc.eecs598)
        - num_samples: if not None and below N, the accuracy of num_samples
          samples drawn as the course draws them (cs231n: np.random.choice,
          with replacement; eecs598: torch.randperm, without)
        - batch_size: samples per forward pass

        Returns the accuracy, a float.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = self._sample(N, num_samples)
            N = num_samples
            X, y = X[mask], y[mask]
        batch_size = _count("batch_size", batch_size, 1)
        return self._fraction_correct((self.model.loss(X[start:start + batch_size])
                                       for start in range(0, N, batch_size)), y)

    def _train(self, time_limit=None, return_best_params=True):
        """The training loop of train(); the arguments are eecs598's."""
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        prev_time = start_time = time.time()

        for t in range(num_iterations):
            cur_time = time.time()
            if time_limit is not None and t > 0:
                next_time = cur_time - prev_time
                if cur_time - start_time + next_time > time_limit:
                    self._print_loss(t, num_iterations, cur_time - start_time)
                    print("End of training; next iteration will exceed the time limit.")
                    break
            prev_time = cur_time

            self._step()
            if self.verbose and t % self.print_every == 0:
                self._print_loss(t + 1, num_iterations, time.time() - start_time)

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

    def _print_loss(self, iteration, iterations, seconds):
        print(self._loss_line % {"iteration": iteration, "iterations": iterations,
                                 "seconds": seconds, "loss": self.loss_history[-1]})

    def _check(self):
        """The accuracy check after an epoch (and after the first and last
        iterations): histories, checkpoint, progress line, best parameters."""
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
            self.best_params = {k: self._copy(v) for k, v in self.model.params.items()}
