"""Helpers for the tests: tolerances, thread-count blocks, strided copies.
(Fixtures live in conftest.py; this module is imported by name.)"""
import contextlib

import numpy as np

import fastfc

# Relative tolerance for comparing fastfc with fastfc.reference: sums of many
# terms differ in rounding order, so the absolute slack scales with the
# largest magnitude in the result.
TOLERANCES = {np.float32: 2e-5, np.float64: 1e-11}


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
