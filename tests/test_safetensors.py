"""Parameter files as safetensors, the default format: round trips, other
readers (the safetensors library, PyTorch), .npz still read, and damaged or
hostile files refused with a ValueError naming the file, the model unchanged,
never more allocated than the parameters (the header's length is checked
before the library parses it)."""
import json
import os
import re
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed")
from safetensors.numpy import load_file, save_file  # noqa: E402

from fastfc import io as fastfc_io  # noqa: E402
from fastfc import layers as L  # noqa: E402
from fastfc.models import FullyConnectedNet, Sequential  # noqa: E402

from testutil import child_env  # noqa: E402


def small_model(seed, hidden=6, dtype=np.float32):
    return FullyConnectedNet([hidden], input_dim=5, num_classes=3, dtype=dtype, seed=seed)


def assert_same_params(got, want):
    for name, array in want.params.items():
        np.testing.assert_array_equal(got.params[name], array)


@pytest.mark.parametrize("name", ["model.safetensors", "model", "model.bin"])
def test_safetensors_is_the_default_and_round_trips(tmp_path, name):
    path = tmp_path / name
    saved = small_model(0)
    saved.save(path)
    assert fastfc_io.file_format(path) == "safetensors"
    assert sorted(load_file(path)) == ["W1", "W2", "b1", "b2"]  # the library reads it as it is
    loaded = small_model(1)
    arrays = {name: p.data for name, p in loaded.named_parameters()}
    assert loaded.load(path) is loaded
    assert_same_params(loaded, saved)
    for name, array in arrays.items():
        assert loaded.params[name] is array  # filled in place


def test_torch_reads_what_fastfc_writes(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as torch_load_file
    saved = small_model(0, dtype=np.float64)
    saved.save(tmp_path / "m.safetensors")
    tensors = torch_load_file(tmp_path / "m.safetensors")
    assert tensors["W1"].dtype == torch.float64
    np.testing.assert_array_equal(tensors["W1"].numpy(), saved.params["W1"])


def test_npz_names_still_write_npz_and_old_npz_files_load(tmp_path):
    saved = small_model(0)
    saved.save(tmp_path / "model.NPZ")
    assert fastfc_io.file_format(tmp_path / "model.NPZ") == "npz"
    with np.load(tmp_path / "model.NPZ", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W1", "W2", "b1", "b2"]
    np.savez(tmp_path / "old.npz", **saved.params)  # as fastfc wrote them before
    assert_same_params(small_model(1).load(tmp_path / "old.npz"), saved)
    # Told apart by content, not by name.
    os.replace(tmp_path / "old.npz", tmp_path / "old.safetensors")
    assert_same_params(small_model(1).load(tmp_path / "old.safetensors"), saved)


def test_files_written_by_the_library_load(tmp_path):
    """A safetensors file from another writer (no fastfc digest in it)."""
    saved = small_model(0)
    save_file({k: np.ascontiguousarray(v) for k, v in saved.params.items()}, tmp_path / "other.safetensors")
    assert_same_params(small_model(1).load(tmp_path / "other.safetensors"), saved)


@pytest.mark.parametrize("other, match", [
    (lambda: small_model(0, hidden=7), r"'W1' has shape \(5, 7\)"),
    (lambda: small_model(0, dtype=np.float64), "'W1' is float64"),
    (lambda: FullyConnectedNet([6, 6], input_dim=5, num_classes=3), r"unexpected parameters \['W3', 'b3'\]"),
])
def test_mismatch_is_named_and_leaves_the_model(tmp_path, other, match):
    path = tmp_path / "model.safetensors"
    other().save(path)
    model = small_model(0)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(fastfc_io.MismatchError, match=match):
        model.load(path)
    assert_same_params(model, type("Saved", (), {"params": before})())


# ---- damaged and hostile files --------------------------------------------------------

def split(path):
    """(header dict, data bytes) of the safetensors file at path."""
    raw = path.read_bytes()
    (length,) = struct.unpack_from("<Q", raw)
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write(path, header, data, length=None):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def rewrite(**change):
    """A damage that edits the W1 entry of the header."""
    def damage(path):
        header, data = split(path)
        header["W1"].update(change)
        write(path, header, data)
    return damage


def flip_data(path):
    header, data = split(path)
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    write(path, header, bytes(data))


def shift_w1(path):
    """W1's data moved 4 bytes on: it overlaps its neighbour."""
    header, data = split(path)
    start, end = header["W1"]["data_offsets"]
    header["W1"]["data_offsets"] = [start + 4, end + 4]
    write(path, header, data)


def other_entry_huge(path):
    header, data = split(path)
    header["W1"]["shape"] = [5, 6 * 10**12]  # 120 TB over 30 floats
    write(path, header, data)


# JSON 20,000 arrays deep, within the header length a 4-parameter model allows.
NESTED = b'{"W1":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
DAMAGES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "text": lambda path: path.write_text("not a parameter file at all"),
    "flipped data byte": flip_data,
    "bytes after the data": lambda path: path.write_bytes(path.read_bytes() + b"extra"),
    "header length of 2**63": lambda path: write(path, *split(path), length=2**63),
    "header length past the file": lambda path: write(path, *split(path), length=10_000),
    "header not JSON": lambda path: path.write_bytes(struct.pack("<Q", 12) + b"{'W1': None}" + b"\0" * 200),
    "header nested too deep": lambda path: path.write_bytes(struct.pack("<Q", len(NESTED)) + NESTED),
    "offsets past the data": rewrite(data_offsets=[0, 10**9]),
    "offsets overlapping": shift_w1,
    "huge shape": other_entry_huge,
    "unknown dtype": rewrite(dtype="BF16"),
    "dtype NumPy lacks": rewrite(dtype="F8_E4M3"),
    "negative shape": rewrite(shape=[-5, 6]),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_file_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    small_model(0).save(path)
    DAMAGES[damage](path)
    model = small_model(1)
    before = {name: array.copy() for name, array in model.params.items()}
    with pytest.raises(ValueError, match=re.escape(str(path))) as raised:
        model.load(path)
    assert len(str(raised.value).splitlines()) == 1
    for name, array in model.params.items():
        np.testing.assert_array_equal(array, before[name])


@pytest.mark.parametrize("length", [2**63, 50_000_000])
def test_a_long_header_is_refused_before_the_library_reads_it(tmp_path, monkeypatch, length):
    """The library would parse up to 100 MB of header; fastfc refuses more
    than the model's names need without calling it."""
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + b"{" + b" " * min(length, 1 << 20))
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("the library was called"))
    with pytest.raises(ValueError, match="safetensors header declares"):
        small_model(1).load(path)


def test_load_needs_no_more_memory_than_the_parameters(tmp_path):
    model = Sequential(L.Linear(2048, 2048, seed=0))  # 16 MiB of weights
    model.save(tmp_path / "big.safetensors")
    tracemalloc.start()
    try:
        model.load(tmp_path / "big.safetensors")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * model.params["W1"].nbytes


def test_checking_headers_only_reads_no_tensor(tmp_path, monkeypatch):
    """read_data=False (the CLI's check of a description against its file)."""
    path = tmp_path / "model.safetensors"
    model = small_model(0)
    model.save(path)
    real_open = safetensors.safe_open

    class NoTensors:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def __getattr__(self, name):
            if name == "get_tensor":
                pytest.fail("a tensor was read")
            return getattr(self.inner, name)
    monkeypatch.setattr(safetensors, "safe_open", NoTensors)
    assert fastfc_io.load_arrays(path, model.params, read_data=False) is None
    with pytest.raises(fastfc_io.MismatchError, match="shape"):
        fastfc_io.load_arrays(path, small_model(0, hidden=3).params, read_data=False)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    small_model(0).save(path)
    old = path.read_bytes()
    import safetensors.numpy

    def failing_save(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(safetensors.numpy, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        small_model(1).save(path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["model.safetensors"]


def test_import_fastfc_imports_no_optional_library():
    code = ("import sys, fastfc, fastfc.models, fastfc.io, fastfc.solver, fastfc.plotting\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'safetensors', 'onnx', 'onnxruntime', "
            "'matplotlib', 'torch', 'sklearn', 'IPython', 'tqdm'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=child_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
