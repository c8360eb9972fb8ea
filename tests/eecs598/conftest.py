"""The fastfc.eecs598 tests run on one thread, PyTorch's and fastfc's: the
networks of the notebooks' checks are tiny (a gradient check is thousands
of calls of a few microseconds each), and on a busy shared machine every
call that needs two threads to meet can stall for milliseconds. No test
here times anything; fastfc's kernels are checked on several threads by
the other suites."""
import pytest

import fastfc


@pytest.fixture(autouse=True, scope="package")  # restored before the other suites run
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads(), fastfc.get_num_threads()
    torch.set_num_threads(1)
    fastfc.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    fastfc.set_num_threads(before[1])
