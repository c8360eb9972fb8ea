"""Hardening (issue 7): garbage at the API raises ValueError/TypeError (or
MemoryError for sizes no memory holds) before allocating, never crashes the
interpreter; allocation failure is MemoryError; kernels are re-entrant and
release the GIL; long calls run in pieces and Ctrl-C stops them within a
second; optimizers check every parameter before writing any;
set_num_threads(1) keeps the process on one thread and no BLAS thread pool
runs inside fastfc's threads; results agree across 1, 2 and 4 threads, in
training too; repeated forward/backward passes do not leak; a save that fails
midway (a full disk) leaves the previous file intact.

Anything that could take the interpreter down runs in a child interpreter,
so a segfault fails one test instead of killing the run. The long leak run is
marked `slow` (skipped by default): run it with `pytest -m slow`."""
import contextlib
import inspect
import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pytest

import fastfc.functional as F
import fastfc.optim as optim
import fastfc.reference as R
from fastfc import Solver
from fastfc.models import FullyConnectedNet
from fastfc.parameter import Parameter

from testutil import TOLERANCES, assert_close, child_env, num_threads

LINUX_PROC = pathlib.Path("/proc/self/task").is_dir()


def run_python(code, timeout=120, stdin=None):
    """Run code in a fresh interpreter importing this fastfc; CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=child_env())


def start_python(code, **env):
    """Start code in a fresh interpreter (extra environment variables env);
    the Popen, its stdout and stderr as text pipes."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(**env))


def child_json(code, timeout=120):
    """Run code in a child; it must exit 0 and print one JSON line last."""
    proc = run_python(code, timeout)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Child code: cap_address_space(headroom) limits the process's address space
# to headroom bytes above what it maps now, so that any larger allocation fails.
CAP_ADDRESS_SPACE = """
import resource

def cap_address_space(headroom):
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, hard))
    return soft, hard
"""


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
pool2_out, pool2_cache = F.max_pool_forward(x4)  # the 2x2/2 fast path
avg_out, avg_cache = F.avg_pool_forward(x4)
_, drop_cache = F.dropout_forward(x2, 0.5, seed=1)
conv_param = {"stride": 1, "pad": 0}
pool_param = {"pool_height": 3, "pool_width": 3, "stride": 1}
g6, z6, g3, z3 = np.ones(6), np.zeros(6), np.ones(3), np.zeros(3)
_, bn_cache = F.batchnorm_forward(x2, g6, z6, np.zeros(6), np.ones(6))
_, sbn_cache = F.spatial_batchnorm_forward(x4, g3, z3, np.zeros(3), np.ones(3))
_, ln_cache = F.layernorm_forward(x2, g6, z6)
_, gn_cache = F.groupnorm_forward(x4, g3, z3, 3)
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
    "batchnorm_forward": ("F.batchnorm_forward({}, g6, z6, np.zeros(6), np.ones(6))", "x", (4, 6)),
    "spatial_batchnorm_forward": ("F.spatial_batchnorm_forward({}, g3, z3, np.zeros(3), np.ones(3))",
                                  "x", (2, 3, 8, 8)),
    "layernorm_forward": ("F.layernorm_forward({}, g6, z6)", "x", (4, 6)),
    "groupnorm_forward": ("F.groupnorm_forward({}, g3, z3, 3)", "x", (2, 3, 8, 8)),
    "batchnorm_backward": ("F.batchnorm_backward({}, bn_cache)", "dout", (4, 6)),
    "spatial_batchnorm_backward": ("F.spatial_batchnorm_backward({}, sbn_cache)", "dout",
                                   (2, 3, 8, 8)),
    "layernorm_backward": ("F.layernorm_backward({}, ln_cache)", "dout", (4, 6)),
    "groupnorm_backward": ("F.groupnorm_backward({}, gn_cache)", "dout", (2, 3, 8, 8)),
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
    # an output whose element count N*F*H'*W' wraps int64, and one that fits
    # int64 but no memory (95 GiB)
    ("conv-output-elements-overflow", "F.conv_forward(np.ones((2**20, 1, 1, 1)), "
     "np.ones((2**20, 1, 1, 1)), np.ones(2**20), pad=20000)", ValueError, "output"),
    ("conv-output-95-GiB", "F.conv_forward(x4, w4, b4, pad=20000)", MemoryError, "allocate"),
    # huge inputs that take no memory (broadcast views): the contiguous copy a
    # kernel needs cannot be made, or has more bytes than any array; the
    # affine layers see the batch past the BLAS's size limit before copying
    *[(f"{func}-12-TiB-view",
       call.format(f"np.broadcast_to(np.float64(1), {(shape[0] * 2**36, *shape[1:])})"),
       *((ValueError, "BLAS") if func.startswith("affine") and "forward" in func else (MemoryError, "allocate")))
      for func, (call, name, shape) in FIRST_ARRAY_CALLS.items()],
    ("relu-view-past-any-array", "F.relu_forward(np.broadcast_to(np.float32(1), (2**31, 2**31)))",
     ValueError, "too big"),
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
    ("dropout-cache-p-5", "F.dropout_backward(x2, (5.0, True, 1, (4, 6), np.float64, 0))",
     ValueError, "p"),
    ("dropout-cache-seed-negative", "F.dropout_backward(x2, (0.5, True, -1, (4, 6), np.float64, 0))",
     ValueError, "seed"),
    # normalization: running statistics the kernel would write past or into a copy of,
    # statistics and groups that do not fit x
    ("batchnorm-running-mean-short", "F.batchnorm_forward(x2, g6, z6, np.zeros(2), np.ones(6))",
     ValueError, "running_mean"),
    ("batchnorm-running-var-read-only",
     "F.batchnorm_forward(x2, g6, z6, np.zeros(6), np.broadcast_to(1.0, (6,)))", ValueError,
     "running_var"),
    ("batchnorm-gamma-huge-view", "F.batchnorm_forward(x2, np.broadcast_to(1.0, (2**40,)), z6, "
     "np.zeros(6), np.ones(6))", ValueError, "gamma"),
    ("groupnorm-groups-2**40", "F.groupnorm_forward(x4, g3, z3, 2**40)", ValueError, "num_groups"),
    ("groupnorm-groups-2**70", "F.groupnorm_forward(x4, g3, z3, 2**70)", ValueError, "num_groups"),
    ("batchnorm-cache-mean-short", "F.batchnorm_backward(x2, bn_cache[:2] + (np.ones(2),) + "
     "bn_cache[3:])", ValueError, "mean"),
    ("batchnorm-cache-x-wider", "F.batchnorm_backward(np.ones((4, 600)), (np.ones((4, 600)),) + "
     "bn_cache[1:])", ValueError, "gamma"),
    ("spatial-batchnorm-cache-x-2d", "F.spatial_batchnorm_backward(x2, (x2,) + sbn_cache[1:])",
     ValueError, "x"),
    ("layernorm-cache-inv-std-short", "F.layernorm_backward(x2, ln_cache[:3] + (np.ones(1),))",
     ValueError, "inv_std"),
    ("groupnorm-cache-groups-2**40", "F.groupnorm_backward(x4, gn_cache[:4] + (2**40,))",
     ValueError, "num_groups"),
    ("groupnorm-cache-groups-changed", "F.groupnorm_backward(x4, gn_cache[:4] + (1,))",
     ValueError, "mean"),
    # (issue 17) the 2x2/2 path checks argmax too, and caches of the wrong
    # structure raise TypeError/ValueError naming cache or its part
    *[(f"maxpool2x2-cache-argmax-{name}",
       f"F.max_pool_backward(pool2_out, (x4, {argmax}, {{'pool_height': 2, 'pool_width': 2, "
       "'stride': 2}))", ValueError, "argmax")
      for name, argmax in [("past-plane", "np.full(pool2_out.shape, 10**6, np.int32)"),
                           ("negative", "np.full(pool2_out.shape, -7, np.int32)"),
                           ("zeros", "np.zeros(pool2_out.shape, np.int32)"),
                           ("int32-min", "np.full(pool2_out.shape, -2**31, np.int32)")]],
    *[(f"{func}-cache-{name}", f"F.{func}_backward({dout}, {cache})", error, match)
      for func, dout, good in [("max_pool", "pool_out", "pool_cache"),
                               ("avg_pool", "avg_out", "avg_cache"),
                               ("conv", "conv_out", "conv_cache"),
                               ("affine", "out2", "affine_cache"),
                               ("dropout", "x2", "drop_cache")]
      for name, cache, error, match in [
          ("None", "None", TypeError, "cache"), ("int", "3", TypeError, "cache"),
          ("short", f"{good}[:-1]", ValueError, "cache"),
          ("long", f"{good} + (None,)", ValueError, "cache")]],
    ("maxpool-cache-param-None", "F.max_pool_backward(pool_out, pool_cache[:2] + (None,))",
     TypeError, "pool_param"),
    ("maxpool-cache-param-missing",
     "F.max_pool_backward(pool_out, pool_cache[:2] + ({'pool_height': 3},))", ValueError,
     "pool_width"),
    ("avgpool-cache-param-list", "F.avg_pool_backward(avg_out, (x4, [2, 2, 2]))", TypeError,
     "pool_param"),
    ("conv-cache-param-None", "F.conv_backward(conv_out, conv_cache[:3] + (None,))", TypeError,
     "conv_param"),
    ("conv-cache-param-missing", "F.conv_backward(conv_out, conv_cache[:3] + ({'pad': 0},))",
     ValueError, "stride"),
    ("maxpool-cache-argmax-list",
     "F.max_pool_backward(pool_out, (x4, pool_cache[1].tolist(), pool_param))", TypeError,
     "argmax"),
    ("dropout-cache-train-str", "F.dropout_backward(x2, (0.5, 'yes', 1, (4, 6), np.float64, 0))",
     TypeError, "train"),
    # (issue 17) masked arrays: the kernels would ignore the mask, so they are
    # refused (in every argument position, outputs included)
    *[(f"masked-{name}", call, TypeError, match) for name, call, match in [
        ("relu-x", "F.relu_forward(np.ma.masked_less(x2, 0))", "x"),
        ("relu-out", "F.relu_forward(x2, out=np.ma.zeros(x2.shape))", "out"),
        ("affine-x", "F.affine_forward(np.ma.masked_less(x2, 0), w2, b1)", "x"),
        ("affine-w", "F.affine_forward(x2, np.ma.array(w2, mask=w2 > 0), b1)", "w"),
        ("softmax-y", "F.softmax_loss(x2, np.ma.array(y, mask=[1, 0, 0, 0]))", "y"),
        ("mse-target", "F.mse_loss(x2, np.ma.masked_greater(x2, 0.5))", "target"),
        ("conv-x", "F.conv_forward(np.ma.masked_less(x4, 0), w4, b4)", "x"),
        ("maxpool-x", "F.max_pool_forward(np.ma.masked_less(x4, 0))", "x"),
        ("maxpool-argmax", "F.max_pool_backward(pool_out, (x4, np.ma.array(pool_cache[1]), "
                           "pool_param))", "argmax"),
        ("dropout-dx", "F.dropout_backward(x2, drop_cache, dx=np.ma.zeros(x2.shape))", "dx"),
    ]],
]
GARBAGE_BY_ID = {case[0]: case for case in GARBAGE}
assert len(GARBAGE_BY_ID) == len(GARBAGE), "duplicate case ids"

# The child: runs the cases named on stdin, one JSON line before and after each.
# Every case must be rejected before anything large is allocated: with the
# address space capped 1 GiB above what the child maps after the prelude, an
# allocation made before the checks surfaces as MemoryError, not the expected
# error (a 12 TiB copy is MemoryError either way).
BATCH_RUNNER = PRELUDE + CAP_ADDRESS_SPACE + """
import json, sys
if sys.platform.startswith("linux"):
    cap_address_space(1 << 30)
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
    g7, g3 = frozen(7), frozen(3)
    inputs += [g7, g3]
    copies += [g7.copy(), g3.copy()]
    # the running statistics too, in test mode (training writes them)
    _, cache = F.batchnorm_forward(x, g7, g7, g7, g7 * g7, train=False)
    F.batchnorm_backward(x, cache)
    _, cache = F.spatial_batchnorm_forward(x4, g3, g3, g3, g3 * g3, train=False)
    F.spatial_batchnorm_backward(x4, cache)
    F.layernorm_backward(x, F.layernorm_forward(x, g7, g7)[1])
    F.groupnorm_backward(x4, F.groupnorm_forward(x4, g3, g3, 3)[1])
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


# ---- ndarray subclasses whose Python attributes lie (issue 17) -----------------
# A subclass may override .shape (some array-like wrappers do); the kernels
# read the C-level dimensions and data pointer. Each case: a call with such an
# array, and either the plain call it must equal (the subclass viewed as the
# base class) or the error it must raise, naming the argument. Before, these
# read or wrote past the arrays (a crash, or heap corruption) or answered for
# the wrong shape.

LYING_CASES = [
    ("maxpool-x", "F.max_pool_forward(lying(x4, (64, 64, 256, 256)))[0]",
     ("same", "F.max_pool_forward(x4)[0]")),
    ("avgpool-x", "F.avg_pool_forward(lying(x4, (64, 64, 256, 256)))[0]",
     ("same", "F.avg_pool_forward(x4)[0]")),
    ("conv-x", "F.conv_forward(lying(x4, (2, 3, 80, 80)), w4, b4)[0]",
     ("same", "F.conv_forward(x4, w4, b4)[0]")),
    ("conv-w", "F.conv_forward(x4, lying(w4, (4, 3, 1, 1)), b4)[0]",
     ("same", "F.conv_forward(x4, w4, b4)[0]")),
    ("relu-x", "F.relu_forward(lying(x2, (4000, 6)))[0]", ("same", "F.relu_forward(x2)[0]")),
    ("relu-out", "F.relu_forward(x2, out=lying(np.empty(3), (4, 6)))[0]",
     ("raises", "ValueError", "out")),
    ("relu-backward-dout", "F.relu_backward(lying(np.ones(2), (4, 6)), x2)",
     ("raises", "ValueError", "dout")),
    ("mse-pred", "F.mse_loss(lying(np.ones(3), (4, 6)), x2)", ("raises", "ValueError", "target")),
    ("affine-x", "F.affine_forward(lying(np.ones((2, 12)), (4, 6)), w2, b1)[0]",
     ("raises", "ValueError", "w")),
    ("softmax-y", "F.softmax_loss(x2, lying(np.zeros(2, np.int64), (4,)))",
     ("raises", "ValueError", "y")),
    ("maxpool-backward-argmax",
     "F.max_pool_backward(pool_out, (x4, lying(pool_cache[1][:1], pool_out.shape), pool_param))",
     ("raises", "ValueError", "argmax")),
    ("dropout-backward-dout", "F.dropout_backward(lying(np.ones(3), (4, 6)), drop_cache)",
     ("raises", "ValueError", "dout")),
    ("affine-backward-dx", "F.affine_backward(out2, affine_cache, dx=lying(np.empty(2), (4, 6)))",
     ("raises", "ValueError", "dx")),
    ("matrix-honest", "F.relu_forward(np.matrix(x2))[0]", ("same", "F.relu_forward(x2)[0]")),
]

LYING_RUNNER = PRELUDE + """
import json, sys

def lying(a, shape):
    # a viewed as an ndarray subclass whose Python-level .shape says shape
    cls = type("Lying", (np.ndarray,), {"shape": property(lambda self: shape)})
    return a.view(cls)

for case_id, code, expected in json.load(sys.stdin):
    print(json.dumps({"started": case_id}), flush=True)
    try:
        got = eval(code)
        outcome = {"returned": True}
        if expected[0] == "same":
            want = eval(expected[1])
            outcome["same"] = type(got) is np.ndarray and bool(np.array_equal(got, want))
    except Exception as e:
        outcome = {"error": type(e).__name__, "message": str(e)}
    print(json.dumps({"id": case_id, **outcome}), flush=True)
"""


def test_subclass_whose_shape_lies_is_read_as_the_base_array():
    proc = run_python(LYING_RUNNER, stdin=json.dumps(LYING_CASES))
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    outcomes = {r["id"]: r for r in records if "id" in r}
    started = [r["started"] for r in records if "started" in r]
    assert proc.returncode == 0, (f"the child died (status {proc.returncode}) in case "
                                  f"{started[-1] if started else None}:\n{proc.stderr[-2000:]}")
    for case_id, code, expected in LYING_CASES:
        outcome = outcomes[case_id]
        if expected[0] == "same":
            assert outcome.get("same"), (case_id, code, outcome)
        else:
            assert outcome.get("error") == expected[1], (case_id, code, outcome)
            assert re.search(re.escape(expected[2]), outcome["message"]), (case_id, outcome)


def test_masked_parameters_and_gradients_are_refused():
    """A masked array's mask would be ignored by the optimizers too."""
    with pytest.raises(TypeError, match="masked"):
        Parameter(np.ma.array(np.ones(3), mask=[0, 1, 0]), "w")
    p = Parameter(np.ones(3), "w")
    p.grad = np.ma.array(np.ones(3), mask=[0, 1, 0])
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(TypeError, match="grad.*masked"):
        opt.step()
    np.testing.assert_array_equal(p.data, np.ones(3))


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
    conv kernels' scratch malloc fails (im2col's and Winograd's) and the wrappers raise MemoryError; so
    do outputs and copies too large to allocate; and after the limit is lifted
    the kernels work again. (The BLAS buffers and the OpenMP threads are made
    before the limit: a library that cannot create them aborts the process.)"""
    results = child_json(CAP_ADDRESS_SPACE + f"""
import json
import numpy as np
import fastfc, fastfc.functional as F
fastfc.set_num_threads({threads})
rng = np.random.default_rng(0)
# im2col: 4096 channels x 5x5 taps: blocks of 128 (or fewer) of the 400 pixels
# take 52-64 MiB, the scratch budget
x = rng.standard_normal((1, 4096, 24, 24), dtype=np.float32)
w = rng.standard_normal((2, 4096, 5, 5), dtype=np.float32)
b = np.zeros(2, np.float32)
want, cache = F.conv_forward(x, w, b)
dout = np.ones_like(want)
F.conv_backward(dout, cache)
# Winograd (3x3, stride 1): C x C filters transformed take 64 C^2 bytes; the
# scratch (37 MB at 640 channels on one thread; 38-67 MB at 576 on two, whose
# backward keeps a partial sum per thread: 640 would not fit the 64 MiB budget)
# is above glibc's largest mmap threshold (32 MB), so a fresh mmap, which the
# limit refuses, unless the heap holds that much free. Drawn as float32: no
# large float64 temporaries whose freeing would leave such room.
c = 640 if {threads} == 1 else 576
xw = rng.standard_normal((1, c, 32, 32), dtype=np.float32)
ww = rng.standard_normal((c, c, 3, 3), dtype=np.float32)
bw = np.zeros(c, np.float32)
_, cache_w = F.conv_forward(xw, ww, bw)
dout_w = np.ones((1, c, 30, 30), np.float32)
F.conv_backward(dout_w, cache_w)
soft, hard = cap_address_space(24 << 20)
calls = {{
    "conv_forward scratch": lambda: F.conv_forward(x, w, b),
    "conv_backward scratch": lambda: F.conv_backward(dout, cache),
    "Winograd conv_forward scratch": lambda: F.conv_forward(xw, ww, bw),
    "Winograd conv_backward scratch": lambda: F.conv_backward(dout_w, cache_w),
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
                       "Winograd conv_forward scratch": "MemoryError",
                       "Winograd conv_backward scratch": "MemoryError",
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
    rows = x.reshape(len(x), -1)
    running = lambda c: (np.zeros(c, dtype), np.ones(c, dtype))  # noqa: E731
    for name, a, extra in (("batchnorm", rows, running(rows.shape[1])),
                           ("spatial_batchnorm", x, running(x.shape[1])), ("layernorm", rows, ()),
                           ("groupnorm", x, (3,))):
        c = a.shape[1]
        r[name], cache = getattr(F, f"{name}_forward")(a, np.linspace(0.5, 2, c).astype(dtype),
                                                      np.zeros(c, dtype), *extra)
        r[f"{name} dx"], r[f"{name} dgamma"], r[f"{name} dbeta"] = \
            getattr(F, f"{name}_backward")(a[::-1], cache)  # not a itself: dx would be ~0
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


def longest_main_thread_gap(x, w, b):
    """(the longest stall of a 1 ms loop in this thread while another
    thread runs three conv_forward calls, the calls' durations)."""
    durations, done = [], threading.Event()

    def worker():
        for _ in range(3):
            start = time.perf_counter()
            F.conv_forward(x, w, b, pad=1)
            durations.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=worker)
    longest_gap, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        longest_gap, last = max(longest_gap, now - last), now
    thread.join()
    return longest_gap, durations


def test_kernels_release_the_gil():
    """While a worker thread runs one long kernel call, the main thread keeps
    running Python code: it is never held up for anything like the call.
    Holding the GIL would stall the loop for a whole call in every attempt;
    a loaded machine may deschedule this thread in one, so three attempts."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 64, 64)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    b = np.zeros(32, np.float32)
    attempts = []
    with num_threads(1):
        F.conv_forward(x, w, b, pad=1)  # warm-up
        for _ in range(3):
            longest_gap, durations = longest_main_thread_gap(x, w, b)
            attempts.append((longest_gap, durations))
            if longest_gap < 0.5 * min(durations):
                return
    pytest.fail(f"the main thread stalled for half a kernel call or more in every attempt: {attempts}")


# Another Python thread writes garbage into a max-pool cache's argmax while
# max_pool_backward runs on it without the GIL: the kernel checks each index
# as it reads it, so every call returns or raises ValueError; before, an
# index checked in Python and changed before the kernel read it made the
# scatter write out of bounds (a crash).
ARGMAX_RACE = """
import json, threading
import numpy as np
import fastfc, fastfc.functional as F
fastfc.set_num_threads({threads})
x = np.random.default_rng(0).standard_normal((64, 16, 32, 32))
outcomes = {{"returned": 0, "ValueError": 0, "messages": set()}}
for window in [(3, 3, 1), (2, 2, 2)]:
    out, (xc, argmax, pool_param) = F.max_pool_forward(x, *window)
    good, dout, stop = argmax.copy(), np.ones_like(out), threading.Event()

    def mutate():
        while not stop.is_set():
            argmax[...] = 2**31 - 1
            argmax[...] = -2**31
            argmax[...] = good

    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        for _ in range(150):
            try:
                F.max_pool_backward(dout, (xc, argmax, pool_param))
                outcomes["returned"] += 1
            except ValueError as e:
                outcomes["ValueError"] += 1
                outcomes["messages"].add(str(e).split(":")[0])
    finally:
        stop.set()
        thread.join()
outcomes["messages"] = sorted(outcomes["messages"])
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_argmax_rewritten_by_another_thread_during_backward(threads):
    outcomes = child_json(ARGMAX_RACE.format(threads=threads), timeout=300)
    assert outcomes["returned"] + outcomes["ValueError"] == 300
    assert outcomes["messages"] in ([], ["cache does not come from max_pool_forward"])


# ---- long calls: pieces, and Ctrl-C -----------------------------------------------
# A kernel runs without the GIL and Python runs signal handlers only once it
# has the GIL back, so the wrappers cut long calls into pieces (of whole
# images, planes, rows) and run pending handlers in between. The sizes below
# are chosen to span several pieces: 2**20 elements per thread for the
# element-wise kernels, losses and optimizer steps, 2**22 window steps per
# thread for pooling, 2**32 multiply-adds per thread for convolution and the
# affine layers.

def big_conv(n_images, rng):
    """(x, w, b) of a big-kernel conv layer, float32: 512 3x3 filters over 512
    channels of 4x4 maps, 37.7M multiply-adds an image, so that 113 images
    make one forward piece on one thread (56 with dx, backward)."""
    x = rng.standard_normal((n_images, 512, 4, 4)).astype(np.float32)
    w = (rng.standard_normal((512, 512, 3, 3)) / 50).astype(np.float32)
    return x, w, rng.standard_normal(512).astype(np.float32)


BIG_CONV = "import numpy as np\n" + inspect.getsource(big_conv)  # for children

# Every loop of the wrappers, each over several pieces, its signal handlers
# timed with a 0.25 ms interval timer.
SIGNALS_DURING_CALLS = BIG_CONV + """
import json, signal, time
import fastfc, fastfc.functional as F

fastfc.set_num_threads(1)
runs = []
signal.signal(signal.SIGALRM, lambda signum, frame: runs.append(time.perf_counter()))

def handler_runs(call):
    # (seconds call() took, handler runs while it ran, longest stretch without one)
    runs.clear()
    signal.setitimer(signal.ITIMER_REAL, 0.00025, 0.00025)
    start = time.perf_counter()
    call()
    end = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, 0)
    inside = [t for t in runs if start < t < end]
    return end - start, len(inside), float(np.diff([start, *inside, end]).max())

rng = np.random.default_rng(0)
v = rng.standard_normal(1 << 24).astype(np.float32)  # 16 pieces
scores = v.reshape(1 << 18, 64)
labels = np.zeros(1 << 18, dtype=np.int64)
x, w, b = big_conv(4 * 113 + 1, rng)  # 5 pieces, forward and backward without dx
maps = rng.standard_normal((64, 16, 64, 64)).astype(np.float32)  # 3x3 windows: 10 pieces
pooled, max_cache = F.max_pool_forward(maps, 3, 3, 1)
averaged, avg_cache = F.avg_pool_forward(maps, 3, 3, 1)
rows = rng.standard_normal((4096, 2048)).astype(np.float32)  # 4 forward pieces
weights = rng.standard_normal((2048, 2048)).astype(np.float32) / 50
_, affine_cache = F.affine_forward(rows, weights, weights[0])
param = fastfc.Parameter(v.copy())
param.grad[...] = v
adam = fastfc.optim.Adam([param])
# 16 pieces each: batchnorm of whole channels (1024 columns, 4 maps),
# layer norm of 256 rows, group norm of 32 (sample, group) rows or tiles
table, square, maps4 = v.reshape(1 << 10, 1 << 14), v.reshape(1 << 12, 1 << 12), v.reshape(64, 64, 64, 64)
ones, zeros = np.ones(1 << 14, np.float32), np.zeros(1 << 14, np.float32)
running = np.zeros(1 << 14, np.float32), np.ones(1 << 14, np.float32)
_, bn_cache = F.batchnorm_forward(table, ones, zeros, *running)
_, gn_cache = F.groupnorm_forward(maps4, ones[:64], zeros[:64], 8)
calls = {
    "affine_forward": lambda: F.affine_forward(rows, weights, weights[0]),
    "affine_backward": lambda: F.affine_backward(rows[:, :2048], affine_cache, compute_dx=False),
    "adam_step": adam.step,
    "tanh_forward": lambda: F.tanh_forward(v),
    "tanh_backward": lambda: F.tanh_backward(v, v),
    "dropout_forward": lambda: F.dropout_forward(v, 0.5, seed=1),
    "softmax_loss": lambda: F.softmax_loss(scores, labels),
    "mse_loss": lambda: F.mse_loss(v, v),
    "conv_forward": lambda: F.conv_forward(x, w, b, pad=1),
    "conv_backward": lambda: F.conv_backward(np.ones((len(x), 512, 4, 4), np.float32),
                                             (x, w, b, {"stride": 1, "pad": 1}),
                                             compute_dx=False),
    "max_pool_forward": lambda: F.max_pool_forward(maps, 3, 3, 1),
    "max_pool_backward": lambda: F.max_pool_backward(pooled, max_cache),
    "avg_pool_forward": lambda: F.avg_pool_forward(maps, 3, 3, 1),
    "avg_pool_backward": lambda: F.avg_pool_backward(averaged, avg_cache),
    "batchnorm_forward": lambda: F.batchnorm_forward(table, ones, zeros, *running),
    "batchnorm_backward": lambda: F.batchnorm_backward(table, bn_cache),
    "spatial_batchnorm_forward": lambda: F.spatial_batchnorm_forward(
        maps4, ones[:64], zeros[:64], running[0][:64], running[1][:64]),
    "layernorm_forward": lambda: F.layernorm_forward(square, ones[:1 << 12], zeros[:1 << 12]),
    "groupnorm_forward": lambda: F.groupnorm_forward(maps4, ones[:64], zeros[:64], 8),
    "groupnorm_backward": lambda: F.groupnorm_backward(maps4, gn_cache),
}
print(json.dumps({name: handler_runs(call) for name, call in calls.items()}))
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs an interval timer")
def test_long_calls_run_signal_handlers_between_pieces():
    """Python signal handlers run all through a long call, never more than a
    second apart. A call that held on to the signals until it returned would
    go (nearly) its whole length without one (an affine_forward did, 0.57 s
    of its 0.58 s here, before it was cut into pieces of rows)."""
    for name, (seconds, runs, longest) in child_json(SIGNALS_DURING_CALLS, timeout=300).items():
        assert runs >= 3 and longest < seconds / 2, \
            f"{name}: {runs} handler runs in {seconds:.3f} s, {longest:.3f} s without"
        assert longest < 1.0, f"{name}: {longest:.2f} s without running signal handlers"


INTERRUPTED_CALL = BIG_CONV + """
import json, time
import fastfc, fastfc.functional as F

fastfc.set_num_threads(1)
x, w, b = big_conv(4000, np.random.default_rng(0))  # 150 G multiply-adds: several seconds
want, _ = F.conv_forward(x[:2], w, b, pad=1)
print("calling", flush=True)
try:
    F.conv_forward(x, w, b, pad=1)
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
caught = time.monotonic()
again, _ = F.conv_forward(x[:2], w, b, pad=1)
print(json.dumps({"outcome": outcome, "caught": caught,
                  "works again": bool(np.array_equal(again, want))}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sends SIGINT to a child")
def test_ctrl_c_stops_a_long_kernel_call_within_a_second():
    """SIGINT (Ctrl-C) half a second into a conv_forward of several seconds:
    KeyboardInterrupt comes out of the call well within a second, and the
    kernels work normally afterwards."""
    proc = start_python(INTERRUPTED_CALL)
    try:
        assert proc.stdout.readline() == "calling\n", proc.stderr.read()
        time.sleep(0.5)
        sent = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    r = json.loads(out)
    assert r["outcome"] == "KeyboardInterrupt", "the call ended before the signal came"
    assert r["caught"] - sent < 1.0, f"KeyboardInterrupt {r['caught'] - sent:.2f} s after SIGINT"
    assert r["works again"]


@pytest.mark.parametrize("threads", [1, 2])
def test_calls_in_pieces_match_the_reference(rng, threads):
    """Element-wise kernels, dropout, losses and pooling over inputs of
    several pieces (plus a ragged last one) give the reference's results:
    each piece starts at the right element, row or plane (dropout at the
    right index of its mask), and losses average over the whole batch."""
    tol = TOLERANCES[np.float32]
    with num_threads(threads):
        v = rng.standard_normal((1 << 21) * threads + 37).astype(np.float32)
        for name in ("relu", "sigmoid", "tanh"):
            out, cache = getattr(F, f"{name}_forward")(v)
            want, ref_cache = getattr(R, f"{name}_forward")(v)
            assert_close(out, want, tol, err_msg=name)
            assert_close(getattr(F, f"{name}_backward")(v, cache),
                         getattr(R, f"{name}_backward")(v, ref_cache), tol, err_msg=name)
        out, cache = F.dropout_forward(v, 0.4, seed=2**40 + 3)
        want, ref_cache = R.dropout_forward(v, 0.4, seed=2**40 + 3)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(F.dropout_backward(v, cache),
                                      R.dropout_backward(v, ref_cache))
        scores = v[:len(v) // 37 * 37].reshape(-1, 37).astype(np.float64)
        labels = rng.integers(0, 37, len(scores))
        for name in ("softmax_loss", "svm_loss"):
            loss, dx = getattr(F, name)(scores, labels)
            want_loss, want_dx = getattr(R, name)(scores, labels)
            assert loss == pytest.approx(want_loss, rel=1e-12), name
            assert_close(dx, want_dx, TOLERANCES[np.float64], err_msg=name)
        loss, dpred = F.mse_loss(v, v[::-1])
        want_loss, want_dpred = R.mse_loss(v.astype(np.float64), v[::-1].astype(np.float64))
        assert loss == pytest.approx(want_loss, rel=1e-6)
        assert_close(dpred, want_dpred, tol)
        # 17x17 planes: a piece is ~7,700 of them with 2x2/2 windows (their own
        # path), ~1,800 with 3x3/1
        maps = rng.standard_normal((1000 * threads + 3, 8, 17, 17)).astype(np.float32)
        # normalization in 3 pieces: of 618 batchnorm columns, of 847 layer norm
        # rows (1237 wide), of 3 channels of maps, of 1814 group rows (2 channels
        # of 17x17) or 120 tiles of 15 samples
        table = v[:len(v) // 1237 * 1237].reshape(-1, 1237)
        # the further arguments, fresh for each call: running statistics change
        running = lambda: (np.zeros(a.shape[1], np.float32), np.ones(a.shape[1], np.float32))  # noqa: E731
        for name, a, extra in (("batchnorm", table, running), ("layernorm", table, tuple),
                               ("spatial_batchnorm", maps, running), ("groupnorm", maps, lambda: (4,))):
            c = a.shape[1]
            gamma, beta = np.linspace(0.5, 2, c).astype(np.float32), np.ones(c, np.float32)
            got = getattr(F, f"{name}_forward")(a, gamma, beta, *extra())
            want = getattr(R, f"{name}_forward")(a, gamma, beta, *extra())
            assert_close(got[0], want[0], tol, err_msg=name)
            dout = a[::-1]  # not a itself: the gradient along x is ~0, all rounding
            for grad_name, g, w in zip(("dx", "dgamma", "dbeta"),
                                       getattr(F, f"{name}_backward")(dout, got[1]),
                                       getattr(R, f"{name}_backward")(dout, want[1])):
                assert_close(g, w, 10 * tol, err_msg=f"{name} {grad_name}")
        for kind in ("max", "avg"):
            for window in ((2, 2, 2), (3, 3, 1)):
                out, cache = getattr(F, f"{kind}_pool_forward")(maps, *window)
                want, ref_cache = getattr(R, f"{kind}_pool_forward")(maps, *window)
                assert_close(out, want, tol, err_msg=f"{kind} {window}")
                assert_close(getattr(F, f"{kind}_pool_backward")(out, cache),
                             getattr(R, f"{kind}_pool_backward")(want, ref_cache), tol,
                             err_msg=f"{kind} {window} backward")


def test_conv_in_pieces_matches_calls_on_parts(rng):
    """A convolution over 2 forward pieces (3 backward ones, with dx): each
    image's output and dx are those of a call on that image alone, bit for
    bit; dw and db, summed over the pieces, match the sums of calls on parts
    of one piece each."""
    x, w, b = big_conv(120, rng)
    dout = rng.standard_normal((120, 512, 4, 4)).astype(np.float32)
    param = {"stride": 1, "pad": 1}
    with num_threads(1):
        out, cache = F.conv_forward(x, w, b, pad=1)
        dx, dw, db = F.conv_backward(dout, cache)
        for i in (0, 55, 56, 112, 113, 119):  # either side of every piece boundary
            one = slice(i, i + 1)
            np.testing.assert_array_equal(out[one], F.conv_forward(x[one], w, b, pad=1)[0])
            np.testing.assert_array_equal(dx[one],
                                          F.conv_backward(dout[one], (x[one], w, b, param))[0])
        parts = [F.conv_backward(dout[i:i + 40], (x[i:i + 40], w, b, param), compute_dx=False)
                 for i in range(0, 120, 40)]
    assert_close(dw, sum(part[1] for part in parts), TOLERANCES[np.float32])
    assert_close(db, sum(part[2] for part in parts), TOLERANCES[np.float32])


# ---- threads: no oversubscription, same results -------------------------------

# Child code: burst() runs every kernel family once, on set_num_threads(THREADS).
BURST = """
import json, os, time
import numpy as np
import fastfc, fastfc.functional as F

fastfc.set_num_threads(THREADS)
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
"""

CPU_BURST = BURST + """
from threadpoolctl import threadpool_limits

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

# Something in the process asks the BLAS for 4 threads: fastfc must still
# run it single-threaded inside its own threads.
threadpool_limits(4)
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

# Bursts for about a second, after saying "ready" (the child is imported and
# has made its inputs; no kernel has run yet).
BURSTS_FOR_A_SECOND = BURST + """
print("ready", flush=True)
end, bursts = time.perf_counter() + 1.0, 0
while time.perf_counter() < end:
    burst()
    bursts += 1
print(bursts)
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


@pytest.mark.skipif(not LINUX_PROC, reason="counts a process's threads in /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_of_the_process_during_a_run(threads):
    """The process's thread count, sampled every half millisecond from outside
    while every kernel runs: with set_num_threads(n) it never exceeds n, so 1
    makes the whole process single-threaded (2 shows the sampling sees
    fastfc's OpenMP threads). The BLAS libraries size their own idle pools
    from the environment when they load, before any fastfc call can: the
    environment turns those off."""
    no_pools = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OMP_NUM_THREADS")}
    proc = start_python(BURSTS_FOR_A_SECOND.replace("THREADS", str(threads)), **no_pools)
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        counts = []
        while proc.poll() is None:
            with contextlib.suppress(FileNotFoundError):  # it exited meanwhile
                counts.append(len(os.listdir(f"/proc/{proc.pid}/task")))
            time.sleep(0.0005)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert int(out) >= 10 and len(counts) >= 100, (out, len(counts))
    assert max(counts) == threads, sorted(set(counts))


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


def test_training_agrees_across_1_2_and_4_threads():
    """Solver.train with dropout, on 1, 2 and 4 threads: the very same batches
    in the same order (shuffling draws from the Solver's generator, never from
    the threads) and dropout masks (losses would differ by far more than
    rounding otherwise): loss histories and trained parameters agree to
    float64 rounding."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((600, 20))
    y = (X[:, :4].argmax(axis=1)).astype(np.int64)
    data = dict(X_train=X[:500], y_train=y[:500], X_val=X[500:], y_val=y[500:])
    runs = {}
    for n in (1, 2, 4):
        batches = []

        def record(X_batch, generator):
            batches.append(X_batch.copy())
            return X_batch
        model = FullyConnectedNet([64, 64], input_dim=20, num_classes=4, dropout=0.3,
                                  dtype=np.float64, seed=0)
        solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                        batch_size=50, num_epochs=2, verbose=False, seed=0, augment=record)
        with num_threads(n):
            solver.train()
        runs[n] = batches, solver.loss_history, {k: v.copy() for k, v in model.params.items()}
    batches, losses, params = runs[1]
    for n in (2, 4):
        assert len(runs[n][0]) == len(batches) == 20
        for got, want in zip(runs[n][0], batches):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(runs[n][1], losses, rtol=1e-10)
        for name, want in params.items():
            assert_close(runs[n][2][name], want, 1e-9, err_msg=f"{n} threads, {name}")


# ---- numerical robustness ---------------------------------------------------------


def test_softmax_stays_finite_for_huge_float32_logits():
    x = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [3e38, -3e38, 1.0]], np.float32)
    y = np.array([1, 2, 0])
    loss, dx = F.softmax_loss(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    want_loss, want_dx = R.softmax_loss(x.astype(np.float64), y)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    assert_close(dx, want_dx.astype(np.float32), TOLERANCES[np.float32])


# ---- saves and loads ------------------------------------------------------------

# A child whose files may grow only to a byte limit: with SIGXFSZ ignored, a
# write past it fails with EFBIG midway, as on a full disk.
FULL_DISK = """
import errno, json, os, resource, signal
import numpy as np
from fastfc import Solver
from fastfc.models import FullyConnectedNet

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

def disk_full_past(n_bytes):
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (n_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

def failure(call):
    try:
        call()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "no error"

directory = DIRECTORY
model_path, checkpoint = os.path.join(directory, "model.npz"), os.path.join(directory, "best.npz")
old = FullyConnectedNet([8], input_dim=5, num_classes=3, seed=0)
old.save(model_path)
old_bytes = open(model_path, "rb").read()
disk_full_past(len(old_bytes) + 1000)
result = {"save": failure(lambda: FullyConnectedNet([300], input_dim=500, num_classes=3,
                                                    seed=1).save(model_path)),
          "model intact": open(model_path, "rb").read() == old_bytes}
disk_full_past(resource.RLIM_INFINITY)
result["model loads"] = bool(np.array_equal(
    FullyConnectedNet([8], input_dim=5, num_classes=3, seed=2).load(model_path).params["W1"],
    old.params["W1"]))

rng = np.random.default_rng(0)
X = rng.standard_normal((300, 20)).astype(np.float32)
y = X[:, :3].argmax(axis=1)
model = FullyConnectedNet([64], input_dim=20, num_classes=3, seed=0)
saved = {}

def fill_the_disk(solver, record):
    # after epoch 1 has written its checkpoint: the disk fills up, then Ctrl-C,
    # on which the Solver rewrites the checkpoint
    saved["bytes"] = open(checkpoint, "rb").read()
    disk_full_past(len(saved["bytes"]) // 2)
    raise KeyboardInterrupt

solver = Solver(model, dict(X_train=X[:250], y_train=y[:250], X_val=X[250:], y_val=y[250:]),
                num_epochs=3, checkpoint_name=checkpoint, on_epoch_end=fill_the_disk,
                verbose=False, seed=0)
result["checkpoint"] = failure(solver.train)
result["checkpoint intact"] = open(checkpoint, "rb").read() == saved["bytes"]
result["model holds the best"] = all(np.array_equal(model.params[k], v)
                                     for k, v in solver.best_params.items())
result["files"] = sorted(os.listdir(directory))
print(json.dumps(result))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_FSIZE")
def test_full_disk_midway_keeps_the_previous_file(tmp_path):
    """A model save and a Solver checkpoint (the one written on Ctrl-C) that
    fail midway on a full disk raise OSError and leave the previous file as
    it was, loadable, with no temporary file left behind."""
    r = child_json(FULL_DISK.replace("DIRECTORY", repr(str(tmp_path))))
    assert r == {"save": "EFBIG", "model intact": True, "model loads": True,
                 "checkpoint": "EFBIG", "checkpoint intact": True, "model holds the best": True,
                 "files": ["best.npz", "model.npz"]}


def _rewrite(path, compression=zipfile.ZIP_STORED, **replace):
    """Rebuild the .npz at path, every member stored with compression, member
    NAME.npy written by replace[NAME](f) instead of its own bytes."""
    with zipfile.ZipFile(path) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    for name, write in replace.items():
        buffer = io.BytesIO()
        write(buffer)
        members[f"{name}.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w", compression) as z:
        for member, data in members.items():
            z.writestr(member, data)


def _float32_member(shape, data):
    """A member write(f): the header np.save writes for float32 of shape,
    then data (bytes), however many."""
    def write(f):
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(data)
    return write


def _raw_member(version, length, header):
    """A member write(f): the .npy magic, version, a header length field
    (claiming whatever length) and the header text."""
    def write(f):
        f.write(np.lib.format.MAGIC_PREFIX + bytes(version)
                + length.to_bytes(2 if version == (1, 0) else 4, "little") + header.encode("latin1"))
    return write


def _flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


UNBALANCED_HEADER = "{'descr': '<f4', 'shape': (5, 6".ljust(47) + "\n"
NESTED_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': " + "-" * 5000 + "5}"
W1_BYTES = 5 * 6 * 4
DAMAGES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "flipped bytes": _flip_bytes,
    "object member": lambda path: _rewrite(
        path, W1=lambda f: np.save(f, np.full((5, 6), None, object), allow_pickle=True)),
    # 6e12 columns (120 TB) over 30 floats of data
    "huge header": lambda path: _rewrite(path, W1=_float32_member((5, 6 * 10**12), bytes(W1_BYTES))),
    "text": lambda path: path.write_text("not an archive"),
    "truncated member": lambda path: _rewrite(path, W1=_float32_member((5, 6), bytes(W1_BYTES - 40))),
    "bytes after the array": lambda path: _rewrite(
        path, W1=_float32_member((5, 6), bytes(W1_BYTES) + b"extra")),
    "header length past the member": lambda path: _rewrite(
        path, W1=_raw_member((2, 0), 2**32 - 1, "{'descr': '<f4'")),
    "unbalanced header": lambda path: _rewrite(
        path, W1=_raw_member((1, 0), len(UNBALANCED_HEADER), UNBALANCED_HEADER)),
    "header nested too deep": lambda path: _rewrite(
        path, W1=_raw_member((1, 0), len(NESTED_HEADER), NESTED_HEADER)),
    "bzip2 members": lambda path: _rewrite(path, zipfile.ZIP_BZIP2),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_parameter_file_is_a_clear_error(tmp_path, monkeypatch, damage):
    """A truncated, corrupted or hostile parameter file: a ValueError naming
    the file, never unpickling or reading what its header claims (each read
    from a member asks for at most 64 KiB, so a compressed one cannot inflate
    gigabytes either); the model keeps its parameters."""
    path = tmp_path / "model.npz"
    FullyConnectedNet([6], input_dim=5, num_classes=3, seed=0).save(path)
    DAMAGES[damage](path)
    model = FullyConnectedNet([6], input_dim=5, num_classes=3, seed=1)
    before = {name: array.copy() for name, array in model.params.items()}
    requested = []
    read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: requested.append(n) or read(self, n))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        model.load(path)
    assert all(0 <= n <= 1 << 16 for n in requested), requested
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, before[name])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_is_not_a_parameter_file():
    """/dev/zero as the parameter file: a ValueError naming it, where zipfile
    would read it until memory runs out (the child's memory is capped, so
    that fails fast)."""
    r = child_json(CAP_ADDRESS_SPACE + """
import json
from fastfc.models import FullyConnectedNet
model = FullyConnectedNet([6], input_dim=5, num_classes=3, seed=0)
cap_address_space(1 << 30)
try:
    model.load("/dev/zero")
    print(json.dumps(["loaded", ""]))
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
""")
    assert r[0] == "ValueError" and "/dev/zero" in r[1], r


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
    """The full run (about 10x the default one): `pytest -m slow`."""
    check_rss_flat(10_000)


# ---- files, model descriptions and the command line, second pass (issue 17) -------------
# Reading only regular files (a FIFO never blocks a read), saves that keep
# what they replace, stale temporaries, SIGTERM, and the command line's
# allocations bounded by checked numbers. A hang is the failure mode of
# several: those run in children with a timeout.

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small digits model saved by `fastfc train --save` (in-process): its .npz path."""
    from fastfc import cli

    model = tmp_path_factory.mktemp("saved") / "model.npz"
    assert cli.main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--threads", "1",
                     "--save", str(model)]) == 0
    return model


# Child code reading a special file: a FIFO at `special` (also special.gz,
# special.npy), saved models whose descriptions are a FIFO (fifo_model) or
# /dev/zero (zero_model). Each prints [exception type or exit status,
# message or stderr].
SPECIAL_FILE_READS = {
    "Sequential.load": """
from fastfc.models import FullyConnectedNet
FullyConnectedNet([8], input_dim=64, num_classes=10).load(special)""",
    "datasets.read_idx": """
from fastfc import datasets
datasets.read_idx(special, 1)""",
    "datasets.read_idx of a .gz": """
from fastfc import datasets
datasets.read_idx(special + ".gz", 1)""",
    "evaluate: the description is a FIFO": """
cli_main(["evaluate", "--model", fifo_model])""",
    "evaluate: the description is /dev/zero": """
cli_main(["evaluate", "--model", zero_model])""",
    "predict --input a FIFO": """
cli_main(["predict", "--model", model, "--input", special + ".npy"])""",
}
SPECIAL_FILE_CHILD = """
import contextlib, io, json
from fastfc import cli

def cli_main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(argv)
    print(json.dumps([status, err.getvalue()]))

try:
    exec(CODE)
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs")
@pytest.mark.parametrize("case", SPECIAL_FILE_READS)
def test_special_files_are_refused_not_read(saved_model, tmp_path, case):
    """A FIFO (whose open blocks until a writer comes) or /dev/zero (endless)
    where fastfc reads a parameter file, model description, data file or
    input: refused by its type at once, in a child with a timeout (and a
    memory cap), where it used to hang."""
    special = tmp_path / "special"
    for suffix in ("", ".gz", ".npy"):
        os.mkfifo(f"{special}{suffix}")
    for name in ("fifo", "zero"):
        shutil.copy(saved_model, tmp_path / f"{name}.npz")
    os.mkfifo(tmp_path / "fifo.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    paths = dict(special=str(special), fifo_model=str(tmp_path / "fifo.npz"),
                 zero_model=str(tmp_path / "zero.npz"), model=str(saved_model))
    code = (CAP_ADDRESS_SPACE + "cap_address_space(1 << 30)\n"
            + "".join(f"{name} = {value!r}\n" for name, value in paths.items())
            + SPECIAL_FILE_CHILD.replace("CODE", repr(SPECIAL_FILE_READS[case])))
    outcome, message = child_json(code, timeout=60)
    assert outcome in ("ValueError", 1), (outcome, message)
    assert "not a regular file" in message and len(message.strip().splitlines()) == 1, message


def test_ctrl_c_in_the_first_epoch_keeps_the_checkpoint(tmp_path):
    """The Solver's checkpoint is never replaced by the untrained parameters
    of a run interrupted before its first epoch ended."""
    checkpoint = tmp_path / "best.npz"
    checkpoint.write_bytes(b"an earlier run's checkpoint")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 20)).astype(np.float32)
    y = X[:, :3].argmax(axis=1)

    class InterruptedModel(FullyConnectedNet):
        calls = 0

        def loss(self, X, y=None):
            if y is not None:
                InterruptedModel.calls += 1
                if InterruptedModel.calls == 3:
                    raise KeyboardInterrupt
            return super().loss(X, y)
    solver = Solver(InterruptedModel([16], input_dim=20, num_classes=3, seed=0),
                    dict(X_train=X[:250], y_train=y[:250], X_val=X[250:], y_val=y[250:]),
                    batch_size=25, checkpoint_name=str(checkpoint), verbose=False, seed=0)
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    assert solver.interrupted and solver.epoch == 0
    assert checkpoint.read_bytes() == b"an earlier run's checkpoint"


SIGTERM_DURING_SAVE = """
import os, signal, sys
import numpy as np
from fastfc import cli

real_savez = np.savez

def savez_terminated_midway(f, **arrays):
    os.kill(os.getpid(), signal.SIGTERM)
    real_savez(f, **arrays)

np.savez = savez_terminated_midway
sys.exit(cli.main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--threads", "1", "--save", MODEL]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sends SIGTERM to a child")
def test_sigterm_during_a_save_leaves_no_temporary(saved_model, tmp_path):
    """SIGTERM arriving while the model is written: held until both files
    are written (a save stopped halfway could leave new parameters beside
    the old description), then the command ends as interrupted; no
    temporary file is left (SIGTERM used to kill the process, leaving a
    model-sized hidden file)."""
    model = shutil.copy(saved_model, tmp_path / "model.npz")
    shutil.copy(saved_model.with_suffix(".json"), tmp_path / "model.json")
    proc = run_python(SIGTERM_DURING_SAVE.replace("MODEL", repr(str(model))), timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert f"saved {model}, {tmp_path / 'model.json'}" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.npz"]
    from fastfc import cli
    assert cli.main(["evaluate", "--model", str(model)]) == 0  # the pair belongs together


WRITER_STOPPED_MIDWAY = """
import time
from fastfc.io import write_atomically

def write(f):
    f.write(b"half a model")
    f.flush()
    print("writing", flush=True)
    time.sleep(600)

write_atomically(PATH, write)
"""
SAVER = """
import numpy as np
from fastfc.io import save_arrays
save_arrays(PATH, {"W1": np.zeros(3)})
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills a child")
def test_a_killed_writers_temporary_is_removed_by_the_next_save(tmp_path):
    """A writer still writing keeps its temporary through another process's
    save; once it is killed (SIGKILL: no cleanup), the next save by a
    process started after it removes the temporary."""
    path = repr(str(tmp_path / "model.npz"))
    writer = start_python(WRITER_STOPPED_MIDWAY.replace("PATH", path))
    try:
        assert writer.stdout.readline().strip() == "writing", writer.stderr.read()
        temporary = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        assert len(temporary) == 1
        assert run_python(SAVER.replace("PATH", path)).returncode == 0
        assert sorted(os.listdir(tmp_path)) == sorted(temporary + ["model.npz"])  # alive: kept
    finally:
        writer.kill()
        writer.communicate()
    assert run_python(SAVER.replace("PATH", path)).returncode == 0
    assert os.listdir(tmp_path) == ["model.npz"]


HOSTILE_SIZE_CHILD = """
import contextlib, io, json
from fastfc import cli
cap_address_space(256 << 20)
err = io.StringIO()
try:
    with contextlib.redirect_stderr(err):
        status = cli.main(["evaluate", "--model", MODEL])
    print(json.dumps([status, err.getvalue()]))
except BaseException as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


@pytest.mark.skipif(not LINUX_PROC, reason="caps the child's address space")
@pytest.mark.parametrize("hidden", [[30_000_000], [2**31 - 1]])
def test_description_sizes_are_checked_against_the_file_before_allocating(saved_model, tmp_path, hidden):
    """A description whose widths disagree with the parameter file's headers
    (7.7 GB or 550 GB of weights declared beside 2 KB of them) is refused
    from the headers, before the network is allocated (the child's memory is
    capped at 256 MB above its start, so an allocation fails the test)."""
    model = shutil.copy(saved_model, tmp_path / "model.npz")
    with open(saved_model.with_suffix(".json")) as f:
        spec = json.load(f)
    with open(tmp_path / "model.json", "w") as f:
        json.dump(dict(spec, hidden=hidden), f)
    status, err = child_json(CAP_ADDRESS_SPACE + HOSTILE_SIZE_CHILD.replace("MODEL", repr(str(model))))
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert "does not fit its description" in err and f"(64, {hidden[0]})" in err, err


SEARCH_WITHOUT_END = """
import sys
from fastfc import cli
cap_address_space(1 << 30)
sys.exit(cli.main(["search", "--trials", "1000000000", "--epochs", "1", "--hidden-choices", "8",
                   "--threads", "1"]))
"""


@pytest.mark.skipif(not LINUX_PROC, reason="caps the child's address space and sends SIGINT")
def test_search_of_a_billion_trials_starts_at_once():
    """`fastfc search --trials 1000000000` draws its trials as it runs them:
    the first trial's line comes within seconds (it used to draw all of
    them first: silent, then out of memory), and Ctrl-C ends it as usual."""
    search = start_python(CAP_ADDRESS_SPACE + SEARCH_WITHOUT_END)
    deadline = threading.Timer(120, search.kill)  # a silent child fails the test, never hangs it
    deadline.start()
    try:
        first = search.stdout.readline()
        search.send_signal(signal.SIGINT)
        _, err = search.communicate(timeout=60)
    finally:
        deadline.cancel()
        search.kill()
    assert re.match(r"trial +1/1000000000 ", first), err[-2000:]
    assert search.returncode == 130 and "search interrupted after" in err, err[-2000:]
