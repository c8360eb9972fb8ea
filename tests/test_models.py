"""fastfc.models: gradient checks of every model's loss(X, y) in float64, the
course contract, fused Linear+ReLU, the first layer skipping dx, parameter
groups, save/load (round trip, mismatches, atomic writes, modes, stale
temporaries, hostile member counts), fastfc.io's other file helpers and bad input."""
import io
import os
import stat
import struct
import tracemalloc

import numpy as np
import pytest

import fastfc
from fastfc import layers as L
from fastfc import reference as R
from fastfc.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from fastfc.io import check_output_path, parameters_digest, read_array
from fastfc.models import ConvNet, FullyConnectedNet, Sequential, TwoLayerNet

from testutil import TOLERANCES, assert_close, num_threads


def grad_error(numerical, analytic):
    """Largest difference relative to the gradient's largest entry (entries
    near zero hold only rounding noise in the numerical gradient)."""
    scale = max(np.max(np.abs(numerical)), np.max(np.abs(analytic)), 1e-30)
    return np.max(np.abs(numerical - analytic)) / scale


def check_model_gradients(model, X, y, tol=1e-7):
    """The course's gradient-check loop, as the notebooks write it: grads
    computed once, then numerical gradients through repeated loss() calls
    (which must not change the grads already returned)."""
    loss, grads = model.loss(X, y)
    assert sorted(grads) == sorted(model.params)
    for name, param in model.params.items():
        numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], param, h=1e-5)
        if np.max(np.abs(grads[name])) < 1e-10:
            # A bias just before batch norm: the normalization cancels it, so
            # both gradients are zero up to rounding.
            assert np.max(np.abs(numerical)) < 1e-8, name
            continue
        assert grad_error(numerical, grads[name]) < tol, name
        assert rel_error(numerical, grads[name]) < 1e-4, name  # the course's measure, loosely
    return loss


def data(rng, n, shape, classes):
    return rng.standard_normal((n,) + shape), rng.integers(0, classes, n)


@pytest.mark.parametrize("options", [
    dict(), dict(reg=0.7), dict(dropout=0.3, seed=11), dict(dropout=0.25, seed=5, reg=0.3),
    dict(normalization="batchnorm", reg=0.2), dict(normalization="layernorm", dropout=0.2, seed=3),
], ids=["plain", "reg", "dropout", "dropout+reg", "batchnorm+reg", "layernorm+dropout"])
def test_fully_connected_net_gradients(rng, options):
    X, y = data(rng, 3, (12,), 6)
    # Seeded: weights drawn from NumPy's global generator would depend on the
    # tests run before (batch norm's check misses 1e-7 for some draws).
    model = FullyConnectedNet([10, 8], input_dim=12, num_classes=6, weight_scale=None,
                              dtype=np.float64, **{"seed": 0, **options})
    names = ["W1", "W2", "W3", "b1", "b2", "b3"]
    if "normalization" in options:  # the course's names: gamma1 and beta1 go with W1
        names += ["beta1", "beta2", "gamma1", "gamma2"]
    assert sorted(model.params) == sorted(names)
    check_model_gradients(model, X, y)


def test_batchnorm_net_keeps_and_saves_running_statistics(rng, tmp_path):
    X, y = data(rng, 32, (6,), 3)
    X = 3.0 + 2.0 * X  # statistics far from the initial running mean 0 and variance 1
    model = FullyConnectedNet([5], input_dim=6, num_classes=3, normalization="batchnorm",
                              weight_scale=None, dtype=np.float64, seed=0)
    norm = model.layers[1]
    scores_before = model.loss(X)  # eval mode: the initial running statistics
    for _ in range(50):
        model.loss(X, y)  # training mode: each call moves the running statistics
    h = X @ model.params["W1"] + model.params["b1"]
    # 0.9**50 of the initial value is left: within 1% of the batch's statistics
    np.testing.assert_allclose(norm.running_mean, h.mean(axis=0), rtol=1e-2)
    np.testing.assert_allclose(norm.running_var, h.var(axis=0), rtol=1e-2)
    assert not np.allclose(model.loss(X), scores_before)
    model.save(tmp_path / "bn.npz")
    loaded = FullyConnectedNet([5], input_dim=6, num_classes=3, normalization="batchnorm",
                               weight_scale=None, dtype=np.float64, seed=1)
    loaded.load(tmp_path / "bn.npz")
    np.testing.assert_array_equal(loaded.layers[1].running_var, norm.running_var)
    np.testing.assert_array_equal(loaded.loss(X), model.loss(X))
    with pytest.raises(ValueError, match="normalization must be None, 'batchnorm' or 'layernorm'"):
        FullyConnectedNet([5], input_dim=6, num_classes=3, normalization="groupnorm")


def test_two_layer_net_gradients(rng):
    X, y = data(rng, 4, (9,), 5)
    model = TwoLayerNet(input_dim=9, hidden_dim=7, num_classes=5, weight_scale=0.3, reg=0.1,
                        dtype=np.float64, seed=0)
    assert model.params["W1"].shape == (9, 7) and model.params["b2"].shape == (5,)
    check_model_gradients(model, X, y)


def test_conv_net_gradients(rng):
    X, y = data(rng, 2, (2, 6, 6), 3)
    model = ConvNet(input_dim=(2, 6, 6), num_filters=(3, 4), filter_size=3, hidden_dim=5,
                    num_classes=3, reg=0.05, dtype=np.float64, seed=0)
    assert model.params["W1"].shape == (3, 2, 3, 3) and model.params["W3"].shape == (4, 5)
    check_model_gradients(model, X, y)


def test_sequential_gradients_with_every_layer(rng):
    model = Sequential(
        L.Conv2d(2, 3, 3, padding=1, seed=0, dtype=np.float64), L.Tanh(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(12, 6, seed=1, dtype=np.float64), L.Sigmoid(),
        L.Dropout(0.2, seed=3, same_mask=True), L.Linear(6, 4, seed=2, dtype=np.float64),
        loss=L.SVMLoss())
    X, y = data(rng, 3, (2, 4, 4), 4)
    check_model_gradients(model, X, y)


def test_input_gradient_only_when_asked(rng):
    model = Sequential(L.Flatten(), L.Linear(8, 5, seed=0, dtype=np.float64), L.ReLU(),
                       L.Linear(5, 3, seed=1, dtype=np.float64))
    X = rng.standard_normal((4, 2, 4))
    dout = rng.standard_normal((4, 3))
    model.forward(X)
    assert model.backward(dout) is None
    skipped = {k: v.copy() for k, v in model.grads.items()}
    model.forward(X)
    dx = model.backward(dout, need_input_grad=True)
    assert dx.shape == X.shape
    for name, grad in model.grads.items():
        np.testing.assert_array_equal(grad, skipped[name])
    dx_num = eval_numerical_gradient_array(model.forward, X, dout)
    assert grad_error(dx_num, dx) < 1e-7


@pytest.mark.parametrize("make, shape", [
    (lambda: FullyConnectedNet([6, 5], input_dim=8, num_classes=3, seed=0), (4, 8)),
    (lambda: ConvNet(input_dim=(2, 6, 6), num_filters=(3,), hidden_dim=5, num_classes=3, seed=0),
     (4, 2, 6, 6)),
], ids=["fully-connected", "conv"])
def test_only_the_first_layer_skips_dx(rng, monkeypatch, make, shape):
    calls = []
    for name in ("affine_backward", "affine_relu_backward", "conv_backward"):
        def spy(dout, cache, compute_dx=True, real=getattr(fastfc.functional, name), name=name,
                **outputs):
            calls.append((name, compute_dx))
            return real(dout, cache, compute_dx=compute_dx, **outputs)
        monkeypatch.setattr(fastfc.functional, name, spy)
    model = make()
    model.loss(rng.standard_normal(shape), rng.integers(0, 3, shape[0]))
    # Backward runs from the last layer: each passes dx on but the first.
    assert len(calls) == len([layer for layer in model.layers if layer.parameters()])
    assert [compute_dx for _, compute_dx in calls] == [True] * (len(calls) - 1) + [False]
    first = model.layers[0]
    assert calls[-1][0] == ("conv_backward" if isinstance(first, L.Conv2d) else "affine_relu_backward")


def _small_conv_net(dropout=False):
    """conv - relu - pool (- dropout) - flatten - linear+relu - linear, float32."""
    layers = [L.Conv2d(1, 4, 3, padding=1, seed=0), L.ReLU(), L.MaxPool2d(2)]
    layers += [L.Dropout(0.2, seed=3)] if dropout else []
    layers += [L.Flatten(), L.Linear(64, 16, seed=1), L.ReLU(), L.Linear(16, 3, seed=2)]
    return Sequential(*layers, loss=L.SoftmaxCrossEntropy())


def test_training_steps_reuse_activation_and_gradient_buffers(rng):
    """After the first step of a batch size, a training step allocates no
    activation or gradient: the inner layers write into buffers kept from
    the step before (here a conv output alone is 32 KiB; what is left are
    the scores, the pooling argmax and small per-call scratch)."""
    model = _small_conv_net()
    X, y = data(rng, 32, (1, 8, 8), 3)
    X = X.astype(np.float32)
    model.loss(X, y)
    tracemalloc.start()
    try:
        model.loss(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    conv_output_bytes = 32 * 4 * 8 * 8 * 4
    assert peak < conv_output_bytes


def test_buffers_are_kept_for_a_few_input_shapes_only(rng):
    """A fully convolutional network fed images of 24 sizes: before, one set
    of buffers per size was kept for good (memory grew with every new size);
    now those of the last few sizes (4), and a size used again reuses its."""
    model = Sequential(L.Conv2d(1, 8, 3, padding=1, seed=0), L.ReLU(),
                       L.Conv2d(8, 8, 3, padding=1, seed=1), L.ReLU(),
                       L.Conv2d(8, 1, 3, padding=1, seed=2))
    sizes = range(40, 64)

    def step(size):
        x = rng.standard_normal((2, 1, size, size)).astype(np.float32)
        model.backward(np.ones_like(model.forward(x)))

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        step(sizes[-1])
        one_size = tracemalloc.get_traced_memory()[0] - baseline
        for size in sizes:
            step(size)
        held = tracemalloc.get_traced_memory()[0] - baseline
        # the last sizes are kept: stepping them again allocates no layer arrays
        before = tracemalloc.get_traced_memory()[0]
        step(sizes[-2])
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 5 * one_size, f"{held / one_size:.1f} times the buffers of one size"
    assert after - before < one_size / 4


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
def test_reused_buffers_change_no_result(rng, dropout):
    """Steps over different batches (of two sizes, in both modes) give what a
    model fresh from the same weights gives, and forward's output is the
    caller's: the next forward does not overwrite it."""
    model = _small_conv_net(dropout)
    batches = [data(rng, n, (1, 8, 8), 3) for n in (8, 8, 5, 8)]
    first_scores = model.forward(batches[0][0])
    kept = first_scores.copy()
    for X, y in batches:
        for training in (True, False):
            model.train() if training else model.eval()
            fresh = _small_conv_net(dropout)
            params = dict(model.named_parameters())
            for name, p in fresh.named_parameters():
                p.data[...] = params[name].data
            if dropout:  # the same mask stream: copy the generator's state
                fresh.layers[3]._rng.bit_generator.state = model.layers[3]._rng.bit_generator.state
            fresh.train() if training else fresh.eval()
            scores = model.forward(X)
            np.testing.assert_array_equal(scores, fresh.forward(X))
            dout = rng.standard_normal(scores.shape).astype(np.float32)
            model.backward(dout)
            fresh.backward(dout)
            for name, p in fresh.named_parameters():
                np.testing.assert_array_equal(params[name].grad, p.grad, err_msg=name)
    np.testing.assert_array_equal(first_scores, kept)


@pytest.mark.parametrize("last", [L.Flatten, lambda: L.Dropout(0.5, seed=0)], ids=["Flatten", "Dropout"])
def test_outputs_never_alias_the_buffers(rng, last):
    """A last layer that passes its input through (Flatten's view, test-time
    dropout) would hand the caller an inner buffer; the outputs of forward
    and the input gradients of backward stay the caller's, call after call."""
    model = Sequential(L.Linear(5, 4, seed=0), L.Tanh(), last()).eval()
    X1, X2 = rng.standard_normal((2, 3, 5)).astype(np.float32)
    first = model.forward(X1)
    kept = first.copy()
    second = model.forward(X2)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(model.predict(np.concatenate([X1, X2]), batch_size=3),
                                  np.argmax(np.concatenate([kept, second]), axis=1))

    # A first layer that is a view (Flatten) would hand back an inner dx buffer.
    model = Sequential(L.Flatten(), L.Linear(6, 4, seed=0), L.ReLU(), L.Linear(4, 2, seed=1))
    grads, copies = [], []
    for X in rng.standard_normal((2, 3, 2, 3)).astype(np.float32):
        model.forward(X)
        grads.append(model.backward(rng.standard_normal((3, 2)).astype(np.float32),
                                    need_input_grad=True))
        copies.append(grads[-1].copy())
    assert not np.shares_memory(*grads)
    np.testing.assert_array_equal(grads[0], copies[0])


def test_layers_subclassed_without_output_arrays_still_work(rng):
    """A subclass overriding forward(x)/backward(dout) without out=/dx= (as
    fastfc's own layers take) runs in a Sequential: it gets no buffers."""
    seen = []

    class LoggedTanh(L.Tanh):
        def forward(self, x):
            seen.append(x.shape)
            return super().forward(x)

        def backward(self, dout):
            return super().backward(dout)

    model = Sequential(L.Linear(5, 4, seed=0), LoggedTanh(), L.Linear(4, 2, seed=1))
    X = rng.standard_normal((3, 5)).astype(np.float32)
    for _ in range(2):
        model.backward(model.forward(X))
    assert seen == [(3, 4), (3, 4)]


def test_linear_relu_runs_fused(rng, monkeypatch):
    relu, linear = L.ReLU(), L.Linear(6, 4, seed=0)
    model = Sequential(linear, relu, L.Linear(4, 2, seed=1))
    X = rng.standard_normal((3, 6)).astype(np.float32)
    calls = []
    monkeypatch.setattr(fastfc.functional, "affine_relu_forward",
                        lambda *a, **o: calls.append("fused") or R.affine_relu_forward(*a, **o))
    monkeypatch.setattr(relu, "forward", lambda x: calls.append("relu"))
    out = model.forward(X)
    assert calls == ["fused"]
    W1, b1, W2, b2 = (model.params[k] for k in ("W1", "b1", "W2", "b2"))
    assert_close(out, np.maximum(X @ W1 + b1, 0) @ W2 + b2, TOLERANCES[np.float32])


def test_params_are_the_layers_arrays():
    first, last = L.Linear(3, 4), L.Linear(4, 2, bias=False)
    model = Sequential(first, L.ReLU(), last)
    assert model.params["W1"] is first.params["W"] and model.params["W2"] is last.params["W"]
    assert [name for name, _ in model.named_parameters()] == ["W1", "b1", "W2"]
    assert [p.name for p in model.parameters()] == ["W1", "b1", "W2"]
    assert model.dtype == np.float32
    groups = model.param_groups(weight_decay=0.1)
    assert [(sorted(p.name for p in g["params"]), g["weight_decay"]) for g in groups] == \
        [(["W1", "W2"], 0.1), (["b1"], 0.0)]
    with pytest.raises(TypeError, match="dtypes"):
        Sequential(L.Linear(3, 4), L.Linear(4, 2, dtype=np.float64))
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        Sequential(L.ReLU(), "relu")


def test_course_contract(rng):
    model = FullyConnectedNet([16], input_dim=10, num_classes=4, dropout=0.5, seed=0)
    X, y = data(rng, 7, (10,), 4)
    X = X.astype(np.float32)
    scores = model.loss(X)
    assert scores.shape == (7, 4) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, model.loss(X))  # test mode: no dropout
    np.testing.assert_array_equal(model.predict(X, batch_size=3), np.argmax(scores, axis=1))
    loss, grads = model.loss(X, y)
    assert model.loss(X, y)[0] == loss  # a seed fixes the dropout mask
    assert model.training  # loss() leaves the mode as it found it
    model.eval()
    model.loss(X, y)
    assert not model.training
    np.testing.assert_array_equal(model.loss(X.astype(np.float64)), scores)  # cast to the model's dtype
    unseeded = FullyConnectedNet([16], input_dim=10, num_classes=4, dropout=0.5)
    assert unseeded.loss(X, y)[0] != unseeded.loss(X, y)[0]  # fresh masks


def test_params_assignment_reaches_the_model(rng):
    X, y = data(rng, 6, (5,), 3)
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, dtype=np.float64, seed=0)
    other = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, dtype=np.float64, seed=1)
    W1 = model.params["W1"]
    model.params["W1"] = other.params["W1"] * 1.0  # a new array, as the course's update rules return
    assert model.params["W1"] is W1  # still the model's own array, now holding the new values
    np.testing.assert_array_equal(W1, other.params["W1"])
    model.params = {name: array.copy() for name, array in other.params.items()}  # as Solver's end
    np.testing.assert_array_equal(model.loss(X), other.loss(X))
    assert model.loss(X, y)[0] == other.loss(X, y)[0]
    model.params["b2"] = [1, 2, 3]  # any real array-like, cast to the model's dtype
    np.testing.assert_array_equal(model.layers[-1].params["b"], [1.0, 2.0, 3.0])
    layer = model.layers[0]
    layer.params["b"] = np.full(4, 0.5)
    np.testing.assert_array_equal(model.params["b1"], np.full(4, 0.5))
    assert dict(model.params).keys() == {"W1", "b1", "W2", "b2"}


def test_params_assignment_refuses_what_does_not_fit():
    model = TwoLayerNet(input_dim=5, hidden_dim=4, num_classes=3, dtype=np.float64, seed=0)
    before = {name: array.copy() for name, array in model.params.items()}
    with pytest.raises(ValueError, match=r"params\['W1'\] must have shape \(5, 4\)"):
        model.params["W1"] = np.zeros((4, 5))
    with pytest.raises(TypeError, match=r"params\['b1'\] must be a real number array"):
        model.params["b1"] = np.array(["a"] * 4)
    with pytest.raises(KeyError, match="W3"):
        model.params["W3"] = np.zeros((3, 3))
    with pytest.raises(TypeError, match="cannot be removed"):
        del model.params["W1"]
    with pytest.raises(ValueError, match=r"missing \['b2'\]"):
        model.params = {name: before[name] for name in ("W1", "b1", "W2")}
    with pytest.raises(ValueError, match=r"unknown \['W9'\]"):
        model.params = dict(before, W9=np.zeros(1))
    with pytest.raises(TypeError, match="dict of arrays"):
        model.params = [before["W1"]]
    bad = dict(before, W1=before["W1"] + 1, b2=np.zeros(7))  # W1 fine, b2 not: nothing written
    with pytest.raises(ValueError, match=r"params\['b2'\]"):
        model.params = bad
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


@pytest.mark.parametrize("make", [
    lambda: TwoLayerNet(input_dim=6, hidden_dim=5, num_classes=3, dtype=np.float64, seed=0),
    lambda: FullyConnectedNet([5], input_dim=6, num_classes=3, dropout=0.5, dtype=np.float64, seed=3),
    lambda: ConvNet(input_dim=(1, 4, 4), num_filters=(2,), hidden_dim=4, num_classes=3,
                    dtype=np.float64, seed=0),
], ids=["two-layer", "fc-dropout", "conv"])
def test_returned_grads_are_the_callers(rng, make):
    model = make()
    shape = (1, 4, 4) if isinstance(model, ConvNet) else (6,)
    X, y = data(rng, 4, shape, 3)
    loss, grads = model.loss(X, y)
    kept = {name: grad.copy() for name, grad in grads.items()}
    X2, y2 = data(rng, 5, shape, 3)
    loss2, grads2 = model.loss(X2, y2)  # another batch: different gradients
    for name in kept:
        np.testing.assert_array_equal(grads[name], kept[name], err_msg=name)
        assert not np.shares_memory(grads[name], grads2[name])
        assert not np.shares_memory(grads[name], model.params[name])
    assert any(not np.array_equal(grads2[name], kept[name]) for name in kept)


def test_course_style_solver_trains_through_params_assignment(rng):
    """A student's own Solver loop, as the course writes it: the update rule
    returns a new array and the loop assigns it to model.params[name]."""
    X, y = data(rng, 60, (8,), 3)
    X[np.arange(60), y] += 3.0  # separable enough to learn in a few steps
    model = FullyConnectedNet([16], input_dim=8, num_classes=3, dtype=np.float64, seed=0)

    def course_sgd(w, dw, config):
        return w - config["learning_rate"] * dw, config  # a new array, never w itself

    configs = {name: {"learning_rate": 0.2} for name in model.params}
    first = model.loss(X, y)[0]
    for _ in range(60):
        loss, grads = model.loss(X, y)
        for name in model.params:
            next_w, configs[name] = course_sgd(model.params[name], grads[name], configs[name])
            model.params[name] = next_w
    assert model.loss(X, y)[0] < 0.5 * first
    assert np.mean(model.predict(X) == y) > 0.9


def test_regularisation_terms(rng):
    X, y = data(rng, 5, (6,), 3)
    plain = FullyConnectedNet([4], input_dim=6, num_classes=3, dtype=np.float64, seed=1)
    loss0, grads0 = plain.loss(X, y)
    grads0 = {k: v.copy() for k, v in grads0.items()}
    plain.reg = 0.5
    loss1, grads1 = plain.loss(X, y)
    weights = ["W1", "W2"]
    expected = loss0 + 0.5 * sum(np.sum(plain.params[w] ** 2) for w in weights)
    assert abs(loss1 - expected) < 1e-12
    for name in grads0:
        extra = 2 * 0.5 * plain.params[name] if name in weights else 0
        assert_close(grads1[name], grads0[name] + extra, TOLERANCES[np.float64])


def test_float32_step_matches_reference(rng):
    model = FullyConnectedNet([20, 15], input_dim=30, num_classes=5, weight_scale=None, seed=2)
    X, y = data(rng, 8, (30,), 5)
    X = X.astype(np.float32)
    loss, grads = model.loss(X, y)
    p = model.params
    h1, c1 = R.affine_relu_forward(X, p["W1"], p["b1"])
    h2, c2 = R.affine_relu_forward(h1, p["W2"], p["b2"])
    scores, c3 = R.affine_forward(h2, p["W3"], p["b3"])
    want_loss, dscores = R.softmax_loss(scores, y)
    dh2, dW3, db3 = R.affine_backward(dscores, c3)
    dh1, dW2, db2 = R.affine_relu_backward(dh2, c2)
    _, dW1, db1 = R.affine_relu_backward(dh1, c1)
    assert abs(loss - want_loss) < 1e-5
    want = dict(W1=dW1, b1=db1, W2=dW2, b2=db2, W3=dW3, b3=db3)
    for name, grad in grads.items():
        assert grad.dtype == np.float32
        assert_close(grad, want[name], 1e-4, name)


def test_thread_counts_agree(rng):
    X, y = data(rng, 16, (3, 8, 8), 4)
    results = []
    for threads in (1, 2):
        with num_threads(threads):
            model = ConvNet(input_dim=(3, 8, 8), num_filters=(4,), hidden_dim=8, num_classes=4,
                            dtype=np.float64, seed=0)
            loss, grads = model.loss(X, y)
            results.append((loss, {k: v.copy() for k, v in grads.items()}))
    assert abs(results[0][0] - results[1][0]) < 1e-12
    for name in results[0][1]:
        assert_close(results[1][1][name], results[0][1][name], TOLERANCES[np.float64])


def test_overfit_small_batch(rng):
    X, y = data(rng, 40, (20,), 5)
    X = X.astype(np.float32)
    model = FullyConnectedNet([50, 50], input_dim=20, num_classes=5, weight_scale=None, seed=0)
    optimizer = fastfc.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        model.loss(X, y)
        optimizer.step()
    assert np.mean(model.predict(X) == y) == 1.0


def test_conv_net_shapes(rng):
    model = ConvNet(input_dim=(3, 9, 9), num_filters=(4, 6), hidden_dim=None, num_classes=3, seed=0)
    assert model.loss(rng.standard_normal((2, 3, 9, 9)).astype(np.float32)).shape == (2, 3)
    assert model.params["W3"].shape == (6 * 2 * 2, 3)
    with pytest.raises(ValueError, match=r"ConvNet expects input of shape \(N, 3, 9, 9\)"):
        model.loss(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="num_filters: conv-pool block 3 of 3"):
        ConvNet(input_dim=(1, 4, 4), num_filters=(2, 2, 2))
    with pytest.raises(ValueError, match="too small for filter_size 2"):
        ConvNet(input_dim=(1, 2, 2), num_filters=(2,), filter_size=2)  # 1x1 maps after the conv
    # One block from an int, as the course's three-layer ConvNet; an even
    # filter pads by 1 and shrinks 7x7 maps to 6x6 before the pool.
    single = ConvNet(input_dim=(1, 7, 7), num_filters=4, filter_size=4, hidden_dim=5,
                     num_classes=2, seed=0)
    assert single.params["W1"].shape == (4, 1, 4, 4) and single.params["W2"].shape == (4 * 3 * 3, 5)
    assert single.loss(np.zeros((3, 1, 7, 7), np.float32)).shape == (3, 2)


# ---- save / load ----------------------------------------------------------------

def small_model(seed, hidden=6, dtype=np.float32):
    return FullyConnectedNet([hidden], input_dim=5, num_classes=3, dtype=dtype, seed=seed)


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "model.npz"
    saved = small_model(0)
    saved.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W1", "W2", "b1", "b2"]
    loaded = small_model(1)
    arrays = {name: p.data for name, p in loaded.named_parameters()}
    assert loaded.load(path) is loaded
    for name, array in saved.params.items():
        np.testing.assert_array_equal(loaded.params[name], array)
        assert loaded.params[name] is arrays[name]  # filled in place


@pytest.mark.parametrize("other, match", [
    (lambda: small_model(0, hidden=7), r"'W1' has shape \(5, 7\)"),
    (lambda: small_model(0, dtype=np.float64), "'W1' is float64"),
    (lambda: FullyConnectedNet([6, 6], input_dim=5, num_classes=3), r"unexpected parameters \['W3', 'b3'\]"),
    (lambda: TwoLayerNet(input_dim=5, hidden_dim=6, num_classes=3), None),  # same layout: loads
])
def test_load_mismatch(tmp_path, other, match):
    path = tmp_path / "model.npz"
    other().save(path)
    model = small_model(0)
    before = {k: v.copy() for k, v in model.params.items()}
    if match is None:  # same names, shapes and dtypes: loads
        model.load(path)
        return
    with pytest.raises(ValueError, match=match):
        model.load(path)
    for name, array in model.params.items():  # unchanged by the failed load
        np.testing.assert_array_equal(array, before[name])


def test_load_rejects_other_files(tmp_path):
    model = small_model(0)
    np.savez(tmp_path / "extra.npz", **model.params, extra=np.zeros(2))
    with pytest.raises(ValueError, match=r"unexpected parameters \['extra'\]"):
        model.load(tmp_path / "extra.npz")
    np.savez(tmp_path / "fewer.npz", **{k: v for k, v in model.params.items() if k != "b2"})
    with pytest.raises(ValueError, match=r"missing parameters \['b2'\]"):
        model.load(tmp_path / "fewer.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        model.load(tmp_path / "single.npy")
    np.save(tmp_path / "pickle.npy", np.array([{"W1": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a parameter file"):
        model.load(tmp_path / "pickle.npy")
    with pytest.raises(FileNotFoundError):
        model.load(tmp_path / "none.npz")
    with pytest.raises(IsADirectoryError):  # an OSError of the path itself stays one
        model.load(tmp_path)


def test_load_reads_what_numpy_writes(tmp_path):
    """Compressed archives (np.savez_compressed) of Fortran-ordered arrays
    load too, each value in its place."""
    saved = small_model(0)
    np.savez_compressed(tmp_path / "compressed.npz",
                        **{name: np.asfortranarray(array) for name, array in saved.params.items()})
    loaded = small_model(1).load(tmp_path / "compressed.npz")
    for name, array in saved.params.items():
        np.testing.assert_array_equal(loaded.params[name], array)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    small_model(0).save(path)
    old = path.read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        small_model(1).save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    monkeypatch.undo()
    small_model(1).save(path)
    assert path.read_bytes() != old and os.listdir(tmp_path) == ["model.npz"]


def test_load_needs_no_more_memory_than_the_parameters(tmp_path):
    """Loading reads each array into the model-sized buffer in chunks: the
    peak is the arrays themselves, not twice them (as a whole-member read
    through a temporary bytes object would be)."""
    model = Sequential(L.Linear(2048, 2048, seed=0))  # 16 MiB of weights
    model.save(tmp_path / "big.npz")
    tracemalloc.start()
    try:
        model.load(tmp_path / "big.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * model.params["W1"].nbytes


def test_saved_file_follows_the_umask(tmp_path):
    """The temporary file renamed into place gets open()'s usual mode, not a
    private 0o600 (a saved model shared with a group stays readable)."""
    old_umask = os.umask(0o027)
    try:
        small_model(0).save(tmp_path / "model.npz")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "model.npz").st_mode) == 0o640


def test_resave_keeps_the_files_mode(tmp_path):
    """Saving over a file keeps its permissions (a private 0o600 model stays
    private) instead of widening them to the umask's default."""
    path = tmp_path / "model.npz"
    small_model(0).save(path)
    os.chmod(path, 0o600)
    small_model(1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    np.testing.assert_array_equal(small_model(2).load(path).params["W1"], small_model(1).params["W1"])


def test_read_only_file_is_not_replaced(tmp_path):
    """A file without write permission is refused, not replaced (even for
    root, who could), and left as it was."""
    path = tmp_path / "model.npz"
    small_model(0).save(path)
    os.chmod(path, 0o444)
    old = path.read_bytes()
    with pytest.raises(PermissionError, match="read-only"):
        small_model(1).save(path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["model.npz"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_file_is_not_replaced(tmp_path):
    """Saving to a FIFO (or a device: renaming over /dev/null as root would
    replace the node) is refused and leaves it in place."""
    path = tmp_path / "model.npz"
    os.mkfifo(path)
    with pytest.raises(ValueError, match="not a regular file .a FIFO."):
        small_model(0).save(path)
    assert stat.S_ISFIFO(os.stat(path).st_mode) and os.listdir(tmp_path) == ["model.npz"]


def test_stale_temporaries_are_removed_on_the_next_save(tmp_path):
    """Temporaries of earlier saves to the same name that were killed midway
    (SIGKILL) are removed by the next save; a live writer's, a fresh one, or
    one of another name or pattern is never touched."""
    dead_pid = 9_999_999  # above any pid_max (4194304 at most), so no process has it
    old = os.path.getmtime(tmp_path) - 3600

    def temporary(name, pid, mtime=old):
        path = tmp_path / f".{name}.{pid}.deadbeef.tmp"
        path.write_bytes(b"half a model")
        os.utime(path, (mtime, mtime))
        return path.name

    stale = temporary("model.npz", dead_pid)
    kept = [temporary("model.npz", 1),  # pid 1 is alive: maybe a writer still writing
            temporary("model.npz", dead_pid + 1, mtime=os.path.getmtime(tmp_path) + 3600),  # written lately
            temporary("other.npz", dead_pid)]  # another file's
    (tmp_path / ".model.npz.123.tmp").write_bytes(b"not our pattern")
    small_model(0).save(tmp_path / "model.npz")
    assert stale not in os.listdir(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + [".model.npz.123.tmp", "model.npz"])


def test_mismatch_lists_a_few_names_then_how_many_more(tmp_path):
    model = small_model(0)
    np.savez(tmp_path / "extra.npz", **model.params, **{f"extra{i:02}": np.zeros(1) for i in range(20)})
    with pytest.raises(ValueError, match=r"\['extra00', 'extra01', 'extra02', 'extra03', 'extra04' "
                                         r"and 15 more\]$"):
        model.load(tmp_path / "extra.npz")


def write_zip_of_empty_members(path, count):
    """A zip64 archive of count empty members x0.npy, x1.npy, ..., written
    directly (zipfile takes about 100 us a member): local headers, central
    directory, zip64 end record and locator, end record (PKWARE APPNOTE 4.3)."""
    local, central, offset = [], [], 0
    for i in range(count):
        name = f"x{i}.npy".encode()
        local.append(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)
        offset += len(local[-1])
    directory = b"".join(central)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(b"".join(local) + directory + end64 + locator + end)


def test_many_unexpected_members_are_refused_from_the_count(tmp_path):
    """70,000 members (zip64) where the model has 4: refused from the end
    record's count before zipfile parses the directory (which takes seconds
    and hundreds of MB for such files), with a short message."""
    path = tmp_path / "many.npz"
    write_zip_of_empty_members(path, 70_000)
    model = small_model(0)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="holds 70000 members, the model has 4 parameters") as error:
            model.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(str(error.value)) < 300 and peak < 1 << 20


def test_digest_is_of_the_values_not_the_layout():
    arrays = dict(small_model(0).params)
    digest = parameters_digest(arrays)
    assert parameters_digest({k: np.asfortranarray(v) for k, v in reversed(arrays.items())}) == digest
    changed = dict(arrays, b2=arrays["b2"] + 1)
    assert parameters_digest(changed) != digest
    renamed = dict(arrays)
    renamed["b3"] = renamed.pop("b2")
    assert parameters_digest(renamed) != digest


def test_read_array(tmp_path):
    """fastfc.io.read_array: the one array of an .npy (C or Fortran order);
    an .npz, a truncated file, a header claiming more data than the file
    holds (checked before allocating), or Python objects are a ValueError."""
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for order in ("C", "F"):
        np.save(tmp_path / "a.npy", np.asarray(array, order=order))
        np.testing.assert_array_equal(read_array(tmp_path / "a.npy"), array)
    with open(tmp_path / "z.npy", "wb") as f:  # an .npz by another name
        np.savez(f, a=array)
    with pytest.raises(ValueError, match=r"\.npz archive"):
        read_array(tmp_path / "z.npy")
    np.save(tmp_path / "a.npy", array)
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-4])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    (tmp_path / "huge.npy").write_bytes(header.getvalue() + bytes(8))
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    for name, match in (("short", "44 data bytes follow"), ("huge", "8 data bytes follow"),
                        ("objects", "Python objects")):
        with pytest.raises(ValueError, match=match):
            read_array(tmp_path / f"{name}.npy")


@pytest.mark.parametrize("case", ["trailing slash", "directory", "missing directory", "parent is a file",
                                  "name too long", "read-only file"])
def test_check_output_path_refuses_what_a_save_would_fail_on(tmp_path, case):
    """check_output_path raises, before a run, what the save at its end
    would: the temporary name's extra characters count against the file
    system's name limit (a legal 240-character name cannot be saved)."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "ro.npz").write_bytes(b"")
    os.chmod(tmp_path / "ro.npz", 0o444)
    path, error = {
        "trailing slash": (f"{tmp_path}/sub/", IsADirectoryError),
        "directory": (tmp_path, IsADirectoryError),
        "missing directory": (tmp_path / "no" / "m.npz", FileNotFoundError),
        "parent is a file": (tmp_path / "file" / "m.npz", OSError),
        "name too long": (tmp_path / ("m" * (limit - 15)), OSError),
        "read-only file": (tmp_path / "ro.npz", PermissionError),
    }[case]
    with pytest.raises(error):
        check_output_path(path)
    assert sorted(os.listdir(tmp_path)) == ["file", "ro.npz"]  # the probe left nothing behind
    check_output_path(tmp_path / ("m" * (limit - 30)))  # short enough for the temporary name


def test_check_output_path_allows_special_files_written_in_place(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    check_output_path(tmp_path / "fifo", replaced=False)
    with pytest.raises(ValueError, match="FIFO"):
        check_output_path(tmp_path / "fifo")


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs /sys")
def test_check_output_path_refuses_an_unwritable_directory():
    """/sys refuses new files even to root (os.access says otherwise): the
    check creates a file to know."""
    try:
        os.close(os.open("/sys/fastfc-probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except OSError:
        pass
    else:
        os.remove("/sys/fastfc-probe")
        pytest.skip("/sys is writable here")
    with pytest.raises(OSError, match="cannot create a file in /sys"):
        check_output_path("/sys/model.npz")


# ---- bad input ----------------------------------------------------------------

def test_bad_input(rng):
    model = small_model(0)
    X, y = data(rng, 4, (5,), 3)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 5\)"):
        model.loss(X[:, :4], y)
    with pytest.raises(ValueError, match="label 3, outside"):
        model.loss(X, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="X has 4 samples but y"):
        model.loss(X, y[:3])
    with pytest.raises(ValueError, match="at least one sample"):
        model.loss(X[:0], y[:0])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(X, batch_size=0)
    with pytest.raises(ValueError, match="no loss"):
        Sequential(L.Linear(5, 3)).loss(X, y)
    with pytest.raises(ValueError, match="dropout"):
        FullyConnectedNet([3], dropout=1.0)
    with pytest.raises(ValueError, match="hidden_dims must be a list"):
        FullyConnectedNet(100)
    with pytest.raises(ValueError, match="input_dim"):
        ConvNet(input_dim=(3, 32))
    with pytest.raises(ValueError, match="reg"):
        Sequential(L.Linear(5, 3), reg=-1.0)


def test_layer_plan_describes_the_mlp_and_the_cnn():
    """The one description ConvNet, the command line and the benchmarks build from."""
    from fastfc.models import layer_plan

    assert layer_plan((784,), (100,), 10, dropout=0.5) == [
        ("flatten", ()), ("linear", (784, 100)), ("relu", ()), ("dropout", (0.5,)), ("linear", (100, 10))]
    assert layer_plan((3, 32, 32), (), 10, filters=(32, 64)) == [
        ("conv", (3, 32, 3, 1)), ("relu", ()), ("pool", (2,)), ("conv", (32, 64, 3, 1)), ("relu", ()),
        ("pool", (2,)), ("flatten", ()), ("linear", (64 * 8 * 8, 10))]
    with pytest.raises(ValueError, match="conv-pool block 4 of 4 gets 1x1 maps"):
        layer_plan((1, 8, 8), (), 2, filters=(4, 4, 4, 4))
    net = fastfc.models.ConvNet((1, 8, 8), num_filters=(4,), hidden_dim=6, num_classes=3, seed=0)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
