"""Pooling forward+backward: fastfc vs fastfc.reference vs PyTorch, float32,
same thread count: 2x2 stride 2 max pooling (fastfc's fast path) and, for
comparison, 3x3 stride 2 (overlapping, the general path) and 2x2 average
pooling, on a (64, 32, 32, 32) input. The cases are fastfc.bench's (family
"pool"), the ones `fastfc bench` times."""
import pytest

from benchutil import case_params, time_case


@pytest.mark.parametrize("case, side", case_params("pool"))
def test_pool_forward_backward(benchmark, request, case, side):
    time_case(benchmark, request, case, side)
