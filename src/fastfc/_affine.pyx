# cython: language_level=3, boundscheck=False, wraparound=False
"""Affine (fully-connected) layers, plain and fused with ReLU: the wrappers of
csrc/affine.c. Each forward returns (out, cache), each backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from fastfc._kernels cimport (affine_forward_f32, affine_forward_f64, fastfc_gemm_f32, fastfc_gemm_f64,
                              affine_backward_f32, affine_backward_f64)

include "_common.pxi"


cdef tuple _forward(object x, object w, object b, bint relu):
    """Validate, then run the kernel; returns (x, w, b, out) as the kernel saw them."""
    cdef cnp.ndarray xa = as_float_array(x, "x")
    cdef cnp.ndarray wa = as_float_array(w, "w")
    cdef cnp.ndarray ba = as_float_array(b, "b")
    check_same_dtype(xa, "x", wa, "w")
    check_same_dtype(xa, "x", ba, "b")
    if xa.ndim < 2:
        raise ValueError(f"x must have shape (N, d_1, ..., d_k) with a batch axis first, "
                         f"got shape {(<object>xa).shape}")
    check_nonempty(xa, "x")
    if wa.ndim != 2:
        raise ValueError(f"w must have shape (D, M), got shape {(<object>wa).shape}")
    cdef int64_t n_batch = xa.shape[0]
    cdef int64_t d_in = xa.size // n_batch
    cdef int64_t d_out = wa.shape[1]
    if wa.shape[0] != d_in:
        raise ValueError(f"w has shape {(<object>wa).shape} but x has D = {d_in} features per row "
                         f"(x shape {(<object>xa).shape}); w must be (D, M)")
    if ba.ndim != 1 or ba.shape[0] != d_out:
        raise ValueError(f"b must have shape ({d_out},) to match w {(<object>wa).shape}, got {(<object>ba).shape}")
    check_nonempty(wa, "w")
    check_blas_size(n_batch, "N (batch size)")
    check_blas_size(d_in, "D (input features)")
    check_blas_size(d_out, "M (output features)")

    cdef cnp.ndarray out = np.empty((n_batch, d_out), dtype=xa.dtype)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pb = cnp.PyArray_DATA(ba)
    cdef void *po = cnp.PyArray_DATA(out)
    if is_float32(xa):
        with nogil:
            affine_forward_f32(<float *>px, <float *>pw, <float *>pb, <float *>po,
                               n_batch, d_in, d_out, relu, &blas, nt)
    else:
        with nogil:
            affine_forward_f64(<double *>px, <double *>pw, <double *>pb, <double *>po,
                               n_batch, d_in, d_out, relu, &blas, nt)
    return xa, wa, ba, out


cdef tuple _backward(object dout, object x, object w, object relu_out, bint compute_dx):
    """dx (or None), dw, db for a forward that saw x, w (and relu_out if fused).
    The cached arrays are checked too (O(1) unless one was swapped for a
    non-contiguous copy): the kernel would read and write past them otherwise."""
    cdef cnp.ndarray xa = as_float_array(x, "x (from the cache)")
    cdef cnp.ndarray wa = as_float_array(w, "w (from the cache)")
    check_same_dtype(xa, "x (from the cache)", wa, "w (from the cache)")
    if (xa.ndim < 2 or wa.ndim != 2 or xa.size == 0 or wa.size == 0
            or xa.size != xa.shape[0] * wa.shape[0]):
        raise ValueError(f"the cache holds x {(<object>xa).shape} and w {(<object>wa).shape}, "
                         f"which affine_forward would not have accepted together")
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    cdef int64_t n_batch = xa.shape[0]
    cdef int64_t d_in = wa.shape[0]
    cdef int64_t d_out = wa.shape[1]
    if da.ndim != 2 or da.shape[0] != n_batch or da.shape[1] != d_out:
        raise ValueError(f"dout must have shape ({n_batch}, {d_out}) like the forward output, "
                         f"got {(<object>da).shape}")
    if relu_out is not None:
        relu_out = as_float_array(relu_out, "out (from the cache)")
        check_same_dtype(relu_out, "out (from the cache)", xa, "x (from the cache)")
        if relu_out.shape != (<object>da).shape:
            raise ValueError(f"out (from the cache) must have shape {(<object>da).shape}, "
                             f"got {relu_out.shape}")
    cdef cnp.ndarray dw = np.empty((d_in, d_out), dtype=xa.dtype)
    cdef cnp.ndarray db = np.empty(d_out, dtype=xa.dtype)
    cdef object dx = np.empty((<object>xa).shape, dtype=xa.dtype) if compute_dx else None
    cdef object dh = np.empty((n_batch, d_out), dtype=xa.dtype) if relu_out is not None else None
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef void *pd = cnp.PyArray_DATA(da)
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pr = cnp.PyArray_DATA(relu_out) if relu_out is not None else NULL
    cdef void *ph = cnp.PyArray_DATA(dh) if dh is not None else NULL
    cdef void *pdx = cnp.PyArray_DATA(dx) if dx is not None else NULL
    cdef void *pdw = cnp.PyArray_DATA(dw)
    cdef void *pdb = cnp.PyArray_DATA(db)
    if is_float32(xa):
        with nogil:
            affine_backward_f32(<float *>pd, <float *>px, <float *>pw, <float *>pr, <float *>ph,
                                <float *>pdx, <float *>pdw, <float *>pdb,
                                n_batch, d_in, d_out, &blas, nt)
    else:
        with nogil:
            affine_backward_f64(<double *>pd, <double *>px, <double *>pw, <double *>pr,
                                <double *>ph, <double *>pdx, <double *>pdw, <double *>pdb,
                                n_batch, d_in, d_out, &blas, nt)
    return dx, dw, db


def affine_forward(x, w, b):
    """Forward pass of an affine (fully-connected) layer: out = x.reshape(N, D) @ w + b.

    Inputs:
    - x: (N, d_1, ..., d_k) input, D = d_1 * ... * d_k
    - w: (D, M) weights
    - b: (M,) biases
    All float32 or all float64.

    Returns a tuple of:
    - out: (N, M)
    - cache: (x, w, b) for affine_backward
    """
    xa, wa, ba, out = _forward(x, w, b, False)
    return out, (xa, wa, ba)


def affine_backward(dout, cache, compute_dx=True):
    """Backward pass of an affine layer.

    Inputs:
    - dout: (N, M) upstream gradient
    - cache: (x, w, b) from affine_forward
    - compute_dx: False skips dx (a network's first layer never needs it)

    Returns a tuple of:
    - dx: shaped like x (None when compute_dx is False)
    - dw: (D, M)
    - db: (M,)
    """
    xa, wa, _ = cache
    return _backward(dout, xa, wa, None, compute_dx)


def affine_relu_forward(x, w, b):
    """Affine layer followed by ReLU, fused: out = max(0, x.reshape(N, D) @ w + b).

    Inputs: x (N, d_1, ..., d_k), w (D, M), b (M,).

    Returns a tuple of:
    - out: (N, M)
    - cache: (x, w, b, out) for affine_relu_backward
    """
    xa, wa, ba, out = _forward(x, w, b, True)
    return out, (xa, wa, ba, out)


def affine_relu_backward(dout, cache, compute_dx=True):
    """Backward pass of the fused affine-ReLU layer (ReLU gradient 0 at exactly 0).

    Inputs:
    - dout: (N, M) upstream gradient
    - cache: (x, w, b, out) from affine_relu_forward
    - compute_dx: False skips dx

    Returns a tuple of (dx shaped like x or None, dw (D, M), db (M,)).
    """
    xa, wa, _, out = cache
    return _backward(dout, xa, wa, out, compute_dx)


def affine_gemms_only(x, w, dout):
    """The three GEMMs of an affine layer's forward and backward pass and
    nothing else: out = x @ w, dw = x^T dout, dx = dout w^T, through the same
    BLAS and the same thread split as the kernels. The benchmarks time it as
    the ceiling of affine_forward + affine_backward (not part of the API).

    Inputs: x (N, D), w (D, M), dout (N, M), all float32 or all float64, C-contiguous.
    Returns (out, dx, dw).
    """
    cdef cnp.ndarray xa = as_float_array(x, "x")
    cdef cnp.ndarray wa = as_float_array(w, "w")
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(xa, "x", wa, "w")
    check_same_dtype(xa, "x", da, "dout")
    cdef int64_t n = xa.shape[0], d = wa.shape[0], m = wa.shape[1]
    if xa.ndim != 2 or xa.shape[1] != d or da.ndim != 2 or da.shape[0] != n or da.shape[1] != m:
        raise ValueError("x, w and dout must have shapes (N, D), (D, M) and (N, M)")
    out = np.empty((n, m), dtype=xa.dtype)
    dx = np.empty((n, d), dtype=xa.dtype)
    dw = np.empty((d, m), dtype=xa.dtype)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pd = cnp.PyArray_DATA(da)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    cdef void *pdw = cnp.PyArray_DATA(dw)
    if is_float32(xa):
        with nogil:
            fastfc_gemm_f32(&blas, nt, b'N', b'N', n, m, d, 1, <float *>px, d, <float *>pw, m, 0, <float *>po, m)
            fastfc_gemm_f32(&blas, nt, b'T', b'N', d, m, n, 1, <float *>px, d, <float *>pd, m, 0, <float *>pdw, m)
            fastfc_gemm_f32(&blas, nt, b'N', b'T', n, d, m, 1, <float *>pd, m, <float *>pw, m, 0, <float *>pdx, d)
    else:
        with nogil:
            fastfc_gemm_f64(&blas, nt, b'N', b'N', n, m, d, 1, <double *>px, d, <double *>pw, m, 0, <double *>po, m)
            fastfc_gemm_f64(&blas, nt, b'T', b'N', d, m, n, 1, <double *>px, d, <double *>pd, m, 0, <double *>pdw, m)
            fastfc_gemm_f64(&blas, nt, b'N', b'T', n, d, m, 1, <double *>pd, m, <double *>pw, m, 0, <double *>pdx, d)
    return out, dx, dw
