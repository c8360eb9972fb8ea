"""The `fastfc` command line: end to end in subprocesses on the embedded digits
(few epochs, tiny networks), Ctrl-C and SIGTERM, the error paths (one line, no
traceback), outputs checked before training and rescued after it, saved
models as checked pairs, hostile model descriptions and input images."""
import csv
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastfc
import fastfc.solver
from fastfc import cli, plotting
from fastfc.io import check_output_path
from test_datasets import make_cifar, make_mnist
from testutil import child_env

TINY = ["--hidden", "32", "--epochs", "3", "--lr", "1e-2", "--threads", "1"]


def run_fastfc(*argv, timeout=120):
    """`python -m fastfc argv...` in a subprocess; returns the CompletedProcess."""
    env = child_env()
    return subprocess.run([sys.executable, "-m", "fastfc", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_accuracy_line(stdout, split="test"):
    match = re.search(rf"{split} accuracy (\d+\.\d+)%", stdout)
    assert match, stdout
    return float(match.group(1))


test_accuracy_line.__test__ = False  # a helper, not a test


def without_timings(stdout):
    """stdout with the samples/s and seconds columns removed (they vary run to run)."""
    return re.sub(r"[\d,]+ samples/s\s+[\d.]+ s", "", stdout)


def test_train_evaluate_predict(tmp_path):
    model, log, plot = tmp_path / "model.npz", tmp_path / "history.csv", tmp_path / "curves.png"
    result = run_fastfc("train", *TINY, "--save", model, "--log", log, "--plot", plot)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and "samples/s" in epoch_lines[0] and "val loss" in epoch_lines[0]
    accuracy = test_accuracy_line(result.stdout)
    assert accuracy > 80
    for path in (model, cli.spec_path(model), log, plotting.iteration_log_path(log)):
        assert f"saved {path}" in result.stdout and os.path.getsize(path) > 0

    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0 <= float(r["val_acc"]) <= 1 for r in rows)
    with open(plotting.iteration_log_path(log)) as f:
        assert len(list(csv.reader(f))) == 1 + 3 * -(-1257 // 64)  # header + one row per batch
    if plotting.have_matplotlib():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(cli.spec_path(model)) as f:
        spec = json.load(f)
    assert spec["hidden"] == [32] and spec["input_shape"] == [1, 8, 8] and len(spec["mean"]) == 1

    # The saved model gives the same test accuracy, and predictions agree with it.
    evaluated = run_fastfc("evaluate", "--model", model, "--threads", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    assert test_accuracy_line(evaluated.stdout) == accuracy

    images = fastfc.datasets.load_digits()["X_test"][:5]
    np.save(tmp_path / "images.npy", images.reshape(5, 64) * 16)  # raw 0..16 pixels, flattened
    predicted = run_fastfc("predict", "--model", model, "--input", tmp_path / "images.npy",
                           "--pixel-max", 16, "--output", tmp_path / "pred.csv")
    assert predicted.returncode == 0, predicted.stderr
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and all(0 < float(r["probability"]) <= 1 for r in rows)
    on_split = run_fastfc("predict", "--model", model)
    split_rows = list(csv.DictReader(on_split.stdout.splitlines()))
    assert len(split_rows) == 360
    assert [r["label"] for r in split_rows[:5]] == [r["label"] for r in rows]


def test_train_is_reproducible(tmp_path):
    """The same seed gives the same run, on 1 thread as on 2 (the kernels'
    reductions do not depend on the thread count; dropout masks are hashes)."""
    runs = [run_fastfc("train", *TINY, "--dropout", "0.2", "--threads", threads,
                       "--save", tmp_path / f"model{threads}.npz")
            for threads in (1, 1, 2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    printed = [without_timings(run.stdout).replace(str(tmp_path), "") for run in runs]
    assert printed[0] == printed[1] and "test accuracy" in printed[0]
    assert printed[2].replace("model2", "model1") == printed[0]
    with np.load(tmp_path / "model1.npz") as one, np.load(tmp_path / "model2.npz") as two:
        assert one.files == two.files
        for name in one.files:
            np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_train_on_mnist_files_with_classes(tmp_path):
    """Fashion-MNIST from IDX files, two classes by name; evaluate finds the
    data again without --data-dir."""
    arrays = make_mnist(tmp_path, n_train=60, n_test=30, compress=True)
    model = tmp_path / "model.npz"
    result = run_fastfc("train", "--dataset", "fashion-mnist", "--data-dir", tmp_path, "--classes",
                        "sneaker,bag", "--val-size", 4, "--hidden", 8, "--epochs", 2, "--threads", 1,
                        "--save", model)
    assert result.returncode == 0, result.stderr
    n_test = np.isin(arrays["t10k-labels-idx1-ubyte"], [7, 8]).sum()
    assert f"{n_test} samples" in result.stdout
    n_train = np.isin(arrays["train-labels-idx1-ubyte"], [7, 8]).sum() - 4
    assert f"fashion-mnist: {n_train} train, 4 val, {n_test} test; 2 classes" in result.stdout
    with open(cli.spec_path(model)) as f:
        spec = json.load(f)
    assert spec["input_shape"] == [1, 28, 28] and spec["class_names"] == ["sneaker", "bag"]
    assert spec["data_dir"] == str(tmp_path)
    evaluated = run_fastfc("evaluate", "--model", model, "--threads", 1)
    assert evaluated.returncode == 0, evaluated.stderr
    assert test_accuracy_line(evaluated.stdout) == test_accuracy_line(result.stdout)


def test_train_cnn_on_cifar_batches(tmp_path):
    batches = make_cifar(tmp_path, per_batch=20, n_test=30)
    result = run_fastfc("train", "--dataset", "cifar10", "--data-dir", tmp_path, "--classes", "horse,ship,truck",
                        "--val-size", 3, "--model", "cnn", "--filters", 2, "--hidden", 8, "--epochs", 1,
                        "--augment", "flip,crop", "--threads", 1, "--save", tmp_path / "model.npz")
    assert result.returncode == 0, result.stderr
    assert "cifar10:" in result.stdout and "3 classes; model cnn 3x32x32 conv2-pool 8-3" in result.stdout
    assert f"{sum(label >= 7 for label in batches['test_batch']['labels'])} samples" in result.stdout
    test_accuracy_line(result.stdout)


def test_train_cnn_with_augmentation():
    result = run_fastfc("train", "--model", "cnn", "--filters", "4", "--hidden", "16", "--epochs", "2",
                        "--lr", "1e-2", "--augment", "crop=1", "--optimizer", "adamw", "--weight-decay", "1e-3",
                        "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "epoch" not in result.stdout  # --quiet
    assert test_accuracy_line(result.stdout) > 30


def test_search(tmp_path):
    # Learning rates a 1-epoch trial can learn from: the default range's low end
    # leaves a 3-epoch retrain of a 16-wide net near chance on digits.
    result = run_fastfc("search", "--trials", "2", "--epochs", "1", "--final-epochs", "3",
                        "--hidden-choices", "16,32", "--lr-range", "1e-2,3e-2", "--threads", "1",
                        "--log", tmp_path / "trials.csv", "--save", tmp_path / "best.npz")
    assert result.returncode == 0, result.stderr
    table = [line.split() for line in result.stdout.splitlines() if re.match(r"\s+\d+\s+\d+\s", line)]
    assert sorted(int(row[1]) for row in table) == [1, 2]
    val_accs = [float(row[-2].rstrip("%")) for row in table]
    assert val_accs == sorted(val_accs, reverse=True)
    assert test_accuracy_line(result.stdout) > 70
    assert os.path.exists(tmp_path / "best.npz") and os.path.exists(tmp_path / "trials.csv")


def test_info():
    result = run_fastfc("info")
    assert result.returncode == 0 and result.stdout.startswith("fastfc ")


def test_ctrl_c_saves_and_exits_130(tmp_path):
    model = tmp_path / "model.npz"
    env = child_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "fastfc", "train", "--hidden", "16", "--epochs", "100000", "--threads", "1",
         "--save", str(model), "--log", str(tmp_path / "history.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stdout:  # wait until training is under way
            if line.startswith("epoch "):
                break
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr
    assert str(model) in stderr
    assert "test accuracy" not in stdout
    assert os.path.getsize(model) > 0 and os.path.getsize(tmp_path / "history.csv") > 0
    assert cli.main(["evaluate", "--model", str(model)]) == 0


def test_plot_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not plotting.have_matplotlib()
    status = cli.main(["train", "--hidden", "8", "--epochs", "1", "--plot", str(tmp_path / "c.png"), "--quiet"])
    out, err = capsys.readouterr()
    assert status == 0 and "test accuracy" in out
    assert "pip install matplotlib" in err and not (tmp_path / "c.png").exists()
    with pytest.raises(plotting.MissingMatplotlibError, match="pip install"):
        plotting.plot_history(tmp_path / "c.png", [1.0], [])


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "imagenet"], "unknown dataset"),
    (["train", "--dataset", "mnist"], "--data-dir is required"),
    (["train", "--dataset", "cifar10", "--data-dir", "/no/such/dir"], "directory not found"),
    (["train", "--hidden", "256,x"], "--hidden"),
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--dropout", "1"], "--dropout"),
    (["train", "--model", "rnn"], "--model"),
    (["train", "--augment", "rotate"], "--augment"),
    (["train", "--classes", "3,eleven"], "unknown class"),
    (["train", "--val-size", "5000"], "val_size"),
    (["train", "--model", "cnn", "--filters", "8,8,8,8"], "--filters"),
    (["train", "--no-such-option"], "unrecognized arguments"),
    (["evaluate", "--model", "/no/such/model.npz"], "model file not found"),
    (["evaluate"], "--model"),
    (["search", "--lr-range", "1e-2,1e-4"], "--lr-range"),
    (["search", "--lr-range", "0,1e-2", "--trials", "1"], "LOW > 0"),
    (["search", "--momentum", "0.5"], "--momentum is only for"),
    (["search", "--momentum-range", "0.5,0.9"],
     "--momentum-range is only for --optimizer sgd, sgd_momentum or rmsprop"),
    (["search", "--optimizer", "sgd", "--momentum-range", "0.5,1"], "momentum must stay below 1"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--momentum", "0.9"], "--momentum is only for --optimizer sgd, sgd_momentum or rmsprop"),
    (["train", "--data-dir", os.path.dirname(__file__)], "digits is embedded"),
    (["train", "--dataset", "mnist", "--data-dir", __file__], "is a file, not the directory"),
    (["train", "--save", "/no/such/dir/model.npz"], "directory /no/such/dir does not exist"),
    (["train", "--log", os.path.dirname(__file__)], "it is a directory"),
    (["search", "--log", "/no/such/dir/trials.csv"], "/no/such/dir does not exist"),
    (["predict", "--model", "m.npz", "--output", "/no/such/dir/p.csv"], "/no/such/dir does not exist"),
    (["evaluate", "--model", "m.npz", "--classes", "1"], "unrecognized arguments: --classes"),
    (["train", "--classes", "3"], "at least two classes"),
    (["search", "--classes", "7"], "at least two classes"),
    (["train", "--hidden", "100000000000"], "parameters: training needs at least"),
    (["train", "--model", "cnn", "--filters", "4000000,4000000"], "parameters: training needs at least"),
    ([], ""),
])
def test_errors_are_one_line(argv, message, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status != 0
    if argv:
        assert len(err.strip().splitlines()) == 1, err
        assert message in err and "Traceback" not in err
        assert "epoch" not in out and "accuracy" not in out  # caught before any training


def test_saved_model_errors(tmp_path, capsys):
    model = tmp_path / "model.npz"
    assert cli.main(["train", "--hidden", "8", "--epochs", "1", "--save", str(model), "--quiet"]) == 0
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    bad_inputs = [
        (["predict", "--model", str(model), "--input", str(tmp_path / "wrong.npy")], "the model expects (1, 8, 8)"),
        (["predict", "--model", str(model), "--input", str(tmp_path / "none.npy")], "--input file not found"),
        (["evaluate", "--model", str(model), "--dataset", "mnist", "--data-dir", str(tmp_path)],
         "MNIST file not found"),
    ]
    for argv, message in bad_inputs:
        capsys.readouterr()
        assert cli.main(argv) == cli.EXIT_ERROR
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    sidecar = cli.spec_path(model)
    open(sidecar, "w").write("{not json")
    assert cli.main(["evaluate", "--model", str(model)]) == cli.EXIT_ERROR
    assert "not valid JSON" in capsys.readouterr().err
    os.remove(sidecar)
    assert cli.main(["evaluate", "--model", str(model)]) == cli.EXIT_ERROR
    assert "model.json not found" in capsys.readouterr().err


def test_search_ctrl_c_keeps_finished_trials(tmp_path, monkeypatch, capsys):
    real_run_trial = cli.search.run_trial
    started = []

    def interrupted_at_third(*args, **kwargs):
        started.append(1)
        if len(started) == 3:
            raise KeyboardInterrupt
        real_run_trial(*args, **kwargs)

    monkeypatch.setattr(cli.search, "run_trial", interrupted_at_third)
    log, best = tmp_path / "trials.csv", tmp_path / "best.npz"
    status = cli.main(["search", "--trials", "5", "--epochs", "1", "--hidden-choices", "16", "--threads", "1",
                       "--log", str(log), "--save", str(best)])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_INTERRUPTED
    assert err.strip() == f"fastfc: search interrupted after 2 of 5 trials; saved {log}"
    with open(log) as f:
        assert sorted(int(row["number"]) for row in csv.DictReader(f)) == [1, 2]
    assert "rank" in out and "test accuracy" not in out and not best.exists()


def test_search_over_learning_rate_weight_decay_and_momentum(tmp_path, capsys):
    """The manual-MLP report's space: SGD's learning rate, weight decay and
    momentum, each log-uniform, drawn from --seed."""
    log = tmp_path / "trials.csv"
    argv = ["search", "--trials", "3", "--epochs", "1", "--final-epochs", "1", "--optimizer", "sgd",
            "--lr-range", "1e-2,1e-1", "--weight-decay-range", "1e-5,1e-3", "--momentum-range",
            "0.5,0.95", "--hidden-choices", "16", "--threads", "1", "--quiet", "--log", str(log)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    with open(log) as f:
        rows = list(csv.DictReader(f))
    momenta = [float(row["momentum"]) for row in rows]
    assert len(set(momenta)) == 3 and all(0.5 <= m <= 0.95 for m in momenta)
    assert "momentum" in out.splitlines()[0] and "test accuracy" in out
    args = cli.build_parser().parse_args(argv)
    trial = next(cli.search.sample_trials(args, 1))
    assert cli.search._trial_args(args, trial).momentum == trial["momentum"] == momenta[
        [int(row["number"]) for row in rows].index(1)]


def test_search_reports_diverging_trials(capsys):
    status = cli.main(["search", "--trials", "2", "--epochs", "1", "--optimizer", "sgd", "--lr-range", "1e3,1e4",
                       "--hidden-choices", "16", "--threads", "1", "--quiet"])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_ERROR and "every trial diverged" in err
    assert out.count("diverged") == 2 and "test accuracy" not in out


# ---------------------------------------------------------------- plots

def png_size(path):
    """(width, height) from a PNG file's header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_plot_history_png(tmp_path):
    pytest.importorskip("matplotlib")
    epochs = [dict(epoch=e, train_acc=0.5 + e / 20, val_acc=0.45 + e / 25) for e in range(1, 6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warning reaches the user's terminal
        plotting.plot_history(tmp_path / "curves.png", np.geomspace(2.3, 0.05, 100), epochs, title="digits")
        # A run stopped before its first batch: empty axes, still no warning.
        plotting.plot_history(tmp_path / "empty.png", [], [])
    width, height = png_size(tmp_path / "curves.png")
    assert width > 2 * height > 400
    assert png_size(tmp_path / "empty.png") == (width, height)


def test_smooth():
    # Bias-corrected: a constant series is not pulled towards zero at the start.
    np.testing.assert_allclose(plotting.smooth(np.full(40, 3.0)), 3.0)
    noisy = np.random.default_rng(0).normal(size=400)
    smoothed = plotting.smooth(noisy, window=20)
    assert smoothed.shape == noisy.shape and smoothed[0] == noisy[0]
    assert smoothed.std() < noisy.std() / 3
    step = plotting.smooth(np.r_[np.zeros(10), np.ones(40)], window=5)
    assert (np.diff(step) >= 0).all() and step[10] < 0.5 and step[-1] > 0.99


def test_subprocess_error_has_no_traceback():
    result = run_fastfc("train", "--dataset", "fashion-mnist", "--data-dir", "/no/such/dir")
    assert result.returncode == 1
    assert result.stderr.strip() == "fastfc: error: MNIST directory not found: /no/such/dir"


# ---------------------------------------------------------------- saved models as pairs, hostile sidecars

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small digits model saved by `fastfc train --save` (in-process): its .npz path."""
    model = tmp_path_factory.mktemp("trained") / "model.npz"
    assert cli.main(["train", *TINY, "--quiet", "--save", str(model)]) == 0
    return model


def copy_model(source, directory, name="model.npz"):
    """A copy of a saved model (both files) in directory; the new .npz path."""
    target = directory / name
    shutil.copy(source, target)
    shutil.copy(cli.spec_path(source), cli.spec_path(target))
    return target


def edit_spec(model, edit):
    """Rewrite a saved model's description with edit(spec) applied."""
    path = cli.spec_path(model)
    with open(path) as f:
        spec = json.load(f)
    edit(spec)
    with open(path, "w") as f:
        json.dump(spec, f)


def one_line_error(capsys, status, message):
    """The command failed with exit status 1 and one stderr line holding message, before any epoch."""
    out, err = capsys.readouterr()
    assert status == cli.EXIT_ERROR, err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert "epoch" not in out
    return err


def test_parameters_from_another_save_are_refused(tmp_path, capsys):
    """Two runs with the classes in opposite orders: the same shapes, so one's
    parameters load under the other's description and answer with swapped
    class names, unless the recorded digest ties the pair together."""
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    for path, classes in ((first, "3,5"), (second, "5,3")):
        assert cli.main(["train", *TINY, "--quiet", "--classes", classes, "--save", str(path)]) == 0
    shutil.copy(second, first)  # second's parameters beside first's description, as a crash could leave them
    capsys.readouterr()
    for argv in (["evaluate", "--model", str(first)], ["predict", "--model", str(first)]):
        one_line_error(capsys, cli.main(argv), "come from different saves")
    assert cli.main(["evaluate", "--model", str(second)]) == 0


def test_version_1_descriptions_still_load(trained, tmp_path, capsys):
    model = copy_model(trained, tmp_path)
    edit_spec(model, lambda spec: [spec.update(version=1)] + [spec.pop(key) for key in
                                                              ("pixel_max", "input_range", "parameters_sha256")])
    assert cli.main(["evaluate", "--model", str(model)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def _replace(**fields):
    return lambda spec: spec.update(fields)


def _delete(field):
    return lambda spec: spec.pop(field)


HOSTILE_SPECS = {
    "mean NaN": (_replace(mean=[float("nan")]), "'mean'"),
    "std zero": (_replace(std=[0.0]), "'std'"),
    "std infinite": (_replace(std=[float("inf")]), "'std'"),
    "mean of two channels": (_replace(mean=[0.1, 0.2]), "'mean'"),
    "mean missing": (_delete("mean"), "'mean'"),
    "unknown model": (_replace(model="rnn"), "'model'"),
    "unknown dataset": (_replace(dataset="imagenet"), "'dataset'"),
    "dtype float16": (_replace(dtype="float16"), "'dtype'"),
    "short class names": (_replace(class_names=["0", "1"]), "'class_names'"),
    "class names not text": (_replace(class_names=list(range(10))), "'class_names'"),
    "empty class name": (_replace(class_names=[""] + [str(d) for d in range(1, 10)]), "'class_names'"),
    "classes of another length": (_replace(classes=["3"]), "'classes'"),
    "num_classes a bool": (_replace(num_classes=True), "'num_classes'"),
    "one class": (_replace(num_classes=1), "'num_classes'"),
    "widths not numbers": (_replace(hidden=["x"]), "'hidden'"),
    "width beyond any machine": (_replace(hidden=[10**12]), "'hidden'"),
    "widths not a list": (_replace(hidden=32), "'hidden'"),
    "filters for an mlp": (_replace(filters=[8]), "'filters'"),
    "kernel size zero": (_replace(kernel_size=0), "'kernel_size'"),
    "dropout 1.5": (_replace(dropout=1.5), "'dropout'"),
    "input shape of two": (_replace(input_shape=[1, 8]), "'input_shape'"),
    "input shape of floats": (_replace(input_shape=[1.0, 8.0, 8.0]), "'input_shape'"),
    "normalize a string": (_replace(normalize="yes"), "'normalize'"),
    "negative seed": (_replace(seed=-1), "'seed'"),
    "val_size zero": (_replace(val_size=0), "'val_size'"),
    "data_dir a number": (_replace(data_dir=5), "'data_dir'"),
    "digest missing": (_delete("parameters_sha256"), "'parameters_sha256'"),
    "digest not hex": (_replace(parameters_sha256="x" * 64), "'parameters_sha256'"),
    "input range reversed": (_replace(input_range=[1.0, 0.0]), "'input_range'"),
    "pixel max zero": (_replace(pixel_max=0), "'pixel_max'"),
    "version 3": (_replace(version=3), "version 3"),
    "width not the file's": (_replace(hidden=[31]), "does not fit its description"),
}
HOSTILE_SPEC_TEXTS = {
    "nested 100,000 deep": ("[" * 100_000, "nested too deep"),
    "2 MiB": (json.dumps({"format": cli.SPEC_FORMAT, "pad": "x" * (2 << 20)}), "larger than"),
    "bad UTF-8": (b'{"format": "\xff"}', "not valid JSON"),
    "an integer of 5000 digits": ('{"version": ' + "9" * 5000 + "}", "not valid JSON"),
    "a list": ("[1, 2]", "not a fastfc model description"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SPECS) + list(HOSTILE_SPEC_TEXTS))
def test_hostile_descriptions_are_one_line_errors(trained, tmp_path, capsys, case):
    """Every field of a model's description is checked (type, range,
    finiteness, length; the JSON's size and depth) before it is used: a
    NaN std would give NaN predictions, an unknown model was built as an
    mlp, short class names raised IndexError, deep nesting RecursionError."""
    model = copy_model(trained, tmp_path)
    if case in HOSTILE_SPECS:
        edit, message = HOSTILE_SPECS[case]
        edit_spec(model, edit)
    else:
        text, message = HOSTILE_SPEC_TEXTS[case]
        with open(cli.spec_path(model), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
    one_line_error(capsys, cli.main(["evaluate", "--model", str(model)]), message)


def test_predicted_class_names_are_not_spreadsheet_formulas(trained, tmp_path, capsys):
    model = copy_model(trained, tmp_path)
    names = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=cmd|' /C calc'!A0", "7", "-", "nine"]
    edit_spec(model, _replace(class_names=names))
    output = tmp_path / "predictions.csv"
    assert cli.main(["predict", "--model", str(model), "--output", str(output)]) == 0
    with open(output, newline="") as f:
        classes = {row["class"] for row in csv.DictReader(f)}
    assert classes and all(name.startswith("'") or name in ("7", "nine") for name in classes), classes
    assert classes <= {"'" + name for name in names} | {"7", "nine"}


def test_predict_scales_images_by_their_dtype(trained, tmp_path, capsys):
    """Integer images are divided by the data set's white value (16 for
    digits) without --pixel-max; floats are taken as already scaled; images
    far outside the training images' range (or NaN) are refused, where
    they used to be classified, wrongly."""
    unit = fastfc.datasets.load_digits()["X_test"][:50]  # [0, 1] floats, as trained
    files = {"unit": unit, "bytes": np.rint(unit * 16).astype(np.uint8),
             "raw floats": unit * 16, "bytes of 0..255": np.rint(unit * 255).astype(np.uint8),
             "nan": np.where(unit > 0.5, np.nan, unit)}
    for name, images in files.items():
        np.save(tmp_path / f"{name}.npy", images)

    def predict(name, *options):
        status = cli.main(["predict", "--model", str(trained), "--input", str(tmp_path / f"{name}.npy"),
                           *options])
        return status, capsys.readouterr()

    def labels(out):
        return [row["label"] for row in csv.DictReader(out.splitlines())]

    status, expected = predict("unit")
    assert status == 0
    for name, options in (("bytes", ()), ("raw floats", ("--pixel-max", "16"))):
        status, got = predict(name, *options)
        assert status == 0 and got.out == expected.out, name
    status, got = predict("bytes of 0..255", "--pixel-max", "255")  # rounded to 1/255 steps
    assert status == 0 and labels(got.out) == labels(expected.out)
    for name, message in (("raw floats", "give --pixel-max"), ("bytes of 0..255", "give --pixel-max"),
                          ("nan", "NaN")):
        status, got = predict(name)
        assert status == cli.EXIT_ERROR and message in got.err and len(got.err.strip().splitlines()) == 1, got.err


def test_predict_refuses_an_npz_as_input(trained, tmp_path, capsys):
    """An .npz (named .npz or .npy) where a single array is expected: one line, not AttributeError."""
    for name in ("images.npz", "images.npy"):
        with open(tmp_path / name, "wb") as f:
            np.savez(f, images=np.zeros((2, 64), np.float32))
        status = cli.main(["predict", "--model", str(trained), "--input", str(tmp_path / name)])
        one_line_error(capsys, status, ".npz archive")


# ---------------------------------------------------------------- outputs: checked before, rescued after

OVERWRITES = {
    "--save names its own description": (["train", "--save", "{d}/m.json"], "would both write"),
    "--log is the model": (["train", "--save", "{d}/m.npz", "--log", "{d}/m.npz"], "would both write"),
    "--log is the description": (["train", "--save", "{d}/m.npz", "--log", "{d}/m.json"], "would both write"),
    "--plot is the per-iteration log": (["train", "--log", "{d}/h.csv", "--plot", "{d}/h-iterations.csv"],
                                        "would both write"),
    "search --log is the description": (["search", "--save", "{d}/m.npz", "--log", "{d}/m.json"],
                                        "would both write"),
    "--output is the model": (["predict", "--model", "{model}", "--output", "{model}"], "is --model,"),
    "--output is the description": (["predict", "--model", "{model}", "--output", "{d}/model.json"],
                                    "is --model's description"),
    "--output is the input": (["predict", "--model", "{model}", "--input", "{d}/x.npy", "--output", "{d}/x.npy"],
                              "is --input"),
    "--output is a hard link to the model": (["predict", "--model", "{model}", "--output", "{d}/hard.npz"],
                                             "is --model,"),
    "--output is a symbolic link to the model": (["predict", "--model", "{model}", "--output", "{d}/soft.npz"],
                                                 "is --model,"),
    "--log is a data file": (["train", "--dataset", "mnist", "--data-dir", "{d}", "--log",
                              "{d}/train-labels-idx1-ubyte"], "is a mnist file"),
}


@pytest.mark.parametrize("case", OVERWRITES)
def test_outputs_that_are_inputs_or_other_outputs_are_refused(trained, tmp_path, capsys, case):
    """An output path that is an input (also through a link) or another
    output of the same command is refused before any work; every file is
    left as it was."""
    model = copy_model(trained, tmp_path)
    os.link(model, tmp_path / "hard.npz")
    os.symlink(model, tmp_path / "soft.npz")
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    make_mnist(tmp_path)
    for name in ("m.npz", "m.json", "h.csv", "h-iterations.csv"):
        (tmp_path / name).write_text("an earlier run's file")
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    argv, message = OVERWRITES[case]
    status = cli.main([arg.format(d=tmp_path, model=model) for arg in argv])
    one_line_error(capsys, status, message)
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


@pytest.mark.parametrize("case", ["trailing slash", "description is a directory", "parent is a file",
                                  "name too long for the temporary name", "log name too long",
                                  "read-only model", "read-only log", "unwritable directory"])
def test_output_paths_are_checked_before_training(tmp_path, monkeypatch, capsys, case):
    """What would make a save fail after the run makes the command fail
    before it: the temporary file's name is about 20 characters longer
    than the model's, so a legal 240-character name cannot be saved."""
    monkeypatch.setattr(fastfc.Solver, "train", lambda self: pytest.fail("trained before refusing"))
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    (tmp_path / "file").write_text("")
    (tmp_path / "m.json").mkdir()
    for name in ("ro.npz", "ro.csv"):
        (tmp_path / name).write_text("keep")
        os.chmod(tmp_path / name, 0o444)
    if case == "unwritable directory":
        try:
            check_output_path("/sys/model.npz")
            pytest.skip("/sys is writable here")
        except OSError:
            pass
    option, path, message = {
        "trailing slash": ("--save", f"{tmp_path}/sub/", "ends with a separator"),
        "description is a directory": ("--save", tmp_path / "m.npz", "it is a directory"),
        "parent is a file": ("--save", tmp_path / "file" / "m.npz", "cannot"),
        "name too long for the temporary name": ("--save", tmp_path / ("m" * (limit - 19) + ".npz"), "too long"),
        "log name too long": ("--log", tmp_path / ("h" * (limit - 3) + ".csv"), "too long"),
        "read-only model": ("--save", tmp_path / "ro.npz", "read-only"),
        "read-only log": ("--log", tmp_path / "ro.csv", "read-only"),
        "unwritable directory": ("--save", "/sys/model.npz", "cannot create a file in /sys"),
    }[case]
    status = cli.main(["train", *TINY, "--quiet", option, str(path)])
    one_line_error(capsys, status, message)
    assert (tmp_path / "ro.npz").read_text() == "keep" and (tmp_path / "ro.csv").read_text() == "keep"


def test_a_save_failing_after_training_is_rescued(tmp_path, monkeypatch, capsys):
    """The output directory disappears during the run: the model and the
    history are saved under rescue names (here in the working directory)
    with one line each saying where, rather than lost."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    real_train = fastfc.Solver.train

    def train_then_lose_the_directory(self):
        real_train(self)
        shutil.rmtree(out)
    monkeypatch.setattr(fastfc.Solver, "train", train_then_lose_the_directory)
    status = cli.main(["train", *TINY, "--quiet", "--save", str(out / "m.npz"), "--log", str(out / "h.csv")])
    stdout, err = capsys.readouterr()
    assert status == cli.EXIT_ERROR and "test accuracy" in stdout
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(f"cannot write {out}" in line for line in lines), err
    rescued = [re.search(r"saved it as (\S+) instead", line)[1] for line in lines]
    assert [os.path.dirname(path) for path in rescued] == [str(tmp_path)] * 2
    monkeypatch.undo()
    assert cli.main(["evaluate", "--model", rescued[0]]) == 0
    with open(rescued[1]) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2, 3]


# ---------------------------------------------------------------- interrupted and diverging runs

def step_failing_at(monkeypatch, call, action):
    """Make the Solver's step number call run action(solver) instead."""
    real_step = fastfc.solver.Solver._step
    calls = []

    def step(self, X, y):
        calls.append(1)
        return action(self) if len(calls) == call else real_step(self, X, y)
    monkeypatch.setattr(fastfc.solver.Solver, "_step", step)


def interrupt(solver):
    raise KeyboardInterrupt


def test_ctrl_c_in_the_first_epoch_keeps_the_existing_model(trained, tmp_path, monkeypatch, capsys):
    """Interrupted before any epoch ended, the untrained parameters never
    replace the model saved by an earlier run; the message says what was
    and was not saved."""
    model = copy_model(trained, tmp_path)
    before = model.read_bytes(), open(cli.spec_path(model), "rb").read()
    step_failing_at(monkeypatch, 3, interrupt)
    log = tmp_path / "history.csv"
    status = cli.main(["train", *TINY, "--quiet", "--save", str(model), "--log", str(log)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_INTERRUPTED and len(err.strip().splitlines()) == 1
    assert "interrupted after 0 epochs" in err and f"{model} not written: no epoch finished" in err
    assert f"saved {log}" in err and log.exists()
    assert (model.read_bytes(), open(cli.spec_path(model), "rb").read()) == before
    monkeypatch.undo()
    assert cli.main(["evaluate", "--model", str(model)]) == 0


def test_nan_loss_saves_the_best_epoch_and_exits_1(tmp_path, monkeypatch, capsys):
    """A loss turning NaN in epoch 2 (20 steps an epoch): the best parameters
    (epoch 1's) and the history are saved, then one line and exit status 1."""
    model, log = tmp_path / "model.npz", tmp_path / "history.csv"
    step_failing_at(monkeypatch, 25, lambda solver: float("nan"))
    status = cli.main(["train", *TINY, "--quiet", "--save", str(model), "--log", str(log)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR and len(err.strip().splitlines()) == 1, err
    assert "the loss is nan at epoch 2, iteration 5" in err and f"saved {model}" in err
    with open(log) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1]
    monkeypatch.undo()
    assert cli.main(["evaluate", "--model", str(model)]) == 0


def test_sigterm_saves_and_exits_130(tmp_path):
    """SIGTERM (what kill, systemd and batch schedulers send) is handled
    like Ctrl-C: training stops at the next batch and saves."""
    model = tmp_path / "model.npz"
    env = child_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "fastfc", "train", "--hidden", "16", "--epochs", "100000", "--threads", "1",
         "--save", str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stdout:  # wait until an epoch has ended
            if line.startswith("epoch "):
                break
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr and str(model) in stderr
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.npz"]
    assert cli.main(["evaluate", "--model", str(model)]) == 0
