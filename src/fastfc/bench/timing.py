"""Running the cases: the warm-up check against the reference, the
round-robin timing, the thread settings of every side."""
import contextlib
import gc
import os
import platform
import statistics
import sys
import time

import numpy as np

from .. import _config
from .cases import CASES, CEILING, Setup
from .report import format_row, header, machine_description

# How far fastfc's and torch's results may stray from the reference's, relative
# to the largest magnitude in each result (sums in a different order round differently).
TOLERANCE = {np.float32: 2e-4, np.float64: 1e-8}


def _seconds_per_call(call, loops):
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - start) / loops


def measure(calls, quick=False):
    """Median seconds per call of each callable, timed round-robin.

    Each callable gets a loop count making one sample last about 5 ms (2 ms
    with quick), from the fastest of up to three single calls; each round takes one
    sample of every side, starting with a different side each round. Rounds
    go on for a time budget, between a minimum and a maximum count. Short
    samples and many rounds keep the median clear of the stalls a shared
    machine causes (a preempted thread holds up a whole OpenMP team).

    Returns (dict side -> median seconds, dict side -> min seconds, rounds).
    """
    sample_s, min_rounds, max_rounds, budget_s = (0.002, 3, 10, 0.3) if quick else (0.005, 7, 200, 3.0)

    def loop_count(call):
        single = _seconds_per_call(call, 1)
        if single < sample_s:  # short calls: a stall in the one timed call would skew the count
            single = min(single, _seconds_per_call(call, 1), _seconds_per_call(call, 1))
        return max(1, min(10_000, round(sample_s / max(single, 1e-9))))
    loops = {side: loop_count(call) for side, call in calls.items()}
    samples = {side: [] for side in calls}
    sides, rounds, start = list(calls), 0, time.perf_counter()
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - start < budget_s):
        first = rounds % len(sides)
        for side in sides[first:] + sides[:first]:
            samples[side].append(_seconds_per_call(calls[side], loops[side]))
        rounds += 1
    return ({s: statistics.median(v) for s, v in samples.items()},
            {s: min(v) for s, v in samples.items()}, rounds)


def _as_results(value):
    return value if isinstance(value, tuple) else (value,)


def check(contenders, dtype):
    """Run every side check_calls times (the warm-up) and compare the compared
    sides' results with the reference's. Returns a list of mismatch messages."""
    results = {side: [_as_results(call()) for _ in range(contenders.check_calls)]
               for side, call in contenders.calls.items() if side != CEILING}
    tol = TOLERANCE[np.dtype(dtype).type] * contenders.tolerance_scale
    problems = []
    for side in contenders.compared:
        if side not in results:
            continue
        for got_call, want_call in zip(results[side], results["reference"]):
            for got, want in zip(got_call, want_call):
                got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
                scale = float(np.max(np.abs(want))) if want.size else 0.0
                if got.shape != want.shape or not np.allclose(got, want, rtol=tol, atol=tol * scale):
                    error = np.max(np.abs(got - want)) / max(scale, 1e-30) if got.shape == want.shape else None
                    problems.append(f"{side} differs from the reference" +
                                    (f" (max error {error:.2e} of the largest value)" if error is not None
                                     else f" (shape {got.shape} vs {want.shape})"))
                    break
    return sorted(set(problems))


def run_case(case, setup):
    """Build, check and time one case. Returns its result record (a dict)."""
    record = {"case": case.name, "shape": case.shape}
    gc.collect()
    try:
        contenders = case.build(setup)
        problems = check(contenders, setup.dtype)
        median, best, rounds = measure(contenders.calls, setup.quick)
    except Exception as exc:  # one broken case should not hide the others' numbers
        record["error"] = f"{type(exc).__name__}: {exc}"
        return record
    record.update(check="ok" if not problems else "; ".join(problems), rounds=rounds,
                  median_ms={s: t * 1e3 for s, t in median.items() if s != CEILING},
                  min_ms={s: t * 1e3 for s, t in best.items() if s != CEILING})
    ours = median["fastfc"]
    for side in ("reference", "torch"):
        record[f"vs_{side}"] = median[side] / ours if side in median else None
    if CEILING in median:
        record["efficiency"] = {"kind": case.ceiling, "ceiling_ms": median[CEILING] * 1e3,
                                "fraction": median[CEILING] / ours}
    return record


@contextlib.contextmanager
def numpy_blas_threads(n):
    """NumPy's own BLAS (the reference's GEMMs) limited to n threads for the
    block. SciPy's BLAS, which fastfc calls single-threaded inside its own
    threads, is left alone; where NumPy shares it, nothing is changed."""
    from threadpoolctl import ThreadpoolController

    fastfc_blas = {c.filepath for c in _config._scipy_blas_controllers()}
    controllers = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers
                   if c.filepath not in fastfc_blas]
    previous = [c.num_threads for c in controllers]
    for c in controllers:
        c.set_num_threads(n)
    try:
        yield
    finally:
        for c, count in zip(controllers, previous):
            c.set_num_threads(count)


def import_torch(threads):
    """torch set to `threads` threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def run(cases=None, threads=None, dtype="float32", quick=False, use_torch=True, out=None):
    """Run the benchmark cases and print the table to out as it goes.

    Inputs:
    - cases: a list of Case (default: all of CASES)
    - threads: thread count for every side (default: fastfc's current one)
    - dtype: "float32" or "float64"
    - quick: fewer and shorter rounds (rougher numbers), a smaller epoch
    - use_torch: include PyTorch when it is installed
    - out: text stream for the table (default: sys.stdout)

    Returns a dict: "meta" (machine, versions, settings) and "results" (one
    record per case: case, shape, median_ms and min_ms per side, vs_reference,
    vs_torch, efficiency {kind, ceiling_ms, fraction} where measured, rounds,
    check "ok" or the mismatch; or error with the reason).
    """
    from .. import __version__, get_num_threads, set_num_threads

    out = out or sys.stdout
    old_threads = get_num_threads()
    threads = threads or old_threads
    torch = import_torch(threads) if use_torch else None
    dtype = np.dtype(dtype).type
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
    meta = {"machine": machine_description(), "threads": threads, "dtype": np.dtype(dtype).name,
            "quick": quick, "fastfc": __version__, "numpy": np.__version__,
            "torch": torch.__version__ if torch else None, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": _load_average(),
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    print(f"fastfc {__version__} on {meta['machine']}: {threads} thread(s), {meta['dtype']}, "
          f"{'quick' if quick else 'full'} run; medians of round-robin timings "
          f"(vs = other side's time / fastfc's)", file=out)
    if meta["load_average_before"] and meta["load_average_before"] > 0.5:
        print(f"note: the load average is {meta['load_average_before']:.1f} before starting: other "
              "processes share the cores, so the timings will be noisy (2-thread runs most)", file=out)
    if not os.environ.get("OPENBLAS_THREAD_TIMEOUT"):
        # Measured here: fastfc's affine layer took 2x longer right after the reference's GEMMs.
        print("note: NumPy's OpenBLAS threads keep spinning for about 0.1 s after each call and slow "
              "whichever side runs next; OPENBLAS_THREAD_TIMEOUT=4 (set before starting) makes them "
              "sleep at once", file=out)
    if use_torch and torch is None:
        print("PyTorch is not installed (pip install torch==2.13.0): no torch column", file=out)
    print(header(), file=out, flush=True)
    records = []
    set_num_threads(threads)
    try:
        with numpy_blas_threads(threads):
            for case in cases if cases is not None else CASES:
                setup = Setup(dtype=dtype, rng=np.random.default_rng(0), torch=torch, quick=quick,
                              threads=threads)
                records.append(run_case(case, setup))
                print(format_row(records[-1]), file=out, flush=True)
    finally:
        set_num_threads(old_threads)
    meta["load_average_after"] = _load_average()
    return {"meta": meta, "results": records}


def _load_average():
    """The 1-minute load average, or None where the system does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
