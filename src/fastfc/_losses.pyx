# cython: language_level=3, boundscheck=False, wraparound=False
"""Losses with their gradients in one pass: softmax cross-entropy, multiclass
SVM (hinge) and mean squared error. The wrappers of csrc/losses.c."""
cimport numpy as cnp
from libc.stdint cimport int64_t
from fastfc._common cimport (real, ELEMENTS_PER_PIECE, Pieces, pieces, next_piece, piece_items,
                             as_float_array, as_labels, check_same_dtype, check_nonempty,
                             is_float32, data_of, num_threads)

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from losses.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    double fastfc_softmax_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                                   int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_softmax_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                                   int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_svm_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_svm_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_mse_loss_f32(const float *pred, const float *target, float *dpred, int64_t n,
                               int64_t n_total, int n_threads)
    double fastfc_mse_loss_f64(const double *pred, const double *target, double *dpred, int64_t n,
                               int64_t n_total, int n_threads)
    # END GENERATED losses.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["softmax_loss", "svm_loss", "mse_loss"]

cnp.import_array()

ctypedef double (*class_loss_f32)(const float *, const int64_t *, float *, int64_t, int64_t,
                                  int64_t, int) noexcept nogil
ctypedef double (*class_loss_f64)(const double *, const int64_t *, double *, int64_t, int64_t,
                                  int64_t, int) noexcept nogil


cdef double _class_loss_run(double (*kernel)(const real *, const int64_t *, real *, int64_t,
                                             int64_t, int64_t, int) noexcept nogil,
                            const real *x, const int64_t *y, real *dx, int64_t n_batch,
                            int64_t n_classes) except? -1:
    """The loss over pieces of whole rows; each adds its rows' share of the mean."""
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n_batch, piece_items(n_classes, ELEMENTS_PER_PIECE, nt))
    cdef double loss = 0
    while next_piece(&p):
        with nogil:
            loss += kernel(x + p.lo * n_classes, y + p.lo, dx + p.lo * n_classes, p.hi - p.lo,
                           n_classes, n_batch, nt)
    return loss


cdef tuple _class_loss(object x, object y, class_loss_f32 f32, class_loss_f64 f64):
    cdef cnp.ndarray xa = as_float_array(x, "x")
    if xa.ndim != 2:
        raise ValueError(f"x must be (N, C) class scores, got shape {(<object>xa).shape}")
    check_nonempty(xa, "x")
    cdef int64_t n_batch = xa.shape[0]
    cdef int64_t n_classes = xa.shape[1]
    cdef cnp.ndarray ya = as_labels(y, n_batch, n_classes, "y")
    cdef cnp.ndarray dx = np.empty_like(xa)
    cdef const int64_t *py = <const int64_t *>data_of(ya)
    cdef double loss
    if is_float32(xa):
        loss = _class_loss_run(f32, <float *>data_of(xa), py, <float *>data_of(dx), n_batch,
                               n_classes)
    else:
        loss = _class_loss_run(f64, <double *>data_of(xa), py, <double *>data_of(dx), n_batch,
                               n_classes)
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
    return _class_loss(x, y, fastfc_softmax_loss_f32, fastfc_softmax_loss_f64)


def svm_loss(x, y):
    """Multiclass SVM (hinge) loss with margin 1, averaged over the batch.

    Inputs: x (N, C) scores, y (N,) integer labels in [0, C).
    Returns (loss: float, dx: (N, C)).
    """
    return _class_loss(x, y, fastfc_svm_loss_f32, fastfc_svm_loss_f64)


cdef double _mse_run(double (*kernel)(const real *, const real *, real *, int64_t, int64_t,
                                       int) noexcept nogil,
                     const real *pred, const real *target, real *dpred, int64_t n) except? -1:
    """The loss over pieces of the n elements; each adds its share of the mean."""
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n, piece_items(1, ELEMENTS_PER_PIECE, nt))
    cdef double loss = 0
    while next_piece(&p):
        with nogil:
            loss += kernel(pred + p.lo, target + p.lo, dpred + p.lo, p.hi - p.lo, n, nt)
    return loss


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
    cdef double loss
    if is_float32(pa):
        loss = _mse_run(fastfc_mse_loss_f32, <float *>data_of(pa), <float *>data_of(ta),
                        <float *>data_of(dpred), pa.size)
    else:
        loss = _mse_run(fastfc_mse_loss_f64, <double *>data_of(pa), <double *>data_of(ta),
                        <double *>data_of(dpred), pa.size)
    return loss, dpred
