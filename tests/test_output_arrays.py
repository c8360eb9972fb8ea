"""The out=, dx=, dw=, db= arguments: every forward and backward of
fastfc.functional (and its twin in fastfc.reference) can write its results
into arrays the caller owns, which is how the layers reuse their buffers
from step to step. Writing into them gives the same numbers as new arrays,
returns those very arrays, and anything that would not be what the kernel
allocates itself is refused."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R


SHAPES = dict(x2=(5, 7), w=(7, 4), b=(4,), dout2=(5, 4), x4=(2, 3, 6, 5), dx4=(2, 3, 6, 5),
              wc=(4, 3, 3, 2), bc=(4,), doutc=(2, 4, 6, 6), doutp=(2, 3, 3, 2))


def _inputs(rng, dtype):
    """Random inputs, each at the start of a larger buffer of its own (its
    .base), so that an output overlapping it can be made of any size."""
    return {name: rng.standard_normal(1024).astype(dtype)[:np.prod(shape)].reshape(shape)
            for name, shape in SHAPES.items()}


def _call(M, name, a):
    """(results, names of the output arguments): the results of one function
    of module M, the ones its output arguments stand for, in their order."""
    if name in ("affine_forward", "affine_relu_forward"):
        return (lambda **o: (getattr(M, name)(a["x2"], a["w"], a["b"], **o)[0],)), ("out",)
    if name in ("affine_backward", "affine_relu_backward"):
        cache = getattr(M, name.replace("backward", "forward"))(a["x2"], a["w"], a["b"])[1]
        return (lambda **o: getattr(M, name)(a["dout2"], cache, **o)), ("dx", "dw", "db")
    if name in ("relu", "sigmoid", "tanh"):
        return (lambda **o: (getattr(M, f"{name}_forward")(a["x4"], **o)[0],)), ("out",)
    if name in ("relu_backward", "sigmoid_backward", "tanh_backward"):
        cache = getattr(M, name.replace("backward", "forward"))(a["x4"])[1]
        return (lambda **o: (getattr(M, name)(a["dx4"], cache, **o),)), ("dx",)
    if name in ("dropout", "dropout_eval"):
        train = name == "dropout"
        return (lambda **o: (M.dropout_forward(a["x4"], 0.3, train, seed=7, **o)[0],)), ("out",)
    if name in ("dropout_backward", "dropout_eval_backward"):
        cache = M.dropout_forward(a["x4"], 0.3, name == "dropout_backward", seed=7)[1]
        return (lambda **o: (M.dropout_backward(a["dx4"], cache, **o),)), ("dx",)
    if name == "conv_forward":
        return (lambda **o: (M.conv_forward(a["x4"], a["wc"], a["bc"], 1, 1, **o)[0],)), ("out",)
    if name == "conv_backward":
        cache = M.conv_forward(a["x4"], a["wc"], a["bc"], 1, 1)[1]
        return (lambda **o: M.conv_backward(a["doutc"], cache, **o)), ("dx", "dw", "db")
    if name.removesuffix("_backward") in NORMS:
        return _norm_call(M, name, a)
    pool = name.split("_")[0]  # max or avg
    if name.endswith("forward"):
        return (lambda **o: (getattr(M, f"{pool}_pool_forward")(a["x4"], 2, 2, 2, **o)[0],)), ("out",)
    cache = getattr(M, f"{pool}_pool_forward")(a["x4"], 2, 2, 2)[1]
    return (lambda **o: (getattr(M, f"{pool}_pool_backward")(a["doutp"], cache, **o),)), ("dx",)


# The normalizations and the input each runs on.
NORMS = {"batchnorm": "x2", "spatial_batchnorm": "x4", "layernorm": "x2", "groupnorm": "x4"}


def _norm_call(M, name, a):
    """The forward (name) or backward (name_backward) of a normalization; the
    batchnorms get fresh running statistics each call (they are updated in place)."""
    kind = name.removesuffix("_backward")
    x_name = NORMS[kind]
    x = a[x_name]
    c = x.shape[1]
    gamma, beta = a["w"].ravel()[:c] + 1, a["w"].ravel()[-c:]

    def forward(**o):
        extra = ((np.zeros(c, x.dtype), np.ones(c, x.dtype)) if "batchnorm" in kind
                 else (1,) if kind == "groupnorm" else ())
        return getattr(M, f"{kind}_forward")(x, gamma, beta, *extra, **o)
    if name == kind:
        return (lambda **o: (forward(**o)[0],)), ("out",)
    cache = forward()[1]
    dout = a["dx4"] if x_name == "x4" else a["x2"][::-1].copy()
    return (lambda **o: getattr(M, name)(dout, cache, **o)), ("dx", "dgamma", "dbeta")


CASES = ["affine_forward", "affine_relu_forward", "affine_backward", "affine_relu_backward",
         "relu", "sigmoid", "tanh", "relu_backward", "sigmoid_backward", "tanh_backward",
         "dropout", "dropout_eval", "dropout_backward", "dropout_eval_backward",
         "conv_forward", "conv_backward", "max_pool_forward", "max_pool_backward",
         "avg_pool_forward", "avg_pool_backward",
         *NORMS, *[f"{kind}_backward" for kind in NORMS]]


@pytest.mark.parametrize("module", [F, R], ids=["functional", "reference"])
@pytest.mark.parametrize("case", CASES)
def test_results_written_into_the_given_arrays(rng, dtype, module, case):
    call, names = _call(module, case, _inputs(rng, dtype))
    fresh = call()
    given = {n: np.full_like(r, np.nan) for n, r in zip(names, fresh)}
    written = call(**given)
    for n, got, want in zip(names, written, fresh):
        assert got is given[n], n
        np.testing.assert_array_equal(got, want, err_msg=n)
    again = call(**given)  # the same arrays, overwritten (not accumulated into)
    for got, want in zip(again, fresh):
        np.testing.assert_array_equal(got, want)


def _bad_outputs(like, overlapping):
    wide = np.empty(like.shape[:-1] + (2 * like.shape[-1],), like.dtype)
    read_only = np.empty_like(like)
    read_only.flags.writeable = False
    return [
        (np.empty(like.shape + (1,), like.dtype), ValueError, "shape"),
        (np.empty(like.shape, np.float32 if like.dtype == np.float64 else np.float64), ValueError, "float"),
        (wide[..., ::2], ValueError, "C-contiguous"),
        (read_only, ValueError, "writeable"),
        (overlapping, ValueError, "overlaps"),
        (like.tolist(), TypeError, "NumPy array"),
    ]


# What each case reads, to build an output that overlaps an input.
READS = {case: NORMS[case] if case in NORMS
         else "x2" if NORMS.get(case.removesuffix("_backward")) == "x2"  # and its cache
         else ("x2" if "forward" in case else "dout2") if case.startswith("affine")
         else "doutc" if case == "conv_backward"
         else "doutp" if case in ("max_pool_backward", "avg_pool_backward")
         else "dx4" if case.endswith("backward")
         else "x4"
         for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_bad_output_arrays_are_refused(rng, case):
    inputs = _inputs(rng, np.float64)
    call, names = _call(F, case, inputs)
    fresh = call()
    for index, name in enumerate(names):
        like = fresh[index]
        # an array of the right shape and dtype over the memory of an input
        # the call reads (x, or dout for a backward pass)
        overlapping = inputs[READS[case]].base[:like.size].reshape(like.shape)
        for bad, error, match in _bad_outputs(like, overlapping):
            with pytest.raises(error, match=match):
                call(**{name: bad})


@pytest.mark.parametrize("module", [F, R], ids=["functional", "reference"])
@pytest.mark.parametrize("name", ["affine_backward", "conv_backward"])
def test_dx_without_compute_dx_is_refused(rng, module, name):
    call, _ = _call(module, name, _inputs(rng, np.float64))
    dx = call()[0]
    with pytest.raises(ValueError, match="compute_dx"):
        call(compute_dx=False, dx=np.empty_like(dx))
