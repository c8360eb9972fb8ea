"""fastfc.plotting: the one-call figure of a training history, its PNG, the
install hint without matplotlib, and the CSV logs' line ends."""
import struct
import sys
import warnings

import numpy as np
import pytest

import fastfc
from fastfc import plotting
from fastfc.datasets import load_digits
from fastfc.models import FullyConnectedNet


@pytest.fixture(scope="module")
def trained_solver():
    data = load_digits(val_size=100, test_size=100)
    model = FullyConnectedNet([32], input_dim=64, num_classes=10, seed=0)
    solver = fastfc.Solver(model, data, batch_size=64, num_epochs=4, seed=0, verbose=False)
    solver.train()
    return solver


def test_solver_records_the_kept_epoch(trained_solver):
    val = [r["val_acc"] for r in trained_solver.epoch_history]
    assert trained_solver.best_epoch == 1 + int(np.argmax(val))  # the first best
    assert trained_solver.best_val_acc == val[trained_solver.best_epoch - 1]


def line_labels(axes):
    return [line.get_label() for line in axes.get_lines()]


def test_history_figure_of_a_solver(trained_solver):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warning reaches a notebook
        figure = plotting.history_figure(trained_solver, title="digits")
    assert isinstance(figure, Figure)
    loss_axes, epoch_loss_axes, acc_axes = figure.axes
    iterations = len(trained_solver.loss_history)
    raw, smoothed = loss_axes.get_lines()
    assert len(raw.get_xdata()) == len(smoothed.get_xdata()) == iterations
    np.testing.assert_allclose(smoothed.get_ydata(), plotting.smooth(trained_solver.loss_history))
    kept = trained_solver.best_epoch
    for axes in (epoch_loss_axes, acc_axes):
        assert f"kept (epoch {kept})" in line_labels(axes)
    assert {"validation", "train (mean over the epoch)"} <= set(line_labels(epoch_loss_axes))
    val_loss = next(l for l in epoch_loss_axes.get_lines() if l.get_label() == "validation")
    np.testing.assert_allclose(val_loss.get_ydata(), [r["val_loss"] for r in trained_solver.epoch_history])
    star = next(l for l in acc_axes.get_lines() if l.get_label() == "kept parameters")
    assert list(star.get_xdata()) == [kept]
    assert list(star.get_ydata()) == [trained_solver.best_val_acc]
    assert figure._suptitle.get_text() == "digits"


def test_history_figure_of_a_dict_and_of_nothing_trained():
    pytest.importorskip("matplotlib")
    figure = plotting.history_figure(dict(loss_history=[2.0, 1.0], epoch_history=[
        dict(epoch=1, train_acc=0.5, val_acc=0.4)]))
    assert not any(l.get_label().startswith("kept") for ax in figure.axes for l in ax.get_lines())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plotting.history_figure(dict(loss_history=[], epoch_history=[]))
    with pytest.raises(TypeError, match="loss_history and epoch_history"):
        plotting.history_figure([1.0, 2.0])


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_plot_history_writes_a_png_with_the_kept_mark_under_the_name_given(tmp_path, trained_solver):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves-no-extension"
    plotting.plot_history(path, trained_solver.loss_history, trained_solver.epoch_history,
                          kept_epoch=trained_solver.best_epoch)
    width, height = png_size(path)  # exactly that name, PNG inside
    assert width > 3 * height > 3 * 300


def test_without_matplotlib_the_hint_is_pip_install_matplotlib(monkeypatch, trained_solver):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(plotting.MissingMatplotlibError, match=r"pip install matplotlib$"):
        plotting.history_figure(trained_solver)


def test_csv_logs_end_lines_with_newline_only(tmp_path, trained_solver):
    written = plotting.write_history_csv(tmp_path / "h.csv", trained_solver.epoch_history,
                                         trained_solver.loss_history)
    assert len(written) == 2
    for path in written:
        content = open(path, "rb").read()
        assert b"\r" not in content
        assert content.count(b"\n") > 1 and content.endswith(b"\n")
