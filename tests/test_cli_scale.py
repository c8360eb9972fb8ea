"""`fastfc search --jobs/--workers/--resume/--prune` and `fastfc train` under
mpiexec, end to end in subprocesses on the embedded digits (tiny networks),
each with a hard timeout that kills its whole process group."""
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from testutil import child_env

SEARCH = ["search", "--trials", "4", "--epochs", "1", "--final-epochs", "1", "--hidden-choices", "16,32",
          "--seed", "3", "--quiet"]
needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="needs Dask distributed (pip install 'fastfc[dask]')")
# The mpich wheel's mpiexec sits next to the interpreter, which need not be on PATH.
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                        os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
                               reason="needs mpi4py and mpiexec (pip install 'fastfc[mpi]')")


def run(command, timeout=180):
    """command in its own session; on timeout its whole group is killed and the test fails."""
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(command[:6])} ... did not finish within {timeout} s")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def fastfc(*argv, timeout=180):
    return run([sys.executable, "-m", "fastfc", *map(str, argv)], timeout)


def trial_rows(path):
    """The CSV trial table without its wall times."""
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_search_records_are_the_same_on_one_and_two_processes_and_on_dask(tmp_path):
    tables = []
    executors = [["--jobs", "1"], ["--jobs", "2"]]
    if importlib.util.find_spec("distributed") is not None:
        executors.append(["--workers", "local:2"])
    for i, executor in enumerate(executors):
        result = fastfc(*SEARCH, *executor, "--log", tmp_path / f"{i}.csv")
        assert result.returncode == 0, result.stderr
        assert "best: trial" in result.stdout
        tables.append(trial_rows(tmp_path / f"{i}.csv"))
    assert len(tables[0]) == 4 and all(table == tables[0] for table in tables)


def test_resume_skips_finished_trials_and_refuses_another_search(tmp_path):
    log = tmp_path / "trials.jsonl"
    first = fastfc(*SEARCH, "--resume", log, "--log", tmp_path / "first.csv")
    assert first.returncode == 0, first.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1 + 4
    again = fastfc(*SEARCH, "--resume", log, "--jobs", "2", "--log", tmp_path / "again.csv")
    assert again.returncode == 0, again.stderr
    assert log.read_text().splitlines() == lines  # nothing rerun
    assert trial_rows(tmp_path / "again.csv") == trial_rows(tmp_path / "first.csv")
    other = fastfc(*[a if a != "3" else "4" for a in SEARCH], "--resume", log)
    assert other.returncode == 1 and "another search" in other.stderr and "Traceback" not in other.stderr


def test_prune_stops_the_weaker_trials(tmp_path):
    log = tmp_path / "trials.jsonl"
    result = fastfc(*SEARCH[:2], "9", *SEARCH[3:], "--epochs", "3", "--prune", "--resume", log)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()[1:]]
    assert sorted(r["epochs"] for r in records) == [1] * 9 + [3] * 3


@pytest.mark.parametrize("argv, code, message", [
    (["--jobs", "0"], 2, "--jobs"),
    (["--jobs", "2", "--workers", "local:2"], 1, "give one"),
    (["--workers", "local:0"], 1, "local:N needs N >= 1"),
])
def test_bad_executor_options_are_refused(argv, code, message):
    result = fastfc(*SEARCH, *argv)
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr


@needs_dask
def test_a_scheduler_that_does_not_answer_is_a_clear_error():
    result = fastfc(*SEARCH, "--workers", "tcp://127.0.0.1:9", timeout=120)
    assert result.returncode == 1 and "no Dask scheduler answered at tcp://127.0.0.1:9" in result.stderr


def test_workers_without_dask_say_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; from fastfc.cli import main; "
            f"sys.exit(main({[*SEARCH, '--workers', 'local:2']!r}))")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 1 and "pip install 'fastfc[dask]'" in result.stderr


def test_a_training_state_needs_mpiexec(tmp_path):
    result = fastfc("train", "--epochs", "1", "--quiet", "--state", tmp_path / "state.npz")
    assert result.returncode == 1 and "mpiexec -n N python -m mpi4py -m fastfc train" in result.stderr


@needs_mpi
def test_mpiexec_trains_the_digits_mlp_with_rank_0_reporting_and_saving(tmp_path):
    mpiexec = [MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "fastfc", "train",
               "--hidden", "32", "--epochs", "2", "--threads", "1", "--seed", "0"]
    result = run(mpiexec + ["--save", tmp_path / "model.npz", "--state", tmp_path / "state.npz"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1  # rank 0 only
    assert (tmp_path / "model.npz").exists() and (tmp_path / "state.npz").exists()
    # Resuming the finished run on another number of ranks is refused.
    one = run([a if a != "2" else "1" for a in mpiexec[:3]] + mpiexec[3:] + ["--resume", tmp_path / "state.npz"])
    assert one.returncode != 0 and "on 2 ranks" in one.stderr


@needs_mpi
def test_mpiexec_without_mpi4py_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; from fastfc.cli import main; "
            "sys.exit(main(['train', '--epochs', '1', '--quiet']))")
    result = run([MPIEXEC, "-n", "1", sys.executable, "-c", code])
    assert result.returncode == 1 and "pip install 'fastfc[mpi]'" in result.stderr


def test_ctrl_c_cancels_the_pending_trials_keeps_the_finished_ones_and_exits_130(tmp_path):
    import time
    log = tmp_path / "trials.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "fastfc", *SEARCH[:2], "500", *SEARCH[3:], "--jobs", "2",
                                "--resume", str(log)], env=child_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    finished = len(log.read_text().splitlines()) - 1
    assert 2 <= finished < 500 and f"interrupted after {finished} of 500 trials" in err
