"""Training steps side by side, each contender in its own process (issue 14's
speed benchmark): the four networks of fastfc.bench.cases.TRAIN_STEP_NETWORKS
(forward, softmax cross-entropy, backward without the input's gradient, an Adam
step, on a fixed batch) and an epoch of the MLP 784-100-10 over 60,000 samples
at batch 64 (shuffle, gather, step), float32, the same initial weights.

Contenders (those not installed are left out):
- fastfc: fastfc.models.Sequential + fastfc.optim.Adam
- reference: fastfc.reference's NumPy functions + a NumPy Adam
- torch: PyTorch eager, nn.Sequential + torch.optim.Adam(fused=True)
- torch-compile: the same model through torch.compile (its compile time is
  left out of the timing)
- jax: JAX, the whole step (value_and_grad + optax.adam) under one jax.jit
- sklearn: scikit-learn's MLPClassifier, one partial_fit per batch (one Adam
  step on it), the MLPs only

Each (contender, workload) runs in a fresh process pinned to --threads cores,
its libraries told to use as many threads; the processes are interleaved in
rounds (the contender order rotating), and each row reports the best round's
median. Every contender's first two losses are checked against the
reference's before anything is timed. For the GEMM-bound MLP steps the table
also gives the step's time over its arithmetic at the machine's large-GEMM
rate (SciPy's sgemm on 2048^3, same threads, its own process).

    python benchmarks/contenders.py [--rounds 5] [--threads 2] [--seconds 1]
        [--workload TEXT] [--contender NAME] [--json PATH]
    pip install jax optax   # the optional JAX contender
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

CONTENDERS = ("fastfc", "reference", "torch", "torch-compile", "jax", "sklearn")
EPOCH = ("epoch 784-100-10", (784, 100, 10), 64, 60_000)  # name, dims, batch, samples
CHECK_RTOL = 2e-3  # float32 losses of the first two steps, all from the same weights


# ------------------------------------------------------------------ the workloads

def workloads():
    """name -> (network layer plan, batch, samples or None for a step)."""
    from fastfc.bench.cases import TRAIN_STEP_NETWORKS
    from fastfc.bench.networks import mlp

    chosen = {name: (net, batch, None) for name, net, batch in TRAIN_STEP_NETWORKS}
    name, dims, batch, samples = EPOCH
    chosen[name] = (mlp(*dims), batch, samples)
    return chosen


def is_mlp(net):
    return all(kind in ("flatten", "linear", "relu") for kind, _ in net)


def step_flops(net, batch):
    """Multiply-adds x 2 of an MLP step's GEMMs: each layer's forward and weight
    gradient, and the input gradient of every layer but the first."""
    linear = [sizes for kind, sizes in net if kind == "linear"]
    return sum(2 * batch * d_in * d_out * (2 if i == 0 else 3)
               for i, (d_in, d_out) in enumerate(linear))


def available(contender, net):
    """Whether this contender can run this network here."""
    modules = {"torch": "torch", "torch-compile": "torch", "jax": "optax", "sklearn": "sklearn"}
    if contender == "sklearn" and not is_mlp(net):
        return False
    if contender in modules:
        import importlib.util
        return importlib.util.find_spec(modules[contender]) is not None
    return True


# ------------------------------------------------------------------ one contender's step

def make_step(contender, net, batch, samples, seed=0):
    """A zero-argument callable running one step (or one epoch) of the
    contender and returning its loss (the epoch's mean loss)."""
    from fastfc.bench.cases import random_batch, synthetic_classification, Setup
    from fastfc.bench.networks import init_params

    setup = Setup(np.float32, np.random.default_rng(seed), None, False)
    params = init_params(net, np.float32, seed)
    if samples is None:
        x, y = random_batch(setup, net, batch)
    else:
        linear = [sizes for kind, sizes in net if kind == "linear"]
        x, y = synthetic_classification(samples, linear[0][0], linear[-1][1], np.float32, seed)
    step = STEP_MAKERS[contender](net, params, batch)
    if samples is None:
        return lambda: step(x, y)
    order_rng = np.random.default_rng(seed)

    def epoch():
        order, total = order_rng.permutation(samples), 0.0
        for start in range(0, samples, batch):
            index = order[start:start + batch]
            total += step(*gather(x, y, index)) * len(index)
        return total / samples
    if contender in GATHERS:
        gather = GATHERS[contender]()
    else:
        def gather(x_, y_, index):
            return x_[index], y_[index]
    return epoch


def numpy_step(cls):
    def make(net, params, batch):
        from fastfc.bench.networks import FastfcNet, ReferenceNet
        model = FastfcNet(net, params, np.float32) if cls == "fastfc" else ReferenceNet(net, params)
        return model.step
    return make


def torch_step(compiled):
    def make(net, params, batch):
        import torch
        from fastfc.bench.networks import TorchNet
        model = TorchNet(torch, net, params, np.float32)
        forward = torch.compile(model.model) if compiled else model.model

        def step(xb, yb):
            model.optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(forward(xb), yb)
            loss.backward()
            model.optimizer.step()
            return loss.item()
        return lambda xb, yb: step(torch.from_numpy(xb), torch.from_numpy(yb))
    return make


def jax_step(net, params, batch):
    import jax
    import jax.numpy as jnp
    import optax
    from fastfc.bench.baselines import LEARNING_RATE

    weights = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]

    def forward(ws, h):
        layer = 0
        for kind, sizes in net:
            if kind == "linear":
                w, b = ws[layer]
                h, layer = h @ w + b, layer + 1
            elif kind == "conv":
                w, b = ws[layer]
                h = jax.lax.conv_general_dilated(h, w, (1, 1), [(sizes[3], sizes[3])] * 2,
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h, layer = h + b[None, :, None, None], layer + 1
            elif kind == "relu":
                h = jax.nn.relu(h)
            elif kind == "pool":
                s = sizes[0]
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, s, s), (1, 1, s, s),
                                          "VALID")
            else:
                h = h.reshape(h.shape[0], -1)
        return h

    def loss_fn(ws, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(forward(ws, xb), yb).mean()

    optimizer = optax.adam(LEARNING_RATE)
    state = [weights, optimizer.init(weights)]

    @jax.jit
    def update(ws, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(ws, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, ws)
        return optax.apply_updates(ws, updates), opt_state, loss

    def step(xb, yb):
        state[0], state[1], loss = update(state[0], state[1], xb, yb)
        return float(loss)  # waits for the step
    return step


def sklearn_step(net, params, batch):
    from sklearn.neural_network import MLPClassifier
    from fastfc.bench.baselines import LEARNING_RATE

    hidden = tuple(sizes[1] for kind, sizes in net if kind == "linear")[:-1]
    n_features, n_classes = params[0][0].shape[0], params[-1][0].shape[1]
    est = MLPClassifier(hidden, solver="adam", alpha=0.0, batch_size=batch, shuffle=False,
                        learning_rate_init=LEARNING_RATE, random_state=0)
    # a first call makes the estimator; its weights are replaced below
    est.partial_fit(np.zeros((1, n_features), np.float32), [0], classes=np.arange(n_classes))
    # Start from the shared weights with a fresh Adam: scikit-learn makes one
    # over the current coefs_ when it has none (a private attribute).
    est.coefs_ = [w.copy() for w, _ in params]
    est.intercepts_ = [b.copy() for _, b in params]
    del est._optimizer

    def step(xb, yb):
        est.partial_fit(xb, yb)  # batch_size = len(xb): one Adam step
        return float(est.loss_)
    return step


STEP_MAKERS = {"fastfc": numpy_step("fastfc"), "reference": numpy_step("reference"),
               "torch": torch_step(False), "torch-compile": torch_step(True), "jax": jax_step,
               "sklearn": sklearn_step}


def fastfc_gather():
    """fastfc's epoch gathers into buffers made once (as its Solver does)."""
    from fastfc.functional import gather_rows  # only in fastfc's process
    buffers = {}

    def gather(x, y, index):
        n = len(index)
        if n not in buffers:
            buffers[n] = (np.empty((n, x.shape[1]), x.dtype), np.empty(n, y.dtype))
        xb, yb = buffers[n]
        gather_rows(x, index, out=xb)
        np.take(y, index, out=yb, mode="clip")
        return xb, yb
    return gather


# contender -> a function making its gather (called in that contender's process only)
GATHERS = {"fastfc": fastfc_gather}


# ------------------------------------------------------------------ the worker process

def set_threads(contender, threads):
    """Every library this contender touches uses `threads` threads."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if contender == "fastfc":
        import fastfc
        fastfc.set_num_threads(threads)
    if contender.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)


def worker(contender, workload, threads, seconds):
    """Checks two steps, warms up, then times back-to-back calls for about
    `seconds`; prints {"losses": [...], "times_ms": [...]} as JSON."""
    if contender == "gemm":
        return large_gemm_rate(threads, seconds)
    net, batch, samples = workloads()[workload]
    set_threads(contender, threads)
    step = make_step(contender, net, batch, samples)
    losses = [step(), step()]  # from the shared initial weights: checked by the driver
    warm_until = time.perf_counter() + min(0.3 * seconds, 2.0)
    while time.perf_counter() < warm_until:
        step()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"losses": losses, "times_ms": times}))


def large_gemm_rate(threads, seconds):
    """SciPy's sgemm (the BLAS fastfc calls) on a 2048^3 product: GFLOP/s."""
    from scipy.linalg.blas import sgemm
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    n = 2048
    a = np.asfortranarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    sgemm(1.0, a, a)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        sgemm(1.0, a, a)
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"losses": [], "times_ms": times, "gflops": 2 * n**3 / min(times) / 1e6}))


# ------------------------------------------------------------------ the driver

def run_worker(contender, workload, threads, seconds):
    """One worker process pinned to `threads` cores; its JSON, or None when it failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OPENBLAS_THREAD_TIMEOUT="4",
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    cores = sorted(os.sched_getaffinity(0))[:threads]
    cmd = [sys.executable, __file__, "--worker", contender, workload, "--threads", str(threads),
           "--seconds", str(seconds)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))
    if result.returncode != 0:
        print(f"  {contender} / {workload} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def drive(args):
    chosen = {name: spec for name, spec in workloads().items()
              if not args.workload or any(t.lower() in name.lower() for t in args.workload)}
    contenders = args.contender or list(CONTENDERS)
    if not chosen:
        raise SystemExit(f"--workload {args.workload} matches none of {list(workloads())}")
    plan = {name: [c for c in contenders if available(c, spec[0])] for name, spec in chosen.items()}
    medians = {(name, c): [] for name, cs in plan.items() for c in cs}
    reference_losses, failures = {}, {}
    gemm_rates = []
    for round_ in range(args.rounds):
        gemm = run_worker("gemm", "", args.threads, min(args.seconds, 1.0))
        if gemm:
            gemm_rates.append(gemm["gflops"])
        for name, cs in plan.items():
            shift = round_ % len(cs)
            for c in cs[shift:] + cs[:shift]:
                if (name, c) in failures:
                    continue
                out = run_worker(c, name, args.threads, args.seconds)
                if out is None:
                    failures[(name, c)] = "failed"
                    continue
                if c == "reference":
                    reference_losses[name] = out["losses"]
                medians[(name, c)].append(statistics.median(out["times_ms"]))
                medians[(name, c, "losses")] = out["losses"]
            print(f"round {round_ + 1}/{args.rounds}: {name} done", file=sys.stderr)
    # losses against the reference's (same weights, same data)
    for (name, c, *rest), value in list(medians.items()):
        if rest and name in reference_losses:
            want = np.array(reference_losses[name])
            if not np.allclose(value, want, rtol=CHECK_RTOL * (10 if chosen[name][2] else 1)):
                failures[(name, c)] = f"losses {value} differ from the reference's {list(want)}"
    return report(chosen, plan, medians, failures, max(gemm_rates, default=None), args)


def report(chosen, plan, medians, failures, gemm_rate, args):
    rows = []
    for name, cs in plan.items():
        net, batch, samples = chosen[name]
        best = {c: min(medians[(name, c)]) for c in cs
                if medians[(name, c)] and (name, c) not in failures}
        others = {c: t for c, t in best.items() if c != "fastfc"}
        fastest = min(others, key=others.get) if others else None
        row = {"workload": name, "batch": batch, "samples": samples, "best_ms": best,
               "fastest_other": fastest,
               "ratio": others[fastest] / best["fastfc"] if fastest and "fastfc" in best else None,
               "failures": {c: why for (n, c), why in failures.items() if n == name}}
        if is_mlp(net) and samples is None and gemm_rate and "fastfc" in best:
            arithmetic_ms = step_flops(net, batch) / gemm_rate / 1e6
            row["arithmetic_ms"] = arithmetic_ms
            row["fastfc_over_arithmetic"] = best["fastfc"] / arithmetic_ms
        rows.append(row)
    names = [c for c in CONTENDERS if any(c in r["best_ms"] for r in rows)]
    print(f"threads {args.threads}, {args.rounds} rounds, best round's median (ms); "
          f"large sgemm {gemm_rate:.0f} GFLOP/s" if gemm_rate else "")
    print("| workload | " + " | ".join(names) + " | fastfc vs fastest other | fastfc / arithmetic |")
    print("| --- " * (len(names) + 3) + "|")
    for r in rows:
        cells = [f"{r['best_ms'][c]:.3g}" if c in r["best_ms"] else "-" for c in names]
        ratio = f"{r['ratio']:.2f}x ({r['fastest_other']})" if r["ratio"] else "-"
        arith = f"{r['fastfc_over_arithmetic']:.2f}x" if "fastfc_over_arithmetic" in r else "-"
        print(f"| {r['workload']} b{r['batch']} | " + " | ".join(cells) + f" | {ratio} | {arith} |")
        for c, why in r["failures"].items():
            print(f"  {c}: {why}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rounds": args.rounds, "gemm_gflops": gemm_rate,
                       "rows": rows}, f, indent=1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="timed seconds per contender and round (after the warm-up)")
    parser.add_argument("--workload", action="append", help="only workloads whose name contains this")
    parser.add_argument("--contender", action="append", choices=CONTENDERS)
    parser.add_argument("--json", help="also write the rows as JSON")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker, args.threads, args.seconds)
    return drive(args)


if __name__ == "__main__":
    main()
