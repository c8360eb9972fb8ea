"""The example notebooks run top to bottom in a Jupyter kernel (nbclient), so
they never rot: every cell without error, the training's progress bar and the
history figure shown, the notebook's own checks passed."""
import json
import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the test extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the test extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the test extra)")
pytest.importorskip("matplotlib", reason="matplotlib is not installed (the test extra)")

from testutil import child_env  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
KERNEL = "fastfc-tests"


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """A kernel spec running this Python (whatever `python` on PATH or a
    system-wide spec would pick), found through JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "fastfc tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def outputs_of(cell, output_type=None):
    return [o for o in cell.get("outputs", []) if output_type in (None, o["output_type"])]


def text_of(cell):
    return "".join(o.get("text", "") for o in outputs_of(cell, "stream"))


def test_digits_notebook_runs_end_to_end(tmp_path, kernel_of_this_interpreter):
    notebook = nbformat.read(EXAMPLES / "digits.ipynb", as_version=4)
    # Stored without outputs: what the reader sees comes from running it.
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name=kernel_of_this_interpreter,
                                     resources={"metadata": {"path": str(workdir)}})
    # The kernel imports the same fastfc as this test (an in-place build or the installed one).
    client.execute(env=child_env())
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in outputs_of(cell, "error")]
    training = next(cell for cell in code if "solver.train()" in cell.source)
    # The kernel's stderr is no terminal, yet the bar is drawn: a notebook is watched.
    shown = text_of(training) + json.dumps(outputs_of(training, "display_data"))
    assert "epoch 15/15" in shown, shown
    assert "kept epoch" in text_of(training)
    plot = next(cell for cell in code if "history_figure" in cell.source)
    assert any("image/png" in o.get("data", {}) for o in outputs_of(plot)), outputs_of(plot)
    accuracy = next(cell for cell in code if "test accuracy" in cell.source)
    assert float(text_of(accuracy).split("test accuracy:")[1]) > 0.9
    assert os.listdir(workdir) == []  # the notebook writes its files in a temporary directory
