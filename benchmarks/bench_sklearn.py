"""fastfc.sklearn.MLPClassifier against scikit-learn's MLPClassifier: fit
time and test accuracy at equal hyperparameters (Adam, batch 200, a fixed
number of epochs: tol=0 and n_iter_no_change=inf make both run every epoch),
on the embedded digits and, when its IDX files are there, Fashion-MNIST.
scikit-learn gets float64 data, as its users' arrays usually are, and then
trains in float64; fastfc trains in float32, its default (the standalone
run also times scikit-learn on float32 data). Both use the same thread
count: fastfc's own threads, and NumPy's BLAS (scikit-learn's GEMMs) limited
through threadpoolctl.

As a pytest-benchmark suite (digits; Fashion-MNIST is marked slow):

    python -m pytest benchmarks/bench_sklearn.py --benchmark-enable -m "slow or not slow"

With --benchmark-disable (CI's smoke run) each fit runs 3 epochs once and
only its accuracy is checked (a loose bound: 3 epochs are not training). As
a script, the contenders interleaved, fits in alternating order, medians
and ratios printed:

    OPENBLAS_THREAD_TIMEOUT=4 python benchmarks/bench_sklearn.py --dataset digits --repeats 5
    python benchmarks/bench_sklearn.py --dataset fashion --hidden 256,256 --epochs 10 --repeats 3
"""
import argparse
import gc
import os
import statistics
import sys
import time
import warnings

import numpy as np
import pytest

import fastfc
from fastfc import datasets
from fastfc.bench import numpy_blas_threads

FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
BATCH = 200
EPOCHS = {"digits": 30, "fashion": 10}
SMOKE_EPOCHS = 3


def load(name):
    """(X_train, y_train, X_test, y_test), images flattened to float64 rows
    in [0, 1]; the digits' validation split is folded into training."""
    if name == "digits":
        data = datasets.load_digits(val_size=0)
    elif name == "fashion":
        if not os.path.isdir(FASHION_DIR):
            raise FileNotFoundError(f"Fashion-MNIST is not in {FASHION_DIR} "
                                    "(apt-get install dataset-fashion-mnist)")
        data = datasets.load_mnist(FASHION_DIR, val_size=0,
                                   names=datasets.FASHION_MNIST_CLASSES)
    else:
        raise ValueError(f"unknown dataset {name!r} (digits or fashion)")

    def rows(X):
        return X.reshape(len(X), -1).astype(np.float64)
    return rows(data["X_train"]), data["y_train"], rows(data["X_test"]), data["y_test"]


def estimator(side, hidden, epochs, seed=0):
    """The contender, configured alike: Adam, batch 200, every epoch run."""
    settings = dict(hidden_layer_sizes=hidden, solver="adam", batch_size=BATCH, max_iter=epochs,
                    tol=0.0, n_iter_no_change=np.inf, random_state=seed)
    if side == "fastfc":
        from fastfc.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier(**settings)


def timed_fit(side, hidden, epochs, X, y, X_test, y_test, seed=0):
    """(wall seconds of the fit, CPU seconds of the process during it, test
    accuracy, epochs run)."""
    model = estimator(side, hidden, epochs, seed)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ConvergenceWarning of a fixed epoch count
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(X, y)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu, model.score(X_test, y_test), model.n_iter_


# ---- pytest-benchmark ----------------------------------------------------------------

CASES = {
    "digits (100,)": ("digits", (100,)),
    "digits (256, 256)": ("digits", (256, 256)),
    "fashion (256, 256)": ("fashion", (256, 256)),
}


@pytest.mark.parametrize("case", [pytest.param(name, marks=[pytest.mark.slow] if "fashion" in name
                                               else []) for name in CASES])
@pytest.mark.parametrize("side", ["fastfc", "sklearn"])
def test_fit(benchmark, case, side):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    name, hidden = CASES[case]
    try:
        X, y, X_test, y_test = load(name)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    epochs = SMOKE_EPOCHS if benchmark.disabled else EPOCHS[name]
    benchmark.group = f"sklearn MLPClassifier fit {case} adam b{BATCH} {epochs} epochs"
    model = estimator(side, hidden, epochs)
    with numpy_blas_threads(fastfc.get_num_threads()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark.pedantic(model.fit, args=(X, y), rounds=1 if benchmark.disabled else 3,
                           iterations=1)
    assert model.n_iter_ == epochs
    benchmark.extra_info["test_accuracy"] = model.score(X_test, y_test)
    if not benchmark.disabled:  # the smoke run's few epochs only check that fit runs
        assert model.score(X_test, y_test) > (0.9 if name == "digits" else 0.8)


# ---- the standalone comparison -------------------------------------------------------

def compare(name, hidden, epochs, repeats, threads, sides=("fastfc", "sklearn", "sklearn-f32")):
    """Fits every side `repeats` times, interleaved (the first side rotating
    each round, random_state = the round's number for every side, so that
    the accuracies compare over several initialisations); prints each fit
    and the medians of wall time and of CPU time (on one thread, CPU time
    is the least disturbed by other processes on a shared machine). Returns
    side -> (median wall seconds, median CPU seconds, median accuracy)."""
    X, y, X_test, y_test = load(name)
    inputs = {"fastfc": (X, X_test), "sklearn": (X, X_test),
              "sklearn-f32": (X.astype(np.float32), X_test.astype(np.float32))}
    print(f"{name}: {len(X)} train / {len(X_test)} test samples, hidden {hidden}, adam, "
          f"batch {BATCH}, {epochs} epochs, {threads} threads, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    runs = {side: [] for side in sides}
    fastfc.set_num_threads(threads)
    with numpy_blas_threads(threads):
        for round_ in range(repeats):
            order = sides[round_ % len(sides):] + sides[:round_ % len(sides)]
            for side in order:
                train, test = inputs[side]
                seconds, cpu, accuracy, n_iter = timed_fit(side.removesuffix("-f32"), hidden,
                                                           epochs, train, y, test, y_test, round_)
                assert n_iter == epochs, (side, n_iter)
                runs[side].append((seconds, cpu, accuracy))
                print(f"  round {round_ + 1} {side:12s} {seconds:8.3f} s  cpu {cpu:8.3f} s  "
                      f"accuracy {accuracy:.4f}", flush=True)
    summary = {side: tuple(statistics.median(run[i] for run in r) for i in range(3))
               for side, r in runs.items()}
    fastfc_seconds, fastfc_cpu, _ = summary["fastfc"]
    for side, (seconds, cpu, accuracy) in summary.items():
        ratios = sorted(s / f for (s, _, _), (f, _, _) in zip(runs[side], runs["fastfc"]))
        print(f"  median {side:12s} {seconds:8.3f} s  cpu {cpu:8.3f} s  accuracy {accuracy:.4f}  "
              f"{seconds / fastfc_seconds:5.2f}x fastfc's time (per-round "
              f"{ratios[0]:.2f}-{ratios[-1]:.2f}), {cpu / fastfc_cpu:5.2f}x its CPU time")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("digits", "fashion"), default="digits")
    parser.add_argument("--hidden", default=None,
                        help="hidden layer sizes, comma-separated (default: 100, then 256,256)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per fit (default: {EPOCHS})")
    parser.add_argument("--repeats", type=int, default=3, help="fits per side (default 3)")
    parser.add_argument("--threads", type=int, default=fastfc.get_num_threads(),
                        help="threads for both sides (default: fastfc's)")
    parser.add_argument("--no-f32", action="store_true",
                        help="skip scikit-learn on float32 data")
    args = parser.parse_args(argv)
    hiddens = ([tuple(int(h) for h in args.hidden.split(","))] if args.hidden
               else [(100,), (256, 256)])
    sides = ("fastfc", "sklearn") if args.no_f32 else ("fastfc", "sklearn", "sklearn-f32")
    for hidden in hiddens:
        compare(args.dataset, hidden, args.epochs or EPOCHS[args.dataset], args.repeats,
                args.threads, sides)


if __name__ == "__main__":
    sys.exit(main())
