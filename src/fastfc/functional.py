"""The layer functions in the style of the course notes, on the C kernels.

Every forward returns (out, cache) and every backward takes (dout, cache).
Inputs may be any array-like of float32 or float64 (non-contiguous views are
copied once); all arrays of one call must share the float type. The same
functions, written in plain NumPy, are in fastfc.reference.
"""
from ._activations import (
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from ._affine import affine_backward, affine_forward, affine_relu_backward, affine_relu_forward
from ._conv import conv_backward, conv_forward
from ._losses import mse_loss, softmax_loss, svm_loss
from ._norm import (
    batchnorm_backward,
    batchnorm_forward,
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from ._pool import avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward

__all__ = [
    "affine_forward", "affine_backward", "affine_relu_forward", "affine_relu_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "dropout_forward", "dropout_backward",
    "softmax_loss", "svm_loss", "mse_loss",
    "conv_forward", "conv_backward", "max_pool_forward", "max_pool_backward",
    "avg_pool_forward", "avg_pool_backward",
    "batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward",
    "spatial_batchnorm_backward", "layernorm_forward", "layernorm_backward",
    "groupnorm_forward", "groupnorm_backward",
]
