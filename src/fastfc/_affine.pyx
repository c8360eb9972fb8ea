# cython: language_level=3, boundscheck=False, wraparound=False
"""Affine (fully-connected) layers, plain and fused with ReLU: the wrappers of
csrc/affine.c. Each forward returns (out, cache), each backward takes
(dout, cache), as in the course notes."""
cimport numpy as cnp
from libc.stdint cimport int64_t
from fastfc._common cimport (real, Pieces, pieces, next_piece, piece_items, as_float_array,
                             check_float_array, check_same_dtype, check_nonempty,
                             check_blas_size, is_float32, data_of, blas_table, num_threads,
                             output_array, gradient_outputs, unpack_cache)
from fastfc._kernels cimport fastfc_blas

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from gemm.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int fastfc_packed_gemm_f32(int n_threads, char trans_a, char trans_b, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                               int64_t ldb, float beta, float *c, int64_t ldc, const float *bias,
                               int relu)
    int fastfc_packed_gemm_f64(int n_threads, char trans_a, char trans_b, int64_t m, int64_t n,
                               int64_t k, double alpha, const double *a, int64_t lda,
                               const double *b, int64_t ldb, double beta, double *c, int64_t ldc,
                               const double *bias, int relu)
    int fastfc_unpacked_gemm_f32(char trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                                 const float *a, int64_t lda, const float *b, int64_t ldb,
                                 float beta, float *c, int64_t ldc, const float *bias, int relu)
    int fastfc_unpacked_gemm_f64(char trans_a, int64_t m, int64_t n, int64_t k, double alpha,
                                 const double *a, int64_t lda, const double *b, int64_t ldb,
                                 double beta, double *c, int64_t ldc, const double *bias, int relu)
    void fastfc_gemm_f32(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b,
                         int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
    void fastfc_gemm_f64(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b,
                         int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                         int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                         int64_t ldc)
    # END GENERATED gemm.c

    # BEGIN GENERATED from affine.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_affine_forward_f32(const float *x, const float *w, const float *b, float *out,
                                   int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                   const fastfc_blas *blas, int n_threads)
    void fastfc_affine_forward_f64(const double *x, const double *w, const double *b, double *out,
                                   int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                   const fastfc_blas *blas, int n_threads)
    void fastfc_affine_backward_f32(const float *dout, const float *x, const float *w,
                                    const float *relu_out, float *dh, float *dx, float *dw,
                                    float *db, int64_t n_batch, int64_t d_in, int64_t d_out,
                                    const fastfc_blas *blas, int n_threads)
    void fastfc_affine_backward_f64(const double *dout, const double *x, const double *w,
                                    const double *relu_out, double *dh, double *dx, double *dw,
                                    double *db, int64_t n_batch, int64_t d_in, int64_t d_out,
                                    const fastfc_blas *blas, int n_threads)
    # END GENERATED affine.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["affine_forward", "affine_backward", "affine_relu_forward", "affine_relu_backward"]

cnp.import_array()


# Calls run in pieces of whole rows (see next_piece) of about this many
# multiply-adds in all, whatever the thread count (the bias gradient sums
# its pieces in order, so their size must not depend on it): some 0.1 s on
# one core here, less on more.
cdef double MACS_PER_PIECE = 2.0 ** 32


cdef int _forward_run(void (*kernel)(const real *, const real *, const real *, real *, int64_t,
                                     int64_t, int64_t, int, const fastfc_blas *,
                                     int) noexcept nogil,
                      cnp.ndarray x, cnp.ndarray w, object b, object out,
                      bint relu) except -1:
    """out = x @ w + b (ReLU'd with relu) in pieces of rows, x (N, D) and w
    (D, M) as the kernel reads them, in kernel's float type."""
    cdef int64_t n_batch = x.shape[0], d_in = w.shape[0], d_out = w.shape[1]
    cdef const real *px = <real *>data_of(x)
    cdef const real *pw = <real *>data_of(w)
    cdef const real *pb = <real *>data_of(b)
    cdef real *po = <real *>data_of(out)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n_batch, piece_items(<double>d_in * d_out, MACS_PER_PIECE, 1))
    while next_piece(&p):
        with nogil:
            kernel(px + p.lo * d_in, pw, pb, po + p.lo * d_out, p.hi - p.lo, d_in, d_out, relu,
                   &blas, nt)
    return 0


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
    if is_float32(xa):
        _forward_run(fastfc_affine_forward_f32, xa, wa, ba, out, relu)
    else:
        _forward_run(fastfc_affine_forward_f64, xa, wa, ba, out, relu)
    return xa, wa, ba, out


cdef int _backward_run(void (*kernel)(const real *, const real *, const real *, const real *,
                                      real *, real *, real *, real *, int64_t, int64_t, int64_t,
                                      const fastfc_blas *, int) noexcept nogil,
                       object dout, cnp.ndarray x, cnp.ndarray w, object relu_out, object dh,
                       object dx, object dw, object db, bint compute_dx) except -1:
    """dx (or not), dw, db in pieces of rows, in kernel's float type; relu_out
    and dh are None for a plain affine layer, dx when not computed."""
    cdef int64_t n_batch = x.shape[0], d_in = w.shape[0], d_out = w.shape[1]
    cdef const real *pd = <real *>data_of(dout)
    cdef const real *px = <real *>data_of(x)
    cdef const real *pw = <real *>data_of(w)
    cdef const real *pr = NULL if relu_out is None else <real *>data_of(relu_out)
    cdef real *ph = NULL if dh is None else <real *>data_of(dh)
    cdef real *pdx = NULL if dx is None else <real *>data_of(dx)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n_batch, piece_items((3 if compute_dx else 2) * <double>d_in * d_out,
                                                MACS_PER_PIECE, 1))
    # The first piece writes dw and db; each later one writes its own sums
    # over its rows, which are added on.
    cdef object piece_dw = dw, piece_db = db
    cdef real *pdw = <real *>data_of(dw)
    cdef real *pdb = <real *>data_of(db)
    while next_piece(&p):
        if p.lo and piece_dw is dw:
            piece_dw, piece_db = np.empty_like(dw), np.empty_like(db)
            pdw, pdb = <real *>data_of(piece_dw), <real *>data_of(piece_db)
        with nogil:
            kernel(pd + p.lo * d_out, px + p.lo * d_in, pw, pr + p.lo * d_out if pr else NULL,
                   ph + p.lo * d_out if ph else NULL, pdx + p.lo * d_in if pdx else NULL, pdw,
                   pdb, p.hi - p.lo, d_in, d_out, &blas, nt)
        if p.lo:
            dw += piece_dw
            db += piece_db
    return 0


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
    if is_float32(xa):
        _backward_run(fastfc_affine_backward_f32, da, xa, wa, relu_out, dh, dx, dw, db, compute_dx)
    else:
        _backward_run(fastfc_affine_backward_f64, da, xa, wa, relu_out, dh, dx, dw, db, compute_dx)
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


cdef int _gemms_run(void (*gemm)(const fastfc_blas *, int, char, char, int64_t, int64_t,
                                 int64_t, real, const real *, int64_t, const real *, int64_t,
                                 real, real *, int64_t) noexcept nogil,
                    cnp.ndarray x, cnp.ndarray w, object dout, object out, object dx,
                    object dw) except -1:
    """out = x @ w, dw = x^T dout, dx = dout w^T in gemm's float type."""
    cdef int64_t n = x.shape[0], d = w.shape[0], m = w.shape[1]
    cdef const real *px = <real *>data_of(x)
    cdef const real *pw = <real *>data_of(w)
    cdef const real *pd = <real *>data_of(dout)
    cdef real *po = <real *>data_of(out)
    cdef real *pdx = <real *>data_of(dx)
    cdef real *pdw = <real *>data_of(dw)
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    with nogil:
        gemm(&blas, nt, b'N', b'N', n, m, d, 1, px, d, pw, m, 0, po, m)
        gemm(&blas, nt, b'T', b'N', d, m, n, 1, px, d, pd, m, 0, pdw, m)
        gemm(&blas, nt, b'N', b'T', n, d, m, 1, pd, m, pw, m, 0, pdx, d)
    return 0


def affine_gemms_only(x, w, dout):
    """The three GEMMs of an affine layer's forward and backward pass and
    nothing else: out = x @ w, dw = x^T dout, dx = dout w^T, through the same
    BLAS and fastfc_gemm's thread split (the kernels' split, except that the
    forward of a batch under 48 rows a thread over a long input splits K,
    csrc/affine.c). The benchmarks time it as the ceiling of affine_forward +
    affine_backward (not part of the API); at such shapes the kernels can
    beat it.

    Inputs: x (N, D), w (D, M), dout (N, M), all float32 or all float64, C-contiguous.
    Returns (out, dx, dw).
    """
    cdef cnp.ndarray xa = as_float_array(x, "x")
    cdef cnp.ndarray wa = as_float_array(w, "w")
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(xa, "x", wa, "w")
    check_same_dtype(xa, "x", da, "dout")
    # the dimensions counted first: shape[1] of a 1-d array reads past its shape
    if xa.ndim != 2 or wa.ndim != 2 or da.ndim != 2:
        raise ValueError("x, w and dout must have shapes (N, D), (D, M) and (N, M)")
    cdef int64_t n = xa.shape[0], d = wa.shape[0], m = wa.shape[1]
    if xa.shape[1] != d or da.shape[0] != n or da.shape[1] != m:
        raise ValueError("x, w and dout must have shapes (N, D), (D, M) and (N, M)")
    out = np.empty((n, m), dtype=xa.dtype)
    dx = np.empty((n, d), dtype=xa.dtype)
    dw = np.empty((d, m), dtype=xa.dtype)
    if is_float32(xa):
        _gemms_run(fastfc_gemm_f32, xa, wa, da, out, dx, dw)
    else:
        _gemms_run(fastfc_gemm_f64, xa, wa, da, out, dx, dw)
    return out, dx, dw
