"""A saved model: MODEL.safetensors (the parameters; MODEL.npz for a name
ending in .npz) and MODEL.json (the network, data set, classes, normalisation
and the parameters' SHA-256, which ties the two files together); every field
of the JSON is checked before it is used."""
import itertools
import math
import os
import re
import sys
import types
import unicodedata

import numpy as np

from ..io import MismatchError, NotJSONError, load_arrays, parameters_digest, read_json, write_json
from ..models import layer_plan as layer_plan_of
from .options import DATASETS, DTYPES, MODEL_DEFAULTS, MODELS, CommandError
from .outputs import reason


SPEC_FORMAT = "fastfc-cli-model"
# Version 2 added the parameters' digest, pixel_max and input_range.
SPEC_VERSION = 2
READABLE_SPEC_VERSIONS = (1, 2)
# The value of a white pixel in each data set's files (the loaders divide by it).
RAW_PIXEL_MAX = {"digits": 16, "mnist": 255, "fashion-mnist": 255, "cifar10": 255}
# Bounds on what a model description may hold, far above any real one: a
# hostile file is refused before its numbers size anything.
MAX_SPEC_BYTES = 1 << 20
MAX_SIZE = 2**31 - 1  # any size: widths, filters, classes, image sides
MAX_LAYERS = 1024
MAX_NAME = 1024  # characters of a class name
MAX_PATH = 4096


def model_spec(args, data, class_names):
    """The JSON-able description a saved model is rebuilt from (save_model
    adds the normalisation statistics and the parameters' digest)."""
    defaults = MODEL_DEFAULTS[args.model]
    return dict(
        format=SPEC_FORMAT, version=SPEC_VERSION, model=args.model,
        input_shape=list(data["X_train"].shape[1:]), num_classes=len(class_names),
        hidden=list(args.hidden if args.hidden is not None else defaults["hidden"]),
        filters=list(args.filters if args.filters is not None else defaults["filters"])
        if args.model == "cnn" else [],
        kernel_size=args.kernel_size, dropout=args.dropout, dtype=args.dtype, normalize=args.normalize,
        dataset=args.dataset, classes=list(class_names) if args.classes is not None else None,
        class_names=list(class_names), val_size=args.val_size, seed=args.seed,
        # So that evaluate/predict find the data again without --data-dir.
        data_dir=os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir else None,
        # So that predict scales images from files as the training images were.
        pixel_max=RAW_PIXEL_MAX[args.dataset],
        input_range=[float(data["X_train"].min()), float(data["X_train"].max())],
    )


def layer_plan(spec):
    """The layers build_model makes for a spec, without making them
    (fastfc.models.layer_plan's list). CommandError when the conv-pool
    blocks do not fit the images."""
    try:
        return layer_plan_of(spec["input_shape"], spec["hidden"], spec["num_classes"],
                             spec["filters"] if spec["model"] == "cnn" else (), spec["kernel_size"], spec["dropout"])
    except ValueError as exc:
        raise CommandError(f"--filters/--kernel-size: {len(spec['filters'])} conv-pool blocks do not fit "
                           f"{spec['input_shape'][1]}x{spec['input_shape'][2]} images ({exc})") from None


def parameter_shapes(plan):
    """dict name -> shape of the parameters of a layer_plan's network, named
    as Sequential names them (W1, b1 for the first layer with parameters, ...)."""
    shapes = {}
    weighted = [(kind, sizes) for kind, sizes in plan if kind in ("conv", "linear")]
    for index, (kind, sizes) in enumerate(weighted, 1):
        in_size, out_size = sizes[:2]
        if kind == "conv":  # filters (out_channels, in_channels, k, k)
            shapes[f"W{index}"] = (out_size, in_size, sizes[2], sizes[2])
        else:  # a matrix (in_features, out_features), as the course's W1 (D, H)
            shapes[f"W{index}"] = (in_size, out_size)
        shapes[f"b{index}"] = (out_size,)
    return shapes


# Arrays the optimizer keeps per parameter, besides the parameter itself, its
# gradient and the Solver's best copy.
OPTIMIZER_STATE_COPIES = {"sgd": 0, "sgd_momentum": 1, "rmsprop": 1, "adam": 2, "adamw": 2,
                          "adagrad": 1}


def memory_limit():
    """Bytes this process may use as far as the system says: the least of the
    physical memory, the cgroup's limit (a container's) and what RLIMIT_AS
    leaves above what the process maps now; None when none is known."""
    limits = []
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        limits.append(page * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        page = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():  # "max": no limit
            limits.append(int(text))
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and page is not None:
            with open("/proc/self/statm") as f:
                mapped = int(f.read().split()[0]) * page
            limits.append(max(soft - mapped, 0))
    except (ImportError, OSError, ValueError):  # no resource module or no /proc
        pass
    return min(limits) if limits else None


def check_model_size(spec, optimizer=None, doing="training"):
    """CommandError, before anything is allocated, when doing (words) with
    the spec's network needs more memory than memory_limit() allows: copies
    of the parameters, training with optimizer (an UPDATE_RULES name) keeps
    the parameters, their gradients, the best so far and the optimizer's
    state (OPTIMIZER_STATE_COPIES); loading (optimizer None) two: the model
    and the file's."""
    count = sum(math.prod(shape) for shape in parameter_shapes(layer_plan(spec)).values())
    copies = 2 if optimizer is None else 3 + OPTIMIZER_STATE_COPIES[optimizer]
    needed = copies * count * np.dtype(spec["dtype"]).itemsize
    available = memory_limit()
    if available is not None and needed > available:
        raise CommandError(f"the network ({describe_model(spec)}) has {count:,} parameters: {doing} "
                           f"needs at least {needed / 2**30:,.1f} GiB of memory, this process may "
                           f"use {available / 2**30:,.1f} GiB (make --hidden or --filters smaller)")


def build_model(spec, seed):
    """A fastfc.models.Sequential with softmax loss built from a spec; the
    layers are initialised (and dropout masks drawn) from seeds derived from
    seed (None: unseeded, for a model whose parameters are loaded next)."""
    from .. import layers
    from ..models import Sequential

    layer_seeds = itertools.count(seed * 1000) if seed is not None else itertools.repeat(None)
    dtype = np.dtype(spec["dtype"]).type
    make = {
        "conv": lambda c_in, c_out, k, padding: layers.Conv2d(c_in, c_out, k, padding=padding,
                                                             seed=next(layer_seeds), dtype=dtype),
        "relu": layers.ReLU, "pool": layers.MaxPool2d, "flatten": layers.Flatten,
        "linear": lambda d_in, d_out: layers.Linear(d_in, d_out, seed=next(layer_seeds), dtype=dtype),
        "dropout": lambda p: layers.Dropout(p, seed=next(layer_seeds)),
    }
    return Sequential(*(make[kind](*sizes) for kind, sizes in layer_plan(spec)),
                      loss=layers.SoftmaxCrossEntropy())


def spec_path(model_path):
    """The JSON file holding a saved model's spec: model.safetensors (or model.npz) -> model.json."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def save_model(path, model, spec, statistics):
    """Save the parameters (model.save) and, next to them, the spec, the
    normalisation statistics and the parameters' SHA-256 as JSON: the two
    files are two renames, and the digest makes a pair from different saves
    (a crash between them, two runs saving to one name) a clear error at
    load instead of new parameters read with an old description. Returns
    the files written."""
    spec = dict(spec, mean=None if statistics is None else [float(v) for v in statistics[0]],
                std=None if statistics is None else [float(v) for v in statistics[1]],
                parameters_sha256=parameters_digest(model.params))
    model.save(path)
    sidecar = spec_path(path)
    write_json(sidecar, spec)
    return [os.fspath(path), sidecar]


def load_model(path):
    """(model, spec) from the files save_model wrote, each checked before it
    is used: the description field by field (check_spec), the parameter
    file's headers against the shapes the description implies (before the
    network is allocated), and the loaded parameters against the digest."""
    sidecar = spec_path(path)
    spec = check_spec(read_spec(path, sidecar), sidecar)
    plan = layer_plan(spec)
    dtype = np.dtype(spec["dtype"])
    expected = {name: types.SimpleNamespace(shape=shape, dtype=dtype)
                for name, shape in parameter_shapes(plan).items()}
    try:
        load_arrays(path, expected, read_data=False)
    except FileNotFoundError:
        raise CommandError(f"model file not found: {path}") from None
    except MismatchError as exc:
        raise CommandError(f"{path} does not fit its description {sidecar}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot load the parameters ({reason(exc)})") from None
    # The file's sizes bound the network now (a compressed one up to deflate's ratio): the machine's memory too.
    check_model_size(spec, doing="loading it")
    model = build_model(spec, seed=None)
    try:
        model.load(path)
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: cannot load the parameters ({reason(exc)})") from None
    if spec["parameters_sha256"] is None:
        print(f"fastfc: warning: {sidecar} predates the parameters' SHA-256 (description version 1): that it "
              f"describes these parameters cannot be checked (save the model again to record it)", file=sys.stderr)
    elif parameters_digest(model.params) != spec["parameters_sha256"]:
        raise CommandError(f"{path} and {sidecar} come from different saves (the parameters' SHA-256 is not "
                           f"the one the description records): save the model again")
    return model, spec


def read_spec(path, sidecar):
    """The parsed JSON of a model's sidecar file (not yet checked)."""
    try:
        return read_json(sidecar, MAX_SPEC_BYTES)
    except FileNotFoundError:
        if not os.path.exists(path):
            raise CommandError(f"model file not found: {path}") from None
        raise CommandError(f"{sidecar} not found: it describes the architecture of {path} "
                           "(fastfc train --save writes both)") from None
    except NotJSONError as exc:
        raise CommandError(f"{sidecar}: not a model description ({exc})") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"{sidecar}: cannot read the model description ({reason(exc)})") from None


def _is_int(value, low=0, high=MAX_SIZE):
    """Whether value is an int (not a bool) in [low, high] (high None: no bound)."""
    return (isinstance(value, int) and not isinstance(value, bool) and low <= value
            and (high is None or value <= high))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_list(value, test, length=None, max_length=MAX_LAYERS):
    return (isinstance(value, list) and (len(value) == length if length is not None else len(value) <= max_length)
            and all(map(test, value)))


def _is_name(value):
    """A class name: 1 to MAX_NAME characters of printable text and
    whitespace; no other control, format or surrogate characters (a name
    ends up on terminals, where ESC sequences act and bidi overrides
    reorder text, and in files, where a lone surrogate cannot be written)."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME
            and not any(unicodedata.category(c)[0] == "C" and not c.isspace() for c in value))


def _is_names(value, count):
    """count distinct class names (two alike would make an answer ambiguous)."""
    return _is_list(value, _is_name, count) and len(set(value)) == count


def _is_path(value):
    """A file name the operating system can take (no NUL; encodable)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PATH or "\0" in value:
        return False
    try:
        os.fsencode(value)
    except UnicodeError:
        return False
    return True


def _shown(value, width=60):
    """repr(value), cut to about width characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."


def check_spec(spec, sidecar):
    """spec (parsed JSON) as a model description, every field checked for
    its type, range, finiteness and length (and the shapes it implies kept
    sane), before any of it sizes an allocation or reaches a result; a
    CommandError naming the first bad field otherwise. Version 1
    descriptions (no digest, pixel scale or input range) get the values
    every version 1 model had. Returns the checked spec."""
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise CommandError(f"{sidecar}: not a fastfc model description")
    if spec.get("version") not in READABLE_SPEC_VERSIONS:
        raise CommandError(f"{sidecar}: model description version {_shown(spec.get('version'))}, "
                           f"this fastfc reads versions {', '.join(map(str, READABLE_SPEC_VERSIONS))}")
    spec = dict(spec)

    def require(field, test, what):
        if not test(spec.get(field)):
            raise CommandError(f"{sidecar}: bad model description: {field!r} must be {what}, "
                               f"got {_shown(spec.get(field))}")

    require("model", lambda v: isinstance(v, str) and v in MODELS, f"one of {', '.join(MODELS)}")
    require("dataset", lambda v: isinstance(v, str) and v in DATASETS, f"one of {', '.join(DATASETS)}")
    require("dtype", lambda v: isinstance(v, str) and v in DTYPES, f"one of {', '.join(DTYPES)}")
    require("input_shape", lambda v: _is_list(v, lambda n: _is_int(n, 1), 3), "[channels, height, width]")
    require("num_classes", lambda v: _is_int(v, 2), f"an integer from 2 to {MAX_SIZE}")
    count = spec["num_classes"]
    require("hidden", lambda v: _is_list(v, lambda n: _is_int(n, 1)), "a list of layer widths")
    require("filters", lambda v: _is_list(v, lambda n: _is_int(n, 1)) and (v == [] or spec["model"] == "cnn"),
            "a list of filter counts (empty for an mlp)")
    require("kernel_size", lambda v: _is_int(v, 1), "a positive integer")
    require("dropout", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    require("class_names", lambda v: _is_names(v, count), f"{count} distinct printable class names")
    require("classes", lambda v: v is None or _is_names(v, count), f"null or {count} distinct class names")
    require("val_size", lambda v: v is None or _is_int(v, 1), "null or a positive integer")
    require("seed", lambda v: _is_int(v, 0, None), "a non-negative integer")
    require("data_dir", lambda v: v is None or _is_path(v), "null or a directory name")
    require("normalize", lambda v: isinstance(v, bool), "true or false")
    channels = spec["input_shape"][0]
    if spec["normalize"]:
        require("mean", lambda v: _is_list(v, _is_number, channels), f"{channels} finite numbers")
        require("std", lambda v: _is_list(v, lambda x: _is_number(x) and x > 0, channels),
                f"{channels} finite numbers > 0")
    else:
        require("mean", lambda v: v is None, "null (the model is not normalized)")
        require("std", lambda v: v is None, "null (the model is not normalized)")
    if spec["version"] == 1:
        spec.update(pixel_max=RAW_PIXEL_MAX[spec["dataset"]], input_range=[0.0, 1.0], parameters_sha256=None)
        return spec
    require("pixel_max", lambda v: _is_number(v) and v > 0, "a number > 0")
    require("input_range", lambda v: _is_list(v, _is_number, 2) and v[0] < v[1], "[low, high] with low < high")
    require("parameters_sha256", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v),
            "64 hexadecimal digits")
    return spec


def describe_model(spec):
    """'mlp 64-256-256-10' or 'cnn 1x8x8 conv32-pool 128-10'."""
    widths = "-".join(str(w) for w in spec["hidden"] + [spec["num_classes"]])
    if spec["model"] == "mlp":
        return f"mlp {int(np.prod(spec['input_shape']))}-{widths}"
    shape = "x".join(str(s) for s in spec["input_shape"])
    blocks = " ".join(f"conv{f}-pool" for f in spec["filters"])
    return f"cnn {shape} {blocks} {widths}"


def model_outputs(option, path):
    """The two files a saved model is (see save_model), as check_output_paths
    outputs. CommandError when the description would replace that of a model
    saved under the same name in the other format (m.npz and m.safetensors
    share m.json): that model would be lost."""
    if path is None:
        return []
    description = spec_path(path)
    stem, suffix = os.path.splitext(os.fspath(path))
    for other in {stem + ".npz", stem + ".safetensors"} - {os.fspath(path)}:
        if description != os.fspath(path) and os.path.exists(other) and os.path.exists(description):
            raise CommandError(f"{option} {path}: its description {description} is also that of "
                               f"{other}, which saving would make unloadable; choose another name")
    return [(option, path, True), (f"{option}'s description", description, True)]
