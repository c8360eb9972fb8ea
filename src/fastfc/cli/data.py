"""The data sets as the commands load, prepare and evaluate them."""
import os

import numpy as np

from .. import datasets
from .options import CLASS_NAMES, DATASETS, CommandError


def load_data(dataset, data_dir, classes, val_size, seed):
    """The data set's splits (raw [0, 1] images; only `classes`, when given,
    relabelled 0..k-1, with the validation set drawn from them).

    Returns (data dict, tuple of the class names in label order).
    """
    if dataset not in DATASETS:
        raise CommandError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    names = CLASS_NAMES[dataset]
    # Names resolved here, against this data set's own: the loaders then get indices.
    indices = None if classes is None else datasets.class_indices(classes, names)
    if indices is not None and len(indices) < 2:
        raise CommandError(f"--classes {classes}: name at least two classes (a network with one "
                           "class answers it whatever the image)")
    options = dict(classes=indices, seed=seed)
    if val_size is not None:
        options["val_size"] = val_size
    if dataset == "digits":
        if data_dir is not None:
            raise CommandError("--data-dir is for mnist, fashion-mnist and cifar10: digits is embedded")
        data = datasets.load_digits(**options)
    elif data_dir is None:
        extra = (f", or `apt-get install dataset-fashion-mnist` (into {datasets.FASHION_MNIST_SYSTEM_DIR})"
                 if dataset == "fashion-mnist" else "")
        raise CommandError(f"--data-dir is required for {dataset} (nothing is downloaded): "
                           f"the directory holding its files{extra}")
    elif dataset == "cifar10":
        data = datasets.load_cifar10(data_dir, **options)
    else:
        data = datasets.load_mnist(data_dir, **options)
    if indices is not None:
        names = tuple(names[i] for i in indices)
    return data, names


def resolve_data_dir(dataset, data_dir):
    """data_dir, or for fashion-mnist without one the directory Debian's
    dataset-fashion-mnist package installs (when its files are there)."""
    if data_dir is None and dataset == "fashion-mnist":
        return datasets.fashion_mnist_dir()
    return data_dir


def data_files(dataset, data_dir):
    """The files a data set's loader may read in data_dir, as
    check_output_paths inputs (an output must not overwrite them)."""
    if data_dir is None or dataset not in ("mnist", "fashion-mnist", "cifar10"):
        return []
    directory = os.path.expanduser(data_dir)
    if dataset == "cifar10":
        names = [*datasets._CIFAR_TRAIN_FILES, datasets._CIFAR_TEST_FILE]
        directories = [directory, os.path.join(directory, "cifar-10-batches-py")]
    else:  # the names load_mnist tries: hyphen or dot before idx, gzipped or not
        stems = [variant for stem in datasets._MNIST_FILES.values()
                 for variant in (stem, stem.replace("-idx", ".idx"))]
        names = [stem + suffix for stem in stems for suffix in ("", ".gz")]
        directories = [directory]
    return [(f"a {dataset} file", os.path.join(d, name)) for d in directories for name in names]


def prepare(data, spec_or_args, statistics=None):
    """Standardize (unless switched off) and cast to the model dtype.

    Returns (data dict with X/y of every split, (mean, std) or None)."""
    normalize = spec_or_args["normalize"] if isinstance(spec_or_args, dict) else spec_or_args.normalize
    dtype = spec_or_args["dtype"] if isinstance(spec_or_args, dict) else spec_or_args.dtype
    prepared = {k: data[k] for k in data if k.startswith(("X_", "y_"))}
    if normalize:
        mean, std = statistics if statistics is not None else (None, None)
        normalized = datasets.normalize(prepared, mean=mean, std=std)
        statistics = (normalized.pop("mean"), normalized.pop("std"))
        prepared = normalized
    for key in [k for k in prepared if k.startswith("X_")]:
        prepared[key] = np.ascontiguousarray(prepared[key], dtype=dtype)
    return prepared, statistics if normalize else None


def evaluate_model(model, X, y, batch_size=256):
    """(loss, accuracy) of model on X, y."""
    from .. import evaluate

    return evaluate(model, X, y, batch_size=batch_size)
