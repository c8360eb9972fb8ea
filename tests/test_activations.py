"""ReLU, sigmoid, tanh and dropout kernels against fastfc.reference,
numerical gradients, thread counts, special values and bad input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R
from fastfc.gradcheck import eval_numerical_gradient_array, rel_error

from testutil import assert_close, noncontiguous, num_threads

ACTIVATIONS = ["relu", "sigmoid", "tanh"]
# 1 element, odd sizes off the SIMD width, and one large enough for threads.
SHAPES = [(1,), (7,), (3, 17), (2, 3, 5, 7), (513, 257)]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(rng, dtype, tol, name, shape):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    out, cache = getattr(F, f"{name}_forward")(x)
    ref_out, _ = getattr(R, f"{name}_forward")(x)
    assert out.dtype == dtype
    assert_close(out, ref_out, tol)
    dout = rng.standard_normal(shape).astype(dtype)
    dx = getattr(F, f"{name}_backward")(dout, cache)
    assert dx.dtype == dtype
    # Same cache on both sides: 1 - t**2 near saturation magnifies the last-ulp
    # differences between libm's and NumPy's tanh in float32.
    assert_close(dx, getattr(R, f"{name}_backward")(dout, cache), tol)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_numerical_gradient(rng, name):
    x = rng.standard_normal((4, 9))
    x[np.abs(x) < 1e-3] = 0.5  # ReLU's kink at 0 has no derivative to check
    forward = getattr(F, f"{name}_forward")
    dout = rng.standard_normal(x.shape)
    _, cache = forward(x)
    dx = getattr(F, f"{name}_backward")(dout, cache)
    assert rel_error(dx, eval_numerical_gradient_array(lambda v: forward(v)[0], x, dout)) < 1e-7


def test_relu_special_values():
    x = np.array([np.nan, 0.0, -0.0, -np.inf, np.inf, -1.0, 2.0])
    out, cache = F.relu_forward(x)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], [0.0, 0.0, 0.0, np.inf, 0.0, 2.0])
    dx = F.relu_backward(np.ones_like(x), cache)
    # Gradient 0 at exactly 0 and at NaN, as torch.
    np.testing.assert_array_equal(dx, [0, 0, 0, 0, 1, 0, 1])


def test_sigmoid_and_tanh_saturate_without_overflow():
    x = np.array([-1e4, -800.0, 0.0, 800.0, 1e4], dtype=np.float32)
    with np.errstate(all="raise"):
        s, _ = F.sigmoid_forward(x)
        t, _ = F.tanh_forward(x)
    np.testing.assert_array_equal(s, [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(t, [-1.0, -1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_noncontiguous_input(rng, name):
    x = rng.standard_normal((6, 11))
    out, _ = getattr(F, f"{name}_forward")(noncontiguous(x))
    assert_close(out, getattr(R, f"{name}_forward")(x)[0], 1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS + ["dropout", "dropout-offset"])
def test_thread_counts_agree_bitwise(rng, name):
    x = rng.standard_normal(300_001).astype(np.float32)
    results = []
    for n in (1, 2, 4):
        with num_threads(n):
            if name.startswith("dropout"):
                offset = 2**32 - 100_000 if name == "dropout-offset" else 0  # pieces across 2**32
                results.append(F.dropout_forward(x, 0.3, seed=42, offset=offset)[0])
            else:
                results.append(getattr(F, f"{name}_forward")(x)[0])
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9])
def test_dropout_matches_reference_bitwise(rng, dtype, shape, p):
    x = rng.standard_normal(shape).astype(dtype)
    out, cache = F.dropout_forward(x, p, seed=2024)
    ref_out, ref_cache = R.dropout_forward(x, p, seed=2024)
    np.testing.assert_array_equal(out, ref_out)
    dout = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(F.dropout_backward(dout, cache), R.dropout_backward(dout, ref_cache))


def test_dropout_statistics_and_scaling(rng):
    x = np.ones(200_000, np.float32)
    out, cache = F.dropout_forward(x, 0.3, seed=7)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.005
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    # Backward drops exactly the same elements with the same scale.
    np.testing.assert_array_equal(F.dropout_backward(x, cache), out)
    # A different seed gives a different mask.
    assert not np.array_equal(F.dropout_forward(x, 0.3, seed=8)[0], out)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_at_an_offset_is_the_slice_of_the_whole_arrays_mask(rng, dtype, p):
    whole = rng.standard_normal((12, 7, 3)).astype(dtype)
    out, cache = F.dropout_forward(whole, p, seed=99)
    dout = rng.standard_normal(whole.shape).astype(dtype)
    dx = F.dropout_backward(dout, cache)
    for lo, hi in [(0, 5), (5, 12), (3, 4)]:
        offset = lo * 7 * 3
        part, part_cache = F.dropout_forward(whole[lo:hi], p, seed=99, offset=offset)
        np.testing.assert_array_equal(part, out[lo:hi])
        np.testing.assert_array_equal(F.dropout_backward(dout[lo:hi], part_cache), dx[lo:hi])
        ref, ref_cache = R.dropout_forward(whole[lo:hi], p, seed=99, offset=offset)
        np.testing.assert_array_equal(ref, part)
        np.testing.assert_array_equal(R.dropout_backward(dout[lo:hi], ref_cache), dx[lo:hi])
    # Another offset draws another mask; offset 0 is today's mask of x alone.
    assert not np.array_equal(F.dropout_forward(whole[5:], p, seed=99, offset=1)[0], out[5:])
    np.testing.assert_array_equal(F.dropout_forward(whole[5:], p, seed=99, offset=0)[0],
                                  F.dropout_forward(whole[5:], p, seed=99)[0])


@pytest.mark.parametrize("offset", [2**32 - 50, 2**40 + 3, 2**63 - 1 - 200])
def test_dropout_at_large_offsets_matches_reference(rng, dtype, offset):
    x = rng.standard_normal(200).astype(dtype)
    out, cache = F.dropout_forward(x, 0.5, seed=5, offset=offset)
    ref, ref_cache = R.dropout_forward(x, 0.5, seed=5, offset=offset)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(F.dropout_backward(x, cache), R.dropout_backward(x, ref_cache))


def test_dropout_eval_mode_is_identity_and_seed_none_follows_numpy(rng):
    x = rng.standard_normal((5, 4))
    out, cache = F.dropout_forward(x, 0.5, train=False)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(F.dropout_backward(x, cache), x)
    np.random.seed(3)
    a = F.dropout_forward(x, 0.5)[0]
    np.random.seed(3)
    np.testing.assert_array_equal(F.dropout_forward(x, 0.5)[0], a)


def test_dropout_numerical_gradient(rng):
    x = rng.standard_normal((3, 7))
    dout = rng.standard_normal(x.shape)
    _, cache = F.dropout_forward(x, 0.4, seed=11)
    dx = F.dropout_backward(dout, cache)
    numeric = eval_numerical_gradient_array(lambda v: F.dropout_forward(v, 0.4, seed=11)[0], x, dout)
    assert rel_error(dx, numeric) < 1e-7


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(p=1.0), ValueError, "p "),
        (dict(p=-0.1), ValueError, "p "),
        (dict(p="half"), TypeError, "p must be"),
        (dict(p=0.5, seed=-1), ValueError, "seed"),
        (dict(p=0.5, seed=1.5), TypeError, "seed"),
        (dict(p=0.5, seed=1, offset=-1), ValueError, "offset"),
        (dict(p=0.5, seed=1, offset=2**63 - 4), ValueError, "offset"),
        (dict(p=0.5, seed=1, offset=2.0), TypeError, "offset"),
        (dict(p=0.5, seed=1, offset=True), TypeError, "offset"),
        (dict(p=0.5, seed=1, offset=-1, train=False), ValueError, "offset"),
    ],
)
def test_dropout_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.dropout_forward(np.ones(4), **kwargs)


def test_dropout_backward_checks_the_cached_offset():
    _, cache = F.dropout_forward(np.ones(4), 0.5, seed=1, offset=8)
    assert cache[5] == 8
    for offset, error in [(-1, ValueError), (2**63, ValueError), ("8", TypeError)]:
        with pytest.raises(error, match="offset"):
            F.dropout_backward(np.ones(4), cache[:5] + (offset,))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_bad_input(name):
    forward = getattr(F, f"{name}_forward")
    backward = getattr(F, f"{name}_backward")
    with pytest.raises(TypeError, match="x must be a float32"):
        forward(np.ones(3, dtype=np.int32))
    with pytest.raises(ValueError, match="0-d"):
        forward(np.float64(1.0))
    with pytest.raises(ValueError, match="x is empty"):
        forward(np.ones((0, 3)))
    _, cache = forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dout must have"):
        backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dout is float32"):
        backward(np.ones((2, 3), np.float32), cache)
