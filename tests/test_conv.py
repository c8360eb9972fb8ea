"""fastfc conv_forward / conv_backward against both NumPy references (the
vectorized im2col one and the naive loops), numerical gradients, the
output-size rule, thread counts, non-contiguous inputs and bad input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R
from fastfc.gradcheck import eval_numerical_gradient_array, rel_error

from testutil import assert_close, num_threads

# (x shape, w shape, stride, pad): N = 1 and C = 1, C = 3, H != W, kernels
# 1x1, 3x3, 5x3 and an even 2x4, strides 1 to 3, pad 0 to 2; the 2x3x8x10
# case's stride 2 does not tile the input (the last row and column are unused).
# 3x3 stride-1 layers with 8 or more input channels run Winograd's F(2x2, 3x3)
# (csrc/conv.c), the rest im2col; WINOGRAD_CASES cover its edges.
WINOGRAD_CASES = [
    ((3, 8, 7, 9), (5, 8, 3, 3), 1, 0),  # the fewest channels it takes; odd 5x7 output
    ((2, 9, 6, 5), (16, 9, 3, 3), 1, 2),  # pad 2 (dx by pad 0), odd output width
    ((1, 8, 5, 70), (4, 8, 3, 3), 1, 1),  # tile rows of 35 tiles: more than one SIMD run
    ((2, 16, 1, 1), (8, 16, 3, 3), 1, 1),  # a 1x1 image: every tile is mostly padding
    ((5, 12, 13, 11), (10, 12, 3, 3), 1, 1),  # 210 tiles: blocks of 128 span images
]
CASES = WINOGRAD_CASES + [
    ((2, 7, 6, 6), (4, 7, 3, 3), 1, 1),  # one channel short of Winograd: im2col
    ((1, 1, 5, 7), (2, 1, 3, 3), 1, 0),
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1),
    ((3, 3, 8, 5), (2, 3, 5, 3), 2, 2),
    ((2, 3, 6, 9), (3, 3, 1, 1), 1, 0),
    ((2, 3, 8, 10), (3, 3, 3, 3), 2, 0),
    ((4, 2, 6, 6), (3, 2, 2, 4), 3, 1),
    ((1, 3, 4, 4), (5, 3, 5, 3), 1, 2),
    ((2, 32, 16, 16), (64, 32, 3, 3), 1, 1),  # a training layer: float32 runs fastfc's packed GEMM
]
CASE_IDS = ["x%s-w%s-s%d-p%d" % ("x".join(map(str, x)), "x".join(map(str, w)), s, p)
            for x, w, s, p in CASES]


def make_inputs(rng, x_shape, w_shape, dtype):
    fan_in = int(np.prod(w_shape[1:]))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


def out_shape(x_shape, w_shape, stride, pad):
    return (x_shape[0], w_shape[0], (x_shape[2] + 2 * pad - w_shape[2]) // stride + 1,
            (x_shape[3] + 2 * pad - w_shape[3]) // stride + 1)


@pytest.mark.parametrize("ref_forward,ref_backward", [
    ("conv_forward", "conv_backward"), ("conv_forward_naive", "conv_backward_naive")],
    ids=["vectorized", "naive"])
@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CASES, ids=CASE_IDS)
def test_matches_references(rng, dtype, tol, ref_forward, ref_backward, x_shape, w_shape,
                            stride, pad):
    x, w, b = make_inputs(rng, x_shape, w_shape, dtype)
    out, cache = F.conv_forward(x, w, b, stride=stride, pad=pad)
    ref_out, ref_cache = getattr(R, ref_forward)(x, w, b, stride=stride, pad=pad)
    assert out.shape == out_shape(x_shape, w_shape, stride, pad) == ref_out.shape
    assert out.dtype == dtype and ref_out.dtype == dtype
    assert_close(out, ref_out, tol)

    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = F.conv_backward(dout, cache)
    ref_grads = getattr(R, ref_backward)(dout, ref_cache)
    for name, got, want, like in zip(("dx", "dw", "db"), grads, ref_grads, (x, w, b)):
        assert got.shape == like.shape and got.dtype == dtype, name
        assert want.shape == like.shape and want.dtype == dtype, name
        assert_close(got, want, tol, err_msg=name)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", [
    ((2, 3, 5, 5), (3, 3, 3, 3), 1, 1), ((1, 2, 7, 6), (2, 2, 5, 3), 2, 2),
    ((2, 1, 6, 7), (2, 1, 2, 2), 3, 0), ((2, 8, 5, 4), (3, 8, 3, 3), 1, 1),
    ((1, 8, 4, 5), (2, 8, 3, 3), 1, 0), ((1, 8, 3, 3), (2, 8, 3, 3), 1, 2)])
@pytest.mark.parametrize("side", ["fastfc", "reference"])
def test_numerical_gradients(rng, side, x_shape, w_shape, stride, pad):
    M = F if side == "fastfc" else R
    x, w, b = make_inputs(rng, x_shape, w_shape, np.float64)
    out, cache = M.conv_forward(x, w, b, stride=stride, pad=pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = M.conv_backward(dout, cache)

    def fwd(x_, w_, b_):
        return M.conv_forward(x_, w_, b_, stride=stride, pad=pad)[0]

    assert rel_error(dx, eval_numerical_gradient_array(lambda v: fwd(v, w, b), x, dout)) < 1e-7
    assert rel_error(dw, eval_numerical_gradient_array(lambda v: fwd(x, v, b), w, dout)) < 1e-7
    assert rel_error(db, eval_numerical_gradient_array(lambda v: fwd(x, w, v), b, dout)) < 1e-7


@pytest.mark.parametrize("channels", [2, 8], ids=["im2col", "winograd"])
def test_compute_dx_false_skips_dx_only(rng, channels):
    x, w, b = make_inputs(rng, (3, channels, 6, 5), (4, channels, 3, 3), np.float64)
    for M in (F, R):
        out, cache = M.conv_forward(x, w, b, stride=1, pad=1)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = M.conv_backward(dout, cache, compute_dx=False)
        assert dx is None
        _, dw_full, db_full = M.conv_backward(dout, cache)
        np.testing.assert_allclose(dw, dw_full, rtol=1e-13)
        np.testing.assert_allclose(db, db_full, rtol=1e-13)
    assert R.conv_backward_naive(dout, R.conv_forward_naive(x, w, b, 1, 1)[1],
                                 compute_dx=False)[0] is None


def test_stride_that_does_not_tile_ignores_leftover_rows_and_columns(rng):
    # H = 8, W = 10, 3x3 kernel, stride 2: out is 3x4 (floor), windows end at
    # row 6 and column 8, so row 7 and column 9 affect nothing (PyTorch's rule).
    x, w, b = make_inputs(rng, (2, 2, 8, 10), (3, 2, 3, 3), np.float64)
    out, cache = F.conv_forward(x, w, b, stride=2)
    assert out.shape == (2, 3, 3, 4)
    x_changed = x.copy()
    x_changed[:, :, 7, :] = 100.0
    x_changed[:, :, :, 9] = -100.0
    np.testing.assert_array_equal(F.conv_forward(x_changed, w, b, stride=2)[0], out)
    dx, _, _ = F.conv_backward(np.ones_like(out), cache)
    assert np.all(dx[:, :, 7, :] == 0) and np.all(dx[:, :, :, 9] == 0)
    assert np.all(dx[:, :, :7, :9] != 0)


def test_padding_is_zeros(rng):
    # A 1x1 kernel with pad 1 sees only the padding on the border: out = b there.
    x, w, b = make_inputs(rng, (1, 2, 3, 4), (2, 2, 1, 1), np.float64)
    out, _ = F.conv_forward(x, w, b, pad=1)
    assert out.shape == (1, 2, 5, 6)
    for f in range(2):
        border = np.concatenate([out[0, f, 0], out[0, f, -1], out[0, f, :, 0], out[0, f, :, -1]])
        np.testing.assert_array_equal(border, b[f])


@pytest.mark.parametrize("channels", [3, 8], ids=["im2col", "winograd"])
def test_thread_counts_agree(rng, dtype, tol, channels):
    # Enough images for both threads; N = 1 also splits one image's pixels
    # (im2col) or its tiles (Winograd).
    for x_shape in [(9, channels, 12, 11), (1, channels, 20, 17)]:
        x, w, b = make_inputs(rng, x_shape, (6, channels, 3, 3), dtype)
        dout = rng.standard_normal(out_shape(x_shape, w.shape, 1, 1)).astype(dtype)
        results = []
        for n in (1, 2):
            with num_threads(n):
                out, cache = F.conv_forward(x, w, b, stride=1, pad=1)
                results.append((out,) + F.conv_backward(dout, cache))
        (out1, *grads1), (out2, *grads2) = results
        np.testing.assert_array_equal(out1, out2)  # each output is one thread's GEMMs
        for g1, g2 in zip(grads1, grads2):  # dw, db: per-thread partial sums
            assert_close(g2, g1, tol)


def test_large_image_is_lowered_in_pixel_blocks(rng):
    # Columns of one image here take 64*5*5 * 128*128 * 4 B = 100 MiB: im2col
    # lowers it a block of output pixels at a time (sized for the cache, within
    # the 64 MiB scratch budget), and N = 1 splits those blocks between threads.
    x, w, b = make_inputs(rng, (1, 64, 128, 128), (2, 64, 5, 5), np.float32)
    with num_threads(2):
        out, cache = F.conv_forward(x, w, b, stride=1, pad=2)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dx, dw, db = F.conv_backward(dout, cache)
    ref_out, ref_cache = R.conv_forward(x, w, b, stride=1, pad=2)
    assert_close(out, ref_out, 1e-4)
    for got, want in zip((dx, dw, db), R.conv_backward(dout, ref_cache)):
        assert_close(got, want, 1e-4)


def test_noncontiguous_inputs(rng):
    x, w, b = make_inputs(rng, (3, 2, 7, 6), (4, 2, 3, 2), np.float64)
    out, cache = F.conv_forward(x, w, b, stride=1, pad=1)
    dout = rng.standard_normal(out.shape)
    want = (out,) + F.conv_backward(dout, cache)
    x_nc = np.asfortranarray(x)
    w_nc = np.repeat(w, 2, axis=0)[::2]
    b_nc = np.repeat(b, 2)[::2]
    dout_nc = np.asfortranarray(dout)
    assert not (x_nc.flags.c_contiguous or w_nc.flags.c_contiguous or b_nc.flags.c_contiguous
                or dout_nc.flags.c_contiguous)
    out_nc, cache_nc = F.conv_forward(x_nc, w_nc, b_nc, stride=1, pad=1)
    got = (out_nc,) + F.conv_backward(dout_nc, cache_nc)
    for g, wa in zip(got, want):
        assert_close(g, wa, 1e-12)


def good_args():
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((2, 3, 6, 6)), w=rng.standard_normal((4, 3, 3, 3)),
                b=np.zeros(4), stride=1, pad=0)


@pytest.mark.parametrize("change,exc,match", [
    (dict(x=np.zeros((3, 6, 6))), ValueError, "x must have shape"),
    (dict(x=np.zeros((0, 3, 6, 6))), ValueError, "x is empty"),
    (dict(w=np.zeros((4, 3, 3))), ValueError, "w must have shape"),
    (dict(w=np.zeros((4, 3, 0, 3))), ValueError, "w must have"),
    (dict(w=np.zeros((4, 2, 3, 3))), ValueError, "w has 2 input channels but x has 3"),
    (dict(w=np.zeros((4, 3, 7, 3))), ValueError, "w's 7x3 kernel is larger than the padded"),
    (dict(w=np.zeros((4, 3, 9, 3)), pad=1), ValueError, "w's 9x3 kernel"),
    (dict(b=np.zeros(5)), ValueError, "b must have shape"),
    (dict(b=np.zeros((4, 1))), ValueError, "b must have shape"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(stride=-2), ValueError, "stride must be >= 1"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(stride=True), TypeError, "stride must be an int"),
    (dict(pad=-1), ValueError, "pad must be >= 0"),
    (dict(pad="1"), TypeError, "pad must be an int"),
    (dict(x=np.zeros((2, 3, 6, 6), dtype=np.int64)), TypeError, "x must be a float32"),
    (dict(w=np.zeros((4, 3, 3, 3), dtype=np.float32)), TypeError, "x is float64 but w is float32"),
    (dict(b=np.zeros(4, dtype=np.float32)), TypeError, "x is float64 but b is float32"),
])
def test_bad_input(change, exc, match):
    args = good_args()
    args.update(change)
    with pytest.raises(exc, match=match):
        F.conv_forward(**args)


def test_kernel_exactly_the_padded_size_is_fine(rng):
    x, w, b = make_inputs(rng, (2, 1, 4, 3), (2, 1, 6, 5), np.float64)
    out, _ = F.conv_forward(x, w, b, pad=1)
    assert out.shape == (2, 2, 1, 1)
    assert_close(out, R.conv_forward_naive(x, w, b, pad=1)[0], 1e-12)


def test_bad_dout():
    args = good_args()
    out, cache = F.conv_forward(**args)
    with pytest.raises(ValueError, match="dout must have the forward output's shape"):
        F.conv_backward(out[:, :2], cache)
    with pytest.raises(TypeError, match="dout is float32"):
        F.conv_backward(out.astype(np.float32), cache)
