"""The course's layer_utils.py: "sandwich" layers chaining the layers of
fastfc.cs231n.layers. affine_relu is fastfc's fused affine-ReLU kernel (one
pass, no intermediate array); the others chain the kernels. Each forward
returns (out, cache) and each backward takes (dout, cache)."""
from .. import functional as F
from ._params import as_floats
from .layers import (conv_backward_naive, conv_forward_naive, max_pool_backward_naive,
                     max_pool_forward_naive, relu_backward, relu_forward,
                     spatial_batchnorm_backward, spatial_batchnorm_forward)

__all__ = ["affine_relu_forward", "affine_relu_backward", "conv_relu_forward",
           "conv_relu_backward", "conv_bn_relu_forward", "conv_bn_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward"]


def affine_relu_forward(x, w, b):
    """An affine layer followed by a ReLU, fused: max(0, x.reshape(N, D) @ w + b).

    Inputs: x (N, d_1, ..., d_k), w (D, M), b (M,).
    Returns (out (N, M), cache).
    """
    return F.affine_relu_forward(*as_floats(x, w, b))


def affine_relu_backward(dout, cache):
    """Backward pass of affine_relu_forward. Returns (dx, dw, db)."""
    return F.affine_relu_backward(dout, cache)


def conv_relu_forward(x, w, b, conv_param):
    """A convolution followed by a ReLU.

    Inputs: x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param as in
    conv_forward_naive.
    Returns (out (N, F, H', W'), cache).
    """
    a, conv_cache = conv_forward_naive(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Backward pass of conv_relu_forward. Returns (dx, dw, db)."""
    conv_cache, relu_cache = cache
    return conv_backward_naive(relu_backward(dout, relu_cache), conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """A convolution, spatial batch normalization, then a ReLU.

    Inputs: x, w, b, conv_param as in conv_relu_forward; gamma, beta (F,)
    and bn_param as in spatial_batchnorm_forward.
    Returns (out (N, F, H', W'), cache).
    """
    a, conv_cache = conv_forward_naive(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Backward pass of conv_bn_relu_forward. Returns (dx, dw, db, dgamma, dbeta)."""
    conv_cache, bn_cache, relu_cache = cache
    dan, dgamma, dbeta = spatial_batchnorm_backward(relu_backward(dout, relu_cache), bn_cache)
    dx, dw, db = conv_backward_naive(dan, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """A convolution, a ReLU, then max pooling.

    Inputs: x, w, b, conv_param as in conv_relu_forward; pool_param as in
    max_pool_forward_naive.
    Returns (out, cache).
    """
    s, conv_relu_cache = conv_relu_forward(x, w, b, conv_param)
    out, pool_cache = max_pool_forward_naive(s, pool_param)
    return out, (conv_relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Backward pass of conv_relu_pool_forward. Returns (dx, dw, db)."""
    conv_relu_cache, pool_cache = cache
    return conv_relu_backward(max_pool_backward_naive(dout, pool_cache), conv_relu_cache)
