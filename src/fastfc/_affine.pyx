# cython: language_level=3, boundscheck=False, wraparound=False
"""Affine (fully-connected) layers, plain and fused with ReLU: the wrappers of
csrc/affine.c. Each forward returns (out, cache), each backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from fastfc._kernels cimport (affine_forward_f32, affine_forward_f64, fastfc_gemm_f32, fastfc_gemm_f64,
                              affine_backward_f32, affine_backward_f64)

include "_common.pxi"


# Calls run in pieces of whole rows (see next_piece) of about this many
# multiply-adds in all, whatever the thread count (the bias gradient sums
# its pieces in order, so their size must not depend on it): some 0.1 s on
# one core here, less on more.
cdef double MACS_PER_PIECE = 2.0 ** 32


cdef tuple _forward(object x, object w, object b, bint relu, object out):
    """Validate, then run the kernel; returns (x, w, b, out) as the kernel saw them."""
    # Shapes first, on x as given: a broadcast or strided x is copied only
    # once it is known to fit.
    cdef object xv = check_float_array(x, "x")
    if xv.ndim < 2:
        raise ValueError(f"x must have shape (N, d_1, ..., d_k) with a batch axis first, "
                         f"got shape {xv.shape}")
    check_nonempty(xv, "x")
    cdef cnp.ndarray wa = as_float_array(w, "w")
    cdef cnp.ndarray ba = as_float_array(b, "b")
    if wa.ndim != 2:
        raise ValueError(f"w must have shape (D, M), got shape {(<object>wa).shape}")
    cdef int64_t n_batch = xv.shape[0]
    cdef int64_t d_in = xv.size // n_batch
    cdef int64_t d_out = wa.shape[1]
    if wa.shape[0] != d_in:
        raise ValueError(f"w has shape {(<object>wa).shape} but x has D = {d_in} features per row "
                         f"(x shape {xv.shape}); w must be (D, M)")
    if ba.ndim != 1 or ba.shape[0] != d_out:
        raise ValueError(f"b must have shape ({d_out},) to match w {(<object>wa).shape}, got {(<object>ba).shape}")
    check_nonempty(wa, "w")
    check_blas_size(n_batch, "N (batch size)")
    check_blas_size(d_in, "D (input features)")
    check_blas_size(d_out, "M (output features)")
    cdef cnp.ndarray xa = as_float_array(xv, "x")
    check_same_dtype(xa, "x", wa, "w")
    check_same_dtype(xa, "x", ba, "b")

    out = output_array(out, "out", (n_batch, d_out), xa.dtype, (xa, wa, ba))
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef char *px = <char *>cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef void *pb = cnp.PyArray_DATA(ba)
    cdef char *po = <char *>cnp.PyArray_DATA(out)
    cdef int64_t size = xa.itemsize, lo = 0, hi
    cdef int64_t piece = piece_items(<double>d_in * d_out, MACS_PER_PIECE, 1)
    cdef bint single = is_float32(xa)
    while lo < n_batch:
        hi = next_piece(lo, n_batch, piece)
        with nogil:
            if single:
                affine_forward_f32(<float *>(px + lo * d_in * size), <float *>pw, <float *>pb,
                                   <float *>(po + lo * d_out * size), hi - lo, d_in, d_out, relu,
                                   &blas, nt)
            else:
                affine_forward_f64(<double *>(px + lo * d_in * size), <double *>pw, <double *>pb,
                                   <double *>(po + lo * d_out * size), hi - lo, d_in, d_out, relu,
                                   &blas, nt)
        lo = hi
    return xa, wa, ba, out


cdef tuple _backward(object dout, object x, object w, object relu_out, bint compute_dx,
                     object dx, object dw, object db):
    """dx (or None), dw, db for a forward that saw x, w (and relu_out if fused),
    written into dx, dw, db where those are given (see output_array).
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
    dx, dw, db = gradient_outputs(dx, dw, db, compute_dx, (<object>xa).shape, (d_in, d_out), d_out,
                                  xa.dtype, (da, xa, wa, relu_out))
    cdef object dh = np.empty((n_batch, d_out), dtype=xa.dtype) if relu_out is not None else None
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef char *pd = <char *>cnp.PyArray_DATA(da)
    cdef char *px = <char *>cnp.PyArray_DATA(xa)
    cdef void *pw = cnp.PyArray_DATA(wa)
    cdef char *pr = <char *>cnp.PyArray_DATA(relu_out) if relu_out is not None else NULL
    cdef char *ph = <char *>cnp.PyArray_DATA(dh) if dh is not None else NULL
    cdef char *pdx = <char *>cnp.PyArray_DATA(dx) if dx is not None else NULL
    cdef int64_t size = xa.itemsize, lo = 0, hi, row_in, row_out
    cdef int64_t piece = piece_items((3 if compute_dx else 2) * <double>d_in * d_out,
                                     MACS_PER_PIECE, 1)
    # The first piece writes dw and db; each later one writes its own sums
    # over its rows, which are added on.
    cdef object piece_dw = dw, piece_db = db
    cdef void *pdw = cnp.PyArray_DATA(dw)
    cdef void *pdb = cnp.PyArray_DATA(db)
    cdef bint single = is_float32(xa)
    while lo < n_batch:
        hi = next_piece(lo, n_batch, piece)
        if lo and piece_dw is dw:
            piece_dw, piece_db = np.empty_like(dw), np.empty_like(db)
            pdw, pdb = cnp.PyArray_DATA(piece_dw), cnp.PyArray_DATA(piece_db)
        row_in, row_out = lo * d_in * size, lo * d_out * size
        with nogil:
            if single:
                affine_backward_f32(<float *>(pd + row_out), <float *>(px + row_in), <float *>pw,
                                    <float *>(pr + row_out) if pr else NULL,
                                    <float *>(ph + row_out) if ph else NULL,
                                    <float *>(pdx + row_in) if pdx else NULL,
                                    <float *>pdw, <float *>pdb, hi - lo, d_in, d_out, &blas, nt)
            else:
                affine_backward_f64(<double *>(pd + row_out), <double *>(px + row_in), <double *>pw,
                                    <double *>(pr + row_out) if pr else NULL,
                                    <double *>(ph + row_out) if ph else NULL,
                                    <double *>(pdx + row_in) if pdx else NULL,
                                    <double *>pdw, <double *>pdb, hi - lo, d_in, d_out, &blas, nt)
        if lo:
            dw += piece_dw
            db += piece_db
        lo = hi
    return dx, dw, db


def affine_forward(x, w, b, *, out=None):
    """Forward pass of an affine (fully-connected) layer: out = x.reshape(N, D) @ w + b.

    Inputs:
    - x: (N, d_1, ..., d_k) input, D = d_1 * ... * d_k
    - w: (D, M) weights
    - b: (M,) biases
    All float32 or all float64.
    - out: None, or an (N, M) array of x's dtype (C-contiguous, writeable, apart
      from the inputs) to write the result into instead of a new one

    Returns a tuple of:
    - out: (N, M)
    - cache: (x, w, b) for affine_backward
    """
    xa, wa, ba, out = _forward(x, w, b, False, out)
    return out, (xa, wa, ba)


def affine_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Backward pass of an affine layer.

    Inputs:
    - dout: (N, M) upstream gradient
    - cache: (x, w, b) from affine_forward
    - compute_dx: False skips dx (a network's first layer never needs it)
    - dx, dw, db: None, or arrays of the shapes below to write the results
      into (C-contiguous, writeable, the dtype of x, apart from the inputs)

    Returns a tuple of:
    - dx: shaped like x (None when compute_dx is False)
    - dw: (D, M)
    - db: (M,)
    """
    xa, wa, _ = unpack_cache(cache, 3, "(x, w, b)", "affine_forward")
    return _backward(dout, xa, wa, None, compute_dx, dx, dw, db)


def affine_relu_forward(x, w, b, *, out=None):
    """Affine layer followed by ReLU, fused: out = max(0, x.reshape(N, D) @ w + b).

    Inputs: x (N, d_1, ..., d_k), w (D, M), b (M,); out as in affine_forward.

    Returns a tuple of:
    - out: (N, M)
    - cache: (x, w, b, out) for affine_relu_backward
    """
    xa, wa, ba, out = _forward(x, w, b, True, out)
    return out, (xa, wa, ba, out)


def affine_relu_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Backward pass of the fused affine-ReLU layer (ReLU gradient 0 at exactly 0).

    Inputs:
    - dout: (N, M) upstream gradient
    - cache: (x, w, b, out) from affine_relu_forward
    - compute_dx: False skips dx
    - dx, dw, db: as in affine_backward

    Returns a tuple of (dx shaped like x or None, dw (D, M), db (M,)).
    """
    xa, wa, _, out = unpack_cache(cache, 4, "(x, w, b, out)", "affine_relu_forward")
    return _backward(dout, xa, wa, out, compute_dx, dx, dw, db)


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
