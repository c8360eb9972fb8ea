"""Normalization forward+backward (dx, dgamma, dbeta), training mode: fastfc
vs fastfc.reference vs PyTorch (F.batch_norm without running statistics,
layer_norm, group_norm), float32, the same thread count; plus the bandwidth
yardstick "copy": a plain copy (np.copyto, split over as many threads)
moving the bytes of 5 sweeps over x (the pair reads x and writes out, then
reads dout and x and writes dx). The cases are fastfc.bench's (family
"norm"), the ones `fastfc bench` times: batchnorm and layernorm on (128, 512), the
spatial batchnorm and groupnorm (G = 8) on (64, 32, 32, 32)."""
import pytest

from benchutil import case_params, time_case


@pytest.mark.parametrize("case, side", case_params("norm"))
def test_norm_forward_backward(benchmark, request, case, side):
    time_case(benchmark, request, case, side)
