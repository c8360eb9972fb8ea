# cython: language_level=3, boundscheck=False, wraparound=False
"""Element-wise activations (ReLU, sigmoid, tanh) and inverted dropout: the
wrappers of csrc/activations.c. Each forward returns (out, cache), each
backward takes (dout, cache)."""
import numbers

cimport numpy as cnp
from libc.stdint cimport int64_t, uint32_t, uint64_t
from fastfc._common cimport (
    real, ELEMENTS_PER_PIECE, Pieces, pieces, next_piece, piece_items, as_float_array,
    check_same_dtype, check_nonempty, is_float32, data_of, num_threads, output_array,
    unpack_cache)

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from activations.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    uint64_t fastfc_dropout_key(uint64_t seed)
    uint32_t fastfc_dropout_bits(uint64_t key, uint64_t i)
    void fastfc_relu_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_relu_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_relu_backward_f32(const float *dout, const float *x, float *dx, int64_t n,
                                  int n_threads)
    void fastfc_relu_backward_f64(const double *dout, const double *x, double *dx, int64_t n,
                                  int n_threads)
    void fastfc_sigmoid_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_sigmoid_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_sigmoid_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                                     int n_threads)
    void fastfc_sigmoid_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                                     int n_threads)
    void fastfc_tanh_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_tanh_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_tanh_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                                  int n_threads)
    void fastfc_tanh_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                                  int n_threads)
    void fastfc_dropout_apply_f32(const float *in_, float *out, int64_t first, int64_t n, double p,
                                  uint64_t seed, int n_threads)
    void fastfc_dropout_apply_f64(const double *in_, double *out, int64_t first, int64_t n,
                                  double p, uint64_t seed, int n_threads)
    # END GENERATED activations.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
           "tanh_backward", "dropout_forward", "dropout_backward"]

cnp.import_array()

ctypedef void (*unary_f32)(const float *, float *, int64_t, int) noexcept nogil
ctypedef void (*unary_f64)(const double *, double *, int64_t, int) noexcept nogil
ctypedef void (*binary_f32)(const float *, const float *, float *, int64_t, int) noexcept nogil
ctypedef void (*binary_f64)(const double *, const double *, double *, int64_t, int) noexcept nogil


# Each kernel over n elements in pieces (see next_piece), written once for
# both float types: the caller picks the type (and the kernel of that type).

cdef int _unary_run(void (*kernel)(const real *, real *, int64_t, int) noexcept nogil,
                    const real *x, real *out, int64_t n) except -1:
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n, piece_items(1, ELEMENTS_PER_PIECE, nt))
    while next_piece(&p):
        with nogil:
            kernel(x + p.lo, out + p.lo, p.hi - p.lo, nt)
    return 0


cdef int _binary_run(void (*kernel)(const real *, const real *, real *, int64_t,
                                    int) noexcept nogil,
                     const real *dout, const real *saved, real *dx, int64_t n) except -1:
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n, piece_items(1, ELEMENTS_PER_PIECE, nt))
    while next_piece(&p):
        with nogil:
            kernel(dout + p.lo, saved + p.lo, dx + p.lo, p.hi - p.lo, nt)
    return 0


cdef int _dropout_run(void (*kernel)(const real *, real *, int64_t, int64_t, double, uint64_t,
                                     int) noexcept nogil,
                      const real *a, real *out, int64_t first, int64_t n, double p_drop,
                      uint64_t seed) except -1:
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n, piece_items(1, ELEMENTS_PER_PIECE, nt))
    while next_piece(&p):
        with nogil:
            kernel(a + p.lo, out + p.lo, first + p.lo, p.hi - p.lo, p_drop, seed, nt)
    return 0


cdef tuple _unary(object x, unary_f32 f32, unary_f64 f64, object out):
    """out = f(x) element-wise (into out if given, see output_array); returns
    (x as the kernel saw it, out)."""
    cdef cnp.ndarray xa = as_float_array(x, "x")
    check_nonempty(xa, "x")
    out = output_array(out, "out", (<object>xa).shape, xa.dtype, (xa,))
    if is_float32(xa):
        _unary_run(f32, <float *>data_of(xa), <float *>data_of(out), xa.size)
    else:
        _unary_run(f64, <double *>data_of(xa), <double *>data_of(out), xa.size)
    return xa, out


cdef object _binary(object dout, object cached, str saved_name,
                    binary_f32 f32, binary_f64 f64, object dx):
    """dx = f(dout, saved) element-wise (into dx if given), saved being what
    forward cached (checked like dout: the kernel reads as many elements from both)."""
    cdef cnp.ndarray saved = as_float_array(cached, saved_name)
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", saved, saved_name)
    if (<object>da).shape != (<object>saved).shape:
        raise ValueError(f"dout must have the forward output's shape {(<object>saved).shape}, "
                         f"got {(<object>da).shape}")
    dx = output_array(dx, "dx", (<object>da).shape, da.dtype, (da, saved))
    if is_float32(da):
        _binary_run(f32, <float *>data_of(da), <float *>data_of(saved), <float *>data_of(dx),
                    da.size)
    else:
        _binary_run(f64, <double *>data_of(da), <double *>data_of(saved), <double *>data_of(dx),
                    da.size)
    return dx


def relu_forward(x, *, out=None):
    """ReLU: out = max(0, x) element-wise (NaN stays NaN).

    Inputs:
    - x: a float array of any shape
    - out: None, or an array shaped like x, of its dtype (C-contiguous,
      writeable, apart from x) to write the result into
    Returns (out shaped like x, cache = x).
    """
    xa, out = _unary(x, fastfc_relu_forward_f32, fastfc_relu_forward_f64, out)
    return out, xa


def relu_backward(dout, cache, *, dx=None):
    """dx = dout where x > 0, else 0 (0 at exactly x == 0, as PyTorch).

    Inputs: dout shaped like x; cache = x from relu_forward; dx: None, or an
    array to write the result into (as out of relu_forward).
    Returns dx shaped like x.
    """
    return _binary(dout, cache, "x (from the cache)", fastfc_relu_backward_f32,
                   fastfc_relu_backward_f64, dx)


def sigmoid_forward(x, *, out=None):
    """Logistic sigmoid 1 / (1 + exp(-x)), computed without overflow.

    Inputs: x and out as in relu_forward.
    Returns (out shaped like x, cache = out).
    """
    _, out = _unary(x, fastfc_sigmoid_forward_f32, fastfc_sigmoid_forward_f64, out)
    return out, out


def sigmoid_backward(dout, cache, *, dx=None):
    """dx = dout * s * (1 - s), where s = cache is the forward output (dx as
    in relu_backward)."""
    return _binary(dout, cache, "the sigmoid output (from the cache)",
                   fastfc_sigmoid_backward_f32, fastfc_sigmoid_backward_f64, dx)


def tanh_forward(x, *, out=None):
    """Hyperbolic tangent (x and out as in relu_forward). Returns (out shaped
    like x, cache = out)."""
    _, out = _unary(x, fastfc_tanh_forward_f32, fastfc_tanh_forward_f64, out)
    return out, out


def tanh_backward(dout, cache, *, dx=None):
    """dx = dout * (1 - t^2), where t = cache is the forward output (dx as in
    relu_backward)."""
    return _binary(dout, cache, "the tanh output (from the cache)",
                   fastfc_tanh_backward_f32, fastfc_tanh_backward_f64, dx)


cdef object _dropout_apply(object a, str name, double p, uint64_t seed, object offset,
                           object out, str out_name):
    """The dropout mask of seed applied to a, into out (see output_array), a
    being elements [offset, offset + a.size) of the array the mask is drawn for."""
    cdef cnp.ndarray arr = as_float_array(a, name)
    check_nonempty(arr, name)
    cdef int64_t first = check_dropout_offset(offset, arr.size)
    out = output_array(out, out_name, (<object>arr).shape, arr.dtype, (arr,))
    if is_float32(arr):
        _dropout_run(fastfc_dropout_apply_f32, <float *>data_of(arr), <float *>data_of(out),
                     first, arr.size, p, seed)
    else:
        _dropout_run(fastfc_dropout_apply_f64, <double *>data_of(arr), <double *>data_of(out),
                     first, arr.size, p, seed)
    return out


cdef object _copy_into(cnp.ndarray src, object dst, str name):
    """src copied into dst, checked as an output of src's shape (the identity
    of test-time dropout, asked to write into dst)."""
    dst = output_array(dst, name, (<object>src).shape, src.dtype, (src,))
    np.copyto(dst, src)
    return dst


def draw_seed():
    """A dropout seed from NumPy's global generator, so np.random.seed fixes it."""
    return int(np.random.randint(0, 2**63 - 1, dtype=np.int64))


def check_dropout_args(p, seed):
    """Validate dropout's p and seed; returns them as (float, int)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a float in [0, 1), got {p!r}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p (the probability of dropping) must be in [0, 1), got {p}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return float(p), int(seed)


def check_dropout_offset(offset, size):
    """Validate dropout's element offset for an input of size elements (the
    kernel counts elements in int64); returns it as an int."""
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an int, got {offset!r}")
    if not 0 <= offset <= 2**63 - 1 - size:
        raise ValueError(f"offset must be in [0, 2**63 - 1 - x.size] = [0, {2**63 - 1 - size}], "
                         f"got {offset}")
    return int(offset)


def dropout_forward(x, p, train=True, seed=None, *, offset=0, out=None):
    """Inverted dropout: in training, each element is dropped with probability p
    and the kept ones are scaled by 1 / (1 - p) (PyTorch's convention); at test
    time (train=False) it is the identity.

    Inputs:
    - x: float array of any shape
    - p: probability of dropping, in [0, 1)
    - train: whether to drop
    - seed: int in [0, 2**64); None draws one from np.random. The mask is a
      pure function of (seed, element index): the same for any thread count.
    - offset: the index of x's first element (C order) within a larger array
      whose mask this is a part of: x = big.reshape(-1)[offset:offset + x.size]
      is dropped exactly as in dropout_forward(big, p, seed=seed). A shard of
      rows lo:hi of a batch takes offset = lo * (elements per row): how
      data-parallel ranks each draw their slice of the global batch's mask.
      0 (the default) is the mask of x on its own.
    - out: None, or an array to write the result into (as in relu_forward);
      without it, the test-time identity returns x itself, not a copy

    Returns (out shaped like x, cache) for dropout_backward.
    """
    if seed is None:
        seed = draw_seed()
    p, seed = check_dropout_args(p, seed)
    if not train:
        xa = as_float_array(x, "x")
        offset = check_dropout_offset(offset, xa.size)
        if out is not None:
            xa = _copy_into(xa, out, "out")
        return xa, (p, False, seed, xa.shape, xa.dtype, offset)
    out = _dropout_apply(x, "x", p, seed, offset, out, "out")
    return out, (p, True, seed, out.shape, out.dtype, int(offset))


def dropout_backward(dout, cache, *, dx=None):
    """dx = dout * mask / (1 - p), the mask recomputed from the seed and offset
    in the cache.

    Inputs: dout shaped like x; cache from dropout_forward; dx: None, or an
    array to write the result into (without it, the test-time identity
    returns dout itself).
    Returns dx shaped like x.
    """
    p, train, seed, shape, dtype, offset = unpack_cache(
        cache, 6, "(p, train, seed, shape, dtype, offset)", "dropout_forward")
    p, seed = check_dropout_args(p, seed)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train (from the cache) must be True or False, got {train!r}")
    da = as_float_array(dout, "dout")
    if da.dtype != dtype:
        raise TypeError(f"dout is {da.dtype} but the forward input was {dtype}")
    if da.shape != shape:
        raise ValueError(f"dout must have the forward input's shape {shape}, got {(<object>da).shape}")
    offset = check_dropout_offset(offset, da.size)
    if not train:
        return da if dx is None else _copy_into(da, dx, "dx")
    return _dropout_apply(da, "dout", p, seed, offset, dx, "dx")

