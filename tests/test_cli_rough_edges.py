"""The command line's rough edges a new user hit (issue 16), each fixed and
held here: a closed stdout, --plot names, --threads' message, CSV line ends,
an interrupted final retrain of search and its report in train's format, the
epoch lines explained, the bench plot's legend; and what came with the
issue: safetensors files, `fastfc export --onnx`, Fashion-MNIST found where
Debian puts it."""
import re
import subprocess
import sys

import numpy as np
import pytest

import fastfc
import fastfc.solver
from fastfc import cli, datasets
from fastfc.cli import train as cli_train

from test_datasets import make_mnist
from testutil import child_env

TINY = ["--hidden", "16", "--epochs", "2", "--lr", "1e-2", "--threads", "1"]
# The epoch line of `fastfc train` and its final line.
EPOCH_LINE = re.compile(r"^epoch +\d+/\d+  train loss \d\.\d{4}  acc +\d+\.\d+%  \|  val loss", re.M)
TEST_LINE = re.compile(r"^test accuracy \d+\.\d+% \(loss \d\.\d{4}, \d+ samples; best val acc \d+\.\d+%\)$",
                       re.M)


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a Solver starts training."""
    monkeypatch.setattr(fastfc.solver.Solver, "train", lambda self: pytest.fail("training started"))


def test_a_closed_stdout_does_not_lose_the_model(tmp_path):
    """`fastfc train --save m | head`: the reader gone before the first line,
    the run goes on, saves, says so once on stderr and exits 0."""
    model, log = tmp_path / "m.safetensors", tmp_path / "h.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "fastfc", "train", *TINY, "--save", str(model), "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=tmp_path)
    process.stdout.close()  # as `head` does once it has its lines
    _, err = process.communicate(timeout=120)
    err = err.decode()
    assert process.returncode == 0, err
    assert "standard output was closed" in err and err.count("fastfc:") == 1, err
    assert model.exists() and log.exists()
    assert cli.main(["evaluate", "--model", str(model)]) == 0


@pytest.mark.parametrize("name", ["curves.txt", "curves", "curves.png.bak"])
def test_plot_name_is_checked_before_training(tmp_path, capsys, no_training, name):
    status = cli.main(["train", *TINY, "--plot", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR and "give a name ending in .png" in err and name in err
    assert len(err.strip().splitlines()) == 1


def test_plot_help_says_pip_install_matplotlib(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "pip install matplotlib" in help_text and "[plot]" not in help_text


def test_threads_error_names_the_option(capsys, no_training):
    status = cli.main(["train", "--threads", "100000"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR and "--threads 100000: must be at most" in err
    assert "n must" not in err


def test_logs_end_lines_with_newline_only(tmp_path, capsys):
    log, trials = tmp_path / "h.csv", tmp_path / "trials.csv"
    assert cli.main(["train", *TINY, "--quiet", "--log", str(log)]) == 0
    assert cli.main(["search", "--trials", "2", "--epochs", "1", "--final-epochs", "1",
                     "--hidden-choices", "8", "--threads", "1", "--quiet", "--log", str(trials)]) == 0
    for path in (log, tmp_path / "h-iterations.csv", trials):
        content = path.read_bytes()
        assert b"\r" not in content and content.count(b"\n") >= 2, path


def test_epoch_lines_are_explained(capsys):
    assert cli.main(["train", *TINY]) == 0
    out = capsys.readouterr().out
    key = out.index(cli_train.EPOCH_LINE_KEY)
    assert key < EPOCH_LINE.search(out).start()  # before the first epoch line
    for words in ("mean over the epoch's batches", "1,000 training images", "whole validation set"):
        assert words in cli_train.EPOCH_LINE_KEY
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "1,000 training images" in " ".join(capsys.readouterr().out.split())


def test_search_retrains_and_reports_as_train_does(tmp_path, capsys):
    status = cli.main(["search", "--trials", "2", "--epochs", "1", "--final-epochs", "2",
                       "--hidden-choices", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0
    retrain = out[out.index("best: trial"):]
    assert len(EPOCH_LINE.findall(retrain)) == 2 and TEST_LINE.search(retrain), retrain
    assert "(Epoch" not in out  # the Solver's course-style lines
    assert cli.main(["train", *TINY]) == 0
    train_out = capsys.readouterr().out
    assert EPOCH_LINE.search(train_out) and TEST_LINE.search(train_out)


def test_ctrl_c_in_the_first_epoch_of_searchs_retrain_saves_nothing_and_says_so(tmp_path, capsys,
                                                                                 monkeypatch):
    """Trials of 1 epoch, then a retrain of 3 interrupted before its first
    epoch ends: no untrained model is saved, and the message says so."""
    real_train = fastfc.solver.Solver.train

    def train(self):
        if self.num_epochs == 3:
            raise KeyboardInterrupt
        return real_train(self)
    monkeypatch.setattr(fastfc.solver.Solver, "train", train)
    model = tmp_path / "best.safetensors"
    status = cli.main(["search", "--trials", "2", "--epochs", "1", "--final-epochs", "3",
                       "--hidden-choices", "8", "--threads", "1", "--quiet", "--save", str(model)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_INTERRUPTED
    assert "interrupted after 0 epochs" in err and f"{model} not written: no epoch finished" in err
    assert not model.exists()


def test_bench_plot_legends_only_sides_with_data(tmp_path):
    pytest.importorskip("matplotlib")
    from fastfc.bench import report
    records = [dict(case="relu", shape="8x8", median_ms=1.0, vs_reference=2.0),
               dict(case="affine", shape="8x8", median_ms=2.0, vs_reference=3.0, vs_torch=None)]
    figure = report.plot_speedups(tmp_path / "s.png", records)
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["vs reference"]
    records[0]["vs_torch"] = 1.5
    figure = report.plot_speedups(tmp_path / "s.png", records)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["vs reference", "vs torch"]


# ---- what came with the issue ---------------------------------------------------------

def test_train_saves_safetensors_that_evaluate_and_predict_read(tmp_path, capsys):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model = tmp_path / "m.safetensors"
    assert cli.main(["train", *TINY, "--quiet", "--save", str(model)]) == 0
    assert sorted(safetensors_numpy.load_file(model)) == ["W1", "W2", "b1", "b2"]
    assert cli.main(["evaluate", "--model", str(model)]) == 0
    assert cli.main(["predict", "--model", str(model), "--output", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("model_kind", ["mlp", "cnn"])
def test_export_onnx_runs_in_onnxruntime_as_fastfc_predicts(tmp_path, capsys, model_kind):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model_path, onnx_path = tmp_path / "m.safetensors", tmp_path / "m.onnx"
    assert cli.main(["train", *TINY, "--model", model_kind, "--quiet", "--save", str(model_path)]) == 0
    assert cli.main(["export", "--model", str(model_path), "--onnx", str(onnx_path)]) == 0
    assert f"wrote {onnx_path}" in capsys.readouterr().out
    # The graph takes images in [0, 1], as predict's input: the normalisation is inside.
    images = datasets.load_digits()["X_test"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"input": images})
    model, spec = cli.load_model(str(model_path))
    standardized = datasets.standardize(images, spec["mean"], spec["std"]).astype(np.float32)
    model.eval()
    np.testing.assert_allclose(scores, model.forward(standardized), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(scores.argmax(axis=1), model.predict(standardized))


def test_export_without_onnx_says_how_to_install(tmp_path, capsys, monkeypatch):
    model_path = tmp_path / "m.safetensors"
    assert cli.main(["train", *TINY, "--quiet", "--save", str(model_path)]) == 0
    monkeypatch.setitem(sys.modules, "onnx", None)
    status = cli.main(["export", "--model", str(model_path), "--onnx", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR and "pip install onnx" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_fashion_mnist_is_found_where_debian_puts_it(tmp_path, capsys, monkeypatch):
    system = tmp_path / "fashion-mnist"
    system.mkdir()
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", str(system))
    argv = ["train", "--dataset", "fashion-mnist", "--val-size", "4", "--hidden", "8", "--epochs", "1",
            "--threads", "1"]
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR and "apt-get install dataset-fashion-mnist" in err
    make_mnist(system, n_train=20, n_test=6)
    assert cli.main(argv) == 0
    assert "fashion-mnist: 16 train, 4 val, 6 test" in capsys.readouterr().out
