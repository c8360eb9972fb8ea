"""The layer objects of the AI535 (Oregon State) feed-forward network
homework, on fastfc's kernels: NumPy arrays in and out, no PyTorch.

    from fastfc.ai535 import (LinearLayer, ReLU, Sigmoid, CrossEntropySoftmax,
                              FeedForwardNeuralNetwork, evaluate)

    net = FeedForwardNeuralNetwork(input_dim, output_dim, hidden_dim, num_layers)
    loss_fn = CrossEntropySoftmax()
    loss = loss_fn.forward(net.forward(X_batch), Y_batch)
    net.backward(loss_fn.backward())
    net.step(step_size)

The homework's interface: every layer has forward(input) and
backward(grad) (which returns dL/dinput), and step(step_size) updates the
layer's own parameters (a no-op for ReLU and Sigmoid). LinearLayer holds W
(input_dim, output_dim) and b (1, output_dim), and after backward
grad_weights and grad_bias (the sums over the batch). Its step is the
homework's Adam with L2 weight decay: weight_decay * W is added to W's
gradient (not to the bias's) before the Adam moments, with bias-corrected
moments (torch.optim.Adam's formula, learning rate step_size):

    g = grad_weights + weight_decay * W
    m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g**2
    W -= step_size * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

(the same for b with g = grad_bias), one fused C pass per layer.

Differences from a hand-written homework, on purpose: labels may be (N,)
or (N, 1); inputs of another dtype (uint8 pixels, say) are cast to the
layers' dtype (float64 by default, as NumPy computes; float32 is faster);
FeedForwardNeuralNetwork.backward skips the input gradient of its first
layer, which nothing uses.
"""

import numpy as np

from . import functional as F
from . import layers as _layers
from . import optim as _optim
from ._validation import check_int, check_real

__all__ = ["LinearLayer", "ReLU", "Sigmoid", "CrossEntropySoftmax", "FeedForwardNeuralNetwork",
           "evaluate"]

WEIGHT_DECAY = 1e-4  # the default L2 strength of LinearLayer.step


class LinearLayer:
    """A fully-connected layer, forward(input) = input @ W + b.

    Inputs:
    - input_dim, output_dim: sizes
    - weight_decay: L2 strength added to W's gradient in step (not b's)
    - betas, eps: Adam's moment decays and denominator term
    - seed: int, np.random.Generator or None (NumPy's global generator) for
      the initial W, He's N(0, 2 / input_dim); b starts at zero
    - dtype: np.float64 (default) or np.float32

    Attributes: W (input_dim, output_dim) and b (1, output_dim), the layer's
    own arrays (assigning copies into them); after backward, grad_weights
    (input_dim, output_dim) and grad_bias (1, output_dim).
    """

    def __init__(self, input_dim, output_dim, *, weight_decay=WEIGHT_DECAY, betas=(0.9, 0.999),
                 eps=1e-8, seed=None, dtype=np.float64):
        self._linear = _layers.Linear(input_dim, output_dim, seed=seed, dtype=dtype)
        weight, bias = self._linear.parameters()
        self._optimizer = _optim.Adam([{"params": [weight], "weight_decay": weight_decay},
                                       {"params": [bias], "weight_decay": 0.0}],
                                      betas=betas, eps=eps)
        self.dtype = np.dtype(dtype)

    @property
    def W(self):
        return self._linear.params["W"]

    @W.setter
    def W(self, value):
        self._linear.params["W"] = value

    @property
    def b(self):
        return self._linear.params["b"].reshape(1, -1)

    @b.setter
    def b(self, value):
        self._linear.params["b"] = np.reshape(value, -1)

    @property
    def grad_weights(self):
        return self._linear.grads["W"]

    @property
    def grad_bias(self):
        return self._linear.grads["b"].reshape(1, -1)

    def forward(self, input):
        """input (N, input_dim) -> input @ W + b (N, output_dim)."""
        return self._linear.forward(np.asarray(input, dtype=self.dtype))

    def backward(self, grad, need_input_grad=True):
        """grad dL/dZ (N, output_dim) -> dL/dinput (N, input_dim) (None
        without need_input_grad); stores grad_weights and grad_bias."""
        return self._linear.backward(np.asarray(grad, dtype=self.dtype),
                                     compute_dx=need_input_grad)

    def step(self, step_size):
        """One Adam step with weight decay on W (see the module docstring)."""
        step_size = check_real("step_size", step_size, low=0, finite=False)
        for group in self._optimizer.param_groups:
            group["lr"] = step_size
        self._optimizer.step()

    def __repr__(self):
        return f"LinearLayer({self._linear.in_features}, {self._linear.out_features})"


class _Activation:
    """An element-wise layer without parameters: step does nothing."""

    _forward = _backward = None  # the functional pair

    def __init__(self):
        self._cache = None

    def forward(self, input):
        out, self._cache = type(self)._forward(np.asarray(input))
        return out

    def backward(self, grad):
        """dL/doutput -> dL/dinput."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called without a forward before it")
        return type(self)._backward(np.asarray(grad), self._cache)

    def step(self, step_size):
        """No parameters: nothing to update."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """max(0, input) element-wise."""
    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class Sigmoid(_Activation):
    """1 / (1 + exp(-input)) element-wise."""
    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


def _labels(labels, n):
    """Labels of shape (N,) or (N, 1) as (N,) integers."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be (N,) or (N, 1) with N = {n}, got shape {labels.shape}")
    return labels


class CrossEntropySoftmax:
    """The cross-entropy of the softmax of the logits, averaged over the batch."""

    def __init__(self):
        self._dlogits = None

    def forward(self, logits, labels):
        """logits (N, C) scores; labels (N,) or (N, 1) integer classes.
        Returns the average loss (a float)."""
        logits = np.asarray(logits)
        loss, self._dlogits = F.softmax_loss(logits, _labels(labels, len(logits)))
        return float(loss)

    def backward(self):
        """dL/dlogits (N, C) of the last forward."""
        if self._dlogits is None:
            raise RuntimeError("CrossEntropySoftmax: backward called without a forward before it")
        return self._dlogits


class FeedForwardNeuralNetwork:
    """The homework's network: LinearLayer (- ReLU - LinearLayer) x
    (num_layers - 1) from input_dim through hidden_dim to output_dim (one
    LinearLayer when num_layers is 1).

    Inputs: input_dim, output_dim, hidden_dim, num_layers; seed (int,
    Generator or None) for the initial weights; the rest (weight_decay,
    betas, eps, dtype) goes to every LinearLayer.
    Attributes: layers, the list of layer objects.
    """

    def __init__(self, input_dim, output_dim, hidden_dim, num_layers, *, seed=None, **options):
        num_layers = check_int("num_layers", num_layers, low=1)
        rng = _layers._generator(seed)
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = []
        for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            if k:
                self.layers.append(ReLU())
            self.layers.append(LinearLayer(d_in, d_out, seed=rng, **options))

    def forward(self, X):
        """Scores (N, output_dim) for X (N, input_dim)."""
        for layer in self.layers:
            X = layer.forward(X)
        return X

    def backward(self, grad):
        """Backpropagates dL/dscores through every layer (the first layer's
        input gradient, which nothing uses, is skipped)."""
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        self.layers[0].backward(grad, need_input_grad=False)

    def step(self, step_size):
        """Every layer's step."""
        for layer in self.layers:
            layer.step(step_size)


def evaluate(model, X_val, Y_val, batch_size):
    """Average cross-entropy loss and accuracy of model on X_val, Y_val,
    batch by batch. Returns (avg_loss, accuracy), floats."""
    batch_size = check_int("batch_size", batch_size, low=1)
    X_val = np.asarray(X_val)
    Y_val = _labels(Y_val, len(X_val))
    if len(X_val) == 0:
        raise ValueError("X_val holds no samples")
    loss_fn = CrossEntropySoftmax()
    total_loss, correct = 0.0, 0
    for start in range(0, len(X_val), batch_size):
        scores = model.forward(X_val[start:start + batch_size])
        labels = Y_val[start:start + batch_size]
        total_loss += loss_fn.forward(scores, labels) * len(labels)
        correct += int(np.count_nonzero(scores.argmax(axis=1) == labels))
    return total_loss / len(X_val), correct / len(X_val)
