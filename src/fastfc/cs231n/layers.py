"""The course's layers.py: forward/backward pairs with dict parameters, on
fastfc's C kernels (fastfc.functional).

Every forward returns (out, cache) and every backward takes (dout, cache);
the caches are what the kernels need, not the course's tuples, so pass them
only to the matching backward. Inputs of mixed types are computed in their
common float type, as the course's NumPy code would (an integer gamma or b
is fine); the results have that type.

Conventions (see fastfc.cs231n for the whole list):
- dropout_param['p'] is the probability of KEEPING a unit (cs231n 2018 and
  later). In the 2017 assignment it was the probability of dropping one:
  pass {'p': 1 - p_drop} for the 2017 meaning. The mask comes from fastfc's
  hash generator, not np.random, so it differs from the course's mask for
  the same seed (same statistics; the same mask on every call with
  dropout_param['seed'], as the course).
- The *_naive functions are the same C kernels as fastfc.cs231n.fast_layers'
  (there is nothing slow to compare them with).
- batchnorm_backward and batchnorm_backward_alt are one kernel: the
  simplified single-pass backward.
- Bad dict parameters (a missing or misspelled key, a wrong mode, p outside
  (0, 1], eps <= 0, running statistics of the wrong shape) raise a
  ValueError or TypeError naming the key, where the course code would fail
  later or silently use a default.
"""
import numpy as np

from .. import functional as F
from ._params import as_floats, checked_param, is_train_mode, real_param

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "softmax_loss", "svm_loss", "dropout_forward", "dropout_backward",
    "conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive",
    "max_pool_backward_naive", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_backward_alt", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "layernorm_forward", "layernorm_backward", "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
]


# ---- affine, ReLU, losses ------------------------------------------------------------

def affine_forward(x, w, b):
    """Forward pass of an affine (fully connected) layer: x.reshape(N, D) @ w + b.

    Inputs: x (N, d_1, ..., d_k) with D = d_1 * ... * d_k, w (D, M), b (M,).
    Returns (out (N, M), cache).
    """
    return F.affine_forward(*as_floats(x, w, b))


def affine_backward(dout, cache):
    """Backward pass of an affine layer.

    Inputs: dout (N, M); cache from affine_forward.
    Returns (dx shaped like x, dw (D, M), db (M,)).
    """
    return F.affine_backward(dout, cache)


def relu_forward(x):
    """ReLU, max(0, x) element-wise. Returns (out shaped like x, cache)."""
    return F.relu_forward(as_floats(x)[0])


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0. Returns dx shaped like x."""
    return F.relu_backward(dout, cache)


def softmax_loss(x, y):
    """Softmax cross-entropy averaged over the batch, and its gradient.

    Inputs: x (N, C) scores; y (N,) labels in [0, C).
    Returns (loss, dx (N, C)).
    """
    return F.softmax_loss(as_floats(x)[0], y)


def svm_loss(x, y):
    """Multiclass SVM (hinge, margin 1) loss averaged over the batch, and its gradient.

    Inputs: x (N, C) scores; y (N,) labels in [0, C).
    Returns (loss, dx (N, C)).
    """
    return F.svm_loss(as_floats(x)[0], y)


# ---- dropout ---------------------------------------------------------------------

def dropout_forward(x, dropout_param):
    """Inverted dropout (cs231n 2018+ convention).

    Inputs:
    - x: array of any shape
    - dropout_param: dict with
      - 'p': the probability of KEEPING each unit, in (0, 1]; kept units are
        scaled by 1 / p (2017's 'p' was the drop probability: pass 1 - p)
      - 'mode': 'train' (drop) or 'test' (the identity)
      - 'seed' (optional): an int in [0, 2**64); with it every call draws
        the same mask (for gradient checks); without it each call draws a
        new seed from np.random, so np.random.seed makes runs reproducible.
        Unlike the course, np.random's state is never reset by it.

    Returns (out shaped like x, cache).
    """
    name = "dropout_param"
    checked_param(dropout_param, name, required=("p", "mode"), optional=("seed",))
    keep = real_param(dropout_param, name, "p", None, 0.0, 1.0, low_open=True)
    train = is_train_mode(dropout_param, name)
    return F.dropout_forward(as_floats(x)[0], 1.0 - keep, train=train,
                             seed=dropout_param.get("seed"))


def dropout_backward(dout, cache):
    """dx for dropout_forward: dout through the same mask and scale (the
    identity in test mode). Returns dx shaped like x."""
    return F.dropout_backward(dout, cache)


# ---- convolution and pooling -------------------------------------------------------

def conv_forward_naive(x, w, b, conv_param):
    """Forward pass of a convolutional layer (cross-correlation), by fastfc's
    im2col + GEMM kernel.

    Inputs:
    - x: (N, C, H, W) input
    - w: (F, C, HH, WW) filters
    - b: (F,) biases
    - conv_param: dict with 'stride' (int >= 1) and 'pad' (zeros added on
      every side of H and W, int >= 0)

    Returns (out (N, F, H', W'), cache) with H' = 1 + (H + 2 * pad - HH) // stride,
    likewise W'.
    """
    checked_param(conv_param, "conv_param", required=("stride", "pad"))
    x, w, b = as_floats(x, w, b)
    return F.conv_forward(x, w, b, stride=conv_param["stride"], pad=conv_param["pad"])


def conv_backward_naive(dout, cache):
    """Backward pass of a convolutional layer.

    Inputs: dout (N, F, H', W'); cache from conv_forward_naive.
    Returns (dx (N, C, H, W), dw (F, C, HH, WW), db (F,)).
    """
    return F.conv_backward(dout, cache)


def max_pool_forward_naive(x, pool_param):
    """Forward pass of max pooling.

    Inputs:
    - x: (N, C, H, W)
    - pool_param: dict with 'pool_height', 'pool_width' and 'stride' (ints >= 1)

    Returns (out (N, C, H', W'), cache), H' = 1 + (H - pool_height) // stride,
    likewise W'.
    """
    checked_param(pool_param, "pool_param", required=("pool_height", "pool_width", "stride"))
    return F.max_pool_forward(as_floats(x)[0], pool_param["pool_height"],
                              pool_param["pool_width"], pool_param["stride"])


def max_pool_backward_naive(dout, cache):
    """Backward pass of max pooling: each gradient goes to its window's
    maximum. Returns dx (N, C, H, W)."""
    return F.max_pool_backward(dout, cache)


# ---- normalization --------------------------------------------------------------------

def _running_stat(bn_param, key, shape, dtype):
    """bn_param[key] as an array the kernel can update in place, stored back
    into bn_param (zeros when absent, as the course); ValueError naming the
    key when its shape is not shape."""
    value = bn_param.get(key)
    if value is None:
        value = np.zeros(shape, dtype=dtype)
    else:
        array = np.asarray(value)
        if array.shape != shape:
            raise ValueError(f"bn_param[{key!r}] must have shape {shape} (one entry per "
                             f"normalized feature), got {array.shape}")
        if not (value is array and array.dtype == dtype and array.flags.c_contiguous
                and array.flags.writeable):
            value = np.array(array, dtype=dtype, order="C")
    bn_param[key] = value
    return value


def _batchnorm(forward, x, gamma, beta, bn_param, channels_axis, running_stat=_running_stat):
    """batchnorm_forward and spatial_batchnorm_forward: bn_param checked,
    its running statistics updated in place (train) or used (test).
    running_stat(bn_param, key, shape, dtype) gives each statistic as the
    array the kernel updates (fastfc.eecs598's keeps tensors in bn_param)."""
    name = "bn_param"
    checked_param(bn_param, name, required=("mode",),
                  optional=("eps", "momentum", "running_mean", "running_var"))
    train = is_train_mode(bn_param, name)
    eps = real_param(bn_param, name, "eps", 1e-5, 0.0, low_open=True)
    momentum = real_param(bn_param, name, "momentum", 0.9, 0.0, 1.0)
    x, gamma, beta = as_floats(x, gamma, beta)
    if x.ndim <= channels_axis:
        raise ValueError(f"x must have a feature axis {channels_axis}, got shape {x.shape}")
    shape = (x.shape[channels_axis],)
    running_mean = running_stat(bn_param, "running_mean", shape, x.dtype)
    running_var = running_stat(bn_param, "running_var", shape, x.dtype)
    return forward(x, gamma, beta, running_mean, running_var, train=train, momentum=momentum,
                   eps=eps)


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of x (N, D) over the batch, per feature.

    Train mode normalizes with the batch mean and (biased) variance and
    updates the running statistics in bn_param:
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    test mode normalizes with the running statistics.

    Inputs:
    - x: (N, D); gamma, beta: (D,) scale and shift
    - bn_param: dict with 'mode' ('train' or 'test', required), 'eps' (> 0,
      default 1e-5), 'momentum' (in [0, 1], default 0.9), 'running_mean' and
      'running_var' ((D,) arrays, zeros when absent; updated in place and
      stored back into bn_param)

    Returns (out (N, D), cache).
    """
    return _batchnorm(F.batchnorm_forward, x, gamma, beta, bn_param, 1)


def batchnorm_backward(dout, cache):
    """Backward pass of batch normalization (train mode), in the simplified
    single-pass form. Returns (dx (N, D), dgamma (D,), dbeta (D,))."""
    return F.batchnorm_backward(dout, cache)


batchnorm_backward_alt = batchnorm_backward


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Spatial batch normalization of x (N, C, H, W): per channel, over N, H and W.

    Inputs: x (N, C, H, W); gamma, beta (C,); bn_param as in
    batchnorm_forward, its running statistics of shape (C,).
    Returns (out (N, C, H, W), cache).
    """
    return _batchnorm(F.spatial_batchnorm_forward, x, gamma, beta, bn_param, 1)


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of spatial batch normalization.
    Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    return F.spatial_batchnorm_backward(dout, cache)


def _norm_eps(param, name):
    """eps of ln_param / gn_param; 'mode' is accepted and ignored, since the
    course's models and notebooks pass their bn_param dicts here too."""
    checked_param(param, name, optional=("eps", "mode"))
    if "mode" in param:
        is_train_mode(param, name)
    return real_param(param, name, "eps", 1e-5, 0.0, low_open=True)


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization of x (N, D): each row by its own mean and variance,
    the same in training and at test time.

    Inputs: x (N, D); gamma, beta (D,); ln_param: dict with 'eps' (> 0,
    default 1e-5) ('mode' is accepted and ignored).
    Returns (out (N, D), cache).
    """
    eps = _norm_eps(ln_param, "ln_param")
    return F.layernorm_forward(*as_floats(x, gamma, beta), eps=eps)


def layernorm_backward(dout, cache):
    """Backward pass of layer normalization. Returns (dx, dgamma (D,), dbeta (D,))."""
    return F.layernorm_backward(dout, cache)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalization of x (N, C, H, W): each image's channels split into
    G groups of C // G, each group normalized over its channels, H and W.

    Inputs:
    - x: (N, C, H, W)
    - gamma, beta: (1, C, 1, 1) per-channel scale and shift, as the course
      ((C,) works too)
    - G: number of groups, a divisor of C
    - gn_param: dict with 'eps' (> 0, default 1e-5) ('mode' is accepted and ignored)

    Returns (out (N, C, H, W), cache); spatial_groupnorm_backward returns
    dgamma and dbeta in gamma's shape.
    """
    eps = _norm_eps(gn_param, "gn_param")
    x, gamma, beta = as_floats(x, gamma, beta)
    channels = x.shape[1] if x.ndim == 4 else None
    for arg, value in (("gamma", gamma), ("beta", beta)):
        if channels is None or value.shape not in ((1, channels, 1, 1), (channels,)):
            raise ValueError(f"{arg} must have shape (1, C, 1, 1) for x (N, C, H, W), got "
                             f"{arg} {value.shape} and x {x.shape}")
    out, cache = F.groupnorm_forward(x, gamma.reshape(-1), beta.reshape(-1), G, eps=eps)
    return out, (cache, gamma.shape)


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of spatial group normalization.
    Returns (dx (N, C, H, W), dgamma, dbeta), the last two in gamma's shape."""
    cache, param_shape = cache
    dx, dgamma, dbeta = F.groupnorm_backward(dout, cache)
    return dx, dgamma.reshape(param_shape), dbeta.reshape(param_shape)
