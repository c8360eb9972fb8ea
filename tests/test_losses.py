"""Softmax cross-entropy, SVM and MSE losses against fastfc.reference,
numerical gradients, extreme values and bad labels."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R
from fastfc.gradcheck import eval_numerical_gradient, rel_error

from testutil import assert_close, noncontiguous, num_threads

CLASS_LOSSES = ["softmax_loss", "svm_loss"]
SHAPES = [(1, 1), (1, 10), (7, 3), (33, 17), (4096, 10)]


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(rng, dtype, tol, name, shape):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    loss, dx = getattr(F, name)(x, y)
    ref_loss, ref_dx = getattr(R, name)(x, y)
    assert isinstance(loss, float) and dx.dtype == dtype
    assert abs(loss - ref_loss) <= 10 * tol * max(1.0, abs(ref_loss))
    assert_close(dx, ref_dx, tol)


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_numerical_gradient(rng, name):
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    _, dx = getattr(F, name)(x, y)
    numeric = eval_numerical_gradient(lambda v: getattr(F, name)(v, y)[0], x)
    assert rel_error(dx, numeric) < 1e-7


def test_mse_matches_reference_and_gradient(rng, dtype, tol):
    pred = rng.standard_normal((9, 5)).astype(dtype)
    target = rng.standard_normal((9, 5)).astype(dtype)
    loss, dpred = F.mse_loss(pred, target)
    ref_loss, ref_dpred = R.mse_loss(pred, target)
    assert abs(loss - ref_loss) <= 10 * tol * max(1.0, ref_loss)
    assert_close(dpred, ref_dpred, tol)
    if dtype == np.float64:
        numeric = eval_numerical_gradient(lambda v: F.mse_loss(v, target)[0], pred)
        assert rel_error(dpred, numeric) < 1e-7


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_softmax_extreme_logits_stay_finite(big):
    x = np.array([[big, -big, 0.0], [-big, big, big]], dtype=np.float32)
    y = np.array([1, 0])
    loss, dx = F.softmax_loss(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    ref_loss, ref_dx = R.softmax_loss(x.astype(np.float64), y)
    assert abs(loss - ref_loss) <= 1e-6 * ref_loss
    assert_close(dx, ref_dx, 1e-6)


def test_softmax_minus_infinity_entries():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]])
    y = np.array([2, 1])
    loss, dx = F.softmax_loss(x, y)
    ref_loss, ref_dx = R.softmax_loss(x, y)
    assert np.isfinite(loss) and abs(loss - ref_loss) < 1e-12
    np.testing.assert_allclose(dx, ref_dx, atol=1e-15)
    assert dx[0, 1] == 0 and dx[1, 0] == 0


def test_nan_scores_propagate():
    x = np.array([[np.nan, 1.0], [0.0, 1.0]])
    loss, dx = F.softmax_loss(x, np.array([0, 1]))
    assert np.isnan(loss) and np.isnan(dx[0]).all() and np.isfinite(dx[1]).all()


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_any_integer_label_dtype_and_strides(rng, name):
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 12)
    want = getattr(R, name)(x, y[::2])
    for labels in (y[::2], y[::2].astype(np.uint8), y[::2].astype(np.int32), list(y[::2])):
        loss, dx = getattr(F, name)(noncontiguous(x), labels)
        assert abs(loss - want[0]) < 1e-12
        np.testing.assert_allclose(dx, want[1], atol=1e-15)


@pytest.mark.parametrize("name", CLASS_LOSSES + ["mse_loss"])
def test_thread_counts_agree(rng, name):
    x = rng.standard_normal((3000, 50)).astype(np.float32)
    second = rng.integers(0, 50, 3000) if name != "mse_loss" else rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in (1, 2, 4):
        with num_threads(n):
            results.append(getattr(F, name)(x, second))
    for loss, grad in results[1:]:
        assert abs(loss - results[0][0]) <= 1e-6 * abs(results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize(
    "y,error,match",
    [
        (np.array([0, 3]), ValueError, "outside"),
        (np.array([-1, 0]), ValueError, "outside"),
        (np.array([0, 1, 2]), ValueError, "3 labels"),
        (np.array([0.0, 1.0]), TypeError, "integer"),
        (np.array([[0, 1]]), ValueError, "1-d"),
    ],
)
def test_bad_labels(name, y, error, match):
    with pytest.raises(error, match=match):
        getattr(F, name)(np.ones((2, 3)), y)


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_bad_scores(name):
    with pytest.raises(ValueError, match="x must be \\(N, C\\)"):
        getattr(F, name)(np.ones(3), np.array([0]))
    with pytest.raises(ValueError, match="x is empty"):
        getattr(F, name)(np.ones((0, 3)), np.array([], dtype=np.int64))
    with pytest.raises(TypeError, match="x must be a float32"):
        getattr(F, name)(np.ones((2, 3), np.int16), np.array([0, 1]))


def test_mse_bad_input():
    with pytest.raises(ValueError, match="pred has shape"):
        F.mse_loss(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="pred is float32 but target is float64"):
        F.mse_loss(np.ones(3, np.float32), np.ones(3))
