"""Export a trained network to ONNX, which onnxruntime, OpenCV, TensorRT and
most inference servers run.

    from fastfc.export import export_onnx
    export_onnx(model, "model.onnx")                       # input (N, *model's input shape)
    export_onnx(mlp, "mlp.onnx", input_shape=(1, 8, 8))    # an MLP fed images

The graph maps an input "input" of shape (N, *input_shape) to the class
scores "scores" (N, num_classes), as model.forward in eval mode does
(dropout is the identity, batch normalization uses its running statistics);
the batch size N is free. It needs the onnx package (`pip install onnx`),
imported only here.
"""
import math
import numbers

import numpy as np

from . import layers as L
from .io import write_atomically
from .models import ConvNet, Sequential

__all__ = ["export_onnx", "ONNX_OPSET"]

# LayerNormalization needs opset 17 (onnxruntime 1.14 and later run it).
ONNX_OPSET = 17
ONNX_INSTALL_HINT = "pip install onnx"


class _Graph:
    """The nodes and initializers (the weights) of the graph being built;
    each layer adds its nodes and returns the name of its output."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = dtype
        self.nodes = []
        self.initializers = []
        self.count = 0

    def constant(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array, self.dtype), name))
        return name

    def node(self, op, inputs, **attributes):
        self.count += 1
        output = f"{op.lower()}{self.count}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _weights(graph, layer, *names):
    """The layer's arrays as initializers named as the model names them
    (W1, b1, gamma1, running_mean1, ...: the names in its saved files)."""
    short, parameter = next(iter(layer.named_parameters()))
    number = parameter.name[len(short):]
    arrays = {**{k: p.data for k, p in layer.named_parameters()}, **layer.named_state()}
    if "b" in names and "b" not in arrays:
        arrays["b"] = layer._bias()  # a bias-free layer adds zeros
    return [graph.constant(f"{name}{number}", arrays[name]) for name in names]


def _linear(graph, layer, x, rank):
    if rank != 2:  # Gemm takes (N, features): Linear flattens any (N, ...) input
        x = graph.node("Flatten", [x], axis=1)
    return graph.node("Gemm", [x, *_weights(graph, layer, "W", "b")]), 2


def _conv(graph, layer, x, rank):
    return graph.node("Conv", [x, *_weights(graph, layer, "W", "b")],
                      kernel_shape=list(layer.kernel_size), strides=[layer.stride] * 2,
                      pads=[layer.padding] * 4), 4


def _batch_norm(graph, layer, x, rank):
    weights = _weights(graph, layer, "gamma", "beta", "running_mean", "running_var")
    return graph.node("BatchNormalization", [x, *weights], epsilon=layer.eps), rank


def _layer_norm(graph, layer, x, rank):
    weights = _weights(graph, layer, "gamma", "beta")
    return graph.node("LayerNormalization", [x, *weights], axis=-1, epsilon=layer.eps), rank


def _max_pool(graph, layer, x, rank):
    return graph.node("MaxPool", [x], kernel_shape=list(layer.kernel_size),
                      strides=[layer.stride] * 2), 4


def _flatten(graph, layer, x, rank):
    return graph.node("Flatten", [x], axis=1), 2


def _elementwise(op):
    def add(graph, layer, x, rank):
        return graph.node(op, [x]), rank
    return add


def _identity(graph, layer, x, rank):
    return x, rank  # dropout in eval mode


_EXPORTERS = {
    L.Linear: _linear, L.Conv2d: _conv, L.BatchNorm1d: _batch_norm,
    L.BatchNorm2d: _batch_norm, L.LayerNorm: _layer_norm, L.MaxPool2d: _max_pool,
    L.Flatten: _flatten, L.ReLU: _elementwise("Relu"), L.Sigmoid: _elementwise("Sigmoid"),
    L.Tanh: _elementwise("Tanh"), L.Dropout: _identity,
}


def _default_input_shape(model):
    if isinstance(model, ConvNet):
        return model.input_dim
    first = model.layers[0] if model.layers else None
    if isinstance(first, L.Linear):
        return (first.in_features,)
    if isinstance(first, L.Conv2d):
        raise ValueError("input_shape is needed for a Sequential starting with a Conv2d: "
                         f"(C, H, W) with C = {first.in_channels}")
    raise ValueError("input_shape is needed: the model does not say its input's shape")


def _check_input_shape(input_shape):
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") \
            or not 1 <= len(input_shape) <= 3 \
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                       for d in input_shape):
        raise ValueError(f"input_shape must be the shape of one sample, 1 to 3 positive ints, "
                         f"got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


def _standardize(graph, x, input_shape, mean, std):
    """(x - mean) / std per channel (the first axis of a sample), as
    fastfc.datasets.standardize, in front of the network."""
    channels = input_shape[0]
    shape = (channels,) + (1,) * (len(input_shape) - 1)
    mean, std = (np.asarray(v, np.float64).reshape(-1) for v in (mean, std))
    if mean.size != channels or std.size != channels:
        raise ValueError(f"mean and std must have one value per channel ({channels}), got "
                         f"{mean.size} and {std.size}")
    x = graph.node("Sub", [x, graph.constant("input_mean", mean.reshape(shape))])
    return graph.node("Div", [x, graph.constant("input_std", std.reshape(shape))])


def onnx_model(model, input_shape=None, mean=None, std=None):
    """The onnx.ModelProto of a fastfc Sequential (FullyConnectedNet,
    TwoLayerNet, ConvNet or one built from Linear, Conv2d, ReLU, Sigmoid,
    Tanh, MaxPool2d, Flatten, Dropout, BatchNorm1d/2d and LayerNorm).

    Inputs:
    - model: the network, float32 or float64 (the graph's type)
    - input_shape: the shape of one sample; None: the model's (ConvNet's
      input_dim, else the first Linear's in_features)
    - mean, std: per-channel statistics (one value per channel, the first
      axis of input_shape) the graph standardizes its input with first, as
      fastfc.datasets.standardize; None: the input goes in as it is

    Raises TypeError for what is not a Sequential, ValueError for a layer
    ONNX export does not cover (naming it) and ImportError without onnx.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastfc Sequential (FullyConnectedNet, ConvNet, ...), "
                        f"got {type(model).__name__}")
    input_shape = _default_input_shape(model) if input_shape is None else _check_input_shape(input_shape)
    first = model.layers[0] if model.layers else None
    if isinstance(first, L.Linear) and math.prod(input_shape) != first.in_features:
        raise ValueError(f"input_shape {input_shape} has {math.prod(input_shape)} features, the "
                         f"first Linear layer takes {first.in_features}")
    if isinstance(model, ConvNet) and input_shape != model.input_dim:
        raise ValueError(f"input_shape {input_shape} is not the ConvNet's input_dim {model.input_dim}")
    for i, layer in enumerate(model.layers):
        if type(layer) not in _EXPORTERS:
            raise ValueError(f"layer {i} ({layer!r}) has no ONNX export (supported: "
                             f"{', '.join(sorted(t.__name__ for t in _EXPORTERS))})")
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401 (binds the submodules used)
        import onnx.shape_inference  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package: {ONNX_INSTALL_HINT}") from exc
    dtypes = {p.data.dtype for _, p in model.named_parameters()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(f"model must be all float32 or all float64, has {sorted(map(str, dtypes))}")
    dtype = next(iter(dtypes))
    graph = _Graph(onnx, dtype)
    x, rank = "input", 1 + len(input_shape)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None:
        x = _standardize(graph, x, input_shape, mean, std)
    for layer in model.layers:
        x, rank = _EXPORTERS[type(layer)](graph, layer, x, rank)
    graph.nodes[-1].output[0] = "scores"
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    num_classes = _output_width(model)
    inputs = [onnx.helper.make_tensor_value_info("input", element, ["N", *input_shape])]
    outputs = [onnx.helper.make_tensor_value_info("scores", element, ["N", num_classes])]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "fastfc", inputs, outputs, graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)], producer_name="fastfc")
    try:
        onnx.checker.check_model(proto, full_check=True)  # also infers and checks every shape
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ValueError(f"input_shape {input_shape} does not fit the model: {first_line}") from None
    return proto


def _output_width(model):
    last = next((layer for layer in reversed(model.layers) if isinstance(layer, L.Linear)), None)
    if last is None:
        raise ValueError("the model must end in a Linear layer (its scores)")
    return last.out_features


def export_onnx(model, path, input_shape=None, mean=None, std=None):
    """Write model as an ONNX file at path (atomically; see onnx_model for
    the arguments and what is exported). Returns path."""
    proto = onnx_model(model, input_shape, mean, std)
    write_atomically(path, lambda f: f.write(proto.SerializeToString()))
    return path
