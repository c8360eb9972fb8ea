"""The loss functions of the course's a3_helper.py, on fastfc's kernels.

    from fastfc.eecs598.a3_helper import svm_loss, softmax_loss

Each takes x (N, C) float scores and y (N,) integer labels (CPU tensors)
and returns (loss, dx): the loss averaged over the batch as a 0-d tensor
of x's dtype, and its gradient dx (N, C). The course's plotting and data
helpers (get_CIFAR10_data, plot_stats, ...) are not here.
"""
from .. import functional as F
from ._tensors import array, labels, scalar, tensor

__all__ = ["svm_loss", "softmax_loss"]


def svm_loss(x, y):
    """Multiclass SVM (hinge, margin 1) loss and its gradient."""
    x = array(x, "x")
    loss, dx = F.svm_loss(x, labels(y))
    return scalar(loss, x.dtype), tensor(dx)


def softmax_loss(x, y):
    """Softmax cross-entropy loss and its gradient."""
    x = array(x, "x")
    loss, dx = F.softmax_loss(x, labels(y))
    return scalar(loss, x.dtype), tensor(dx)
