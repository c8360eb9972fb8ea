# cython: language_level=3, boundscheck=False, wraparound=False
"""Max and average pooling over (N, C, H, W) inputs: the wrappers of
csrc/pool.c. Each forward returns (out, cache), each backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
from fastfc._common cimport (Pieces, pieces, next_piece, piece_items, as_float_array,
                             as_image_batch, as_int_param, out_size, check_same_dtype,
                             is_float32, data_of, num_threads, output_array, plain_array,
                             unpack_cache, cache_entry)
from fastfc._kernels cimport (
    fastfc_pool_geom, fastfc_pool_op, FASTFC_MAX_POOL_FORWARD, FASTFC_MAX_POOL_BACKWARD,
    FASTFC_AVG_POOL_FORWARD, FASTFC_AVG_POOL_BACKWARD)

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from pool.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int64_t fastfc_pool_f32(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src,
                            void *dst, int32_t *argmax, int n_threads)
    int64_t fastfc_pool_f64(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src,
                            void *dst, int32_t *argmax, int n_threads)
    # END GENERATED pool.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward"]

cnp.import_array()

# The argmax indices are int32 offsets within one (H, W) plane.
cdef int64_t INT32_MAX = 2147483647


cdef fastfc_pool_geom _geometry(cnp.ndarray xa, object pool_param) except *:
    """The kernel's geometry for x (N, C, H, W) and the window, checked."""
    cdef fastfc_pool_geom g
    n, c, g.height, g.width = (<object>xa).shape
    g.planes = n * c
    g.pool_h = as_int_param(cache_entry(pool_param, "pool_param", "pool_height"), "pool_height", 1)
    g.pool_w = as_int_param(cache_entry(pool_param, "pool_param", "pool_width"), "pool_width", 1)
    g.stride = as_int_param(cache_entry(pool_param, "pool_param", "stride"), "stride", 1)
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


# Calls run in pieces of whole planes (see next_piece), about this many
# window steps per thread each: some 20 ms on one core.
cdef double STEPS_PER_PIECE = 2.0 ** 22

ctypedef int64_t (*pool_fn)(fastfc_pool_op, const fastfc_pool_geom *, const void *, void *,
                           int32_t *, int) noexcept nogil


cdef int _run(fastfc_pool_op op, const fastfc_pool_geom *g, cnp.ndarray src, cnp.ndarray dst,
              object argmax) except -1:
    """The kernel op over all planes, in pieces: src is x (forward) or dout
    (backward), dst is out or dx; argmax is max pooling's (N, C, H', W').
    Max pooling's backward checks every argmax entry against its window as
    it reads it (so a cache another thread writes into meanwhile cannot make
    it write out of bounds) and raises ValueError after a piece that had any
    outside (dx then holds no meaningful values)."""
    cdef pool_fn kernel = fastfc_pool_f32 if is_float32(src) else fastfc_pool_f64
    cdef bint forward = op == FASTFC_MAX_POOL_FORWARD or op == FASTFC_AVG_POOL_FORWARD
    cdef int64_t size = src.itemsize
    cdef int64_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w
    cdef int64_t src_plane = size * (plane_in if forward else plane_out)
    cdef int64_t dst_plane = size * (plane_out if forward else plane_in)
    cdef const char *ps = <char *>data_of(src)
    cdef char *pd = <char *>data_of(dst)
    cdef int32_t *pa = <int32_t *>data_of(argmax) if argmax is not None else NULL
    cdef int nt = num_threads()
    cdef double steps = plane_in + <double>plane_out * g.pool_h * g.pool_w  # per plane
    cdef Pieces p = pieces(g.planes, piece_items(steps, STEPS_PER_PIECE, nt))
    cdef fastfc_pool_geom pg = g[0]  # one piece's planes
    cdef int64_t stray
    while next_piece(&p):
        pg.planes = p.hi - p.lo
        with nogil:
            stray = kernel(op, &pg, ps + p.lo * src_plane, pd + p.lo * dst_plane,
                           pa + p.lo * plane_out if pa else NULL, nt)
        if stray:
            raise ValueError(f"cache does not come from max_pool_forward: argmax holds {stray} "
                             f"indices outside their pooling windows (in planes {p.lo} to "
                             f"{p.hi - 1} of the N*C)")
    return 0


cdef cnp.ndarray _check_dout(object dout, cnp.ndarray xa, fastfc_pool_geom *g):
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    expected = (xa.shape[0], xa.shape[1], g.out_h, g.out_w)
    if (<object>da).shape != expected:
        raise ValueError(f"dout must have the forward output's shape {expected}, "
                         f"got {(<object>da).shape}")
    return da


def max_pool_forward(x, pool_height=2, pool_width=2, stride=2, *, out=None):
    """Forward pass of max pooling: each output is the maximum of its window.

    Inputs:
    - x: (N, C, H, W), float32 or float64
    - pool_height, pool_width: window size (ints >= 1, at most H and W)
    - stride: step between windows (int >= 1); windows may overlap
    - out: None, or an (N, C, H', W') array of x's dtype (C-contiguous,
      writeable, apart from x) to write the result into

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
    out = output_array(out, "out", shape, xa.dtype, (xa,))
    cdef cnp.ndarray argmax = np.empty(shape, dtype=np.int32)
    _run(FASTFC_MAX_POOL_FORWARD, &g, xa, out, argmax)
    return out, (xa, argmax, pool_param)


def max_pool_backward(dout, cache, *, dx=None):
    """Backward pass of max pooling: each upstream gradient goes to its window's
    maximum; where windows overlap, the contributions add up.

    Inputs:
    - dout: (N, C, H', W') upstream gradient
    - cache: (x, argmax, pool_param) from max_pool_forward
    - dx: None, or an (N, C, H, W) array to write the result into (as out
      of max_pool_forward)

    Returns:
    - dx: (N, C, H, W)

    A cache whose argmax names an entry outside its window (one not made by
    max_pool_forward, or changed since) raises ValueError; dx then holds no
    useful values.
    """
    x, argmax, pool_param = unpack_cache(cache, 3, "(x, argmax, pool_param)", "max_pool_forward")
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    cdef cnp.ndarray da = _check_dout(dout, xa, &g)
    if not isinstance(argmax, np.ndarray):
        raise TypeError(f"argmax (from the cache) must be an int32 array, "
                        f"got {type(argmax).__name__}")
    argmax = plain_array(argmax, "argmax (from the cache)")
    if argmax.dtype != np.int32 or argmax.shape != (<object>da).shape \
            or not argmax.flags.c_contiguous or not argmax.flags.aligned:
        raise ValueError(f"cache does not come from max_pool_forward: argmax (from the cache) "
                         f"must be a C-contiguous int32 array of shape {(<object>da).shape}, "
                         f"got {argmax.dtype} {argmax.shape}")
    # The kernel checks each index against its window as it reads it (see _run).
    dx = output_array(dx, "dx", (<object>xa).shape, xa.dtype, (da, xa, argmax))
    _run(FASTFC_MAX_POOL_BACKWARD, &g, da, dx, argmax)
    return dx


def avg_pool_forward(x, pool_height=2, pool_width=2, stride=2, *, out=None):
    """Forward pass of average pooling: each output is the mean of its window.

    Inputs: as max_pool_forward (out too).

    Returns a tuple of:
    - out: (N, C, H', W'), sizes as in max_pool_forward
    - cache: (x, pool_param) for avg_pool_backward
    """
    cdef cnp.ndarray xa = as_image_batch(x, "x")
    cdef dict pool_param = _pool_param(pool_height, pool_width, stride)
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    out = output_array(out, "out", (xa.shape[0], xa.shape[1], g.out_h, g.out_w), xa.dtype, (xa,))
    _run(FASTFC_AVG_POOL_FORWARD, &g, xa, out, None)
    return out, (xa, pool_param)


def avg_pool_backward(dout, cache, *, dx=None):
    """Backward pass of average pooling: each window's entries receive
    dout / (pool_height * pool_width), summed where windows overlap.

    Inputs:
    - dout: (N, C, H', W') upstream gradient
    - cache: (x, pool_param) from avg_pool_forward
    - dx: as in max_pool_backward

    Returns:
    - dx: (N, C, H, W)
    """
    x, pool_param = unpack_cache(cache, 2, "(x, pool_param)", "avg_pool_forward")
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef fastfc_pool_geom g = _geometry(xa, pool_param)
    cdef cnp.ndarray da = _check_dout(dout, xa, &g)
    dx = output_array(dx, "dx", (<object>xa).shape, xa.dtype, (da, xa))
    _run(FASTFC_AVG_POOL_BACKWARD, &g, da, dx, None)
    return dx
