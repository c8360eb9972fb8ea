"""The course's convolutional_networks.py (EECS 498/598 assignment 3) on
fastfc's C kernels: torch CPU tensors in, torch tensors out.

    from fastfc.eecs598.convolutional_networks import *

Layers with static forward(...) -> (out, cache) and backward(dout, cache):
Conv (im2col + BLAS), MaxPool, FastConv and FastMaxPool (the same
kernels: naive and fast results agree exactly), BatchNorm (backward_alt
is backward, the single-pass form), SpatialBatchNorm, and the sandwich
layers Conv_ReLU, Conv_ReLU_Pool, Linear_BatchNorm_ReLU,
Conv_BatchNorm_ReLU, Conv_BatchNorm_ReLU_Pool; the models
ThreeLayerConvNet and DeepConvNet; kaiming_initializer; and, as the
course's module imports them, Linear, Linear_ReLU, ReLU, Solver, adam and
softmax_loss. Tensor rules, dict parameters and the differences from the
course: see fastfc.eecs598 and fully_connected_networks. Both models add
reg * sum(W**2) (no 0.5) over the convolution and linear weights.
"""
import numbers

from .. import functional as F
from .. import models
from .._validation import check_int
from ..cs231n._params import checked_param
from ..cs231n.layers import _batchnorm as _numpy_batchnorm
from ..layers import (BatchNorm2d, Conv2d, Flatten, Linear as _LinearLayer, MaxPool2d,
                      ReLU as _ReLULayer, SoftmaxCrossEntropy)
from . import _models
from ._tensors import array, arrays, check_device, float_dtype, tensor, torch, torch_dtype
from .fully_connected_networks import (Linear, Linear_ReLU, ReLU, Solver, _tensor_grads,
                                       _tensor_out, adam, softmax_loss)

__all__ = ["Conv", "MaxPool", "FastConv", "FastMaxPool", "BatchNorm", "SpatialBatchNorm",
           "Conv_ReLU", "Conv_ReLU_Pool", "Linear_BatchNorm_ReLU", "Conv_BatchNorm_ReLU",
           "Conv_BatchNorm_ReLU_Pool", "ThreeLayerConvNet", "DeepConvNet", "kaiming_initializer",
           "Linear", "Linear_ReLU", "ReLU", "Solver", "adam", "softmax_loss"]


# ---- the kernels on arrays, with the course's dict parameters ----------------------

def _conv(x, w, b, conv_param):
    checked_param(conv_param, "conv_param", required=("stride", "pad"))
    return F.conv_forward(x, w, b, stride=conv_param["stride"], pad=conv_param["pad"])


def _max_pool(x, pool_param):
    checked_param(pool_param, "pool_param", required=("pool_height", "pool_width", "stride"))
    return F.max_pool_forward(x, pool_param["pool_height"], pool_param["pool_width"],
                              pool_param["stride"])


def _running_stat(bn_param, key, shape, dtype):
    """bn_param[key] as the array the kernel updates in place: the view of
    the tensor there (a zeros tensor stored there when absent, as the
    course's default; a tensor of another dtype or layout is replaced by a
    converted copy, as the course's load converts them)."""
    value = bn_param.get(key)
    if value is None:
        value = torch.zeros(shape, dtype=torch_dtype(dtype))
    elif not isinstance(value, torch.Tensor):
        raise TypeError(f"bn_param[{key!r}] must be a tensor, got {type(value).__name__}")
    elif tuple(value.shape) != shape:
        raise ValueError(f"bn_param[{key!r}] must have shape {shape} (one entry per normalized "
                         f"feature), got {tuple(value.shape)}")
    elif value.dtype != torch_dtype(dtype) or not value.is_contiguous():
        value = value.to(torch_dtype(dtype)).contiguous()
    bn_param[key] = value
    return array(value, f"bn_param[{key!r}]")


def _batchnorm(forward, x, gamma, beta, bn_param):
    """batchnorm_forward / spatial_batchnorm_forward on arrays: the course's
    NumPy version with the running statistics kept as tensors."""
    return _numpy_batchnorm(forward, x, gamma, beta, bn_param, 1, _running_stat)


# ---- layers ----------------------------------------------------------------------

class Conv:
    """A convolutional layer (cross-correlation), by im2col and the BLAS."""

    @staticmethod
    def forward(x, w, b, conv_param):
        """Inputs: x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param: dict
        with 'stride' and 'pad' (zeros added on every side of H and W).
        Returns (out (N, F, H', W'), cache), H' = 1 + (H + 2 * pad - HH) // stride."""
        return _tensor_out(_conv(*arrays(x=x, w=w, b=b), conv_param))

    @staticmethod
    def backward(dout, cache):
        """Returns (dx (N, C, H, W), dw (F, C, HH, WW), db (F,))."""
        return _tensor_grads(F.conv_backward, dout, cache)


class MaxPool:
    """Max pooling (ties go to the first maximum)."""

    @staticmethod
    def forward(x, pool_param):
        """Inputs: x (N, C, H, W); pool_param: dict with 'pool_height',
        'pool_width' and 'stride'. Returns (out (N, C, H', W'), cache)."""
        return _tensor_out(_max_pool(array(x, "x"), pool_param))

    @staticmethod
    def backward(dout, cache):
        """Returns dx (N, C, H, W)."""
        return tensor(F.max_pool_backward(array(dout, "dout"), cache))


# The course's "fast" layers are its torch.nn versions; here the kernels above serve both.
FastConv = Conv
FastMaxPool = MaxPool


class BatchNorm:
    """Batch normalization of (N, D) features over the batch."""

    @staticmethod
    def forward(x, gamma, beta, bn_param):
        """Train mode normalizes with the batch mean and (biased) variance and
        updates the running statistics:
            running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        (likewise running_var); test mode normalizes with the running statistics.

        Inputs: x (N, D); gamma, beta (D,); bn_param: dict with 'mode'
        ('train' or 'test', required), 'eps' (1e-5), 'momentum' (0.9),
        'running_mean' and 'running_var' ((D,) tensors, zeros when absent;
        updated in place and stored in bn_param).
        Returns (out (N, D), cache).
        """
        return _tensor_out(_batchnorm(F.batchnorm_forward, *arrays(x=x, gamma=gamma, beta=beta),
                                      bn_param))

    @staticmethod
    def backward(dout, cache):
        """Returns (dx (N, D), dgamma (D,), dbeta (D,)) (train mode)."""
        return _tensor_grads(F.batchnorm_backward, dout, cache)

    backward_alt = backward


class SpatialBatchNorm:
    """Batch normalization of (N, C, H, W) maps, per channel over N, H and W."""

    @staticmethod
    def forward(x, gamma, beta, bn_param):
        """Inputs: x (N, C, H, W); gamma, beta (C,); bn_param as BatchNorm's,
        running statistics of shape (C,). Returns (out (N, C, H, W), cache)."""
        return _tensor_out(_batchnorm(F.spatial_batchnorm_forward,
                                      *arrays(x=x, gamma=gamma, beta=beta), bn_param))

    @staticmethod
    def backward(dout, cache):
        """Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
        return _tensor_grads(F.spatial_batchnorm_backward, dout, cache)


# ---- sandwich layers: the kernels chained on arrays, one tensor conversion each way ----

class Conv_ReLU:
    """A convolution followed by a ReLU."""

    @staticmethod
    def forward(x, w, b, conv_param):
        """Returns (out, cache)."""
        a, conv_cache = _conv(*arrays(x=x, w=w, b=b), conv_param)
        out, relu_cache = F.relu_forward(a)
        return tensor(out), (conv_cache, relu_cache)

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db)."""
        conv_cache, relu_cache = cache
        da = F.relu_backward(array(dout, "dout"), relu_cache)
        return tuple(map(tensor, F.conv_backward(da, conv_cache)))


class Conv_ReLU_Pool:
    """A convolution, a ReLU, then max pooling."""

    @staticmethod
    def forward(x, w, b, conv_param, pool_param):
        """Returns (out, cache)."""
        a, conv_cache = _conv(*arrays(x=x, w=w, b=b), conv_param)
        s, relu_cache = F.relu_forward(a)
        out, pool_cache = _max_pool(s, pool_param)
        return tensor(out), (conv_cache, relu_cache, pool_cache)

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db)."""
        conv_cache, relu_cache, pool_cache = cache
        ds = F.max_pool_backward(array(dout, "dout"), pool_cache)
        da = F.relu_backward(ds, relu_cache)
        return tuple(map(tensor, F.conv_backward(da, conv_cache)))


class Linear_BatchNorm_ReLU:
    """A linear layer, batch normalization, then a ReLU."""

    @staticmethod
    def forward(x, w, b, gamma, beta, bn_param):
        """Inputs: x (N, D1), w (D1, D2), b, gamma, beta (D2,), bn_param as
        BatchNorm's. Returns (out (N, D2), cache)."""
        x, w, b, gamma, beta = arrays(x=x, w=w, b=b, gamma=gamma, beta=beta)
        a, fc_cache = F.affine_forward(x, w, b)
        a_bn, bn_cache = _batchnorm(F.batchnorm_forward, a, gamma, beta, bn_param)
        out, relu_cache = F.relu_forward(a_bn)
        return tensor(out), (fc_cache, bn_cache, relu_cache)

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db, dgamma, dbeta)."""
        fc_cache, bn_cache, relu_cache = cache
        da_bn = F.relu_backward(array(dout, "dout"), relu_cache)
        da, dgamma, dbeta = F.batchnorm_backward(da_bn, bn_cache)
        dx, dw, db = F.affine_backward(da, fc_cache)
        return tuple(map(tensor, (dx, dw, db, dgamma, dbeta)))


def _conv_bn_relu(x, w, b, gamma, beta, conv_param, bn_param):
    """conv - spatial batchnorm - relu on the views of the tensors given."""
    x, w, b, gamma, beta = arrays(x=x, w=w, b=b, gamma=gamma, beta=beta)
    a, conv_cache = _conv(x, w, b, conv_param)
    an, bn_cache = _batchnorm(F.spatial_batchnorm_forward, a, gamma, beta, bn_param)
    out, relu_cache = F.relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def _conv_bn_relu_backward(dan_relu, cache):
    conv_cache, bn_cache, relu_cache = cache
    dan = F.relu_backward(dan_relu, relu_cache)
    da, dgamma, dbeta = F.spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = F.conv_backward(da, conv_cache)
    return tuple(map(tensor, (dx, dw, db, dgamma, dbeta)))


class Conv_BatchNorm_ReLU:
    """A convolution, spatial batch normalization, then a ReLU."""

    @staticmethod
    def forward(x, w, b, gamma, beta, conv_param, bn_param):
        """Returns (out, cache)."""
        return _tensor_out(_conv_bn_relu(x, w, b, gamma, beta, conv_param, bn_param))

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db, dgamma, dbeta)."""
        return _conv_bn_relu_backward(array(dout, "dout"), cache)


class Conv_BatchNorm_ReLU_Pool:
    """A convolution, spatial batch normalization, a ReLU, then max pooling."""

    @staticmethod
    def forward(x, w, b, gamma, beta, conv_param, bn_param, pool_param):
        """Returns (out, cache)."""
        s, cache = _conv_bn_relu(x, w, b, gamma, beta, conv_param, bn_param)
        out, pool_cache = _max_pool(s, pool_param)
        return tensor(out), (cache, pool_cache)

    @staticmethod
    def backward(dout, cache):
        """Returns (dx, dw, db, dgamma, dbeta)."""
        cache, pool_cache = cache
        return _conv_bn_relu_backward(F.max_pool_backward(array(dout, "dout"), pool_cache), cache)


# ---- initialization ------------------------------------------------------------------

def _listed(values):
    """A sequence as a list, NumPy integers as ints (what JSON can write)."""
    return [int(v) if isinstance(v, numbers.Integral) else v for v in values]


def _size(name, value):
    return check_int(name, value, low=1)


def kaiming_initializer(Din, Dout, K=None, relu=True, device="cpu", dtype=torch.float32):
    """Kaiming (He) initialization: weights drawn from torch.randn scaled by
    sqrt(gain / fan_in), gain 2 before a ReLU (relu=True) and 1 otherwise
    (Xavier's).

    Inputs: Din, Dout: input and output dimensions (channels for a
    convolution); K: None for a linear layer, else the kernel size of a KxK
    convolution; relu; device ('cpu'); dtype (torch.float32 or torch.float64).
    Returns a tensor (Din, Dout) for a linear layer, fan_in = Din, or
    (Dout, Din, K, K) for a convolution, fan_in = Din * K * K.
    """
    check_device(device)
    dtype = torch_dtype(float_dtype(dtype))
    Din, Dout = _size("Din", Din), _size("Dout", Dout)
    gain = 2.0 if relu else 1.0
    if K is None:
        return torch.randn(Din, Dout, dtype=dtype) * (gain / Din) ** 0.5
    K = _size("K", K)
    return torch.randn(Dout, Din, K, K, dtype=dtype) * (gain / (Din * K * K)) ** 0.5


# ---- models ----------------------------------------------------------------------------

class ThreeLayerConvNet(_models.CourseModel, models.ConvNet):
    """conv - relu - 2x2 max pool - linear - relu - linear - softmax, the
    course's three-layer convolutional network (stride 1, padding
    (filter_size - 1) // 2: the convolution keeps H and W).

    Inputs:
    - input_dims: (C, H, W) of the images
    - num_filters, filter_size: the convolution's filters and their size
    - hidden_dim: units of the hidden linear layer
    - num_classes: scores produced
    - weight_scale: std of the initial weights, drawn as torch.randn(...) *
      weight_scale in the course's order (W1, W2, W3); biases start at zero
    - reg: L2 strength: the loss adds reg * sum(W**2) over W1, W2, W3 (no 0.5)
    - dtype: torch.float32 (default) or torch.float64; device: 'cpu'

    params: W1 (F, C, filter_size, filter_size), b1 (F,),
    W2 (F * H/2 * W/2, hidden_dim), b2, W3 (hidden_dim, num_classes), b3.
    loss(X, y=None), save(path), load(path, dtype=None, device='cpu').
    """

    def __init__(self, input_dims=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100,
                 num_classes=10, weight_scale=1e-3, reg=0.0, dtype=torch.float32, device="cpu"):
        if not isinstance(input_dims, (tuple, list)) or len(input_dims) != 3:
            raise ValueError(f"input_dims must be (C, H, W), got {input_dims!r}")
        self._construct(dict(input_dims=_listed(input_dims), num_filters=num_filters,
                             filter_size=filter_size, hidden_dim=hidden_dim,
                             num_classes=num_classes), weight_scale, reg, dtype, device)

    def _build(self, dtype, input_dims, num_filters, filter_size, hidden_dim, num_classes):
        models.ConvNet.__init__(self, input_dim=tuple(input_dims), num_filters=num_filters,
                                filter_size=filter_size, hidden_dim=hidden_dim,
                                num_classes=num_classes, weight_scale=0.0, dtype=dtype, seed=0)

    def _weight_shapes(self):
        arch = self._architecture
        channels, height, width = arch["input_dims"]
        filters, size, hidden = arch["num_filters"], arch["filter_size"], arch["hidden_dim"]
        pad = (size - 1) // 2
        pooled = ((height + 2 * pad - size + 1) // 2) * ((width + 2 * pad - size + 1) // 2)
        return [(filters, channels, size, size), (filters * pooled, hidden),
                (hidden, arch["num_classes"])]


def _pooled_shapes(input_dims, num_filters, max_pools):
    """DeepConvNet's weight shapes: (F, C, 3, 3) per macro layer, then
    (features, None) for the last linear layer; ValueError when a pool
    gets maps smaller than 2x2."""
    channels, height, width = input_dims
    shapes = []
    for index, filters in enumerate(num_filters):
        shapes.append((filters, channels, 3, 3))
        if index in max_pools:
            if height < 2 or width < 2:
                raise ValueError(f"max_pools: macro layer {index} gets {height}x{width} maps, "
                                 f"too small for a 2x2 pool (input_dims {tuple(input_dims)})")
            height, width = height // 2, width // 2
        channels = filters
    return shapes + [(channels * height * width, None)]


class DeepConvNet(_models.CourseModel, models.Sequential):
    """{conv - [batchnorm] - relu - [pool]} x (L - 1) - linear, the course's
    VGG-style network: 3x3 convolutions with padding 1, 2x2 max pools of
    stride 2 after the macro layers listed in max_pools, softmax loss.

    Inputs:
    - input_dims: (C, H, W) of the images
    - num_filters: filters of each macro layer (L - 1 of them)
    - max_pools: indices (from 0) of the macro layers followed by a pool
    - batchnorm: spatial batch normalization before each ReLU
    - num_classes: scores produced
    - weight_scale: std of the initial weights (torch.randn(...) *
      weight_scale in the course's order), or 'kaiming' for
      kaiming_initializer (gain 2 for the convolutions, 1 for the last layer)
    - reg: L2 strength: reg * sum(W**2) over the weights (not the biases,
      gammas or betas), no 0.5
    - weight_initializer: None, or a function with kaiming_initializer's
      signature used for every weight instead (the course lists the
      argument without using it)
    - dtype: torch.float32 (default) or torch.float64; device: 'cpu'

    params: W1, b1 (and gamma1, beta1 with batchnorm) for macro layer 1, ...,
    WL, bL for the last linear layer. bn_params: the running statistics of
    each batchnorm (tensors over the model's memory; they start at zero, as
    the course's). loss, save, load: as ThreeLayerConvNet (save keeps the
    running statistics).
    """

    def __init__(self, input_dims=(3, 32, 32), num_filters=(8, 8, 8, 8, 8),
                 max_pools=(0, 1, 2, 3, 4), batchnorm=False, num_classes=10, weight_scale=1e-3,
                 reg=0.0, weight_initializer=None, dtype=torch.float32, device="cpu"):
        if not isinstance(input_dims, (tuple, list)) or len(input_dims) != 3:
            raise ValueError(f"input_dims must be (C, H, W), got {input_dims!r}")
        if isinstance(num_filters, (str, numbers.Number)) or not hasattr(num_filters, "__iter__") \
                or not num_filters:
            raise ValueError(f"num_filters must be a non-empty list, got {num_filters!r}")
        if weight_initializer is not None and not callable(weight_initializer):
            raise TypeError(f"weight_initializer must be None or a function, got "
                            f"{weight_initializer!r}")
        kaiming = isinstance(weight_scale, str)
        if kaiming and weight_scale != "kaiming":
            raise ValueError(f"weight_scale must be a number or 'kaiming', got {weight_scale!r}")
        config = dict(input_dims=_listed(input_dims), num_filters=_listed(num_filters),
                      max_pools=_listed(max_pools), batchnorm=bool(batchnorm),
                      num_classes=num_classes)
        chosen = weight_initializer or (kaiming_initializer if kaiming else None)

        def initializer(shape, dtype):
            if len(shape) == 4:  # a convolution's (Dout, Din, 3, 3), before a ReLU
                return chosen(shape[1], shape[0], K=shape[2], relu=True, dtype=dtype)
            return chosen(shape[0], shape[1], relu=False, dtype=dtype)

        self._construct(config, 0.0 if chosen else weight_scale, reg, dtype, device,
                        initializer if chosen else None)

    def _build(self, dtype, input_dims, num_filters, max_pools, batchnorm, num_classes):
        channels = input_dims[0]
        stack = []
        for index, filters in enumerate(num_filters):
            stack.append(Conv2d(channels, filters, 3, padding=1, weight_scale=0.0, seed=0,
                                dtype=dtype))
            if batchnorm:  # gamma{k}, beta{k}: numbered with the convolution before it
                normalization = BatchNorm2d(filters, dtype=dtype)
                normalization.running_var[...] = 0  # the course's running statistics start at 0
                stack.append(normalization)
            stack.append(_ReLULayer())
            if index in max_pools:
                stack.append(MaxPool2d(2))
            channels = filters
        linear_in, _ = _pooled_shapes(input_dims, num_filters, max_pools)[-1]
        stack += [Flatten(), _LinearLayer(linear_in, num_classes, weight_scale=0.0, seed=0,
                                          dtype=dtype)]
        models.Sequential.__init__(self, *stack, loss=SoftmaxCrossEntropy())
        self.num_layers = len(num_filters) + 1
        self.max_pools = list(max_pools)
        self.batchnorm = batchnorm
        self.input_dims = tuple(input_dims)

    def _weight_shapes(self):
        arch = self._architecture
        shapes = _pooled_shapes(arch["input_dims"], arch["num_filters"], arch["max_pools"])
        return shapes[:-1] + [(shapes[-1][0], arch["num_classes"])]

    def _normalizations(self):
        return [layer for layer in self.layers if isinstance(layer, BatchNorm2d)]

    @property
    def bn_params(self):
        """Per batchnorm macro layer, a dict with the mode and the running
        statistics (tensors over the model's own arrays)."""
        mode = "train" if self.training else "test"
        return [{"mode": mode, "running_mean": tensor(layer.running_mean),
                 "running_var": tensor(layer.running_var)} for layer in self._normalizations()]

    def forward(self, X):
        """Scores (N, num_classes) for images X (N, C, H, W) of input_dims' shape."""
        if X.shape[1:] != self.input_dims:
            channels, height, width = self.input_dims
            raise ValueError(f"DeepConvNet expects input of shape (N, {channels}, {height}, "
                             f"{width}), got X of shape {X.shape}")
        return super().forward(X)
