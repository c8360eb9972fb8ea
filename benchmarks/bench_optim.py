"""Optimizer steps: fastfc.optim vs a NumPy transcription vs torch.optim (float32).

Groups: one per optimizer on 1M parameters (fastfc's one fused pass; NumPy's
update written with in-place ufuncs and preallocated scratch, the fastest
plain NumPy form; torch with fused=True where torch has a fused CPU kernel);
"adam 1M params" also times a plain copy of 1M floats (np.copyto), the
memory-speed yardstick: Adam moves 7 arrays (reads p, grad, m, v; writes
p, m, v), a copy 2. "adam MLP 784-512-512-10" compares one C call for the
whole param group with one call per parameter.

The NumPy twins below transcribe torch's documented algorithms; every test
first checks one step of its side against them on fresh copies.
"""
import numpy as np
import pytest

from fastfc import _optim, optim
from fastfc.parameter import Parameter

from benchutil import check_close

N = 1_000_000
LR = 1e-3


class NumpyAdam:
    """torch's Adam/AdamW (no amsgrad) in NumPy, in place, no temporaries per step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled=False):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.m = [np.zeros_like(p.data) for p in params]
        self.v = [np.zeros_like(p.data) for p in params]
        self.tmp = [np.empty_like(p.data) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.t)
        bc2_sqrt = (1 - beta2 ** self.t) ** 0.5
        for p, m, v, tmp in zip(self.params, self.m, self.v, self.tmp):
            g = p.grad
            if self.decoupled:
                p.data *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                g = g + self.weight_decay * p.data
            m += (1 - beta1) * (g - m)
            v *= beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - beta2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= -step_size
            p.data += tmp


class NumpySGD:
    """torch's SGD with momentum (no dampening, nesterov or weight decay) in NumPy."""

    def __init__(self, params, lr, momentum):
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buf = [None] * len(params)

    def step(self):
        for k, p in enumerate(self.params):
            if self.buf[k] is None:
                self.buf[k] = p.grad.copy()
            else:
                self.buf[k] *= self.momentum
                self.buf[k] += p.grad
            p.data -= self.lr * self.buf[k]


class NumpyAdagrad:
    """torch's Adagrad (no lr decay or weight decay) in NumPy."""

    def __init__(self, params, lr, eps=1e-10):
        self.params, self.lr, self.eps = params, lr, eps
        self.sum = [np.zeros_like(p.data) for p in params]
        self.tmp = [np.empty_like(p.data) for p in params]

    def step(self):
        for p, s, tmp in zip(self.params, self.sum, self.tmp):
            np.multiply(p.grad, p.grad, out=tmp)
            s += tmp
            np.sqrt(s, out=tmp)
            tmp += self.eps
            np.divide(p.grad, tmp, out=tmp)
            tmp *= -self.lr
            p.data += tmp


class NumpyRMSprop:
    """torch's RMSprop (not centered, no momentum or weight decay) in NumPy."""

    def __init__(self, params, lr, alpha=0.99, eps=1e-8):
        self.params, self.lr, self.alpha, self.eps = params, lr, alpha, eps
        self.sq = [np.zeros_like(p.data) for p in params]
        self.tmp = [np.empty_like(p.data) for p in params]

    def step(self):
        for p, sq, tmp in zip(self.params, self.sq, self.tmp):
            sq *= self.alpha
            np.multiply(p.grad, p.grad, out=tmp)
            tmp *= 1 - self.alpha
            sq += tmp
            np.sqrt(sq, out=tmp)
            tmp += self.eps
            np.divide(p.grad, tmp, out=tmp)
            tmp *= -self.lr
            p.data += tmp


# name: (fastfc class, torch class name, hyperparameters, NumPy twin factory)
RULES = {
    "adam": (optim.Adam, "Adam", dict(lr=LR), lambda ps: NumpyAdam(ps, lr=LR)),
    "adamw": (optim.AdamW, "AdamW", dict(lr=LR, weight_decay=1e-2),
              lambda ps: NumpyAdam(ps, lr=LR, weight_decay=1e-2, decoupled=True)),
    "sgd momentum": (optim.SGD, "SGD", dict(lr=LR, momentum=0.9),
                     lambda ps: NumpySGD(ps, LR, 0.9)),
    "adagrad": (optim.Adagrad, "Adagrad", dict(lr=LR), lambda ps: NumpyAdagrad(ps, LR)),
    "rmsprop": (optim.RMSprop, "RMSprop", dict(lr=LR), lambda ps: NumpyRMSprop(ps, LR)),
}
MLP_SHAPES = [(784, 512), (512,), (512, 512), (512,), (512, 10), (10,)]


def make_params(rng, shapes):
    params = []
    for shape in shapes:
        p = Parameter(rng.standard_normal(shape, dtype=np.float32))
        p.grad[...] = rng.standard_normal(shape, dtype=np.float32)
        params.append(p)
    return params


def clone(params):
    out = []
    for p in params:
        q = Parameter(p.data.copy())
        q.grad[...] = p.grad
        out.append(q)
    return out


def torch_step(torch, name, params, hyper):
    """A torch optimizer over tensors sharing the params' memory; fused where torch can."""
    tensors = []
    for p in params:
        t = torch.from_numpy(p.data).requires_grad_()
        t.grad = torch.from_numpy(p.grad)
        tensors.append(t)
    cls = getattr(torch.optim, name)
    try:
        opt = cls(tensors, fused=True, **hyper)
        opt.step()  # fails here if there is no fused CPU kernel for this rule
    except (RuntimeError, TypeError, ValueError):
        opt = cls(tensors, **hyper)
        opt.step()
    return opt.step


def side_step(side, rule, params, request):
    """The step function of one contender; its first step has been taken."""
    fastfc_cls, torch_name, hyper, numpy_twin = RULES[rule]
    if side == "fastfc":
        step = fastfc_cls(params, **hyper).step
    elif side == "reference":
        step = numpy_twin(params).step
    else:
        return torch_step(request.getfixturevalue("torch"), torch_name, params, hyper)
    step()
    return step


@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
@pytest.mark.parametrize("rule", list(RULES))
def test_optimizer_step(benchmark, rng, request, rule, side):
    benchmark.group = f"{rule} 1M params"
    params = make_params(rng, [(N,)])
    want = clone(params)
    RULES[rule][3](want).step()
    step = side_step(side, rule, params, request)  # one step on fresh state, then check it
    check_close([p.data for p in params], [p.data for p in want])
    benchmark(step)


def test_copy_1m_floats(benchmark, rng):
    """The memory-speed yardstick of the Adam group: read 1M floats, write 1M."""
    benchmark.group = "adam 1M params"
    src = rng.standard_normal(N, dtype=np.float32)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)
    np.testing.assert_array_equal(dst, src)


def per_param_adam(params):
    """fastfc's Adam kernel called once per parameter (no multi-tensor call)."""
    states = [(np.zeros_like(p.data), np.zeros_like(p.data), None) for p in params]
    t = [0]

    def step():
        t[0] += 1
        for p, state in zip(params, states):
            _optim.adam_step([p.data], [p.grad], [state], [t[0]], None, LR, 0.9, 0.999, 1e-8,
                             0.0, False, False)

    return step


@pytest.mark.parametrize("side", ["fastfc", "per-param-calls", "reference", "torch"])
def test_adam_mlp_param_set(benchmark, rng, request, side):
    benchmark.group = "adam MLP 784-512-512-10"
    params = make_params(rng, MLP_SHAPES)
    want = clone(params)
    NumpyAdam(want, lr=LR).step()
    if side == "per-param-calls":
        step = per_param_adam(params)
        step()
    else:
        step = side_step(side, "adam", params, request)
    check_close([p.data for p in params], [p.data for p in want])
    benchmark(step)
