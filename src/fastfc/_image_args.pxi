# Argument checks shared by the wrappers of the image layers (_conv.pyx,
# _pool.pyx). Include after _common.pxi.
import numbers


# Window sizes, strides and padding above this are rejected: it keeps
# size + 2*pad and every product of the geometry far from int64 overflow.
cdef int64_t INT_PARAM_MAX = 2147483647


cdef inline int64_t as_int_param(object value, str name, int64_t minimum) except? -1:
    """value as an int in [minimum, 2**31 - 1]; TypeError for non-integers (bool included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > INT_PARAM_MAX:
        raise ValueError(f"{name} must be <= {INT_PARAM_MAX}, got {value}")
    return <int64_t>value


cdef inline object as_image_batch(object x, str name):
    """x as a C-contiguous, non-empty float32/float64 array of shape (N, C, H, W)."""
    cdef cnp.ndarray xa = as_float_array(x, name)
    if xa.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {(<object>xa).shape}")
    check_nonempty(xa, name)
    return xa


cdef inline int64_t out_size(int64_t size, int64_t window, int64_t stride, int64_t pad) noexcept:
    """Output positions along one axis: floor((size + 2*pad - window) / stride) + 1;
    rows/columns a stride does not reach are ignored (as in PyTorch)."""
    return (size + 2 * pad - window) // stride + 1
