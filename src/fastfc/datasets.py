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
    data = load_cifar10("~/data/cifar-10-batches-py", classes=("horse", "ship", "truck"))
    data = normalize(data)                      # training mean/std applied to every split

Nothing here downloads anything: MNIST and CIFAR-10 are read from local copies.
The embedded digits are the UCI "Optical Recognition of Handwritten Digits"
data by E. Alpaydin and C. Kaynak (1998), CC BY 4.0 (see fastfc/data/README.md).
"""
import gzip
import importlib.resources
import numbers
import os
import pickle
import zlib

import numpy as np

from .io import open_regular

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))

SPLITS = ("train", "val", "test")

# The digits file has no test part of its own; this generator draws one that
# stays the same whatever `seed` picks as validation set, so test accuracies
# of different seeds are comparable.
_DIGITS_TEST_SEED = 20240601


# ---------------------------------------------------------------- checks

def _check_count(value, name):
    """value as a non-negative int; TypeError/ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return int(value)


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return seed


def _check_images(X, name="X"):
    """X as an (N, C, H, W) array, else ValueError/TypeError naming it."""
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of shape (N, C, H, W), got {type(X).__name__}")
    if X.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {X.shape}")
    return X


def _split_validation(X, y, val_size, seed):
    """Seeded random split of (X, y) into training and validation parts.

    Inputs:
    - X: array of shape (N, ...); y: array of shape (N,)
    - val_size: number of validation samples, 0 <= val_size < N
    - seed: int or None, for the permutation

    Returns (X_train, y_train, X_val, y_val), each part in file order.
    """
    val_size = _check_count(val_size, "val_size")
    if val_size >= len(y):
        raise ValueError(f"val_size={val_size} must be smaller than the training set ({len(y)} samples)")
    order = np.random.default_rng(_check_seed(seed)).permutation(len(y))
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


def _make_splits(X, y, X_test, y_test, indices, val_size, seed, max_value):
    """The loaders' common end: keep the classes `indices` (None: all) of the
    training and test parts, split the validation set off the training part,
    and scale the pixels (0..max_value) to float32 in [0, 1].

    Selecting and splitting before scaling keeps the large copies in bytes.
    """
    if indices is not None:
        X, y = _select_classes(X, y, indices)
        X_test, y_test = _select_classes(X_test, y_test, indices)
    X_train, y_train, X_val, y_val = _split_validation(X, y, val_size, seed)
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
    test_size = _check_count(test_size, "test_size")
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
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"MNIST file not found: {os.path.join(directory, stem)}[.gz]")


def _read_file_bytes(path):
    """The whole content of path, un-gzipped when its name ends in .gz."""
    if not path.endswith(".gz"):
        with open_regular(path) as f:
            return f.read()
    try:
        with open_regular(path) as raw, gzip.GzipFile(fileobj=raw) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: damaged or truncated gzip file ({exc})") from exc


def read_idx(path, ndim):
    """An unsigned-byte IDX array (the MNIST file format) of the given rank.

    Inputs:
    - path: file name; gzip-compressed when it ends in .gz
    - ndim: the rank the file must have (3 for images, 1 for labels)

    Returns a uint8 array whose shape is the one in the file header.
    Raises ValueError naming the file on a wrong magic number, a wrong rank,
    or a size that does not match the header (truncated or trailing bytes).
    """
    content = _read_file_bytes(path)
    header_size = 4 + 4 * ndim
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if content[2] != _IDX_UBYTE or content[3] != ndim:
        magic = int.from_bytes(content[:4], "big")
        expected = (_IDX_UBYTE << 8) | ndim
        raise ValueError(f"{path}: magic number {magic:#010x}, expected {expected:#010x} "
                         f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    if len(content) < header_size:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected_size:
        problem = "truncated" if len(content) < expected_size else "trailing bytes"
        raise ValueError(f"{path}: {problem}: header says shape {shape} "
                         f"({expected_size} bytes), file has {len(content)} bytes")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_mnist_part(directory, part):
    """(images (N, 1, rows, cols) uint8, labels (N,) int64) of part 'train' or 'test'."""
    images_path = _find_mnist_file(directory, _MNIST_FILES[part + "_images"])
    labels_path = _find_mnist_file(directory, _MNIST_FILES[part + "_labels"])
    images = read_idx(images_path, _IDX_IMAGES)
    labels = read_idx(labels_path, _IDX_LABELS)
    if len(images) != len(labels):
        raise ValueError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                         f"of {images_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images[:, None], labels.astype(np.int64)


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
    X, y = _read_mnist_part(directory, "train")
    X_test, y_test = _read_mnist_part(directory, "test")
    return _make_splits(X, y, X_test, y_test, indices, val_size, seed, max_value=255)


# ---------------------------------------------------------------- CIFAR-10 (pickled batches)

_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_IMAGE_SHAPE = (3, 32, 32)


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays, and nothing else.

    A CIFAR batch is a dict of bytes, lists, ints and a uint8 array; the array
    is rebuilt by numpy's _reconstruct, ndarray and dtype, the only globals
    this unpickler hands out (a pickle naming any other refuses to load, so a
    hostile file cannot run code).
    """

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's own, whatever its module path
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def _read_cifar_batch(path):
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one python-version batch file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 file not found: {path}")
    with open_regular(path) as f:
        try:
            # The batches were pickled by Python 2: their str become bytes here.
            batch = _NumpyArrayUnpickler(f, encoding="bytes").load()
        except Exception as exc:  # truncated or hostile pickles fail in many ways
            raise ValueError(f"{path}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", "labels"} - batch.keys()
    if missing:
        raise ValueError(f"{path}: not a CIFAR-10 batch (no {', '.join(sorted(missing))} entry)")
    data = batch["data"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != int(np.prod(_CIFAR_IMAGE_SHAPE))):
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) \
            else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {described}")
    labels = batch["labels"]
    if not (isinstance(labels, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels)) \
            and not (isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu"):
        raise ValueError(f"{path}: 'labels' must be a list of ints")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9")
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
    the statistics used under "mean" and "std".
    """
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together")
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
    padding = _check_count(padding, "padding")
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
