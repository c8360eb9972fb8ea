"""Parameter: a trainable array and its gradient, shared by layers and optimizers."""
from collections.abc import Mapping, MutableMapping

import numpy as np


class Parameter:
    """A trainable array.

    Attributes:
    - data: the values, a C-contiguous float array, updated in place (never reallocated)
    - grad: the gradient, same shape and dtype, overwritten by each backward
    - name: a label such as 'W' or 'b' (models prefix it with the layer's name)
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        if isinstance(data, np.ma.MaskedArray):  # the mask would be silently dropped
            raise TypeError(f"Parameter {name!r} must not be a masked array; pass "
                            "data.filled(value) or np.asarray(data)")
        data = np.ascontiguousarray(data)
        if data.dtype not in (np.float32, np.float64):
            raise TypeError(f"Parameter {name!r} must be float32 or float64, got {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class ParameterArrays(MutableMapping):
    """The `params` of a layer or model: name -> the Parameter's data array.

    Reading gives the parameter's own array (in-place edits reach the model,
    as the course's numerical gradient checks rely on). Assigning copies the
    new values into that array, so the model, its optimizer and any array
    handed out before all see them: `model.params['W1'] = w` works as the
    course's Solver writes it. The set of names is fixed by the model:
    deleting or adding a name is refused.
    """

    __slots__ = ("_named",)

    def __init__(self, named):
        self._named = named  # the owner's dict name -> Parameter (shared, not copied)

    def __getitem__(self, name):
        return self._named[name].data

    def __setitem__(self, name, value):
        if name not in self._named:
            raise KeyError(f"no parameter {name!r} (the parameters are {', '.join(self._named)})")
        self._write(name, self._checked(name, value))

    def _checked(self, name, value):
        """value as an array that fits parameter name (any real dtype: it is
        cast to the parameter's, as the course's own assignments are)."""
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise TypeError(f"params[{name!r}] must be a real number array, got dtype {value.dtype}")
        shape = self._named[name].data.shape
        if value.shape != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape}, got {value.shape}")
        return value

    def _write(self, name, value):
        data = self._named[name].data
        if value is not data:
            np.copyto(data, value, casting="unsafe")

    def __delitem__(self, name):
        raise TypeError(f"parameters cannot be removed from a model (tried {name!r})")

    def __iter__(self):
        return iter(self._named)

    def __len__(self):
        return len(self._named)

    def __repr__(self):
        return "{" + ", ".join(f"{name!r}: array{p.data.shape}" for name, p in self._named.items()) + "}"

    def assign(self, arrays):
        """Set every parameter from the mapping arrays, which must name each
        exactly once; checked in full before anything is written."""
        if not isinstance(arrays, Mapping):
            raise TypeError(f"params must be assigned a dict of arrays, got {type(arrays).__name__}")
        missing = [name for name in self._named if name not in arrays]
        unknown = [name for name in arrays if name not in self._named]
        if missing or unknown:
            raise ValueError("params must be assigned exactly the model's parameters: "
                             + "; ".join(filter(None, [missing and f"missing {missing}",
                                                       unknown and f"unknown {unknown}"])))
        checked = {name: self._checked(name, arrays[name]) for name in self._named}
        for name, value in checked.items():
            self._write(name, value)
