"""fastfc.Solver and fastfc.evaluate: training end to end on a synthetic
separable problem and on the bundled digits, histories, decay, early
stopping, weight decay off the biases, course-style rules and models, batch
buffers, seeding, NaN/inf and Ctrl-C handling, checkpoints and bad input."""
import os
import signal
import sys
import tracemalloc

import numpy as np
import pytest

import fastfc
from fastfc import Solver, evaluate
from fastfc import functional as F
from fastfc import layers as L
from fastfc.datasets import load_digits
from fastfc.models import ConvNet, FullyConnectedNet, Sequential
from fastfc.solver import _BatchBuffers


def separable(n, d=10, classes=3, seed=0):
    """n points labelled by the nearest of `classes` well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    y = rng.integers(0, classes, n)
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


@pytest.fixture
def problem():
    X, y = separable(400)
    return dict(X_train=X[:300], y_train=y[:300], X_val=X[300:], y_val=y[300:])


def mlp(seed=0, dropout=0.0):
    return FullyConnectedNet([16], input_dim=10, num_classes=3, weight_scale=None, seed=seed,
                             dropout=dropout)


def make_solver(model, problem, **options):
    settings = dict(optim_config={"learning_rate": 1e-2}, batch_size=32, num_epochs=4,
                    verbose=False, seed=0)
    settings.update(options)
    return Solver(model, problem, **settings)


def test_trains_to_high_accuracy(problem, capsys):
    model = mlp()
    records = []
    solver = make_solver(model, problem, on_epoch_end=lambda s, r: records.append(r))
    solver.train()
    assert solver.best_val_acc > 0.95
    assert evaluate(model, problem["X_val"], problem["y_val"])[1] == solver.best_val_acc
    assert len(solver.loss_history) == 4 * 10  # ceil(300 / 32) batches per epoch
    assert solver.loss_history[-1] < solver.loss_history[0]
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 4
    assert records == solver.epoch_history and [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                               "seconds", "samples_per_s"}
    assert records[0]["samples_per_s"] > 0 and records[0]["lr"] == 1e-2
    assert not solver.interrupted
    assert capsys.readouterr() == ("", "")  # verbose=False prints nothing


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


@pytest.mark.parametrize("make, epochs", [
    (lambda: FullyConnectedNet([64], input_dim=64, num_classes=10, weight_scale=None, seed=0), 5),
    (lambda: ConvNet(input_dim=(1, 8, 8), num_filters=(8,), hidden_dim=32, num_classes=10, seed=0), 5),
], ids=["fully-connected", "conv"])
def test_digits_end_to_end(digits, make, epochs):
    model = make()
    solver = Solver(model, digits, update_rule="adam", optim_config={"learning_rate": 1e-2},
                    batch_size=64, num_epochs=epochs, verbose=False, seed=0)
    solver.train()
    assert solver.best_val_acc > 0.9
    test_loss, test_acc = evaluate(model, digits["X_test"], digits["y_test"])
    assert test_acc > 0.9 and test_loss < solver.loss_history[0]


def test_ends_with_best_params(problem):
    model = mlp()
    snapshots = []
    solver = make_solver(model, problem, num_epochs=3,
                         on_epoch_end=lambda s, r: snapshots.append({k: v.copy() for k, v in model.params.items()}))
    solver.train()
    best = int(np.argmax(solver.val_acc_history))
    assert solver.best_val_acc == solver.val_acc_history[best]
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, snapshots[best][name])
        np.testing.assert_array_equal(array, solver.best_params[name])


def _norm_mlp(seed):
    """With an int seed dropout repeats its masks (the course's); with a
    Generator it draws new ones from its own stream."""
    seed = seed if isinstance(seed, int) else np.random.default_rng(0)
    return FullyConnectedNet([16, 16], input_dim=10, num_classes=3, weight_scale=None, seed=seed,
                             dropout=0.2, normalization="batchnorm")


@pytest.mark.parametrize("rule, seed", [("sgd_momentum", 0), ("adam", "generator")])
def test_a_run_continued_from_its_state_equals_one_uninterrupted_run(problem, rule, seed):
    """lr decay, dropout masks, batch norm's running statistics, the
    optimizer's moments and the shuffle order all carry over, bit for bit,
    through a state_dict travelling to a fresh Solver and model."""
    options = dict(update_rule=rule, lr_decay=0.7, num_epochs=5)
    whole = make_solver(_norm_mlp(seed), problem, **options)
    whole.train(restore_best=False)
    first = make_solver(_norm_mlp(seed), problem, **dict(options, num_epochs=2))
    first.train(restore_best=False)
    state = first.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert len(first._generators()) == (1 if seed == 0 else 3)
    rest = make_solver(_norm_mlp(seed), problem, **options)
    for array in rest.model._saved_arrays().values():
        array[...] = 0  # all overwritten by the state
    rest.load_state_dict(state)
    rest.train(restore_best=False)
    assert rest.loss_history == whole.loss_history and rest.val_acc_history == whole.val_acc_history
    assert (rest.best_epoch, rest.best_val_acc) == (whole.best_epoch, whole.best_val_acc)
    for (name, a), b in zip(whole.model._saved_arrays().items(), rest.model._saved_arrays().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert rest.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]


def test_train_restore_best_false_keeps_the_last_epochs_parameters(problem):
    model = mlp()
    snapshots = []
    solver = make_solver(model, problem, num_epochs=6, optim_config={"learning_rate": 0.3},
                         on_epoch_end=lambda s, r: snapshots.append({k: v.copy() for k, v in model.params.items()}))
    solver.train(restore_best=False)
    assert solver.best_epoch != 6  # else the last parameters are the best ones anyway
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, snapshots[-1][name])


def test_a_state_of_another_model_is_refused_and_changes_nothing(problem):
    state = make_solver(mlp(), problem, num_epochs=1).state_dict()
    other = make_solver(FullyConnectedNet([8], input_dim=10, num_classes=3, seed=0), problem)
    before = {k: v.copy() for k, v in other.model.params.items()}
    with pytest.raises(ValueError, match="not a training state of this model.*param.W1 has shape"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="not a training state"):
        other.load_state_dict({"meta": np.array("[]")})
    for name, array in other.model.params.items():
        np.testing.assert_array_equal(array, before[name])
    course = Solver(mlp(), problem, update_rule=lambda w, dw, config: (w, config), verbose=False)
    with pytest.raises(ValueError, match="named update_rule"):
        course.state_dict()


def test_unseeded_shuffling_follows_numpys_global_seed(problem):
    def history(global_seed):
        np.random.seed(global_seed)
        solver = make_solver(mlp(), problem, num_epochs=1, seed=None)
        solver.train()
        return solver.loss_history
    assert history(0) == history(0)
    assert history(0) != history(1)  # seed=None is not one fixed seed


def test_reproducible(problem):
    histories = []
    for _ in range(2):
        solver = make_solver(mlp(dropout=0.2), problem, num_epochs=2, seed=3)
        solver.train()
        histories.append(solver.loss_history)
    assert histories[0] == histories[1]


def test_verbose_prints_epochs_and_iterations(problem, capsys):
    make_solver(mlp(), problem, num_epochs=2, verbose=True, print_every=5).train()
    out = capsys.readouterr().out
    assert "(Epoch 2 / 2) train acc:" in out and "(Iteration 20 / 20) loss:" in out


def test_lr_decay_and_patience(problem):
    solver = make_solver(mlp(), problem, lr_decay=0.5, num_epochs=3)
    solver.train()
    assert [r["lr"] for r in solver.epoch_history] == [1e-2, 5e-3, 2.5e-3]
    assert solver.optimizer.param_groups[0]["lr"] == 1.25e-3
    frozen = make_solver(mlp(), problem, optim_config={"learning_rate": 0.0}, num_epochs=10, patience=2)
    frozen.train()  # nothing improves after the first epoch
    assert len(frozen.epoch_history) == 3
    # A run continued from the state of one that stopped early stops too.
    continued = make_solver(mlp(), problem, optim_config={"learning_rate": 0.0}, num_epochs=20, patience=2)
    continued.load_state_dict(frozen.state_dict())
    continued.train()
    assert len(continued.epoch_history) == 3
    patient = make_solver(mlp(), problem, optim_config={"learning_rate": 0.0}, num_epochs=20, patience=4)
    patient.load_state_dict(frozen.state_dict())
    patient.train()  # two more stale epochs allowed
    assert len(patient.epoch_history) == 5


def test_weight_decay_spares_biases(problem):
    solver = make_solver(mlp(), problem, update_rule="sgd", weight_decay=0.1)
    groups = solver.optimizer.param_groups
    decays = {p.name: g["weight_decay"] for g in groups for p in g["params"]}
    assert decays == {"W1": 0.1, "W2": 0.1, "b1": 0.0, "b2": 0.0}
    via_config = make_solver(mlp(), problem, update_rule="adamw",
                             optim_config={"lr": 1e-3, "weight_decay": 0.2})
    assert via_config.optimizer.param_groups[0]["weight_decay"] == 0.2
    with pytest.raises(ValueError, match="weight_decay"):
        make_solver(mlp(), problem, weight_decay=0.1, optim_config={"weight_decay": 0.2})


@pytest.mark.parametrize("rule, config", [
    ("sgd_momentum", {"learning_rate": 5e-2}),
    ("rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.9, "epsilon": 1e-7}),
    ("adam", {"lr": 1e-2, "beta1": 0.8}),
    ("adamw", {"learning_rate": 1e-2}),
    ("adagrad", {"learning_rate": 1e-1}),
    ("sgd", {"learning_rate": 1e-1}),
])
def test_every_update_rule_learns(problem, rule, config):
    solver = make_solver(mlp(), problem, update_rule=rule, optim_config=config, num_epochs=3)
    solver.train()
    assert solver.best_val_acc > 0.9
    if rule == "adam":
        assert solver.optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    if rule == "rmsprop":
        assert solver.optimizer.param_groups[0]["alpha"] == 0.9


class Softmax:
    """A course-style model of its own: a params dict and loss(X, y=None)."""

    def __init__(self, d, classes):
        self.params = {"W": np.zeros((d, classes)), "b": np.zeros(classes)}

    def loss(self, X, y=None):
        scores = X @ self.params["W"] + self.params["b"]
        if y is None:
            return scores
        loss, dscores = fastfc.functional.softmax_loss(scores, y)
        return loss, {"W": X.T @ dscores, "b": dscores.sum(axis=0)}


def test_course_model_and_callable_rule(problem):
    problem = {k: v.astype(np.float64) if k.startswith("X") else v for k, v in problem.items()}
    model = Softmax(10, 3)
    W = model.params["W"]
    solver = make_solver(model, problem, update_rule=fastfc.optim.sgd_momentum,
                         optim_config={"lr": 1e-1}, lr_decay=0.9, weight_decay=1e-3)
    solver.train()
    assert solver.best_val_acc > 0.95
    assert model.params["W"] is W  # updated in place
    assert solver.optim_configs["W"]["learning_rate"] == pytest.approx(0.1 * 0.9 ** 4)
    named = make_solver(Softmax(10, 3), problem, update_rule="adam")
    named.train()
    assert named.best_val_acc > 0.9
    assert [g["weight_decay"] for g in named.optimizer.param_groups] == [0.0, 0.0]


def test_solver_steps_without_copying_gradients_unless_loss_is_overridden(problem):
    """A Sequential's Solver steps through _loss_into_grads (gradients stay in
    the Parameters: loss() would copy them); a model whose loss() is
    overridden, on its class or instance, is trained through that loss."""
    model = mlp()
    copies = []
    model._loss_into_grads = lambda X, y: copies.append("fast") or Sequential._loss_into_grads(model, X, y)
    make_solver(model, problem, batch_size=100, num_epochs=1).train()
    assert copies == ["fast"] * 3

    class Logged(FullyConnectedNet):
        def loss(self, X, y=None):
            copies.append("own")
            return super().loss(X, y)
    copies.clear()
    logged = Logged([16], input_dim=10, num_classes=3, weight_scale=None, seed=0)
    make_solver(logged, problem, batch_size=100, num_epochs=1).train()
    assert copies.count("own") >= 3 and "fast" not in copies


@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_batches_gathered_into_one_buffer_of_the_models_dtype(problem, data_dtype):
    problem = {k: v.astype(data_dtype) if k.startswith("X") else v for k, v in problem.items()}
    model = mlp()
    seen = []
    original = model.loss

    def loss(X, y=None):
        if y is not None:
            seen.append((X, y))
        return original(X, y)
    model.loss = loss
    make_solver(model, problem, batch_size=64, num_epochs=2).train()
    assert len(seen) == 10 and seen[-1][0].shape == (300 - 4 * 64, 10)
    # float64 data are cast into a float32 buffer: the model never casts a batch itself
    assert all(X.dtype == np.float32 for X, _ in seen)
    assert all(np.shares_memory(X, seen[0][0]) and np.shares_memory(y, seen[0][1]) for X, y in seen)


@pytest.mark.parametrize("data_dtype, model_dtype", [(np.float32, np.float32), (np.float64, None),
                                                     (np.float64, np.float32)])
def test_gathering_a_batch_allocates_nothing(data_dtype, model_dtype):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2000, 300)).astype(data_dtype), rng.integers(0, 10, 2000)
    buffers = _BatchBuffers(X, y, 256, model_dtype)
    index = rng.permutation(2000)[:200]  # a last, shorter batch
    tracemalloc.start()
    try:
        X_batch, y_batch = buffers.gather(index)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X_batch.nbytes // 10  # no temporary of the batch's size
    assert X_batch.dtype == (model_dtype or data_dtype)
    np.testing.assert_array_equal(X_batch, X[index].astype(X_batch.dtype))
    np.testing.assert_array_equal(y_batch, y[index])


@pytest.mark.parametrize("make_X, threaded", [
    (lambda X: X.astype(np.float32), True),
    (lambda X: X, True),                                   # float64
    (lambda X: np.asfortranarray(X.astype(np.float32)), False),  # not C-contiguous
    (lambda X: (X * 10 + 100).astype(np.uint8), False),    # raw pixels
], ids=["float32", "float64", "fortran-order", "uint8"])
def test_batches_of_float_data_are_gathered_by_the_threaded_kernel(monkeypatch, make_X, threaded):
    """F.gather_rows gathers a C-contiguous float data set's batches (the README
    says the Solver uses it); any other X still goes through np.take, without
    a copy of the whole of X."""
    calls = []
    real = F.gather_rows
    monkeypatch.setattr(F, "gather_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    X, y = make_X(rng.standard_normal((500, 12))), rng.integers(0, 3, 500)
    buffers = _BatchBuffers(X, y, 64, np.float32)
    index = rng.permutation(500)[:64]
    X_batch, y_batch = buffers.gather(index)
    assert bool(calls) == threaded
    np.testing.assert_array_equal(X_batch, X[index].astype(np.float32))
    np.testing.assert_array_equal(y_batch, y[index])


def test_augment_gets_each_batch(problem):
    calls = []

    def augment(X, rng):
        assert isinstance(rng, np.random.Generator)
        calls.append(len(X))
        return X + np.float32(0.01)
    make_solver(mlp(), problem, num_epochs=1, augment=augment).train()
    assert sum(calls) == 300


class FailingModel:
    """Wraps a model; loss(X, y) does `action` at training call number `at`."""

    def __init__(self, model, at, action):
        self.model, self.at, self.action, self.calls = model, at, action, 0
        self.params = model.params
        self.named_parameters, self.param_groups = model.named_parameters, model.param_groups
        self.save = model.save

    def loss(self, X, y=None):
        if y is None:
            return self.model.loss(X)
        self.calls += 1
        if self.calls == self.at:
            return self.action(self, X, y)
        return self.model.loss(X, y)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_loss_keeps_best_params(problem, bad):
    model = FailingModel(mlp(), at=10 + 3, action=lambda m, X, y: (bad, m.model.grads))
    snapshots = []
    solver = make_solver(model, problem,
                         on_epoch_end=lambda s, r: snapshots.append({k: v.copy() for k, v in model.params.items()}))
    with pytest.raises(FloatingPointError, match=f"{bad} at epoch 2, iteration 3 of 10"):
        solver.train()
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, snapshots[0][name])


def interrupt_raising(model, X, y):
    raise KeyboardInterrupt


def test_keyboard_interrupt_restores_best_and_writes_checkpoint(problem, tmp_path):
    model = FailingModel(mlp(), at=2 * 10 + 4, action=interrupt_raising)
    checkpoint = tmp_path / "best"
    solver = make_solver(model, problem, checkpoint_name=str(checkpoint))
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    assert solver.interrupted and len(solver.epoch_history) == 2
    restored = mlp(seed=1).load(tmp_path / "best.safetensors")
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, solver.best_params[name])
        np.testing.assert_array_equal(restored.params[name], array)


def test_ctrl_c_stops_at_the_next_batch(problem):
    def send_sigint(m, X, y):
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step
        return m.model.loss(X, y)
    model = FailingModel(mlp(), at=15, action=send_sigint)
    solver = make_solver(model, problem)
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    assert solver.interrupted
    assert len(solver.loss_history) == 15  # the interrupted step finished, no further one started
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_holds_best_params(problem, tmp_path):
    path = tmp_path / "ckpt.npz"
    model = mlp()
    solver = make_solver(model, problem, num_epochs=2, checkpoint_name=path)
    solver.train()
    assert mlp(seed=5).load(path).params["W1"].tolist() == model.params["W1"].tolist()


def test_evaluate(problem):
    model = mlp()
    X, y = problem["X_val"], problem["y_val"]
    loss, acc = evaluate(model, X, y, batch_size=7)
    scores = model.loss(X)
    want_loss, _ = fastfc.functional.softmax_loss(scores, y)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert acc == np.mean(np.argmax(scores, axis=1) == y)
    assert evaluate(model, X, y, batch_size=1000) == pytest.approx((loss, acc), rel=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, X, y, batch_size=0)
    with pytest.raises(ValueError, match="X has 100 samples but y"):
        evaluate(model, X, y[:5])
    with pytest.raises(ValueError, match="label 3, outside"):
        evaluate(model, X, np.full(100, 3))
    solver = make_solver(model, problem)
    assert solver.check_accuracy(X, y) == acc
    assert 0 <= solver.check_accuracy(X, y, num_samples=20) <= 1


@pytest.mark.parametrize("change, match", [
    (dict(data={"X_train": None}), "missing 'y_train'"),
    (dict(X_train=np.zeros((0, 10), np.float32), y_train=np.zeros(0, np.int64)), "X_train is empty"),
    (dict(y_train=np.zeros(299, np.int64)), "X_train has 300 samples but y_train"),
    (dict(y_val=np.full(100, 3)), "y_val holds label 3"),
    (dict(y_train=np.full(300, -1)), "y_train holds label -1"),
    (dict(y_train=np.zeros(300)), "y_train must hold integer labels"),
    (dict(X_train=np.zeros((300, 9), np.float32)), r"expects input of shape \(N, 10\)"),
    (dict(batch_size=0), "batch_size"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(update_rule="adamax"), "unknown update_rule 'adamax'"),
    (dict(optim_config={"learning_rate": 1e-3, "momentun": 0.9}), "momentun"),
    (dict(optim_config={"learning_rate": -1e-3}), "learning_rate"),
    (dict(optim_config={"lr": -1.0}), r"optim_config\['lr'\]"),
    (dict(optim_config={"lr": 1e-3, "learning_rate": 1e-3}), "both"),
    (dict(patience=0), "patience"),
    (dict(weight_decay=-1.0), "weight_decay"),
])
def test_bad_input(problem, change, match):
    data = dict(problem)
    options = {}
    for key, value in change.items():
        if key == "data":
            data = value
        elif key in problem:
            data[key] = value
        else:
            options[key] = value
    with pytest.raises(ValueError, match=match):
        make_solver(mlp(), data, **options)


def test_trains_a_sequential_with_a_loss(problem):
    model = Sequential(L.Linear(10, 16, seed=0), L.ReLU(), L.Linear(16, 3, seed=1),
                       loss=L.SoftmaxCrossEntropy(), reg=1e-4)
    solver = make_solver(model, problem, num_epochs=3)
    solver.train()
    assert solver.best_val_acc > 0.95
    assert sorted(solver.best_params) == ["W1", "W2", "b1", "b2"]


def test_object_style_loop(problem):
    """The hand-written loop of the object API: layers, loss, optimizer."""
    model = Sequential(L.Linear(10, 16, seed=0), L.ReLU(), L.Linear(16, 3, seed=1))
    criterion = L.SoftmaxCrossEntropy()
    optimizer = fastfc.optim.SGD(model.param_groups(weight_decay=1e-4), lr=0.1, momentum=0.9)
    X, y = problem["X_train"], problem["y_train"]
    for _ in range(3):
        for start in range(0, len(X), 50):
            criterion.forward(model.forward(X[start:start + 50]), y[start:start + 50])
            model.backward(criterion.backward())
            optimizer.step()
    assert np.mean(model.predict(problem["X_val"]) == problem["y_val"]) > 0.95


def test_progress_bar_only_on_a_terminal(problem, capsys, monkeypatch):
    make_solver(mlp(), problem, num_epochs=1, verbose=True, print_every=10**9).train()
    assert "batch" not in capsys.readouterr().err  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    make_solver(mlp(), problem, num_epochs=1, verbose=True, print_every=10**9).train()
    assert "epoch 1/1" in capsys.readouterr().err
    make_solver(mlp(), problem, num_epochs=1, verbose=False).train()
    assert capsys.readouterr() == ("", "")


# ---- an MSELoss model with one-hot targets (the manual-MLP workflow) ----------------------

def mse_net(dtype=np.float32):
    from fastfc.models import Sequential
    return Sequential(L.Linear(64, 32, seed=0, dtype=dtype), L.ReLU(), L.Linear(32, 10, seed=1, dtype=dtype),
                      loss=L.MSELoss())


@pytest.mark.parametrize("target_dtype", [np.float32, np.float64, np.int64])
def test_mse_model_loss_takes_one_hot_targets(target_dtype):
    model = mse_net()
    X = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    labels = np.arange(6) % 10
    onehot = np.eye(10, dtype=target_dtype)[labels]
    loss, grads = model.loss(X, onehot)
    scores = model.loss(X)
    np.testing.assert_allclose(loss, np.mean((scores - onehot) ** 2), rtol=1e-5)
    assert grads["W1"].shape == (64, 32) and np.any(grads["W1"])
    with pytest.raises(ValueError, match=r"one target row \(N, C\)"):
        model.loss(X, onehot[:5])


def test_solver_trains_an_mse_model_on_one_hot_targets():
    from fastfc.datasets import flatten
    data = flatten(load_digits())
    onehot = {f"y_{split}": np.eye(10)[data[f"y_{split}"]] for split in ("train", "val")}
    solver = Solver(mse_net(), {**data, **onehot}, optim_config={"learning_rate": 1e-2},
                    batch_size=64, num_epochs=8, seed=0, verbose=False)
    solver.train()
    assert solver.y_train.dtype == np.float32  # cast once to the model's type
    # Accuracy counts the one-hot rows' argmax as the class; labels give the same.
    assert solver.best_val_acc > 0.75  # chance: 0.1
    assert solver.check_accuracy(data["X_test"], data["y_test"]) == \
        solver.check_accuracy(data["X_test"], np.eye(10)[data["y_test"]])
    with pytest.raises(ValueError, match="target rows of 9 values, the model outputs 10"):
        Solver(mse_net(), {**data, "y_train": np.eye(9)[data["y_train"] % 9], "y_val": onehot["y_val"]})


def test_classifier_still_refuses_target_rows():
    from fastfc.models import FullyConnectedNet
    model = FullyConnectedNet([8], input_dim=4, num_classes=3)
    X = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="one label per sample"):
        model.loss(X, np.eye(3)[[0, 1, 2, 0, 1]])
    data = dict(X_train=X, y_train=np.eye(3)[[0, 1, 2, 0, 1]], X_val=X, y_val=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"y_train has shape \(5, 3\)"):
        Solver(model, data)
