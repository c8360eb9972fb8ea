"""Random search over hyperparameters: seeded draws, trials ranked by
validation accuracy, and the test set looked at once, by the best.

    from fastfc.search import Choice, LogUniform, Uniform, random_search

    def train(hyper):          # {'lr': ..., 'weight_decay': ..., 'momentum': ...}
        ...                    # train a model with them
        return model, val_acc  # its best validation accuracy

    result = random_search(train, {"lr": LogUniform(1e-3, 3e-1),
                                   "weight_decay": LogUniform(1e-6, 1e-2),
                                   "momentum": LogUniform(0.5, 0.99)},
                           trials=20, seed=0, test=lambda model: evaluate(model, X_test, y_test))
    result.best, result.test   # the chosen hyperparameters, and the one test evaluation

`fastfc search` draws its trials with the same distributions.

Trials on other processes or machines (executor_search): each trial is a
plain function of (data, trial spec, seed) returning a record, run through
any concurrent.futures.Executor; LocalWorkers (a process pool) and
DaskWorkers (a Dask scheduler, or a LocalCluster) also send the data to
each worker once, not with every trial:

    from fastfc.search import DaskWorkers, LocalWorkers, executor_search, mlp_trial

    with LocalWorkers(jobs=2) as workers:        # or DaskWorkers("tcp://host:8786")
        result = executor_search(mlp_trial, data, space, trials=64, seed=0, executor=workers,
                                 fixed={"epochs": 9}, log="trials.jsonl", prune=True)

The trials, their seeds and their records are the same whatever runs them.
"""
import concurrent.futures
import contextlib
import hashlib
import inspect
import json
import math
import multiprocessing
import numbers
import os
import signal
import threading
import time
import uuid

import numpy as np

from ._validation import check_int, check_real
from .io import open_regular

__all__ = ["LogUniform", "Uniform", "Choice", "sample_trials", "rank", "random_search",
           "SearchResult", "executor_search", "SearchInterrupted", "LocalWorkers", "DaskWorkers",
           "mlp_trial", "solver_trial", "trial_seed", "successive_halving_rungs"]


def _bounds(name, low, high, positive):
    low, high = check_real(f"{name}'s LOW", low), check_real(f"{name}'s HIGH", high)
    if positive and (low < 0 or low == 0 < high):  # a point range (0,0 say) is a constant
        raise ValueError(f"a log-uniform range needs LOW > 0, got {low}")
    if low > high:
        raise ValueError(f"{name} needs LOW <= HIGH, got {low}, {high}")
    return float(low), float(high)


class LogUniform:
    """Values in [low, high] (low > 0) uniform in log scale: a learning rate,
    a weight decay, a momentum. A point range (low == high, 0 included) is
    that constant."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("LogUniform", low, high, positive=True)

    def sample(self, rng):
        """One draw from the np.random.Generator rng (low itself for a point range)."""
        if self.low == self.high:
            return self.low
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self):
        return f"LogUniform({self.low:g}, {self.high:g})"


class Uniform:
    """Values uniform in [low, high]: a dropout probability, say."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("Uniform", low, high, positive=False)

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def __repr__(self):
        return f"Uniform({self.low:g}, {self.high:g})"


class Choice:
    """One of the given options, each as likely."""

    def __init__(self, options):
        self.options = list(options)
        if not self.options:
            raise ValueError("Choice needs at least one option")

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self):
        return f"Choice({self.options!r})"


def sample_trials(space, trials, seed):
    """trials hyperparameter dicts drawn from space (name -> distribution, or
    a fixed value), in space's order, from np.random.default_rng(seed): the
    same seed gives the same trials. An iterator drawing each trial when it
    is asked for, so a huge count costs nothing up front."""
    check_int("trials", trials, low=1)
    rng = np.random.default_rng(seed)
    return ({name: dist.sample(rng) if hasattr(dist, "sample") else dist
             for name, dist in space.items()} for _ in range(trials))


def rank(trials):
    """The finished trials, best validation accuracy first (ties: the
    earlier trial); diverged trials, recorded with val_acc 0, last."""
    return sorted(trials, key=lambda t: (t["diverged"], -t["val_acc"], t["number"]))


class SearchResult:
    """What random_search found.

    Attributes: trials (ranked: dicts with number, the hyperparameters,
    val_acc, diverged), best (the first of them), model (the best trial's
    model), test (what test(model) returned, or None without test).
    """

    def __init__(self, trials, model, test):
        self.trials = trials
        self.best = trials[0]
        self.model = model
        self.test = test

    def __repr__(self):
        return f"SearchResult(best={self.best!r}, test={self.test!r})"


def random_search(train, space, trials=20, seed=0, test=None):
    """Random search: each trial draws hyperparameters from space (see
    sample_trials) and calls train(hyperparameters) -> (model, val_acc). The
    trials are ranked by val_acc; a trial whose training raises
    FloatingPointError (a diverged loss) ranks last. Only the best trial's
    model is kept, and test(model) is called once, for it alone: the test
    set plays no part in the choice.

    Returns a SearchResult.
    """
    if not callable(train):
        raise TypeError(f"train must be a function of the hyperparameters, got {train!r}")
    finished, best_model, best_key = [], None, None
    for number, hyper in enumerate(sample_trials(space, trials, seed), 1):
        trial = dict(hyper, number=number)
        try:
            model, val_acc = train(dict(hyper))
            trial.update(val_acc=float(val_acc), diverged=False)
        except FloatingPointError:
            model = None
            trial.update(val_acc=0.0, diverged=True)
        finished.append(trial)
        key = (trial["diverged"], -trial["val_acc"], number)
        if not trial["diverged"] and (best_key is None or key < best_key):
            best_model, best_key = model, key
    ranked = rank(finished)
    if best_model is None:
        raise FloatingPointError("every trial diverged (a NaN or infinite loss): try lower "
                                 "learning rates")
    return SearchResult(ranked, best_model, None if test is None else test(best_model))


# ---------------------------------------------------------------- trials on other processes

def trial_seed(seed, number):
    """The seed of trial number (1, 2, ...) of a search seeded with seed: drawn
    from SeedSequence((seed, number)), so it depends on nothing else (not on
    which worker runs the trial, nor when)."""
    seed, number = check_int("seed", seed, low=0), check_int("number", number, low=0)
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def successive_halving_rungs(epochs, eta=3):
    """The epoch budgets of successive halving up to epochs: epochs // eta**k
    for k = ..., 2, 1, 0 while at least 1, ascending (9, 3 -> [1, 3, 9])."""
    epochs, eta = check_int("epochs", epochs, low=1), check_int("eta", eta, low=2)
    budgets, budget = [], epochs
    while budget >= 1:
        budgets.append(budget)
        budget //= eta
    return budgets[::-1]


def mlp_trial(data, spec, seed, state=False):
    """A trial for executor_search: a FullyConnectedNet (He initialisation,
    float32) trained by a Solver, seeded by seed. It can continue (what
    pruning uses): called with state None or a state, it returns its own.

    Inputs:
    - data: dict with X_train, y_train, X_val, y_val (samples are flattened)
    - spec: lr, epochs, and optionally weight_decay, momentum, hidden (a width
      or a list of widths; 100), dropout (0), batch_size (100), update_rule
      ('sgd_momentum'), lr_decay (1: the learning rate's factor per epoch)
    - seed: the trial's seed (initialisation, shuffling, dropout)
    - state: False (from scratch), None (from scratch, returning the
      state), or what an earlier call returned as 'state' (after fewer
      epochs): training continues from it, bit for bit as one run of
      spec['epochs'] would have gone

    Returns {'val_acc': best validation accuracy, 'val_acc_history': per
    epoch, 'train_acc': the last epoch's}, and unless state is False
    'state': the Solver's state_dict after the last epoch. Raises
    FloatingPointError when the loss diverges.
    """
    from .models import FullyConnectedNet
    from .solver import Solver

    splits = {key: np.asarray(data[key]) for key in ("X_train", "y_train", "X_val", "y_val")}
    for split in ("train", "val"):
        X = splits[f"X_{split}"]
        splits[f"X_{split}"] = X.reshape(len(X), -1)
    hidden = spec.get("hidden", 100)
    hidden = [int(hidden)] if isinstance(hidden, numbers.Integral) else [int(h) for h in hidden]
    num_classes = int(max(splits["y_train"].max(), splits["y_val"].max())) + 1
    model = FullyConnectedNet(hidden, input_dim=splits["X_train"].shape[1], num_classes=num_classes,
                              dropout=spec.get("dropout", 0.0), weight_scale=None, seed=seed)
    optim_config = {"learning_rate": spec["lr"]}
    if spec.get("momentum") is not None:
        optim_config["momentum"] = spec["momentum"]
    solver = Solver(model, splits, update_rule=spec.get("update_rule", "sgd_momentum"),
                    optim_config=optim_config, weight_decay=spec.get("weight_decay", 0.0),
                    lr_decay=spec.get("lr_decay", 1.0),
                    batch_size=spec.get("batch_size", 100), num_epochs=spec["epochs"], seed=seed,
                    verbose=False)
    return solver_trial(solver, state)


def solver_trial(solver, state=False):
    """A trial's record from a Solver built for it: trains it (continuing
    from state, as mlp_trial's) and returns val_acc (the best),
    val_acc_history and train_acc (the last epoch's), and unless state is
    False the Solver's state after the last epoch."""
    if state is not None and state is not False:
        solver.load_state_dict(state)
    solver.train(restore_best=False)
    record = {"val_acc": float(solver.best_val_acc),
              "val_acc_history": [float(a) for a in solver.val_acc_history],
              "val_loss_history": [float(r["val_loss"]) for r in solver.epoch_history],
              "train_acc": float(solver.train_acc_history[-1])}
    if state is not False:
        record["state"] = solver.state_dict()
    return record


def _run_trial(trial, data, spec, seed, threads, state=False):
    """What a worker runs: trial(data, spec, seed), or with a state other than
    False trial(data, spec, seed, state=state), with fastfc's thread count
    set first (Dask workers start with OMP_NUM_THREADS=1, a pool's inherit
    the driver's). A diverged trial (FloatingPointError) is a record too."""
    from . import set_num_threads

    if isinstance(data, _Installed):
        data = data.resolve()
    set_num_threads(threads)
    started = time.perf_counter()
    try:
        if state is False:
            result = trial(data, dict(spec), seed)
        else:
            result = trial(data, dict(spec), seed, state=state)
    except FloatingPointError:
        result = {"val_acc": 0.0, "diverged": True}
    if not isinstance(result, dict) or "val_acc" not in result:
        raise TypeError(f"a trial must return a dict with 'val_acc', got {result!r}")
    record = dict(result, val_acc=float(result["val_acc"]), diverged=bool(result.get("diverged", False)))
    record["seconds"] = time.perf_counter() - started
    return record


# Data LocalWorkers installed in this worker process: token -> data.
_INSTALLED = {}


class _Installed:
    """Reference to data that LocalWorkers installed in every worker process."""

    __slots__ = ("token",)

    def __init__(self, token):
        self.token = token

    def resolve(self):
        return _INSTALLED[self.token]


def _install(token, data):
    # Ctrl-C reaches the whole process group: the driver decides what it cancels.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _INSTALLED[token] = data


class LocalWorkers:
    """jobs worker processes on this machine: a concurrent.futures
    ProcessPoolExecutor (started by spawn, so no OpenMP state is forked),
    each given the data once, as it starts. A context manager.

    Attributes: executor (the pool; None until scatter), jobs.
    """

    def __init__(self, jobs):
        self.jobs = check_int("jobs", jobs, low=1)
        self.executor = None
        self._token = self._data = None

    def scatter(self, data):
        """Starts the pool with data installed in each worker; returns the
        reference trials are given in its place. The same data object again
        keeps the running pool (several searches over one data set)."""
        if self.executor is not None and data is self._data:
            return _Installed(self._token)
        self.close()
        self._token, self._data = uuid.uuid4().hex, data
        self._start()
        return _Installed(self._token)

    def _start(self):
        self.executor = concurrent.futures.ProcessPoolExecutor(
            self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_install,
            initargs=(self._token, self._data))

    def restart(self):
        """A fresh pool, after a worker died (which breaks a process pool)."""
        self.close(cancel=True)
        self._start()

    def close(self, cancel=False):
        """Shuts the pool down; cancel: pending trials are dropped and running
        ones killed (a pool would otherwise wait for them to finish)."""
        if self.executor is None:
            return
        if cancel:
            # ProcessPoolExecutor has no public way to stop a running call.
            for process in list((getattr(self.executor, "_processes", None) or {}).values()):
                process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)

    def __repr__(self):
        return f"LocalWorkers(jobs={self.jobs})"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("Dask workers need Dask's distributed scheduler: pip install 'fastfc[dask]' "
                          "(or pip install 'dask[distributed]')") from None
    return distributed


class DaskWorkers:
    """Trials on a Dask cluster: the scheduler at address ('tcp://host:8786'),
    or, with local=N, a LocalCluster of N single-threaded worker processes
    started here. The data is scattered to every worker once; a trial whose
    worker dies is rerun elsewhere (Dask reschedules it; retries more if it
    raises). A context manager.

    Inputs:
    - address or local (exactly one)
    - timeout: seconds to wait for the scheduler before OSError
    - retries: reruns of a trial that raised

    Attributes: executor (a concurrent.futures.Executor), client, cluster
    (the LocalCluster, or None).
    """

    def __init__(self, address=None, local=None, timeout=10.0, retries=2):
        if (address is None) == (local is None):
            raise ValueError("give a scheduler address or local=N workers (exactly one)")
        if local is not None:
            local = check_int("local (the number of workers)", local, low=1)
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string such as 'tcp://host:8786', got {address!r}")
        distributed = _import_distributed()
        self.cluster = None
        if local is not None:
            import logging
            self.cluster = distributed.LocalCluster(n_workers=int(local), threads_per_worker=1,
                                                    processes=True, dashboard_address=None,
                                                    silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster)
        else:
            try:
                self.client = distributed.Client(address, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise OSError(f"no Dask scheduler answered at {address} within {timeout:g} s "
                              f"({exc})") from None
        self.executor = self.client.get_executor(pure=False, retries=retries)

    def scatter(self, data):
        """Copies data to every worker once; returns the future trials are
        given in its place (Dask hands each trial the worker's copy)."""
        # In a list, so that a dict of arrays travels as one object, not one per key.
        return self.client.scatter([data], broadcast=True, hash=False)[0]

    def close(self, cancel=False):
        self.executor.shutdown(wait=not cancel)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)

    def __repr__(self):
        return f"DaskWorkers({self.client.scheduler.address if self.client.scheduler else ''})"


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each call at once, here: executor_search without workers."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: B036 - handed to whoever reads the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during executor_search: pending trials were cancelled. trials:
    the finished ones, ranked (they are in the trial log too)."""

    def __init__(self, trials):
        super().__init__(f"search interrupted after {len(trials)} finished trials")
        self.trials = trials


class _TrialLog:
    """The trial log: a JSON header naming the search, then one JSON record per
    finished trial (per rung, when pruning), each appended and fsynced as it
    finishes, so a killed search loses no finished trial."""

    def __init__(self, path, header, resume):
        self.path = os.fspath(path)
        self.done = {}
        exists = os.path.exists(self.path)
        if resume and not exists:
            raise FileNotFoundError(f"no trial log at {self.path} to resume")
        if exists and not resume:
            raise FileExistsError(f"{self.path} already holds a trial log: resume it, or choose "
                                  "another path")
        if exists:
            self._read(header)
            self.file = open(self.path, "a", encoding="utf-8")
        else:
            self.file = open(self.path, "x", encoding="utf-8")
            self._append({"search": header})

    def _read(self, header):
        with open_regular(self.path) as f:  # a FIFO or device is refused, never waited on
            text = f.read()
        complete = text[:text.rfind(b"\n") + 1]  # a kill mid-write leaves a torn last line
        lines = complete.decode("utf-8").splitlines()
        try:
            saved = json.loads(lines[0])["search"]
        except (ValueError, KeyError, TypeError, IndexError):
            raise ValueError(f"{self.path} is not a fastfc trial log") from None
        if saved.get("digest") != header["digest"]:
            differ = [k for k in header if k != "digest" and saved.get(k) != header[k]]
            raise ValueError(f"{self.path} is the log of another search (it differs in "
                             f"{', '.join(differ) or 'its identity'}); resume needs the same search")
        for number, line in enumerate(lines[1:], 2):
            try:
                record = json.loads(line)
                self.done[(record["number"], record.get("epochs"))] = record
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.path}, line {number}: not a trial record") from None
        if len(complete) < len(text):
            with open(self.path, "rb+") as f:
                f.truncate(len(complete))

    def _append(self, entry):
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def add(self, record):
        self._append(record)
        self.done[(record["number"], record.get("epochs"))] = record

    def close(self):
        self.file.close()


def _search_header(trial, space, trials, seed, fixed, prune, eta, key):
    header = {"trial": f"{getattr(trial, '__module__', '?')}.{getattr(trial, '__qualname__', repr(trial))}",
              "space": {name: repr(dist) for name, dist in space.items()}, "trials": trials,
              "seed": seed, "fixed": fixed, "prune": bool(prune), "eta": eta, "key": key}
    header = json.loads(json.dumps(header, default=repr))  # as it reads back
    header["digest"] = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()
    return header


def executor_search(trial, data, space, trials=20, seed=0, executor=None, *, fixed=None, threads=1,
                    log=None, resume=False, prune=False, eta=3, key=None, on_trial=None, max_pending=64,
                    max_restarts=3):
    """Random search whose trials run on an executor: the same trials, seeds
    and records whatever runs them.

    Inputs:
    - trial: function(data, spec, seed) -> record, a dict holding at least
      val_acc (see mlp_trial); FloatingPointError marks the trial diverged.
      Workers import it by name: a module-level function.
    - data: what every trial gets (a dict of arrays, say)
    - space: name -> distribution, as sample_trials; trials, seed: likewise;
      trial k (from 1) gets seed trial_seed(seed, k)
    - executor: None (one trial at a time, here), LocalWorkers or DaskWorkers
      (data sent to each worker once), or any concurrent.futures.Executor
      (data passed with each trial)
    - fixed: settings every spec holds besides the drawn hyperparameters
      (epochs, batch_size, ...); with prune, fixed['epochs'] is the full budget
    - threads: fastfc's thread count in the worker, set before each trial
    - log: path of the trial log (JSON lines, appended and fsynced as each
      trial finishes); resume: continue the search that log holds (refused
      for a log of another search), skipping finished trials
    - prune: successive halving: every trial first trains for the smallest
      budget of successive_halving_rungs(fixed['epochs'], eta); the best
      1/eta of each rung (by val_acc) train on to the next budget, the
      others stop there (records with pruned True). A trial with a state
      parameter (mlp_trial) continues where its last rung stopped: it is
      called with state=None first, returns record['state'], and is called
      with it at the next rung (kept by the driver, never logged; a resumed
      search retrains from scratch, which a continuable trial must make the
      same). Other trials restart from scratch at each budget.
    - key: JSON-able identity of the data and settings not in fixed (a data
      set's name, say): written in the log's header, compared on resume
    - on_trial: called with each record as it arrives (progress lines, say)
    - max_pending: trials handed to the executor ahead of time
    - max_restarts: times a broken LocalWorkers pool (a worker killed) is
      restarted, its unfinished trials resubmitted

    Returns SearchResult(ranked records, model None, test None): each record
    holds number, seed, the drawn hyperparameters, epochs (pruning: the budget it
    reached), pruned, what trial returned, diverged and seconds. Ctrl-C
    cancels the pending trials and raises SearchInterrupted (the finished
    trials are in its trials attribute and in the log).
    """
    if not callable(trial):
        raise TypeError(f"trial must be a function (data, spec, seed) -> record, got {trial!r}")
    fixed = dict(fixed or {})
    threads = check_int("threads", threads, low=1)
    hyper = list(sample_trials(space, trials, seed))  # checks trials; successive halving needs all
    budgets = [fixed.get("epochs")]
    if prune:
        if "epochs" not in fixed:
            raise ValueError("prune needs the full budget as fixed['epochs']")
        budgets = successive_halving_rungs(fixed["epochs"], eta)
    trial_log = None
    if log is not None:
        trial_log = _TrialLog(log, _search_header(trial, space, trials, seed, fixed, prune, eta, key),
                              resume)
    elif resume:
        raise ValueError("resume needs the log to resume")
    restore_threads = None
    if executor is None:
        from . import get_num_threads
        restore_threads, executor = get_num_threads(), _InlineExecutor()
        max_pending = 1  # each record logged before the next trial starts
    runner = _Runner(trial, executor, threads, trial_log, max_pending, max_restarts)
    runner.hyper_keys, runner.on_trial = tuple(space), on_trial
    runner.continues = prune and _takes_state(trial)
    finals = {}
    try:
        runner.data = executor.scatter(data) if hasattr(executor, "scatter") else data
        candidates = list(range(1, trials + 1))
        for rung, budget in enumerate(budgets):
            specs = {number: dict(fixed, **hyper[number - 1]) for number in candidates}
            if budget is not None:
                for spec in specs.values():
                    spec["epochs"] = budget
            records = runner.run(specs, budget, seed)
            for record in records.values():
                record["pruned"] = rung < len(budgets) - 1
            finals.update(records)
            promoted = [r for r in rank(records.values()) if not r["diverged"]]
            candidates = sorted(r["number"] for r in promoted[:max(1, len(records) // eta)])
            runner.states = {number: runner.states[number] for number in candidates
                             if number in runner.states}
    except KeyboardInterrupt:
        runner.cancel()
        raise SearchInterrupted(rank(list(runner.finished))) from None
    finally:
        if trial_log is not None:
            trial_log.close()
        if restore_threads is not None:
            from . import set_num_threads
            set_num_threads(restore_threads)
    ranked = sorted(finals.values(), key=lambda r: (r["diverged"], -(r.get("epochs") or 0),
                                                    -r["val_acc"], r["number"]))
    return SearchResult(ranked, None, None)


def _takes_state(trial):
    """Whether trial can continue from a state: it has a state parameter."""
    try:
        return "state" in inspect.signature(trial).parameters
    except (TypeError, ValueError):  # a builtin or C function without a signature
        return False


# Seconds a Ctrl-C may wait while the search waits on its trials.
CTRL_C_LATENCY = 0.25


@contextlib.contextmanager
def _ctrl_c_deferred():
    """A Ctrl-C arriving inside the block is raised when it ends (in the main
    thread, where Python raises KeyboardInterrupt; elsewhere a no-op)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


class _Runner:
    """Runs the trials of one rung on the executor, a bounded number ahead,
    logging each record as it arrives."""

    def __init__(self, trial, executor, threads, trial_log, max_pending, max_restarts):
        self.trial, self.executor, self.threads = trial, executor, threads
        self.log, self.max_pending, self.restarts_left = trial_log, max_pending, max_restarts
        self.data = None
        self.hyper_keys = ()  # the drawn hyperparameters: what a record holds of its spec
        self.on_trial = None
        self.continues = False  # pruning a trial that continues from its last rung's state
        self.states = {}    # number -> the state its last rung returned
        self.pending = {}   # future -> (number, spec)
        self.finished = []  # every record of this search, in finishing order

    def _submit(self, number, spec, seed):
        pool = getattr(self.executor, "executor", self.executor)  # a Workers object's executor
        state = self.states.get(number) if self.continues else False
        future = pool.submit(_run_trial, self.trial, self.data, spec, trial_seed(seed, number),
                             self.threads, state)
        self.pending[future] = (number, spec)

    def run(self, specs, budget, seed):
        """The records (number -> record) of specs at this budget; trials the
        log already holds are taken from it."""
        self.records, self.budget, self.seed = {}, budget, seed
        queue = []
        for number, spec in specs.items():
            logged = self.log.done.get((number, budget)) if self.log is not None else None
            if logged is not None:
                self.records[number] = logged
                self.finished.append(logged)
            else:
                queue.append((number, spec))
        queue.reverse()
        while queue or self.pending:
            # A Ctrl-C raised inside concurrent.futures can leave a future's
            # lock held (wait() takes every pending future's lock in turn), and
            # then the pool's shutdown waits forever on it: it is held back
            # here and raised between the calls, at most CTRL_C_LATENCY later.
            with _ctrl_c_deferred():
                while queue and len(self.pending) < self.max_pending:
                    self._submit(*queue.pop(), seed)
                done, _ = concurrent.futures.wait(self.pending, timeout=CTRL_C_LATENCY,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future not in self.pending:
                    continue  # resubmitted after a restart
                number, spec = self.pending.pop(future)
                try:
                    result = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    self._restart([(number, spec)], seed)
                    continue
                self._record(number, spec, result)
        return self.records

    def _record(self, number, spec, result):
        state = result.pop("state", None)
        if self.continues and state is not None:
            self.states[number] = state
        record = {"number": number, "seed": trial_seed(self.seed, number)}
        record.update({k: spec[k] for k in self.hyper_keys})
        record["epochs"] = self.budget
        record.update(result)
        with _ctrl_c_deferred():  # the log and the finished list hold the same trials
            if self.log is not None:
                self.log.add(record)
            self.records[number] = record
            self.finished.append(record)
        if self.on_trial is not None:
            self.on_trial(record)

    def _restart(self, lost, seed):
        """A worker of a LocalWorkers pool died: every unfinished trial is
        resubmitted to a fresh pool."""
        if not hasattr(self.executor, "restart") or self.restarts_left == 0:
            raise RuntimeError("a worker process died (killed, or out of memory) and the pool broke; "
                               "the finished trials are in the trial log: resume it")
        self.restarts_left -= 1
        lost = lost + list(self.pending.values())
        self.pending.clear()
        self.executor.restart()
        for number, spec in lost:
            self._submit(number, spec, seed)

    def cancel(self):
        """Cancels the pending trials, keeping those that finished meanwhile."""
        for future, (number, spec) in self.pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                self._record(number, spec, future.result())
            else:
                future.cancel()
        self.pending.clear()
