"""The numerical-gradient helpers against functions with known derivatives,
and their warning for a check in float32."""
import warnings

import numpy as np
import pytest

from fastfc import gradcheck
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


# ---- a float32 check warns ----------------------------------------------------------------

def _course_check(dtype):
    """The course's check of a model's W1: f(x) is the loss, x the weights."""
    from fastfc.models import FullyConnectedNet
    model = FullyConnectedNet([4], input_dim=3, num_classes=2, dtype=dtype, seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3)).astype(dtype)
    y = np.array([0, 1, 1, 0, 1])
    return (lambda _: model.loss(X, y)[0]), model.params["W1"]


@pytest.mark.parametrize("check", ["dense", "array", "sparse", "course dense", "course sparse"])
def test_a_float32_gradient_check_warns_and_float64_does_not(check, capsys):
    from fastfc.cs231n import gradient_check as course
    run = {
        "dense": lambda f, x: gradcheck.eval_numerical_gradient(f, x),
        "array": lambda f, x: gradcheck.eval_numerical_gradient_array(lambda w: w * 2, x, np.ones_like(x)),
        "sparse": lambda f, x: gradcheck.grad_check_sparse(f, x, np.zeros_like(x), num_checks=2),
        "course dense": lambda f, x: course.eval_numerical_gradient(f, x, verbose=False),
        "course sparse": lambda f, x: course.grad_check_sparse(f, x, np.zeros_like(x), num_checks=2),
    }[check]
    with pytest.warns(gradcheck.PrecisionWarning, match=r"x is float32.*float64") as caught:
        run(*_course_check(np.float32))
    assert len(caught) == 1  # once per check, not once per entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(*_course_check(np.float64))


def test_a_float32_function_of_float64_x_warns():
    f = lambda x: np.float32(np.sum(x ** 2))  # noqa: E731
    with pytest.warns(gradcheck.PrecisionWarning, match=r"f\(x\) is float32"):
        gradcheck.eval_numerical_gradient(f, np.ones(3))
