"""One full training step: forward, softmax loss, backward (no gradient with
respect to the input data) and an Adam step, on a fixed batch, float32.

Networks: MLP 784-100-10 at batch 64, MLP 3072-256-256-3 at batch 128,
MLP 784-512-512-10 at batch 128, and the CNN 3x32x32 -> conv3x3x32 -> relu ->
pool -> conv3x3x64 -> relu -> pool -> linear 10 at batch 64.
Contenders, from the same initial weights (fastfc.bench builds them, the
same networks `fastfc bench` times):
- fastfc: fastfc.models.Sequential (Linear+ReLU fused) + fastfc.optim.Adam
- reference: the network written with fastfc.reference functions + a NumPy Adam
- torch: nn.Sequential + torch.optim.Adam(fused=True) (foreach where fused is missing)

Each test of fastfc and torch first runs two steps of its side and of the
reference and checks that the losses agree, then times its side.
"""
import numpy as np
import pytest

from fastfc.bench import CNN, Setup, mlp, train_step_case

from benchutil import check_close

NETWORKS = {
    "mlp 784-100-10 b64": (mlp(784, 100, 10), 64),
    "mlp 3072-256-256-3 b128": (mlp(3072, 256, 256, 3), 128),
    "mlp 784-512-512-10 b128": (mlp(784, 512, 512, 10), 128),
    "cnn 3x32x32 b64": (CNN, 64),
}


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("side", ["fastfc", "reference", "torch"])
def test_train_step(benchmark, request, network, side):
    pytest.importorskip("fastfc.models", reason="fastfc.models is not there yet")
    benchmark.group = f"train step {network}"
    torch = request.getfixturevalue("torch") if side == "torch" else None
    case = train_step_case(network, *NETWORKS[network])

    def build():  # the same weights and batch every time (seeded)
        return case.build(Setup(dtype=np.float32, rng=np.random.default_rng(0), torch=torch,
                                quick=False)).calls
    step = build()[side]
    if side != "reference":
        oracle = build()["reference"]
        for _ in range(2):  # the second step also checks the first Adam update
            check_close([step()], [oracle()], tol=1e-4)
    loss = benchmark(step)
    assert np.isfinite(loss)
