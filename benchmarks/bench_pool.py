"""Pooling forward+backward: fastfc vs fastfc.reference vs PyTorch, float32,
same thread count: 2x2 stride 2 max pooling (fastfc's fast path) and, for
comparison, 3x3 stride 2 (overlapping, the general path) and 2x2 average
pooling, on the issue's (64, 32, 32, 32) input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R

from benchutil import check_close

X_SHAPE = (64, 32, 32, 32)
# (kind, pool height, pool width, stride)
CONFIGS = [("max", 2, 2, 2), ("max", 3, 3, 2), ("avg", 2, 2, 2)]


def label(kind, ph, pw, stride):
    return "%spool %dx%d/%d fwd+bwd (%s)" % (kind, ph, pw, stride, ",".join(map(str, X_SHAPE)))


def fwd_bwd(module, kind, x, dout, ph, pw, stride):
    out, cache = getattr(module, f"{kind}_pool_forward")(x, ph, pw, stride)
    return out, getattr(module, f"{kind}_pool_backward")(dout, cache)


def torch_pool(torch, kind, x, dout, ph, pw, stride):
    xt = torch.from_numpy(x).requires_grad_()
    dt = torch.from_numpy(dout)
    pool = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d

    def step():
        xt.grad = None
        out = pool(xt, (ph, pw), stride)
        out.backward(dt)
        return out.detach().numpy(), xt.grad.numpy()

    return step


@pytest.mark.parametrize("config", CONFIGS, ids=[label(*c) for c in CONFIGS])
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
def test_pool_forward_backward(benchmark, rng, request, config, side):
    kind, ph, pw, stride = config
    benchmark.group = label(*config)
    x = rng.standard_normal(X_SHAPE, dtype=np.float32)  # continuous: no ties
    out_shape = X_SHAPE[:2] + ((X_SHAPE[2] - ph) // stride + 1, (X_SHAPE[3] - pw) // stride + 1)
    dout = rng.standard_normal(out_shape, dtype=np.float32)
    want = fwd_bwd(R, kind, x, dout, ph, pw, stride)
    if side == "fastfc":
        got = benchmark(fwd_bwd, F, kind, x, dout, ph, pw, stride)
    elif side == "reference":
        got = benchmark(fwd_bwd, R, kind, x, dout, ph, pw, stride)
    else:
        got = benchmark(torch_pool(request.getfixturevalue("torch"), kind, x, dout, ph, pw, stride))
    check_close(got, want)
