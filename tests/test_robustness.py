"""Hardening (issue 7): garbage at the API raises ValueError/TypeError, never
crashes the interpreter; allocation failure is MemoryError; kernels are
re-entrant and release the GIL; optimizers check every parameter before
writing any; set_num_threads(1) keeps the process on one
thread and no BLAS thread pool runs inside fastfc's threads; results agree
across 1, 2 and 4 threads; repeated forward/backward passes do not leak.

Anything that could take the interpreter down runs in a child interpreter,
so a segfault fails one test instead of killing the run. The long leak run is
marked `slow` (skipped by default): run it with `pytest -m slow`."""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastfc
import fastfc.functional as F
import fastfc.optim as optim
import fastfc.reference as R
from fastfc.parameter import Parameter

from testutil import TOLERANCES, assert_close, num_threads

# The directory fastfc is imported from (src/ in a checkout, site-packages
# when installed): children import the very same build.
IMPORT_ROOT = str(pathlib.Path(fastfc.__file__).resolve().parent.parent)
LINUX_PROC = pathlib.Path("/proc/self/task").is_dir()


def run_python(code, timeout=120, stdin=None):
    """Run code in a fresh interpreter importing this fastfc; CompletedProcess."""
    path = os.pathsep.join(p for p in (IMPORT_ROOT, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env)


def child_json(code, timeout=120):
    """Run code in a child; it must exit 0 and print one JSON line last."""
    proc = run_python(code, timeout)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- garbage at the API ------------------------------------------------------
# Each case: (id, a call, the exception it must raise, a regex its message
# must match: the offending argument). They run in child interpreters, one
# batch at a time; a case that kills its child is reported as a crash and the
# batch resumes after it.

PRELUDE = """
import numpy as np
import fastfc.functional as F
x2 = np.linspace(-1, 1, 24).reshape(4, 6); w2 = np.ones((6, 3)); b1 = np.ones(3)
x4 = np.linspace(-1, 1, 384).reshape(2, 3, 8, 8); w4 = np.ones((4, 3, 3, 3)); b4 = np.ones(4)
y = np.zeros(4, dtype=np.int64)
out2, affine_cache = F.affine_forward(x2, w2, b1)
conv_out, conv_cache = F.conv_forward(x4, w4, b4)
pool_out, pool_cache = F.max_pool_forward(x4, 3, 3, 1)
_, drop_cache = F.dropout_forward(x2, 0.5, seed=1)
conv_param = {"stride": 1, "pad": 0}
pool_param = {"pool_height": 3, "pool_width": 3, "stride": 1}
"""

# Every function's first array, replaced by something that is not a float array.
FIRST_ARRAY_CALLS = {
    "affine_forward": ("F.affine_forward({}, w2, b1)", "x", (4, 6)),
    "affine_relu_forward": ("F.affine_relu_forward({}, w2, b1)", "x", (4, 6)),
    "relu_forward": ("F.relu_forward({})", "x", (5,)),
    "sigmoid_forward": ("F.sigmoid_forward({})", "x", (5,)),
    "tanh_forward": ("F.tanh_forward({})", "x", (5,)),
    "dropout_forward": ("F.dropout_forward({}, 0.5, seed=1)", "x", (5,)),
    "softmax_loss": ("F.softmax_loss({}, y)", "x", (4, 6)),
    "svm_loss": ("F.svm_loss({}, y)", "x", (4, 6)),
    "mse_loss": ("F.mse_loss({}, x2)", "pred", (4, 6)),
    "conv_forward": ("F.conv_forward({}, w4, b4)", "x", (2, 3, 8, 8)),
    "max_pool_forward": ("F.max_pool_forward({})", "x", (2, 3, 8, 8)),
    "avg_pool_forward": ("F.avg_pool_forward({})", "x", (2, 3, 8, 8)),
    "relu_backward": ("F.relu_backward({}, x2)", "dout", (4, 6)),
    "affine_backward": ("F.affine_backward({}, affine_cache)", "dout", (4, 3)),
    "conv_backward": ("F.conv_backward({}, conv_cache)", "dout", (2, 4, 6, 6)),
    "max_pool_backward": ("F.max_pool_backward({}, pool_cache)", "dout", (2, 3, 6, 6)),
    "dropout_backward": ("F.dropout_backward({}, drop_cache)", "dout", (4, 6)),
}
NOT_FLOAT_ARRAYS = {
    "int32": "np.ones({shape}, dtype=np.int32)",
    "bool": "np.ones({shape}, dtype=bool)",
    "complex": "np.ones({shape}, dtype=np.complex128)",
    "float16": "np.ones({shape}, dtype=np.float16)",
    "longdouble": "np.ones({shape}, dtype=np.longdouble)",
    "object": "np.full({shape}, None, dtype=object)",
    "object-of-floats": "np.ones({shape}).astype(object)",
    "str": "np.full({shape}, 'a')",
    "None": "None",
    "dict": "dict()",
}

GARBAGE = [
    (f"{func}-{kind}", call.format(bad.format(shape=shape)), TypeError, name)
    for func, (call, name, shape) in FIRST_ARRAY_CALLS.items()
    for kind, bad in NOT_FLOAT_ARRAYS.items()
    # dropout's backward checks the dtype against its cache, no names needed
    if not (func == "dropout_backward" and kind in ("None", "dict"))
] + [
    # wrong ranks and shapes
    ("affine-x-1d", "F.affine_forward(np.ones(6), w2, b1)", ValueError, "x"),
    ("affine-x-0d", "F.affine_forward(np.float64(1), w2, b1)", ValueError, "x"),
    ("affine-w-1d", "F.affine_forward(x2, np.ones(6), b1)", ValueError, "w"),
    ("affine-w-wrong-D", "F.affine_forward(x2, np.ones((5, 3)), b1)", ValueError, "w"),
    ("affine-b-2d", "F.affine_forward(x2, w2, np.ones((1, 3)))", ValueError, "b"),
    ("affine-x-empty", "F.affine_forward(np.ones((0, 6)), w2, b1)", ValueError, "x"),
    ("affine-w-empty", "F.affine_forward(x2, np.ones((6, 0)), np.ones(0))", ValueError, "w"),
    ("relu-0d", "F.relu_forward(np.float32(1))", ValueError, "x"),
    ("relu-empty", "F.relu_forward(np.ones((3, 0)))", ValueError, "x"),
    ("relu-ragged", "F.relu_forward([[1.0], [1.0, 2.0]])", ValueError, ""),
    ("relu-dout-shape", "F.relu_backward(np.ones(5), np.ones(6))", ValueError, "dout"),
    ("conv-x-3d", "F.conv_forward(np.ones((3, 8, 8)), w4, b4)", ValueError, "x"),
    ("conv-x-empty", "F.conv_forward(np.ones((0, 3, 8, 8)), w4, b4)", ValueError, "x"),
    ("conv-w-3d", "F.conv_forward(x4, np.ones((4, 3, 3)), b4)", ValueError, "w"),
    ("conv-w-channels", "F.conv_forward(x4, np.ones((4, 2, 3, 3)), b4)", ValueError, "w"),
    ("conv-w-too-big", "F.conv_forward(x4, np.ones((4, 3, 9, 9)), b4)", ValueError, "w"),
    ("conv-b-length", "F.conv_forward(x4, w4, np.ones(5))", ValueError, "b"),
    ("conv-dout-shape", "F.conv_backward(np.ones((2, 4, 5, 5)), conv_cache)", ValueError, "dout"),
    ("pool-x-3d", "F.max_pool_forward(np.ones((3, 8, 8)))", ValueError, "x"),
    ("pool-window-too-big", "F.max_pool_forward(x4, 9, 2, 2)", ValueError, "pool_height"),
    ("pool-dout-shape", "F.max_pool_backward(np.ones((2, 3, 5, 5)), pool_cache)", ValueError,
     "dout"),
    ("softmax-x-1d", "F.softmax_loss(np.ones(4), y)", ValueError, "x"),
    ("softmax-y-2d", "F.softmax_loss(x2, np.zeros((4, 1), dtype=int))", ValueError, "y"),
    ("softmax-y-length", "F.softmax_loss(x2, np.zeros(3, dtype=int))", ValueError, "y"),
    ("softmax-y-too-big", "F.softmax_loss(x2, np.array([0, 0, 0, 6]))", ValueError, "y"),
    ("softmax-y-negative", "F.softmax_loss(x2, -np.ones(4, dtype=int))", ValueError, "y"),
    ("softmax-y-uint64-huge", "F.softmax_loss(x2, np.full(4, 2**64 - 1, dtype=np.uint64))",
     ValueError, "y"),
    ("softmax-y-float", "F.softmax_loss(x2, y.astype(float))", TypeError, "y"),
    ("softmax-y-object", "F.softmax_loss(x2, y.astype(object))", TypeError, "y"),
    ("svm-y-too-big", "F.svm_loss(x2, np.array([0, 0, 0, 2**62]))", ValueError, "y"),
    ("mse-shapes", "F.mse_loss(x2, np.ones((6, 4)))", ValueError, "target"),
    # mixed float types
    ("affine-mixed-dtypes", "F.affine_forward(x2.astype(np.float32), w2, b1)", TypeError, "w"),
    ("conv-mixed-dtypes", "F.conv_forward(x4, w4.astype(np.float32), b4)", TypeError, "w"),
    ("mse-mixed-dtypes", "F.mse_loss(x2, x2.astype(np.float32))", TypeError, "target"),
    ("affine-dout-dtype", "F.affine_backward(np.ones((4, 3), np.float32), affine_cache)",
     TypeError, "dout"),
    # integer parameters: negative, zero, huge, past int64, not integers
    *[(f"conv-{param}-{value}", f"F.conv_forward(x4, w4, b4, {param}={value})", error, param)
      for param, value, error in [
          ("stride", "0", ValueError), ("stride", "-1", ValueError),
          ("stride", "2**31", ValueError), ("stride", "2**70", ValueError),
          ("stride", "1.5", TypeError), ("stride", "True", TypeError),
          ("stride", "'2'", TypeError), ("stride", "None", TypeError),
          ("pad", "-1", ValueError), ("pad", "2**62", ValueError), ("pad", "2**64", ValueError),
          ("pad", "np.float64(1)", TypeError)]],
    # pad just inside the limit: a 2**32 x 2**32 output whose pixel count wraps int64
    ("conv-pad-2**31-1", "F.conv_forward(x4, w4, b4, pad=2**31 - 1)", ValueError, "H'"),
    ("conv-pad-output-too-big", "F.conv_forward(x4, w4, b4, pad=30000)", ValueError, "H'"),
    *[(f"pool-{param}-{value}", f"F.max_pool_forward(x4, {param}={value})", error, param)
      for param, value, error in [
          ("pool_height", "0", ValueError), ("pool_height", "-5", ValueError),
          ("pool_width", "10**30", ValueError), ("pool_width", "2.0", TypeError),
          ("stride", "0", ValueError), ("stride", "-2**63", ValueError)]],
    ("avgpool-stride-huge", "F.avg_pool_forward(x4, stride=2**100)", ValueError, "stride"),
    *[(f"dropout-{param}-{value}", f"F.dropout_forward(x2, {call})", error, param)
      for param, value, call, error in [
          ("p", "negative", "-0.1, seed=1", ValueError), ("p", "1", "1.0, seed=1", ValueError),
          ("p", "nan", "float('nan'), seed=1", ValueError),
          ("p", "inf", "float('inf'), seed=1", ValueError),
          ("p", "str", "'0.5', seed=1", TypeError), ("p", "None", "None, seed=1", TypeError),
          ("seed", "negative", "0.5, seed=-1", ValueError),
          ("seed", "2**64", "0.5, seed=2**64", ValueError),
          ("seed", "float", "0.5, seed=1.5", TypeError)]],
    # Hostile caches: arrays swapped for ones the kernel would read or write
    # past (the kernels trust the wrapper's checks).
    ("affine-cache-w-taller", "F.affine_backward(np.ones((4, 3)), (x2, np.ones((600, 3)), b1))",
     ValueError, "cache"),
    ("affine-cache-w-float32",
     "F.affine_backward(np.ones((4, 3)), (x2, w2.astype(np.float32), b1))", TypeError, "w"),
    ("affine-cache-x-int",
     "F.affine_backward(np.ones((4, 3)), (np.ones((4, 6), dtype=int), w2, b1))", TypeError,
     "x"),
    ("affine-cache-not-arrays", "F.affine_backward(np.ones((4, 3)), (1, 2, 3))", TypeError,
     "x"),
    ("affine-relu-cache-out-short",
     "F.affine_relu_backward(np.ones((4, 3)), (x2, w2, b1, np.ones(3)))", ValueError, "out"),
    ("relu-cache-None", "F.relu_backward(np.ones(5), None)", TypeError, "x"),
    ("relu-cache-shorter", "F.relu_backward(np.ones(5000), np.ones(5))", ValueError, "dout"),
    ("sigmoid-cache-float32", "F.sigmoid_backward(np.ones(5), np.ones(5, np.float32))",
     TypeError, "sigmoid"),
    ("tanh-cache-int", "F.tanh_backward(np.ones(5), np.ones(5, dtype=int))", TypeError, "tanh"),
    ("conv-cache-stride-0", "F.conv_backward(conv_out, (x4, w4, b4, {'stride': 0, 'pad': 0}))",
     ValueError, "stride"),
    ("conv-cache-pad-huge",
     "F.conv_backward(conv_out, (x4, w4, b4, {'stride': 1, 'pad': 2**62}))", ValueError, "pad"),
    ("conv-cache-w-float32",
     "F.conv_backward(conv_out, (x4, w4.astype(np.float32), b4, conv_param))", TypeError, "w"),
    ("conv-cache-w-3d", "F.conv_backward(conv_out, (x4, np.ones((4, 3, 3)), b4, conv_param))",
     ValueError, "w"),
    ("conv-cache-x-channels",
     "F.conv_backward(conv_out, (np.ones((2, 5, 8, 8)), w4, b4, conv_param))", ValueError, "w"),
    ("maxpool-cache-argmax-past-plane",
     "F.max_pool_backward(pool_out, (x4, np.full(pool_out.shape, 10**6, np.int32), pool_param))",
     ValueError, "argmax"),
    ("maxpool-cache-argmax-negative",
     "F.max_pool_backward(pool_out, (x4, np.full(pool_out.shape, -7, np.int32), pool_param))",
     ValueError, "argmax"),
    ("maxpool-cache-argmax-int64",
     "F.max_pool_backward(pool_out, (x4, pool_cache[1].astype(np.int64), pool_param))",
     ValueError, "argmax"),
    ("maxpool-cache-argmax-strided",
     "F.max_pool_backward(pool_out, (x4, np.repeat(pool_cache[1], 2, axis=3)[..., ::2], "
     "pool_param))", ValueError, "argmax"),
    ("avgpool-cache-window-too-big",
     "F.avg_pool_backward(pool_out, (x4, dict(pool_param, pool_height=100)))", ValueError,
     "pool_height"),
    ("dropout-cache-p-5", "F.dropout_backward(x2, (5.0, True, 1, (4, 6), np.float64))",
     ValueError, "p"),
    ("dropout-cache-seed-negative", "F.dropout_backward(x2, (0.5, True, -1, (4, 6), np.float64))",
     ValueError, "seed"),
]
GARBAGE_BY_ID = {case[0]: case for case in GARBAGE}
assert len(GARBAGE_BY_ID) == len(GARBAGE), "duplicate case ids"

# The child: runs the cases named on stdin, one JSON line before and after each.
BATCH_RUNNER = PRELUDE + """
import json, sys
for case_id, code in json.load(sys.stdin):
    print(json.dumps({"id": case_id, "started": True}), flush=True)
    try:
        eval(code)
        outcome = {"id": case_id, "returned": True}
    except BaseException as e:
        outcome = {"id": case_id, "mro": [c.__name__ for c in type(e).__mro__],
                   "message": str(e)}
    print(json.dumps(outcome), flush=True)
"""


@pytest.fixture(scope="module")
def garbage_outcomes():
    """Outcome of every GARBAGE case, keyed by id; a case that kills its child
    is recorded with the child's exit status, and the rest run in a new one."""
    outcomes, pending = {}, [(case_id, code) for case_id, code, _, _ in GARBAGE]
    while pending:
        proc = run_python(BATCH_RUNNER, timeout=300, stdin=json.dumps(pending))
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if record.pop("started", False):
                started = record["id"]
            else:
                outcomes[record["id"]] = record
                started = None
        done = {case_id for case_id, _ in pending if case_id in outcomes}
        if started is not None:  # the child died inside this case
            outcomes[started] = {"crashed": proc.returncode, "stderr": proc.stderr[-2000:]}
            done.add(started)
        elif proc.returncode != 0:
            pytest.fail(f"the batch child failed outside any case:\n{proc.stderr[-3000:]}")
        pending = [case for case in pending if case[0] not in done]
    return outcomes


@pytest.mark.parametrize("case_id", list(GARBAGE_BY_ID))
def test_garbage_raises_cleanly(garbage_outcomes, case_id):
    _, code, error, argument = GARBAGE_BY_ID[case_id]
    outcome = garbage_outcomes[case_id]
    assert "crashed" not in outcome, f"{code} killed the interpreter: {outcome}"
    assert "returned" not in outcome, f"{code} returned instead of raising {error.__name__}"
    assert error.__name__ in outcome["mro"], (code, outcome)
    assert re.search(re.escape(argument), outcome["message"]), (code, outcome["message"])


def test_read_only_inputs_are_accepted_and_left_unchanged(rng):
    """No functional kernel writes into its inputs, so read-only arrays (a
    memory-mapped data set, say) work and keep their values."""
    def frozen(shape):
        a = rng.standard_normal(shape)
        a.setflags(write=False)
        return a

    x, w, b, dout = frozen((5, 7)), frozen((7, 3)), frozen(3), frozen((5, 3))
    x4, w4, b4 = frozen((2, 3, 6, 6)), frozen((4, 3, 3, 3)), frozen(4)
    inputs = [x, w, b, dout, x4, w4, b4]
    copies = [a.copy() for a in inputs]
    out, cache = F.affine_relu_forward(x, w, b)
    F.affine_relu_backward(dout, cache)
    conv_out, cache = F.conv_forward(x4, w4, b4, pad=1)
    F.conv_backward(np.ones_like(conv_out), cache)
    for name in ("relu", "sigmoid", "tanh"):
        _, cache = getattr(F, f"{name}_forward")(x)
        getattr(F, f"{name}_backward")(x, cache)
    _, cache = F.dropout_forward(x, 0.3, seed=5)
    F.dropout_backward(x, cache)
    pool_out, cache = F.max_pool_forward(x4, 3, 3, 1)
    F.max_pool_backward(pool_out, cache)
    F.softmax_loss(dout, np.zeros(5, dtype=int))
    F.mse_loss(x, x)
    for a, before in zip(inputs, copies):
        np.testing.assert_array_equal(a, before)
    assert_close(out, R.affine_relu_forward(x, w, b)[0], TOLERANCES[np.float64])


def test_optimizer_rejects_bad_parameters_before_touching_any():
    """Optimizers write into Parameter.data: a read-only, mistyped or
    misshapen array raises, and no parameter of the step is changed."""
    good = Parameter(np.ones(4), "good")
    bad = Parameter(np.ones(3), "bad")
    good.grad[...] = bad.grad[...] = 1.0
    opt = optim.Adam([good, bad], lr=0.1)
    for spoil, error, match in [
            (lambda: bad.data.setflags(write=False), ValueError, "read-only"),
            (lambda: setattr(bad, "grad", np.ones(3, np.float32)), TypeError, "float32"),
            (lambda: setattr(bad, "grad", np.ones(4)), ValueError, "shape"),
            (lambda: setattr(bad, "grad", np.ones(6)[::2]), ValueError, "contiguous")]:
        bad.data = np.ones(3)
        bad.grad = np.ones(3)
        spoil()
        with pytest.raises(error, match=match):
            opt.step()
        np.testing.assert_array_equal(good.data, np.ones(4))
        np.testing.assert_array_equal(bad.data, np.ones(3))


def unaligned(a):
    """a's values in a C-contiguous view at an odd byte offset of its buffer."""
    buf = bytearray(a.nbytes + 1)
    view = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned and view.flags.c_contiguous
    return view


def test_unaligned_inputs_give_the_aligned_results(rng, dtype):
    """A C float pointer must be aligned: the wrappers copy misaligned views."""
    x = rng.standard_normal((6, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    w_fc = rng.standard_normal((50, 4)).astype(dtype)
    for func, args in [(F.conv_forward, (x, w, b)), (F.max_pool_forward, (x,)),
                       (F.affine_relu_forward, (x, w_fc, b[:1].repeat(4))),
                       (F.tanh_forward, (x,)), (F.dropout_forward, (x, 0.4, True, 3))]:
        want, _ = func(*args)
        got, _ = func(*[unaligned(a) if isinstance(a, np.ndarray) else a for a in args])
        np.testing.assert_array_equal(got, want, err_msg=func.__name__)


# ---- allocation failure -----------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_allocation_failure_is_memory_error(threads):
    """Under an address-space limit just above what the process holds, the
    conv kernels' scratch malloc fails and the wrappers raise MemoryError; so
    do outputs and copies too large to allocate; and after the limit is lifted
    the kernels work again. (The BLAS buffers and the OpenMP threads are made
    before the limit: a library that cannot create them aborts the process.)"""
    results = child_json(f"""
        import json, resource
        import numpy as np
        import fastfc, fastfc.functional as F
        fastfc.set_num_threads({threads})
        rng = np.random.default_rng(0)
        # 64 channels x 3x3 taps x 40000 pixels: the 64 MiB scratch is used in full
        x = rng.standard_normal((1, 64, 200, 200)).astype(np.float32)
        w = rng.standard_normal((2, 64, 3, 3)).astype(np.float32)
        b = np.zeros(2, np.float32)
        want, cache = F.conv_forward(x, w, b)
        dout = np.ones_like(want)
        F.conv_backward(dout, cache)
        def vm_bytes():
            with open("/proc/self/status") as f:
                line = next(l for l in f if l.startswith("VmSize:"))
            return int(line.split()[1]) * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (24 << 20), hard))
        calls = {{
            "conv_forward scratch": lambda: F.conv_forward(x, w, b),
            "conv_backward scratch": lambda: F.conv_backward(dout, cache),
            "8 GiB copy of a broadcast input": lambda: F.relu_forward(
                np.broadcast_to(np.float32(1), (2**31 + 1,))),
            "32 GiB affine output": lambda: F.affine_forward(
                np.ones((2**16, 1)), np.ones((1, 2**16)), np.ones(2**16)),
        }}
        results = {{}}
        for name, call in calls.items():
            try:
                call()
                results[name] = "returned"
            except MemoryError as e:
                results[name] = "MemoryError"
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        again, _ = F.conv_forward(x, w, b)
        results["works again"] = bool(np.array_equal(again, want))
        print(json.dumps(results))
    """)
    assert results == {"conv_forward scratch": "MemoryError",
                       "conv_backward scratch": "MemoryError",
                       "8 GiB copy of a broadcast input": "MemoryError",
                       "32 GiB affine output": "MemoryError", "works again": True}


# ---- re-entrancy and the GIL ---------------------------------------------------


def workload(seed, dtype):
    """One pass through every kernel on inputs made from seed, each large
    enough to be split among 4 threads: {name: result}."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 3, 24, 24)).astype(dtype)
    w = (rng.standard_normal((8, 3, 3, 3)) / 5).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    r = {}
    r["conv"], cache = F.conv_forward(x, w, b, stride=1, pad=1)
    r["conv dx"], r["conv dw"], r["conv db"] = F.conv_backward(r["conv"], cache)
    r["maxpool"], cache = F.max_pool_forward(r["conv"])
    r["maxpool dx"] = F.max_pool_backward(r["maxpool"], cache)
    r["avgpool"], cache = F.avg_pool_forward(r["conv"], 3, 3, 1)
    r["avgpool dx"] = F.avg_pool_backward(r["avgpool"], cache)
    w_fc = (rng.standard_normal((r["maxpool"][0].size, 10)) / 30).astype(dtype)
    r["affine"], cache = F.affine_relu_forward(r["maxpool"], w_fc, b[:1].repeat(10))
    r["affine dx"], r["affine dw"], r["affine db"] = F.affine_relu_backward(r["affine"], cache)
    for name in ("sigmoid", "tanh", "relu"):
        r[name], cache = getattr(F, f"{name}_forward")(x)
        r[f"{name} dx"] = getattr(F, f"{name}_backward")(x, cache)
    r["dropout"], cache = F.dropout_forward(x, 0.3, seed=seed)
    r["dropout dx"] = F.dropout_backward(x, cache)
    labels = rng.integers(0, 10, len(x))
    for name in ("softmax_loss", "svm_loss"):
        r[name], r[f"{name} dx"] = getattr(F, name)(r["affine"], labels)
    r["mse_loss"], r["mse_loss dx"] = F.mse_loss(x, r["dropout"])
    return r


def assert_same_results(got, want, dtype):
    """Arrays bit for bit; loss scalars (OpenMP reductions add partial sums
    in whatever order threads finish) within rounding."""
    assert got.keys() == want.keys()
    for name, w in want.items():
        if np.ndim(w) == 0:
            assert got[name] == pytest.approx(w, rel=TOLERANCES[dtype]), name
        else:
            np.testing.assert_array_equal(got[name], w, err_msg=name)


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_match_serial_calls(dtype, threads):
    """Four Python threads run every kernel at once, three times over (the
    GIL is released, so the calls overlap in C): the same results as one
    after another."""
    seeds = [11, 12, 13, 14]
    with num_threads(threads):
        serial = {s: workload(s, dtype) for s in seeds}
        barrier = threading.Barrier(len(seeds))
        concurrent, errors = {}, []

        def worker(seed):
            try:
                barrier.wait(timeout=30)
                runs = [workload(seed, dtype) for _ in range(3)]
                concurrent[seed] = runs
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        pool = [threading.Thread(target=worker, args=(s,)) for s in seeds]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in pool), "a kernel call deadlocked"
    assert not errors, errors
    for s in seeds:
        for run in concurrent[s]:
            assert_same_results(run, serial[s], dtype)


def test_kernels_release_the_gil():
    """While a worker thread runs one long kernel call, the main thread keeps
    running Python code: it is never held up for anything like the call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 64, 64)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    b = np.zeros(32, np.float32)
    durations, done = [], threading.Event()

    def worker():
        for _ in range(3):
            start = time.perf_counter()
            F.conv_forward(x, w, b, pad=1)
            durations.append(time.perf_counter() - start)
        done.set()

    with num_threads(1):
        F.conv_forward(x, w, b, pad=1)  # warm-up
        thread = threading.Thread(target=worker)
        longest_gap, last = 0.0, time.perf_counter()
        thread.start()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            longest_gap, last = max(longest_gap, now - last), now
        thread.join()
    # Holding the GIL would stall this loop for a whole call.
    assert longest_gap < 0.5 * min(durations), (longest_gap, durations)


# ---- threads: no oversubscription, same results -------------------------------

CPU_BURST = """
import json, os, time
import numpy as np
from threadpoolctl import threadpool_limits
import fastfc, fastfc.functional as F

def cpu_ticks():
    # utime + stime (clock ticks) of every thread of this process
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks

fastfc.set_num_threads(THREADS)
# Something in the process asks the BLAS for 4 threads: fastfc must still
# run it single-threaded inside its own threads.
threadpool_limits(4)
rng = np.random.default_rng(0)
x = rng.standard_normal((512, 512)).astype(np.float32)
w = rng.standard_normal((512, 256)).astype(np.float32)
b = np.zeros(256, np.float32)
img = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
k = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
big = rng.standard_normal(1 << 19).astype(np.float32)

def burst():
    out, cache = F.affine_relu_forward(x, w, b)
    F.affine_relu_backward(out, cache)
    out, cache = F.conv_forward(img, k, b[:16], pad=1)
    F.conv_backward(out, cache)
    F.max_pool_forward(out)
    out, cache = F.tanh_forward(big)
    F.tanh_backward(big, cache)
    F.dropout_forward(big, 0.5, seed=1)
    F.softmax_loss(x, np.zeros(512, dtype=np.int64))

burst()
time.sleep(0.3)  # let every pool's idle threads fall asleep
threads_before = len(os.listdir("/proc/self/task"))
before = cpu_ticks()
main = os.getpid()  # the main thread's id
while cpu_ticks()[main] - before[main] < 100:  # about 1 s of CPU on the main thread
    burst()
after = cpu_ticks()
used = {tid: after[tid] - before.get(tid, 0) for tid in after}
print(json.dumps({"main": used.pop(main), "others": sorted(used.values(), reverse=True),
                  "threads_before": threads_before,
                  "threads_after": len(os.listdir("/proc/self/task"))}))
"""


@pytest.mark.skipif(not LINUX_PROC, reason="reads per-thread CPU time from /proc")
def test_one_thread_means_one_busy_thread():
    """With set_num_threads(1) (and the BLAS asked for 4 threads meanwhile),
    a burst of every kernel runs on the calling thread alone: no other
    thread of the process consumes CPU and no thread is started."""
    r = child_json(CPU_BURST.replace("THREADS", "1"))
    assert r["main"] >= 100
    assert sum(r["others"]) <= max(3, 0.02 * r["main"]), r
    assert r["threads_after"] == r["threads_before"], r


@pytest.mark.skipif(not LINUX_PROC, reason="reads per-thread CPU time from /proc")
def test_two_threads_means_at_most_two_busy_threads():
    """With set_num_threads(2), at most one thread besides the caller does
    work: the BLAS never starts its own pool inside fastfc's threads."""
    r = child_json(CPU_BURST.replace("THREADS", "2"))
    busy = [t for t in r["others"] if t > max(3, 0.02 * r["main"])]
    assert len(busy) <= 1, r


def test_results_agree_across_1_2_and_4_threads(dtype):
    """4 threads on this machine's cores is oversubscribed on purpose. Results
    agree within TOLERANCES (sums may be split differently); dropout masks
    are identical bit for bit. The inputs are large enough that every kernel
    actually splits its work."""
    runs = {}
    for n in (1, 2, 4):
        with num_threads(n):
            runs[n] = workload(7, dtype)
            runs[n]["long dropout"], _ = F.dropout_forward(np.ones(300_001, dtype), 0.5,
                                                           seed=2**63 + 5)
    for n in (2, 4):
        for name, want in runs[1].items():
            if name.startswith(("dropout", "long dropout")):
                np.testing.assert_array_equal(runs[n][name], want, err_msg=f"{n} threads")
            elif np.ndim(want) == 0:
                assert runs[n][name] == pytest.approx(want, rel=TOLERANCES[dtype]), name
            else:
                assert_close(runs[n][name], want, TOLERANCES[dtype],
                             err_msg=f"{n} threads, {name}")


# ---- numerical robustness ---------------------------------------------------------


def test_softmax_stays_finite_for_huge_float32_logits():
    x = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [3e38, -3e38, 1.0]], np.float32)
    y = np.array([1, 2, 0])
    loss, dx = F.softmax_loss(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    want_loss, want_dx = R.softmax_loss(x.astype(np.float64), y)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    assert_close(dx, want_dx.astype(np.float32), TOLERANCES[np.float32])


# ---- leaks ----------------------------------------------------------------------

LEAK_RUN = """
import json, os
import numpy as np
import fastfc, fastfc.functional as F, fastfc.optim as optim
from fastfc.parameter import Parameter

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 256)).astype(np.float32)
w1_param = Parameter((rng.standard_normal((256, 128)) / 16).astype(np.float32), "w1")
b1_param = Parameter(np.zeros(128, np.float32), "b1")
w1, b1 = w1_param.data, b1_param.data  # updated in place by the optimizers
optimizers = [cls([w1_param, b1_param], lr=1e-6) for cls in optim.OPTIMIZERS.values()]
img = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
k = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
y = rng.integers(0, 128, 64)

def step(i):
    h, fc_cache = F.affine_relu_forward(x, w1, b1)
    h, drop_cache = F.dropout_forward(h, 0.2, seed=i)
    s, s_cache = F.sigmoid_forward(h)
    t, t_cache = F.tanh_forward(s)
    loss, dt = F.softmax_loss(t, y)
    F.svm_loss(t, y)
    F.mse_loss(t, s)
    dh = F.dropout_backward(F.sigmoid_backward(F.tanh_backward(dt, t_cache), s_cache), drop_cache)
    _, w1_param.grad, b1_param.grad = F.affine_relu_backward(dh, fc_cache, compute_dx=False)
    for opt in optimizers:
        opt.step()
    optimizers[i % len(optimizers)].zero_grad()
    out, conv_cache = F.conv_forward(img, k, b1[:8], stride=1, pad=1)
    r, r_cache = F.relu_forward(out)
    pooled, pool_cache = F.max_pool_forward(r)
    avg, avg_cache = F.avg_pool_forward(r, 3, 3, 1)
    F.avg_pool_backward(avg, avg_cache)
    dr = F.relu_backward(F.max_pool_backward(pooled, pool_cache), r_cache)
    F.conv_backward(dr, conv_cache)
    # error paths must not leak either
    for bad in (lambda: F.conv_forward(img, k, b1), lambda: F.softmax_loss(t, y[:3])):
        try:
            bad()
        except ValueError:
            pass

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

for i in range(200):  # warm-up: allocator pools, thread stacks, BLAS buffers
    step(i)
start = rss_bytes()
samples = []
for i in range(ITERATIONS):
    step(i)
    if i % (ITERATIONS // 10) == 0:
        samples.append(rss_bytes())
print(json.dumps({"start": start, "end": rss_bytes(), "peak": max(samples)}))
"""


def check_rss_flat(iterations):
    r = child_json(LEAK_RUN.replace("ITERATIONS", str(iterations)), timeout=600)
    growth = max(r["end"], r["peak"]) - r["start"]
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over {iterations} steps"


@pytest.mark.skipif(not LINUX_PROC, reason="reads RSS from /proc/self/statm")
def test_no_leak_over_repeated_steps():
    """A forward/backward step through every kernel and an update by every
    optimizer, repeated: the resident memory stays flat after warm-up (a leaked output would add ~32 KiB to
    64 KiB per step, megabytes over the run)."""
    check_rss_flat(1000)


@pytest.mark.slow
@pytest.mark.skipif(not LINUX_PROC, reason="reads RSS from /proc/self/statm")
def test_no_leak_over_ten_thousand_steps():
    """The issue's full run (about 10x the default one): `pytest -m slow`."""
    check_rss_flat(10_000)
