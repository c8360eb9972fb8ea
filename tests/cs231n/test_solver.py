"""fastfc.cs231n.solver.Solver: the course's behaviour (histories, printing,
lr_decay, subsampling, best parameters, checkpoints) on fastfc models and on
plain course-style models, and the notebooks' overfitting cells."""
import json
import re

import numpy as np
import pytest

from fastfc.cs231n import optim
from fastfc.cs231n.classifiers.cnn import ThreeLayerConvNet
from fastfc.cs231n.classifiers.fc_net import FullyConnectedNet
from fastfc.cs231n.layers import affine_backward, affine_forward, softmax_loss
from fastfc.cs231n.solver import Solver


def small(data, num_train):
    return {"X_train": data["X_train"][:num_train], "y_train": data["y_train"][:num_train],
            "X_val": data["X_val"], "y_val": data["y_val"]}


def test_three_layer_net_overfits_50_samples(cifar_like_digits, capsys):
    """FullyConnectedNets.ipynb (2022): a three-layer net reaches 100% training
    accuracy on 50 images within 20 epochs, with the notebook's settings."""
    np.random.seed(231)
    model = FullyConnectedNet([100, 100], weight_scale=1e-2, dtype=np.float64)
    solver = Solver(model, small(cifar_like_digits, 50), print_every=10, num_epochs=20,
                    batch_size=25, update_rule="sgd", optim_config={"learning_rate": 1e-2})
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    assert solver.check_accuracy(cifar_like_digits["X_train"][:50],
                                 cifar_like_digits["y_train"][:50]) == 1.0
    lines = capsys.readouterr().out.splitlines()
    # The course's lines: the loss at iterations 1, 11, 21, 31 of 40, the
    # accuracies after the first iteration (epoch 0) and after each epoch.
    assert lines[0].startswith("(Iteration 1 / 40) loss: ")
    assert lines[1].startswith("(Epoch 0 / 20) train acc: ")
    assert re.fullmatch(r"\(Epoch 0 / 20\) train acc: \d\.\d{6}; val_acc: \d\.\d{6}", lines[1])
    assert sum(line.startswith("(Iteration") for line in lines) == 4
    assert sum(line.startswith("(Epoch") for line in lines) == 21
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 21
    assert len(solver.loss_history) == 40


def test_three_layer_convnet_overfits_small_data(cifar_like_digits):
    """ConvolutionalNetworks.ipynb, "Overfit Small Data" (100 images, 15
    epochs of Adam), on a smaller network: the digits at their own 8x8."""
    np.random.seed(231)
    data = {key: value[:, :1, ::4, ::4] if key.startswith("X") else value
            for key, value in cifar_like_digits.items()}
    model = ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=16, filter_size=3, hidden_dim=50,
                              weight_scale=1e-2)
    solver = Solver(model, small(data, 100), num_epochs=15, batch_size=50, update_rule="adam",
                    optim_config={"learning_rate": 1e-3}, verbose=False)
    solver.train()
    assert solver.check_accuracy(data["X_train"][:100], data["y_train"][:100]) >= 0.95
    assert solver.best_val_acc > 0.3


class LinearSoftmax:
    """A course-style model written with plain dicts, as students write them."""

    def __init__(self, input_dim, num_classes, reg=0.0):
        self.params = {"W1": 1e-3 * np.random.randn(input_dim, num_classes),
                       "b1": np.zeros(num_classes)}
        self.reg = reg

    def loss(self, X, y=None):
        scores, cache = affine_forward(X, self.params["W1"], self.params["b1"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        _, dw, db = affine_backward(dscores, cache)
        loss += 0.5 * self.reg * np.sum(self.params["W1"] ** 2)
        return loss, {"W1": dw + self.reg * self.params["W1"], "b1": db}


def digits_data(n_train=200):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_train + 50, 8))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    return {"X_train": X[:n_train], "y_train": y[:n_train], "X_val": X[n_train:],
            "y_val": y[n_train:]}


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_plain_course_model_trains_on_the_generic_path(rule):
    np.random.seed(0)
    model = LinearSoftmax(8, 4)
    solver = Solver(model, digits_data(), update_rule=rule, num_epochs=5, batch_size=20,
                    optim_config={"learning_rate": 5e-2}, verbose=False)
    assert solver._fused_rule is None
    solver.train()
    assert solver.best_val_acc > 0.7  # 4 balanced classes: chance is 0.25
    assert model.params is solver.best_params  # the course's final assignment


def test_fused_step_follows_the_same_trajectory_as_the_course_loop():
    """A fastfc model with a named rule takes the fused step; wrapping the
    same rule in a lambda forces the course's per-parameter loop. Same
    seeds, same updates: the same losses and parameters."""
    results = []
    for rule in ("sgd_momentum", lambda w, dw, config: optim.sgd_momentum(w, dw, config)):
        np.random.seed(3)
        model = FullyConnectedNet([20, 20], input_dim=8, num_classes=4, weight_scale=1e-1,
                                  dtype=np.float64, reg=0.01)
        solver = Solver(model, digits_data(), update_rule=rule, num_epochs=3, batch_size=20,
                        lr_decay=0.5, optim_config={"learning_rate": 5e-2}, verbose=False)
        assert (solver._fused_rule is None) == callable(rule)
        solver.train()
        results.append((solver.loss_history, {k: v.copy() for k, v in model.params.items()},
                        solver.optim_configs))
    (loss_fused, params_fused, configs_fused), (loss_loop, params_loop, configs_loop) = results
    np.testing.assert_allclose(loss_fused, loss_loop, rtol=1e-12)
    for name in params_fused:
        np.testing.assert_allclose(params_fused[name], params_loop[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(configs_fused[name]["velocity"],
                                   configs_loop[name]["velocity"], rtol=1e-12, atol=1e-15)
        assert configs_fused[name]["learning_rate"] == configs_loop[name]["learning_rate"]


def test_fused_configs_hold_the_rules_state():
    np.random.seed(4)
    model = FullyConnectedNet([10], input_dim=8, num_classes=4, dtype=np.float64)
    solver = Solver(model, digits_data(), update_rule="sgd_momentum", verbose=False)
    before = {name: model.params[name].copy() for name in model.params}
    solver._step()
    solver._step()
    after = {name: model.params[name].copy() for name in model.params}
    solver._step()
    for name in model.params:
        config = solver.optim_configs[name]
        assert config["momentum"] == 0.9 and config["learning_rate"] == 1e-2
        # course: w += v, so the last step moved w by exactly the velocity
        np.testing.assert_allclose(model.params[name] - after[name], config["velocity"],
                                   rtol=1e-12, atol=1e-16)
        assert not np.array_equal(after[name], before[name])
    solver = Solver(model, digits_data(), update_rule="adam", verbose=False)
    for _ in range(3):
        solver._step()
    assert all(config["t"] == 3 for config in solver.optim_configs.values())


def test_course_style_solver_assigning_params_trains_a_fastfc_model():
    """A Solver written as the course's _step (model.params[p] = next_w)."""
    np.random.seed(5)
    model = FullyConnectedNet([20], input_dim=8, num_classes=4, weight_scale=1e-1,
                              dtype=np.float64)
    data = digits_data()
    configs = {p: {"learning_rate": 1e-2} for p in model.params}
    first = None
    for _ in range(300):
        batch_mask = np.random.choice(len(data["X_train"]), 20)
        loss, grads = model.loss(data["X_train"][batch_mask], data["y_train"][batch_mask])
        first = loss if first is None else first
        for p, w in model.params.items():
            next_w, next_config = optim.adam(w, grads[p], configs[p])
            model.params[p] = next_w
            configs[p] = next_config
    final = model.loss(data["X_train"], data["y_train"])[0]
    assert final < 0.5 * first
    accuracy = np.mean(np.argmax(model.loss(data["X_val"]), axis=1) == data["y_val"])
    assert accuracy > 0.8


def test_lr_decay_subsampling_and_best_params():
    np.random.seed(6)
    model = FullyConnectedNet([10], input_dim=8, num_classes=4, weight_scale=1e-1,
                              dtype=np.float64)
    data = digits_data(200)
    solver = Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 0.1},
                    lr_decay=0.5, num_epochs=4, batch_size=50, num_train_samples=8,
                    num_val_samples=None, verbose=False)
    solver.train()
    assert all(c["learning_rate"] == 0.1 * 0.5 ** 4 for c in solver.optim_configs.values())
    # the training accuracy of each check is over 8 samples drawn
    assert all(round(acc * 8, 9) == int(round(acc * 8)) for acc in solver.train_acc_history)
    assert len(solver.val_acc_history) == 5  # epoch 0 and 4 epochs
    assert solver.best_val_acc == max(solver.val_acc_history)
    for name in model.params:
        np.testing.assert_array_equal(model.params[name], solver.best_params[name])
    assert solver.check_accuracy(data["X_val"], data["y_val"]) == solver.best_val_acc
    # check_accuracy in batches of any size gives the same answer
    assert solver.check_accuracy(data["X_val"], data["y_val"], batch_size=7) == solver.best_val_acc


def test_checkpoints_are_npz_and_json_never_pickles(tmp_path, capsys):
    np.random.seed(7)
    model = FullyConnectedNet([6], input_dim=8, num_classes=4, dtype=np.float64)
    name = str(tmp_path / "run")
    solver = Solver(model, digits_data(100), update_rule="adam", num_epochs=2, batch_size=50,
                    checkpoint_name=name, optim_config={"learning_rate": 1e-3})
    solver.train()
    assert 'Saving checkpoint to "' + name + '_epoch_0.npz"' in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_epoch_0.json", "run_epoch_0.npz", "run_epoch_1.json", "run_epoch_1.npz",
        "run_epoch_2.json", "run_epoch_2.npz"]
    with np.load(name + "_epoch_2.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(model.params)
        final = {key: saved[key] for key in saved.files}
    record = json.loads((tmp_path / "run_epoch_2.json").read_text())
    assert record["epoch"] == 2 and record["update_rule"] == "adam"
    assert record["optim_config"] == {"learning_rate": 1e-3}
    assert record["loss_history"] == pytest.approx(solver.loss_history)
    assert record["val_acc_history"] == pytest.approx(solver.val_acc_history)
    assert record["batch_size"] == 50 and record["num_train_samples"] == 1000
    # the last checkpoint holds the parameters after the last iteration
    assert not all(np.array_equal(final[k], np.zeros_like(final[k])) for k in final)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"update_rule": "adagrad"}, ValueError, "Invalid update_rule 'adagrad'"),
    ({"update_rule": 3}, TypeError, "update_rule"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"num_epochs": -1}, ValueError, "num_epochs"),
    ({"print_every": 0}, ValueError, "print_every"),
    ({"num_train_samples": 0}, ValueError, "num_train_samples"),
    ({"optim_config": [1e-3]}, TypeError, "optim_config"),
    ({"learning_rate": 1e-3}, TypeError, "learning_rate"),
])
def test_bad_arguments(kwargs, error, match):
    model = FullyConnectedNet([6], input_dim=8, num_classes=4)
    with pytest.raises(error, match=match):
        Solver(model, digits_data(), **kwargs)


def test_bad_data():
    model = FullyConnectedNet([6], input_dim=8, num_classes=4)
    data = digits_data()
    with pytest.raises(ValueError, match="'y_val'"):
        Solver(model, {k: v for k, v in data.items() if k != "y_val"})
    with pytest.raises(ValueError, match="X_train and y_train"):
        Solver(model, dict(data, y_train=data["y_train"][:5]))


def test_bad_configs_surface_at_the_first_step_naming_the_parameter():
    model = FullyConnectedNet([6], input_dim=8, num_classes=4)
    solver = Solver(model, digits_data(), optim_config={"learnin_rate": 1e-3}, verbose=False)
    with pytest.raises(ValueError, match="W1: unknown config key 'learnin_rate'"):
        solver.train()


def test_batchnorm_model_trains_and_its_checkpoint_holds_the_running_statistics(tmp_path):
    np.random.seed(8)
    model = FullyConnectedNet([20, 20], input_dim=8, num_classes=4, weight_scale=1e-1,
                              dtype=np.float64, normalization="batchnorm")
    name = str(tmp_path / "bn")
    solver = Solver(model, digits_data(), update_rule="adam", num_epochs=10, batch_size=20,
                    optim_config={"learning_rate": 1e-2}, checkpoint_name=name, verbose=False)
    assert solver._fused_rule == "adam"
    solver.train()
    assert solver.best_val_acc > 0.75  # 4 balanced classes: chance is 0.25
    with np.load(name + "_epoch_10.npz", allow_pickle=False) as saved:
        assert {"running_mean1", "running_var2", "gamma1", "W3"} <= set(saved.files)
    reloaded = FullyConnectedNet([20, 20], input_dim=8, num_classes=4, dtype=np.float64,
                                 normalization="batchnorm")
    reloaded.load(name + "_epoch_10.npz")
    model.load(name + "_epoch_10.npz")  # the last iteration's state, as the file holds
    X_val = digits_data()["X_val"]
    np.testing.assert_array_equal(reloaded.loss(X_val), model.loss(X_val))
