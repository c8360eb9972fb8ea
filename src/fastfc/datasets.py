"""Data sets in the Solver's format, and the preprocessing that goes with them.

Every loader returns a dict with X_train, y_train, X_val, y_val, X_test, y_test:
images as float32 arrays of shape (N, C, H, W) scaled to [0, 1], labels as
int64 arrays of shape (N,). The validation set is a seeded random part of the
training files; the test set is the data set's own test part (for digits,
which has none, a fixed random part). `classes` keeps some classes, labelled
0..k-1 in the order given, before the validation set is drawn.

    data = load_digits()                        # embedded, no files needed
    data = load_mnist("~/data/fashion-mnist")   # the four IDX files, .gz or not
    data = load_mnist("~/data/fashion-mnist", classes="sneaker,bag", names=FASHION_MNIST_CLASSES)
    data = load_fashion_mnist()                 # from FASHION_MNIST_SYSTEM_DIR (Debian's package)
    data = load_cifar10("~/data/cifar-10-batches-py", classes=("horse", "ship", "truck"))
    data = normalize(data)                      # training mean/std applied to every split
    check_splits(data)                          # every split's samples of one shape (loaders call it)

Nothing here downloads anything: MNIST and CIFAR-10 are read from local copies;
Fashion-MNIST also from where `apt-get install dataset-fashion-mnist` puts it.
The embedded digits are the UCI "Optical Recognition of Handwritten Digits"
data by E. Alpaydin and C. Kaynak (1998), CC BY 4.0 (see fastfc/data/README.md).
"""
import contextlib
import gzip
import importlib.resources
import io
import math
import numbers
import os
import pickle
import pickletools
import zlib

import numpy as np

from ._validation import check_array, check_int, check_seed
from .io import open_regular

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))

# Where Debian's dataset-fashion-mnist package installs the four original
# (gzipped) IDX files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

SPLITS = ("train", "val", "test")

# The digits file has no test part of its own; this generator draws one that
# stays the same whatever `seed` picks as validation set, so test accuracies
# of different seeds are comparable.
_DIGITS_TEST_SEED = 20240601


# ---------------------------------------------------------------- checks

def _check_images(X, name="X"):
    """X as an (N, C, H, W) array, else ValueError/TypeError naming it."""
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of shape (N, C, H, W), got {type(X).__name__}")
    return check_array(name, X, ndim=4, layout="(N, C, H, W)")


def _split_validation(X, y, val_size, seed):
    """Seeded random split of (X, y) into training and validation parts.

    Inputs:
    - X: array of shape (N, ...); y: array of shape (N,)
    - val_size: number of validation samples, 0 <= val_size < N
    - seed: int or None, for the permutation

    Returns (X_train, y_train, X_val, y_val), each part in file order.
    """
    val_size = check_int("val_size", val_size, low=0)
    if val_size >= len(y):
        raise ValueError(f"val_size={val_size} must be smaller than the training set ({len(y)} samples)")
    order = np.random.default_rng(check_seed("seed", seed)).permutation(len(y))
    val, train = np.sort(order[:val_size]), np.sort(order[val_size:])
    return X[train], y[train], X[val], y[val]


def _to_unit_float32(pixels, max_value):
    """uint8/int pixels in 0..max_value as float32 in [0, 1], without a float64 copy."""
    return np.divide(pixels, np.float32(max_value), dtype=np.float32)


# ---------------------------------------------------------------- classes and splits

def class_indices(classes, names):
    """Label indices for `classes`, in the order given.

    Inputs:
    - classes: a comma-separated string, or a sequence of names (from
      `names`, case-insensitive) or indices, e.g. "horse,ship,truck" or (7, 8, 9)
    - names: the data set's class names, in label order

    Returns a list of distinct ints in 0..len(names)-1; ValueError naming the
    unknown or repeated class otherwise.
    """
    if isinstance(classes, str):
        classes = classes.split(",")
    try:
        classes = list(classes)
    except TypeError:
        raise TypeError(f"classes must be a sequence of names or indices, got {classes!r}") from None
    if not classes:
        raise ValueError("classes must name at least one class")
    lowered = [n.lower() for n in names]
    indices = []
    for c in classes:
        if isinstance(c, str) and c.strip().isdigit():
            c = int(c)
        if isinstance(c, numbers.Integral) and not isinstance(c, bool):
            if not 0 <= c < len(names):
                raise ValueError(f"classes: index {c} outside 0..{len(names) - 1}")
            indices.append(int(c))
        elif isinstance(c, str) and c.strip().lower() in lowered:
            indices.append(lowered.index(c.strip().lower()))
        else:
            raise ValueError(f"classes: unknown class {c!r}; known: {', '.join(names)}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"classes: a class is named twice in {classes!r}")
    return indices


def _select_classes(X, y, indices):
    """The samples of the given classes, labelled 0..k-1 in the order of indices."""
    relabel = np.full(max(int(y.max(initial=0)), max(indices)) + 1, -1, dtype=np.int64)
    relabel[indices] = np.arange(len(indices))
    keep = relabel[y] >= 0
    return X[keep], relabel[y[keep]]


def select_classes(data, classes, names=DIGIT_CLASSES):
    """Keep only some classes of every split, relabelled 0..k-1 in the order given.

    Inputs:
    - data: dict with X_train, y_train, X_val, y_val, X_test, y_test
    - classes: as for class_indices, e.g. "horse,ship,truck" or (7, 8, 9)
    - names: the data set's class names, in label order

    Returns a new dict with the same keys. (The loaders' own `classes`
    argument selects before drawing the validation set, so that val_size
    counts images of the kept classes.)
    """
    indices = class_indices(classes, names)
    selected = dict(data)
    for split in SPLITS:
        selected[f"X_{split}"], selected[f"y_{split}"] = _select_classes(
            data[f"X_{split}"], data[f"y_{split}"], indices)
    return selected


def check_splits(data, sample_shape=None):
    """Checks that the splits of a data set fit together, before any training:
    every X split holds samples of one shape, and every y split one label
    (or target row) per sample.

    Inputs:
    - data: dict with any of X_train/y_train, X_val/y_val, X_test/y_test
      (at least one X); other keys are ignored
    - sample_shape: the shape one sample must have (e.g. a saved model's
      input, (1, 28, 28)), or None: that of the first split present

    Returns the shape of one sample, a tuple. Raises ValueError naming the
    split that differs (e.g. 32x32 test images beside 28x28 training
    images), TypeError for a split that is not an array.
    """
    present = [split for split in SPLITS if f"X_{split}" in data]
    if not present:
        raise ValueError(f"data holds no samples: none of {', '.join('X_' + s for s in SPLITS)}")
    # (shape, what it is) every split is compared with
    expected = None if sample_shape is None else (tuple(sample_shape), "sample_shape is")
    for split in present:
        X, y = data[f"X_{split}"], data.get(f"y_{split}")
        for name, array in ((f"X_{split}", X), (f"y_{split}", y)):
            if array is not None and not isinstance(array, np.ndarray):
                raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
        if X.ndim < 2:
            raise ValueError(f"X_{split} must hold samples along its first axis, got shape {X.shape}")
        if expected is None:
            expected = (X.shape[1:], f"those of X_{split} are")
        elif X.shape[1:] != expected[0]:
            raise ValueError(f"X_{split}: samples of shape {X.shape[1:]}, where {expected[1]} "
                             f"{expected[0]}")
        if y is not None and (y.ndim == 0 or len(y) != len(X)):
            raise ValueError(f"y_{split} has shape {y.shape} for the {len(X)} samples of X_{split}")
    return expected[0]


def _make_splits(X, y, X_test, y_test, indices, val_size, seed, max_value):
    """The loaders' common end: keep the classes `indices` (None: all) of the
    training and test parts, split the validation set off the training part,
    check that the splits fit together (check_splits), and scale the pixels
    (0..max_value) to float32 in [0, 1].

    Selecting and splitting before scaling keeps the large copies in bytes.
    """
    if indices is not None:
        X, y = _select_classes(X, y, indices)
        X_test, y_test = _select_classes(X_test, y_test, indices)
    X_train, y_train, X_val, y_val = _split_validation(X, y, val_size, seed)
    check_splits(dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test))
    return dict(X_train=_to_unit_float32(X_train, max_value), y_train=y_train,
                X_val=_to_unit_float32(X_val, max_value), y_val=y_val,
                X_test=_to_unit_float32(X_test, max_value), y_test=y_test)


# ---------------------------------------------------------------- digits

def _read_digits():
    """The embedded digits file as (pixels (1797, 64) int, labels (1797,) int)."""
    resource = importlib.resources.files("fastfc") / "data" / "digits.csv.gz"
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    return table[:, :64], table[:, 64]


def load_digits(val_size=180, test_size=360, seed=0, classes=None):
    """The embedded UCI handwritten digits (1797 images of 8x8, 10 classes).

    Inputs:
    - val_size: number of validation images, drawn with `seed` (after
      selecting the classes)
    - test_size: number of test images, drawn from all ten classes with a
      fixed generator so the test set does not change with `seed` (with
      `classes`, the test set keeps only theirs, so it holds fewer)
    - seed: int or None, for the validation split
    - classes: None for all ten, or the digits to keep (indices or names
      "0".."9"), relabelled 0..k-1 in the order given

    Returns a dict with X_train (N, 1, 8, 8) float32 in [0, 1], y_train (N,)
    int64, and the same for X_val/y_val and X_test/y_test.
    """
    test_size = check_int("test_size", test_size, low=0)
    indices = None if classes is None else class_indices(classes, DIGIT_CLASSES)
    pixels, labels = _read_digits()
    if test_size >= len(labels):
        raise ValueError(f"test_size={test_size} must be smaller than the {len(labels)} digits")
    images = pixels.reshape(-1, 1, 8, 8)
    X_rest, y_rest, X_test, y_test = _split_validation(images, labels, test_size, _DIGITS_TEST_SEED)
    return _make_splits(X_rest, y_rest, X_test, y_test, indices, val_size, seed, max_value=16)


# ---------------------------------------------------------------- MNIST (IDX files)

_IDX_UBYTE = 0x08
_IDX_IMAGES = 3  # dimensions of an image file: (N, rows, cols)
_IDX_LABELS = 1

# Name stems as distributed (MNIST and Fashion-MNIST alike); some mirrors
# write "train-images.idx3-ubyte" with a dot instead of the hyphen.
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _check_directory(path, what):
    """path (str or PathLike, ~ expanded) as an existing directory."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory name, got {path!r}")
    path = os.path.expanduser(os.fspath(path))
    if os.path.isfile(path):
        raise NotADirectoryError(f"{what} path is a file, not the directory holding the files: {path}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} directory not found: {path}")
    return path


def _find_mnist_file(directory, stem):
    """The first of stem, stem.gz and their dotted variants present in directory."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):  # not isfile: a FIFO or device is refused when opened
            return candidate
    raise FileNotFoundError(f"MNIST file not found: {os.path.join(directory, stem)}[.gz]")


# Reads are done in pieces of this many bytes (a decompressed stream is never
# held whole beyond the array it fills).
_READ_CHUNK = 1 << 20
# Deflate cannot expand one compressed byte past 1032 bytes: a gzip file that
# declares more than this many times its size is truncated, whatever it holds.
_GZIP_MAX_RATIO = 1032
# Image files compress far less (MNIST 4.7:1, Fashion-MNIST 1.8:1). A gzip
# file declaring more than this many times its size, and more than
# _GZIP_SMALL_BYTES, is a decompression bomb (4 MiB of gzip can hold 4 GiB
# of zeros): refused before anything is allocated, so that memory stays
# within a multiple of the file's size.
_GZIP_PLAUSIBLE_RATIO = 100
_GZIP_SMALL_BYTES = 64 << 20


@contextlib.contextmanager
def _open_regular(path, what):
    """path opened by fastfc.io.open_regular (a FIFO or device is refused
    before any read); yields (file, size in bytes)."""
    try:
        f = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    with f:
        yield f, os.fstat(f.fileno()).st_size


def _read_exactly(f, out):
    """Fills the bytes of array out from f, a piece at a time; the number of
    bytes read (fewer only at the end of the data)."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:got + _READ_CHUNK])
        if not n:
            break
        got += n
    return got


@contextlib.contextmanager
def _gzip_errors(path):
    """Damaged compressed data read inside the block as a ValueError naming path."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: damaged or truncated gzip file ({exc})") from exc


def _read_idx_header(f, path, ndim, size, compressed):
    """The shape in the header of an IDX file of size bytes, checked (magic
    number, rank, and a data size the file can hold), f left at the data."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if magic[2] != _IDX_UBYTE or magic[3] != ndim:
        expected = (_IDX_UBYTE << 8) | ndim
        raise ValueError(f"{path}: magic number {int.from_bytes(magic, 'big'):#010x}, "
                         f"expected {expected:#010x} (unsigned bytes, {ndim} "
                         f"dimension{'s' if ndim > 1 else ''})")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(sizes[4 * i: 4 * i + 4], "big") for i in range(ndim))
    declared = math.prod(shape)
    room = size * _GZIP_MAX_RATIO if compressed else size - 4 - 4 * ndim
    if declared > room:
        raise ValueError(f"{path}: truncated: header says shape {shape} ({declared} data "
                         f"bytes), the {'compressed ' if compressed else ''}file has {size} "
                         "bytes in all")
    if compressed and declared > max(size * _GZIP_PLAUSIBLE_RATIO, _GZIP_SMALL_BYTES):
        raise ValueError(f"{path}: header says shape {shape} ({declared} data bytes), "
                         f"{declared / size:.0f} times the {size} bytes of the compressed file: "
                         f"image data compresses less than {_GZIP_PLAUSIBLE_RATIO}:1 (a "
                         "decompression bomb?)")
    return shape


@contextlib.contextmanager
def _idx_stream(path, ndim):
    """An IDX file opened and its header read and checked, before any of its
    data: yields (stream positioned at the data, shape). Gzip-compressed
    when path ends in .gz."""
    compressed = path.endswith(".gz")
    with _open_regular(path, "MNIST") as (raw, size), \
            (gzip.GzipFile(fileobj=raw, mode="rb") if compressed
             else contextlib.nullcontext(raw)) as f:
        with _gzip_errors(path):
            shape = _read_idx_header(f, path, ndim, size, compressed)
        yield f, shape


def _read_idx_data(f, path, shape):
    """The data of an IDX file whose header said shape: exactly that many
    bytes, read into the array in pieces, and nothing after them."""
    out = np.empty(shape, dtype=np.uint8)
    with _gzip_errors(path):
        got = _read_exactly(f, out)
        trailing = f.read(1)
    if got < out.size:
        raise ValueError(f"{path}: truncated: header says shape {shape} ({out.size} data "
                         f"bytes), the data ends after {got}")
    if trailing:
        raise ValueError(f"{path}: trailing bytes: header says shape {shape} ({out.size} "
                         "data bytes), more follow")
    return out


def read_idx(path, ndim):
    """An unsigned-byte IDX array (the MNIST file format) of the given rank.

    Inputs:
    - path: file name; gzip-compressed when it ends in .gz
    - ndim: the rank the file must have (3 for images, 1 for labels)

    Returns a uint8 array whose shape is the one in the file header.
    Raises ValueError naming the file on a wrong magic number, a wrong rank,
    or a size that does not match the header (truncated or trailing bytes).
    The header is checked first and exactly the bytes it declares are read
    (a compressed file is never decompressed past them).
    """
    path = os.fspath(path)
    with _idx_stream(path, ndim) as (f, shape):
        return _read_idx_data(f, path, shape)


def _read_mnist(directory):
    """(images (N, 1, rows, cols) uint8, labels (N,) int64) of the training
    and of the test part. Every header is read and checked against the
    others (label counts, the same image size in both parts) before any
    data is, so a mismatched test file is refused before the large reads."""
    paths = {name: _find_mnist_file(directory, stem) for name, stem in _MNIST_FILES.items()}
    with contextlib.ExitStack() as stack:
        opened = {name: stack.enter_context(_idx_stream(
            path, _IDX_LABELS if name.endswith("labels") else _IDX_IMAGES))
            for name, path in paths.items()}
        shapes = {name: shape for name, (_, shape) in opened.items()}
        for part in ("train", "test"):
            n_images, n_labels = shapes[part + "_images"][0], shapes[part + "_labels"][0]
            if n_images != n_labels:
                raise ValueError(f"{paths[part + '_labels']}: {n_labels} labels for the "
                                 f"{n_images} images of {paths[part + '_images']}")
        if shapes["train_images"][1:] != shapes["test_images"][1:]:
            rows, cols = shapes["test_images"][1:]
            raise ValueError(f"{paths['test_images']}: images of {rows}x{cols}, but the training "
                             f"images of {paths['train_images']} are "
                             f"{shapes['train_images'][1]}x{shapes['train_images'][2]}")
        arrays = {name: _read_idx_data(f, paths[name], shape)
                  for name, (f, shape) in opened.items()}
    parts = []
    for part in ("train", "test"):
        labels = arrays[part + "_labels"]
        if labels.size and labels.max() > 9:
            raise ValueError(f"{paths[part + '_labels']}: label {labels.max()} outside 0..9")
        parts.append((arrays[part + "_images"][:, None], labels.astype(np.int64)))
    return parts


def load_mnist(path, val_size=5000, seed=0, classes=None, names=DIGIT_CLASSES):
    """MNIST or Fashion-MNIST from a local directory holding the four IDX files
    (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte, each optionally .gz).

    Inputs:
    - path: the directory
    - val_size: number of training images held out for validation (after
      selecting the classes)
    - seed: int or None, for the validation split
    - classes: None for all ten, or names/indices of the classes to keep,
      relabelled 0..k-1 in the order given
    - names: the class names `classes` may use: DIGIT_CLASSES ("0".."9") or,
      for Fashion-MNIST, FASHION_MNIST_CLASSES

    Returns a dict with X_train (N, 1, 28, 28) float32 in [0, 1], y_train (N,)
    int64, and the same for the val and test splits.
    """
    directory = _check_directory(path, "MNIST")
    indices = None if classes is None else class_indices(classes, names)
    (X, y), (X_test, y_test) = _read_mnist(directory)
    return _make_splits(X, y, X_test, y_test, indices, val_size, seed, max_value=255)


def fashion_mnist_dir():
    """FASHION_MNIST_SYSTEM_DIR when it holds the four files, else None."""
    try:
        for stem in _MNIST_FILES.values():
            _find_mnist_file(FASHION_MNIST_SYSTEM_DIR, stem)
    except FileNotFoundError:
        return None
    return FASHION_MNIST_SYSTEM_DIR


def load_fashion_mnist(path=None, val_size=5000, seed=0, classes=None):
    """Fashion-MNIST (Zalando's 70,000 28x28 clothing images, MIT licence):
    load_mnist with the class names FASHION_MNIST_CLASSES.

    Inputs:
    - path: the directory of the four IDX files; None: FASHION_MNIST_SYSTEM_DIR,
      where `apt-get install dataset-fashion-mnist` (Debian, Ubuntu) puts them
    - val_size, seed, classes: as load_mnist (classes by name or index)

    Returns the dict of load_mnist.
    """
    if path is None:
        path = fashion_mnist_dir()
        if path is None:
            raise FileNotFoundError(
                f"Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_DIR}: install it with "
                f"`apt-get install dataset-fashion-mnist`, or pass the directory of the four IDX files")
    return load_mnist(path, val_size=val_size, seed=seed, classes=classes,
                      names=FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- CIFAR-10 (pickled batches)

_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_IMAGE_SHAPE = (3, 32, 32)


# A real batch holds 10,000 images (data_batch_1..5 and test_batch alike):
# the most a batch file may declare. Its file is 31.0 MB; larger files are
# refused before they are read.
_CIFAR_BATCH_IMAGES = 10000
_CIFAR_MAX_FILE_BYTES = 40 << 20
_CIFAR_PIXELS = math.prod(_CIFAR_IMAGE_SHAPE)
# A real batch pickles as about 30,000 opcodes (10,000 labels, 10,000 file
# names and their memo entries, the array). A pickle builds at most one
# object per opcode, but small ones: without a bound, a 40 MB file of empty
# lists builds 20 million of them (1.2 GB), and one memo index of 2**27
# makes the unpickler allocate and clear a 1 GB memo table. So a batch may
# hold this many opcodes, and memo indices below it.
_CIFAR_MAX_OPCODES = 100_000
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class _BatchArray(np.ndarray):
    """The only arrays a CIFAR batch pickle may rebuild: pickle's BUILD step
    hands NumPy's state (shape, dtype, bytes) to __setstate__, which checks
    it before NumPy allocates anything: a uint8 (N, 3072) image array or
    integer (N,) labels, N <= 10,000, with exactly the bytes that takes in
    the file. (Unchecked, 119 bytes could declare 600 MB of images.)"""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype, _, data = state[-4:]
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(dtype, np.dtype)):
            raise pickle.UnpicklingError("malformed array state")
        images = dtype == np.uint8 and len(shape) == 2 and shape[1] == _CIFAR_PIXELS
        labels = dtype.kind in "iu" and dtype.fields is None and len(shape) == 1
        if not (images or labels) or shape[0] > _CIFAR_BATCH_IMAGES:
            raise ValueError(f"an array of {dtype} and shape {shape}: a CIFAR-10 batch holds a "
                             f"uint8 array of shape (N, {_CIFAR_PIXELS}) and labels (N,), "
                             f"N <= {_CIFAR_BATCH_IMAGES}")
        if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"an array of shape {shape} without its {math.prod(shape)} values")
        super().__setstate__(state)


def _empty_array(subtype, shape, dtype):
    """numpy's _reconstruct as NumPy's own pickles call it: an empty array
    for pickle's BUILD step to fill (see _BatchArray); nothing else."""
    if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
        raise pickle.UnpicklingError("an array not rebuilt the way NumPy pickles arrays")
    return _BatchArray((0,), dtype=np.uint8)


def _integer_dtype(spec, align=False, copy=False):
    """np.dtype for the integer types a batch may hold."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin-1")
    if spec not in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"):
        raise pickle.UnpicklingError(f"refusing dtype {spec!r}: a CIFAR-10 batch holds "
                                     "uint8 images and integer labels")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


# What a pickle naming numpy.ndarray gets: a marker _empty_array accepts,
# not the class itself, which a pickle could call to allocate any size.
_NDARRAY = object()


class _CifarBatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and CIFAR batch arrays, and nothing else.

    A CIFAR batch is a dict of bytes, lists, ints and a uint8 array. The
    array is rebuilt the way NumPy pickles arrays (numpy's _reconstruct,
    ndarray and dtype, then the array's state), through stand-ins that
    accept only what a batch holds (see _BatchArray); a pickle naming any
    other global refuses to load, so a hostile file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _empty_array,
        ("numpy._core.multiarray", "_reconstruct"): _empty_array,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _integer_dtype,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def _cifar_labels(labels, path):
    """labels (a list of ints, or a 1-d integer array) as int64, each in
    0..9, checked before converting (a huge int would overflow int64)."""
    if isinstance(labels, list):
        if not all(type(v) is int for v in labels):
            raise ValueError(f"{path}: 'labels' must be a list of ints")
        if not all(0 <= v <= 9 for v in labels):
            raise ValueError(f"{path}: labels outside 0..9")
    elif isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{path}: labels outside 0..9")
    else:
        raise ValueError(f"{path}: 'labels' must be a list of ints")
    return np.asarray(labels, dtype=np.int64)


def _check_batch_opcodes(content):
    """Walks the pickle in content (bytes) opcode by opcode without building
    anything, refusing more than _CIFAR_MAX_OPCODES opcodes, a memo index at
    or past that bound, and lengths past the end of the data (which the
    unpickler would allocate before finding the data short)."""
    opcodes = pickletools.genops(io.BytesIO(content))
    for count, (opcode, arg, _) in enumerate(opcodes):
        if count >= _CIFAR_MAX_OPCODES:
            raise pickle.UnpicklingError(f"more than {_CIFAR_MAX_OPCODES} pickle opcodes (a "
                                         "batch has about 30,000)")
        if opcode.name in _MEMO_PUTS and int(arg) >= _CIFAR_MAX_OPCODES:
            raise pickle.UnpicklingError(f"memo index {int(arg)} (a batch uses fewer than "
                                         f"{_CIFAR_MAX_OPCODES})")


def _read_cifar_batch(path):
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one python-version batch file."""
    with _open_regular(path, "CIFAR-10") as (f, size):
        if size > _CIFAR_MAX_FILE_BYTES:
            raise ValueError(f"{path}: not a CIFAR-10 batch ({size} bytes; a batch has about "
                             "31 MB)")
        content = f.read(size)
    try:
        _check_batch_opcodes(content)
        # The batches were pickled by Python 2: their str become bytes here.
        batch = _CifarBatchUnpickler(io.BytesIO(content), encoding="bytes").load()
    except Exception as exc:  # truncated or hostile pickles fail in many ways
        raise ValueError(f"{path}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", "labels"} - batch.keys()
    if missing:
        raise ValueError(f"{path}: not a CIFAR-10 batch (no {', '.join(sorted(missing))} entry)")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) \
            else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {described}")
    data = np.asarray(data)  # the base class: _BatchArray is only for loading
    labels = _cifar_labels(batch["labels"], path)
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape((-1,) + _CIFAR_IMAGE_SHAPE), labels


def load_cifar10(path, classes=None, val_size=1000, seed=0):
    """CIFAR-10 from a local copy of its python-version batches (data_batch_1..5
    and test_batch; `path` is that directory or one holding cifar-10-batches-py).

    Inputs:
    - path: the directory
    - classes: None for all ten, or names/indices of the classes to keep, which
      are relabelled 0..k-1 in the order given, e.g. ("horse", "ship", "truck")
    - val_size: number of training images held out for validation (taken
      after selecting the classes)
    - seed: int or None, for the validation split

    Returns a dict with X_train (N, 3, 32, 32) float32 in [0, 1], y_train (N,)
    int64, and the same for the val and test splits.
    """
    directory = _check_directory(path, "CIFAR-10")
    nested = os.path.join(directory, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(directory, _CIFAR_TEST_FILE)) and os.path.isdir(nested):
        directory = nested
    indices = None if classes is None else class_indices(classes, CIFAR10_CLASSES)
    parts = [_read_cifar_batch(os.path.join(directory, name)) for name in _CIFAR_TRAIN_FILES]
    X = np.concatenate([images for images, _ in parts])
    y = np.concatenate([labels for _, labels in parts])
    X_test, y_test = _read_cifar_batch(os.path.join(directory, _CIFAR_TEST_FILE))
    return _make_splits(X, y, X_test, y_test, indices, val_size, seed, max_value=255)


# ---------------------------------------------------------------- preprocessing

def channel_stats(X):
    """Mean and standard deviation of X per channel.

    Inputs:
    - X: images (N, C, H, W), or flattened samples (N, D), which get one
      mean and one std over all features

    Returns (mean, std), float32 arrays of shape (C,) (or (1,)); a std of
    zero (a constant channel) is returned as 1 so dividing by it is harmless.
    """
    if not isinstance(X, np.ndarray) or X.ndim not in (2, 4) or len(X) == 0:
        raise ValueError("X must be a non-empty (N, C, H, W) or (N, D) array")
    axes = (0, 2, 3) if X.ndim == 4 else None
    mean = np.atleast_1d(X.mean(axis=axes, dtype=np.float64))
    std = np.atleast_1d(X.std(axis=axes, dtype=np.float64))
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(X, mean, std):
    """(X - mean) / std with per-channel mean and std as from channel_stats.

    Inputs:
    - X: (N, C, H, W) or (N, D) array
    - mean, std: arrays of shape (C,), or (1,) for (N, D) input

    Returns a new array of X's dtype.
    """
    mean = np.asarray(mean, dtype=X.dtype).reshape(-1)
    std = np.asarray(std, dtype=X.dtype).reshape(-1)
    if X.ndim == 4:
        if mean.shape != (X.shape[1],) or std.shape != (X.shape[1],):
            raise ValueError(f"mean and std must have one value per channel ({X.shape[1]}), "
                             f"got {mean.size} and {std.size}")
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    return (X - mean) / std


def normalize(data, mean=None, std=None):
    """Standardize every split with the training set's per-channel statistics.

    Inputs:
    - data: dict with X_train, y_train, X_val, y_val, X_test, y_test
    - mean, std: statistics to use instead of the training set's (e.g. those
      a saved model was trained with)

    Returns a new dict: the X arrays standardized, the labels unchanged, and
    the statistics used under "mean" and "std". Splits whose samples differ
    in shape are refused first (see check_splits).
    """
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together")
    check_splits(data)
    if mean is None:
        mean, std = channel_stats(data["X_train"])
    normalized = dict(data, mean=mean, std=std)
    for split in SPLITS:
        if f"X_{split}" in data:
            normalized[f"X_{split}"] = standardize(data[f"X_{split}"], mean, std)
    return normalized


def flatten(data):
    """A new dict with every X array reshaped to (N, D), for fully-connected models."""
    flat = dict(data)
    for split in SPLITS:
        if f"X_{split}" in data:
            X = data[f"X_{split}"]
            flat[f"X_{split}"] = X.reshape(len(X), -1)
    return flat


def random_flip(X, rng, p=0.5):
    """Mirror each image left-right with probability p.

    Inputs:
    - X: images (N, C, H, W)
    - rng: np.random.Generator
    - p: flip probability

    Returns a new array of the same shape and dtype.
    """
    X = _check_images(X)
    flipped = X.copy()
    chosen = rng.random(len(X)) < p
    flipped[chosen] = X[chosen, :, :, ::-1]
    return flipped


def random_crop(X, rng, padding=4):
    """Pad each image with `padding` zeros on every side and cut out a random
    window of the original size (a random shift by up to `padding` pixels).

    Inputs:
    - X: images (N, C, H, W)
    - rng: np.random.Generator
    - padding: non-negative int

    Returns a new array of the same shape and dtype.
    """
    X = _check_images(X)
    padding = check_int("padding", padding, low=0)
    if padding == 0:
        return X.copy()
    N, C, H, W = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top = rng.integers(0, 2 * padding + 1, size=N)
    left = rng.integers(0, 2 * padding + 1, size=N)
    rows = (top[:, None] + np.arange(H))[:, None, :, None]   # (N, 1, H, 1)
    cols = (left[:, None] + np.arange(W))[:, None, None, :]  # (N, 1, 1, W)
    return padded[np.arange(N)[:, None, None, None], np.arange(C)[None, :, None, None], rows, cols]


def augment(X, rng, flip=True, padding=4):
    """Random flips and crops of a batch: usable as Solver(augment=...).

    Inputs:
    - X: images (N, C, H, W)
    - rng: np.random.Generator
    - flip: mirror half of the images left-right (wrong for digits: use False)
    - padding: crop shift in pixels (0: no crop)

    Returns a new array of the same shape and dtype.
    For other settings pass functools.partial(augment, flip=False, padding=1).
    """
    if flip:
        X = random_flip(X, rng)
    return random_crop(X, rng, padding=padding)
