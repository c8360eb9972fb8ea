"""Checks shared by the course adapters: the course's dict parameters
(conv_param, pool_param, dropout_param, bn_param, ln_param, gn_param) and
NumPy's type promotion for inputs of mixed types."""
import difflib

import numpy as np

from .._validation import check_real


def checked_param(param, name, required=(), optional=()):
    """param, checked to be a dict holding every key of required and no key
    outside required + optional: else a TypeError/ValueError naming the dict
    and the key (with the closest known key for a misspelled one)."""
    if not isinstance(param, dict):
        raise TypeError(f"{name} must be a dict, got {type(param).__name__}")
    known = tuple(required) + tuple(optional)
    # Unknown keys first: a misspelled key is also a missing one, and its
    # name is the better clue.
    for key in param:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name} has an unknown key {key!r}{hint}; it takes {_listed(known)}")
    for key in required:
        if key not in param:
            raise ValueError(f"{name} is missing the key {key!r} (it takes {_listed(known)})")
    return param


def _listed(keys):
    return ", ".join(repr(key) for key in keys)


def is_train_mode(param, name, default=None):
    """Whether param['mode'] is 'train' (True) or 'test' (False); default
    when the key is absent (None: it is required)."""
    mode = param.get("mode", default)
    if mode not in ("train", "test"):
        raise ValueError(f"{name}['mode'] must be 'train' or 'test', got {mode!r}")
    return mode == "train"


def real_param(param, name, key, default, low, high=None, low_open=False):
    """param[key] (default when absent) as a float in [low, high] ((low, high]
    with low_open); a TypeError/ValueError naming the key otherwise."""
    return check_real(f"{name}[{key!r}]", param.get(key, default), low=low, high=high, low_open=low_open,
                      finite=False)


def as_floats(*arrays):
    """The arrays as NumPy arrays of one float type, as the course's NumPy
    code would compute them: their common type (integers promote to
    float64, float16 to float32). Arrays of that type are passed through
    unchanged (no copy), so in-place changes to them (a numerical gradient
    check) reach the kernels."""
    arrays = [np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrays)
    if dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    elif dtype.kind == "f" and dtype.itemsize < 4:
        dtype = np.dtype(np.float32)
    return [a if a.dtype == dtype else a.astype(dtype) for a in arrays]
