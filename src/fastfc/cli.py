"""The `fastfc` command (also `python -m fastfc`).

    fastfc train                               # digits MLP demo, seconds on 2 cores
    fastfc train --model cnn --save cnn.npz --plot curves.png --log history.csv
    fastfc train --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --classes horse,ship,truck
    fastfc evaluate --model cnn.npz
    fastfc predict --model cnn.npz --input images.npy
    fastfc search --trials 20
    fastfc info

Each subcommand is registered by a function add_<name>_parser(subparsers)
that adds its parser and sets `run` to the function doing the work (taking
the parsed arguments, returning the exit status). SUBCOMMANDS lists the
built-in ones; a module `fastfc.bench`, when it exists, adds its own through
its add_bench_parser(subparsers), so `fastfc bench` lives in its own module.

User errors (unknown data set, missing files, bad option values, an output
directory that does not exist) print one line on stderr, before any training,
and exit with status 1 (2 for a malformed command line). Ctrl-C exits with 130
after saving what was asked for (train: the best parameters so far and the
history; search: the finished trials). Set FASTFC_TRACEBACK=1 to see the full
traceback of an error instead.
"""
import argparse
import csv
import functools
import importlib
import importlib.util
import itertools
import json
import math
import os
import sys
import time

import numpy as np

from . import datasets, plotting

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
CLASS_NAMES = {
    "digits": datasets.DIGIT_CLASSES,
    "mnist": datasets.DIGIT_CLASSES,
    "fashion-mnist": datasets.FASHION_MNIST_CLASSES,
    "cifar10": datasets.CIFAR10_CLASSES,
}
MODELS = ("mlp", "cnn")
UPDATE_RULES = ("adam", "adamw", "sgd", "sgd_momentum", "rmsprop", "adagrad")
MOMENTUM_RULES = ("sgd", "sgd_momentum", "rmsprop")  # the rules that take --momentum
DTYPES = ("float32", "float64")

# Defaults tuned on digits (the demo `fastfc train` runs); see README for
# the accuracy and time they give.
MODEL_DEFAULTS = {
    "mlp": dict(hidden=(256, 256), filters=()),
    "cnn": dict(hidden=(128,), filters=(32,)),
}
TRAIN_DEFAULTS = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, dropout=0.0,
                      batch_size=64, epochs=20, lr_decay=1.0, seed=0)

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
SPEC_FORMAT = "fastfc-cli-model"
SPEC_VERSION = 1


class CommandError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""


class UsageError(Exception):
    """A malformed command line: printed as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with errors as one line (no usage block) raised to main()."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- option value parsers

def _number_parser(kind, low=None, low_open=False, high=None, high_open=False):
    """An argparse type: kind(text) within the given bounds."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {' and '.join(filter(None, (lo, hi)))})")
        return value
    return parse


positive_int = _number_parser(int, low=1)
non_negative_int = _number_parser(int, low=0)
positive_float = _number_parser(float, low=0, low_open=True)
non_negative_float = _number_parser(float, low=0)
probability = _number_parser(float, low=0, high=1, high_open=True)


def int_list(text):
    """'256,256' -> (256, 256); '' or 'none' -> () (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 256,256, "
                                         f"got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def float_range(text):
    """'1e-4,1e-2' -> (1e-4, 1e-2) with 0 <= low <= high."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH like 1e-4,1e-2, got {text!r}") from None
    if not (0 <= low <= high and math.isfinite(high)):
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH, got {text!r}")
    return low, high


def augment_spec(text):
    """'flip', 'crop', 'crop=2', 'flip,crop' or 'none' -> dict(flip=bool, padding=int or None)."""
    spec = dict(flip=False, padding=0)
    for item in filter(None, (part.strip().lower() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name == "none" and not value:
            continue
        if name == "flip" and not value:
            spec["flip"] = True
        elif name == "crop":
            try:
                spec["padding"] = int(value) if value else None  # None: chosen from the image size
            except ValueError:
                raise argparse.ArgumentTypeError(f"crop padding must be an integer, got {value!r}") from None
            if spec["padding"] is not None and spec["padding"] < 0:
                raise argparse.ArgumentTypeError(f"crop padding must be >= 0, got {value}")
        else:
            raise argparse.ArgumentTypeError(f"unknown augmentation {item!r} (use flip, crop or crop=N)")
    return spec


# ---------------------------------------------------------------- shared pieces

def configure_threads(args):
    """Apply --threads (when given) before any kernel runs."""
    if getattr(args, "threads", None) is not None:
        import fastfc

        fastfc.set_num_threads(args.threads)


def check_output_paths(*paths):
    """Fail before any work, not after a training run, when an output file
    (None: not asked for) cannot be created: its directory is missing or the
    path is a directory."""
    for path in filter(None, paths):
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise CommandError(f"cannot write {path}: it is a directory")
        if not os.path.isdir(directory):
            raise CommandError(f"cannot write {path}: directory {directory} does not exist")


def load_data(dataset, data_dir, classes, val_size, seed):
    """The data set's splits (raw [0, 1] images; only `classes`, when given,
    relabelled 0..k-1, with the validation set drawn from them).

    Returns (data dict, tuple of the class names in label order).
    """
    if dataset not in DATASETS:
        raise CommandError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    names = CLASS_NAMES[dataset]
    # Names resolved here, against this data set's own: the loaders then get indices.
    indices = None if classes is None else datasets.class_indices(classes, names)
    options = dict(classes=indices, seed=seed)
    if val_size is not None:
        options["val_size"] = val_size
    if dataset == "digits":
        if data_dir is not None:
            raise CommandError("--data-dir is for mnist, fashion-mnist and cifar10: digits is embedded")
        data = datasets.load_digits(**options)
    elif data_dir is None:
        raise CommandError(f"--data-dir is required for {dataset} (nothing is downloaded): "
                           "the directory holding its files")
    elif dataset == "cifar10":
        data = datasets.load_cifar10(data_dir, **options)
    else:
        data = datasets.load_mnist(data_dir, **options)
    if indices is not None:
        names = tuple(names[i] for i in indices)
    return data, names


def add_data_arguments(parser, saved_model=False):
    """--dataset, --data-dir, --val-size and, for training, --classes. For a
    saved model they default to what it was trained with, and its classes
    are fixed."""
    group = parser.add_argument_group("data")
    if saved_model:
        group.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} "
                                             "(default: the one the model was trained on)")
        group.add_argument("--data-dir", metavar="DIR",
                           help="directory with the data set's files (default: the model's, for its data set)")
        group.add_argument("--val-size", type=positive_int, metavar="N",
                           help="validation images held out of the training set (default: the model's)")
        return
    group.add_argument("--dataset", default="digits",
                       help=f"one of {', '.join(DATASETS)} (default: %(default)s; digits is embedded)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="local directory with the MNIST IDX files or the CIFAR-10 python batches")
    group.add_argument("--classes", metavar="A,B,...",
                       help="keep only these classes (names or indices), relabelled 0..k-1 in this order")
    group.add_argument("--val-size", type=positive_int, metavar="N",
                       help="validation images held out of the training set, after selecting "
                            "--classes (default: the loader's)")


def add_runtime_arguments(parser):
    """--threads and --quiet."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="exactly N threads for fastfc kernels (default: OMP_NUM_THREADS, else every "
                            "core, fewer while other processes keep the cores busy)")
    group.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")


def add_model_arguments(parser):
    """The network's architecture, dtype and input normalisation."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=MODELS, default="mlp", help="network kind (default: %(default)s)")
    group.add_argument("--hidden", type=int_list, metavar="N,N,...",
                       help="hidden layer widths (default: 256,256 for mlp, 128 for cnn; 'none' for a linear head)")
    group.add_argument("--filters", type=int_list, metavar="N,N,...",
                       help="cnn: filters of each conv-relu-pool block (default: 32)")
    group.add_argument("--kernel-size", type=positive_int, default=3, metavar="K",
                       help="cnn: convolution kernel size, padded to keep the size (default: %(default)s)")
    group.add_argument("--dropout", type=probability, default=TRAIN_DEFAULTS["dropout"], metavar="P",
                       help="dropout after each hidden layer (default: %(default)s)")
    group.add_argument("--dtype", choices=DTYPES, default="float32", help="(default: %(default)s)")
    group.add_argument("--no-normalize", dest="normalize", action="store_false",
                       help="feed [0, 1] pixels instead of standardizing with the training mean/std")


def add_optimizer_arguments(parser):
    """Optimizer, schedule, batching, augmentation and seed."""
    group = parser.add_argument_group("training")
    group.add_argument("--optimizer", choices=UPDATE_RULES, default=TRAIN_DEFAULTS["optimizer"],
                       help="(default: %(default)s)")
    group.add_argument("--lr", type=positive_float, default=TRAIN_DEFAULTS["lr"],
                       help="learning rate (default: %(default)s)")
    group.add_argument("--momentum", type=probability, metavar="M",
                       help=f"for {', '.join(MOMENTUM_RULES)} (sgd_momentum's default: 0.9)")
    group.add_argument("--weight-decay", type=non_negative_float, default=TRAIN_DEFAULTS["weight_decay"],
                       metavar="WD", help="on weights only, never biases (default: %(default)s)")
    group.add_argument("--lr-decay", type=positive_float, default=TRAIN_DEFAULTS["lr_decay"], metavar="F",
                       help="multiply the learning rate by F after each epoch (default: %(default)s)")
    group.add_argument("--batch-size", type=positive_int, default=TRAIN_DEFAULTS["batch_size"], metavar="N",
                       help="(default: %(default)s)")
    group.add_argument("--epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"], metavar="N",
                       help="(default: %(default)s)")
    group.add_argument("--patience", type=positive_int, metavar="N",
                       help="stop after N epochs without a better validation accuracy")
    group.add_argument("--augment", type=augment_spec, default=augment_spec("none"), metavar="SPEC",
                       help="flip, crop, crop=N or flip,crop (random shifts by up to N pixels; "
                            "default none; do not flip digits)")
    group.add_argument("--seed", type=non_negative_int, default=TRAIN_DEFAULTS["seed"],
                       help="seeds the split, initialisation, dropout and shuffling (default: %(default)s)")


# ---------------------------------------------------------------- models

def model_spec(args, data, class_names):
    """The JSON-able description a saved model is rebuilt from."""
    defaults = MODEL_DEFAULTS[args.model]
    return dict(
        format=SPEC_FORMAT, version=SPEC_VERSION, model=args.model,
        input_shape=list(data["X_train"].shape[1:]), num_classes=len(class_names),
        hidden=list(args.hidden if args.hidden is not None else defaults["hidden"]),
        filters=list(args.filters if args.filters is not None else defaults["filters"])
        if args.model == "cnn" else [],
        kernel_size=args.kernel_size, dropout=args.dropout, dtype=args.dtype, normalize=args.normalize,
        dataset=args.dataset, classes=list(class_names) if args.classes is not None else None,
        class_names=list(class_names), val_size=args.val_size, seed=args.seed,
        # So that evaluate/predict find the data again without --data-dir.
        data_dir=os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir else None,
    )


def build_model(spec, seed):
    """A fastfc.models.Sequential with softmax loss built from a spec; the
    layers are initialised (and dropout masks drawn) from seeds derived from
    seed (None: unseeded, for a model whose parameters are loaded next)."""
    from . import layers
    from .models import Sequential

    layer_seeds = itertools.count(seed * 1000) if seed is not None else itertools.repeat(None)
    dtype = np.dtype(spec["dtype"]).type
    channels, height, width = spec["input_shape"]
    stack = []
    if spec["model"] == "cnn":
        k = spec["kernel_size"]
        padding = (k - 1) // 2  # keeps the size for odd k
        for filters in spec["filters"]:
            height, width = height + 2 * padding - k + 1, width + 2 * padding - k + 1
            if height < 2 or width < 2:
                raise CommandError(f"--filters/--kernel-size: {len(spec['filters'])} conv-pool blocks "
                                   f"do not fit {spec['input_shape'][1]}x{spec['input_shape'][2]} images")
            stack += [layers.Conv2d(channels, filters, k, padding=padding, seed=next(layer_seeds), dtype=dtype),
                      layers.ReLU(), layers.MaxPool2d(2)]
            channels, height, width = filters, height // 2, width // 2
    stack.append(layers.Flatten())
    features = channels * height * width
    for hidden in spec["hidden"]:
        stack += [layers.Linear(features, hidden, seed=next(layer_seeds), dtype=dtype), layers.ReLU()]
        if spec["dropout"] > 0:
            stack.append(layers.Dropout(spec["dropout"], seed=next(layer_seeds)))
        features = hidden
    stack.append(layers.Linear(features, spec["num_classes"], seed=next(layer_seeds), dtype=dtype))
    return Sequential(*stack, loss=layers.SoftmaxCrossEntropy())


def spec_path(model_path):
    """The JSON file holding a saved model's spec: model.npz -> model.json."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def save_model(path, model, spec, statistics):
    """Save the parameters (model.save) and, next to them, the spec and the
    normalisation statistics as JSON. Returns the files written."""
    spec = dict(spec, mean=None if statistics is None else [float(v) for v in statistics[0]],
                std=None if statistics is None else [float(v) for v in statistics[1]])
    from .models import write_atomically

    model.save(path)
    sidecar = spec_path(path)
    write_atomically(sidecar, lambda f: f.write(json.dumps(spec, indent=1).encode()))
    return [os.fspath(path), sidecar]


def load_model(path):
    """(model, spec) from the files save_model wrote."""
    if not os.path.isfile(path):
        raise CommandError(f"model file not found: {path}")
    sidecar = spec_path(path)
    try:
        with open(sidecar) as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise CommandError(f"{sidecar} not found: it describes the architecture of {path} "
                           "(fastfc train --save writes both)") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{sidecar}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise CommandError(f"{sidecar}: not a fastfc model description")
    if spec.get("version") != SPEC_VERSION:
        raise CommandError(f"{sidecar}: model description version {spec.get('version')}, "
                           f"this fastfc reads version {SPEC_VERSION}")
    try:
        model = build_model(spec, seed=None)
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"{sidecar}: bad model description ({exc})") from None
    try:
        model.load(path)
    except (ValueError, KeyError, OSError) as exc:
        raise CommandError(f"{path}: cannot load the parameters ({exc})") from None
    return model, spec


def prepare(data, spec_or_args, statistics=None):
    """Standardize (unless switched off) and cast to the model dtype.

    Returns (data dict with X/y of every split, (mean, std) or None)."""
    normalize = spec_or_args["normalize"] if isinstance(spec_or_args, dict) else spec_or_args.normalize
    dtype = spec_or_args["dtype"] if isinstance(spec_or_args, dict) else spec_or_args.dtype
    prepared = {k: data[k] for k in data if k.startswith(("X_", "y_"))}
    if normalize:
        mean, std = statistics if statistics is not None else (None, None)
        normalized = datasets.normalize(prepared, mean=mean, std=std)
        statistics = (normalized.pop("mean"), normalized.pop("std"))
        prepared = normalized
    for key in [k for k in prepared if k.startswith("X_")]:
        prepared[key] = np.ascontiguousarray(prepared[key], dtype=dtype)
    return prepared, statistics if normalize else None


def make_augment(spec, image_shape):
    """The Solver's augment callable for an augment_spec, or None."""
    padding = spec["padding"]
    if padding is None:
        padding = max(1, image_shape[-1] // 8)
    if not spec["flip"] and padding == 0:
        return None
    return functools.partial(datasets.augment, flip=spec["flip"], padding=padding)


def check_training_args(args):
    """The checks of train and search options that argparse cannot make."""
    if args.momentum is not None and args.optimizer not in MOMENTUM_RULES:
        raise CommandError(f"--momentum is only for --optimizer {', '.join(MOMENTUM_RULES[:-1])} "
                           f"or {MOMENTUM_RULES[-1]} (not {args.optimizer})")


def make_solver(model, data, args, num_epochs=None, on_epoch_end=None, verbose=False):
    """A Solver for model on the prepared data with the command line's training options."""
    from . import Solver

    optim_config = {"learning_rate": args.lr}
    if args.momentum is not None:
        optim_config["momentum"] = args.momentum
    return Solver(
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


def write_history(args, solver, title):
    """The --log CSV files and the --plot PNG; returns the paths written."""
    written = []
    if args.log:
        written += plotting.write_history_csv(args.log, solver.epoch_history, solver.loss_history)
    if args.plot:
        try:
            plotting.plot_history(args.plot, solver.loss_history, solver.epoch_history, title=title)
            written.append(args.plot)
        except plotting.MissingMatplotlibError:
            print(f"fastfc: --plot needs matplotlib, which is not installed: {plotting.PLOT_INSTALL_HINT} "
                  f"(the run is not affected; --log writes the history as CSV)", file=sys.stderr)
    return written


def _evaluate(model, X, y, batch_size=256):
    """(loss, accuracy) of model on X, y."""
    from . import evaluate

    return evaluate(model, X, y, batch_size=batch_size)


# ---------------------------------------------------------------- train

def add_train_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a classifier (default: an MLP on the embedded digits)",
        description="Train a network with a progress bar and per-epoch lines, then report the test "
                    "accuracy. Ctrl-C stops at the next batch and saves what was asked (exit 130).")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_optimizer_arguments(parser)
    add_runtime_arguments(parser)
    group = parser.add_argument_group("output")
    group.add_argument("--save", metavar="MODEL.npz",
                       help="save the best-validation parameters (plus MODEL.json describing the network)")
    group.add_argument("--plot", metavar="CURVES.png", help="training curves (needs matplotlib)")
    group.add_argument("--log", metavar="HISTORY.csv",
                       help="per-epoch history as CSV (and per-iteration losses in HISTORY-iterations.csv)")
    parser.set_defaults(run=run_train)


def run_train(args):
    check_training_args(args)
    check_output_paths(args.save, args.plot, args.log)
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    spec = model_spec(args, data, class_names)
    model = build_model(spec, args.seed)

    def print_epoch(solver, record):
        print(format_epoch(record, args.epochs), flush=True)

    solver = make_solver(model, prepared, args, on_epoch_end=None if args.quiet else print_epoch,
                         verbose=not args.quiet)
    if not args.quiet:
        sizes = ", ".join(f"{len(prepared[f'y_{s}'])} {s}" for s in datasets.SPLITS)
        print(f"{args.dataset}: {sizes}; {len(class_names)} classes; "
              f"model {describe_model(spec)}", flush=True)
    interrupted = False
    try:
        solver.train()
    except KeyboardInterrupt:
        interrupted = True
    written = save_model(args.save, model, spec, statistics) if args.save else []
    written += write_history(args, solver, title=f"{args.dataset} {describe_model(spec)}")
    if interrupted:
        epochs_done = len(solver.epoch_history)
        saved = f"; saved {', '.join(written)}" if written else ""
        print(f"fastfc: interrupted after {epochs_done} epoch{'s' if epochs_done != 1 else ''} "
              f"(best val acc {solver.best_val_acc:.2%}){saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    test_loss, test_acc = _evaluate(model, prepared["X_test"], prepared["y_test"])
    print(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}, {len(prepared['y_test'])} samples; "
          f"best val acc {solver.best_val_acc:.2%})")
    for path in written:
        print(f"saved {path}")
    return 0


def describe_model(spec):
    """'mlp 64-256-256-10' or 'cnn 1x8x8 conv32-pool 128-10'."""
    widths = "-".join(str(w) for w in spec["hidden"] + [spec["num_classes"]])
    if spec["model"] == "mlp":
        return f"mlp {int(np.prod(spec['input_shape']))}-{widths}"
    shape = "x".join(str(s) for s in spec["input_shape"])
    blocks = " ".join(f"conv{f}-pool" for f in spec["filters"])
    return f"cnn {shape} {blocks} {widths}"


# ---------------------------------------------------------------- evaluate / predict

def _check_input_shape(X, spec, where):
    """CommandError unless the images X have the shape the model was built for."""
    if list(X.shape[1:]) != list(spec["input_shape"]):
        raise CommandError(f"{where}: images of shape {tuple(X.shape[1:])}, the model expects "
                           f"{tuple(spec['input_shape'])}")


def _model_data(args, spec):
    """The split asked for, of the model's classes, prepared as the model was
    trained (its own statistics)."""
    dataset = args.dataset or spec["dataset"]
    data_dir = args.data_dir
    if data_dir is None and dataset == spec["dataset"]:
        data_dir = spec.get("data_dir")
    val_size = args.val_size if args.val_size is not None else spec["val_size"]
    data, _ = load_data(dataset, data_dir, spec["classes"], val_size, spec["seed"])
    statistics = None if spec["mean"] is None else (np.array(spec["mean"], np.float32),
                                                   np.array(spec["std"], np.float32))
    prepared, _ = prepare(data, spec, statistics)
    X, y = prepared[f"X_{args.split}"], prepared[f"y_{args.split}"]
    _check_input_shape(X, spec, f"--dataset {dataset}")
    return X, y


def add_saved_model_arguments(parser):
    parser.add_argument("--model", required=True, metavar="MODEL.npz",
                        help="a model saved by fastfc train --save (MODEL.json must be next to it)")
    add_data_arguments(parser, saved_model=True)
    parser.add_argument("--split", choices=datasets.SPLITS, default="test",
                        help="which split of the data set (default: %(default)s)")
    group = parser.add_argument_group("runtime")
    group.add_argument("--threads", type=positive_int, metavar="N", help="threads for fastfc kernels")


def add_evaluate_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="accuracy and loss of a saved model on a data set",
        description="Accuracy of a saved model on a split of its data set (by default the one it was "
                    "trained on, with the same validation split and normalisation).")
    add_saved_model_arguments(parser)
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    configure_threads(args)
    model, spec = load_model(args.model)
    X, y = _model_data(args, spec)
    loss, acc = _evaluate(model, X, y)
    print(f"{args.split} accuracy {acc:.2%} (loss {loss:.4f}, {len(y)} samples)")
    return 0


def add_predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="class predictions of a saved model",
        description="Predict classes with a saved model, for images in a .npy or .csv file "
                    "(--input) or a split of a data set. Writes CSV: index, label, class, probability.")
    add_saved_model_arguments(parser)
    parser.add_argument("--input", metavar="FILE",
                        help=".npy array (N, C, H, W) or (N, C*H*W), or .csv with one flattened image "
                             "per row; pixel values are divided by --pixel-max")
    parser.add_argument("--pixel-max", type=positive_float, default=1.0, metavar="V",
                        help="the value of a white pixel in --input (e.g. 255 for bytes; default: 1)")
    parser.add_argument("--output", metavar="FILE.csv", help="write the predictions here instead of stdout")
    parser.set_defaults(run=run_predict)


def _read_images(path, spec, pixel_max):
    """Images from a .npy or .csv file, as (N, C, H, W) float32 in [0, 1]."""
    if not os.path.isfile(path):
        raise CommandError(f"--input file not found: {path}")
    try:
        if path.endswith(".npy"):
            X = np.load(path, allow_pickle=False)
        else:
            X = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise CommandError(f"{path}: cannot read images ({exc})") from None
    if X.dtype.kind not in "uif":
        raise CommandError(f"{path}: expected numbers, got an array of {X.dtype}")
    shape = tuple(spec["input_shape"])
    if X.shape == shape:
        X = X[None]
    elif X.ndim == 2 and X.shape[1] == int(np.prod(shape)):
        X = X.reshape((-1,) + shape)
    _check_input_shape(X, spec, path)
    return np.asarray(X, dtype=np.float32) / np.float32(pixel_max)


def run_predict(args):
    check_output_paths(args.output)
    configure_threads(args)
    model, spec = load_model(args.model)
    if args.input is not None:
        X = _read_images(args.input, spec, args.pixel_max)
        if spec["mean"] is not None:
            X = datasets.standardize(X, spec["mean"], spec["std"])
        X = X.astype(spec["dtype"])
    else:
        X, _ = _model_data(args, spec)
    model.eval()
    scores = np.concatenate([model.loss(X[i:i + 256]) for i in range(0, len(X), 256)]).astype(np.float64)
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = probabilities.argmax(axis=1)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(("index", "label", "class", "probability"))
        for i, label in enumerate(labels):
            writer.writerow((i, int(label), spec["class_names"][label], f"{probabilities[i, label]:.4f}"))
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"wrote {len(labels)} predictions to {args.output}")
    return 0


# ---------------------------------------------------------------- search

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
    group.add_argument("--final-epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"], metavar="N",
                       help="epochs to retrain the best configuration (default: %(default)s)")
    group.add_argument("--save", metavar="MODEL.npz", help="save the retrained best model")
    group.add_argument("--log", metavar="TRIALS.csv", help="the trial table as CSV")
    parser.set_defaults(run=run_search, plot=None)


def _log_uniform(rng, low, high):
    """A draw from [low, high] uniform in log scale (low itself when the range is a point)."""
    if low == high:
        return low
    if low <= 0:
        raise CommandError(f"a log-uniform range needs LOW > 0, got {low}")
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def sample_trials(args, count):
    """count hyperparameter draws from a generator seeded by --seed."""
    if args.dropout_range[1] >= 1:
        raise CommandError("--dropout-range: dropout must stay below 1")
    if not args.hidden_choices:
        raise CommandError("--hidden-choices: give at least one width")
    depth = len(args.hidden if args.hidden is not None else MODEL_DEFAULTS[args.model]["hidden"])
    rng = np.random.default_rng(args.seed)
    trials = []
    for _ in range(count):
        trials.append(dict(
            lr=_log_uniform(rng, *args.lr_range),
            weight_decay=_log_uniform(rng, *args.weight_decay_range),
            hidden=[int(rng.choice(args.hidden_choices))] * depth,
            dropout=float(rng.uniform(*args.dropout_range)),
        ))
    return trials


def _trial_args(args, trial):
    """args with the trial's hyperparameters in place of the command line's."""
    return argparse.Namespace(**dict(vars(args), lr=trial["lr"], weight_decay=trial["weight_decay"],
                                     hidden=tuple(trial["hidden"]), dropout=trial["dropout"]))


def run_trial(args, trial, data, prepared, class_names):
    """Train one configuration briefly; record its accuracies and time in trial.

    A trial whose loss diverges (NaN or infinite) is recorded with val_acc 0,
    so it ranks last, instead of ending the search.
    """
    trial_args = _trial_args(args, trial)
    solver = make_solver(build_model(model_spec(trial_args, data, class_names), args.seed),
                         prepared, trial_args)
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
    columns = ("number", "lr", "weight_decay", "hidden", "dropout", "val_acc", "train_acc", "seconds",
               "diverged")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for t in ranked:
            writer.writerow(["-".join(map(str, t[c])) if c == "hidden" else t[c] for c in columns])


def run_search(args):
    check_training_args(args)
    check_output_paths(args.save, args.log)
    trials = sample_trials(args, args.trials)
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    finished = []
    try:
        for number, trial in enumerate(trials, 1):
            trial["number"] = number
            run_trial(args, trial, data, prepared, class_names)
            finished.append(trial)
            if not args.quiet:
                print(f"trial {number:>{len(str(args.trials))}}/{args.trials}  {format_trial(trial)}",
                      flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the search: the finished trials are still ranked and logged
    ranked = sorted(finished, key=lambda t: (-t["val_acc"], t["number"]))
    if ranked:
        print_trial_table(ranked)
    written = []
    if args.log:
        write_trial_log(args.log, ranked)
        written.append(args.log)
    if len(finished) < len(trials):
        saved = f"; saved {', '.join(written)}" if written else ""
        print(f"fastfc: search interrupted after {len(finished)} of {len(trials)} trials{saved}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    best = ranked[0]
    if best["diverged"]:
        raise CommandError("every trial diverged (NaN or infinite loss): try a lower --lr-range")

    best_args = _trial_args(args, best)
    spec = model_spec(best_args, data, class_names)
    model = build_model(spec, args.seed)
    solver = make_solver(model, prepared, best_args, num_epochs=args.final_epochs, verbose=not args.quiet)
    solver.train()
    # The test set is touched once, by the chosen model only.
    test_loss, test_acc = _evaluate(model, prepared["X_test"], prepared["y_test"])
    print(f"best: trial {best['number']} retrained for {args.final_epochs} epochs: val acc "
          f"{solver.best_val_acc:.2%}, test accuracy {test_acc:.2%} (loss {test_loss:.4f})")
    if args.save:
        written += save_model(args.save, model, spec, statistics)
    for path in written:
        print(f"saved {path}")
    return 0


def format_trial(trial):
    """One trial's hyperparameters and result on one line."""
    result = "diverged" if trial["diverged"] else f"val acc {trial['val_acc']:6.2%}"
    return (f"lr {trial['lr']:.2e}  wd {trial['weight_decay']:.2e}  "
            f"hidden {'-'.join(map(str, trial['hidden'])) or 'none':>9}  dropout {trial['dropout']:.2f}  "
            f"{result}  ({trial['seconds']:.1f} s)")


def print_trial_table(ranked):
    """The trials, best validation accuracy first."""
    print(f"{'rank':>4}  {'trial':>5}  {'lr':>8}  {'wd':>8}  {'hidden':>9}  {'dropout':>7}  "
          f"{'val acc':>7}  {'train acc':>9}")
    for rank, t in enumerate(ranked, 1):
        hidden = "-".join(map(str, t["hidden"])) or "none"
        val_acc = "diverged" if t["diverged"] else f"{t['val_acc']:.2%}"
        train_acc = "-" if math.isnan(t["train_acc"]) else f"{t['train_acc']:.2%}"  # nan: no epoch ended
        print(f"{rank:>4}  {t['number']:>5}  {t['lr']:8.2e}  {t['weight_decay']:8.2e}  {hidden:>9}  "
              f"{t['dropout']:7.2f}  {val_acc:>7}  {train_acc:>9}")


# ---------------------------------------------------------------- info

def add_info_parser(subparsers):
    parser = subparsers.add_parser("info", help="version, threads, BLAS and SIMD of this build",
                                   description="Print fastfc.show_config().")
    parser.set_defaults(run=run_info)


def run_info(args):
    import fastfc

    fastfc.show_config()
    return 0


# ---------------------------------------------------------------- entry point

SUBCOMMANDS = [add_train_parser, add_evaluate_parser, add_predict_parser, add_search_parser, add_info_parser]

# Modules that add subcommands of their own when present: name -> registration function.
OPTIONAL_SUBCOMMANDS = {"fastfc.bench": "add_bench_parser"}


def build_parser():
    from . import __version__

    parser = _ArgumentParser(prog="fastfc", description="Train and use fastfc networks on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastfc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    for module_name, function_name in OPTIONAL_SUBCOMMANDS.items():
        if importlib.util.find_spec(module_name) is not None:
            getattr(importlib.import_module(module_name), function_name)(subparsers)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    show_traceback = os.environ.get("FASTFC_TRACEBACK", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return args.run(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fastfc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`fastfc predict ... | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (CommandError, ValueError, TypeError, OSError, FloatingPointError) as exc:
        if show_traceback:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"fastfc: error: {message}", file=sys.stderr)
        return EXIT_ERROR
