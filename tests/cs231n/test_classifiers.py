"""fastfc.cs231n.classifiers against the notebooks' model cells: TwoLayerNet
(FullyConnectedNets 2017), FullyConnectedNet (FullyConnectedNets and
Dropout 2022), ThreeLayerConvNet (ConvolutionalNetworks 2022), with their
seeds and expected numbers, and their gradient checks written as the
notebooks write them."""
import numpy as np
import pytest

from fastfc import models
from fastfc.cs231n.classifiers.cnn import ThreeLayerConvNet
from fastfc.cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet

from .notebook import model_gradient_errors


def two_layer_net_at_the_notebook_weights():
    """FullyConnectedNets.ipynb (2017), cell "Two-layer network"."""
    np.random.seed(231)
    N, D, H, C = 3, 5, 50, 7
    np.random.randn(N, D)  # the cell's X, drawn before the model
    np.random.randint(C, size=N)
    std = 1e-3
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std)
    assert abs(model.params["W1"].std() - std) < std / 10
    assert np.all(model.params["b1"] == 0)
    assert abs(model.params["W2"].std() - std) < std / 10
    assert np.all(model.params["b2"] == 0)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    return model, X, np.asarray([0, 5, 1])


def test_two_layer_net_scores_and_losses_match_the_notebook():
    model, X, y = two_layer_net_at_the_notebook_weights()
    scores = model.loss(X)
    correct_scores = np.asarray(
        [[11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
         [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
         [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]])
    assert np.abs(scores - correct_scores).sum() < 1e-6
    loss, grads = model.loss(X, y)
    assert abs(loss - 3.4702243556) < 1e-10
    model.reg = 1.0
    loss, grads = model.loss(X, y)
    assert abs(loss - 26.5948426952) < 1e-10


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_two_layer_net_gradient_check(reg):
    model, X, y = two_layer_net_at_the_notebook_weights()
    model.reg = reg
    _, errors = model_gradient_errors(model, X, y)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-6  # the notebook's run: at most 8.18e-07


def test_two_layer_net_computes_in_float64_by_default():
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    assert all(model.params[name].dtype == np.float64 for name in model.params)
    assert model.loss(np.ones((2, 4), dtype=np.float32)).dtype == np.float64


def test_fully_connected_net_initial_losses_and_gradient_checks():
    """FullyConnectedNets.ipynb (2022), "Initial Loss and Gradient Check": one
    seed, then a model per reg (the second drawing its weights after the
    first's)."""
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=(N,))
    for reg, expected_loss in ((0, 2.300479089768492), (3.14, 7.052114776533016)):
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg,
                                  weight_scale=5e-2, dtype=np.float64)
        loss, errors = model_gradient_errors(model, X, y)
        assert abs(loss - expected_loss) < 1e-12
        assert set(errors) == {"W1", "W2", "W3", "b1", "b2", "b3"}
        # "errors on the order of e-7 or smaller ... fine to see W2 on the
        # order of e-5 for reg = 0"; the notebook's run: W2 2.21e-05.
        assert errors["W2"] < 5e-5
        assert max(e for name, e in errors.items() if name != "W2") < 1e-6


DROPOUT_EXPECTED_LOSS = {1: 2.300479089768492}


@pytest.mark.parametrize("keep", [1, 0.75, 0.5])
def test_fully_connected_net_with_dropout_gradient_check(keep):
    """Dropout.ipynb (2022), "Fully Connected Networks with Dropout". The
    masks are fastfc's, not np.random's, so only keep = 1 reproduces the
    notebook's loss; the others must stay near log(10) and check."""
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=(N,))
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2,
                              dtype=np.float64, dropout_keep_ratio=keep, seed=123)
    loss, errors = model_gradient_errors(model, X, y)
    if keep in DROPOUT_EXPECTED_LOSS:
        assert abs(loss - DROPOUT_EXPECTED_LOSS[keep]) < 1e-12
    else:
        assert abs(loss - np.log(C)) < 0.05  # the notebook: 2.3024 and 2.3043
    assert errors["W2"] < 5e-5 and max(errors.values()) < 5e-5  # "around e-6 or less"
    assert model.use_dropout == (keep < 1)


def test_dropout_drops_hidden_units_in_training_only():
    np.random.seed(0)
    model = FullyConnectedNet([50], input_dim=10, num_classes=3, dropout_keep_ratio=0.5,
                              weight_scale=1e-1, dtype=np.float64)
    X = np.random.randn(200, 10)
    y = np.random.randint(3, size=200)
    scores = model.loss(X)
    np.testing.assert_array_equal(model.loss(X), scores)  # test mode: deterministic
    first, second = model.loss(X, y)[0], model.loss(X, y)[0]
    assert first != second  # a new mask at each training call without a seed


def test_2017_dropout_keyword_is_the_drop_probability():
    np.random.seed(231)
    X = np.random.randn(2, 15)
    y = np.random.randint(10, size=(2,))
    losses = []
    for kwargs in ({"dropout": 0.25}, {"dropout_keep_ratio": 0.75}):
        np.random.seed(0)
        model = FullyConnectedNet([20, 30], input_dim=15, weight_scale=5e-2, dtype=np.float64,
                                  seed=123, **kwargs)
        losses.append(model.loss(X, y)[0])
    assert losses[0] == losses[1]


@pytest.mark.parametrize("kwargs, match", [
    ({"dropout_keep_ratio": 0}, "dropout_keep_ratio"),
    ({"dropout_keep_ratio": 1.5}, "dropout_keep_ratio"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": 0.5, "dropout_keep_ratio": 0.5}, "not both"),
    ({"normalization": "groupnorm"}, "normalization"),
    ({"normalization": "BatchNorm"}, "normalization"),
    ({"hidden_dims": 100}, "hidden_dims"),
])
def test_fully_connected_net_bad_arguments(kwargs, match):
    kwargs = {"hidden_dims": [10], "input_dim": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        FullyConnectedNet(**kwargs)


def test_fully_connected_net_with_batchnorm_matches_the_notebook():
    """BatchNormalization.ipynb (2022), "Fully Connected Networks with Batch
    Normalization": initial losses and gradient checks with reg 0 and 3.14."""
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=(N,))
    for reg, expected_loss in ((0, 2.2611955101340957), (3.14, 6.996533220108303)):
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg,
                                  weight_scale=5e-2, dtype=np.float64, normalization="batchnorm")
        loss, errors = model_gradient_errors(model, X, y)
        assert abs(loss - expected_loss) < 1e-12
        assert set(errors) == {"W1", "W2", "W3", "b1", "b2", "b3", "gamma1", "gamma2", "beta1",
                               "beta2"}
        # "between 1e-4~1e-10 for W, 1e-08~1e-10 for b, 1e-08~1e-09 for beta
        # and gammas"; the notebook's run: W1 1.10e-04, b2 1.93e-07. The
        # biases before a batch norm have a zero gradient: only noise is left.
        assert max(errors[w] for w in ("W1", "W2", "W3")) < 2e-4
        assert max(errors[b] for b in ("b1", "b2", "b3")) < 1e-6
        assert max(errors[g] for g in ("gamma1", "gamma2", "beta1", "beta2")) < 1e-8


@pytest.mark.parametrize("reg", [0, 3.14])
def test_fully_connected_net_with_layernorm_gradient_check(reg):
    np.random.seed(231)
    X = np.random.randn(2, 15)
    y = np.random.randint(10, size=(2,))
    model = FullyConnectedNet([20, 30], input_dim=15, reg=reg, weight_scale=5e-2,
                              dtype=np.float64, normalization="layernorm")
    loss, errors = model_gradient_errors(model, X, y)
    assert abs(loss - np.log(10)) < 0.1 if reg == 0 else loss > 4
    # the bound the notebook gives normalized networks ("1e-4~1e-10 for W")
    assert "gamma2" in errors and max(errors.values()) < 1e-4


def test_batchnorm_running_statistics_start_at_zero_as_the_course():
    np.random.seed(0)
    model = FullyConnectedNet([6], input_dim=4, num_classes=3, weight_scale=1.0,
                              dtype=np.float64, normalization="batchnorm")
    X = np.random.randn(10, 4)
    h = X @ model.params["W1"]  # b1 is 0
    # Before any training the course normalizes by its zero running
    # statistics: x / sqrt(0 + eps).
    np.testing.assert_allclose(model.loss(X), np.maximum(h / np.sqrt(1e-5), 0) @ model.params["W2"],
                               rtol=1e-10)
    model.loss(X, np.zeros(10, dtype=int))
    after = np.maximum((h - 0.1 * h.mean(axis=0)) / np.sqrt(0.1 * h.var(axis=0) + 1e-5), 0)
    np.testing.assert_allclose(model.loss(X), after @ model.params["W2"], rtol=1e-10)


def test_2017_use_batchnorm_keyword():
    np.random.seed(1)
    model = FullyConnectedNet([5], input_dim=4, use_batchnorm=True)
    assert model.normalization == "batchnorm" and "gamma1" in model.params
    with pytest.raises(ValueError, match="use_batchnorm"):
        FullyConnectedNet([5], input_dim=4, use_batchnorm=True, normalization="layernorm")


def test_three_layer_convnet_initial_loss():
    """ConvolutionalNetworks.ipynb, "Sanity Check Loss": about log(10)
    (2.302586) without regularization, a little more with reg = 0.5."""
    np.random.seed(231)
    model = ThreeLayerConvNet()
    assert model.params["W1"].shape == (32, 3, 7, 7) and model.params["W1"].dtype == np.float32
    N = 50
    X = np.random.randn(N, 3, 32, 32)
    y = np.random.randint(10, size=N)
    loss, grads = model.loss(X, y)
    assert abs(loss - np.log(10)) < 1e-3
    model.reg = 0.5
    loss_reg, _ = model.loss(X, y)
    # 0.5 * reg * sum(W**2): about 0.5 * 0.5 * 1e-6 * 834,000 weights = 0.21
    # (the notebook: 2.508 - 2.303 = 0.206).
    weights = sum(float(np.sum(model.params[k].astype(np.float64) ** 2))
                  for k in ("W1", "W2", "W3"))
    assert abs((loss_reg - loss) - 0.25 * weights) < 1e-4
    assert 0.15 < loss_reg - loss < 0.25


def test_three_layer_convnet_gradient_check():
    """ConvolutionalNetworks.ipynb, "Gradient Check" (h = 1e-6; "correct
    implementations may have relative errors up to the order of e-2")."""
    np.random.seed(231)
    input_dim = (3, 16, 16)
    X = np.random.randn(2, *input_dim)
    y = np.random.randint(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=input_dim, hidden_dim=7,
                              dtype=np.float64)
    _, errors = model_gradient_errors(model, X, y, h=1e-6)
    assert set(errors) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert max(errors.values()) < 5e-2  # the notebook's run: W2 1.8e-02


@pytest.mark.parametrize("reg", [0.0, 0.9])
def test_three_layer_convnet_gradient_check_at_larger_weights(reg):
    """The same check at weights large enough for tight errors."""
    np.random.seed(1)
    X = np.random.randn(3, 2, 8, 8)
    y = np.random.randint(4, size=3)
    model = ThreeLayerConvNet(input_dim=(2, 8, 8), num_filters=4, filter_size=3, hidden_dim=6,
                              num_classes=4, weight_scale=0.3, reg=reg, dtype=np.float64)
    _, errors = model_gradient_errors(model, X, y)
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("build", [
    lambda: TwoLayerNet(input_dim=6, hidden_dim=5, num_classes=3, weight_scale=0.3, reg=0.1),
    lambda: FullyConnectedNet([5, 4], input_dim=6, num_classes=3, weight_scale=0.3, reg=0.1,
                              dtype=np.float64),
    lambda: ThreeLayerConvNet(input_dim=(1, 6, 6), num_filters=2, filter_size=3, hidden_dim=5,
                              num_classes=3, weight_scale=0.3, reg=0.1, dtype=np.float64),
])
def test_l2_term_is_half_reg_times_the_squared_weights(build):
    np.random.seed(5)
    model = build()
    X = np.random.randn(4, *((1, 6, 6) if isinstance(model, ThreeLayerConvNet) else (6,)))
    y = np.random.randint(3, size=4)
    loss, grads = model.loss(X, y)
    model.reg = 0.0
    loss0, grads0 = model.loss(X, y)
    weights = [name for name in model.params if name.startswith("W")]
    assert abs(loss - loss0 - 0.05 * sum(float(np.sum(model.params[w] ** 2))
                                         for w in weights)) < 1e-12
    for name in model.params:
        extra = 0.1 * model.params[name] if name in weights else 0.0
        np.testing.assert_allclose(grads[name], grads0[name] + extra, rtol=1e-12, atol=1e-15)


def test_models_are_fastfc_networks_and_init_from_np_random():
    assert isinstance(TwoLayerNet(), models.TwoLayerNet)
    assert isinstance(FullyConnectedNet([10]), models.FullyConnectedNet)
    assert isinstance(ThreeLayerConvNet(), models.ConvNet)
    np.random.seed(7)
    model = FullyConnectedNet([10], input_dim=6, dtype=np.float64)
    np.random.seed(7)
    w1 = 1e-2 * np.random.randn(6, 10)  # the course draws W1, then W2, from np.random
    w2 = 1e-2 * np.random.randn(10, 10)
    np.testing.assert_array_equal(model.params["W1"], w1)
    np.testing.assert_array_equal(model.params["W2"], w2)
    assert not np.any(model.params["b1"]) and not np.any(model.params["b2"])
