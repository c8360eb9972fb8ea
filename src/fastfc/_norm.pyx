# cython: language_level=3, boundscheck=False, wraparound=False
"""Batch, spatial batch, layer and group normalization: the wrappers of
csrc/norm.c. Each forward returns (out, cache), each backward takes
(dout, cache) and returns (dx, dgamma, dbeta), as in the course notes."""
import math
import numbers

cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.string cimport memset
from fastfc._common cimport (ELEMENTS_PER_PIECE, Pieces, pieces, next_piece, piece_items,
                             as_float_array, check_float_array, check_same_dtype, check_nonempty,
                             is_float32, data_of, num_threads, output_array, plain_array)
from fastfc._kernels cimport fastfc_norm_geom, fastfc_norm_args

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from norm.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int64_t fastfc_groupnorm_chunk_samples(int64_t n_batch, int64_t group_size)
    int64_t fastfc_groupnorm_tiles(const fastfc_norm_geom *g)
    void fastfc_batchnorm_stats_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads)
    void fastfc_batchnorm_stats_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads)
    void fastfc_batchnorm_normalize_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                        int n_threads)
    void fastfc_batchnorm_normalize_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                        int n_threads)
    void fastfc_batchnorm_grad_sums_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                        int n_threads)
    void fastfc_batchnorm_grad_sums_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                        int n_threads)
    void fastfc_batchnorm_input_grad_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                         int n_threads)
    void fastfc_batchnorm_input_grad_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                         int n_threads)
    void fastfc_groupnorm_forward_f32(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                      int n_threads)
    void fastfc_groupnorm_forward_f64(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                      int n_threads)
    void fastfc_groupnorm_backward_f32(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                       int n_threads)
    void fastfc_groupnorm_backward_f64(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                       int n_threads)
    void fastfc_groupnorm_param_grads_f32(const fastfc_norm_args *a)
    void fastfc_groupnorm_param_grads_f64(const fastfc_norm_args *a)
    # END GENERATED norm.c

import numpy as np

# The public functions, re-exported by fastfc.functional.
__all__ = ["batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward",
           "spatial_batchnorm_backward", "layernorm_forward", "layernorm_backward",
           "groupnorm_forward", "groupnorm_backward"]

cnp.import_array()

# The kernels take their arrays in a fastfc_norm_args (untyped pointers), so
# a kernel's float and double versions have one C type: tables indexed by
# _dtype_index pick the one of the arrays' type.
ctypedef void (*range_fn)(const fastfc_norm_args *, int64_t, int64_t, int) noexcept nogil
ctypedef void (*param_grads_fn)(const fastfc_norm_args *) noexcept nogil

cdef enum BatchnormPass:
    STATS, NORMALIZE, GRAD_SUMS, INPUT_GRAD

cdef range_fn BATCHNORM[4][2]  # [BatchnormPass][dtype]
BATCHNORM[:] = [[fastfc_batchnorm_stats_f32, fastfc_batchnorm_stats_f64],
                [fastfc_batchnorm_normalize_f32, fastfc_batchnorm_normalize_f64],
                [fastfc_batchnorm_grad_sums_f32, fastfc_batchnorm_grad_sums_f64],
                [fastfc_batchnorm_input_grad_f32, fastfc_batchnorm_input_grad_f64]]
cdef range_fn GROUPNORM_FORWARD[2]
GROUPNORM_FORWARD[:] = [fastfc_groupnorm_forward_f32, fastfc_groupnorm_forward_f64]
cdef range_fn GROUPNORM_BACKWARD[2]
GROUPNORM_BACKWARD[:] = [fastfc_groupnorm_backward_f32, fastfc_groupnorm_backward_f64]
cdef param_grads_fn GROUPNORM_PARAM_GRADS[2]
GROUPNORM_PARAM_GRADS[:] = [fastfc_groupnorm_param_grads_f32, fastfc_groupnorm_param_grads_f64]


cdef inline int _dtype_index(object arr):
    """0 for float32 arrays, 1 for float64: the column of the tables above."""
    return 0 if is_float32(arr) else 1


cdef int _run_in_pieces(range_fn kernel, const fastfc_norm_args *args, int64_t count,
                        double item_work) except -1:
    """kernel over [0, count) in pieces of items of item_work elements each."""
    cdef int nt = num_threads()
    cdef Pieces p = pieces(count, piece_items(item_work, ELEMENTS_PER_PIECE, nt))
    while next_piece(&p):
        with nogil:
            kernel(args, p.lo, p.hi, nt)
    return 0


# ---- argument checks ----------------------------------------------------------

cdef double _real(object value, str name, str expected) except? -1:
    """value as a double; TypeError unless it is a real number (not a bool)."""
    if type(value) is float:  # the usual case, without the ABC check
        return <double>value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    return float(value)


cdef double _check_eps(object eps) except -1:
    cdef double value = _real(eps, "eps", "a positive float")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"eps must be a positive, finite float, got {eps!r}")
    return value


cdef double _check_momentum(object momentum) except -1:
    cdef double value = _real(momentum, "momentum", "a float in [0, 1]")
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return value


cdef bint _check_train(object train) except -1:
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train must be True or False, got {train!r}")
    return bool(train)


cdef cnp.ndarray _input(object x, str name, int ndim, str layout):
    """x as a C-contiguous, non-empty float array of ndim dimensions (layout
    names them for the message)."""
    cdef cnp.ndarray xa = as_float_array(x, name)
    if xa.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout}, got shape {(<object>xa).shape}")
    check_nonempty(xa, name)
    return xa


cdef cnp.ndarray _vector(object a, str name, tuple shape, cnp.ndarray like, str like_name):
    """a as a C-contiguous float array of exactly this shape, of like's dtype
    (checked before a copy is made)."""
    cdef cnp.ndarray arr = check_float_array(a, name)
    if cnp.PyArray_TYPE(arr) != cnp.PyArray_TYPE(like):  # the type, whatever the byte order
        check_same_dtype(like, like_name, arr, name)
    if (<object>arr).shape != shape:
        raise ValueError(f"{name} must have shape {shape} (from {like_name}'s shape "
                         f"{(<object>like).shape}), got {(<object>arr).shape}")
    return as_float_array(arr, name)


cdef cnp.ndarray _running_stat(object a, str name, int64_t channels, cnp.ndarray xa, bint train):
    """A running statistic (channels,) of x's dtype. Training updates it in
    place, so it must then be an array the kernel can write (a copy would be
    updated instead and the caller's left stale): C-contiguous, aligned,
    writeable, in the machine's byte order."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place), "
                        f"got {type(a).__name__}")
    # the base-class array (a subclass's .shape may lie; masked arrays refused)
    cdef cnp.ndarray arr = <cnp.ndarray>plain_array(a, name)
    check_same_dtype(xa, "x", arr, name)
    if (<object>arr).shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) (one per channel of x, "
                         f"shape {(<object>xa).shape}), got {(<object>arr).shape}")
    if not train:
        return as_float_array(arr, name)
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISWRITEABLE(arr)):
        raise ValueError(f"{name} is updated in place in training: it must be a C-contiguous, "
                         f"aligned and writeable array, not a read-only or strided one")
    return arr


cdef void _check_apart(cnp.ndarray a, str name, tuple others) except *:
    """a, written by the kernel, shares no memory with the arrays of others
    (pairs (name, array)); all of them C-contiguous, so their bytes are one
    range each (cheaper to compare than np.may_share_memory)."""
    cdef char *start = <char *>cnp.PyArray_DATA(a)
    cdef char *other_start
    cdef cnp.ndarray other
    for other_name, other_object in others:
        other = <cnp.ndarray>other_object
        other_start = <char *>cnp.PyArray_DATA(other)
        if (start < other_start + cnp.PyArray_NBYTES(other)
                and other_start < start + cnp.PyArray_NBYTES(a)):
            raise ValueError(f"{name} overlaps {other_name}; pass separate arrays")


cdef tuple _backward_arrays(fastfc_norm_args *args, object dout, cnp.ndarray xa,
                            cnp.ndarray ga, cnp.ndarray ma, cnp.ndarray sa,
                            object dx, object dgamma, object dbeta):
    """Checks dout against x (from the cache), makes (dx, dgamma, dbeta) a
    backward writes into (see output_array), clears args and points it at
    the arrays every backward kernel reads and writes. Returns
    (dout as an array, dx, dgamma, dbeta): the caller keeps the first alive
    while args points at it (it may be a converted copy)."""
    cdef cnp.ndarray da = as_float_array(dout, "dout")
    check_same_dtype(da, "dout", xa, "x (from the cache)")
    if (<object>da).shape != (<object>xa).shape:
        raise ValueError(f"dout must have the forward output's shape {(<object>xa).shape}, "
                         f"got {(<object>da).shape}")
    dtype, channels = xa.dtype, xa.shape[1]
    inputs = (da, xa, ga, ma, sa)
    dx = output_array(dx, "dx", (<object>xa).shape, dtype, inputs)
    dgamma = output_array(dgamma, "dgamma", (channels,), dtype, inputs + (dx,))
    dbeta = output_array(dbeta, "dbeta", (channels,), dtype, inputs + (dx, dgamma))
    memset(args, 0, sizeof(args[0]))
    args.dout, args.x, args.gamma = data_of(da), data_of(xa), data_of(ga)
    args.mean, args.inv_std = data_of(ma), data_of(sa)
    args.dx, args.dgamma, args.dbeta = data_of(dx), data_of(dgamma), data_of(dbeta)
    return da, dx, dgamma, dbeta


cdef tuple _unpack_cache(object cache, int length, str forward):
    if not isinstance(cache, tuple) or len(cache) != length:
        raise ValueError(f"cache does not come from {forward} (expected a tuple of {length})")
    return cache


# ---- batch normalization --------------------------------------------------------

cdef tuple _batchnorm_forward(cnp.ndarray xa, int64_t spatial, object gamma, object beta,
                              object running_mean, object running_var, object train,
                              object momentum, object eps, object out):
    cdef int64_t n_batch = xa.shape[0], channels = xa.shape[1]
    cdef bint training = _check_train(train)
    cdef double momentum_value = _check_momentum(momentum)
    cdef double eps_value = _check_eps(eps)
    shape = (channels,)
    cdef cnp.ndarray ga = _vector(gamma, "gamma", shape, xa, "x")
    cdef cnp.ndarray ba = _vector(beta, "beta", shape, xa, "x")
    cdef cnp.ndarray rm = _running_stat(running_mean, "running_mean", channels, xa, training)
    cdef cnp.ndarray rv = _running_stat(running_var, "running_var", channels, xa, training)
    if training:
        _check_apart(rm, "running_mean", (("x", xa), ("gamma", ga), ("beta", ba),
                                          ("running_var", rv)))
        _check_apart(rv, "running_var", (("x", xa), ("gamma", ga), ("beta", ba)))
    out = output_array(out, "out", (<object>xa).shape, xa.dtype, (xa, ga, ba, rm, rv))
    cdef cnp.ndarray mean = np.empty(shape, xa.dtype)
    cdef cnp.ndarray inv_std = np.empty(shape, xa.dtype)
    cdef fastfc_norm_args args
    memset(&args, 0, sizeof(args))
    args.geom.n_batch, args.geom.channels, args.geom.spatial = n_batch, channels, spatial
    args.x, args.gamma, args.beta = data_of(xa), data_of(ga), data_of(ba)
    args.running_mean, args.running_var = data_of(rm), data_of(rv)
    args.mean, args.inv_std, args.out = data_of(mean), data_of(inv_std), data_of(out)
    args.train, args.momentum, args.eps = training, momentum_value, eps_value
    cdef int dtype = _dtype_index(xa)
    _batchnorm_run(&args, STATS, dtype)
    _batchnorm_run(&args, NORMALIZE, dtype)
    return out, (xa, ga, mean, inv_std, training)


cdef int _batchnorm_run(const fastfc_norm_args *args, BatchnormPass kernel,
                        int dtype) except -1:
    """One pass of the kernel in pieces: the reductions (STATS, GRAD_SUMS)
    over whole channels, the element-wise passes over whole samples."""
    cdef bint by_channel = kernel == STATS or kernel == GRAD_SUMS
    cdef int64_t count = args.geom.channels if by_channel else args.geom.n_batch
    cdef double item_work = args.geom.spatial * <double>(
        args.geom.n_batch if by_channel else args.geom.channels)
    return _run_in_pieces(BATCHNORM[<int>kernel][dtype], args, count, item_work)


cdef tuple _batchnorm_backward(object dout, object cache, int ndim, str layout, str forward,
                               object dx, object dgamma, object dbeta):
    x, gamma, mean, inv_std, train = _unpack_cache(cache, 5, forward)
    cdef cnp.ndarray xa = _input(x, "x (from the cache)", ndim, layout)
    cdef int64_t channels = xa.shape[1]
    shape = (channels,)
    cdef cnp.ndarray ga = _vector(gamma, "gamma (from the cache)", shape, xa, "x")
    cdef cnp.ndarray ma = _vector(mean, "mean (from the cache)", shape, xa, "x")
    cdef cnp.ndarray sa = _vector(inv_std, "inv_std (from the cache)", shape, xa, "x")
    cdef bint training = _check_train(train)
    cdef fastfc_norm_args args
    da, dx, dgamma, dbeta = _backward_arrays(&args, dout, xa, ga, ma, sa, dx, dgamma, dbeta)
    args.geom.n_batch, args.geom.channels = xa.shape[0], channels
    args.geom.spatial = xa.size // (xa.shape[0] * channels)
    args.train = training
    cdef cnp.ndarray factors = np.empty((3, channels), xa.dtype)
    args.grad_factors = data_of(factors)
    cdef int dtype = _dtype_index(xa)
    _batchnorm_run(&args, GRAD_SUMS, dtype)
    _batchnorm_run(&args, INPUT_GRAD, dtype)
    return dx, dgamma, dbeta


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train=True, momentum=0.9,
                      eps=1e-5, out=None):
    """Batch normalization of (N, D) features: each feature is normalized to
    zero mean and unit variance over the batch, then scaled and shifted:
    out = (x - mean) / sqrt(var + eps) * gamma + beta.

    In training (train=True) mean and var are the batch's (var biased,
    dividing by N), and the running averages are updated in place with the
    course's convention
        running_mean = momentum * running_mean + (1 - momentum) * mean
    (likewise running_var, with the biased batch variance). torch.nn.BatchNorm1d's
    momentum is 1 - this one, and torch keeps the unbiased variance instead.
    At test time (train=False) the running averages are used, and left alone.
    With N = 1 the batch variance is 0 and out = beta.

    Inputs:
    - x: (N, D), float32 or float64
    - gamma, beta: (D,) scale and shift, of x's dtype
    - running_mean, running_var: (D,) NumPy arrays of x's dtype; in training
      they must be C-contiguous and writeable (they are written in place)
    - train: True or False
    - momentum: in [0, 1]; eps: positive, added to the variance
    - out: None, or a (N, D) array of x's dtype (C-contiguous, writeable,
      apart from the inputs) to write the result into

    Returns (out (N, D), cache) for batchnorm_backward; the cache holds
    (x, gamma, mean, inv_std, train), inv_std = 1 / sqrt(var + eps).
    Statistics are summed in double, whatever the dtype, and the results are
    the same for any thread count.
    """
    xa = _input(x, "x", 2, "(N, D)")
    return _batchnorm_forward(xa, 1, gamma, beta, running_mean, running_var, train, momentum,
                              eps, out)


def batchnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Backward pass of batch normalization.

    In training mode, with g = dout * gamma and sums over the batch,
        dx = inv_std / N * (N * g - sum(g) - x_hat * sum(g * x_hat)),
    x_hat = (x - mean) * inv_std; after a test-mode forward the statistics
    are constants and dx = dout * gamma * inv_std.

    Inputs:
    - dout: (N, D) upstream gradient
    - cache: from batchnorm_forward (either mode)
    - dx, dgamma, dbeta: None, or arrays of the results' shapes and x's
      dtype to write them into (as out of batchnorm_forward)

    Returns (dx (N, D), dgamma (D,), dbeta (D,)), dgamma = sum(dout * x_hat),
    dbeta = sum(dout) over the batch.
    """
    return _batchnorm_backward(dout, cache, 2, "(N, D)", "batchnorm_forward", dx, dgamma, dbeta)


def spatial_batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train=True,
                              momentum=0.9, eps=1e-5, out=None):
    """Spatial batch normalization of (N, C, H, W) maps: batchnorm_forward
    with statistics per channel over the N * H * W values of the channel (the
    course's spatial batchnorm, torch's BatchNorm2d), computed on the NCHW
    layout directly.

    Inputs: x (N, C, H, W); gamma, beta, running_mean, running_var (C,);
    train, momentum, eps, out as in batchnorm_forward.
    Returns (out (N, C, H, W), cache) for spatial_batchnorm_backward.
    """
    xa = _input(x, "x", 4, "(N, C, H, W)")
    return _batchnorm_forward(xa, xa.shape[2] * xa.shape[3], gamma, beta, running_mean,
                              running_var, train, momentum, eps, out)


def spatial_batchnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Backward pass of spatial batch normalization: batchnorm_backward with
    the sums over N, H and W.

    Inputs: dout (N, C, H, W); cache from spatial_batchnorm_forward; dx,
    dgamma, dbeta as in batchnorm_backward.
    Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,)).
    """
    return _batchnorm_backward(dout, cache, 4, "(N, C, H, W)", "spatial_batchnorm_forward",
                               dx, dgamma, dbeta)


# ---- group and layer normalization -------------------------------------------

cdef int64_t _check_groups(object num_groups, int64_t channels) except -1:
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"num_groups must be an int, got {num_groups!r}")
    if num_groups < 1 or num_groups > channels or channels % num_groups:
        raise ValueError(f"num_groups must be a divisor of the {channels} channels of x, "
                         f"got {num_groups}")
    return <int64_t>num_groups


cdef tuple _groupnorm_forward(cnp.ndarray xa, int64_t groups, int64_t spatial, object gamma,
                              object beta, object eps, object out, tuple stat_shape):
    cdef int64_t n_batch = xa.shape[0], channels = xa.shape[1]
    cdef double eps_value = _check_eps(eps)
    cdef cnp.ndarray ga = _vector(gamma, "gamma", (channels,), xa, "x")
    cdef cnp.ndarray ba = _vector(beta, "beta", (channels,), xa, "x")
    out = output_array(out, "out", (<object>xa).shape, xa.dtype, (xa, ga, ba))
    cdef cnp.ndarray mean = np.empty(stat_shape, xa.dtype)
    cdef cnp.ndarray inv_std = np.empty(stat_shape, xa.dtype)
    cdef fastfc_norm_args args
    memset(&args, 0, sizeof(args))
    args.geom.n_batch, args.geom.channels = n_batch, channels
    args.geom.spatial, args.geom.groups = spatial, groups
    args.x, args.gamma, args.beta = data_of(xa), data_of(ga), data_of(ba)
    args.mean, args.inv_std, args.out = data_of(mean), data_of(inv_std), data_of(out)
    args.eps = eps_value
    cdef int64_t rows = n_batch * groups
    _run_in_pieces(GROUPNORM_FORWARD[_dtype_index(xa)], &args, rows, <double>xa.size / rows)
    return out, ga, mean, inv_std


cdef tuple _groupnorm_backward(object dout, cnp.ndarray xa, int64_t groups, int64_t spatial,
                               object gamma, object mean, object inv_std, tuple stat_shape,
                               object dx, object dgamma, object dbeta):
    cdef int64_t n_batch = xa.shape[0], channels = xa.shape[1]
    cdef cnp.ndarray ga = _vector(gamma, "gamma (from the cache)", (channels,), xa, "x")
    cdef cnp.ndarray ma = _vector(mean, "mean (from the cache)", stat_shape, xa, "x")
    cdef cnp.ndarray sa = _vector(inv_std, "inv_std (from the cache)", stat_shape, xa, "x")
    cdef fastfc_norm_args args
    da, dx, dgamma, dbeta = _backward_arrays(&args, dout, xa, ga, ma, sa, dx, dgamma, dbeta)
    args.geom.n_batch, args.geom.channels = n_batch, channels
    args.geom.spatial, args.geom.groups = spatial, groups
    cdef int64_t group_size = xa.size // (n_batch * groups)
    args.geom.chunk_samples = fastfc_groupnorm_chunk_samples(n_batch, group_size)
    cdef int64_t chunks = (n_batch + args.geom.chunk_samples - 1) // args.geom.chunk_samples
    cdef cnp.ndarray partial = np.empty((chunks, 2, channels), np.float64)
    args.partial = <double *>data_of(partial)
    cdef int dtype = _dtype_index(xa)
    _run_in_pieces(GROUPNORM_BACKWARD[dtype], &args, fastfc_groupnorm_tiles(&args.geom),
                   <double>args.geom.chunk_samples * group_size)
    with nogil:
        GROUPNORM_PARAM_GRADS[dtype](&args)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, *, eps=1e-5, out=None):
    """Layer normalization of (N, D) features: each row is normalized to zero
    mean and unit variance over its D features (biased variance), then scaled
    and shifted per feature: out = (x - mean) / sqrt(var + eps) * gamma + beta.
    The same in training and at test time.

    Inputs:
    - x: (N, D), float32 or float64
    - gamma, beta: (D,), of x's dtype
    - eps: positive, added to the variance
    - out: None, or an (N, D) array to write the result into (as in
      batchnorm_forward)

    Returns (out (N, D), cache) for layernorm_backward; the cache holds
    (x, gamma, mean (N,), inv_std (N,)).
    """
    xa = _input(x, "x", 2, "(N, D)")
    out, ga, mean, inv_std = _groupnorm_forward(xa, 1, 1, gamma, beta, eps, out, (xa.shape[0],))
    return out, (xa, ga, mean, inv_std)


def layernorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Backward pass of layer normalization: per row, with g = dout * gamma,
        dx = inv_std / D * (D * g - sum(g) - x_hat * sum(g * x_hat))
    (sums over the row's features); dgamma = sum(dout * x_hat), dbeta =
    sum(dout) over the batch.

    Inputs: dout (N, D); cache from layernorm_forward; dx, dgamma, dbeta as
    in batchnorm_backward.
    Returns (dx (N, D), dgamma (D,), dbeta (D,)).
    """
    x, gamma, mean, inv_std = _unpack_cache(cache, 4, "layernorm_forward")
    xa = _input(x, "x (from the cache)", 2, "(N, D)")
    return _groupnorm_backward(dout, xa, 1, 1, gamma, mean, inv_std, (xa.shape[0],), dx, dgamma,
                               dbeta)


def groupnorm_forward(x, gamma, beta, num_groups, *, eps=1e-5, out=None):
    """Group normalization of (N, C, H, W) maps: the C channels form
    num_groups groups of C / num_groups adjacent channels, and each sample's
    group is normalized over its C / num_groups * H * W values (biased
    variance); then each channel is scaled and shifted:
    out = (x - mean) / sqrt(var + eps) * gamma + beta. num_groups = 1 is
    layer normalization over (C, H, W), num_groups = C instance normalization.

    Inputs:
    - x: (N, C, H, W), float32 or float64
    - gamma, beta: (C,), of x's dtype
    - num_groups: an int dividing C
    - eps, out: as in layernorm_forward

    Returns (out (N, C, H, W), cache) for groupnorm_backward; the cache holds
    (x, gamma, mean (N, G), inv_std (N, G), num_groups).
    """
    xa = _input(x, "x", 4, "(N, C, H, W)")
    groups = _check_groups(num_groups, xa.shape[1])
    out, ga, mean, inv_std = _groupnorm_forward(xa, groups, xa.shape[2] * xa.shape[3], gamma,
                                                beta, eps, out, (xa.shape[0], groups))
    return out, (xa, ga, mean, inv_std, groups)


def groupnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Backward pass of group normalization: layernorm_backward's formula per
    (sample, group), over the group's values; dgamma, dbeta per channel,
    summed over N, H, W.

    Inputs: dout (N, C, H, W); cache from groupnorm_forward; dx, dgamma,
    dbeta as in batchnorm_backward.
    Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,)).
    """
    x, gamma, mean, inv_std, num_groups = _unpack_cache(cache, 5, "groupnorm_forward")
    xa = _input(x, "x (from the cache)", 4, "(N, C, H, W)")
    groups = _check_groups(num_groups, xa.shape[1])
    return _groupnorm_backward(dout, xa, groups, xa.shape[2] * xa.shape[3], gamma, mean, inv_std,
                               (xa.shape[0], groups), dx, dgamma, dbeta)
