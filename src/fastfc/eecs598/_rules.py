"""The course's update rules on tensors: sgd, sgd_momentum, rmsprop, adam.

Each is fastfc.optim's course rule of the same name (one fused C pass),
run on NumPy views of the tensors: w is updated in place and returned as
next_w, and the config's state ('velocity', 'cache', 'm', 'v') holds
tensors, updated in place too (a state tensor the caller put in the config
is written, not replaced). update_tensors applies a rule to many
parameters in one C call (what the Solver's step does).
"""
import numpy as np

from .. import optim as _optim
from ._tensors import array, arrays, tensor, torch

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam", "update_tensors"]


_NUMBERS = (float, int)


def _numpy_config(config, owner):
    """A copy of config whose state tensors are NumPy views (what
    fastfc.optim.course_step takes), and the views made."""
    if not isinstance(config, dict):
        raise TypeError(f"{owner}: config must be a dict or None, got {type(config).__name__}")
    shadow = dict(config)
    views = {}
    for key, value in config.items():
        if type(value) in _NUMBERS:  # the hyperparameters: skip the slower checks
            continue
        if isinstance(value, torch.Tensor):
            shadow[key] = views[key] = array(value, f"{owner}: config[{key!r}]")
        elif isinstance(value, np.ndarray):
            raise TypeError(f"{owner}: config[{key!r}] must be a tensor, got a NumPy array")
    return shadow, views


def _store_back(config, shadow, views):
    """What course_step left in shadow (defaults, new state arrays, adam's t),
    written into config: state arrays other than the views passed in (new
    ones) as tensors over them."""
    for key, value in shadow.items():
        if isinstance(value, np.ndarray):
            if views.get(key) is not value:
                config[key] = tensor(value)
        else:
            config[key] = value


def update_tensors(rule, ws, dws, configs, owners):
    """The course rule named rule applied in place to the parameter arrays
    ws (NumPy views of the parameters) with gradients dws, each with its
    config dict of tensors; in as few C calls as the configs allow."""
    converted = [_numpy_config(config, owner) for config, owner in zip(configs, owners)]
    try:
        _optim.course_step(rule, ws, dws, [shadow for shadow, _ in converted], owners)
    finally:  # a Ctrl-C raised after a whole update still leaves the state consistent
        for config, (shadow, views) in zip(configs, converted):
            _store_back(config, shadow, views)


def _rule(rule, w, dw, config):
    """(w updated in place, config) for one parameter."""
    if config is None:
        config = {}
    wa, dwa = arrays(w=w, dw=dw)
    if dwa.shape != wa.shape:
        raise ValueError(f"dw has shape {tuple(dw.shape)} but w has shape {tuple(w.shape)}")
    update_tensors(rule, [wa], [dwa], [config], ["w"])
    return w, config


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: w -= learning_rate * dw.

    Inputs: w, dw: contiguous float tensors of one shape and dtype; config:
    dict with learning_rate (default 1e-2), or None.
    Returns (next_w, config); next_w is w, updated in place.
    """
    return _rule("sgd", w, dw, config)


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: v = momentum * v - learning_rate * dw; next_w = w + v.

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w;
    a given tensor is updated in place).
    Returns (next_w, config); next_w is w, updated in place.
    """
    return _rule("sgd_momentum", w, dw, config)


def rmsprop(w, dw, config=None):
    """RMSProp: cache = decay_rate * cache + (1 - decay_rate) * dw**2;
    next_w = w - learning_rate * dw / (sqrt(cache) + epsilon).

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache
    (zeros like w). Returns (next_w, config); next_w is w, updated in place.
    """
    return _rule("rmsprop", w, dw, config)


def adam(w, dw, config=None):
    """Adam: t += 1; m = beta1 * m + (1 - beta1) * dw;
    v = beta2 * v + (1 - beta2) * dw**2;
    next_w = w - learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon).

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (zeros like w), t (0: the steps taken so far).
    Returns (next_w, config); next_w is w, updated in place.
    """
    return _rule("adam", w, dw, config)
