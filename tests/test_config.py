"""Thread control, the build report, and the reference module's independence."""
import ast
import io
import os
import pathlib
import subprocess
import sys

import pytest

import fastfc
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


def test_default_honours_omp_num_threads():
    code = "import fastfc; print(fastfc.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "3", out.stderr


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
