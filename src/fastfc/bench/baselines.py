"""The optimizers the fastfc ones are measured against: NumPy transcriptions
of torch.optim's documented algorithms (the reference side), and torch.optim
at its fastest on the CPU (the torch side).

Each NumPy optimizer updates the arrays in place, with in-place ufuncs and
scratch arrays allocated once (the fastest plain NumPy form), and takes
torch's keyword names. Inputs of each: params, grads: lists of arrays of
matching shapes (grads are read at each step()).
"""
import functools

import numpy as np

LEARNING_RATE = 1e-3


class NumpyAdam:
    """torch's Adam, or AdamW with decoupled=True (no amsgrad)."""

    def __init__(self, params, grads, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled=False):
        self.params, self.grads, self.lr, self.betas, self.eps = params, grads, lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.t)
        bc2_sqrt = (1 - beta2 ** self.t) ** 0.5
        for p, g, m, v, tmp in zip(self.params, self.grads, self.m, self.v, self.tmp):
            if self.decoupled:
                p *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                g = g + self.weight_decay * p
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
            p += tmp


class NumpySGD:
    """torch's SGD with momentum (no dampening, nesterov or weight decay)."""

    def __init__(self, params, grads, lr, momentum):
        self.params, self.grads, self.lr, self.momentum = params, grads, lr, momentum
        self.buf = [None] * len(params)

    def step(self):
        for k, (p, g) in enumerate(zip(self.params, self.grads)):
            if self.buf[k] is None:
                self.buf[k] = g.copy()
            else:
                self.buf[k] *= self.momentum
                self.buf[k] += g
            p -= self.lr * self.buf[k]


def _scaled_step(p, g, squares, tmp, lr, eps):
    """p -= lr * g / (sqrt(squares) + eps), in place through the scratch tmp
    (Adagrad's and RMSprop's step, given their sums of squared gradients)."""
    np.sqrt(squares, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    tmp *= -lr
    p += tmp


class NumpyAdagrad:
    """torch's Adagrad (no lr decay or weight decay)."""

    def __init__(self, params, grads, lr, eps=1e-10):
        self.params, self.grads, self.lr, self.eps = params, grads, lr, eps
        self.sum = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]

    def step(self):
        for p, g, s, tmp in zip(self.params, self.grads, self.sum, self.tmp):
            np.multiply(g, g, out=tmp)
            s += tmp
            _scaled_step(p, g, s, tmp, self.lr, self.eps)


class NumpyRMSprop:
    """torch's RMSprop (not centered, no momentum or weight decay)."""

    def __init__(self, params, grads, lr, alpha=0.99, eps=1e-8):
        self.params, self.grads, self.lr, self.alpha, self.eps = params, grads, lr, alpha, eps
        self.sq = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]

    def step(self):
        for p, g, sq, tmp in zip(self.params, self.grads, self.sq, self.tmp):
            sq *= self.alpha
            np.multiply(g, g, out=tmp)
            tmp *= 1 - self.alpha
            sq += tmp
            _scaled_step(p, g, sq, tmp, self.lr, self.eps)


# torch.optim class name -> its NumPy transcription
NUMPY_OPTIMIZERS = {"Adam": NumpyAdam, "AdamW": functools.partial(NumpyAdam, decoupled=True), "SGD": NumpySGD,
                    "Adagrad": NumpyAdagrad, "RMSprop": NumpyRMSprop}


def torch_optimizer(torch, name, params, **hyper):
    """torch.optim's `name` at its fastest on the CPU: the fused kernel where
    this build has one for the rule, else the multi-tensor (foreach) one."""
    cls = getattr(torch.optim, name)
    try:
        return cls(params, fused=True, **hyper)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **hyper)
