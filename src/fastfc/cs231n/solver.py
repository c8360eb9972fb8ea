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
import numpy as np

from .. import optim as _fastfc_optim
from .._course_solver import CourseSolver, _check_optim_config, _count
from .._validation import check_real
from ..io import save_arrays
from ..models import Sequential
from . import optim

__all__ = ["Solver"]

# The rules a fastfc model's step runs in one fused call: rule -> its name
# in fastfc.optim.COURSE_RULES.
_FUSED_RULES = {getattr(optim, name): name for name in _fastfc_optim.COURSE_RULES}


class Solver(CourseSolver):
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

    _fused_rules = _FUSED_RULES
    _fused_update = staticmethod(_fastfc_optim.course_step)
    _loss_line = "(Iteration %(iteration)d / %(iterations)d) loss: %(loss)f"

    def __init__(self, model, data, *, update_rule="sgd", optim_config=None, lr_decay=1.0,
                 batch_size=100, num_epochs=10, num_train_samples=1000, num_val_samples=None,
                 checkpoint_name=None, print_every=10, verbose=True):
        self.model = model
        self._set_data(data, np.asarray)
        if isinstance(update_rule, str):
            if update_rule not in optim.__all__:
                raise ValueError(f"Invalid update_rule {update_rule!r}: choose one of "
                                 f"{', '.join(optim.__all__)} or pass a callable")
            update_rule = getattr(optim, update_rule)
        elif not callable(update_rule):
            raise TypeError(f"update_rule must be a name or a callable, got {update_rule!r}")
        self.update_rule = update_rule
        self.optim_config = _check_optim_config({} if optim_config is None else optim_config)
        self.lr_decay = check_real("lr_decay", lr_decay, finite=False)
        self._set_sizes(batch_size, num_epochs, num_train_samples, num_val_samples)
        self.checkpoint_name = checkpoint_name
        self.print_every = _count("print_every", print_every, 1)
        self.verbose = verbose
        self._reset()

    def train(self):
        """Runs the optimization; model.params ends as the parameters of the
        best validation accuracy."""
        self._train()

    def _split(self, split):
        return getattr(self, f"X_{split}"), getattr(self, f"y_{split}")

    @staticmethod
    def _holds_samples(X, y):
        return X.ndim != 0 and len(X) != 0 and y.shape == (len(X),)

    @staticmethod
    def _sample(n, k):
        return np.random.choice(n, k)  # with replacement, as the course

    @staticmethod
    def _loss_value(loss):
        return loss

    @staticmethod
    def _index_array(index):
        return index

    @staticmethod
    def _copy(value):
        return np.array(value, copy=True)

    @staticmethod
    def _fraction_correct(score_batches, y):
        return np.mean(np.hstack([np.argmax(scores, axis=1) for scores in score_batches]) == y)

    def _save_parameters(self, path):
        if isinstance(self.model, Sequential):  # with batch norm's running statistics
            self.model.save(path)
        else:
            save_arrays(path, {name: np.asarray(w) for name, w in self.model.params.items()})
