"""The course's eecs598.utils: reset_seed (its image helpers, which need
torchvision, matplotlib and OpenCV, are not here)."""
import random

from ._tensors import torch

__all__ = ["reset_seed"]


def reset_seed(number):
    """Seeds Python's random module and torch's generator with number: every
    draw of fastfc.eecs598 (initial weights, minibatches, dropout masks'
    seeds) comes from these, so runs repeat."""
    random.seed(number)
    torch.manual_seed(number)
