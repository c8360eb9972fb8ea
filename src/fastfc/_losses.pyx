# cython: language_level=3, boundscheck=False, wraparound=False
"""Losses with their gradients in one pass: softmax cross-entropy, multiclass
SVM (hinge) and mean squared error. The wrappers of csrc/losses.c."""
cimport numpy as cnp
from fastfc._kernels cimport (softmax_loss_f32, softmax_loss_f64, svm_loss_f32, svm_loss_f64,
                              mse_loss_f32, mse_loss_f64)

include "_common.pxi"

ctypedef double (*class_loss_f32)(const float *, const int64_t *, float *, int64_t, int64_t,
                                  int) noexcept nogil
ctypedef double (*class_loss_f64)(const double *, const int64_t *, double *, int64_t, int64_t,
                                  int) noexcept nogil


cdef tuple _class_loss(object x, object y, class_loss_f32 f32, class_loss_f64 f64):
    cdef cnp.ndarray xa = as_float_array(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must be (N, C) class scores, got shape {(<object>xa).shape}")
    check_nonempty(xa, "x")
    cdef int64_t n_batch = xa.shape[0]
    cdef int64_t n_classes = xa.shape[1]
    cdef cnp.ndarray ya = as_labels(y, n_batch, n_classes, "y")
    cdef cnp.ndarray dx = np.empty_like(xa)
    cdef void *px = cnp.PyArray_DATA(xa)
    cdef const int64_t *py = <const int64_t *>cnp.PyArray_DATA(ya)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    cdef int nt = num_threads()
    cdef double loss
    if is_float32(xa):
        with nogil:
            loss = f32(<float *>px, py, <float *>pdx, n_batch, n_classes, nt)
    else:
        with nogil:
            loss = f64(<double *>px, py, <double *>pdx, n_batch, n_classes, nt)
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
    cdef void *pp = cnp.PyArray_DATA(pa)
    cdef void *pt = cnp.PyArray_DATA(ta)
    cdef void *pd = cnp.PyArray_DATA(dpred)
    cdef int64_t n = pa.size
    cdef int nt = num_threads()
    cdef double loss
    if is_float32(pa):
        with nogil:
            loss = mse_loss_f32(<float *>pp, <float *>pt, <float *>pd, n, nt)
    else:
        with nogil:
            loss = mse_loss_f64(<double *>pp, <double *>pt, <double *>pd, n, nt)
    return loss, dpred
