"""Normalization forward+backward (dx, dgamma, dbeta), training mode: fastfc
vs fastfc.reference vs PyTorch (F.batch_norm without running statistics,
layer_norm, group_norm), float32, the same thread count; plus the bandwidth
yardstick "copy": a plain copy (np.copyto, split over as many threads)
moving the bytes of 5 sweeps over x (the pair reads x and writes out, then
reads dout and x and writes dx). The contenders are fastfc.bench.norm_case's,
the ones `fastfc bench` times: batchnorm and layernorm on (128, 512), the
spatial batchnorm and groupnorm (G = 8) on (64, 32, 32, 32)."""
import numpy as np
import pytest

import fastfc
from fastfc.bench import CEILING, Setup, norm_case

from benchutil import check_close

CASES = [norm_case("batchnorm", (128, 512)), norm_case("spatial_batchnorm", (64, 32, 32, 32)),
         norm_case("layernorm", (128, 512)), norm_case("groupnorm", (64, 32, 32, 32), groups=8)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name} {c.shape}" for c in CASES])
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch", "copy"])
def test_norm_forward_backward(benchmark, request, case, side):
    benchmark.group = f"{case.name} {case.shape}"
    torch = request.getfixturevalue("torch") if side == "torch" else None
    setup = Setup(dtype=np.float32, rng=np.random.default_rng(0), torch=torch, quick=False,
                  threads=fastfc.get_num_threads())
    calls = case.build(setup).calls
    if side == "copy":
        benchmark(calls[CEILING])
        return
    want = calls["reference"]()
    check_close(benchmark(calls[side]), want)
