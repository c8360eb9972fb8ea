"""Networks: Sequential stacks of fastfc.layers, and the course's models.

Object style:

    model = Sequential(Linear(784, 100), ReLU(), Linear(100, 10))
    scores = model.forward(X)
    loss = criterion.forward(scores, y)
    model.backward(criterion.backward())      # fills every Parameter's grad
    optimizer.step()

Course style (what fastfc.Solver trains): a model with a `params` dict and
`loss(X, y=None)` returning the class scores when y is None and
(loss, grads) otherwise, grads keyed like params. Sequential(..., loss=...)
offers it, and TwoLayerNet, FullyConnectedNet and ConvNet are Sequentials
built for you. Parameter names are the course's: W1, b1 for the first layer
with parameters, W2, b2 for the second, and so on.

save(path) writes the parameters as safetensors (one tensor per name; a
plain .npz when path ends in .npz); load(path) reads either back without
unpickling anything (fastfc.io holds the file formats).
"""
import contextlib
import inspect
import math
import numbers

import numpy as np

# The file format lives in fastfc.io; these names stay importable from here.
from ._validation import check_int, check_probability, check_real, check_unmasked
from .io import load_arrays, save_arrays, write_atomically
from .layers import (BatchNorm1d, Conv2d, Dropout, Flatten, Layer, LayerNorm, Linear, MaxPool2d,
                     MSELoss, ReLU, SoftmaxCrossEntropy, _generator)
from .parameter import ParameterArrays

__all__ = ["Sequential", "TwoLayerNet", "FullyConnectedNet", "ConvNet", "save_arrays", "load_arrays",
           "write_atomically"]


def check_samples(X, y=None, targets=False):
    """X as an array with at least one sample (and y, if given, one label per
    sample; with targets, one label or one target row per sample: (N,) or (N, C))."""
    X = check_unmasked("X", X)
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"X must hold at least one sample, got shape {X.shape}")
    if y is not None:
        y = check_unmasked("y", y)
        if y.ndim not in ((1, 2) if targets else (1,)) or y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has shape {y.shape}; y must hold "
                             + ("one label (N,) or one target row (N, C) per sample" if targets
                                else "one label per sample"))
    return X, y


def takes_targets(model):
    """Whether model's loss compares scores with target rows (MSELoss: one-hot
    or real-valued targets (N, C)) rather than with class labels."""
    return isinstance(getattr(model, "loss_fn", None), MSELoss)


def check_batch_size(batch_size):
    return check_int("batch_size", batch_size, low=1)


class _Buffers:
    """The arrays one layer of a Sequential writes into, kept between steps.
    They are keyed by the layer's forward input without its batch size (its
    shape[1:] and dtype fix the rest of the output's and dx's shapes): a batch
    of N rows uses the first N rows of the array kept for the largest batch
    seen, so training, evaluation and the short last batch of an epoch share
    one array, and a step allocates no layer output or input gradient.
    Arrays are kept for the KEPT_SHAPES input shapes used last: a fully
    convolutional network fed images of ever new sizes would otherwise keep
    one set per size for good."""

    KEPT_SHAPES = 4

    def __init__(self):
        self._arrays = {}  # in order of last use, the most recent last

    def run(self, x, compute, source):
        """compute(array): the layer's pass for input x, writing into the
        kept array's first len(x) rows, or into a new array (array None)
        when none is kept or it is too short; a new result is kept unless it
        shares memory with source (test-time dropout passes its input through)."""
        key = (x.shape[1:], x.dtype)
        kept = self._arrays.get(key)
        array = kept[:len(x)] if kept is not None and len(kept) >= len(x) else None
        result = compute(array)
        if array is None and not np.may_share_memory(result, source):
            kept = result
        if kept is not None:
            self._arrays.pop(key, None)
            self._arrays[key] = kept
            if len(self._arrays) > self.KEPT_SHAPES:
                del self._arrays[next(iter(self._arrays))]  # the least recently used
        return result


def _owned(result, source, source_owned, buffers):
    """Whether a step's result is (a view of) one of the model's buffers: a
    kept buffer when the step has buffers and made a new array, else the
    source's status when the result is a view of the source (Flatten, test-time
    dropout), else not (a new array)."""
    if np.may_share_memory(result, source):
        return source_owned
    return buffers is not None


def _takes(method, name):
    """Whether the bound method accepts the keyword argument name: fastfc's
    layers take out=/dx= (Flatten, whose results are views, does not), and a
    layer written or subclassed elsewhere may implement forward(x) alone."""
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


class Sequential:
    """Layers applied in order.

    Inputs:
    - *layers: fastfc.layers objects. A Linear directly followed by a ReLU
      runs as one fused affine-ReLU kernel (the ReLU object is then not called).
      Every layer but the last writes its output (and, in backward, its input
      gradient) into a buffer kept from the step before, and weight gradients
      go straight into Parameter.grad, so that a training step allocates no
      layer output or gradient (what remains per call is scratch: the fused
      backward's masked gradient, pooling's argmax). The output of forward
      and the input gradient of backward are the caller's to keep.
    - loss: the loss layer used by loss(X, y) (e.g. SoftmaxCrossEntropy()), or None
    - reg: L2 strength for loss(X, y): adds reg * sum(W * W) over the weights
      (not the biases) to the loss and 2 * reg * W to their gradients

    Attributes: layers, loss_fn, reg, training, dtype (of the parameters).
    """

    def __init__(self, *layers, loss=None, reg=0.0):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a fastfc.layers layer, got {type(layer).__name__}")
        check_real("reg", reg, low=0, finite=False)
        self.layers = list(layers)
        self.loss_fn = loss
        self.reg = float(reg)
        self.training = True
        # The run order: (layer, fused with the ReLU after it).
        self._steps = []
        i = 0
        while i < len(layers):
            fused = isinstance(layers[i], Linear) and i + 1 < len(layers) and type(layers[i + 1]) is ReLU
            self._steps.append((layers[i], fused))
            i += 2 if fused else 1
        # The first step with parameters never needs to pass a gradient further back.
        self._first_weighted = next((i for i, (layer, _) in enumerate(self._steps)
                                     if layer.parameters()), None)
        # Per step: the buffers its forward output and its backward dx go
        # to, and its last forward input (the backward's dx has its shape).
        # None where the layer takes no out=/dx=, or where the result goes to
        # the caller (the last step's output, the first step's dx).
        last = len(self._steps) - 1
        self._out_buffers = [_Buffers() if i < last and _takes(
            layer.forward_relu if fused else layer.forward, "out") else None
            for i, (layer, fused) in enumerate(self._steps)]
        self._dx_buffers = [_Buffers() if i > 0 and _takes(layer.backward, "dx") else None
                            for i, (layer, _) in enumerate(self._steps)]
        self._inputs = [None] * len(self._steps)
        self._named = {}
        self._state = {}  # name -> array saved with the parameters (running statistics)
        self._weights = []
        index = 0
        for layer in [layer for layer, _ in self._steps if layer.parameters()]:
            # A normalization layer's gamma and beta take the number of the
            # layer before it, as the course names them (W1, b1, gamma1, beta1).
            if not (layer.numbered_with_previous and index):
                index += 1
            for short, array in layer.named_state().items():
                self._state[f"{short}{index}"] = array
            for short, param in layer.named_parameters():
                param.name = f"{short}{index}"
                self._named[param.name] = param
                if short in layer.weight_names:
                    self._weights.append(param)
        dtypes = {p.dtype for p in self._named.values()}
        if len(dtypes) > 1:
            raise TypeError(f"the layers mix parameter dtypes {sorted(str(d) for d in dtypes)}")
        self.dtype = dtypes.pop() if dtypes else None

    # ---- parameters ------------------------------------------------------------

    def parameters(self):
        """Every Parameter, in layer order (a list)."""
        return list(self._named.values())

    def named_parameters(self):
        """List of (name, Parameter): W1, b1, W2, ..."""
        return list(self._named.items())

    @property
    def params(self):
        """name -> parameter array: the model's own arrays (in-place writes reach
        the model), and `model.params[name] = array` copies array into the
        model's parameter (see fastfc.parameter.ParameterArrays)."""
        return ParameterArrays(self._named)

    @params.setter
    def params(self, arrays):
        """`model.params = {name: array, ...}` sets every parameter (copies)."""
        ParameterArrays(self._named).assign(arrays)

    @property
    def grads(self):
        """dict name -> gradient array, as left by the last backward (the
        model's own arrays, overwritten by the next backward)."""
        return {name: p.grad for name, p in self._named.items()}

    def param_groups(self, weight_decay=0.0):
        """Optimizer param groups: the weights with weight_decay, the biases
        (and any other parameter) with none. Empty groups are left out."""
        weights = {id(p) for p in self._weights}
        groups = [{"params": self._weights, "weight_decay": weight_decay},
                  {"params": [p for p in self._named.values() if id(p) not in weights],
                   "weight_decay": 0.0}]
        return [group for group in groups if group["params"]]

    # ---- modes -----------------------------------------------------------------

    def train(self):
        """Training mode (dropout active). Returns self."""
        self.training = True
        for layer in self.layers:
            layer.train()
        return self

    def eval(self):
        """Evaluation mode (dropout off). Returns self."""
        self.training = False
        for layer in self.layers:
            layer.eval()
        return self

    @contextlib.contextmanager
    def _mode(self, training):
        """Run a block in the given mode, then go back to the mode before."""
        before = self.training
        self.train() if training else self.eval()
        try:
            yield
        finally:
            self.train() if before else self.eval()

    # ---- passes ----------------------------------------------------------------

    def _as_input(self, X):
        """X as an array of the parameters' dtype (a copy only when it differs)."""
        X = check_unmasked("X", X)
        if self.dtype is not None and X.dtype != self.dtype:
            X = X.astype(self.dtype)
        return X

    def forward(self, X):
        """Output of the last layer for the batch X (N, ...), in the current
        mode: an array of the caller's (the inner layers' outputs are buffers
        the next forward overwrites)."""
        h = self._as_input(X)
        owned = False  # whether h is (a view of) one of the model's buffers
        for i, (layer, fused) in enumerate(self._steps):
            run = layer.forward_relu if fused else layer.forward
            self._inputs[i] = h
            buffers = self._out_buffers[i]
            if buffers is None:
                result = run(h)
            else:
                result = buffers.run(h, lambda out: run(h, out=out), h)
            owned = _owned(result, h, owned, buffers)
            h = result
        return h.copy() if owned else h

    def backward(self, dout, need_input_grad=False):
        """Backpropagates dout (the gradient of the loss with respect to the
        last forward's output), overwriting every Parameter's grad.

        The gradient with respect to the input X is only computed when
        need_input_grad is True (e.g. for a gradient check): otherwise the
        first layer with parameters skips it and None is returned. The
        gradient returned is an array of the caller's.
        """
        owned = False
        for i in reversed(range(len(self._steps))):
            layer, _ = self._steps[i]
            if i == self._first_weighted and not need_input_grad:
                layer.backward(dout, compute_dx=False)
                return None
            buffers = self._dx_buffers[i]
            if buffers is None:
                result = layer.backward(dout)
            else:
                result = buffers.run(self._inputs[i], lambda dx: layer.backward(dout, dx=dx), dout)
            owned = _owned(result, dout, owned, buffers)
            dout = result
        return dout.copy() if owned else dout

    def _scores(self, X, batch_size):
        """Evaluation-mode outputs for X, batch by batch, as one array."""
        X, _ = check_samples(X)
        batch_size = check_batch_size(batch_size)
        with self._mode(False):
            return np.concatenate([self.forward(X[i:i + batch_size])
                                   for i in range(0, len(X), batch_size)])

    def predict(self, X, batch_size=256):
        """Predicted class (the argmax of the scores) of each sample of X,
        in evaluation mode. Returns (N,) int64."""
        return np.argmax(self._scores(X, batch_size), axis=1)

    def loss(self, X, y=None):
        """The course contract.

        Inputs: X (N, ...) samples; y (N,) labels (or, for MSELoss, targets
        (N, C) such as one-hot rows), or None.
        Returns:
        - y None: the scores (N, C), evaluation mode (dropout off)
        - else (loss, grads): the loss (including the L2 term) in training mode
          and dict name -> gradient array, keyed like params: new arrays the
          caller keeps (a later loss() call does not change them)
        """
        if y is None:
            with self._mode(False):
                return self.forward(check_samples(X)[0])
        loss = self._loss_into_grads(X, y)
        return loss, {name: p.grad.copy() for name, p in self._named.items()}

    # L2 regularisation adds _l2_factor * reg * sum(W * W) to the loss: fastfc
    # counts reg * sum(W**2) (torch's weight_decay = 2 * reg), the cs231n
    # course 0.5 * reg * sum(W**2) (its models set 0.5).
    _l2_factor = 1.0

    def _loss_into_grads(self, X, y):
        """loss(X, y) without the copies: returns the loss and leaves the
        gradients in each Parameter.grad (for Solvers, which step from there)."""
        if self.loss_fn is None:
            raise ValueError("this Sequential has no loss: build it with loss=SoftmaxCrossEntropy() "
                             "(or another loss) to call loss(X, y)")
        X, y = check_samples(X, y, targets=takes_targets(self))
        if y.ndim == 2 and self.dtype is not None:
            y = y.astype(self.dtype, copy=False)  # one-hot rows of ints, or float64 ones
        with self._mode(True):
            loss = self.loss_fn.forward(self.forward(X), y)
            self.backward(self.loss_fn.backward())
        if self.reg:
            strength = self._l2_factor * self.reg
            for p in self._weights:
                # einsum's own loop, not np.vdot: NumPy's threaded BLAS would leave its
                # threads spinning on the cores fastfc's next kernel needs.
                loss += strength * float(np.einsum("i,i->", p.data.ravel(), p.data.ravel()))
                p.grad += (2 * strength) * p.data
        return loss

    # ---- files -----------------------------------------------------------------

    def _saved_arrays(self):
        """What save writes: the parameters (W1, b1, ...) and the layers'
        state (running_mean1, running_var1, ... of batch normalization)."""
        return {**self.params, **self._state}

    def save(self, path):
        """Writes the parameters (and batch normalization's running statistics)
        to path as safetensors, or as a plain .npz when path ends in .npz
        (names W1, b1, ..., running_mean1, ...), atomically (see save_arrays).
        PyTorch reads the safetensors file with safetensors.torch.load_file."""
        save_arrays(path, self._saved_arrays())

    def load(self, path):
        """Fills the parameters (and running statistics) in place from a file
        written by save (safetensors or .npz, told apart by content). The names, shapes and dtypes must match the model's
        (ValueError naming the mismatch otherwise; the model is then
        unchanged). Returns self."""
        arrays = self._saved_arrays()
        for name, array in load_arrays(path, arrays).items():
            np.copyto(arrays[name], array)
        return self

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}(\n  {inner}\n)"


# FullyConnectedNet's normalization choices: the layer put between each hidden
# Linear and its ReLU, as the course's {affine - [norm] - relu - [dropout]}.
_NORMALIZATIONS = (None, "batchnorm", "layernorm")  # FullyConnectedNet's choices (layer_plan's kinds)


def layer_plan(input_shape, hidden, num_classes, filters=(), filter_size=3, dropout=0.0,
               normalization=None, flatten=True):
    """The layers of an MLP or a CNN, without making them: the one
    description the models, the command line's models and the benchmarks'
    networks are built from (each makes the layers its own way).

    For each of filters a conv - relu - 2x2 max pool block (the convolutions
    pad by (filter_size - 1) // 2, which keeps H and W for odd sizes), a
    flatten (unless flatten is False: the course's MLPs take their rows as
    they come, Linear flattening them), for each of hidden a linear -
    [normalization] - relu block (then a dropout when dropout > 0), and a
    linear layer to num_classes.

    Inputs: input_shape (C, H, W), or (D,) without filters; normalization
    None, 'batchnorm' or 'layernorm'.
    Returns a list of (kind, sizes): 'conv' (in_channels, out_channels,
    filter_size, padding), 'relu' (), 'pool' (2,), 'flatten' (),
    'linear' (in_features, out_features), 'batchnorm'/'layernorm'
    (features,), 'dropout' (p,). ValueError when a block's maps get too
    small for the 2x2 pool.
    """
    plan, shape = [], tuple(input_shape)
    padding = (filter_size - 1) // 2
    for block, count in enumerate(filters, 1):
        channels, height, width = shape
        height, width = height + 2 * padding - filter_size + 1, width + 2 * padding - filter_size + 1
        if height < 2 or width < 2:  # the 2x2 pool needs at least 2x2
            raise ValueError(f"conv-pool block {block} of {len(filters)} gets {shape[1]}x{shape[2]} maps, "
                             f"too small for filter_size {filter_size} and a 2x2 pool")
        plan += [("conv", (channels, count, filter_size, padding)), ("relu", ()), ("pool", (2,))]
        shape = (count, height // 2, width // 2)
    if flatten or filters:
        plan.append(("flatten", ()))
    features = math.prod(shape)
    for width in hidden:
        plan.append(("linear", (features, width)))
        if normalization is not None:
            plan.append((normalization, (width,)))
        plan.append(("relu", ()))
        if dropout > 0:
            plan.append(("dropout", (dropout,)))
        features = width
    plan.append(("linear", (features, num_classes)))
    return plan


def _course_mlp_layers(dims, dropout, weight_scale, rng, seed, dtype, normalization=None):
    """The course MLP's layers (layer_plan without the flatten) through dims,
    its Linear weights drawn from rng in order."""
    # With an int seed every call uses the same mask, as the course's
    # dropout_param['seed'] (a gradient check needs that); hidden block i
    # takes seed + i.
    fixed = isinstance(seed, numbers.Integral)
    blocks = iter(range(len(dims)))
    make = {"linear": lambda d_in, d_out: Linear(d_in, d_out, weight_scale=weight_scale, seed=rng,
                                                 dtype=dtype),
            "batchnorm": lambda width: BatchNorm1d(width, dtype=dtype),
            "layernorm": lambda width: LayerNorm(width, dtype=dtype),
            "relu": ReLU,
            "dropout": lambda p: Dropout(p, seed=seed + next(blocks) if fixed else rng, same_mask=fixed)}
    plan = layer_plan(dims[:1], dims[1:-1], dims[-1], dropout=dropout, normalization=normalization,
                      flatten=False)
    return [make[kind](*sizes) for kind, sizes in plan]


class TwoLayerNet(Sequential):
    """affine - relu - affine - softmax, the course's two-layer network.

    Inputs: input_dim D, hidden_dim H, num_classes C, weight_scale (std of the
    initial weights), reg (L2 strength), dtype, seed (int/Generator/None).
    params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,).
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0, dtype=np.float32, seed=None):
        rng = _generator(seed)
        super().__init__(*_course_mlp_layers((input_dim, hidden_dim, num_classes), 0.0, weight_scale,
                                             rng, None, dtype),
                         loss=SoftmaxCrossEntropy(), reg=reg)


class FullyConnectedNet(Sequential):
    """{affine - [norm] - relu - [dropout]} x (L - 1) - affine - softmax, the course's network.

    Inputs:
    - hidden_dims: list of hidden layer sizes
    - input_dim, num_classes: sizes
    - dropout: probability of dropping each hidden unit (0: no dropout layers)
    - normalization: None, 'batchnorm' (BatchNorm1d) or 'layernorm' (LayerNorm)
      after each hidden Linear, before its ReLU
    - reg: L2 strength
    - weight_scale: std of the initial weights (None: He initialisation)
    - dtype: float32 or float64 (use float64 for gradient checks)
    - seed: makes the initialisation reproducible and, as in the course,
      fixes the dropout mask: every loss(X, y) call drops the same units
    params: W1, b1, ..., WL, bL, and with normalization gamma1, beta1, ...,
    gamma(L-1), beta(L-1) (the course's names).
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0.0, reg=0.0,
                 weight_scale=1e-2, dtype=np.float32, seed=None, normalization=None):
        check_probability("dropout", dropout)
        if not isinstance(normalization, (str, type(None))) or normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be None, 'batchnorm' or 'layernorm', "
                             f"got {normalization!r}")
        if isinstance(hidden_dims, str) or not hasattr(hidden_dims, "__iter__"):
            raise ValueError(f"hidden_dims must be a list of layer sizes, e.g. [100, 100], "
                             f"got {hidden_dims!r}")
        dims = (input_dim, *hidden_dims, num_classes)
        super().__init__(*_course_mlp_layers(dims, dropout, weight_scale, _generator(seed), seed,
                                             dtype, normalization),
                         loss=SoftmaxCrossEntropy(), reg=reg)
        self.normalization = normalization
        self.num_layers = len(dims) - 1


class ConvNet(Sequential):
    """{conv - relu - 2x2 max pool} x len(num_filters) - affine - relu - affine - softmax.

    Inputs:
    - input_dim: (C, H, W) of the images
    - num_filters: filters of each conv block (an int: one block, as the
      course's three-layer ConvNet)
    - filter_size: kernel size; the convolutions pad by (filter_size - 1) // 2,
      which keeps H and W for odd sizes
    - hidden_dim: width of the hidden affine layer (None: the head is one affine layer)
    - num_classes, weight_scale (None: He), reg, dtype, seed: as FullyConnectedNet
    params: W1, b1 (first conv), ..., then the affine layers'.

    forward and loss take X (N, C, H, W) of exactly input_dim's shape.
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=(32, 64), filter_size=3, hidden_dim=100,
                 num_classes=10, weight_scale=None, reg=0.0, dtype=np.float32, seed=None):
        if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
            raise ValueError(f"input_dim must be (C, H, W), got {input_dim!r}")
        self.input_dim = tuple(check_int("input_dim", size, low=1) for size in input_dim)
        if isinstance(num_filters, numbers.Integral):
            num_filters = (num_filters,)
        filter_size = check_int("filter_size", filter_size, low=1)
        try:
            plan = layer_plan(self.input_dim, (hidden_dim,) if hidden_dim else (), num_classes,
                              num_filters, filter_size)
        except ValueError as exc:
            raise ValueError(f"num_filters: {exc} (input_dim {self.input_dim})") from None
        rng = _generator(seed)
        make = {
            "conv": lambda c_in, c_out, k, padding: Conv2d(c_in, c_out, k, padding=padding,
                                                           weight_scale=weight_scale, seed=rng, dtype=dtype),
            "relu": ReLU, "pool": MaxPool2d, "flatten": Flatten,
            "linear": lambda d_in, d_out: Linear(d_in, d_out, weight_scale=weight_scale, seed=rng, dtype=dtype),
        }
        super().__init__(*(make[kind](*sizes) for kind, sizes in plan), loss=SoftmaxCrossEntropy(), reg=reg)

    def forward(self, X):
        """Scores (N, num_classes) for images X (N, C, H, W) of input_dim's shape."""
        X = check_unmasked("X", X)
        # Checked here: a wrong H or W would otherwise surface as a size
        # mismatch of an inner Linear layer the caller never built.
        if X.shape[1:] != self.input_dim:
            channels, height, width = self.input_dim
            raise ValueError(f"ConvNet expects input of shape (N, {channels}, {height}, {width}), "
                             f"got X of shape {X.shape}")
        return super().forward(X)
