"""fastfc's threads on a busy machine (README, "Threads"): the OpenMP wait
policy fastfc sets and the user's settings that override it, the automatic
thread count, no NumPy BLAS inside fastfc's training loops, what the thread
count does and does not change in results, and the process handling of the
load harness benchmarks/busy.py. Nothing here is timed."""
import ctypes.util
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastfc
from fastfc import _config

import testutil

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINUX_PROC = os.path.exists("/proc/self/task")
HAS_SCHEDSTAT = os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat")
needs_two_cores = pytest.mark.skipif(_config._usable_cores() < 2, reason="needs 2 usable cores")


def child_env(**variables):
    """This environment without the thread and wait settings, plus variables."""
    return testutil.child_env(drop=("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                    "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT"), **variables)


def run_python(code, timeout=240, **variables):
    """Run code in a fresh interpreter; returns its stdout (its last line holds the results)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=child_env(**variables),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def restore_threads():
    """Put the thread setting back as it was after the test."""
    state = _config._state
    saved = state.requested, state.source
    yield
    state.configure(*saved)


# ---------------------------------------------------------------- the automatic thread count

class FakeThreads:
    """A clock and a schedstat sample for _TeamSizer, driven by the test."""

    def __init__(self):
        self.now = 0.0
        self.on_cpu = self.waiting = 0

    def clock(self):
        return self.now

    def sample(self):
        return {"1234": (self.on_cpu, self.waiting)}

    def interval(self, sizer, waiting_per_running, running=1.0):
        """One check interval in which the threads ran `running` of the wall time
        and waited waiting_per_running times as long; returns the team after it."""
        self.now += _config._CHECK_SECONDS
        self.on_cpu += int(running * _config._CHECK_SECONDS * 1e9)
        self.waiting += int(waiting_per_running * running * _config._CHECK_SECONDS * 1e9)
        sizer.update()
        return sizer.team


def make_sizer(most):
    threads = FakeThreads()
    return _config._TeamSizer(most, clock=threads.clock, sample=threads.sample), threads


QUIET, LATE = 0.05, 1.0  # waiting per running: a team with the cores to itself, one that waits


@pytest.mark.parametrize("most", [2, 8])
def test_team_keeps_every_thread_while_none_waits(most):
    sizer, threads = make_sizer(most)
    assert [threads.interval(sizer, QUIET) for _ in range(200)] == [most] * 200


def test_team_halves_after_consecutive_late_intervals_only():
    sizer, threads = make_sizer(8)
    teams = [threads.interval(sizer, ratio) for ratio in (LATE, QUIET, LATE, QUIET)]
    assert teams == [8, 8, 8, 8]  # never two late intervals in a row
    teams = [threads.interval(sizer, LATE) for _ in range(6)]
    assert teams == [8, 4, 4, 2, 2, 1]
    assert [threads.interval(sizer, LATE) for _ in range(50)] == [1] * 50  # busy even on one: no try


def test_intervals_of_an_idle_program_are_not_judged():
    sizer, threads = make_sizer(2)
    assert [threads.interval(sizer, LATE, running=0.01) for _ in range(20)] == [2] * 20


def test_larger_team_is_tried_after_a_hold_that_doubles_while_the_machine_stays_busy():
    sizer, threads = make_sizer(2)
    threads.interval(sizer, LATE)
    assert threads.interval(sizer, LATE) == 1
    hold = _config._HOLD_SECONDS[0]
    waited = []
    for _ in range(4):  # each try finds the machine busy: back to one thread, a longer hold
        start = threads.now
        while threads.interval(sizer, QUIET) == 1:  # one thread fits beside the others
            assert threads.now - start < hold + 1
        waited.append(threads.now - start)
        assert threads.interval(sizer, LATE) == 1
        hold *= 2
    first = _config._HOLD_SECONDS[0]
    assert waited == pytest.approx([first, 2 * first, 4 * first, 8 * first], abs=2 * _config._CHECK_SECONDS)
    while threads.interval(sizer, QUIET) == 1:
        pass
    assert [threads.interval(sizer, QUIET) for _ in range(50)] == [2] * 50  # the try fit: kept
    threads.interval(sizer, LATE)
    assert threads.interval(sizer, LATE) == 1
    start = threads.now
    while threads.interval(sizer, QUIET) == 1:
        pass
    assert threads.now - start == pytest.approx(_config._HOLD_SECONDS[0], abs=2 * _config._CHECK_SECONDS)


def test_team_stays_whole_without_schedstat():
    sizer = _config._TeamSizer(4, sample=lambda: None)
    assert sizer.next_check == float("inf") and sizer.team == 4


def test_forked_child_measures_its_own_threads(monkeypatch):
    """After a fork the parent's schedstat counters mean nothing: the child
    starts over instead of judging the difference."""
    sizer, threads = make_sizer(2)
    threads.on_cpu, threads.waiting = 10**12, 0
    monkeypatch.setattr(os, "getpid", lambda: -1)
    threads.now += 1
    sizer.update()
    threads.waiting = 10**12  # would be very late against the parent's numbers
    assert threads.interval(sizer, QUIET) == 2


def test_explicit_counts_are_used_as_is(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fastfc.set_num_threads(2)
    assert _config._state.sizer is None and _config._state.num_threads == 2
    assert _config._state.source == "set_num_threads"
    fastfc.set_num_threads(None)
    assert _config._state.source == "automatic"
    assert fastfc.get_num_threads() == _config._usable_cores()
    assert (_config._state.sizer is not None) == (_config._usable_cores() > 1)
    assert 1 <= _config._state.num_threads <= fastfc.get_num_threads()


def test_omp_num_threads_is_used_as_is():
    out = run_python("""
        import fastfc._config as c
        print(c._state.source, c._state.requested, c._state.sizer)
    """, OMP_NUM_THREADS="3")
    assert out.split() == ["OMP_NUM_THREADS", "3", "None"]


@pytest.mark.skipif(not HAS_SCHEDSTAT, reason="reads Linux schedstat")
@needs_two_cores
def test_automatic_count_shrinks_while_other_processes_hold_the_cores():
    """Two busy processes per core: the automatic team of every core keeps
    waiting for a CPU and shrinks."""
    out = run_python(f"""
        import sys, time
        import numpy as np
        sys.path.insert(0, {str(ROOT / "benchmarks")!r})
        import busy
        import fastfc, fastfc.functional as F, fastfc._config as c

        x = np.ones((256, 512), np.float32)
        w = np.ones((512, 512), np.float32)
        b = np.zeros(512, np.float32)
        smallest = most = fastfc.get_num_threads()
        with busy.busy_processes(2 * most, limit_s=60):
            end = time.monotonic() + 20
            while smallest == most and time.monotonic() < end:
                F.affine_relu_forward(x, w, b)
                smallest = min(smallest, c._state.num_threads)
        print(c._state.source, most, smallest)
    """)
    source, most, smallest = out.split()[-3:]
    assert source == "automatic" and int(smallest) < int(most)


# ---------------------------------------------------------------- the OpenMP wait policy

# Child code: one 2-thread kernel, then a 4 ms gap with the CPU kept busy, 30
# times; prints the voluntary context switches per gap (the idle OpenMP thread
# sleeping), GOMP_SPINCOUNT as the environment has it now, and what
# show_config reports.
SLEEPS_IN_GAPS = """
import os, resource, time
import numpy as np
PRELOAD
import fastfc, fastfc.functional as F, fastfc._config as c

fastfc.set_num_threads(2)
x = np.ones(1 << 18, np.float32)  # 8 blocks of FASTFC_MIN_PER_THREAD: a team of 2

def kernel_then_gap():
    F.relu_forward(x)
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass

for _ in range(5):
    kernel_then_gap()
before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
for _ in range(30):
    kernel_then_gap()
sleeps = (resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before) / 30
print(sleeps, os.environ.get("GOMP_SPINCOUNT", "-"), "|", c._state.openmp_wait)
"""


def sleeps_in_gaps(preload="", **variables):
    out = run_python(SLEEPS_IN_GAPS.replace("PRELOAD", preload), **variables).strip().splitlines()[-1]
    numbers, report = out.split("|")
    sleeps, spin_count = numbers.split()
    return float(sleeps), spin_count, report.strip()


@pytest.mark.skipif(not fastfc._info.openmp_enabled(), reason="built without OpenMP")
@needs_two_cores
def test_short_spin_reaches_the_openmp_runtime():
    """With fastfc's setting the idle thread sleeps within a 4 ms gap
    (libgomp's own default spins 3-15 ms, 10 ms on the development machine);
    the variable was set only while the runtime loaded, so programs the
    process starts do not inherit it."""
    sleeps, spin_count, report = sleeps_in_gaps()
    assert report == f"GOMP_SPINCOUNT={_config.SPIN_COUNT} (set by fastfc)"
    assert spin_count == "-"
    assert sleeps >= 0.5


@pytest.mark.skipif(not fastfc._info.openmp_enabled(), reason="built without OpenMP")
@needs_two_cores
@pytest.mark.parametrize("variables", [{"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "infinite"}])
def test_user_wait_settings_win(variables):
    """A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is left to the runtime: here,
    spinning for minutes, the idle thread never sleeps in the gaps."""
    sleeps, spin_count, report = sleeps_in_gaps(**variables)
    name, value = next(iter(variables.items()))
    assert report == f"{name}={value} (from the environment)"
    assert spin_count == variables.get("GOMP_SPINCOUNT", "-")  # nothing added, nothing taken
    assert sleeps <= 0.2


@pytest.mark.skipif(not LINUX_PROC or not ctypes.util.find_library("gomp"), reason="needs libgomp and /proc")
def test_runtime_loaded_before_fastfc_keeps_its_settings():
    """A libgomp another module loaded first was set up without fastfc's spin:
    fastfc says so, and leaves the environment alone."""
    out = run_python("""
        import ctypes, ctypes.util, os
        ctypes.CDLL(ctypes.util.find_library("gomp"))
        import fastfc._config as c
        import fastfc
        maps = open("/proc/self/maps").read()
        gomps = {line.split()[-1] for line in maps.splitlines() if "libgomp" in line}
        print(len(gomps), "GOMP_SPINCOUNT" in os.environ, "|", c._state.openmp_wait)
    """)
    numbers, report = out.strip().splitlines()[-1].split("|")
    runtimes, leaked = numbers.split()
    if runtimes != "1":
        pytest.skip("this build of fastfc brings its own libgomp")
    assert leaked == "False"
    assert report.strip().startswith("the runtime's defaults: it was loaded before fastfc")


# ---------------------------------------------------------------- NumPy's BLAS threads

@pytest.mark.skipif(not HAS_SCHEDSTAT, reason="reads Linux schedstat")
@needs_two_cores
def test_training_loops_never_wake_numpys_blas_threads():
    """NumPy's OpenBLAS threads, once woken, spin on the cores fastfc's
    threads need. The threads present right after `import numpy` are that
    pool: Solver (with an L2 term, float64), evaluate and `fastfc train` (MLP
    and CNN, with their data preparation) must not run them at all; a NumPy
    matrix product afterwards shows that they would have been seen."""
    out = run_python("""
        import os, threading, time
        import numpy as np
        main = str(threading.get_native_id())
        pool = [t for t in os.listdir("/proc/self/task") if t != main]

        def pool_ns():
            return sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[0]) for t in pool)

        import fastfc
        from fastfc import cli, datasets
        from fastfc.models import FullyConnectedNet

        data = datasets.normalize(datasets.load_digits())
        data = {k: v.astype(np.float64) if k.startswith("X") else v for k, v in data.items()}
        time.sleep(0.2)
        start = pool_ns()
        model = FullyConnectedNet([256, 256], input_dim=64, num_classes=10, reg=1e-3, weight_scale=None,
                                  dtype=np.float64, seed=0)
        fastfc.Solver(model, data, batch_size=64, num_epochs=1, seed=0, verbose=False).train()
        fastfc.evaluate(model, data["X_test"], data["y_test"])
        for model_args in ([], ["--model", "cnn"]):
            assert cli.main(["train", "--epochs", "1", "--quiet"] + model_args) == 0
        time.sleep(0.2)
        during = pool_ns() - start
        a = np.ones((512, 512))
        for _ in range(5):
            a @ a
        time.sleep(0.2)
        print(len(pool), during, pool_ns() - start - during)
    """, timeout=600)
    pool, during, control = map(int, out.split()[-3:])
    if pool == 0 or control == 0:
        pytest.skip("NumPy's BLAS runs no threads of its own here")
    assert during == 0


# ---------------------------------------------------------------- results across thread counts

def train_params(tmp_path, threads, name, *args):
    path = tmp_path / f"{name}.npz"
    proc = subprocess.run([sys.executable, "-m", "fastfc", "train", "--quiet", "--threads", str(threads),
                           "--save", str(path), *args], env=child_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(path) as saved:
        return {k: saved[k] for k in saved.files}


@pytest.mark.parametrize("model_args", [["--epochs", "2"], ["--model", "cnn", "--epochs", "1"]],
                         ids=["mlp", "cnn"])
def test_thread_count_changes_default_size_training_by_rounding_only(tmp_path, model_args):
    """README's claim at the default sizes (64-256-256-10 MLP, the CNN):
    the same thread count gives the same parameters bit for bit; 1 and 2
    threads agree to float32 rounding of the GEMM sums (not bit for bit: the
    GEMMs' blocks round differently when split)."""
    one = train_params(tmp_path, 1, "one", *model_args)
    two = train_params(tmp_path, 2, "two", *model_args)
    two_again = train_params(tmp_path, 2, "two_again", *model_args)
    assert one.keys() == two.keys() == two_again.keys()
    for name in one:
        np.testing.assert_array_equal(two[name], two_again[name], err_msg=name)
        scale = float(np.max(np.abs(one[name]))) or 1.0
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-5 * scale, err_msg=name)


# ---------------------------------------------------------------- the load harness

@pytest.fixture(scope="module")
def busy_harness():
    spec = importlib.util.spec_from_file_location("busy_harness", ROOT / "benchmarks" / "busy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_harness_stops_its_busy_processes_on_an_exception(busy_harness):
    with pytest.raises(RuntimeError, match="stop"):
        with busy_harness.busy_processes(2, pin=True) as procs:
            assert len(procs) == 2 and all(p.poll() is None for p in procs)
            raise RuntimeError("stop")
    assert all(p.poll() is not None for p in procs)


def test_harness_busy_processes_end_at_their_deadline(busy_harness):
    with busy_harness.busy_processes(1, limit_s=0.5) as procs:
        assert procs[0].wait(timeout=30) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_harness_busy_processes_die_with_a_killed_harness(busy_harness):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / "benchmarks")!r})
        import busy
        with busy.busy_processes(1) as procs:
            print(procs[0].pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert proc.wait(timeout=60) == -signal.SIGKILL
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the busy process outlived its harness")


def test_harness_runs_a_small_plan(busy_harness, capsys):
    """One round of one step under one busy process, two settings: the table
    and the verdict on the target come out."""
    assert busy_harness.main(["--loads", "2", "--rounds", "1", "--seconds", "0.1", "--workload",
                              "step 784-100-10", "--setting", "default", "--setting", "1 thread",
                              "--setting", "passive"]) == 0
    text = capsys.readouterr().out
    assert "| 2 | " in text and "default / best baseline" in text
