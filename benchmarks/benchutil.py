"""Helpers for the benchmark suites (imported by name; fixtures are in conftest.py)."""
import numpy as np


def check_close(got, want, tol=2e-4):
    """Each side's result equals the reference's up to float32 rounding."""
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        scale = max(float(np.max(np.abs(w))), 1e-30)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)
