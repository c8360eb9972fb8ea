"""`fastfc bench`: fastfc against fastfc.reference and PyTorch, case by case.

    fastfc bench                              # every case, float32, all threads
    fastfc bench --threads 2 --quick          # fewer, shorter rounds
    fastfc bench --case relu --case "mlp 784" --json out.json --plot speedups.png
    fastfc bench --list                       # the case names
    python -m fastfc.bench ...                # the same command

Each case is defined once here, as a function that builds its inputs and
returns one callable per contender: fastfc, fastfc.reference (plain NumPy)
and PyTorch (when installed, at its fastest CPU settings: torch.nn.functional
ops, fused Adam, inputs not requiring grad unless the case computes their
gradient), plus, for some cases, a ceiling: the three BLAS GEMMs of an affine
layer alone, or a plain copy moving as many bytes as the kernel does. The
pytest-benchmark suite (benchmarks/bench_epoch.py) builds its epochs from
the same functions.

Every side gets the same data, the same float type and the same number of
threads (fastfc.set_num_threads, torch.set_num_threads, and NumPy's own BLAS
through threadpoolctl). Before timing, each side runs once or twice (the
warm-up) and its results are compared with the reference's. Then the sides
are timed round-robin, one batch of calls of each in turn, the first side
changing every round, so that noise from other processes spreads over all of
them; the table shows the median time per call and the ratios
reference/fastfc and torch/fastfc (above 1: fastfc is faster). The last
column compares fastfc with the ceiling: "GEMM 91%" means the affine layer's
forward+backward takes 1/0.91 times its three GEMMs alone; "copy 70%" means
the kernel moves its bytes at 70% of the speed of a copy of as many bytes on
as many threads (arrays larger than the last-level cache). Bytes are counted
as the arrays read plus the arrays written; a copy into another array also
reads its destination into the cache before writing it, which an update in
place (Adam) does not, so such kernels can pass 100%.
"""
import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable

import numpy as np

from . import _config
from . import functional as F
from . import reference as R

SIDES = ("fastfc", "reference", "torch")
CEILING = "ceiling"  # the extra contender of cases that have one
BIG = 16 * 1024 * 1024  # elements: 64 MiB in float32, twice the 32 MiB L3 of the machine measured
LEARNING_RATE = 1e-3
# How far fastfc's and torch's results may stray from the reference's, relative
# to the largest magnitude in each result (sums in a different order round differently).
TOLERANCE = {np.float32: 2e-4, np.float64: 1e-8}


@dataclasses.dataclass
class Setup:
    """What every case builder gets: the float type, a seeded generator, the
    torch module (None without it), whether this is a --quick run, and the
    thread count of every side."""
    dtype: type
    rng: np.random.Generator
    torch: object
    quick: bool
    threads: int = 1


@dataclasses.dataclass
class Contenders:
    """A case ready to run.

    - calls: side name -> zero-argument callable returning the side's result
      (a tuple of arrays and numbers); sides are those of SIDES plus CEILING
    - compared: sides whose results must match the reference's
    - check_calls: how many calls the warm-up makes and compares (stateful
      cases such as training steps compare more than the first)
    - tolerance_scale: multiplies TOLERANCE (long runs drift further)
    """
    calls: dict
    compared: tuple = ("fastfc", "torch")
    check_calls: int = 1
    tolerance_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Case:
    """name and shape label the row; build(setup) -> Contenders; needs lists the
    fastfc modules the case uses (a case is skipped when one is missing);
    ceiling is "gemm" or "copy" when the case times one."""
    name: str
    shape: str
    build: Callable
    needs: tuple = ()
    ceiling: str = None


# ---------------------------------------------------------------- helpers of the cases

def _normal(setup, shape, scale=1.0):
    return (setup.rng.standard_normal(shape) * scale).astype(setup.dtype)


def _torch_tensors(torch, *arrays, grad=()):
    """torch views of the arrays (no copy); those whose index is in grad require grad."""
    tensors = [torch.from_numpy(a) for a in arrays]
    for i in grad:
        tensors[i].requires_grad_()
    return tensors


def _torch_fwd_bwd(torch, forward, inputs, dout):
    """A callable running out = forward(*inputs), out.backward(dout) in torch and
    returning (out, grad of each input that requires grad), as NumPy arrays."""
    def call():
        for t in inputs:
            t.grad = None
        out = forward(*inputs)
        out.backward(dout)
        return (out.detach().numpy(),) + tuple(t.grad.numpy() for t in inputs if t.requires_grad)
    return call


def _fwd_bwd(forward, backward, *args):
    """A callable running the course-style pair: out, cache = forward(*args);
    backward(dout, cache); returns (out, *gradients). args end with dout."""
    *inputs, dout = args

    def call():
        out, cache = forward(*inputs)
        grads = backward(dout, cache)
        return (out,) + (tuple(grads) if isinstance(grads, tuple) else (grads,))
    return call


@functools.lru_cache(maxsize=1)
def _copy_threads(threads):
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="fastfc-bench-copy")


def _copy_moving(setup, passes, n):
    """A plain copy moving the bytes of `passes` sweeps over n elements (half
    of them read, half written), as the bandwidth ceiling: one np.copyto per
    thread on its own slice (NumPy releases the GIL while copying), so the
    copy has as many cores as the kernels."""
    count = passes * n // 2
    src = np.ones(count, dtype=setup.dtype)
    dst = np.empty_like(src)
    pieces = list(zip(np.array_split(dst, setup.threads), np.array_split(src, setup.threads)))
    pool = _copy_threads(setup.threads)
    return lambda: list(pool.map(lambda piece: np.copyto(*piece), pieces))


# ---------------------------------------------------------------- kernel cases

def affine_relu_case(n, d, m):
    """affine+ReLU forward and backward (dx, dw, db) on x (n, d), w (d, m);
    ceiling: its three GEMMs alone, through the same BLAS and thread split."""
    def build(setup):
        from ._affine import affine_gemms_only

        x = _normal(setup, (n, d))
        w = _normal(setup, (d, m), 1 / math.sqrt(d))
        b = _normal(setup, m)
        dout = _normal(setup, (n, m))
        calls = {
            "fastfc": _fwd_bwd(F.affine_relu_forward, F.affine_relu_backward, x, w, b, dout),
            "reference": _fwd_bwd(R.affine_relu_forward, R.affine_relu_backward, x, w, b, dout),
            CEILING: lambda: affine_gemms_only(x, w, dout),
        }
        if setup.torch:
            torch = setup.torch
            wt = np.ascontiguousarray(w.T)  # torch's Linear holds (out, in)
            xt, wtt, bt = _torch_tensors(torch, x, wt, b, grad=(0, 1, 2))
            step = _torch_fwd_bwd(
                torch, lambda x_, w_, b_: torch.relu(torch.nn.functional.linear(x_, w_, b_)),
                (xt, wtt, bt), torch.from_numpy(dout))
            calls["torch"] = lambda: _swap_dw(step())
        return Contenders(calls)
    return Case("affine_relu fwd+bwd", f"{n}x{d}x{m}", build, ceiling="gemm")


def _swap_dw(result):
    out, dx, dw_t, db = result
    return out, dx, dw_t.T, db


def relu_case(n, label):
    """ReLU forward and backward over n elements; 5 sweeps (x, out; dout, x, dx)."""
    def build(setup):
        x = _normal(setup, n)
        dout = _normal(setup, n)
        calls = {
            "fastfc": _fwd_bwd(F.relu_forward, F.relu_backward, x, dout),
            "reference": _fwd_bwd(R.relu_forward, R.relu_backward, x, dout),
        }
        if n >= BIG:
            calls[CEILING] = _copy_moving(setup, 5, n)
        if setup.torch:
            calls["torch"] = _torch_fwd_bwd(setup.torch, setup.torch.relu,
                                            _torch_tensors(setup.torch, x, grad=(0,)),
                                            setup.torch.from_numpy(dout))
        return Contenders(calls)
    return Case("relu fwd+bwd", label, build, ceiling="copy" if n >= BIG else None)


def dropout_case(n, label, p=0.5):
    """Inverted dropout forward and backward over n elements; 4 sweeps (x, out;
    dout, dx: the mask is recomputed from the seed, not stored). torch draws
    its own mask, so only fastfc's result is compared."""
    def build(setup):
        x = _normal(setup, n)
        dout = _normal(setup, n)
        calls = {
            "fastfc": _fwd_bwd(lambda a: F.dropout_forward(a, p, seed=7), F.dropout_backward, x, dout),
            "reference": _fwd_bwd(lambda a: R.dropout_forward(a, p, seed=7), R.dropout_backward, x, dout),
        }
        if n >= BIG:
            calls[CEILING] = _copy_moving(setup, 4, n)
        if setup.torch:
            torch = setup.torch
            calls["torch"] = _torch_fwd_bwd(
                torch, lambda a: torch.nn.functional.dropout(a, p, training=True),
                _torch_tensors(torch, x, grad=(0,)), torch.from_numpy(dout))
        return Contenders(calls, compared=("fastfc",))
    return Case("dropout fwd+bwd", label, build, ceiling="copy" if n >= BIG else None)


def softmax_case(n, c):
    """Softmax cross-entropy loss and its gradient on (n, c) logits."""
    def build(setup):
        x = _normal(setup, (n, c))
        y = setup.rng.integers(0, c, n)
        calls = {"fastfc": lambda: F.softmax_loss(x, y), "reference": lambda: R.softmax_loss(x, y)}
        if setup.torch:
            torch = setup.torch
            xt, yt = _torch_tensors(torch, x, y, grad=(0,))

            def torch_call():
                xt.grad = None
                loss = torch.nn.functional.cross_entropy(xt, yt)
                loss.backward()
                return loss.item(), xt.grad.numpy()
            calls["torch"] = torch_call
        return Contenders(calls)
    return Case("softmax loss", f"{n}x{c}", build)


def conv_case(x_shape, w_shape, pad=1):
    """Convolution (stride 1) forward and backward (dx, dw, db)."""
    def build(setup):
        fan_in = int(np.prod(w_shape[1:]))
        x = _normal(setup, x_shape)
        w = _normal(setup, w_shape, 1 / math.sqrt(fan_in))
        b = _normal(setup, w_shape[0])
        out_hw = tuple(s + 2 * pad - k + 1 for s, k in zip(x_shape[2:], w_shape[2:]))
        dout = _normal(setup, (x_shape[0], w_shape[0]) + out_hw)
        calls = {
            "fastfc": _fwd_bwd(lambda *a: F.conv_forward(*a, stride=1, pad=pad), F.conv_backward,
                               x, w, b, dout),
            "reference": _fwd_bwd(lambda *a: R.conv_forward(*a, stride=1, pad=pad), R.conv_backward,
                                  x, w, b, dout),
        }
        if setup.torch:
            torch = setup.torch
            calls["torch"] = _torch_fwd_bwd(
                torch, lambda *a: torch.nn.functional.conv2d(*a, padding=pad),
                _torch_tensors(torch, x, w, b, grad=(0, 1, 2)), torch.from_numpy(dout))
        return Contenders(calls)
    shape = "x(%s) w(%s)" % (",".join(map(str, x_shape)), ",".join(map(str, w_shape)))
    return Case("conv fwd+bwd", shape, build)


def max_pool_case(x_shape, size=2):
    """size x size max pooling with stride size, forward and backward."""
    def build(setup):
        x = _normal(setup, x_shape)  # continuous values: no ties
        dout = _normal(setup, x_shape[:2] + tuple(s // size for s in x_shape[2:]))
        calls = {
            "fastfc": _fwd_bwd(lambda a: F.max_pool_forward(a, size, size, size), F.max_pool_backward,
                               x, dout),
            "reference": _fwd_bwd(lambda a: R.max_pool_forward(a, size, size, size),
                                  R.max_pool_backward, x, dout),
        }
        if setup.torch:
            torch = setup.torch
            calls["torch"] = _torch_fwd_bwd(
                torch, lambda a: torch.nn.functional.max_pool2d(a, size, size),
                _torch_tensors(torch, x, grad=(0,)), torch.from_numpy(dout))
        return Contenders(calls)
    return Case(f"max pool {size}x{size}/{size} fwd+bwd", "(%s)" % ",".join(map(str, x_shape)), build)


# ---------------------------------------------------------------- normalization

NORM_KINDS = {
    # kind: (torch.nn.functional's call on (x, gamma, beta), given the case's groups)
    "batchnorm": lambda torch, groups: (
        lambda x, g, b: torch.nn.functional.batch_norm(x, None, None, g, b, training=True)),
    "spatial_batchnorm": lambda torch, groups: (
        lambda x, g, b: torch.nn.functional.batch_norm(x, None, None, g, b, training=True)),
    "layernorm": lambda torch, groups: (
        lambda x, g, b: torch.nn.functional.layer_norm(x, x.shape[1:], g, b)),
    "groupnorm": lambda torch, groups: (
        lambda x, g, b: torch.nn.functional.group_norm(x, groups, g, b)),
}


def norm_forward(module, kind, x, gamma, beta, groups=None):
    """module's forward of a normalization in training mode; the batchnorms
    get running statistics of their own (updated in place, as in training)."""
    if kind in ("batchnorm", "spatial_batchnorm"):
        running = np.zeros_like(gamma), np.ones_like(gamma)
        return lambda a: getattr(module, f"{kind}_forward")(a, gamma, beta, *running)
    if kind == "groupnorm":
        return lambda a: module.groupnorm_forward(a, gamma, beta, groups)
    return lambda a: module.layernorm_forward(a, gamma, beta)


def norm_case(kind, shape, groups=None):
    """A normalization's forward and backward (dx, dgamma, dbeta), training
    mode. Ceiling: a copy moving 5 sweeps over x's size, the least the pair
    can move (forward reads x and writes out; backward reads dout and x and
    writes dx); the kernels also re-read x (and dout) for their statistics,
    from the cache when it holds them. torch: F.batch_norm (no running
    statistics), layer_norm, group_norm."""
    def build(setup):
        x = _normal(setup, shape)
        dout = _normal(setup, shape)
        gamma = 1 + _normal(setup, shape[1], 0.1)
        beta = _normal(setup, shape[1])
        backward = f"{kind}_backward"
        calls = {
            "fastfc": _fwd_bwd(norm_forward(F, kind, x, gamma, beta, groups),
                               getattr(F, backward), x, dout),
            "reference": _fwd_bwd(norm_forward(R, kind, x, gamma, beta, groups),
                                  getattr(R, backward), x, dout),
            CEILING: _copy_moving(setup, 5, x.size),
        }
        if setup.torch:
            calls["torch"] = _torch_fwd_bwd(
                setup.torch, NORM_KINDS[kind](setup.torch, groups),
                _torch_tensors(setup.torch, x, gamma, beta, grad=(0, 1, 2)),
                setup.torch.from_numpy(dout))
        return Contenders(calls)
    label = "(%s)" % ",".join(map(str, shape)) + (f" G={groups}" if groups else "")
    return Case(f"{kind} fwd+bwd", label, build, needs=("fastfc._norm",), ceiling="copy")


# ---------------------------------------------------------------- Adam

class NumpyAdam:
    """Adam in plain NumPy, torch.optim.Adam's formula (no weight decay), updating
    the arrays in place: the baseline the fastfc optimizer is measured against.

    Inputs: params, grads: lists of arrays of matching shapes (grads are read at each step()).
    """

    def __init__(self, params, grads, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.grads = params, grads
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        step_size = self.lr / (1 - self.beta1 ** self.t)
        root_correction = math.sqrt(1 - self.beta2 ** self.t)
        for p, g, m, v in zip(self.params, self.grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_correction + self.eps)


def adam_case(n, label):
    """One Adam step (torch's defaults, lr 1e-3) on n parameters whose gradient is
    given; 7 sweeps (grad; param, m, v read and written)."""
    def build(setup):
        from .optim import Adam
        from .parameter import Parameter

        start = _normal(setup, n)
        grad = _normal(setup, n)
        param = Parameter(start.copy(), "w")
        param.grad[...] = grad
        fastfc_adam = Adam([param], lr=LEARNING_RATE)
        numpy_param = start.copy()
        numpy_adam = NumpyAdam([numpy_param], [grad])

        def fastfc_call():
            fastfc_adam.step()
            return (param.data,)

        def reference_call():
            numpy_adam.step()
            return (numpy_param,)
        calls = {"fastfc": fastfc_call, "reference": reference_call}
        if n >= BIG:
            calls[CEILING] = _copy_moving(setup, 7, n)
        if setup.torch:
            torch = setup.torch
            torch_param = torch.nn.Parameter(torch.from_numpy(start.copy()))
            torch_param.grad = torch.from_numpy(grad.copy())
            torch_adam = _torch_adam(torch, [torch_param])

            def torch_call():
                torch_adam.step()
                return (torch_param.detach().numpy(),)
            calls["torch"] = torch_call
        return Contenders(calls)
    return Case("adam step", label, build, needs=("fastfc.optim",),
                ceiling="copy" if n >= BIG else None)


def _torch_adam(torch, params):
    """torch's fastest Adam on the CPU: the fused kernel where this build has it."""
    try:
        return torch.optim.Adam(params, lr=LEARNING_RATE, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=LEARNING_RATE, foreach=True)


# ---------------------------------------------------------------- networks

# A network is a tuple of layers: ("linear", in, out), ("relu",),
# ("conv", in_channels, out_channels, kernel, pad), ("pool", size), ("flatten",).
def mlp(*dims):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(("linear", d_in, d_out))
        if i < len(dims) - 2:
            layers.append(("relu",))
    return tuple(layers)


# 3x32x32 -> conv3x3x32 -> relu -> pool -> conv3x3x64 -> relu -> pool -> linear 10
CNN = (("conv", 3, 32, 3, 1), ("relu",), ("pool", 2), ("conv", 32, 64, 3, 1), ("relu",), ("pool", 2),
       ("flatten",), ("linear", 64 * 8 * 8, 10))


def init_params(net, dtype, seed=0):
    """He-initialised weights and zero biases, one (W, b) per linear or conv
    layer: W (in, out) for linear (the course's layout), (F, C, k, k) for conv."""
    rng = np.random.default_rng(seed)
    params = []
    for kind, *sizes in net:
        if kind == "linear":
            shape, fan_in, width = (sizes[0], sizes[1]), sizes[0], sizes[1]
        elif kind == "conv":
            c_in, c_out, k, _ = sizes
            shape, fan_in, width = (c_out, c_in, k, k), c_in * k * k, c_out
        else:
            continue
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        params.append((w.astype(dtype), np.zeros(width, dtype=dtype)))
    return params


class FastfcNet:
    """The network as fastfc layers in a fastfc.models.Sequential, trained with
    fastfc.optim.Adam. step(x, y) runs forward, softmax loss, backward and the
    Adam step, and returns the loss."""

    def __init__(self, net, params, dtype):
        from . import layers, models, optim

        built, weights = [], iter(params)
        for kind, *sizes in net:
            if kind == "linear":
                layer = layers.Linear(*sizes, dtype=dtype)
            elif kind == "conv":
                c_in, c_out, k, pad = sizes
                layer = layers.Conv2d(c_in, c_out, k, padding=pad, dtype=dtype)
            elif kind == "relu":
                layer = layers.ReLU()
            elif kind == "pool":
                layer = layers.MaxPool2d(sizes[0])
            else:
                layer = layers.Flatten()
            if kind in ("linear", "conv"):
                w, b = next(weights)
                layer.params["W"][...] = w
                layer.params["b"][...] = b
            built.append(layer)
        self.model = models.Sequential(*built)
        self.model.train()
        self.loss = layers.SoftmaxCrossEntropy()
        self.optimizer = optim.Adam(self.model.parameters(), lr=LEARNING_RATE)

    def step(self, x, y):
        loss = self.loss.forward(self.model.forward(x), y)
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        return loss


class ReferenceNet:
    """The network written with fastfc.reference functions (affine_relu where a
    linear layer is followed by ReLU) and NumpyAdam. Like the other sides, it
    skips the gradient with respect to the input data."""

    def __init__(self, net, params):
        self.layers = []  # (forward(h) -> (out, cache), backward(dout, cache, first) -> (dx, grads))
        self.params = [p.copy() for pair in params for p in pair]
        self.grads = [np.zeros_like(p) for p in self.params]
        weights = iter(range(0, len(self.params), 2))
        i = 0
        while i < len(net):
            kind, *sizes = net[i]
            fused = kind == "linear" and i + 1 < len(net) and net[i + 1][0] == "relu"
            if kind in ("linear", "conv"):
                self.layers.append(self._weighted(kind, fused, sizes, next(weights)))
            elif kind == "relu":
                self.layers.append((R.relu_forward, lambda d, c, first: (R.relu_backward(d, c), ())))
            elif kind == "pool":
                size = sizes[0]
                self.layers.append((lambda h, s=size: R.max_pool_forward(h, s, s, s),
                                    lambda d, c, first: (R.max_pool_backward(d, c), ())))
            else:
                self.layers.append((lambda h: (h.reshape(len(h), -1), h.shape),
                                    lambda d, shape, first: (d.reshape(shape), ())))
            i += 2 if fused else 1
        self.adam = NumpyAdam(self.params, self.grads)

    def _weighted(self, kind, fused, sizes, index):
        w, b = self.params[index], self.params[index + 1]
        if kind == "conv":
            pad = sizes[3]
            forward, backward = (lambda h: R.conv_forward(h, w, b, 1, pad)), R.conv_backward
        elif fused:
            forward, backward = (lambda h: R.affine_relu_forward(h, w, b)), R.affine_relu_backward
        else:
            forward, backward = (lambda h: R.affine_forward(h, w, b)), R.affine_backward

        def backward_into(dout, cache, first):
            dx, dw, db = backward(dout, cache, compute_dx=not first)
            self.grads[index][...] = dw
            self.grads[index + 1][...] = db
            return dx, ()
        return forward, backward_into

    def step(self, x, y):
        caches, h = [], x
        for forward, _ in self.layers:
            h, cache = forward(h)
            caches.append(cache)
        loss, dout = R.softmax_loss(h, y)
        for i in reversed(range(len(self.layers))):
            dout, _ = self.layers[i][1](dout, caches[i], i == 0)
        self.adam.step()
        return loss


class TorchNet:
    """The network as a torch.nn.Sequential with fused Adam; step(x, y) takes
    tensors and returns the loss."""

    def __init__(self, torch, net, params, dtype):
        nn, weights, built = torch.nn, iter(params), []
        torch_dtype = getattr(torch, np.dtype(dtype).name)
        for kind, *sizes in net:
            if kind == "linear":
                layer = nn.Linear(*sizes, dtype=torch_dtype)
            elif kind == "conv":
                c_in, c_out, k, pad = sizes
                layer = nn.Conv2d(c_in, c_out, k, padding=pad, dtype=torch_dtype)
            elif kind == "relu":
                layer = nn.ReLU()
            elif kind == "pool":
                layer = nn.MaxPool2d(sizes[0])
            else:
                layer = nn.Flatten()
            if kind in ("linear", "conv"):
                w, b = next(weights)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(w.T if kind == "linear" else w))
                    layer.bias.copy_(torch.from_numpy(b))
            built.append(layer)
        self.torch = torch
        self.model = nn.Sequential(*built)
        self.optimizer = _torch_adam(torch, self.model.parameters())

    def step(self, x, y):
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def _nets(setup, net, sides=SIDES):
    """The sides' copies of the network, from the same initial weights (torch
    only when setup has it)."""
    params = init_params(net, setup.dtype)
    makers = {"fastfc": lambda: FastfcNet(net, params, setup.dtype),
              "reference": lambda: ReferenceNet(net, params),
              "torch": lambda: TorchNet(setup.torch, net, params, setup.dtype)}
    return {side: makers[side]() for side in SIDES
            if side in sides and (side != "torch" or setup.torch)}


def _batch(setup, net, batch):
    """A random batch for the network: inputs (batch, ...) and labels."""
    first = net[0]
    shape = (batch, first[1]) if first[0] == "linear" else (batch, first[1], 32, 32)
    return _normal(setup, shape), setup.rng.integers(0, net[-1][2], batch)


def train_step_case(name, net, batch):
    """One training step: forward, softmax loss, backward, Adam step, on a fixed batch.
    The warm-up compares the losses of the first two steps."""
    def build(setup):
        x, y = _batch(setup, net, batch)
        nets = _nets(setup, net)
        calls = {side: (lambda n=n: n.step(x, y)) for side, n in nets.items()}
        if "torch" in nets:
            xt, yt = _torch_tensors(setup.torch, x, y)
            calls["torch"] = lambda: nets["torch"].step(xt, yt)
        return Contenders(calls, check_calls=2)
    return Case("train step " + name, f"batch {batch}", build,
                needs=("fastfc.models", "fastfc.layers", "fastfc.optim"))


# ---------------------------------------------------------------- a whole epoch

def synthetic_classification(n, d, classes, dtype, seed=0):
    """n samples of d features in [0, 1) labelled by a random linear teacher, so
    that training has something to learn. Returns X (n, d), y (n,) int64."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, d), dtype=np.float32).astype(dtype, copy=False)
    teacher = rng.standard_normal((d, classes)).astype(dtype)
    y = np.argmax((X - 0.5) @ teacher, axis=1).astype(np.int64)
    return X, y


def epoch_contenders(setup, n, dims=(784, 100, 10), batch=64, seed=0, sides=SIDES):
    """One epoch of a training loop per side, each as a user would write it:
    shuffle (each side's own generator, seeded alike, so all see the same
    batches), gather the batch, then the training step of the network.
    fastfc gathers into buffers allocated once (np.take(..., out=), as the Solver); the
    reference indexes with the permutation (a new array per batch); torch
    indexes its tensor view of the data. Each call returns the mean loss.
    sides: which sides to build (torch only when setup has it)."""
    net = mlp(*dims)
    X, y = synthetic_classification(n, dims[0], dims[-1], setup.dtype, seed)
    nets = _nets(setup, net, sides)
    orders = {side: np.random.default_rng(seed) for side in nets}

    def fastfc_epoch():
        X_batch, y_batch = np.empty((batch, X.shape[1]), X.dtype), np.empty(batch, y.dtype)
        order, total = orders["fastfc"].permutation(n), 0.0
        for start in range(0, n, batch):
            index = order[start:start + batch]
            xb, yb = X_batch[:len(index)], y_batch[:len(index)]
            # mode="clip": the default "raise" gathers into a temporary first
            np.take(X, index, axis=0, out=xb, mode="clip")
            np.take(y, index, out=yb, mode="clip")
            total += nets["fastfc"].step(xb, yb) * len(index)
        return total / n

    def reference_epoch():
        order, total = orders["reference"].permutation(n), 0.0
        for start in range(0, n, batch):
            index = order[start:start + batch]
            total += nets["reference"].step(X[index], y[index]) * len(index)
        return total / n

    calls = {side: call for side, call in (("fastfc", fastfc_epoch), ("reference", reference_epoch))
             if side in nets}
    if "torch" in nets:
        torch = setup.torch
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_epoch():
            order, total = torch.from_numpy(orders["torch"].permutation(n)), 0.0
            for index in order.split(batch):
                total += nets["torch"].step(Xt[index], yt[index]) * len(index)
            return total / n
        calls["torch"] = torch_epoch
    # Hundreds of Adam steps let float32 rounding differences grow a little.
    return Contenders(calls, tolerance_scale=10.0)


EPOCH_SAMPLES, QUICK_EPOCH_SAMPLES = 60_000, 6_000


def epoch_case():
    def build(setup):
        return epoch_contenders(setup, QUICK_EPOCH_SAMPLES if setup.quick else EPOCH_SAMPLES)
    return Case("epoch 784-100-10", "b64, 60000 (6000 quick)", build,
                needs=("fastfc.models", "fastfc.layers", "fastfc.optim"))


CASES = [
    affine_relu_case(64, 784, 100),
    affine_relu_case(128, 3072, 256),
    affine_relu_case(256, 784, 512),
    relu_case(256 * 512, "256x512"),
    relu_case(BIG, "16M"),
    dropout_case(256 * 512, "256x512"),
    dropout_case(BIG, "16M"),
    softmax_case(128, 10),
    softmax_case(4096, 1000),
    conv_case((64, 3, 32, 32), (32, 3, 3, 3)),
    conv_case((64, 32, 16, 16), (64, 32, 3, 3)),
    max_pool_case((64, 32, 32, 32)),
    norm_case("batchnorm", (128, 512)),
    norm_case("spatial_batchnorm", (64, 32, 32, 32)),
    norm_case("layernorm", (128, 512)),
    norm_case("groupnorm", (64, 32, 32, 32), groups=8),
    adam_case(1 << 20, "1M"),
    adam_case(BIG, "16M"),
    train_step_case("mlp 784-100-10", mlp(784, 100, 10), 64),
    train_step_case("mlp 3072-256-256-3", mlp(3072, 256, 256, 3), 128),
    train_step_case("mlp 784-512-512-10", mlp(784, 512, 512, 10), 128),
    train_step_case("cnn 3x32x32", CNN, 64),
    epoch_case(),
]


# ---------------------------------------------------------------- running and timing

def _seconds_per_call(call, loops):
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - start) / loops


def measure(calls, quick=False):
    """Median seconds per call of each callable, timed round-robin.

    Each callable gets a loop count making one sample last about 5 ms (2 ms
    with quick), from the fastest of up to three single calls; each round takes one
    sample of every side, starting with a different side each round. Rounds
    go on for a time budget, between a minimum and a maximum count. Short
    samples and many rounds keep the median clear of the stalls a shared
    machine causes (a preempted thread holds up a whole OpenMP team).

    Returns (dict side -> median seconds, dict side -> min seconds, rounds).
    """
    sample_s, min_rounds, max_rounds, budget_s = (0.002, 3, 10, 0.3) if quick else (0.005, 7, 200, 3.0)

    def loop_count(call):
        single = _seconds_per_call(call, 1)
        if single < sample_s:  # short calls: a stall in the one timed call would skew the count
            single = min(single, _seconds_per_call(call, 1), _seconds_per_call(call, 1))
        return max(1, min(10_000, round(sample_s / max(single, 1e-9))))
    loops = {side: loop_count(call) for side, call in calls.items()}
    samples = {side: [] for side in calls}
    sides, rounds, start = list(calls), 0, time.perf_counter()
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - start < budget_s):
        first = rounds % len(sides)
        for side in sides[first:] + sides[:first]:
            samples[side].append(_seconds_per_call(calls[side], loops[side]))
        rounds += 1
    return ({s: statistics.median(v) for s, v in samples.items()},
            {s: min(v) for s, v in samples.items()}, rounds)


def _as_results(value):
    return value if isinstance(value, tuple) else (value,)


def check(contenders, dtype):
    """Run every side check_calls times (the warm-up) and compare the compared
    sides' results with the reference's. Returns a list of mismatch messages."""
    results = {side: [_as_results(call()) for _ in range(contenders.check_calls)]
               for side, call in contenders.calls.items() if side != CEILING}
    tol = TOLERANCE[np.dtype(dtype).type] * contenders.tolerance_scale
    problems = []
    for side in contenders.compared:
        if side not in results:
            continue
        for got_call, want_call in zip(results[side], results["reference"]):
            for got, want in zip(got_call, want_call):
                got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
                scale = float(np.max(np.abs(want))) if want.size else 0.0
                if got.shape != want.shape or not np.allclose(got, want, rtol=tol, atol=tol * scale):
                    error = np.max(np.abs(got - want)) / max(scale, 1e-30) if got.shape == want.shape else None
                    problems.append(f"{side} differs from the reference" +
                                    (f" (max error {error:.2e} of the largest value)" if error is not None
                                     else f" (shape {got.shape} vs {want.shape})"))
                    break
    return sorted(set(problems))


def run_case(case, setup):
    """Build, check and time one case. Returns its result record (a dict)."""
    record = {"case": case.name, "shape": case.shape}
    missing = [m for m in case.needs if importlib.util.find_spec(m) is None]
    if missing:
        record["skipped"] = "needs " + ", ".join(missing)
        return record
    gc.collect()
    try:
        contenders = case.build(setup)
        problems = check(contenders, setup.dtype)
        median, best, rounds = measure(contenders.calls, setup.quick)
    except Exception as exc:  # one broken case should not hide the others' numbers
        record["error"] = f"{type(exc).__name__}: {exc}"
        return record
    record.update(check="ok" if not problems else "; ".join(problems), rounds=rounds,
                  median_ms={s: t * 1e3 for s, t in median.items() if s != CEILING},
                  min_ms={s: t * 1e3 for s, t in best.items() if s != CEILING})
    ours = median["fastfc"]
    for side in ("reference", "torch"):
        record[f"vs_{side}"] = median[side] / ours if side in median else None
    if CEILING in median:
        record["efficiency"] = {"kind": case.ceiling, "ceiling_ms": median[CEILING] * 1e3,
                                "fraction": median[CEILING] / ours}
    return record


# ---------------------------------------------------------------- output

COLUMNS = (("case", 26), ("shape", 26), ("fastfc ms", 10), ("ref ms", 10), ("torch ms", 10),
           ("vs ref", 7), ("vs torch", 8), ("efficiency", 11))


def _cell(value, width, left=False):
    return f"{value:<{width}}" if left else f"{value:>{width}}"


def format_row(record):
    """One table line for a result record."""
    name, shape = record["case"], record["shape"]
    if "skipped" in record or "error" in record:
        note = record.get("skipped") or "error: " + record["error"]
        return f"{_cell(name, 26, True)} {_cell(shape, 26, True)} {note}"
    times = record["median_ms"]

    def ms(side):
        return f"{times[side]:.4g}" if side in times else "-"

    def ratio(side):
        value = record.get(f"vs_{side}")
        return f"{value:.2f}x" if value else "-"
    efficiency = record.get("efficiency")
    eff = f"{'GEMM' if efficiency['kind'] == 'gemm' else 'copy'} {efficiency['fraction']:.0%}" if efficiency else "-"
    cells = [_cell(name, 26, True), _cell(shape, 26, True), _cell(ms("fastfc"), 10), _cell(ms("reference"), 10),
             _cell(ms("torch"), 10), _cell(ratio("reference"), 7), _cell(ratio("torch"), 8), _cell(eff, 11)]
    line = " ".join(cells)
    return line if record["check"] == "ok" else f"{line}  MISMATCH: {record['check']}"


def header():
    cells = [_cell(title, width, i < 2) for i, (title, width) in enumerate(COLUMNS)]
    return " ".join(cells) + "\n" + " ".join("-" * width for _, width in COLUMNS)


def machine_description():
    """CPU model and core count, for the report."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {_config._default_num_threads()} usable cores"


def plot_speedups(path, records):
    """Bar chart of fastfc's speedup over the reference and over torch, per case.
    Raises plotting.MissingMatplotlibError without matplotlib."""
    from .plotting import PLOT_INSTALL_HINT, MissingMatplotlibError

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingMatplotlibError(f"--plot needs matplotlib: {PLOT_INSTALL_HINT}") from exc
    timed = [r for r in records if "median_ms" in r]
    labels = [f"{r['case']} {r['shape']}" for r in timed]
    figure = Figure(figsize=(9, 0.32 * len(timed) + 1.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    rows = np.arange(len(timed))
    for offset, side, color in ((-0.2, "reference", "tab:blue"), (0.2, "torch", "tab:orange")):
        values = [r.get(f"vs_{side}") or 0.0 for r in timed]
        axes.barh(rows + offset, values, height=0.4, color=color, label=f"vs {side}")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yticks(rows, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("speedup of fastfc (other side's median time / fastfc's; > 1 is faster)")
    axes.legend(loc="lower right")
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path)


# ---------------------------------------------------------------- command line

def select_cases(patterns):
    """The cases whose "name shape" contains any of the patterns (case-insensitive); all without any."""
    if not patterns:
        return list(CASES)
    chosen = [c for c in CASES if any(p.lower() in f"{c.name} {c.shape}".lower() for p in patterns)]
    if not chosen:
        raise ValueError(f"--case {' / '.join(patterns)} matches no case (fastfc bench --list shows them)")
    return chosen


@contextlib.contextmanager
def numpy_blas_threads(n):
    """NumPy's own BLAS (the reference's GEMMs) limited to n threads for the
    block. SciPy's BLAS, which fastfc calls single-threaded inside its own
    threads, is left alone; where NumPy shares it, nothing is changed."""
    from threadpoolctl import ThreadpoolController

    fastfc_blas = {c.filepath for c in _config._scipy_blas_controllers()}
    controllers = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers
                   if c.filepath not in fastfc_blas]
    previous = [c.num_threads for c in controllers]
    for c in controllers:
        c.set_num_threads(n)
    try:
        yield
    finally:
        for c, count in zip(controllers, previous):
            c.set_num_threads(count)


def import_torch(threads):
    """torch set to `threads` threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def run(cases=None, threads=None, dtype="float32", quick=False, use_torch=True, out=None):
    """Run the benchmark cases and print the table to out as it goes.

    Inputs:
    - cases: a list of Case (default: all of CASES)
    - threads: thread count for every side (default: fastfc's current one)
    - dtype: "float32" or "float64"
    - quick: fewer and shorter rounds (rougher numbers), a smaller epoch
    - use_torch: include PyTorch when it is installed
    - out: text stream for the table (default: sys.stdout)

    Returns a dict: "meta" (machine, versions, settings) and "results" (one
    record per case: case, shape, median_ms and min_ms per side, vs_reference,
    vs_torch, efficiency {kind, ceiling_ms, fraction} where measured, rounds,
    check "ok" or the mismatch; or skipped / error with the reason).
    """
    from . import __version__, get_num_threads, set_num_threads

    out = out or sys.stdout
    old_threads = get_num_threads()
    threads = threads or old_threads
    torch = import_torch(threads) if use_torch else None
    dtype = np.dtype(dtype).type
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
    meta = {"machine": machine_description(), "threads": threads, "dtype": np.dtype(dtype).name,
            "quick": quick, "fastfc": __version__, "numpy": np.__version__,
            "torch": torch.__version__ if torch else None, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": _load_average(),
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    print(f"fastfc {__version__} on {meta['machine']}: {threads} thread(s), {meta['dtype']}, "
          f"{'quick' if quick else 'full'} run; medians of round-robin timings "
          f"(vs = other side's time / fastfc's)", file=out)
    if meta["load_average_before"] and meta["load_average_before"] > 0.5:
        print(f"note: the load average is {meta['load_average_before']:.1f} before starting: other "
              "processes share the cores, so the timings will be noisy (2-thread runs most)", file=out)
    if not os.environ.get("OPENBLAS_THREAD_TIMEOUT"):
        # Measured here: fastfc's affine layer took 2x longer right after the reference's GEMMs.
        print("note: NumPy's OpenBLAS threads keep spinning for about 0.1 s after each call and slow "
              "whichever side runs next; OPENBLAS_THREAD_TIMEOUT=4 (set before starting) makes them "
              "sleep at once", file=out)
    if use_torch and torch is None:
        print("PyTorch is not installed (pip install torch==2.13.0): no torch column", file=out)
    print(header(), file=out, flush=True)
    records = []
    set_num_threads(threads)
    try:
        with numpy_blas_threads(threads):
            for case in cases if cases is not None else CASES:
                setup = Setup(dtype=dtype, rng=np.random.default_rng(0), torch=torch, quick=quick,
                              threads=threads)
                records.append(run_case(case, setup))
                print(format_row(records[-1]), file=out, flush=True)
    finally:
        set_num_threads(old_threads)
    meta["load_average_after"] = _load_average()
    return {"meta": meta, "results": records}


def _load_average():
    """The 1-minute load average, or None where the system does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def add_arguments(parser):
    from .cli import DTYPES, positive_int

    parser.add_argument("--case", action="append", metavar="TEXT",
                        help="run only the cases whose name or shape contains TEXT (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="threads for every side (default: OMP_NUM_THREADS or all cores)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="float type (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer, shorter rounds and a 6000-sample epoch: rougher numbers, about a minute")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="bar chart of the speedups as PNG (needs matplotlib)")


def add_bench_parser(subparsers):
    """Register `fastfc bench` (called by fastfc.cli.build_parser)."""
    parser = subparsers.add_parser(
        "bench", help="time fastfc against the NumPy reference and PyTorch",
        description=__doc__.split("\n\n")[0] + " Runs each kernel and training step with every side "
                    "on the same data and threads; prints medians and speedups.")
    add_arguments(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args):
    """The `fastfc bench` command; returns the exit status (1 when a side's
    results disagree with the reference's or a case fails)."""
    from .plotting import MissingMatplotlibError

    cases = select_cases(args.case)
    if args.list:
        for case in cases:
            print(f"{case.name} {case.shape}")
        return 0
    report = run(cases, threads=args.threads, dtype=args.dtype, quick=args.quick, use_torch=not args.no_torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        try:
            plot_speedups(args.plot, report["results"])
            print(f"speedup chart written to {args.plot}")
        except MissingMatplotlibError as exc:
            print(f"fastfc: {exc}; no chart written", file=sys.stderr)
    failed = [r for r in report["results"] if "error" in r or r.get("check", "ok") != "ok"]
    if failed:
        print(f"fastfc: {len(failed)} case(s) failed or disagree with the reference: "
              + ", ".join(f"{r['case']} {r['shape']}" for r in failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["bench"] + sys.argv[1:]))
