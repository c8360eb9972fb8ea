"""Training curves: CSV files always, PNG pictures when matplotlib is installed.

    write_history_csv("history.csv", solver.epoch_history, solver.loss_history)
    figure = history_figure(solver)         # a matplotlib Figure (a notebook cell shows it)
    plot_history("curves.png", solver.loss_history, solver.epoch_history, kept_epoch=solver.best_epoch)

matplotlib is optional (`pip install matplotlib`); history_figure and
plot_history raise MissingMatplotlibError, with that command in its message,
without it.
The figure is drawn on its own Agg canvas, so pyplot's global state and the
user's chosen backend are left alone.
"""
import csv
import os

import numpy as np

from ._progress import in_notebook

# matplotlib alone: `pip install ".[plot]"` from a checkout would rebuild the
# extension (over a minute) just to add it.
PLOT_INSTALL_HINT = "pip install matplotlib"

# Columns of the per-epoch CSV: the keys of the Solver's epoch records.
EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                 "lr", "seconds", "samples_per_s")


class MissingMatplotlibError(ImportError):
    """Plotting was asked for but matplotlib is not installed."""


def have_matplotlib():
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def iteration_log_path(path):
    """Where write_history_csv puts the per-iteration losses for a per-epoch CSV at path:
    history.csv -> history-iterations.csv."""
    root, ext = os.path.splitext(os.fspath(path))
    return f"{root}-iterations{ext or '.csv'}"


def write_history_csv(path, epoch_history, loss_history=None):
    """Write the per-epoch records to path, and the per-iteration losses (if
    given) to iteration_log_path(path).

    Inputs:
    - path: CSV file name
    - epoch_history: list of dicts with the keys in EPOCH_COLUMNS (missing keys
      are left blank, extra keys ignored)
    - loss_history: sequence of training losses, one per iteration, or None

    Returns the list of files written.
    """
    written = [os.fspath(path)]
    # "\n" line ends: the csv module's default is "\r\n".
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(epoch_history)
    if loss_history is not None:
        written.append(iteration_log_path(path))
        with open(written[-1], "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("iteration", "loss"))
            writer.writerows((i + 1, float(loss)) for i, loss in enumerate(loss_history))
    return written


def smooth(values, window=None):
    """Exponential moving average of values, bias-corrected so the first points
    are not pulled towards zero.

    Inputs:
    - values: sequence of N numbers
    - window: the average's span in points (alpha = 2 / (window + 1)); by
      default about a twentieth of the series, at most 50

    Returns a float64 array of shape (N,).
    """
    values = np.asarray(values, dtype=np.float64)
    if window is None:
        window = min(50, max(1, len(values) // 20))
    alpha = 2.0 / (window + 1.0)
    smoothed = np.empty_like(values)
    average, weight = 0.0, 0.0
    for i, value in enumerate(values):
        average = (1 - alpha) * average + alpha * value
        weight = (1 - alpha) * weight + alpha
        smoothed[i] = average / weight
    return smoothed


def _matplotlib():
    """matplotlib's Figure, Agg canvas and integer tick locator, or
    MissingMatplotlibError naming the install command."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise MissingMatplotlibError(f"plotting needs matplotlib: {PLOT_INSTALL_HINT}") from exc
    return Figure, FigureCanvasAgg, MaxNLocator


def _epoch_series(epoch_history, key):
    """The values of key over the epoch records, NaN where a record lacks it."""
    values = [record.get(key) for record in epoch_history]
    return None if all(v is None for v in values) else [np.nan if v is None else v for v in values]


def history_figure(history, title=None):
    """The training curves of a Solver (or of its histories) as a matplotlib
    Figure: in a notebook the cell shows it, `figure.savefig(path)` writes it.

    Left: the training loss of every iteration, faint, with its smoothed line.
    Middle: the mean training loss and the validation loss of each epoch.
    Right: training and validation accuracy after each epoch. A dotted line
    (and a star on the validation accuracy) marks the epoch whose parameters
    the Solver kept.

    Inputs:
    - history: a fastfc.Solver (its loss_history, epoch_history and
      best_epoch), or a dict with those keys (best_epoch optional)
    - title: optional figure title

    Raises MissingMatplotlibError when matplotlib is not installed.
    """
    if isinstance(history, dict):
        get = history.get
    else:
        def get(key, default=None):
            return getattr(history, key, default)
    loss_history, epoch_history = get("loss_history"), get("epoch_history")
    if loss_history is None or epoch_history is None:
        raise TypeError(f"history must be a Solver or a dict with loss_history and epoch_history, "
                        f"got {type(history).__name__}")
    figure = _draw(loss_history, epoch_history, get("best_epoch"), title)
    if in_notebook():
        _let_notebook_show(type(figure))
    return figure


def _let_notebook_show(figure_type):
    """Teach the notebook's display to draw Figures as PNG, as pyplot's inline
    backend does once pyplot is imported (history_figure needs no pyplot):
    a cell ending in the figure then shows it. A format the user chose is kept."""
    from IPython import get_ipython
    from IPython.core.pylabtools import print_figure
    formatter = get_ipython().display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(figure_type)
    except KeyError:
        formatter.for_type(figure_type, lambda figure: print_figure(figure, "png"))


def _draw(loss_history, epoch_history, kept_epoch, title):
    Figure, FigureCanvasAgg, MaxNLocator = _matplotlib()
    figure = Figure(figsize=(14, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # its own canvas: pyplot's state and backend are left alone
    loss_axes, epoch_loss_axes, acc_axes = figure.subplots(1, 3)

    iterations = np.arange(1, len(loss_history) + 1)
    loss_axes.plot(iterations, loss_history, color="tab:blue", alpha=0.25, linewidth=0.8,
                   label="loss per iteration")
    if len(loss_history):
        loss_axes.plot(iterations, smooth(loss_history), color="tab:blue", linewidth=2,
                       label="smoothed")
    if len(loss_history) and min(loss_history) > 0:
        loss_axes.set_yscale("log")  # late progress is invisible on a linear scale
    loss_axes.set(xlabel="iteration", ylabel="training loss", title="Training loss")

    epochs = [record["epoch"] for record in epoch_history]
    for axes, keys, name in (
            (epoch_loss_axes, (("train_loss", "train (mean over the epoch)", "tab:blue"),
                               ("val_loss", "validation", "tab:green")), "Loss per epoch"),
            (acc_axes, (("train_acc", "train", "tab:orange"),
                        ("val_acc", "validation", "tab:green")), "Accuracy")):
        for key, label, color in keys:
            values = _epoch_series(epoch_history, key)
            if values is not None:
                axes.plot(epochs, values, marker="o", markersize=4, color=color, label=label)
        if kept_epoch is not None:
            axes.axvline(kept_epoch, color="0.4", linestyle=":", label=f"kept (epoch {kept_epoch})")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel="epoch", title=name)
    epoch_loss_axes.set_ylabel("loss")
    acc_axes.set_ylabel("accuracy")
    kept = [r for r in epoch_history if r.get("epoch") == kept_epoch and r.get("val_acc") is not None]
    if kept:
        acc_axes.plot([kept_epoch], [kept[0]["val_acc"]], marker="*", markersize=14,
                      color="tab:red", linestyle="none", label="kept parameters")
    for axes in (loss_axes, epoch_loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        if axes.get_lines():  # none before the first epoch ends, and an empty legend warns
            axes.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def plot_history(path, loss_history, epoch_history, title=None, kept_epoch=None):
    """Draw the training curves of history_figure to a PNG file.

    Inputs:
    - path: output file name (.png)
    - loss_history: sequence of per-iteration training losses
    - epoch_history: list of per-epoch dicts with epoch, train_loss,
      train_acc, val_loss, val_acc (missing keys are left out)
    - title: optional figure title
    - kept_epoch: the epoch whose parameters were kept, marked (None: no mark)

    Raises MissingMatplotlibError when matplotlib is not installed.
    """
    _draw(loss_history, epoch_history, kept_epoch, title).savefig(path, format="png")
