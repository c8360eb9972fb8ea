# The shared pieces of the Cython wrappers, compiled once in _common.pyx and
# cimported by every wrapper module (`from fastfc._common cimport ...`):
# argument validation, output arrays, the BLAS table, the thread count and
# the cutting of long calls into pieces.
cimport numpy as cnp
from libc.stdint cimport int64_t
from fastfc._kernels cimport fastfc_blas

# The float types of the kernels: a wrapper's code below the point where it
# picks one is written once over `real` (see dispatch in its module).
ctypedef fused real:
    float
    double

cdef enum:
    # Ctrl-C: a kernel runs without the GIL, and Python runs signal handlers
    # only once it has it back, so a long call is run in pieces and pending
    # handlers run between them (a KeyboardInterrupt raises there). A piece
    # is about this many elements per thread: 1 to 25 ms on one core (tanh
    # is the slowest).
    ELEMENTS_PER_PIECE = 1 << 20

# Validation; each names the argument in its TypeError/ValueError.
cdef object plain_array(object a, str name)
cdef object check_float_array(object a, str name)
cdef object as_float_array(object a, str name)
cdef int check_same_dtype(object first, str first_name, object other, str other_name) except -1
cdef object as_labels(object y, int64_t n_batch, int64_t n_classes, str name)
cdef tuple unpack_cache(object cache, int length, str layout, str forward)
cdef object cache_entry(object params, str name, str key)
cdef int check_blas_size(int64_t size, str name) except -1
cdef int check_nonempty(object arr, str name) except -1
cdef object output_array(object out, str name, tuple shape, object dtype, tuple inputs)
cdef tuple gradient_outputs(object dx, object dw, object db, bint compute_dx, tuple x_shape,
                            tuple w_shape, int64_t n_bias, object dtype, tuple inputs)

# The image layers' (conv, pooling) arguments.
cdef int64_t as_int_param(object value, str name, int64_t minimum) except? -1
cdef object as_image_batch(object x, str name)


cdef inline int64_t out_size(int64_t size, int64_t window, int64_t stride, int64_t pad) noexcept:
    """Output positions along one axis: floor((size + 2*pad - window) / stride) + 1;
    rows/columns a stride does not reach are ignored (as in PyTorch)."""
    return (size + 2 * pad - window) // stride + 1


cdef inline bint is_float32(object arr):
    return arr.dtype.itemsize == 4


cdef inline void *data_of(object arr):
    """The data pointer of arr, an np.ndarray."""
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


# What a kernel call needs besides its arrays.
cdef fastfc_blas blas_table() noexcept
cdef int num_threads()


# ---- a long call in pieces ----------------------------------------------------

cdef struct Pieces:
    int64_t lo, hi  # the current piece [lo, hi) of [0, n)
    int64_t n, size


cdef inline Pieces pieces(int64_t n, int64_t size) noexcept:
    """[0, n) in pieces of size items (the last one shorter); next_piece
    moves on to the first."""
    cdef Pieces p
    p.lo, p.hi, p.n, p.size = 0, 0, n, size
    return p


cdef bint next_piece(Pieces *p) except -1


cdef inline int64_t piece_items(double item_work, double work_per_thread, int nt) noexcept:
    """Items of item_work each per piece: about work_per_thread for each of
    the nt threads, and at least nt (the kernels split a piece among them)."""
    cdef double items = work_per_thread * nt / max(item_work, 1.0)
    return <int64_t>min(max(items, <double>nt), 4e18)
