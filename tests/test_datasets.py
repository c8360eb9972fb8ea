"""Loaders on tiny files written in exactly the real formats (IDX, gzipped and
raw; CIFAR-10 batches pickled the way Python 2 wrote them), their error paths,
and the preprocessing helpers."""
import functools
import gzip
import os
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from fastfc import datasets

from testutil import child_env

SPLIT_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


# ---------------------------------------------------------------- writers of the real formats

def idx_bytes(array, magic=None):
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    return header + b"".join(struct.pack(">i", n) for n in array.shape) + array.tobytes()


def write_file(path, content, compress):
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)


def make_mnist(directory, n_train=12, n_test=5, compress=False, seed=0):
    """The four MNIST IDX files (28x28 images) in directory; returns the raw arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_file(directory / name, idx_bytes(array), compress)
    return arrays


class Py2Pickler(pickle._Pickler):
    """Pickles str and bytes as Python 2 str opcodes, as in the distributed
    CIFAR-10 batches (which were written by Python 2's cPickle, protocol 2)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def write_py2_pickle(path, obj):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def cifar_batch(labels, rng):
    """A batch dict with the real keys and types: data (N, 3072) uint8, labels a list of ints."""
    return {
        "batch_label": "training batch 1 of 5",
        "labels": [int(v) for v in labels],
        "data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
    }


def make_cifar(directory, per_batch=6, n_test=10, seed=0):
    """data_batch_1..5 and test_batch in directory; returns {name: batch dict}."""
    rng = np.random.default_rng(seed)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = cifar_batch(rng.integers(0, 10, per_batch), rng)
    batches["test_batch"] = cifar_batch(np.arange(n_test) % 10, rng)
    for name, batch in batches.items():
        write_py2_pickle(directory / name, batch)
    return batches


# ---------------------------------------------------------------- digits

def test_load_digits_format_and_sizes():
    data = datasets.load_digits(val_size=100, test_size=300)
    assert set(data) == set(SPLIT_KEYS)
    assert data["X_train"].shape == (1797 - 400, 1, 8, 8)
    assert data["X_val"].shape == (100, 1, 8, 8)
    assert data["X_test"].shape == (300, 1, 8, 8)
    for split in ("train", "val", "test"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert X.min() >= 0 and X.max() <= 1
        assert set(np.unique(y)) == set(range(10))
    assert data["X_train"].max() == 1.0  # 16 is the brightest pixel value


def test_load_digits_seed_moves_validation_but_not_test():
    a = datasets.load_digits(seed=0)
    b = datasets.load_digits(seed=0)
    c = datasets.load_digits(seed=1)
    for key in SPLIT_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["X_test"], c["X_test"])
    assert not np.array_equal(a["y_val"], c["y_val"])


def test_load_digits_splits_are_disjoint_and_complete():
    data = datasets.load_digits()
    rows = np.concatenate([data[f"X_{s}"].reshape(-1, 64) for s in ("train", "val", "test")])
    assert len(rows) == 1797
    # Every image of the file appears once (digits has a few exact duplicates,
    # so compare the multiset of rows with the file's).
    pixels, _ = datasets._read_digits()
    np.testing.assert_array_equal(np.sort((rows * 16).round().astype(np.int64), axis=0),
                                  np.sort(pixels, axis=0))


@pytest.mark.parametrize("classes", [(3, 5), ("3", "5"), "3, 5"])
def test_load_digits_classes(classes):
    full = datasets.load_digits()
    data = datasets.load_digits(classes=classes, val_size=50)
    # The test set is the full test set's 3s and 5s, relabelled 0 and 1.
    keep = np.isin(full["y_test"], [3, 5])
    np.testing.assert_array_equal(data["X_test"], full["X_test"][keep])
    np.testing.assert_array_equal(data["y_test"], np.where(full["y_test"][keep] == 3, 0, 1))
    # val_size counts images of the kept classes: the rest of them are for training.
    n_kept = np.isin(np.concatenate([full["y_train"], full["y_val"]]), [3, 5]).sum()
    assert len(data["y_val"]) == 50 and len(data["y_train"]) == n_kept - 50
    assert set(np.unique(data["y_train"])) == set(np.unique(data["y_val"])) == {0, 1}
    reversed_order = datasets.load_digits(classes=(5, 3), val_size=50)
    np.testing.assert_array_equal(reversed_order["y_test"], 1 - data["y_test"])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(val_size=1797 - 360), ValueError, "val_size"),
    (dict(val_size=-1), ValueError, "val_size"),
    (dict(val_size=1.5), TypeError, "val_size"),
    (dict(test_size=1797), ValueError, "test_size"),
    (dict(test_size="10"), TypeError, "test_size"),
    (dict(seed="zero"), TypeError, "seed"),
])
def test_load_digits_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.load_digits(**kwargs)


# ---------------------------------------------------------------- MNIST

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_load_mnist(tmp_path, compress):
    arrays = make_mnist(tmp_path, compress=compress)
    data = datasets.load_mnist(tmp_path, val_size=4, seed=3)
    assert data["X_train"].shape == (8, 1, 28, 28) and data["X_val"].shape == (4, 1, 28, 28)
    assert data["X_test"].dtype == np.float32 and data["y_test"].dtype == np.int64
    np.testing.assert_array_equal(data["X_test"][:, 0] * 255, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data["y_test"], arrays["t10k-labels-idx1-ubyte"])
    # Train and validation together are the training file, each image with its label.
    images = arrays["train-images-idx3-ubyte"].reshape(12, -1).astype(np.float32) / 255
    labels = arrays["train-labels-idx1-ubyte"]
    for split in ("train", "val"):
        for x, y in zip(data[f"X_{split}"], data[f"y_{split}"]):
            match = np.flatnonzero((images == x.reshape(-1)).all(axis=1))
            assert len(match) == 1 and labels[match[0]] == y
    again = datasets.load_mnist(str(tmp_path), val_size=4, seed=3)
    np.testing.assert_array_equal(again["y_val"], data["y_val"])


def test_load_mnist_dotted_names(tmp_path):
    """Some mirrors name the files train-images.idx3-ubyte."""
    arrays = make_mnist(tmp_path)
    for name in arrays:
        os.rename(tmp_path / name, tmp_path / name.replace("-idx", ".idx"))
    assert len(datasets.load_mnist(tmp_path, val_size=2)["y_train"]) == 10


def test_load_mnist_classes_by_fashion_name(tmp_path):
    arrays = make_mnist(tmp_path, n_train=60, n_test=30)
    data = datasets.load_mnist(tmp_path, val_size=3, classes="bag,sneaker",
                               names=datasets.FASHION_MNIST_CLASSES)
    labels = arrays["t10k-labels-idx1-ubyte"]
    keep = np.isin(labels, [8, 7])
    assert keep.any()
    np.testing.assert_array_equal(data["y_test"], np.where(labels[keep] == 8, 0, 1))
    np.testing.assert_array_equal(data["X_test"][:, 0] * 255, arrays["t10k-images-idx3-ubyte"][keep])
    n_kept = np.isin(arrays["train-labels-idx1-ubyte"], [7, 8]).sum()
    assert len(data["y_val"]) == 3 and len(data["y_train"]) == n_kept - 3
    with pytest.raises(ValueError, match="unknown class 'bag'"):  # digit names unless told otherwise
        datasets.load_mnist(tmp_path, val_size=3, classes="bag")


@pytest.mark.parametrize("load", [datasets.load_mnist, datasets.load_cifar10])
def test_loaders_want_a_directory(tmp_path, load):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file.*train-images-idx3-ubyte"):
        load(tmp_path / "train-images-idx3-ubyte")


def test_load_mnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory not found"):
        datasets.load_mnist(tmp_path / "nowhere")
    make_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path, val_size=2)


@pytest.mark.parametrize("name, content, match", [
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((12, 28, 28)), magic=b"\x00\x00\x08\x01"), "magic number"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((12, 28, 28)), magic=b"\x1f\x00\x08\x03"), "magic number"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(12), magic=b"\x00\x00\x0d\x01"), "magic number"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((12, 28, 28)))[:-1], "truncated"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((12, 28, 28)))[:10], "truncated"),
    ("train-images-idx3-ubyte", b"", "magic number"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(12)) + b"\x00", "trailing bytes"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(11)), "11 labels for the 12 images"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.full(5, 10)), "outside 0..9"),
])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_load_mnist_bad_files(tmp_path, name, content, match, compress):
    make_mnist(tmp_path, compress=compress)
    write_file(tmp_path / name, content, compress)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_mnist(tmp_path, val_size=2)
    assert name in str(info.value)


def test_load_mnist_damaged_gzip(tmp_path):
    make_mnist(tmp_path, compress=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])  # cut inside the deflate stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*gzip"):
        datasets.load_mnist(tmp_path, val_size=2)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*gzip"):
        datasets.load_mnist(tmp_path, val_size=2)


def test_gzip_stream_longer_than_its_header_is_not_decompressed_past_it(tmp_path):
    """A few hundred KiB of gzip whose header declares 12 images but whose
    stream holds 64 MiB: the header is checked first and reading stops one
    byte past the declared data (before, the whole stream was decompressed,
    then found too long)."""
    make_mnist(tmp_path, compress=True)
    content = idx_bytes(np.zeros((12, 28, 28))) + bytes(64 << 20)
    write_file(tmp_path / "train-images-idx3-ubyte", content, compress=True)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: trailing bytes"):
            datasets.load_mnist(tmp_path, val_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB held while reading"


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_header_declaring_more_than_the_file_holds_is_refused_before_allocating(tmp_path,
                                                                               compress):
    """A raw file must hold exactly what its header declares, and a gzip file
    cannot expand past 1032 times its size: 2**31 images in a small file are
    refused from the header alone."""
    make_mnist(tmp_path, compress=compress)
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**31, 28, 28)
    write_file(tmp_path / "train-images-idx3-ubyte", header + bytes(100), compress)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
            datasets.load_mnist(tmp_path, val_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_test_images_of_another_size_are_refused_before_any_data_is_read(tmp_path):
    """Before, load_mnist returned 28x28 training and 32x32 test images, and
    training found out only at the test set."""
    make_mnist(tmp_path, compress=True)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 32, 32))), True)
    # a damaged training stream: only its header is read before the refusal
    good = gzip.compress(idx_bytes(np.zeros((12, 28, 28))))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[:40])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: images of 32x32, but the "
                                         "training images .* are 28x28"):
        datasets.load_mnist(tmp_path, val_size=2)


def load_in_child(loader, directory, timeout=60):
    """fastfc.datasets.<loader>(directory) in a child interpreter, killed
    after timeout seconds: (exit status, stderr), or None when it hung."""
    code = (f"import fastfc.datasets as d; d.{loader}({str(directory)!r})")
    env = child_env()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    return proc.returncode, proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("loader, name", [("load_mnist", "train-labels-idx1-ubyte"),
                                          ("load_cifar10", "data_batch_3")])
def test_a_fifo_in_place_of_a_data_file_is_refused_at_once(tmp_path, loader, name):
    """Before, opening the FIFO blocked forever (no writer ever comes)."""
    (make_mnist if loader == "load_mnist" else make_cifar)(tmp_path)
    os.remove(tmp_path / name)
    os.mkfifo(tmp_path / name)
    outcome = load_in_child(loader, tmp_path)
    assert outcome is not None, "the loader blocked on the FIFO"
    status, stderr = outcome
    assert status != 0 and re.search(f"ValueError: .*{name} is not a regular file", stderr), stderr


def test_load_mnist_val_size_too_large(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(ValueError, match="val_size"):
        datasets.load_mnist(tmp_path, val_size=12)


# ---------------------------------------------------------------- CIFAR-10

def test_load_cifar10(tmp_path):
    batches = make_cifar(tmp_path)
    data = datasets.load_cifar10(tmp_path, val_size=5, seed=1)
    assert data["X_train"].shape == (25, 3, 32, 32) and data["X_val"].shape == (5, 3, 32, 32)
    assert data["X_train"].dtype == np.float32 and data["y_train"].dtype == np.int64
    test = batches["test_batch"]
    # Rows are 1024 red, then green, then blue values of a 32x32 image.
    np.testing.assert_array_equal(data["X_test"] * 255, test["data"].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(data["y_test"], test["labels"])
    all_labels = np.concatenate([batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(np.sort(np.concatenate([data["y_train"], data["y_val"]])),
                                  np.sort(all_labels))


def test_load_cifar10_nested_directory(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    make_cifar(tmp_path / "cifar-10-batches-py")
    assert len(datasets.load_cifar10(tmp_path, val_size=1)["y_test"]) == 10


@pytest.mark.parametrize("classes", [("horse", "ship", "truck"), (7, 8, 9), "Horse, ship,9", ["7", "8", "9"]])
def test_load_cifar10_classes(tmp_path, classes):
    batches = make_cifar(tmp_path, per_batch=20, n_test=30)
    data = datasets.load_cifar10(tmp_path, classes=classes, val_size=2)
    test = batches["test_batch"]
    keep = np.isin(test["labels"], [7, 8, 9])
    np.testing.assert_array_equal(data["y_test"], np.asarray(test["labels"])[keep] - 7)
    np.testing.assert_array_equal(data["X_test"] * 255, test["data"][keep].reshape(-1, 3, 32, 32))
    n_kept = sum(np.isin(batches[f"data_batch_{i}"]["labels"], [7, 8, 9]).sum() for i in range(1, 6))
    assert len(data["y_train"]) + len(data["y_val"]) == n_kept
    assert set(np.unique(data["y_train"])) <= {0, 1, 2}


def test_load_cifar10_classes_relabelled_in_given_order(tmp_path):
    batches = make_cifar(tmp_path, n_test=30)
    data = datasets.load_cifar10(tmp_path, classes=("truck", "cat"), val_size=1)
    labels = np.asarray(batches["test_batch"]["labels"])
    np.testing.assert_array_equal(data["y_test"], np.where(labels[np.isin(labels, [9, 3])] == 9, 0, 1))


@pytest.mark.parametrize("classes, match", [
    (("horse", "unicorn"), "unknown class 'unicorn'"),
    ((7, 10), "index 10"),
    (("horse", 7), "twice"),
    ((), "at least one"),
    (3, "classes must be a sequence"),
])
def test_load_cifar10_bad_classes(tmp_path, classes, match):
    make_cifar(tmp_path)
    with pytest.raises((ValueError, TypeError), match=match):
        datasets.load_cifar10(tmp_path, classes=classes)


class Hostile:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_load_cifar10_refuses_arbitrary_objects(tmp_path, monkeypatch):
    make_cifar(tmp_path)
    monkeypatch.chdir(tmp_path)
    write_py2_pickle(tmp_path / "data_batch_3", {"data": Hostile(), "labels": []})
    with pytest.raises(ValueError, match="data_batch_3.*refusing to unpickle"):
        datasets.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("batch, match", [
    ([1, 2, 3], "not a dict"),
    ({"labels": [1]}, "no data entry"),
    ({"data": np.zeros((1, 3072), np.uint8)}, "no labels entry"),
    ({"data": np.zeros((1, 3072), np.float32), "labels": [1]}, "uint8"),
    ({"data": np.zeros((1, 1024), np.uint8), "labels": [1]}, "3072"),
    ({"data": b"\x00" * 3072, "labels": [1]}, "'data' must be"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "1 labels for 2 images"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": ["cat"]}, "'labels' must be"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "outside 0..9"),
])
def test_load_cifar10_bad_batch(tmp_path, batch, match):
    make_cifar(tmp_path)
    write_py2_pickle(tmp_path / "data_batch_2", batch)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_cifar10(tmp_path)
    assert "data_batch_2" in str(info.value)


def test_load_cifar10_truncated_and_missing(tmp_path):
    make_cifar(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch.*not a CIFAR-10 batch"):
        datasets.load_cifar10(tmp_path)
    os.remove(tmp_path / "data_batch_5")
    with pytest.raises(FileNotFoundError, match="data_batch_5"):
        datasets.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 directory"):
        datasets.load_cifar10(tmp_path / "missing")


class Declares:
    """Pickles as numpy's own array rebuild, called with the given
    arguments and no array state: an uninitialized array of any shape."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


RECONSTRUCT = np.empty(0).__reduce__()[0]


@pytest.mark.parametrize("data, labels", [
    # _reconstruct straight to the declared shape, as a pickle may call it
    (Declares(RECONSTRUCT, np.ndarray, (200000, 3072), b"B"),
     Declares(RECONSTRUCT, np.ndarray, (200000,), b"B")),
    # numpy.ndarray itself called with a shape
    (Declares(np.ndarray, (200000, 3072), "B"), Declares(np.ndarray, (200000,), "B")),
], ids=["reconstruct", "ndarray"])
def test_cifar_batch_declaring_200000_images_in_a_few_bytes_is_refused(tmp_path, data, labels):
    """Before, a few hundred bytes loaded as 600 MB of uninitialized images."""
    make_cifar(tmp_path)
    write_py2_pickle(tmp_path / "data_batch_1", {"data": data, "labels": labels})
    assert (tmp_path / "data_batch_1").stat().st_size < 300
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="data_batch_1: not a CIFAR-10 batch"):
            datasets.load_cifar10(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


class ArrayState:
    """Pickles as numpy pickles an array: an empty array, then its state
    (shape, dtype, bytes) given here, which may disagree with each other."""

    def __init__(self, shape, dtype, data):
        self.state = (1, shape, np.dtype(dtype), False, data)

    def __reduce__(self):
        return RECONSTRUCT, (np.ndarray, (0,), b"b"), self.state


@pytest.mark.parametrize("data, match", [
    (ArrayState((10001, 3072), np.uint8, b""), "N <= 10000"),
    (ArrayState((3, 3072), np.uint8, b"\x00" * 5), "without its 9216 values"),
    (ArrayState((3, 3072), np.uint16, b"\x00" * 18432), "uint8 array of shape"),
    (ArrayState((3, 32, 32, 3), np.uint8, b"\x00" * 9216), "uint8 array of shape"),
], ids=["10001-images", "short-bytes", "uint16", "4-d"])
def test_cifar_array_state_is_checked_before_numpy_builds_it(tmp_path, data, match):
    make_cifar(tmp_path)
    write_py2_pickle(tmp_path / "data_batch_4", {"data": data, "labels": [0, 1, 2]})
    with pytest.raises(ValueError, match=f"data_batch_4: not a CIFAR-10 batch.*{match}"):
        datasets.load_cifar10(tmp_path)


@pytest.mark.parametrize("labels", [[0, 2**70, 1], [0, -2**70, 1],
                                    np.array([0, 2**63 + 5, 1], dtype=np.uint64)],
                         ids=["2**70", "-2**70", "uint64-huge"])
def test_cifar_labels_too_large_for_int64_are_a_value_error(tmp_path, labels):
    """Before, 2**70 raised OverflowError (a traceback in the CLI)."""
    make_cifar(tmp_path)
    write_py2_pickle(tmp_path / "test_batch",
                     {"data": np.zeros((3, 3072), np.uint8), "labels": labels})
    with pytest.raises(ValueError, match="test_batch: labels outside 0..9"):
        datasets.load_cifar10(tmp_path)


def test_cifar_file_larger_than_any_batch_is_refused_unread(tmp_path):
    make_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "r+b") as f:
        f.truncate(64 << 20)  # sparse: no disk, no time
    with pytest.raises(ValueError, match="data_batch_2: not a CIFAR-10 batch .*67108864 bytes"):
        datasets.load_cifar10(tmp_path)


def test_load_cifar10_val_size_counts_selected_classes(tmp_path):
    batches = make_cifar(tmp_path, per_batch=4)
    n_horses = sum(batches[f"data_batch_{i}"]["labels"].count(7) for i in range(1, 6))
    assert 0 < n_horses < 20  # 20 is fewer than all training images, more than the horses
    with pytest.raises(ValueError, match="val_size"):
        datasets.load_cifar10(tmp_path, classes=["horse"], val_size=n_horses)
    assert len(datasets.load_cifar10(tmp_path, classes=["horse"], val_size=n_horses - 1)["y_train"]) == 1


def test_select_classes(rng):
    labels = {split: rng.integers(0, 10, n) for split, n in (("train", 50), ("val", 20), ("test", 30))}
    data = {f"X_{split}": np.arange(len(y), dtype=np.float32)[:, None] for split, y in labels.items()}
    data |= {f"y_{split}": y for split, y in labels.items()}
    selected = datasets.select_classes(data, "truck,cat", datasets.CIFAR10_CLASSES)
    for split, y in labels.items():
        keep = np.flatnonzero(np.isin(y, [9, 3]))
        np.testing.assert_array_equal(selected[f"X_{split}"][:, 0], keep)  # the rows, in order
        np.testing.assert_array_equal(selected[f"y_{split}"], np.where(y[keep] == 9, 0, 1))
    np.testing.assert_array_equal(data["y_train"], labels["train"])  # the input is left alone


# ---------------------------------------------------------------- preprocessing

def tiny_data(rng, shape=(2, 5, 5)):
    return {f"X_{s}": rng.random((n,) + shape).astype(np.float32) * 3 + 1
            for s, n in (("train", 40), ("val", 7), ("test", 9))} | \
           {f"y_{s}": np.zeros(n, np.int64) for s, n in (("train", 40), ("val", 7), ("test", 9))}


def test_normalize_uses_training_statistics(rng):
    data = tiny_data(rng)
    data["X_train"][:, 1] *= 10  # channels with different scales
    out = datasets.normalize(data)
    X = out["X_train"]
    np.testing.assert_allclose(X.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    mean = data["X_train"].mean(axis=(0, 2, 3), dtype=np.float64)
    std = data["X_train"].std(axis=(0, 2, 3), dtype=np.float64)
    for split in ("val", "test"):
        want = (data[f"X_{split}"] - mean[:, None, None]) / std[:, None, None]
        np.testing.assert_allclose(out[f"X_{split}"], want, rtol=1e-5, atol=1e-5)
        assert out[f"X_{split}"].dtype == np.float32
        np.testing.assert_array_equal(out[f"y_{split}"], data[f"y_{split}"])
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-6)
    assert data["X_train"].max() > 1  # the input is left alone


def test_normalize_constant_channel_and_given_stats(rng):
    data = tiny_data(rng)
    data["X_train"][:, 0] = 0.5
    out = datasets.normalize(data)
    assert np.isfinite(out["X_val"]).all() and out["std"][0] == 1
    again = datasets.normalize(data, mean=out["mean"], std=out["std"])
    np.testing.assert_array_equal(again["X_test"], out["X_test"])
    with pytest.raises(ValueError, match="mean and std"):
        datasets.normalize(data, mean=out["mean"])
    with pytest.raises(ValueError, match="one value per channel"):
        datasets.standardize(data["X_val"], np.zeros(3), np.ones(3))


def test_normalize_flat_data(rng):
    data = datasets.flatten(tiny_data(rng))
    assert data["X_train"].shape == (40, 50) and data["X_test"].shape == (9, 50)
    out = datasets.normalize(data)
    assert out["mean"].shape == (1,)
    np.testing.assert_allclose(out["X_train"].mean(), 0, atol=1e-5)


def test_random_flip(rng):
    X = rng.random((64, 2, 3, 4)).astype(np.float32)
    out = datasets.random_flip(X, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, x[:, :, ::-1]) for o, x in zip(out, X)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, X)])
    assert (flipped ^ kept).all() and 15 < flipped.sum() < 49
    np.testing.assert_array_equal(datasets.random_flip(X, np.random.default_rng(0)), out)
    assert not np.shares_memory(datasets.random_flip(X, rng, p=0.0), X)
    np.testing.assert_array_equal(datasets.random_flip(X, rng, p=1.0), X[..., ::-1])


def test_random_crop_is_a_shift_with_zero_fill(rng):
    X = rng.random((50, 2, 5, 6)).astype(np.float32) + 1  # no zeros of its own
    padding = 2
    out = datasets.random_crop(X, np.random.default_rng(1), padding=padding)
    assert out.shape == X.shape and out.dtype == X.dtype
    padded = np.pad(X, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    shifts = set()
    for o, p in zip(out, padded):
        found = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                 if np.array_equal(o, p[:, dy:dy + 5, dx:dx + 6])]
        assert found
        shifts.add(found[0])
    assert len(shifts) > 5
    np.testing.assert_array_equal(datasets.random_crop(X, rng, padding=0), X)


def test_augment_as_solver_callable(rng):
    X = rng.random((8, 1, 8, 8)).astype(np.float32)
    digits_augment = functools.partial(datasets.augment, flip=False, padding=1)
    out = digits_augment(X, np.random.default_rng(0))
    assert out.shape == X.shape
    np.testing.assert_array_equal(out, digits_augment(X, np.random.default_rng(0)))
    np.testing.assert_array_equal(datasets.augment(X, rng, flip=False, padding=0), X)


@pytest.mark.parametrize("call, error, match", [
    (lambda rng: datasets.random_flip(np.zeros((2, 8)), rng), ValueError, "X must have shape"),
    (lambda rng: datasets.random_crop([[0.0]], rng), TypeError, "X must be a NumPy array"),
    (lambda rng: datasets.random_crop(np.zeros((1, 1, 2, 2)), rng, padding=-1), ValueError, "padding"),
    (lambda rng: datasets.channel_stats(np.zeros((0, 3))), ValueError, "X must be"),
])
def test_preprocessing_bad_input(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(rng)
