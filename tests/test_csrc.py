"""The C kernels compiled on their own, without Python or a BLAS library,
under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
each csrc/tests/test_*.c is a program linked with every csrc/*.c (the tests
plug a plain reference GEMM into fastfc_blas) that prints "N passed, M failed"."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
COMPILER = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


C_TESTS = sorted(CSRC.glob("tests/test_*.c"))


@pytest.mark.skipif(not C_TESTS, reason="needs the source tree (csrc/tests/)")
@pytest.mark.skipif(COMPILER is None, reason="no C compiler on PATH")
@pytest.mark.parametrize("program", C_TESTS, ids=[p.stem for p in C_TESTS])
def test_kernels_under_sanitizers(tmp_path, program):
    sources = sorted(str(p) for p in CSRC.glob("*.c"))
    exe = tmp_path / program.stem
    cmd = [COMPILER, "-std=c99", "-O1", "-g", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
           "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-I", str(CSRC), *sources,
           str(program), "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed, 0 failed" in run.stdout
