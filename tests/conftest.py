"""Shared fixtures: random generators and the float types with their tolerances."""
import signal

import numpy as np
import pytest

from testutil import TOLERANCES

# A shell starts background jobs with SIGINT ignored, and an ignored signal
# stays ignored in every program they start: Python then installs no
# KeyboardInterrupt handler. The Ctrl-C tests need Python's own handling in
# this process and in the children it starts, however the suite was launched.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCES[dtype]
