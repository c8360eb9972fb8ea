"""`fastfc search`: random search over the training hyperparameters."""
import argparse
import csv
import math
import sys
import time

from .. import search
from .data import data_files, load_data, prepare, resolve_data_dir
from .model_files import build_model, check_model_size, model_outputs, model_spec
from .options import (EXIT_ERROR, EXIT_INTERRUPTED, MODEL_DEFAULTS, MOMENTUM_RULES, TRAIN_DEFAULTS,
                      CommandError, add_data_arguments, add_model_arguments, add_optimizer_arguments,
                      add_runtime_arguments, configure_threads, error_line, float_range, int_list, positive_int)
from .outputs import check_output_paths, interruptions_held, report_failures, say, write_outputs
from .scale import add_search_arguments, run_trials, uses_executor
from .train import check_training_args, make_solver, train_and_report


def add_search_parser(subparsers):
    parser = subparsers.add_parser(
        "search", help="random search over learning rate, weight decay, width and dropout",
        description="Random search: each trial trains briefly with hyperparameters drawn at random "
                    "(log-uniform learning rate and weight decay); trials are ranked by validation "
                    "accuracy, and only the best configuration, retrained, is evaluated on the test set.")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optimizer_arguments(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(epochs=5)
    group = parser.add_argument_group("search")
    group.add_argument("--trials", type=positive_int, default=20, metavar="N", help="(default: %(default)s)")
    group.add_argument("--lr-range", type=float_range, default=(1e-4, 1e-2), metavar="LOW,HIGH",
                       help="log-uniform (default: 1e-4,1e-2)")
    group.add_argument("--weight-decay-range", type=float_range, default=(1e-6, 1e-2), metavar="LOW,HIGH",
                       help="log-uniform (default: 1e-6,1e-2)")
    group.add_argument("--hidden-choices", type=int_list, default=(64, 128, 256, 512), metavar="N,N,...",
                       help="width of every hidden layer, drawn from these (default: 64,128,256,512)")
    group.add_argument("--dropout-range", type=float_range, default=(0.0, 0.5), metavar="LOW,HIGH",
                       help="uniform (default: 0,0.5)")
    group.add_argument("--momentum-range", type=float_range, metavar="LOW,HIGH",
                       help=f"log-uniform, for --optimizer {', '.join(MOMENTUM_RULES)} (default: not "
                            "searched; --momentum or the rule's default)")
    group.add_argument("--final-epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"], metavar="N",
                       help="epochs to retrain the best configuration (default: %(default)s)")
    group.add_argument("--save", metavar="MODEL.safetensors",
                       help="save the retrained best model (as fastfc train --save)")
    group.add_argument("--log", metavar="TRIALS.csv", help="the trial table as CSV")
    add_search_arguments(group)
    parser.set_defaults(run=run_search, plot=None)


def search_space(args):
    """The trials' distributions (fastfc.search), in the order they are drawn."""
    space = {"lr": search.LogUniform(*args.lr_range),
             "weight_decay": search.LogUniform(*args.weight_decay_range),
             "hidden": search.Choice(args.hidden_choices),
             "dropout": search.Uniform(*args.dropout_range)}
    if args.momentum_range is not None:
        space["momentum"] = search.LogUniform(*args.momentum_range)
    return space


def check_search_args(args):
    """The checks of search options that argparse cannot make."""
    if args.dropout_range[1] >= 1:
        raise CommandError("--dropout-range: dropout must stay below 1")
    if not args.hidden_choices:
        raise CommandError("--hidden-choices: give at least one width")
    if args.momentum_range is not None:
        if args.optimizer not in MOMENTUM_RULES:
            raise CommandError(f"--momentum-range is only for --optimizer "
                               f"{', '.join(MOMENTUM_RULES[:-1])} or {MOMENTUM_RULES[-1]} "
                               f"(not {args.optimizer})")
        if args.momentum_range[1] >= 1:
            raise CommandError("--momentum-range: momentum must stay below 1")
    try:
        search_space(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def sample_trials(args, count):
    """count hyperparameter draws from a generator seeded by --seed, drawn
    one at a time as the search asks for them (so that --trials 1000000000
    starts at once and never holds more than the trials run)."""
    depth = len(args.hidden if args.hidden is not None else MODEL_DEFAULTS[args.model]["hidden"])
    for trial in search.sample_trials(search_space(args), count, args.seed):
        trial["hidden"] = [int(trial["hidden"])] * depth
        trial.setdefault("momentum", None)
        yield trial


def _trial_args(args, trial):
    """args with the trial's hyperparameters in place of the command line's."""
    momentum = args.momentum if trial["momentum"] is None else trial["momentum"]
    return argparse.Namespace(**dict(vars(args), lr=trial["lr"], weight_decay=trial["weight_decay"],
                                     hidden=tuple(trial["hidden"]), dropout=trial["dropout"],
                                     momentum=momentum))


def run_trial(args, trial, data, prepared, class_names):
    """Train one configuration briefly; record its accuracies and time in trial.

    A trial whose loss diverges (NaN or infinite) is recorded with val_acc 0,
    so it ranks last, instead of ending the search.
    """
    trial_args = _trial_args(args, trial)
    spec = model_spec(trial_args, data, class_names)
    check_model_size(spec, trial_args.optimizer)
    solver = make_solver(build_model(spec, args.seed), prepared, trial_args)
    start = time.perf_counter()
    try:
        solver.train()
        trial["diverged"] = False
    except FloatingPointError:
        trial["diverged"] = True
    trial.update(val_acc=0.0 if trial["diverged"] else float(solver.best_val_acc),
                 train_acc=float(solver.train_acc_history[-1]) if solver.train_acc_history else float("nan"),
                 seconds=time.perf_counter() - start)


def write_trial_log(path, ranked):
    """The ranked trials as CSV."""
    columns = ("number", "lr", "weight_decay", "momentum", "hidden", "dropout", "val_acc", "train_acc",
               "seconds", "diverged")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for t in ranked:
            writer.writerow(["-".join(map(str, t[c])) if c == "hidden" else
                             "" if t[c] is None else t[c] for c in columns])
    return [path]


def run_search(args):
    check_training_args(args)
    check_search_args(args)
    args.data_dir = resolve_data_dir(args.dataset, args.data_dir)
    check_output_paths(model_outputs("--save", args.save) + [("--log", args.log, False)],
                       inputs=data_files(args.dataset, args.data_dir))
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    finished = []
    stopped = None  # KeyboardInterrupt or MemoryError: the finished trials are still ranked and logged

    def report(trial):
        if not args.quiet:
            say(f"trial {trial['number']:>{len(str(args.trials))}}/{args.trials}  {format_trial(trial)}")

    try:
        if uses_executor(args):
            run_trials(args, search_space(args), prepared, class_names, finished, report)
        else:
            for number, trial in enumerate(sample_trials(args, args.trials), 1):
                trial["number"] = number
                run_trial(args, trial, data, prepared, class_names)
                finished.append(trial)
                report(trial)
    except (KeyboardInterrupt, MemoryError) as exc:
        stopped = exc
    ranked = search.rank(finished)
    if ranked:
        print_trial_table(ranked)
    with interruptions_held() as signals:
        written, failures = write_outputs([("--log", args.log, lambda path: write_trial_log(path, ranked))])
    if len(finished) < args.trials or signals:
        saved = f"; saved {', '.join(written)}" if written else ""
        if isinstance(stopped, MemoryError):
            print(f"fastfc: error: {error_line(stopped)} in trial {len(finished) + 1} of {args.trials}{saved}",
                  file=sys.stderr)
        else:
            print(f"fastfc: search interrupted after {len(finished)} of {args.trials} trials{saved}",
                  file=sys.stderr)
        report_failures(failures)
        return EXIT_ERROR if isinstance(stopped, MemoryError) else EXIT_INTERRUPTED
    best = ranked[0]
    if best["diverged"]:
        report_failures(failures)
        raise CommandError("every trial diverged (NaN or infinite loss): try a lower --lr-range")

    for path in written:
        say(f"saved {path}")
    status = report_failures(failures)
    best_args = _trial_args(args, best)
    spec = model_spec(best_args, data, class_names)
    model = build_model(spec, args.seed)
    # Retrained and reported as `fastfc train` does; the test set is touched
    # once, by the chosen model only.
    say(f"best: trial {best['number']}, retrained for {args.final_epochs} epochs")
    return train_and_report(best_args, model, spec, statistics, prepared, args.save, lambda solver: [],
                            num_epochs=args.final_epochs) or status


def format_trial(trial):
    """One trial's hyperparameters and result on one line."""
    result = "diverged" if trial["diverged"] else f"val acc {trial['val_acc']:6.2%}"
    momentum = "" if trial["momentum"] is None else f"momentum {trial['momentum']:.3f}  "
    return (f"lr {trial['lr']:.2e}  wd {trial['weight_decay']:.2e}  {momentum}"
            f"hidden {'-'.join(map(str, trial['hidden'])) or 'none':>9}  dropout {trial['dropout']:.2f}  "
            f"{result}  ({trial['seconds']:.1f} s)")


def print_trial_table(ranked):
    """The trials, best validation accuracy first."""
    say(f"{'rank':>4}  {'trial':>5}  {'lr':>8}  {'wd':>8}  {'momentum':>8}  {'hidden':>9}  "
          f"{'dropout':>7}  {'val acc':>7}  {'train acc':>9}")
    for rank, t in enumerate(ranked, 1):
        hidden = "-".join(map(str, t["hidden"])) or "none"
        momentum = "-" if t["momentum"] is None else f"{t['momentum']:.3f}"
        val_acc = "diverged" if t["diverged"] else f"{t['val_acc']:.2%}"
        train_acc = "-" if math.isnan(t["train_acc"]) else f"{t['train_acc']:.2%}"  # nan: no epoch ended
        say(f"{rank:>4}  {t['number']:>5}  {t['lr']:8.2e}  {t['weight_decay']:8.2e}  {momentum:>8}  "
              f"{hidden:>9}  {t['dropout']:7.2f}  {val_acc:>7}  {train_acc:>9}")
