# cython: language_level=3, boundscheck=False, wraparound=False
"""The shared pieces of the Cython wrappers (declared in _common.pxd): compiled
once, so the setup below runs once, at the import of the first wrapper module."""
import importlib.machinery
import importlib.util
import numbers
import os
import sys

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from fastfc._kernels cimport fastfc_sgemm_fn, fastfc_dgemm_fn

import numpy as np
from fastfc import _config

cnp.import_array()


cdef object _scipy_cython_blas():
    """scipy.linalg.cython_blas, SciPy's BLAS as C functions, without the
    scipy.linalg package around it when that is not imported yet: importing
    the package imports all of scipy.linalg (and NumPy's lazily loaded
    submodules with it), most of what `import fastfc` would cost, for
    nothing fastfc uses. The module's init puts it in sys.modules; it is
    taken out again, so that a later `import scipy.linalg.cython_blas`
    imports the package as usual, and gets this same module (a Cython module
    is created once per process)."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return sys.modules[name]
    import scipy

    spec = importlib.machinery.PathFinder.find_spec(
        name, [os.path.join(os.path.dirname(scipy.__file__), "linalg")])
    if spec is None:  # not where SciPy keeps it: the usual import
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    return module


cdef void *_exported_function(object module, str name) except NULL:
    """The C function a Cython module exports as name (what cimport reads)."""
    capsule = module.__pyx_capi__[name]
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


_scipy_blas = _scipy_cython_blas()  # held: its library stays loaded
cdef fastfc_sgemm_fn sgemm = <fastfc_sgemm_fn>_exported_function(_scipy_blas, "sgemm")
cdef fastfc_dgemm_fn dgemm = <fastfc_dgemm_fn>_exported_function(_scipy_blas, "dgemm")

# Sizes handed to the BLAS are 32-bit ints.
cdef int64_t BLAS_INT_MAX = 2147483647
# Window sizes, strides and padding above this are rejected: it keeps
# size + 2*pad and every product of the geometry far from int64 overflow.
cdef int64_t INT_PARAM_MAX = 2147483647

ctypedef int (*blas_get_threads_fn)() noexcept nogil
ctypedef void (*blas_set_threads_fn)(int) noexcept nogil
cdef blas_get_threads_fn blas_get_threads = NULL
cdef blas_set_threads_fn blas_set_threads = NULL
_get_addr, _set_addr = _config.blas_thread_functions()
if _get_addr and _set_addr:
    blas_get_threads = <blas_get_threads_fn><size_t>_get_addr
    blas_set_threads = <blas_set_threads_fn><size_t>_set_addr


cdef fastfc_blas blas_table() noexcept:
    """SciPy's own BLAS (the library it already loaded), as C function pointers,
    pinned to one thread: fastfc calls it from inside its own OpenMP threads."""
    if blas_get_threads != NULL and blas_get_threads() != 1:
        blas_set_threads(1)
    cdef fastfc_blas table
    table.sgemm = sgemm
    table.dgemm = dgemm
    return table


cdef int num_threads():
    """The thread count of the next kernel; notes when it may start OpenMP
    threads, after which a forked child must run on one (see _config)."""
    cdef object state = _config._state
    cdef int n = state.num_threads
    if n > 1:
        state.threads_started = True
    return n


cdef object plain_array(object a, str name):
    """a as a base-class np.ndarray (no copy for arrays). A subclass is viewed
    as the base class: the wrappers read its shape in Python and the kernels
    its C-level dimensions and data pointer, and a subclass may override
    .shape (some array-like wrappers do), so only the base class's attributes
    are trusted. Masked arrays are refused: the kernels would ignore the mask."""
    if cnp.PyArray_CheckExact(a):
        return a
    if not cnp.PyArray_Check(a):
        return np.asarray(a)
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which fastfc does not support (its mask "
                        f"would be ignored); pass {name}.filled(value) or np.asarray({name})")
    return np.ndarray.view(a, np.ndarray)  # ndarray's own view: a subclass may override .view


cdef object check_float_array(object a, str name):
    """a as a float32/float64 array of at least one dimension, in any layout
    (no copy: its shape can be checked before as_float_array copies it)."""
    cdef cnp.ndarray arr = <cnp.ndarray>plain_array(a, name)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one dimension, got a 0-d array")
    return arr


cdef object as_float_array(object a, str name):
    """a as a C-contiguous float32/float64 array of at least one dimension."""
    cdef cnp.ndarray arr = check_float_array(a, name)
    # C dereferences float/double pointers, which must be aligned: a view at
    # an odd byte offset of a buffer is copied like a strided one.
    if (not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)
            or not arr.dtype.isnative):
        arr = np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C")  # a fresh copy
    return arr


cdef int check_same_dtype(object first, str first_name, object other, str other_name) except -1:
    if first.dtype != other.dtype:
        raise TypeError(f"{first_name} is {first.dtype} but {other_name} is {other.dtype}; "
                        f"pass both as the same float type")
    return 0


cdef object as_labels(object y, int64_t n_batch, int64_t n_classes, str name):
    """y as a private, contiguous int64 copy of the labels, one per row, each
    in [0, n_classes)."""
    y = plain_array(y, name)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-d (one label per row), got shape {y.shape}")
    if y.shape[0] != n_batch:
        raise ValueError(f"{name} has {y.shape[0]} labels but the scores have {n_batch} rows")
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and n_batch and y.max() > n_classes:
        # uint64 labels past 2**63 would wrap to negatives in int64
        raise ValueError(f"{name} holds label {y.max()}, outside [0, {n_classes})")
    # Always a private copy, checked: the kernels index rows with these labels
    # without the GIL, so another thread writing into y meanwhile must not
    # change what was checked (an index past the row read out of bounds).
    cdef cnp.ndarray labels = np.array(y, dtype=np.int64, order="C", copy=True)
    cdef const int64_t *lab = <const int64_t *>cnp.PyArray_DATA(labels)
    cdef int64_t i
    for i in range(n_batch):  # a typed loop: far cheaper than min() and max() on small batches
        if lab[i] < 0 or lab[i] >= n_classes:
            raise ValueError(f"{name} holds label {lab[i]}, outside [0, {n_classes})")
    return labels


cdef tuple unpack_cache(object cache, int length, str layout, str forward):
    """cache as the tuple of length items, named by layout (e.g. "(x, argmax,
    pool_param)"), that forward returns; TypeError (not a tuple) or ValueError
    (another length) naming cache, rather than an unpacking error."""
    if not isinstance(cache, (tuple, list)):
        raise TypeError(f"cache must be the tuple {layout} that {forward} returns, "
                        f"got {type(cache).__name__}")
    if len(cache) != length:
        raise ValueError(f"cache must be the tuple {layout} that {forward} returns, "
                         f"got {len(cache)} items")
    return tuple(cache)


cdef object cache_entry(object params, str name, str key):
    """params[key], params being the dict name (pool_param, conv_param) of a
    cache; TypeError/ValueError naming it when it is not a dict or lacks key."""
    if not isinstance(params, dict):
        raise TypeError(f"{name} (from the cache) must be a dict, got {type(params).__name__}")
    try:
        return params[key]
    except KeyError:
        raise ValueError(f"{name} (from the cache) has no {key!r} entry") from None


cdef int check_blas_size(int64_t size, str name) except -1:
    if size > BLAS_INT_MAX:
        raise ValueError(f"{name} = {size} exceeds the BLAS's 32-bit size limit")
    return 0


cdef int check_nonempty(object arr, str name) except -1:
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); need at least one element")
    return 0


cdef object output_array(object out, str name, tuple shape, object dtype, tuple inputs):
    """The array a kernel writes a result into: a new one when out is None,
    else out itself, which must be exactly what the kernel would allocate (a
    C-contiguous, aligned, writeable array of this shape and dtype) and must
    not overlap any of the inputs (kernels read their inputs while writing).
    A subclass instance is returned as a base-class view of it (plain_array)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or None, got {type(out).__name__}")
    out = plain_array(out, name)
    cdef cnp.ndarray arr = <cnp.ndarray>out
    if arr.dtype != dtype or (<object>arr).shape != shape:
        raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape {shape}, "
                         f"got {arr.dtype} {(<object>arr).shape}")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISWRITEABLE(arr)):
        raise ValueError(f"{name} must be C-contiguous, aligned and writeable")
    for other in inputs:
        if other is not None and np.may_share_memory(out, other):
            raise ValueError(f"{name} overlaps an input of the call; pass a separate array")
    return out


cdef tuple gradient_outputs(object dx, object dw, object db, bint compute_dx, tuple x_shape,
                            tuple w_shape, int64_t n_bias, object dtype, tuple inputs):
    """(dx or None, dw, db) a weighted layer's backward writes into (see
    output_array): dx shaped x_shape (only with compute_dx), dw w_shape, db (n_bias,)."""
    dw = output_array(dw, "dw", w_shape, dtype, inputs)
    db = output_array(db, "db", (n_bias,), dtype, inputs + (dw,))
    if compute_dx:
        dx = output_array(dx, "dx", x_shape, dtype, inputs + (dw, db))
    elif dx is not None:
        raise ValueError("dx is given but compute_dx is False")
    return dx, dw, db


cdef int64_t as_int_param(object value, str name, int64_t minimum) except? -1:
    """value as an int in [minimum, 2**31 - 1]; TypeError for non-integers (bool included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > INT_PARAM_MAX:
        raise ValueError(f"{name} must be <= {INT_PARAM_MAX}, got {value}")
    return <int64_t>value


cdef object as_image_batch(object x, str name):
    """x as a C-contiguous, non-empty float32/float64 array of shape (N, C, H, W)."""
    cdef cnp.ndarray xa = as_float_array(x, name)
    if xa.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {(<object>xa).shape}")
    check_nonempty(xa, name)
    return xa


cdef bint next_piece(Pieces *p) except -1:
    """Moves p on to its next piece; False after the last one. Before every
    piece but the first, runs pending signal handlers: a KeyboardInterrupt
    raises here, with p already on the piece that was to run next."""
    if p.hi >= p.n:
        return False
    p.lo, p.hi = p.hi, min(p.hi + p.size, p.n)
    if p.lo:
        PyErr_CheckSignals()
    return True
