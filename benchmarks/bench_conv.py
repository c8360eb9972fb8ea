"""Convolution forward+backward: fastfc vs fastfc.reference (vectorized
im2col) vs PyTorch, float32, same thread count, at fastfc.bench's two conv
shapes (3x3 kernels, stride 1, pad 1; family "conv", the cases `fastfc
bench` times).

The naive loops take seconds at N = 64, so they get their own groups at
N = 1 (fastfc timed there too): their time scales linearly with N, so the
full-size naive time is 64 times the N = 1 one."""
import pytest

from fastfc.bench import CONV_SHAPES, conv_case

from benchutil import build_case, case_params, check_close, time_case


@pytest.mark.parametrize("case, side", case_params("conv"))
def test_conv_forward_backward(benchmark, request, case, side):
    time_case(benchmark, request, case, side)


NAIVE_CASES = [conv_case((1,) + x_shape[1:], w_shape, naive=True) for x_shape, w_shape in CONV_SHAPES]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=[c.shape for c in NAIVE_CASES])
@pytest.mark.parametrize("side", ["fastfc", "naive"])
def test_conv_forward_backward_naive_n1(benchmark, request, case, side):
    benchmark.group = f"conv fwd+bwd N=1 (naive loops) {case.shape}"
    calls = build_case(request, case, side).calls
    want = calls["reference"]()
    if side == "fastfc":
        got = benchmark(calls["fastfc"])
    else:
        got = benchmark.pedantic(calls["naive"], rounds=3, iterations=1)
    check_close(got, want)
