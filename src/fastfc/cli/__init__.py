"""The `fastfc` command (also `python -m fastfc`).

    fastfc train                               # digits MLP demo, seconds on 2 cores
    fastfc train --model cnn --save cnn.npz --plot curves.png --log history.csv
    fastfc train --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --classes horse,ship,truck
    fastfc evaluate --model cnn.npz
    fastfc predict --model cnn.npz --input images.npy
    fastfc search --trials 20
    fastfc export --model cnn.safetensors --onnx cnn.onnx
    fastfc info

Each subcommand is a module of this package with a function
add_<name>_parser(subparsers) that adds its parser and sets `run` to the
function doing the work (taking the parsed arguments, returning the exit
status); SUBCOMMANDS lists them. The pieces they share: options (errors,
option parsers, argument groups), outputs (output files), data (loading and
preparing data sets), model_files (a saved model's two files).

User errors (unknown data set, missing files, bad option values, an output
file that could not be written or would overwrite an input or another
output) print one line on stderr, before any training, and exit with status
1 (2 for a malformed command line). Ctrl-C, or SIGTERM, exits with 130
after saving what was asked for (train: the best parameters so far, once an
epoch has finished, and the history; search: the finished trials); a
second one while the outputs are written waits for them. A NaN loss, or
memory running out during training, saves the same and exits with 1. An
output that cannot be written at the end of a run is saved under a rescue
name instead (write_outputs). Set FASTFC_TRACEBACK=1 to see the full
traceback of an error instead.

A saved model is MODEL.safetensors (the parameters; MODEL.npz for a name
ending in .npz) and MODEL.json (the network,
data set, classes, normalisation and the parameters' SHA-256, which ties the
two files together); every field of the JSON is checked before it is used.
"""
import argparse
import contextlib
import os
import signal
import sys
import threading

from . import bench, export, info, predict, search, train
from .model_files import SPEC_FORMAT, load_model, save_model, spec_path
from .options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, UsageError, error_line

__all__ = ["main", "build_parser", "CommandError", "UsageError", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED",
           "SPEC_FORMAT", "spec_path", "save_model", "load_model"]


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with errors as one line (no usage block) raised to main()."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- entry point

SUBCOMMANDS = [train.add_train_parser, predict.add_evaluate_parser, predict.add_predict_parser,
               search.add_search_parser, export.add_export_parser, info.add_info_parser,
               bench.add_bench_parser]


def build_parser():
    from .. import __version__

    parser = _ArgumentParser(prog="fastfc", description="Train and use fastfc networks on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastfc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
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
        print(f"fastfc: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
