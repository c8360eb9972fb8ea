"""The benchmark cases: each a function that builds its inputs and returns
one callable per contender (see fastfc.bench)."""
import concurrent.futures
import dataclasses
import functools
import math
from typing import Callable

import numpy as np

from .. import functional as F
from .. import reference as R
from .networks import CNN, LEARNING_RATE, SIDES, NumpyAdam, mlp, side_nets, torch_adam


CEILING = "ceiling"  # the extra contender of cases that have one
BIG = 16 * 1024 * 1024  # elements: 64 MiB in float32, twice the 32 MiB L3 of the machine measured


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
        from .._affine import affine_gemms_only

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


def adam_case(n, label):
    """One Adam step (torch's defaults, lr 1e-3) on n parameters whose gradient is
    given; 7 sweeps (grad; param, m, v read and written)."""
    def build(setup):
        from ..optim import Adam
        from ..parameter import Parameter

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
            optimizer = torch_adam(torch, [torch_param])

            def torch_call():
                optimizer.step()
                return (torch_param.detach().numpy(),)
            calls["torch"] = torch_call
        return Contenders(calls)
    return Case("adam step", label, build, needs=("fastfc.optim",),
                ceiling="copy" if n >= BIG else None)


def random_batch(setup, net, batch):
    """A random batch for the network: inputs (batch, ...) and labels."""
    first = net[0]
    shape = (batch, first[1]) if first[0] == "linear" else (batch, first[1], 32, 32)
    return _normal(setup, shape), setup.rng.integers(0, net[-1][2], batch)


def train_step_case(name, net, batch):
    """One training step: forward, softmax loss, backward, Adam step, on a fixed batch.
    The warm-up compares the losses of the first two steps."""
    def build(setup):
        x, y = random_batch(setup, net, batch)
        nets = side_nets(setup, net)
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
    nets = side_nets(setup, net, sides)
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


def select_cases(patterns):
    """The cases whose "name shape" contains any of the patterns (case-insensitive); all without any."""
    if not patterns:
        return list(CASES)
    chosen = [c for c in CASES if any(p.lower() in f"{c.name} {c.shape}".lower() for p in patterns)]
    if not chosen:
        raise ValueError(f"--case {' / '.join(patterns)} matches no case (fastfc bench --list shows them)")
    return chosen
