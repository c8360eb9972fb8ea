# cython: language_level=3, boundscheck=False, wraparound=False
"""Max and average pooling over (N, C, H, W) inputs: the wrappers of
csrc/pool.c. Each forward returns (out, cache), each backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from libc.stdint cimport int32_t
from fastfc._kernels cimport (fastfc_pool_geom, max_pool_forward_f32, max_pool_forward_f64,
                              max_pool_backward_f32, max_pool_backward_f64,
                              avg_pool_forward_f32, avg_pool_forward_f64,
                              avg_pool_backward_f32, avg_pool_backward_f64)

include "_common.pxi"
include "_image_args.pxi"

# The argmax indices are int32 offsets within one (H, W) plane.
cdef int64_t INT32_MAX = 2147483647


cdef fastfc_pool_geom _geometry(cnp.ndarray xa, dict pool_param) except *:
    """The kernel's geometry for x (N, C, H, W) and the window, checked."""
    cdef fastfc_pool_geom g
    n, c, g.height, g.width = (<object>xa).shape
    g.planes = n * c
    g.pool_h = as_int_param(pool_param["pool_height"], "pool_height", 1)
    g.pool_w = as_int_param(pool_param["pool_width"], "pool_width", 1)
    g.stride = as_int_param(pool_param["stride"], "stride", 1)
    if g.pool_h > g.height:
        raise ValueError(f"pool_height = {g.pool_h} is larger than the input height {g.height} "
                         f"(x {(<object>xa).shape})")
    if g.pool_w > g.width:
        raise ValueError(f"pool_width = {g.pool_w} is larger than the input width {g.width} "
                         f"(x {(<object>xa).shape})")
    if g.height * g.width > INT32_MAX:
        raise ValueError(f"x's planes of {g.height}x{g.width} are too large for int32 indices")
    g.out_h = out_size(g.height, g.pool_h, g.stride, 0)
    g.out_w = out_size(g.width, g.pool_w, g.stride, 0)
    return g


cdef dict _pool_param(pool_height, pool_width, stride):
    return {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}


cdef cnp.ndarray _check_dout(object dout, cnp.ndarray xa, fastfc_pool_geom *g):
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    expected = (xa.shape[0], xa.shape[1], g.out_h, g.out_w)
    if (<object>da).shape != expected:
        raise ValueError(f"dout must have the forward output's shape {expected}, "
                         f"got {(<object>da).shape}")
    return da


def max_pool_forward(x, pool_height=2, pool_width=2, stride=2):
    """Forward pass of max pooling: each output is the maximum of its window.

    Inputs:
    - x: (N, C, H, W), float32 or float64
    - pool_height, pool_width: window size (ints >= 1, at most H and W)
    - stride: step between windows (int >= 1); windows may overlap

    Returns a tuple of:
    - out: (N, C, H', W'), H' = (H - pool_height) // stride + 1, likewise W';
      rows/columns a stride does not reach are ignored (as in PyTorch).
    - cache: (x, argmax, pool_param) for max_pool_backward; argmax (N, C, H', W')
      int32 holds each maximum's flat index row * W + col within its plane.
    Ties go to the first maximum in row-major window order; a window holding
    a NaN outputs NaN and routes its gradient to its first NaN.
    """
    cdef cnp.ndarray xa = as_image_batch(x, "x")
    cdef dict pool_param = _pool_param(pool_height, pool_width, stride)
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    shape = (xa.shape[0], xa.shape[1], g.out_h, g.out_w)
    cdef cnp.ndarray out = np.empty(shape, dtype=xa.dtype)
    cdef cnp.ndarray argmax = np.empty(shape, dtype=np.int32)
    cdef int nt = num_threads()
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef int32_t *pa = <int32_t *>cnp.PyArray_DATA(argmax)
    if is_float32(xa):
        with nogil:
            max_pool_forward_f32(&g, <float *>px, <float *>po, pa, nt)
    else:
        with nogil:
            max_pool_forward_f64(&g, <double *>px, <double *>po, pa, nt)
    return out, (xa, argmax, pool_param)


def max_pool_backward(dout, cache):
    """Backward pass of max pooling: each upstream gradient goes to its window's
    maximum; where windows overlap, the contributions add up.

    Inputs:
    - dout: (N, C, H', W') upstream gradient
    - cache: (x, argmax, pool_param) from max_pool_forward

    Returns:
    - dx: (N, C, H, W)
    """
    x, argmax, pool_param = cache
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    cdef cnp.ndarray da = _check_dout(dout, xa, &g)
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int32 \
            or argmax.shape != (<object>da).shape or not argmax.flags.c_contiguous:
        raise ValueError("cache does not come from max_pool_forward (bad argmax)")
    # The general kernel scatters to dx[argmax]: an index outside the plane
    # would write out of bounds (the 2x2/2 path only compares indices).
    if not (g.pool_h == 2 and g.pool_w == 2 and g.stride == 2) and argmax.size \
            and (argmax.min() < 0 or argmax.max() >= g.height * g.width):
        raise ValueError("cache does not come from max_pool_forward (argmax outside the planes)")
    cdef cnp.ndarray dx = np.empty_like(xa)
    cdef int nt = num_threads()
    cdef void *pd = cnp.PyArray_DATA(da)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    cdef const int32_t *pa = <int32_t *>cnp.PyArray_DATA(argmax)
    if is_float32(xa):
        with nogil:
            max_pool_backward_f32(&g, <float *>pd, pa, <float *>pdx, nt)
    else:
        with nogil:
            max_pool_backward_f64(&g, <double *>pd, pa, <double *>pdx, nt)
    return dx


def avg_pool_forward(x, pool_height=2, pool_width=2, stride=2):
    """Forward pass of average pooling: each output is the mean of its window.

    Inputs: as max_pool_forward.

    Returns a tuple of:
    - out: (N, C, H', W'), sizes as in max_pool_forward
    - cache: (x, pool_param) for avg_pool_backward
    """
    cdef cnp.ndarray xa = as_image_batch(x, "x")
    cdef dict pool_param = _pool_param(pool_height, pool_width, stride)
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    cdef cnp.ndarray out = np.empty((xa.shape[0], xa.shape[1], g.out_h, g.out_w), dtype=xa.dtype)
    cdef int nt = num_threads()
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *po = cnp.PyArray_DATA(out)
    if is_float32(xa):
        with nogil:
            avg_pool_forward_f32(&g, <float *>px, <float *>po, nt)
    else:
        with nogil:
            avg_pool_forward_f64(&g, <double *>px, <double *>po, nt)
    return out, (xa, pool_param)


def avg_pool_backward(dout, cache):
    """Backward pass of average pooling: each window's entries receive
    dout / (pool_height * pool_width), summed where windows overlap.

    Inputs:
    - dout: (N, C, H', W') upstream gradient
    - cache: (x, pool_param) from avg_pool_forward

    Returns:
    - dx: (N, C, H, W)
    """
    x, pool_param = cache
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    cdef cnp.ndarray da = _check_dout(dout, xa, &g)
    cdef cnp.ndarray dx = np.empty_like(xa)
    cdef int nt = num_threads()
    cdef void *pd = cnp.PyArray_DATA(da)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    if is_float32(xa):
        with nogil:
            avg_pool_backward_f32(&g, <float *>pd, <float *>pdx, nt)
    else:
        with nogil:
            avg_pool_backward_f64(&g, <double *>pd, <double *>pdx, nt)
    return dx
