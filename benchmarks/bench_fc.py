"""Fully-connected kernels: fastfc vs fastfc.reference vs PyTorch (float32).

Groups: affine+ReLU and affine forward+backward at the issue's (N, D, M)
shapes, with the three GEMMs alone (same BLAS, same thread split) as the ceiling; ReLU, dropout and
the losses; plus a plain copy of a large array as the bandwidth ceiling."""
import numpy as np
import pytest
import fastfc.functional as F
import fastfc.reference as R
from fastfc._affine import affine_gemms_only

from benchutil import check_close

MLP_SHAPES = [(64, 784, 100), (128, 3072, 256), (256, 784, 512)]
SHAPE_IDS = ["%dx%dx%d" % s for s in MLP_SHAPES]
BIG = 4 * 1024 * 1024  # elements: 16 MiB in float32, beyond the last-level cache


def fc_inputs(rng, n, d, m):
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = (rng.standard_normal((d, m), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    dout = rng.standard_normal((n, m), dtype=np.float32)
    return x, w, b, dout


def fwd_bwd(module, forward, backward, x, w, b, dout):
    out, cache = getattr(module, forward)(x, w, b)
    return (out,) + tuple(getattr(module, backward)(dout, cache))


def torch_fc(torch, x, w, b, dout, relu):
    xt = torch.from_numpy(x)
    wt = torch.from_numpy(np.ascontiguousarray(w.T)).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    xt.requires_grad_()
    dt = torch.from_numpy(dout)

    def step():
        wt.grad = bt.grad = xt.grad = None
        out = torch.nn.functional.linear(xt, wt, bt)
        if relu:
            out = torch.relu(out)
        out.backward(dt)
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy().T, bt.grad.numpy()

    return step


@pytest.mark.parametrize("layer", ["affine_relu", "affine"])
@pytest.mark.parametrize("shape", MLP_SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch", "blas-gemms-only"])
def test_fc_forward_backward(benchmark, rng, request, layer, shape, side):
    benchmark.group = f"{layer} fwd+bwd {'x'.join(map(str, shape))}"
    x, w, b, dout = fc_inputs(rng, *shape)
    forward, backward = f"{layer}_forward", f"{layer}_backward"
    want = fwd_bwd(R, forward, backward, x, w, b, dout)
    if side == "fastfc":
        got = benchmark(fwd_bwd, F, forward, backward, x, w, b, dout)
    elif side == "reference":
        got = benchmark(fwd_bwd, R, forward, backward, x, w, b, dout)
    elif side == "torch":
        got = benchmark(torch_fc(request.getfixturevalue("torch"), x, w, b, dout, layer == "affine_relu"))
        got = (got[0], got[1], got[2], got[3])
    else:  # the same three GEMMs, same BLAS and thread split, nothing around them
        out, dx, dw = benchmark(affine_gemms_only, x, w, dout)
        if layer == "affine":
            check_close((out + b, dx, dw), want[:3])
        return
    check_close(got, want)


def elementwise_cases(rng, n):
    x = rng.standard_normal(n, dtype=np.float32)
    dout = rng.standard_normal(n, dtype=np.float32)
    return x, dout


def relu_step(module, x, dout):
    out, cache = module.relu_forward(x)
    return out, module.relu_backward(dout, cache)


def dropout_step(module, x, dout):
    out, cache = module.dropout_forward(x, 0.5, seed=123)
    return out, module.dropout_backward(dout, cache)


def torch_relu(torch, x, dout):
    xt = torch.from_numpy(x).requires_grad_()
    dt = torch.from_numpy(dout)

    def step():
        xt.grad = None
        out = torch.relu(xt)
        out.backward(dt)
        return out.detach().numpy(), xt.grad.numpy()

    return step


def torch_dropout(torch, x, dout):
    xt = torch.from_numpy(x).requires_grad_()
    dt = torch.from_numpy(dout)

    def step():
        xt.grad = None
        out = torch.nn.functional.dropout(xt, 0.5, training=True)
        out.backward(dt)
        return out.detach().numpy(), xt.grad.numpy()

    return step


@pytest.mark.parametrize("n", [64 * 512, 256 * 512, BIG], ids=["64x512", "256x512", "4M"])
@pytest.mark.parametrize("op", ["relu", "dropout"])
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch", "copy"])
def test_elementwise_forward_backward(benchmark, rng, request, op, n, side):
    benchmark.group = f"{op} fwd+bwd n={n}"
    x, dout = elementwise_cases(rng, n)
    step = relu_step if op == "relu" else dropout_step
    want = step(R, x, dout)
    if side == "fastfc":
        check_close(benchmark(step, F, x, dout), want)
    elif side == "reference":
        benchmark(step, R, x, dout)
    elif side == "torch":
        torch = request.getfixturevalue("torch")
        maker = torch_relu if op == "relu" else torch_dropout
        got = benchmark(maker(torch, x, dout))
        if op == "relu":  # torch draws its own dropout mask: only ReLU compares
            check_close(got, want)
    else:
        # Bandwidth ceiling: forward+backward read 3 arrays and write 2 (ReLU);
        # two copies move 2 reads + 2 writes of the same size.
        out = np.empty_like(x)

        def copies():
            np.copyto(out, x)
            np.copyto(out, dout)

        benchmark(copies)


LOSS_SHAPES = [(128, 10), (4096, 1000)]


def torch_loss(torch, x, y, kind):
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.from_numpy(y)
    fn = torch.nn.functional.cross_entropy if kind == "softmax_loss" else torch.nn.functional.multi_margin_loss

    def step():
        xt.grad = None
        loss = fn(xt, yt)
        loss.backward()
        return loss.item(), xt.grad.numpy()

    return step


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=["%dx%d" % s for s in LOSS_SHAPES])
@pytest.mark.parametrize("kind", ["softmax_loss", "svm_loss"])
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
def test_loss(benchmark, rng, request, kind, shape, side):
    benchmark.group = f"{kind} {shape[0]}x{shape[1]}"
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, shape[1], shape[0])
    want_loss, want_dx = getattr(R, kind)(x, y)
    if side == "fastfc":
        loss, dx = benchmark(getattr(F, kind), x, y)
    elif side == "reference":
        loss, dx = benchmark(getattr(R, kind), x, y)
    else:
        loss, dx = benchmark(torch_loss(request.getfixturevalue("torch"), x, y, kind))
        if kind == "svm_loss":  # torch's multi-margin loss also divides by C
            loss, dx = loss * shape[1], dx * shape[1]
    assert abs(loss - want_loss) <= 1e-4 * max(1.0, abs(want_loss))
    check_close([dx], [want_dx])
