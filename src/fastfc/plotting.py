"""Training curves: CSV files always, PNG pictures when matplotlib is installed.

    write_history_csv("history.csv", solver.epoch_history, solver.loss_history)
    plot_history("curves.png", solver.loss_history, solver.epoch_history)

matplotlib is an optional extra (`pip install fastfc[plot]`); plot_history
raises MissingMatplotlibError, with that command in its message, without it.
The figure is drawn on its own Agg canvas, so pyplot's global state and the
user's chosen backend are left alone.
"""
import csv
import os

import numpy as np

PLOT_INSTALL_HINT = "pip install fastfc[plot]"

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
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(epoch_history)
    if loss_history is not None:
        written.append(iteration_log_path(path))
        with open(written[-1], "w", newline="") as f:
            writer = csv.writer(f)
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


def plot_history(path, loss_history, epoch_history, title=None):
    """Draw the training curves to a PNG file.

    Left: the training loss of every iteration, faint, with its smoothed line.
    Right: training and validation accuracy after every epoch.

    Inputs:
    - path: output file name (.png)
    - loss_history: sequence of per-iteration training losses
    - epoch_history: list of per-epoch dicts with epoch, train_acc, val_acc
    - title: optional figure title

    Raises MissingMatplotlibError when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise MissingMatplotlibError(
            f"plotting needs matplotlib: {PLOT_INSTALL_HINT}") from exc

    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, acc_axes = figure.subplots(1, 2)

    iterations = np.arange(1, len(loss_history) + 1)
    loss_axes.plot(iterations, loss_history, color="tab:blue", alpha=0.25, linewidth=0.8,
                   label="loss per iteration")
    if len(loss_history):
        loss_axes.plot(iterations, smooth(loss_history), color="tab:blue", linewidth=2,
                       label="smoothed")
    if len(loss_history) and min(loss_history) > 0:
        loss_axes.set_yscale("log")  # late progress is invisible on a linear scale
    loss_axes.set_xlabel("iteration")
    loss_axes.set_ylabel("training loss")
    loss_axes.set_title("Training loss")
    loss_axes.grid(alpha=0.3)
    loss_axes.legend()

    epochs = [record["epoch"] for record in epoch_history]
    for key, label, color in (("train_acc", "train", "tab:orange"), ("val_acc", "validation", "tab:green")):
        values = [record.get(key) for record in epoch_history]
        if any(v is not None for v in values):
            acc_axes.plot(epochs, [np.nan if v is None else v for v in values], marker="o",
                          markersize=4, color=color, label=label)
    acc_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_axes.set_xlabel("epoch")
    acc_axes.set_ylabel("accuracy")
    acc_axes.set_title("Accuracy")
    acc_axes.grid(alpha=0.3)
    if acc_axes.get_lines():  # none before the first epoch ends, and an empty legend warns
        acc_axes.legend(loc="lower right")
    if title:
        figure.suptitle(title)
    figure.savefig(path)
