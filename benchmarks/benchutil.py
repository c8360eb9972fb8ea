"""Helpers for the benchmark suites (imported by name; fixtures are in conftest.py)."""
import dataclasses

import numpy as np
import pytest

import fastfc
from fastfc.bench import CASES, CEILING, SIDES, Setup, check

# The ceiling contender's name in the groups, by the case's ceiling kind.
CEILING_SIDES = {"gemm": "blas-gemms-only", "copy": "copy"}


def check_close(got, want, tol=2e-4):
    """Each side's result equals the reference's up to float32 rounding."""
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        scale = max(float(np.max(np.abs(w))), 1e-30)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def case_params(family):
    """(case, side) of every case of fastfc.bench.CASES in family, for every
    side and the case's ceiling, as pytest parameters."""
    return [pytest.param(case, side, id=f"{case.name} {case.shape}-{side}")
            for case in CASES if case.family == family
            for side in SIDES + ((CEILING_SIDES[case.ceiling],) if case.ceiling else ())]


def build_case(request, case, side, dtype=np.float32):
    """The case's Contenders for side (torch from the fixture, which skips
    without it), on the data `fastfc bench` gives it."""
    torch = request.getfixturevalue("torch") if side == "torch" else None
    return case.build(Setup(dtype=dtype, rng=np.random.default_rng(0), torch=torch, quick=False,
                            threads=fastfc.get_num_threads()))


def time_case(benchmark, request, case, side):
    """Time one side of a fastfc.bench case in the group "name shape", after
    checking its results (its warm-up, as `fastfc bench` does) against the
    reference's."""
    benchmark.group = f"{case.name} {case.shape}"
    contenders = build_case(request, case, side)
    call = contenders.calls[CEILING if side in CEILING_SIDES.values() else side]
    if call is contenders.calls.get(side):
        checked = dataclasses.replace(contenders, calls={s: contenders.calls[s] for s in {side, "reference"}})
        assert check(checked, np.float32) == []
    return benchmark(call)
