"""Helpers for the tests: tolerances, thread-count blocks, strided copies.
(Fixtures live in conftest.py; this module is imported by name.)"""
import contextlib
import os
import pathlib

import numpy as np

import fastfc

# Relative tolerance for comparing fastfc with fastfc.reference: sums of many
# terms differ in rounding order, so the absolute slack scales with the
# largest magnitude in the result.
TOLERANCES = {np.float32: 2e-5, np.float64: 1e-11}

# The directory fastfc is imported from (src/ with an in-place build, or
# site-packages when installed): child interpreters import the very same build.
IMPORT_ROOT = str(pathlib.Path(fastfc.__file__).resolve().parent.parent)


def child_env(drop=(), **extra):
    """The environment of a child interpreter importing this fastfc: this one
    without the variables in drop, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (IMPORT_ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def assert_close(got, want, tol, err_msg=""):
    """got == want up to rounding at tolerance tol (see TOLERANCES)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (err_msg, got.shape, want.shape)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(scale, 1e-30), err_msg=err_msg)


@contextlib.contextmanager
def num_threads(n):
    """Run the block with fastfc using n threads, then restore the old count."""
    old = fastfc.get_num_threads()
    fastfc.set_num_threads(n)
    try:
        yield
    finally:
        fastfc.set_num_threads(old)


def noncontiguous(a):
    """The same values as a, in a strided view (every other element of a wider array)."""
    wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous
    return view


def norm_x_hat(x, cache, batch):
    """x_hat = (x - mean) * inv_std in float64 from a normalization's cache
    (x, gamma, mean, inv_std, ...): per channel (batch, batch norm) or per
    sample and group (layer and group norm). Also returns the axes of x (of
    its (N, G, C/G * H * W) view for layer and group norm) a statistic
    reduces over, and that view's shape."""
    mean, inv_std = (np.asarray(a, np.float64) for a in cache[2:4])
    n, c = x.shape[:2]
    if batch:
        per_channel = (1, c) + (1,) * (x.ndim - 2)
        x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        return x_hat, (0,) + tuple(range(2, x.ndim)), x.shape
    groups = mean.size // n
    view = (n, groups, x.size // (n * groups))
    x_hat = (x.reshape(view) - mean.reshape(n, groups, 1)) * inv_std.reshape(n, groups, 1)
    return x_hat.reshape(x.shape), (2,), view


def _norm_dx_magnitude(x, gamma, cache, dout, batch):
    """Per element, a bound on the size of the terms of dx = inv_std * (g -
    mean(g) - x_hat * mean(g * x_hat)), g = dout * gamma, the means over a
    statistic's values: dx itself can be far smaller where they cancel (a
    group of two values), so rounding is judged against this (in float64)."""
    x_hat, axes, view = norm_x_hat(x, cache, batch)
    per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    g = np.abs(dout.astype(np.float64) * gamma.astype(np.float64).reshape(per_channel)).reshape(view)
    x_hat = np.abs(x_hat).reshape(view)
    inv_std = np.asarray(cache[3], np.float64)
    inv_std = inv_std.reshape(per_channel if batch else view[:2] + (1,))
    terms = inv_std * (g + g.mean(axis=axes, keepdims=True)
                       + x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
    return terms.reshape(x.shape)


def check_norm_dx(got, want, x, gamma, cache, dout, batch):
    """dx of a normalization (cache from fastfc.reference's forward; batch:
    batch norm, else layer or group norm) matches want within TOLERANCES of
    the size of its terms, element by element (see _norm_dx_magnitude)."""
    dtype = got.dtype.type
    magnitude = _norm_dx_magnitude(x, gamma, cache, dout, batch)
    bound = 8 * TOLERANCES[dtype] * (magnitude + np.finfo(dtype).tiny)
    excess = np.abs(got.astype(np.float64) - want) - bound
    assert np.all(excess <= 0), float(excess.max())
