"""The C kernels compiled on their own, without Python or a BLAS library,
under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
csrc/tests/test_kernels.c plugs a plain reference GEMM into fastfc_blas."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
COMPILER = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(not CSRC.is_dir(), reason="needs the source tree (csrc/)")
@pytest.mark.skipif(COMPILER is None, reason="no C compiler on PATH")
def test_kernels_under_sanitizers(tmp_path):
    sources = sorted(str(p) for p in CSRC.glob("*.c"))
    exe = tmp_path / "test_kernels"
    cmd = [COMPILER, "-std=c99", "-O1", "-g", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
           "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-I", str(CSRC), *sources,
           str(CSRC / "tests" / "test_kernels.c"), "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed, 0 failed" in run.stdout
