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
