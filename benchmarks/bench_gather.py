"""The epoch's row gather: a shuffled batch of 64 rows of a 60,000 x 784 data
set (far larger than the caches), fastfc.gather_rows into a kept buffer vs
the reference's x[index] vs torch.index_select (float32, same thread count).
The case is fastfc.bench's (family "gather"), the one `fastfc bench` times."""
import pytest

from benchutil import case_params, time_case


@pytest.mark.parametrize("case, side", case_params("gather"))
def test_gather_rows(benchmark, request, case, side):
    time_case(benchmark, request, case, side)
