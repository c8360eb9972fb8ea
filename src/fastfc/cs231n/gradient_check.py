"""The course's gradient_check.py: numerical gradients by centred
differences, for checking backward passes (use float64).

eval_numerical_gradient and eval_numerical_gradient_array are fastfc's
(fastfc.gradcheck), with the course's default verbose=True;
grad_check_sparse prints as the course's and also returns the errors.
"""
from random import randrange

from .. import gradcheck as _gradcheck

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "grad_check_sparse"]


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Numerical gradient of the scalar function f at x.

    Inputs: f, a function of one argument (called with x, which is changed
    in place entry by entry and restored); x, a float array; verbose: print
    each entry's index and value; h: the step.
    Returns an array shaped like x.
    """
    return _gradcheck.eval_numerical_gradient(f, x, verbose=verbose, h=h)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numerical gradient of sum(f(x) * df) with respect to x, for a function
    f returning an array (df: the upstream gradient, shaped like f(x)).
    Returns an array shaped like x."""
    return _gradcheck.eval_numerical_gradient_array(f, x, df, h=h)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compares analytic_grad with centred differences of f at num_checks
    random entries of x (drawn with Python's random module, as the course),
    printing one line per entry as the course does.

    Returns the list of relative errors (the course returns nothing).
    """
    indices = (tuple(randrange(m) for m in x.shape) for _ in range(num_checks))
    errors = []
    for ix, numerical in _gradcheck._centred_differences(f, x, indices, h):
        analytic = analytic_grad[ix]
        error = abs(numerical - analytic) / max(abs(numerical) + abs(analytic), 1e-300)
        print("numerical: %f analytic: %f, relative error: %e" % (numerical, analytic, error))
        errors.append(error)
    return errors
