"""fastfc: course-style neural-network layers over fast C/OpenMP kernels.

    import fastfc.functional as F      # or fastfc.F
    out, cache = F.affine_relu_forward(x, w, b)

`fastfc.reference` holds the same functions in plain NumPy.
"""
__version__ = "0.1.0"

from ._config import get_num_threads, set_num_threads, show_config
from . import functional
from . import functional as F
from . import gradcheck
from . import layers, models, optim
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GroupNorm, LayerNorm,
                     Linear, MaxPool2d, MSELoss, ReLU, Sigmoid, SoftmaxCrossEntropy, SVMLoss, Tanh)
from .parameter import Parameter
from .solver import Solver, evaluate

# fastfc threads around single-threaded BLAS calls; see _config.
from ._config import _pin_blas_to_one_thread

_pin_blas_to_one_thread()
del _pin_blas_to_one_thread

__all__ = ["F", "functional", "gradcheck", "get_num_threads", "set_num_threads", "show_config",
           "layers", "models", "optim", "Parameter", "Solver", "evaluate",
           "Linear", "ReLU", "Sigmoid", "Tanh", "Dropout", "Conv2d", "MaxPool2d", "Flatten",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm",
           "SoftmaxCrossEntropy", "SVMLoss", "MSELoss"]
