"""The numerical-gradient helpers against functions with known derivatives."""
import numpy as np

from fastfc.gradcheck import (eval_numerical_gradient, eval_numerical_gradient_array,
                              grad_check_sparse, rel_error)


def test_scalar_function_gradient(rng):
    x = rng.standard_normal((3, 4))
    grad = eval_numerical_gradient(lambda v: float(np.sum(v ** 3)), x)
    assert rel_error(grad, 3 * x ** 2) < 1e-8


def test_array_function_gradient(rng):
    x = rng.standard_normal(5)
    df = rng.standard_normal(5)
    grad = eval_numerical_gradient_array(np.sin, x, df)
    assert rel_error(grad, np.cos(x) * df) < 1e-8


def test_x_is_restored(rng):
    x = rng.standard_normal(6)
    before = x.copy()
    eval_numerical_gradient(lambda v: float(v.sum()), x)
    np.testing.assert_array_equal(x, before)


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0
    assert abs(rel_error([1.0], [3.0]) - 0.5) < 1e-15


def test_sparse_check_flags_a_wrong_gradient(rng):
    x = rng.standard_normal((4, 4))
    f = lambda v: float(np.sum(v ** 2))  # noqa: E731
    assert max(grad_check_sparse(f, x, 2 * x, num_checks=8, seed=0)) < 1e-8
    assert min(grad_check_sparse(f, x, 3 * x, num_checks=8, seed=0)) > 0.1
