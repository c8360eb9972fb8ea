"""`fastfc train`, and the training pieces `fastfc search` shares."""
import functools
import os
import sys

from .. import datasets, plotting
from .data import data_files, evaluate_model, load_data, prepare, resolve_data_dir
from .model_files import build_model, check_model_size, describe_model, model_outputs, model_spec, save_model
from .options import (EXIT_ERROR, EXIT_INTERRUPTED, MOMENTUM_RULES, CommandError, add_data_arguments,
                      add_model_arguments, add_optimizer_arguments, add_runtime_arguments, configure_threads,
                      error_line)
from .outputs import check_output_paths, interruptions_held, report_failures, say, write_outputs
from .scale import add_train_arguments, data_parallel_options

# What the numbers of an epoch line are (printed before the first, and in --help).
EPOCH_LINE_KEY = ("each epoch line: train loss = mean over the epoch's batches as the weights changed; "
                  "train acc = on 1,000 training images after the epoch; val = the whole validation set "
                  "after the epoch")


def add_train_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a classifier (default: an MLP on the embedded digits)",
        description="Train a network with a progress bar and per-epoch lines, then report the test "
                    "accuracy. Ctrl-C stops at the next batch and saves what was asked (exit 130). "
                    f"In {EPOCH_LINE_KEY}.")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optimizer_arguments(parser)
    add_runtime_arguments(parser)
    group = parser.add_argument_group("output")
    group.add_argument("--save", metavar="MODEL.safetensors",
                       help="save the best-validation parameters as safetensors (.npz for a name ending "
                            "in .npz), plus MODEL.json describing the network")
    group.add_argument("--plot", metavar="CURVES.png",
                       help=f"training curves as a PNG image (needs matplotlib: {plotting.PLOT_INSTALL_HINT})")
    group.add_argument("--log", metavar="HISTORY.csv",
                       help="per-epoch history as CSV (and per-iteration losses in HISTORY-iterations.csv)")
    add_train_arguments(group)
    parser.set_defaults(run=run_train)


def run_train(args):
    check_training_args(args)
    data_parallel = data_parallel_options(args)  # {} unless mpiexec started this process
    args.data_dir = resolve_data_dir(args.dataset, args.data_dir)
    check_output_paths(model_outputs("--save", args.save) + history_outputs(args),
                       inputs=data_files(args.dataset, args.data_dir))
    check_plot_name(args.plot)
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    spec = model_spec(args, data, class_names)
    check_model_size(spec, args.optimizer)
    model = build_model(spec, args.seed)
    if not args.quiet:
        sizes = ", ".join(f"{len(prepared[f'y_{s}'])} {s}" for s in datasets.SPLITS)
        say(f"{args.dataset}: {sizes}; {len(class_names)} classes; model {describe_model(spec)}")
    title = f"{args.dataset} {describe_model(spec)}"
    return train_and_report(args, model, spec, statistics, prepared, args.save,
                            lambda solver: history_writes(args, solver, title), data_parallel=data_parallel)


def train_and_report(args, model, spec, statistics, prepared, save, history_writes_of, num_epochs=None,
                     data_parallel=None):
    """Train model (the epoch lines on stdout unless --quiet), then save it
    to save (None: not asked) once an epoch has ended, write the files of
    history_writes_of(solver) (write_outputs' triples), and report the test
    accuracy and the files written; an interruption or a NaN loss saves the
    same and says what was and was not written, as does memory running out
    during training (a long run is not lost to it). Returns the exit status.
    `fastfc train` and the final retrain of `fastfc search` share it
    (data_parallel: see make_solver)."""
    num_epochs = num_epochs or args.epochs

    def print_epoch(solver, record):
        say(format_epoch(record, num_epochs))

    solver = make_solver(model, prepared, args, num_epochs=num_epochs,
                         on_epoch_end=None if args.quiet else print_epoch, verbose=not args.quiet,
                         data_parallel=data_parallel)
    if not args.quiet:
        say(f"({EPOCH_LINE_KEY})")
    stopped = None  # why training ended early: KeyboardInterrupt, the FloatingPointError or MemoryError
    try:
        solver.train()
    except (KeyboardInterrupt, FloatingPointError, MemoryError) as exc:
        stopped = exc
    # Until an epoch has ended the parameters are untrained: never save them
    # (over an earlier run's model, possibly).
    epochs_done = len(solver.epoch_history)
    writes = [("--save", save, lambda path: save_model(path, model, spec, statistics))] if epochs_done else []
    with interruptions_held() as signals:
        written, failures = write_outputs(writes + history_writes_of(solver))
    if signals and stopped is None:  # arrived while saving a finished run: it ends as interrupted
        stopped = KeyboardInterrupt()
    if stopped is not None:
        saved = f"; saved {', '.join(written)}" if written else ""
        if save and not epochs_done:
            saved += f"; {save} not written: no epoch finished (an existing file is left as it was)"
        if isinstance(stopped, KeyboardInterrupt):
            print(f"fastfc: interrupted after {epochs_done} epoch{'s' if epochs_done != 1 else ''} "
                  f"(best val acc {solver.best_val_acc:.2%}){saved}", file=sys.stderr)
        else:
            print(f"fastfc: error: {error_line(stopped)}{saved}", file=sys.stderr)
        report_failures(failures)
        return EXIT_INTERRUPTED if isinstance(stopped, KeyboardInterrupt) else EXIT_ERROR
    test_loss, test_acc = evaluate_model(model, prepared["X_test"], prepared["y_test"])
    say(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}, {len(prepared['y_test'])} samples; "
        f"best val acc {solver.best_val_acc:.2%})")
    for path in written:
        say(f"saved {path}")
    return report_failures(failures)


def check_training_args(args):
    """The checks of train and search options that argparse cannot make."""
    if args.momentum is not None and args.optimizer not in MOMENTUM_RULES:
        raise CommandError(f"--momentum is only for --optimizer {', '.join(MOMENTUM_RULES[:-1])} "
                           f"or {MOMENTUM_RULES[-1]} (not {args.optimizer})")


def make_augment(spec, image_shape):
    """The Solver's augment callable for an augment_spec, or None."""
    padding = spec["padding"]
    if padding is None:
        padding = max(1, image_shape[-1] // 8)
    if not spec["flip"] and padding == 0:
        return None
    return functools.partial(datasets.augment, flip=spec["flip"], padding=padding)


def make_solver(model, data, args, num_epochs=None, on_epoch_end=None, verbose=False, data_parallel=None):
    """A Solver for model on the prepared data with the command line's training options
    (data_parallel: fastfc.distributed.launched_solver's options, for fastfc train)."""
    from .. import Solver, distributed

    make = Solver if data_parallel is None else functools.partial(distributed.launched_solver, **data_parallel)
    optim_config = {"learning_rate": args.lr}
    if args.momentum is not None:
        optim_config["momentum"] = args.momentum
    return make(
        model, {k: data[k] for k in ("X_train", "y_train", "X_val", "y_val")},
        update_rule=args.optimizer, optim_config=optim_config, lr_decay=args.lr_decay,
        batch_size=args.batch_size, num_epochs=num_epochs or args.epochs,
        num_train_samples=1000, verbose=verbose, print_every=sys.maxsize, seed=args.seed,
        patience=args.patience, weight_decay=args.weight_decay,
        augment=make_augment(args.augment, data["X_train"].shape), on_epoch_end=on_epoch_end,
    )


def format_epoch(record, num_epochs):
    """One line per epoch: losses and accuracies, throughput, time."""
    def part(loss, acc):
        loss_text = "  -   " if loss is None else f"{loss:.4f}"
        acc_text = "  -   " if acc is None else f"{acc:7.2%}"
        return f"loss {loss_text}  acc {acc_text}"
    width = len(str(num_epochs))
    return (f"epoch {record['epoch']:>{width}}/{num_epochs}  "
            f"train {part(record.get('train_loss'), record.get('train_acc'))}  |  "
            f"val {part(record.get('val_loss'), record.get('val_acc'))}  |  "
            f"{record.get('samples_per_s', 0):,.0f} samples/s  {record.get('seconds', 0):.2f} s")


def history_writes(args, solver, title):
    """The --log CSV files and the --plot PNG, as write_outputs writes."""
    def write_log(path):
        return plotting.write_history_csv(path, solver.epoch_history, solver.loss_history)

    def write_plot(path):
        try:
            plotting.plot_history(path, solver.loss_history, solver.epoch_history, title=title,
                                  kept_epoch=solver.best_epoch)
        except plotting.MissingMatplotlibError:
            print(f"fastfc: --plot needs matplotlib, which is not installed: {plotting.PLOT_INSTALL_HINT} "
                  f"(the run is not affected; --log writes the history as CSV)", file=sys.stderr)
            return []
        return [path]
    return [("--log", args.log, write_log), ("--plot", args.plot, write_plot)]


def check_plot_name(path):
    """--plot writes a PNG under exactly the name given: refuse, before
    training, a name that does not say so (curves.txt, or no extension)."""
    if path is not None and os.path.splitext(path)[1].lower() != ".png":
        raise CommandError(f"--plot {path}: the curves are a PNG image: give a name ending in .png")


def history_outputs(args):
    """The files history_writes may write, as check_output_paths outputs."""
    if args.log is None:
        return [("--plot", args.plot, False)]
    return [("--log", args.log, False), ("--log's per-iteration losses", plotting.iteration_log_path(args.log), False),
            ("--plot", args.plot, False)]
