"""The course's optim.py: first-order update rules.

    next_w, config = update_rule(w, dw, config)

- w: the current weights; dw: the gradient of the loss with respect to w
- config: dict of hyperparameters and state (None: a new one, filled with the
  defaults below). The rules fill in the defaults and store their state in it.

The formulas, config keys and defaults are the course's (2017 and 2018+
alike). As the course's code does, sgd updates w in place and returns it,
while sgd_momentum, rmsprop and adam return a new next_w and put new state
arrays into config, leaving w and the arrays given in config unchanged.
The arithmetic is fastfc's fused C update (fastfc.optim); the Solver of
fastfc.cs231n.solver, given one of these rules, updates every parameter of a
fastfc model in place in one C call instead.
"""
import numpy as np

from .. import optim as _fastfc_optim

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam"]


def _float_type(w):
    w = np.asarray(w)
    return w.dtype if w.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _on_new_arrays(rule, w, dw, config):
    """rule (a fastfc.optim course rule) run on a copy of w and of the state
    arrays in config, so that the caller's arrays stay as they were."""
    dtype = _float_type(w)
    _, state_keys = _fastfc_optim.COURSE_RULES[rule.__name__]
    if config is None:
        config = {}
    if isinstance(config, dict):  # otherwise rule raises the TypeError
        for key in state_keys:
            if config.get(key) is not None:
                config[key] = np.array(config[key], dtype=dtype, order="C")
    next_w = np.array(w, dtype=dtype, order="C")
    return rule(next_w, np.asarray(dw, dtype=dtype), config)


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent, in place as the course's:
        w -= learning_rate * dw

    config: learning_rate (default 1e-2).
    Returns (w, config).
    """
    w = np.asarray(w)
    return _fastfc_optim.sgd(w, np.asarray(dw, dtype=_float_type(w)), config)


def sgd_momentum(w, dw, config=None):
    """Stochastic gradient descent with momentum:
        v = momentum * v - learning_rate * dw
        next_w = w + v

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w).
    Returns (next_w, config), next_w and config['velocity'] new arrays.
    """
    return _on_new_arrays(_fastfc_optim.sgd_momentum, w, dw, config)


def rmsprop(w, dw, config=None):
    """RMSProp: a moving average of squared gradients sets per-parameter step sizes.
        cache = decay_rate * cache + (1 - decay_rate) * dw**2
        next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache
    (zeros like w).
    Returns (next_w, config), next_w and config['cache'] new arrays.
    """
    return _on_new_arrays(_fastfc_optim.rmsprop, w, dw, config)


def adam(w, dw, config=None):
    """Adam, with bias correction (the complete rule the course asks for):
        t = t + 1
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * dw**2
        next_w = w - learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (zeros like w), t (0: the steps taken so far).
    Returns (next_w, config), next_w, config['m'] and config['v'] new arrays.
    """
    return _on_new_arrays(_fastfc_optim.adam, w, dw, config)
