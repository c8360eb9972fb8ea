"""Fashion-MNIST: the loader's system default, and training on the real files
(Debian's dataset-fashion-mnist, which .ci/run installs) to the accuracies the
issue asks for: an MLP at least 87%, the CNN at least 89% on the test set.

The real-data tests skip only where the package is not installed, and fail
instead in CI (CI=true), which installs it."""
import os
import time

import numpy as np
import pytest

import fastfc
from fastfc import datasets
from fastfc.models import ConvNet, FullyConnectedNet

from test_datasets import make_mnist

MISSING = (f"Fashion-MNIST is not installed in {datasets.FASHION_MNIST_SYSTEM_DIR} "
           f"(apt-get install dataset-fashion-mnist)")
needs_files = pytest.mark.skipif(datasets.fashion_mnist_dir() is None and not os.environ.get("CI"),
                                 reason=MISSING)


def test_load_fashion_mnist_reads_a_given_directory_with_fashion_names(tmp_path):
    make_mnist(tmp_path, n_train=12, n_test=5)
    data = datasets.load_fashion_mnist(tmp_path, val_size=2, classes="sneaker,bag")
    labels = np.concatenate([data["y_train"], data["y_val"], data["y_test"]])
    assert set(labels.tolist()) <= {0, 1}


def test_load_fashion_mnist_without_the_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "absent"))
    assert datasets.fashion_mnist_dir() is None
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist()


def test_system_dir_with_a_missing_file_is_not_used(tmp_path, monkeypatch):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path))
    assert datasets.fashion_mnist_dir() is None
    make_mnist(tmp_path)
    assert datasets.fashion_mnist_dir() == str(tmp_path)


@pytest.fixture(scope="module")
def fashion():
    if datasets.fashion_mnist_dir() is None:
        pytest.fail(f"{MISSING}: .ci/run installs it")
    return datasets.normalize(datasets.load_fashion_mnist())


@needs_files
def test_real_files_have_the_published_sizes(fashion):
    assert fashion["X_train"].shape == (55000, 1, 28, 28)
    assert fashion["X_val"].shape == (5000, 1, 28, 28)
    assert fashion["X_test"].shape == (10000, 1, 28, 28)
    # The test set is balanced: 1,000 images of each class.
    assert np.bincount(fashion["y_test"]).tolist() == [1000] * 10


def train_and_test(model, data, num_epochs, learning_rate, lr_decay):
    solver = fastfc.Solver(model, data, update_rule="adam", optim_config={"learning_rate": learning_rate},
                           lr_decay=lr_decay, batch_size=128, num_epochs=num_epochs, seed=0,
                           verbose=False)
    started = time.perf_counter()
    solver.train()
    print(f"{type(model).__name__}: {time.perf_counter() - started:.1f} s, "
          f"best val {solver.best_val_acc:.4f}")
    return solver.check_accuracy(data["X_test"], data["y_test"])


@needs_files
def test_mlp_reaches_87_percent(fashion):
    # 784-256-256-10 with Adam and a decaying rate: about 89% in 8 epochs
    # (about 25 s on 2 cores).
    model = FullyConnectedNet([256, 256], input_dim=784, num_classes=10, weight_scale=None, seed=0)
    assert train_and_test(model, fashion, num_epochs=8, learning_rate=1e-3, lr_decay=0.75) >= 0.87


@needs_files
def test_cnn_reaches_89_percent(fashion):
    # conv3x3x32 - relu - pool - 128 - 10, the CLI's --model cnn: about 90.0%
    # in 7 epochs (about 2 minutes on 2 cores).
    model = ConvNet(input_dim=(1, 28, 28), num_filters=32, hidden_dim=128, seed=0)
    assert train_and_test(model, fashion, num_epochs=7, learning_rate=1e-3, lr_decay=0.6) >= 0.89
