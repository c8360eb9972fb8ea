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
