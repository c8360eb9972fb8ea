"""The course's fully_connected_networks.py (EECS 498/598 assignment 3) on
fastfc's C kernels: torch CPU tensors in, torch tensors out.

    from fastfc.eecs598.fully_connected_networks import *

Layers with static forward(...) -> (out, cache) and backward(dout, cache):
Linear, ReLU, Linear_ReLU (one fused kernel), Dropout; the models
TwoLayerNet and FullyConnectedNet; the update rules sgd, sgd_momentum,
rmsprop, adam; and, as the course's module imports them, Solver and
softmax_loss. Tensors are read and written in place (NumPy views of their
memory): float32 or float64, one type per call, contiguous, on the CPU,
not requiring grad (see fastfc.eecs598).

Conventions are the course's: Dropout's 'p' and FullyConnectedNet's
dropout are the probability of DROPPING a unit; TwoLayerNet's L2 term is
reg * sum(W**2), FullyConnectedNet's 0.5 * reg * sum(W**2); the models
draw their weights with torch.randn in the course's order (W1, W2, ...)
in their dtype, so reset_seed reproduces the notebooks' initial losses.

Where fastfc differs on purpose:
- caches are what the C kernels need, not (x, w, b): pass them only to
  the matching backward;
- dropout masks come from fastfc's hash generator, seeded by
  dropout_param['seed'] (or by a seed drawn from torch's generator): same
  statistics, different masks, and torch's global generator is never
  reset by a dropout seed;
- the update rules update w (and the config's state tensors) in place;
- save/load write and read an .npz plus a JSON file, never a pickle.
"""
import numpy as np

from .. import functional as F
from .. import models
from ..cs231n._params import checked_param, is_train_mode, real_param
from . import _models
from ._rules import adam, rmsprop, sgd, sgd_momentum
from ._tensors import array, arrays, draw_seed, tensor, torch
from .a3_helper import softmax_loss
from .solver import Solver

__all__ = ["Linear", "ReLU", "Linear_ReLU", "Dropout", "TwoLayerNet", "FullyConnectedNet",
           "sgd", "sgd_momentum", "rmsprop", "adam", "Solver", "softmax_loss"]


def _tensor_out(forward_result):
    """A kernel's forward result (out, cache) with out as a tensor."""
    out, cache = forward_result
    return tensor(out), cache


def _tensor_grads(backward, dout, cache):
    """backward(dout, cache) on the view of the tensor dout: its gradients as tensors."""
    return tuple(map(tensor, backward(array(dout, "dout"), cache)))


class Linear:
    """A linear (fully-connected) layer: out = x.reshape(N, D) @ w + b."""

    @staticmethod
    def forward(x, w, b):
        """Inputs: x (N, d_1, ..., d_k) with D = d_1 * ... * d_k, w (D, M), b (M,).
        Returns (out (N, M), cache)."""
        return _tensor_out(F.affine_forward(*arrays(x=x, w=w, b=b)))

    @staticmethod
    def backward(dout, cache):
        """Inputs: dout (N, M); cache from forward.
        Returns (dx shaped like x, dw (D, M), db (M,))."""
        return _tensor_grads(F.affine_backward, dout, cache)


class ReLU:
    """Rectified linear units, max(0, x) element-wise (x is not changed)."""

    @staticmethod
    def forward(x):
        """Returns (out shaped like x, cache)."""
        return _tensor_out(F.relu_forward(array(x, "x")))

    @staticmethod
    def backward(dout, cache):
        """Returns dx = dout where x > 0, else 0."""
        return tensor(F.relu_backward(array(dout, "dout"), cache))


class Linear_ReLU:
    """A linear layer followed by a ReLU, as one fused kernel."""

    @staticmethod
    def forward(x, w, b):
        """Inputs as Linear.forward. Returns (out (N, M), cache)."""
        return _tensor_out(F.affine_relu_forward(*arrays(x=x, w=w, b=b)))

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db) as Linear.backward."""
        return _tensor_grads(F.affine_relu_backward, dout, cache)


class Dropout:
    """Inverted dropout (the course's convention: 'p' is the drop probability)."""

    @staticmethod
    def forward(x, dropout_param):
        """Inputs:
        - x: tensor of any shape
        - dropout_param: dict with
          - 'p': the probability of DROPPING each unit, in [0, 1); kept units
            are scaled by 1 / (1 - p)
          - 'mode': 'train' (drop) or 'test' (the identity: out is x itself)
          - 'seed' (optional): an int in [0, 2**64); with it every call drops
            the same units (for gradient checks); without it each call draws
            a seed from torch's generator (reset_seed makes runs repeat)

        Returns (out shaped like x, cache).
        """
        name = "dropout_param"
        checked_param(dropout_param, name, required=("p", "mode"), optional=("seed",))
        p = real_param(dropout_param, name, "p", None, 0.0, 1.0)
        train = is_train_mode(dropout_param, name)
        seed = dropout_param.get("seed")
        return _tensor_out(F.dropout_forward(array(x, "x"), p, train=train,
                                             seed=draw_seed() if seed is None else seed))

    @staticmethod
    def backward(dout, cache):
        """dx: dout through the forward's mask and scale (dout itself in test mode)."""
        return tensor(F.dropout_backward(array(dout, "dout"), cache))


class TwoLayerNet(_models.CourseModel, models.TwoLayerNet):
    """linear - relu - linear - softmax, the course's two-layer network.

    Inputs:
    - input_dim, hidden_dim, num_classes: the sizes D, H, C
    - weight_scale: std of the initial weights (a number or a 0-d tensor),
      drawn as torch.randn(...) * weight_scale in the course's order (W1,
      then W2); biases start at zero
    - reg: L2 strength: the loss adds reg * sum(W**2) over W1 and W2 (no 0.5)
    - dtype: torch.float32 (default) or torch.float64 (gradient checks)
    - device: 'cpu' (fastfc runs on the CPU; anything else is a ValueError)

    params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), as tensors over the
    model's memory. loss(X, y=None): scores (N, C) for y None, else (loss,
    grads). save(path) / load(path, dtype, device): see fastfc.eecs598.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0, dtype=torch.float32, device="cpu"):
        self._construct(dict(input_dim=input_dim, hidden_dim=hidden_dim, num_classes=num_classes),
                        weight_scale, reg, dtype, device)

    def _build(self, dtype, input_dim, hidden_dim, num_classes):
        models.TwoLayerNet.__init__(self, input_dim=input_dim, hidden_dim=hidden_dim,
                                    num_classes=num_classes, weight_scale=0.0, dtype=dtype, seed=0)

    def _weight_shapes(self):
        arch = self._architecture
        return [(arch["input_dim"], arch["hidden_dim"]), (arch["hidden_dim"], arch["num_classes"])]


class FullyConnectedNet(_models.CourseModel, models.FullyConnectedNet):
    """{linear - relu - [dropout]} x (L - 1) - linear - softmax, the course's
    network of any depth.

    Inputs:
    - hidden_dims: list of the hidden layers' sizes
    - input_dim, num_classes: sizes
    - dropout: the probability of DROPPING each hidden unit (0: no dropout)
    - reg: L2 strength: the loss adds 0.5 * reg * sum(W**2) over the weights
    - weight_scale: std of the initial weights, drawn as torch.randn(...) *
      weight_scale in the course's order (W1, W2, ...); biases start at zero
    - seed: None, or an int that fixes the dropout masks (every loss(X, y)
      drops the same units, for gradient checks); without it the masks
      follow torch's generator (but are not the course's masks)
    - dtype: torch.float32 (default) or torch.float64; device: 'cpu'

    params: W1, b1, ..., WL, bL. loss, save, load: as TwoLayerNet.
    """

    _l2_factor = 0.5

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0.0, reg=0.0,
                 weight_scale=1e-2, seed=None, dtype=torch.float32, device="cpu"):
        if isinstance(hidden_dims, str) or not hasattr(hidden_dims, "__iter__"):
            raise ValueError(f"hidden_dims must be a list of layer sizes, e.g. [100, 100], "
                             f"got {hidden_dims!r}")
        self._construct(dict(hidden_dims=list(hidden_dims), input_dim=input_dim,
                             num_classes=num_classes, dropout=dropout, seed=seed),
                        weight_scale, reg, dtype, device)

    def _build(self, dtype, hidden_dims, input_dim, num_classes, dropout, seed):
        # Without a seed the masks' generator is seeded from torch's, drawn
        # after the weights as the course's masks are.
        masks = seed if seed is not None else (np.random.default_rng(draw_seed()) if dropout
                                               else 0)
        models.FullyConnectedNet.__init__(self, hidden_dims, input_dim=input_dim,
                                          num_classes=num_classes, dropout=dropout,
                                          weight_scale=0.0, dtype=dtype, seed=masks)
        self.use_dropout = dropout != 0

    def _weight_shapes(self):
        arch = self._architecture
        dims = [arch["input_dim"], *arch["hidden_dims"], arch["num_classes"]]
        return list(zip(dims[:-1], dims[1:]))
