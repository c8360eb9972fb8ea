"""Output files: refused before any work when they cannot be written or would
destroy an input, rescued under another name when writing fails at the end."""
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time

from ..io import check_output_path
from .options import EXIT_ERROR, CommandError


def reason(exc):
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
        if not os.fspath(path):  # io's check would probe the directory itself and pass a replaced file
            raise CommandError(f"{option}: the file name is empty")
        try:
            check_output_path(path, replaced)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write {path} ({option}): {reason(exc)}") from None
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
            problem = f"cannot write {path} ({option}): {reason(exc)}"
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


@contextlib.contextmanager
def interruptions_held():
    """Hold Ctrl-C and SIGTERM while the block writes the outputs: a second
    Ctrl-C, or a scheduler's SIGTERM, must not stop a save halfway (new
    parameters beside an old description, a model-sized temporary file
    left behind). Yields a list that receives the signals that arrived; the
    caller ends the command as interrupted once the writes are done. A
    signal the process ignores stays ignored."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def say(text):
    """Print a line of a command's report on stdout, flushed. When stdout's
    reader has gone (`fastfc train --save m.safetensors | head`), stdout is
    pointed at devnull, stderr says so once, and the command carries on: a
    closed pipe must not cost the training run or its outputs."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("fastfc: standard output was closed (its reader ended); carrying on, outputs are still "
              "written", file=sys.stderr)


def report_failures(failures):
    """Print write_outputs' failures, one line each; the exit status they call for."""
    for line in failures:
        print(f"fastfc: error: {line}", file=sys.stderr)
    return EXIT_ERROR if failures else 0
