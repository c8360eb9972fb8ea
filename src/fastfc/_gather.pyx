# cython: language_level=3, boundscheck=False, wraparound=False
"""Row gather, a training batch's rows picked from the data set by the
shuffled order: the wrapper of csrc/gather.c."""
cimport numpy as cnp
from libc.stdint cimport int64_t
from fastfc._common cimport (
    ELEMENTS_PER_PIECE, Pieces, pieces, next_piece, piece_items, as_float_array, is_float32,
    data_of, num_threads, output_array, plain_array)

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from gather.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_gather_rows_f32(const float *x, int64_t row_len, const int64_t *index,
                                int64_t n_index, float *out, int n_threads)
    void fastfc_gather_rows_f64(const double *x, int64_t row_len, const int64_t *index,
                                int64_t n_index, double *out, int n_threads)
    # END GENERATED gather.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["gather_rows"]

cnp.import_array()


cdef object _as_row_index(object index, int64_t n_rows):
    """index as a C-contiguous int64 array (a copy unless it is one), each
    entry checked to lie in [0, n_rows)."""
    index = plain_array(index, "index")
    if index.dtype.kind not in "iu":
        raise TypeError(f"index must be an array of integers, got dtype {index.dtype}")
    if index.ndim != 1:
        raise ValueError(f"index must be 1-d, got shape {index.shape}")
    # (An unsigned entry beyond int64's range turns negative here and is refused below.)
    cdef cnp.ndarray ia = np.ascontiguousarray(index, dtype=np.int64)
    cdef const int64_t *entries = <const int64_t *>data_of(ia)
    cdef int64_t n = ia.shape[0], i, bad = -1
    with nogil:
        for i in range(n):
            if entries[i] < 0 or entries[i] >= n_rows:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"index[{bad}] is {index[bad]}, outside the {n_rows} rows of x "
                         f"(entries must lie in [0, {n_rows}); negative ones are refused)")
    return ia


def gather_rows(x, index, *, out=None):
    """The rows of x named by index, in index's order (x[index] along the first
    axis, as np.take(x, index, axis=0)), copied by all threads at once: the
    rows of a shuffled batch lie scattered over a data set larger than the
    caches, and each thread keeps its own rows' memory reads in flight.

    Inputs:
    - x: a float32/float64 array (N, d_1, ..., d_k); a non-C-contiguous one is
      copied whole first, so pass a data set C-contiguous
    - index: a 1-d array of integers, each in [0, N)
    - out: None, or an array of x's dtype shaped (len(index), d_1, ..., d_k)
      (C-contiguous, writeable, apart from x) to write the rows into
    Returns out.
    """
    cdef cnp.ndarray xa = as_float_array(x, "x")
    cdef cnp.ndarray ia = _as_row_index(index, xa.shape[0])
    cdef int64_t n_index = ia.shape[0]
    cdef int64_t row_len = xa.size // xa.shape[0] if xa.shape[0] else 0
    out = output_array(out, "out", (n_index,) + (<object>xa).shape[1:], xa.dtype, (xa, ia))
    cdef int nt = num_threads()
    cdef Pieces p = pieces(n_index, piece_items(row_len, ELEMENTS_PER_PIECE, nt))
    cdef const int64_t *entries = <const int64_t *>data_of(ia)
    cdef void *src = data_of(xa)
    cdef void *dst = data_of(out)
    cdef bint single = is_float32(xa)
    while next_piece(&p):
        with nogil:
            if single:
                fastfc_gather_rows_f32(<const float *>src, row_len, entries + p.lo, p.hi - p.lo,
                                       <float *>dst + p.lo * row_len, nt)
            else:
                fastfc_gather_rows_f64(<const double *>src, row_len, entries + p.lo, p.hi - p.lo,
                                       <double *>dst + p.lo * row_len, nt)
    return out
