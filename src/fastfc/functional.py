"""The layer functions in the style of the course notes, on the C kernels.

Every forward returns (out, cache) and every backward takes (dout, cache).
Inputs may be any array-like of float32 or float64 (non-contiguous views are
copied once); all arrays of one call must share the float type. The same
functions, written in plain NumPy, are in fastfc.reference.
"""
from . import _activations, _affine, _conv, _gather, _losses, _norm, _pool

# Each wrapper module names its public functions once, in its own __all__;
# they are gathered here so that adding a kernel does not touch this file.
_WRAPPERS = (_affine, _activations, _losses, _conv, _pool, _norm, _gather)

__all__ = [name for module in _WRAPPERS for name in module.__all__]
globals().update((name, getattr(module, name)) for module in _WRAPPERS for name in module.__all__)
