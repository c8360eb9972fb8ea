"""`fastfc evaluate` and `fastfc predict`: a saved model on a data set or on images."""
import csv
import io
import math
import os
import sys
import warnings

import numpy as np

from .. import datasets
from ..io import open_regular, read_array, write_atomically
from .data import data_files, evaluate_model, load_data, prepare
from .model_files import load_model, spec_path
from .options import (CommandError, add_data_arguments, add_saved_model_argument, configure_threads,
                      positive_float, positive_int)
from .outputs import check_output_paths, reason, refuse_overwriting


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


def _add_saved_model_parser(subparsers, name, run, **texts):
    """The parser of a command that runs a saved model on a split of a data
    set (evaluate, predict): texts are add_parser's help and description."""
    parser = subparsers.add_parser(name, **texts)
    add_saved_model_argument(parser)
    add_data_arguments(parser, saved_model=True)
    parser.add_argument("--split", choices=datasets.SPLITS, default="test",
                        help="which split of the data set (default: %(default)s)")
    group = parser.add_argument_group("runtime")
    group.add_argument("--threads", type=positive_int, metavar="N", help="threads for fastfc kernels")
    parser.set_defaults(run=run)
    return parser


def add_evaluate_parser(subparsers):
    _add_saved_model_parser(
        subparsers, "evaluate", run_evaluate, help="accuracy and loss of a saved model on a data set",
        description="Accuracy of a saved model on a split of its data set (by default the one it was "
                    "trained on, with the same validation split and normalisation).")


def run_evaluate(args):
    configure_threads(args)
    model, spec = load_model(args.model)
    X, y = _model_data(args, spec)
    loss, acc = evaluate_model(model, X, y)
    print(f"{args.split} accuracy {acc:.2%} (loss {loss:.4f}, {len(y)} samples)")
    return 0


def add_predict_parser(subparsers):
    parser = _add_saved_model_parser(
        subparsers, "predict", run_predict, help="class predictions of a saved model",
        description="Predict classes with a saved model, for images in a .npy or .csv file "
                    "(--input) or a split of a data set. Writes CSV: index, label, class, probability.")
    parser.add_argument("--input", metavar="FILE",
                        help=".npy array (N, C, H, W) or (N, C*H*W), or .csv with one flattened image "
                             "per row; pixel values are divided by --pixel-max")
    parser.add_argument("--pixel-max", type=positive_float, metavar="V",
                        help="the value of a white pixel in --input (default: for integer arrays the "
                             "model's data set's, e.g. 255 for MNIST or CIFAR-10 bytes, 16 for digits; "
                             "1 for floats)")
    parser.add_argument("--output", metavar="FILE.csv", help="write the predictions here instead of stdout")


def _read_csv(path):
    """The numbers of a CSV file, one row per image, as float32 (N, D)."""
    with open_regular(path) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data": refused by the caller, in words
        try:
            return np.loadtxt(io.TextIOWrapper(f, encoding="utf-8"), delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError as exc:  # also UnicodeDecodeError
            raise ValueError(f"{path}: {exc}") from None


_FLOAT32_TINY, _FLOAT32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def _read_images(path, spec, pixel_max):
    """Images from a .npy or .csv file, as (N, C, H, W) float32 on the
    training images' scale: divided by pixel_max, by default the data set's
    white value for integers (the training images were divided by it) and
    1 for floats (taken as already scaled). Images far outside the range of
    the training images (wrong scale, NaN) are refused: the model would
    answer, wrongly; images filling a small part of that range (a scale
    too large, or a blank image) are answered with a warning."""
    try:
        with open_regular(path) as f:  # .npy (or a mistaken .npz) by content, whatever the name
            binary = f.read(len(np.lib.format.MAGIC_PREFIX)).startswith((np.lib.format.MAGIC_PREFIX, b"PK"))
        X = read_array(path) if binary else _read_csv(path)
    except FileNotFoundError:
        raise CommandError(f"--input file not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"--input: cannot read images: {reason(exc)}") from None
    if X.dtype.kind not in "uif":
        raise CommandError(f"{path}: expected numbers, got an array of {X.dtype}")
    if X.size == 0:
        raise CommandError(f"{path}: holds no images")
    shape = tuple(spec["input_shape"])
    if X.shape == shape:
        X = X[None]
    elif X.ndim in (1, 2) and X.shape[-1] == math.prod(shape):  # flattened: one image, or one a row
        X = X.reshape((-1,) + shape)
    _check_input_shape(X, spec, path)
    if pixel_max is None:
        pixel_max = spec["pixel_max"] if X.dtype.kind in "ui" else 1
    elif not _FLOAT32_TINY <= pixel_max <= _FLOAT32_MAX:  # would divide by 0 or infinity in float32
        raise CommandError(f"--pixel-max {pixel_max:g}: out of the range of float32 images "
                           f"({_FLOAT32_TINY:g} to {_FLOAT32_MAX:g})")
    with np.errstate(all="ignore"):  # an overflow or a NaN is refused next, in words
        X = np.asarray(X, dtype=np.float32) / np.float32(pixel_max)
    low, high = float(X.min()), float(X.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CommandError(f"{path}: holds NaN or infinite pixel values (once divided by {pixel_max:g})")
    trained_low, trained_high = spec["input_range"]
    width = trained_high - trained_low  # "far outside": beyond a whole range width
    if low < trained_low - width or high > trained_high + width:
        raise CommandError(f"{path}: pixel values from {low:g} to {high:g} once divided by {pixel_max:g}, far "
                           f"outside the {trained_low:g} to {trained_high:g} of the training images: give "
                           f"--pixel-max, the value of a white pixel in the file")
    if high - low < width / 16:  # e.g. bytes divided by 65535: answered, but say it looks wrong
        print(f"fastfc: warning: {path}: pixel values from {low:g} to {high:g} once divided by {pixel_max:g}, a "
              f"small part of the {trained_low:g} to {trained_high:g} of the training images: is the scale "
              f"right (--pixel-max, the value of a white pixel in the file)?", file=sys.stderr)
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
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(("index", "label", "class", "probability"))
    for i, label in enumerate(labels):
        writer.writerow((i, int(label), csv_text(spec["class_names"][label]),
                         f"{probabilities[i, label]:.4f}"))
    if not args.output:
        sys.stdout.write(table.getvalue())
    elif os.path.exists(args.output) and not os.path.isfile(args.output):
        with open(args.output, "w", newline="") as out:  # a FIFO or a device: written in place
            out.write(table.getvalue())
    else:  # a file: replaced whole or not at all (Ctrl-C midway leaves no half table)
        write_atomically(args.output, lambda f: f.write(table.getvalue().encode("utf-8")))
    if args.output:
        print(f"wrote {len(labels)} predictions to {args.output}")
    return 0
