"""The scripts in examples/ run as a user would run them, and learn."""
import os
import re
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_train_synthetic_loss_falls():
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_synthetic.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", result.stdout)]
    assert len(losses) == 10, result.stdout
    assert losses[-1] < 0.5 * losses[0]


def run_example(name, *args):
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    return result


def test_ai535_homework_loop_learns_on_the_digits():
    """The CIFAR horse/ship/truck script, on the embedded digits offline."""
    result = run_example("ai535_cifar_hst.py", "--digits", "--epochs", "6", "--step-size", "1e-3")
    epochs = re.findall(r"\[Epoch +\d+\] +Loss: +(\d+\.\d+) +Train Acc: +(\d+\.\d+)% +Val Acc: "
                        r"+(\d+\.\d+)%", result.stderr)
    assert len(epochs) == 6 and float(epochs[-1][0]) < float(epochs[0][0])
    best_val, test = map(float, re.search(r"best val accuracy (\d+\.\d+)%, test accuracy "
                                          r"(\d+\.\d+)%", result.stdout).groups())
    assert best_val > 85 and test > 85


def test_manual_mlp_search_chooses_on_validation_and_tests_once():
    result = run_example("manual_mlp_search.py", "--trials", "3", "--epochs", "4")
    lines = result.stdout.splitlines()
    ranked = [line.split() for line in lines if re.match(r"\s+\d+\s+\d+\s", line)]
    assert sorted(int(row[1]) for row in ranked) == [1, 2, 3]
    assert all(0.5 <= float(row[4]) <= 0.99 for row in ranked)
    assert sum("test accuracy" in line for line in lines) == 1
    best = re.search(r"best: trial (\d+) .*val accuracy (\d+\.\d+)%", lines[-1])
    assert int(best.group(1)) == int(ranked[0][1])
    assert float(best.group(2)) == float(ranked[0][-1].rstrip("%"))
