"""Layers as objects: forward(x) and backward(dout), over fastfc.functional.

    fc = Linear(784, 100, seed=0)
    out = fc.forward(x)              # (N, 100)
    dx = fc.backward(dout)           # fills fc.grads['W'], fc.grads['b']

Argument names follow torch.nn. Weights are course-layout arrays: Linear's
W is (in_features, out_features) and x @ W + b is its output; Conv2d's W is
(out_channels, in_channels, kh, kw). Each trainable array is a
fastfc.Parameter whose .data and .grad keep their identity for the layer's
whole life: optimizers update .data in place and backward overwrites .grad
(it does not accumulate). layer.params['W'] and layer.grads['W'] are those
arrays by name.

Output arrays: forward(x, out=None) and backward(dout, dx=None) of every
layer here but Flatten (whose results are views) can write their result into
an array the caller passes (see fastfc.functional's out=/dx= arguments);
Sequential does so with buffers it keeps between steps. Called without them,
each call returns new arrays.

Initialisation: weights are drawn N(0, std^2) with std = weight_scale when
given (the course's fixed scale), otherwise He's sqrt(2 / fan_in) (right
for layers followed by ReLU, and used for every Linear and Conv2d without a
weight_scale, the output layer included); biases start at zero. seed (an
int or an np.random.Generator) makes it reproducible; None draws from
NumPy's global generator, so np.random.seed fixes it too.
"""

import math

import numpy as np

from . import functional as F
from ._validation import check_int, check_probability, check_real, check_seed, check_unmasked
from .parameter import Parameter, ParameterArrays

__all__ = ["Layer", "Linear", "ReLU", "Sigmoid", "Tanh", "Dropout", "Conv2d", "MaxPool2d",
           "Flatten", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "SoftmaxCrossEntropy", "SVMLoss", "MSELoss"]


def _generator(seed):
    """An np.random.Generator from an int seed, a Generator, or None (one seeded
    from NumPy's global generator, so that np.random.seed governs it)."""
    seed = check_seed("seed", seed, generator=True)
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(np.random.randint(0, 2**31 - 1))
    return np.random.default_rng(seed)


# Initial weights are drawn in pieces of this many float64 values.
_DRAW_PIECE = 1 << 16


def _normal_weights(rng, shape, std, dtype):
    """std * N(0, 1) draws of the given shape, in dtype: the values of
    (std * rng.standard_normal(shape)).astype(dtype), drawn into the array in
    pieces (a generator's draws in pieces continue one stream), so building a
    layer takes its weights' memory and a piece, where the whole float64
    draw and its product took 5 times a float32 layer."""
    w = np.empty(shape, dtype=dtype)
    flat = w.reshape(-1)
    scratch = None if dtype == np.float64 else np.empty(min(flat.size, _DRAW_PIECE))
    for lo in range(0, flat.size, _DRAW_PIECE):
        part = flat[lo:lo + _DRAW_PIECE]
        draws = part if scratch is None else scratch[:len(part)]
        rng.standard_normal(out=draws)
        draws *= std
        if scratch is not None:
            part[...] = draws
    return w


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _pair(name, value):
    """(a, b) from an int or a pair of positive ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return check_int(name, value[0], low=1), check_int(name, value[1], low=1)
    value = check_int(name, value, low=1)
    return value, value


class Layer:
    """Base class. Subclasses set _parameters (name -> Parameter) in __init__
    and implement forward(x) and backward(dout).

    Attributes:
    - training: True in training mode (train()), False after eval()
    - params: name -> the Parameters' data arrays (assigning copies into them;
      see fastfc.parameter.ParameterArrays); grads: dict name -> grad arrays
    """

    # Names of parameters that L2 regularisation and weight decay apply to.
    weight_names = ("W",)
    # In a Sequential, whether the parameters carry the number of the layer
    # with parameters before this one (normalization: W1, b1, gamma1, beta1).
    numbered_with_previous = False

    def __init__(self):
        self._parameters = {}
        self.training = True

    @property
    def params(self):
        return ParameterArrays(self._parameters)

    @params.setter
    def params(self, arrays):
        ParameterArrays(self._parameters).assign(arrays)

    @property
    def grads(self):
        return {name: p.grad for name, p in self._parameters.items()}

    def parameters(self):
        """The layer's Parameters, a list."""
        return list(self._parameters.values())

    def named_parameters(self):
        """List of (name, Parameter), names as in params ('W', 'b')."""
        return list(self._parameters.items())

    def named_state(self):
        """dict name -> array of state that is not a Parameter but belongs to
        the trained model (batch norm's running statistics): saved with it."""
        return {}

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def _take_cache(self):
        """What the last forward kept for backward (self._cache), now consumed."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            raise RuntimeError(f"{self!r}: backward called without a forward before it")
        self._cache = None
        return cache

    def _add_parameter(self, name, data):
        self._parameters[name] = Parameter(data, name)

    def __repr__(self):
        return f"{type(self).__name__}()"


class _Weighted(Layer):
    """Shared by Linear and Conv2d: W drawn at init, optional zero bias, the
    forward cache, and the gradient arrays backward writes into."""

    def __init__(self, w_shape, fan_in, n_out, bias, weight_scale, seed, dtype):
        super().__init__()
        dtype = _float_dtype(dtype)
        if weight_scale is None:
            std = np.sqrt(2.0 / fan_in)
        else:
            std = check_real("weight_scale", weight_scale, low=0, finite=False)
        rng = _generator(seed)
        try:
            self._add_parameter("W", _normal_weights(rng, w_shape, std, dtype))
        except MemoryError:
            # NumPy's message names an array; the user asked for a layer.
            gib = 2 * math.prod(w_shape) * dtype.itemsize / 2**30
            raise MemoryError(f"{type(self).__name__} weights of shape {w_shape} in {dtype}: "
                              f"{gib:.3g} GiB with their gradient, more than the memory "
                              "available") from None
        if bias:
            self._add_parameter("b", np.zeros(n_out, dtype=dtype))
        else:
            self._zero_bias = np.zeros(n_out, dtype=dtype)  # what the kernels add
        self.dtype = dtype
        self._cache = None

    @property
    def W(self):
        """The weight array (the Parameter's own, as params['W']); assigning
        copies the values in (shape checked)."""
        return self._parameters["W"].data

    @W.setter
    def W(self, value):
        self.params["W"] = value

    @property
    def b(self):
        """The bias array (as params['b']), or None for a layer built with
        bias=False; assigning copies the values in (shape checked)."""
        bias = self._parameters.get("b")
        return None if bias is None else bias.data

    @b.setter
    def b(self, value):
        if "b" not in self._parameters:
            raise AttributeError(f"{self!r} has no bias (built with bias=False)")
        self.params["b"] = value

    def _bias(self):
        b = self._parameters.get("b")
        return b.data if b is not None else self._zero_bias

    def _grad_arrays(self):
        """dw=, db= for the backward kernel: the Parameters' own grad arrays,
        written in place (db None without a bias: the kernel's is dropped)."""
        b = self._parameters.get("b")
        return dict(dw=self._parameters["W"].grad, db=b.grad if b is not None else None)


class Linear(_Weighted):
    """Fully-connected layer: out = x.reshape(N, in_features) @ W + b.

    Inputs:
    - in_features, out_features: sizes
    - bias: whether to learn a bias b (out_features,)
    - weight_scale: std of the initial weights; None: He, sqrt(2 / in_features)
    - seed: int, np.random.Generator or None
    - dtype: float32 (default) or float64

    Parameters: W (in_features, out_features), b (out_features,): the arrays
    layer.W and layer.b (also layer.params['W'], ['b']).
    """

    def __init__(self, in_features, out_features, bias=True, weight_scale=None, seed=None,
                 dtype=np.float32):
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        super().__init__((self.in_features, self.out_features), self.in_features,
                         self.out_features, bias, weight_scale, seed, dtype)

    def _check_input(self, x):
        x = check_unmasked("x", x)
        if x.ndim < 2 or x.shape[0] == 0 or x.size // x.shape[0] != self.in_features:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_features}) "
                             f"(or any (N, ...) with {self.in_features} features per sample), "
                             f"got x of shape {x.shape}")
        return x

    def forward(self, x, out=None):
        """x (N, d_1, ..., d_k) with d_1 * ... * d_k = in_features -> (N, out_features)
        (into out if given)."""
        out, cache = F.affine_forward(self._check_input(x), self._parameters["W"].data, self._bias(),
                                      out=out)
        self._cache = (cache, False)
        return out

    def forward_relu(self, x, out=None):
        """ReLU(forward(x)) in one fused kernel; backward then includes the ReLU.
        (Sequential calls it for a Linear followed by a ReLU.)"""
        out, cache = F.affine_relu_forward(self._check_input(x), self._parameters["W"].data,
                                           self._bias(), out=out)
        self._cache = (cache, True)
        return out

    def backward(self, dout, compute_dx=True, dx=None):
        """dout (N, out_features) -> dx shaped like x (into dx if given; None
        when compute_dx is False: a network's first layer skips that GEMM);
        writes grads W and b in place."""
        cache, fused = self._take_cache()
        backward = F.affine_relu_backward if fused else F.affine_backward
        return backward(dout, cache, compute_dx=compute_dx, dx=dx, **self._grad_arrays())[0]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class Conv2d(_Weighted):
    """2-d convolution over NCHW inputs (cross-correlation, as torch.nn.Conv2d).

    Inputs:
    - in_channels, out_channels: channel counts
    - kernel_size: int or (kh, kw)
    - stride, padding: ints (the same along both axes; zero padding)
    - bias, weight_scale, seed, dtype: as Linear; He's std is sqrt(2 / (in_channels*kh*kw))

    Parameters: W (out_channels, in_channels, kh, kw), b (out_channels,): the
    arrays layer.W and layer.b (also layer.params['W'], ['b']).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 weight_scale=None, seed=None, dtype=np.float32):
        self.in_channels = check_int("in_channels", in_channels, low=1)
        self.out_channels = check_int("out_channels", out_channels, low=1)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = check_int("stride", stride, low=1)
        self.padding = check_int("padding", padding, low=0)
        kh, kw = self.kernel_size
        super().__init__((self.out_channels, self.in_channels, kh, kw), self.in_channels * kh * kw,
                         self.out_channels, bias, weight_scale, seed, dtype)

    def forward(self, x, out=None):
        """x (N, in_channels, H, W) -> (N, out_channels, H', W') (into out if given)."""
        x = check_unmasked("x", x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_channels}, H, W), "
                             f"got x of shape {x.shape}")
        out, self._cache = F.conv_forward(x, self._parameters["W"].data, self._bias(), self.stride,
                                          self.padding, out=out)
        return out

    def backward(self, dout, compute_dx=True, dx=None):
        """dout (N, out_channels, H', W') -> dx (N, in_channels, H, W) (into dx
        if given), or None when compute_dx is False (skips the col2im); writes
        grads W and b in place."""
        return F.conv_backward(dout, self._take_cache(), compute_dx=compute_dx, dx=dx,
                               **self._grad_arrays())[0]

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")


class _Stateless(Layer):
    """A layer without parameters whose forward is a course function pair."""

    _forward = None   # the functional forward, (x, out=) -> (out, cache)
    _backward = None  # the functional backward, (dout, cache, dx=) -> dx

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x, out=None):
        """The layer's output for x (into out if given)."""
        out, self._cache = type(self)._forward(x, out=out)
        return out

    def backward(self, dout, dx=None):
        """dL/dx for the last forward (into dx if given)."""
        return type(self)._backward(dout, self._take_cache(), dx=dx)


class ReLU(_Stateless):
    """max(0, x) element-wise. Inside a Sequential, a ReLU right after a Linear
    is folded into the Linear's fused kernel."""
    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class Sigmoid(_Stateless):
    """1 / (1 + exp(-x)) element-wise."""
    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Stateless):
    """tanh(x) element-wise."""
    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


class Flatten(_Stateless):
    """(N, d_1, ..., d_k) -> (N, d_1 * ... * d_k), as torch.nn.Flatten():
    views of its input and of dout, so it takes no output arrays."""

    def forward(self, x):
        x = check_unmasked("x", x)
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return check_unmasked("dout", dout).reshape(self._take_cache())


class MaxPool2d(_Stateless):
    """Max pooling over NCHW inputs.

    Inputs:
    - kernel_size: int or (kh, kw)
    - stride: int, the same along both axes; None (as torch): the kernel
      size, which needs a square kernel (the kernels take one stride)
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair("kernel_size", kernel_size)
        if stride is None:
            kh, kw = self.kernel_size
            if kh != kw:
                # torch would stride (kh, kw); one stride for both axes cannot match it.
                raise ValueError(f"stride must be given for the non-square kernel_size "
                                 f"{self.kernel_size} (one stride serves both axes)")
            stride = kh
        self.stride = check_int("stride", stride, low=1)

    def forward(self, x, out=None):
        out, self._cache = F.max_pool_forward(x, self.kernel_size[0], self.kernel_size[1],
                                              self.stride, out=out)
        return out

    _backward = staticmethod(F.max_pool_backward)

    def __repr__(self):
        return f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride})"


class Dropout(_Stateless):
    """Inverted dropout: in training mode each element is zeroed with
    probability p and the others scaled by 1 / (1 - p); identity in eval mode.

    Inputs:
    - p: probability of dropping, in [0, 1)
    - seed: int, np.random.Generator or None. Each forward draws a fresh mask
      from this generator (a seeded run is reproducible).
    - same_mask: if True (needs an int seed), every training forward uses the
      one mask given by seed, as the course's dropout_param['seed'] does:
      the loss is then a deterministic function of the weights, which is what
      a numerical gradient check needs.

    Attribute first_row (0 unless set): the index of the input's first row
    within the global batch it is a shard of. The mask is drawn from the
    element offset first_row * (elements per row), so a shard is dropped
    exactly as its rows of the whole batch would be with the same seed
    (fastfc.distributed.DataParallel sets it at every step).
    """

    def __init__(self, p=0.5, seed=None, same_mask=False):
        super().__init__()
        self.p = check_probability("p (the probability of dropping)", p)
        self.same_mask = bool(same_mask)
        self.first_row = 0
        if self.same_mask:
            self.seed = check_int("seed (same_mask=True needs one)", seed, low=0)
        else:
            self._rng = _generator(seed)

    def forward(self, x, out=None):
        """The dropped-out x in training mode (into out if given); x itself
        in eval mode, where out is left alone (a copy would cost a pass)."""
        seed = self.seed if self.same_mask else int(self._rng.integers(0, 2**63 - 1))
        first_row = check_int("first_row", self.first_row, low=0)
        offset = first_row * math.prod(np.shape(x)[1:]) if first_row else 0
        out, self._cache = F.dropout_forward(x, self.p, train=self.training, seed=seed, offset=offset,
                                             out=out if self.training else None)
        return out

    def backward(self, dout, dx=None):
        """dL/dx for the last forward (into dx if given, after a training-mode
        forward; after an eval-mode one, dout itself)."""
        if self._cache is not None and not self._cache[1]:  # the forward's train flag
            dx = None
        return super().backward(dout, dx=dx)

    _backward = staticmethod(F.dropout_backward)

    def __repr__(self):
        return f"Dropout(p={self.p})"


# ---- normalization -----------------------------------------------------------

class _Normalization(Layer):
    """Shared by the normalization layers: a scale gamma (ones) and a shift
    beta (zeros) per channel, Parameters that are not weights (L2
    regularisation and weight decay leave them alone, as the course's and
    torch's recipes do); backward writes their gradients straight into
    Parameter.grad."""

    _backward = None  # the functional backward, (dout, cache, dx=, dgamma=, dbeta=) -> grads
    numbered_with_previous = True

    def __init__(self, channels, eps, dtype):
        super().__init__()
        dtype = _float_dtype(dtype)
        self.eps = check_real("eps", eps, low=0, low_open=True)
        self._add_parameter("gamma", np.ones(channels, dtype=dtype))
        self._add_parameter("beta", np.zeros(channels, dtype=dtype))
        self.dtype = dtype
        self._cache = None

    def _check_input(self, x, ndim, layout, channels):
        x = check_unmasked("x", x)
        if x.ndim != ndim or x.shape[1] != channels:
            raise ValueError(f"{self!r} expects input of shape {layout}, got x of shape {x.shape}")
        return x

    def backward(self, dout, compute_dx=True, dx=None):
        """dL/dx for the last forward (into dx if given); writes grads gamma
        and beta in place. With compute_dx False (a network's first layer)
        None is returned (the kernel computes dx in the same pass anyway)."""
        if not compute_dx and dx is not None:
            raise ValueError("dx is given but compute_dx is False")
        dx, _, _ = type(self)._backward(dout, self._take_cache(), dx=dx,
                                        dgamma=self._parameters["gamma"].grad,
                                        dbeta=self._parameters["beta"].grad)
        return dx if compute_dx else None


class _BatchNorm(_Normalization):
    """Batch normalization with running statistics (see BatchNorm1d)."""

    _forward = None  # the functional forward
    _ndim, _layout = None, None

    def __init__(self, num_features, eps=1e-5, momentum=0.9, dtype=np.float32):
        self.num_features = check_int("num_features", num_features, low=1)
        super().__init__(self.num_features, eps, dtype)
        self.momentum = check_real("momentum", momentum, low=0, high=1)
        self.running_mean = np.zeros(self.num_features, dtype=self.dtype)
        self.running_var = np.ones(self.num_features, dtype=self.dtype)

    def named_state(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def forward(self, x, out=None):
        """Normalized x (into out if given): with the batch's statistics in
        training mode (updating running_mean and running_var in place), with
        the running ones in eval mode."""
        x = self._check_input(x, self._ndim, self._layout % self.num_features, self.num_features)
        out, self._cache = type(self)._forward(
            x, self._parameters["gamma"].data, self._parameters["beta"].data, self.running_mean,
            self.running_var, train=self.training, momentum=self.momentum, eps=self.eps, out=out)
        return out

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
                f"momentum={self.momentum})")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, num_features) inputs (fastfc.functional.batchnorm_forward).

    Inputs:
    - num_features: D
    - eps: added to the variance
    - momentum: the course's convention, running = momentum * running +
      (1 - momentum) * batch statistic; torch.nn.BatchNorm1d's momentum is
      1 - this (its default 0.1 is this default 0.9), and torch's running
      variance is the unbiased one where this is the batch's biased variance
    - dtype: float32 (default) or float64

    Parameters: gamma (D,) ones, beta (D,) zeros. Attributes running_mean
    (zeros) and running_var (ones), (D,) arrays updated in place by each
    training-mode forward and used in eval mode; they are state, not
    Parameters (no gradient, not seen by optimizers).
    """
    _forward = staticmethod(F.batchnorm_forward)
    _backward = staticmethod(F.batchnorm_backward)
    _ndim, _layout = 2, "(N, %d)"


class BatchNorm2d(_BatchNorm):
    """Spatial batch normalization of (N, num_features, H, W) inputs: statistics
    per channel over N, H and W (fastfc.functional.spatial_batchnorm_forward).
    Arguments, parameters and running statistics as BatchNorm1d's, one per
    channel."""
    _forward = staticmethod(F.spatial_batchnorm_forward)
    _backward = staticmethod(F.spatial_batchnorm_backward)
    _ndim, _layout = 4, "(N, %d, H, W)"


class LayerNorm(_Normalization):
    """Layer normalization of (N, normalized_shape) inputs: each sample over
    its features, the same in training and eval mode
    (fastfc.functional.layernorm_forward).

    Inputs: normalized_shape (the feature count D, an int), eps, dtype.
    Parameters: gamma (D,) ones, beta (D,) zeros.
    """
    _backward = staticmethod(F.layernorm_backward)

    def __init__(self, normalized_shape, eps=1e-5, dtype=np.float32):
        self.normalized_shape = check_int("normalized_shape", normalized_shape, low=1)
        super().__init__(self.normalized_shape, eps, dtype)

    def forward(self, x, out=None):
        x = self._check_input(x, 2, f"(N, {self.normalized_shape})", self.normalized_shape)
        out, self._cache = F.layernorm_forward(x, self._parameters["gamma"].data,
                                               self._parameters["beta"].data, eps=self.eps,
                                               out=out)
        return out

    def __repr__(self):
        return f"LayerNorm({self.normalized_shape}, eps={self.eps})"


class GroupNorm(_Normalization):
    """Group normalization of (N, num_channels, H, W) inputs: each sample's
    groups of num_channels / num_groups adjacent channels, the same in
    training and eval mode (fastfc.functional.groupnorm_forward).

    Inputs: num_groups (dividing num_channels), num_channels, eps, dtype.
    Parameters: gamma (C,) ones, beta (C,) zeros, per channel.
    """
    _backward = staticmethod(F.groupnorm_backward)

    def __init__(self, num_groups, num_channels, eps=1e-5, dtype=np.float32):
        self.num_groups = check_int("num_groups", num_groups, low=1)
        self.num_channels = check_int("num_channels", num_channels, low=1)
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups ({self.num_groups}) must divide num_channels "
                             f"({self.num_channels})")
        super().__init__(self.num_channels, eps, dtype)

    def forward(self, x, out=None):
        x = self._check_input(x, 4, f"(N, {self.num_channels}, H, W)", self.num_channels)
        out, self._cache = F.groupnorm_forward(x, self._parameters["gamma"].data,
                                               self._parameters["beta"].data, self.num_groups,
                                               eps=self.eps, out=out)
        return out

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps})"


# ---- losses ------------------------------------------------------------------

class _Loss:
    """forward(scores, target) -> loss (a float); backward() -> dL/dscores of
    the last forward."""

    _function = None  # the functional loss, (scores, target) -> (loss, dscores)

    def __init__(self):
        self._dscores = None

    def forward(self, scores, target):
        loss, self._dscores = type(self)._function(scores, target)
        return float(loss)

    __call__ = forward

    def backward(self):
        if self._dscores is None:
            raise RuntimeError(f"{type(self).__name__}: backward called without a forward before it")
        return self._dscores

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(_Loss):
    """Softmax cross-entropy averaged over the batch: forward(scores (N, C), y (N,))."""
    _function = staticmethod(F.softmax_loss)


class SVMLoss(_Loss):
    """Multiclass hinge loss (margin 1) averaged over the batch: forward(scores (N, C), y (N,))."""
    _function = staticmethod(F.svm_loss)


class MSELoss(_Loss):
    """Mean squared error over all elements: forward(pred, target of pred's shape)."""
    _function = staticmethod(F.mse_loss)
