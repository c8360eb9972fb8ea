"""Shared pieces of the benchmark suites.

Every group times fastfc, fastfc.reference and (when installed) PyTorch on
the same float32 data with the same thread count. Run them side by side:

    python -m pytest benchmarks --benchmark-enable --benchmark-group-by=group

Without --benchmark-enable (the default in pyproject.toml) each case runs once
and only checks that every side returns the same result.
"""
import numpy as np
import pytest

import fastfc


@pytest.fixture
def torch():
    """PyTorch, using as many threads as fastfc; the test skips without it."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    torch.set_num_threads(fastfc.get_num_threads())
    return torch


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def check_close(got, want, tol=2e-4):
    """Each side's result equals the reference's up to float32 rounding."""
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        scale = max(float(np.max(np.abs(w))), 1e-30)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)
