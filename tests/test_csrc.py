"""The C kernels compiled on their own, without Python or a BLAS library,
under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
each csrc/tests/test_*.c is a program linked with every csrc/*.c (the tests
plug a plain reference GEMM into fastfc_blas) that prints "N passed, M failed".
A canary program with one planted bug of each kind checks that the sanitizers
really are on: a build without them would pass everything silently."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
COMPILER = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


C_TESTS = sorted(CSRC.glob("tests/test_*.c"))

needs_compiler = pytest.mark.skipif(COMPILER is None, reason="no C compiler on PATH")


def build_and_run(tmp_path, sources, name, *args):
    """Compile sources into tmp_path/name with the sanitizers, run it with
    args; the CompletedProcess."""
    exe = tmp_path / name
    cmd = [COMPILER, "-std=c99", "-O1", "-g", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
           "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-I", str(CSRC),
           *map(str, sources), "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(not C_TESTS, reason="needs the source tree (csrc/tests/)")
@needs_compiler
@pytest.mark.parametrize("program", C_TESTS, ids=[p.stem for p in C_TESTS])
def test_kernels_under_sanitizers(tmp_path, program):
    run = build_and_run(tmp_path, [*sorted(CSRC.glob("*.c")), program], program.stem)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed, 0 failed" in run.stdout


CANARY = r"""
#include <limits.h>
#include <stdlib.h>

static char *volatile kept;

int main(int argc, char **argv) {
    volatile int size = 8, big = INT_MAX, sum;
    volatile char *p;
    switch (argc > 1 ? argv[1][0] : 0) {
    case 'l': /* lose the only pointer to a block */
        kept = malloc(64);
        kept = NULL;
        return 0;
    case 'o': /* write one byte past a block of a size known only at run time */
        p = malloc((size_t)size);
        p[size] = 1;
        free((void *)p);
        return 0;
    case 'u': /* signed overflow */
        sum = big + 1;
        return sum < 0;
    }
    return 0;
}
"""


@needs_compiler
@pytest.mark.parametrize("bug, report", [("leak", "detected memory leaks"),
                                         ("overflow", "heap-buffer-overflow"),
                                         ("ub", "signed integer overflow")])
def test_sanitizers_catch_a_planted_bug(tmp_path, bug, report):
    source = tmp_path / "canary.c"
    source.write_text(CANARY)
    run = build_and_run(tmp_path, [source], "canary", bug[0])
    assert run.returncode != 0 and report in run.stderr, run.stderr
    clean = subprocess.run([str(tmp_path / "canary")], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr  # the same program without a bug passes
