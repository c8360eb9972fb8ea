"""The argument checks of the Python modules, with one rule: a value of the
wrong type raises a TypeError, a value of the right type that is out of
range a ValueError; both messages name the argument, say what it must be
and show the value.

    n = check_int("batch_size", batch_size, low=1)      # "batch_size must be a positive int, got 0"
    lr = check_real("lr", lr, low=0, low_open=True)     # a finite float > 0
    p = check_probability("p", p)                       # a float in [0, 1)
    seed = check_seed("seed", seed)                     # None or an int >= 0
    X = check_array("X", X, ndim=4, layout="(N, C, H, W)")  # a numeric array of 4 dimensions

Each returns the value as the caller stores it (int, float, array). The
wrong-type error is an ArgumentTypeError: a TypeError that is also a
ValueError, because several of these checks raised ValueError for every bad
value before they were one rule, and code catching that keeps working.
"""
import math
import numbers

import numpy as np

__all__ = ["ArgumentTypeError", "check_int", "check_real", "check_probability", "check_seed",
           "check_array", "check_unmasked"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (see the module docstring for why it is also a ValueError)."""


def _bounds(low, high, low_open, high_open):
    """'>= 0', '> 0', 'in [0, 1)' or '' for the given bounds."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _outside(value, low, high, low_open, high_open):
    return ((low is not None and (value <= low if low_open else value < low))
            or (high is not None and (value >= high if high_open else value > high)))


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def check_int(name, value, low=None, high=None):
    """value as an int in [low, high] (None: unbounded). Bools are not ints here."""
    if type(value) is int and not _outside(value, low, high, False, False):  # the common case, fast
        return value
    if low == 1 and high is None:
        what = "a positive int"
    elif low == 0 and high is None:
        what = "a non-negative int"
    else:
        what = " ".join(filter(None, ("an int", _bounds(low, high, False, False))))
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {what}, got {value!r}")
    if _outside(value, low, high, False, False):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_real(name, value, low=None, high=None, low_open=False, high_open=False, finite=True):
    """value as a float within the bounds (open or closed at each end; None:
    unbounded), and finite unless finite=False. Bools are not numbers here."""
    if type(value) is float and math.isfinite(value) and not _outside(value, low, high, low_open, high_open):
        return value  # the common case, without the ABC checks
    what = " ".join(filter(None, ("a finite number" if finite else "a number",
                                  _bounds(low, high, low_open, high_open))))
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {what}, got {value!r}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)) or _outside(value, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_probability(name, value):
    """value as a float in [0, 1): a dropout rate, a momentum, a beta."""
    return check_real(name, value, low=0, high=1, high_open=True)


def check_seed(name, value, generator=False):
    """value as None or an int >= 0; with generator=True an
    np.random.Generator passes too (returned as it is)."""
    if value is None or (generator and isinstance(value, np.random.Generator)):
        return value
    what = "a non-negative int, an np.random.Generator or None" if generator else "a non-negative int or None"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {what}, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_unmasked(name, value):
    """value as a base-class NumPy array (np.asarray: no copy when it is an
    array, a subclass viewed as np.ndarray, whose C-level shape is what the
    kernels read, whatever the subclass's .shape says); TypeError for a
    masked array, whose mask would be ignored."""
    if isinstance(value, np.ma.MaskedArray):
        raise ArgumentTypeError(f"{name} is a masked array, which fastfc does not support (its "
                                f"mask would be ignored); pass {name}.filled(value) or "
                                f"np.asarray({name})")
    return np.asarray(value)


def check_array(name, value, ndim=None, layout=None, kinds="biuf"):
    """value as a NumPy array (check_unmasked: no copy when it is one) whose
    dtype kind is one of kinds (default: bool, int or float) and, when ndim
    is given, of that many dimensions; layout names them in the message
    ("(N, C, H, W)")."""
    array = check_unmasked(name, value)
    if array.dtype.kind not in kinds:
        raise ArgumentTypeError(f"{name} must be an array of numbers, got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {f'shape {layout}' if layout else f'{ndim} dimensions'}, "
                         f"got shape {array.shape}")
    return array
