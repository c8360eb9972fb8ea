"""The course's classifiers/fc_net.py: TwoLayerNet and FullyConnectedNet, as
fastfc.models networks with the course's initialization, regularization
and conventions.

`from fastfc.cs231n.classifiers.fc_net import *` also brings the layer
functions (layers, layer_utils), as the course's module does.
"""

import numpy as np

from ... import models
from ..._validation import check_probability, check_real
from ...layers import BatchNorm1d
from .. import layer_utils, layers
from ..layer_utils import *  # noqa: F401,F403 (the course's module exports them)
from ..layers import *  # noqa: F401,F403
from ._course import CourseModel, draw_weights

__all__ = ["TwoLayerNet", "FullyConnectedNet"] + layers.__all__ + layer_utils.__all__


class TwoLayerNet(CourseModel, models.TwoLayerNet):
    """affine - relu - affine - softmax, the course's two-layer network.

    Inputs:
    - input_dim: size D of the input
    - hidden_dim: size H of the hidden layer
    - num_classes: number C of classes
    - weight_scale: std of the initial weights, drawn from np.random in the
      course's order (W1, then W2); biases start at zero
    - reg: L2 strength: the loss adds 0.5 * reg * sum(W**2) over W1 and W2
    - dtype: float64 by default, as the course's (which has no dtype
      argument and computes in NumPy's float64); float32 is faster

    params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,).
    loss(X, y=None): scores (N, C) for y None, else (loss, grads).
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0, dtype=np.float64):
        weights = draw_weights([(input_dim, hidden_dim), (hidden_dim, num_classes)], weight_scale)
        # seed=0: the base class's own initialization (overwritten below)
        # must not draw from np.random.
        super().__init__(input_dim=input_dim, hidden_dim=hidden_dim, num_classes=num_classes,
                         weight_scale=weight_scale, reg=reg, dtype=dtype, seed=0)
        self._set_weights(weights)


def _keep_ratio(dropout_keep_ratio, dropout):
    """The probability of keeping a unit, from the 2018+ dropout_keep_ratio
    or the 2017 dropout (the probability of dropping one, 0: none)."""
    if dropout is not None:
        dropout = check_probability("dropout (2017: the probability of dropping a unit)", dropout)
        if dropout_keep_ratio != 1:
            raise ValueError("give dropout_keep_ratio (2018+) or dropout (2017), not both")
        return 1.0 - dropout
    return check_real("dropout_keep_ratio (the probability of keeping a unit)", dropout_keep_ratio,
                      low=0, high=1, low_open=True)


class FullyConnectedNet(CourseModel, models.FullyConnectedNet):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine -
    softmax, the course's network of any depth (cs231n 2018+ signature).

    Inputs:
    - hidden_dims: list of the hidden layers' sizes
    - input_dim, num_classes: sizes
    - dropout_keep_ratio: probability of KEEPING each hidden unit (1: no
      dropout), as the course's 2018+ versions
    - normalization: None, 'batchnorm' or 'layernorm', before each hidden ReLU
    - reg: L2 strength: the loss adds 0.5 * reg * sum(W**2) over the weights
      (not gamma and beta)
    - weight_scale: std of the initial weights, drawn from np.random in the
      course's order (W1, W2, ...); biases and beta start at zero, gamma at one
    - dtype: float32 (default, as the course) or float64 (gradient checks)
    - seed: None, or an int that fixes the dropout masks (every loss(X, y)
      call drops the same units), as the course's seed
    - dropout: the 2017 keyword: probability of DROPPING each hidden unit
      (0: no dropout); give it or dropout_keep_ratio
    - use_batchnorm: the 2017 keyword: True is normalization='batchnorm'

    Without a seed, the dropout masks follow np.random (np.random.seed makes
    them reproducible) but are not the course's masks. Batch normalization's
    running mean and variance start at zero, as the course's bn_param.
    params: W1, b1, ..., WL, bL, and with normalization gamma1, beta1, ...,
    gamma(L-1), beta(L-1).
    loss(X, y=None): scores (N, C) for y None, else (loss, grads).
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None, *,
                 dropout=None, use_batchnorm=None):
        keep = _keep_ratio(dropout_keep_ratio, dropout)
        if use_batchnorm:
            if normalization not in (None, "batchnorm"):
                raise ValueError(f"use_batchnorm=True (2017) asks for batch normalization but "
                                 f"normalization is {normalization!r}")
            normalization = "batchnorm"
        if isinstance(hidden_dims, str) or not hasattr(hidden_dims, "__iter__"):
            raise ValueError(f"hidden_dims must be a list of layer sizes, e.g. [100, 100], "
                             f"got {hidden_dims!r}")
        dims = (input_dim, *hidden_dims, num_classes)
        weights = draw_weights(list(zip(dims[:-1], dims[1:])), weight_scale)
        # The base class must not draw from np.random before the weights
        # above; without a seed, dropout draws its masks' seeds from
        # np.random (one draw here, after the weights).
        base_seed = seed if seed is not None else (None if keep < 1 else 0)
        super().__init__(hidden_dims, input_dim=input_dim, num_classes=num_classes,
                         dropout=1.0 - keep, reg=reg, weight_scale=weight_scale, dtype=dtype,
                         seed=base_seed, normalization=normalization)
        self._set_weights(weights)
        for layer in self.layers:
            if isinstance(layer, BatchNorm1d):
                layer.running_var.fill(0)
        self.use_dropout = keep < 1
