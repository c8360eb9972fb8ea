"""Numerical gradients by centred differences, for checking backward passes.
Use float64: float32 differences are too coarse for the usual tolerances, so
each function here warns (PrecisionWarning) when it differentiates a float32
array or a function returning float32."""
import warnings

import numpy as np


class PrecisionWarning(UserWarning):
    """A numerical gradient taken in less than float64 precision."""


def check_precision(x, value, stacklevel=3):
    """Warn (PrecisionWarning) when the array x or the function's value is a
    float type narrower than float64: float32 rounds the loss to about 1e-7
    of itself, more than a step h=1e-5 changes it, so relative errors near 1
    come out of a correct backward pass."""
    narrow = [f"{what} is {np.dtype(dtype)}" for what, dtype in
              (("x", np.asarray(x).dtype), ("f(x)", np.asarray(value).dtype))
              if dtype.kind == "f" and dtype.itemsize < 8]
    if narrow:
        warnings.warn(f"numerical gradient in low precision ({', '.join(narrow)}): centred "
                      f"differences drown in rounding, and relative errors up to 1 are expected "
                      f"even for a correct gradient; check in float64 (e.g. the model's "
                      f"dtype=np.float64 and float64 inputs)", PrecisionWarning, stacklevel=stacklevel)


def _centred_values(f, x, ix, h, first, stacklevel=4):
    """(f(x) with x[ix] raised by h, f(x) with it lowered by h); x[ix] is
    restored after. first: check the precision (check_precision), warning
    at stacklevel (4: the caller of the function that called this one)."""
    old = x[ix]
    x[ix] = old + h
    f_plus = f(x)
    x[ix] = old - h
    f_minus = f(x)
    x[ix] = old
    if first:
        check_precision(x, f_plus, stacklevel=stacklevel)
    return f_plus, f_minus


def eval_numerical_gradient(f, x, verbose=False, h=1e-5):
    """Gradient of a scalar function f at x (modified in place and restored).

    Inputs: f, a function of one array returning a float; x, a float array.
    Returns an array shaped like x.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        f_plus, f_minus = _centred_values(f, x, ix, h, first=it.iterindex == 0)
        grad[ix] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) with respect to x, for an array-valued f.

    Inputs: f, a function of one array returning an array; x; df, the
    upstream gradient shaped like f(x). Returns an array shaped like x.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        # Copies: f may return the same buffer for both points.
        pos, neg = _centred_values(lambda z: np.array(f(z), copy=True), x, it.multi_index, h,
                                   first=it.iterindex == 0)
        grad[it.multi_index] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def rel_error(x, y):
    """Largest elementwise relative error max |x - y| / max(1e-8, |x| + |y|)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _centred_differences(f, x, indices, h=1e-5):
    """Yields (ix, (f(x + h) - f(x - h)) / (2 * h)) with h added to the entry
    ix of x only, for each ix of indices (drawn one at a time, between the
    calls of f), for a scalar f; x is changed in place and restored. Warns
    (PrecisionWarning) at the first entry, naming the caller's caller."""
    for count, ix in enumerate(indices):
        f_plus, f_minus = _centred_values(f, x, ix, h, first=count == 0, stacklevel=5)
        yield ix, (f_plus - f_minus) / (2 * h)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5, seed=None):
    """Compare analytic_grad with centred differences at num_checks random entries.

    Returns the list of relative errors, one per checked entry.
    """
    rng = np.random.default_rng(seed)
    indices = (tuple(int(rng.integers(m)) for m in x.shape) for _ in range(num_checks))
    errors = []
    for ix, numeric in _centred_differences(f, x, indices, h):
        analytic = analytic_grad[ix]
        errors.append(abs(numeric - analytic) / max(1e-12, abs(numeric) + abs(analytic)))
    return errors
