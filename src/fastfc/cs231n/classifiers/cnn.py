"""The course's classifiers/cnn.py: ThreeLayerConvNet, a fastfc.models.ConvNet
with the course's initialization, regularization and defaults.

`from fastfc.cs231n.classifiers.cnn import *` also brings the layer
functions (layers, fast_layers, layer_utils), as the course's module does.
"""
import numpy as np

from ... import models
from .. import fast_layers, layer_utils, layers
from ..fast_layers import *  # noqa: F401,F403 (the course's module exports them)
from ..layer_utils import *  # noqa: F401,F403
from ..layers import *  # noqa: F401,F403
from ._course import CourseModel, draw_weights

__all__ = ["ThreeLayerConvNet"] + layers.__all__ + fast_layers.__all__ + layer_utils.__all__


class ThreeLayerConvNet(CourseModel, models.ConvNet):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax, the
    course's three-layer convolutional network (the convolution's stride is
    1 and its padding (filter_size - 1) // 2, which keeps H and W).

    Inputs:
    - input_dim: (C, H, W) of the images
    - num_filters: filters of the convolutional layer
    - filter_size: their height and width
    - hidden_dim: units of the hidden affine layer
    - num_classes: scores produced
    - weight_scale: std of the initial weights, drawn from np.random in the
      course's order (W1, W2, W3); biases start at zero
    - reg: L2 strength: the loss adds 0.5 * reg * sum(W**2) over W1, W2, W3
    - dtype: float32 (default, as the course) or float64 (gradient checks)

    params: W1 (F, C, filter_size, filter_size), b1 (F,),
    W2 (F * H/2 * W/2, hidden_dim), b2, W3 (hidden_dim, num_classes), b3.
    loss(X, y=None): scores (N, num_classes) for y None, else (loss, grads).
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100,
                 num_classes=10, weight_scale=1e-3, reg=0.0, dtype=np.float32):
        channels, height, width = input_dim
        weights = draw_weights([(num_filters, channels, filter_size, filter_size),
                                (num_filters * (height // 2) * (width // 2), hidden_dim),
                                (hidden_dim, num_classes)], weight_scale)
        # seed=0: the base class's own initialization (overwritten below)
        # must not draw from np.random.
        super().__init__(input_dim=input_dim, num_filters=num_filters, filter_size=filter_size,
                         hidden_dim=hidden_dim, num_classes=num_classes, weight_scale=weight_scale,
                         reg=reg, dtype=dtype, seed=0)
        self._set_weights(weights)
