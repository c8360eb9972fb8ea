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
from .._course_solver import CourseSolver, _check_optim_config, _count
from ..io import save_arrays
from . import _rules
from ._tensors import check_device, data_array, torch

__all__ = ["Solver"]

# The rules whose steps fuse into one C call: rule -> its name in fastfc.optim.
_FUSED_RULES = {getattr(_rules, name): name for name in ("sgd", "sgd_momentum", "rmsprop", "adam")}


class Solver(CourseSolver):
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
    _fused_rules = _FUSED_RULES
    _fused_update = staticmethod(_rules.update_tensors)
    _loss_line = ("(Time %(seconds).2f sec; Iteration %(iteration)d / %(iterations)d) "
                  "loss: %(loss)f")

    def __init__(self, model, data, **kwargs):
        self.model = model
        self._set_data(data, lambda tensor: tensor)
        self.update_rule = kwargs.pop("update_rule", self.sgd)
        if not callable(self.update_rule):
            raise TypeError(f"update_rule must be a function rule(w, dw, config), got "
                            f"{self.update_rule!r}")
        self.optim_config = _check_optim_config(kwargs.pop("optim_config", {}))
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self._set_sizes(kwargs.pop("batch_size", 100), kwargs.pop("num_epochs", 10),
                        kwargs.pop("num_train_samples", 1000), kwargs.pop("num_val_samples", None))
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

    def train(self, time_limit=None, return_best_params=True):
        """Runs the optimization.

        Inputs:
        - time_limit: None, or seconds: training stops before an iteration
          that would end past it (judged by the last iteration's time)
        - return_best_params: end with model.params set to the parameters of
          the best validation accuracy (else keep the last ones)
        """
        self._train(time_limit, return_best_params)

    @staticmethod
    def _holds_samples(X, y):
        samples, labels = X.shape[0], y.shape[0]  # an IndexError for a 0-d tensor
        return samples != 0 and samples == labels

    @staticmethod
    def _sample(n, k):
        return torch.randperm(n)[:k]  # without replacement, as the course

    @staticmethod
    def _loss_value(loss):
        return loss.item()

    @staticmethod
    def _index_array(index):
        return index.numpy()

    @staticmethod
    def _copy(value):
        return value.clone()

    @staticmethod
    def _fraction_correct(score_batches, y):
        y_pred = torch.cat([torch.argmax(scores, dim=1) for scores in score_batches])
        return (y_pred == y).to(torch.float).mean().item()

    def _save_parameters(self, path):
        save_arrays(path, {name: w.numpy() for name, w in self.model.params.items()})

    def _no_grad(self):
        return torch.no_grad()
