"""Shared fixtures: random generators and the float types with their tolerances."""
import numpy as np
import pytest

from testutil import TOLERANCES


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCES[dtype]
