"""Thread control, the build report, and the reference module's independence."""
import ast
import io
import os
import pathlib
import subprocess
import sys

import pytest

import fastfc
import fastfc._config
import fastfc.reference


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
