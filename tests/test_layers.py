"""fastfc.layers: every layer's backward against numerical gradients (float64),
forward against fastfc.reference (float32), parameters kept in place,
initialisation, modes and bad arguments."""
import tracemalloc

import numpy as np
import pytest

import fastfc
from fastfc import layers as L
from fastfc import reference as R
from fastfc.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array

from testutil import TOLERANCES, assert_close, noncontiguous


def grad_error(numerical, analytic):
    """Largest difference relative to the gradient's largest entry (the
    course's per-entry rel_error blows up on entries near zero, where the
    numerical gradient is all rounding noise)."""
    scale = max(np.max(np.abs(numerical)), np.max(np.abs(analytic)), 1e-30)
    return np.max(np.abs(numerical - analytic)) / scale


def check_layer_gradients(layer, x, rng, tol=1e-7):
    """dx and every parameter gradient of layer at x against numerical ones."""
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    grads = {name: g.copy() for name, g in layer.grads.items()}
    dx_num = eval_numerical_gradient_array(lambda a: layer.forward(a), x, dout)
    assert grad_error(dx_num, dx) < tol
    for name, param in layer.params.items():
        numerical = eval_numerical_gradient_array(lambda _: layer.forward(x), param, dout)
        assert grad_error(numerical, grads[name]) < tol, name


def test_linear_gradients(rng):
    x = rng.standard_normal((3, 2, 5))  # flattened to 10 features
    check_layer_gradients(L.Linear(10, 4, seed=0, dtype=np.float64), x, rng)


def test_linear_without_bias(rng):
    layer = L.Linear(6, 3, bias=False, seed=0, dtype=np.float64)
    assert list(layer.params) == ["W"]
    x = rng.standard_normal((4, 6))
    assert_close(layer.forward(x), x @ layer.params["W"], TOLERANCES[np.float64])
    check_layer_gradients(layer, x, rng)


def test_linear_fused_relu_gradients(rng):
    layer = L.Linear(7, 5, seed=1, dtype=np.float64)
    x = rng.standard_normal((4, 7))
    out = layer.forward_relu(x)
    assert_close(out, np.maximum(0, x @ layer.params["W"] + layer.params["b"]), TOLERANCES[np.float64])
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    dx_num = eval_numerical_gradient_array(layer.forward_relu, x, dout)
    assert grad_error(dx_num, dx) < 1e-7
    dw_num = eval_numerical_gradient_array(lambda _: layer.forward_relu(x), layer.params["W"], dout)
    layer.forward_relu(x)
    layer.backward(dout)
    assert grad_error(dw_num, layer.grads["W"]) < 1e-7


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_conv2d_gradients(rng, stride, padding):
    layer = L.Conv2d(2, 3, (3, 2), stride=stride, padding=padding, seed=0, dtype=np.float64)
    assert layer.params["W"].shape == (3, 2, 3, 2)
    check_layer_gradients(layer, rng.standard_normal((2, 2, 5, 6)), rng)


@pytest.mark.parametrize("make", [L.ReLU, L.Sigmoid, L.Tanh, L.Flatten,
                                  lambda: L.MaxPool2d(2), lambda: L.MaxPool2d(3, stride=1),
                                  lambda: L.Dropout(0.4, seed=7, same_mask=True)],
                         ids=["relu", "sigmoid", "tanh", "flatten", "maxpool2", "maxpool3s1", "dropout"])
def test_stateless_gradients(rng, make):
    x = rng.standard_normal((2, 3, 4, 4))
    check_layer_gradients(make(), x, rng)


@pytest.mark.parametrize("loss_class, make_target", [
    (L.SoftmaxCrossEntropy, lambda rng, shape: rng.integers(0, shape[1], shape[0])),
    (L.SVMLoss, lambda rng, shape: rng.integers(0, shape[1], shape[0])),
    (L.MSELoss, lambda rng, shape: rng.standard_normal(shape)),
])
def test_loss_gradients(rng, loss_class, make_target):
    scores = rng.standard_normal((5, 4))
    target = make_target(rng, scores.shape)
    criterion = loss_class()
    loss = criterion.forward(scores, target)
    assert isinstance(loss, float)
    numerical = eval_numerical_gradient(lambda s: criterion.forward(s, target), scores, h=1e-6)
    criterion.forward(scores, target)
    assert grad_error(numerical, criterion.backward()) < 1e-7


def test_loss_backward_needs_forward():
    with pytest.raises(RuntimeError, match="forward"):
        L.SoftmaxCrossEntropy().backward()


@pytest.mark.parametrize("make", [lambda: L.Linear(3, 2), L.ReLU])
def test_backward_needs_forward(make):
    with pytest.raises(RuntimeError, match="forward"):
        make().backward(np.zeros((1, 2), np.float32))


def test_linear_matches_reference_float32(rng):
    layer = L.Linear(33, 17, seed=3)
    x = noncontiguous(rng.standard_normal((9, 33)).astype(np.float32))
    out = layer.forward(x)
    want, cache = R.affine_forward(x, layer.params["W"], layer.params["b"])
    assert out.dtype == np.float32
    assert_close(out, want, TOLERANCES[np.float32])
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dout)
    dx_want, dw_want, db_want = R.affine_backward(dout, cache)
    for got, expected in [(dx, dx_want), (layer.grads["W"], dw_want), (layer.grads["b"], db_want)]:
        assert_close(got, expected, TOLERANCES[np.float32])


def test_conv2d_matches_reference_float32(rng):
    layer = L.Conv2d(3, 4, 3, padding=1, seed=0)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    want, _ = R.conv_forward(x, layer.params["W"], layer.params["b"], 1, 1)
    assert_close(layer.forward(x), want, TOLERANCES[np.float32])


@pytest.mark.parametrize("make, x_shape", [
    (lambda: L.Linear(4, 3, seed=0, dtype=np.float64), (5, 4)),
    (lambda: L.Conv2d(2, 3, 3, padding=1, seed=0, dtype=np.float64), (2, 2, 5, 5)),
], ids=["linear", "conv2d"])
def test_parameters_updated_in_place_and_grads_overwritten(rng, make, x_shape):
    layer = make()
    params = layer.parameters()
    assert all(isinstance(p, fastfc.Parameter) for p in params)
    assert [p.name for p in params] == ["W", "b"]
    data_ids = [id(p.data) for p in params]
    grad_ids = [id(p.grad) for p in params]
    x = rng.standard_normal(x_shape)
    dout = rng.standard_normal(layer.forward(x).shape)
    layer.forward(x)
    layer.backward(dout)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dout)
    for name, grad in layer.grads.items():  # overwritten, not accumulated
        np.testing.assert_array_equal(grad, first[name])
    assert [id(p.data) for p in params] == data_ids and [id(p.grad) for p in params] == grad_ids
    assert layer.params["W"] is params[0].data and layer.grads["b"] is params[1].grad
    layer.forward(x)
    assert layer.backward(dout, compute_dx=False) is None  # the first layer's case
    np.testing.assert_array_equal(layer.grads["W"], first["W"])


def test_initialisation():
    big = L.Linear(2000, 300, seed=0)
    assert big.params["W"].dtype == np.float32
    assert abs(big.params["W"].std() / np.sqrt(2 / 2000) - 1) < 0.01  # He by default
    assert not big.params["b"].any()
    scaled = L.Linear(2000, 300, weight_scale=1e-2, seed=0, dtype=np.float64)
    assert scaled.params["W"].dtype == np.float64
    assert abs(scaled.params["W"].std() / 1e-2 - 1) < 0.01
    conv = L.Conv2d(8, 64, 5, seed=0)
    assert abs(conv.params["W"].std() / np.sqrt(2 / (8 * 25)) - 1) < 0.05
    np.testing.assert_array_equal(L.Linear(5, 4, seed=3).params["W"], L.Linear(5, 4, seed=3).params["W"])
    assert not np.array_equal(L.Linear(5, 4, seed=3).params["W"], L.Linear(5, 4, seed=4).params["W"])
    rng = np.random.default_rng(0)  # a Generator carries on between layers
    assert not np.array_equal(L.Linear(5, 4, seed=rng).params["W"], L.Linear(5, 4, seed=rng).params["W"])
    np.random.seed(5)
    first = L.Linear(5, 4).params["W"]
    np.random.seed(5)
    np.testing.assert_array_equal(first, L.Linear(5, 4).params["W"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initialisation_takes_the_layer_memory_not_five_times_it(dtype):
    """Before, a float32 layer drew float64 normals and multiplied them
    before casting: a peak of 5 times the weights (20 GB to build a 3.6 GB
    model). Now the weights and their gradient, plus a small piece."""
    tracemalloc.start()
    try:
        layer = L.Linear(1024, 2048, seed=0, dtype=dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    weights = layer.params["W"].nbytes
    assert peak < 2 * weights + (1 << 20), f"peak {peak / weights:.2f} times the weights"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_weights_are_the_scaled_normal_draws_cast_once(dtype):
    """Drawing in pieces keeps a seed's weights: std * N(0, 1) in float64,
    then rounded to dtype, as one draw gives (the tail piece included)."""
    shape = (3 * (1 << 14) + 5, 3)  # several pieces and a partial one
    w = L.Linear(*shape, seed=7, dtype=dtype).params["W"]
    want = (np.sqrt(2 / shape[0]) * np.random.default_rng(7).standard_normal(shape)).astype(dtype)
    np.testing.assert_array_equal(w, want)


def test_dropout_modes(rng):
    x = rng.standard_normal((50, 40))
    fresh = L.Dropout(0.5, seed=0)
    a, b = fresh.forward(x), fresh.forward(x)
    assert not np.array_equal(a, b)  # a new mask each call
    assert np.array_equal(L.Dropout(0.5, seed=0).forward(x), a)  # reproducible from the seed
    kept = a != 0
    assert 0.4 < kept.mean() < 0.6
    assert_close(a[kept], 2 * x[kept], TOLERANCES[np.float64])
    np.testing.assert_array_equal(fresh.backward(np.ones_like(x)), np.where(b != 0, 2.0, 0.0))
    fixed = L.Dropout(0.5, seed=0, same_mask=True)
    np.testing.assert_array_equal(fixed.forward(x), fixed.forward(x))
    fixed.eval()
    assert not fixed.training
    np.testing.assert_array_equal(fixed.forward(x), x)
    np.testing.assert_array_equal(fixed.backward(x), x)
    fixed.train()
    assert not np.array_equal(fixed.forward(x), x)


@pytest.mark.parametrize("same_mask", [False, True])
def test_dropout_of_a_shard_is_its_rows_of_the_whole_batch(rng, same_mask):
    x = rng.standard_normal((10, 4, 3))
    whole = L.Dropout(0.5, seed=3, same_mask=same_mask)
    want = whole.forward(x)
    want_dx = whole.backward(np.ones_like(x))
    for lo, hi in [(0, 6), (6, 10)]:
        shard = L.Dropout(0.5, seed=3, same_mask=same_mask)  # the same seed, as every rank has
        shard.first_row = lo
        np.testing.assert_array_equal(shard.forward(x[lo:hi]), want[lo:hi])
        np.testing.assert_array_equal(shard.backward(np.ones_like(x[lo:hi])), want_dx[lo:hi])
    shard = L.Dropout(0.5, seed=3, same_mask=same_mask)
    shard.first_row = -1
    with pytest.raises(ValueError, match="first_row"):
        shard.forward(x)


def test_flatten_and_pool_shapes(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    pooled = L.MaxPool2d(2).forward(x)
    assert pooled.shape == (2, 3, 3, 2)
    assert L.MaxPool2d((2, 3), stride=1).forward(x).shape == (2, 3, 5, 3)
    flat = L.Flatten()
    assert flat.forward(x).shape == (2, 90)
    assert flat.backward(np.zeros((2, 90), np.float32)).shape == x.shape


@pytest.mark.parametrize("make, match", [
    (lambda: L.Linear(0, 3), "in_features"),
    (lambda: L.Linear(3, 2.5), "out_features"),
    (lambda: L.Linear(3, 2, weight_scale=-1.0), "weight_scale"),
    (lambda: L.Linear(3, 2, seed=-1), "seed"),
    (lambda: L.Conv2d(3, 4, (3, 3, 3)), "kernel_size"),
    (lambda: L.Conv2d(3, 4, 3, stride=0), "stride"),
    (lambda: L.Conv2d(3, 4, 3, padding=-1), "padding"),
    (lambda: L.MaxPool2d(0), "kernel_size"),
    (lambda: L.MaxPool2d((2, 3)), "stride must be given"),  # torch would stride (2, 3)
    (lambda: L.Dropout(1.0), "p"),
    (lambda: L.Dropout(0.5, same_mask=True), "seed"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_dtype():
    with pytest.raises(TypeError, match="dtype"):
        L.Linear(3, 2, dtype=np.int32)


def test_wrong_input_width(rng):
    with pytest.raises(ValueError, match=r"Linear\(5, 2\) expects input of shape \(N, 5\)"):
        L.Linear(5, 2).forward(rng.standard_normal((3, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        L.Conv2d(3, 2, 3).forward(np.zeros((1, 2, 5, 5), np.float32))


def test_top_level_reexports():
    for name in L.__all__:
        if name != "Layer":
            assert getattr(fastfc, name) is getattr(L, name), name
    assert fastfc.Parameter is fastfc.parameter.Parameter
    assert fastfc.Solver is fastfc.solver.Solver and fastfc.evaluate is fastfc.solver.evaluate
    assert {"layers", "models", "optim"} <= set(fastfc.__all__)


# ---- the docstrings' W and b are attributes ---------------------------------------------

@pytest.mark.parametrize("make", [lambda **kw: L.Linear(3, 2, seed=0, **kw),
                                  lambda **kw: L.Conv2d(1, 2, 3, seed=0, **kw)])
def test_weighted_layers_have_the_w_and_b_their_docstrings_name(make):
    layer = make()
    assert layer.W is layer.params["W"] and layer.b is layer.params["b"]
    new = np.full(layer.W.shape, 0.5, layer.W.dtype)
    array = layer.W
    layer.W = new
    assert layer.W is array and np.all(layer.W == 0.5)  # copied in, as params assignment
    with pytest.raises(ValueError, match="shape"):
        layer.W = np.zeros((7, 7), layer.W.dtype)
    layer.b = np.ones(layer.b.shape)
    assert np.all(layer.b == 1)
    no_bias = make(bias=False)
    assert no_bias.b is None
    with pytest.raises(AttributeError, match="no bias"):
        no_bias.b = np.zeros(2)
