"""Batch, spatial batch, layer and group normalization: every function
against fastfc.reference in both float types, numerical gradients in
float64, the running statistics, test mode, thread-count invariance, the
output arrays, bad input, and the layers (alone and in a Sequential)."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.layers as L
import fastfc.reference as R
from fastfc.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array
from fastfc.models import Sequential

from testutil import TOLERANCES, assert_close, noncontiguous, num_threads


# ---- the four kinds, called alike ------------------------------------------------
# A kind is (name, axes of x its statistics run over after grouping, make):
# call(M, x, gamma, beta, **kw) runs M's forward; the batchnorms take running
# statistics made by the test.

BATCH_KINDS = ["batchnorm", "spatial_batchnorm"]
KINDS = BATCH_KINDS + ["layernorm", "groupnorm"]
# Shapes per kind: 1s, sizes off the 8/16-lane SIMD widths, one past a
# 256-column block, and large enough that 4 threads get work.
SHAPES = {
    "batchnorm": [(1, 1), (1, 5), (2, 1), (5, 7), (17, 33), (3, 257), (64, 300)],
    "spatial_batchnorm": [(1, 1, 1, 1), (1, 3, 2, 2), (2, 5, 3, 7), (4, 3, 5, 5),
                          (9, 17, 4, 4), (16, 8, 16, 16)],
    "layernorm": [(1, 1), (1, 5), (5, 1), (5, 7), (17, 33), (3, 257), (64, 300)],
    "groupnorm": [(1, 1, 1, 1), (1, 4, 2, 2), (2, 6, 3, 5), (3, 8, 1, 1), (9, 12, 4, 4),
                  (16, 16, 16, 16)],
}


def groups_for(shape):
    """A group count dividing C that is neither 1 nor C when C allows."""
    c = shape[1]
    return next((g for g in (4, 3, 2) if c % g == 0 and g < c), 1)


def forward(M, kind, x, gamma, beta, stats=None, **kw):
    """M's forward of kind; stats (running_mean, running_var) for the batchnorms."""
    if kind in BATCH_KINDS:
        return getattr(M, f"{kind}_forward")(x, gamma, beta, *stats, **kw)
    if kind == "groupnorm":
        return M.groupnorm_forward(x, gamma, beta, kw.pop("num_groups", groups_for(x.shape)), **kw)
    return M.layernorm_forward(x, gamma, beta, **kw)


def backward(M, kind, dout, cache, **kw):
    return getattr(M, f"{kind}_backward")(dout, cache, **kw)


def inputs(rng, shape, dtype, loc=2.0, scale=3.0):
    """x away from zero mean (the statistics must remove it), gamma, beta,
    running statistics and dout."""
    c = shape[1]
    x = (loc + scale * rng.standard_normal(shape)).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    stats = (rng.standard_normal(c).astype(dtype), (0.5 + rng.random(c)).astype(dtype))
    dout = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, stats, dout


def dx_magnitude(kind, x, gamma, cache, dout):
    """Per element, a bound on the size of the terms of dx = inv_std * (g -
    mean(g) - x_hat * mean(g * x_hat)), g = dout * gamma: dx itself can be
    far smaller where they cancel (a group of two values), so rounding is
    judged against this (in float64)."""
    mean, inv_std = (np.asarray(a, np.float64) for a in cache[2:4])
    shape = x.shape
    c = shape[1]
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    g = dout.astype(np.float64) * gamma.astype(np.float64).reshape(per_channel)
    if kind in BATCH_KINDS:
        x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        axes = (0,) + tuple(range(2, x.ndim))
        scale = inv_std.reshape(per_channel)
        mean_g = np.abs(g).mean(axis=axes, keepdims=True)
        mean_gx = np.abs(g * x_hat).mean(axis=axes, keepdims=True)
        return scale * (np.abs(g) + mean_g + np.abs(x_hat) * mean_gx)
    groups = mean.size // shape[0]
    rows = (shape[0], groups, -1)
    x_hat = (x.reshape(rows) - mean.reshape(shape[0], groups, 1)) * inv_std.reshape(shape[0], groups, 1)
    gg = g.reshape(rows)
    terms = inv_std.reshape(shape[0], groups, 1) * (
        np.abs(gg) + np.abs(gg).mean(axis=2, keepdims=True)
        + np.abs(x_hat) * np.abs(gg * x_hat).mean(axis=2, keepdims=True))
    return terms.reshape(shape)


def check_dx(got, want, magnitude, dtype):
    bound = 8 * TOLERANCES[dtype] * (magnitude + np.finfo(dtype).tiny)
    excess = np.abs(got.astype(np.float64) - want) - bound
    assert np.all(excess <= 0), float(excess.max())


def run_both(kind, shape, dtype, rng, train=True, **kw):
    """(fastfc's results, the reference's) for one forward and backward:
    each a dict with out, cache, running statistics and gradients."""
    x, gamma, beta, stats, dout = inputs(rng, shape, dtype)
    results = []
    for M in (F, R):
        mine = [s.copy() for s in stats]
        extra = dict(train=train, **kw) if kind in BATCH_KINDS else dict(kw)
        out, cache = forward(M, kind, x, gamma, beta, mine, **extra)
        dx, dgamma, dbeta = backward(M, kind, dout, cache)
        results.append(dict(out=out, cache=cache, stats=mine, dx=dx, dgamma=dgamma, dbeta=dbeta,
                            x=x, gamma=gamma, dout=dout))
    return results


# ---- against the reference -------------------------------------------------------

def modes(kind):
    """The batchnorms' training and test modes; layer and group norm have one."""
    return [True, False] if kind in BATCH_KINDS else [True]


@pytest.mark.parametrize("kind,shape,train", [(k, s, t) for k in KINDS for s in SHAPES[k]
                                              for t in modes(k)])
def test_matches_reference(kind, shape, train, dtype, tol, rng):
    got, want = run_both(kind, shape, dtype, rng, train=train)
    for name in ("out", "dgamma", "dbeta"):
        assert got[name].dtype == dtype and got[name].shape == want[name].shape, name
        assert_close(got[name], want[name], 4 * tol, err_msg=name)
    for a, b in zip(got["cache"][2:4], want["cache"][2:4]):  # mean, inv_std
        assert_close(a, b, tol)
    for a, b in zip(got["stats"], want["stats"]):
        assert_close(a, b, tol)
    check_dx(got["dx"], want["dx"].astype(np.float64),
             dx_magnitude(kind, want["x"], want["gamma"], want["cache"], want["dout"]), dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_statistics_are_summed_in_double(kind, rng):
    """A float32 batch whose mean is 1000 standard deviations from zero: the
    sums in double still find its mean and variance, and the output is the
    one float64 arithmetic gives (to float32 rounding of the centred values)."""
    shape = {"batchnorm": (4096, 3), "spatial_batchnorm": (64, 2, 8, 8),
             "layernorm": (3, 4096), "groupnorm": (2, 4, 32, 32)}[kind]
    x, gamma, beta, stats, _ = inputs(rng, shape, np.float64, loc=1000.0, scale=1.0)
    x32 = x.astype(np.float32)
    want, _ = forward(R, kind, x32.astype(np.float64), gamma, beta, [s.copy() for s in stats])
    got, _ = forward(F, kind, x32, gamma.astype(np.float32), beta.astype(np.float32),
                     [s.astype(np.float32) for s in stats])
    # |x| ~ 1000 rounds to 6e-5 in float32: x - mean carries that much of an
    # error relative to the unit standard deviation, whatever the sums.
    assert_close(got, want, 2e-4)


# ---- numerical gradients (float64) ---------------------------------------------

GRAD_SHAPES = {"batchnorm": (5, 4), "spatial_batchnorm": (2, 3, 3, 2), "layernorm": (4, 6),
               "groupnorm": (2, 6, 2, 3)}


@pytest.mark.parametrize("kind,train", [(k, t) for k in KINDS for t in modes(k)])
def test_gradients_match_numerical(kind, train, rng):
    x, gamma, beta, stats, dout = inputs(rng, GRAD_SHAPES[kind], np.float64)

    def out(x_, gamma_, beta_):
        extra = dict(train=train) if kind in BATCH_KINDS else {}
        return forward(F, kind, x_, gamma_, beta_, [s.copy() for s in stats], **extra)[0]

    extra = dict(train=train) if kind in BATCH_KINDS else {}
    _, cache = forward(F, kind, x, gamma, beta, [s.copy() for s in stats], **extra)
    dx, dgamma, dbeta = backward(F, kind, dout, cache)
    numerical = [eval_numerical_gradient_array(lambda a: out(a, gamma, beta), x, dout),
                 eval_numerical_gradient_array(lambda a: out(x, a, beta), gamma, dout),
                 eval_numerical_gradient_array(lambda a: out(x, gamma, a), beta, dout)]
    for name, num, analytic in zip(("dx", "dgamma", "dbeta"), numerical, (dx, dgamma, dbeta)):
        scale = max(np.abs(num).max(), np.abs(analytic).max(), 1e-30)
        assert np.abs(num - analytic).max() / scale < 1e-7, name


# ---- batch statistics, running statistics, test mode ----------------------------

@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_training_normalizes_each_channel(kind, rng):
    """The course notebook's check: after a training forward each channel has
    mean beta and standard deviation |gamma| (to eps)."""
    shape = (200, 3) if kind == "batchnorm" else (20, 3, 5, 4)
    x, _, _, stats, _ = inputs(rng, shape, np.float64, loc=11.0, scale=4.0)
    gamma, beta = np.array([1.0, 3.0, -2.0]), np.array([0.0, 11.0, 23.0])
    out, _ = forward(F, kind, x, gamma, beta, stats, eps=1e-12)
    axes = (0,) + tuple(range(2, out.ndim))
    np.testing.assert_allclose(out.mean(axis=axes), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=axes), np.abs(gamma), rtol=1e-9)


@pytest.mark.parametrize("kind", BATCH_KINDS)
@pytest.mark.parametrize("momentum", [0.0, 0.9, 1.0])
def test_running_statistics_update_in_place(kind, momentum, rng, dtype):
    shape = (6, 4) if kind == "batchnorm" else (3, 4, 2, 5)
    x, gamma, beta, (rm, rv), _ = inputs(rng, shape, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    forward(F, kind, x, gamma, beta, (rm, rv), momentum=momentum)
    axes = (0,) + tuple(range(2, x.ndim))
    batch = x.astype(np.float64)
    want_mean = momentum * rm0 + (1 - momentum) * batch.mean(axis=axes)
    want_var = momentum * rv0 + (1 - momentum) * batch.var(axis=axes)  # biased, as the course
    assert_close(rm, want_mean, TOLERANCES[dtype])
    assert_close(rv, want_var, TOLERANCES[dtype])


def test_running_statistics_converge_to_the_data(rng):
    """The course notebook's check: after many training batches from one
    distribution, test mode normalizes fresh data from it to about mean beta
    and standard deviation |gamma|."""
    rm, rv = np.zeros(3), np.ones(3)
    gamma, beta = np.ones(3), np.zeros(3)
    loc, scale = np.array([5.0, -3.0, 0.5]), np.array([2.0, 0.5, 7.0])
    for _ in range(100):
        F.batchnorm_forward(loc + scale * rng.standard_normal((64, 3)), gamma, beta, rm, rv)
    out, _ = F.batchnorm_forward(loc + scale * rng.standard_normal((2000, 3)), gamma, beta, rm,
                                 rv, train=False)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.15)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=0.1)


@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_test_mode_uses_running_statistics_and_leaves_them(kind, rng, dtype):
    shape = (5, 3) if kind == "batchnorm" else (2, 3, 4, 4)
    x, gamma, beta, (rm, rv), dout = inputs(rng, shape, dtype)
    rm.setflags(write=False)  # only read in test mode: read-only arrays are fine
    before = rm.copy(), rv.copy()
    out, cache = forward(F, kind, x, gamma, beta, (rm, rv), train=False, eps=1e-3)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])
    per_channel = (1, 3) + (1,) * (x.ndim - 2)
    inv_std = 1 / np.sqrt(rv.astype(np.float64) + 1e-3)
    want = ((x - rm.reshape(per_channel)) * inv_std.reshape(per_channel) * gamma.reshape(per_channel)
            + beta.reshape(per_channel))
    assert_close(out, want, TOLERANCES[dtype])
    dx, _, _ = backward(F, kind, dout, cache)  # fixed statistics: a per-channel scale
    assert_close(dx, dout * (gamma * inv_std).reshape(per_channel), TOLERANCES[dtype])


@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_batch_of_one(kind, dtype):
    """N = 1 (and, for spatial, H = W = 1): the variance is 0, out = beta
    exactly, dx = 0, and nothing is NaN."""
    shape = (1, 4) if kind == "batchnorm" else (1, 4, 1, 1)
    x = np.array([1.0, -2.0, 1e30, 0.0], dtype).reshape(shape)
    gamma, beta = np.arange(1, 5, dtype=dtype), np.arange(4, dtype=dtype) - 1.5
    stats = np.zeros(4, dtype), np.ones(4, dtype)
    out, cache = forward(F, kind, x, gamma, beta, stats)
    np.testing.assert_array_equal(out.reshape(4), beta)
    np.testing.assert_array_equal(stats[1], 0.9 * np.ones(4, dtype))  # 0.9 * 1 + 0.1 * 0
    dx, dgamma, dbeta = backward(F, kind, np.ones(shape, dtype), cache)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_nan_stays_in_its_statistic(kind, rng):
    """A NaN makes its own channel (batchnorm) or row/group (layer, group
    norm) NaN, as in the reference, and nothing else."""
    shape = {"batchnorm": (6, 5), "spatial_batchnorm": (3, 5, 2, 2), "layernorm": (6, 5),
             "groupnorm": (3, 6, 2, 2)}[kind]
    x, gamma, beta, stats, dout = inputs(rng, shape, np.float64)
    x[1, 2] = np.nan
    with np.errstate(invalid="ignore"):
        got, _ = forward(F, kind, x, gamma, beta, [s.copy() for s in stats])
        want, _ = forward(R, kind, x, gamma, beta, [s.copy() for s in stats])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert 0 < np.isnan(got).sum() < got.size


# ---- threads and memory layout -----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_results_are_bitwise_the_same_on_1_2_and_4_threads(kind, dtype, rng):
    shape = {"batchnorm": (300, 700), "spatial_batchnorm": (32, 12, 17, 17),
             "layernorm": (700, 300), "groupnorm": (64, 12, 9, 9)}[kind]
    x, gamma, beta, stats, dout = inputs(rng, shape, dtype)
    runs = []
    for n in (1, 2, 4):
        with num_threads(n):
            mine = [s.copy() for s in stats]
            out, cache = forward(F, kind, x, gamma, beta, mine)
            runs.append((out, *cache[2:4], *mine[:len(stats) if kind in BATCH_KINDS else 0],
                         *backward(F, kind, dout, cache)))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_any_input_layout(kind, rng):
    """Strided and Fortran-ordered inputs (copied once) give the results of
    contiguous ones, bit for bit."""
    shape = SHAPES[kind][3]
    x, gamma, beta, stats, dout = inputs(rng, shape, np.float64)
    out, cache = forward(F, kind, x, gamma, beta, [s.copy() for s in stats])
    grads = backward(F, kind, dout, cache)
    for relayout in (noncontiguous, np.asfortranarray):
        out2, cache2 = forward(F, kind, relayout(x), relayout(gamma), beta,
                               [s.copy() for s in stats])
        np.testing.assert_array_equal(out2, out)
        for a, b in zip(backward(F, kind, relayout(dout), cache2), grads):
            np.testing.assert_array_equal(a, b)


# ---- output arrays ------------------------------------------------------------------

@pytest.mark.parametrize("module", [F, R], ids=["functional", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_writes_into_given_arrays(kind, module, rng):
    x, gamma, beta, stats, dout = inputs(rng, SHAPES[kind][3], np.float32)
    fresh, cache = forward(module, kind, x, gamma, beta, [s.copy() for s in stats])
    out = np.full_like(fresh, np.nan)
    got, cache = forward(module, kind, x, gamma, beta, [s.copy() for s in stats], out=out)
    assert got is out
    np.testing.assert_array_equal(out, fresh)
    want = backward(module, kind, dout, cache)
    given = dict(dx=np.full_like(want[0], np.nan), dgamma=np.full_like(want[1], np.nan),
                 dbeta=np.full_like(want[2], np.nan))
    for _ in range(2):  # overwritten, not accumulated into
        got = backward(module, kind, dout, cache, **given)
        for (name, array), g, w in zip(given.items(), got, want):
            assert g is array, name
            np.testing.assert_array_equal(g, w, err_msg=name)


# ---- bad input ---------------------------------------------------------------------

def _bad_calls():
    """(id, call(x2, x4, g, b, rm, rv), error, what the message must name)."""
    bn = lambda x, *a, **k: F.batchnorm_forward(x, *a, **k)  # noqa: E731
    ro = np.zeros(3)
    ro.setflags(write=False)
    strided = np.zeros(6)[::2]
    cases = [
        ("bn-x-1d", lambda x2, x4, g, b, rm, rv: bn(x2[0], g, b, rm, rv), ValueError, "x"),
        ("bn-x-4d", lambda x2, x4, g, b, rm, rv: bn(x4, g, b, rm, rv), ValueError, "x"),
        ("bn-x-empty", lambda x2, x4, g, b, rm, rv: bn(x2[:0], g, b, rm, rv), ValueError, "x"),
        ("bn-x-int", lambda x2, x4, g, b, rm, rv: bn(x2.astype(int), g, b, rm, rv), TypeError, "x"),
        ("bn-gamma-length", lambda x2, x4, g, b, rm, rv: bn(x2, g[:2], b, rm, rv), ValueError,
         "gamma"),
        ("bn-beta-2d", lambda x2, x4, g, b, rm, rv: bn(x2, g, b[None], rm, rv), ValueError,
         "beta"),
        ("bn-gamma-float32", lambda x2, x4, g, b, rm, rv: bn(x2, g.astype(np.float32), b, rm, rv),
         TypeError, "gamma"),
        ("bn-running-mean-list", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, [0.0] * 3, rv),
         TypeError, "running_mean"),
        ("bn-running-var-float32",
         lambda x2, x4, g, b, rm, rv: bn(x2, g, b, rm, rv.astype(np.float32)), TypeError,
         "running_var"),
        ("bn-running-mean-length", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, rm[:2], rv),
         ValueError, "running_mean"),
        ("bn-running-mean-read-only", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, ro, rv),
         ValueError, "running_mean"),
        ("bn-running-var-strided", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, rm, strided),
         ValueError, "running_var"),
        ("bn-running-stats-same-array", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, rm, rm),
         ValueError, "running_var"),
        ("bn-running-mean-is-gamma", lambda x2, x4, g, b, rm, rv: bn(x2, g, b, g, rv),
         ValueError, "running_mean"),
        ("bn-out-is-running-var",
         lambda x2, x4, g, b, rm, rv: bn(x2[:1], g, b, rm, rv, out=rv.reshape(1, 3)), ValueError,
         "out"),
        *[(f"bn-eps-{v!r}", lambda x2, x4, g, b, rm, rv, v=v: bn(x2, g, b, rm, rv, eps=v), e, "eps")
          for v, e in [(0.0, ValueError), (-1e-5, ValueError), (float("nan"), ValueError),
                       (float("inf"), ValueError), ("1e-5", TypeError), (None, TypeError),
                       (True, TypeError)]],
        *[(f"bn-momentum-{v!r}", lambda x2, x4, g, b, rm, rv, v=v: bn(x2, g, b, rm, rv, momentum=v),
           e, "momentum")
          for v, e in [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                       ("0.9", TypeError), (None, TypeError)]],
        *[(f"bn-train-{v!r}", lambda x2, x4, g, b, rm, rv, v=v: bn(x2, g, b, rm, rv, train=v),
           TypeError, "train") for v in (1, 0, "yes", None)],
        ("sbn-x-2d", lambda x2, x4, g, b, rm, rv: F.spatial_batchnorm_forward(x2, g, b, rm, rv),
         ValueError, "x"),
        ("sbn-gamma-length",
         lambda x2, x4, g, b, rm, rv: F.spatial_batchnorm_forward(x4, g[:2], b, rm, rv),
         ValueError, "gamma"),
        ("ln-x-4d", lambda x2, x4, g, b, rm, rv: F.layernorm_forward(x4, g, b), ValueError, "x"),
        ("ln-gamma-length", lambda x2, x4, g, b, rm, rv: F.layernorm_forward(x2, g[:2], b),
         ValueError, "gamma"),
        ("ln-eps-0", lambda x2, x4, g, b, rm, rv: F.layernorm_forward(x2, g, b, eps=0),
         ValueError, "eps"),
        ("gn-x-2d", lambda x2, x4, g, b, rm, rv: F.groupnorm_forward(x2, g, b, 1), ValueError,
         "x"),
        *[(f"gn-groups-{v!r}", lambda x2, x4, g, b, rm, rv, v=v: F.groupnorm_forward(x4, g, b, v),
           e, "num_groups")
          for v, e in [(2, ValueError), (0, ValueError), (-3, ValueError), (6, ValueError),
                       (1.0, TypeError), (True, TypeError), (None, TypeError)]],
        ("gn-beta-float32",
         lambda x2, x4, g, b, rm, rv: F.groupnorm_forward(x4, g, b.astype(np.float32), 3),
         TypeError, "beta"),
    ]
    return cases


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_are_refused(case, rng):
    _, call, error, name = case
    x2 = rng.standard_normal((4, 3))
    x4 = rng.standard_normal((2, 3, 4, 4))
    g, b, rm, rv = np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)
    before = rm.copy(), rv.copy()
    with pytest.raises(error, match=name):
        call(x2, x4, g, b, rm, rv)
    np.testing.assert_array_equal(rm, before[0])  # nothing was written
    np.testing.assert_array_equal(rv, before[1])


def _caches(rng):
    x2 = rng.standard_normal((4, 3))
    x4 = rng.standard_normal((2, 3, 4, 4))
    g, b = np.ones(3), np.zeros(3)
    return {
        "batchnorm": F.batchnorm_forward(x2, g, b, np.zeros(3), np.ones(3))[1],
        "spatial_batchnorm": F.spatial_batchnorm_forward(x4, g, b, np.zeros(3), np.ones(3))[1],
        "layernorm": F.layernorm_forward(x2, g, b)[1],
        "groupnorm": F.groupnorm_forward(x4, g, b, 3)[1],
    }


def _tamperings(kind, cache):
    """(id, spoiled cache, error, name in the message)."""
    x, gamma, mean, inv_std = cache[:4]
    out = [
        ("not-a-tuple", list(cache), ValueError, "cache"),
        ("short", cache[:-1], ValueError, "cache"),
        ("x-float32", (x.astype(np.float32),) + cache[1:], TypeError, "x"),
        ("x-fewer-rows", (x[:1],) + cache[1:], ValueError, "dout|mean"),
        ("gamma-short", (x, gamma[:1]) + cache[2:], ValueError, "gamma"),
        ("mean-int", (x, gamma, mean.astype(int)) + cache[3:], TypeError, "mean"),
        ("inv-std-long", (x, gamma, mean, np.ones(inv_std.size + 5)) + cache[4:], ValueError,
         "inv_std"),
    ]
    if kind in BATCH_KINDS:
        out.append(("train-int", cache[:4] + (1,), TypeError, "train"))
    if kind == "groupnorm":
        out.append(("groups-not-dividing", cache[:4] + (2,), ValueError, "num_groups"))
        out.append(("groups-changed", cache[:4] + (1,), ValueError, "mean"))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_caches_are_refused(kind, rng):
    cache = _caches(rng)[kind]
    dout = np.ones_like(cache[0])
    for case_id, spoiled, error, name in _tamperings(kind, cache):
        with pytest.raises(error, match=name):
            backward(F, kind, dout, spoiled)
    with pytest.raises(ValueError, match="dout"):
        backward(F, kind, dout[:1], cache)
    with pytest.raises(TypeError, match="dout"):
        backward(F, kind, dout.astype(np.float32), cache)


# ---- layers -------------------------------------------------------------------------

def _layer_cases():
    return [
        ("BatchNorm1d", lambda: L.BatchNorm1d(5, dtype=np.float64), (6, 5)),
        ("BatchNorm2d", lambda: L.BatchNorm2d(3, dtype=np.float64), (4, 3, 2, 3)),
        ("LayerNorm", lambda: L.LayerNorm(5, dtype=np.float64), (6, 5)),
        ("GroupNorm", lambda: L.GroupNorm(2, 4, dtype=np.float64), (3, 4, 2, 3)),
    ]


LAYER_CASES = _layer_cases()


@pytest.mark.parametrize("name,make,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_gradients(name, make, shape, rng):
    layer = make()
    assert list(layer.params) == ["gamma", "beta"]
    layer.params["gamma"][...] = rng.standard_normal(shape[1])
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    x = 3 * rng.standard_normal(shape) + 1
    dout = rng.standard_normal(shape)
    layer.forward(x)
    dx = layer.backward(dout)
    grads = {n: g.copy() for n, g in layer.grads.items()}
    numerical = eval_numerical_gradient_array(lambda a: layer.forward(a).copy(), x, dout)
    assert np.abs(numerical - dx).max() < 1e-7 * np.abs(numerical).max()
    for pname, param in layer.params.items():
        numerical = eval_numerical_gradient_array(lambda _: layer.forward(x).copy(), param, dout)
        assert np.abs(numerical - grads[pname]).max() < 1e-7 * np.abs(numerical).max(), pname


def test_batchnorm_layer_modes_and_running_statistics(rng):
    layer = L.BatchNorm1d(3, momentum=0.8)
    assert layer.running_mean.dtype == np.float32 and isinstance(layer.running_mean, np.ndarray)
    assert [p.name for p in layer.parameters()] == ["gamma", "beta"]
    x = rng.standard_normal((10, 3)).astype(np.float32) + 4
    train_out = layer.forward(x)
    assert_close(layer.running_mean, 0.2 * x.mean(axis=0), TOLERANCES[np.float32])
    assert_close(layer.running_var, 0.8 + 0.2 * x.var(axis=0), TOLERANCES[np.float32])
    kept = layer.running_mean.copy(), layer.running_var.copy()
    layer.eval()
    eval_out = layer.forward(x)
    np.testing.assert_array_equal(layer.running_mean, kept[0])
    want, _ = R.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), *kept,
                                  train=False)
    assert_close(eval_out, want, TOLERANCES[np.float32])
    assert not np.allclose(eval_out, train_out)
    dx = layer.backward(np.ones_like(x))  # the test-mode gradient: a per-feature scale
    assert_close(dx, np.broadcast_to(1 / np.sqrt(kept[1] + 1e-5), x.shape), TOLERANCES[np.float32])


def test_layers_check_their_arguments():
    for make, error in [(lambda: L.BatchNorm1d(0), ValueError), (lambda: L.BatchNorm1d(3, eps=0), ValueError),
                        (lambda: L.BatchNorm2d(3, momentum=1.5), ValueError),
                        (lambda: L.LayerNorm(4, dtype=np.int32), TypeError),
                        (lambda: L.GroupNorm(3, 4), ValueError), (lambda: L.GroupNorm(0, 4), ValueError)]:
        with pytest.raises(error):
            make()
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        L.BatchNorm1d(3).forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        L.GroupNorm(2, 4).forward(np.ones((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="without a forward"):
        L.LayerNorm(3).backward(np.ones((2, 3), np.float32))


def check_model_gradients(model, X, y):
    """Every parameter's gradient of model.loss(X, y) against numerical ones."""
    _, grads = model.loss(X, y)
    grads = {name: g.copy() for name, g in grads.items()}
    assert sorted(grads) == sorted(model.params)
    for name, param in model.params.items():
        numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], param)
        # A bias right before a batchnorm has no effect: its gradient is 0,
        # the numerical one rounding noise (1e-11) on a loss of order 1.
        scale = max(np.abs(numerical).max(), np.abs(grads[name]).max(), 1e-2)
        assert np.abs(numerical - grads[name]).max() / scale < 1e-7, name


def test_mlp_with_batchnorm_in_a_sequential(rng):
    """Linear - BatchNorm1d - ReLU - Linear - LayerNorm - Linear with softmax
    cross-entropy: the loss's gradient with respect to every parameter, the
    normalization parameters named like the course's (gamma1, beta1 with W1), and
    kept out of weight decay."""
    model = Sequential(L.Linear(6, 7, seed=0, dtype=np.float64), L.BatchNorm1d(7, dtype=np.float64),
                       L.ReLU(), L.Linear(7, 5, seed=1, dtype=np.float64),
                       L.LayerNorm(5, dtype=np.float64), L.Linear(5, 3, seed=2, dtype=np.float64),
                       loss=L.SoftmaxCrossEntropy(), reg=0.1)
    for p in model.parameters():
        if p.name.startswith(("gamma", "beta")):
            p.data[...] = rng.standard_normal(p.shape)
    assert sorted(model.params) == ["W1", "W2", "W3", "b1", "b2", "b3", "beta1", "beta2",
                                    "gamma1", "gamma2"]
    decayed = {p.name for p in model.param_groups(1e-3)[0]["params"]}
    assert decayed == {"W1", "W2", "W3"}
    X, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    check_model_gradients(model, X, y)


def test_convnet_with_batchnorm2d_and_groupnorm(rng):
    """Conv2d - BatchNorm2d - ReLU - MaxPool2d - Conv2d - GroupNorm - Flatten - Linear,
    normalization layers first with parameters too (skipping dx)."""
    model = Sequential(L.BatchNorm2d(2, dtype=np.float64),
                       L.Conv2d(2, 4, 3, padding=1, seed=0, dtype=np.float64),
                       L.BatchNorm2d(4, dtype=np.float64), L.ReLU(), L.MaxPool2d(2),
                       L.Conv2d(4, 4, 3, padding=1, seed=1, dtype=np.float64),
                       L.GroupNorm(2, 4, dtype=np.float64), L.Flatten(),
                       L.Linear(16, 3, seed=2, dtype=np.float64), loss=L.SoftmaxCrossEntropy())
    X, y = rng.standard_normal((3, 2, 4, 4)), rng.integers(0, 3, 3)
    check_model_gradients(model, X, y)


def test_sequential_eval_uses_running_statistics(rng):
    """Training steps update the running statistics in place; predict (eval
    mode) then normalizes with them, the same result for any batch split."""
    model = Sequential(L.Linear(4, 6, seed=0), L.BatchNorm1d(6), L.ReLU(), L.Linear(6, 3, seed=1),
                       loss=L.SoftmaxCrossEntropy())
    bn = model.layers[1]
    X, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    for _ in range(3):
        model.loss(X, y)
    assert not np.allclose(bn.running_mean, 0)
    kept = bn.running_mean.copy()
    scores = model._scores(X, batch_size=7)
    np.testing.assert_array_equal(bn.running_mean, kept)
    np.testing.assert_array_equal(scores, model._scores(X, batch_size=32))
