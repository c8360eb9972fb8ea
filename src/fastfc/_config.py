"""Thread settings shared by every kernel, and the build report.

fastfc runs its own OpenMP threads and calls SciPy's BLAS single-threaded
from inside them (each thread multiplies its own block of rows), so one
number, set here, decides how many cores the whole library uses.

On a machine whose cores other processes keep busy, every OpenMP barrier
waits for whichever thread the OS has descheduled, and a thread that spins
while it waits holds a core its partner needs. Two things keep fastfc fast
there (measured in benchmarks/busy.py; README, "Threads"): idle threads spin
briefly before they sleep (start_openmp_runtime), and the default thread
count shrinks the team while its threads keep waiting for a CPU (_TeamSizer).
"""
import os
import sys
import time
import warnings

from ._validation import check_int


class _State:
    """The settings the wrappers read on every call.

    requested: the most threads a kernel uses; source: where that number comes
    from ("automatic": every usable core, "OMP_NUM_THREADS" or
    "set_num_threads"); sizer: a _TeamSizer choosing fewer while the machine
    is busy (automatic only), else None; num_threads: the count of the next
    kernel. When the count is fixed, num_threads is a plain attribute (the
    wrappers read it on every call, so it costs nothing to compute); when it
    is automatic, the object becomes an _AutomaticState, where it is a property.
    """

    def __init__(self):
        # set by the wrappers when a kernel may start OpenMP threads (see
        # _after_fork_in_child), and in a child forked after that
        self.threads_started = False
        self.forked_after_threads = False
        self.configure_default()
        self.openmp_wait = "not started"  # how idle OpenMP threads wait, for show_config

    def configure(self, requested, source):
        self.requested, self.source = requested, source
        self.sizer = _TeamSizer(requested) if source == "automatic" and requested > 1 else None
        if self.sizer is None:
            self.__class__ = _State
            self.num_threads = requested
        else:
            self.__class__ = _AutomaticState
            self.__dict__.pop("num_threads", None)

    def configure_default(self):
        from_env = _omp_num_threads()
        if from_env is None:
            self.configure(_usable_cores(), "automatic")
        else:
            self.configure(from_env, "OMP_NUM_THREADS")


class _AutomaticState(_State):
    @property
    def num_threads(self):
        """The team size the sizer chose, reconsidered every _CHECK_SECONDS."""
        sizer = self.sizer
        if _monotonic() >= sizer.next_check:
            sizer.update()
        return sizer.team


_monotonic = time.monotonic


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


def _omp_num_threads():
    """OMP_NUM_THREADS (its first entry, at most _max_num_threads()), or None
    when it is unset or unreadable: the variable is often set for other
    programs, so it must not break the import."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        requested = int(env) if env.isdigit() else 0
    except ValueError:  # digits int() refuses: superscripts, or thousands of them
        requested = 0
    return min(requested, _max_num_threads()) if requested > 0 else None


def _default_num_threads():
    """OMP_NUM_THREADS if set (see _omp_num_threads), else the cores this process may use."""
    return _omp_num_threads() or _usable_cores()


def set_num_threads(n):
    """Use n threads in every fastfc kernel (the BLAS runs single-threaded inside them).

    Inputs:
    - n: an int from 1 to 4 per usable core (at least 64 is always allowed;
      see _max_num_threads): exactly n threads from now on, however busy the
      machine. None: back to the default, the automatic count (OMP_NUM_THREADS
      when set, used as is; else up to every usable core, fewer while other
      processes keep the cores busy; README, "Threads").
    """
    if n is None:
        _state.configure_default()
        return
    n = check_int("n", n, low=1)
    limit = _max_num_threads()
    if n > limit:
        raise ValueError(f"n must be at most {limit} (4 threads per usable core, at least 64), got {n}")
    if n > 1 and _state.forked_after_threads:
        warnings.warn(f"fastfc.set_num_threads({n}) ignored: this process was forked after "
                      "fastfc had run OpenMP threads, which do not survive fork, so it runs "
                      "single-threaded (start it with the spawn or forkserver method instead)",
                      RuntimeWarning, stacklevel=2)
        return
    _state.configure(int(n), "set_num_threads")


def get_num_threads():
    """The most threads a fastfc kernel uses: the count set by set_num_threads
    or OMP_NUM_THREADS, else every usable core (the automatic count may use
    fewer while the machine is busy; show_config says how many it uses now)."""
    return _state.requested


# ---------------------------------------------------------------- the automatic team size

_CHECK_SECONDS = 0.05  # how often the team size is reconsidered (at a kernel call)
# An interval is late when fastfc's threads waited for a CPU more than this
# fraction of the time they ran. Measured on 2 cores, a training step's
# intervals (10th-90th percentile): 0.002-0.15 on 2 threads with the cores to
# themselves (or nearly: other users' processes at a far lower priority);
# 0.7-0.8 on 2 threads with one competing busy process, 0.9-2.2 with two;
# 0.002-0.14 on 1 thread with one (benchmarks/README.md).
_LATE_RATIO = 0.5
_LATE_INTERVALS = 2  # consecutive late intervals before the team shrinks
_HOLD_SECONDS = (1.0, 16.0)  # wait before trying a larger team again: first, longest
# Intervals in which the threads ran less than this fraction of the time (an
# idle program) say nothing about the machine.
_MIN_RUN_FRACTION = 0.05


def _thread_schedstats():
    """{thread id: (ns on a CPU, ns runnable but waiting for one)} of every
    thread of this process (Linux schedstat), or None where the system does
    not keep them."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    stats = {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                on_cpu, waiting = f.read().split()[:2]
        except (OSError, ValueError):  # a thread that just ended; no schedstat
            continue
        stats[tid] = (int(on_cpu), int(waiting))
    return stats or None


class _TeamSizer:
    """The team size of the automatic thread count.

    Every _CHECK_SECONDS (at the next kernel call) it reads how long this
    process's threads ran and how long they sat runnable without a CPU. While
    they get a CPU when they need one the team is `most` threads. When they
    are late for _LATE_INTERVALS intervals in a row (other processes hold the
    cores: each barrier then waits for a descheduled thread), the team is
    halved. After a hold it tries one more thread for an interval; a try that
    is late again doubles the hold (up to _HOLD_SECONDS[1]), one that is not
    resets it. Without schedstat (not Linux) the team stays at `most`.

    Inputs: most: the largest team; clock, sample: time.monotonic and
    _thread_schedstats, replaceable for tests.
    """

    def __init__(self, most, clock=time.monotonic, sample=_thread_schedstats):
        self.most = self.team = most
        self._clock, self._sample = clock, sample
        self._late_run = 0
        self._hold = _HOLD_SECONDS[0]
        self._next_try = None  # when to try a larger team (None: at most already)
        self._trying = False
        self._start()

    def _start(self):
        self._pid = os.getpid()
        self._last = self._sample()
        self._last_time = self._clock()
        self.next_check = self._last_time + _CHECK_SECONDS if self._last is not None else float("inf")

    def update(self):
        """Judge the interval since the last update and resize the team."""
        now = self._clock()
        if os.getpid() != self._pid:  # a forked child: its own threads from here on
            self._start()
            return
        sample = self._sample()
        if sample is None:
            self.next_check = float("inf")
            return
        on_cpu = waiting = 0
        for tid, (run, wait) in sample.items():
            before = self._last.get(tid)
            if before is not None:
                on_cpu += run - before[0]
                waiting += wait - before[1]
        elapsed_ns = (now - self._last_time) * 1e9
        self._last, self._last_time, self.next_check = sample, now, now + _CHECK_SECONDS
        if on_cpu < _MIN_RUN_FRACTION * elapsed_ns:
            return
        self._judge(waiting > _LATE_RATIO * on_cpu, now)

    def _judge(self, late, now):
        if self._trying:
            self._trying = False
            if late:  # still busy: back, and wait longer before the next try
                self.team -= 1
                self._hold = min(2 * self._hold, _HOLD_SECONDS[1])
            else:
                self._hold = _HOLD_SECONDS[0]
            self._next_try = now + self._hold if self.team < self.most else None
            return
        if not late:
            self._late_run = 0
            if self._next_try is not None and now >= self._next_try:
                self.team += 1
                self._trying = True
            return
        self._late_run += 1
        if self._late_run >= _LATE_INTERVALS and self.team > 1:
            self.team = max(1, self.team // 2)
            self._late_run = 0
            self._next_try = now + self._hold


_state = _State()


# ---------------------------------------------------------------- how idle OpenMP threads wait

# GNU libgomp's threads spin this many times (then sleep) when they wait: at a
# barrier for the rest of the team, or for the next parallel region. libgomp's
# own default, 300,000, is 3-15 ms depending on the CPU (10 ms on the machine
# measured), so a thread waiting for a descheduled partner holds its core for
# most of a time slice. 30,000 is 0.3-1.5 ms (1 ms there): longer than the
# gaps between the parallel regions of a training step (at 10,000 a
# 784-512-512-10 step still slept twice), far shorter than a time slice.
SPIN_COUNT = 30_000
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _mapped_openmp_runtimes():
    """Paths of the OpenMP runtimes (libgomp, libomp, libiomp) mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return None
    paths = {f[5].strip() for f in fields if len(f) == 6}
    return {p for p in paths if os.path.basename(p).startswith(("libgomp", "libomp", "libiomp"))}


def start_openmp_runtime():
    """Load fastfc's OpenMP runtime with a short spin (SPIN_COUNT) when
    nothing else decides it, and record in _state.openmp_wait what applies.

    libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded,
    that is, when the first fastfc extension is imported. A user's own
    setting of either always wins, and so does a libgomp that another module
    loaded before fastfc (fastfc then shares it, as it was set up). The
    variable is set only while the extension loads, so programs this process
    starts see the environment as it was.
    """
    user = {k: os.environ[k] for k in _WAIT_VARIABLES if k in os.environ}
    before = _mapped_openmp_runtimes()
    if not user:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        from . import _info  # the first extension: loads the runtime
    except ImportError as error:  # a source tree without its compiled kernels
        raise ImportError(
            f"fastfc's compiled kernels are missing from {os.path.dirname(os.path.abspath(__file__))}: "
            "install fastfc (pip install .) or build it in place (README, 'Building a wheel')") from error
    finally:
        if not user:
            del os.environ["GOMP_SPINCOUNT"]
    after = _mapped_openmp_runtimes()
    if not _info.openmp_enabled():
        _state.openmp_wait = "no OpenMP"
    elif user:
        _state.openmp_wait = " ".join(f"{k}={v}" for k, v in user.items()) + " (from the environment)"
    elif before is None or after is None:
        _state.openmp_wait = f"GOMP_SPINCOUNT={SPIN_COUNT} if libgomp was not loaded before fastfc"
    elif after - before:
        _state.openmp_wait = f"GOMP_SPINCOUNT={SPIN_COUNT} (set by fastfc)"
    else:
        _state.openmp_wait = ("the runtime's defaults: it was loaded before fastfc (" +
                              ", ".join(sorted(os.path.basename(p) for p in before)) + ")")


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
    if _state.requested > 1:
        _state.configure(1, "fork")
        warnings.warn("fastfc: this process was forked after fastfc had run OpenMP threads, "
                      "which do not survive fork; its kernels run on one thread (use the "
                      "spawn or forkserver start method to keep them parallel)",
                      RuntimeWarning, stacklevel=1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS that scipy.linalg.cython_blas calls."""
    from threadpoolctl import ThreadpoolController

    from . import _common  # noqa: F401  (loads the library of scipy.linalg.cython_blas)

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


def _thread_source():
    if _state.source != "automatic":
        return "from " + ("fastfc." if _state.source == "set_num_threads" else "") + _state.source
    if _state.sizer is None:
        return "automatic: one usable core"
    return f"automatic: fewer while other processes keep the cores busy, {_state.sizer.team} now"


def show_config(file=None):
    """Print the version, BLAS, OpenMP, thread count, SIMD level and float types."""
    from . import __version__, _info

    blas = _scipy_blas_controllers()
    lines = [
        f"fastfc {__version__}",
        f"python {sys.version.split()[0]}",
        "openmp: " + ("on" if _info.openmp_enabled() else
                      "off (built without OpenMP: kernels run on one thread)"),
        f"threads: {get_num_threads()} ({_thread_source()}; OpenMP max {_info.max_threads()})",
        f"openmp wait: {_state.openmp_wait}",
        f"simd: {_info.simd_level()} (element-wise kernels dispatch at run time)",
        f"gemm: {_info.gemm_kernels()} for float32 products of suited shapes, else the BLAS",
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
