# cython: language_level=3, boundscheck=False, wraparound=False
"""2-d convolution (NCHW) by im2col, or Winograd's F(2x2, 3x3) for 3x3
stride-1 layers, and GEMM: the wrappers of csrc/conv.c. conv_forward returns
(out, cache), conv_backward takes (dout, cache), as in the course notes."""
import math
import sys

cimport numpy as cnp
from libc.stdint cimport int64_t
from fastfc._common cimport (real, Pieces, pieces, next_piece, piece_items, as_float_array,
                             as_image_batch, as_int_param, out_size, check_same_dtype,
                             check_blas_size, is_float32, data_of, blas_table, num_threads,
                             output_array, gradient_outputs, unpack_cache, cache_entry)
from fastfc._kernels cimport fastfc_blas, fastfc_conv_geom

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from conv.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int fastfc_conv_forward_f32(const fastfc_conv_geom *g, const float *x, const float *w,
                                const float *b, float *out, const fastfc_blas *blas, int n_threads)
    int fastfc_conv_forward_f64(const fastfc_conv_geom *g, const double *x, const double *w,
                                const double *b, double *out, const fastfc_blas *blas,
                                int n_threads)
    int fastfc_conv_backward_f32(const fastfc_conv_geom *g, const float *dout, const float *x,
                                 const float *w, float *dx, float *dw, float *db,
                                 const fastfc_blas *blas, int n_threads)
    int fastfc_conv_backward_f64(const fastfc_conv_geom *g, const double *dout, const double *x,
                                 const double *w, double *dx, double *dw, double *db,
                                 const fastfc_blas *blas, int n_threads)
    # END GENERATED conv.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["conv_forward", "conv_backward"]

cnp.import_array()

# Calls run in pieces of whole images (see next_piece), about this many
# multiply-adds per thread each: some 0.2 s at 20 GMAC/s, long enough that
# the kernel's per-call scratch (up to 64 MiB of fresh pages) costs little.
cdef double MACS_PER_PIECE = 2.0 ** 32


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
    # N*F*H'*W' may wrap int64: multiplied as Python ints
    shape = (g.n_batch, g.n_filters, g.out_h, g.out_w)
    if math.prod(shape) * xa.itemsize > sys.maxsize:
        raise ValueError(f"the output (N, F, H', W') = {shape} is too large for any array")
    return g


cdef inline double _image_macs(const fastfc_conv_geom *g) noexcept:
    """Multiply-adds of one image's forward: F * C*HH*WW * H'*W'."""
    return (<double>g.n_filters * g.channels * g.kernel_h * g.kernel_w
            * g.out_h * g.out_w)


cdef int _forward_run(int (*kernel)(const fastfc_conv_geom *, const real *, const real *,
                                    const real *, real *, const fastfc_blas *, int) noexcept nogil,
                      const fastfc_conv_geom *g, object x, object w, object b,
                      object out) except -1:
    """out = conv(x, w) + b in pieces of images, in kernel's float type."""
    cdef const real *px = <real *>data_of(x)
    cdef const real *pw = <real *>data_of(w)
    cdef const real *pb = <real *>data_of(b)
    cdef real *po = <real *>data_of(out)
    cdef int64_t image_in = g.channels * g.height * g.width
    cdef int64_t image_out = g.n_filters * g.out_h * g.out_w
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef Pieces p = pieces(g.n_batch, piece_items(_image_macs(g), MACS_PER_PIECE, nt))
    cdef fastfc_conv_geom pg = g[0]  # one piece's images
    cdef int status
    while next_piece(&p):
        pg.n_batch = p.hi - p.lo
        with nogil:
            status = kernel(&pg, px + p.lo * image_in, pw, pb, po + p.lo * image_out, &blas, nt)
        if status != 0:
            raise MemoryError("conv_forward could not allocate its column scratch")
    return 0


cdef int _backward_run(int (*kernel)(const fastfc_conv_geom *, const real *, const real *,
                                     const real *, real *, real *, real *, const fastfc_blas *,
                                     int) noexcept nogil,
                       const fastfc_conv_geom *g, object dout, object x, object w, object dx,
                       object dw, object db, bint compute_dx) except -1:
    """dx (or not, dx None), dw, db in pieces of images, in kernel's float type."""
    cdef const real *pd = <real *>data_of(dout)
    cdef const real *px = <real *>data_of(x)
    cdef const real *pw = <real *>data_of(w)
    cdef real *pdx = NULL if dx is None else <real *>data_of(dx)
    cdef int64_t image_in = g.channels * g.height * g.width
    cdef int64_t image_out = g.n_filters * g.out_h * g.out_w
    cdef fastfc_blas blas = blas_table()
    cdef int nt = num_threads()
    cdef Pieces p = pieces(g.n_batch, piece_items((2 if compute_dx else 1) * _image_macs(g),
                                                  MACS_PER_PIECE, nt))
    cdef fastfc_conv_geom pg = g[0]  # one piece's images
    # The first piece writes dw and db; each later one writes its own sums,
    # which are added on.
    cdef object piece_dw = dw, piece_db = db
    cdef real *pdw = <real *>data_of(dw)
    cdef real *pdb = <real *>data_of(db)
    cdef int status
    while next_piece(&p):
        pg.n_batch = p.hi - p.lo
        if p.lo and piece_dw is dw:
            piece_dw, piece_db = np.empty_like(dw), np.empty_like(db)
            pdw, pdb = <real *>data_of(piece_dw), <real *>data_of(piece_db)
        with nogil:
            status = kernel(&pg, pd + p.lo * image_out, px + p.lo * image_in, pw,
                            pdx + p.lo * image_in if pdx else NULL, pdw, pdb, &blas, nt)
        if status != 0:
            raise MemoryError("conv_backward could not allocate its column scratch")
        if p.lo:
            dw += piece_dw
            db += piece_db
    return 0


def conv_forward(x, w, b, stride=1, pad=0, *, out=None):
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
    - out: None, or an (N, F, H', W') array of x's dtype (C-contiguous,
      writeable, apart from the inputs) to write the result into

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

    out = output_array(out, "out", (g.n_batch, g.n_filters, g.out_h, g.out_w), xa.dtype,
                       (xa, wa, ba))
    if is_float32(xa):
        _forward_run(fastfc_conv_forward_f32, &g, xa, wa, ba, out)
    else:
        _forward_run(fastfc_conv_forward_f64, &g, xa, wa, ba, out)
    return out, (xa, wa, ba, {"stride": s, "pad": p})


def conv_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Backward pass of a convolutional layer.

    Inputs:
    - dout: (N, F, H', W') upstream gradient
    - cache: (x, w, b, conv_param) from conv_forward
    - compute_dx: False skips dx (a network's first layer never needs it)
    - dx, dw, db: None, or arrays of the shapes below to write the results
      into (C-contiguous, writeable, the dtype of x, apart from the inputs)

    Returns a tuple of:
    - dx: (N, C, H, W), or None when compute_dx is False
    - dw: (F, C, HH, WW)
    - db: (F,)
    """
    x, w, _, conv_param = unpack_cache(cache, 4, "(x, w, b, conv_param)", "conv_forward")
    cdef cnp.ndarray xa = as_image_batch(x, "x (from the cache)")
    cdef cnp.ndarray wa = as_float_array(w, "w (from the cache)")
    check_same_dtype(xa, "x (from the cache)", wa, "w (from the cache)")
    if wa.ndim != 4 or wa.size == 0:
        raise ValueError(f"w (from the cache) must have shape (F, C, HH, WW), "
                         f"got {(<object>wa).shape}")
    stride = as_int_param(cache_entry(conv_param, "conv_param", "stride"), "stride", 1)
    pad = as_int_param(cache_entry(conv_param, "conv_param", "pad"), "pad", 0)
    cdef fastfc_conv_geom g = _geometry(xa, wa, stride, pad)
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    expected = (g.n_batch, g.n_filters, g.out_h, g.out_w)
    if (<object>da).shape != expected:
        raise ValueError(f"dout must have the forward output's shape {expected}, "
                         f"got {(<object>da).shape}")
    dx, dw, db = gradient_outputs(dx, dw, db, compute_dx, (<object>xa).shape, (<object>wa).shape,
                                  g.n_filters, xa.dtype, (da, xa, wa))
    if is_float32(xa):
        _backward_run(fastfc_conv_backward_f32, &g, da, xa, wa, dx, dw, db, <bint>compute_dx)
    else:
        _backward_run(fastfc_conv_backward_f64, &g, da, xa, wa, dx, dw, db, <bint>compute_dx)
    return dx, dw, db
