"""fastfc.eecs598.fully_connected_networks and a3_helper against the check
cells of the course's fully_connected_networks.ipynb (EECS 498/598 A3):
their inputs (reset_seed(0), float64), their hard-coded expected tensors
and losses, and the initial losses the course's initialization prints."""
import pytest

torch = pytest.importorskip("torch")

import fastfc.eecs598 as eecs598  # noqa: E402
from fastfc.eecs598 import reset_seed  # noqa: E402
from fastfc.eecs598.a3_helper import softmax_loss, svm_loss  # noqa: E402
from fastfc.eecs598.fully_connected_networks import (  # noqa: E402
    Dropout, FullyConnectedNet, Linear, Linear_ReLU, ReLU, TwoLayerNet, adam, rmsprop, sgd,
    sgd_momentum)

from .notebook import layer_gradient_errors, model_gradient_errors  # noqa: E402

rel_error = eecs598.grad.rel_error
f64 = dict(dtype=torch.float64, device="cpu")


def test_linear_forward_matches_the_notebook():
    num_inputs, input_shape, output_dim = 2, torch.tensor((4, 5, 6)), 3
    input_size = num_inputs * torch.prod(input_shape)
    weight_size = output_dim * torch.prod(input_shape)
    x = torch.linspace(-0.1, 0.5, steps=input_size, **f64).reshape(num_inputs, *input_shape)
    w = torch.linspace(-0.2, 0.3, steps=weight_size, **f64).reshape(torch.prod(input_shape),
                                                                    output_dim)
    b = torch.linspace(-0.3, 0.1, steps=output_dim, **f64)
    out, _ = Linear.forward(x, w, b)
    correct_out = torch.tensor([[1.49834984, 1.70660150, 1.91485316],
                                [3.25553226, 3.51413301, 3.77273372]]).double()
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert rel_error(out, correct_out) < 1e-7  # the notebook: "less than 1e-7"


def test_linear_backward_gradient_check():
    reset_seed(0)
    x = torch.randn(10, 2, 3, **f64)
    w = torch.randn(6, 5, **f64)
    b = torch.randn(5, **f64)
    dout = torch.randn(10, 5, **f64)
    dx, _, _ = Linear.backward(dout, Linear.forward(x, w, b)[1])
    assert dx.shape == (10, 2, 3)
    errors = layer_gradient_errors(Linear.forward, Linear.backward, (x, w, b), dout)
    assert max(errors) < 1e-7  # "less than 1e-7"; the notebook's run: 1e-9


def test_relu_forward_matches_the_notebook():
    x = torch.linspace(-0.5, 0.5, steps=12, **f64).reshape(3, 4)
    before = x.clone()
    out, _ = ReLU.forward(x)
    correct_out = torch.tensor([[0., 0., 0., 0.],
                                [0., 0., 0.04545455, 0.13636364],
                                [0.22727273, 0.31818182, 0.40909091, 0.5]], **f64)
    assert rel_error(out, correct_out) < 1e-7  # "on the order of e-8"
    assert torch.equal(x, before)  # "not change the input tensor with an in-place operation"


def test_relu_backward_gradient_check():
    reset_seed(0)
    x = torch.randn(10, 10, **f64)
    dout = torch.randn(*x.shape, **f64)
    assert layer_gradient_errors(ReLU.forward, ReLU.backward, (x,), dout)[0] < 1e-8


def test_linear_relu_sandwich_gradient_check():
    reset_seed(0)
    x = torch.randn(2, 3, 4, **f64)
    w = torch.randn(12, 10, **f64)
    b = torch.randn(10, **f64)
    dout = torch.randn(2, 10, **f64)
    out, _ = Linear_ReLU.forward(x, w, b)
    assert torch.allclose(out, (x.reshape(2, 12) @ w + b).clamp(min=0), rtol=1e-12, atol=0)
    errors = layer_gradient_errors(Linear_ReLU.forward, Linear_ReLU.backward, (x, w, b), dout)
    assert max(errors) < 1e-7  # "around e-8 or less"


def test_svm_and_softmax_losses_match_the_notebook():
    reset_seed(0)
    num_classes, num_inputs = 10, 50
    x = 0.001 * torch.randn(num_inputs, num_classes, **f64)
    y = torch.randint(num_classes, size=(num_inputs,), dtype=torch.int64, device="cpu")

    dx_num = eecs598.grad.compute_numeric_gradient(lambda x: svm_loss(x, y)[0], x)
    loss, dx = svm_loss(x, y)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    assert abs(loss.item() - 8.999411338697612) < 1e-12  # the notebook prints 8.999411338697612
    assert rel_error(dx_num, dx) < 1e-7  # "less than 1e-7"

    dx_num = eecs598.grad.compute_numeric_gradient(lambda x: softmax_loss(x, y)[0], x)
    loss, dx = softmax_loss(x, y)
    assert abs(loss.item() - 2.3025266773626534) < 1e-12  # printed
    assert rel_error(dx_num, dx) < 1e-6  # "less than 1e-6"


# ---- TwoLayerNet -----------------------------------------------------------------------

def two_layer_net_at_the_notebook_weights():
    """The cell "Testing initialization ... test-time forward pass"."""
    reset_seed(0)
    N, D, H, C = 3, 5, 50, 7
    torch.randn(N, D, **f64)  # the cell's X and y, drawn before the model
    torch.randint(C, size=(N,), dtype=torch.int64, device="cpu")
    std = 1e-3
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std, **f64)
    assert torch.abs(model.params["W1"].std() - std) < std / 10
    assert torch.all(model.params["b1"] == 0)
    assert torch.abs(model.params["W2"].std() - std) < std / 10
    assert torch.all(model.params["b2"] == 0)
    model.params["W1"] = torch.linspace(-0.7, 0.3, steps=D * H, **f64).reshape(D, H)
    model.params["b1"] = torch.linspace(-0.1, 0.9, steps=H, **f64)
    model.params["W2"] = torch.linspace(-0.3, 0.4, steps=H * C, **f64).reshape(H, C)
    model.params["b2"] = torch.linspace(-0.9, 0.1, steps=C, **f64)
    # A transposed view: the model's loss casts X as the course's X.to(dtype) does.
    X = torch.linspace(-5.5, 4.5, steps=N * D, **f64).reshape(D, N).t()
    return model, X, torch.tensor([0, 5, 1])


def test_two_layer_net_scores_and_losses_match_the_notebook():
    model, X, y = two_layer_net_at_the_notebook_weights()
    scores = model.loss(X)
    correct_scores = torch.tensor(
        [[11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
         [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
         [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]],
        **f64)
    assert torch.abs(scores - correct_scores).sum() < 1e-6
    loss, grads = model.loss(X, y)
    assert abs(loss - 3.4702243556) < 1e-10
    model.reg = 1.0
    loss, grads = model.loss(X, y)
    assert abs(loss - 49.719461034881775) < 1e-10  # reg * sum(W**2): no factor 0.5


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_two_layer_net_gradient_check(reg):
    model, X, y = two_layer_net_at_the_notebook_weights()
    model.reg = reg
    _, errors = model_gradient_errors(model, X, y)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-5  # "around e-6 or less"; the notebook's run: 2.3e-6


# ---- FullyConnectedNet -----------------------------------------------------------------

def fully_connected_check_data():
    reset_seed(0)
    N, D, C = 2, 15, 10
    X = torch.randn(N, D, **f64)
    y = torch.randint(C, size=(N,), dtype=torch.int64, device="cpu")
    return X, y


def test_fully_connected_net_initial_losses_and_gradient_checks():
    """"Initial loss and gradient check": one seed, then a model per reg,
    the second drawing its weights after the first's."""
    X, y = fully_connected_check_data()
    for reg, expected_loss in ((0, 2.3017956720294004), (3.14, 7.043315943307753)):
        model = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, reg=reg,
                                  weight_scale=5e-2, **f64)
        loss, errors = model_gradient_errors(model, X, y)
        assert abs(loss - expected_loss) < 1e-12  # 0.5 * reg * sum(W**2)
        assert set(errors) == {"W1", "W2", "W3", "b1", "b2", "b3"}
        # "less than 1e-6, except for W1 and W2 with reg=0: less than 1e-5"
        assert max(errors.values()) < 1e-5
        assert max(v for k, v in errors.items() if (reg, k) not in ((0, "W1"), (0, "W2"))) < 1e-6


@pytest.mark.parametrize("dropout", [0, 0.25, 0.5])
def test_fully_connected_net_with_dropout_gradient_check(dropout):
    """"Fully-connected nets with dropout": seed=0 fixes the masks. The
    dropout=0 loss is the notebook's; the others depend on the masks, which
    are fastfc's (a loss near log(10) all the same)."""
    X, y = fully_connected_check_data()
    model = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, weight_scale=5e-2,
                              dropout=dropout, seed=0, **f64)
    loss, errors = model_gradient_errors(model, X, y, names=["W1", "W3", "b2"])
    if dropout == 0:
        assert abs(loss - 2.3017956720294004) < 1e-12
    assert abs(loss - 2.3) < 0.1
    assert max(errors.values()) < 1e-5  # "around e-5 or less"


def test_dropout_forward_statistics():
    reset_seed(0)
    x = torch.randn(500, 500, **f64) + 10
    assert abs(x.mean().item() - 9.999622936037644) < 1e-12  # the notebook's "Mean of input"
    for p in [0.25, 0.4, 0.7]:
        out, _ = Dropout.forward(x, {"mode": "train", "p": p})
        out_test, _ = Dropout.forward(x, {"mode": "test", "p": p})
        # The notebook prints a zero fraction near p and a mean near the input's.
        assert abs((out == 0).to(torch.float32).mean().item() - p) < 0.005
        assert abs(out.mean().item() - x.mean().item()) < 0.15
        assert torch.equal(out_test, x)
        assert (out_test == 0).sum() == 0


def test_dropout_backward_gradient_check():
    reset_seed(0)
    x = torch.randn(10, 10, **f64) + 10
    dout = torch.randn_like(x)
    dropout_param = {"mode": "train", "p": 0.2, "seed": 0}
    out, cache = Dropout.forward(x, dropout_param)
    dx = Dropout.backward(dout, cache)
    dx_num = eecs598.grad.compute_numeric_gradient(
        lambda xx: Dropout.forward(xx, dropout_param)[0], x, dout)
    assert rel_error(dx, dx_num) < 1e-8  # "around e-10 or less"; the notebook's run: 3e-9
    assert torch.equal(dx == 0, out == 0)


def test_dropout_masks_follow_the_seed_and_torchs_generator():
    x = torch.ones(1000, **f64)
    fixed = [Dropout.forward(x, {"mode": "train", "p": 0.5, "seed": 3})[0] for _ in range(2)]
    assert torch.equal(*fixed)
    reset_seed(1)
    first = [Dropout.forward(x, {"mode": "train", "p": 0.5})[0] for _ in range(2)]
    assert not torch.equal(*first)
    reset_seed(1)
    again = [Dropout.forward(x, {"mode": "train", "p": 0.5})[0] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


# ---- update rules ----------------------------------------------------------------------

def rule_inputs(N=4, D=5):
    def ramp(low, high):
        return torch.linspace(low, high, steps=N * D, **f64).reshape(N, D)
    return ramp


def test_sgd_momentum_matches_the_notebook():
    ramp = rule_inputs()
    w, dw, v = ramp(-0.4, 0.6), ramp(-0.6, 0.4), ramp(0.6, 0.9)
    config = {"learning_rate": 1e-3, "velocity": v}
    next_w, _ = sgd_momentum(w, dw, config=config)
    expected_next_w = torch.tensor([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]], **f64)
    expected_velocity = torch.tensor([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]], **f64)
    assert rel_error(next_w, expected_next_w) < 1e-8  # "around e-8 or less"
    assert rel_error(expected_velocity, config["velocity"]) < 1e-8
    assert next_w is w and config["velocity"] is v  # updated in place


def test_rmsprop_matches_the_notebook():
    ramp = rule_inputs()
    w, dw, cache = ramp(-0.4, 0.6), ramp(-0.6, 0.4), ramp(0.6, 0.9)
    config = {"learning_rate": 1e-2, "cache": cache}
    next_w, _ = rmsprop(w, dw, config=config)
    expected_next_w = torch.tensor([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]], **f64)
    expected_cache = torch.tensor([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]], **f64)
    assert rel_error(expected_next_w, next_w) < 1e-8
    assert rel_error(expected_cache, config["cache"]) < 1e-8


def test_adam_matches_the_notebook():
    ramp = rule_inputs()
    w, dw, m, v = ramp(-0.4, 0.6), ramp(-0.6, 0.4), ramp(0.6, 0.9), ramp(0.7, 0.5)
    config = {"learning_rate": 1e-2, "m": m, "v": v, "t": 5}
    next_w, _ = adam(w, dw, config=config)
    expected_next_w = torch.tensor([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]], **f64)
    expected_v = torch.tensor([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]], **f64)
    expected_m = torch.tensor([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]], **f64)
    assert rel_error(expected_next_w, next_w) < 1e-7  # "around e-7 or less"
    assert rel_error(expected_v, config["v"]) < 1e-7
    assert rel_error(expected_m, config["m"]) < 1e-7
    assert config["t"] == 6


@pytest.mark.parametrize("rule", [sgd, sgd_momentum, rmsprop, adam])
def test_rules_create_their_state_as_tensors_and_fill_defaults(rule):
    w = torch.linspace(-1, 1, 12, dtype=torch.float32).reshape(3, 4)
    dw = torch.full((3, 4), 0.5)
    next_w, config = rule(w, dw)
    assert next_w is w and "learning_rate" in config
    state = [v for v in config.values() if isinstance(v, torch.Tensor)]
    assert all(s.shape == w.shape and s.dtype == w.dtype for s in state)
    assert len(state) == {sgd: 0, sgd_momentum: 1, rmsprop: 1, adam: 2}[rule]
    before = [s.clone() for s in state]
    rule(w, dw, config)  # the next step updates the same state tensors
    assert all(not torch.equal(a, b) for a, b in zip(before, state))
