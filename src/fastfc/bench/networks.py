"""The networks of the training-step and epoch cases, built alike for every
side from the same initial weights."""
import math

import numpy as np

from .. import reference as R


SIDES = ("fastfc", "reference", "torch")
LEARNING_RATE = 1e-3


# A network is a tuple of layers: ("linear", in, out), ("relu",),
# ("conv", in_channels, out_channels, kernel, pad), ("pool", size), ("flatten",).
def mlp(*dims):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(("linear", d_in, d_out))
        if i < len(dims) - 2:
            layers.append(("relu",))
    return tuple(layers)


# 3x32x32 -> conv3x3x32 -> relu -> pool -> conv3x3x64 -> relu -> pool -> linear 10
CNN = (("conv", 3, 32, 3, 1), ("relu",), ("pool", 2), ("conv", 32, 64, 3, 1), ("relu",), ("pool", 2),
       ("flatten",), ("linear", 64 * 8 * 8, 10))


def init_params(net, dtype, seed=0):
    """He-initialised weights and zero biases, one (W, b) per linear or conv
    layer: W (in, out) for linear (the course's layout), (F, C, k, k) for conv."""
    rng = np.random.default_rng(seed)
    params = []
    for kind, *sizes in net:
        if kind == "linear":
            shape, fan_in, width = (sizes[0], sizes[1]), sizes[0], sizes[1]
        elif kind == "conv":
            c_in, c_out, k, _ = sizes
            shape, fan_in, width = (c_out, c_in, k, k), c_in * k * k, c_out
        else:
            continue
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        params.append((w.astype(dtype), np.zeros(width, dtype=dtype)))
    return params


class NumpyAdam:
    """Adam in plain NumPy, torch.optim.Adam's formula (no weight decay), updating
    the arrays in place: the baseline the fastfc optimizer is measured against.

    Inputs: params, grads: lists of arrays of matching shapes (grads are read at each step()).
    """

    def __init__(self, params, grads, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.grads = params, grads
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        step_size = self.lr / (1 - self.beta1 ** self.t)
        root_correction = math.sqrt(1 - self.beta2 ** self.t)
        for p, g, m, v in zip(self.params, self.grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_correction + self.eps)


def torch_adam(torch, params):
    """torch's fastest Adam on the CPU: the fused kernel where this build has it."""
    try:
        return torch.optim.Adam(params, lr=LEARNING_RATE, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=LEARNING_RATE, foreach=True)


class FastfcNet:
    """The network as fastfc layers in a fastfc.models.Sequential, trained with
    fastfc.optim.Adam. step(x, y) runs forward, softmax loss, backward and the
    Adam step, and returns the loss."""

    def __init__(self, net, params, dtype):
        from .. import layers, models, optim

        built, weights = [], iter(params)
        for kind, *sizes in net:
            if kind == "linear":
                layer = layers.Linear(*sizes, dtype=dtype)
            elif kind == "conv":
                c_in, c_out, k, pad = sizes
                layer = layers.Conv2d(c_in, c_out, k, padding=pad, dtype=dtype)
            elif kind == "relu":
                layer = layers.ReLU()
            elif kind == "pool":
                layer = layers.MaxPool2d(sizes[0])
            else:
                layer = layers.Flatten()
            if kind in ("linear", "conv"):
                w, b = next(weights)
                layer.params["W"][...] = w
                layer.params["b"][...] = b
            built.append(layer)
        self.model = models.Sequential(*built)
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
            kind, *sizes = net[i]
            fused = kind == "linear" and i + 1 < len(net) and net[i + 1][0] == "relu"
            if kind in ("linear", "conv"):
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
        for i in reversed(range(len(self.layers))):
            dout, _ = self.layers[i][1](dout, caches[i], i == 0)
        self.adam.step()
        return loss


class TorchNet:
    """The network as a torch.nn.Sequential with fused Adam; step(x, y) takes
    tensors and returns the loss."""

    def __init__(self, torch, net, params, dtype):
        nn, weights, built = torch.nn, iter(params), []
        torch_dtype = getattr(torch, np.dtype(dtype).name)
        for kind, *sizes in net:
            if kind == "linear":
                layer = nn.Linear(*sizes, dtype=torch_dtype)
            elif kind == "conv":
                c_in, c_out, k, pad = sizes
                layer = nn.Conv2d(c_in, c_out, k, padding=pad, dtype=torch_dtype)
            elif kind == "relu":
                layer = nn.ReLU()
            elif kind == "pool":
                layer = nn.MaxPool2d(sizes[0])
            else:
                layer = nn.Flatten()
            if kind in ("linear", "conv"):
                w, b = next(weights)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(w.T if kind == "linear" else w))
                    layer.bias.copy_(torch.from_numpy(b))
            built.append(layer)
        self.torch = torch
        self.model = nn.Sequential(*built)
        self.optimizer = torch_adam(torch, self.model.parameters())

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
