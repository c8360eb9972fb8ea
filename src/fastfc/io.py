"""Files: opening only regular files, atomic writes, parameter files and
JSON descriptions.

    with open_regular(path) as f: ...           # a FIFO or device is refused, never read
    save_arrays("model.safetensors", {"W1": W1, ...})  # atomic; a file replaced keeps mode and owner
    arrays = load_arrays("model.safetensors", expected) # checked against expected, never unpickled
    check_output_path("model.safetensors")              # before a long run: will the save work?
    write_json("model.json", spec); spec = read_json("model.json", max_bytes)

A parameter file is safetensors (the format PyTorch, JAX and Hugging Face
read without pickle) unless its name ends in .npz (a plain uncompressed .npz,
np.savez's format). Either is read back by its content, without unpickling
and without allocating more than the arrays expected. The safetensors
library is imported only when such a file is written or read.
fastfc.models imports these names (Sequential.save/load use them).
"""
import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import time
import tokenize
import zipfile
import zlib

import numpy as np

__all__ = ["open_regular", "write_atomically", "check_output_path", "save_arrays", "load_arrays",
           "MismatchError", "read_array", "parameters_digest", "file_format", "FORMATS",
           "write_json", "read_json", "NotJSONError"]

# ---------------------------------------------------------------- reading


def open_regular(path):
    """path opened for binary reading, refusing anything but a regular file.

    The file is opened non-blocking first, so that a FIFO (whose open would
    wait for a writer) or a device (/dev/zero, read until memory runs out)
    is refused by its type before any read. Raises FileNotFoundError,
    PermissionError or IsADirectoryError as open() would, and ValueError
    naming path for any other kind of file.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        handle = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        # A socket, or a device without a driver behind it, cannot even be
        # opened (ENXIO, "No such device or address"): say what it is.
        if exc.errno == errno.ENXIO and os.path.exists(path):
            raise _not_regular(path, os.stat(path).st_mode, "read") from None
        raise
    try:
        mode = os.fstat(handle).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode, "read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(handle, True)
        return os.fdopen(handle, "rb")
    except BaseException:
        os.close(handle)
        raise


def _not_regular(path, mode, verb):
    """The ValueError refusing to verb (read, replace) the special file at path of this st_mode."""
    return ValueError(f"{path} is not a regular file (a {_kind(mode)}): refusing to {verb} it")


def _kind(mode):
    """What a non-regular file is, in words."""
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"))
    return next((name for test, name in kinds if test(mode)), "special file")


# ---------------------------------------------------------------- writing

# Import time stands for the process's start: a temporary file last written
# before it cannot be one this process, or a writer still writing, owns.
_STARTED = time.time()
_TOKEN_BYTES = 4  # random bytes in a temporary name (hex: twice as many characters)


def _temporary_name(name):
    """The hidden temporary file write_atomically fills before renaming it to name.
    The pid takes 7 digits at least (Linux's largest is 4194304), so that the
    longest name that can be saved does not depend on the saving process's pid."""
    return f".{name}.{os.getpid():07d}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"


def _stale_pattern(name):
    """Matches the temporary names _temporary_name gives name, capturing the writer's pid."""
    return re.compile(rf"\.{re.escape(name)}\.(\d{{1,10}})\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


def _alive(pid):
    """Whether a process with this id exists (or might: one we may not
    signal, or any on Windows, where os.kill would terminate it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # no process can have this id
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(directory, name):
    """Remove the temporaries of earlier saves to name that were killed
    midway (SIGKILL, a power loss): only files of write_atomically's naming
    pattern whose writer no longer exists and that were last written before
    this process started, so that another live writer's file is never touched."""
    pattern = _stale_pattern(name)
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None or int(match[1]) in (0, os.getpid()):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime < _STARTED and not _alive(int(match[1])):
                    os.remove(entry.path)


def _replaceable(path, in_place=False):
    """os.stat of the file at path, whose owner and mode a save replacing it
    keeps, or None when there is none. Refuses (IsADirectoryError,
    ValueError, PermissionError) a directory, a file the user cannot write
    (or one without any write permission: a root user could still replace
    it, but its mode says not to) and, unless it is to be written in place,
    a path that is not a regular file (a device, a FIFO: renaming over it
    would replace the node itself)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file where a directory should be
        return None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "it is a directory", path)
    regular = stat.S_ISREG(info.st_mode)
    if not regular and not in_place:
        raise _not_regular(path, info.st_mode, "replace")
    if (regular and not info.st_mode & 0o222) or not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only: refusing to replace it", path)
    return info


def _keep_owner_and_mode(path, replaced):
    """Give the file at path the group, owner and mode of the file it
    replaces (os.stat result replaced): a model shared through its group
    (0o660) stays shared with that group, a private one stays private.
    Ownership is kept where the user may set it (a group the user is in;
    any owner for root), left as created otherwise; the mode is set last,
    as a change of owner clears set-id bits."""
    if hasattr(os, "chown"):  # not on Windows
        for owner, group in ((-1, replaced.st_gid), (replaced.st_uid, -1)):
            with contextlib.suppress(PermissionError):
                os.chown(path, owner, group)
    os.chmod(path, stat.S_IMODE(replaced.st_mode))


def _create_temporary(directory, name, path):
    """(path, descriptor) of a new temporary file for a write to name in
    directory (path as the caller gave it, for messages). O_EXCL: never
    write through a file (or link) someone else put there; the 0o666 mode
    lets the kernel apply the umask, as open() would. An OSError names path
    and says what failed (the hidden name alone would puzzle)."""
    temporary = os.path.join(directory, _temporary_name(name))
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            size = len(os.fsencode(name))
            added = len(os.fsencode(os.path.basename(temporary))) - size
            try:
                limit = f" (the file system allows {os.pathconf(directory, 'PC_NAME_MAX')})"
            except (OSError, ValueError, AttributeError):  # no such query here
                limit = ""
            raise OSError(errno.ENAMETOOLONG, f"the name is too long to save: {size} bytes, and the temporary "
                          f"file written first adds {added}{limit}", path) from None
        raise OSError(exc.errno, f"cannot create a file in {directory} ({exc.strerror})", path) from None
    return temporary, handle


def write_atomically(path, write):
    """Write a file so that a failure midway (a crash, a full disk, Ctrl-C)
    leaves any old file at path as it was: write(f) fills a temporary binary
    file in the same directory, which is flushed to disk and then renamed
    over path. A new file gets the usual permissions (0o666 less the umask);
    a file replaced keeps its own, and its owner and group where the user
    may set them. A read-only file, a directory or a non-regular file at
    path is refused (see check_output_path). Stale temporaries of earlier
    saves to path, killed midway, are removed first.

    Inputs:
    - path: the file to write
    - write: callable(f) writing the contents to the binary file object f
    """
    path = os.fspath(path)
    replaced = _replaceable(path)
    directory, name = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(directory, name)
    temporary, handle = _create_temporary(directory, name, path)
    try:
        with os.fdopen(handle, "wb") as f:
            if replaced is not None:
                _keep_owner_and_mode(temporary, replaced)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def check_output_path(path, replaced=True, *, what=None):
    """Raise now what a write to path would raise at the end of a long run.

    Refuses a name ending in a separator, a directory, a file the user
    cannot write, a directory that does not exist or where no file can be
    created, and a name too long once the temporary name's characters are
    added. replaced: the file will be written by write_atomically (which
    needs the directory and refuses non-regular files); False: it will be
    opened and written in place (a FIFO or /dev/stdout is then fine).
    Creates and removes a file beside path to know (the only sure test of
    the directory's permissions, file system and name length).

    Raises OSError (or ValueError, for a special file to be replaced) whose
    message says what is wrong; with what (the option or argument naming
    path, e.g. "--save"), a ValueError naming both, ready to print as a
    command's one-line error: "cannot write PATH (--save): REASON".
    """
    try:
        _check_output_path(os.fspath(path), replaced)
    except (OSError, ValueError) as exc:
        if what is None:
            raise
        words = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot write {os.fspath(path)} ({what}): {words}") from None


def _check_output_path(path, replaced):
    """check_output_path's checks, raising the OSError or ValueError a write would."""
    if path.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        raise IsADirectoryError(errno.EISDIR, "the name ends with a separator: a file name is needed", path)
    directory, name = os.path.split(os.path.abspath(path))
    exists = _replaceable(path, in_place=not replaced) is not None
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(errno.ENOTDIR, f"{directory} is not a directory", path)
        raise FileNotFoundError(errno.ENOENT, f"directory {directory} does not exist", path)
    if exists and not replaced:
        return  # written in place: the directory plays no part
    if replaced:
        probe, handle = _create_temporary(directory, name, path)
    else:
        probe = path
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create a file in {directory} ({exc.strerror})", path) from None
    os.close(handle)
    os.remove(probe)


# ---------------------------------------------------------------- JSON descriptions

def write_json(path, value):
    """Write value as indented JSON to path, atomically (see write_atomically)."""
    text = json.dumps(value, indent=1)
    write_atomically(path, lambda f: f.write(text.encode()))


class NotJSONError(ValueError):
    """A file that read_json read is not a JSON document of a sane size."""


def read_json(path, max_bytes):
    """The parsed JSON of the regular file path, refused (NotJSONError) when
    larger than max_bytes, nested too deep for the parser, or not valid
    JSON (bad UTF-8, an integer of too many digits), before any of it is
    used. Errors opening the file (open_regular's) propagate."""
    with open_regular(path) as f:
        text = f.read(max_bytes + 1)
    if len(text) > max_bytes:
        raise NotJSONError(f"larger than {max_bytes // 1024} KiB")
    try:
        return json.loads(text)
    except RecursionError:
        raise NotJSONError("JSON nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of too many digits
        raise NotJSONError(f"not valid JSON: {exc}") from None


# ---------------------------------------------------------------- parameter files

FORMATS = ("safetensors", "npz")
# The __metadata__ entry of a safetensors file fastfc writes: the SHA-256 of
# its arrays (parameters_digest), checked on loading, as the format itself
# has no checksum (a .npz has zip's CRC-32).
_DIGEST_KEY = "fastfc.sha256"


def file_format(path):
    """The format save_arrays writes to path: 'npz' for a name ending in .npz
    (any case), else 'safetensors'."""
    return "npz" if os.fspath(path).lower().endswith(".npz") else "safetensors"


def save_arrays(path, arrays):
    """Write arrays (dict name -> array) to path, atomically (see
    write_atomically): as safetensors, with their SHA-256 in its metadata,
    or as an uncompressed .npz for a name ending in .npz (file_format).
    path is used as given (no extension is appended)."""
    if file_format(path) == "npz":
        write_atomically(path, lambda f: np.savez(f, **arrays))
        return
    from safetensors.numpy import save
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    data = save(contiguous, metadata={"format": "np", _DIGEST_KEY: parameters_digest(contiguous)})
    write_atomically(path, lambda f: f.write(data))


def parameters_digest(arrays):
    """SHA-256 (hex) of arrays (dict name -> array): names, dtypes, shapes and
    values, in name order; the same for a file's arrays as for the model's
    they were loaded into, whatever their memory order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


# numpy's .npy header readers trust the header's length field (up to 4 GiB in
# version 2.0) and read that much before checking it, so headers are parsed
# from a bounded prefix of each member. 10000 is numpy's own max_header_size.
_MAX_NPY_HEADER = 10_000
_NPY_PREFIX = np.lib.format.MAGIC_LEN + 4 + _MAX_NPY_HEADER  # magic, version, length, header
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}
# What np.savez and np.savez_compressed write; anything else (bzip2, lzma,
# encryption) is refused before zipfile tries it.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0
_ZIP_MAGIC = b"PK\x03\x04"
# The end of central directory record (signature, disk numbers, entries on
# this disk, total entries, directory size and offset, comment length), its
# zip64 locator and record, as the zip format (PKWARE APPNOTE 4.3.14-16) lays them out.
_END_RECORD = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_RECORD_SIGNATURE = b"PK\x06\x06"
_MAX_ZIP_COMMENT = 0xFFFF
# Members beyond the expected ones that are still listed by zipfile (and named
# in the error); more than that are refused from the entry count alone.
_EXTRA_MEMBERS_LISTED = 64
# The central directory bytes one member may take: 46 fixed, its name (a
# parameter's, under 20 characters), extra fields (zip64 sizes, times:
# under 100) and a comment (none from np.savez); generous for other writers.
_ZIP_DIRECTORY_ENTRY_BYTES = 1024
# Deflate's largest ratio is about 1032:1 (RFC 1951's longest match, 258
# bytes, in under 2 bits); a member declaring more is lying about its size.
_MAX_DEFLATE_RATIO = 1032
_NAMES_SHOWN = 5  # names an error lists before saying how many more
# What zipfile, zlib and numpy's header parser raise on damaged or hostile
# bytes (OSError: zipfile seeks wherever a damaged directory points, EINVAL
# when that is before the start). The file itself is opened outside their
# reach, so a missing, unreadable or directory path keeps its
# FileNotFoundError, PermissionError or IsADirectoryError.
_DAMAGE = (zipfile.BadZipFile, EOFError, OSError, ValueError, OverflowError, NotImplementedError,
           zlib.error, struct.error)
_READ_CHUNK = 1 << 20  # bytes of a member read at a time


class MismatchError(ValueError):
    """A sound parameter file that does not fit the model (its names, shapes
    or dtypes): load_arrays reports its message as it is, not as damage."""


def load_arrays(path, expected, read_data=True):
    """The arrays of the safetensors or .npz file at path (told apart by
    content), checked against expected (dict name -> array): the same names,
    shapes and dtypes, else a MismatchError (a ValueError) naming the first
    mismatch, and at most a few names. A damaged or hostile file (truncated,
    corrupted, neither format, holding Python objects, a FIFO or device) is a
    ValueError naming path. Never unpickles, and allocates no more than
    expected's arrays and a bounded header: for safetensors, the header's
    declared length is checked against what expected's names need before
    the library parses it, each tensor's shape and dtype before its data is
    read, and the SHA-256 fastfc saved with the arrays after; for .npz, the
    number of members from the zip's end record before its directory is
    parsed, and each member's shape and dtype from its .npy header (read
    from a 10 KB prefix) before its data is read.
    read_data=False checks the names and headers only (expected's values
    need only .shape and .dtype) and returns None.
    Returns dict name -> array."""
    path = os.fspath(path)
    with open_regular(path) as f:
        start = f.read(len(np.lib.format.MAGIC_PREFIX))
        if start == np.lib.format.MAGIC_PREFIX:
            raise _not_a_parameter_file(path, "it holds a single array, not a file of named parameters")
        if not start.startswith(_ZIP_MAGIC[:2]):
            return _load_safetensors(f, path, expected, read_data)
        try:
            _check_zip_directory(f, path, expected)
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                return _read_npz(archive, expected, path, read_data)
        except MismatchError:
            raise
        except _DAMAGE as exc:
            raise _not_a_parameter_file(path, exc) from None


def _check_zip_directory(f, path, expected):
    """MismatchError when the zip file f's end record declares more members
    than expected's names and a few more, or a central directory larger
    than that many entries take: zipfile parses the whole directory (its
    size, not the count, bounds the work: a count can lie), seconds and
    hundreds of MB for hundreds of thousands of members."""
    entries, directory_bytes = _zip_directory_size(f)
    allowed = len(expected) + _EXTRA_MEMBERS_LISTED
    if entries is not None and entries > allowed:
        raise MismatchError(f"{path} does not match the model: it holds {entries} members, "
                            f"the model has {len(expected)} parameters ({_names(list(expected))})")
    if directory_bytes is not None and directory_bytes > allowed * _ZIP_DIRECTORY_ENTRY_BYTES:
        raise MismatchError(f"{path} does not match the model: its zip directory takes {directory_bytes} "
                            f"bytes, more than {allowed} members need, the model has "
                            f"{len(expected)} parameters ({_names(list(expected))})")


def _zip_directory_size(f):
    """(entries, bytes) of the central directory the zip file f's end record
    (or zip64 end record) declares, or (None, None) when it has none (then
    not a zip: zipfile says so)."""
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - _END_RECORD.size - _MAX_ZIP_COMMENT)
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END_RECORD.size:
        return None, None
    entries, directory_bytes = _END_RECORD.unpack_from(tail, at)[4:6]
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == _ZIP64_LOCATOR_SIGNATURE:
        record_offset = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
        f.seek(record_offset)
        record = f.read(_ZIP64_RECORD.size)
        if len(record) == _ZIP64_RECORD.size and record[:4] == _ZIP64_RECORD_SIGNATURE:
            entries, directory_bytes = _ZIP64_RECORD.unpack(record)[7:9]
    return entries, directory_bytes


def _names(names):
    """The first few names of a list, then how many more."""
    shown = ", ".join(map(repr, names[:_NAMES_SHOWN]))
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def _not_a_parameter_file(path, reason):
    return ValueError(f"{path} is not a parameter file written by save ({reason})")


def _check_names(path, names, expected):
    """MismatchError unless the file's names are expected's."""
    missing = [name for name in expected if name not in names]
    unexpected = sorted(set(names) - set(expected))
    if missing or unexpected:
        raise MismatchError(f"{path} does not match the model: "
                            + "; ".join(filter(None, [
                                missing and f"missing parameters [{_names(missing)}]",
                                unexpected and f"unexpected parameters [{_names(unexpected)}]"])))


def _check_array(path, name, shape, dtype, want):
    """MismatchError unless the file's shape and dtype of name are want's."""
    if shape != want.shape:
        raise MismatchError(f"parameter {name!r} has shape {shape} in {path} but "
                            f"{want.shape} in the model")
    if dtype != want.dtype:
        raise MismatchError(f"parameter {name!r} is {dtype} in {path} but "
                            f"{want.dtype} in the model")


def _read_npz(archive, expected, path, read_data):
    """load_arrays from the open zipfile archive: MismatchError where the file
    does not fit expected, ValueError (or another _DAMAGE) where it is damaged."""
    # Member names as np.load gives them: np.savez stores "W1" as "W1.npy".
    members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
    _check_names(path, members, expected)
    loaded = {}
    for name, want in expected.items():
        info = members[name]
        if info.compress_type not in _ZIP_METHODS or info.flag_bits & _ZIP_ENCRYPTED:
            raise ValueError(f"member {info.filename!r} is encrypted or compressed in a way "
                             "np.savez never writes")
        with archive.open(info) as member:
            head = io.BytesIO(member.read(_NPY_PREFIX))
            shape, fortran_order, dtype = _read_npy_header(head, info.filename)
            _check_array(path, name, shape, dtype, want)
            _check_member_size(info, head.tell() + dtype.itemsize * math.prod(shape))
            if not read_data:
                continue
            loaded[name] = _read_array_data(head, member, shape, fortran_order, dtype,
                                            f"member {info.filename!r}")
    return loaded if read_data else None


def _check_member_size(info, needed):
    """ValueError unless the zip member info declares the needed bytes (its
    .npy header and data) and is stored, or compressed no further than
    deflate can: checked before the data's array is allocated, so that a
    header declaring gigabytes in a small file (and a description
    declaring the same) cannot size an allocation."""
    if info.file_size != needed:
        raise ValueError(f"member {info.filename!r} holds {info.file_size} bytes, its .npy header "
                         f"describes {needed}")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
    most = ratio * (info.compress_size + 1)  # + 1: a few bytes of deflate's framing
    if needed > most:
        raise ValueError(f"member {info.filename!r} declares {needed} bytes in {info.compress_size}, "
                         "more than its compression can hold")


# safetensors: an 8-byte little-endian header length, a JSON header
# {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}, the data.
_SAFETENSORS_LENGTH = struct.Struct("<Q")
# The dtypes NumPy has, by their safetensors names (little-endian data).
_SAFETENSORS_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
                       "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8",
                       "F64": "<f8"}
# The header bytes one tensor entry may take (a name, a dtype, a shape of a
# few dimensions and two offsets take under 200), and the fixed part (the
# metadata, fastfc's digest among it). The library itself accepts headers up
# to 100 MB; fastfc refuses more than expected's entries need before that
# much is read and parsed.
_SAFETENSORS_ENTRY_BYTES = 1024
_SAFETENSORS_FIXED_BYTES = 16 << 10


def _load_safetensors(f, path, expected, read_data):
    """load_arrays of a safetensors file (f open at its start, the 8 bytes
    read were not a zip's or .npy's)."""
    f.seek(0)
    prefix = f.read(_SAFETENSORS_LENGTH.size + 1)
    if len(prefix) < _SAFETENSORS_LENGTH.size + 1 or prefix[-1:] != b"{":
        raise _not_a_parameter_file(path, "it is neither safetensors nor an .npz")
    (header_bytes,) = _SAFETENSORS_LENGTH.unpack_from(prefix)
    size = os.fstat(f.fileno()).st_size
    limit = _SAFETENSORS_FIXED_BYTES + _SAFETENSORS_ENTRY_BYTES * (len(expected) + _EXTRA_MEMBERS_LISTED)
    if header_bytes > limit:
        raise _not_a_parameter_file(path, f"its safetensors header declares {header_bytes} bytes, more "
                                          f"than {limit} for {len(expected)} parameters")
    if _SAFETENSORS_LENGTH.size + header_bytes > size:
        raise _not_a_parameter_file(path, f"its safetensors header declares {header_bytes} bytes, "
                                          f"but the file has {size}")
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework="numpy") as archive:
            names = archive.keys()
            _check_names(path, names, expected)
            for name, want in expected.items():
                entry = archive.get_slice(name)
                dtype_name = entry.get_dtype()
                if dtype_name not in _SAFETENSORS_DTYPES:
                    raise ValueError(f"tensor {name!r} is {dtype_name}, which NumPy has no type for")
                _check_array(path, name, tuple(entry.get_shape()),
                             np.dtype(_SAFETENSORS_DTYPES[dtype_name]), want)
            if not read_data:
                return None
            metadata = archive.metadata() or {}
            loaded = {name: archive.get_tensor(name) for name in expected}
    except MismatchError:
        raise
    except (SafetensorError, ValueError, OSError) as exc:
        raise _not_a_parameter_file(path, exc) from None
    saved_digest = metadata.get(_DIGEST_KEY)
    if saved_digest is not None and parameters_digest(loaded) != saved_digest:
        raise _not_a_parameter_file(path, "its tensors do not match the SHA-256 saved with them: "
                                          "the file is damaged")
    return loaded


def _read_array_data(head, stream, shape, fortran_order, dtype, what):
    """The array a .npy header described, read from the rest of the bytes
    file head, then from the binary stream, into an array sized by the
    header (which the caller has checked); ValueError naming what when the
    data is short or followed by more bytes."""
    buffer = np.empty(shape[::-1] if fortran_order else shape, dtype)
    raw = buffer.reshape(-1).view(np.uint8)
    filled = head.readinto(raw)
    # In chunks: zipfile's readinto reads the whole request into a temporary
    # bytes object first, doubling the peak for a big array.
    while filled < raw.size:
        chunk = stream.read(min(_READ_CHUNK, raw.size - filled))
        if not chunk:
            break
        raw[filled:filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
        filled += len(chunk)
    if filled < raw.size:
        raise ValueError(f"{what} holds {filled} of the {raw.size} data bytes its header describes")
    # Reading to the end also makes zipfile verify a member's CRC.
    if head.read(1) or stream.read(1):
        raise ValueError(f"{what} has bytes after its array")
    return buffer.T if fortran_order else buffer


def _read_npy_header(head, filename):
    """(shape, fortran_order, dtype) from the .npy header at the start of the
    bytes file head (member filename); ValueError if it is not one, or if
    it describes Python objects (which would need unpickling)."""
    version = np.lib.format.read_magic(head)
    if version not in _NPY_HEADER_READERS:
        raise ValueError(f"member {filename!r} is .npy version {version[0]}.{version[1]}, "
                         "np.savez writes 1.0 or 2.0 for numbers")
    try:
        shape, fortran_order, dtype = _NPY_HEADER_READERS[version](head, max_header_size=_MAX_NPY_HEADER)
    # Besides its ValueErrors, numpy's parser lets through what tokenize,
    # ast.literal_eval (on a header nested too deep) and np.dtype raise.
    except (SyntaxError, tokenize.TokenError, RecursionError, MemoryError) as exc:
        raise ValueError(f"member {filename!r} has a .npy header numpy cannot parse "
                         f"({type(exc).__name__})") from None
    if dtype.hasobject:
        raise ValueError(f"member {filename!r} holds Python objects, which loading never unpickles")
    return shape, fortran_order, dtype


def read_array(path):
    """The single array of the .npy file at path, read without unpickling
    and without allocating more than the file holds. ValueError naming path
    for an .npz (several arrays), a FIFO or device, a damaged file, or one
    holding Python objects."""
    path = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = io.BytesIO(f.read(_NPY_PREFIX))
        if head.getvalue().startswith(_ZIP_MAGIC):
            raise ValueError(f"{path} is an .npz archive of named arrays, not a single array (.npy)")
        try:
            shape, fortran_order, dtype = _read_npy_header(head, os.path.basename(path))
            data_bytes = size - head.tell()
            if dtype.itemsize * int(np.prod(shape, dtype=object)) != data_bytes:
                raise ValueError(f"its header describes {dtype} of shape {shape}, but {data_bytes} data "
                                 "bytes follow it")
            return _read_array_data(head, f, shape, fortran_order, dtype, "the file")
        except ValueError as exc:
            raise ValueError(f"{path} is not a .npy array file ({exc})") from None
