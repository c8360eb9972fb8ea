"""fastfc max and average pooling against the NumPy references (vectorized and
naive), ties, NaN, overlapping windows, numerical gradients, the output-size
rule, thread counts, non-contiguous inputs and bad input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R
from fastfc.gradcheck import eval_numerical_gradient_array, rel_error

from testutil import assert_close, num_threads

# (x shape, pool_height, pool_width, stride): the 2x2/2 fast path on even and
# odd planes, overlapping windows (3x3/2, 3x2/1), gaps between windows (2x2/3),
# 1x1, a window as large as the plane, N = 1 and C = 1.
CASES = [
    ((2, 3, 8, 8), 2, 2, 2),
    ((2, 3, 7, 9), 2, 2, 2),
    ((1, 1, 5, 5), 2, 2, 2),
    ((2, 2, 7, 7), 3, 3, 2),
    ((2, 2, 6, 5), 3, 2, 1),
    ((3, 1, 8, 7), 2, 2, 3),
    ((1, 2, 4, 3), 1, 1, 1),
    ((2, 2, 5, 4), 5, 4, 1),
]
CASE_IDS = ["x%s-%dx%d-s%d" % ("x".join(map(str, x)), ph, pw, s) for x, ph, pw, s in CASES]


def run(module, kind, x, dout, ph, pw, stride, naive=False):
    """(out, dx) of one forward+backward of module's kind ("max" or "avg") pooling."""
    suffix = "_naive" if naive else ""
    out, cache = getattr(module, f"{kind}_pool_forward{suffix}")(x, ph, pw, stride)
    if dout is None:
        return out, None
    return out, getattr(module, f"{kind}_pool_backward{suffix}")(dout, cache)


def expected_out_shape(x_shape, ph, pw, stride):
    return x_shape[:2] + ((x_shape[2] - ph) // stride + 1, (x_shape[3] - pw) // stride + 1)


@pytest.mark.parametrize("x_shape,ph,pw,stride", CASES, ids=CASE_IDS)
def test_max_pool_matches_references(rng, dtype, x_shape, ph, pw, stride):
    x = rng.standard_normal(x_shape).astype(dtype)
    out, _ = run(F, "max", x, None, ph, pw, stride)
    assert out.shape == expected_out_shape(x_shape, ph, pw, stride) and out.dtype == dtype
    dout = rng.standard_normal(out.shape).astype(dtype)
    out, dx = run(F, "max", x, dout, ph, pw, stride)
    assert dx.shape == x.shape and dx.dtype == dtype
    for naive in (False, True):
        ref_out, ref_dx = run(R, "max", x, dout, ph, pw, stride, naive=naive)
        assert ref_out.dtype == dtype and ref_dx.dtype == dtype
        # a maximum is one of the inputs: exact; overlapping windows add up
        # the same terms in possibly another order
        np.testing.assert_array_equal(out, ref_out)
        assert_close(dx, ref_dx, 1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("x_shape,ph,pw,stride", CASES, ids=CASE_IDS)
def test_max_pool_ties_go_to_the_first_maximum(rng, x_shape, ph, pw, stride):
    # Three distinct values only: most windows hold ties.
    x = rng.integers(0, 3, size=x_shape).astype(np.float64)
    dout = rng.standard_normal(expected_out_shape(x_shape, ph, pw, stride))
    out, dx = run(F, "max", x, dout, ph, pw, stride)
    for naive in (False, True):
        ref_out, ref_dx = run(R, "max", x, dout, ph, pw, stride, naive=naive)
        np.testing.assert_array_equal(out, ref_out)
        assert_close(dx, ref_dx, 1e-14)


def test_max_pool_all_equal_window_routes_to_its_top_left():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    for ph, pw, stride in [(2, 2, 2), (3, 3, 1)]:
        out, cache = F.max_pool_forward(x, ph, pw, stride)
        dx = F.max_pool_backward(np.ones_like(out), cache)
        want = np.zeros_like(x)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                want[0, 0, i * stride, j * stride] += 1
        np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("ph,pw,stride", [(2, 2, 2), (3, 3, 2), (2, 3, 1)])
def test_max_pool_nan_propagates_to_the_first_nan(rng, dtype, ph, pw, stride):
    # Rule: a window holding NaN outputs NaN; its gradient goes to its first
    # NaN in row-major order (np.argmax's rule, so the reference agrees).
    x = rng.standard_normal((2, 2, 7, 8)).astype(dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[1, 1, 4, 5] = np.nan
    x[1, 0, 0, 0] = np.inf
    out, dx = run(F, "max", x, np.ones(expected_out_shape(x.shape, ph, pw, stride), dtype),
                  ph, pw, stride)
    ref_out, ref_dx = run(R, "max", x, np.ones_like(out), ph, pw, stride)
    np.testing.assert_array_equal(out, ref_out)  # NaN where NaN
    np.testing.assert_array_equal(dx, ref_dx)
    assert np.isnan(out).any() and not np.isnan(dx).any()
    assert out[1, 0, 0, 0] == np.inf

    # one window by hand, on the 2x2/2 fast path and the general path
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]], dtype=dtype)
    for stride in (2, 1):
        out, dx = run(F, "max", x, np.ones((1, 1, 1, 1), dtype), 2, 2, stride)
        assert np.isnan(out[0, 0, 0, 0])
        np.testing.assert_array_equal(dx[0, 0], [[0, 1], [0, 0]])


@pytest.mark.parametrize("x_shape,ph,pw,stride", CASES, ids=CASE_IDS)
def test_avg_pool_matches_reference(rng, dtype, tol, x_shape, ph, pw, stride):
    x = rng.standard_normal(x_shape).astype(dtype)
    dout = rng.standard_normal(expected_out_shape(x_shape, ph, pw, stride)).astype(dtype)
    out, dx = run(F, "avg", x, dout, ph, pw, stride)
    ref_out, ref_dx = run(R, "avg", x, dout, ph, pw, stride)
    assert out.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert_close(out, ref_out, tol)
    assert_close(dx, ref_dx, tol)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("side", ["fastfc", "reference"])
@pytest.mark.parametrize("ph,pw,stride", [(2, 2, 2), (3, 3, 1), (3, 2, 2)])
def test_numerical_gradients(rng, kind, side, ph, pw, stride):
    M = F if side == "fastfc" else R
    # Tie-free: distinct values 0.01 apart, far more than the step h = 1e-5.
    x_shape = (2, 2, 7, 6)
    x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape) * 0.01
    out, dx = run(M, kind, x, None, ph, pw, stride)
    dout = rng.standard_normal(out.shape)
    _, dx = run(M, kind, x, dout, ph, pw, stride)
    forward = getattr(M, f"{kind}_pool_forward")
    numeric = eval_numerical_gradient_array(lambda v: forward(v, ph, pw, stride)[0], x, dout)
    assert rel_error(dx, numeric) < 1e-7


def test_stride_that_does_not_tile_ignores_leftovers(rng):
    # 7x9 plane, 2x2 windows, stride 2: out 3x4; row 6 and column 8 unused.
    x = rng.standard_normal((2, 3, 7, 9))
    for kind in ("max", "avg"):
        out, dx = run(F, kind, x, np.ones((2, 3, 3, 4)), 2, 2, 2)
        assert out.shape == (2, 3, 3, 4)
        changed = x.copy()
        changed[:, :, 6, :] = 1e6
        changed[:, :, :, 8] = 1e6
        np.testing.assert_array_equal(run(F, kind, changed, None, 2, 2, 2)[0], out)
        assert np.all(dx[:, :, 6, :] == 0) and np.all(dx[:, :, :, 8] == 0)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("ph,pw,stride", [(2, 2, 2), (3, 3, 1)])
def test_thread_counts_agree(rng, dtype, kind, ph, pw, stride):
    x = rng.standard_normal((6, 5, 12, 11)).astype(dtype)
    dout = rng.standard_normal(expected_out_shape(x.shape, ph, pw, stride)).astype(dtype)
    results = []
    for n in (1, 2):
        with num_threads(n):
            results.append(run(F, kind, x, dout, ph, pw, stride))
    # every plane is computed by one thread in the same order: bitwise equal
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_noncontiguous_inputs(rng, kind):
    x = rng.standard_normal((3, 2, 8, 6))
    dout = rng.standard_normal((3, 2, 4, 3))
    want = run(F, kind, x, dout, 2, 2, 2)
    x_nc, dout_nc = np.asfortranarray(x), dout.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    assert not x_nc.flags.c_contiguous and not dout_nc.flags.c_contiguous
    for got, w in zip(run(F, kind, x_nc, dout_nc, 2, 2, 2), want):
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("forward", [F.max_pool_forward, F.avg_pool_forward])
@pytest.mark.parametrize("args,exc,match", [
    (dict(x=np.zeros((3, 6, 6))), ValueError, "x must have shape"),
    (dict(x=np.zeros((2, 0, 6, 6))), ValueError, "x is empty"),
    (dict(x=np.zeros((2, 3, 6, 6), dtype=np.int32)), TypeError, "x must be a float32"),
    (dict(pool_height=0), ValueError, "pool_height must be >= 1"),
    (dict(pool_width=-1), ValueError, "pool_width must be >= 1"),
    (dict(pool_height=7), ValueError, "pool_height = 7 is larger than the input height"),
    (dict(pool_width=7), ValueError, "pool_width = 7 is larger than the input width"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(stride=2.0), TypeError, "stride must be an int"),
    (dict(pool_height=None), TypeError, "pool_height must be an int"),
])
def test_bad_input(forward, args, exc, match):
    call = dict(x=np.zeros((2, 3, 6, 6)))
    call.update(args)
    with pytest.raises(exc, match=match):
        forward(**call)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_bad_dout(kind):
    x = np.zeros((2, 3, 6, 6))
    out, cache = getattr(F, f"{kind}_pool_forward")(x)
    backward = getattr(F, f"{kind}_pool_backward")
    with pytest.raises(ValueError, match="dout must have the forward output's shape"):
        backward(np.zeros((2, 3, 3, 2)), cache)
    with pytest.raises(TypeError, match="dout is float32"):
        backward(out.astype(np.float32), cache)


def argmax_tampered(argmax, how, plane):
    """A copy of argmax spoiled in one way: every entry 0 (outside every
    window but the first), one entry moved to its neighbour window's index,
    one entry past the plane, one negative."""
    bad = argmax.copy()
    if how == "zeros":
        bad[...] = 0
    elif how == "neighbour":
        bad[0, 0, 0, 0] = bad[0, 0, -1, -1]
    elif how == "past-plane":
        bad[-1, -1, -1, -1] = plane
    else:
        bad[0, 0, 0, 0] = -2**31
    return bad


@pytest.mark.parametrize("x_shape,ph,pw,stride", [CASES[0], CASES[1], CASES[3], CASES[4]],
                         ids=[CASE_IDS[0], CASE_IDS[1], CASE_IDS[3], CASE_IDS[4]])
@pytest.mark.parametrize("how", ["zeros", "neighbour", "past-plane", "negative"])
def test_tampered_argmax_is_refused(rng, x_shape, ph, pw, stride, how):
    """Every geometry checks argmax (the 2x2/2 fast path used to give a zero
    gradient for any index outside its window, silently): an index outside
    its window raises ValueError naming argmax, in the kernel, as it reads it."""
    x = rng.standard_normal(x_shape)
    out, (xc, argmax, pool_param) = F.max_pool_forward(x, ph, pw, stride)
    bad = argmax_tampered(argmax, how, x_shape[2] * x_shape[3])
    with pytest.raises(ValueError, match="argmax holds [0-9]+ indices outside their pooling windows"):
        F.max_pool_backward(np.ones_like(out), (xc, bad, pool_param))
    # the untouched cache still works
    assert_close(F.max_pool_backward(np.ones_like(out), (xc, argmax, pool_param)),
                 R.max_pool_backward_naive(np.ones_like(out), R.max_pool_forward_naive(
                     x, ph, pw, stride)[1]), 1e-12)


CACHE_SPOILS = {
    "None": (lambda cache: None, TypeError, "cache must be the tuple"),
    "short": (lambda cache: cache[:-1], ValueError, "cache must be the tuple"),
    "long": (lambda cache: cache + (1,), ValueError, "cache must be the tuple"),
    "param-None": (lambda cache: cache[:-1] + (None,), TypeError,
                   "pool_param \\(from the cache\\) must be a dict"),
    "param-missing": (lambda cache: cache[:-1] + ({"stride": 2},), ValueError,
                      "pool_param .* no 'pool_height'"),
    "param-str": (lambda cache: cache[:-1] + (dict(cache[-1], stride="2"),), TypeError,
                  "stride must be an int"),
    "x-None": (lambda cache: (None,) + cache[1:], TypeError, "x \\(from the cache\\)"),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("spoil,exc,match", CACHE_SPOILS.values(), ids=CACHE_SPOILS.keys())
def test_tampered_cache_structure(kind, spoil, exc, match):
    """A cache that is not what the forward returned raises TypeError or
    ValueError naming the part (not an unpacking error or a KeyError)."""
    out, cache = getattr(F, f"{kind}_pool_forward")(np.zeros((2, 3, 6, 6)))
    with pytest.raises(exc, match=match):
        getattr(F, f"{kind}_pool_backward")(np.zeros_like(out), spoil(cache))


@pytest.mark.parametrize("argmax,exc", [
    (lambda a: a.tolist(), TypeError), (lambda a: a.astype(np.int64), ValueError),
    (lambda a: a[:1], ValueError), (lambda a: np.asfortranarray(a.transpose(0, 1, 3, 2)),
                                    ValueError)], ids=["list", "int64", "short", "fortran"])
def test_argmax_of_the_wrong_kind(argmax, exc):
    out, (x, a, pool_param) = F.max_pool_forward(np.zeros((2, 3, 6, 6)))
    with pytest.raises(exc, match="argmax"):
        F.max_pool_backward(np.zeros_like(out), (x, argmax(a), pool_param))
