"""Trial functions for tests/test_search.py, in a module of their own so that
worker processes (a process pool, Dask workers) can import them by name."""
import os
import time


def curve_trial(data, spec, seed):
    """A trial without training: validation accuracy rising with the epochs,
    highest near lr 1e-2, so rankings are known in advance. data['sleep']
    seconds per epoch make it take time; data['dir'] set: the first trial to
    start kills its own process (SIGKILL), once."""
    if data.get("dir"):
        try:
            os.close(os.open(os.path.join(data["dir"], "killed"), os.O_CREAT | os.O_EXCL))
            os.kill(os.getpid(), 9)
        except FileExistsError:
            pass
    epochs = spec.get("epochs", 3)
    time.sleep(data.get("sleep", 0.0) * epochs)
    quality = 1.0 / (1.0 + abs(__import__("math").log10(spec["lr"]) + 2.0))
    history = [quality * (1 - 0.5 ** (e + 1)) for e in range(epochs)]
    return {"val_acc": max(history), "val_acc_history": history, "seed_seen": seed}


def diverging_trial(data, spec, seed):
    if spec["lr"] > 0.03:
        raise FloatingPointError("the loss is nan")
    return {"val_acc": spec["lr"]}
