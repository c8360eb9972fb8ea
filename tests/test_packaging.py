"""The checkout's own promises: the licence pyproject declares is there, and
README's development build installs what pyproject says the build needs."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_license_file_is_the_mit_licence_pyproject_declares():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = \{text = "MIT"\}', pyproject, re.M)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the fastfc authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_readme_development_build_installs_the_build_requirements_first():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("For development, an in-place build", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    install = next(i for i, c in enumerate(commands) if c.startswith("pip install"))
    build = next(i for i, c in enumerate(commands) if c.startswith("cmake"))
    assert install < build
    # scikit-build-core drives pip's builds only; the in-place build is CMake's.
    for requirement in requires:
        if not requirement.startswith("scikit-build-core"):
            assert f'"{requirement}"' in commands[install], requirement
    assert "cmake" in commands[install].split() and "ninja" in commands[install].split()
