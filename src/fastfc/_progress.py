"""Progress bars where a person watches: a terminal or a Jupyter notebook,
never a log file or a pipe.

tqdm.auto picks the notebook's widget bar inside a Jupyter kernel (its text
bar when ipywidgets is missing) and the text bar elsewhere; it is imported
only when a bar is shown, so `import fastfc` stays free of it.
"""
import sys


def in_notebook():
    """True inside a Jupyter (IPython kernel) session: the test tqdm.auto uses.
    IPython is looked up, never imported."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython without get_ipython or config: not a kernel
        return False


def wants_bar(stream=None):
    """Whether a progress bar on stream (default sys.stderr) would be seen:
    a terminal, or a notebook's output; not a file, a pipe or a closed stream."""
    stream = sys.stderr if stream is None else stream
    if stream is None or getattr(stream, "closed", False):
        return False
    if in_notebook():
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def progress_bar(total, desc, unit, leave=False):
    """A tqdm.auto bar on sys.stderr."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)
