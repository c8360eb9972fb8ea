"""fastfc.search: seeded draws from the search space (log-uniform learning
rate, weight decay and momentum), ranking on validation accuracy, and the
test set touched once, by the chosen model."""
import math

import numpy as np
import pytest

from fastfc.search import Choice, LogUniform, Uniform, random_search, rank, sample_trials

SPACE = {"lr": LogUniform(1e-4, 1e-1), "weight_decay": LogUniform(1e-6, 1e-2),
         "momentum": LogUniform(0.5, 0.99), "hidden": Choice([16, 32]), "dropout": Uniform(0, 0.5)}


def test_draws_stay_in_range_are_log_uniform_and_repeat_with_the_seed():
    trials = list(sample_trials(SPACE, 2000, seed=3))
    lrs = np.array([t["lr"] for t in trials])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # Log-uniform: each decade of [1e-4, 1e-1] gets about a third of the draws.
    assert all(abs(np.mean((lrs >= lo) & (lrs < lo * 10)) - 1 / 3) < 0.05 for lo in (1e-4, 1e-3, 1e-2))
    assert all(0.5 <= t["momentum"] <= 0.99 and t["hidden"] in (16, 32) for t in trials)
    assert list(sample_trials(SPACE, 5, seed=3)) == trials[:5]
    assert list(sample_trials(SPACE, 5, seed=4)) != trials[:5]
    assert list(sample_trials({"lr": LogUniform(0, 0), "fixed": 7}, 1, seed=0)) == [{"lr": 0.0, "fixed": 7}]


@pytest.mark.parametrize("make, message", [
    (lambda: LogUniform(0, 1e-2), "LOW > 0"),
    (lambda: LogUniform(1e-2, 1e-4), "LOW <= HIGH"),
    (lambda: Uniform(0, math.inf), "finite"),
    (lambda: Choice([]), "at least one option"),
    (lambda: sample_trials(SPACE, 0, seed=0), "trials must be a positive int"),
])
def test_bad_spaces_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_random_search_ranks_on_validation_and_tests_the_best_once():
    seen, tested = [], []

    def train(hyper):
        seen.append(hyper)
        if hyper["lr"] > 0.05:
            raise FloatingPointError("diverged")
        return {"lr": hyper["lr"]}, -abs(math.log10(hyper["lr"]) + 2.5)  # best near lr 10**-2.5

    result = random_search(train, SPACE, trials=12, seed=1, test=lambda model: tested.append(model) or 0.9)
    assert len(seen) == 12 and len(tested) == 1 and result.test == 0.9
    assert tested[0] is result.model and result.model["lr"] == result.best["lr"]
    finite = [t for t in result.trials if not t["diverged"]]
    assert [t["val_acc"] for t in finite] == sorted((t["val_acc"] for t in finite), reverse=True)
    assert all(t["diverged"] for t in result.trials[len(finite):])
    assert rank(result.trials) == result.trials


def test_a_search_where_every_trial_diverges_says_so():
    def diverge(hyper):
        raise FloatingPointError("the loss became NaN")
    with pytest.raises(FloatingPointError, match="every trial diverged"):
        random_search(diverge, SPACE, trials=2)


# ---------------------------------------------------------------- executor_search

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from fastfc import datasets
from fastfc.search import (SearchInterrupted, LocalWorkers, DaskWorkers, executor_search, mlp_trial,
                           successive_halving_rungs, trial_seed)
from testutil import child_env

import search_trials

TESTS = os.path.dirname(os.path.abspath(__file__))
SMALL_SPACE = {"lr": LogUniform(1e-3, 1e-1), "weight_decay": LogUniform(1e-6, 1e-3), "hidden": Choice([16, 32])}


def _search_env():
    """A child's environment: this fastfc, and tests/ for search_trials."""
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([TESTS, env["PYTHONPATH"]])
    return env


def _run_child(code, timeout=120):
    """Runs code in a fresh interpreter (a search with worker processes needs a
    __main__ it can re-import: -c has none) with a hard timeout, so that a
    deadlock fails the test; returns the JSON it prints last."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_search_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _comparable(records):
    """Records as JSON would carry them, without the wall times."""
    return json.loads(json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in records]))


def test_trial_seeds_depend_on_the_search_seed_and_the_trial_number_only():
    seeds = [trial_seed(0, n) for n in range(1, 50)]
    assert len(set(seeds)) == 49 and seeds == [trial_seed(0, n) for n in range(1, 50)]
    assert trial_seed(1, 1) != trial_seed(0, 1)
    assert successive_halving_rungs(9, 3) == [1, 3, 9] and successive_halving_rungs(5, 3) == [1, 5]
    assert successive_halving_rungs(1, 3) == [1]
    with pytest.raises(ValueError, match="eta must be an int >= 2"):
        successive_halving_rungs(9, 1)


def test_the_same_trials_records_and_parameters_inline_on_a_process_pool_and_on_dask():
    """Digits MLP trials: the records (val accuracy per epoch, bit for bit)
    do not depend on what ran them."""
    data = datasets.load_digits(seed=0)
    inline = executor_search(mlp_trial, data, SMALL_SPACE, trials=6, seed=3, fixed={"epochs": 2})
    # Pruned (rungs of 1 and 3 epochs): the promoted trials' states travel
    # through the pool's pipes and Dask, and come back the same.
    pruned = executor_search(mlp_trial, data, SMALL_SPACE, trials=6, seed=3, fixed={"epochs": 3},
                             prune=True)
    assert len({r["seed"] for r in inline.trials}) == 6
    assert sorted(r["epochs"] for r in pruned.trials) == [1, 1, 1, 1, 3, 3]
    dask = "DaskWorkers(local=2)" if importlib_available("distributed") else None
    others = _run_child(f"""
        import json
        from fastfc import datasets
        from fastfc.search import *
        data = datasets.load_digits(seed=0)
        space = {{"lr": LogUniform(1e-3, 1e-1), "weight_decay": LogUniform(1e-6, 1e-3),
                  "hidden": Choice([16, 32])}}
        runs = []
        for make in ["LocalWorkers(1)", "LocalWorkers(2)", {dask!r}]:
            if make is None:
                continue
            with eval(make) as workers:
                for epochs, prune in ((2, False), (3, True)):
                    result = executor_search(mlp_trial, data, space, trials=6, seed=3, executor=workers,
                                             fixed={{"epochs": epochs}}, prune=prune)
                    runs.append([{{k: v for k, v in r.items() if k != "seconds"}} for r in result.trials])
        print(json.dumps(runs))
        """, timeout=240)
    assert len(others) == (6 if dask else 4)
    for full_run, pruned_run in zip(others[::2], others[1::2]):
        assert full_run == _comparable(inline.trials)
        assert pruned_run == _comparable(pruned.trials)


def importlib_available(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("workers", ["LocalWorkers(2)", "DaskWorkers(local=2)"])
def test_a_trial_whose_worker_is_killed_is_rerun_and_the_search_completes(tmp_path, workers):
    if workers.startswith("Dask"):
        pytest.importorskip("distributed")
    records = _run_child(f"""
        import json, search_trials
        from fastfc.search import *
        with {workers} as workers:
            result = executor_search(search_trials.curve_trial, {{"dir": {str(tmp_path)!r}}},
                                     {{"lr": LogUniform(1e-4, 1e-1)}}, trials=4, seed=0,
                                     executor=workers)
        print(json.dumps(result.trials))
        """, timeout=180)
    assert (tmp_path / "killed").exists()  # a worker did die mid-trial
    clean = executor_search(search_trials.curve_trial, {}, {"lr": LogUniform(1e-4, 1e-1)}, trials=4, seed=0)
    assert _comparable(records) == _comparable(clean.trials)


def test_resume_skips_the_finished_trials_and_ends_as_an_uninterrupted_search(tmp_path):
    space = {"lr": LogUniform(1e-4, 1e-1)}
    calls = []

    def trial(data, spec, seed):
        calls.append(spec["lr"])
        if len(calls) == 4 and data["interrupt"]:
            raise KeyboardInterrupt  # Ctrl-C during the fourth trial
        return search_trials.curve_trial({}, spec, seed)

    log = tmp_path / "trials.jsonl"
    with pytest.raises(SearchInterrupted) as interrupted:
        executor_search(trial, {"interrupt": True}, space, trials=8, seed=5, log=log)
    assert len(interrupted.value.trials) == 3
    assert len(log.read_text().splitlines()) == 1 + 3  # header and the finished trials
    with open(log, "a") as f:
        f.write('{"number": 4, "val_')  # a record torn by a kill mid-write
    with pytest.raises(FileExistsError, match="resume it"):
        executor_search(trial, {"interrupt": False}, space, trials=8, seed=5, log=log)
    with pytest.raises(ValueError, match="another search .*seed"):
        executor_search(trial, {"interrupt": False}, space, trials=8, seed=6, log=log, resume=True)
    calls.clear()
    resumed = executor_search(trial, {"interrupt": False}, space, trials=8, seed=5, log=log, resume=True)
    assert len(calls) == 5
    calls.clear()
    fresh = executor_search(trial, {"interrupt": False}, space, trials=8, seed=5)
    assert _comparable(resumed.trials) == _comparable(fresh.trials)
    assert len(log.read_text().splitlines()) == 1 + 8


def test_successive_halving_keeps_the_best_third_of_each_rung():
    space = {"lr": LogUniform(1e-4, 1)}
    full = executor_search(search_trials.curve_trial, {}, space, trials=27, seed=2, fixed={"epochs": 9})
    pruned = executor_search(search_trials.curve_trial, {}, space, trials=27, seed=2, fixed={"epochs": 9},
                             prune=True)
    reached = [r["epochs"] for r in pruned.trials]
    assert sorted(reached) == [1] * 18 + [3] * 6 + [9] * 3
    assert all(r["pruned"] == (r["epochs"] < 9) for r in pruned.trials)
    # 27 + 9 * 3 + 3 * 9 epochs instead of 27 * 9, and the same winner (the curves keep their order).
    assert sum(reached) < 27 * 9 / 2
    assert pruned.best["number"] == full.best["number"] and pruned.best["epochs"] == 9
    rung_one = sorted((r for r in full.trials), key=lambda r: -r["val_acc_history"][0])
    assert {r["number"] for r in rung_one[:9]} == {r["number"] for r in pruned.trials if r["epochs"] >= 3}


def test_pruned_mlp_trials_continue_from_their_last_rung_and_a_resumed_log_gives_the_same(tmp_path):
    """mlp_trial takes a state: a promoted trial trains on from where its
    rung stopped (its per-epoch validation accuracies are those of the same
    trial in a full search), so 9 trials cost 9 + 3 * 2 + 1 * 6 epochs. A
    resumed search has no states (they are not logged) and retrains from
    scratch: the same records."""
    data = datasets.load_digits(seed=0)
    full = executor_search(mlp_trial, data, SMALL_SPACE, trials=9, seed=4, fixed={"epochs": 9})
    log = tmp_path / "pruned.jsonl"
    pruned = executor_search(mlp_trial, data, SMALL_SPACE, trials=9, seed=4, fixed={"epochs": 9},
                             prune=True, log=log)
    histories = {r["number"]: r["val_acc_history"] for r in full.trials}
    assert sorted(r["epochs"] for r in pruned.trials) == [1] * 6 + [3] * 2 + [9]
    for record in pruned.trials:
        assert "state" not in record
        assert record["val_acc_history"] == histories[record["number"]][:record["epochs"]]
    assert pruned.best["val_acc"] == max(histories[pruned.best["number"]])
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")  # the last rung's record lost: retrained on resume
    resumed = executor_search(mlp_trial, data, SMALL_SPACE, trials=9, seed=4, fixed={"epochs": 9},
                              prune=True, log=log, resume=True)
    assert _comparable(resumed.trials) == _comparable(pruned.trials)


def test_diverged_trials_rank_last_and_are_never_promoted():
    result = executor_search(search_trials.diverging_trial, {}, {"lr": LogUniform(1e-3, 1e-1)}, trials=9,
                             seed=0, fixed={"epochs": 3}, prune=True)
    assert any(r["diverged"] for r in result.trials)
    assert all(not r["diverged"] for r in result.trials if r["epochs"] == 3)
    assert result.trials[-1]["diverged"]


def test_ctrl_c_cancels_pending_trials_and_keeps_the_finished_ones(tmp_path):
    log = tmp_path / "trials.jsonl"
    code = f"""
        import json, search_trials
        from fastfc.search import *
        with LocalWorkers(2) as workers:
            try:
                executor_search(search_trials.curve_trial, {{"sleep": 0.1}}, {{"lr": LogUniform(1e-4, 1e-1)}},
                                trials=200, seed=0, executor=workers, log={str(log)!r})
            except SearchInterrupted as exc:
                print(json.dumps(len(exc.trials)))
        """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=_search_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err[-2000:]
    finished = json.loads(out.strip().splitlines()[-1])
    assert 2 <= finished < 200
    assert len(log.read_text().splitlines()) == 1 + finished


def test_a_ctrl_c_arriving_inside_concurrent_futures_is_raised_outside_it(monkeypatch):
    """concurrent.futures.wait takes every pending future's lock in turn: a
    KeyboardInterrupt raised in there (a Ctrl-C at that moment) left one held,
    and the pool's shutdown then hung forever (1 in 12 runs of `fastfc search
    --jobs 2` and Ctrl-C). The search holds a Ctrl-C back until the library
    call returned, then cancels as usual."""
    real_wait, waits = concurrent.futures.wait, []

    def wait_hit_by_ctrl_c(*args, **kwargs):
        waits.append("entered")
        if len(waits) == 3:
            signal.raise_signal(signal.SIGINT)  # the handler runs here, inside the call
        result = real_wait(*args, **kwargs)
        waits[-1] = "returned"
        return result
    monkeypatch.setattr(concurrent.futures, "wait", wait_hit_by_ctrl_c)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        with pytest.raises(SearchInterrupted):
            executor_search(search_trials.curve_trial, {"sleep": 0.05}, {"lr": LogUniform(1e-4, 1e-1)},
                            trials=50, seed=0, executor=pool)
    assert waits[2] == "returned" and len(waits) == 3  # raised after the call, before another
    assert time.monotonic() - started < 10


def test_bad_workers_are_refused_clearly(monkeypatch):
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        LocalWorkers(0)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        executor_search(search_trials.curve_trial, {}, SMALL_SPACE, trials=1, threads=0)
    with pytest.raises(ValueError, match="prune needs"):
        executor_search(search_trials.curve_trial, {}, SMALL_SPACE, trials=1, prune=True)
    with pytest.raises(TypeError, match="must return a dict with 'val_acc'"):
        executor_search(lambda data, spec, seed: 0.5, {}, SMALL_SPACE, trials=1)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'fastfc\[dask\]'"):
        DaskWorkers(local=1)


def test_a_scheduler_that_does_not_answer_is_an_error_within_the_timeout():
    pytest.importorskip("distributed")
    started = time.monotonic()
    with pytest.raises(OSError, match="no Dask scheduler answered at tcp://127.0.0.1:9"):
        DaskWorkers("tcp://127.0.0.1:9", timeout=2)
    assert time.monotonic() - started < 30
