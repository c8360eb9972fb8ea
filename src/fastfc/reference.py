"""Pure NumPy twin of fastfc.functional: the same functions, names and
signatures, written for clarity. It is the oracle of the tests and the
baseline of the benchmarks, and never imports the compiled extension."""
import math

import numpy as np

# splitmix64 constants: the dropout mask is the same counter-based draw as
# csrc/activations.c, so both sides drop the same elements for a seed.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def affine_forward(x, w, b):
    """out = x.reshape(N, D) @ w + b. Inputs x (N, d_1, ..., d_k), w (D, M), b (M,).
    Returns (out (N, M), cache (x, w, b))."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache, compute_dx=True):
    """Returns (dx shaped like x or None, dw (D, M), db (M,))."""
    x, w, _ = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape) if compute_dx else None
    return dx, x2.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    """out = max(0, x), NaN propagating. Returns (out, cache = x)."""
    return np.where(x < 0, np.zeros_like(x), x), x


def relu_backward(dout, cache):
    """dx = dout where x > 0 else 0."""
    x = cache
    return np.where(x > 0, dout, np.zeros_like(dout))


def affine_relu_forward(x, w, b):
    """ReLU(affine(x)). Returns (out, cache (x, w, b, out))."""
    a, _ = affine_forward(x, w, b)
    out, _ = relu_forward(a)
    return out, (x, w, b, out)


def affine_relu_backward(dout, cache, compute_dx=True):
    """Returns (dx or None, dw, db) of the affine-ReLU pair."""
    x, w, b, out = cache
    da = relu_backward(dout, out)
    return affine_backward(da, (x, w, b), compute_dx)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)) without overflow. Returns (out, cache = out)."""
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(dout, cache):
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x):
    """Returns (tanh(x), cache = the output)."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    t = cache
    return dout * (1 - t * t)


def dropout_keep_mask(seed, n, p):
    """Which of n elements dropout keeps: element i draws the i-th output of a
    splitmix64 sequence started at seed and is kept when its top 53 bits, as a
    fraction of 2**53, are >= p."""
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) >= np.uint64(math.ceil(p * 2.0**53))


def dropout_forward(x, p, train=True, seed=None):
    """Inverted dropout: drop with probability p, scale the rest by 1/(1-p).
    Returns (out, cache (p, train, seed, shape, dtype))."""
    if seed is None:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    cache = (p, train, seed, x.shape, x.dtype)
    if not train:
        return x, cache
    return _dropout_apply(x, p, seed), cache


def dropout_backward(dout, cache):
    p, train, seed, _, _ = cache
    return _dropout_apply(dout, p, seed) if train else dout


def _dropout_apply(a, p, seed):
    keep = dropout_keep_mask(seed, a.size, p).reshape(a.shape)
    scale = a.dtype.type(1.0 / (1.0 - p))
    return np.where(keep, a * scale, np.zeros_like(a))


def softmax_loss(x, y):
    """Softmax cross-entropy averaged over N. Inputs x (N, C), y (N,).
    Returns (loss, dx (N, C))."""
    n = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.mean(np.log(sums[:, 0]) - shifted[rows, y])
    dx = exp / sums
    dx[rows, y] -= 1
    return float(loss), dx / n


def svm_loss(x, y):
    """Multiclass hinge loss, margin 1, averaged over N. Returns (loss, dx)."""
    n = x.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, x - x[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = margins.sum() / n
    positive = (margins > 0).astype(x.dtype)
    positive[rows, y] = -positive.sum(axis=1)
    return float(loss), positive / n


def mse_loss(pred, target):
    """Mean over all elements of (pred - target)**2. Returns (loss, dpred)."""
    diff = pred - target
    return float(np.mean(diff * diff)), 2 * diff / diff.size
