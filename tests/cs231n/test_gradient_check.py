"""fastfc.cs231n.gradient_check: the course's functions, defaults and output."""
import random

import numpy as np

from fastfc.cs231n.gradient_check import (eval_numerical_gradient, eval_numerical_gradient_array,
                                          grad_check_sparse)


def test_eval_numerical_gradient_prints_by_default_as_the_course(capsys):
    x = np.array([1.0, -2.0])
    grad = eval_numerical_gradient(lambda x: float(np.sum(x ** 3)), x)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0])  # restored
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("(0,)")
    eval_numerical_gradient(lambda x: float(np.sum(x)), x, verbose=False)
    assert capsys.readouterr().out == ""


def test_eval_numerical_gradient_array():
    x = np.random.randn(3, 4)
    df = np.random.randn(3, 4)
    grad = eval_numerical_gradient_array(lambda x: np.sin(x), x, df)
    np.testing.assert_allclose(grad, np.cos(x) * df, rtol=1e-7, atol=1e-10)


def test_grad_check_sparse_prints_a_line_per_entry_and_follows_random_seed(capsys):
    w = np.random.randn(5, 6)
    f = lambda w: float(np.sum(w ** 2))  # noqa: E731
    random.seed(0)
    errors = grad_check_sparse(f, w, 2 * w, num_checks=4)
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 4 and all(line.startswith("numerical: ") for line in first)
    assert max(errors) < 1e-8
    random.seed(0)
    grad_check_sparse(f, w, 2 * w, num_checks=4)
    assert capsys.readouterr().out.splitlines() == first
    assert max(grad_check_sparse(f, w, 3 * w, num_checks=2)) > 0.1  # a wrong gradient shows
