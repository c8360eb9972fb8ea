"""Parameter: a trainable array and its gradient, shared by layers and optimizers."""
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
