"""scikit-learn estimators trained by fastfc: MLPClassifier and MLPRegressor.

    from fastfc.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256, 256), random_state=0).fit(X, y)
    clf.predict(X_test), clf.predict_proba(X_test), clf.score(X_test, y_test)

Drop-in replacements for sklearn.neural_network.MLPClassifier and
MLPRegressor: the same constructor parameters with the same defaults and
meanings, the same fitted attributes (coefs_, intercepts_, loss_, loss_curve_,
best_loss_, validation_scores_, best_validation_score_, n_iter_, t_,
classes_, n_features_in_, feature_names_in_, n_layers_, n_outputs_,
out_activation_) and the same training algorithm: Glorot-uniform
initialisation, mini-batches of min(200, n_samples) by default, sklearn's
loss with its L2 term 0.5 * alpha * ||W||^2 / batch_size, its Adam and its
Nesterov SGD with the 'constant', 'invscaling' and 'adaptive' schedules, and
its stopping rules (tol, n_iter_no_change, early_stopping). The network is a
fastfc.models.Sequential (a Linear followed by a ReLU runs as one fused
kernel) updated by fastfc.optim.Adam or SGD, in float32 unless dtype says
float64. In float64, with the same random_state, the fitted coefs_ follow
scikit-learn's to rounding.

Results depend only on random_state (an int gives the same coefs_, bit for
bit, on every fit at a given thread count), drawn from a
np.random.RandomState as scikit-learn's are: the initial weights, the
shuffling and the early-stopping split.

Not supported, each refused with a clear error:
- solver='lbfgs': L-BFGS is a full-batch quasi-Newton method driven by
  scipy.optimize on one flat parameter vector; its time goes into SciPy and
  full-batch passes, which fastfc's mini-batch kernels do not speed up. Use
  sklearn.neural_network's estimators for it. max_fun, an L-BFGS setting, is
  accepted (and checked) but unused.
- sparse X (scipy.sparse): fastfc's kernels are dense; densify X first.
- sample_weight (added to scikit-learn's MLP in 1.7): fastfc's losses
  weigh every sample alike, so fit and partial_fit take no sample_weight.
Multi-label classification (y an indicator matrix) and multi-output
regression are supported, as in scikit-learn.

Other differences: the multiclass log-loss is computed exactly (fastfc's
fused softmax loss) where scikit-learn clips probabilities to [eps, 1 - eps]
(which changes the loss only for samples predicted wrong with probability
1 - 1e-7 in float32); on Ctrl-C, as in scikit-learn, training stops after the
current step with a warning and the model is kept.

scikit-learn is an optional dependency: pip install "fastfc[sklearn]".
"""
try:
    import sklearn  # noqa: F401  (present: the imports below name its modules)
except ImportError as exc:
    raise ImportError('fastfc.sklearn needs scikit-learn: pip install "fastfc[sklearn]" '
                      "(or pip install scikit-learn)") from exc

import numbers
import warnings

import numpy as np
from scipy.special import expit, xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from . import functional as F
from . import layers as L
from ._validation import check_int, check_probability, check_real
from ._progress import progress_bar, wants_bar
from .models import Sequential
from .optim import SGD, Adam
from .solver import take_rows

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same function as an estimator method
    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

# Hidden-layer activations: the fastfc layer that follows each hidden Linear
# (None: identity) and the functional forward that predict applies.
_HIDDEN = {
    "relu": (L.ReLU, F.relu_forward),
    "tanh": (L.Tanh, F.tanh_forward),
    "logistic": (L.Sigmoid, F.sigmoid_forward),
    "identity": (None, None),
}
_PREDICT_ROWS = 4096  # rows per forward pass in predict: bounds the hidden activations' memory


# ---- parameter checks ------------------------------------------------------------

def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_hidden_layer_sizes(value):
    """hidden_layer_sizes (an int or a sequence of ints >= 1) as a tuple."""
    sizes = (value,) if _is_int(value) else value
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {value!r}")
    sizes = tuple(sizes)
    if not all(_is_int(size) and size >= 1 for size in sizes):
        raise ValueError(f"hidden_layer_sizes must hold ints >= 1, got {value!r}")
    return tuple(int(size) for size in sizes)


def _check_dtype(value):
    if value is None:  # np.dtype(None) would be float64
        raise TypeError("dtype must be np.float32 or np.float64, got None")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {value!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be np.float32 or np.float64, got {value!r}")
    return dtype


_LBFGS_REFUSED = (
    "solver='lbfgs' is not supported by fastfc.sklearn: L-BFGS is a full-batch quasi-Newton "
    "method run by scipy.optimize, whose time goes into full-batch passes and SciPy rather "
    "than into the mini-batch steps fastfc speeds up. Use solver='adam' or 'sgd', or "
    "sklearn.neural_network's estimator for 'lbfgs'.")


# ---- the output layer's losses: (scores, target) -> (loss, dscores) ----------------
# Each is scikit-learn's loss for its output activation, with its gradient
# with respect to the last layer's pre-activation scores: (output - target) / n
# for these canonical pairs.

def _softmax_loss(scores, labels):
    """Mean cross-entropy of softmax(scores) against integer labels."""
    loss, dscores = F.softmax_loss(scores, labels)
    return float(loss), dscores


def _logistic_loss(scores, Y):
    """Binary cross-entropy summed over the outputs, averaged over the samples;
    probabilities clipped to [eps, 1 - eps] in the loss, as scikit-learn does."""
    prob = expit(scores)
    eps = np.finfo(prob.dtype).eps
    clipped = np.clip(prob, eps, 1 - eps)
    loss = -float(np.sum(Y * np.log(clipped) + (1 - Y) * np.log1p(-clipped))) / len(Y)
    prob -= Y
    prob /= len(Y)
    return loss, prob


def _squared_loss(scores, Y):
    """Half the squared error, averaged over the samples and the outputs."""
    diff = scores - Y
    loss = 0.5 * float(np.vdot(diff, diff)) / diff.size
    diff /= len(Y)
    return loss, diff


def _poisson_loss(scores, Y):
    """Half the Poisson deviance of exp(scores), summed over the outputs and
    averaged over the samples."""
    pred = np.exp(scores)
    loss = float(np.sum(xlogy(Y, Y / pred) - Y + pred)) / len(Y)
    pred -= Y
    pred /= len(Y)
    return loss, pred


_LOSSES = {"softmax": _softmax_loss, "logistic": _logistic_loss, "identity": _squared_loss,
           "exp": _poisson_loss}


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


_OUTPUTS = {"softmax": _softmax, "logistic": expit, "identity": lambda z: z, "exp": np.exp}


# ---- the fastfc side --------------------------------------------------------------

class _AdamEpsilonBeforeCorrection(Adam):
    """Adam as scikit-learn writes it: eps added to sqrt(v) before the bias
    correction sqrt(1 - beta2^t) scales the step, where torch's formula adds it
    to sqrt(v_hat) after. The same update as torch's with eps / sqrt(1 - beta2^t)
    in its place, passed to the kernel here, so that a step leaves the groups'
    hyperparameters as they are (setting eps in every step made the optimizer
    re-check them, about 10 us a step). t is the step count of the first
    parameter: the trainer steps all parameters together."""

    def step(self, closure=None):
        state = self.state.get(self.param_groups[0]["params"][0])
        self._t = state["step"] + 1 if state else 1
        return super().step(closure)

    def _kernel_eps(self, group):
        return group["eps"] / np.sqrt(1.0 - group["betas"][1] ** self._t)


class _Trainer:
    """A fastfc Sequential whose parameters are an estimator's coefs_ and
    intercepts_ arrays (the same objects), its optimizer, and one training
    step with scikit-learn's loss, L2 term and optimizer formulas.

    Inputs: coefs, intercepts (their values are copied into the network),
    activation (a key of _HIDDEN), out_activation (a key of _LOSSES), dtype.
    """

    def __init__(self, coefs, intercepts, activation, out_activation, dtype):
        layer_type = _HIDDEN[activation][0]
        self.linears = []
        stack = []
        for i, coef in enumerate(coefs):
            # Linear draws its own initial weights, overwritten at once (the
            # estimator's come from its random_state).
            linear = L.Linear(*coef.shape, seed=0, dtype=dtype)
            self.linears.append(linear)
            stack.append(linear)
            if layer_type is not None and i < len(coefs) - 1:
                stack.append(layer_type())
        self.network = Sequential(*stack)
        self.activation = activation
        self.loss = _LOSSES[out_activation]
        self.dtype = dtype
        self.weights = [linear.params["W"] for linear in self.linears]
        self.adopt(coefs, intercepts)
        self.optimizer = None
        self.solver = None

    def fits(self, coefs, activation, out_activation, dtype):
        """Whether this network has the architecture and dtype asked for."""
        return (activation == self.activation and dtype == self.dtype
                and _LOSSES[out_activation] is self.loss
                and [c.shape for c in coefs] == [w.shape for w in self.weights])

    def adopt(self, coefs, intercepts):
        """Copies any array of coefs/intercepts that is not already the
        network's own into the network (the user may have replaced it)."""
        for linear, coef, intercept in zip(self.linears, coefs, intercepts):
            params = linear.params
            for name, array in (("W", coef), ("b", intercept)):
                if array is not params[name]:
                    params[name] = array

    def coefs(self):
        return [linear.params["W"] for linear in self.linears]

    def intercepts(self):
        return [linear.params["b"] for linear in self.linears]

    # ---- the optimizer ----------------------------------------------------------

    def new_optimizer(self, estimator, state=None):
        """A fresh optimizer with the estimator's settings (weights in the
        first param group, biases in the second), then state (what
        optimizer_state returned) loaded if given for the same solver."""
        groups = self.network.param_groups(weight_decay=0.0)
        if estimator.solver == "adam":
            self.optimizer = _AdamEpsilonBeforeCorrection(
                groups, lr=estimator.learning_rate_init,
                betas=(estimator.beta_1, estimator.beta_2), eps=estimator.epsilon)
        else:
            momentum = float(estimator.momentum)
            self.optimizer = SGD(groups, lr=estimator.learning_rate_init, momentum=momentum,
                                 nesterov=bool(estimator.nesterovs_momentum) and momentum > 0)
        self.solver = estimator.solver
        if state is not None and state["solver"] == self.solver:
            self.optimizer.load_state_dict(state["state_dict"])
            if self.solver == "adam":
                # A state saved before the variant above held the rescaled eps
                # of its last step.
                for group in self.optimizer.param_groups:
                    group["eps"] = float(estimator.epsilon)

    def optimizer_state(self):
        """The optimizer's solver and state_dict, plain data (for pickling)."""
        return {"solver": self.solver, "state_dict": self.optimizer.state_dict()}

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, rate):
        """The SGD learning rate from now on. scikit-learn's momentum
        velocity includes the learning rate (v = momentum * v - lr * g) where
        torch's buffer does not (b = momentum * b + g, step lr * b): the two
        agree while lr is constant, and rescaling the buffer by old / new
        lr when it changes keeps them agreeing."""
        old = self.learning_rate
        for group in self.optimizer.param_groups:
            group["lr"] = rate
            for p in group["params"]:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer *= old / rate

    # ---- one step -----------------------------------------------------------------

    def step(self, X, target, alpha):
        """One update on the batch X with target (labels or an (n, outputs)
        array, as the loss takes it); returns the batch loss including the
        L2 term 0.5 * alpha * sum ||W||^2 / n, before the update."""
        n = len(X)
        loss, dscores = self.loss(self.network.forward(X), target)
        self.network.backward(dscores)
        groups = self.optimizer.param_groups
        if alpha:
            loss += 0.5 * alpha * sum(float(np.vdot(w, w)) for w in self.weights) / n
        # scikit-learn's gradient of that term, alpha * W / n: coupled weight
        # decay on the weights' group.
        groups[0]["weight_decay"] = alpha / n
        self.optimizer.step()
        return loss


# ---- the estimators ----------------------------------------------------------------

class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameter checks, the
    training loop, the forward pass of predict, pickling."""

    def _store_parameters(self, arguments):
        """Keeps each constructor argument (__init__'s locals()) as the
        attribute of its name, unchecked, as scikit-learn's API requires."""
        for name, value in arguments.items():
            if name != "self":
                setattr(self, name, value)

    def _checked_params(self):
        """Checks every constructor parameter; returns (hidden sizes, dtype)."""
        hidden = _check_hidden_layer_sizes(self.hidden_layer_sizes)
        _check_choice("activation", self.activation, tuple(_HIDDEN))
        if self.solver == "lbfgs":
            raise ValueError(_LBFGS_REFUSED)
        _check_choice("solver", self.solver, ("adam", "sgd"))
        check_real("alpha", self.alpha, low=0, finite=False)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if not _is_int(self.batch_size):
                raise TypeError(f"batch_size must be 'auto' or an int, got {self.batch_size!r}")
            check_int("batch_size", self.batch_size, low=1)
        _check_choice("learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        check_real("learning_rate_init", self.learning_rate_init, low=0, low_open=True, finite=False)
        check_real("power_t", self.power_t, low=0, finite=False)
        check_int("max_iter", self.max_iter, low=1)
        _check_flag("shuffle", self.shuffle)
        check_real("tol", self.tol, low=0, finite=False)
        if not (_is_int(self.verbose) or isinstance(self.verbose, (bool, np.bool_))):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}")
        _check_flag("warm_start", self.warm_start)
        check_real("momentum", self.momentum, low=0, high=1)
        _check_flag("nesterovs_momentum", self.nesterovs_momentum)
        _check_flag("early_stopping", self.early_stopping)
        check_probability("validation_fraction", self.validation_fraction)
        check_probability("beta_1", self.beta_1)
        check_probability("beta_2", self.beta_2)
        check_real("epsilon", self.epsilon, low=0, low_open=True, finite=False)
        if not (_is_real(self.n_iter_no_change) and self.n_iter_no_change == np.inf):
            check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_int("max_fun", self.max_fun, low=1)
        check_random_state(self.random_state)
        return hidden, _check_dtype(self.dtype)

    # ---- fitting ----------------------------------------------------------------

    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data (dense; converted to the estimator's dtype once).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers
            in regression).

        Returns
        -------
        self : object
            The trained model.
        """
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental):
        hidden, dtype = self._checked_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, random_state, dtype)
        else:
            shapes = [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]
            if [np.shape(c) for c in self.coefs_] != shapes:
                raise ValueError(
                    f"the fitted coefs_ have shapes {[np.shape(c) for c in self.coefs_]}, but "
                    f"hidden_layer_sizes={hidden} with {X.shape[1]} features and "
                    f"{self.n_outputs_} outputs needs {shapes}: warm_start and partial_fit "
                    "continue the fitted network and cannot change its layers")
        trainer = self._prepare_trainer(incremental, dtype)
        self._fit_stochastic(trainer, X, Y, random_state, incremental)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _initialize(self, Y, layer_units, random_state, dtype):
        """Fresh fitted state: Glorot-uniform weights and biases (bound
        sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for logistic units),
        drawn from random_state in scikit-learn's order, and empty histories."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation(Y)
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            self.intercepts_.append(random_state.uniform(-bound, bound, fan_out).astype(dtype))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        # A new network: the old one (and its optimizer state) is not continued.
        self.__dict__.pop("_fastfc_trainer", None)
        self.__dict__.pop("_fastfc_optimizer_state", None)

    def _prepare_trainer(self, incremental, dtype):
        """The trainer whose network holds coefs_ and intercepts_ (which then
        are the network's own arrays), with scikit-learn's optimizer rule:
        partial_fit continues the optimizer of the last call, fit (also with
        warm_start) starts a fresh one."""
        trainer = self.__dict__.get("_fastfc_trainer")
        state = self.__dict__.pop("_fastfc_optimizer_state", None)  # left by unpickling
        if trainer is not None and trainer.fits(self.coefs_, self.activation,
                                                self.out_activation_, dtype):
            trainer.adopt(self.coefs_, self.intercepts_)
        else:
            if trainer is not None and trainer.optimizer is not None:
                state = trainer.optimizer_state()
            trainer = _Trainer(self.coefs_, self.intercepts_, self.activation,
                               self.out_activation_, dtype)
            self._fastfc_trainer = trainer
        self.coefs_, self.intercepts_ = trainer.coefs(), trainer.intercepts()
        if not incremental or trainer.optimizer is None or trainer.solver != self.solver:
            trainer.new_optimizer(self, state if incremental else None)
        return trainer

    def _fit_stochastic(self, trainer, X, Y, random_state, incremental):
        """scikit-learn's epoch loop: shuffled mini-batches, the loss curve,
        the stopping rules and the learning-rate schedule."""
        if self.early_stopping:
            # Stratified only for one output, as scikit-learn.
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            X_train, X_val, Y_train, Y_val = train_test_split(
                X, Y, random_state=random_state, test_size=self.validation_fraction,
                stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._validation_target(Y_val)
        else:
            X_train, Y_train, X_val, y_val = X, Y, None, None
        target = self._training_target(Y_train, trainer.dtype)
        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            batch_size = min(self.batch_size, n_samples)
        sample_idx = np.arange(n_samples)
        batches = [slice(start, min(start + batch_size, n_samples))
                   for start in range(0, n_samples, batch_size)]
        # A bar over the epochs of a verbose fit, where a person watches
        # (a terminal or a notebook); the printed lines go above it.
        bar = None
        if self.verbose and not incremental and wants_bar():
            bar = progress_bar(self.max_iter, type(self).__name__, "epoch")
        say = print if bar is None else bar.write
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # The permutation sklearn.utils.shuffle draws (without its
                    # per-call validation, which costs as much as a small epoch).
                    random_state.shuffle(sample_idx)
                accumulated_loss = 0.0
                for batch in batches:
                    # Gathered copies even unshuffled: the network keeps its last
                    # input, which must not be a view holding all of X alive.
                    index = sample_idx[batch]
                    batch_loss = trainer.step(take_rows(X_train, index), target[index], self.alpha)
                    accumulated_loss += batch_loss * (batch.stop - batch.start)
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    say("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                if bar is not None:
                    bar.set_postfix_str(f"loss {self.loss_:.4g}", refresh=False)
                    bar.update(1)
                self._update_no_improvement_count(X_val, y_val, say)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    trainer.set_learning_rate(
                        float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.early_stopping:
                        message = ("Validation score did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        message = ("Training loss did not improve more than tol=%f for %d "
                                   "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._stop_or_slow_down(trainer, message, say):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if bar is not None:
                bar.close()
        if self.early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _stop_or_slow_down(self, trainer, message, say):
        """At a plateau: whether to stop (any solver but adaptive SGD, or its
        learning rate already at 1e-6 or below); else divides the rate by 5."""
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        if not adaptive or trainer.learning_rate <= 1e-6:
            if self.verbose:
                say(message + (" Learning rate too small." if adaptive else "") + " Stopping.")
            return True
        trainer.set_learning_rate(trainer.learning_rate / 5.0)
        if self.verbose:
            say(message + " Setting learning rate to %f" % trainer.learning_rate)
        return False

    def _update_no_improvement_count(self, X_val, y_val, say):
        if self.early_stopping:
            score = self._score(X_val, y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                say("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ---- prediction -------------------------------------------------------------

    def _forward(self, X):
        """The output layer's activations for X, (n_samples, n_outputs),
        float64, by fastfc's functional kernels, _PREDICT_ROWS rows at a time.
        X is rounded to the training dtype (as fit saw it), then X, coefs_ and
        intercepts_ go to float64 (exactly): a float32 product rounds a row
        differently with the number of rows around it (the BLAS's kernels
        differ by block size), so a row's prediction would depend on the
        other rows by an ulp, and scikit-learn asks a subset's predictions to
        match to 1e-7 (check_methods_subset_invariance)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.coefs_[0].dtype, order="C")
        coefs = [coef.astype(np.float64) for coef in self.coefs_]
        intercepts = [intercept.astype(np.float64) for intercept in self.intercepts_]
        activate = _HIDDEN[self.activation][1]
        last = len(self.coefs_) - 1
        outputs = []
        for start in range(0, X.shape[0], _PREDICT_ROWS):
            h = X[start:start + _PREDICT_ROWS].astype(np.float64)
            for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
                if i < last and activate is F.relu_forward:
                    h = F.affine_relu_forward(h, coef, intercept)[0]
                else:
                    h = F.affine_forward(h, coef, intercept)[0]
                    if i < last and activate is not None:
                        h = activate(h)[0]
            outputs.append(h)
        scores = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return _OUTPUTS[self.out_activation_](scores)

    def _score(self, X, y):
        """The validation score of early stopping (NaN if a prediction is not finite)."""
        output = self._forward(X)
        if not np.isfinite(output).all():
            return np.nan
        return self._score_function(y, self._from_output(output))

    # ---- pickling -----------------------------------------------------------------

    def __getstate__(self):
        # The network and its buffers stay behind (rebuilt from coefs_ when
        # training resumes); the optimizer's state travels as plain data.
        state = dict(super().__getstate__())
        trainer = state.pop("_fastfc_trainer", None)
        if trainer is not None and trainer.optimizer is not None:
            state["_fastfc_optimizer_state"] = trainer.optimizer_state()
        return state


_NOT_SUPPORTED_NOTE = """
    Not supported: solver='lbfgs' (refused with a ValueError), sparse X and
    sample_weight; max_fun is accepted but unused (it only applies to lbfgs).
    See the fastfc.sklearn module docstring.
"""

_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        The ith element is the number of units in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.
    solver : {'adam', 'sgd'}, default='adam'
        The optimizer: scikit-learn's Adam or SGD with momentum.
    alpha : float, default=0.0001
        Strength of the L2 term: each batch's loss gains
        0.5 * alpha * sum ||W||^2 / batch_size (weights, not biases).
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        SGD's schedule: constant; learning_rate_init / (t_ + 1) ** power_t
        after each epoch; or divided by 5 at each plateau (see tol). Only
        for solver='sgd'.
    learning_rate_init : float, default=0.001
        The initial learning rate.
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Whether to shuffle the samples in each epoch.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights, the shuffling and the early-stopping
        split; an int makes fits reproducible bit for bit.
    tol : float, default=1e-4
        A plateau is n_iter_no_change epochs in a row whose loss (or
        validation score, with early_stopping) does not improve by tol;
        training then stops (adaptive SGD divides its rate by 5 instead).
    verbose : bool or int, default=False
        Print the loss of each epoch, above a progress bar over the epochs
        of fit where stderr is a terminal or a Jupyter notebook (never into
        a file or pipe).
    warm_start : bool, default=False
        Continue from the fitted weights in fit (with a fresh optimizer).
    momentum : float, default=0.9
        SGD momentum, in [0, 1].
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for SGD (with momentum > 0).
    early_stopping : bool, default=False
        Hold out validation_fraction of the training data, stop when its
        score (accuracy or R^2) stops improving, and keep the best weights.
    validation_fraction : float, default=0.1
        The held-out fraction for early_stopping, in [0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's epsilon (added to sqrt(v) before the bias correction, as
        scikit-learn does).
    n_iter_no_change : int or np.inf, default=10
        Epochs without improvement that make a plateau (see tol).
    max_fun : int, default=15000
        Accepted for compatibility and unused (an L-BFGS setting).
    dtype : np.float32 or np.float64, default=np.float32
        The float type of the weights and of training; X is converted to
        it once.
"""

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    coefs_, intercepts_ : lists of arrays
        The weight matrix (n_in, n_out) and bias vector of each layer.
    loss_ : float
        The last epoch's mean training loss (with the L2 term).
    loss_curve_ : list of float
        The loss of every epoch.
    best_loss_ : float or None
        The lowest loss_ (None with early_stopping).
    validation_scores_ : list of float or None
        The validation score of each epoch (early_stopping only).
    best_validation_score_ : float or None
        The best of validation_scores_ (early_stopping only).
    n_iter_ : int
        Epochs run by the last call to fit or partial_fit.
    t_ : int
        Training samples seen, over all calls.
    n_features_in_, feature_names_in_ : as every scikit-learn estimator
    n_layers_, n_outputs_ : int
        Layers (input and output included) and outputs.
    out_activation_ : str
        'softmax', 'logistic' (binary and multi-label), 'identity' or 'exp'.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier trained by fastfc.

    scikit-learn's MLPClassifier (same parameters, attributes and training
    algorithm; multiclass, binary and multi-label targets), with fastfc's
    kernels and optimizers doing the work, in float32 by default.
    """ + _PARAMETERS_DOC + _ATTRIBUTES_DOC + """
    classes_ : ndarray
        The class labels.
    """ + _NOT_SUPPORTED_NOTE

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=np.float32):
        self._store_parameters(locals())

    def _validate_input(self, X, y, incremental, reset, dtype):
        """X in dtype, and y binarized (n_samples, n_outputs) by the label
        binarizer; classes_ set on a first fit, checked on a continued one."""
        X, y = validate_data(self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output_activation(self, Y):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _training_target(self, Y, dtype):
        """Class indices for the softmax loss, else the 0/1 matrix in dtype."""
        if self.out_activation_ == "softmax":
            return np.argmax(Y, axis=1)
        return Y.astype(dtype)

    def _validation_target(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _from_output(self, output):
        return self._label_binarizer.inverse_transform(
            output.ravel() if self.n_outputs_ == 1 else output)

    _score_function = staticmethod(accuracy_score)

    def partial_fit(self, X, y, classes=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        classes : array of shape (n_classes,), default=None
            Every class of all calls: required on the first call, optional
            (and checked) afterwards. Multi-label y needs none.

        Returns
        -------
        self : object
        """
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None and not type_of_target(y).startswith("multilabel"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and not first_call \
                and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on the last call to "
                             f"partial_fit, was: {self.classes_!r}")
        if first_call:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """The predicted classes, shape (n_samples,) (or (n_samples,
        n_classes) indicators for multi-label)."""
        return self._from_output(self._forward(X))

    def predict_proba(self, X):
        """Probability of each class, shape (n_samples, n_classes), columns
        in the order of classes_ (for multi-label, each label's own
        probability)."""
        output = self._forward(X)
        if self.n_outputs_ == 1:
            p = output.ravel()
            return np.vstack([1 - p, p]).T
        return output

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor trained by fastfc.

    scikit-learn's MLPRegressor (same parameters, attributes and training
    algorithm; one or several outputs), with fastfc's kernels and optimizers
    doing the work, in float32 by default.

    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half the squared error (identity output), or half the Poisson
        deviance of an exp output (y must be >= 0).
    """ + _PARAMETERS_DOC + _ATTRIBUTES_DOC + _NOT_SUPPORTED_NOTE

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=np.float32):
        self._store_parameters(locals())

    def _checked_params(self):
        _check_choice("loss", self.loss, ("squared_error", "poisson"))
        return super()._checked_params()

    def _validate_input(self, X, y, incremental, reset, dtype):
        """X in dtype and y as an (n_samples, n_outputs) array in dtype."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype,
                             order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' needs targets y >= 0")
        return X, np.asarray(y, dtype=dtype).reshape(len(y), -1)

    def _output_activation(self, Y):
        return "exp" if self.loss == "poisson" else "identity"

    def _training_target(self, Y, dtype):
        return Y

    def _validation_target(self, Y):
        return Y

    def _from_output(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    _score_function = staticmethod(r2_score)

    def partial_fit(self, X, y):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : object
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """The predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        return self._from_output(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
