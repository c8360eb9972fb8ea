"""The training loop: Solver (the course's API, and more) and evaluate.

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=64, num_epochs=10, seed=0)
    solver.train()        # the model ends holding its best-validation parameters

The model is any course-style model (a `params` dict and loss(X, y=None)),
e.g. a fastfc.models.Sequential with a loss, FullyConnectedNet or ConvNet.
"""
import contextlib
import inspect
import json
import math
import os
import signal
import threading
import time

import numpy as np

from . import functional as F
from . import optim
from .layers import Dropout, _generator
from ._progress import progress_bar, wants_bar
from ._validation import check_int, check_real, check_unmasked
from .io import save_arrays
from .models import Sequential, check_batch_size, check_samples, takes_targets
from .parameter import Parameter

__all__ = ["Solver", "evaluate"]

# The course's config keys, as torch.optim names them.
COURSE_KEYS = {"learning_rate": "lr", "epsilon": "eps", "decay_rate": "alpha"}


def _batch_loss_fn(model):
    """(scores, y) -> loss of a batch: the model's own loss layer, else softmax."""
    loss_fn = getattr(model, "loss_fn", None)
    if loss_fn is not None:
        return loss_fn.forward
    return lambda scores, y: F.softmax_loss(scores, y)[0]


def evaluate(model, X, y, batch_size=100):
    """Average loss (without regularisation) and accuracy of a classifier.

    Inputs:
    - model: a course-style model (loss(X) returns scores (N, C))
    - X: (N, ...) samples; y: (N,) integer labels, or for an MSELoss model
      target rows (N, C) (one-hot: the accuracy counts their argmax as the
      class; labels given to such a model are compared as one-hot rows)
    - batch_size: samples per forward pass

    Returns (avg_loss, accuracy), both floats.
    """
    targets = takes_targets(model)
    X, y = check_samples(X, y, targets=targets)
    batch_size = check_batch_size(batch_size)
    batch_loss = _batch_loss_fn(model)
    total_loss, correct = 0.0, 0
    for start in range(0, len(X), batch_size):
        yb = y[start:start + batch_size]
        scores = model.loss(X[start:start + batch_size])
        if targets:  # target rows in the scores' type; labels as their one-hot rows
            rows = np.eye(scores.shape[1], dtype=scores.dtype)[yb] if yb.ndim == 1 \
                else yb.astype(scores.dtype, copy=False)
            total_loss += batch_loss(scores, rows) * len(yb)
        else:
            total_loss += batch_loss(scores, yb) * len(yb)
        labels = yb if yb.ndim == 1 else np.argmax(yb, axis=1)
        correct += int(np.count_nonzero(np.argmax(scores, axis=1) == labels))
    return total_loss / len(X), correct / len(X)


def take_rows(X, index, out=None):
    """The rows index (valid indices, e.g. part of a permutation) of X, into
    out when given (a new array otherwise). A C-contiguous float32/float64 X
    goes through F.gather_rows, whose threads wait on the scattered rows'
    memory together (twice np.take's speed at batch 64 of 784 floats, 2
    threads); any other X through np.take, which copies nothing else. Its
    mode "clip" because the default "raise" first copies into a temporary of
    the batch's size (so that a bad index leaves out untouched)."""
    if (X.dtype in _GATHER_DTYPES and X.flags.c_contiguous and X.flags.aligned and X.ndim
            and X.dtype.isnative):
        return F.gather_rows(X, index, out=out)
    return np.take(X, index, axis=0, out=out, mode="clip")


_GATHER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _BatchBuffers:
    """Buffers for the training batches, allocated once per training run.

    Inputs:
    - X: (N, ...) training samples; y: (N,) labels
    - batch_size: the most rows of a batch
    - dtype: the float type the model computes in (a Sequential's dtype), or
      None to keep X's. When it differs from X's, the rows are cast into a
      second buffer of that type, so that the model's forward does not make
      a fresh cast copy of every batch.
    """

    def __init__(self, X, y, batch_size, dtype=None):
        self.X, self.y = X, y
        self.gathered = np.empty((batch_size,) + X.shape[1:], dtype=X.dtype)
        self.cast = (self.gathered if dtype is None or np.dtype(dtype) == X.dtype
                     else np.empty(self.gathered.shape, dtype=dtype))
        self.labels = np.empty((batch_size,) + y.shape[1:], dtype=y.dtype)

    def gather(self, index):
        """The rows index (valid indices, e.g. part of a permutation) of X and y.

        Returns views (X_batch (len(index), ...), y_batch (len(index),)) of
        the buffers, overwritten by the next gather. Allocates nothing.
        """
        rows = len(index)
        X_batch, y_batch = self.gathered[:rows], self.labels[:rows]
        take_rows(self.X, index, out=X_batch)
        take_rows(self.y, index, out=y_batch)
        if self.cast is not self.gathered:
            X_batch = self.cast[:rows]
            np.copyto(X_batch, self.gathered[:rows], casting="unsafe")  # as astype would
        return X_batch, y_batch


class _Interrupt:
    """While active (main thread only), the first Ctrl-C only asks the loop to
    stop at the next batch boundary; a second one interrupts at once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def active(self):
        self.requested = False
        install = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if install:
            signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            if install:
                signal.signal(signal.SIGINT, signal.default_int_handler)


class Solver:
    """Trains a classifier with minibatch gradient descent.

    Inputs:
    - model: course-style model: `params` dict and loss(X, y=None); Sequential
      models also give their Parameters and param groups
    - data: dict with X_train, y_train, X_val, y_val: integer labels (N,), or
      for a model with an MSELoss target rows (N, C), e.g. one-hot (cast to
      the model's float type; accuracy takes their argmax as the class)
    - update_rule: "sgd", "sgd_momentum", "rmsprop", "adam", "adamw", "adagrad"
      (fastfc.optim's fused optimizers, torch.optim's formulas), or a
      course-style callable rule(w, dw, config) -> (next_w, config)
    - optim_config: hyperparameters: "learning_rate" (or "lr") and the rule's
      others, under the course's names (epsilon, decay_rate, beta1, beta2) or
      torch's (eps, alpha, betas, momentum, ...)
    - lr_decay: the learning rate is multiplied by this after each epoch
    - batch_size, num_epochs
    - num_train_samples: training samples used for the train accuracy of each epoch
    - num_val_samples: validation samples used each epoch (None: all)
    - print_every: with verbose, print the loss every this many iterations
    - verbose: print progress (a tqdm bar when stderr is a terminal or in a
      Jupyter notebook, never into a file or pipe; epoch lines unless
      on_epoch_end is given); False: the Solver prints nothing
    - checkpoint_name: path of the file that holds the best parameters,
      rewritten when they improve and on Ctrl-C (not before the first epoch
      has ended): safetensors ('.safetensors' appended unless the name ends
      in it or in '.npz', which writes an .npz), as Sequential.save writes
    - seed: int or np.random.Generator for shuffling, subsampling and augment;
      None: a generator seeded from NumPy's global one (as fastfc.layers do),
      so np.random.seed makes an unseeded run reproducible
    - patience: stop after this many epochs without a better val accuracy (None: never)
    - weight_decay: L2 decay of the weights (never the biases)
    - augment: callable(X_batch, rng) -> X_batch applied to each training batch
    - on_epoch_end: callable(solver, record) after each epoch; record has epoch,
      train_loss, train_acc, val_loss, val_acc, lr, seconds (the epoch's wall
      time) and samples_per_s (training throughput)

    Attributes: loss_history (per iteration), train_acc_history and
    val_acc_history (per epoch), epoch_history (the records), best_val_acc,
    best_epoch (whose parameters are kept; None before the first epoch ends),
    best_params, interrupted, epoch. fastfc.plotting.history_figure(solver)
    draws them.
    """

    def __init__(self, model, data, update_rule="adam", optim_config=None, lr_decay=1.0,
                 batch_size=100, num_epochs=10, num_train_samples=1000, num_val_samples=None,
                 print_every=10, verbose=True, checkpoint_name=None, seed=None, patience=None,
                 weight_decay=0.0, augment=None, on_epoch_end=None):
        self.model = model
        for key in ("X_train", "y_train", "X_val", "y_val"):
            if key not in data:
                raise ValueError(f"data is missing {key!r} (it needs X_train, y_train, X_val, y_val)")
        self._targets = takes_targets(model)
        self.X_train, self.y_train = self._checked_split(data, "train")
        self.X_val, self.y_val = self._checked_split(data, "val")
        self.batch_size = check_batch_size(batch_size)
        self.num_epochs = check_int("num_epochs", num_epochs, low=1)
        self.num_train_samples = None if num_train_samples is None else check_int(
            "num_train_samples", num_train_samples, low=1)
        self.num_val_samples = None if num_val_samples is None else check_int(
            "num_val_samples", num_val_samples, low=1)
        self.print_every = check_int("print_every", print_every, low=1)
        self.patience = None if patience is None else check_int("patience", patience, low=1)
        self.lr_decay = check_real("lr_decay", lr_decay, low=0, finite=False)
        self.verbose = bool(verbose)
        self.checkpoint_name = checkpoint_name
        self.augment = augment
        self.on_epoch_end = on_epoch_end
        self.rng = _generator(seed)
        self._check_classes()

        config = dict(optim_config or {})
        if "weight_decay" in config:
            if weight_decay:
                raise ValueError("weight_decay is given twice (as an argument and in optim_config)")
            weight_decay = config.pop("weight_decay")
        self.weight_decay = check_real("weight_decay", weight_decay, low=0, finite=False)
        self._named = self._named_parameters()
        self._loss_into_grads = self._fast_loss()
        self._groups = self._param_groups()
        self._set_up_update(update_rule, config)
        self._reset()

    # ---- setup -----------------------------------------------------------------

    def _checked_split(self, data, split):
        X = check_unmasked(f"X_{split}", data[f"X_{split}"])
        y = check_unmasked(f"y_{split}", data[f"y_{split}"])
        if X.ndim < 1 or X.shape[0] == 0:
            raise ValueError(f"X_{split} is empty (shape {X.shape}); the Solver needs samples")
        rows = self._targets and y.ndim == 2
        if not (y.ndim == 1 or rows) or y.shape[0] != X.shape[0]:
            raise ValueError(f"X_{split} has {X.shape[0]} samples but y_{split} has shape {y.shape}"
                             + ("; an MSELoss model takes labels (N,) or target rows (N, C)"
                                if self._targets else ""))
        if rows:
            if y.dtype.kind not in "iuf":
                raise ValueError(f"y_{split} must hold numbers, got dtype {y.dtype}")
            return X, y.astype(getattr(self.model, "dtype", None) or np.float64, copy=False)
        if y.dtype.kind not in "iu":
            raise ValueError(f"y_{split} must hold integer labels, got dtype {y.dtype}")
        return X, y

    def _check_classes(self):
        """One forward of a single sample checks the input width and gives the
        number of classes, which the labels must fit."""
        scores = self.model.loss(self.X_train[:1])
        num_classes = scores.shape[1]
        for split, y in (("train", self.y_train), ("val", self.y_val)):
            if y.ndim == 2:
                if y.shape[1] != num_classes:
                    raise ValueError(f"y_{split} has target rows of {y.shape[1]} values, the model "
                                     f"outputs {num_classes}")
                continue
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= num_classes:
                bad = low if low < 0 else high
                raise ValueError(f"y_{split} holds label {bad}, outside [0, {num_classes}) "
                                 f"(the model has {num_classes} classes)")

    def _named_parameters(self):
        """dict name -> Parameter: the model's own, or Parameters sharing the
        memory of a plain course model's params arrays."""
        if hasattr(self.model, "named_parameters"):
            return dict(self.model.named_parameters())
        named = {}
        for name, array in self.model.params.items():
            named[name] = Parameter(array, name)
            self.model.params[name] = named[name].data  # the same array from now on
        return named

    def _fast_loss(self):
        """The model's no-copy loss (a Sequential's _loss_into_grads, which
        leaves the gradients in its Parameters), or None where the model's
        loss() is its own: a subclass or instance that overrides loss (to
        log, filter or change it) is trained through what it wrote."""
        model = self.model
        if not isinstance(model, Sequential) or "loss" in vars(model) \
                or type(model).loss is not Sequential.loss:
            return None
        return model._loss_into_grads

    def _param_groups(self):
        if hasattr(self.model, "param_groups"):
            return self.model.param_groups(self.weight_decay)
        # Plain course models: matrices and filters are weights, vectors biases.
        weights = [p for p in self._named.values() if p.data.ndim >= 2]
        others = [p for p in self._named.values() if p.data.ndim < 2]
        groups = [{"params": weights, "weight_decay": self.weight_decay},
                  {"params": others, "weight_decay": 0.0}]
        return [group for group in groups if group["params"]]

    def _set_up_update(self, update_rule, config):
        lr_keys = [key for key in ("learning_rate", "lr") if key in config]
        if len(lr_keys) == 2:
            raise ValueError("optim_config gives both 'learning_rate' and 'lr'")
        for key in lr_keys:
            check_real(f"optim_config[{key!r}] (the learning rate)", config[key], low=0, finite=False)
        if callable(update_rule):
            self.optimizer = None
            self.update_rule = update_rule
            if "lr" in config:
                config["learning_rate"] = config.pop("lr")
            self.optim_configs = {name: dict(config) for name in self._named}
            self._decay = {id(p): group["weight_decay"] for group in self._groups
                           for p in group["params"]}
            return
        if update_rule not in optim.UPDATE_RULES:
            raise ValueError(f"unknown update_rule {update_rule!r}; choose one of "
                             f"{', '.join(optim.UPDATE_RULES)} or pass a callable rule(w, dw, config)")
        optimizer_class, defaults = optim.UPDATE_RULES[update_rule]
        hyper = dict(defaults)
        for key, value in config.items():
            hyper[COURSE_KEYS.get(key, key)] = value
        if "beta1" in hyper or "beta2" in hyper:
            beta1, beta2 = hyper.pop("betas", (0.9, 0.999))
            hyper["betas"] = (hyper.pop("beta1", beta1), hyper.pop("beta2", beta2))
        known = [name for name in inspect.signature(optimizer_class).parameters if name != "params"]
        for key in hyper:
            if key not in known:
                raise ValueError(f"unknown hyperparameter {key!r} in optim_config for update_rule "
                                 f"{update_rule!r} (it takes {', '.join(known)})")
        self.update_rule = update_rule
        self.optimizer = optimizer_class(self._groups, **hyper)
        self.optim_configs = None

    def _reset(self):
        self.epoch = 0
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.epoch_history = []
        self.best_val_acc = 0.0
        self.best_epoch = None
        self.best_params = {name: p.data.copy() for name, p in self._named.items()}
        self.interrupted = False

    # ---- one step ----------------------------------------------------------------

    def _step(self, X_batch, y_batch):
        """Loss and gradients of the batch, then the update. Returns the loss."""
        if self._loss_into_grads is not None:
            loss = self._loss_into_grads(X_batch, y_batch)
        else:
            loss, grads = self.model.loss(X_batch, y_batch)
            for name, p in self._named.items():
                p.grad[...] = grads[name]
        if self.optimizer is not None:
            self.optimizer.step()
            return loss
        for name, p in self._named.items():
            if self._decay[id(p)]:
                p.grad += self._decay[id(p)] * p.data
            next_w, self.optim_configs[name] = self.update_rule(p.data, p.grad, self.optim_configs[name])
            if next_w is not p.data:
                p.data[...] = next_w
        return loss

    def _learning_rate(self):
        if self.optimizer is not None:
            return self.optimizer.param_groups[0]["lr"]
        return next(iter(self.optim_configs.values()), {}).get("learning_rate")

    def _decay_learning_rate(self):
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.lr_decay
        else:
            for config in self.optim_configs.values():
                if "learning_rate" in config:
                    config["learning_rate"] *= self.lr_decay

    # ---- checks ------------------------------------------------------------------

    def _subsample(self, X, y, num_samples):
        if num_samples is not None and len(X) > num_samples:
            index = self.rng.choice(len(X), num_samples, replace=False)
            return X[index], y[index]
        return X, y

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of (a random subsample of num_samples of) X classified as y."""
        X, y = check_samples(X, y, targets=takes_targets(self.model))
        X, y = self._subsample(X, y, num_samples)
        return evaluate(self.model, X, y, batch_size)[1]

    def _restore_best(self):
        for name, p in self._named.items():
            np.copyto(p.data, self.best_params[name])

    def _write_checkpoint(self):
        """Saves best_params, once an epoch has ended: before that they are
        the initial parameters, which must never replace a checkpoint of
        an earlier run (Ctrl-C during the first epoch writes nothing)."""
        if self.checkpoint_name is None or self.epoch == 0:
            return
        path = os.fspath(self.checkpoint_name)
        if not path.lower().endswith((".npz", ".safetensors")):
            path += ".safetensors"
        save_arrays(path, self.best_params)

    # ---- training state ------------------------------------------------------------

    def _generators(self):
        """Every random stream training draws from: the Solver's and the
        dropout layers' (a same_mask layer draws from its fixed seed)."""
        layers = [layer for layer in getattr(self.model, "layers", ())
                  if isinstance(layer, Dropout) and not layer.same_mask]
        return [self.rng] + [layer._rng for layer in layers]

    def _buffers(self):
        """The model's arrays that training changes besides its parameters:
        batch normalization's running statistics (a Sequential's _state)."""
        return dict(getattr(self.model, "_state", None) or {})

    def state_dict(self):
        """What training continues from, as a flat dict of NumPy arrays
        (np.savez writes it): the parameters, the best ones, running
        statistics, the optimizer's state and learning rates, and under
        'meta' (JSON text) the epoch, histories, best_val_acc and every
        random stream's state (best_epoch follows from val_acc_history). Taken between epochs, e.g. after
        train(restore_best=False): load_state_dict(it) on a Solver built
        with the same arguments, then train() with a larger num_epochs,
        gives bit for bit what one uninterrupted run gives. Named update
        rules only (a course-style callable keeps its state in dicts)."""
        if self.optimizer is None:
            raise ValueError("state_dict needs a named update_rule (a callable rule's configs are "
                             "its own)")
        meta = {"epoch": self.epoch, "best_val_acc": self.best_val_acc,
                "loss_history": self.loss_history, "train_acc_history": self.train_acc_history,
                "val_acc_history": self.val_acc_history, "epoch_history": self.epoch_history,
                "random": [g.bit_generator.state for g in self._generators()]}
        arrays = {"meta": np.array(json.dumps(meta, default=float))}
        for name, p in self._named.items():
            arrays[f"param.{name}"] = p.data.copy()
            arrays[f"best.{name}"] = self.best_params[name].copy()
        for name, array in self._buffers().items():
            arrays[f"buffer.{name}"] = array.copy()
        for key, value in optim.flatten_state_dict(self.optimizer.state_dict()).items():
            arrays[f"optim.{key}"] = value
        return arrays

    def load_state_dict(self, state):
        """Continues from state_dict()'s arrays (or an np.load of them):
        ValueError, with nothing changed, when they belong to another model
        or optimizer."""
        if self.optimizer is None:
            raise ValueError("load_state_dict needs a named update_rule")
        try:
            meta = json.loads(str(state["meta"]))
            histories = {key: list(meta[key]) for key in ("loss_history", "train_acc_history",
                                                          "val_acc_history", "epoch_history")}
            epoch, best_val_acc = int(meta["epoch"]), float(meta["best_val_acc"])
            val_accs = histories["val_acc_history"]
            # The first epoch of the highest val accuracy: improvements are strict.
            best_epoch = val_accs.index(max(val_accs)) + 1 if val_accs else None
            targets = {f"param.{n}": p.data for n, p in self._named.items()}
            targets.update({f"best.{n}": a for n, a in self.best_params.items()})
            targets.update({f"buffer.{n}": a for n, a in self._buffers().items()})
            for key, target in targets.items():
                if np.shape(state[key]) != target.shape:
                    raise ValueError(f"{key} has shape {np.shape(state[key])}, the model's {target.shape}")
            if len(meta["random"]) != len(self._generators()):
                raise ValueError(f"it holds {len(meta['random'])} random streams, this run "
                                 f"{len(self._generators())}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"state is not a training state of this model ({exc})") from None
        self.optimizer.load_state_dict(optim.unflatten_state_dict(
            {key[len("optim."):]: value for key, value in state.items() if key.startswith("optim.")}))
        for key, target in targets.items():
            np.copyto(target, state[key])
        for generator, saved in zip(self._generators(), meta["random"]):
            generator.bit_generator.state = saved
        self.epoch, self.best_val_acc, self.best_epoch = epoch, best_val_acc, best_epoch
        for key, history in histories.items():
            setattr(self, key, history)

    def _say(self, text, bar):
        (bar.write if bar is not None else print)(text)

    # ---- the loop ------------------------------------------------------------------

    def train(self, restore_best=True):
        """Runs the optimisation (from epoch self.epoch + 1 to num_epochs); the
        model ends with the best-validation parameters, or with restore_best
        False, with the last epoch's (from which state_dict() continues).
        Each batch is gathered into buffers allocated once per call (_BatchBuffers).

        Raises FloatingPointError (best parameters restored) when a loss is
        NaN or infinite, and MemoryError with the best parameters restored. On Ctrl-C, stops at the next batch boundary, restores
        the best parameters, writes the checkpoint, sets interrupted and
        re-raises KeyboardInterrupt.
        """
        n = len(self.X_train)
        batch = min(self.batch_size, n)
        buffers = _BatchBuffers(self.X_train, self.y_train, batch, getattr(self.model, "dtype", None))
        iterations = -(-n // batch)
        show_bar = self.verbose and wants_bar()
        interrupt = _Interrupt()
        bar = None
        try:
            with interrupt.active():
                for epoch in range(self.epoch + 1, self.num_epochs + 1):
                    # Counted from the state, so that a continued run stops where one run would.
                    if self.patience is not None and self.best_epoch is not None \
                            and self.epoch - self.best_epoch >= self.patience:
                        break
                    started = time.perf_counter()
                    if show_bar:
                        bar = progress_bar(iterations, f"epoch {epoch}/{self.num_epochs}", "batch")
                    order, first, total_loss = self._epoch_start(n)
                    for it, start in enumerate(range(0, n, batch)):
                        if it < first:
                            continue
                        if interrupt.requested:
                            raise KeyboardInterrupt
                        self._batch_start(epoch, order, it, total_loss)
                        index = order[start:start + batch]
                        X_batch, y_batch = buffers.gather(index)
                        if self.augment is not None:
                            X_batch = self.augment(X_batch, self.rng)
                        loss = float(self._step(X_batch, y_batch))
                        if not math.isfinite(loss):
                            self._restore_best()
                            raise FloatingPointError(
                                f"the loss is {loss} at epoch {epoch}, iteration {it + 1} of "
                                f"{iterations}; the best parameters so far are restored (try a "
                                f"smaller learning rate)")
                        self.loss_history.append(loss)
                        total_loss += loss * len(index)
                        t = len(self.loss_history)
                        if self.verbose and t % self.print_every == 0:
                            self._say(f"(Iteration {t} / {iterations * self.num_epochs}) "
                                      f"loss: {loss:f}", bar)
                        if bar is not None:
                            rate = (start + len(index)) / (time.perf_counter() - started)
                            bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} samples/s",
                                                refresh=False)
                            bar.update(1)
                    train_seconds = time.perf_counter() - started
                    if bar is not None:
                        bar.close()
                        bar = None
                    self._end_epoch(epoch, total_loss / n, n / train_seconds, started)
                if interrupt.requested:  # Ctrl-C during the last epoch's evaluation: still a stop
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self._restore_best()
            self._write_checkpoint()
            self.interrupted = True
            raise
        except MemoryError:
            self._restore_best()  # in place: what was learnt can still be saved
            raise
        finally:
            if bar is not None:
                bar.close()
        if restore_best:
            self._restore_best()

    def _epoch_start(self, n):
        """(the epoch's order of the n training samples, the first batch to
        run, the loss summed over the batches before it): a new permutation
        from self.rng, batch 0 and 0.0 (a resumed run continues mid-epoch)."""
        return self.rng.permutation(n), 0, 0.0

    def _batch_start(self, epoch, order, it, total_loss):
        """Called before batch it of epoch is gathered (where a run that
        stops at this batch resumes); nothing here."""

    def _end_epoch(self, epoch, train_loss, samples_per_s, started):
        """Accuracies, history, best parameters, checkpoint, callback and the
        learning-rate decay of an epoch."""
        self.epoch = epoch
        train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
        X_val, y_val = self._subsample(self.X_val, self.y_val, self.num_val_samples)
        val_loss, val_acc = evaluate(self.model, X_val, y_val)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc or epoch == 1:
            self.best_val_acc = val_acc
            self.best_epoch = epoch
            for name, p in self._named.items():
                np.copyto(self.best_params[name], p.data)
            self._write_checkpoint()
        record = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                      val_acc=val_acc, lr=self._learning_rate(),
                      seconds=time.perf_counter() - started, samples_per_s=samples_per_s)
        self.epoch_history.append(record)
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, record)
        elif self.verbose:
            print(f"(Epoch {epoch} / {self.num_epochs}) train acc: {train_acc:f}; "
                  f"val_acc: {val_acc:f}")
        self._decay_learning_rate()
