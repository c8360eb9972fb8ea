"""fastfc.eecs598.convolutional_networks against the check cells of the
course's convolutional_networks.ipynb (EECS 498/598 A3): their inputs
(reset_seed(0), float64), hard-coded expected tensors, and the numbers the
notebooks print (initial losses of the course's initialization, batch
normalization statistics)."""
import pytest

torch = pytest.importorskip("torch")

import fastfc.eecs598 as eecs598  # noqa: E402
from fastfc.eecs598 import reset_seed  # noqa: E402
from fastfc.eecs598.convolutional_networks import (  # noqa: E402
    BatchNorm, Conv, Conv_BatchNorm_ReLU, Conv_BatchNorm_ReLU_Pool, Conv_ReLU, Conv_ReLU_Pool,
    DeepConvNet, FastConv, FastMaxPool, Linear_BatchNorm_ReLU, MaxPool, SpatialBatchNorm,
    ThreeLayerConvNet, kaiming_initializer)

from .notebook import layer_gradient_errors, model_gradient_errors  # noqa: E402

rel_error = eecs598.grad.rel_error
f64 = dict(dtype=torch.float64, device="cpu")


def test_conv_forward_matches_the_notebook():
    x_shape, w_shape = torch.tensor((2, 3, 4, 4)), torch.tensor((3, 3, 4, 4))
    x = torch.linspace(-0.1, 0.5, steps=torch.prod(x_shape), **f64).reshape(*x_shape)
    w = torch.linspace(-0.2, 0.3, steps=torch.prod(w_shape), **f64).reshape(*w_shape)
    b = torch.linspace(-0.1, 0.2, steps=3, **f64)
    out, _ = Conv.forward(x, w, b, {"stride": 2, "pad": 1})
    correct_out = torch.tensor([[[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                                 [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                                 [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
                                [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                                 [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                                 [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]], **f64)
    assert rel_error(out, correct_out) < 1e-7  # "less than 1e-7"


def test_conv_backward_gradient_check():
    reset_seed(0)
    x = torch.randn(4, 3, 5, 5, **f64)
    w = torch.randn(2, 3, 3, 3, **f64)
    b = torch.randn(2, **f64)
    dout = torch.randn(4, 2, 5, 5, **f64)
    conv_param = {"stride": 1, "pad": 1}
    errors = layer_gradient_errors(lambda x, w, b: Conv.forward(x, w, b, conv_param),
                                   Conv.backward, (x, w, b), dout)
    assert max(errors) < 1e-8  # "less than 1e-8"


def test_max_pool_forward_matches_the_notebook():
    x_shape = torch.tensor((2, 3, 4, 4))
    x = torch.linspace(-0.3, 0.4, steps=torch.prod(x_shape), **f64).reshape(*x_shape)
    out, _ = MaxPool.forward(x, {"pool_width": 2, "pool_height": 2, "stride": 2})
    correct_out = torch.tensor([[[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                                 [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                                 [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
                                [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                                 [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                                 [[0.32631579, 0.34105263], [0.38526316, 0.4]]]], **f64)
    assert rel_error(out, correct_out) < 1e-7  # "less than 1e-7"


def test_max_pool_backward_gradient_check():
    reset_seed(0)
    x = torch.randn(3, 2, 8, 8, **f64)
    dout = torch.randn(3, 2, 4, 4, **f64)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    error, = layer_gradient_errors(lambda x: MaxPool.forward(x, pool_param), MaxPool.backward,
                                   (x,), dout)
    assert error < 1e-9  # "less than 1e-10"; the notebook's own run printed 2.63e-10, as here


def test_fast_layers_agree_with_the_naive_ones():
    reset_seed(0)
    x = torch.randn(10, 3, 31, 31, **f64)
    w = torch.randn(25, 3, 3, 3, **f64)
    b = torch.randn(25, **f64)
    dout = torch.randn(10, 25, 16, 16, **f64)
    conv_param = {"stride": 2, "pad": 1}
    out_naive, cache_naive = Conv.forward(x, w, b, conv_param)
    out_fast, cache_fast = FastConv.forward(x, w, b, conv_param)
    assert rel_error(out_naive, out_fast) < 1e-10  # "around e-11 or less"
    for naive, fast in zip(Conv.backward(dout, cache_naive), FastConv.backward(dout, cache_fast)):
        assert rel_error(naive, fast) < 1e-10
    # And both against PyTorch's convolution.
    expected = torch.nn.functional.conv2d(x, w, b, stride=2, padding=1)
    assert rel_error(out_naive, expected) < 1e-12

    reset_seed(0)
    x = torch.randn(40, 3, 32, 32, **f64)
    dout = torch.randn(40, 3, 16, 16, **f64)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out_naive, cache_naive = MaxPool.forward(x, pool_param)
    out_fast, cache_fast = FastMaxPool.forward(x, pool_param)
    assert rel_error(out_naive, out_fast) == 0  # "close to 0.0"
    assert rel_error(MaxPool.backward(dout, cache_naive), FastMaxPool.backward(dout, cache_fast)) == 0


def test_conv_sandwich_layers_gradient_checks():
    reset_seed(0)
    x = torch.randn(2, 3, 8, 8, **f64)
    w = torch.randn(3, 3, 3, 3, **f64)
    b = torch.randn(3, **f64)
    dout = torch.randn(2, 3, 8, 8, **f64)
    conv_param = {"stride": 1, "pad": 1}
    errors = layer_gradient_errors(lambda x, w, b: Conv_ReLU.forward(x, w, b, conv_param),
                                   Conv_ReLU.backward, (x, w, b), dout)
    assert max(errors) < 1e-8  # "around e-8 or less"

    x = torch.randn(2, 3, 16, 16, **f64)
    w = torch.randn(3, 3, 3, 3, **f64)
    b = torch.randn(3, **f64)
    dout = torch.randn(2, 3, 8, 8, **f64)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    errors = layer_gradient_errors(
        lambda x, w, b: Conv_ReLU_Pool.forward(x, w, b, conv_param, pool_param),
        Conv_ReLU_Pool.backward, (x, w, b), dout)
    assert max(errors) < 1e-8


# ---- ThreeLayerConvNet and DeepConvNet -------------------------------------------------

def test_three_layer_conv_net_initial_losses_match_the_notebook():
    reset_seed(0)
    model = ThreeLayerConvNet(**f64)
    X = torch.randn(50, 3, 32, 32, **f64)
    y = torch.randint(10, size=(50,), dtype=torch.int64, device="cpu")
    loss, _ = model.loss(X, y)
    assert abs(loss.item() - 2.3025864776348905) < 1e-12  # printed by the notebook
    model.reg = 0.5
    loss, _ = model.loss(X, y)
    assert abs(loss.item() - 2.714308448997972) < 1e-12  # reg * sum(W**2): no factor 0.5


def test_three_layer_conv_net_gradient_check():
    input_dims = (3, 16, 16)
    reset_seed(0)
    X = torch.randn(2, *input_dims, **f64)
    y = torch.randint(10, size=(2,), dtype=torch.int64, device="cpu")
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dims=input_dims, hidden_dim=7,
                              weight_scale=5e-2, **f64)
    _, errors = model_gradient_errors(model, X, y)
    assert set(errors) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert max(errors.values()) < 1e-5  # "less than 1e-5"; the notebook's run: 5.9e-8


def test_deep_conv_net_initial_losses_match_the_notebook():
    reset_seed(0)
    model = DeepConvNet(num_filters=[8, 64], max_pools=[0, 1], **f64)
    X = torch.randn(50, 3, 32, 32, **f64)
    y = torch.randint(10, size=(50,), dtype=torch.int64, device="cpu")
    loss, _ = model.loss(X, y)
    assert abs(loss.item() - 2.302585035134783) < 1e-12  # printed by the notebook
    model.reg = 1.0
    loss, _ = model.loss(X, y)
    assert abs(loss.item() - 2.348593467804351) < 1e-12


@pytest.mark.parametrize("reg, names", [(0, ["W1", "b1", "W3", "b3"]),
                                         (3.14, ["W2", "b2", "W4", "b4"])])
def test_deep_conv_net_gradient_check(reg, names):
    """The notebook's cell (it draws 50 samples, its N being left from the
    cell before; two suffice here), half of the parameters for each reg."""
    input_dims = (3, 8, 8)
    reset_seed(0)
    X = torch.randn(2, *input_dims, **f64)
    y = torch.randint(10, size=(2,), dtype=torch.int64, device="cpu")
    model = DeepConvNet(input_dims=input_dims, num_classes=10, num_filters=[8, 8, 8],
                        max_pools=[0, 2], reg=reg, weight_scale=5e-2, **f64)
    assert sorted(model.params) == sorted(f"{p}{k}" for p in "Wb" for k in range(1, 5))
    _, errors = model_gradient_errors(model, X, y, names=names)
    assert max(errors.values()) < 1e-5  # "less than 1e-5"


@pytest.mark.parametrize("reg, names", [(0, ["W1", "gamma1", "beta2", "W4", "b4"]),
                                         (3.14, ["W3", "gamma2", "beta3", "W4"])])
def test_deep_conv_net_with_batchnorm_gradient_check(reg, names):
    input_dims = (3, 8, 8)
    reset_seed(0)
    X = torch.randn(2, *input_dims, **f64)
    y = torch.randint(10, size=(2,), dtype=torch.int64, device="cpu")
    model = DeepConvNet(input_dims=input_dims, num_classes=10, num_filters=[8, 8, 8],
                        max_pools=[0, 2], reg=reg, batchnorm=True, weight_scale="kaiming", **f64)
    _, errors = model_gradient_errors(model, X, y, names=names)
    assert max(errors.values()) < 1e-3  # "up to the order of e-3"
    # The biases before a batchnorm get no gradient (the normalization removes
    # them; the notebook's run prints relative errors of 1 there).
    _, grads = model.loss(X, y)
    assert len(grads) == 14 and float(grads["b1"].abs().max()) < 1e-12


def test_kaiming_initializer_statistics():
    reset_seed(0)
    w = kaiming_initializer(1000, 500)
    assert w.shape == (1000, 500) and w.dtype == torch.float32
    assert abs(w.std().item() - (2 / 1000) ** 0.5) < 0.01 * (2 / 1000) ** 0.5
    assert abs(w.mean().item()) < 1e-3
    w = kaiming_initializer(64, 128, K=3, relu=False, dtype=torch.float64)
    assert w.shape == (128, 64, 3, 3) and w.dtype == torch.float64
    assert abs(w.std().item() - (1 / (64 * 9)) ** 0.5) < 0.02 * (1 / (64 * 9)) ** 0.5
    with pytest.raises(ValueError, match="CPU"):
        kaiming_initializer(3, 4, device="cuda")


def test_deep_conv_net_kaiming_draws_each_weight_once_in_the_course_order():
    reset_seed(0)
    model = DeepConvNet(input_dims=(3, 8, 8), num_filters=[4, 6], max_pools=[1],
                        weight_scale="kaiming", **f64)
    reset_seed(0)
    expected = [kaiming_initializer(3, 4, K=3, **f64), kaiming_initializer(4, 6, K=3, **f64),
                kaiming_initializer(6 * 4 * 4, 10, relu=False, **f64)]
    for k, weight in enumerate(expected, 1):
        assert torch.equal(model.params[f"W{k}"], weight)


# ---- batch normalization ---------------------------------------------------------------

def mean_std(x, dim=0):
    """The notebook's print_mean_std, as the strings it prints."""
    return (["%.3f" % v for v in x.mean(dim=dim).tolist()],
            ["%.3f" % v for v in x.std(dim=dim).tolist()])


def two_layer_activations(N, W1, W2):
    X = torch.randn(N, W1.shape[0], **f64)
    return X.matmul(W1).clamp(min=0.).matmul(W2)


def test_batchnorm_training_forward_statistics():
    reset_seed(0)
    N, D1, D2, D3 = 200, 50, 60, 3
    X = torch.randn(N, D1, **f64)
    W1 = torch.randn(D1, D2, **f64)
    W2 = torch.randn(D2, D3, **f64)
    a = X.matmul(W1).clamp(min=0.).matmul(W2)
    assert mean_std(a) == (["17.556", "-24.148", "23.679"], ["29.937", "31.994", "31.473"])
    out, _ = BatchNorm.forward(a, torch.ones(D3, **f64), torch.zeros(D3, **f64), {"mode": "train"})
    # torch's std is the unbiased one: sqrt(200 / 199) for unit (biased) variance.
    assert mean_std(out)[1] == ["1.003", "1.003", "1.003"]
    assert all(abs(float(m)) < 1e-3 for m in mean_std(out)[0])
    gamma = torch.tensor([1.0, 2.0, 3.0], **f64)
    beta = torch.tensor([11.0, 12.0, 13.0], **f64)
    out, _ = BatchNorm.forward(a, gamma, beta, {"mode": "train"})
    assert mean_std(out) == (["11.000", "12.000", "13.000"], ["1.003", "2.005", "3.008"])


def test_batchnorm_test_time_forward_statistics():
    reset_seed(0)
    N, D1, D2, D3 = 200, 50, 60, 3
    W1 = torch.randn(D1, D2, **f64)
    W2 = torch.randn(D2, D3, **f64)
    bn_param = {"mode": "train"}
    gamma, beta = torch.ones(D3, **f64), torch.zeros(D3, **f64)
    for _ in range(500):
        BatchNorm.forward(two_layer_activations(N, W1, W2), gamma, beta, bn_param)
    bn_param["mode"] = "test"
    out, _ = BatchNorm.forward(two_layer_activations(N, W1, W2), gamma, beta, bn_param)
    assert mean_std(out) == (["-0.024", "0.021", "-0.014"], ["1.018", "1.019", "1.060"])
    assert isinstance(bn_param["running_mean"], torch.Tensor)


def test_batchnorm_backward_gradient_check_and_alt():
    reset_seed(0)
    N, D = 4, 5
    x = 5 * torch.randn(N, D, **f64) + 12
    gamma = torch.randn(D, **f64)
    beta = torch.randn(D, **f64)
    dout = torch.randn(N, D, **f64)
    bn_param = {"mode": "train"}
    errors = layer_gradient_errors(lambda x, g, b: BatchNorm.forward(x, g, b, bn_param),
                                   BatchNorm.backward, (x, gamma, beta), dout)
    assert max(errors) < 1e-8  # "between 1e-12 and 1e-9"

    reset_seed(0)
    N, D = 128, 2048
    x = 5 * torch.randn(N, D, **f64) + 12
    gamma = torch.randn(D, **f64)
    beta = torch.randn(D, **f64)
    dout = torch.randn(N, D, **f64)
    _, cache = BatchNorm.forward(x, gamma, beta, {"mode": "train"})
    for a, b in zip(BatchNorm.backward(dout, cache), BatchNorm.backward_alt(dout, cache)):
        assert rel_error(a, b) < 1e-12


def test_spatial_batchnorm_training_forward_statistics():
    reset_seed(0)
    N, C, H, W = 2, 3, 4, 5
    x = 4 * torch.randn(N, C, H, W, **f64) + 10
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.tensor([10.1978, 9.7610, 10.5895], **f64),
                          atol=5e-5, rtol=0)
    out, _ = SpatialBatchNorm.forward(x, torch.ones(C, **f64), torch.zeros(C, **f64),
                                      {"mode": "train"})
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-12
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.full((C,), 1.0127, **f64), atol=5e-5,
                          rtol=0)
    gamma = torch.tensor([3, 4, 5], **f64)
    beta = torch.tensor([6, 7, 8], **f64)
    out, _ = SpatialBatchNorm.forward(x, gamma, beta, {"mode": "train"})
    assert torch.allclose(out.mean(dim=(0, 2, 3)), beta, atol=1e-12, rtol=0)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.tensor([3.0382, 4.0510, 5.0637], **f64),
                          atol=5e-5, rtol=0)


def test_spatial_batchnorm_test_time_forward_statistics():
    reset_seed(0)
    N, C, H, W = 10, 4, 11, 12
    bn_param = {"mode": "train"}
    gamma, beta = torch.ones(C, **f64), torch.zeros(C, **f64)
    for _ in range(50):
        SpatialBatchNorm.forward(2.3 * torch.randn(N, C, H, W, **f64) + 13, gamma, beta, bn_param)
    bn_param["mode"] = "test"
    out, _ = SpatialBatchNorm.forward(2.3 * torch.randn(N, C, H, W, **f64) + 13, gamma, beta,
                                      bn_param)
    means = torch.tensor([0.0153, 0.0595, 0.0346, -0.0033], **f64)
    stds = torch.tensor([0.9750, 0.9934, 1.0207, 1.0081], **f64)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), means, atol=5e-5, rtol=0)
    assert torch.allclose(out.std(dim=(0, 2, 3)), stds, atol=5e-5, rtol=0)


def test_spatial_batchnorm_backward_gradient_check():
    reset_seed(0)
    N, C, H, W = 2, 3, 4, 5
    x = 5 * torch.randn(N, C, H, W, **f64) + 12
    gamma = torch.randn(C, **f64)
    beta = torch.randn(C, **f64)
    dout = torch.randn(N, C, H, W, **f64)
    bn_param = {"mode": "train"}
    errors = layer_gradient_errors(lambda x, g, b: SpatialBatchNorm.forward(x, g, b, bn_param),
                                   SpatialBatchNorm.backward, (x, gamma, beta), dout)
    assert max(errors) < 1e-6  # "less than 1e-6"


def test_batchnorm_sandwich_layers_gradient_checks():
    reset_seed(0)
    x = torch.randn(4, 6, **f64)
    w, b = torch.randn(6, 5, **f64), torch.randn(5, **f64)
    gamma, beta = torch.rand(5, **f64) + 0.5, torch.randn(5, **f64)
    bn_param = {"mode": "train"}
    errors = layer_gradient_errors(
        lambda *a: Linear_BatchNorm_ReLU.forward(*a, bn_param), Linear_BatchNorm_ReLU.backward,
        (x, w, b, gamma, beta), torch.randn(4, 5, **f64))
    assert max(errors[:2] + errors[3:]) < 1e-6  # db: zero through the normalization
    assert float(Linear_BatchNorm_ReLU.backward(
        torch.randn(4, 5, **f64), Linear_BatchNorm_ReLU.forward(x, w, b, gamma, beta,
                                                                bn_param)[1])[2].abs().max()) < 1e-12

    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    x = torch.randn(2, 3, 4, 4, **f64)
    w, b = torch.randn(4, 3, 3, 3, **f64), torch.randn(4, **f64)
    gamma, beta = torch.rand(4, **f64) + 0.5, torch.randn(4, **f64)
    bn_param = {"mode": "train"}  # running statistics of 4 channels now
    for layer, extra, dout_shape in ((Conv_BatchNorm_ReLU, (), (2, 4, 4, 4)),
                                     (Conv_BatchNorm_ReLU_Pool, (pool_param,), (2, 4, 2, 2))):
        errors = layer_gradient_errors(
            lambda *a, layer=layer, extra=extra: layer.forward(*a, conv_param, bn_param, *extra),
            layer.backward, (x, w, b, gamma, beta), torch.randn(*dout_shape, **f64))
        assert max(errors[:2] + errors[3:]) < 1e-6


def test_deep_conv_net_refuses_pools_on_too_small_maps():
    with pytest.raises(ValueError, match="macro layer 3 gets 1x1 maps, too small for a 2x2 pool"):
        DeepConvNet(input_dims=(1, 8, 8))  # five pools on 8x8 images
