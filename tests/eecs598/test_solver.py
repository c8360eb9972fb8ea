"""fastfc.eecs598.Solver (the course's training loop on tensors) and the
models' save/load, on the embedded digits standing in for CIFAR-10."""
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastfc import datasets  # noqa: E402
from fastfc.eecs598 import Solver, reset_seed  # noqa: E402
from fastfc.eecs598.convolutional_networks import DeepConvNet, ThreeLayerConvNet  # noqa: E402
from fastfc.eecs598.fully_connected_networks import (  # noqa: E402
    FullyConnectedNet, TwoLayerNet, adam, sgd_momentum)


@pytest.fixture(scope="module")
def digits():
    """The digits as the notebooks' data_dict: float64 tensors, images
    (N, 1, 8, 8), integer labels."""
    data = datasets.load_digits()
    return {key: torch.from_numpy(value.astype(np.float64) if key.startswith("X") else value)
            for key, value in data.items()}


def small(data, num_train=50):
    return {"X_train": data["X_train"][:num_train], "y_train": data["y_train"][:num_train],
            "X_val": data["X_val"], "y_val": data["y_val"]}


def flat(data):
    return {key: value.reshape(len(value), -1) if key.startswith("X") else value
            for key, value in data.items()}


def test_solver_overfits_fifty_samples_with_a_three_layer_net(digits, capsys):
    """The notebook's overfitting cell: a float32 model on float64 data,
    plain SGD (the Solver's default rule), 20 epochs of batches of 25."""
    reset_seed(0)
    model = FullyConnectedNet([100, 100], input_dim=64, weight_scale=2e-1, dtype=torch.float32)
    solver = Solver(model, small(flat(digits)), print_every=10, num_epochs=20, batch_size=25,
                    optim_config={"learning_rate": 3e-1}, device="cpu")
    solver.train()
    assert max(solver.train_acc_history) == 1.0
    assert len(solver.loss_history) == 40 and len(solver.train_acc_history) == 21
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\(Time \d+\.\d\d sec; Iteration 1 / 40\) loss: \d\.\d{6}", lines[0])
    assert re.fullmatch(r"\(Epoch 0 / 20\) train acc: \d\.\d{6}; val_acc: \d\.\d{6}", lines[1])
    # The best-validation parameters are back in the model.
    assert solver.check_accuracy(digits["X_val"].reshape(180, -1), digits["y_val"]) == \
        pytest.approx(solver.best_val_acc)


def test_solver_overfits_with_a_three_layer_conv_net_and_adam(digits):
    reset_seed(0)
    model = ThreeLayerConvNet(input_dims=(1, 8, 8), num_filters=8, filter_size=3, hidden_dim=50,
                              weight_scale=3e-1)
    solver = Solver(model, small(digits), num_epochs=15, batch_size=25, update_rule=adam,
                    optim_config={"learning_rate": 1e-2}, verbose=False)
    solver.train()
    assert max(solver.train_acc_history) == 1.0


def train_losses(data, update_rule, **kwargs):
    reset_seed(0)
    model = FullyConnectedNet([20, 20], input_dim=64, weight_scale=1e-1, dropout=0.2, reg=1e-3)
    solver = Solver(model, small(flat(data), 200), num_epochs=3, batch_size=50,
                    update_rule=update_rule, optim_config={"learning_rate": 1e-2}, lr_decay=0.9,
                    verbose=False, **kwargs)
    solver.train()
    return solver.loss_history, {k: v.clone() for k, v in model.params.items()}, solver


def test_a_run_depends_on_the_seed_alone(digits):
    losses, params, _ = train_losses(digits, adam)
    again, params_again, _ = train_losses(digits, adam)
    assert losses == again
    assert all(torch.equal(params[k], params_again[k]) for k in params)


@pytest.mark.parametrize("rule", [adam, sgd_momentum])
def test_the_fused_step_takes_the_course_loops_steps(digits, rule):
    """A rule the Solver does not know runs the course's loop
    (model.params[p] = next_w per parameter); fastfc's own rule runs fused."""
    fused, fused_params, fused_solver = train_losses(digits, rule)
    looped, looped_params, looped_solver = train_losses(
        digits, lambda w, dw, config: rule(w, dw, config))
    assert fused_solver._fused_rule is not None and looped_solver._fused_rule is None
    assert np.allclose(fused, looped, rtol=1e-6, atol=0)
    for name in fused_params:
        assert torch.allclose(fused_params[name], looped_params[name], rtol=1e-5, atol=1e-6)
    config = fused_solver.optim_configs["W1"]  # the state stays tensors; decayed learning rate
    assert isinstance(config[next(k for k in ("m", "velocity") if k in config)], torch.Tensor)
    assert config["learning_rate"] == pytest.approx(1e-2 * 0.9 ** 3)


def test_time_limit_and_return_best_params(digits, capsys):
    reset_seed(0)
    model = TwoLayerNet(input_dim=64, hidden_dim=10)
    solver = Solver(model, small(flat(digits)), num_epochs=5, batch_size=10, verbose=False)
    solver.train(time_limit=0.0)  # stops before the second iteration
    assert len(solver.loss_history) == 1
    assert "End of training; next iteration will exceed the time limit." in capsys.readouterr().out

    solver = Solver(model, small(flat(digits)), num_epochs=2, batch_size=10, verbose=False)
    solver.train(return_best_params=False)
    last = {k: v.clone() for k, v in model.params.items()}
    assert all(torch.equal(last[k], model.params[k]) for k in last)


def test_checkpoints_are_npz_and_json(digits, tmp_path):
    reset_seed(0)
    model = TwoLayerNet(input_dim=64, hidden_dim=10)
    prefix = str(tmp_path / "two_layer")
    Solver(model, small(flat(digits)), num_epochs=1, batch_size=25, verbose=False,
           checkpoint_name=prefix).train()
    with np.load(prefix + "_epoch_1.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["W1", "W2", "b1", "b2"]
    with open(prefix + "_epoch_1.json") as f:
        record = json.load(f)
    assert record["model"] == "TwoLayerNet" and len(record["loss_history"]) == 2


# ---- save and load ---------------------------------------------------------------------

def test_load_rebuilds_the_saved_architecture_in_the_dtype_asked(digits, tmp_path, capsys):
    """The notebook's cell: a five-layer net saved, loaded into a new
    FullyConnectedNet([100]) ("hidden dims being different doesn't matter")."""
    X = flat(digits)["X_val"]
    reset_seed(0)
    model = FullyConnectedNet([30, 20, 10, 10], input_dim=64, weight_scale=1e-1)
    path = str(tmp_path / "best_overfit_five_layer_net.pth")
    model.save(path)
    other = FullyConnectedNet(hidden_dims=[100], input_dim=64, dtype=torch.float32)
    other.load(path, dtype=torch.float64, device="cpu")
    assert capsys.readouterr().out.splitlines() == [f"Saved in {path}",
                                                    f"load checkpoint file: {path}"]
    assert sorted(other.params) == sorted(model.params) and other.num_layers == 5
    assert other.params["W1"].dtype == torch.float64
    assert torch.allclose(other.loss(X), model.loss(X).double(), rtol=1e-6, atol=1e-6)


def test_save_keeps_the_batchnorm_running_statistics(tmp_path):
    reset_seed(0)
    model = DeepConvNet(input_dims=(1, 8, 8), num_filters=[4, 4], max_pools=[1], batchnorm=True,
                        weight_scale="kaiming", dtype=torch.float64)
    X = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(10, (6,))
    for _ in range(3):
        model.loss(X, y)  # training passes move the running statistics
    assert model.bn_params[0]["running_var"].abs().sum() > 0
    path = tmp_path / "deep.npz"
    model.save(path)
    loaded = DeepConvNet(input_dims=(1, 8, 8), num_filters=[2], max_pools=[0],
                         dtype=torch.float64)
    loaded.load(path)
    assert torch.equal(loaded.loss(X), model.loss(X))  # test mode: the running statistics
    for mine, theirs in zip(loaded.bn_params, model.bn_params):
        assert torch.equal(mine["running_mean"], theirs["running_mean"])


def test_load_refuses_pickles_other_models_and_damage_leaving_the_model_as_it_was(tmp_path):
    model = ThreeLayerConvNet(input_dims=(1, 8, 8), num_filters=2, filter_size=3, hidden_dim=5)
    before = {k: v.clone() for k, v in model.params.items()}
    pickled = tmp_path / "pickled.pth"
    torch.save({"params": dict(model.params)}, pickled)
    with pytest.raises(ValueError, match="unpickling"):
        model.load(pickled)

    path = str(tmp_path / "two.pth")
    TwoLayerNet(input_dim=64, hidden_dim=10).save(path)
    with pytest.raises(ValueError, match="holds a TwoLayerNet, not a ThreeLayerConvNet"):
        model.load(path)

    path = str(tmp_path / "three.pth")
    model.save(path)
    with open(path, "r+b") as f:  # cut the archive short
        f.truncate(100)
    with pytest.raises(ValueError, match="not a parameter file"):
        model.load(path)
    assert all(torch.equal(before[k], model.params[k]) for k in before)
    with pytest.raises(ValueError, match="fastfc runs on the CPU"):
        model.load(path, device="cuda")


def test_load_refuses_a_description_from_another_save_and_bad_reg(tmp_path):
    """The description records the arrays' SHA-256: a model saved twice to
    one name (the second with other weights) beside the first save's
    description is refused, as is a description whose reg is not a finite
    number >= 0; a description without the digest (older saves) loads."""
    import json
    path = str(tmp_path / "two.pth")
    TwoLayerNet(input_dim=64, hidden_dim=10).save(path)
    first = open(path + ".json").read()
    TwoLayerNet(input_dim=64, hidden_dim=10).save(path)  # other random weights
    second = open(path + ".json").read()
    model = TwoLayerNet(input_dim=64, hidden_dim=10)
    with open(path + ".json", "w") as f:
        f.write(first)
    with pytest.raises(ValueError, match="different saves"):
        model.load(path)
    for reg in (float("nan"), -1.0, "0.1", True, None):
        record = json.loads(second)
        record["reg"] = reg
        with open(path + ".json", "w") as f:
            json.dump(record, f)
        with pytest.raises(ValueError, match="reg must be"):
            model.load(path)
    record = json.loads(second)
    del record["parameters_sha256"]
    with open(path + ".json", "w") as f:
        json.dump(record, f)
    model.load(path)
    with open(path + ".json", "w") as f:
        f.write(second)
    model.load(path)
