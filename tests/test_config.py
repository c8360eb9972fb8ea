"""Thread control, the build report, and the reference module's independence."""
import ast
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastfc
import fastfc._config
import fastfc.reference

from testutil import child_env


def test_set_and_get_num_threads():
    old = fastfc.get_num_threads()
    try:
        fastfc.set_num_threads(3)
        assert fastfc.get_num_threads() == 3
    finally:
        fastfc.set_num_threads(old)


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                       (True, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects(bad, error):
    with pytest.raises(error, match="n must be"):
        fastfc.set_num_threads(bad)


@pytest.mark.parametrize("cores, limit", [(1, 64), (2, 64), (16, 64), (32, 128)])
def test_set_num_threads_ceiling(monkeypatch, cores, limit):
    """At most 4 threads per usable core and never fewer than 64 (so 4
    threads oversubscribe one core on purpose): above that, a ValueError
    naming n, where OpenMP would try to start that many threads and libgomp
    aborts the process when it cannot."""
    monkeypatch.setattr(fastfc._config, "_usable_cores", lambda: cores)
    old = fastfc.get_num_threads()
    try:
        fastfc.set_num_threads(limit)
        assert fastfc.get_num_threads() == limit
        for n in (limit + 1, 10**6):
            with pytest.raises(ValueError, match=f"at most {limit} .*got {n}$"):
                fastfc.set_num_threads(n)
        assert fastfc.get_num_threads() == limit  # unchanged by the refusals
    finally:
        fastfc.set_num_threads(old)


@pytest.mark.parametrize("value, want", [
    ("3", 3), ("4,2", 4),
    ("1000000", "limit"),  # capped like set_num_threads
    ("9" * 5000, "cores"),  # more digits than int() reads: ignored, not a failed import
    ("\u00b2", "cores"), ("0", "cores"), ("-2", "cores"), ("many", "cores"),
], ids=["3", "list", "huge", "5000 digits", "superscript", "0", "negative", "word"])
def test_default_from_omp_num_threads(value, want):
    code = ("import fastfc, fastfc._config as c; "
            "print(fastfc.get_num_threads(), c._max_num_threads(), c._usable_cores())")
    env = dict(os.environ, OMP_NUM_THREADS=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    threads, limit, cores = map(int, out.stdout.split())
    assert threads == {"limit": limit, "cores": cores}.get(want, want)


def test_show_config_reports_the_build():
    buf = io.StringIO()
    fastfc.show_config(file=buf)
    text = buf.getvalue()
    assert f"fastfc {fastfc.__version__}" in text
    assert "openmp: on" in text or "openmp: off" in text
    assert f"threads: {fastfc.get_num_threads()}" in text
    assert "simd:" in text and "float32, float64" in text
    assert "gemm: " in text
    assert "blas:" in text


def test_blas_runs_single_threaded_inside_fastfc_threads():
    from fastfc._config import _scipy_blas_controllers

    assert all(c.num_threads == 1 for c in _scipy_blas_controllers())


def test_reference_never_imports_the_extension():
    tree = ast.parse(pathlib.Path(fastfc.reference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert imported <= {"numpy", "math"}, imported


def test_reference_has_every_functional_name():
    import inspect

    import fastfc.functional as F

    for name in F.__all__:
        ours = inspect.signature(getattr(F, name)).parameters
        twin = inspect.signature(getattr(fastfc.reference, name)).parameters
        assert list(twin) == list(ours), name


def test_blas_raised_by_threadpoolctl_is_pinned_back_before_kernels(rng):
    """A BLAS with its own threads inside fastfc's threads would oversubscribe:
    each kernel call pins SciPy's BLAS back to one thread."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    import fastfc.functional as F
    import fastfc.reference as R
    from fastfc._config import _scipy_blas_controllers

    x = rng.standard_normal((64, 50))
    w = rng.standard_normal((50, 30))
    b = rng.standard_normal(30)
    with threadpool_limits(limits=4, user_api="blas"):
        out, _ = F.affine_relu_forward(x, w, b)
        assert all(c.get_num_threads() == 1 for c in _scipy_blas_controllers())
    np.testing.assert_allclose(out, R.affine_relu_forward(x, w, b)[0], rtol=1e-12, atol=1e-12)


# ---- fork (issue 17) ----------------------------------------------------------------
# GNU OpenMP's thread pool does not survive fork: a child forked after
# fastfc ran threads used to hang forever at its first parallel region. The
# children below are waited for with a deadline and killed after it, so a
# hang fails the test instead of hanging it.

FORK_PRELUDE = r'''
import json, os, signal, sys, time
import multiprocessing as mp
import numpy as np
import fastfc, fastfc.functional as F
from fastfc import optim
from fastfc.parameter import Parameter

def workload():
    """One call of every kernel family, each large enough to be split among
    two threads; a digest of the results."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 24, 24)).astype(np.float32)
    w = (rng.standard_normal((8, 3, 3, 3)) / 5).astype(np.float32)
    conv, cache = F.conv_forward(x, w, np.zeros(8, np.float32), pad=1)
    dx, _, _ = F.conv_backward(conv, cache)
    pooled, cache = F.max_pool_forward(conv)
    dpool = F.max_pool_backward(pooled, cache)
    flat = pooled.reshape(64, -1)
    w_fc = (rng.standard_normal((flat.shape[1], 10)) / 40).astype(np.float32)
    h, cache = F.affine_relu_forward(flat, w_fc, np.zeros(10, np.float32))
    loss, dh = F.softmax_loss(h, rng.integers(0, 10, 64))
    F.affine_relu_backward(dh, cache)
    t, _ = F.tanh_forward(x)
    p = Parameter(x.copy())
    p.grad[...] = t
    optim.Adam([p], lr=0.1).step()
    return [float(conv.sum()), float(dx.sum()), float(dpool.sum()), float(loss),
            float(p.data.sum())]

def in_forked_child(task, deadline=30):
    """task() run in a child made by os.fork: its JSON-able result, or
    "hung" when it did not finish within deadline seconds (then killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = task()
        except BaseException as e:
            result = f"{type(e).__name__}: {e}"
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    start = time.monotonic()
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() - start > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.05)
    with os.fdopen(read_end) as f:
        return json.loads(f.read() or '"died"')
'''

FORK_AFTER_THREADS = FORK_PRELUDE + r'''
fastfc.set_num_threads(2)
workload()  # starts fastfc's OpenMP threads
fastfc.set_num_threads(1)
serial = workload()
fastfc.set_num_threads(2)

def child():
    return {"threads": fastfc.get_num_threads(), "same": workload() == serial}

def child_asks_for_threads():
    fastfc.set_num_threads(4)  # warns and stays at one
    return {"threads": fastfc.get_num_threads(), "same": workload() == serial}

def pool_worker(_):
    return child()

report = {"fork": in_forked_child(child),
          "fork asking for 4 threads": in_forked_child(child_asks_for_threads)}
pool = mp.get_context("fork").Pool(2)
try:
    report["pool"] = pool.map_async(pool_worker, range(4)).get(timeout=30)
except mp.TimeoutError:
    report["pool"] = "hung"
finally:
    pool.terminate()
    pool.join()
report["parent threads"] = fastfc.get_num_threads()
print(json.dumps(report))
'''

FORK_WARNING = "its kernels run on one thread"


def run_child(code, timeout=240):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_after_threads_runs_the_child_on_one_thread():
    """os.fork and a fork-context multiprocessing.Pool after fastfc ran two
    threads: every child finishes (one thread, the serial results), says so
    once on stderr, and ignores a request for more threads (with a warning);
    the parent keeps its threads."""
    from fastfc import _info

    if not _info.openmp_enabled():
        pytest.skip("built without OpenMP")
    report, stderr = run_child(FORK_AFTER_THREADS)
    child = {"threads": 1, "same": True}
    assert report == {"fork": child, "fork asking for 4 threads": child, "pool": [child] * 4,
                      "parent threads": 2}, stderr
    # one warning per forked process: the two children and the pool's two workers
    assert stderr.count(FORK_WARNING) == 4, stderr
    assert stderr.count("set_num_threads(4) ignored") == 1, stderr


FORK_BEFORE_THREADS = FORK_PRELUDE + r'''
fastfc.set_num_threads(2)
print(json.dumps(in_forked_child(lambda: [fastfc.get_num_threads(), len(workload())])))
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_before_any_threads_keeps_the_thread_count():
    """No pool to lose: the child keeps its threads and warns nothing."""
    report, stderr = run_child(FORK_BEFORE_THREADS)
    assert report == [2, 5] and FORK_WARNING not in stderr, stderr


def test_fastfc_starts_no_process_pool_that_forks():
    """fastfc's own code never forks: any process pool in it must use the
    spawn or forkserver start method (fork would copy a dead OpenMP pool)."""
    import re

    forks = re.compile(r"^\s*(import multiprocessing|from multiprocessing)|ProcessPoolExecutor\(|"
                       r"os\.fork\(|\bPool\(", re.MULTILINE)
    for path in pathlib.Path(fastfc.__file__).parent.glob("*.py*"):
        text = path.read_text(errors="replace")
        if forks.search(text):
            assert re.search(r"get_context\(\"(spawn|forkserver)\"\)", text), \
                f"{path.name} starts processes without the spawn or forkserver method"


def test_a_source_tree_without_its_kernels_says_how_to_build_them(tmp_path):
    """Importing fastfc from sources whose extension modules were never
    built names the directory and the two ways to build, instead of
    Python's 'partially initialized module' message."""
    package = tmp_path / "fastfc"
    package.mkdir()
    for source in pathlib.Path(fastfc.__file__).parent.glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    proc = subprocess.run([sys.executable, "-c", "import fastfc"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "compiled kernels are missing from" in last and str(package) in last, proc.stderr
    assert "pip install ." in last, proc.stderr
