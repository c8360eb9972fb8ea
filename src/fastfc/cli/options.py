"""The command line's shared pieces: errors and exit statuses, option value
parsers, the argument groups several commands share, and their defaults."""
import argparse
import math

from .. import datasets, optim


DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
CLASS_NAMES = {
    "digits": datasets.DIGIT_CLASSES,
    "mnist": datasets.DIGIT_CLASSES,
    "fashion-mnist": datasets.FASHION_MNIST_CLASSES,
    "cifar10": datasets.CIFAR10_CLASSES,
}
MODELS = ("mlp", "cnn")
UPDATE_RULES = tuple(optim.UPDATE_RULES)
MOMENTUM_RULES = optim.MOMENTUM_RULES  # the rules that take --momentum
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


class CommandError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""


class UsageError(Exception):
    """A malformed command line: printed as one line, exit status 2."""


def error_line(exc):
    """The one line an error prints after "fastfc: error: ": its message's
    first line (its type's name when it has none); out of memory said so."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"out of memory ({message})" if isinstance(exc, MemoryError) else message


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


def configure_threads(args):
    """Apply --threads (when given) before any kernel runs; a count fastfc
    refuses is an error naming the option."""
    if getattr(args, "threads", None) is not None:
        import fastfc

        try:
            fastfc.set_num_threads(args.threads)
        except ValueError as exc:
            # set_num_threads names its own argument, n: say it as the user wrote it.
            raise CommandError(f"--threads {args.threads}: {str(exc).replace('n must be', 'must be', 1)}") from None


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
                       help="local directory with the MNIST IDX files or the CIFAR-10 python batches "
                            "(fashion-mnist: by default where `apt-get install dataset-fashion-mnist` "
                            "puts them)")
    group.add_argument("--classes", metavar="A,B,...",
                       help="keep only these classes (names or indices), relabelled 0..k-1 in this order")
    group.add_argument("--val-size", type=positive_int, metavar="N",
                       help="validation images held out of the training set, after selecting "
                            "--classes (default: the loader's)")


def add_saved_model_argument(parser):
    """--model: the model a command reads (evaluate, predict, export)."""
    parser.add_argument("--model", required=True, metavar="MODEL.safetensors",
                        help="a model saved by fastfc train --save (MODEL.json must be next to it)")


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
