"""fastfc on a busy machine: training steps, an epoch and `fastfc train`, timed
while other processes compete for the cores, for each thread/wait setting.

    python benchmarks/busy.py --json busy.json       # the recorded run (about 25 min on 2 cores)
    python benchmarks/busy.py --quick                # 2 rounds of 1 s (about 12 min)
    python benchmarks/busy.py --loads 0,2 --workload "step 784-100" --setting default --setting passive
    python benchmarks/busy.py --nice -20 ...         # as root: shield the run from other users
    python benchmarks/busy.py --list

The harness starts the competing processes itself: each a Python busy loop in
a session of its own (as another user's job; with sched autogroups, Linux
shares CPU time between sessions first), pinned round-robin to the usable
cores with --pin. It stops them when a load level is done, on an exception,
Ctrl-C or SIGTERM; should the harness be killed outright, they die with it
(parent-death signal) or at their own deadline, so none outlives a run.

Each measurement runs in a fresh interpreter (this file with --worker, or
`python -m fastfc train`), because libgomp reads OMP_WAIT_POLICY and
GOMP_SPINCOUNT once, when it loads; the variables in CONTROLLED_VARIABLES
are cleared and each setting sets its own:
- default: nothing set, what a new user gets (fastfc's short spin and its
  automatic thread count)
- before: fastfc's default before it set either: GOMP_SPINCOUNT=300000
  (libgomp's own default, 3-15 ms of spinning) and every core, always
- passive: OMP_WAIT_POLICY=passive on every core (idle threads sleep at once)
- 1 thread: fastfc.set_num_threads(1) / `fastfc train --threads 1`
- spin N: GOMP_SPINCOUNT=N on every core
- blas timeout, blas limited: the default, with OPENBLAS_THREAD_TIMEOUT=4, or
  with the NumPy products inside threadpoolctl.threadpool_limits(1) (the
  remedies for NumPy's spinning BLAS threads; see the last workload)
Workloads: the training steps of `fastfc bench` (MLP 784-100-10 at batch 64,
784-512-512-10 at batch 128, the CNN 3x32x32 at batch 64), an epoch of
784-100-10 over 6,000 samples, the whole `fastfc train` command (digits MLP
and CNN), and, with no competing process only, the 784-512-512-10 step
right after a few NumPy matrix products (untimed).

The rounds go load by load; within a load every workload runs each setting
once per round, in an order that rotates from round to round, so the other
processes of a shared machine weigh on all of them alike. A step or epoch is
reported as its mean time over about --seconds of back-to-back calls (what a
training loop sees, stalls included); `fastfc train` as the wall time of the
command. With each time come the context switches per call (voluntary: a
thread went to sleep; involuntary: the OS preempted one), the CPU time over
the wall time (2.0: two threads always running, spinning included), for a
step or epoch the time its threads spent on a CPU and ready without one
(Linux schedstat; in the JSON and the progress lines) and, for the
automatic thread count, the share of calls that ran on every core.
"""
import argparse
import contextlib
import ctypes
import glob
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time

SPIN_BLOCK = 100_000  # loop iterations between deadline checks of a busy process (a few ms)

ALL = "all"  # a thread count: every usable core, set explicitly (set_num_threads / --threads)
SETTINGS = {  # name -> (environment variables, thread count; None: fastfc's default)
    "default": ({}, None),
    "before": ({"GOMP_SPINCOUNT": "300000"}, ALL),
    "passive": ({"OMP_WAIT_POLICY": "passive"}, ALL),
    "1 thread": ({}, 1),
    "blas timeout": ({"OPENBLAS_THREAD_TIMEOUT": "4"}, None),
    "blas limited": ({"BUSY_NUMPY_BLAS_LIMIT": "1"}, None),
}
# Cleared from every worker's environment: each setting sets what it needs.
CONTROLLED_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "KMP_BLOCKTIME",
                        "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "BUSY_NUMPY_BLAS_LIMIT")
# The default must take at most TARGET_RATIO times the best of BASELINES with
# TARGET_LOAD competing processes, and at most QUIET_RATIO times "before" with none.
BASELINES = ("1 thread", "passive")
TARGET_RATIO, TARGET_LOAD, QUIET_RATIO = 1.3, 2, 1.05

STEP_NETWORKS = {  # workload -> ("mlp" and its widths, or "cnn"; batch)
    "step 784-100-10 b64": ("mlp", (784, 100, 10), 64),
    "step 784-512-512-10 b128": ("mlp", (784, 512, 512, 10), 128),
    "step cnn 3x32x32 b64": ("cnn", None, 64),
}
EPOCH = "epoch 784-100-10 b64 n=6000"
EPOCH_SAMPLES = 6000
TRAIN_COMMANDS = {
    "fastfc train (mlp)": ["train", "--quiet"],
    "fastfc train --model cnn": ["train", "--quiet", "--model", "cnn"],
}
AFTER_NUMPY = "step 784-512-512-10 b128 after numpy"
WORKLOADS = list(STEP_NETWORKS) + [EPOCH] + list(TRAIN_COMMANDS) + [AFTER_NUMPY]
LOAD_SETTINGS = ["default", "before", "passive", "1 thread"]
AFTER_NUMPY_SETTINGS = ["default", "blas timeout", "blas limited"]


def setting(name):
    """(environment, thread count) of a setting: one of SETTINGS, or 'spin N'
    (GOMP_SPINCOUNT=N on every usable core). ValueError for any other name."""
    if name in SETTINGS:
        return SETTINGS[name]
    parts = name.split()
    if len(parts) == 2 and parts[0] == "spin" and parts[1].isdigit():
        return {"GOMP_SPINCOUNT": parts[1]}, ALL
    raise ValueError(f"unknown setting {name!r}: one of {', '.join(SETTINGS)} or 'spin N'")


# ---------------------------------------------------------------- competing processes

def usable_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def set_niceness(n):
    """Run this process (and what it starts) at niceness n and, with sched
    autogroups, its session's group too. Lowering it needs root."""
    os.setpriority(os.PRIO_PROCESS, 0, n)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(n))
    except OSError:  # no autogroups here
        pass


def busy_loop(deadline, cpu, parent, niceness):
    """The body of a busy process: one core's worth of Python loop until the
    deadline (time.monotonic()) or the death of the parent (its pid), whichever
    comes first; pinned to cpu unless it is negative; at niceness unless None."""
    try:  # PR_SET_PDEATHSIG (1): SIGKILL when the parent dies (Linux)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        return
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    if niceness is not None:
        set_niceness(niceness)
    while time.monotonic() < deadline:
        for _ in range(SPIN_BLOCK):
            pass


@contextlib.contextmanager
def busy_processes(count, pin=False, niceness=None, limit_s=3600.0):
    """count busy-looping processes, each in a session of its own, for the
    duration of the block; yields their Popen objects.

    Inputs:
    - count: how many (0: none)
    - pin: pin the i-th to the i-th usable core (round-robin); else the
      scheduler places them
    - niceness: theirs (None: this process's); see set_niceness
    - limit_s: each exits by itself after this many seconds, even if this
      process is killed before it can stop them

    They are stopped (SIGTERM, then SIGKILL) when the block ends, however it
    ends; if this process is killed outright they die with it.
    """
    cpus = usable_cpus()
    deadline = time.monotonic() + limit_s  # CLOCK_MONOTONIC is system-wide on Linux
    procs = []
    try:
        for i in range(count):
            cpu = cpus[i % len(cpus)] if pin else -1
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--busy", repr(deadline), str(cpu),
                 str(os.getpid()), "-" if niceness is None else str(niceness)],
                stdin=subprocess.DEVNULL, start_new_session=True))
        if count:
            time.sleep(0.2)  # let them start spinning
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _sigterm_as_exit(signum, frame):
    """SIGTERM ends the harness through its finally blocks (busy processes stopped)."""
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- the worker side

def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw, r.ru_nivcsw


def time_repeatedly(call, seconds, min_calls=5, before=None):
    """Time call() back to back for about `seconds` (at least min_calls calls),
    running before() (untimed, when given) ahead of each call. Returns a dict:
    calls, mean_ms (total time / calls), median_ms, voluntary_per_call and
    involuntary_per_call (context switches of the process), cpu_per_wall (CPU
    time of the process over wall time); the last three include before()."""
    times = []
    cpu0, vol0, invol0 = _usage()
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        if before:
            before()
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    cpu1, vol1, invol1 = _usage()
    n = len(times)
    return {"calls": n, "mean_ms": sum(times) / n * 1e3, "median_ms": statistics.median(times) * 1e3,
            "voluntary_per_call": (vol1 - vol0) / n, "involuntary_per_call": (invol1 - invol0) / n,
            "cpu_per_wall": (cpu1 - cpu0) / wall}


def numpy_products():
    """A few NumPy matrix products (NumPy's own threaded OpenBLAS), the kind of
    user code that leaves NumPy's BLAS threads spinning after it returns;
    with BUSY_NUMPY_BLAS_LIMIT set, inside threadpoolctl's limit of one BLAS
    thread (the remedy README suggests)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    limit = 1 if os.environ.get("BUSY_NUMPY_BLAS_LIMIT") else None
    with threadpool_limits(limits=limit, user_api="blas"):
        a = np.ones((256, 256), np.float32)
        for _ in range(4):
            a = a @ a * np.float32(1 / 256)
    return a


def worker(workload, seconds, threads):
    """Measure an in-process workload (a step or an epoch); returns its record
    (time_repeatedly's, plus the thread setting and the teams the calls ran on)."""
    import numpy as np

    import fastfc
    from fastfc import _config, bench

    if threads:
        fastfc.set_num_threads(threads)
    setup = bench.Setup(dtype=np.float32, rng=np.random.default_rng(0), torch=None, quick=True,
                        threads=fastfc.get_num_threads())
    if workload == EPOCH:
        call = bench.epoch_contenders(setup, EPOCH_SAMPLES, sides=("fastfc",)).calls["fastfc"]
    else:
        kind, dims, batch = STEP_NETWORKS[workload.replace(" after numpy", "")]
        net = bench.mlp(*dims) if kind == "mlp" else bench.CNN
        model = bench.FastfcNet(net, bench.init_params(net, np.float32), np.float32)
        x, y = bench.random_batch(setup, net, batch)

        def call():
            model.step(x, y)
    teams = {}

    def counted_call():  # the team the automatic thread count chose for this call
        team = _config._state.num_threads
        teams[team] = teams.get(team, 0) + 1
        call()
    before = numpy_products if workload == AFTER_NUMPY else None
    time_repeatedly(counted_call, min(0.3, seconds / 4), min_calls=2, before=before)  # warm-up
    teams.clear()
    start = _config._thread_schedstats()
    record = time_repeatedly(counted_call, seconds, before=before)
    end = _config._thread_schedstats()
    record.update(threads=fastfc.get_num_threads(), thread_source=_config._state.source,
                  full_team_share=teams.get(fastfc.get_num_threads(), 0) / sum(teams.values()),
                  openmp_wait=_config._state.openmp_wait)
    if start and end:  # where the time went: on a CPU, or ready but without one (all threads)
        for key, field in (("on_cpu_ms_per_call", 0), ("waiting_ms_per_call", 1)):
            total_ns = sum(end[t][field] - start[t][field] for t in end if t in start)
            record[key] = total_ns / 1e6 / record["calls"]
    return record


# ---------------------------------------------------------------- the parent side

def _child_env(setting_env):
    """A worker's environment: this one without CONTROLLED_VARIABLES, plus the
    setting's; in a source checkout with an in-place build, that build first
    on the path (a checkout without one leaves the installed fastfc)."""
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED_VARIABLES}
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    if glob.glob(os.path.join(src, "fastfc", "_info.*.so")) + glob.glob(os.path.join(src, "fastfc", "_info.*.pyd")):
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.update(setting_env)
    return env


def _run(cmd, env, timeout, niceness):
    """Run cmd (at niceness, in a session of its own, unless None); returns
    (wall seconds, stdout). RuntimeError with its stderr if it fails."""
    extra = {} if niceness is None else {"start_new_session": True,
                                         "preexec_fn": lambda: set_niceness(niceness)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **extra)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # a timeout, Ctrl-C, SIGTERM: no worker outlives the harness
        proc.kill()
        proc.communicate()
        raise
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return wall, out


def measure(workload, setting_name, seconds, niceness=None, timeout=600):
    """One measurement of a workload under a setting, in a fresh process."""
    setting_env, threads = setting(setting_name)
    if threads == ALL:
        threads = len(usable_cpus())
    env = _child_env(setting_env)
    if workload in TRAIN_COMMANDS:
        cmd = [sys.executable, "-m", "fastfc"] + TRAIN_COMMANDS[workload]
        if threads:
            cmd += ["--threads", str(threads)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, _ = _run(cmd, env, timeout, niceness)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"calls": 1, "mean_ms": wall * 1e3, "median_ms": wall * 1e3,
                "voluntary_per_call": after.ru_nvcsw - before.ru_nvcsw,
                "involuntary_per_call": after.ru_nivcsw - before.ru_nivcsw,
                "cpu_per_wall": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", workload, "--seconds", str(seconds)]
    if threads:
        cmd += ["--worker-threads", str(threads)]
    _, out = _run(cmd, env, timeout, niceness)
    return json.loads(out.strip().splitlines()[-1])


def plan(loads, workloads, settings):
    """[(load, workload, settings)] to measure: every workload at every load
    with the settings asked for (default: LOAD_SETTINGS), except AFTER_NUMPY,
    measured with no competing process only (default: AFTER_NUMPY_SETTINGS)."""
    steps = []
    for load in loads:
        for workload in workloads:
            if workload == AFTER_NUMPY:
                if load == 0:
                    steps.append((load, workload, settings or AFTER_NUMPY_SETTINGS))
            else:
                steps.append((load, workload, settings or LOAD_SETTINGS))
    return steps


def run(steps, rounds, seconds, pin=False, niceness=None, out=None):
    """Measure each (load, workload, settings) of steps `rounds` times, the
    competing processes running through each load's rounds; prints a line per
    measurement to out (default: sys.stdout) and returns the records."""
    out = out or sys.stdout
    records = []
    for load in dict.fromkeys(load for load, _, _ in steps):
        for r in range(rounds):
            with busy_processes(load, pin=pin, niceness=niceness):
                for _, workload, settings in (s for s in steps if s[0] == load):
                    shift = r % len(settings)
                    for name in settings[shift:] + settings[:shift]:
                        rec = measure(workload, name, seconds, niceness)
                        rec.update(load=load, setting=name, workload=workload, round=r,
                                   load_average=os.getloadavg()[0])
                        records.append(rec)
                        team = (f"  full team {rec['full_team_share']:.0%}"
                                if rec.get("thread_source") == "automatic" else "")
                        if "waiting_ms_per_call" in rec:
                            team += (f"  per call: {rec['on_cpu_ms_per_call']:.3g} ms on a CPU, "
                                     f"{rec['waiting_ms_per_call']:.3g} ms waiting for one")
                        print(f"  busy {load} round {r} {workload:38} {name:12} {rec['mean_ms']:10.4g} ms  "
                              f"switches/call {rec['voluntary_per_call']:.3g} vol {rec['involuntary_per_call']:.3g}"
                              f" invol  cpu/wall {rec['cpu_per_wall']:.2f}{team}", file=out, flush=True)
    return records


def summarize(records, out=None):
    """Print to out (default: sys.stdout) one Markdown table per workload: per
    load, each setting's mean time (the median over rounds) with
    [voluntary/involuntary switches per call, cpu/wall] and the default's
    ratio to the best baseline; then the verdicts on the targets."""
    out = out or sys.stdout
    by = {}
    for rec in records:
        by.setdefault((rec["workload"], rec["load"], rec["setting"]), []).append(rec)
    verdicts = []
    for workload in dict.fromkeys(r["workload"] for r in records):
        settings = list(dict.fromkeys(r["setting"] for r in records if r["workload"] == workload))
        print(f"\n{workload}: ms per call [voluntary/involuntary context switches per call, cpu/wall]",
              file=out)
        print("| busy | " + " | ".join(settings) + " | default / best of " + ", ".join(BASELINES) + " |",
              file=out)
        print("|---" * (len(settings) + 2) + "|", file=out)
        for load in sorted({r["load"] for r in records if r["workload"] == workload}):
            cells, medians = [], {}
            for name in settings:
                recs = by.get((workload, load, name), [])
                if not recs:
                    cells.append("-")
                    continue
                medians[name] = statistics.median(r["mean_ms"] for r in recs)
                vol, invol, cpu = (statistics.median(r[k] for r in recs)
                                   for k in ("voluntary_per_call", "involuntary_per_call", "cpu_per_wall"))
                cells.append(f"{medians[name]:.4g} [{vol:.3g}/{invol:.3g}, {cpu:.2f}]")
            base = [medians[s] for s in BASELINES if s in medians]
            ratio = medians["default"] / min(base) if "default" in medians and base else None
            print(f"| {load} | " + " | ".join(cells) + f" | {f'{ratio:.2f}' if ratio else '-'} |", file=out)
            if ratio and load == TARGET_LOAD:
                verdicts.append(f"{workload}, {TARGET_LOAD} busy: default / best baseline {ratio:.2f} "
                                f"(target <= {TARGET_RATIO}) {'met' if ratio <= TARGET_RATIO else 'MISSED'}")
            if load == 0 and "default" in medians and "before" in medians:
                quiet = medians["default"] / medians["before"]
                verdicts.append(f"{workload}, 0 busy: default / before {quiet:.3f} (target <= {QUIET_RATIO} "
                                f"on a quiet machine) {'met' if quiet <= QUIET_RATIO else 'MISSED'}")
    print("", *verdicts, sep="\n", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="0,1,2,4", help="competing busy process counts (default: %(default)s)")
    parser.add_argument("--setting", action="append", metavar="NAME",
                        help=f"repeatable: one of {', '.join(SETTINGS)}, or 'spin N' (default: "
                             f"{', '.join(LOAD_SETTINGS)}; for the NumPy workload {', '.join(AFTER_NUMPY_SETTINGS)})")
    parser.add_argument("--workload", action="append", metavar="TEXT",
                        help="only the workloads whose name contains TEXT (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per load (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="seconds of calls per step/epoch measurement (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s")
    parser.add_argument("--pin", action="store_true", help="pin the busy processes to cores")
    parser.add_argument("--nice", type=int, metavar="N",
                        help="run the workers and busy processes at niceness N (their own sessions' "
                             "autogroups too); -20, as root, shields a run from a shared machine's other users")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--list", action="store_true", help="list the workloads and settings")
    parser.add_argument("--worker", metavar="WORKLOAD", help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--busy", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.busy:
        deadline, cpu, parent, niceness = args.busy
        busy_loop(float(deadline), int(cpu), int(parent), None if niceness == "-" else int(niceness))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds, args.worker_threads)))
        return 0
    if args.list:
        print("workloads:\n  " + "\n  ".join(WORKLOADS) + "\nsettings:\n  " + "\n  ".join(SETTINGS)
              + "\n  spin N")
        return 0
    workloads = [w for w in WORKLOADS if not args.workload or any(t in w for t in args.workload)]
    for name in args.setting or ():
        setting(name)  # a ValueError for an unknown one, before any run
    loads = [int(x) for x in args.loads.split(",")]
    rounds, seconds = (2, 1.0) if args.quick else (args.rounds, args.seconds)
    signal.signal(signal.SIGTERM, _sigterm_as_exit)
    print(f"{len(usable_cpus())} usable cores, load average {os.getloadavg()[0]:.1f} before starting; "
          f"workers and busy processes at niceness {os.nice(0) if args.nice is None else args.nice}, "
          f"busy processes {'pinned' if args.pin else 'not pinned'}; {rounds} rounds of {seconds} s",
          flush=True)
    records = run(plan(loads, workloads, args.setting), rounds, seconds, args.pin, args.nice)
    summarize(records)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M"),
                       "cores": len(usable_cpus()), "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
