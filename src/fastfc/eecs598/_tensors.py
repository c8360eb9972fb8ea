"""Between torch tensors and the NumPy arrays fastfc's kernels take.

Inputs become NumPy views of the tensors' own memory (tensor.numpy(), no
copy) and results become tensors over the kernels' arrays
(torch.from_numpy, no copy). What a view cannot honestly stand for is
refused, with the argument's name, rather than quietly detached or copied:
- a tensor on another device (ValueError: fastfc runs on the CPU),
- a tensor that requires grad (ValueError: pass .detach(); fastfc computes
  the gradients itself, outside autograd),
- a dtype other than float32/float64 (TypeError), or float tensors of both
  types in one call (TypeError),
- a non-contiguous tensor, e.g. a transpose (ValueError: pass
  .contiguous(), the copy the caller then sees and pays for).
The models' X (cast to the model's dtype, as the course's X.to(dtype)) and
the Solver's data (read through strided views) are the documented
exceptions.
"""

try:
    import torch
except ImportError as exc:  # the optional extra is missing
    raise ImportError('fastfc.eecs598 works on PyTorch tensors and needs PyTorch: '
                      'pip install "fastfc[torch]"') from exc
import numpy as np

from .._validation import check_real

FLOAT_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_placement(t, name):
    """t is a tensor on the CPU that autograd does not track."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(f"{name} is on {t.device}: fastfc runs on the CPU, pass {name}.cpu()")
    if t.requires_grad:
        raise ValueError(f"{name} requires grad: fastfc computes gradients itself, outside "
                         f"autograd; pass {name}.detach()")


def array(t, name):
    """The NumPy view (no copy) of t, a contiguous float32/float64 CPU tensor
    that does not require grad; TypeError/ValueError naming name otherwise."""
    _check_placement(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 tensor, got {t.dtype}")
    if not t.is_contiguous():
        raise ValueError(f"{name} is not contiguous (a transposed, expanded or strided view): "
                         f"fastfc reads tensors in place and copies none; pass {name}.contiguous()")
    return t.numpy()


def arrays(**tensors):
    """The views (see array) of the named tensors, in order, checked to share
    one float type: mixed float32/float64 in one call is a TypeError."""
    views = [array(t, name) for name, t in tensors.items()]
    names = list(tensors)
    for name, view in zip(names[1:], views[1:]):
        if view.dtype != views[0].dtype:
            raise TypeError(f"{name} is {tensors[name].dtype} but {names[0]} is "
                            f"{tensors[names[0]].dtype}: pass every tensor of one call in the "
                            "same float type")
    return views


def labels(y, name="y"):
    """The NumPy view of y, a CPU tensor of integer class labels (any layout)."""
    _check_placement(y, name)
    if y.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name} must be a tensor of integer class labels, got {y.dtype}")
    return y.numpy()


def samples(X, dtype, name="X"):
    """X, a CPU float tensor, as an array of the model's dtype: the view
    itself when X already is a contiguous tensor of that dtype, else a copy
    cast to it (what the course's X.to(self.dtype) makes)."""
    _check_placement(X, name)
    if not X.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of samples, got {X.dtype}")
    target = torch_dtype(dtype)
    if X.dtype != target or not X.is_contiguous():
        X = X.to(target).contiguous()
    return X.numpy()


def data_array(t, name):
    """The NumPy view of a data tensor (the Solver's X_train, y_val, ...): any
    layout, read through strides, never copied."""
    _check_placement(t, name)
    return t.numpy()


def tensor(a):
    """The tensor over the array a (no copy)."""
    return torch.from_numpy(a)


def scalar(value, dtype):
    """A 0-d tensor of the float type dtype (the course's losses are tensors:
    loss.item() works on them)."""
    return torch.from_numpy(np.array(value, dtype=dtype))  # faster than torch.tensor


def float_dtype(dtype, name="dtype"):
    """The NumPy dtype of a model's torch.float32 / torch.float64 (NumPy's
    names are accepted too); TypeError otherwise."""
    if isinstance(dtype, torch.dtype):
        if dtype in FLOAT_DTYPES:
            return FLOAT_DTYPES[dtype]
    else:
        try:
            converted = np.dtype(dtype)
        except TypeError:
            converted = None
        if converted in (np.float32, np.float64):
            return converted
    raise TypeError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")


def torch_dtype(dtype):
    """The torch dtype of a NumPy float32/float64 dtype."""
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def check_device(device, name="device"):
    """device must be the CPU ('cpu' or torch.device('cpu')): fastfc's kernels
    run there only. ValueError otherwise, e.g. for 'cuda'."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be 'cpu', got {device!r}") from None
    if kind != "cpu":
        raise ValueError(f"{name}={device!r}: fastfc runs on the CPU only; use device='cpu' "
                         "(its kernels are C/OpenMP, there is no GPU version)")


def real(value, name):
    """A hyperparameter given as a number or a 0-d tensor (the notebooks pass
    torch.sqrt(torch.tensor(...)) as weight_scale), as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.item())
    return check_real(name, value, finite=False)


def host(value, name):
    """A value assigned to a parameter (a CPU tensor of any layout and real
    dtype, or an array-like) as a NumPy array to copy from."""
    if isinstance(value, torch.Tensor):
        _check_placement(value, name)
        return value.numpy()
    return np.asarray(value)


def draw_seed():
    """A seed from torch's global generator, so that torch.manual_seed (and
    the course's reset_seed) fixes whatever fastfc draws with it."""
    return int(torch.randint(0, 2**62, ()).item())
