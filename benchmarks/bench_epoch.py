"""A whole training epoch of the MLP 784-100-10 at batch 64: shuffle, batch
gathering, forward, softmax loss, backward and Adam step, over 60,000
synthetic samples. fastfc (Sequential + fastfc.optim.Adam) vs the same loop
on fastfc.reference with a NumPy Adam vs a plain PyTorch loop with fused
Adam; the loops are fastfc.bench.epoch_contenders, the ones `fastfc bench`
times.

With --benchmark-disable (CI's smoke run) the epoch covers 2,000 samples:
each side's first epoch is checked against the reference's, then run once more.
"""
import numpy as np
import pytest

from fastfc.bench import EPOCH_SAMPLES, Setup, epoch_contenders

from benchutil import check_close

SMOKE_SAMPLES = 2_000
ROUNDS = 5


@pytest.fixture
def samples(benchmark):
    """The full epoch when timing, a small one for the smoke run."""
    return SMOKE_SAMPLES if benchmark.disabled else EPOCH_SAMPLES


@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
def test_epoch(benchmark, request, samples, side):
    benchmark.group = f"epoch 784-100-10 b64 n={samples}"
    torch = request.getfixturevalue("torch") if side == "torch" else None
    setup = Setup(dtype=np.float32, rng=np.random.default_rng(0), torch=torch, quick=False)
    contenders = epoch_contenders(setup, samples, sides=(side, "reference"))
    first = {s: call() for s, call in contenders.calls.items()}
    # Hundreds of float32 Adam steps: rounding differences grow a little.
    check_close([first[side]], [first["reference"]], tol=2e-3)
    mean_loss = benchmark.pedantic(contenders.calls[side], rounds=ROUNDS, iterations=1)
    assert np.isfinite(mean_loss) and mean_loss < first[side]  # the second epoch learned more
