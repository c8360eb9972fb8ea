"""The course's eecs598.grad: numerical gradients and the relative error,
on tensors.

    import fastfc.eecs598 as eecs598
    dx_num = eecs598.grad.compute_numeric_gradient(lambda x: Linear.forward(x, w, b)[0], x, dout)
    print(eecs598.grad.rel_error(dx_num, dx))
"""
import random

import numpy as np

from ._tensors import array, torch
from .utils import reset_seed

__all__ = ["grad_check_sparse", "compute_numeric_gradient", "rel_error"]


def _value(f, x):
    """f(x) as a flat float64 array, copied (f may return a view of x)."""
    out = f(x)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.array(out, dtype=np.float64).reshape(-1)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-7):
    """Compares analytic_grad with centred differences of f at num_checks
    entries of x drawn after reset_seed(0) (as the course), printing a line
    per entry.

    Inputs: f, a function of x returning a scalar tensor; x, a contiguous
    float tensor (changed in place entry by entry and restored);
    analytic_grad, shaped like x; num_checks; h, the step.
    Returns the list of relative errors (the course returns nothing).
    """
    flat = array(x, "x").reshape(-1)
    reset_seed(0)
    errors = []
    for _ in range(num_checks):
        ix = tuple(random.randrange(m) for m in x.shape)
        index = int(np.ravel_multi_index(ix, tuple(x.shape)))
        old = flat[index]
        flat[index] = old + h
        plus = _value(f, x)[0]
        flat[index] = old - h
        minus = _value(f, x)[0]
        flat[index] = old
        numerical = (plus - minus) / (2 * h)
        analytic = float(analytic_grad[ix])
        error = abs(numerical - analytic) / (abs(numerical) + abs(analytic) + 1e-12)
        print("numerical: %f analytic: %f, relative error: %e" % (numerical, analytic, error))
        errors.append(error)
    return errors


def compute_numeric_gradient(f, x, dLdf=None, h=1e-7):
    """Numerical gradient of f at x by centred differences,
    df/dx ~ (f(x + h) - f(x - h)) / (2h), chained with the upstream
    gradient dLdf (ones when None) for a function returning a tensor.

    Inputs:
    - f: a function of x returning a tensor (it is called with x itself,
      changed in place one entry at a time and restored)
    - x: a contiguous float32/float64 CPU tensor (use float64)
    - dLdf: upstream gradient shaped like f(x), or None
    - h: the step
    Returns a tensor shaped like x.
    """
    flat = array(x, "x").reshape(-1)  # a view: writes reach x
    upstream = np.ones_like(_value(f, x)) if dLdf is None else _value(lambda _: dLdf, x)
    grad = np.empty(flat.size, dtype=np.float64)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = _value(f, x)
        flat[i] = old - h
        minus = _value(f, x)
        flat[i] = old
        grad[i] = upstream.dot((plus - minus) / (2 * h))
    return torch.from_numpy(grad.astype(flat.dtype).reshape(tuple(x.shape)))


def rel_error(x, y, eps=1e-10):
    """max |x - y| / max(|x| + |y|), the denominator at least eps, for
    tensors x and y of one shape. Returns a float."""
    top = (x - y).abs().max().item()
    bottom = (x.abs() + y.abs()).clamp(min=eps).max().item()
    return top / bottom
