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
from .baselines import LEARNING_RATE, NUMPY_OPTIMIZERS, torch_optimizer
from .networks import CNN, SIDES, mlp, side_nets


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
    """name and shape label the row; build(setup) -> Contenders; family
    groups the cases of one benchmarks/bench_*.py file; ceiling is "gemm"
    or "copy" when the case times one."""
    name: str
    shape: str
    build: Callable
    family: str = ""
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

# The kernels the cases time, each named in full (so that `git grep` of a
# kernel's name finds its case): kind -> side -> function or (forward, backward).
AFFINE_KERNELS = {
    "affine_relu": {"fastfc": (F.affine_relu_forward, F.affine_relu_backward),
                    "reference": (R.affine_relu_forward, R.affine_relu_backward)},
    "affine": {"fastfc": (F.affine_forward, F.affine_backward),
               "reference": (R.affine_forward, R.affine_backward)},
}
LOSS_KERNELS = {"softmax": {"fastfc": F.softmax_loss, "reference": R.softmax_loss},
                "svm": {"fastfc": F.svm_loss, "reference": R.svm_loss}}
CONV_KERNELS = {"fastfc": (F.conv_forward, F.conv_backward), "reference": (R.conv_forward, R.conv_backward),
                "naive": (R.conv_forward_naive, R.conv_backward_naive)}
POOL_KERNELS = {
    "max": {"fastfc": (F.max_pool_forward, F.max_pool_backward),
            "reference": (R.max_pool_forward, R.max_pool_backward)},
    "avg": {"fastfc": (F.avg_pool_forward, F.avg_pool_backward),
            "reference": (R.avg_pool_forward, R.avg_pool_backward)},
}
NORM_KERNELS = {
    "batchnorm": {"fastfc": (F.batchnorm_forward, F.batchnorm_backward),
                  "reference": (R.batchnorm_forward, R.batchnorm_backward)},
    "spatial_batchnorm": {"fastfc": (F.spatial_batchnorm_forward, F.spatial_batchnorm_backward),
                          "reference": (R.spatial_batchnorm_forward, R.spatial_batchnorm_backward)},
    "layernorm": {"fastfc": (F.layernorm_forward, F.layernorm_backward),
                  "reference": (R.layernorm_forward, R.layernorm_backward)},
    "groupnorm": {"fastfc": (F.groupnorm_forward, F.groupnorm_backward),
                  "reference": (R.groupnorm_forward, R.groupnorm_backward)},
}

def affine_case(n, d, m, relu=True):
    """affine(+ReLU) forward and backward (dx, dw, db) on x (n, d), w (d, m);
    ceiling: its three GEMMs alone, through the same BLAS and thread split."""
    layer = "affine_relu" if relu else "affine"

    def build(setup):
        from .._affine import affine_gemms_only

        x = _normal(setup, (n, d))
        w = _normal(setup, (d, m), 1 / math.sqrt(d))
        b = _normal(setup, m)
        dout = _normal(setup, (n, m))
        calls = {side: _fwd_bwd(forward, backward, x, w, b, dout)
                 for side, (forward, backward) in AFFINE_KERNELS[layer].items()}
        calls[CEILING] = lambda: affine_gemms_only(x, w, dout)
        if setup.torch:
            torch = setup.torch
            wt = np.ascontiguousarray(w.T)  # torch's Linear holds (out, in)
            xt, wtt, bt = _torch_tensors(torch, x, wt, b, grad=(0, 1, 2))
            linear = torch.nn.functional.linear
            step = _torch_fwd_bwd(
                torch, (lambda x_, w_, b_: torch.relu(linear(x_, w_, b_))) if relu else linear,
                (xt, wtt, bt), torch.from_numpy(dout))
            calls["torch"] = lambda: _swap_dw(step())
        return Contenders(calls)
    return Case(f"{layer} fwd+bwd", f"{n}x{d}x{m}", build, family="fc", ceiling="gemm")


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
    return Case("relu fwd+bwd", label, build, family="fc", ceiling="copy" if n >= BIG else None)


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
    return Case("dropout fwd+bwd", label, build, family="fc", ceiling="copy" if n >= BIG else None)


def loss_case(kind, n, c):
    """A loss ("softmax" cross-entropy or multiclass "svm") and its gradient
    on (n, c) logits. torch: cross_entropy, or multi_margin_loss times c (it
    also divides by the class count)."""
    def build(setup):
        x = _normal(setup, (n, c))
        y = setup.rng.integers(0, c, n)
        calls = {side: functools.partial(loss, x, y) for side, loss in LOSS_KERNELS[kind].items()}
        if setup.torch:
            torch = setup.torch
            xt, yt = _torch_tensors(torch, x, y, grad=(0,))
            scale = 1 if kind == "softmax" else c
            torch_loss = (torch.nn.functional.cross_entropy if kind == "softmax"
                          else torch.nn.functional.multi_margin_loss)

            def torch_call():
                xt.grad = None
                loss = torch_loss(xt, yt)
                loss.backward()
                return loss.item() * scale, xt.grad.numpy() * scale
            calls["torch"] = torch_call
        return Contenders(calls)
    return Case(f"{kind} loss", f"{n}x{c}", build, family="fc")


def _conv_inputs(setup, x_shape, w_shape, pad):
    """x, w (scaled by 1/sqrt(fan-in)), b and dout of a stride-1 convolution."""
    fan_in = int(np.prod(w_shape[1:]))
    x = _normal(setup, x_shape)
    w = _normal(setup, w_shape, 1 / math.sqrt(fan_in))
    b = _normal(setup, w_shape[0])
    out_hw = tuple(s + 2 * pad - k + 1 for s, k in zip(x_shape[2:], w_shape[2:]))
    return x, w, b, _normal(setup, (x_shape[0], w_shape[0]) + out_hw)


def conv_case(x_shape, w_shape, pad=1, naive=False):
    """Convolution (stride 1) forward and backward (dx, dw, db). naive: the
    reference's loop version as one more contender (seconds per call at
    N = 64: benchmarks/bench_conv.py times it at N = 1), and no torch."""
    def build(setup):
        x, w, b, dout = _conv_inputs(setup, x_shape, w_shape, pad)
        calls = {side: _fwd_bwd(functools.partial(forward, stride=1, pad=pad), backward, x, w, b, dout)
                 for side, (forward, backward) in CONV_KERNELS.items() if side != "naive" or naive}
        if setup.torch and not naive:
            torch = setup.torch
            calls["torch"] = _torch_fwd_bwd(
                torch, lambda *a: torch.nn.functional.conv2d(*a, padding=pad),
                _torch_tensors(torch, x, w, b, grad=(0, 1, 2)), torch.from_numpy(dout))
        return Contenders(calls, compared=("fastfc", "torch", "naive"))
    return Case("conv fwd+bwd", conv_label(x_shape, w_shape), build, family="conv")


def conv_label(x_shape, w_shape):
    return "x(%s) w(%s)" % (",".join(map(str, x_shape)), ",".join(map(str, w_shape)))


def pool_case(kind, x_shape, height, width, stride):
    """height x width pooling ("max" or "avg") with the given stride, forward and backward."""
    def build(setup):
        x = _normal(setup, x_shape)  # continuous values: no ties
        out_hw = ((x_shape[2] - height) // stride + 1, (x_shape[3] - width) // stride + 1)
        dout = _normal(setup, x_shape[:2] + out_hw)
        calls = {side: _fwd_bwd(lambda a, f=forward: f(a, height, width, stride), backward, x, dout)
                 for side, (forward, backward) in POOL_KERNELS[kind].items()}
        if setup.torch:
            torch = setup.torch
            pool = getattr(torch.nn.functional, f"{kind}_pool2d")
            calls["torch"] = _torch_fwd_bwd(
                torch, lambda a: pool(a, (height, width), stride),
                _torch_tensors(torch, x, grad=(0,)), torch.from_numpy(dout))
        return Contenders(calls)
    return Case(f"{kind} pool {height}x{width}/{stride} fwd+bwd", "(%s)" % ",".join(map(str, x_shape)), build,
                family="pool")


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


def norm_forward(forward, kind, gamma, beta, groups=None):
    """A normalization's forward (of kind) in training mode as a function of
    x; the batchnorms get running statistics of their own (updated in
    place, as in training)."""
    if kind in ("batchnorm", "spatial_batchnorm"):
        running = np.zeros_like(gamma), np.ones_like(gamma)
        return lambda a: forward(a, gamma, beta, *running)
    if kind == "groupnorm":
        return lambda a: forward(a, gamma, beta, groups)
    return lambda a: forward(a, gamma, beta)


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
        calls = {side: _fwd_bwd(norm_forward(forward, kind, gamma, beta, groups), backward, x, dout)
                 for side, (forward, backward) in NORM_KERNELS[kind].items()}
        calls[CEILING] = _copy_moving(setup, 5, x.size)
        if setup.torch:
            calls["torch"] = _torch_fwd_bwd(
                setup.torch, NORM_KINDS[kind](setup.torch, groups),
                _torch_tensors(setup.torch, x, gamma, beta, grad=(0, 1, 2)),
                setup.torch.from_numpy(dout))
        return Contenders(calls)
    label = "(%s)" % ",".join(map(str, shape)) + (f" G={groups}" if groups else "")
    return Case(f"{kind} fwd+bwd", label, build, family="norm", ceiling="copy")


# update rule -> (torch.optim class name, hyperparameters, as torch names them;
# fastfc.optim has a class of that name too)
OPTIMIZER_RULES = {
    "adam": ("Adam", dict(lr=LEARNING_RATE)),
    "adamw": ("AdamW", dict(lr=LEARNING_RATE, weight_decay=1e-2)),
    "sgd momentum": ("SGD", dict(lr=LEARNING_RATE, momentum=0.9)),
    "adagrad": ("Adagrad", dict(lr=LEARNING_RATE)),
    "rmsprop": ("RMSprop", dict(lr=LEARNING_RATE)),
}


def optimizer_case(rule, shapes, label, copy_sweeps=None):
    """One step of an update rule (OPTIMIZER_RULES) on parameters of the
    given shapes whose gradients are given. copy_sweeps: the sweeps over the
    parameters the step moves (Adam: 7, grad; param, m, v read and written),
    for a copy ceiling."""
    torch_name, hyper = OPTIMIZER_RULES[rule]

    def build(setup):
        from ..optim import OPTIMIZERS
        from ..parameter import Parameter

        starts = [_normal(setup, shape) for shape in shapes]
        grads = [_normal(setup, shape) for shape in shapes]
        params = [Parameter(start.copy(), f"w{i}") for i, start in enumerate(starts)]
        for param, grad in zip(params, grads):
            param.grad[...] = grad
        fastfc_optimizer = OPTIMIZERS[torch_name.lower()](params, **hyper)
        numpy_params = [start.copy() for start in starts]
        numpy_optimizer = NUMPY_OPTIMIZERS[torch_name](numpy_params, grads, **hyper)

        def fastfc_call():
            fastfc_optimizer.step()
            return tuple(param.data for param in params)

        def reference_call():
            numpy_optimizer.step()
            return tuple(numpy_params)
        calls = {"fastfc": fastfc_call, "reference": reference_call}
        if copy_sweeps:
            calls[CEILING] = _copy_moving(setup, copy_sweeps, sum(math.prod(s) for s in shapes))
        if setup.torch:
            torch = setup.torch
            tensors = [torch.nn.Parameter(torch.from_numpy(start.copy())) for start in starts]
            for tensor, grad in zip(tensors, grads):
                tensor.grad = torch.from_numpy(grad.copy())
            torch_step = torch_optimizer(torch, torch_name, tensors, **hyper).step

            def torch_call():
                torch_step()
                return tuple(tensor.detach().numpy() for tensor in tensors)
            calls["torch"] = torch_call
        return Contenders(calls)
    return Case(f"{rule} step", label, build, family="optim", ceiling="copy" if copy_sweeps else None)


def random_batch(setup, net, batch):
    """A random batch for the network: inputs (batch, ...) and labels."""
    kind, sizes = next(layer for layer in net if layer[0] in ("linear", "conv"))
    shape = (batch, sizes[0]) if kind == "linear" else (batch, sizes[0], 32, 32)
    return _normal(setup, shape), setup.rng.integers(0, net[-1][1][1], batch)


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
    return Case("train step " + name, f"batch {batch}", build, family="train step")


# ---------------------------------------------------------------- a whole epoch

def gather_rows_case(n_rows, d, batch, quick_rows):
    """The epoch's gather: one shuffled batch of rows of an (n_rows, d) data set
    larger than the caches, the next batch of one permutation at each call
    (so no call finds its rows cached). fastfc: gather_rows into a kept
    buffer (as its Solver); the reference: x[index], a new array per batch (as
    the reference loop); torch: index_select into a kept tensor."""
    def build(setup):
        rows = quick_rows if setup.quick else n_rows
        X = setup.rng.random((rows, d), dtype=np.float32).astype(setup.dtype, copy=False)
        order = setup.rng.permutation(rows - rows % batch).reshape(-1, batch)

        def batches():
            """An endless stream of the permutation's batches; each side its own."""
            while True:
                yield from order

        fastfc_stream, reference_stream = batches(), batches()
        out = np.empty((batch, d), setup.dtype)
        calls = {"fastfc": lambda: (F.gather_rows(X, next(fastfc_stream), out=out),),
                 "reference": lambda: (R.gather_rows(X, next(reference_stream)),)}
        if setup.torch:
            torch = setup.torch
            Xt, torch_stream = torch.from_numpy(X), batches()
            out_t = torch.empty((batch, d), dtype=Xt.dtype)
            calls["torch"] = lambda: (torch.index_select(
                Xt, 0, torch.from_numpy(next(torch_stream)), out=out_t).numpy(),)
        return Contenders(calls)
    return Case("gather rows", f"b{batch} of {n_rows}x{d} ({quick_rows} quick)", build,
                family="gather")


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
    fastfc gathers into buffers allocated once (F.gather_rows, as the Solver); the
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
            F.gather_rows(X, index, out=xb)
            np.take(y, index, out=yb, mode="clip")  # "clip": "raise" gathers into a temporary first
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
    return Case("epoch 784-100-10", "b64, 60000 (6000 quick)", build, family="epoch")
# The sizes of the cases, each defined once: `fastfc bench` runs every case of
# CASES, and benchmarks/bench_*.py time the same cases under pytest-benchmark.
AFFINE_SHAPES = ((64, 784, 100), (128, 3072, 256), (256, 784, 512))  # (N, D, M)
ELEMENTWISE_SIZES = ((64 * 512, "64x512"), (256 * 512, "256x512"), (BIG, "16M"))
LOSS_SHAPES = ((128, 10), (4096, 1000))
CONV_SHAPES = (((64, 3, 32, 32), (32, 3, 3, 3)), ((64, 32, 16, 16), (64, 32, 3, 3)))  # (x, w), pad 1
POOL_INPUT = (64, 32, 32, 32)
POOLS = (("max", 2, 2, 2), ("max", 3, 3, 2), ("avg", 2, 2, 2))  # (kind, height, width, stride)
NORMS = (("batchnorm", (128, 512), None), ("spatial_batchnorm", (64, 32, 32, 32), None),
         ("layernorm", (128, 512), None), ("groupnorm", (64, 32, 32, 32), 8))  # (kind, x shape, groups)
OPTIMIZER_SIZE = (1 << 20, "1M")
ADAM_MLP_SHAPES = ((784, 512), (512,), (512, 512), (512,), (512, 10), (10,))  # the MLP 784-512-512-10's
TRAIN_STEP_NETWORKS = (("mlp 784-100-10", mlp(784, 100, 10), 64), ("mlp 3072-256-256-3", mlp(3072, 256, 256, 3), 128),
                       ("mlp 784-512-512-10", mlp(784, 512, 512, 10), 128), ("cnn 3x32x32", CNN, 64))

CASES = [
    *(affine_case(*shape, relu=relu) for relu in (True, False) for shape in AFFINE_SHAPES),
    *(make(n, label) for make in (relu_case, dropout_case) for n, label in ELEMENTWISE_SIZES),
    *(loss_case(kind, *shape) for kind in ("softmax", "svm") for shape in LOSS_SHAPES),
    *(conv_case(x_shape, w_shape) for x_shape, w_shape in CONV_SHAPES),
    *(pool_case(kind, POOL_INPUT, height, width, stride) for kind, height, width, stride in POOLS),
    *(norm_case(kind, shape, groups) for kind, shape, groups in NORMS),
    optimizer_case("adam", [(OPTIMIZER_SIZE[0],)], OPTIMIZER_SIZE[1]),
    optimizer_case("adam", [(BIG,)], "16M", copy_sweeps=7),
    *(optimizer_case(rule, [(OPTIMIZER_SIZE[0],)], OPTIMIZER_SIZE[1]) for rule in OPTIMIZER_RULES if rule != "adam"),
    optimizer_case("adam", ADAM_MLP_SHAPES, "MLP 784-512-512-10"),
    *(train_step_case(*network) for network in TRAIN_STEP_NETWORKS),
    gather_rows_case(EPOCH_SAMPLES, 784, 64, QUICK_EPOCH_SAMPLES),
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
