"""Issue 17's file items (the second reliability pass, file reading and
writing): only regular files are read (3), a model and its description are
one unit (4), temporaries of killed saves are cleaned up (15), saves keep
modes and refuse what the user cannot write (16), hostile member counts and
sizes are refused in bounded time and memory (19), every description field
is checked (21), and output paths are checked before a run (13). A hang or
an allocation is the failure mode of several: those run in child
interpreters with a timeout (and a capped address space)."""
import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import types
import zipfile

import numpy as np
import pytest

from fastfc import cli
from fastfc.io import check_output_path, load_arrays, save_arrays
from fastfc.models import FullyConnectedNet
from testutil import child_env

LINUX = sys.platform.startswith("linux")
HAS_FIFOS = hasattr(os, "mkfifo") and os.path.exists("/dev/zero")
TRAIN = ["train", "--hidden", "8", "--epochs", "1", "--quiet", "--threads", "1"]


def run_python(code, timeout=60):
    """Run code in a fresh interpreter importing this fastfc; CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def child_outcome(code, timeout=60):
    """[exception type or exit status, message or stderr] that the child code
    printed as its last line (a hang fails the test by the timeout)."""
    proc = run_python(code, timeout)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Child code: cap_address_space(headroom) limits the address space to
# headroom bytes above what the process maps now, so a larger allocation fails.
CAP_ADDRESS_SPACE = """
import resource

def cap_address_space(headroom):
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))
"""
# Child code: run(CODE) prints [status, stderr] of a cli_main call, or
# [exception type, message] of anything it raises.
OUTCOME_CHILD = """
import contextlib, io, json
from fastfc import cli

def cli_main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return [status, err.getvalue()]

try:
    outcome = None
    exec(CODE)
    print(json.dumps(outcome))
except BaseException as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


def outcome_of(code, timeout=60, headroom=None, **names):
    """child_outcome of code (which sets `outcome` or raises), with names
    (paths) defined, under a capped address space when headroom is given."""
    prelude = "".join(f"{name} = {os.fspath(value)!r}\n" for name, value in names.items())
    if headroom is not None:
        prelude = CAP_ADDRESS_SPACE + prelude + f"cap_address_space({headroom})\n"
    return child_outcome(prelude + OUTCOME_CHILD.replace("CODE", repr(textwrap.dedent(code))), timeout)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small digits model saved by `fastfc train --save`: its .npz path (and .json beside it)."""
    model = tmp_path_factory.mktemp("saved") / "model.npz"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main([*TRAIN, "--save", str(model)]) == 0
    return model


def copy_model(source, directory, name="model.npz"):
    """A copy of a saved model's two files in directory; the new model path."""
    target = pathlib.Path(directory) / name
    shutil.copy(source, target)
    shutil.copy(cli.spec_path(source), cli.spec_path(target))
    return target


def edit_spec(model, /, **fields):
    """Rewrite a saved model's description with fields replaced."""
    path = cli.spec_path(model)
    spec = json.loads(pathlib.Path(path).read_text())
    spec.update(fields)
    pathlib.Path(path).write_text(json.dumps(spec))


def one_line_error(capsys, status, *messages):
    """The command failed with exit status 1 and one stderr line holding each of messages."""
    out, err = capsys.readouterr()
    assert status == cli.EXIT_ERROR, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(message in err for message in messages), err
    return err


# ---- 3: only regular files are read ----------------------------------------------------
# Each reads a special file that `prepare` below lays out in the child's
# directory `here`: a FIFO (its open waits for a writer: a hang), /dev/zero
# (endless: memory), a directory; beside a copy of a saved CLI model and a
# saved eecs598 model.
SPECIAL_READS = {
    "Sequential.load of a FIFO": "FullyConnectedNet([8], input_dim=64, num_classes=10).load(here + '/fifo')",
    "Sequential.load of /dev/zero": "FullyConnectedNet([8], input_dim=64, num_classes=10).load('/dev/zero')",
    "Sequential.load of a directory": "FullyConnectedNet([8], input_dim=64, num_classes=10).load(here)",
    "load_arrays of a FIFO": "load_arrays(here + '/fifo', {})",
    "read_array of a FIFO": "read_array(here + '/fifo')",
    "read_array of /dev/zero": "read_array('/dev/zero')",
    "read_json of a FIFO": "read_json(here + '/fifo', 1 << 20)",
    "read_json of /dev/zero": "read_json('/dev/zero', 1 << 20)",
    "read_json of a directory": "read_json(here, 1 << 20)",
    "read_json of a socket": "read_json(here + '/socket', 1 << 20)",
    "evaluate: the model is a FIFO": "outcome = cli_main(['evaluate', '--model', here + '/fifo.npz'])",
    "evaluate: the description is a directory": "outcome = cli_main(['evaluate', '--model', here + '/dir.npz'])",
    "evaluate: the model is a directory": "outcome = cli_main(['evaluate', '--model', here + '/sub.npz'])",
    "eecs598 load: the description is a FIFO": "eecs_net().load(here + '/eecs_fifo.npz')",
    "eecs598 load: the description is /dev/zero": "eecs_net().load(here + '/eecs_zero.npz')",
    "search --resume: the trial log is a FIFO":
        "outcome = cli_main(['search', '--resume', here + '/fifo', '--trials', '1', '--epochs', '1'])",
}
SPECIAL_PRELUDE = """
from fastfc.io import load_arrays, read_array, read_json
from fastfc.models import FullyConnectedNet

def eecs_net():
    from fastfc.eecs598.fully_connected_networks import FullyConnectedNet as EecsNet
    return EecsNet([3], input_dim=4, num_classes=2)
"""


def prepare_special_files(here, saved):
    os.mkfifo(here / "fifo")
    cwd = os.getcwd()
    os.chdir(here)  # a relative name: a socket's path may not exceed about 100 bytes
    try:
        with socket.socket(socket.AF_UNIX) as unix:
            unix.bind("socket")  # the file stays after the socket closes
    finally:
        os.chdir(cwd)
    copy_model(saved, here, "fifo.npz")
    os.remove(here / "fifo.npz")
    os.mkfifo(here / "fifo.npz")
    copy_model(saved, here, "dir.npz")
    os.remove(here / "dir.json")
    os.mkdir(here / "dir.json")
    copy_model(saved, here, "sub.npz")
    os.remove(here / "sub.npz")
    os.mkdir(here / "sub.npz")
    pytest.importorskip("torch")
    from fastfc.eecs598.fully_connected_networks import FullyConnectedNet as EecsNet
    net = EecsNet([3], input_dim=4, num_classes=2)
    with contextlib.redirect_stdout(io.StringIO()):
        for name in ("eecs_fifo.npz", "eecs_zero.npz"):
            net.save(str(here / name))
    os.remove(here / "eecs_fifo.npz.json")
    os.mkfifo(here / "eecs_fifo.npz.json")
    os.remove(here / "eecs_zero.npz.json")
    os.symlink("/dev/zero", here / "eecs_zero.npz.json")


@pytest.mark.skipif(not HAS_FIFOS, reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize("case", SPECIAL_READS)
def test_special_files_are_refused_at_once(saved, tmp_path, case):
    """A FIFO, /dev/zero or a directory where fastfc reads a parameter file,
    a description (the command line's or eecs598's) or an array: refused by
    its type before any read (the eecs598 description's FIFO used to hang,
    /dev/zero to read until memory ran out), in a child with a timeout and
    its memory capped at 1 GiB."""
    prepare_special_files(tmp_path, saved)
    outcome, message = outcome_of(SPECIAL_PRELUDE + SPECIAL_READS[case], headroom=1 << 30, here=tmp_path)
    assert outcome in ("ValueError", "IsADirectoryError", cli.EXIT_ERROR), (outcome, message)
    assert re.search("not a regular file|[Ii]s a directory", message), message
    assert len(message.strip().splitlines()) == 1, message


# ---- 4: a model and its description are one unit --------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_description_from_another_save_is_refused(tmp_path, capsys, suffix):
    """Two runs saving one name (concurrently, or one killed between its two
    renames): the second's parameters beside the first's description. The
    same network with the classes in the other order, so the shapes agree:
    evaluate and predict must refuse the pair, not answer with swapped
    class names."""
    model = tmp_path / f"model{suffix}"
    assert cli.main([*TRAIN, "--classes", "3,5", "--save", str(model)]) == 0
    first_description = pathlib.Path(cli.spec_path(model)).read_bytes()
    assert cli.main([*TRAIN, "--classes", "5,3", "--seed", "1", "--save", str(model)]) == 0
    pathlib.Path(cli.spec_path(model)).write_bytes(first_description)
    capsys.readouterr()
    for command in ("evaluate", "predict"):
        one_line_error(capsys, cli.main([command, "--model", str(model)]), "come from different saves")


def test_saving_the_other_format_under_the_same_name_is_refused(tmp_path, capsys):
    """model.npz and model.safetensors share model.json: saving one beside
    the other would replace the other's description (it would no longer
    load). Refused before training; the first model still evaluates."""
    first = tmp_path / "model.npz"
    assert cli.main([*TRAIN, "--save", str(first)]) == 0
    capsys.readouterr()
    one_line_error(capsys, cli.main([*TRAIN, "--save", str(tmp_path / "model.safetensors")]),
                   "also that of")
    assert not (tmp_path / "model.safetensors").exists()
    assert cli.main(["evaluate", "--model", str(first)]) == 0


def test_a_version_1_description_loads_with_a_warning(saved, tmp_path, capsys):
    """A description written before the digest (version 1) cannot be checked
    against its parameters: it still loads, and stderr says so once."""
    model = copy_model(saved, tmp_path)
    spec = json.loads(pathlib.Path(cli.spec_path(model)).read_text())
    for field in ("pixel_max", "input_range", "parameters_sha256"):
        del spec[field]
    pathlib.Path(cli.spec_path(model)).write_text(json.dumps(dict(spec, version=1)))
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(model)]) == 0
    out, err = capsys.readouterr()
    assert "test accuracy" in out
    assert len(err.strip().splitlines()) == 1 and "cannot be checked" in err, err


# ---- 15: temporaries of saves killed midway ---------------------------------------------
SAVE_FOREVER = """
import numpy as np
from fastfc.io import save_arrays
arrays = {"W1": np.zeros((4096, 1024))}  # 32 MiB: each save takes a while
while True:
    save_arrays(PATH, arrays)
"""
SAVE_ONCE = """
import numpy as np
from fastfc.io import save_arrays
save_arrays(PATH, {"W1": np.ones(3)})
"""


@pytest.mark.skipif(not LINUX, reason="kills a child")
@pytest.mark.parametrize("name", ["model.npz", "model.safetensors", "m+(1).npz"])
def test_sigkill_during_a_save_leaves_a_temporary_the_next_save_removes(tmp_path, name):
    """A process saving in a loop is killed (SIGKILL: no cleanup) while its
    hidden temporary exists; the next save to the same name, by a process
    started after it, removes that temporary and leaves only the model."""
    path = str(tmp_path / name)
    saver = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER.replace("PATH", repr(path))],
                             env=child_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(entry.endswith(".tmp") and entry.startswith(f".{name}.") for entry in os.listdir(tmp_path)):
            assert saver.poll() is None and time.monotonic() < deadline, saver.stderr.read()
            time.sleep(0.001)
        saver.send_signal(signal.SIGKILL)
    finally:
        saver.kill()
        saver.communicate()
    assert any(entry.endswith(".tmp") for entry in os.listdir(tmp_path))  # what the kill left
    time.sleep(0.05)  # the next process starts after the temporary's last write
    assert run_python(SAVE_ONCE.replace("PATH", repr(path))).returncode == 0
    assert os.listdir(tmp_path) == [name]
    np.testing.assert_array_equal(load_arrays(path, {"W1": np.ones(3)})["W1"], np.ones(3))


def test_only_fastfcs_own_dead_temporaries_are_removed(tmp_path):
    """Beside a stale temporary of the name (removed), things that look
    alike are kept: a link and a directory of the pattern, a live writer's
    (our parent's pid), another name's, and one written after this process
    started (a writer in another pid namespace may still be filling it)."""
    dead_pid = 9_999_999  # above any pid_max (4194304 at most)
    old = time.time() - 3600

    def make(entry, kind="file", mtime=old):
        path = tmp_path / entry
        if kind == "file":
            path.write_bytes(b"half a model")
        elif kind == "dir":
            path.mkdir()
        else:
            os.symlink(tmp_path / "target", path)
        os.utime(path, (mtime, mtime), follow_symlinks=False)
        return entry

    (tmp_path / "target").write_bytes(b"someone's file")
    make(f".model.npz.{dead_pid}.0123abcd.tmp")
    kept = ["target",
            make(f".model.npz.{dead_pid + 1}.0123abcd.tmp", "link"),
            make(f".model.npz.{dead_pid + 2}.0123abcd.tmp", "dir"),
            make(f".model.npz.{os.getppid()}.0123abcd.tmp"),
            make(f".other.npz.{dead_pid}.0123abcd.tmp"),
            make(f".model.npz.{dead_pid + 3}.0123abcd.tmp", mtime=time.time() + 60),
            make(f".model.npz.{dead_pid}.0123abcd.tmp.bak"),
            make(f".model.npz.{dead_pid}.0123ABCD.tmp")]
    save_arrays(tmp_path / "model.npz", {"W1": np.ones(2)})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["model.npz"])
    assert (tmp_path / "target").read_bytes() == b"someone's file"


# ---- 16: modes kept, unwritable files refused -----------------------------------------

@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o660])
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_resaving_keeps_both_files_modes(tmp_path, capsys, mode, suffix):
    """`fastfc train --save` over a model whose files were made private (or
    shared with a group) keeps each file's mode: they used to widen to 0o644."""
    model = tmp_path / f"model{suffix}"
    assert cli.main([*TRAIN, "--save", str(model)]) == 0
    for path in (model, cli.spec_path(model)):
        os.chmod(path, mode)
    assert cli.main([*TRAIN, "--seed", "1", "--save", str(model)]) == 0
    for path in (model, cli.spec_path(model)):
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, path


def test_read_only_files_are_not_replaced(tmp_path, capsys):
    """A model or description without write permission: `fastfc train --save`
    refuses before training, Sequential.save refuses; both files stay."""
    model = tmp_path / "model.npz"
    assert cli.main([*TRAIN, "--save", str(model)]) == 0
    for read_only in (model, pathlib.Path(cli.spec_path(model))):
        os.chmod(read_only, 0o444)
        before = {path: path.read_bytes() for path in tmp_path.iterdir()}
        capsys.readouterr()
        one_line_error(capsys, cli.main([*TRAIN, "--save", str(model)]), "read-only", str(read_only))
        with pytest.raises(PermissionError, match="read-only"):
            save_arrays(read_only, {"W1": np.ones(2)})
        assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before
        os.chmod(read_only, 0o644)


AS_NOBODY = """
import json, os
import numpy as np
from fastfc.io import save_arrays  # imported as root: the installation may be root's alone
os.setgid(65534)
os.setuid(65534)
try:
    save_arrays(PATH, {"W1": np.ones(2)})
    print(json.dumps("replaced"))
except PermissionError as exc:
    print(json.dumps(str(exc)))
"""


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to become another user")
def test_another_users_file_is_not_replaced():
    """A user who may create files in the directory but cannot write the
    file there (root's, 0o644): the rename would replace it, so the save
    refuses it instead. (In a directory of its own under the temporary
    directory: pytest's are root's alone.)"""
    directory = pathlib.Path(tempfile.mkdtemp())
    try:
        os.chmod(directory, 0o777)
        path = directory / "model.npz"
        path.write_bytes(b"root's model")
        os.chmod(path, 0o644)
        message = child_outcome(AS_NOBODY.replace("PATH", repr(str(path))))
        assert message != "replaced" and "read-only" in message, message
        assert path.read_bytes() == b"root's model" and os.listdir(directory) == ["model.npz"]
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to give a file to another user")
def test_resaving_keeps_the_owner_and_group(tmp_path):
    """A model shared through its group (0o660, group nogroup): saved over,
    it keeps that group (and owner), so the group's members can still read
    it; the mode alone would give the same bits to the saver's group."""
    path = tmp_path / "model.npz"
    save_arrays(path, {"W1": np.zeros(2)})
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o660)
    save_arrays(path, {"W1": np.ones(2)})
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o660)
    np.testing.assert_array_equal(load_arrays(path, {"W1": np.ones(2)})["W1"], np.ones(2))


# ---- 19: hostile member counts and sizes ------------------------------------------------

def zip_of_empty_members(path, count, declared=None):
    """A zip64 archive of count empty members x0.npy, x1.npy, ... written
    directly (zipfile takes about 100 us a member), its end records
    declaring `declared` members (default: count): local headers, central
    directory, zip64 end record and locator, end record (PKWARE APPNOTE 4.3)."""
    declared = count if declared is None else declared
    local, central, offset = [], [], 0
    for i in range(count):
        name = f"x{i}.npy".encode()
        local.append(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)
        offset += len(local[-1])
    directory = b"".join(central)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared, len(directory), offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(b"".join(local) + directory + end64 + locator + end)


def load_in_bounded_memory(model, path):
    """(the ValueError model.load(path) raised, peak bytes Python allocated)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            model.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(error.value), peak


@pytest.mark.parametrize("declared", [300_000, 4])
def test_three_hundred_thousand_members_are_refused_in_bounded_memory(tmp_path, declared):
    """A .npz of 300,000 members where the model has 4: refused before the
    zip directory is parsed (it took about 10 s and 290 MB, and the message
    listed every name), also when the end record lies about the count
    (declared 4: that took 26 s and 190 MB)."""
    path = tmp_path / "many.npz"
    zip_of_empty_members(path, 300_000, declared)
    message, peak = load_in_bounded_memory(FullyConnectedNet([8], input_dim=4, num_classes=3), path)
    assert len(message) < 300 and peak < 1 << 20, (len(message), peak)
    assert "W1" in message and ("300000 members" in message or "zip directory" in message), message


def npy_member(shape, data_bytes, dtype="<f4"):
    """The bytes of an .npy file whose header declares shape and whose data is data_bytes zero bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return header.getvalue() + bytes(data_bytes)


# A 1 GiB parameter, as load_arrays' expected (only .shape and .dtype are read).
GIB_PARAMETER = {"W1": types.SimpleNamespace(shape=(2**28,), dtype=np.dtype(np.float32))}


def load_gib_in_bounded_memory(path):
    """(the ValueError loading GIB_PARAMETER from path raised, peak bytes Python allocated)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            load_arrays(path, GIB_PARAMETER)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(error.value), peak


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_member_declaring_more_than_it_holds_allocates_nothing(tmp_path, compression):
    """A member whose .npy header declares a 1 GiB array (the model's
    parameter, so the header check passes) in 16 bytes: refused from its
    zip sizes before the array is allocated (it used to be allocated, and
    the model's description could declare the same)."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("W1.npy", npy_member((2**28,), 16))
    message, peak = load_gib_in_bounded_memory(path)
    assert "'W1.npy' holds" in message and "describes" in message, message
    assert peak < 16 << 20, peak


def test_deflate_cannot_hold_what_a_member_declares(tmp_path):
    """A deflated member whose zip headers declare the 1 GiB its .npy header
    describes, in a few bytes: more than deflate's ratio, refused before
    allocating or inflating."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("W1.npy", npy_member((2**28,), 0))
    data = bytearray(path.read_bytes())
    needed = len(npy_member((2**28,), 0)) + 2**30
    # The uncompressed size fields of its local (offset 22) and central (24) headers.
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<L", data, data.find(signature) + size_at, needed)
    path.write_bytes(bytes(data))
    message, peak = load_gib_in_bounded_memory(path)
    assert "'W1.npy'" in message and "compression" in message, message
    assert peak < 16 << 20, peak


BIG_DESCRIPTION = """outcome = cli_main(["evaluate", "--model", model])"""


@pytest.mark.skipif(not LINUX, reason="caps the child's address space")
@pytest.mark.parametrize("hidden", [30_000_000, 2**31 - 1])
def test_description_sizes_do_not_drive_allocations(saved, tmp_path, hidden):
    """A description declaring a 7 GiB (or 512 GiB) first layer beside a
    parameter file whose .npy headers declare the same shapes but hold a
    few bytes: refused from the file's sizes before the network is built
    (the child's memory is capped at 256 MiB above its start: it used to
    allocate the network first)."""
    model = copy_model(saved, tmp_path)
    edit_spec(model, hidden=[hidden])
    with zipfile.ZipFile(model, "w") as archive:
        for name, shape in (("W1", (64, hidden)), ("b1", (hidden,)), ("W2", (hidden, 10)), ("b2", (10,))):
            archive.writestr(f"{name}.npy", npy_member(shape, 16))
    status, err = outcome_of(BIG_DESCRIPTION, headroom=256 << 20, model=model)
    assert status == cli.EXIT_ERROR and len(err.strip().splitlines()) == 1, err
    assert "'W1.npy' holds" in err and "describes" in err, err


# ---- 21: every description field checked ---------------------------------------------
DIGITS = [str(d) for d in range(10)]
HOSTILE_FIELDS = {
    "a lone surrogate in a class name": dict(class_names=["\ud800"] + DIGITS[1:]),
    "terminal escapes in a class name": dict(class_names=["\x1b[2J\x1b[31mzero"] + DIGITS[1:]),
    "a bidi override in a class name": dict(class_names=["\u202eorez"] + DIGITS[1:]),
    "a NUL in a class name": dict(class_names=["ze\0ro"] + DIGITS[1:]),
    "class names alike": dict(class_names=["0"] * 10),
    "class names nested": dict(class_names=[[["0"]]] + DIGITS[1:]),
    "a class name of 2000 characters": dict(class_names=["x" * 2000] + DIGITS[1:]),
    "eleven class names": dict(class_names=DIGITS + ["10"]),
    "classes alike": dict(classes=["3"] * 10),
    "a NUL in data_dir": dict(data_dir="/data\0/mnist"),
    "a surrogate data_dir cannot encode": dict(data_dir="/data/\ud800"),
    "data_dir empty": dict(data_dir=""),
    "mean a string": dict(mean="0.3"),
    "std negative": dict(std=[-0.4]),
    "std a bool": dict(std=[True]),
    "input_range NaN": dict(input_range=[float("nan"), 1.0]),
    "pixel_max infinite": dict(pixel_max=float("inf")),
    "1025 layers": dict(hidden=[8] * 1025),
    "model a list": dict(model=["mlp"]),
    "version a string": dict(version="2"),
    "dtype int8": dict(dtype="int8"),
}


@pytest.mark.parametrize("case", HOSTILE_FIELDS)
def test_hostile_description_fields_are_one_line_errors(saved, tmp_path, capsys, case):
    """Each bad field of a saved model's description is refused, naming it,
    before anything is built or printed (a lone surrogate in a class name
    failed predict halfway through its output; escapes and bidi overrides
    reached the terminal and the CSV; names alike made answers ambiguous)."""
    model = copy_model(saved, tmp_path)
    edit_spec(model, **HOSTILE_FIELDS[case])
    field = next(iter(HOSTILE_FIELDS[case]))
    capsys.readouterr()
    for command in ("evaluate", "predict"):
        one_line_error(capsys, cli.main([command, "--model", str(model)]), f"'{field}'" if field != "version"
                       else "version")


def test_a_json_nan_token_is_refused(saved, tmp_path, capsys):
    """JSON's non-standard NaN token (Python's json reads it) in the statistics."""
    model = copy_model(saved, tmp_path)
    path = pathlib.Path(cli.spec_path(model))
    spec = json.loads(path.read_text())
    path.write_text(json.dumps(dict(spec, std=[1.0])).replace("1.0]", "NaN]"))
    capsys.readouterr()
    one_line_error(capsys, cli.main(["evaluate", "--model", str(model)]), "'std'")


def test_class_names_starting_like_formulas_are_quoted(saved, tmp_path, capsys):
    """predict's CSV: a class name a spreadsheet would run as a formula gets
    a leading apostrophe (a name with a comma or quote is CSV-quoted)."""
    model = copy_model(saved, tmp_path)
    names = ["=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "a,b", 'say "hi"', "2", "3", "4", "5"]
    edit_spec(model, class_names=names)
    output = tmp_path / "out.csv"
    assert cli.main(["predict", "--model", str(model), "--output", str(output)]) == 0
    import csv
    with open(output, newline="") as f:
        written = {row["class"] for row in csv.DictReader(f)}
    assert written and not any(name[0] in "=+-@" for name in written), written
    assert written <= {"'" + name if name[0] in "=+-@" else name for name in names}


# ---- 13: check_output_path, for the command line before a run ---------------------------

@pytest.mark.parametrize("pid", [7, 4194304])
def test_the_longest_name_that_saves_does_not_depend_on_the_pid(tmp_path, monkeypatch, pid):
    """The temporary name's pid has a fixed width: a name checked (or saved)
    by one process is not refused by another whose pid has more digits (a CI
    run saw a 236-byte name accepted under a 4-digit pid)."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    monkeypatch.setattr(os, "getpid", lambda: pid)
    added = len(".") + len(".0000000.") + 8 + len(".tmp")
    check_output_path(tmp_path / ("m" * (limit - added)))
    with pytest.raises(OSError, match="too long"):
        check_output_path(tmp_path / ("m" * (limit - added + 1)))


def test_check_output_path_names_the_option(tmp_path):
    """check_output_path(path, what=option) raises a ValueError whose one
    line names the option and the path and says what is wrong, for each of
    the failures a save at the end of a run would meet; the probe file it
    creates to know is gone afterwards."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "ro.npz").write_bytes(b"")
    os.chmod(tmp_path / "ro.npz", 0o444)
    cases = {
        f"{tmp_path}/sub/": "ends with a separator",
        str(tmp_path): "directory",
        str(tmp_path / "no" / "m.npz"): "does not exist",
        str(tmp_path / "file" / "m.npz"): "is not a directory",
        str(tmp_path / ("m" * (limit - 10))): "too long",
        str(tmp_path / "ro.npz"): "read-only",
    }
    if os.path.isdir("/proc/self"):
        cases["/proc/self/model.npz"] = "cannot create a file"
    for path, words in cases.items():
        with pytest.raises(ValueError) as error:
            check_output_path(path, what="--save")
        message = str(error.value)
        assert message.startswith(f"cannot write {path} (--save): ") and words in message, message
        assert "\n" not in message
    assert sorted(os.listdir(tmp_path)) == ["file", "ro.npz"]
    check_output_path(tmp_path / "m.npz", what="--save")
    assert sorted(os.listdir(tmp_path)) == ["file", "ro.npz"]
