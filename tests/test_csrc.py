"""The C kernels compiled on their own, without Python or a BLAS library,
under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
each csrc/tests/test_*.c is a program linked with every csrc/*.c (the tests
plug a plain reference GEMM into fastfc_blas) that prints "N passed, M failed".
A canary program with one planted bug of each kind checks that the sanitizers
really are on: a build without them would pass everything silently."""
import importlib.util
import os
import pathlib
import re
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


# ---- the kernels' names: one list, kept in step -------------------------------

SRC = ROOT / "src" / "fastfc"
needs_sources = pytest.mark.skipif(not (CSRC / "fastfc.h").exists() or
                                   not (SRC / "_kernels.pxd").exists(),
                                   reason="needs the source tree (csrc/, src/fastfc/*.pxd)")


def param_count(params):
    params = " ".join(params.split())
    return 0 if params in ("", "void") else params.count(",") + 1


def header_functions():
    """{name: parameter count} of the functions csrc/fastfc.h declares."""
    text = (CSRC / "fastfc.h").read_text()
    return {m[2]: param_count(m[3]) for m in re.finditer(
        r"^(?!typedef)([A-Za-z_][\w *]*?)\b(\w+)\(([^;{]*?)\);", text, re.M)}


def wrapper_declarations():
    """[(name, parameter count)] of the C functions the wrapper modules
    declare (in their `cdef extern from "fastfc.h"` blocks), each time one is
    declared."""
    found = []
    for path in sorted(SRC.glob("_*.pyx")):
        for block in re.findall(r'^cdef extern from "fastfc.h".*\n((?:    .*\n|\n)*)',
                                path.read_text(), re.M):
            found += [(m[2], param_count(m[3])) for m in re.finditer(
                r"^    (?!ctypedef)([A-Za-z_][\w *]*?)\b(\w+)\(([^()]*)\)", block, re.M)]
    return found


def load_generator():
    """csrc/gen_kernel_decls.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("gen_kernel_decls",
                                                  CSRC / "gen_kernel_decls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defined_functions(text):
    """The names of the functions a kernel file defines with external linkage,
    a template's SFX(name) as name_f32 and name_f64."""
    return [name for _, name, _ in load_generator().definitions(text)]


@needs_sources
def test_generated_declarations_are_up_to_date():
    """The prototypes in fastfc.h and the declarations in the wrapper modules
    are what csrc/gen_kernel_decls.py writes from the definitions: a kernel added,
    removed or changed without re-running it fails here."""
    generator = load_generator()
    stale = [path.name for path, text in generator.render().items() if path.read_text() != text]
    assert stale == [], f"{', '.join(stale)} out of date: run {generator.COMMAND}"


@needs_sources
def test_kernel_names_agree_across_c_header_and_cython_declarations():
    """Every exported function is fastfc_-prefixed, declared in fastfc.h and
    once across the wrapper modules with as many parameters, and defined in
    exactly one csrc/*.c; nothing else in csrc/ has external linkage."""
    header = header_functions()
    assert header and all(name.startswith("fastfc_") for name in header), sorted(header)
    declared = wrapper_declarations()
    assert len(declared) == len(dict(declared)), "a kernel declared in two wrapper modules"
    assert dict(declared) == header
    defined = {}
    for path in sorted(CSRC.glob("*.c")):
        for name in defined_functions(path.read_text()):
            assert name not in defined, f"{name} defined in {defined[name]} and {path.name}"
            defined[name] = path.name
    assert sorted(defined) == sorted(header)


@needs_sources
@pytest.mark.parametrize("path", sorted(p.name for p in CSRC.glob("*.c")
                                        if "instantiate.h" in p.read_text()))
def test_each_template_file_lists_the_real_names_it_exports(path):
    """A REAL/SFX template hides its functions' real names (SFX(name) is
    name_f32 and name_f64): its first comment spells them out, so that
    searching for one finds the file; the list is exactly what it defines."""
    text = (CSRC / path).read_text()
    first_comment = text[:text.index("*/")]
    listed = re.findall(r"\bfastfc_\w+", first_comment)
    assert sorted(listed) == sorted(defined_functions(text))


@needs_sources
def test_every_kernel_has_a_wrapper():
    """Each float-typed kernel (name_f32, name_f64) is called by a wrapper
    module by its real name."""
    wrappers = "\n".join(p.read_text() for p in SRC.glob("_*.pyx"))
    kernels = [name for name in header_functions() if name.endswith(("_f32", "_f64"))]
    assert kernels
    assert [name for name in kernels if not re.search(rf"\b{name}\b", wrappers)] == []
