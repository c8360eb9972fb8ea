"""What the course's models share: tensor parameters, the tensor loss(),
the course's initialization draws, and save/load without pickle."""
import numbers
import os
from collections.abc import Mapping, MutableMapping

import numpy as np

from .. import models
from ..io import NotJSONError, load_arrays, parameters_digest, read_json, save_arrays, write_json
from ._tensors import (check_device, float_dtype, host, labels, real, samples, scalar, tensor,
                       torch, torch_dtype)

SAVE_FORMAT = "fastfc-eecs598-model"
SAVE_VERSION = 1
MAX_RECORD_BYTES = 1 << 20  # far above any description save writes


class TensorParams(MutableMapping):
    """model.params: name -> the parameter as a tensor over the model's own
    memory (in-place edits, such as a numerical gradient check's, reach the
    model). Assigning copies the values in (any real dtype, cast); assigning
    a parameter's own tensor (an update rule's in-place next_w) copies
    nothing. The names are fixed by the model."""

    __slots__ = ("_arrays",)

    def __init__(self, arrays):
        self._arrays = arrays  # the model's fastfc.parameter.ParameterArrays

    def __getitem__(self, name):
        return tensor(self._arrays[name])

    def __setitem__(self, name, value):
        if name not in self._arrays:
            raise KeyError(f"no parameter {name!r} (the parameters are {', '.join(self._arrays)})")
        value = host(value, f"params[{name!r}]")
        data = self._arrays[name]
        if not (value.ctypes.data == data.ctypes.data and value.dtype == data.dtype
                and value.shape == data.shape and value.strides == data.strides):
            self._arrays[name] = value

    def __delitem__(self, name):
        del self._arrays[name]  # refused with a TypeError naming the parameter

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __repr__(self):
        return "{" + ", ".join(f"{name!r}: tensor{tuple(self._arrays[name].shape)}"
                               for name in self._arrays) + "}"


def sidecar_path(path):
    """The JSON file beside a saved model: net.pth -> net.pth.json."""
    return os.fspath(path) + ".json"


class CourseModel:
    """Mixed into a fastfc.models network: the course's tensor interface.

    Subclasses define _build(dtype, **config), which (re)builds the network
    for an architecture config (what save records; the weights are then
    overwritten), and _weight_shapes(), the shapes of the weights the
    course's constructor draws, in its order.
    """

    _l2_factor = 1.0  # the course's reg * sum(W**2); FullyConnectedNet uses 0.5

    def _construct(self, config, weight_scale, reg, dtype, device, initializer=None):
        """The course constructor's work: check device and dtype, draw every
        weight in the course's order (torch.randn(shape) * weight_scale, or
        initializer(shape, torch dtype)), so that torch.manual_seed
        reproduces the notebooks' numbers, then build and set them."""
        check_device(device)
        np_dtype = float_dtype(dtype)
        reg = real(reg, "reg")
        if not reg >= 0:
            raise ValueError(f"reg must be >= 0, got {reg!r}")
        scale = real(weight_scale, "weight_scale") if initializer is None else None
        # Drawn before the build, which may draw the dropout masks' seed after them.
        self._architecture = dict(config)
        try:
            shapes = [tuple(shape) for shape in self._weight_shapes()]
        except TypeError:
            shapes = None
        if shapes is None or not all(isinstance(size, numbers.Integral) and not isinstance(
                size, bool) and size > 0 for shape in shapes for size in shape):
            raise ValueError(f"the layer sizes must be positive ints, got {config}")
        if initializer is None:
            weights = [torch.randn(shape, dtype=torch_dtype(np_dtype)) * scale for shape in shapes]
        else:
            weights = [initializer(shape, torch_dtype(np_dtype)) for shape in shapes]
        self._rebuild(np_dtype, config)
        self.reg = reg
        self._set_weights(weights)

    def _rebuild(self, dtype, config):
        """The network (re)built for the architecture config, zero weights."""
        self._build(dtype, **config)
        self._architecture = dict(config)

    def _set_weights(self, weights):
        """W1, W2, ... set from the tensors weights (the biases stay zero)."""
        for index, weight in enumerate(weights, 1):
            self.params[f"W{index}"] = weight

    @property
    def params(self):
        """name -> parameter tensor (see TensorParams)."""
        return TensorParams(models.Sequential.params.fget(self))

    @params.setter
    def params(self, values):
        """`model.params = {name: tensor, ...}` sets every parameter (copies)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"params must be assigned a dict of tensors, got {type(values).__name__}")
        models.Sequential.params.fset(self, {name: host(value, f"params[{name!r}]")
                                             for name, value in values.items()})

    def loss(self, X, y=None):
        """The course's loss.

        Inputs: X (N, d_1, ..., d_k) float tensor, computed in the model's
        dtype (cast like the course's X.to(self.dtype): a copy when its
        dtype differs or it is not contiguous); y (N,) integer labels or None.
        Returns the scores (N, C) for y None (test mode), else (loss, grads):
        the loss as a 0-d tensor and a dict name -> gradient tensor the
        caller keeps.
        """
        X = samples(X, self.dtype)
        if y is None:
            return tensor(super().loss(X))
        loss, grads = super().loss(X, labels(y))
        return scalar(loss, self.dtype), {name: tensor(grad) for name, grad in grads.items()}

    # ---- files -----------------------------------------------------------------

    def _arrays(self):
        """What save writes: the parameters and the layers' state (batch
        normalization's running statistics), the model's own arrays."""
        return {**{name: p.data for name, p in self.named_parameters()}, **self._state}

    def save(self, path):
        """Writes the model without pickle: the parameters (and any running
        statistics) at path (safetensors, or an .npz for a name ending in
        .npz), and the architecture, reg, dtype and the arrays' SHA-256 as
        JSON at path + '.json' (a description from another save is refused
        at load)."""
        arrays = self._arrays()
        record = dict(format=SAVE_FORMAT, version=SAVE_VERSION, model=type(self).__name__,
                      config=self._architecture, reg=self.reg, dtype=np.dtype(self.dtype).name,
                      parameters_sha256=parameters_digest(arrays))
        save_arrays(path, arrays)
        write_json(sidecar_path(path), record)
        print("Saved in {}".format(path))

    def load(self, path, dtype=None, device="cpu"):
        """Reads a model written by save: the architecture is the file's (the
        model is rebuilt to it, as the course's load replaces params), its
        values cast to dtype (None: the saved dtype). Nothing is unpickled: a
        torch.save checkpoint is refused with a ValueError."""
        check_device(device)
        record = _read_record(path, type(self).__name__)
        saved = np.dtype(record["dtype"])
        # Built and filled apart, so that a file that does not load leaves the model as it was.
        fresh = type(self).__new__(type(self))
        try:
            fresh._rebuild(saved if dtype is None else float_dtype(dtype), record["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{sidecar_path(path)}: bad architecture ({exc})") from None
        named = fresh._arrays()
        loaded = load_arrays(path, {name: np.empty(a.shape, saved)
                                           for name, a in named.items()})
        digest = record.get("parameters_sha256")  # absent from descriptions written before it
        if digest is not None and digest != parameters_digest(loaded):
            raise ValueError(f"{path} and {sidecar_path(path)} come from different saves (the "
                             f"parameters' SHA-256 differs from the description's)")
        for name, array in loaded.items():
            np.copyto(named[name], array, casting="unsafe")
        fresh.reg = record["reg"]
        vars(self).clear()
        vars(self).update(vars(fresh))
        print("load checkpoint file: {}".format(path))


def _read_record(path, model_name):
    """The JSON record save wrote beside path, checked."""
    sidecar = sidecar_path(path)
    try:
        record = read_json(sidecar, MAX_RECORD_BYTES)
    except FileNotFoundError:
        raise ValueError(f"{sidecar} not found: fastfc.eecs598 models are saved as an .npz plus "
                         f"that JSON file by model.save (a torch.save checkpoint would need "
                         f"unpickling, which load never does)") from None
    except NotJSONError as exc:
        raise ValueError(f"{sidecar}: not a model description ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != SAVE_FORMAT:
        raise ValueError(f"{sidecar}: not a fastfc.eecs598 model description")
    if record.get("version") != SAVE_VERSION:
        raise ValueError(f"{sidecar}: description version {record.get('version')}, this fastfc "
                         f"reads version {SAVE_VERSION}")
    if record.get("model") != model_name:
        raise ValueError(f"{path} holds a {record.get('model')}, not a {model_name}")
    if not isinstance(record.get("config"), dict) or record.get("dtype") not in ("float32",
                                                                                   "float64"):
        raise ValueError(f"{sidecar}: bad model description")
    reg = record.get("reg")
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not 0 <= reg < float("inf"):
        raise ValueError(f"{sidecar}: reg must be a finite number >= 0, got {reg!r}")
    digest = record.get("parameters_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise ValueError(f"{sidecar}: parameters_sha256 must be 64 hex digits, got {digest!r}")
    return record
