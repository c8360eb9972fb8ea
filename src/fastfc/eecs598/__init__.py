"""The Michigan EECS 498/598 "Deep Learning for Computer Vision"
assignment 3 on fastfc's C kernels: torch CPU tensors in, torch tensors
out. Needs PyTorch (pip install "fastfc[torch]"); `import fastfc` alone
never imports it.

The layout follows the course's, so that its notebooks run after changing
their imports:

    import fastfc.eecs598 as eecs598                    # was: import eecs598
    from fastfc.eecs598 import reset_seed, Solver
    from fastfc.eecs598.fully_connected_networks import *
    from fastfc.eecs598.convolutional_networks import *
    from fastfc.eecs598.a3_helper import svm_loss, softmax_loss

Modules: fully_connected_networks (Linear, ReLU, Linear_ReLU, Dropout,
TwoLayerNet, FullyConnectedNet, sgd, sgd_momentum, rmsprop, adam),
convolutional_networks (Conv, MaxPool, FastConv, FastMaxPool, BatchNorm,
SpatialBatchNorm, the sandwich layers, ThreeLayerConvNet, DeepConvNet,
kaiming_initializer), a3_helper (svm_loss, softmax_loss), solver (Solver),
grad (compute_numeric_gradient, rel_error, grad_check_sparse), utils
(reset_seed).

Tensors: every layer reads its input tensors in place as NumPy views and
returns tensors over the kernels' new arrays: nothing is copied. The
tensors must be on the CPU (device='cuda' is a ValueError: fastfc runs on
the CPU), must not require grad (fastfc computes gradients itself), must be
float32 or float64 with one type per call, and must be contiguous
(non-contiguous tensors, such as a transpose, are refused with a
ValueError rather than copied behind the caller's back: pass
x.contiguous()). A model's loss(X) casts X to the model's dtype as the
course's X.to(self.dtype) does (a copy when X's dtype differs or it is not
contiguous), and the Solver reads its data tensors in any layout.

Differences from the course, on purpose:
- caches are the kernels' own, to be passed only to the matching backward;
- dropout masks come from fastfc's hash generator (same statistics, other
  masks) and a dropout seed does not reset torch's global generator;
- update rules (and the Solver) update the parameters and the state
  tensors in their config in place;
- model.save(path) writes an .npz at path (whatever its extension) and the
  architecture as JSON at path + '.json'; model.load(path, dtype, device)
  reads them (rebuilding the model to the saved architecture, as the
  course's load replaces params); Solver checkpoints are .npz + .json; no
  pickle is ever written or read, so torch.save checkpoints do not load;
- the FastConv/FastMaxPool layers are the same kernels as Conv/MaxPool.
"""
from ._tensors import torch  # noqa: F401 (first: an ImportError without PyTorch says what to install)
from . import grad
from .solver import Solver
from .utils import reset_seed

__all__ = ["grad", "Solver", "reset_seed"]
