"""The manual-MLP workflow: an MLP trained with squared error on one-hot
targets by SGD with momentum and weight decay, which must take
torch.optim.SGD's steps (no dampening, no Nesterov) to float rounding."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastfc  # noqa: E402
from fastfc import layers  # noqa: E402
from fastfc.models import Sequential  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY, STEPS = 0.05, 0.9, 1e-3, 50


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    """Tiny operations: one thread (a busy machine stalls thread pools)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def manual_sgd(params, state):
    """The report's hand-written update (torch.optim.SGD's formula), on tensors:
    g = grad + weight_decay * w; v = momentum * v + g (v = g at the first
    step); w -= lr * v."""
    with torch.no_grad():
        for k, p in enumerate(params):
            g = p.grad + WEIGHT_DECAY * p
            state[k] = g.clone() if k not in state else MOMENTUM * state[k] + g
            p -= LR * state[k]


def test_sgd_with_momentum_and_weight_decay_takes_torchs_steps_for_50_steps():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 20))
    targets = np.eye(5)[rng.integers(0, 5, 200)]  # one-hot, for the squared error
    model = Sequential(layers.Linear(20, 32, seed=1, dtype=np.float64), layers.ReLU(),
                       layers.Linear(32, 5, seed=2, dtype=np.float64))
    criterion = layers.MSELoss()
    optimizer = fastfc.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                                 weight_decay=WEIGHT_DECAY)

    def torch_net():
        net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 5)).double()
        with torch.no_grad():  # fastfc's W is (in, out): torch's weight is its transpose
            for linear, k in ((net[0], 1), (net[2], 2)):
                linear.weight.copy_(torch.from_numpy(model.params[f"W{k}"].T))
                linear.bias.copy_(torch.from_numpy(model.params[f"b{k}"]))
        return net
    reference, manual = torch_net(), torch_net()
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    manual_state = {}
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(targets)
    for step in range(STEPS):
        batch = rng.choice(200, 32, replace=False)
        loss = criterion.forward(model.forward(X[batch]), targets[batch])
        model.backward(criterion.backward())
        optimizer.step()
        for net, update in ((reference, torch_sgd.step), (manual, None)):
            net.zero_grad()
            torch_loss = torch.nn.functional.mse_loss(net(Xt[batch]), Tt[batch])
            torch_loss.backward()
            update() if update else manual_sgd(list(manual.parameters()), manual_state)
        assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for k, linear in ((1, reference[0]), (2, reference[2])):
        np.testing.assert_allclose(model.params[f"W{k}"], linear.weight.detach().numpy().T,
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(model.params[f"b{k}"], linear.bias.detach().numpy(),
                                   rtol=1e-10, atol=1e-13)
    for mine, theirs in zip(manual.parameters(), reference.parameters()):
        np.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)
