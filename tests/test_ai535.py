"""fastfc.ai535, the AI535 feed-forward homework's layer objects: the
homework's interface, its Adam with weight decay against a NumPy
transcription, gradients, and a network that overfits a small batch."""
import numpy as np
import pytest

from fastfc import datasets
from fastfc.ai535 import (CrossEntropySoftmax, FeedForwardNeuralNetwork, LinearLayer, ReLU,
                          Sigmoid, evaluate)
from fastfc.gradcheck import eval_numerical_gradient_array, rel_error


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    return {k: v.reshape(len(v), -1) if k.startswith("X") else v for k, v in data.items()}


def test_linear_layer_shapes_and_forward():
    layer = LinearLayer(5, 3, seed=0)
    assert layer.W.shape == (5, 3) and layer.b.shape == (1, 3) and layer.W.dtype == np.float64
    assert np.all(layer.b == 0)
    layer.b = np.array([[1.0, 2.0, 3.0]])  # assigning copies into the layer
    x = np.random.default_rng(1).standard_normal((4, 5))
    np.testing.assert_allclose(layer.forward(x), x @ layer.W + layer.b, rtol=1e-13)


def test_linear_layer_backward_matches_numerical_gradients():
    rng = np.random.default_rng(2)
    layer = LinearLayer(6, 4, seed=0)
    layer.b = rng.standard_normal((1, 4))
    x, dout = rng.standard_normal((3, 6)), rng.standard_normal((3, 4))
    layer.forward(x)
    dx = layer.backward(dout)
    num_dx = eval_numerical_gradient_array(lambda v: layer.forward(v), x, dout)
    num_dw = eval_numerical_gradient_array(lambda w: x @ w + layer.b, layer.W.copy(), dout)
    assert rel_error(dx, num_dx) < 1e-8
    assert rel_error(layer.grad_weights, num_dw) < 1e-8
    np.testing.assert_allclose(layer.grad_bias, dout.sum(axis=0, keepdims=True), rtol=1e-13)
    assert layer.grad_bias.shape == (1, 4)


@pytest.mark.parametrize("cls, fn, slope", [
    (ReLU, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    (Sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
])
def test_activations(cls, fn, slope):
    x = np.linspace(-3, 3, 12).reshape(3, 4) + 0.01  # away from ReLU's kink
    layer = cls()
    np.testing.assert_allclose(layer.forward(x), fn(x), rtol=1e-12)
    grad = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(layer.backward(grad), grad * slope(x), rtol=1e-10)
    assert layer.step(0.1) is None  # no parameters


def test_cross_entropy_softmax_takes_column_labels():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = np.array([[1], [2]])  # batch_size x 1, as the homework's data
    loss_fn = CrossEntropySoftmax()
    loss = loss_fn.forward(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(probs[[0, 1], [1, 2]])), rel=1e-12)
    expected = probs.copy()
    expected[[0, 1], [1, 2]] -= 1
    np.testing.assert_allclose(loss_fn.backward(), expected / 2, rtol=1e-12)
    with pytest.raises(ValueError, match="labels must be"):
        loss_fn.forward(logits, np.zeros((2, 2), dtype=int))


def numpy_adam_with_weight_decay(param, grad, state, lr, weight_decay, betas=(0.9, 0.999),
                                 eps=1e-8):
    """The homework's update, transcribed: L2 decay added to the gradient,
    bias-corrected moments."""
    beta1, beta2 = betas
    state["t"] = state.get("t", 0) + 1
    g = grad + weight_decay * param
    state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * g * g
    m_hat = state["m"] / (1 - beta1 ** state["t"])
    v_hat = state["v"] / (1 - beta2 ** state["t"])
    return param - lr * m_hat / (np.sqrt(v_hat) + eps)


def test_step_is_adam_with_weight_decay_on_the_weights_only():
    rng = np.random.default_rng(3)
    layer = LinearLayer(7, 5, weight_decay=0.05, seed=0)
    W, b = layer.W.copy(), layer.b.copy()
    W_state, b_state = {}, {}
    for k in range(6):
        x, dout = rng.standard_normal((8, 7)), rng.standard_normal((8, 5))
        layer.forward(x)
        layer.backward(dout)
        step_size = 1e-2 / (k + 1)  # the step size may change from call to call
        W = numpy_adam_with_weight_decay(W, x.T @ dout, W_state, step_size, 0.05)
        b = numpy_adam_with_weight_decay(b, dout.sum(axis=0, keepdims=True), b_state, step_size,
                                         0.0)
        layer.step(step_size)
        np.testing.assert_allclose(layer.W, W, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.b, b, rtol=1e-12, atol=1e-15)


def test_network_layout_follows_the_homework():
    net = FeedForwardNeuralNetwork(12, 3, 8, 3, seed=0)
    assert [type(layer).__name__ for layer in net.layers] == [
        "LinearLayer", "ReLU", "LinearLayer", "ReLU", "LinearLayer"]
    assert [layer.W.shape for layer in net.layers[::2]] == [(12, 8), (8, 8), (8, 3)]
    assert len(FeedForwardNeuralNetwork(12, 3, 8, 1).layers) == 1
    with pytest.raises(ValueError, match="num_layers"):
        FeedForwardNeuralNetwork(12, 3, 8, 0)


def test_network_overfits_a_small_batch(digits):
    X, Y = digits["X_train"][:32], digits["y_train"][:32].reshape(-1, 1)
    net = FeedForwardNeuralNetwork(64, 10, 64, 2, seed=0)
    loss_fn = CrossEntropySoftmax()
    for _ in range(150):
        loss_fn.forward(net.forward(X), Y)
        net.backward(loss_fn.backward())
        net.step(1e-2)
    loss, accuracy = evaluate(net, X, Y, batch_size=10)
    assert accuracy == 1.0 and loss < 0.05


def test_a_seeded_run_repeats_and_evaluate_averages_over_batches(digits):
    def run():
        net = FeedForwardNeuralNetwork(64, 10, 16, 2, seed=5, dtype=np.float32)
        loss_fn = CrossEntropySoftmax()
        for start in range(0, 256, 32):
            batch = slice(start, start + 32)
            loss_fn.forward(net.forward(digits["X_train"][batch]), digits["y_train"][batch])
            net.backward(loss_fn.backward())
            net.step(1e-3)
        return net
    first, second = run(), run()
    assert all(np.array_equal(a.W, b.W) for a, b in zip(first.layers[::2], second.layers[::2]))
    X, Y = digits["X_val"], digits["y_val"]
    loss, accuracy = evaluate(first, X, Y, batch_size=7)
    scores = first.forward(X)
    assert accuracy == pytest.approx(np.mean(scores.argmax(axis=1) == Y))
    assert loss == pytest.approx(CrossEntropySoftmax().forward(scores, Y), rel=1e-5)
