"""One full training step: forward, softmax loss, backward (no gradient with
respect to the input data) and an Adam step, on a fixed batch, float32.

Networks (fastfc.bench's family "train step", the cases `fastfc bench`
times): MLP 784-100-10 at batch 64, MLP 3072-256-256-3 at batch 128,
MLP 784-512-512-10 at batch 128, and the CNN 3x32x32 -> conv3x3x32 -> relu ->
pool -> conv3x3x64 -> relu -> pool -> linear 10 at batch 64.
Contenders, from the same initial weights:
- fastfc: fastfc.models.Sequential (Linear+ReLU fused) + fastfc.optim.Adam
- reference: the network written with fastfc.reference functions + a NumPy Adam
- torch: nn.Sequential + torch.optim.Adam(fused=True) (foreach where fused is missing)

Each test of fastfc and torch first runs two steps of its side and of the
reference and checks that the losses agree, then times its side.
"""
import numpy as np
import pytest

from benchutil import case_params, time_case


@pytest.mark.parametrize("case, side", case_params("train step"))
def test_train_step(benchmark, request, case, side):
    assert np.isfinite(time_case(benchmark, request, case, side))
