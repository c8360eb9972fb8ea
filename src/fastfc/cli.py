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
file that could not be written or would overwrite an input or another
output) print one line on stderr, before any training, and exit with status
1 (2 for a malformed command line). Ctrl-C, or SIGTERM, exits with 130
after saving what was asked for (train: the best parameters so far, once an
epoch has finished, and the history; search: the finished trials); a NaN
loss saves the same and exits with 1. An output that cannot be written at
the end of a run is saved under a rescue name instead (write_outputs). Set
FASTFC_TRACEBACK=1 to see the full traceback of an error instead.

A saved model is MODEL.npz (the parameters) and MODEL.json (the network,
data set, classes, normalisation and the parameters' SHA-256, which ties the
two files together); every field of the JSON is checked before it is used.
"""
import argparse
import contextlib
import csv
import functools
import importlib
import importlib.util
import io
import itertools
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import types

import numpy as np

from . import datasets, plotting, search
from .io import (MismatchError, check_output_path, load_arrays, open_regular, parameters_digest,
                 read_array, write_atomically)

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
# Version 2 added the parameters' digest, pixel_max and input_range.
SPEC_VERSION = 2
READABLE_SPEC_VERSIONS = (1, 2)
# The value of a white pixel in each data set's files (the loaders divide by it).
RAW_PIXEL_MAX = {"digits": 16, "mnist": 255, "fashion-mnist": 255, "cifar10": 255}
# Bounds on what a model description may hold, far above any real one: a
# hostile file is refused before its numbers size anything.
MAX_SPEC_BYTES = 1 << 20
MAX_SIZE = 2**31 - 1  # any size: widths, filters, classes, image sides
MAX_LAYERS = 1024
MAX_NAME = 1024  # characters of a class name
MAX_PATH = 4096


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


def _reason(exc):
    """The words of an OSError without its errno prefix and file name (the
    message names the file itself), or any other exception's message."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _same_file(a, b):
    """Whether paths a and b name one file: the same path once links and
    '..' are resolved, or two hard links to it."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_paths(outputs, inputs=()):
    """Fail before any work, not after a training run, when an output file
    cannot be written (see fastfc.io.check_output_path: a missing or
    read-only directory, a directory or read-only file in the way, a name too
    long), or would destroy an input or another output of the command.

    Inputs:
    - outputs: (option, path, replaced) for each file the command may write;
      path None: not asked for; replaced: written atomically beside and
      renamed over (else written in place, as a FIFO or /dev/stdout can be)
    - inputs: (what, path) for each file the command reads
    """
    checked = []
    for option, path, replaced in outputs:
        if path is None:
            continue
        try:
            check_output_path(path, replaced)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write {path} ({option}): {_reason(exc)}") from None
        refuse_overwriting(option, path, inputs)
        for other_option, other in checked:
            if _same_file(path, other):
                raise CommandError(f"{other_option} and {option} would both write {path}: "
                                   "give each its own file")
        checked.append((option, path))


def refuse_overwriting(option, path, inputs):
    """CommandError when the output path of option is one of the inputs (what, path)."""
    for what, source in inputs:
        if source is not None and _same_file(path, source):
            raise CommandError(f"{option} {path} is {what}, which this command reads: refusing to overwrite it")


def model_outputs(option, path):
    """The two files a saved model is (see save_model), as check_output_paths outputs."""
    if path is None:
        return []
    return [(option, path, True), (f"{option}'s description", spec_path(path), True)]


def _rescue_paths(option, path):
    """Where an output that could not be written at path goes instead: a
    short new name beside it, then in the working directory, then in the
    temporary directory."""
    extension = os.path.splitext(path)[1]
    name = f"fastfc-rescued-{option.strip('-')}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{extension}"
    directories = dict.fromkeys([os.path.dirname(os.path.abspath(path)), os.getcwd(), tempfile.gettempdir()])
    return [os.path.join(directory, name) for directory in directories]


def write_outputs(writes):
    """Run the writes (option, path, write): write(path) returns the files it
    wrote; path None: not asked for. A write that fails at the end of a run
    (a full disk, a directory removed or made read-only meanwhile) is tried
    again under a rescue name (_rescue_paths) rather than losing the run.

    Returns (the files written, one line per failure saying where its
    output went instead, if anywhere)."""
    written, failures = [], []
    for option, path, write in writes:
        if path is None:
            continue
        try:
            written += write(path)
            continue
        except (OSError, ValueError) as exc:
            problem = f"cannot write {path} ({option}): {_reason(exc)}"
        for rescue in _rescue_paths(option, path):
            try:
                written += write(rescue)
            except (OSError, ValueError):
                continue
            failures.append(f"{problem}; saved it as {rescue} instead")
            break
        else:
            failures.append(f"{problem}; no copy could be saved beside it, in the working directory "
                            "or in the temporary directory either")
    return written, failures


def report_failures(failures):
    """Print write_outputs' failures, one line each; the exit status they call for."""
    for line in failures:
        print(f"fastfc: error: {line}", file=sys.stderr)
    return EXIT_ERROR if failures else 0


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
    if indices is not None and len(indices) < 2:
        raise CommandError(f"--classes {classes}: name at least two classes (a network with one "
                           "class answers it whatever the image)")
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
    """The JSON-able description a saved model is rebuilt from (save_model
    adds the normalisation statistics and the parameters' digest)."""
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
        # So that predict scales images from files as the training images were.
        pixel_max=RAW_PIXEL_MAX[args.dataset],
        input_range=[float(data["X_train"].min()), float(data["X_train"].max())],
    )


def layer_plan(spec):
    """The layers build_model makes for a spec, without making them: a list
    of (kind, sizes) with kind 'conv' (in_channels, out_channels, kernel,
    padding), 'relu', 'pool', 'flatten', 'linear' (in_features,
    out_features) or 'dropout' (p,). CommandError when the conv-pool blocks
    do not fit the images."""
    channels, height, width = spec["input_shape"]
    plan = []
    if spec["model"] == "cnn":
        k = spec["kernel_size"]
        padding = (k - 1) // 2  # keeps the size for odd k
        for filters in spec["filters"]:
            height, width = height + 2 * padding - k + 1, width + 2 * padding - k + 1
            if height < 2 or width < 2:
                raise CommandError(f"--filters/--kernel-size: {len(spec['filters'])} conv-pool blocks "
                                   f"do not fit {spec['input_shape'][1]}x{spec['input_shape'][2]} images")
            plan += [("conv", (channels, filters, k, padding)), ("relu", ()), ("pool", ())]
            channels, height, width = filters, height // 2, width // 2
    plan.append(("flatten", ()))
    features = channels * height * width
    for hidden in spec["hidden"]:
        plan += [("linear", (features, hidden)), ("relu", ())]
        if spec["dropout"] > 0:
            plan.append(("dropout", (spec["dropout"],)))
        features = hidden
    plan.append(("linear", (features, spec["num_classes"])))
    return plan


def parameter_shapes(plan):
    """dict name -> shape of the parameters of a layer_plan's network, named
    as Sequential names them (W1, b1 for the first layer with parameters, ...)."""
    shapes = {}
    weighted = [(kind, sizes) for kind, sizes in plan if kind in ("conv", "linear")]
    for index, (kind, sizes) in enumerate(weighted, 1):
        in_size, out_size = sizes[:2]
        if kind == "conv":  # filters (out_channels, in_channels, k, k)
            shapes[f"W{index}"] = (out_size, in_size, sizes[2], sizes[2])
        else:  # a matrix (in_features, out_features), as the course's W1 (D, H)
            shapes[f"W{index}"] = (in_size, out_size)
        shapes[f"b{index}"] = (out_size,)
    return shapes


def check_model_size(spec):
    """CommandError, before anything is allocated, when training the spec's
    network needs more memory than the machine has: it keeps at least three
    copies of the parameters (the parameters, their gradients, the best so far)."""
    count = sum(math.prod(shape) for shape in parameter_shapes(layer_plan(spec)).values())
    needed = 3 * count * np.dtype(spec["dtype"]).itemsize
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return
    if needed > available:
        raise CommandError(f"the network ({describe_model(spec)}) has {count:,} parameters: training "
                           f"needs at least {needed / 2**30:,.1f} GiB, this machine has "
                           f"{available / 2**30:,.1f} GiB (make --hidden or --filters smaller)")


def build_model(spec, seed):
    """A fastfc.models.Sequential with softmax loss built from a spec; the
    layers are initialised (and dropout masks drawn) from seeds derived from
    seed (None: unseeded, for a model whose parameters are loaded next)."""
    from . import layers
    from .models import Sequential

    layer_seeds = itertools.count(seed * 1000) if seed is not None else itertools.repeat(None)
    dtype = np.dtype(spec["dtype"]).type
    make = {
        "conv": lambda c_in, c_out, k, padding: layers.Conv2d(c_in, c_out, k, padding=padding,
                                                             seed=next(layer_seeds), dtype=dtype),
        "relu": layers.ReLU, "pool": lambda: layers.MaxPool2d(2), "flatten": layers.Flatten,
        "linear": lambda d_in, d_out: layers.Linear(d_in, d_out, seed=next(layer_seeds), dtype=dtype),
        "dropout": lambda p: layers.Dropout(p, seed=next(layer_seeds)),
    }
    return Sequential(*(make[kind](*sizes) for kind, sizes in layer_plan(spec)),
                      loss=layers.SoftmaxCrossEntropy())


def spec_path(model_path):
    """The JSON file holding a saved model's spec: model.npz -> model.json."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def save_model(path, model, spec, statistics):
    """Save the parameters (model.save) and, next to them, the spec, the
    normalisation statistics and the parameters' SHA-256 as JSON: the two
    files are two renames, and the digest makes a pair from different saves
    (a crash between them, two runs saving to one name) a clear error at
    load instead of new parameters read with an old description. Returns
    the files written."""
    spec = dict(spec, mean=None if statistics is None else [float(v) for v in statistics[0]],
                std=None if statistics is None else [float(v) for v in statistics[1]],
                parameters_sha256=parameters_digest(model.params))
    model.save(path)
    sidecar = spec_path(path)
    write_atomically(sidecar, lambda f: f.write(json.dumps(spec, indent=1).encode()))
    return [os.fspath(path), sidecar]


def load_model(path):
    """(model, spec) from the files save_model wrote, each checked before it
    is used: the description field by field (check_spec), the parameter
    file's headers against the shapes the description implies (before the
    network is allocated), and the loaded parameters against the digest."""
    sidecar = spec_path(path)
    spec = check_spec(read_spec(path, sidecar), sidecar)
    plan = layer_plan(spec)
    dtype = np.dtype(spec["dtype"])
    expected = {name: types.SimpleNamespace(shape=shape, dtype=dtype)
                for name, shape in parameter_shapes(plan).items()}
    try:
        load_arrays(path, expected, read_data=False)
    except FileNotFoundError:
        raise CommandError(f"model file not found: {path}") from None
    except MismatchError as exc:
        raise CommandError(f"{path} does not fit its description {sidecar}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot load the parameters ({_reason(exc)})") from None
    model = build_model(spec, seed=None)
    try:
        model.load(path)
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot load the parameters ({_reason(exc)})") from None
    if spec["parameters_sha256"] is not None and parameters_digest(model.params) != spec["parameters_sha256"]:
        raise CommandError(f"{path} and {sidecar} come from different saves (the parameters' SHA-256 is not "
                           f"the one the description records): save the model again")
    return model, spec


def read_spec(path, sidecar):
    """The parsed JSON of a model's sidecar file (not yet checked)."""
    try:
        with open_regular(sidecar) as f:
            text = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        if not os.path.exists(path):
            raise CommandError(f"model file not found: {path}") from None
        raise CommandError(f"{sidecar} not found: it describes the architecture of {path} "
                           "(fastfc train --save writes both)") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"{sidecar}: cannot read the model description ({_reason(exc)})") from None
    if len(text) > MAX_SPEC_BYTES:
        raise CommandError(f"{sidecar}: larger than {MAX_SPEC_BYTES // 1024} KiB, not a model description")
    try:
        return json.loads(text)
    except RecursionError:
        raise CommandError(f"{sidecar}: not a model description (JSON nested too deep)") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of too many digits
        raise CommandError(f"{sidecar}: not valid JSON ({exc})") from None


def _is_int(value, low=0, high=MAX_SIZE):
    """Whether value is an int (not a bool) in [low, high] (high None: no bound)."""
    return (isinstance(value, int) and not isinstance(value, bool) and low <= value
            and (high is None or value <= high))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_list(value, test, length=None, max_length=MAX_LAYERS):
    return (isinstance(value, list) and (len(value) == length if length is not None else len(value) <= max_length)
            and all(map(test, value)))


def _is_name(value, max_length=MAX_NAME):
    return isinstance(value, str) and 0 < len(value) <= max_length


def _shown(value, width=60):
    """repr(value), cut to about width characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."


def check_spec(spec, sidecar):
    """spec (parsed JSON) as a model description, every field checked for
    its type, range, finiteness and length (and the shapes it implies kept
    sane), before any of it sizes an allocation or reaches a result; a
    CommandError naming the first bad field otherwise. Version 1
    descriptions (no digest, pixel scale or input range) get the values
    every version 1 model had. Returns the checked spec."""
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise CommandError(f"{sidecar}: not a fastfc model description")
    if spec.get("version") not in READABLE_SPEC_VERSIONS:
        raise CommandError(f"{sidecar}: model description version {_shown(spec.get('version'))}, "
                           f"this fastfc reads versions {', '.join(map(str, READABLE_SPEC_VERSIONS))}")
    spec = dict(spec)

    def require(field, test, what):
        if not test(spec.get(field)):
            raise CommandError(f"{sidecar}: bad model description: {field!r} must be {what}, "
                               f"got {_shown(spec.get(field))}")

    require("model", lambda v: isinstance(v, str) and v in MODELS, f"one of {', '.join(MODELS)}")
    require("dataset", lambda v: isinstance(v, str) and v in DATASETS, f"one of {', '.join(DATASETS)}")
    require("dtype", lambda v: isinstance(v, str) and v in DTYPES, f"one of {', '.join(DTYPES)}")
    require("input_shape", lambda v: _is_list(v, lambda n: _is_int(n, 1), 3), "[channels, height, width]")
    require("num_classes", lambda v: _is_int(v, 2), f"an integer from 2 to {MAX_SIZE}")
    count = spec["num_classes"]
    require("hidden", lambda v: _is_list(v, lambda n: _is_int(n, 1)), "a list of layer widths")
    require("filters", lambda v: _is_list(v, lambda n: _is_int(n, 1)) and (v == [] or spec["model"] == "cnn"),
            "a list of filter counts (empty for an mlp)")
    require("kernel_size", lambda v: _is_int(v, 1), "a positive integer")
    require("dropout", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    require("class_names", lambda v: _is_list(v, _is_name, count), f"{count} class names")
    require("classes", lambda v: v is None or _is_list(v, _is_name, count), f"null or {count} class names")
    require("val_size", lambda v: v is None or _is_int(v, 1), "null or a positive integer")
    require("seed", lambda v: _is_int(v, 0, None), "a non-negative integer")
    require("data_dir", lambda v: v is None or _is_name(v, MAX_PATH), "null or a directory name")
    require("normalize", lambda v: isinstance(v, bool), "true or false")
    channels = spec["input_shape"][0]
    if spec["normalize"]:
        require("mean", lambda v: _is_list(v, _is_number, channels), f"{channels} finite numbers")
        require("std", lambda v: _is_list(v, lambda x: _is_number(x) and x > 0, channels),
                f"{channels} finite numbers > 0")
    else:
        require("mean", lambda v: v is None, "null (the model is not normalized)")
        require("std", lambda v: v is None, "null (the model is not normalized)")
    if spec["version"] == 1:
        spec.update(pixel_max=RAW_PIXEL_MAX[spec["dataset"]], input_range=[0.0, 1.0], parameters_sha256=None)
        return spec
    require("pixel_max", lambda v: _is_number(v) and v > 0, "a number > 0")
    require("input_range", lambda v: _is_list(v, _is_number, 2) and v[0] < v[1], "[low, high] with low < high")
    require("parameters_sha256", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v),
            "64 hexadecimal digits")
    return spec


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


def history_writes(args, solver, title):
    """The --log CSV files and the --plot PNG, as write_outputs writes."""
    def write_log(path):
        return plotting.write_history_csv(path, solver.epoch_history, solver.loss_history)

    def write_plot(path):
        try:
            plotting.plot_history(path, solver.loss_history, solver.epoch_history, title=title)
        except plotting.MissingMatplotlibError:
            print(f"fastfc: --plot needs matplotlib, which is not installed: {plotting.PLOT_INSTALL_HINT} "
                  f"(the run is not affected; --log writes the history as CSV)", file=sys.stderr)
            return []
        return [path]
    return [("--log", args.log, write_log), ("--plot", args.plot, write_plot)]


def history_outputs(args):
    """The files history_writes may write, as check_output_paths outputs."""
    if args.log is None:
        return [("--plot", args.plot, False)]
    return [("--log", args.log, False), ("--log's per-iteration losses", plotting.iteration_log_path(args.log), False),
            ("--plot", args.plot, False)]


def data_files(dataset, data_dir):
    """The files a data set's loader may read in data_dir, as
    check_output_paths inputs (an output must not overwrite them)."""
    if data_dir is None or dataset not in ("mnist", "fashion-mnist", "cifar10"):
        return []
    directory = os.path.expanduser(data_dir)
    if dataset == "cifar10":
        names = [*datasets._CIFAR_TRAIN_FILES, datasets._CIFAR_TEST_FILE]
        directories = [directory, os.path.join(directory, "cifar-10-batches-py")]
    else:  # the names load_mnist tries: hyphen or dot before idx, gzipped or not
        stems = [variant for stem in datasets._MNIST_FILES.values()
                 for variant in (stem, stem.replace("-idx", ".idx"))]
        names = [stem + suffix for stem in stems for suffix in ("", ".gz")]
        directories = [directory]
    return [(f"a {dataset} file", os.path.join(d, name)) for d in directories for name in names]


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
    check_output_paths(model_outputs("--save", args.save) + history_outputs(args),
                       inputs=data_files(args.dataset, args.data_dir))
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    spec = model_spec(args, data, class_names)
    check_model_size(spec)
    model = build_model(spec, args.seed)

    def print_epoch(solver, record):
        print(format_epoch(record, args.epochs), flush=True)

    solver = make_solver(model, prepared, args, on_epoch_end=None if args.quiet else print_epoch,
                         verbose=not args.quiet)
    if not args.quiet:
        sizes = ", ".join(f"{len(prepared[f'y_{s}'])} {s}" for s in datasets.SPLITS)
        print(f"{args.dataset}: {sizes}; {len(class_names)} classes; "
              f"model {describe_model(spec)}", flush=True)
    stopped = None  # why training ended early: KeyboardInterrupt or the FloatingPointError
    try:
        solver.train()
    except (KeyboardInterrupt, FloatingPointError) as exc:
        stopped = exc
    # Until an epoch has ended the parameters are untrained: never save them
    # (over an earlier run's model, possibly).
    epochs_done = len(solver.epoch_history)
    writes = [("--save", args.save, lambda path: save_model(path, model, spec, statistics))] if epochs_done else []
    written, failures = write_outputs(writes + history_writes(args, solver, f"{args.dataset} {describe_model(spec)}"))
    if stopped is not None:
        saved = f"; saved {', '.join(written)}" if written else ""
        if args.save and not epochs_done:
            saved += f"; {args.save} not written: no epoch finished (an existing file is left as it was)"
        if isinstance(stopped, KeyboardInterrupt):
            print(f"fastfc: interrupted after {epochs_done} epoch{'s' if epochs_done != 1 else ''} "
                  f"(best val acc {solver.best_val_acc:.2%}){saved}", file=sys.stderr)
        else:
            print(f"fastfc: error: {str(stopped).splitlines()[0]}{saved}", file=sys.stderr)
        report_failures(failures)
        return EXIT_INTERRUPTED if isinstance(stopped, KeyboardInterrupt) else EXIT_ERROR
    test_loss, test_acc = _evaluate(model, prepared["X_test"], prepared["y_test"])
    print(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}, {len(prepared['y_test'])} samples; "
          f"best val acc {solver.best_val_acc:.2%})")
    for path in written:
        print(f"saved {path}")
    return report_failures(failures)


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


def _model_data_source(args, spec):
    """(data set, directory) of the data a saved model is run on: the
    command line's, else the model's own."""
    dataset = args.dataset or spec["dataset"]
    data_dir = args.data_dir
    if data_dir is None and dataset == spec["dataset"]:
        data_dir = spec.get("data_dir")
    return dataset, data_dir


def _model_data(args, spec):
    """The split asked for, of the model's classes, prepared as the model was
    trained (its own statistics)."""
    dataset, data_dir = _model_data_source(args, spec)
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
    parser.add_argument("--pixel-max", type=positive_float, metavar="V",
                        help="the value of a white pixel in --input (default: for integer arrays the "
                             "model's data set's, e.g. 255 for MNIST or CIFAR-10 bytes, 16 for digits; "
                             "1 for floats)")
    parser.add_argument("--output", metavar="FILE.csv", help="write the predictions here instead of stdout")
    parser.set_defaults(run=run_predict)


def _read_csv(path):
    """The numbers of a CSV file, one row per image, as float32 (N, D)."""
    with open_regular(path) as f:
        try:
            return np.loadtxt(io.TextIOWrapper(f, encoding="utf-8"), delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError as exc:  # also UnicodeDecodeError
            raise ValueError(f"{path}: {exc}") from None


def _read_images(path, spec, pixel_max):
    """Images from a .npy or .csv file, as (N, C, H, W) float32 on the
    training images' scale: divided by pixel_max, by default the data set's
    white value for integers (the training images were divided by it) and
    1 for floats (taken as already scaled). Images far outside the range of
    the training images (wrong scale, NaN) are refused: the model would
    answer, wrongly."""
    try:
        with open_regular(path) as f:  # .npy (or a mistaken .npz) by content, whatever the name
            binary = f.read(len(np.lib.format.MAGIC_PREFIX)).startswith((np.lib.format.MAGIC_PREFIX, b"PK"))
        X = read_array(path) if binary else _read_csv(path)
    except FileNotFoundError:
        raise CommandError(f"--input file not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"--input: cannot read images: {_reason(exc)}") from None
    if X.dtype.kind not in "uif":
        raise CommandError(f"{path}: expected numbers, got an array of {X.dtype}")
    shape = tuple(spec["input_shape"])
    if X.shape == shape:
        X = X[None]
    elif X.ndim == 2 and X.shape[1] == math.prod(shape):
        X = X.reshape((-1,) + shape)
    _check_input_shape(X, spec, path)
    if len(X) == 0:
        raise CommandError(f"{path}: holds no images")
    if pixel_max is None:
        pixel_max = spec["pixel_max"] if X.dtype.kind in "ui" else 1
    X = np.asarray(X, dtype=np.float32) / np.float32(pixel_max)
    low, high = float(X.min()), float(X.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CommandError(f"{path}: holds NaN or infinite pixel values")
    trained_low, trained_high = spec["input_range"]
    margin = trained_high - trained_low  # "far outside": beyond a whole range width
    if low < trained_low - margin or high > trained_high + margin:
        raise CommandError(f"{path}: pixel values from {low:g} to {high:g} once divided by {pixel_max:g}, far "
                           f"outside the {trained_low:g} to {trained_high:g} of the training images: give "
                           f"--pixel-max, the value of a white pixel in the file")
    return X


# What a spreadsheet takes for the start of a formula in a CSV cell.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text):
    """text for a CSV cell that a spreadsheet shows as text: one starting
    like a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def run_predict(args):
    inputs = [("--model", args.model), ("--model's description", spec_path(args.model)), ("--input", args.input)]
    check_output_paths([("--output", args.output, False)], inputs + data_files(args.dataset, args.data_dir))
    configure_threads(args)
    model, spec = load_model(args.model)
    if args.input is not None:
        X = _read_images(args.input, spec, args.pixel_max)
        if spec["mean"] is not None:
            X = datasets.standardize(X, spec["mean"], spec["std"])
        X = X.astype(spec["dtype"])
    else:
        if args.output is not None:  # the model's data directory is known now
            refuse_overwriting("--output", args.output, data_files(*_model_data_source(args, spec)))
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
            writer.writerow((i, int(label), csv_text(spec["class_names"][label]),
                             f"{probabilities[i, label]:.4f}"))
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
    group.add_argument("--momentum-range", type=float_range, metavar="LOW,HIGH",
                       help=f"log-uniform, for --optimizer {', '.join(MOMENTUM_RULES)} (default: not "
                            "searched; --momentum or the rule's default)")
    group.add_argument("--final-epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"], metavar="N",
                       help="epochs to retrain the best configuration (default: %(default)s)")
    group.add_argument("--save", metavar="MODEL.npz", help="save the retrained best model")
    group.add_argument("--log", metavar="TRIALS.csv", help="the trial table as CSV")
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
    check_model_size(spec)
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
        writer = csv.writer(f)
        writer.writerow(columns)
        for t in ranked:
            writer.writerow(["-".join(map(str, t[c])) if c == "hidden" else
                             "" if t[c] is None else t[c] for c in columns])
    return [path]


def run_search(args):
    check_training_args(args)
    check_search_args(args)
    check_output_paths(model_outputs("--save", args.save) + [("--log", args.log, False)],
                       inputs=data_files(args.dataset, args.data_dir))
    configure_threads(args)
    data, class_names = load_data(args.dataset, args.data_dir, args.classes, args.val_size, args.seed)
    prepared, statistics = prepare(data, args)
    finished = []
    try:
        for number, trial in enumerate(sample_trials(args, args.trials), 1):
            trial["number"] = number
            run_trial(args, trial, data, prepared, class_names)
            finished.append(trial)
            if not args.quiet:
                print(f"trial {number:>{len(str(args.trials))}}/{args.trials}  {format_trial(trial)}",
                      flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the search: the finished trials are still ranked and logged
    ranked = search.rank(finished)
    if ranked:
        print_trial_table(ranked)
    written, failures = write_outputs([("--log", args.log, lambda path: write_trial_log(path, ranked))])
    if len(finished) < args.trials:
        saved = f"; saved {', '.join(written)}" if written else ""
        print(f"fastfc: search interrupted after {len(finished)} of {args.trials} trials{saved}",
              file=sys.stderr)
        report_failures(failures)
        return EXIT_INTERRUPTED
    best = ranked[0]
    if best["diverged"]:
        report_failures(failures)
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
    saved, save_failures = write_outputs([("--save", args.save,
                                           lambda path: save_model(path, model, spec, statistics))])
    for path in written + saved:
        print(f"saved {path}")
    return report_failures(failures + save_failures)


def format_trial(trial):
    """One trial's hyperparameters and result on one line."""
    result = "diverged" if trial["diverged"] else f"val acc {trial['val_acc']:6.2%}"
    momentum = "" if trial["momentum"] is None else f"momentum {trial['momentum']:.3f}  "
    return (f"lr {trial['lr']:.2e}  wd {trial['weight_decay']:.2e}  {momentum}"
            f"hidden {'-'.join(map(str, trial['hidden'])) or 'none':>9}  dropout {trial['dropout']:.2f}  "
            f"{result}  ({trial['seconds']:.1f} s)")


def print_trial_table(ranked):
    """The trials, best validation accuracy first."""
    print(f"{'rank':>4}  {'trial':>5}  {'lr':>8}  {'wd':>8}  {'momentum':>8}  {'hidden':>9}  "
          f"{'dropout':>7}  {'val acc':>7}  {'train acc':>9}")
    for rank, t in enumerate(ranked, 1):
        hidden = "-".join(map(str, t["hidden"])) or "none"
        momentum = "-" if t["momentum"] is None else f"{t['momentum']:.3f}"
        val_acc = "diverged" if t["diverged"] else f"{t['val_acc']:.2%}"
        train_acc = "-" if math.isnan(t["train_acc"]) else f"{t['train_acc']:.2%}"  # nan: no epoch ended
        print(f"{rank:>4}  {t['number']:>5}  {t['lr']:8.2e}  {t['weight_decay']:8.2e}  {momentum:>8}  "
              f"{hidden:>9}  {t['dropout']:7.2f}  {val_acc:>7}  {train_acc:>9}")


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


def _terminate(signum, frame):
    """SIGTERM does what Ctrl-C would do at this moment: during training, stop
    at the next batch and save; elsewhere, KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or left to the system (e.g. a background job)
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """Handle SIGTERM with _terminate while the block runs (only where
    nothing else handles it: its default action kills without saving)."""
    install = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    if install:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        if install:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv=None):
    """Run the command line; returns the exit status."""
    show_traceback = os.environ.get("FASTFC_TRACEBACK", "") not in ("", "0")
    try:
        with _sigterm_as_ctrl_c():
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
    except (CommandError, ValueError, TypeError, OSError, FloatingPointError, OverflowError,
            MemoryError) as exc:
        if show_traceback:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, MemoryError):
            message = f"out of memory ({message})"
        print(f"fastfc: error: {message}", file=sys.stderr)
        return EXIT_ERROR
