"""Issue 17's command-line scenarios, each run as a user would: `python -m
fastfc` in a child interpreter (signals are real signals there, and a crash,
hang or traceback is the failure): predict's pixel scale, one-class runs,
interruptions in the first epoch and during the save, outputs that would
destroy inputs or cannot be written, a NaN loss, memory, endless searches."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastfc import cli
from test_datasets import make_cifar
from testutil import child_env

TINY = ["--hidden", "16", "--epochs", "2", "--lr", "1e-2", "--threads", "1", "--quiet"]
# A first epoch of several seconds (1,257 steps of batch 1 through two wide
# layers): long enough to be interrupted before it ends on any machine.
SLOW = ["--hidden", "1024,1024", "--batch-size", "1", "--epochs", "3", "--threads", "1"]


def fastfc(*argv, timeout=120, limit_memory=None):
    """`python -m fastfc argv...` in a child; the CompletedProcess.
    limit_memory: its address space in bytes (a small machine)."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))
    return subprocess.run([sys.executable, "-m", "fastfc", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), preexec_fn=limit if limit_memory else None)


def start_fastfc(*argv, cwd=None, background=False):
    """`python -m fastfc argv...` started in a child; the Popen (text pipes).
    background: with Ctrl-C ignored, as a shell starts `fastfc ... &`."""
    def ignore_ctrl_c():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return subprocess.Popen([sys.executable, "-m", "fastfc", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=cwd,
                            preexec_fn=ignore_ctrl_c if background else None)


def wait_for_line(process, prefix):
    """Read the child's stdout up to a line starting with prefix."""
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    pytest.fail(f"the child ended without a line starting {prefix!r}: {process.stderr.read()}")


def finish(process, timeout=60):
    """(stdout, stderr) of a child once it has exited, killed if it has not after timeout."""
    try:
        return process.communicate(timeout=timeout)
    finally:
        process.kill()


def one_line_error(result, message, status=cli.EXIT_ERROR):
    """The child failed with status and one stderr line holding message, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def contents(directory):
    """{name: bytes} of the files in directory."""
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A digits model saved by `fastfc train --save` in a child: its .npz path."""
    model = tmp_path_factory.mktemp("digits") / "model.npz"
    result = fastfc("train", *TINY, "--save", model)
    assert result.returncode == 0, result.stderr
    return model


def copy_model(source, directory, name="model.npz"):
    """A copy of a saved model's two files in directory; the new parameter file's path."""
    target = directory / name
    shutil.copy(source, target)
    shutil.copy(cli.spec_path(source), cli.spec_path(target))
    return target


# ---------------------------------------------------------------- 9: predict's pixel scale

def test_predict_takes_the_scale_of_uint8_images_from_the_model(tmp_path):
    """CIFAR bytes given to predict without --pixel-max are divided by 255,
    as the training images were: the predictions are those of the model on
    its own test split (they used to be scaled wrongly, exit 0). Images on
    another scale are refused, naming --pixel-max."""
    batches = make_cifar(tmp_path, per_batch=30, n_test=40)
    model = tmp_path / "model.npz"
    assert fastfc("train", "--dataset", "cifar10", "--data-dir", tmp_path, "--classes", "horse,ship,truck",
                  "--val-size", "10", *TINY, "--save", model).returncode == 0
    on_split = fastfc("predict", "--model", model, "--threads", "1")
    assert on_split.returncode == 0, on_split.stderr
    test = batches["test_batch"]
    chosen = np.isin(test["labels"], [7, 8, 9])  # horse, ship, truck, in the test batch's order
    images = np.asarray(test["data"])[chosen]
    assert images.dtype == np.uint8 and images.max() > 200
    np.save(tmp_path / "bytes.npy", images)
    np.save(tmp_path / "bytes-as-images.npy", images.reshape(-1, 3, 32, 32))
    for name, options in (("bytes.npy", ()), ("bytes-as-images.npy", ()), ("bytes.npy", ("--pixel-max", "255"))):
        result = fastfc("predict", "--model", model, "--input", tmp_path / name, *options)
        assert result.returncode == 0, result.stderr
        assert result.stdout == on_split.stdout, (name, options)

    # Each on a scale the model was not trained on: refused, one line, never answered.
    np.save(tmp_path / "floats of 0..255.npy", images.astype(np.float32))
    np.save(tmp_path / "16-bit.npy", images.astype(np.uint16) * 257)
    np.savetxt(tmp_path / "bytes.csv", images, fmt="%d", delimiter=",")
    for name in ("floats of 0..255.npy", "16-bit.npy", "bytes.csv"):
        result = fastfc("predict", "--model", model, "--input", tmp_path / name)
        one_line_error(result, "give --pixel-max")
        assert result.stdout == ""


def test_predict_never_answers_images_on_a_wrong_scale_silently(digits_model, tmp_path):
    """Bad --input files and --pixel-max values: each one line naming the
    problem (no traceback, no NumPy warning), or answered with a warning
    when the images fill a tiny part of the training range."""
    unit = np.random.default_rng(0).random((3, 64), dtype=np.float32)  # the digits' [0, 1] scale
    arrays = {"one flattened image.npy": unit[0], "no images.npy": np.zeros((0, 64), np.float32),
              "a scalar.npy": np.float32(1), "complex.npy": unit.astype(np.complex64),
              "huge integers.npy": np.full((2, 64), 2**62, np.int64), "overflowing floats.npy": np.full((2, 64), 1e300),
              "bytes.npy": np.rint(unit * 16).astype(np.uint8)}
    for name, array in arrays.items():
        np.save(tmp_path / name, array)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ragged.csv").write_text("1,2,3\n1,2\n")
    refused = {("no images.npy",): "holds no images", ("empty.csv",): "holds no images",
               ("a scalar.npy",): "the model expects (1, 8, 8)", ("complex.npy",): "expected numbers",
               ("huge integers.npy",): "give --pixel-max", ("overflowing floats.npy",): "infinite",
               ("ragged.csv",): "cannot read images", ("bytes.npy", "--pixel-max", "1e300"): "out of the range",
               ("bytes.npy", "--pixel-max", "1e-300"): "out of the range"}
    for (name, *options), message in refused.items():
        result = fastfc("predict", "--model", digits_model, "--input", tmp_path / name, *options)
        one_line_error(result, message)
        assert "Warning" not in result.stderr and result.stdout == "", (name, result.stderr)
    result = fastfc("predict", "--model", digits_model, "--input", tmp_path / "one flattened image.npy")
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 2, result
    result = fastfc("predict", "--model", digits_model, "--input", tmp_path / "bytes.npy", "--pixel-max", "65535")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4
    assert result.stderr.startswith("fastfc: warning:") and "is the scale right" in result.stderr


# ---------------------------------------------------------------- 10: one class

@pytest.mark.parametrize("argv", [
    ["train", "--classes", "horse", "--dataset", "cifar10", "--data-dir", "{d}"],
    ["train", "--classes", "3"],
    ["train", "--classes", "3,3"],
    ["search", "--classes", "7", "--trials", "1"],
])
def test_fewer_than_two_classes_are_refused(tmp_path, argv):
    """A one-class network answers that class whatever the image, and used
    to report 100.00% test accuracy."""
    make_cifar(tmp_path)
    result = fastfc(*[arg.format(d=tmp_path) for arg in argv], *TINY)
    message = one_line_error(result, "--classes" if "3,3" not in argv else "named twice")
    assert "accuracy" not in result.stdout, message


# ---------------------------------------------------------------- 11, 15: Ctrl-C and SIGTERM

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_epoch_keeps_the_existing_model(digits_model, tmp_path, signum):
    """Stopped before its first epoch ends, a run never writes its untrained
    parameters over the model an earlier run saved (which used to score
    chance afterwards); it says what it saved and what it did not."""
    model = copy_model(digits_model, tmp_path)
    log = tmp_path / "history.csv"
    before = contents(tmp_path)
    process = start_fastfc("train", *SLOW, "--save", model, "--log", log)
    wait_for_line(process, "(each epoch line")
    time.sleep(0.3)
    process.send_signal(signum)
    stdout, stderr = finish(process)
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "interrupted after 0 epochs" in stderr and f"{model} not written: no epoch finished" in stderr
    assert f"saved {log}" in stderr and "epoch 1/3" not in stdout
    after = contents(tmp_path)
    assert {name: after[name] for name in before} == before
    assert set(after) == set(before) | {"history.csv", "history-iterations.csv"}  # no temporary left
    assert fastfc("evaluate", "--model", model, "--threads", "1").returncode == 0


def test_sigterm_stops_a_background_run_and_saves(tmp_path):
    """A run started in the background (`fastfc train ... &`: Ctrl-C
    ignored), as batch jobs are, then stopped by SIGTERM after an epoch:
    saved and reported as Ctrl-C would be."""
    model, log = tmp_path / "model.npz", tmp_path / "history.csv"
    process = start_fastfc("train", "--hidden", "16", "--epochs", "100000", "--threads", "1", "--save", model,
                           "--log", log, background=True)
    wait_for_line(process, "epoch ")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = finish(process)
    assert process.returncode == cli.EXIT_INTERRUPTED and "Traceback" not in stderr, stderr
    assert re.fullmatch(r"fastfc: interrupted after \d+ epochs? \(best val acc .*\); saved .*\n", stderr), stderr
    assert sorted(os.listdir(tmp_path)) == ["history-iterations.csv", "history.csv", "model.json", "model.npz"]
    assert fastfc("evaluate", "--model", model, "--threads", "1").returncode == 0


# A child that runs the command line with {module}.{function} sending the
# process a signal before it does its work.
SIGNAL_DURING = """
import os, signal, sys
from fastfc import cli
import {module} as module
real = module.{function}
def signalled(*args):
    os.kill(os.getpid(), signal.{signal})
    return real(*args)
module.{function} = signalled
sys.exit(cli.main(sys.argv[1:]))
"""


def run_signalled(module, function, signame, *argv):
    """The command line argv run in a child, signalled from within function; the CompletedProcess."""
    script = SIGNAL_DURING.format(module=module, function=function, signal=signame)
    return subprocess.run([sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env=child_env())


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_save_is_held_until_both_files_are_written(digits_model, tmp_path, signame):
    """A second Ctrl-C, or the scheduler's SIGTERM, arriving while the model
    is saved must not stop the save halfway (new parameters beside an old
    description, a model-sized temporary file left behind): it is held,
    then the command ends as interrupted, saying what it saved."""
    model = copy_model(digits_model, tmp_path)  # ten classes; the new run has three
    result = run_signalled("fastfc.cli.train", "save_model", signame, "train", *TINY, "--classes", "0,1,2",
                           "--save", model)
    line = one_line_error(result, "interrupted", status=cli.EXIT_INTERRUPTED)
    assert f"saved {model}, {cli.spec_path(model)}" in line
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.npz"]  # no temporary left
    with open(cli.spec_path(model)) as f:
        assert json.load(f)["num_classes"] == 3
    evaluated = fastfc("evaluate", "--model", model, "--threads", "1")
    assert evaluated.returncode == 0, evaluated.stderr  # both files are the new run's


def test_ctrl_c_during_the_last_epochs_evaluation_stops_the_run(tmp_path):
    """The request to stop at the next batch came after the last batch: it
    was dropped (a search of many one-epoch trials went on, Ctrl-C lost)."""
    model = tmp_path / "model.npz"
    result = run_signalled("fastfc.solver", "Solver._end_epoch", "SIGINT", "train", *TINY, "--epochs", "1",
                           "--save", model)
    line = one_line_error(result, "interrupted after 1 epoch", status=cli.EXIT_INTERRUPTED)
    assert f"saved {model}" in line and "test accuracy" not in result.stdout


def test_an_output_directory_gone_at_save_time_is_rescued(tmp_path):
    """The run is interrupted after its directory was removed: the model and
    the history are saved under rescue names in the working directory."""
    out = tmp_path / "out"
    out.mkdir()
    process = start_fastfc("train", "--hidden", "16", "--epochs", "100000", "--threads", "1", "--save", out / "m.npz",
                           "--log", out / "h.csv", cwd=tmp_path)
    wait_for_line(process, "epoch ")
    shutil.rmtree(out)
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert process.returncode == cli.EXIT_INTERRUPTED and "Traceback" not in stderr, stderr
    rescued = re.findall(r"saved it as (\S+) instead", stderr)
    assert len(rescued) == 2 and all(os.path.dirname(path) == str(tmp_path) for path in rescued), stderr
    assert fastfc("evaluate", "--model", rescued[0], "--threads", "1").returncode == 0
    with open(rescued[1]) as f:
        assert int(next(csv.DictReader(f))["epoch"]) == 1


# ---------------------------------------------------------------- 12: outputs over inputs

OVERWRITES = {
    "--save names its own description": (["train", "--save", "{d}/model.json"], "would both write"),
    "--log is the model": (["train", "--save", "{d}/model.npz", "--log", "{d}/model.npz"], "would both write"),
    "--log is the description": (["train", "--save", "{d}/model.npz", "--log", "{d}/model.json"],
                                 "would both write"),
    "--log is the description, by another path": (["train", "--save", "{d}/model.npz", "--log",
                                                   "{d}/link/../model.json"], "would both write"),
    "search --log is the model": (["search", "--save", "{d}/model.npz", "--log", "{d}/./model.npz"],
                                  "would both write"),
    "--output is the model read": (["predict", "--model", "{d}/model.npz", "--output", "{d}/model.npz"],
                                   "is --model,"),
    "--output is the model, through a linked directory": (["predict", "--model", "{d}/model.npz", "--output",
                                                           "{d}/here/model.npz"], "is --model,"),
    "--output is the model's description": (["predict", "--model", "{d}/model.npz", "--output",
                                             "{d}/model.json"], "is --model's description"),
    "--output is the input": (["predict", "--model", "{d}/model.npz", "--input", "{d}/x.npy", "--output",
                               "{d}/x.npy"], "is --input"),
    "--output is a hard link to the input": (["predict", "--model", "{d}/model.npz", "--input", "{d}/x.npy",
                                              "--output", "{d}/hard.npy"], "is --input"),
}


@pytest.mark.parametrize("case", OVERWRITES)
def test_outputs_over_inputs_or_each_other_are_refused(digits_model, tmp_path, case):
    """Every file is left as it was (these used to be destroyed, exit 0)."""
    copy_model(digits_model, tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    os.link(tmp_path / "x.npy", tmp_path / "hard.npy")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "link")  # link/.. is tmp_path
    os.symlink(tmp_path, tmp_path / "here")
    before = contents(tmp_path)
    argv, message = OVERWRITES[case]
    one_line_error(fastfc(*[arg.format(d=tmp_path) for arg in argv], *(TINY if argv[0] != "predict" else [])),
                   message)
    assert contents(tmp_path) == before


# ---------------------------------------------------------------- 13: outputs checked before training

def _name_max(directory):
    return os.pathconf(directory, "PC_NAME_MAX")


@pytest.mark.parametrize("case", ["trailing slash", "description is a directory", "unwritable directory",
                                  "name of 236", "name of 245", "name of 255", "log of 250", "empty name",
                                  "empty log name"])
def test_unwritable_outputs_are_refused_before_training(tmp_path, case):
    """Each used to fail after the whole run; the check now takes well under
    a training run (no epoch line, no data loaded)."""
    (tmp_path / "model.json").mkdir()
    path, message = {
        "trailing slash": (f"{tmp_path}/models/", "ends with a separator"),
        "description is a directory": (tmp_path / "model.npz", "directory"),
        "unwritable directory": ("/proc/model.npz", "cannot create a file in /proc"),
        "log of 250": (tmp_path / ("h" * 246 + ".csv"), "too long"),
        "empty name": ("", "the file name is empty"),
        "empty log name": ("", "the file name is empty"),
    }.get(case, (None, "too long"))
    if path is None:  # a legal name whose temporary name is too long
        length = int(case.split()[-1])
        assert length <= _name_max(tmp_path)
        path = tmp_path / ("m" * (length - 4) + ".npz")
    option = "--log" if "log" in case else "--save"
    result = fastfc("train", *SLOW, option, path)
    one_line_error(result, message)
    assert "epoch" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["model.json"]


# ---------------------------------------------------------------- 14: a NaN loss

def test_a_diverging_run_saves_its_best_epoch_and_history(digits_model, tmp_path):
    """A learning rate multiplied by 1e30 after the first epoch: the loss
    overflows in the second. The first epoch's parameters and the history are
    saved, then one line and exit status 1 (they used to be lost)."""
    model, log = tmp_path / "model.npz", tmp_path / "history.csv"
    result = fastfc("train", *TINY, "--epochs", "3", "--lr-decay", "1e30", "--save", model, "--log", log)
    line = one_line_error(result, "at epoch 2")
    assert re.search(r"the loss is (nan|inf)", line) and f"saved {model}, {cli.spec_path(model)}, {log}" in line
    assert "test accuracy" not in result.stdout
    with open(log) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]
    evaluated = fastfc("evaluate", "--model", model, "--threads", "1")
    assert evaluated.returncode == 0 and float(re.search(r"accuracy (\S+)%", evaluated.stdout)[1]) > 50

    # Diverging in the first epoch: nothing trained to save, the earlier model kept.
    kept = copy_model(digits_model, tmp_path, "kept.npz")
    before = kept.read_bytes()
    result = fastfc("train", *TINY, "--lr", "1e30", "--save", kept)
    line = one_line_error(result, "at epoch 1")
    assert f"{kept} not written: no epoch finished" in line and kept.read_bytes() == before


# A child that runs the command line with the Solver's 25th step (epoch 2
# of 20-step epochs) failing as an allocation does when memory runs out.
MEMORY_RUNS_OUT = """
import sys
from fastfc import cli, solver
real, calls = solver.Solver._step, []
def step(self, X, y):
    calls.append(1)
    if len(calls) == 25:
        raise MemoryError("Unable to allocate 3.35 GiB for an array")
    return real(self, X, y)
solver.Solver._step = step
sys.exit(cli.main(sys.argv[1:]))
"""


def test_memory_running_out_during_training_saves_the_best_epoch(tmp_path):
    """As a NaN loss does: the run's best parameters and history are saved,
    then one line (it used to end with nothing saved)."""
    model, log = tmp_path / "model.npz", tmp_path / "history.csv"
    result = subprocess.run([sys.executable, "-c", MEMORY_RUNS_OUT, "train", *TINY, "--save", model, "--log", log],
                            capture_output=True, text=True, timeout=120, env=child_env())
    line = one_line_error(result, "fastfc: error: out of memory (Unable to allocate 3.35 GiB")
    assert f"saved {model}, {cli.spec_path(model)}, {log}" in line
    with open(log) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]
    assert fastfc("evaluate", "--model", model, "--threads", "1").returncode == 0


# A child that runs the command line with search's third trial running out of memory.
TRIAL_RUNS_OUT = """
import sys
from fastfc import cli
import fastfc.cli.search as search
real, calls = search.run_trial, []
def run_trial(*args):
    calls.append(1)
    if len(calls) == 3:
        raise MemoryError("Unable to allocate 3.35 GiB for an array")
    return real(*args)
search.run_trial = run_trial
sys.exit(cli.main(sys.argv[1:]))
"""


def test_memory_running_out_in_a_trial_keeps_the_finished_trials(tmp_path):
    log = tmp_path / "trials.csv"
    result = subprocess.run([sys.executable, "-c", TRIAL_RUNS_OUT, "search", "--trials", "5", "--epochs", "1",
                             "--hidden-choices", "8", "--threads", "1", "--quiet", "--log", log],
                            capture_output=True, text=True, timeout=120, env=child_env())
    line = one_line_error(result, "out of memory (Unable to allocate 3.35 GiB for an array) in trial 3 of 5")
    assert f"saved {log}" in line
    with open(log) as f:
        assert sorted(row["number"] for row in csv.DictReader(f)) == ["1", "2"]


# ---------------------------------------------------------------- 22: one-line errors, bounded work

def test_a_network_too_big_for_the_machine_is_one_line(tmp_path):
    """--hidden 30000,30000 (a 3.6 GB model) in a 2 GiB address space: one
    line, before any epoch, no MemoryError traceback; and a huge batch size
    is taken as the whole training set."""
    result = fastfc("train", "--hidden", "30000,30000", "--epochs", "1", "--threads", "1", "--save",
                    tmp_path / "m.npz", limit_memory=2 << 30)
    line = one_line_error(result, "memory")
    assert "epoch 1" not in result.stdout and not os.listdir(tmp_path), line
    result = fastfc("train", *TINY, "--batch-size", "1000000000000")
    assert result.returncode == 0 and "test accuracy" in result.stdout, result.stderr


@pytest.mark.parametrize("rule", sorted(cli.model_files.OPTIMIZER_STATE_COPIES))
def test_the_memory_check_counts_each_optimizers_state(rule):
    """check_model_size counts, per parameter, the arrays each update rule's
    optimizer really keeps after a step (every rule of UPDATE_RULES listed)."""
    from fastfc import layers, optim
    from fastfc.models import Sequential
    assert sorted(cli.model_files.OPTIMIZER_STATE_COPIES) == sorted(optim.UPDATE_RULES)
    net = Sequential(layers.Linear(3, 2), loss=layers.SoftmaxCrossEntropy())
    cls, defaults = optim.UPDATE_RULES[rule]
    optimizer = cls(net.parameters(), **defaults)
    net.loss(np.ones((2, 3), np.float32), np.array([0, 1]))
    optimizer.step()
    kept = {len([v for v in state.values() if isinstance(v, np.ndarray)])
            for state in optimizer.state_dict()["state"].values()} or {0}
    assert kept == {cli.model_files.OPTIMIZER_STATE_COPIES[rule]}


def test_adams_state_is_counted_before_training(tmp_path):
    """A network whose parameters, gradients and best copy fit the address
    space but not Adam's two more arrays: refused before the first epoch
    with one line naming the memory (the plain MemoryError would come only
    once Adam allocates its state, after the model is built)."""
    limit = 1 << 30  # about 0.25 GiB of it mapped by the imports: 0.8 GiB left
    # 64*12000 + 12000*4000 + 4000*10 = 48.8 M float32 parameters: 0.55 GiB as 3 copies, 0.91 as 5
    result = fastfc("train", "--hidden", "12000,4000", "--epochs", "1", "--threads", "1",
                    "--optimizer", "adam", limit_memory=limit + 50 * 2**20)
    line = one_line_error(result, "of memory")
    assert "48,8" in line and "epoch 1" not in result.stdout, line


def test_an_npz_given_for_an_npy_is_one_line(digits_model, tmp_path):
    for name in ("images.npz", "images.npy"):
        with open(tmp_path / name, "wb") as f:
            np.savez(f, images=np.zeros((2, 64), np.float32))
        one_line_error(fastfc("predict", "--model", digits_model, "--input", tmp_path / name), ".npz archive")


def test_a_search_of_a_billion_trials_starts_at_once_and_stops_cleanly(tmp_path):
    """The trials are drawn one at a time: the first is reported within
    seconds (it used to sit silent drawing them all), and Ctrl-C ranks and
    logs the finished ones."""
    log = tmp_path / "trials.csv"
    started = time.monotonic()
    process = start_fastfc("search", "--trials", "1000000000", "--epochs", "1", "--hidden-choices", "8",
                           "--threads", "1", "--log", log)
    wait_for_line(process, "trial ")
    assert time.monotonic() - started < 30
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    finished = int(re.search(r"interrupted after (\d+) of 1000000000 trials", stderr)[1])
    with open(log) as f:
        assert len(list(csv.DictReader(f))) == finished >= 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predictions_replace_a_file_whole_and_stream_into_a_fifo(digits_model, tmp_path):
    """--output over an existing file replaces it whole, keeping its mode
    (a write failing midway, here on a full disk, leaves the old table,
    never half a new one); a
    FIFO (a reader waiting) is written in place."""
    table = tmp_path / "predictions.csv"
    table.write_text("an earlier table\n")
    os.chmod(table, 0o600)
    result = fastfc("predict", "--model", digits_model, "--output", table)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(table.open(newline="")))
    assert rows[0] == ["index", "label", "class", "probability"] and len(rows) > 100
    assert os.stat(table).st_mode & 0o777 == 0o600
    before = table.read_bytes()

    def small_disk():  # a write past 4 KB fails (EFBIG): a full disk midway through the table
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    result = subprocess.run([sys.executable, "-m", "fastfc", "predict", "--model", str(digits_model),
                             "--output", str(table)], capture_output=True, text=True, timeout=120,
                            env=child_env(), preexec_fn=small_disk)
    assert result.returncode != 0 and len(before) > 4096
    assert table.read_bytes() == before  # the previous table, whole
    assert not [name for name in os.listdir(tmp_path) if name != "predictions.csv"]
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    process = start_fastfc("predict", "--model", digits_model, "--output", fifo)
    with open(fifo, newline="") as reader:
        streamed = list(csv.reader(reader))
    assert process.wait(timeout=60) == 0
    assert streamed == rows
