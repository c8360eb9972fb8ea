# cython: language_level=3, boundscheck=False, wraparound=False
"""Losses with their gradients in one pass: softmax cross-entropy, multiclass
SVM (hinge) and mean squared error. The wrappers of csrc/losses.c."""
cimport numpy as cnp
from fastfc._kernels cimport (softmax_loss_f32, softmax_loss_f64, svm_loss_f32, svm_loss_f64,
                              mse_loss_f32, mse_loss_f64)

include "_common.pxi"

ctypedef double (*class_loss_f32)(const float *, const int64_t *, float *, int64_t, int64_t,
                                  int64_t, int) noexcept nogil
ctypedef double (*class_loss_f64)(const double *, const int64_t *, double *, int64_t, int64_t,
                                  int64_t, int) noexcept nogil


cdef tuple _class_loss(object x, object y, class_loss_f32 f32, class_loss_f64 f64):
    cdef cnp.ndarray xa = as_float_array(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must be (N, C) class scores, got shape {(<object>xa).shape}")
    check_nonempty(xa, "x")
    cdef int64_t n_batch = xa.shape[0]
    cdef int64_t n_classes = xa.shape[1]
    cdef cnp.ndarray ya = as_labels(y, n_batch, n_classes, "y")
    cdef cnp.ndarray dx = np.empty_like(xa)
    cdef char *px = <char *>cnp.PyArray_DATA(xa)
    cdef const int64_t *py = <const int64_t *>cnp.PyArray_DATA(ya)
    cdef char *pdx = <char *>cnp.PyArray_DATA(dx)
    cdef int nt = num_threads()
    # pieces of whole rows; each adds its rows' share of the mean
    cdef int64_t row = n_classes * xa.itemsize, lo = 0, hi
    cdef int64_t piece = piece_items(n_classes, ELEMENTS_PER_PIECE, nt)
    cdef bint single = is_float32(xa)
    cdef double loss = 0
    while lo < n_batch:
        hi = next_piece(lo, n_batch, piece)
        with nogil:
            if single:
                loss += f32(<float *>(px + lo * row), py + lo, <float *>(pdx + lo * row),
                            hi - lo, n_classes, n_batch, nt)
            else:
                loss += f64(<double *>(px + lo * row), py + lo, <double *>(pdx + lo * row),
                            hi - lo, n_classes, n_batch, nt)
        lo = hi
    return loss, dx


def softmax_loss(x, y):
    """Softmax cross-entropy, averaged over the batch, and its gradient, fused.

    Numerically stable for any finite logits (max-subtraction, log-sum-exp);
    -inf scores other than the label's are allowed.

    Inputs:
    - x: (N, C) class scores
    - y: (N,) integer labels in [0, C), any integer dtype

    Returns a tuple of:
    - loss: float
    - dx: (N, C) gradient of the loss with respect to x
    """
    return _class_loss(x, y, softmax_loss_f32, softmax_loss_f64)


def svm_loss(x, y):
    """Multiclass SVM (hinge) loss with margin 1, averaged over the batch.

    Inputs: x (N, C) scores, y (N,) integer labels in [0, C).
    Returns (loss: float, dx: (N, C)).
    """
    return _class_loss(x, y, svm_loss_f32, svm_loss_f64)


def mse_loss(pred, target):
    """Mean squared error over all elements (PyTorch's default 'mean' reduction).

    Inputs: pred and target, float arrays of the same shape and dtype.
    Returns (loss: float, dpred shaped like pred).
    """
    cdef cnp.ndarray pa = as_float_array(pred, "pred")
    cdef cnp.ndarray ta = as_float_array(target, "target")
    check_same_dtype(pa, "pred", ta, "target")
    if (<object>pa).shape != (<object>ta).shape:
        raise ValueError(f"pred has shape {(<object>pa).shape} but target has shape {(<object>ta).shape}")
    check_nonempty(pa, "pred")
    cdef cnp.ndarray dpred = np.empty_like(pa)
    cdef char *pp = <char *>cnp.PyArray_DATA(pa)
    cdef char *pt = <char *>cnp.PyArray_DATA(ta)
    cdef char *pd = <char *>cnp.PyArray_DATA(dpred)
    cdef int64_t n = pa.size, size = pa.itemsize, lo = 0, hi, at
    cdef int nt = num_threads()
    cdef int64_t piece = piece_items(1, ELEMENTS_PER_PIECE, nt)
    cdef bint single = is_float32(pa)
    cdef double loss = 0
    while lo < n:
        hi = next_piece(lo, n, piece)
        at = lo * size
        with nogil:
            if single:
                loss += mse_loss_f32(<float *>(pp + at), <float *>(pt + at), <float *>(pd + at),
                                     hi - lo, n, nt)
            else:
                loss += mse_loss_f64(<double *>(pp + at), <double *>(pt + at),
                                     <double *>(pd + at), hi - lo, n, nt)
        lo = hi
    return loss, dpred
