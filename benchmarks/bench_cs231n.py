"""A training step through the course package (fastfc.cs231n: the course's
model, Solver and update rule) against the same step through fastfc's own
object API (fastfc.models + fastfc.optim), float32, the same network,
batch and Adam.

Networks: FullyConnectedNet [100, 100] on 3072-dim input at batch 100, and
ThreeLayerConvNet at its course defaults (3x32x32, 32 filters 7x7, hidden
100) at the notebook's batch 50.
Each step draws a batch with np.random.choice (the course's sampling), gathers
it into the same kind of buffer, runs forward, softmax loss and backward and
the Adam update:
- cs231n: Solver._step() (the fused path: the model's _loss_into_grads and
  one fastfc.optim.course_step call over all parameters)
- fastfc: model.forward, SoftmaxCrossEntropy, model.backward, Adam.step()

Issue 10 asks the course package's step to cost no more than 5% over fastfc's.
Both sides first train two steps from the same weights on the same batches
and must give the same losses.
"""
import numpy as np
import pytest

from fastfc.cs231n.classifiers.cnn import ThreeLayerConvNet
from fastfc.cs231n.classifiers.fc_net import FullyConnectedNet
from fastfc.cs231n.solver import Solver
from fastfc.layers import SoftmaxCrossEntropy
from fastfc.models import ConvNet
from fastfc.models import FullyConnectedNet as FastfcFullyConnectedNet
from fastfc.optim import Adam
from fastfc.solver import _BatchBuffers

from benchutil import check_close

N_TRAIN = 1000
NETWORKS = {
    "fc 3072-100-100-10 b100": (
        lambda: FullyConnectedNet([100, 100], weight_scale=1e-2),
        lambda: FastfcFullyConnectedNet([100, 100], input_dim=3072, num_classes=10, seed=0),
        100),
    "three-layer convnet 3x32x32 b50": (
        lambda: ThreeLayerConvNet(),
        lambda: ConvNet(input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100,
                        num_classes=10, seed=0),
        50),
}


def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRAIN, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, N_TRAIN)
    return {"X_train": X, "y_train": y, "X_val": X[:100], "y_val": y[:100]}


def cs231n_step(network):
    """The course package's step (a Solver's _step), and the model."""
    build, _, batch_size = NETWORKS[network]
    np.random.seed(0)
    model = build()
    solver = Solver(model, data(), update_rule="adam", optim_config={"learning_rate": 1e-3},
                    batch_size=batch_size, verbose=False)

    def step():
        solver._step()
        return solver.loss_history[-1]
    return step, model


def fastfc_step(network, params):
    """fastfc's object API on the same weights (params), the same batches
    (the draws of np.random.choice after np.random.seed(0), from a generator
    of its own) and the same buffers."""
    _, build, batch_size = NETWORKS[network]
    model = build()
    model.params = params
    criterion = SoftmaxCrossEntropy()
    optimizer = Adam(model.parameters(), lr=1e-3)
    d = data()
    buffers = _BatchBuffers(d["X_train"], d["y_train"], batch_size, model.dtype)
    rng = np.random.RandomState(0)

    def step():
        X_batch, y_batch = buffers.gather(rng.choice(N_TRAIN, batch_size))
        loss = criterion.forward(model.forward(X_batch), y_batch)
        model.backward(criterion.backward())
        optimizer.step()
        return loss
    return step


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("side", ["fastfc", "cs231n"])
def test_cs231n_train_step(benchmark, network, side):
    benchmark.group = f"cs231n train step {network}"
    course, model = cs231n_step(network)
    ours = fastfc_step(network, {name: model.params[name].copy() for name in model.params})
    np.random.seed(0)  # the Solver's batches: the same draws as the object side's
    check_close([course(), course()], [ours(), ours()], tol=1e-4)
    loss = benchmark(course if side == "cs231n" else ours)
    assert np.isfinite(loss)
