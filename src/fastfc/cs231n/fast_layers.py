"""The course's fast_layers.py: the "fast" convolution and pooling layers.

In fastfc these are the very functions of fastfc.cs231n.layers (the C
kernels serve both names), so naive and fast results agree exactly. The
course's other entry points (conv_forward_im2col, conv_forward_strides,
max_pool_forward_reshape, max_pool_forward_im2col and their backward
passes) are the same functions too.
"""
from .layers import (conv_backward_naive, conv_forward_naive, max_pool_backward_naive,
                     max_pool_forward_naive)

__all__ = ["conv_forward_fast", "conv_backward_fast", "max_pool_forward_fast",
           "max_pool_backward_fast", "conv_forward_im2col", "conv_backward_im2col",
           "conv_forward_strides", "conv_backward_strides", "max_pool_forward_reshape",
           "max_pool_backward_reshape", "max_pool_forward_im2col", "max_pool_backward_im2col"]

conv_forward_fast = conv_forward_im2col = conv_forward_strides = conv_forward_naive
conv_backward_fast = conv_backward_im2col = conv_backward_strides = conv_backward_naive
max_pool_forward_fast = max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward_naive
max_pool_backward_fast = max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward_naive
