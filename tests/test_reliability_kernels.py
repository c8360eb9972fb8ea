"""Issue 17, second reliability pass, the kernel side: every functional
kernel and optimizer against ndarray subclasses whose .shape lies and masked
arrays, fork after OpenMP threads, overlapping parameters, optimizer state
and hyperparameters, tampered max-pool caches, and an argmax array another
thread rewrites mid-call. Scenarios whose failure mode is a crash or a hang
run in a child interpreter with a timeout."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastfc
import fastfc.functional as F
from fastfc import optim
from fastfc.parameter import Parameter

from testutil import child_env


def run_child(code, timeout=60):
    """code run in a fresh interpreter importing this fastfc: (returncode,
    stdout, stderr); a hang fails the test through the timeout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=child_env())
    return proc.returncode, proc.stdout, proc.stderr


def child_records(code, timeout=60):
    """The JSON lines a child prints, asserting it exited cleanly; a record
    {"started": case} before each case names the one that killed it."""
    rc, out, err = run_child(code, timeout)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    started = [r["started"] for r in records if "started" in r]
    assert rc == 0, (f"the child died (status {rc}) in case "
                     f"{started[-1] if started else None}:\n{err[-3000:]}")
    return [r for r in records if "started" not in r]


# ---- 1. ndarray subclasses: a .shape that lies, masked arrays -----------------------
# Every functional kernel, called with each of its arrays (the cache's
# included, outputs given through out=/dx=/dw=/db=/dgamma=/dbeta=) replaced
# by (a) a subclass view whose .shape claims a larger shape, (b) a smaller
# array whose .shape claims the right one, (c) a masked array. A subclass
# must behave exactly as its base-class array does (the same result or the
# same error); a masked array must raise TypeError naming the argument.

LYING = r"""
import numpy as np

def lying(base, shape):
    # base viewed as an ndarray subclass whose Python-level .shape says shape,
    # and whose other attributes a wrapper might read agree with that shape
    # (and claim the other float type)
    size = int(np.prod(shape))
    other = np.dtype(np.float32 if base.dtype == np.float64 else np.float64)
    claims = {"shape": shape, "size": size, "ndim": len(shape), "dtype": other,
              "itemsize": other.itemsize, "nbytes": size * other.itemsize,
              "strides": tuple(int(np.prod(shape[k + 1:])) * other.itemsize
                               for k in range(len(shape)))}
    cls = type("Lying", (np.ndarray,),
               {name: property(lambda self, value=value: value) for name, value in claims.items()})
    return base.view(cls)
"""

KERNEL_CALLS = r"""
import numpy as np
import fastfc.functional as F

rng = np.random.default_rng(0)
X2, W2, B2 = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
X4, WC, BC = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), np.ones(4)
G6, G3 = rng.standard_normal(6) + 2, rng.standard_normal(3) + 2

def e(shape):
    return np.empty(shape)

def grads(x_shape, p_shape):
    return {"dx": e(x_shape), "dgamma": e(p_shape), "dbeta": e(p_shape)}

def activation(name):
    fwd, bwd = getattr(F, name + "_forward"), getattr(F, name + "_backward")
    return [(name + "_forward", lambda: dict(x=X2.copy(), out=e((4, 6)))),
            (name + "_backward", lambda: dict(dout=X2.copy(), cache=fwd(X2)[1], dx=e((4, 6))))]

def bn(name, x, g, shape, fwd_kw):
    fwd = getattr(F, name + "_forward")
    def args(**kw):
        return dict(x=x.copy(), gamma=g.copy(), beta=g - 1, running_mean=np.zeros_like(g),
                    running_var=np.ones_like(g), out=e(x.shape), **kw)
    return [(name + "_forward", lambda: args(train=True)),
            (name + "_forward/test", lambda: args(train=False)),
            (name + "_backward", lambda: dict(dout=x + 1, cache=fwd(x, g, g - 1, np.zeros_like(g),
                                                                     np.ones_like(g))[1],
                                              **grads(x.shape, g.shape)))]

CALLS = [
    ("affine_forward", lambda: dict(x=X2.copy(), w=W2.copy(), b=B2.copy(), out=e((4, 5)))),
    ("affine_backward", lambda: dict(dout=np.ones((4, 5)), cache=F.affine_forward(X2, W2, B2)[1],
                                     dx=e((4, 6)), dw=e((6, 5)), db=e(5))),
    ("affine_relu_forward", lambda: dict(x=X2.copy(), w=W2.copy(), b=B2.copy(), out=e((4, 5)))),
    ("affine_relu_backward", lambda: dict(dout=np.ones((4, 5)),
                                          cache=F.affine_relu_forward(X2, W2, B2)[1],
                                          dx=e((4, 6)), dw=e((6, 5)), db=e(5))),
    *activation("relu"), *activation("sigmoid"), *activation("tanh"),
    ("dropout_forward", lambda: dict(x=X2.copy(), p=0.5, seed=3, out=e((4, 6)))),
    ("dropout_forward/test", lambda: dict(x=X2.copy(), p=0.5, train=False, seed=3, out=e((4, 6)))),
    ("dropout_backward", lambda: dict(dout=X2.copy(), cache=F.dropout_forward(X2, 0.5, seed=3)[1],
                                      dx=e((4, 6)))),
    ("softmax_loss", lambda: dict(x=X2.copy(), y=np.array([0, 5, 2, 1]))),
    ("svm_loss", lambda: dict(x=X2.copy(), y=np.array([0, 5, 2, 1]))),
    ("mse_loss", lambda: dict(pred=X2.copy(), target=X2 + 1)),
    *bn("batchnorm", X2, G6, (6,), {}),
    *bn("spatial_batchnorm", X4, G3, (3,), {}),
    ("layernorm_forward", lambda: dict(x=X2.copy(), gamma=G6.copy(), beta=G6 - 1, out=e((4, 6)))),
    ("layernorm_backward", lambda: dict(dout=X2 + 1, cache=F.layernorm_forward(X2, G6, G6 - 1)[1],
                                        **grads((4, 6), (6,)))),
    ("groupnorm_forward", lambda: dict(x=X4.copy(), gamma=G3.copy(), beta=G3 - 1, num_groups=3,
                                       out=e(X4.shape))),
    ("groupnorm_backward", lambda: dict(dout=X4 + 1,
                                        cache=F.groupnorm_forward(X4, G3, G3 - 1, 3)[1],
                                        **grads(X4.shape, (3,)))),
    ("conv_forward", lambda: dict(x=X4.copy(), w=WC.copy(), b=BC.copy(), pad=1,
                                  out=e((2, 4, 6, 6)))),
    ("conv_backward", lambda: dict(dout=np.ones((2, 4, 6, 6)),
                                   cache=F.conv_forward(X4, WC, BC, pad=1)[1],
                                   dx=e(X4.shape), dw=e(WC.shape), db=e(4))),
    ("max_pool_forward", lambda: dict(x=X4.copy(), out=e((2, 3, 3, 3)))),
    ("max_pool_forward/3x3s1", lambda: dict(x=X4.copy(), pool_height=3, pool_width=3, stride=1,
                                            out=e((2, 3, 4, 4)))),
    ("max_pool_backward", lambda: dict(dout=np.ones((2, 3, 3, 3)), cache=F.max_pool_forward(X4)[1],
                                       dx=e(X4.shape))),
    ("max_pool_backward/3x3s1", lambda: dict(dout=np.ones((2, 3, 4, 4)),
                                             cache=F.max_pool_forward(X4, 3, 3, 1)[1],
                                             dx=e(X4.shape))),
    ("avg_pool_forward", lambda: dict(x=X4.copy(), out=e((2, 3, 3, 3)))),
    ("avg_pool_backward", lambda: dict(dout=np.ones((2, 3, 3, 3)), cache=F.avg_pool_forward(X4)[1],
                                       dx=e(X4.shape))),
]
"""

SUBCLASS_RUNNER = KERNEL_CALLS + LYING + r"""
import json

def paths(kwargs):
    # (key, index in the cache or None) of every array argument
    for key, value in kwargs.items():
        if isinstance(value, np.ndarray):
            yield key, None
        elif isinstance(value, tuple):
            yield from ((key, i) for i, v in enumerate(value) if isinstance(v, np.ndarray))

def replaced(kwargs, path, make):
    key, i = path
    if i is None:
        kwargs[key] = make(kwargs[key])
    else:
        cache = list(kwargs[key])
        cache[i] = make(cache[i])
        kwargs[key] = tuple(cache)
    return kwargs

def outcome(call):
    try:
        return ("returned", call())
    except Exception as err:
        return ("raised", type(err).__name__, str(err))

def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    return a == b

def shorter(a):
    # fewer elements than a: the first half of its values, flat
    return a.reshape(-1)[:max(1, a.size // 2)].copy()

def masked(a):
    mask = np.zeros(a.shape, bool)
    mask.flat[0] = True
    return np.ma.array(a, mask=mask)

VARIANTS = {
    # name: (the base array, given a, and the shape the subclass claims)
    "claims-larger": (lambda a: a, lambda a: (a.shape[0] * 7,) + a.shape[1:]),
    "claims-flat": (lambda a: a, lambda a: (a.size * 50,)),
    "shorter-claims-true": (shorter, lambda a: a.shape),
    "one-row-claims-true": (lambda a: a[:1].copy(), lambda a: a.shape),
}

for name, make_kwargs in CALLS:
    fn = getattr(F, name.split("/")[0])
    for path in paths(make_kwargs()):
        where = f"{name}:{path[0]}" + (f"[{path[1]}]" if path[1] is not None else "")
        for variant, (base_of, claim_of) in VARIANTS.items():
            case = f"{where}:{variant}"
            print(json.dumps({"started": case}), flush=True)
            bases = []
            def substitute(a):
                bases.append(base_of(a))
                return lying(bases[-1], claim_of(a))
            got = outcome(lambda: fn(**replaced(make_kwargs(), path, substitute)))
            # the same call with the base array itself
            plain = iter(bases)
            as_base = lambda a: np.ndarray.view(next(plain), np.ndarray)
            want = outcome(lambda: fn(**replaced(make_kwargs(), path, as_base)))
            ok = (got[0] == want[0] == "returned" and same(got[1], want[1])) or \
                 (got[0] == want[0] == "raised" and got[1:] == want[1:])
            print(json.dumps({"case": case, "kind": "subclass", "ok": bool(ok),
                              "got": str(got[:2])[:300], "want": str(want[:2])[:300]}), flush=True)
        case = f"{where}:masked"
        print(json.dumps({"started": case}), flush=True)
        got = outcome(lambda: fn(**replaced(make_kwargs(), path, masked)))
        print(json.dumps({"case": case, "kind": "masked", "name": path[0],
                          "cache": path[1] is not None,
                          "error": got[1] if got[0] == "raised" else None,
                          "message": got[2] if got[0] == "raised" else ""}), flush=True)
"""


# Cache entries a backward never reads (the bias): their mask changes nothing.
UNREAD_CACHE_ENTRIES = {"affine_backward:cache[2]", "affine_relu_backward:cache[2]",
                        "conv_backward:cache[2]"}


def test_every_kernel_reads_subclasses_as_their_base_array_and_refuses_masked_ones():
    records = child_records(SUBCLASS_RUNNER)
    subclass = [r for r in records if r["kind"] == "subclass"]
    masked = [r for r in records if r["kind"] == "masked"]
    assert len(subclass) > 400 and len(masked) > 100, (len(subclass), len(masked))
    assert [r for r in subclass if not r["ok"]] == []
    wrong = [r for r in masked if r["case"].rsplit(":", 1)[0] not in UNREAD_CACHE_ENTRIES and (
             r["error"] != "TypeError" or "masked" not in r["message"]
             or not (r["cache"] or r["name"] in r["message"]))]
    assert wrong == []


# The optimizers: each class (with its state arrays in use) and each course
# rule, with a parameter's data, its gradient or a state array replaced as above.
OPTIMIZER_RUNNER = LYING + r"""
import json
import fastfc
from fastfc import optim

def masked(a):
    mask = np.zeros(a.shape, bool)
    mask.flat[0] = True
    return np.ma.array(a, mask=mask)

VARIANTS = {
    "claims-larger": lambda a: lying(a, (a.shape[0] * 7,) + a.shape[1:]),
    "shorter-claims-true": lambda a: lying(a.reshape(-1)[:a.size // 2].copy(), a.shape),
    "masked": masked,
}
PLAIN = {
    "claims-larger": lambda a: a,
    "shorter-claims-true": lambda a: a.reshape(-1)[:a.size // 2].copy(),
    "masked": np.asarray,
}

CLASSES = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.1, momentum=0.5, centered=True),
    "Adam": lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.1),
}

def outcome(call):
    try:
        return ("returned", call())
    except Exception as err:
        return ("raised", type(err).__name__, str(err))

def class_step(make, variant, where, substitute):
    # two parameters, one step to create the state, then one step with where replaced
    rng = np.random.default_rng(1)
    ps = [fastfc.Parameter(rng.standard_normal((4, 6)), "w"), fastfc.Parameter(np.ones(6), "b")]
    for p in ps:
        p.grad[...] = rng.standard_normal(p.data.shape)
    opt = make(ps)
    opt.step()
    if where == "data":
        ps[0].data = substitute(ps[0].data)
    elif where == "grad":
        ps[0].grad = substitute(ps[0].grad)
    else:
        state = opt.state[ps[0]]
        state[where] = substitute(state[where])
    result = outcome(opt.step)
    values = [np.asarray(p.data).tolist() for p in ps]
    return result[0] if result[0] == "returned" else result, values

def course(rule, variant, where, substitute):
    rng = np.random.default_rng(2)
    w, dw = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    config = {}
    getattr(optim, rule)(w, dw, config)  # creates the state arrays
    if where == "w":
        w = substitute(w)
    elif where == "dw":
        dw = substitute(dw)
    else:
        config[where] = substitute(config[where])
    result = outcome(lambda: getattr(optim, rule)(w, dw, config))
    if result[0] == "returned":
        return "returned", np.asarray(result[1][0]).tolist()
    return result, None

CASES = []
for name, make in CLASSES.items():
    rng = np.random.default_rng(1)
    ps = [fastfc.Parameter(np.ones((4, 6)))]
    opt = make(ps)
    opt.step()
    for where in ["data", "grad", *sorted(k for k in opt.state[ps[0]] if k != "step")]:
        CASES.append((f"{name}:{where}",
                      lambda v, s, make=make, where=where: class_step(make, v, where, s)))
for rule, keys in [("sgd", []), ("sgd_momentum", ["velocity"]), ("rmsprop", ["cache"]),
                   ("adam", ["m", "v"])]:
    for where in ["w", "dw", *keys]:
        CASES.append((f"{rule}:{where}",
                      lambda v, s, rule=rule, where=where: course(rule, v, where, s)))

for case, run in CASES:
    for variant, substitute in VARIANTS.items():
        print(json.dumps({"started": f"{case}:{variant}"}), flush=True)
        got = run(variant, substitute)
        want = run(variant, PLAIN[variant])
        print(json.dumps({"case": f"{case}:{variant}", "variant": variant,
                          "got": got, "want": want}, default=str), flush=True)
"""


def test_optimizers_read_subclasses_as_their_base_array_and_refuse_masked_ones():
    records = child_records(OPTIMIZER_RUNNER)
    assert len(records) > 60, len(records)
    for r in records:
        got, want = r["got"], r["want"]
        if r["variant"] == "masked":
            # refused, naming what was masked, and no parameter changed
            error, message = got[0][1:] if got[0] != "returned" else (None, "")
            assert error in ("TypeError", "ArgumentTypeError") and "masked" in message, r
            assert want[0] == "returned", r
        else:  # what the base-class array gives: the same values, or the same error
            assert got[1] == want[1] and got[0][:2] == want[0][:2], r


# ---- 2. fork after fastfc ran OpenMP threads --------------------------------------
# GNU OpenMP's thread pool does not survive fork: a child's first parallel
# region waited forever for workers that exist only in the parent. Here the
# parent runs every kind of work on two threads, then forks (a
# multiprocessing "fork" Pool, and os.fork while another thread of the
# parent is inside a kernel); each child runs every kind of work again and
# must finish, on one thread, with the parent's one-thread results.

FORK_RUNNER = r"""
import json, os, signal, sys, threading, time, warnings
import multiprocessing as mp
import numpy as np
import fastfc, fastfc.functional as F
from fastfc import layers, optim
from fastfc.models import Sequential

rng = np.random.default_rng(0)
# big enough that every kernel splits its work among two threads
X2, W2, B2 = rng.standard_normal((256, 512)), rng.standard_normal((512, 256)) / 20, np.zeros(256)
X4, WC, BC = rng.standard_normal((16, 8, 32, 32)), rng.standard_normal((8, 8, 3, 3)) / 9, \
    np.zeros(8)
G512, G8 = np.ones(512), np.ones(8)
Y = rng.integers(0, 256, 256)

def digest(result):
    arrays = [a for a in (result if isinstance(result, tuple) else (result,))
              if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    return float(sum(np.float64(a.sum()) for a in arrays)) + float(
        sum(r for r in (result if isinstance(result, tuple) else ()) if isinstance(r, float)))

def functional():
    out = {}
    for name in ("relu", "sigmoid", "tanh"):
        y, cache = getattr(F, name + "_forward")(X2)
        out[name] = digest(getattr(F, name + "_backward")(X2, cache))
    y, cache = F.dropout_forward(X2, 0.5, seed=1)
    out["dropout"] = digest(F.dropout_backward(X2, cache))
    for name in ("affine", "affine_relu"):
        y, cache = getattr(F, name + "_forward")(X2, W2, B2)
        out[name] = digest(getattr(F, name + "_backward")(y, cache))
    out["softmax"] = digest(F.softmax_loss(X2, Y))
    out["svm"] = digest(F.svm_loss(X2, Y))
    out["mse"] = digest(F.mse_loss(X2, X2 + 1))
    y, cache = F.batchnorm_forward(X2, G512, G512, np.zeros(512), np.ones(512))
    out["batchnorm"] = digest(F.batchnorm_backward(y, cache))
    y, cache = F.spatial_batchnorm_forward(X4, G8, G8, np.zeros(8), np.ones(8))
    out["spatial_batchnorm"] = digest(F.spatial_batchnorm_backward(y, cache))
    y, cache = F.layernorm_forward(X2, G512, G512)
    out["layernorm"] = digest(F.layernorm_backward(y, cache))
    y, cache = F.groupnorm_forward(X4, G8, G8, 4)
    out["groupnorm"] = digest(F.groupnorm_backward(y, cache))
    y, cache = F.conv_forward(X4, WC, BC, pad=1)
    out["conv"] = digest(F.conv_backward(y, cache))
    for name, window in (("max_pool", (2, 2, 2)), ("max_pool/3x3", (3, 3, 1)),
                         ("avg_pool", (2, 2, 2))):
        kernel = name.split("/")[0]
        y, cache = getattr(F, kernel + "_forward")(X4, *window)
        out[name] = digest(getattr(F, kernel + "_backward")(y, cache))
    return out

def network():
    return Sequential(layers.Conv2d(8, 8, 3, padding=1, seed=1), layers.BatchNorm2d(8),
                      layers.ReLU(), layers.MaxPool2d(2), layers.Flatten(),
                      layers.Linear(8 * 16 * 16, 64, seed=2), layers.ReLU(),
                      layers.Linear(64, 10, seed=3), loss=layers.SoftmaxCrossEntropy())

def model_and_optimizers():
    model = network()
    loss, _ = model.loss(X4, Y[:16] % 10)
    out = {"layers": float(loss)}
    for name, cls in optim.OPTIMIZERS.items():
        model = network()
        model.loss(X4, Y[:16] % 10)
        opt = cls(model.parameters(), lr=1e-3)
        opt.step()
        out[name] = float(sum(np.float64(p.data.sum()) for p in model.parameters()))
    return out

def solver_step():
    model = network()
    data = {"X_train": X4.astype(np.float32), "y_train": Y[:16] % 10,
            "X_val": X4[:4].astype(np.float32), "y_val": Y[:4] % 10}
    solver = fastfc.Solver(model, data, batch_size=8, num_epochs=1, verbose=False, seed=0)
    solver._step(data["X_train"][:8], data["y_train"][:8])
    return {"solver": float(sum(np.float64(p.data.sum()) for p in model.parameters()))}

def everything():
    return {**functional(), **model_and_optimizers(), **solver_step()}

def in_forked_child(task, deadline):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = task()
        except BaseException as e:
            result = f"{type(e).__name__}: {e}"
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    start = time.monotonic()
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() - start > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.02)
    with os.fdopen(read_end) as f:
        return json.loads(f.read() or '"died"')

def child_task(_=None):
    return {"threads": fastfc.get_num_threads(), "results": everything()}

fastfc.set_num_threads(1)
serial = everything()
fastfc.set_num_threads(2)
everything()  # the parent's OpenMP threads are running now
report = {"serial": serial}
pool = mp.get_context("fork").Pool(2)
try:
    report["pool"] = pool.map_async(child_task, range(2)).get(timeout=DEADLINE)
except mp.TimeoutError:
    report["pool"] = "hung"
finally:
    pool.terminate()
    pool.join()

# os.fork while another thread of the parent is inside a two-thread kernel
stop = threading.Event()
def busy():
    while not stop.is_set():
        F.conv_forward(X4, WC, BC, pad=1)
thread = threading.Thread(target=busy)
thread.start()
time.sleep(0.05)
report["fork during a kernel"] = [in_forked_child(child_task, DEADLINE) for _ in range(3)]
stop.set()
thread.join()
report["parent threads"] = fastfc.get_num_threads()
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_after_threads_every_kernel_layer_optimizer_and_solver_finish_in_the_child():
    from fastfc import _info

    if not _info.openmp_enabled():
        pytest.skip("built without OpenMP")
    records = child_records(FORK_RUNNER.replace("DEADLINE", "20"), timeout=120)
    report = records[-1]
    want = {"threads": 1, "results": report["serial"]}
    assert len(report["serial"]) == 24, sorted(report["serial"])
    assert report["pool"] == [want, want], report["pool"]
    assert report["fork during a kernel"] == [want] * 3
    assert report["parent threads"] == 2


def test_no_module_of_fastfc_starts_processes_by_fork():
    """fastfc's own process pools (search's LocalWorkers, whatever cli/ and
    the subpackages start) use spawn: fork would copy a dead OpenMP pool.
    Every module, subpackages included, is read; LocalWorkers is asked."""
    import pathlib
    import re

    from fastfc.search import LocalWorkers

    starts = re.compile(r"\bmultiprocessing\b|ProcessPoolExecutor\(|os\.fork\(|\bPool\(|"
                        r"os\.register_at_fork")
    chosen = re.compile(r"get_context\(\"(spawn|forkserver)\"\)|register_at_fork\(after_in_child")
    root = pathlib.Path(fastfc.__file__).parent
    modules = list(root.rglob("*.py"))
    assert len(modules) > 30, modules
    for path in modules:
        text = path.read_text(errors="replace")
        if starts.search(text):
            assert chosen.search(text), f"{path.relative_to(root)} starts processes without spawn"
    with LocalWorkers(1) as workers:
        workers.scatter(None)
        assert workers.executor._mp_context.get_start_method() == "spawn"


# ---- 5. parameters over the same memory ---------------------------------------------
# The fused step hands blocks of every parameter to different threads: two
# over the same memory were read-modify-written at once (a result depending
# on the thread count and timing). Each overlap raises ValueError naming both,
# when the optimizer is built or, for arrays swapped in later, at the step,
# with nothing changed.

def _overlaps():
    """name -> (build(): (params or param groups, the two names), when
    after_build: a change made after the optimizer is built)."""
    def two(a, b):
        return [Parameter(a, "first"), Parameter(b, "second")]

    def swap_data(ps):
        ps[1].data = ps[0].data[2:]

    def grad_is_other_data(ps):
        ps[1].grad = ps[0].data

    def other_view_of_grad(ps):
        ps[0].grad = np.zeros(4)  # gradients may share memory; data may not be one
        ps[1].data = ps[0].grad

    big = np.ones(20)
    return {
        "same array": (lambda: two(big, big), None),
        "overlapping views": (lambda: two(big[:10], big[5:15]), None),
        "float32 view of the same bytes": (lambda: two(big[:4], big[:8].view(np.float32)), None),
        "2-d and 1-d views": (lambda: two(big.reshape(4, 5), big[18:]), None),
        "in two param groups": (
            lambda: [{"params": [Parameter(big[:6], "first")]},
                     {"params": [Parameter(big[3:9], "second")], "lr": 0.5}], None),
        "data swapped in later": (lambda: two(np.ones(8), np.ones(6)), swap_data),
        "gradient is another's data": (lambda: two(np.ones(4), np.ones(4)), grad_is_other_data),
        "data is another's gradient": (lambda: two(np.ones(4), np.ones(4)), other_view_of_grad),
    }


OVERLAPS = _overlaps()


@pytest.mark.parametrize("rule", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("case", sorted(OVERLAPS))
def test_parameters_sharing_memory_are_refused_naming_both(case, rule):
    build, after_build = OVERLAPS[case]
    params = build()
    flat = [p for group in params for p in group["params"]] if isinstance(params[0], dict) \
        else params
    cls = optim.OPTIMIZERS[rule]
    if after_build is None:
        with pytest.raises(ValueError, match=r"(?s)first.*second.*share memory"):
            cls(params, lr=0.1)
        return
    opt = cls(params, lr=0.1)
    after_build(flat)
    for p in flat:
        p.grad = p.grad if p.grad is not None else np.zeros_like(p.data)
    before = [p.data.copy() for p in flat]
    with pytest.raises(ValueError, match=r"(?s)first.*second.*share memory|"
                                         r"second.*first.*share memory"):
        opt.step()
    for p, old in zip(flat, before):
        np.testing.assert_array_equal(p.data, old)


def test_disjoint_views_of_one_array_are_parameters_of_their_own():
    """Views that only share a base array, not memory, are trained as usual."""
    big = np.ones(20)
    ps = [Parameter(big[:10], "first"), Parameter(big[10:], "second")]
    for p in ps:
        p.grad[...] = 1.0
    optim.SGD(ps, lr=0.5).step()
    np.testing.assert_array_equal(big, np.full(20, 0.5))


def test_overlap_check_measures_subclasses_by_their_base_array():
    """A data array whose .shape claims more than it holds neither hides an
    overlap nor invents one."""
    def lying(base, shape):
        return base.view(type("Lying", (np.ndarray,), {"shape": property(lambda self: shape)}))

    big = np.ones(20)
    apart = [Parameter(big[:10], "first"), Parameter(big[10:], "second")]
    apart[0].data = lying(apart[0].data, (20,))  # claims to reach into second's memory
    optim.SGD(apart, lr=0.1).step()
    together = [Parameter(big[:10], "first"), Parameter(big[5:15], "second")]
    together[0].data = lying(together[0].data, (1,))  # claims to end before second starts
    with pytest.raises(ValueError, match="(?s)first.*second.*share memory"):
        optim.SGD(together, lr=0.1)


def test_course_step_refuses_overlapping_parameters():
    big = np.ones(12)
    with pytest.raises(ValueError, match=r"(?s)w\[0\].*w\[1\].*share memory"):
        optim.course_step("adam", [big[:8], big[4:]], [np.ones(8), np.ones(8)], [{}, {}])
    np.testing.assert_array_equal(big, np.ones(12))


# ---- 6. optimizer state and hyperparameters ------------------------------------------
# A loaded step of -1 gave NaN parameters, 2.7 was truncated, 2**63 - 1
# overflowed at the next step; a state_dict that is not a dict raised
# AttributeError; hyperparameters changed through param_groups (how a
# learning rate is scheduled) were never re-checked, so lr = NaN or
# betas = (1, 1) turned every parameter into NaN. Each is refused (ValueError
# or TypeError naming what is wrong) and changes nothing.

def _trained(rule):
    """An optimizer of rule over two parameters after one step, its
    parameters, and a valid state_dict of it."""
    rng = np.random.default_rng(3)
    ps = [Parameter(rng.standard_normal((3, 4)), "w"), Parameter(rng.standard_normal(4), "b")]
    for p in ps:
        p.grad[...] = rng.standard_normal(p.data.shape)
    extra = {"momentum": 0.9} if rule in ("sgd", "rmsprop") else {}
    opt = optim.OPTIMIZERS[rule](ps, lr=0.1, **extra)
    opt.step()
    return opt, ps, opt.state_dict()


def _state_key(rule):
    return {"sgd": "momentum_buffer", "adagrad": "sum", "rmsprop": "square_avg",
            "adam": "exp_avg_sq", "adamw": "exp_avg_sq"}[rule]


BAD_STATE_DICTS = {
    # name: (spoil(sd, rule) -> the state_dict to load, the error, words the message has)
    "a list": (lambda sd, rule: [sd], TypeError, "state_dict"),
    "None": (lambda sd, rule: None, TypeError, "state_dict"),
    "a string": (lambda sd, rule: "state", TypeError, "state_dict"),
    "an array": (lambda sd, rule: np.zeros(3), TypeError, "state_dict"),
    "param_groups a dict": (lambda sd, rule: {**sd, "param_groups": {}}, TypeError, "param_groups"),
    "state a list": (lambda sd, rule: {**sd, "state": []}, TypeError, "state"),
    "no state": (lambda sd, rule: {"param_groups": sd["param_groups"]}, ValueError, "state"),
    "a group not a dict": (lambda sd, rule: {**sd, "param_groups": [1]}, TypeError, "param_groups"),
    "one group too many": (lambda sd, rule: {**sd, "param_groups": sd["param_groups"] * 2},
                           ValueError, "param groups"),
    "a parameter short": (lambda sd, rule: _group(sd, params=[0]), ValueError, "parameters"),
    "an index twice": (lambda sd, rule: _group(sd, params=[0, 0]), ValueError, "repeats"),
    "an index a float": (lambda sd, rule: _group(sd, params=[0, 1.0]), TypeError, "params"),
    "lr NaN": (lambda sd, rule: _group(sd, lr=float("nan")), ValueError, "lr"),
    "lr negative": (lambda sd, rule: _group(sd, lr=-1.0), ValueError, "lr"),
    "lr infinite": (lambda sd, rule: _group(sd, lr=float("inf")), ValueError, "lr"),
    "lr a string": (lambda sd, rule: _group(sd, lr="0.1"), TypeError, "lr"),
    "eps negative": (lambda sd, rule: _group(sd, eps=-1e-8) if rule != "sgd"
                     else _group(sd, weight_decay=-1.0), ValueError, "eps|weight_decay"),
    "unknown key": (lambda sd, rule: _group(sd, learning_rate=0.1), ValueError, "learning_rate"),
    "maximize a string": (lambda sd, rule: _group(sd, maximize="no"), TypeError, "maximize"),
    "state of no parameter": (lambda sd, rule: _state(sd, index=7), ValueError, "7"),
    "state not a dict": (lambda sd, rule: {**sd, "state": {0: [1, 2]}}, TypeError, "state"),
    "step -1": (lambda sd, rule: _state(sd, step=-1), ValueError, "step"),
    "step 2.7": (lambda sd, rule: _state(sd, step=2.7), ValueError, "step"),
    "step 2**63 - 1": (lambda sd, rule: _state(sd, step=2**63 - 1), ValueError, "step"),
    "step NaN": (lambda sd, rule: _state(sd, step=float("nan")), ValueError, "step"),
    "step a string": (lambda sd, rule: _state(sd, step="3"), TypeError, "step"),
    "step an array": (lambda sd, rule: _state(sd, step=np.ones(2)), TypeError, "step"),
    "state NaN": (lambda sd, rule: _state(sd, **{_state_key(rule): np.full((3, 4), np.nan)}),
                  ValueError, "NaN"),
    "state negative": (lambda sd, rule: _state(sd, **{_state_key(rule): -np.ones((3, 4))}),
                       None, "negative"),
    "state wrong shape": (lambda sd, rule: _state(sd, **{_state_key(rule): np.ones(12)}),
                          ValueError, "shape"),
    "state strings": (lambda sd, rule: _state(sd, **{_state_key(rule): np.full((3, 4), "x")}),
                      TypeError, "dtype"),
    "state masked": (lambda sd, rule: _state(sd, **{_state_key(rule): np.ma.array(
        np.ones((3, 4)), mask=np.eye(3, 4, dtype=bool))}), TypeError, "masked"),
    "state of another rule": (lambda sd, rule: _state(sd, velocity=np.ones((3, 4))),
                              ValueError, "velocity"),
}
ADAM_ONLY = {  # Adam's and AdamW's betas
    "betas (1, 1)": (lambda sd: _group(sd, betas=(1.0, 1.0)), ValueError, "betas"),
    "betas one number": (lambda sd: _group(sd, betas=0.9), TypeError, "betas"),
    "betas NaN": (lambda sd: _group(sd, betas=(0.9, float("nan"))), ValueError, "betas"),
}


def _group(sd, **changes):
    groups = [dict(g) for g in sd["param_groups"]]
    groups[0].update(changes)
    return {**sd, "param_groups": groups}


def _state(sd, index=0, **changes):
    state = {i: dict(s) for i, s in sd["state"].items()}
    state[index] = {**state.get(0, {}), **changes}
    return {**sd, "state": state}


def _snapshot(opt, ps):
    return ([p.data.copy() for p in ps], repr(opt.param_groups),
            {id(p): {k: np.copy(v) for k, v in s.items()} for p, s in opt.state.items()})


def _assert_unchanged(opt, ps, before):
    data, groups, state = before
    for p, old in zip(ps, data):
        np.testing.assert_array_equal(p.data, old)
    assert repr(opt.param_groups) == groups
    assert {id(p): set(s) for p, s in opt.state.items()} == {k: set(v) for k, v in state.items()}
    for p, s in opt.state.items():
        for key, value in s.items():
            np.testing.assert_array_equal(value, state[id(p)][key])


@pytest.mark.parametrize("rule", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("case", sorted(BAD_STATE_DICTS))
def test_bad_state_dict_is_refused_and_changes_nothing(case, rule):
    spoil, error, words = BAD_STATE_DICTS[case]
    opt, ps, sd = _trained(rule)
    if rule == "sgd" and case.startswith("step"):
        sd = _trained("adam")[2]  # SGD keeps no step count: try it on Adam
        opt, ps, _ = _trained("adam")
        rule = "adam"
    if case == "state negative" and rule in ("sgd",):
        pytest.skip("SGD's momentum buffer may be negative")
    before = _snapshot(opt, ps)
    with pytest.raises(error or ValueError, match=words):
        opt.load_state_dict(spoil(sd, rule))
    _assert_unchanged(opt, ps, before)
    opt.load_state_dict(sd)  # the unspoilt one still loads, and the optimizer still steps
    opt.step()
    assert all(np.isfinite(p.data).all() for p in ps)


@pytest.mark.parametrize("rule", ["adam", "adamw"])
@pytest.mark.parametrize("case", sorted(ADAM_ONLY))
def test_bad_betas_in_a_state_dict_are_refused(case, rule):
    spoil, error, words = ADAM_ONLY[case]
    opt, ps, sd = _trained(rule)
    before = _snapshot(opt, ps)
    with pytest.raises(error, match=words):
        opt.load_state_dict(spoil(sd))
    _assert_unchanged(opt, ps, before)


def test_flattened_state_dict_with_bad_values_is_refused(tmp_path):
    """The np.load form (flatten_state_dict, saved with np.savez) is checked alike."""
    opt, ps, sd = _trained("adam")
    for spoil, words in [(lambda f: f.update({"state.0.step": np.array(-1)}), "step"),
                         (lambda f: f.update({"state.0.step": np.array(2.7)}), "step"),
                         (lambda f: f.update({"param_groups.0.lr": np.array(np.nan)}), "lr"),
                         (lambda f: f.update({"param_groups.0.betas": np.array([1.0, 1.0])}),
                          "betas"),
                         (lambda f: f.update({"state.x.step": np.array(1)}), "state.x.step")]:
        flat = optim.flatten_state_dict(sd)
        spoil(flat)
        np.savez(tmp_path / "opt.npz", **flat)
        before = _snapshot(opt, ps)
        with np.load(tmp_path / "opt.npz") as loaded, pytest.raises(ValueError, match=words):
            opt.load_state_dict(loaded)
        _assert_unchanged(opt, ps, before)


# Changes made through param_groups between steps: each is refused at the
# next step, before any parameter changes.
def _del(group, key):
    del group[key]


BAD_GROUP_CHANGES = {
    "lr NaN": (lambda g: g.update(lr=float("nan")), ValueError, "lr"),
    "lr negative": (lambda g: g.update(lr=-0.1), ValueError, "lr"),
    "lr infinite": (lambda g: g.update(lr=float("inf")), ValueError, "lr"),
    "lr None": (lambda g: g.update(lr=None), TypeError, "lr"),
    "lr a string": (lambda g: g.update(lr="0.1"), TypeError, "lr"),
    "lr removed": (lambda g: _del(g, "lr"), ValueError, "lr"),
    "weight_decay NaN": (lambda g: g.update(weight_decay=float("nan")), ValueError,
                         "weight_decay"),
    "maximize a string": (lambda g: g.update(maximize="yes"), TypeError, "maximize"),
    "params not a list": (lambda g: g.update(params="w"), TypeError, "params"),
    "params holds an array": (lambda g: g["params"].append(np.ones(3)), TypeError, "params"),
    "a parameter twice": (lambda g: g["params"].append(g["params"][0]), ValueError,
                          "more than one place"),
    "an overlapping parameter": (lambda g: g["params"].append(Parameter(g["params"][0].data[1:],
                                                                        "view")),
                                 ValueError, "share memory"),
}
RULE_GROUP_CHANGES = {
    "adam": {"betas (1, 1)": (lambda g: g.update(betas=(1, 1)), ValueError, "betas"),
             "betas three": (lambda g: g.update(betas=(0.9, 0.9, 0.9)), TypeError, "betas"),
             "eps negative": (lambda g: g.update(eps=-1.0), ValueError, "eps")},
    "sgd": {"momentum NaN": (lambda g: g.update(momentum=float("nan")), ValueError, "momentum"),
            "nesterov without momentum": (lambda g: g.update(nesterov=True, momentum=0.0),
                                          ValueError, "nesterov")},
    "rmsprop": {"alpha infinite": (lambda g: g.update(alpha=float("inf")), ValueError, "alpha")},
    "adagrad": {"lr_decay negative": (lambda g: g.update(lr_decay=-1.0), ValueError, "lr_decay")},
}
GROUP_CASES = [(rule, name) for rule in sorted(optim.OPTIMIZERS) for name in BAD_GROUP_CHANGES] + \
    [(rule, name) for rule, cases in RULE_GROUP_CHANGES.items() for name in cases]


@pytest.mark.parametrize("rule, case", GROUP_CASES)
def test_param_group_changed_between_steps_is_checked_at_the_next(rule, case):
    spoil, error, words = {**BAD_GROUP_CHANGES, **RULE_GROUP_CHANGES.get(rule, {})}[case]
    opt, ps, _ = _trained(rule)
    spoil(opt.param_groups[0])
    before = [p.data.copy() for p in ps]
    with pytest.raises(error, match=words):
        opt.step()
    for p, old in zip(ps, before):
        np.testing.assert_array_equal(p.data, old)


def test_a_valid_schedule_takes_effect_and_rechecks_only_hyperparameters(monkeypatch):
    """A learning rate set through param_groups is used at the next step;
    steps with no group changed skip the checks (they cost a comparison), a
    schedule changing only hyperparameters re-checks those alone (not the
    parameters' memory, which it cannot have changed), and a change of a
    group's parameters runs every check again."""
    opt, ps, _ = _trained("sgd")
    checks = []
    original = optim._check_apart
    monkeypatch.setattr(optim, "_check_apart", lambda *a: checks.append(1) or original(*a))
    for _ in range(3):
        opt.step()
    assert checks == []
    before = ps[1].data.copy()
    ps[1].grad[...] = 1.0
    opt.param_groups[0]["lr"] = 0.5
    opt.param_groups[0]["momentum"] = 0.0
    opt.step()
    assert checks == []
    np.testing.assert_allclose(ps[1].data, before - 0.5)
    opt.param_groups[0]["params"] = list(opt.param_groups[0]["params"])  # the same, anew
    opt.step()
    assert checks == []  # the same parameters: nothing changed
    opt.param_groups[0]["params"].append(Parameter(np.zeros(2), "extra"))
    opt.step()
    assert checks == [1]


def test_course_rule_configs_are_checked_at_every_call():
    w, dw = np.ones(4), np.ones(4)
    for config, words in [({"learning_rate": float("nan")}, "learning_rate"),
                          ({"learning_rate": -1.0}, "learning_rate"),
                          ({"beta1": 1.0}, "beta1"), ({"t": -1}, "t"), ({"t": 2.7}, "t"),
                          ({"t": 2**63 - 1}, "t"), ({"epsilon": "x"}, "epsilon")]:
        with pytest.raises((ValueError, TypeError), match=words):
            optim.adam(w, dw, config)
        np.testing.assert_array_equal(w, np.ones(4))


# ---- 7. tampered max-pool caches --------------------------------------------------
# The 2x2/stride-2 backward skipped the argmax check the other geometries
# make (a foreign cache gave an all-zero gradient, silently); several
# tampered caches raised the wrong exception, or one not naming the argument.
# Every geometry, every way to spoil the cache: ValueError or TypeError
# naming what is wrong.

POOL_GEOMETRIES = [(2, 2, 2), (3, 3, 1), (2, 2, 1), (3, 3, 2), (1, 1, 1), (2, 3, 2), (3, 2, 1),
                   (7, 8, 1)]


def _argmax_spoilt(how, argmax, geometry, height, width):
    """argmax with one change, how, that puts an index outside its window
    (the first window, rows [0, pool_h) and columns [0, pool_w), or the
    last); None when this geometry leaves no such place."""
    a = argmax.copy()
    pool_h, pool_w, _ = geometry
    if how == "right of the window":  # row 0, column pool_w: within the window's row span
        if pool_w == width:
            return None
        a.flat[0] = pool_w
    elif how == "below the window":
        if pool_h == height:
            return None
        a.flat[0] = pool_h * width
    elif how == "left of the window":  # the last window's row, one column before it
        if a.shape[-1] == 1:
            return None
        a.flat[-1] = a.flat[-1] - a.flat[-1] % width + (a.shape[-1] - 1) * geometry[2] - 1
    elif how == "negative":
        a.flat[-1] = -1
    elif how == "INT32_MIN":
        a.flat[-1] = np.iinfo(np.int32).min
    elif how == "INT32_MAX":
        a.flat[-1] = np.iinfo(np.int32).max
    elif how == "one past the plane":
        a.flat[-1] = height * width
    elif how == "all zeros":  # a foreign cache: every window but the first points away
        if a.shape[2:] == (1, 1):
            return None
        a[...] = 0
    return a


ARGMAX_SPOILS = ["right of the window", "below the window", "left of the window", "negative",
                 "INT32_MIN", "INT32_MAX", "one past the plane", "all zeros"]


# (input shape, window): small planes, and a plane so wide that a window's
# row-major span (4 * 1100 + 5 entries) is too long for the kernel's table
POOL_INPUTS = [((2, 3, 7, 8), g) for g in POOL_GEOMETRIES] + [((1, 2, 6, 1100), (5, 5, 1)),
                                                               ((1, 2, 6, 1100), (5, 3, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, geometry", POOL_INPUTS)
@pytest.mark.parametrize("how", ARGMAX_SPOILS)
def test_argmax_outside_its_window_raises_for_every_geometry(how, shape, geometry, dtype):
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    out, (xc, argmax, pool_param) = F.max_pool_forward(x, *geometry)
    spoilt = _argmax_spoilt(how, argmax, geometry, *x.shape[2:])
    if spoilt is None:
        pytest.skip("the window spans the plane that way")
    with pytest.raises(ValueError, match="argmax.*outside"):
        F.max_pool_backward(out, (xc, spoilt, pool_param))
    F.max_pool_backward(out, (xc, argmax, pool_param))  # the untouched cache still works


@pytest.mark.parametrize("shape, geometry", POOL_INPUTS)
def test_max_pool_backward_of_untouched_caches_matches_the_reference(shape, geometry):
    """The exact window check refuses no index max_pool_forward made."""
    from fastfc import reference as R

    x = np.random.default_rng(6).standard_normal(shape)
    out, cache = F.max_pool_forward(x, *geometry)
    dout = np.random.default_rng(7).standard_normal(out.shape)
    want = R.max_pool_backward(dout, R.max_pool_forward(x, *geometry)[1])
    np.testing.assert_allclose(F.max_pool_backward(dout, cache), want, rtol=1e-12, atol=1e-12)


def _cache_spoils():
    i32 = np.int32
    return {
        # name: (spoil(x, argmax, pool_param, dout) -> (dout, cache, kwargs), error, words)
        "cache a dict": (lambda x, a, p, d: (d, {"x": x}, {}), TypeError, "cache"),
        "cache None": (lambda x, a, p, d: (d, None, {}), TypeError, "cache"),
        "cache short": (lambda x, a, p, d: (d, (x, a), {}), ValueError, "cache"),
        "cache long": (lambda x, a, p, d: (d, (x, a, p, p), {}), ValueError, "cache"),
        "argmax a list": (lambda x, a, p, d: (d, (x, a.tolist(), p), {}), TypeError, "argmax"),
        "argmax None": (lambda x, a, p, d: (d, (x, None, p), {}), TypeError, "argmax"),
        "argmax int64": (lambda x, a, p, d: (d, (x, a.astype(np.int64), p), {}), ValueError,
                         "argmax"),
        "argmax float": (lambda x, a, p, d: (d, (x, a.astype(float), p), {}), ValueError,
                         "argmax"),
        "argmax uint32": (lambda x, a, p, d: (d, (x, a.astype(np.uint32), p), {}), ValueError,
                          "argmax"),
        "argmax wrong shape": (lambda x, a, p, d: (d, (x, a[:1], p), {}), ValueError, "argmax"),
        "argmax flat": (lambda x, a, p, d: (d, (x, a.ravel(), p), {}), ValueError, "argmax"),
        "argmax strided": (lambda x, a, p, d: (d, (x, np.repeat(a, 2, -1)[..., ::2], p), {}),
                           ValueError, "argmax"),
        "argmax byte-swapped": (lambda x, a, p, d: (d, (x, a.astype(">i4"), p), {}), ValueError,
                                "argmax"),
        "argmax masked": (lambda x, a, p, d: (d, (x, np.ma.array(a, mask=a == 0), p), {}),
                          TypeError, "argmax"),
        "x not an array": (lambda x, a, p, d: (d, ("x", a, p), {}), TypeError, "x"),
        "x int": (lambda x, a, p, d: (d, (x.astype(i32), a, p), {}), TypeError, "x"),
        "x 3-d": (lambda x, a, p, d: (d, (x[0], a, p), {}), ValueError, "x"),
        "x masked": (lambda x, a, p, d: (d, (np.ma.array(x), a, p), {}), TypeError, "x"),
        "x another dtype than dout": (lambda x, a, p, d: (d, (x.astype(np.float32), a, p), {}),
                                      TypeError, "dout"),
        "x smaller": (lambda x, a, p, d: (d, (x[:, :, :4, :4], a, p), {}), ValueError, "dout"),
        "pool_param a list": (lambda x, a, p, d: (d, (x, a, [2, 2, 2]), {}), TypeError,
                              "pool_param"),
        "pool_param without stride": (lambda x, a, p, d: (d, (x, a, {**p, "stride": None} and
                                                              {"pool_height": 2, "pool_width": 2}),
                                                          {}), ValueError, "stride"),
        "stride 0": (lambda x, a, p, d: (d, (x, a, {**p, "stride": 0}), {}), ValueError, "stride"),
        "stride negative": (lambda x, a, p, d: (d, (x, a, {**p, "stride": -2}), {}), ValueError,
                            "stride"),
        "stride a float": (lambda x, a, p, d: (d, (x, a, {**p, "stride": 2.0}), {}), TypeError,
                           "stride"),
        "stride True": (lambda x, a, p, d: (d, (x, a, {**p, "stride": True}), {}), TypeError,
                        "stride"),
        "stride 2**64": (lambda x, a, p, d: (d, (x, a, {**p, "stride": 2**64}), {}), ValueError,
                         "stride"),
        "stride changed": (lambda x, a, p, d: (d, (x, a, {**p, "stride": p["stride"] + 1}), {}),
                           ValueError,
                           "dout"),
        "pool_height larger than x": (lambda x, a, p, d: (d, (x, a, {**p, "pool_height": 99}),
                                                          {}), ValueError, "pool_height"),
        "pool_width a string": (lambda x, a, p, d: (d, (x, a, {**p, "pool_width": "2"}), {}),
                                TypeError, "pool_width"),
        "dout wrong shape": (lambda x, a, p, d: (d[:1], (x, a, p), {}), ValueError, "dout"),
        "dout int": (lambda x, a, p, d: (d.astype(np.int64), (x, a, p), {}), TypeError, "dout"),
        "dout masked": (lambda x, a, p, d: (np.ma.array(d), (x, a, p), {}), TypeError, "dout"),
        "dx wrong shape": (lambda x, a, p, d: (d, (x, a, p), {"dx": np.empty(3)}), ValueError,
                           "dx"),
        "dx is x": (lambda x, a, p, d: (d, (x, a, p), {"dx": x}), ValueError, "dx"),
        "dx read-only": (lambda x, a, p, d: (d, (x, a, p), {"dx": _read_only(np.empty_like(x))}),
                         ValueError, "dx"),
        "dx a list": (lambda x, a, p, d: (d, (x, a, p), {"dx": []}), TypeError, "dx"),
    }


def _read_only(a):
    a.setflags(write=False)
    return a


CACHE_SPOILS = _cache_spoils()


@pytest.mark.parametrize("geometry", [(2, 2, 2), (3, 3, 1)])
@pytest.mark.parametrize("case", sorted(CACHE_SPOILS))
def test_tampered_max_pool_cache_raises_naming_what_is_wrong(case, geometry):
    spoil, error, words = CACHE_SPOILS[case]
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8))
    out, (xc, argmax, pool_param) = F.max_pool_forward(x, *geometry)
    dout, cache, kwargs = spoil(xc, argmax, dict(pool_param), out)
    with pytest.raises(error) as info:
        F.max_pool_backward(dout, cache, **kwargs)
    assert words in str(info.value), str(info.value)


# ---- 22. argmax rewritten by another thread during max_pool_backward ------------------
# The wrapper checks the cache once, then the kernel runs without the GIL,
# so another Python thread can write into argmax meanwhile. The kernel reads
# each index once and checks it against its window before using it, so
# every call returns or raises ValueError, and nothing outside dx is written
# (dx lies between two guard zones checked after every call).

ARGMAX_RACE_RUNNER = r"""
import json, threading
import numpy as np
import fastfc, fastfc.functional as F

rng = np.random.default_rng(0)
GUARD = 4096
report = {"returned": 0, "ValueError": 0, "other": [], "guards intact": True, "calls": 0}
for shape, window in [((16, 8, 32, 32), (2, 2, 2)), ((16, 8, 32, 32), (3, 3, 1)),
                      ((16, 8, 33, 31), (3, 3, 2)), ((2, 2, 8, 1100), (5, 5, 1))]:
    x = rng.standard_normal(shape)
    out, (xc, argmax, pool_param) = F.max_pool_forward(x, *window)
    good = argmax.copy()
    patterns = [rng.integers(-2**31, 2**31, argmax.shape, dtype=np.int64).astype(np.int32),
                good + rng.integers(-3, 4, argmax.shape, dtype=np.int32),
                np.zeros_like(good), np.full_like(good, x[0, 0].size), good]
    buffer = np.full(2 * GUARD + x.size, 7.0)
    dx = buffer[GUARD:GUARD + x.size].reshape(x.shape)
    dout, stop = np.ones_like(out), threading.Event()

    def mutate():
        while not stop.is_set():
            for pattern in patterns:
                np.copyto(argmax, pattern)

    for threads in (1, 2):
        fastfc.set_num_threads(threads)
        thread = threading.Thread(target=mutate)
        thread.start()
        try:
            for _ in range(60):
                report["calls"] += 1
                try:
                    F.max_pool_backward(dout, (xc, argmax, pool_param), dx=dx)
                    report["returned"] += 1
                except ValueError as e:
                    report["ValueError"] += 1
                    assert "argmax" in str(e), str(e)
                except Exception as e:
                    report["other"].append(repr(e))
                guards = np.concatenate([buffer[:GUARD], buffer[GUARD + x.size:]])
                report["guards intact"] &= bool((guards == 7.0).all())
        finally:
            stop.set()
            thread.join()
            stop.clear()
print(json.dumps(report))
"""


def test_argmax_rewritten_by_another_thread_never_writes_outside_dx():
    report = child_records(ARGMAX_RACE_RUNNER, timeout=120)[-1]
    assert report["calls"] == 480 and report["other"] == [], report
    assert report["returned"] + report["ValueError"] == 480, report
    assert report["ValueError"] > 0, report  # the mutations were seen
    assert report["guards intact"], report


def test_benchmark_gemms_refuse_arrays_of_the_wrong_dimensions():
    """affine_gemms_only (the benchmarks' ceiling) read w.shape[1] of a 1-d w
    past its shape (its stride, 8), then multiplied a (D, 8) matrix out of D
    numbers."""
    from fastfc._affine import affine_gemms_only

    for x, w, dout in [(np.ones((4, 6)), np.ones(6), np.ones((4, 8))),
                       (np.ones(6), np.ones((6, 8)), np.ones((1, 8))),
                       (np.ones((4, 6)), np.ones((6, 8)), np.ones(8)),
                       (np.ones((4, 6)), np.ma.array(np.ones((6, 8))), np.ones((4, 8)))]:
        with pytest.raises((ValueError, TypeError)):
            affine_gemms_only(x, w, dout)
    out, dx, dw = affine_gemms_only(np.ones((4, 6)), np.ones((6, 8)), np.ones((4, 8)))
    np.testing.assert_array_equal(out, np.full((4, 8), 6.0))


# Every backward's cache, each entry swapped for junk (arrays of the wrong
# dtype, rank, size or layout; numbers out of range; other types), and the
# cache itself of the wrong type or length: a ValueError or TypeError (or a
# result, where the swap is still a valid cache), never a crash or another
# exception.
CACHE_JUNK_RUNNER = KERNEL_CALLS + r"""
import json

def array_junk(a):
    yield from [None, "x", 1.5, np.float64(1.0), np.ones(1), np.ones((1,) * 5), a.reshape(-1),
                np.ascontiguousarray(a.T), a[..., None], a.astype(np.int32),
                a.astype(np.complex128), np.asfortranarray(a), a[::-1], a.astype(np.float32),
                np.empty((0,) + a.shape[1:], a.dtype), np.full_like(a, np.nan)]

def value_junk(v):
    yield from [None, "x", -1, 0, 2**70, -2**70, 1.5, float("nan"), float("inf"), True, {}, (),
                np.ones(3), np.int64(-1)]
    if isinstance(v, dict):
        for key in v:
            for junk in [None, -1, 0, 2**70, 1.5, "2", True]:
                yield {**v, key: junk}
            yield {k: w for k, w in v.items() if k != key}

def outcome(call):
    try:
        call()
        return "returned"
    except (ValueError, TypeError):
        return "refused"
    except Exception as err:
        return f"{type(err).__name__}: {err}"

for name, make_kwargs in CALLS:
    if "_backward" not in name:
        continue
    fn = getattr(F, name.split("/")[0])
    cache = make_kwargs()["cache"]
    if isinstance(cache, tuple):
        whole = [None, "cache", list(cache), cache[:-1], cache + (None,), {}, np.ones(3)]
    else:  # the activations' cache is one array
        whole, cache = list(array_junk(cache)), ()
    for n, junk in enumerate(whole):
        case = f"{name}:cache={n}"
        print(json.dumps({"started": case}), flush=True)
        kwargs = make_kwargs()
        kwargs["cache"] = junk
        print(json.dumps({"case": case, "outcome": outcome(lambda: fn(**kwargs))}), flush=True)
    for i, entry in enumerate(cache):
        junks = array_junk(entry) if isinstance(entry, np.ndarray) else value_junk(entry)
        for n, junk in enumerate(junks):
            case = f"{name}:cache[{i}]={n}"
            print(json.dumps({"started": case}), flush=True)
            kwargs = make_kwargs()
            spoilt = list(kwargs["cache"])
            spoilt[i] = junk
            kwargs["cache"] = tuple(spoilt)
            print(json.dumps({"case": case, "outcome": outcome(lambda: fn(**kwargs))}), flush=True)
"""


def test_every_backward_refuses_junk_in_its_cache_cleanly():
    records = child_records(CACHE_JUNK_RUNNER)
    assert len(records) > 500, len(records)
    assert [r for r in records if r["outcome"] not in ("returned", "refused")] == []


# The same race on the losses' labels: softmax_loss and svm_loss index each
# row with its label without the GIL, and checked the caller's array in
# place, so a label another thread made huge after the check read far past
# the scores (a crash). The labels are now checked in a private copy: every
# call returns the loss of the labels it saw, all valid, or raises ValueError.
LABELS_RACE_RUNNER = r"""
import json, threading
import numpy as np
import fastfc, fastfc.functional as F

x = np.random.default_rng(0).standard_normal((20000, 10))
y = np.zeros(20000, np.int64)
patterns = [np.full_like(y, 2**40), np.full_like(y, -2**40), np.full_like(y, 10), np.zeros_like(y)]
report = {"returned": 0, "ValueError": 0, "wrong loss": 0, "other": []}
stop = threading.Event()

def mutate():
    while not stop.is_set():
        for pattern in patterns:
            np.copyto(y, pattern)

for threads in (1, 2):
    fastfc.set_num_threads(threads)
    want = {fn: fn(x, np.zeros_like(y))[0] for fn in (F.softmax_loss, F.svm_loss)}
    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        for _ in range(300):
            for fn in (F.softmax_loss, F.svm_loss):
                try:
                    loss = fn(x, y)[0]
                    report["returned"] += 1
                    report["wrong loss"] += loss != want[fn]  # only all-zero labels are valid
                except ValueError:
                    report["ValueError"] += 1
                except Exception as e:
                    report["other"].append(repr(e))
    finally:
        stop.set()
        thread.join()
        stop.clear()
print(json.dumps(report))
"""


def test_labels_rewritten_by_another_thread_are_checked_in_a_private_copy():
    report = child_records(LABELS_RACE_RUNNER, timeout=120)[-1]
    assert report["other"] == [] and report["wrong loss"] == 0, report
    assert report["returned"] + report["ValueError"] == 1200, report


@pytest.mark.parametrize("rule", ["adam", "adagrad", "rmsprop"])
@pytest.mark.parametrize("step, error", [(-1, ValueError), (2.7, ValueError),
                                         (2**63 - 1, ValueError), (2**64, ValueError),
                                         (2**53, ValueError), (float("nan"), ValueError),
                                         ("3", TypeError), (None, TypeError),
                                         (np.ones(2), TypeError)])
def test_step_count_set_by_hand_is_checked_at_the_next_step(rule, step, error):
    """opt.state[p]["step"] is checked like a loaded one before it is used
    (a -1 made the bias corrections NaN, 2**63 - 1 overflowed)."""
    opt, ps, _ = _trained(rule)
    opt.state[ps[0]]["step"] = step
    before = [p.data.copy() for p in ps]
    with pytest.raises(error, match="step"):
        opt.step()
    for p, old in zip(ps, before):
        np.testing.assert_array_equal(p.data, old)
    opt.state[ps[0]]["step"] = np.int64(4)  # a NumPy int, or a whole float, is a count
    opt.step()
    assert opt.state[ps[0]]["step"] == 5


def _spoil_read_only(p):
    p.data.setflags(write=False)


LATER_GROUP_SPOILS = {
    "grad of another shape": lambda p, opt: setattr(p, "grad", np.ones(4)),
    "grad float32": lambda p, opt: setattr(p, "grad", np.ones(3, np.float32)),
    "grad masked": lambda p, opt: setattr(p, "grad", np.ma.array(np.ones(3))),
    "data read-only": lambda p, opt: _spoil_read_only(p),
    "step count -1": lambda p, opt: opt.state[p].update(step=-1),
}


@pytest.mark.parametrize("rule", ["adam", "rmsprop"])
@pytest.mark.parametrize("case", sorted(LATER_GROUP_SPOILS))
def test_a_bad_array_in_a_later_group_leaves_every_group_unchanged(rule, case):
    """A step runs one call per param group: each group is checked before
    the first runs (before, the earlier groups were updated, then the step
    raised half done)."""
    first, later = Parameter(np.ones(3), "first"), Parameter(np.ones(3), "later")
    opt = optim.OPTIMIZERS[rule]([{"params": [first]}, {"params": [later], "lr": 0.5}], lr=0.1)
    first.grad[...] = later.grad[...] = 1.0
    opt.step()
    before = [first.data.copy(), later.data.copy(), repr(opt.state_dict())]
    LATER_GROUP_SPOILS[case](later, opt)
    with pytest.raises((ValueError, TypeError)):
        opt.step()
    np.testing.assert_array_equal(first.data, before[0])
    np.testing.assert_array_equal(later.data, before[1])
    if case != "step count -1":
        assert repr(opt.state_dict()) == before[2]


# ---- masked arrays above the kernels: layers, models and the Solver -----------------

def test_masked_inputs_are_refused_by_layers_models_and_the_solver():
    """The object tiers convert their inputs with check_unmasked, not
    np.asarray (which drops a mask silently): a masked X, dout, y or
    training split is a TypeError naming it."""
    from fastfc import layers
    from fastfc.models import FullyConnectedNet, Sequential
    from fastfc.solver import Solver

    def masked(a):
        return np.ma.array(a, mask=np.arange(a.size).reshape(a.shape) == 0)
    rng = np.random.default_rng(0)
    x4 = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x2 = x4.reshape(2, -1)
    cases = [(layers.Linear(48, 5), x2), (layers.Conv2d(3, 2, 3), x4),
             (layers.Flatten(), x4), (layers.BatchNorm2d(3), x4)]
    for layer, x in cases:
        with pytest.raises(TypeError, match=r"\bx\b.*masked"):
            layer.forward(masked(x))
    flatten = layers.Flatten()
    flatten.forward(x4)
    with pytest.raises(TypeError, match=r"dout.*masked"):
        flatten.backward(masked(x2))
    net = Sequential(layers.Linear(48, 5), loss=layers.SoftmaxCrossEntropy())
    y = np.array([0, 4])
    with pytest.raises(TypeError, match=r"\bX\b.*masked"):
        net.forward(masked(x2))
    with pytest.raises(TypeError, match=r"\bX\b.*masked"):
        net.loss(masked(x2), y)
    with pytest.raises(TypeError, match=r"\by\b.*masked"):
        net.loss(x2, masked(y))
    model = FullyConnectedNet([4], input_dim=48, num_classes=5, seed=0)
    with pytest.raises(TypeError, match=r"X_train.*masked"):
        Solver(model, {"X_train": masked(x2), "y_train": y, "X_val": x2, "y_val": y})
    with pytest.raises(TypeError, match=r"y_val.*masked"):
        Solver(model, {"X_train": x2, "y_train": y, "X_val": x2, "y_val": masked(y)})
