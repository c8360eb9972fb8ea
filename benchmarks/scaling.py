"""Beyond one machine, measured (numbers in benchmarks/README.md, "More than one machine").

    python benchmarks/scaling.py search [FASHION_DIR]  # trials/min: --jobs 1, --jobs 2, Dask local:2
    python benchmarks/scaling.py prune [FASHION_DIR]  # 64 trials, with and without successive halving
    python benchmarks/scaling.py dataparallel    # samples/s: 1 rank x 2 threads vs 2 ranks x 1 thread
    python benchmarks/scaling.py allreduce       # MPI Allreduce bandwidth, 1 KB .. 64 MB, 2 ranks

The MPI parts start mpiexec (the mpich wheel's) on this script itself.
"""
import itertools
import json
import shutil
import subprocess
import sys
import time

import numpy as np


def _space():
    from fastfc.search import Choice, LogUniform
    return {"lr": LogUniform(1e-3, 3e-1), "weight_decay": LogUniform(1e-6, 1e-2), "hidden": Choice([64, 128])}


def _digits():
    from fastfc import datasets
    return datasets.load_digits(seed=0)


def _fashion_subset(directory, train=10000):
    """Fashion-MNIST with its first train training images (10,000 keep a
    64-trial search to minutes on 2 cores) and 2,000 for validation."""
    from fastfc import datasets
    fashion = datasets.load_mnist(directory, val_size=2000, seed=0, names=datasets.FASHION_MNIST_CLASSES)
    return {"X_train": fashion["X_train"][:train], "y_train": fashion["y_train"][:train],
            "X_val": fashion["X_val"], "y_val": fashion["y_val"]}


def search_throughput(fashion_dir=None, trials=24, epochs=2):
    """Trials per minute (1 fastfc thread each) on Fashion-MNIST MLP trials
    (digits without the directory), wall time including the workers' start."""
    from fastfc.search import DaskWorkers, LocalWorkers, executor_search, mlp_trial

    data = _fashion_subset(fashion_dir) if fashion_dir else _digits()
    runs = [("--jobs 1", lambda: LocalWorkers(1)), ("--jobs 2", lambda: LocalWorkers(2)),
            ("--workers local:2", lambda: DaskWorkers(local=2))]
    results = {}
    for name, make in runs:
        started = time.perf_counter()
        with make() as workers:
            result = executor_search(mlp_trial, data, _space(), trials=trials, seed=0, executor=workers,
                                     fixed={"epochs": epochs})
            done = time.perf_counter()
        results[name] = result
        busy = sum(r["seconds"] for r in result.trials)
        print(f"{name:>18}: {trials / (done - started) * 60:7.1f} trials/min including the workers' "
              f"start ({done - started:.1f} s; {busy / trials:.2f} s per trial inside the workers; "
              f"best val acc {result.best['val_acc']:.4f})", flush=True)
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in res.trials] for res in results.values()]
    print("identical records:", all(s == strip[0] for s in strip))


def prune(fashion_dir=None, trials=64, epochs=9, seeds=range(8), lr_decays=(1.0, 0.8)):
    """64 trials on 2 local workers, the full search against successive
    halving (eta 3, promoted trials continuing from their rung), for each
    search seed and learning-rate decay per epoch: wall time (the workers
    already started: a search's own time) and best validation accuracy."""
    from fastfc.search import LocalWorkers, executor_search, mlp_trial

    sets = [("digits", _digits())]
    if fashion_dir:
        sets.append(("fashion-mnist (10k train)", _fashion_subset(fashion_dir)))
    print("data | lr decay | seed | full s | pruned s | pruned / full | trial-epochs | best val acc full "
          "(trial) | pruned (trial)")
    for name, data in sets:
        with LocalWorkers(2) as workers:
            workers.scatter(data)
            list(workers.executor.map(time.sleep, [0.5] * 2))  # both workers started
            for lr_decay, seed in itertools.product(lr_decays, seeds):
                runs = {}
                for pruned in (False, True):
                    started = time.perf_counter()
                    result = executor_search(mlp_trial, data, _space(), trials=trials, seed=seed, executor=workers,
                                             fixed={"epochs": epochs, "lr_decay": lr_decay}, prune=pruned)
                    runs[pruned] = (time.perf_counter() - started, result)
                (full_s, full), (pruned_s, pruned) = runs[False], runs[True]
                trained = sum(r["epochs"] for r in pruned.trials)  # each up to the budget it reached, once
                print(f"{name} | {lr_decay:g} | {seed} | {full_s:.2f} | {pruned_s:.2f} | {pruned_s / full_s:.0%} | {trained} | "
                      f"{full.best['val_acc']:.4f} ({full.best['number']}) | "
                      f"{pruned.best['val_acc']:.4f} ({pruned.best['number']})", flush=True)


# ---------------------------------------------------------------- MPI parts (run on each rank)

def _mlp(dims, seed=0):
    from fastfc.models import FullyConnectedNet
    return FullyConnectedNet(list(dims[1:-1]), input_dim=dims[0], num_classes=dims[-1], weight_scale=None,
                             seed=seed)


def rank_dataparallel(dims, batch, threads, steps):
    """One rank's share: steps of a data-parallel object-API loop on random
    data; rank 0 prints samples/s and the allreduce's time per step."""
    import fastfc
    from fastfc import optim
    from fastfc.distributed import DataParallel

    fastfc.set_num_threads(threads)
    net = _mlp(dims)
    parallel = DataParallel(net)
    optimizer = optim.Adam(net.param_groups(0.0), lr=1e-3)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * 8, dims[0]), dtype=np.float32)
    y = rng.integers(0, dims[-1], batch * 8)
    reduce_seconds = 0.0
    for warm in (True, False):
        parallel.comm.Barrier()
        started = time.perf_counter()
        for step in range(2 if warm else steps):
            start = (step % 8) * batch
            lo, hi = parallel.shard_bounds(batch)
            loss = net._loss_into_grads(X[start + lo:start + hi], y[start + lo:start + hi])
            before = time.perf_counter()
            parallel.allreduce(loss, hi - lo, batch)
            if not warm:
                reduce_seconds += time.perf_counter() - before
            optimizer.step()
        parallel.comm.Barrier()
    seconds = time.perf_counter() - started
    if parallel.rank == 0:
        print(json.dumps({"samples_per_s": steps * batch / seconds, "step_ms": seconds / steps * 1e3,
                          "allreduce_ms": reduce_seconds / steps * 1e3,
                          "gradient_mb": parallel.grads.buffers[0].nbytes / 2**20}))


def rank_allreduce():
    """Allreduce bandwidth (in-place, float32) from 1 KB to 64 MB; rank 0 prints."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    for size in [2**k for k in range(10, 27, 2)]:
        buffer = np.ones(size // 4, dtype=np.float32)
        repeats = max(3, min(200, 2**24 // size))
        comm.Allreduce(MPI.IN_PLACE, buffer)
        comm.Barrier()
        started = time.perf_counter()
        for _ in range(repeats):
            comm.Allreduce(MPI.IN_PLACE, buffer)
        seconds = (time.perf_counter() - started) / repeats
        if comm.Get_rank() == 0:
            print(f"{size / 1024:>8.0f} KB: {seconds * 1e3:8.3f} ms, {size / seconds / 1e9:6.2f} GB/s "
                  f"(size / time; with 2 ranks also the bus bandwidth)", flush=True)


def _mpiexec(ranks, *args):
    mpiexec = shutil.which("mpiexec")
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout


def dataparallel():
    models = [("digits MLP 64-100-10, batch 200", (64, 100, 10), 200, 300),
              ("MLP 784-512-512-10, batch 256", (784, 512, 512, 10), 256, 40)]
    for name, dims, batch, steps in models:
        for ranks, threads in ((1, 2), (2, 1), (1, 2), (2, 1)):  # interleaved, twice
            out = json.loads(_mpiexec(ranks, "rank-dataparallel", ",".join(map(str, dims)), batch, threads,
                                      steps).strip().splitlines()[-1])
            print(f"{name}: {ranks} rank(s) x {threads} thread(s): {out['samples_per_s']:9.0f} samples/s, "
                  f"step {out['step_ms']:.3f} ms, allreduce {out['allreduce_ms']:.3f} ms "
                  f"({out['allreduce_ms'] / out['step_ms']:.0%}), gradients {out['gradient_mb']:.2f} MB",
                  flush=True)


def main(argv):
    command = argv[0] if argv else "search"
    if command == "search":
        search_throughput(argv[1] if len(argv) > 1 else None)
    elif command == "prune":
        prune(argv[1] if len(argv) > 1 else None)
    elif command == "dataparallel":
        dataparallel()
    elif command == "allreduce":
        print(_mpiexec(2, "rank-allreduce"), end="")
    elif command == "rank-dataparallel":
        rank_dataparallel(tuple(int(d) for d in argv[1].split(",")), int(argv[2]), int(argv[3]), int(argv[4]))
    elif command == "rank-allreduce":
        rank_allreduce()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
