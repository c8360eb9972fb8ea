# cython: language_level=3, boundscheck=False, wraparound=False
"""2-d convolution (NCHW) by im2col and BLAS GEMM: the wrappers of
csrc/conv.c. conv_forward returns (out, cache), conv_backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from fastfc._kernels cimport (fastfc_conv_geom, conv_forward_f32, conv_forward_f64,
                              conv_backward_f32, conv_backward_f64)

include "_common.pxi"
include "_image_args.pxi"


cdef fastfc_conv_geom _geometry(cnp.ndarray xa, cnp.ndarray wa, int64_t stride,
                                int64_t pad) except *:
    """The kernel's geometry for x (N, C, H, W) and w (F, C, HH, WW), checked."""
    cdef fastfc_conv_geom g
    g.n_batch, g.channels, g.height, g.width = (<object>xa).shape
    g.n_filters, w_channels, g.kernel_h, g.kernel_w = (<object>wa).shape
    g.stride = stride
    g.pad = pad
    if w_channels != g.channels:
        raise ValueError(f"w has {w_channels} input channels but x has {g.channels} "
                         f"(w {(<object>wa).shape} must be (F, C, HH, WW) with C = x.shape[1])")
    if g.kernel_h > g.height + 2 * pad or g.kernel_w > g.width + 2 * pad:
        raise ValueError(f"w's {g.kernel_h}x{g.kernel_w} kernel is larger than the padded input "
                         f"{g.height + 2 * pad}x{g.width + 2 * pad} (x {(<object>xa).shape}, "
                         f"pad {pad})")
    g.out_h = out_size(g.height, g.kernel_h, stride, pad)
    g.out_w = out_size(g.width, g.kernel_w, stride, pad)
    check_blas_size(g.n_filters, "F (filters in w)")
    check_blas_size(g.channels * g.kernel_h * g.kernel_w, "C*HH*WW (w's taps per filter)")
    # each factor first, so that their product cannot overflow int64
    check_blas_size(g.out_h, "H' (output rows)")
    check_blas_size(g.out_w, "W' (output columns)")
    check_blas_size(g.out_h * g.out_w, "H'*W' (output pixels per image)")
    return g


def conv_forward(x, w, b, stride=1, pad=0):
    """Forward pass of a convolutional layer (cross-correlation, as in the course notes).

    out[n, f, i, j] = b[f] + sum over c, kh, kw of
        w[f, c, kh, kw] * x_padded[n, c, i*stride + kh, j*stride + kw]
    with x zero-padded by pad on every side of H and W.

    Inputs:
    - x: (N, C, H, W) input
    - w: (F, C, HH, WW) filters
    - b: (F,) biases
    - stride: step between neighbouring windows (int >= 1)
    - pad: zeros added on each side of H and W (int >= 0)
    All arrays float32 or all float64.

    Returns a tuple of:
    - out: (N, F, H', W'), H' = (H + 2*pad - HH) // stride + 1 and
      W' = (W + 2*pad - WW) // stride + 1; when the stride does not tile the
      padded input, the last rows/columns no window reaches are ignored (as in
      PyTorch).
    - cache: (x, w, b, conv_param) for conv_backward, conv_param a dict with
      "stride" and "pad"
    """
    cdef cnp.ndarray xa = as_image_batch(x, "x")
    cdef cnp.ndarray wa = as_float_array(w, "w")
    cdef cnp.ndarray ba = as_float_array(b, "b")
    check_same_dtype(xa, "x", wa, "w")
    check_same_dtype(xa, "x", ba, "b")
    if wa.ndim != 4:
        raise ValueError(f"w must have shape (F, C, HH, WW), got shape {(<object>wa).shape}")
    if wa.size == 0:
        raise ValueError(f"w must have at least one filter and a kernel of size >= 1, "
                         f"got shape {(<object>wa).shape}")
    if ba.ndim != 1 or ba.shape[0] != wa.shape[0]:
        raise ValueError(f"b must have shape ({wa.shape[0]},), one bias per filter of w, "
                         f"got {(<object>ba).shape}")
    cdef int64_t s = as_int_param(stride, "stride", 1)
    cdef int64_t p = as_int_param(pad, "pad", 0)
    cdef fastfc_conv_geom g = _geometry(xa, wa, s, p)

    cdef cnp.ndarray out = np.empty((g.n_batch, g.n_filters, g.out_h, g.out_w), dtype=xa.dtype)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pb = cnp.PyArray_DATA(ba)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef int status
    if is_float32(xa):
        with nogil:
            status = conv_forward_f32(&g, <float *>px, <float *>pw, <float *>pb, <float *>po,
                                      &blas, nt)
    else:
        with nogil:
            status = conv_forward_f64(&g, <double *>px, <double *>pw, <double *>pb,
                                      <double *>po, &blas, nt)
    if status != 0:
        raise MemoryError("conv_forward could not allocate its column scratch")
    return out, (xa, wa, ba, {"stride": s, "pad": p})


def conv_backward(dout, cache, compute_dx=True):
    """Backward pass of a convolutional layer.

    Inputs:
    - dout: (N, F, H', W') upstream gradient
    - cache: (x, w, b, conv_param) from conv_forward
    - compute_dx: False skips dx (a network's first layer never needs it)

    Returns a tuple of:
    - dx: (N, C, H, W), or None when compute_dx is False
    - dw: (F, C, HH, WW)
    - db: (F,)
    """
    x, w, _, conv_param = cache
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef cnp.ndarray wa = as_float_array(w, "w (from the cache)")
    check_same_dtype(xa, "x (from the cache)", wa, "w (from the cache)")
    if wa.ndim != 4 or wa.size == 0:
        raise ValueError(f"w (from the cache) must have shape (F, C, HH, WW), "
                         f"got {(<object>wa).shape}")
    cdef fastfc_conv_geom g = _geometry(xa, wa, as_int_param(conv_param["stride"], "stride", 1),
                                        as_int_param(conv_param["pad"], "pad", 0))
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    expected = (g.n_batch, g.n_filters, g.out_h, g.out_w)
    if (<object>da).shape != expected:
        raise ValueError(f"dout must have the forward output's shape {expected}, "
                         f"got {(<object>da).shape}")
    cdef object dx = np.empty_like(xa) if compute_dx else None
    cdef cnp.ndarray dw = np.empty_like(wa)
    cdef cnp.ndarray db = np.empty(g.n_filters, dtype=xa.dtype)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef void *pd = cnp.PyArray_DATA(da)
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pdx = cnp.PyArray_DATA(dx) if dx is not None else NULL
    cdef void *pdw = cnp.PyArray_DATA(dw)
    cdef void *pdb = cnp.PyArray_DATA(db)
    cdef int status
    if is_float32(xa):
        with nogil:
            status = conv_backward_f32(&g, <float *>pd, <float *>px, <float *>pw, <float *>pdx,
                                       <float *>pdw, <float *>pdb, &blas, nt)
    else:
        with nogil:
            status = conv_backward_f64(&g, <double *>pd, <double *>px, <double *>pw,
                                       <double *>pdx, <double *>pdw, <double *>pdb, &blas, nt)
    if status != 0:
        raise MemoryError("conv_backward could not allocate its column scratch")
    return dx, dw, db
