"""Convolution forward+backward: fastfc vs fastfc.reference (vectorized
im2col) vs PyTorch, float32, same thread count, at the issue's two shapes
(3x3 kernels, stride 1, pad 1).

The naive loops take seconds at N = 64, so they get their own groups at
N = 1 (fastfc timed there too): their time scales linearly with N, so the
full-size naive time is 64 times the N = 1 one."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R

from benchutil import check_close

# (x shape, w shape)
SHAPES = [((64, 3, 32, 32), (32, 3, 3, 3)), ((64, 32, 16, 16), (64, 32, 3, 3))]
STRIDE, PAD = 1, 1


def label(x_shape, w_shape):
    return "(%s)x(%s)" % (",".join(map(str, x_shape)), ",".join(map(str, w_shape)))


def conv_inputs(rng, x_shape, w_shape):
    fan_in = int(np.prod(w_shape[1:]))
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = (rng.standard_normal(w_shape, dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    out_shape = (x_shape[0], w_shape[0], x_shape[2] + 2 * PAD - w_shape[2] + 1,
                 x_shape[3] + 2 * PAD - w_shape[3] + 1)
    dout = rng.standard_normal(out_shape, dtype=np.float32)
    return x, w, b, dout


def fwd_bwd(forward, backward, x, w, b, dout):
    out, cache = forward(x, w, b, stride=STRIDE, pad=PAD)
    return (out,) + tuple(backward(dout, cache))


def torch_conv(torch, x, w, b, dout):
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    dt = torch.from_numpy(dout)

    def step():
        xt.grad = wt.grad = bt.grad = None
        out = torch.nn.functional.conv2d(xt, wt, bt, stride=STRIDE, padding=PAD)
        out.backward(dt)
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    return step


@pytest.mark.parametrize("shapes", SHAPES, ids=[label(*s) for s in SHAPES])
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
def test_conv_forward_backward(benchmark, rng, request, shapes, side):
    benchmark.group = "conv fwd+bwd " + label(*shapes)
    x, w, b, dout = conv_inputs(rng, *shapes)
    want = fwd_bwd(R.conv_forward, R.conv_backward, x, w, b, dout)
    if side == "fastfc":
        got = benchmark(fwd_bwd, F.conv_forward, F.conv_backward, x, w, b, dout)
    elif side == "reference":
        got = benchmark(fwd_bwd, R.conv_forward, R.conv_backward, x, w, b, dout)
    else:
        got = benchmark(torch_conv(request.getfixturevalue("torch"), x, w, b, dout))
    check_close(got, want)


@pytest.mark.parametrize("shapes", SHAPES, ids=[label(*s) for s in SHAPES])
@pytest.mark.parametrize("side", ["fastfc", "naive"])
def test_conv_forward_backward_naive_n1(benchmark, rng, shapes, side):
    x_shape, w_shape = shapes
    x_shape = (1,) + x_shape[1:]
    benchmark.group = "conv fwd+bwd N=1 (naive loops) " + label(x_shape, w_shape)
    x, w, b, dout = conv_inputs(rng, x_shape, w_shape)
    want = fwd_bwd(R.conv_forward, R.conv_backward, x, w, b, dout)
    if side == "fastfc":
        got = benchmark(fwd_bwd, F.conv_forward, F.conv_backward, x, w, b, dout)
    else:
        got = benchmark.pedantic(fwd_bwd, (R.conv_forward_naive, R.conv_backward_naive,
                                           x, w, b, dout), rounds=3, iterations=1)
    check_close(got, want)
