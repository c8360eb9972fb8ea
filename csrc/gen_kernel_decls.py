"""Writes the kernel declarations, the prototypes in csrc/fastfc.h and the
Cython declarations in the wrapper that calls them (src/fastfc/_<family>.pyx),
from the kernels' definitions, so that a kernel is declared in one place.

Each csrc/*.c that defines functions with external linkage owns one block in
fastfc.h and one in exactly one wrapper module, between the lines

    /* BEGIN GENERATED from <file>.c ... */  and  /* END GENERATED <file>.c */

(`#` comments in the .pyx, inside its `cdef extern from "fastfc.h"`); everything
outside the blocks (types, the C contract's comments, the shared types in
src/fastfc/_kernels.pxd) is written by hand. A template's SFX(name) is declared
as name_f32 and name_f64 with REAL spelled float and double.

    python3 csrc/gen_kernel_decls.py          rewrite the blocks
    python3 csrc/gen_kernel_decls.py --check  exit 1 if a block is out of date

tests/test_csrc.py runs the check. Standard library only.
"""
import keyword
import pathlib
import re
import sys

CSRC = pathlib.Path(__file__).resolve().parent
HEADER = CSRC / "fastfc.h"
WRAPPERS = CSRC.parent / "src" / "fastfc"
COMMAND = "python3 csrc/gen_kernel_decls.py"
WIDTH = 100  # the column limit the rest of both files keeps

# A definition at the start of a line, not static, not a typedef and not
# behind an attribute macro: return type, SFX(name) or name, parameters, `{`.
DEFINITION = re.compile(r"^(?!static\b|typedef\b|[A-Z_]+ )(?P<ret>[A-Za-z_][\w *]*?)\s*"
                        r"\b(?:SFX\((?P<template>\w+)\)|(?P<name>\w+))"
                        r"\((?P<params>[^;{]*)\)\s*\{", re.M)
REALS = (("_f32", "float"), ("_f64", "double"))


def definitions(text):
    """[(return type, real name, [parameter, ...])] of the functions a kernel
    file defines with external linkage, in the file's order, a template's
    name_f32 just before its name_f64."""
    found = []
    for m in DEFINITION.finditer(text):
        params = [" ".join(p.split()) for p in m["params"].split(",")]
        params = [] if params == ["void"] else params
        if m["name"]:
            found.append((m["ret"], m["name"], params))
            continue
        for suffix, real in REALS:
            spell = lambda s: re.sub(r"\bREAL\b", real, s)  # noqa: E731
            found.append((spell(m["ret"]), m["template"] + suffix, [spell(p) for p in params]))
    return found


def wrap(head, params, tail, indent=""):
    """head(params)tail over lines of at most WIDTH columns, continuation
    lines aligned after the parenthesis."""
    lines, line = [], indent + head + "("
    align = " " * len(line)
    for i, param in enumerate(params):
        piece = param + ("," if i < len(params) - 1 else ")" + tail)
        if line[-1] != "(" and len(line) + 1 + len(piece) > WIDTH:
            lines.append(line)
            line = align + piece
        else:
            line += ("" if line[-1] == "(" else " ") + piece
    if not params:
        line += ")" + tail
    return "\n".join(lines + [line])


def head(ret, name):
    return ret + ("" if ret.endswith("*") else " ") + name


def c_prototypes(defs):
    return [wrap(head(ret, name), params or ["void"], ";") for ret, name, params in defs]


def pxd_param(param):
    """A C parameter as Cython reads it: a name that is a Python keyword
    (dropout's `in`) gets a trailing underscore."""
    name = re.search(r"(\w+)(\[\w*\])?$", param)
    if keyword.iskeyword(name[1]):
        return param[:name.start(1)] + name[1] + "_" + param[name.end(1):]
    return param


def pxd_declarations(defs):
    return [wrap(head(ret, name), [pxd_param(p) for p in params], "", "    ")
            for ret, name, params in defs]


def block_pattern(comment, indent):
    begin, end = comment
    return re.compile(rf"^{indent}{re.escape(begin)} BEGIN GENERATED from (?P<file>\w+\.c)\b.*\n"
                      rf"(?P<body>(?:.*\n)*?)"
                      rf"{indent}{re.escape(begin)} END GENERATED (?P=file){re.escape(end)}$",
                      re.M)


C_COMMENT, PYX_COMMENT = ("/*", " */"), ("#", "")


def fill_blocks(text, comment, indent, declare, defs):
    """text with each generated block rewritten from defs[its file]."""
    pattern = block_pattern(comment, indent)

    def fill(m):
        body = "\n".join(declare(defs[m["file"]])) + "\n"
        return m[0][:m.start("body") - m.start()] + body + m[0][m.end("body") - m.start():]

    return pattern.sub(fill, text)


def render():
    """{path: the text it should have}; raises ValueError when the kernel files
    and the blocks do not match one to one (in fastfc.h, and across the
    wrapper modules)."""
    defs = {p.name: definitions(p.read_text()) for p in sorted(CSRC.glob("*.c"))}
    defs = {name: d for name, d in defs.items() if d}
    header = HEADER.read_text()
    blocks = [m["file"] for m in block_pattern(C_COMMENT, "").finditer(header)]
    if sorted(blocks) != sorted(defs):
        raise ValueError(f"{HEADER.name}: generated blocks for {sorted(blocks)}, kernel files "
                         f"with exported functions {sorted(defs)}; add or remove a "
                         f"BEGIN/END GENERATED pair")
    rendered = {HEADER: fill_blocks(header, C_COMMENT, "", c_prototypes, defs)}
    owners = {}
    for path in sorted(WRAPPERS.glob("_*.pyx")):
        text = path.read_text()
        for m in block_pattern(PYX_COMMENT, "    ").finditer(text):
            owners.setdefault(m["file"], []).append(path.name)
        rendered[path] = fill_blocks(text, PYX_COMMENT, "    ", pxd_declarations, defs)
    if sorted(owners) != sorted(defs) or any(len(o) > 1 for o in owners.values()):
        raise ValueError(f"wrapper modules: generated blocks {owners}, kernel files with "
                         f"exported functions {sorted(defs)}; each needs one BEGIN/END "
                         f"GENERATED pair in the wrapper that calls it")
    return rendered


def main(argv):
    check = argv == ["--check"]
    if argv and not check:
        sys.exit(__doc__)
    stale = {path: text for path, text in render().items() if path.read_text() != text}
    for path, text in stale.items():
        if check:
            print(f"{path.name} is out of date: run {COMMAND}")
        else:
            path.write_text(text)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
