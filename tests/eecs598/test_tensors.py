"""fastfc.eecs598's tensor contract: views instead of copies, and a clear
error naming the argument for every tensor a view cannot stand for; torch
stays an optional import."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastfc.eecs598 import Solver, _tensors, reset_seed  # noqa: E402
from fastfc.eecs598.a3_helper import softmax_loss  # noqa: E402
from fastfc.eecs598.convolutional_networks import (  # noqa: E402
    BatchNorm, Conv, DeepConvNet, MaxPool, ThreeLayerConvNet, kaiming_initializer)
from fastfc.eecs598.fully_connected_networks import (  # noqa: E402
    Dropout, FullyConnectedNet, Linear, Linear_ReLU, ReLU, TwoLayerNet, adam, sgd)
from testutil import child_env  # noqa: E402



def linear_inputs(dtype=torch.float32):
    reset_seed(0)
    return torch.randn(4, 6, dtype=dtype), torch.randn(6, 3, dtype=dtype), torch.randn(3, dtype=dtype)


# ---- views, not copies -----------------------------------------------------------------

def test_the_cache_reads_the_input_tensors_in_place():
    x, w, b = linear_inputs()
    _, cache = Linear.forward(x, w, b)
    dout = torch.ones(4, 3)
    _, dw_before, _ = Linear.backward(dout, cache)
    x.mul_(2)  # the kernel saw x's own memory, so its cache sees the change
    _, dw_after, _ = Linear.backward(dout, cache)
    assert torch.allclose(dw_after, 2 * dw_before)


def test_results_are_tensors_over_the_kernels_arrays():
    x, w, b = linear_inputs(torch.float64)
    out, _ = Linear_ReLU.forward(x, w, b)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.is_contiguous()
    loss, dx = softmax_loss(out, torch.tensor([0, 1, 2, 0]))
    assert loss.dim() == 0 and isinstance(loss.item(), float)


def test_model_params_are_views_of_the_model():
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    W1 = model.params["W1"]
    W1.fill_(0.5)  # an in-place edit, as a numerical gradient check makes
    assert torch.all(model.params["W1"] == 0.5)
    model.params["b2"] = torch.tensor([1, 2])  # assignment copies in, cast
    assert model.params["b2"].dtype == torch.float32 and model.params["b2"].tolist() == [1, 2]
    assert W1.data_ptr() == model.params["W1"].data_ptr()


def test_model_input_is_a_view_when_it_has_the_models_dtype():
    X = torch.randn(5, 3)
    assert _tensors.samples(X, np.float32).ctypes.data == X.data_ptr()
    cast = _tensors.samples(X, np.float64)  # the course's X.to(dtype): a copy
    assert cast.dtype == np.float64 and np.array_equal(cast, X.double().numpy())
    transposed = torch.randn(3, 5).t()
    assert np.array_equal(_tensors.samples(transposed, np.float32), transposed.numpy())


def test_update_rules_and_the_solver_update_in_place():
    w, dw = torch.randn(3, 4), torch.randn(3, 4)
    ptr = w.data_ptr()
    next_w, config = adam(w, dw)
    assert next_w is w and w.data_ptr() == ptr and config["m"].shape == w.shape


# ---- refused tensors -------------------------------------------------------------------

def meta(*shape):
    """A tensor on a device other than the CPU (torch's 'meta' device: no GPU needed)."""
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize("call, names", [
    (lambda x, w, b: Linear.forward(x, w, b), "xwb"),
    (lambda x, w, b: Linear_ReLU.forward(x, w, b), "xwb"),
    (lambda x, w, b: ReLU.forward(x), "x"),
    (lambda x, w, b: Dropout.forward(x, {"mode": "train", "p": 0.5}), "x"),
    (lambda x, w, b: BatchNorm.forward(x, b.repeat(2), b.repeat(2), {"mode": "train"}), "x"),
], ids=["linear", "linear_relu", "relu", "dropout", "batchnorm"])
def test_bad_tensors_are_refused_naming_the_argument(call, names):
    x, w, b = linear_inputs()
    args = dict(x=x, w=w, b=b)
    for name in names:
        cases = [
            (meta(*args[name].shape), ValueError, "CPU"),
            (args[name].clone().requires_grad_(), ValueError, "detach"),
            (args[name].double(), TypeError, "same float type"),
            (args[name].half(), TypeError, "float32 or float64"),
            (args[name].to(torch.int64), TypeError, "float32 or float64"),
            (args[name].numpy(), TypeError, "torch.Tensor"),
        ]
        if args[name].dim() == 2:
            cases.append((args[name].t().contiguous().t(), ValueError, "contiguous"))
        for bad, error, words in cases:
            if name == "x" and words == "same float type" and names == "x":
                continue  # a single tensor: float64 is fine
            with pytest.raises(error, match=words) as info:
                call(**dict(args, **{name: bad}))
            assert name in str(info.value)


def test_mixed_float_types_name_both_arguments():
    x, w, b = linear_inputs()
    with pytest.raises(TypeError, match="w is torch.float64 but x is torch.float32"):
        Linear.forward(x, w.double(), b)
    with pytest.raises(TypeError, match="dw"):
        sgd(torch.zeros(3), torch.zeros(3, dtype=torch.float64))


def test_backward_refuses_a_bad_upstream_gradient():
    x, w, b = linear_inputs()
    _, cache = Linear.forward(x, w, b)
    with pytest.raises(ValueError, match="dout.*contiguous"):
        Linear.backward(torch.ones(3, 4).t(), cache)
    with pytest.raises(ValueError, match="dout.*detach"):
        Linear.backward(torch.ones(4, 3, requires_grad=True), cache)


def test_labels_must_be_integer_tensors():
    scores = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="y must be a tensor of integer class labels"):
        softmax_loss(scores, torch.zeros(4))
    with pytest.raises(ValueError, match="y holds label 3"):
        softmax_loss(scores, torch.tensor([0, 1, 2, 3]))


def test_conv_and_pool_dict_parameters_are_checked():
    x = torch.randn(2, 3, 5, 5)
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    with pytest.raises(ValueError, match="conv_param is missing the key 'pad'"):
        Conv.forward(x, w, b, {"stride": 1})
    with pytest.raises(ValueError, match="pool_param has an unknown key 'pool_size'"):
        MaxPool.forward(x, {"pool_size": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ValueError, match="bn_param\\['running_mean'\\] must have shape"):
        BatchNorm.forward(torch.randn(4, 3), torch.ones(3), torch.zeros(3),
                          {"mode": "train", "running_mean": torch.zeros(5)})


@pytest.mark.parametrize("build", [
    lambda **kw: TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2, **kw),
    lambda **kw: FullyConnectedNet([5], input_dim=4, num_classes=2, **kw),
    lambda **kw: ThreeLayerConvNet(input_dims=(1, 6, 6), num_filters=2, filter_size=3, **kw),
    lambda **kw: DeepConvNet(input_dims=(1, 4, 4), num_filters=[2], max_pools=[0], **kw),
], ids=["two_layer", "fully_connected", "three_layer_conv", "deep_conv"])
def test_models_refuse_other_devices_and_dtypes(build):
    for device in ("cuda", "cuda:0", torch.device("meta")):
        with pytest.raises(ValueError, match="fastfc runs on the CPU"):
            build(device=device)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        build(dtype=torch.float16)
    assert build(device=torch.device("cpu")).params["W1"].dtype == torch.float32
    with pytest.raises(ValueError, match="reg must be >= 0"):
        build(reg=-1)


def test_model_loss_checks_its_inputs():
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    with pytest.raises(TypeError, match="X must be a floating-point tensor"):
        model.loss(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="X is on meta"):
        model.loss(meta(2, 4))
    with pytest.raises(TypeError, match="y must be a tensor of integer class labels"):
        model.loss(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(KeyError, match="no parameter 'W3'"):
        model.params["W3"] = torch.zeros(1)
    with pytest.raises(ValueError, match="must have shape"):
        model.params["W1"] = torch.zeros(3, 4)


def test_solver_refuses_other_devices_and_unknown_arguments():
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    data = {"X_train": torch.zeros(6, 4), "y_train": torch.zeros(6, dtype=torch.int64),
            "X_val": torch.zeros(2, 4), "y_val": torch.zeros(2, dtype=torch.int64)}
    with pytest.raises(ValueError, match="fastfc runs on the CPU"):
        Solver(model, data, device="cuda")
    with pytest.raises(ValueError, match='Unrecognized arguments "learning_rate"'):
        Solver(model, data, learning_rate=1e-3)
    with pytest.raises(ValueError, match="X_val and y_val"):
        Solver(model, dict(data, y_val=torch.zeros(3, dtype=torch.int64)))
    with pytest.raises(ValueError, match="data\\['X_train'\\] is on meta"):
        Solver(model, dict(data, X_train=meta(6, 4)))


def test_kaiming_initializer_checks_its_arguments():
    with pytest.raises(ValueError, match="Din must be a positive int"):
        kaiming_initializer(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        kaiming_initializer(2, 3, dtype=torch.int32)


# ---- torch stays optional --------------------------------------------------------------

def run_python(code):
    env = child_env()
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_import_fastfc_never_imports_torch():
    result = run_python("import sys, fastfc, fastfc.models, fastfc.optim, fastfc.cli\n"
                        "print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_torch_the_import_error_says_what_to_install():
    result = run_python("import sys\nsys.modules['torch'] = None  # as if not installed\n"
                        "import fastfc.eecs598")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert 'pip install "fastfc[torch]"' in result.stderr
