"""Progress bars: shown on a terminal and in a Jupyter kernel, never into a
file or pipe; the Solver's and the scikit-learn estimator's."""
import io
import os
import sys
import types

import numpy as np
import pytest

import fastfc
from fastfc import _progress
from fastfc.datasets import flatten, load_digits
from fastfc.models import FullyConnectedNet


class FakeShell:
    def __init__(self, config):
        self.config = config


@pytest.fixture
def fake_ipython(monkeypatch):
    """Installs a stand-in IPython module whose shell has the given config."""
    def install(config):
        module = types.ModuleType("IPython")
        module.get_ipython = lambda: FakeShell(config)
        monkeypatch.setitem(sys.modules, "IPython", module)
    return install


def test_no_bar_into_a_file_or_pipe_or_closed_stream(tmp_path):
    assert not _progress.wants_bar(io.StringIO())
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as pipe:
        assert not _progress.wants_bar(pipe)
    with open(tmp_path / "log", "w") as log:
        assert not _progress.wants_bar(log)
    closed = io.StringIO()
    closed.close()
    assert not _progress.wants_bar(closed)


def test_bar_on_a_terminal():
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert _progress.wants_bar(terminal)
    os.close(leader)


def test_bar_in_a_jupyter_kernel_even_when_stderr_is_no_terminal(fake_ipython):
    fake_ipython({"IPKernelApp": {}})
    assert _progress.in_notebook()
    assert _progress.wants_bar(io.StringIO())


def test_no_bar_in_a_plain_ipython_console(fake_ipython):
    fake_ipython({"TerminalInteractiveShell": {}})
    assert not _progress.in_notebook()
    assert not _progress.wants_bar(io.StringIO())


def test_ipython_is_never_imported_to_decide():
    saved = sys.modules.pop("IPython", None)
    try:
        assert not _progress.in_notebook()
        assert "IPython" not in sys.modules
    finally:
        if saved is not None:
            sys.modules["IPython"] = saved


def tiny_solver(verbose):
    data = load_digits(val_size=50, test_size=50)
    data = {k: v[:200] for k, v in data.items()}
    model = FullyConnectedNet([16], input_dim=64, num_classes=10, seed=0)
    return fastfc.Solver(model, data, batch_size=50, num_epochs=2, seed=0, verbose=verbose)


@pytest.mark.parametrize("bar_wanted", [False, True])
def test_solver_bar_follows_wants_bar(monkeypatch, capsys, bar_wanted):
    from fastfc import solver as solver_module
    monkeypatch.setattr(solver_module, "wants_bar", lambda: bar_wanted)
    tiny_solver(verbose=True).train()
    err = capsys.readouterr().err
    # tqdm's text bar: "epoch 1/2: ...| 4/4 [..., 50.00batch/s]".
    assert ("epoch 2/2" in err and "batch" in err) == bar_wanted


def test_solver_quiet_never_asks_for_a_bar(monkeypatch, capsys):
    from fastfc import solver as solver_module
    monkeypatch.setattr(solver_module, "wants_bar", lambda: pytest.fail("asked"))
    tiny_solver(verbose=False).train()
    assert capsys.readouterr() == ("", "")


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
@pytest.mark.parametrize("bar_wanted", [False, True])
def test_estimator_bar_only_when_verbose_and_watched(monkeypatch, capsys, bar_wanted):
    pytest.importorskip("sklearn")
    from fastfc import sklearn as fastfc_sklearn
    monkeypatch.setattr(fastfc_sklearn, "wants_bar", lambda: bar_wanted)
    data = flatten(load_digits())
    X, y = data["X_train"][:300], data["y_train"][:300]
    estimator = fastfc_sklearn.MLPClassifier((16,), max_iter=3, random_state=0, verbose=True)
    estimator.fit(X, y)
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    # scikit-learn's lines either way, printed above the bar when there is one.
    assert sum("Iteration" in line and "loss =" in line for line in lines) >= 3
    assert ("MLPClassifier" in err and "epoch" in err) == bar_wanted
    capsys.readouterr()
    estimator.set_params(verbose=False).fit(X, y)
    assert capsys.readouterr() == ("", "")
    assert np.isfinite(estimator.loss_)
