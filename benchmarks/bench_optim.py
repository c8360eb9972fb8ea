"""Optimizer steps: fastfc.optim vs a NumPy transcription vs torch.optim (float32).

Groups (fastfc.bench's family "optim", the cases `fastfc bench` times): one
per update rule on 1M parameters (fastfc's one fused pass; NumPy's update
written with in-place ufuncs and preallocated scratch, the fastest plain
NumPy form, fastfc.bench.NUMPY_OPTIMIZERS; torch with fused=True where torch
has a fused CPU kernel); Adam on 16M parameters with a plain copy moving the
bytes of its 7 sweeps (reads p, grad, m, v; writes p, m, v) as the
memory-speed yardstick; "adam step MLP 784-512-512-10" also times fastfc's
kernel called once per parameter instead of once for the whole param group.
"""
import numpy as np
import pytest

from fastfc import _optim
from fastfc.bench import NumpyAdam
from fastfc.bench.cases import ADAM_MLP_SHAPES, LEARNING_RATE

from benchutil import case_params, check_close, time_case


@pytest.mark.parametrize("case, side", case_params("optim"))
def test_optimizer_step(benchmark, request, case, side):
    time_case(benchmark, request, case, side)


def per_param_adam(params, grads):
    """fastfc's Adam kernel called once per parameter (no multi-tensor call)."""
    states = [(np.zeros_like(p), np.zeros_like(p), None) for p in params]
    t = [0]

    def step():
        t[0] += 1
        for p, g, state in zip(params, grads, states):
            _optim.adam_step([p], [g], [state], [t[0]], None, LEARNING_RATE, 0.9, 0.999, 1e-8,
                             0.0, False, False)
        return tuple(params)

    return step


def test_adam_mlp_per_param_calls(benchmark, rng):
    benchmark.group = "adam step MLP 784-512-512-10"
    params = [rng.standard_normal(shape, dtype=np.float32) for shape in ADAM_MLP_SHAPES]
    grads = [rng.standard_normal(shape, dtype=np.float32) for shape in ADAM_MLP_SHAPES]
    want = [p.copy() for p in params]
    NumpyAdam(want, grads).step()
    step = per_param_adam(params, grads)
    check_close(step(), want)
    benchmark(step)
