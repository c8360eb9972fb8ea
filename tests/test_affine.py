"""fastfc affine and fused affine-ReLU kernels against fastfc.reference,
numerical gradients, thread counts and bad input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R
from fastfc import _info
from fastfc.gradcheck import eval_numerical_gradient_array, rel_error

from testutil import TOLERANCES, assert_close, noncontiguous, num_threads

# (x shape, d_out): N = 1, odd sizes off the SIMD width, a 4-d input, and
# one big enough that the GEMM is split across threads (in float32, on fastfc's
# own GEMM where the CPU has one: partial register tiles in both directions).
SHAPES = [((1, 7), 3), ((5, 13), 17), ((3, 2, 3, 5), 9), ((129, 65), 33), ((256, 300), 130)]
PAIRS = [("affine_forward", "affine_backward"), ("affine_relu_forward", "affine_relu_backward")]


def make_inputs(rng, x_shape, d_out, dtype):
    d_in = int(np.prod(x_shape[1:]))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype)
    b = rng.standard_normal(d_out).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("forward,backward", PAIRS)
@pytest.mark.parametrize("x_shape,d_out", SHAPES)
def test_matches_reference(rng, dtype, tol, forward, backward, x_shape, d_out):
    x, w, b = make_inputs(rng, x_shape, d_out, dtype)
    out, cache = getattr(F, forward)(x, w, b)
    ref_out, ref_cache = getattr(R, forward)(x, w, b)
    assert out.dtype == dtype and out.shape == ref_out.shape
    assert_close(out, ref_out, tol)

    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = getattr(F, backward)(dout, cache)
    ref_grads = getattr(R, backward)(dout, ref_cache)
    for name, got, want in zip(("dx", "dw", "db"), grads, ref_grads):
        assert got.shape == want.shape and got.dtype == dtype, name
        assert_close(got, want, tol, err_msg=name)


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_compute_dx_false_skips_dx_only(rng, forward, backward):
    x, w, b = make_inputs(rng, (6, 11), 5, np.float64)
    out, cache = getattr(F, forward)(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = getattr(F, backward)(dout, cache, compute_dx=False)
    assert dx is None
    _, dw_full, db_full = getattr(F, backward)(dout, cache)
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_numerical_gradients(rng, forward, backward):
    x, w, b = make_inputs(rng, (4, 3, 5), 6, np.float64)
    fwd = getattr(F, forward)
    out, cache = fwd(x, w, b)
    # Keep pre-activations away from the ReLU kink so differences are exact.
    assert np.all(np.abs(R.affine_forward(x, w, b)[0]) > 1e-4)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = getattr(F, backward)(dout, cache)
    assert rel_error(dx, eval_numerical_gradient_array(lambda v: fwd(v, w, b)[0], x, dout)) < 1e-7
    assert rel_error(dw, eval_numerical_gradient_array(lambda v: fwd(x, v, b)[0], w, dout)) < 1e-7
    assert rel_error(db, eval_numerical_gradient_array(lambda v: fwd(x, w, v)[0], b, dout)) < 1e-7


def test_relu_gradient_is_zero_at_exactly_zero():
    # Pre-activation exactly 0: the fused kernel, like torch, passes no gradient.
    x = np.array([[1.0, -1.0]])
    w = np.array([[1.0], [1.0]])
    b = np.zeros(1)
    out, cache = F.affine_relu_forward(x, w, b)
    assert out[0, 0] == 0.0
    _, dw, db = F.affine_relu_backward(np.ones((1, 1)), cache)
    assert db[0] == 0.0 and np.all(dw == 0.0)


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_noncontiguous_and_fortran_inputs(rng, forward, backward):
    x, w, b = make_inputs(rng, (9, 14), 7, np.float64)
    ref_out, ref_cache = getattr(R, forward)(x, w, b)
    out, cache = getattr(F, forward)(noncontiguous(x), np.asfortranarray(w), b[::-1][::-1])
    assert_close(out, ref_out, 1e-12)
    dout = rng.standard_normal(out.shape)
    got = getattr(F, backward)(noncontiguous(dout), cache)
    for g, r in zip(got, getattr(R, backward)(dout, ref_cache)):
        assert_close(g, r, 1e-12)


def on_thread_counts(rng, forward, backward):
    """(out, dx, dw, db) of a float32 layer 301 -> 150 at batch 200 (split
    across threads) on 1, 2 and 3 threads."""
    x, w, b = make_inputs(rng, (200, 301), 150, np.float32)
    dout = rng.standard_normal((200, 150)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        with num_threads(n):
            out, cache = getattr(F, forward)(x, w, b)
            results.append((out,) + getattr(F, backward)(dout, cache))
    return results


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_thread_counts_agree(rng, forward, backward):
    results = on_thread_counts(rng, forward, backward)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            assert_close(got, want, 2e-5)
        # The bias gradient sums rows in the same order on any thread count.
        np.testing.assert_array_equal(other[3], results[0][3])


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_fastfcs_own_gemms_give_the_same_bits_on_any_thread_count(rng, forward, backward):
    """Where a float32 layer's forward and weight-gradient products run on
    fastfc's own GEMM (unpacked AVX-512 or packed AVX2, see show_config), each
    element's sum runs over K in one order whatever the thread split."""
    if _info.gemm_kernels().startswith("none"):
        pytest.skip("this CPU sends every product to the BLAS")
    results = on_thread_counts(rng, forward, backward)
    for other in results[1:]:
        for i in (0, 2, 3):  # out, dw, db (dx: B transposed, the BLAS's)
            np.testing.assert_array_equal(other[i], results[0][i])


@pytest.mark.parametrize("forward", ["affine_forward", "affine_relu_forward"])
@pytest.mark.parametrize("n_batch, d_in, threads", [(64, 784, 2), (64, 784, 3), (40, 1037, 4), (90, 600, 2),
                                                    (600, 520, 2)])
def test_a_short_batch_over_a_long_input_splits_k_across_threads(rng, dtype, tol, forward, n_batch,
                                                                  d_in, threads):
    """At least 256 inputs per thread and fewer than 48 rows per thread (a
    first layer at batch 64) or more inputs than rows (90 x 600): the forward's
    threads split d_in and add their partial products; 600 rows over 520
    inputs stay split by rows. Against the reference, with a NaN and an
    infinity in the batch, and the same bits on every call with one thread
    count."""
    x, w, b = make_inputs(rng, (n_batch, d_in), 100, dtype)
    x[3, 5], x[7, :] = np.nan, 0
    b[2] = np.inf
    want, _ = getattr(R, forward)(x, w, b)
    with num_threads(threads):
        out, _ = getattr(F, forward)(x, w, b)
        again, _ = getattr(F, forward)(x, w, b)
    np.testing.assert_array_equal(out, again)
    assert np.isnan(out[3]).all() and np.isposinf(np.delete(out, 3, axis=0)[:, 2]).all()
    finite = np.isfinite(want)
    assert_close(out[finite], want[finite], tol)


def test_nan_and_inf_propagate():
    x = np.array([[np.nan, 1.0], [np.inf, 0.0]], dtype=np.float32)
    w = np.ones((2, 2), np.float32)
    b = np.zeros(2, np.float32)
    out, _ = F.affine_forward(x, w, b)
    assert np.isnan(out[0]).all() and np.isposinf(out[1]).all()
    out, _ = F.affine_relu_forward(x, w, b)
    assert np.isnan(out[0]).all()


@pytest.mark.parametrize("forward", ["affine_forward", "affine_relu_forward"])
def test_nan_and_inf_propagate_through_a_training_sized_layer(rng, forward):
    """At a float32 shape whose product runs on fastfc's packed GEMM (where the
    CPU allows), with bias and ReLU in its store: NaN rows stay NaN, +inf
    stays +inf, -inf becomes 0 under ReLU, the rest as the reference."""
    x = rng.standard_normal((96, 160)).astype(np.float32)
    w = (rng.standard_normal((160, 150)) / 13).astype(np.float32)  # 150: a partial register tile
    b = rng.standard_normal(150).astype(np.float32)
    x[5, 7] = np.nan
    x[17, :] = 0
    b[3] = np.inf
    b[4] = -np.inf
    with num_threads(2):
        out, _ = getattr(F, forward)(x, w, b)
    want, _ = getattr(R, forward)(x, w, b)
    others = np.arange(96) != 5  # row 5 is NaN throughout
    assert np.isnan(out[5]).all() and np.isposinf(out[others, 3]).all()
    if forward == "affine_relu_forward":
        assert (out[others, 4] == 0).all()
    else:
        assert np.isneginf(out[others, 4]).all()
    finite = np.isfinite(want)
    assert_close(out[finite], want[finite], TOLERANCES[np.float32])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))


@pytest.mark.parametrize("forward", ["affine_forward", "affine_relu_forward"])
@pytest.mark.parametrize(
    "x,w,b,error,match",
    [
        (np.ones((2, 3)), np.ones((4, 5)), np.ones(5), ValueError, "w has shape"),
        (np.ones((2, 3)), np.ones((3, 5)), np.ones(4), ValueError, "b must have shape"),
        (np.ones((2, 3)), np.ones(3), np.ones(1), ValueError, "w must have shape"),
        (np.ones(3), np.ones((3, 5)), np.ones(5), ValueError, "x must have shape"),
        (np.array(1.0), np.ones((1, 5)), np.ones(5), ValueError, "x must be an array"),
        (np.ones((0, 3)), np.ones((3, 5)), np.ones(5), ValueError, "x is empty"),
        (np.ones((2, 3), np.float32), np.ones((3, 5)), np.ones(5), TypeError, "x is float32 but w is float64"),
        (np.ones((2, 3), np.int64), np.ones((3, 5)), np.ones(5), TypeError, "x must be a float32"),
        (np.ones((2, 3), np.complex128), np.ones((3, 5)), np.ones(5), TypeError, "x must be a float32"),
        (np.ones((2, 3)), np.ones((3, 5)), np.ones(5, np.float32), TypeError, "b is float32"),
        (np.ones((2, 3)), [["a"] * 5] * 3, np.ones(5), TypeError, "w must be a float32"),
    ],
)
def test_bad_input(forward, x, w, b, error, match):
    with pytest.raises(error, match=match):
        getattr(F, forward)(x, w, b)


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_bad_dout(forward, backward):
    out, cache = getattr(F, forward)(np.ones((2, 3)), np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match="dout must have shape"):
        getattr(F, backward)(np.ones((2, 5)), cache)
    with pytest.raises(TypeError, match="dout is float32"):
        getattr(F, backward)(np.ones((2, 4), np.float32), cache)


def test_bias_gradient_of_a_call_in_pieces_does_not_depend_on_threads(rng):
    """A backward of 8.6G multiply-adds runs in two pieces of rows (for
    Ctrl-C), db summed piece by piece: the pieces are cut the same on any
    thread count, so db stays bit for bit the same."""
    x = rng.standard_normal((1024, 4096)).astype(np.float32)
    w = (rng.standard_normal((4096, 1024)) / 64).astype(np.float32)
    dout = rng.standard_normal((1024, 1024)).astype(np.float32)
    _, cache = F.affine_forward(x, w, np.zeros(1024, np.float32))
    db = {}
    for n in (1, 2):
        with num_threads(n):
            db[n] = F.affine_backward(dout, cache, compute_dx=False)[2]
    np.testing.assert_array_equal(db[1], db[2])
    assert_close(db[1], dout.astype(np.float64).sum(axis=0), 1e-5)
