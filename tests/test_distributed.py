"""fastfc.distributed: data-parallel training over MPI, run for real with
mpiexec on loopback (the mpich wheel's). Every run has a hard timeout that
kills its whole process group, so a deadlock fails the test instead of
hanging the suite."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastfc import optim
from fastfc.layers import Dropout
from fastfc.distributed import FlatGradients, launched_by_mpiexec, rank, shard_bounds, world_size
from testutil import child_env

TESTS = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS, "mpi_train.py")
sys.path.insert(0, TESTS)
import mpi_train  # noqa: E402

# The mpich wheel's mpiexec sits next to the interpreter, which need not be on PATH.
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                        os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(MPIEXEC is None or not __import__("importlib").util.find_spec("mpi4py"),
                               reason="needs mpi4py and mpiexec (pip install 'fastfc[mpi]')")


def _command(ranks, config):
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py", SCRIPT, json.dumps(config)]


def _finish(process, timeout):
    """Waits for an mpiexec started in its own session; on timeout kills the
    whole group (mpiexec and its ranks) and fails."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"mpiexec did not finish within {timeout} s (a deadlock?)")
    return process.returncode, out, err


def _start(ranks, config):
    return subprocess.Popen(_command(ranks, config), env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_ranks(ranks, config, timeout=120):
    """Runs mpi_train.py on ranks ranks; returns each rank's (report, snapshots)."""
    code, out, err = _finish(_start(ranks, config), timeout)
    assert code == 0, err[-3000:]
    results = []
    for r in range(ranks):
        with open(f"{config['out']}.rank{r}.json") as f:
            report = json.load(f)
        with np.load(f"{config['out']}.rank{r}.npz") as archive:
            results.append((report, {k: archive[k] for k in archive.files}))
    return results


def accumulated_run(ranks, epochs, lr=1e-2, solver_draws=True, dropout=0.0, fresh_masks=False):
    """The one-process run a data-parallel run must equal bit for bit: each
    global batch's shards' gradients, each scaled by its share of the batch,
    summed in rank order, then one Adam step. solver_draws: also make the
    Solver's other draws: its first look at the scores (a dropout seed) and
    the train-accuracy subsample at each epoch's end. With dropout, each shard's forward draws the step's masks at
    its rows of the global batch, from the same seed (as every rank does).
    Returns {epochN.name: parameters at the end of epoch N}."""
    data = mpi_train.digits()
    net = mpi_train.model(dropout, fresh_masks)
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    optimizer = optim.Adam(net.param_groups(0.0), lr=lr)
    rng = np.random.default_rng(0)
    X, y = data["X_train"], data["y_train"]
    named = dict(net.named_parameters())
    if solver_draws:
        net.loss(X[:1])  # as the Solver's first look: dropout draws a seed even in eval mode
    snapshots = {}
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X))
        for start in range(0, len(X), 64):
            index = order[start:start + 64]
            Xb, yb = X[index].astype(np.float32), y[index]
            total = {}
            fresh = [layer for layer in dropouts if not layer.same_mask]
            step_start = [layer._rng.bit_generator.state for layer in fresh]
            for r in range(ranks):
                lo, hi = shard_bounds(len(index), r, ranks)
                for layer in dropouts:
                    layer.first_row = lo
                for layer, state in zip(fresh, step_start):  # every rank draws the step's seeds
                    layer._rng.bit_generator.state = state
                net._loss_into_grads(Xb[lo:hi], yb[lo:hi])
                for name, p in named.items():
                    share = p.grad * p.grad.dtype.type((hi - lo) / len(index))
                    total[name] = share if r == 0 else total[name] + share
            for name, p in named.items():
                p.grad[...] = total[name]
            optimizer.step()
        for name, p in named.items():
            snapshots[f"epoch{epoch}.{name}"] = p.data.copy()
        if solver_draws:
            rng.choice(len(X), 1000, replace=False)
    return snapshots


def assert_identical(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        assert np.array_equal(got[key], want[key]), key


def test_rank_and_world_come_from_the_launcher_environment(monkeypatch):
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (rank(), world_size(), launched_by_mpiexec()) == (0, 1, False)
    monkeypatch.setenv("PMI_RANK", "2")
    monkeypatch.setenv("PMI_SIZE", "3")
    assert (rank(), world_size(), launched_by_mpiexec()) == (2, 3, True)
    assert [shard_bounds(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [shard_bounds(1, r, 2) for r in range(2)] == [(0, 0), (0, 1)]


def test_gradients_become_views_of_one_flat_buffer():
    net = mpi_train.model()
    before = {name: p.grad.copy() for name, p in net.named_parameters()}
    flat = FlatGradients(net.parameters())
    assert len(flat.buffers) == 1 and flat.buffers[0].size == sum(p.size for p in net.parameters()) + 2
    for name, p in net.named_parameters():
        assert np.shares_memory(p.grad, flat.buffers[0]) and np.array_equal(p.grad, before[name])
    data = mpi_train.digits()
    net._loss_into_grads(data["X_train"][:8].astype(np.float32), data["y_train"][:8])
    assert np.any(flat.buffers[0][:-2] != 0) and not np.any(flat.control)  # backward wrote into the buffer


def test_importing_fastfc_imports_neither_mpi4py_nor_dask():
    code = ("import sys, fastfc, fastfc.distributed, fastfc.search; "
            "print([m for m in ('mpi4py', 'dask', 'distributed') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@needs_mpi
def test_two_ranks_equal_the_accumulated_one_process_run_bit_for_bit_and_repeat(tmp_path):
    want = accumulated_run(2, epochs=2)
    first = run_ranks(2, {"out": str(tmp_path / "a"), "epochs": 2})
    second = run_ranks(2, {"out": str(tmp_path / "b"), "epochs": 2})
    for report, snapshots in first + second:
        assert report["outcome"] == "finished"
        assert_identical(snapshots, want)
    assert first[0][0]["losses"] == second[0][0]["losses"] == first[1][0]["losses"]


@needs_mpi
def test_three_ranks_with_ordered_reduction_equal_the_accumulated_run(tmp_path):
    results = run_ranks(3, {"out": str(tmp_path / "a"), "epochs": 1, "reduction": "ordered"}, timeout=180)
    want = accumulated_run(3, epochs=1)
    for _, snapshots in results:
        assert_identical(snapshots, want)


@needs_mpi
def test_an_object_api_loop_made_data_parallel(tmp_path):
    results = run_ranks(2, {"out": str(tmp_path / "a"), "epochs": 2, "loop": True})
    want = accumulated_run(2, epochs=2, solver_draws=False)
    for _, snapshots in results:
        assert_identical(snapshots, want)


@needs_mpi
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    results = run_ranks(2, {"out": str(tmp_path / "a"), "epochs": 3, "nan_step": 5})
    assert [report["outcome"] for report, _ in results] == ["nan", "nan"]
    assert results[0][0]["steps"] == results[1][0]["steps"] == 4  # the losses before the NaN


@needs_mpi
def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    config = {"out": str(tmp_path / "a"), "epochs": 2000, "pid_dir": str(tmp_path)}
    process = _start(2, config)
    pid_file = tmp_path / "rank1.pid"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (pid_file.exists() and pid_file.read_text()):
        time.sleep(0.1)
    time.sleep(2)  # into training
    os.kill(int(pid_file.read_text()), signal.SIGINT)
    code, out, err = _finish(process, 60)
    assert code == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"a.rank{r}.json").read_text()) for r in range(2)]
    assert [r["outcome"] for r in reports] == ["stopped", "stopped"]
    assert reports[0]["steps"] == reports[1]["steps"] > 0


@needs_mpi
def test_a_killed_rank_ends_the_job_with_an_error_within_seconds(tmp_path):
    config = {"out": str(tmp_path / "a"), "epochs": 2000, "pid_dir": str(tmp_path),
              "state_path": str(tmp_path / "state.npz")}
    process = _start(2, config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "state.npz").exists():
        time.sleep(0.1)
    assert (tmp_path / "state.npz").exists()
    os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    code, out, err = _finish(process, 30)
    assert code != 0
    assert time.monotonic() - killed < 10
    with np.load(tmp_path / "state.npz") as archive:  # the last state is whole
        assert json.loads(str(archive["meta"]))["epoch"] >= 1


@needs_mpi
def test_resume_continues_bit_identically_and_refuses_another_world_size(tmp_path):
    state = str(tmp_path / "state.npz")
    whole = run_ranks(2, {"out": str(tmp_path / "whole"), "epochs": 4})
    stopped = run_ranks(2, {"out": str(tmp_path / "stopped"), "epochs": 4, "state_path": state,
                            "stop_after_epoch": 2, "checkpoint": str(tmp_path / "best.npz")})
    assert [report["outcome"] for report, _ in stopped] == ["stopped", "stopped"]
    assert os.path.exists(tmp_path / "best.npz")
    resumed = run_ranks(2, {"out": str(tmp_path / "resumed"), "epochs": 4, "state_path": state,
                            "resume": True})
    for (report, snapshots), (whole_report, whole_snapshots) in zip(resumed, whole):
        assert report["outcome"] == "finished"
        assert sorted(snapshots) == [k for k in sorted(whole_snapshots) if k.startswith(("epoch3", "epoch4"))]
        for key in snapshots:
            assert np.array_equal(snapshots[key], whole_snapshots[key]), key
        assert report["losses"] == whole_report["losses"]
    (report, _), = run_ranks(1, {"out": str(tmp_path / "one"), "epochs": 4, "state_path": state,
                                 "resume": True})
    assert report["outcome"].startswith("refused") and "on 2 ranks" in report["outcome"]


@needs_mpi
def test_a_run_stopped_mid_epoch_resumes_at_the_stopped_batch(tmp_path):
    """A stop in the middle of an epoch (step 30 of 4 epochs of 23 batches,
    with dropout drawing fresh masks) saves the state at that batch: the
    epoch's order, the batch, the loss summed so far and the random states
    it began with; the resumed run's steps, epochs and losses are those of
    the run that never stopped, bit for bit."""
    state = str(tmp_path / "state.npz")
    common = {"epochs": 3, "dropout": 0.3, "fresh_masks": True}
    whole = run_ranks(2, {"out": str(tmp_path / "whole"), **common})
    stopped = run_ranks(2, {"out": str(tmp_path / "stopped"), **common, "state_path": state,
                            "stop_at_step": 30})
    assert [report["steps"] for report, _ in stopped] == [29, 29]
    resumed = run_ranks(2, {"out": str(tmp_path / "resumed"), **common, "state_path": state,
                            "resume": True})
    for (report, snapshots), (whole_report, whole_snapshots) in zip(resumed, whole):
        assert report["outcome"] == "finished"
        assert report["batches_run"] == whole_report["batches_run"] - 29  # not from the epoch's start
        assert report["losses"] == whole_report["losses"]
        assert sorted(snapshots) == [k for k in sorted(whole_snapshots) if not k.startswith("epoch1")]
        for key in snapshots:
            assert np.array_equal(snapshots[key], whole_snapshots[key]), key


@needs_mpi
def test_resume_from_a_fifo_is_refused_not_waited_on(tmp_path):
    """The training state is read like every other file fastfc reads: a FIFO
    given as state_path is refused by its type (its open would wait for a
    writer forever)."""
    os.mkfifo(tmp_path / "state.npz")
    (report, _), = run_ranks(1, {"out": str(tmp_path / "a"), "epochs": 1,
                                 "state_path": str(tmp_path / "state.npz"), "resume": True}, timeout=60)
    assert report["outcome"].startswith("refused") and "not a regular file" in report["outcome"]


@needs_mpi
def test_ranks_started_with_different_arguments_are_refused(tmp_path):
    results = run_ranks(2, {"out": str(tmp_path / "a"), "epochs": 1, "rank_dependent_lr": True})
    for report, _ in results:
        assert report["outcome"].startswith("refused") and "other arguments" in report["outcome"]


# Fresh masks: one epoch, because the Solver's evaluation at an epoch's end
# also draws from the dropout stream, which accumulated_run does not mimic.
@needs_mpi
@pytest.mark.parametrize("fresh_masks, epochs", [(False, 2), (True, 1)], ids=["same-mask", "fresh-masks"])
def test_two_ranks_with_dropout_equal_the_accumulated_run(tmp_path, fresh_masks, epochs):
    config = {"out": str(tmp_path / "a"), "epochs": epochs, "dropout": 0.3, "fresh_masks": fresh_masks}
    want = accumulated_run(2, epochs=epochs, dropout=0.3, fresh_masks=fresh_masks)
    for report, snapshots in run_ranks(2, config):
        assert report["outcome"] == "finished"
        assert_identical(snapshots, want)
    assert not np.array_equal(want["epoch1.W1"], accumulated_run(2, epochs=1)["epoch1.W1"])  # dropout acted


@needs_mpi
def test_an_object_api_loop_with_dropout_equals_the_accumulated_run(tmp_path):
    results = run_ranks(2, {"out": str(tmp_path / "a"), "epochs": 2, "loop": True, "dropout": 0.3,
                            "fresh_masks": True})
    want = accumulated_run(2, epochs=2, solver_draws=False, dropout=0.3, fresh_masks=True)
    for _, snapshots in results:
        assert_identical(snapshots, want)


@needs_mpi
@pytest.mark.parametrize("fresh_masks", [False, True], ids=["same-mask", "fresh-masks"])
def test_the_ranks_masks_are_slices_of_the_global_batch_mask(tmp_path, fresh_masks):
    results = run_ranks(2, {"out": str(tmp_path / "a"), "masks": True, "dropout": 0.3,
                            "fresh_masks": fresh_masks})
    net = mpi_train.model(0.3, fresh_masks)
    whole, = mpi_train.dropout_masks(net, mpi_train.digits()["X_train"][:64].astype(np.float32))
    assert whole.shape == (64, 32) and 0 < whole.mean() < 1
    (first, first_masks), (second, second_masks) = results
    assert first["rows"] == [0, 32] and second["rows"] == [32, 64]
    np.testing.assert_array_equal(first_masks["mask0"], whole[:32])
    np.testing.assert_array_equal(second_masks["mask0"], whole[32:])
    assert not np.array_equal(first_masks["mask0"], second_masks["mask0"])  # the ranks' masks differ


def test_outside_mpiexec_the_launched_solver_is_a_plain_solver(monkeypatch):
    from fastfc import Solver
    from fastfc.distributed import DataParallelSolver, launched_solver
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    data = mpi_train.digits()
    solver = launched_solver(mpi_train.model(), data, num_epochs=1, seed=0, verbose=False)
    assert type(solver) is Solver and not isinstance(solver, DataParallelSolver)
    with pytest.raises(ValueError, match="data-parallel runs only"):
        launched_solver(mpi_train.model(), data, state_path="state.npz", seed=0)
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'fastfc\[mpi\]'"):
        launched_solver(mpi_train.model(), data, seed=0)
