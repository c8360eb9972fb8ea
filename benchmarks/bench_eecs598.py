"""A training step of the EECS 498/598 A3 networks, on CPU tensors, float32:
FullyConnectedNet([100, 100]) on 3072-dim rows at batch 100 (the Solver's
default batch) and ThreeLayerConvNet() (3x32x32, 32 filters 7x7, hidden
100) at batch 64. A step is the loss, the gradients and an Adam update of
every parameter.

Sides, from the same initial weights and data; each step draws its batch
(here a permutation of the batch's samples, so every side sees the same
loss) and gathers it, as a training loop does:
- eecs598-solver: fastfc.eecs598's Solver._step (the fused path: the batch
  gathered into kept buffers, one C call updates every parameter)
- eecs598-loop: the step written as the course's Solver writes it, with
  fastfc.eecs598's model and adam: loss, grads = model.loss(X, y), then
  next_w, config = adam(w, grads[p], config); model.params[p] = next_w
- object: fastfc's own object API on the same network (Sequential +
  SoftmaxCrossEntropy + fastfc.optim.Adam)
- course-torch: the course's implementation in torch ops, as its reference
  solution writes it: Linear as x.reshape(N, -1).mm(w) + b, ReLU as clamp,
  softmax_loss from a3_helper, the models' loss() with caches, adam on
  tensors; for the conv net, its Conv_ReLU_Pool over the course's FastConv
  and FastMaxPool (a torch.nn.Conv2d / MaxPool2d built per call, run
  through autograd), what its ThreeLayerConvNet uses
- course-torch-unfold (conv net): the same with a vectorized Conv written
  with unfold/fold and mm, and a reshape max pool (the course's naive
  nested-loop Conv takes seconds per step and is not timed)

Every side first runs two steps against eecs598-loop and checks the
losses agree, then is timed. Run side by side:

    python -m pytest benchmarks/bench_eecs598.py --benchmark-enable --benchmark-group-by=group

or interleaved round-robin (better on a shared machine), with medians and
ratios (--threads 1 --clock cpu: the CPU time of each side, a measure of
its work that other programs on a busy machine do not move):

    python benchmarks/bench_eecs598.py [--rounds 15] [--threads 2] [--clock wall]
"""
import argparse
import statistics
import time

import numpy as np
import pytest

import fastfc

LEARNING_RATE = 1e-3
NETWORKS = {"fc [100, 100] b100": 100, "three-layer conv b64": 64}
SIDES = ["eecs598-solver", "eecs598-loop", "object", "course-torch", "course-torch-unfold"]


# ---- the course's implementation in torch ops ----------------------------------------

def course_linear_forward(x, w, b):
    return x.reshape(x.shape[0], -1).mm(w) + b, (x, w, b)


def course_linear_backward(dout, cache):
    x, w, b = cache
    dx = dout.mm(w.t()).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).t().mm(dout)
    return dx, dw, dout.sum(dim=0)


def course_relu_forward(x):
    return x.clamp(min=0), x


def course_relu_backward(dout, x):
    return dout * (x > 0)


def course_softmax_loss(x, y):
    shifted = x - x.max(dim=1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    N = x.shape[0]
    loss = (-1.0 / N) * log_probs[np.arange(N), y].sum()
    dx = log_probs.exp()
    dx[np.arange(N), y] -= 1
    return loss, dx / N


def course_adam(w, dw, config):
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", w.new_zeros(w.shape))
    config.setdefault("v", w.new_zeros(w.shape))
    config.setdefault("t", 0)
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * dw * dw
    mt = config["m"] / (1 - config["beta1"] ** config["t"])
    vt = config["v"] / (1 - config["beta2"] ** config["t"])
    return w - config["learning_rate"] * mt / (vt.sqrt() + config["epsilon"]), config


def course_fc_loss(params, X, y):
    """The course's FullyConnectedNet.loss (reg 0, no dropout)."""
    layers = len(params) // 2
    caches, h = [], X
    for k in range(1, layers):
        a, fc_cache = course_linear_forward(h, params[f"W{k}"], params[f"b{k}"])
        h, relu_cache = course_relu_forward(a)
        caches.append((fc_cache, relu_cache))
    scores, last_cache = course_linear_forward(h, params[f"W{layers}"], params[f"b{layers}"])
    loss, dout = course_softmax_loss(scores, y)
    grads = {}
    dout, grads[f"W{layers}"], grads[f"b{layers}"] = course_linear_backward(dout, last_cache)
    for k in range(layers - 1, 0, -1):
        fc_cache, relu_cache = caches[k - 1]
        dout = course_relu_backward(dout, relu_cache)
        dout, grads[f"W{k}"], grads[f"b{k}"] = course_linear_backward(dout, fc_cache)
    return loss, grads


def fast_conv_forward(torch, x, w, b, conv_param):
    """The course's FastConv: a torch.nn.Conv2d built for the call, run through autograd."""
    layer = torch.nn.Conv2d(x.shape[1], w.shape[0], tuple(w.shape[2:]),
                            stride=conv_param["stride"], padding=conv_param["pad"])
    layer.weight = torch.nn.Parameter(w)
    layer.bias = torch.nn.Parameter(b)
    tx = x.detach()
    tx.requires_grad = True
    return layer(tx), (tx, layer)


def fast_conv_backward(out, dout, cache):
    tx, layer = cache
    out.backward(dout)
    dx, dw, db = tx.grad.detach(), layer.weight.grad.detach(), layer.bias.grad.detach()
    layer.weight.grad = layer.bias.grad = None
    return dx, dw, db


def fast_pool_forward(torch, x):
    layer = torch.nn.MaxPool2d(kernel_size=(2, 2), stride=2)
    tx = x.detach()
    tx.requires_grad = True
    return layer(tx), tx


def course_fast_conv_relu_pool(torch):
    """Conv_ReLU_Pool as the course writes it over FastConv and FastMaxPool
    (their outputs stay attached to autograd, so the layers after them
    record graphs too, as in the course)."""
    def forward(x, w, b):
        pad = (w.shape[2] - 1) // 2
        a, conv_cache = fast_conv_forward(torch, x, w, b, {"stride": 1, "pad": pad})
        s, relu_cache = course_relu_forward(a)
        out, tx = fast_pool_forward(torch, s)
        return out, (a, conv_cache, relu_cache, out, tx)

    def backward(dout, cache):
        a, conv_cache, relu_cache, out, tx = cache
        out.backward(dout)
        da = course_relu_backward(tx.grad.detach(), relu_cache)
        return fast_conv_backward(a, da, conv_cache)
    return forward, backward


def course_unfold_conv_relu_pool(torch):
    """Conv_ReLU_Pool with a vectorized Conv (unfold + mm, fold for dx) and a
    reshape max pool, as a student writes them with torch ops."""
    functional = torch.nn.functional

    def forward(x, w, b):
        N, _, H, W = x.shape
        F_, _, K, _ = w.shape
        pad = (K - 1) // 2
        cols = functional.unfold(x, K, padding=pad)                       # (N, C*K*K, H*W)
        a = (w.reshape(F_, -1).matmul(cols) + b.reshape(1, F_, 1)).reshape(N, F_, H, W)
        s = a.clamp(min=0)
        windows = s.reshape(N, F_, H // 2, 2, W // 2, 2)
        out = windows.amax(dim=(3, 5))
        return out, (x, w, cols, a, windows, out)

    def backward(dout, cache):
        x, w, cols, a, windows, out = cache
        N, _, H, W = x.shape
        F_, _, K, _ = w.shape
        mask = windows == out[:, :, :, None, :, None]
        ds = (mask * dout[:, :, :, None, :, None]).reshape(N, F_, H, W)
        da = (ds * (a > 0)).reshape(N, F_, -1)
        dw = da.matmul(cols.transpose(1, 2)).sum(dim=0).reshape(w.shape)
        db = da.sum(dim=(0, 2))
        dcols = w.reshape(F_, -1).t().matmul(da)
        dx = functional.fold(dcols, (H, W), K, padding=(K - 1) // 2)
        return dx, dw, db
    return forward, backward


def course_conv_net_loss(conv_relu_pool):
    """The course's ThreeLayerConvNet.loss (reg 0): Conv_ReLU_Pool,
    Linear_ReLU, Linear, softmax."""
    conv_forward, conv_backward = conv_relu_pool

    def loss(params, X, y):
        h1, cache1 = conv_forward(X, params["W1"], params["b1"])
        a2, fc2 = course_linear_forward(h1, params["W2"], params["b2"])
        h2, relu2 = course_relu_forward(a2)
        scores, fc3 = course_linear_forward(h2, params["W3"], params["b3"])
        loss, dscores = course_softmax_loss(scores, y)
        grads = {}
        dh2, grads["W3"], grads["b3"] = course_linear_backward(dscores, fc3)
        dh1, grads["W2"], grads["b2"] = course_linear_backward(course_relu_backward(dh2, relu2), fc2)
        _, grads["W1"], grads["b1"] = conv_backward(dh1, cache1)
        return loss, grads
    return loss


def course_step(torch, loss_fn, params, X, y):
    """The course Solver's step: a batch drawn with torch.randperm, the
    model's loss, then adam on every parameter under torch.no_grad()."""
    configs = {name: {"learning_rate": LEARNING_RATE} for name in params}

    def step():
        mask = torch.randperm(X.shape[0])
        loss, grads = loss_fn(params, X[mask], y[mask])
        with torch.no_grad():
            for name, w in params.items():
                params[name], configs[name] = course_adam(w, grads[name], configs[name])
        return loss.item()
    return step


# ---- fastfc's sides ------------------------------------------------------------------

def build_case(network, torch, sides=None):
    """side -> a step callable returning the loss, for the sides asked (None:
    all the network has), all from the same weights and data."""
    from fastfc import layers
    from fastfc.eecs598 import Solver, reset_seed
    from fastfc.eecs598.convolutional_networks import ThreeLayerConvNet
    from fastfc.eecs598.fully_connected_networks import FullyConnectedNet, adam
    from fastfc.models import Sequential

    batch = NETWORKS[network]
    reset_seed(0)
    if network.startswith("fc"):
        def make():
            return FullyConnectedNet([100, 100], weight_scale=1e-2, dtype=torch.float32)
        X = torch.randn(batch, 3 * 32 * 32)
        stack = [layers.Linear(3072, 100), layers.ReLU(), layers.Linear(100, 100), layers.ReLU(),
                 layers.Linear(100, 10)]
        course_losses = {"course-torch": course_fc_loss}
    else:
        def make():
            return ThreeLayerConvNet(weight_scale=1e-2, dtype=torch.float32)
        X = torch.randn(batch, 3, 32, 32)
        stack = [layers.Conv2d(3, 32, 7, padding=3), layers.ReLU(), layers.MaxPool2d(2),
                 layers.Flatten(), layers.Linear(32 * 16 * 16, 100), layers.ReLU(),
                 layers.Linear(100, 10)]
        course_losses = {
            "course-torch": course_conv_net_loss(course_fast_conv_relu_pool(torch)),
            "course-torch-unfold": course_conv_net_loss(course_unfold_conv_relu_pool(torch))}
    y = torch.randint(10, (batch,))
    initial = {name: value.clone() for name, value in make().params.items()}

    def model():
        fresh = make()
        fresh.params = initial
        return fresh

    def solver_side():
        solver = Solver(model(), {"X_train": X, "y_train": y, "X_val": X, "y_val": y},
                        update_rule=adam, optim_config={"learning_rate": LEARNING_RATE},
                        batch_size=batch, verbose=False)

        def step():
            solver._step()
            return solver.loss_history[-1]
        return step

    def loop_side():
        loop_model = model()
        configs = {name: {"learning_rate": LEARNING_RATE} for name in initial}

        def step():
            mask = torch.randperm(batch)
            loss, grads = loop_model.loss(X[mask], y[mask])
            for name, w in loop_model.params.items():
                next_w, configs[name] = adam(w, grads[name], configs[name])
                loop_model.params[name] = next_w
            return loss.item()
        return step

    def object_side():
        net = Sequential(*stack, loss=layers.SoftmaxCrossEntropy())
        net.params = {name: value.numpy() for name, value in initial.items()}
        criterion = layers.SoftmaxCrossEntropy()
        optimizer = fastfc.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        Xa, ya = X.numpy(), y.numpy()
        rng = np.random.default_rng(0)

        def step():
            index = rng.permutation(batch)  # the README's loop: a batch gathered by index
            loss = criterion.forward(net.forward(Xa[index]), ya[index])
            net.backward(criterion.backward())
            optimizer.step()
            return loss
        return step

    factories = {"eecs598-solver": solver_side, "eecs598-loop": loop_side,
                 "object": object_side}
    for side, loss_fn in course_losses.items():
        factories[side] = lambda loss_fn=loss_fn: course_step(
            torch, loss_fn, {name: value.clone() for name, value in initial.items()}, X, y)
    return {side: factory() for side, factory in factories.items()
            if sides is None or side in sides}


def check_against_loop(network, torch, side):
    """Two steps of side and of eecs598-loop, from fresh builds: same losses.
    Returns side's step, warmed up."""
    oracle = build_case(network, torch, ["eecs598-loop"])["eecs598-loop"]
    step = build_case(network, torch, [side])[side]
    for _ in range(2):  # the second step also checks the first update
        got, want = step(), oracle()
        assert abs(got - want) <= 1e-4 * abs(want), (side, got, want)
    return step


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_eecs598_train_step(benchmark, request, network, side):
    torch = request.getfixturevalue("torch")
    if side == "course-torch-unfold" and network.startswith("fc"):
        pytest.skip("the unfold convolution is the conv net's")
    benchmark.group = f"eecs598 train step {network}"
    loss = benchmark(check_against_loop(network, torch, side))
    assert np.isfinite(loss)


# ---- interleaved timing -------------------------------------------------------------

def interleaved(network, torch, rounds, clock=time.perf_counter, seconds_per_sample=0.2):
    """side -> the median seconds per step over rounds samples, the sides
    taking turns (each sample: as many steps as fit in about
    seconds_per_sample), timed by clock (wall time, or the process's CPU
    time: the work done, whatever else the machine runs)."""
    steps = {side: check_against_loop(network, torch, side)
             for side in build_case(network, torch)}  # checked and warmed up
    loops = {}
    for side, step in steps.items():
        start = clock()
        step()
        loops[side] = max(1, int(seconds_per_sample / max(clock() - start, 1e-6)))
    samples = {side: [] for side in steps}
    for _ in range(rounds):
        for side, step in steps.items():
            start = clock()
            for _ in range(loops[side]):
                step()
            samples[side].append((clock() - start) / loops[side])
    return {side: statistics.median(times) for side, times in samples.items()}


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or the process's CPU time (with --threads 1: the work "
                             "done, unaffected by other programs on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fastfc.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"threads: {args.threads} (torch and fastfc); {args.clock} time, medians of "
          f"{args.rounds} interleaved rounds")
    print("| network | side | median ms | course-torch / side | side / object |")
    print("| --- | --- | --- | --- | --- |")
    for network in NETWORKS:
        medians = interleaved(network, torch, args.rounds, clock)
        for side, seconds in medians.items():
            print(f"| {network} | {side} | {seconds * 1e3:.3g} | "
                  f"{medians['course-torch'] / seconds:.2f}x | {seconds / medians['object']:.3f} |")


if __name__ == "__main__":
    main()
