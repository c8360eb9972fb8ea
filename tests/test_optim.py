"""Optimizers: fastfc.optim against NumPy transcriptions of torch.optim's
documented algorithms (and torch itself when installed), state_dict round
trips, the course-style rules against the course formulas, thread-count
agreement and bad input."""
import re
import signal
import time

import numpy as np
import pytest

from fastfc import optim
from fastfc.parameter import Parameter

from testutil import assert_close, num_threads

SHAPES = [(7, 5), (5,), (1,), (33,)]
STEPS = 50
# fastfc in float32 against the reference in float32: both round, in a
# different order, so 50 steps drift apart by a few float32 ulps of the values.
TOL = {np.float32: 2e-4, np.float64: 1e-11}


# ---- NumPy transcriptions of torch.optim's documented algorithms -------------
# Each takes (p, g, state, **hyperparameters), state a dict it keeps between
# steps, and returns the new p.

def ref_sgd(p, g, state, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
            maximize=False):
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if "b" in state:
            state["b"] = momentum * state["b"] + (1 - dampening) * g
        else:
            state["b"] = g.copy()
        g = g + momentum * state["b"] if nesterov else state["b"]
    return p - lr * g


def ref_adagrad(p, g, state, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                eps=1e-10, maximize=False):
    state["t"] = t = state.get("t", 0) + 1
    state.setdefault("sum", np.full_like(p, initial_accumulator_value))
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    state["sum"] = state["sum"] + g * g
    return p - clr * g / (np.sqrt(state["sum"]) + eps)


def ref_rmsprop(p, g, state, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                centered=False, maximize=False):
    v = state.get("v", np.zeros_like(p))
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    state["v"] = v = alpha * v + (1 - alpha) * g * g
    if centered:
        state["g_ave"] = g_ave = alpha * state.get("g_ave", np.zeros_like(p)) + (1 - alpha) * g
        v = v - g_ave * g_ave
    if momentum > 0:
        state["b"] = momentum * state.get("b", np.zeros_like(p)) + g / (np.sqrt(v) + eps)
        return p - lr * state["b"]
    return p - lr * g / (np.sqrt(v) + eps)


def ref_adam(p, g, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
             amsgrad=False, maximize=False, decoupled=False):
    beta1, beta2 = betas
    state["t"] = t = state.get("t", 0) + 1
    g = -g if maximize else g
    if decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * p
    state["m"] = m = beta1 * state.get("m", np.zeros_like(p)) + (1 - beta1) * g
    state["v"] = v = beta2 * state.get("v", np.zeros_like(p)) + (1 - beta2) * g * g
    if amsgrad:
        state["v_max"] = v = np.maximum(state.get("v_max", np.zeros_like(p)), v)
    m_hat = m / (1 - beta1 ** t)
    return p - lr * m_hat / (np.sqrt(v) / (1 - beta2 ** t) ** 0.5 + eps)


def ref_adamw(p, g, state, weight_decay=1e-2, **hyper):
    return ref_adam(p, g, state, weight_decay=weight_decay, decoupled=True, **hyper)


CASES = [
    (optim.SGD, ref_sgd, dict(lr=0.1)),
    (optim.SGD, ref_sgd, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, ref_sgd, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.SGD, ref_sgd, dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=True)),
    (optim.Adagrad, ref_adagrad, dict()),
    (optim.Adagrad, ref_adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                      initial_accumulator_value=0.5, eps=1e-6)),
    (optim.RMSprop, ref_rmsprop, dict()),
    (optim.RMSprop, ref_rmsprop, dict(lr=1e-3, momentum=0.9, weight_decay=0.1)),
    (optim.RMSprop, ref_rmsprop, dict(lr=1e-3, alpha=0.9, centered=True, maximize=True)),
    (optim.RMSprop, ref_rmsprop, dict(lr=1e-3, momentum=0.5, centered=True, eps=1e-4)),
    (optim.Adam, ref_adam, dict()),
    (optim.Adam, ref_adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    (optim.Adam, ref_adam, dict(lr=0.01, eps=1e-6, maximize=True)),
    (optim.AdamW, ref_adamw, dict()),
    (optim.AdamW, ref_adamw, dict(lr=0.01, weight_decay=0.2, amsgrad=True, maximize=True)),
]
CASE_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'}"
            for cls, _, hyper in CASES]


def problem(rng, dtype, shapes=SHAPES):
    """Initial values and targets of a small least-squares-like problem."""
    inits = [rng.standard_normal(s).astype(dtype) for s in shapes]
    targets = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return inits, targets


def gradient(p, target, k, maximize=False):
    """A gradient that depends on p (so errors feed back) and on the step;
    negated under maximize so that every run converges rather than blows up."""
    g = p - target + 0.1 * np.sin(k * p)
    return -g if maximize else g


def run_fastfc(opt, params, targets, steps, first_step=0, maximize=False):
    for k in range(first_step, first_step + steps):
        for p, target in zip(params, targets):
            p.grad[...] = gradient(p.data, target, k, maximize)
        opt.step()


@pytest.mark.parametrize("cls, ref, hyper", CASES, ids=CASE_IDS)
def test_matches_documented_algorithm(rng, dtype, cls, ref, hyper):
    inits, targets = problem(rng, dtype)
    params = [Parameter(a.copy()) for a in inits]
    run_fastfc(cls(params, **hyper), params, targets, STEPS, maximize=hyper.get("maximize"))
    for p, want, target in zip(params, inits, targets):
        state = {}
        for k in range(STEPS):
            want = ref(want, gradient(want, target, k, hyper.get("maximize")), state, **hyper)
        assert want.dtype == dtype
        assert_close(p.data, want, TOL[dtype])
        assert p.data.dtype == dtype


def two_groups(items):
    """Param groups over items: the second overrides lr and weight decay."""
    return [{"params": items[:2]}, {"params": items[2:], "lr": 0.02, "weight_decay": 0.05}]


def torch_optimizer(torch, cls, tensors, hyper):
    return getattr(torch.optim, cls.__name__)(tensors, **hyper)


@pytest.mark.parametrize("cls, ref, hyper", CASES, ids=CASE_IDS)
def test_matches_torch_with_param_groups(rng, dtype, cls, ref, hyper):
    torch = pytest.importorskip("torch")
    inits, targets = problem(rng, dtype)
    params = [Parameter(a.copy()) for a in inits]
    tensors = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    opt = cls(two_groups(params), **hyper)
    topt = torch_optimizer(torch, cls, two_groups(tensors), hyper)
    maximize = hyper.get("maximize", False)
    for k in range(STEPS):
        if k == STEPS // 2:  # a learning-rate schedule edits the groups mid-run
            for g in opt.param_groups + topt.param_groups:
                g["lr"] *= 0.5
        for p, t, target in zip(params, tensors, targets):
            p.grad[...] = gradient(p.data, target, k, maximize)
            t.grad = torch.from_numpy(gradient(t.detach().numpy(), target, k, maximize))
        opt.step()
        topt.step()
    for p, t in zip(params, tensors):
        assert_close(p.data, t.detach().numpy(), TOL[dtype])


def state_array_ids(opt):
    """{(parameter id, state key): id of the state array} of an optimizer."""
    return {(id(p), key): id(a) for p, state in opt.state.items() for key, a in state.items()
            if isinstance(a, np.ndarray)}


@pytest.mark.parametrize("cls, ref, hyper", CASES, ids=CASE_IDS)
def test_state_dict_round_trip_through_npz(tmp_path, rng, cls, ref, hyper):
    inits, targets = problem(rng, np.float32)
    params = [Parameter(a.copy()) for a in inits]
    opt = cls(two_groups(params), **hyper)
    maximize = hyper.get("maximize")
    run_fastfc(opt, params, targets, 10, maximize=maximize)

    path = tmp_path / "optim.npz"
    np.savez(path, **optim.flatten_state_dict(opt.state_dict()))
    resumed = [Parameter(p.data.copy()) for p in params]
    other = cls(two_groups(resumed), **{**hyper, "lr": 123.0})  # the loaded lr replaces 123
    # A live optimizer (state already allocated) loads into its own arrays.
    run_fastfc(other, resumed, targets, 1, maximize=maximize)
    for q, p in zip(resumed, params):
        q.data[...] = p.data
    arrays = state_array_ids(other)
    with np.load(path, allow_pickle=False) as saved:
        other.load_state_dict(saved)
    assert [g["lr"] for g in other.param_groups] == [g["lr"] for g in opt.param_groups]
    assert state_array_ids(other) == arrays

    run_fastfc(opt, params, targets, 10, first_step=10, maximize=maximize)
    run_fastfc(other, resumed, targets, 10, first_step=10, maximize=maximize)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_is_a_copy_and_state_arrays_are_never_reallocated(rng):
    inits, targets = problem(rng, np.float64)
    params = [Parameter(a.copy()) for a in inits]
    opt = optim.Adam(params, amsgrad=True)
    run_fastfc(opt, params, targets, 3)
    arrays = {(id(p), key): arr for p, s in opt.state.items() for key, arr in s.items()
              if isinstance(arr, np.ndarray)}
    assert len(arrays) == 3 * len(params)
    saved = opt.state_dict()
    assert saved["state"][0]["step"] == 3
    assert saved["param_groups"][0]["params"] == list(range(len(params)))
    before = saved["state"][0]["exp_avg"].copy()
    run_fastfc(opt, params, targets, 3, first_step=3)
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)
    opt.load_state_dict(saved)
    assert opt.state[params[0]]["step"] == 3
    np.testing.assert_array_equal(opt.state[params[0]]["exp_avg"], before)
    for p, s in opt.state.items():
        for key, arr in s.items():
            if isinstance(arr, np.ndarray):
                assert arrays[(id(p), key)] is arr


def test_flatten_state_dict_round_trip_keeps_types():
    p = Parameter(np.ones(3))
    opt = optim.Adam([{"params": [p], "name": "weights"}], amsgrad=True)
    p.grad[...] = 1.0
    opt.step()
    sd = optim.unflatten_state_dict(optim.flatten_state_dict(opt.state_dict()))
    group = sd["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["amsgrad"] is True
    assert group["name"] == "weights" and group["params"] == [0]
    assert isinstance(group["lr"], float) and sd["state"][0]["step"] == 1


def test_load_state_dict_rejects_a_mismatch_and_changes_nothing(rng):
    params = [Parameter(rng.standard_normal(4)), Parameter(rng.standard_normal(2))]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    saved = opt.state_dict()
    other = optim.SGD([Parameter(np.zeros(4)), Parameter(np.zeros(3))], lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(saved)
    assert other.state == {} and other.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="param groups"):
        optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="not a key"):
        opt.load_state_dict({"weights": np.zeros(3)})


def test_mixed_dtypes_in_one_group_and_params_without_grad(rng):
    a32 = Parameter(rng.standard_normal(10).astype(np.float32))
    a64 = Parameter(rng.standard_normal(10))
    frozen = Parameter(rng.standard_normal(3))
    frozen.grad = None  # skipped, as torch skips parameters whose grad is None
    starts = [p.data.copy() for p in (a32, a64, frozen)]
    opt = optim.Adam([a32, frozen, a64], lr=0.1)
    for p in (a32, a64):
        p.grad[...] = np.cos(p.data)
    opt.step()
    for p, start in zip((a32, a64), starts):
        assert_close(p.data, ref_adam(start, np.cos(start), {}, lr=0.1), TOL[p.data.dtype.type])
        assert opt.state[p]["exp_avg"].dtype == p.data.dtype
    np.testing.assert_array_equal(frozen.data, starts[2])
    assert frozen not in opt.state


def test_zero_grad_zeroes_in_place():
    p = Parameter(np.ones((2, 3), dtype=np.float32))
    grad = p.grad
    grad[...] = 5.0
    optim.SGD([p]).zero_grad()
    assert p.grad is grad and not grad.any()


def test_optimizers_by_name():
    assert optim.OPTIMIZERS == {"sgd": optim.SGD, "adagrad": optim.Adagrad,
                                "rmsprop": optim.RMSprop, "adam": optim.Adam,
                                "adamw": optim.AdamW}


def test_step_returns_the_closure_loss():
    p = Parameter(np.ones(2))
    assert optim.SGD([p]).step(lambda: 1.5) == 1.5


THREAD_CASES = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.Adagrad, dict(lr_decay=0.1, weight_decay=0.01)),
    (optim.RMSprop, dict(momentum=0.9, centered=True, weight_decay=0.01)),
    (optim.Adam, dict(amsgrad=True, weight_decay=0.01)),
    (optim.AdamW, dict()),
]


@pytest.mark.parametrize("cls, hyper", THREAD_CASES, ids=[c.__name__ for c, _ in THREAD_CASES])
def test_thread_count_agreement(rng, cls, hyper):
    # 200k elements over parameters of odd sizes, so the threads' blocks of
    # the concatenated elements start and end inside parameters.
    inits, targets = problem(rng, np.float32, shapes=[(1001,), (3,), (198_999,), (7, 11)])
    results = []
    for n in (1, 2):
        params = [Parameter(a.copy()) for a in inits]
        with num_threads(n):
            run_fastfc(cls(params, **hyper), params, targets, 3)
        results.append([p.data for p in params])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)  # element-wise: no rounding-order freedom


@pytest.mark.parametrize("cls, hyper", THREAD_CASES, ids=[c.__name__ for c, _ in THREAD_CASES])
def test_long_steps_in_pieces_change_nothing(rng, cls, hyper):
    """Past 2**20 elements a thread, a step runs in pieces of parameter slices
    (so that Ctrl-C is seen between them); it must update exactly as small
    steps do: here 2.5M elements in three parameters (pieces cut inside each
    of them) against the same elements as 25 parameters, each its own step."""
    inits, targets = problem(rng, np.float32, shapes=[(700_001,), (1_099_999,), (700_000,)])

    def run(params, targets):
        opt = cls(params, **hyper)
        for k in range(2):  # element-wise IEEE arithmetic only, so slices see the same values
            for p, target in zip(params, targets):
                np.multiply(np.subtract(p.data, target, out=p.grad), 0.5 + k, out=p.grad)
            opt.step()

    whole = [Parameter(a.copy()) for a in inits]
    with num_threads(1):
        run(whole, targets)
        for init, target, updated in zip(inits, targets, whole):
            for part in np.array_split(np.arange(init.size), 9 if init.size > 10**6 else 8):
                small = [Parameter(init[part].copy())]
                run(small, [target[part]])
                np.testing.assert_array_equal(updated.data[part], small[0].data)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs an interval timer")
def test_ctrl_c_inside_a_step_raises_after_the_whole_update(rng):
    """A KeyboardInterrupt raised by a signal handler between the pieces of a
    long step comes out of step() only once every piece and the step count
    are done: no parameter is left half updated."""
    start = rng.standard_normal(1 << 23).astype(np.float32)
    grad = rng.standard_normal(start.size).astype(np.float32)
    interrupted, whole = Parameter(start.copy()), Parameter(start.copy())
    interrupted.grad[...] = grad
    whole.grad[...] = grad

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    opt = optim.Adam([interrupted])
    returned = False
    try:
        with num_threads(1), pytest.raises(KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, 0.002)  # inside the ~20 ms of 8 pieces
            opt.step()
            returned = True
            time.sleep(1)  # where the interrupt lands if it missed the step
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not returned, "the timer fired after the step: make the step longer"
    optim.Adam([whole]).step()
    np.testing.assert_array_equal(interrupted.data, whole.data)
    assert opt.state[interrupted]["step"] == 1


# ---- bad input ------------------------------------------------------------------

BAD_HYPERPARAMETERS = [
    (optim.SGD, dict(lr=-0.1), ValueError, "lr"),
    (optim.SGD, dict(lr="fast"), TypeError, "lr"),
    (optim.SGD, dict(lr=float("nan")), ValueError, "lr"),
    (optim.SGD, dict(momentum=-0.5), ValueError, "momentum"),
    (optim.SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (optim.SGD, dict(nesterov=True), ValueError, "nesterov"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "dampening"),
    (optim.SGD, dict(nesterov=1), TypeError, "nesterov"),
    (optim.Adagrad, dict(eps=-1e-10), ValueError, "eps"),
    (optim.Adagrad, dict(lr_decay=-1), ValueError, "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), ValueError, "initial_accumulator_value"),
    (optim.RMSprop, dict(alpha=-0.9), ValueError, "alpha"),
    (optim.RMSprop, dict(momentum=-0.9), ValueError, "momentum"),
    (optim.Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (optim.Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (optim.Adam, dict(betas=0.9), TypeError, "betas"),
    (optim.Adam, dict(eps=-1e-8), ValueError, "eps"),
    (optim.AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (optim.AdamW, dict(amsgrad="yes"), TypeError, "amsgrad"),
    (optim.Adam, dict(momentum=0.9), TypeError, "momentum"),  # not Adam's keyword
]


@pytest.mark.parametrize("cls, hyper, error, match", BAD_HYPERPARAMETERS,
                         ids=[f"{c.__name__}-{m}" for c, _, _, m in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters(cls, hyper, error, match):
    with pytest.raises(error, match=match):
        cls([Parameter(np.zeros(3))], **hyper)


def test_bad_param_groups():
    p, q = Parameter(np.zeros(3), "w"), Parameter(np.zeros(2), "b")
    with pytest.raises(ValueError, match="params is empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="params"):
        optim.Adam(p)
    with pytest.raises(TypeError, match=r"\['params'\]\[1\]"):
        optim.Adam([p, np.zeros(3)])
    with pytest.raises(ValueError, match="more than one"):
        optim.Adam([{"params": [p]}, {"params": [p, q]}])
    with pytest.raises(ValueError, match="weight_dacay"):
        optim.Adam([{"params": [p], "weight_dacay": 0.1}])
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([{"params": [p]}, {"params": [q], "lr": -1}])
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([{"params": [p], "momentum": 0.0}], momentum=0.9, nesterov=True)
    # a group override completes the defaults before the nesterov check
    opt = optim.SGD([{"params": [p], "nesterov": True}], momentum=0.9)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("bad_grad, error, match", [
    (np.zeros(4), ValueError, "grad has shape"),
    (np.zeros(3, dtype=np.float32), TypeError, "grad is float32"),
    (np.zeros(6)[::2], ValueError, "C-contiguous"),
    ([0.0, 0.0, 0.0], TypeError, "grad must be a NumPy array"),
])
def test_grad_mismatch_is_an_error_that_changes_nothing(bad_grad, error, match):
    good = Parameter(np.ones(5), "good")
    bad = Parameter(np.ones(3), "weird")
    good.grad[...] = 1.0
    bad.grad = bad_grad
    opt = optim.SGD([good, bad], lr=0.1, momentum=0.9)
    with pytest.raises(error, match=match) as info:
        opt.step()
    assert "weird" in str(info.value)
    np.testing.assert_array_equal(good.data, 1.0)
    assert opt.state == {}
    bad.grad = np.zeros(3)
    opt.step()  # the first real step still initialises the momentum buffer with the gradient
    np.testing.assert_array_equal(opt.state[good]["momentum_buffer"], 1.0)


# ---- course-style rules -----------------------------------------------------------

def course_sgd(w, dw, c):
    return w - c["learning_rate"] * dw


def course_sgd_momentum(w, dw, c):
    c["velocity"] = c["momentum"] * c["velocity"] - c["learning_rate"] * dw
    return w + c["velocity"]


def course_rmsprop(w, dw, c):
    c["cache"] = c["decay_rate"] * c["cache"] + (1 - c["decay_rate"]) * dw ** 2
    return w - c["learning_rate"] * dw / (np.sqrt(c["cache"]) + c["epsilon"])


def course_adam(w, dw, c):
    c["t"] += 1
    c["m"] = c["beta1"] * c["m"] + (1 - c["beta1"]) * dw
    c["v"] = c["beta2"] * c["v"] + (1 - c["beta2"]) * dw ** 2
    m_hat = c["m"] / (1 - c["beta1"] ** c["t"])
    v_hat = c["v"] / (1 - c["beta2"] ** c["t"])
    return w - c["learning_rate"] * m_hat / (np.sqrt(v_hat) + c["epsilon"])


COURSE_RULES = [
    (optim.sgd, course_sgd, {"learning_rate": 1e-2}),
    (optim.sgd_momentum, course_sgd_momentum, {"learning_rate": 1e-2, "momentum": 0.9}),
    (optim.rmsprop, course_rmsprop, {"learning_rate": 1e-2, "decay_rate": 0.99,
                                     "epsilon": 1e-8}),
    (optim.adam, course_adam, {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999,
                               "epsilon": 1e-8, "t": 0}),
]


@pytest.mark.parametrize("rule, formula, defaults", COURSE_RULES,
                         ids=[r.__name__ for r, _, _ in COURSE_RULES])
def test_course_rules_match_their_formulas(rng, dtype, rule, formula, defaults):
    w0 = rng.standard_normal((4, 5)).astype(dtype)
    target = rng.standard_normal((4, 5)).astype(dtype)
    w, config = w0.copy(), None
    want, want_config = w0.copy(), dict(defaults)
    for key in ("velocity", "cache", "m", "v"):
        want_config[key] = np.zeros_like(w0)
    for k in range(20):
        next_w, config = rule(w, gradient(w, target, k), config)
        assert next_w is w  # updated in place
        want = formula(want, gradient(want, target, k), want_config)
    for key, value in defaults.items():
        if key != "t":
            assert config[key] == value
    assert_close(w, want, TOL[dtype])
    if rule is optim.adam:
        assert config["t"] == 20
        assert_close(config["m"], want_config["m"], TOL[dtype])


def test_course_rules_read_the_config_and_copy_noncontiguous_w(rng):
    w = rng.standard_normal((3, 8))
    view = w[:, ::2]
    dw = rng.standard_normal((3, 4))
    next_w, config = optim.sgd_momentum(view, dw, {"learning_rate": 0.5, "momentum": 0.0})
    assert next_w is not view and next_w.flags.c_contiguous
    assert_close(next_w, view - 0.5 * dw, 1e-15)
    assert_close(config["velocity"], -0.5 * dw, 1e-15)


@pytest.mark.parametrize("args, error, match", [
    ((np.zeros(3), np.zeros(4), None), ValueError, "dw has shape"),
    ((np.zeros(3), np.zeros(3, dtype=np.float32), None), TypeError, "dw"),
    ((np.zeros(3, dtype=int), np.zeros(3, dtype=int), None), TypeError, "w must be"),
    ((np.zeros(3), np.zeros(3), {"learning_rate": -1.0}), ValueError, "learning_rate"),
    ((np.zeros(3), np.zeros(3), {"lr": 1e-3}), ValueError, "'lr'"),
    ((np.zeros(3), np.zeros(3), {"beta1": 1.0}), ValueError, "beta1"),
    ((np.zeros(3), np.zeros(3), {"m": np.zeros(2)}), ValueError, "'m'"),
    ((np.zeros(3), np.zeros(3), {"t": -1}), ValueError, "t must"),
])
def test_course_rule_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        optim.adam(*args)


@pytest.mark.parametrize("rule, formula, defaults", COURSE_RULES,
                         ids=[r.__name__ for r, _, _ in COURSE_RULES])
def test_course_step_over_many_parameters_matches_the_single_rule(rng, rule, formula, defaults):
    # Two learning rates: the step runs one C call per group of equal
    # hyperparameters, and each parameter must get its own config's.
    shapes = [(4, 5), (5,), (3, 2, 2)]
    ws = [rng.standard_normal(shape) for shape in shapes]
    alone = [w.copy() for w in ws]
    configs = [{"learning_rate": rate} for rate in (1e-2, 1e-2, 3e-2)]
    alone_configs = [dict(c) for c in configs]
    for k in range(3):
        dws = [gradient(w, np.zeros_like(w), k) for w in ws]
        optim.course_step(rule.__name__, ws, dws, configs, ["a", "b", "c"])
        for i in range(len(ws)):
            _, alone_configs[i] = rule(alone[i], dws[i], alone_configs[i])
    for got, want in zip(ws, alone):
        np.testing.assert_array_equal(got, want)
    assert [c["learning_rate"] for c in configs] == [1e-2, 1e-2, 3e-2]
    if rule is optim.adam:
        assert [c["t"] for c in configs] == [3, 3, 3]


def test_course_step_names_the_parameter_with_a_bad_config():
    with pytest.raises(ValueError, match="W2: unknown config key 'lr'"):
        optim.course_step("sgd", [np.zeros(2), np.zeros(2)], [np.zeros(2), np.zeros(2)],
                          [{}, {"lr": 1.0}], ["W1", "W2"])


# ---- overlapping parameters (issue 17) ---------------------------------------------
# The fused step hands blocks of every parameter to different threads: two
# parameters over the same memory were read-modify-written at once, with a
# result that depended on the thread count and timing.

def shared_memory_setups():
    """(id, a function returning the params argument) of parameters that
    share memory; each must be refused when the optimizer is built."""
    def same_array():
        a = np.ones(8)
        return [Parameter(a, "w"), Parameter(a, "w_again")]

    def overlapping_views():
        a = np.ones(8)
        return [Parameter(a[:6], "head"), Parameter(a[4:], "tail")]

    def across_groups():
        a = np.ones((4, 4))
        return [{"params": [Parameter(a, "w")]}, {"params": [Parameter(a[2], "row"),
                                                             Parameter(np.ones(3), "b")]}]

    def reshaped_view():
        a = np.ones(8)
        return [Parameter(np.zeros(2), "other"), Parameter(a[2:4], "pair"),
                Parameter(a.reshape(2, 4), "grid")]
    return [("same-array", same_array), ("overlapping-views", overlapping_views),
            ("across-groups", across_groups), ("reshaped-view", reshaped_view)]


@pytest.mark.parametrize("setup", [s for _, s in shared_memory_setups()],
                         ids=[i for i, _ in shared_memory_setups()])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_parameters_sharing_memory_are_refused(cls, setup):
    with pytest.raises(ValueError, match=r"param_groups\[\d\]\['params'\]\[\d\] \('\w+'\) and "
                                         r"param_groups\[\d\]\['params'\]\[\d\] \('\w+'\) share memory"):
        cls(setup(), lr=0.1)


def test_adjacent_views_are_not_overlapping():
    a = np.ones(10)
    left, right = Parameter(a[:5], "left"), Parameter(a[5:], "right")
    left.grad[...], right.grad[...] = 1.0, 2.0
    optim.SGD([left, right], lr=0.5).step()
    np.testing.assert_array_equal(a, [0.5] * 5 + [0.0] * 5)


@pytest.mark.parametrize("spoil, names", [
    (lambda p, q: setattr(q, "data", p.data), ("'p'.*data", "'q'.*data")),
    (lambda p, q: setattr(q, "grad", p.data), ("'p'.*data", "'q'.*grad")),
    (lambda p, q: setattr(p, "grad", p.data), ("'p'.*data", "'p'.*grad")),
], ids=["data-swapped-in", "grad-is-another-data", "grad-is-own-data"])
def test_arrays_made_to_share_memory_after_building_are_refused_at_the_step(spoil, names):
    """Parameter.data and .grad can be reassigned after the optimizer was
    built: the step checks every array it writes against all the others
    (in C, sorted by address) and changes nothing when two overlap."""
    p, q = Parameter(np.ones(4), "p"), Parameter(np.full(4, 2.0), "q")
    opt = optim.Adam([p, q], lr=0.1)
    p.grad[...] = q.grad[...] = 1.0
    spoil(p, q)
    before = [p.data.copy(), q.data.copy()]
    with pytest.raises(ValueError, match="share memory") as info:
        opt.step()
    for name in names:
        assert re.search(name, str(info.value)), (name, str(info.value))
    np.testing.assert_array_equal(p.data, before[0])
    np.testing.assert_array_equal(q.data, before[1])


def test_a_shared_gradient_is_allowed():
    """Gradients are only read: two parameters may share one."""
    p, q = Parameter(np.ones(3), "p"), Parameter(np.ones(3), "q")
    q.grad = p.grad
    p.grad[...] = 1.0
    optim.SGD([p, q], lr=0.5).step()
    np.testing.assert_array_equal(q.data, [0.5] * 3)


def test_parameter_appended_to_a_group_is_checked_at_the_step():
    a = np.ones(6)
    opt = optim.SGD([Parameter(a, "w")], lr=0.1)
    opt.param_groups[0]["params"].append(Parameter(a[3:], "alias"))
    with pytest.raises(ValueError, match="'alias'.*share memory"):
        opt.step()
    opt.param_groups[0]["params"].pop()
    opt.step()  # fine again


def test_course_rule_with_its_state_array_as_w_is_refused():
    w = np.ones(4)
    with pytest.raises(ValueError, match="share memory"):
        optim.sgd_momentum(w, np.ones(4), {"velocity": w})
    np.testing.assert_array_equal(w, 1.0)


# ---- state_dict and hyperparameter checks (issue 17) ------------------------------

def adam_after_steps(steps=2):
    p = Parameter(np.linspace(-1, 1, 4), "w")
    opt = optim.Adam([p], lr=0.1)
    for _ in range(steps):
        p.grad[...] = 1.0
        opt.step()
    return p, opt


def with_state(sd, **entries):
    """sd with state[0] updated by entries."""
    return {"param_groups": sd["param_groups"], "state": {0: {**sd["state"][0], **entries}}}


BAD_STATE_DICTS = {
    # step counts: before, -1 gave NaN parameters, 2.7 was truncated to 2, and
    # 2**63 - 1 overflowed at the next step
    "step-negative": (lambda sd: with_state(sd, step=-1), ValueError, r"\['step'\]"),
    "step-fraction": (lambda sd: with_state(sd, step=2.7), ValueError, "whole number"),
    "step-int64-max": (lambda sd: with_state(sd, step=2**63 - 1), ValueError, r"2\*\*53"),
    "step-nan": (lambda sd: with_state(sd, step=float("nan")), ValueError, "whole number"),
    "step-string": (lambda sd: with_state(sd, step="3"), TypeError, "whole number"),
    "step-array": (lambda sd: with_state(sd, step=np.array([1, 2])), TypeError, "whole number"),
    # structure: before, AttributeError/KeyError
    "not-a-dict": (lambda sd: [sd], TypeError, "state_dict must be a dict"),
    "None": (lambda sd: None, TypeError, "state_dict must be a dict"),
    "no-state": (lambda sd: {"param_groups": sd["param_groups"]}, ValueError, "'state'"),
    "groups-not-list": (lambda sd: {**sd, "param_groups": 5}, TypeError, "param_groups"),
    "group-not-dict": (lambda sd: {**sd, "param_groups": [5]}, TypeError, r"param_groups\[0\]"),
    "group-index-str": (lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0],
                                                            "params": ["a"]}]},
                        TypeError, "indices"),
    "state-entry-not-dict": (lambda sd: {**sd, "state": {0: 3}}, TypeError, r"state\[0\]"),
    # state arrays: NaN, negative second moments, unknown names
    "exp-avg-nan": (lambda sd: with_state(sd, exp_avg=np.full(4, np.nan)), ValueError, "NaN"),
    "exp-avg-sq-negative": (lambda sd: with_state(sd, exp_avg_sq=-np.ones(4)), ValueError,
                            "negative"),
    "unknown-state": (lambda sd: with_state(sd, velocity=np.ones(4)), ValueError, "velocity"),
    "hyper-lr-nan": (lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0],
                                                         "lr": float("nan")}]},
                     ValueError, "lr"),
}


@pytest.mark.parametrize("spoil, error, match", BAD_STATE_DICTS.values(),
                         ids=BAD_STATE_DICTS.keys())
def test_bad_state_dict_is_refused_and_changes_nothing(spoil, error, match):
    p, opt = adam_after_steps()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v)
              for k, v in opt.state[p].items()}
    with pytest.raises(error, match=match):
        opt.load_state_dict(spoil(opt.state_dict()))
    assert opt.state[p].keys() == before.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(opt.state[p][key], value)
    assert opt.param_groups[0]["lr"] == 0.1


def test_whole_float_steps_load_as_ints():
    """torch keeps step as a float tensor: 3.0 loads as 3."""
    p, opt = adam_after_steps(3)
    opt.load_state_dict(with_state(opt.state_dict(), step=np.float32(3.0)))
    assert opt.state[p]["step"] == 3 and type(opt.state[p]["step"]) is int


def test_sgd_state_has_no_step():
    p = Parameter(np.ones(2), "w")
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = 5
    with pytest.raises(ValueError, match="'step'"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("change, error, match", [
    (lambda g: g.update(lr=float("nan")), ValueError, r"param_groups\[0\]\['lr'\]"),
    (lambda g: g.update(lr=float("inf")), ValueError, r"param_groups\[0\]\['lr'\]"),
    (lambda g: g.update(lr=-1e-3), ValueError, r"param_groups\[0\]\['lr'\]"),
    (lambda g: g.update(lr="0.1"), TypeError, r"param_groups\[0\]\['lr'\]"),
    (lambda g: g.update(betas=(1, 1)), ValueError, r"param_groups\[0\]\['betas'\]\[0\]"),
    (lambda g: g.update(eps=float("nan")), ValueError, r"param_groups\[0\]\['eps'\]"),
    (lambda g: g.pop("lr"), ValueError, r"param_groups\[0\] has no 'lr'"),
    (lambda g: g.update(params=[np.ones(4)]), TypeError, r"param_groups\[0\]\['params'\]"),
], ids=["lr-nan", "lr-inf", "lr-negative", "lr-str", "betas-1-1", "eps-nan", "lr-deleted",
        "params-arrays"])
def test_hyperparameters_changed_through_param_groups_are_checked_at_the_step(change, error,
                                                                               match):
    """Before, lr = NaN or betas = (1, 1) set through param_groups (the way to
    schedule a learning rate) silently turned every parameter into NaN."""
    p, opt = adam_after_steps()
    before = p.data.copy()
    change(opt.param_groups[0])
    p.grad[...] = 1.0
    with pytest.raises(error, match=match):
        opt.step()
    np.testing.assert_array_equal(p.data, before)


def test_a_hyperparameter_changed_in_a_later_group_is_checked_at_the_step():
    """Only the changed group's hyperparameters are re-checked when no
    parameters changed: the check must still reach every group."""
    p, q = Parameter(np.ones(3), "p"), Parameter(np.ones(3), "q")
    opt = optim.SGD([{"params": [p]}, {"params": [q]}], lr=0.1)
    p.grad[...] = q.grad[...] = 1.0
    opt.step()
    opt.param_groups[1]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\]"):
        opt.step()
    opt.param_groups[1]["lr"] = 0.5
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    np.testing.assert_allclose(p.data, [0.65] * 3)
    np.testing.assert_allclose(q.data, [0.4] * 3)


def test_a_scheduled_learning_rate_is_used_and_normalized():
    p = Parameter(np.zeros(3), "w")
    opt = optim.SGD([p], lr=1.0)
    p.grad[...] = 1.0
    opt.step()
    opt.param_groups[0]["lr"] = np.float32(0.5)
    opt.step()
    np.testing.assert_array_equal(p.data, [-1.5] * 3)
    assert type(opt.param_groups[0]["lr"]) is float


@pytest.mark.parametrize("cls, hyper, match", [
    (optim.SGD, dict(lr=float("inf")), "lr"),
    (optim.SGD, dict(momentum=0.9, dampening=float("nan")), "dampening"),
    (optim.Adam, dict(eps=float("inf")), "eps"),
    (optim.Adam, dict(weight_decay=float("inf")), "weight_decay"),
])
def test_infinite_hyperparameters_are_refused(cls, hyper, match):
    with pytest.raises(ValueError, match=match):
        cls([Parameter(np.zeros(3))], **hyper)


def test_course_adam_step_count_is_bounded():
    with pytest.raises(ValueError, match="t must"):
        optim.adam(np.zeros(3), np.zeros(3), {"t": 2**63 - 1})
