# cython: language_level=3, boundscheck=False, wraparound=False
"""Optimizer updates: the wrappers of csrc/optim.c.

Each function updates a list of parameter arrays in place, in one C call
(one OpenMP team over all their elements; two calls when the list mixes
float32 and float64; more, on slices, past some 2**20 elements a thread, so
that Ctrl-C is seen between them). Arguments, all lists of the same length:
- datas: the parameter arrays (C-contiguous float32/float64, writeable)
- grads: their gradients, same shape and dtype
- states: per parameter a 3-tuple of state arrays (same dtype and size as the
  parameter) or None where the rule does not use that slot
- steps: per parameter the count of updates including this one (1 first)
- owners: per parameter what to name in an error message (e.g. the Parameter)
Every array is checked before any is touched, so a bad one changes nothing.
Each returns None, or the exception (a KeyboardInterrupt) that a signal
handler raised between the pieces of a long update: the update has run in
full, and the caller raises it once its bookkeeping is done.
datas may instead be what tensors() returned for such lists (the others then
None): the arrays checked ahead of the call.
fastfc.optim builds these lists; use its classes rather than these.
"""
cimport numpy as cnp
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport qsort
from fastfc._common cimport (ELEMENTS_PER_PIECE, Pieces, pieces, next_piece, piece_items,
                             num_threads)
from fastfc._kernels cimport (
    fastfc_optim_tensor, fastfc_optim_rule, FASTFC_SGD, FASTFC_SGD_VELOCITY, FASTFC_ADAGRAD,
    FASTFC_RMSPROP, FASTFC_ADAM, fastfc_sgd_config, fastfc_adagrad_config,
    fastfc_rmsprop_config, fastfc_adam_config)

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from optim.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_optim_step_f32(fastfc_optim_rule rule, const void *config,
                               const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads)
    void fastfc_optim_step_f64(fastfc_optim_rule rule, const void *config,
                               const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads)
    # END GENERATED optim.c

import numpy as np

cnp.import_array()

# The update of a list of tensors of one float type: [0] float32, [1] float64.
ctypedef void (*step_fn)(fastfc_optim_rule, const void *, const fastfc_optim_tensor *, int64_t,
                         int) noexcept nogil
cdef step_fn STEP[2]
STEP[:] = [fastfc_optim_step_f32, fastfc_optim_step_f64]


cdef class _TensorList:
    """The C descriptors of a list of parameters, float32 ones first:
    tensors[:n_f32] are float32, tensors[n_f32:n] float64; keep holds the
    lists of arrays they point into."""
    cdef fastfc_optim_tensor *tensors
    cdef Py_ssize_t n, n_f32
    cdef object keep

    def __dealloc__(self):
        PyMem_Free(self.tensors)


cdef tuple _dims(cnp.ndarray a):
    """a's C-level shape (a subclass's .shape may say otherwise)."""
    return tuple(cnp.PyArray_DIMS(a)[d] for d in range(cnp.PyArray_NDIM(a)))


cdef void *_checked(object arr, cnp.ndarray data, bint writeable, object owner,
                    str what) except NULL:
    """The buffer of arr, an array like data (dtype, shape, C-contiguous);
    the checks are C comparisons: they run for every array at every step."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{owner}: {what} must be a NumPy array, got {type(arr).__name__}")
    if not cnp.PyArray_CheckExact(arr) and isinstance(arr, np.ma.MaskedArray):
        raise TypeError(f"{owner}: {what} is a masked array; its mask would be ignored")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(data) or not a.dtype.isnative:
        raise TypeError(f"{owner}: {what} is {a.dtype} but data is {data.dtype}; "
                        f"they must have the same float type")
    cdef int ndim = cnp.PyArray_NDIM(data), d
    cdef bint same_shape = cnp.PyArray_NDIM(a) == ndim
    for d in range(ndim if same_shape else 0):
        same_shape = same_shape and cnp.PyArray_DIMS(a)[d] == cnp.PyArray_DIMS(data)[d]
    if not same_shape:
        raise ValueError(f"{owner}: {what} has shape {_dims(a)} but data has shape "
                         f"{_dims(data)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{owner}: {what} must be a C-contiguous array")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{owner}: {what} is read-only")
    return cnp.PyArray_DATA(a)


cdef tuple _STATE_NAMES = ("state array 0", "state array 1", "state array 2")
cdef tuple _ARRAY_NAMES = ("data", "grad") + _STATE_NAMES


cdef struct _Region:
    uintptr_t start, end  # [start, end): the bytes of one array
    Py_ssize_t tensor     # which parameter (index into owners)
    int array             # what it is: _ARRAY_NAMES[array]
    bint written          # data and state arrays are; gradients are only read


cdef int _by_start(const void *a, const void *b) noexcept nogil:
    cdef uintptr_t x = (<const _Region *>a).start, y = (<const _Region *>b).start
    return (x > y) - (x < y)


cdef void _check_apart(_Region *regions, Py_ssize_t n, object owners) except *:
    """ValueError naming both arrays when an array the kernel writes (a
    parameter or a state array) overlaps any other array of the call: the
    threads would read-modify-write the same memory at once (or a gradient
    would change while it is read). Gradients may share memory with each
    other. Sorted by start: n log n for n arrays, microseconds per step."""
    qsort(regions, n, sizeof(_Region), _by_start)
    cdef Py_ssize_t i, reach = -1, reach_written = -1  # the regions reaching furthest so far
    cdef Py_ssize_t other = -1
    for i in range(n):
        if regions[i].written and reach >= 0 and regions[i].start < regions[reach].end:
            other = reach
        elif reach_written >= 0 and regions[i].start < regions[reach_written].end:
            other = reach_written
        if other >= 0:
            a, b = regions[other], regions[i]
            raise ValueError(f"{owners[a.tensor]}: {_ARRAY_NAMES[a.array]} and "
                             f"{owners[b.tensor]}: {_ARRAY_NAMES[b.array]} share memory; "
                             "every parameter, gradient and state array of a step must "
                             "have its own (gradients may be shared)")
        if reach < 0 or regions[i].end > regions[reach].end:
            reach = i
        if regions[i].written and (reach_written < 0
                                   or regions[i].end > regions[reach_written].end):
            reach_written = i


cdef _TensorList _tensor_list(list datas, list grads, list states, list steps, object owners):
    cdef Py_ssize_t n = len(datas), k, slot, pos
    if len(grads) != n or len(states) != n or len(steps) != n:
        raise ValueError("datas, grads, states and steps must have the same length")
    cdef _TensorList out = _TensorList()
    out.tensors = <fastfc_optim_tensor *>PyMem_Malloc(max(n, 1) * sizeof(fastfc_optim_tensor))
    if out.tensors == NULL:
        raise MemoryError()
    out.n = n
    out.n_f32 = 0
    cdef cnp.ndarray data
    for k in range(n):
        if not isinstance(datas[k], np.ndarray) or cnp.PyArray_TYPE(<cnp.ndarray>datas[k]) not in (
                cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise TypeError(f"{owners[k]}: data must be a float32 or float64 NumPy array")
        if cnp.PyArray_TYPE(<cnp.ndarray>datas[k]) == cnp.NPY_FLOAT32:
            out.n_f32 += 1
    cdef Py_ssize_t next_f32 = 0, next_f64 = out.n_f32
    cdef fastfc_optim_tensor *t
    # every array of the call, for _check_apart: at most 5 per parameter
    cdef _Region *regions = <_Region *>PyMem_Malloc(max(5 * n, 1) * sizeof(_Region))
    if regions == NULL:
        raise MemoryError()
    cdef Py_ssize_t n_regions = 0
    cdef int64_t nbytes
    cdef const void *array
    try:
        for k in range(n):
            data = <cnp.ndarray>datas[k]
            if cnp.PyArray_TYPE(data) == cnp.NPY_FLOAT32:
                pos = next_f32
                next_f32 += 1
            else:
                pos = next_f64
                next_f64 += 1
            t = &out.tensors[pos]
            t.param = _checked(data, data, True, owners[k], "data")
            t.grad = _checked(grads[k], data, False, owners[k], "grad")
            t.n = cnp.PyArray_SIZE(data)
            t.step = steps[k]
            state = states[k]
            for slot in range(3):
                arr = state[slot] if state is not None else None
                t.state[slot] = NULL if arr is None else _checked(
                    arr, data, True, owners[k], _STATE_NAMES[slot])
            nbytes = t.n * cnp.PyArray_ITEMSIZE(data)
            if nbytes == 0:
                continue
            for slot in range(5):  # data, grad, the state arrays (see _ARRAY_NAMES)
                array = (<const void *>t.param if slot == 0 else
                         t.grad if slot == 1 else <const void *>t.state[slot - 2])
                if array == NULL:
                    continue
                regions[n_regions].start = <uintptr_t>array
                regions[n_regions].end = <uintptr_t>array + <uintptr_t>nbytes
                regions[n_regions].tensor = k
                regions[n_regions].array = slot
                regions[n_regions].written = slot != 1
                n_regions += 1
        _check_apart(regions, n_regions, owners)
    finally:
        PyMem_Free(regions)
    return out


cdef _TensorList _checked_list(object datas, object grads, object states, object steps,
                               object owners):
    """datas when it is what tensors() made, else the lists checked (see tensors)."""
    if isinstance(datas, _TensorList):
        return <_TensorList>datas
    if owners is None:
        owners = [f"params[{k}]" for k in range(len(datas))]
    cdef _TensorList out = _tensor_list(datas, grads, states, steps, owners)
    out.keep = (datas, grads, states, steps)
    return out


def tensors(list datas, list grads, list states, list steps, owners):
    """The arrays of one call checked now (everything the update functions
    check), for an update function to take as its datas argument (grads,
    states, steps and owners then None): a step that runs one call per param
    group checks every group's arrays before the first call, so a bad array
    in a later group leaves the earlier groups untouched too."""
    return _checked_list(datas, grads, states, steps, owners)


cdef object _run_pieces(fastfc_optim_rule rule, bint single, const void *config,
                        const fastfc_optim_tensor *tensors, int64_t n, int nt):
    """The update over n tensors of one float type, in pieces of about
    ELEMENTS_PER_PIECE elements per thread with pending signal handlers run
    between them (Ctrl-C, see next_piece). A piece is a list of slices of
    the tensors; elements update independently (each tensor's step scalars
    go with every slice of it), so the pieces change no result.

    A step is all or nothing: the first exception a handler raises (a
    KeyboardInterrupt) is returned after every piece has run, for the caller
    to raise once its own bookkeeping is done; None when there was none."""
    cdef step_fn step = STEP[0 if single else 1]
    cdef object raised = None
    cdef int64_t total = 0, k
    for k in range(n):
        total += tensors[k].n
    cdef Pieces p = pieces(total, piece_items(1, ELEMENTS_PER_PIECE, nt))
    if total <= p.size:  # the usual case: one call, no slices
        with nogil:
            step(rule, config, tensors, n, nt)
        return None
    # A piece holds at most n + 1 slices (n tensors, the first one cut twice).
    cdef fastfc_optim_tensor *part = <fastfc_optim_tensor *>PyMem_Malloc(
        (n + 1) * sizeof(fastfc_optim_tensor))
    if part == NULL:
        raise MemoryError()
    cdef int64_t size = 4 if single else 8, off = 0, budget, take, count, slot
    cdef bint more = True
    k = 0
    try:
        while more:
            try:
                more = next_piece(&p)  # runs signal handlers before every piece but the first
            except BaseException as exc:  # p is on the next piece all the same
                raised = exc if raised is None else raised
            if not more:
                break
            count, budget = 0, p.hi - p.lo
            while k < n and budget > 0:
                take = min(tensors[k].n - off, budget)
                part[count] = tensors[k]
                part[count].n = take
                part[count].param = <char *>tensors[k].param + off * size
                part[count].grad = <const char *>tensors[k].grad + off * size
                for slot in range(3):
                    if tensors[k].state[slot] != NULL:
                        part[count].state[slot] = <char *>tensors[k].state[slot] + off * size
                count += 1
                budget -= take
                off += take
                if off == tensors[k].n:
                    k, off = k + 1, 0
            with nogil:
                step(rule, config, part, count, nt)
    finally:
        PyMem_Free(part)
    return raised


cdef object _step(fastfc_optim_rule rule, const void *config, _TensorList ts):
    """The update of rule over every tensor of ts, its float32 ones, then its
    float64 ones; returns what _run_pieces returns (the first of the two)."""
    cdef int nt = num_threads()
    cdef object raised = None
    if ts.n_f32:
        raised = _run_pieces(rule, True, config, ts.tensors, ts.n_f32, nt)
    if ts.n > ts.n_f32:
        second = _run_pieces(rule, False, config, ts.tensors + ts.n_f32, ts.n - ts.n_f32, nt)
        raised = second if raised is None else raised
    return raised


def sgd_step(datas, grads, states, steps, owners, double lr,
             double momentum, double dampening, double weight_decay, bint nesterov,
             bint maximize):
    """torch.optim.SGD's update; states[k][0] is the momentum buffer (None
    without momentum), set to the gradient where steps[k] == 1."""
    cdef _TensorList ts = _checked_list(datas, grads, states, steps, owners)
    cdef fastfc_sgd_config c
    c.lr, c.momentum, c.dampening, c.weight_decay = lr, momentum, dampening, weight_decay
    c.nesterov, c.maximize = nesterov, maximize
    return _step(FASTFC_SGD, &c, ts)


def sgd_velocity_step(datas, grads, states, steps, owners, double lr,
                      double momentum):
    """The course notes' momentum: v = momentum * v - lr * grad; data += v,
    states[k][0] being the velocity v."""
    cdef _TensorList ts = _checked_list(datas, grads, states, steps, owners)
    cdef fastfc_sgd_config c
    c.lr, c.momentum, c.dampening, c.weight_decay = lr, momentum, 0.0, 0.0
    c.nesterov, c.maximize = False, False
    return _step(FASTFC_SGD_VELOCITY, &c, ts)


def adagrad_step(datas, grads, states, steps, owners, double lr,
                 double lr_decay, double weight_decay, double eps, bint maximize):
    """torch.optim.Adagrad's update; states[k][0] is the sum of squares."""
    cdef _TensorList ts = _checked_list(datas, grads, states, steps, owners)
    cdef fastfc_adagrad_config c
    c.lr, c.lr_decay, c.weight_decay, c.eps, c.maximize = lr, lr_decay, weight_decay, eps, maximize
    return _step(FASTFC_ADAGRAD, &c, ts)


def rmsprop_step(datas, grads, states, steps, owners, double lr,
                 double alpha, double eps, double weight_decay, double momentum,
                 bint maximize):
    """torch.optim.RMSprop's update; states[k] = (square_avg, momentum_buffer
    or None, grad_avg or None), the last given exactly when centered."""
    cdef _TensorList ts = _checked_list(datas, grads, states, steps, owners)
    cdef fastfc_rmsprop_config c
    c.lr, c.alpha, c.eps, c.weight_decay, c.momentum = lr, alpha, eps, weight_decay, momentum
    c.maximize = maximize
    return _step(FASTFC_RMSPROP, &c, ts)


def adam_step(datas, grads, states, steps, owners, double lr,
              double beta1, double beta2, double eps, double weight_decay, bint decoupled,
              bint maximize):
    """torch.optim.Adam's update (AdamW's when decoupled); states[k] =
    (exp_avg, exp_avg_sq, max_exp_avg_sq or None), the last with amsgrad."""
    cdef _TensorList ts = _checked_list(datas, grads, states, steps, owners)
    cdef fastfc_adam_config c
    c.lr, c.beta1, c.beta2, c.eps, c.weight_decay = lr, beta1, beta2, eps, weight_decay
    c.decoupled, c.maximize = decoupled, maximize
    return _step(FASTFC_ADAM, &c, ts)
