"""More than one process: `fastfc search --jobs/--workers/--resume/--prune`
(trials through fastfc.search.executor_search) and `fastfc train` started by
mpiexec (data-parallel, through fastfc.distributed)."""
import argparse
import contextlib
import math
import os
import sys

from .. import distributed, search
from .model_files import build_model, check_model_size, model_spec
from .options import MODEL_DEFAULTS, CommandError, positive_int
from .outputs import say

# Options that say where a run goes or what it reports, not what it computes:
# a run resumed with other values of these is the same run.
_NOT_COMPUTED = ("jobs", "workers", "resume", "state", "quiet", "log", "save", "plot", "final_epochs")

SCHEDULER_TIMEOUT = 10.0  # seconds to wait for a Dask scheduler before giving up


def _identity(args):
    """What every rank, or a resumed search, must agree on: the options that
    change the arithmetic, as JSON-able values."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_COMPUTED and not callable(v)}


# ---------------------------------------------------------------- search

def add_search_arguments(group):
    group.add_argument("--jobs", type=positive_int, metavar="N",
                       help="run the trials in N local processes, --threads (default 1) threads each")
    group.add_argument("--workers", metavar="ADDRESS",
                       help="run the trials on the Dask scheduler at ADDRESS (tcp://host:8786), or on a "
                            "LocalCluster of N workers started here with local:N (pip install 'fastfc[dask]')")
    group.add_argument("--resume", metavar="TRIALS.jsonl",
                       help="the trial log: every finished trial is appended to it; when it exists, the "
                            "trials it holds are skipped (the same search only)")
    group.add_argument("--prune", action="store_true",
                       help="successive halving: every trial first trains 1 epoch, and the best third of "
                            "each rung trains on (from where it stopped) to 3x as many, up to --epochs")


def uses_executor(args):
    """Whether the search runs through executor_search (any of its options given)."""
    return args.jobs is not None or args.workers is not None or args.resume is not None or args.prune


def _open_workers(args):
    """LocalWorkers, DaskWorkers, or None (trials run here) for the options."""
    if args.jobs is not None and args.workers is not None:
        raise CommandError("--jobs and --workers: give one (local processes, or Dask workers)")
    if args.workers is None:
        return None if args.jobs is None else search.LocalWorkers(args.jobs)
    try:
        if args.workers.startswith("local:"):
            count = args.workers[len("local:"):]
            if not count.isdigit() or int(count) < 1:
                raise CommandError(f"--workers {args.workers}: local:N needs N >= 1 workers")
            return search.DaskWorkers(local=int(count))
        return search.DaskWorkers(args.workers, timeout=SCHEDULER_TIMEOUT)
    except ImportError as exc:
        raise CommandError(f"--workers: {exc}") from None


def run_trials(args, space, prepared, class_names, finished, report=None):
    """The search's trials on the executor the options name, appended to
    finished as fastfc search's trial dicts (report(trial) as each arrives).
    Ctrl-C: KeyboardInterrupt, with the finished trials in finished (and in
    the --resume log)."""
    shared = {"prepared": {k: v for k, v in prepared.items() if not k.endswith("_test")},
              "class_names": list(class_names)}
    fixed = {"args": _identity(args)}
    if args.prune:
        fixed["epochs"] = args.epochs
    depth = _depth(args)
    workers = _open_workers(args)
    with workers if workers is not None else contextlib.nullcontext():
        try:
            result = search.executor_search(
                cli_trial, shared, space, args.trials, args.seed, executor=workers, fixed=fixed,
                threads=args.threads or 1, log=args.resume,
                resume=args.resume is not None and os.path.exists(args.resume), prune=args.prune,
                on_trial=None if report is None else lambda record: report(_command_trial(record, depth)))
        except search.SearchInterrupted as exc:
            finished.extend(_command_trial(record, depth) for record in exc.trials)
            raise KeyboardInterrupt from None
    finished.extend(_command_trial(record, depth) for record in result.trials)


def _depth(args):
    return len(args.hidden if args.hidden is not None else MODEL_DEFAULTS[args.model]["hidden"])


def _command_trial(record, depth):
    """An executor_search record as fastfc search's trial dict."""
    return {"number": record["number"], "lr": record["lr"], "weight_decay": record["weight_decay"],
            "momentum": record.get("momentum"), "hidden": [int(record["hidden"])] * depth,
            "dropout": record["dropout"], "val_acc": record["val_acc"],
            "train_acc": record.get("train_acc", math.nan), "seconds": record["seconds"],
            "diverged": record["diverged"], "epochs": record["epochs"]}


def cli_trial(data, spec, seed, state=False):
    """fastfc search's trial on a worker: the model the options describe,
    with the trial's hyperparameters, trained by the command's Solver (seeded
    by the trial's seed; spec['epochs'], when pruning, the budget, continued
    from state as search.mlp_trial's)."""
    from .search import _trial_args
    from .train import make_solver

    args = argparse.Namespace(**spec["args"])
    if "epochs" in spec:
        args.epochs = spec["epochs"]
    args.seed = seed
    trial = {"lr": spec["lr"], "weight_decay": spec["weight_decay"], "momentum": spec.get("momentum"),
             "hidden": [int(spec["hidden"])] * _depth(args), "dropout": spec["dropout"]}
    trial_args = _trial_args(args, trial)
    prepared = data["prepared"]
    model = model_spec(trial_args, prepared, data["class_names"])
    check_model_size(model, trial_args.optimizer)
    return search.solver_trial(make_solver(build_model(model, seed), prepared, trial_args), state)


# ---------------------------------------------------------------- train under mpiexec

def add_train_arguments(group):
    group.add_argument("--state", metavar="STATE.npz",
                       help="data-parallel runs (mpiexec): rank 0 saves the training state here after "
                            "every epoch")
    group.add_argument("--resume", metavar="STATE.npz",
                       help="continue the data-parallel run that saved this state (the same command on as "
                            "many ranks), saving the state there")


def data_parallel_options(args):
    """The launched_solver arguments for this process: none outside mpiexec;
    in a rank, the training state and the options every rank must share.
    Ranks other than 0 print nothing and write no files."""
    if not distributed.launched_by_mpiexec():
        if args.state is not None or args.resume is not None:
            raise CommandError("--state and --resume are for data-parallel runs: "
                               "mpiexec -n N python -m mpi4py -m fastfc train ...")
        return {}
    try:
        distributed.world()
    except ImportError as exc:
        raise CommandError(f"started by mpiexec, but {exc}") from None
    if args.state is not None and args.resume is not None:
        raise CommandError("--state and --resume: give one (--resume keeps saving to its file)")
    options = {"state_path": args.resume or args.state, "resume": args.resume is not None,
               "arguments": _identity(args)}
    if distributed.rank() == 0 and not args.quiet:
        say(f"data-parallel over {distributed.world_size()} ranks; global batch {args.batch_size}")
    if distributed.rank() != 0:
        args.save = args.log = args.plot = None
        args.quiet = True
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    return options
