"""The networks of the training-step and epoch cases, built alike for every
side from the same initial weights."""
import math

import numpy as np

from .. import reference as R
from ..models import layer_plan
from .baselines import LEARNING_RATE, NumpyAdam, torch_optimizer


SIDES = ("fastfc", "reference", "torch")


# A network is a fastfc.models.layer_plan: a list of (kind, sizes).
def mlp(*dims):
    """The MLP dims[0] - ... - dims[-1] (ReLU between the linear layers)."""
    return layer_plan(dims[:1], dims[1:-1], dims[-1])


# 3x32x32 -> conv3x3x32 -> relu -> pool -> conv3x3x64 -> relu -> pool -> linear 10
CNN = layer_plan((3, 32, 32), (), 10, filters=(32, 64))
WEIGHTED = ("linear", "conv")


def init_params(net, dtype, seed=0):
    """He-initialised weights and zero biases, one (W, b) per linear or conv
    layer: W (in, out) for linear (the course's layout), (F, C, k, k) for conv."""
    rng = np.random.default_rng(seed)
    params = []
    for kind, sizes in net:
        if kind == "linear":
            shape, fan_in, width = sizes, sizes[0], sizes[1]
        elif kind == "conv":
            c_in, c_out, k, _ = sizes
            shape, fan_in, width = (c_out, c_in, k, k), c_in * k * k, c_out
        else:
            continue
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        params.append((w.astype(dtype), np.zeros(width, dtype=dtype)))
    return params


def build_layers(net, make, params, load):
    """The layers make[kind](*sizes) of net, the weighted ones given params'
    (W, b) in order by load(layer, kind, W, b)."""
    built = [make[kind](*sizes) for kind, sizes in net]
    weighted = [(layer, kind) for layer, (kind, _) in zip(built, net) if kind in WEIGHTED]
    for (layer, kind), (w, b) in zip(weighted, params):
        load(layer, kind, w, b)
    return built


class FastfcNet:
    """The network as fastfc layers in a fastfc.models.Sequential, trained with
    fastfc.optim.Adam. step(x, y) runs forward, softmax loss, backward and the
    Adam step, and returns the loss."""

    def __init__(self, net, params, dtype):
        from .. import layers, models, optim

        make = {"linear": lambda d_in, d_out: layers.Linear(d_in, d_out, dtype=dtype),
                "conv": lambda c_in, c_out, k, pad: layers.Conv2d(c_in, c_out, k, padding=pad, dtype=dtype),
                "relu": layers.ReLU, "pool": layers.MaxPool2d, "flatten": layers.Flatten}

        def load(layer, kind, w, b):
            layer.params["W"][...] = w
            layer.params["b"][...] = b
        self.model = models.Sequential(*build_layers(net, make, params, load))
        self.model.train()
        self.loss = layers.SoftmaxCrossEntropy()
        self.optimizer = optim.Adam(self.model.parameters(), lr=LEARNING_RATE)

    def step(self, x, y):
        loss = self.loss.forward(self.model.forward(x), y)
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        return loss


class ReferenceNet:
    """The network written with fastfc.reference functions (affine_relu where a
    linear layer is followed by ReLU) and NumpyAdam. Like the other sides, it
    skips the gradient with respect to the input data."""

    def __init__(self, net, params):
        self.layers = []  # (forward(h) -> (out, cache), backward(dout, cache, first) -> (dx, grads))
        self.params = [p.copy() for pair in params for p in pair]
        self.grads = [np.zeros_like(p) for p in self.params]
        weights = iter(range(0, len(self.params), 2))
        i = 0
        while i < len(net):
            kind, sizes = net[i]
            fused = kind == "linear" and i + 1 < len(net) and net[i + 1][0] == "relu"
            if kind in WEIGHTED:
                self.layers.append(self._weighted(kind, fused, sizes, next(weights)))
            elif kind == "relu":
                self.layers.append((R.relu_forward, lambda d, c, first: (R.relu_backward(d, c), ())))
            elif kind == "pool":
                size = sizes[0]
                self.layers.append((lambda h, s=size: R.max_pool_forward(h, s, s, s),
                                    lambda d, c, first: (R.max_pool_backward(d, c), ())))
            else:
                self.layers.append((lambda h: (h.reshape(len(h), -1), h.shape),
                                    lambda d, shape, first: (d.reshape(shape), ())))
            i += 2 if fused else 1
        # Backward stops at the first layer with weights, which skips dx (the
        # layers before it, a flatten, have nothing to learn).
        self.first_weighted = next(i for i, (kind, _) in enumerate(net) if kind in WEIGHTED)
        self.adam = NumpyAdam(self.params, self.grads)

    def _weighted(self, kind, fused, sizes, index):
        w, b = self.params[index], self.params[index + 1]
        if kind == "conv":
            pad = sizes[3]
            forward, backward = (lambda h: R.conv_forward(h, w, b, 1, pad)), R.conv_backward
        elif fused:
            forward, backward = (lambda h: R.affine_relu_forward(h, w, b)), R.affine_relu_backward
        else:
            forward, backward = (lambda h: R.affine_forward(h, w, b)), R.affine_backward

        def backward_into(dout, cache, first):
            dx, dw, db = backward(dout, cache, compute_dx=not first)
            self.grads[index][...] = dw
            self.grads[index + 1][...] = db
            return dx, ()
        return forward, backward_into

    def step(self, x, y):
        caches, h = [], x
        for forward, _ in self.layers:
            h, cache = forward(h)
            caches.append(cache)
        loss, dout = R.softmax_loss(h, y)
        for i in reversed(range(self.first_weighted, len(self.layers))):
            dout, _ = self.layers[i][1](dout, caches[i], i == self.first_weighted)
        self.adam.step()
        return loss


class TorchNet:
    """The network as a torch.nn.Sequential with fused Adam; step(x, y) takes
    tensors and returns the loss."""

    def __init__(self, torch, net, params, dtype):
        nn = torch.nn
        torch_dtype = getattr(torch, np.dtype(dtype).name)
        make = {"linear": lambda d_in, d_out: nn.Linear(d_in, d_out, dtype=torch_dtype),
                "conv": lambda c_in, c_out, k, pad: nn.Conv2d(c_in, c_out, k, padding=pad, dtype=torch_dtype),
                "relu": nn.ReLU, "pool": nn.MaxPool2d, "flatten": nn.Flatten}

        def load(layer, kind, w, b):
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w.T if kind == "linear" else w))  # torch holds (out, in)
                layer.bias.copy_(torch.from_numpy(b))
        self.torch = torch
        self.model = nn.Sequential(*build_layers(net, make, params, load))
        self.optimizer = torch_optimizer(torch, "Adam", self.model.parameters(), lr=LEARNING_RATE)

    def step(self, x, y):
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def side_nets(setup, net, sides=SIDES):
    """The sides' copies of the network, from the same initial weights (torch
    only when setup has it)."""
    params = init_params(net, setup.dtype)
    makers = {"fastfc": lambda: FastfcNet(net, params, setup.dtype),
              "reference": lambda: ReferenceNet(net, params),
              "torch": lambda: TorchNet(setup.torch, net, params, setup.dtype)}
    return {side: makers[side]() for side in SIDES
            if side in sides and (side != "torch" or setup.torch)}
