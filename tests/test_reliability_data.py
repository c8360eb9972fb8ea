"""Reliability of the data loaders and of memory (issue 17, items 8, 17, 18,
20 and the CIFAR part of 22): hostile data files are refused quickly, before
the allocations they ask for; splits that do not fit together are refused
before training; building a layer takes about its own memory, and one too
large for it is a MemoryError naming the layer.

Each memory scenario runs in a child interpreter whose address space is
capped a little above what the fixed code needs (what the old code allocated
would fail there, as MemoryError), with a timeout. The Sequential buffer
bound (item 17) is tested in test_models.py
(test_buffers_are_kept_for_a_few_input_shapes_only), the float32 initial
weights' stream in test_layers.py."""
import gzip
import struct

import numpy as np
import pytest

from fastfc import datasets

from test_datasets import RECONSTRUCT, ArrayState, Declares, make_cifar, make_mnist, write_py2_pickle
from test_robustness import CAP_ADDRESS_SPACE, child_json

# Each case runs under this much address space above what the child maps
# after importing fastfc: far less than any hostile file asks for.
HEADROOM = 256 << 20


def refusals_in_child(load, paths, headroom=HEADROOM, timeout=120):
    """load(path) for each path in a child capped at headroom bytes more
    address space: {path: [exception type, message, seconds]}."""
    return child_json(CAP_ADDRESS_SPACE + f"""
import json, time
from fastfc import datasets
cap_address_space({headroom})
results = {{}}
for path in {[str(p) for p in paths]!r}:
    start = time.monotonic()
    try:
        {load}
        results[path] = ["loaded", "", time.monotonic() - start]
    except Exception as exc:
        results[path] = [type(exc).__name__, str(exc), time.monotonic() - start]
print(json.dumps(results))
""", timeout=timeout)


def check_refusals(results, expected, seconds):
    """Each result a ValueError matching its expected text, within seconds,
    and never an allocation that failed (the old code's MemoryError)."""
    for path, match in expected.items():
        kind, message, took = results[str(path)]
        assert kind == "ValueError", (path, kind, message)
        assert "MemoryError" not in message, (path, message)
        assert match in message, (path, message)
        assert took < seconds, (path, took)


# ---------------------------------------------------------------- CIFAR-10 batches (items 8, 22)

def py2_pickle_bytes(obj, tmp_path):
    write_py2_pickle(tmp_path / "scratch", obj)
    return (tmp_path / "scratch").read_bytes()


def hostile_batches(tmp_path):
    """name -> (content of a data_batch_1, text its refusal must contain)."""
    declared = {"data": Declares(RECONSTRUCT, np.ndarray, (200000, 3072), b"B"),
                "labels": Declares(RECONSTRUCT, np.ndarray, (200000,), b"B")}
    return {
        # the file: a few bytes declaring 200,000 images (600 MB),
        # as NumPy's array rebuild called with the shape or as the array's state
        "200000-images": (py2_pickle_bytes(declared, tmp_path), "not a CIFAR-10 batch"),
        "200000-images-state": (py2_pickle_bytes({"data": ArrayState((200000, 3072), np.uint8, b""),
                                                  "labels": [0]}, tmp_path), "N <= 10000"),
        # one memo index makes the unpickler allocate and clear a 2 GiB table
        "memo-index-2**27": (b"\x80\x02}r" + (1 << 27).to_bytes(4, "little") + b".",
                             "memo index 134217728"),
        "text-memo-index": (b"(dp134217728\n.", "memo index 134217728"),
        # 4 MB of empty lists: 2 million objects (128 MB) without a bound
        "2e6-empty-lists": (b"\x80\x02]" + b"]a" * 2_000_000 + b".", "opcodes"),
        # a bytes object of 16 GiB declared in 12 bytes, allocated before it is read
        "bytes8-16GiB": (b"\x80\x04\x8e" + (1 << 34).to_bytes(8, "little") + b"abc.",
                         "17179869184 bytes"),
        "200000-labels": (py2_pickle_bytes({"data": np.zeros((3, 3072), np.uint8),
                                            "labels": [1] * 200_000}, tmp_path), "opcodes"),
        # item 22: a label of 200,000 digits is refused as a value, not converted
        "huge-label": (py2_pickle_bytes({"data": np.zeros((3, 3072), np.uint8),
                                         "labels": [0, 10**200_000, 1]}, tmp_path),
                       "data_batch_1: labels outside 0..9"),
    }


def test_hostile_cifar_batches_are_refused_before_allocating(tmp_path):
    """Each file refused as a ValueError within a second or two under a
    256 MiB allowance: before, the memo index, the empty lists and the
    16 GiB bytes were allocated first (MemoryError here, gigabytes or a
    minute without the cap)."""
    batches = hostile_batches(tmp_path)
    assert max(len(batches[name][0]) for name in ("200000-images", "200000-images-state")) < 200
    expected = {}
    for name, (content, match) in batches.items():
        directory = tmp_path / name
        directory.mkdir()
        make_cifar(directory)
        (directory / "data_batch_1").write_bytes(content)
        expected[directory] = match
    results = refusals_in_child("datasets.load_cifar10(path)", expected)
    check_refusals(results, expected, seconds=5)


def test_a_full_size_batch_is_within_the_bounds(tmp_path):
    """The opcode and memo bounds leave room for a real batch: 10,000 images
    with long file names, pickled the way Python 2 wrote them."""
    batches = make_cifar(tmp_path)
    rng = np.random.default_rng(1)
    full = {"batch_label": "testing batch 1 of 1", "labels": [int(v) for v in rng.integers(0, 10, 10000)],
            "data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
            "filenames": [f"leptodactylus_pentadactylus_s_{i:06d}.png" for i in range(10000)]}
    write_py2_pickle(tmp_path / "test_batch", full)
    data = datasets.load_cifar10(tmp_path, val_size=2)
    assert len(data["X_train"]) + len(data["X_val"]) == sum(len(b["labels"]) for n, b in batches.items()
                                                           if n != "test_batch")
    np.testing.assert_array_equal(data["y_test"], full["labels"])
    np.testing.assert_array_equal(np.rint(data["X_test"].reshape(10000, -1) * 255), full["data"])


def test_cli_reports_a_hostile_batch_in_one_line(tmp_path):
    make_cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(hostile_batches(tmp_path)["memo-index-2**27"][0])
    result = child_json(CAP_ADDRESS_SPACE + f"""
import contextlib, io, json
from fastfc.cli import main
cap_address_space({HEADROOM})
err = io.StringIO()
with contextlib.redirect_stderr(err):
    status = main(["train", "--dataset", "cifar10", "--data-dir", {str(tmp_path)!r}])
print(json.dumps([status, err.getvalue()]))
""")
    status, err = result
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("fastfc: error: ")
    assert "data_batch_1: not a CIFAR-10 batch" in err and "memo index" in err


# ---------------------------------------------------------------- gzip IDX files (item 20)

def idx_header(shape):
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def write_gzip_bomb(path, header, gib=4):
    """A gzip file of about gib MiB whose stream is header then zeros, gib GiB
    in all: one member per 64 MiB (gzip readers chain members)."""
    piece = 64 << 20
    zeros = gzip.compress(bytes(piece), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + bytes(piece - len(header)), compresslevel=9))
        for _ in range(gib * 16 - 1):
            f.write(zeros)


def test_gzip_bomb_is_read_only_as_far_as_its_header_declares(tmp_path):
    """A 4 MiB gzip stream of 4 GiB: declaring 60,000 images it is refused
    for its trailing bytes once those are read (47 MB); declaring 1 GiB or
    all 4 GiB, it is refused from the header, before any allocation (more
    than image data ever compresses to). Before, the whole stream was
    decompressed first; and until the plausibility bound, a header declaring
    4 GiB in 4 MiB (within deflate's 1032:1) got a 4 GiB array."""
    expected = {"mnist-sized": ((60000, 28, 28), "trailing bytes"),
                "1GiB": ((16384, 256, 256), "a decompression bomb?"),
                "4GiB": ((65536, 256, 256), "a decompression bomb?")}
    paths = {}
    for name, (shape, match) in expected.items():
        paths[tmp_path / f"{name}.gz"] = match
        write_gzip_bomb(tmp_path / f"{name}.gz", idx_header(shape))
    assert (tmp_path / "4GiB.gz").stat().st_size < 5 << 20
    results = refusals_in_child("datasets.read_idx(path, 3)", paths)
    check_refusals(results, paths, seconds=20)
    assert max(results[str(tmp_path / f"{name}.gz")][2] for name in ("1GiB", "4GiB")) < 1


def test_load_mnist_with_a_bomb_for_training_images(tmp_path):
    make_mnist(tmp_path, compress=True)
    write_gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", idx_header((12, 28, 28)), gib=1)
    results = refusals_in_child("datasets.load_mnist(path, val_size=2)", [tmp_path])
    check_refusals(results, {tmp_path: "train-images-idx3-ubyte.gz: trailing bytes"}, seconds=5)


# ---------------------------------------------------------------- splits that do not fit (item 20)

def splits(test_size=28, n_test=5, n_test_labels=None):
    rng = np.random.default_rng(0)
    return {"X_train": rng.random((8, 1, 28, 28), dtype=np.float32), "y_train": np.arange(8) % 2,
            "X_val": rng.random((3, 1, 28, 28), dtype=np.float32), "y_val": np.arange(3) % 2,
            "X_test": rng.random((n_test, 1, test_size, test_size), dtype=np.float32),
            "y_test": np.arange(n_test if n_test_labels is None else n_test_labels) % 2}


def test_check_splits_returns_the_common_sample_shape():
    assert datasets.check_splits(splits()) == (1, 28, 28)
    assert datasets.check_splits({"X_test": np.zeros((2, 64))}, sample_shape=(64,)) == (64,)
    assert datasets.check_splits(datasets.load_digits()) == (1, 8, 8)


@pytest.mark.parametrize("data, kwargs, error, match", [
    (splits(test_size=32), {}, ValueError,
     r"X_test: samples of shape \(1, 32, 32\), where those of X_train are \(1, 28, 28\)"),
    (splits(n_test_labels=4), {}, ValueError, r"y_test has shape \(4,\) for the 5 samples of X_test"),
    ({"X_test": np.zeros((2, 1, 32, 32))}, {"sample_shape": (1, 28, 28)}, ValueError,
     r"X_test: samples of shape \(1, 32, 32\), where sample_shape is \(1, 28, 28\)"),
    (dict(splits(), y_val=np.int64(3)), {}, TypeError, "y_val must be a NumPy array"),
    ({"X_train": [[0.0, 1.0]]}, {}, TypeError, "X_train must be a NumPy array, got list"),
    ({"X_train": np.zeros(4), "y_train": np.zeros(4)}, {}, ValueError, "X_train must hold samples"),
    ({"y_train": np.zeros(4)}, {}, ValueError, "data holds no samples"),
], ids=["test-32x32", "short-labels", "model-input", "scalar-labels", "list", "1-d", "no-X"])
def test_check_splits_refuses_splits_that_do_not_fit(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.check_splits(data, **kwargs)


def test_normalize_refuses_test_images_of_another_size_before_any_work():
    """Before, normalize standardized 32x32 test images beside 28x28
    training images (one channel each), and training found out only at the
    test set."""
    with pytest.raises(ValueError, match=r"X_test: samples of shape \(1, 32, 32\)"):
        datasets.normalize(splits(test_size=32))


# ---------------------------------------------------------------- layer memory (item 18)

def test_building_a_layer_takes_about_its_own_memory_and_names_it_when_short():
    """Under an allowance of the weights and their gradient plus 96 MiB, a
    6144x6144 float32 Linear builds (before, its float64 draws and their
    product took 4 times more); a 30000x30000 one, and a huge Conv2d, raise
    MemoryError naming the layer and the size (before: NumPy's message about
    an array). The CLI refuses that network in one line before building it
    (its memory check counts the parameters against the capped address
    space)."""
    layer_bytes = 2 * 6144 * 6144 * 4
    results = child_json(CAP_ADDRESS_SPACE + f"""
import contextlib, io, json
import fastfc.layers as L
from fastfc.cli import main
cap_address_space({layer_bytes + (96 << 20)})
results = {{}}
layer = L.Linear(6144, 6144, seed=0, dtype="float32")
results["built"] = [float(layer.W[:64].std()), layer.W.dtype.name]
del layer
for name, make in [("linear", lambda: L.Linear(30000, 30000, seed=0, dtype="float32")),
                   ("conv", lambda: L.Conv2d(3000, 3000, 11, seed=0, dtype="float32"))]:
    try:
        make()
        results[name] = "built"
    except MemoryError as exc:
        results[name] = str(exc)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    status = main(["train", "--hidden", "30000,30000", "--epochs", "1"])
results["cli"] = [status, err.getvalue()]
print(json.dumps(results))
""")
    std, dtype = results["built"]
    assert dtype == "float32" and abs(std - np.sqrt(2 / 6144)) < 1e-3
    assert results["linear"] == ("Linear weights of shape (30000, 30000) in float32: 6.71 GiB "
                                 "with their gradient, more than the memory available")
    assert results["conv"].startswith("Conv2d weights of shape (3000, 3000, 11, 11) in float32: 8.11 GiB")
    status, err = results["cli"]
    assert status == 1
    assert err.startswith("fastfc: error: the network (mlp 64-30000-30000-10) has 902,280,010 "
                          "parameters") and "of memory" in err and err.count("\n") == 1, err
