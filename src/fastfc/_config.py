"""Thread settings shared by every kernel, and the build report.

fastfc runs its own OpenMP threads and calls SciPy's BLAS single-threaded
from inside them (each thread multiplies its own block of rows), so one
number, set here, decides how many cores the whole library uses.
"""
import numbers
import os
import sys
import warnings


class _State:
    """The settings the wrappers read on every call."""

    def __init__(self, num_threads):
        self.num_threads = num_threads
        # set by the wrappers when a kernel may start OpenMP threads (see
        # _after_fork_in_child), and in a child forked after that
        self.threads_started = False
        self.forked_after_threads = False


def _usable_cores():
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _max_num_threads():
    """The most threads set_num_threads accepts: 4 per usable core, and never
    fewer than 64. Past a few threads per core a kernel only gains overhead,
    while a slip like set_num_threads(10**6) would have OpenMP start thousands
    of threads per kernel, and libgomp aborts the process when it cannot
    create one. 64 keeps deliberate oversubscription (and any script that asks
    for a modest count) working on small machines."""
    return max(64, 4 * _usable_cores())


def _default_num_threads():
    """OMP_NUM_THREADS if set (its first entry, at most _max_num_threads()),
    else the cores this process may use. An unreadable value is ignored: the
    variable is often set for other programs, so it must not break the import."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        requested = int(env) if env.isdigit() else 0
    except ValueError:  # digits int() refuses: superscripts, or thousands of them
        requested = 0
    if requested > 0:
        return min(requested, _max_num_threads())
    return _usable_cores()


_state = _State(_default_num_threads())


def set_num_threads(n):
    """Use n threads in every fastfc kernel (the BLAS runs single-threaded inside them).

    Inputs:
    - n: an int from 1 to 4 per usable core (at least 64 is always allowed;
      see _max_num_threads). The default honours OMP_NUM_THREADS, capped the
      same way, else uses every core.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be a positive int, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be a positive int, got {n}")
    limit = _max_num_threads()
    if n > limit:
        raise ValueError(f"n must be at most {limit} (4 threads per usable core, at least 64), got {n}")
    if n > 1 and _state.forked_after_threads:
        warnings.warn(f"fastfc.set_num_threads({n}) ignored: this process was forked after "
                      "fastfc had run OpenMP threads, which do not survive fork, so it runs "
                      "single-threaded (start it with the spawn or forkserver method instead)",
                      RuntimeWarning, stacklevel=2)
        return
    _state.num_threads = int(n)


def get_num_threads():
    """The number of threads fastfc kernels use."""
    return _state.num_threads


def _after_fork_in_child():
    """Makes a process forked after fastfc ran OpenMP threads safe: GNU
    OpenMP's thread pool does not survive fork (the child has only the
    forking thread, but libgomp believes its workers exist), so the child's
    first parallel region would wait for them forever. A team of one never
    touches the pool, so the child runs every kernel on one thread, says so
    once, and refuses more (set_num_threads). Python's multiprocessing forks
    by default on Linux before 3.14; its spawn and forkserver methods start
    fresh interpreters that may use every thread."""
    if not _state.threads_started:
        return  # no pool to lose: the child may start threads of its own
    _state.forked_after_threads = True
    if _state.num_threads > 1:
        _state.num_threads = 1
        warnings.warn("fastfc: this process was forked after fastfc had run OpenMP threads, "
                      "which do not survive fork; its kernels run on one thread (use the "
                      "spawn or forkserver start method to keep them parallel)",
                      RuntimeWarning, stacklevel=1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS that scipy.linalg.cython_blas calls."""
    from threadpoolctl import ThreadpoolController

    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

    blas = ThreadpoolController().select(user_api="blas").lib_controllers
    scipy_own = [c for c in blas if "scipy" in os.path.basename(os.path.dirname(c.filepath))]
    # Without a bundled copy, SciPy uses the system BLAS, shared with NumPy.
    return scipy_own or blas


def _pin_blas_to_one_thread():
    """fastfc threads around the BLAS, so the BLAS itself must not spawn threads
    (threads inside threads oversubscribe the cores)."""
    for controller in _scipy_blas_controllers():
        controller.set_num_threads(1)


def blas_thread_functions():
    """Addresses of (get_num_threads, set_num_threads) of SciPy's OpenBLAS, or
    (0, 0) for another BLAS. The wrappers re-pin that BLAS to one thread before
    each kernel, in case something (threadpoolctl, say) raised it meanwhile."""
    import ctypes

    for controller in _scipy_blas_controllers():
        if controller.internal_api != "openblas":
            continue
        lib = ctypes.CDLL(controller.filepath)
        for prefix in ("scipy_", ""):
            for suffix in ("", "64_"):
                try:
                    get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
                    set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
                except AttributeError:
                    continue
                return (ctypes.cast(get, ctypes.c_void_p).value,
                        ctypes.cast(set_, ctypes.c_void_p).value)
    return 0, 0


def show_config(file=None):
    """Print the version, BLAS, OpenMP, thread count, SIMD level and float types."""
    from . import __version__, _info

    blas = _scipy_blas_controllers()
    lines = [
        f"fastfc {__version__}",
        f"python {sys.version.split()[0]}",
        "openmp: " + ("on" if _info.openmp_enabled() else
                      "off (built without OpenMP: kernels run on one thread)"),
        f"threads: {get_num_threads()} (fastfc.set_num_threads; OpenMP max {_info.max_threads()})",
        f"simd: {_info.simd_level()} (element-wise kernels dispatch at run time)",
        "float types: float32, float64",
    ]
    for c in blas:
        info = c.info()
        lines.append(
            f"blas: {info.get('internal_api')} {info.get('version')} "
            f"({info.get('threading_layer', '?')} threading, arch {info.get('architecture', '?')}, "
            f"{info.get('num_threads')} thread(s) inside each fastfc thread) at {info.get('filepath')}")
    if not blas:
        lines.append("blas: scipy.linalg.cython_blas (library not identified by threadpoolctl)")
    print("\n".join(lines), file=file)
