"""One data-parallel training run for tests/test_distributed.py, started as
    mpiexec -n N python -m mpi4py tests/mpi_train.py CONFIG_JSON
Trains the digits MLP with DataParallelSolver (or, with "loop", an object-API
loop over DataParallel) and writes what the test compares to config['out']."""
import json
import os
import sys

import numpy as np

from fastfc import datasets, optim
from fastfc import functional as F
from fastfc.layers import Dropout
from fastfc.distributed import DataParallel, DataParallelSolver, rank, world_size
from fastfc.models import FullyConnectedNet


def digits():
    data = datasets.load_digits(seed=0)
    return {k: v.reshape(len(v), -1) if k.startswith("X") else v for k, v in data.items()}


def model(dropout=0.0, fresh_masks=False):
    """The digits MLP; with dropout, one mask for every step (an int seed) or,
    fresh_masks, a new one per forward drawn from a seeded generator."""
    seed = np.random.default_rng(0) if fresh_masks else 0
    return FullyConnectedNet([32], input_dim=64, num_classes=10, dropout=dropout, weight_scale=None,
                             seed=seed)


def dropout_masks(net, X):
    """Which elements each Dropout layer keeps in a training forward of X (the
    mask its backward would apply)."""
    net.train()
    for layer in net.layers:
        X = layer.forward(X)
    return [F.dropout_backward(np.ones(layer._cache[3], layer._cache[4]), layer._cache) != 0
            for layer in net.layers if isinstance(layer, Dropout)]


def main(config):
    out = config["out"]
    me = rank()
    if config.get("pid_dir"):
        with open(os.path.join(config["pid_dir"], f"rank{me}.pid"), "w") as f:
            f.write(str(os.getpid()))
    data = digits()
    net = model(config.get("dropout", 0.0), config.get("fresh_masks", False))
    if config.get("loop"):
        return object_api_loop(net, data, config)
    if config.get("masks"):
        return first_step_masks(net, data, config)
    snapshots = {}

    def on_epoch_end(solver, record):
        for name, array in net.params.items():
            snapshots[f"epoch{record['epoch']}.{name}"] = array.copy()
        if record["epoch"] == config.get("stop_after_epoch"):
            solver.request_stop()

    step = [0]
    running = []  # the solver, once built

    def augment(X, rng):
        step[0] += 1
        if step[0] == config.get("stop_at_step"):
            running[0].request_stop()  # this step's reduction stops every rank, before its update
        if step[0] == config.get("nan_step") and me == world_size() - 1:
            X[-1] = np.nan  # a row of the last rank's share
        return X

    lr = config.get("lr", 1e-2) * (2 if config.get("rank_dependent_lr") and me == 1 else 1)
    outcome = "finished"
    try:
        solver = DataParallelSolver(
            net, data, update_rule="adam", optim_config={"learning_rate": lr}, batch_size=64,
            num_epochs=config["epochs"], seed=0, verbose=False, on_epoch_end=on_epoch_end,
            augment=augment, reduction=config.get("reduction", "allreduce"),
            state_path=config.get("state_path"), resume=config.get("resume", False),
            checkpoint_name=config.get("checkpoint"))
        running.append(solver)
        solver.train()
    except FloatingPointError:
        outcome = "nan"
    except KeyboardInterrupt:
        outcome = "stopped"
    except ValueError as exc:
        outcome = f"refused: {exc}"
        solver = None
    steps = len(solver.loss_history) if solver is not None else 0
    np.savez(f"{out}.rank{me}.npz", **snapshots)
    with open(f"{out}.rank{me}.json", "w") as f:
        json.dump({"outcome": outcome, "steps": steps, "batches_run": step[0],
                   "losses": solver.loss_history if solver is not None else []}, f)


def first_step_masks(net, data, config):
    """Writes the dropout masks of a training forward of this rank's rows of
    the first 64 training rows (a global batch)."""
    parallel = DataParallel(net)
    X = data["X_train"][:64].astype(np.float32)
    lo, hi = parallel.shard_bounds(len(X))
    np.savez(f"{config['out']}.rank{rank()}.npz",
             **{f"mask{i}": mask for i, mask in enumerate(dropout_masks(net, X[lo:hi]))})
    with open(f"{config['out']}.rank{rank()}.json", "w") as f:
        json.dump({"outcome": "finished", "rows": [lo, hi]}, f)


def object_api_loop(net, data, config):
    """The same training written as a loop over the object API."""
    parallel = DataParallel(net)
    optimizer = optim.Adam(net.param_groups(0.0), lr=config.get("lr", 1e-2))
    rng = np.random.default_rng(0)
    X, y = data["X_train"].astype(np.float32), data["y_train"]
    snapshots = {}
    for epoch in range(1, config["epochs"] + 1):
        order = rng.permutation(len(X))
        for start in range(0, len(X), 64):
            index = order[start:start + 64]
            lo, hi = parallel.shard_bounds(len(index))
            loss = net._loss_into_grads(X[index[lo:hi]], y[index[lo:hi]])
            loss, stop = parallel.allreduce(loss, hi - lo, len(index))
            optimizer.step()
        for name, array in net.params.items():
            snapshots[f"epoch{epoch}.{name}"] = array.copy()
    np.savez(f"{config['out']}.rank{rank()}.npz", **snapshots)
    with open(f"{config['out']}.rank{rank()}.json", "w") as f:
        json.dump({"outcome": "finished", "steps": 0, "losses": []}, f)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
