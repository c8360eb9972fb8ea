"""The normalization layers of fastfc.cs231n.layers against the check cells of
BatchNormalization.ipynb and ConvolutionalNetworks.ipynb (2022): their
seeds, the statistics they print and their gradient checks."""
import numpy as np
import pytest

from fastfc.cs231n.gradient_check import eval_numerical_gradient_array
from fastfc.cs231n.layer_utils import conv_bn_relu_backward, conv_bn_relu_forward
from fastfc.cs231n.layers import (batchnorm_backward, batchnorm_backward_alt, batchnorm_forward,
                                  layernorm_backward, layernorm_forward,
                                  spatial_batchnorm_backward, spatial_batchnorm_forward,
                                  spatial_groupnorm_backward, spatial_groupnorm_forward)

from .notebook import rel_error


def normalized_std(std, eps=1e-5):
    """The std of (x - mean) / sqrt(var + eps) for x of std std: what the
    notebooks print as 0.99999999 and the like."""
    return std / np.sqrt(std ** 2 + eps)


def two_layer_activations(N):
    """The notebooks' "simulated forward pass of a two-layer network"."""
    D1, D2, D3 = 50, 60, 3
    X = np.random.randn(N, D1)
    W1 = np.random.randn(D1, D2)
    W2 = np.random.randn(D2, D3)
    return np.maximum(0, X.dot(W1)).dot(W2)


def norm_gradient_errors(forward, backward, x, gamma, beta, dout):
    """The notebooks' normalization gradient check: dx, dgamma, dbeta against
    numerical gradients (errors in that order)."""
    dx_num = eval_numerical_gradient_array(lambda x: forward(x, gamma, beta)[0], x, dout)
    da_num = eval_numerical_gradient_array(lambda a: forward(x, a, beta)[0], gamma.copy(), dout)
    db_num = eval_numerical_gradient_array(lambda b: forward(x, gamma, b)[0], beta.copy(), dout)
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    assert dgamma.shape == gamma.shape and dbeta.shape == beta.shape
    return rel_error(dx_num, dx), rel_error(da_num, dgamma), rel_error(db_num, dbeta)


# ---- batch normalization ------------------------------------------------------------

def test_batchnorm_forward_training_statistics():
    np.random.seed(231)
    a = two_layer_activations(200)
    a_norm, _ = batchnorm_forward(a, np.ones(3), np.zeros(3), {"mode": "train"})
    assert np.max(np.abs(a_norm.mean(axis=0))) < 1e-14
    np.testing.assert_allclose(a_norm.std(axis=0), normalized_std(a.std(axis=0)), rtol=1e-12)
    gamma, beta = np.asarray([1.0, 2.0, 3.0]), np.asarray([11.0, 12.0, 13.0])
    a_norm, _ = batchnorm_forward(a, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=0), beta, rtol=1e-14)
    # the notebook prints [0.99999999 1.99999999 2.99999999]
    np.testing.assert_allclose(a_norm.std(axis=0), [0.99999999, 1.99999999, 2.99999999],
                               rtol=1e-8)


def test_batchnorm_test_time_matches_the_notebook():
    np.random.seed(231)
    D1, D2, D3 = 50, 60, 3
    W1 = np.random.randn(D1, D2)
    W2 = np.random.randn(D2, D3)
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(D3), np.zeros(D3)
    for t in range(50):
        X = np.random.randn(200, D1)
        batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), gamma, beta, bn_param)
    assert bn_param["running_mean"].shape == (D3,)
    bn_param["mode"] = "test"
    X = np.random.randn(200, D1)
    running = (bn_param["running_mean"].copy(), bn_param["running_var"].copy())
    a_norm, _ = batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), gamma, beta, bn_param)
    # The printed values depend only on the running averages: the course's
    # momentum convention, reproduced to the printed digits.
    np.testing.assert_allclose(a_norm.mean(axis=0), [-0.03927354, -0.04349152, -0.10452688],
                               atol=1e-8)
    np.testing.assert_allclose(a_norm.std(axis=0), [1.01531428, 1.01238373, 0.97819988],
                               atol=1e-8)
    np.testing.assert_array_equal(bn_param["running_mean"], running[0])  # test mode: untouched
    np.testing.assert_array_equal(bn_param["running_var"], running[1])


def test_batchnorm_running_averages_follow_the_course_formula():
    np.random.seed(0)
    x = np.random.randn(16, 4) * 3 + 1
    bn_param = {"mode": "train", "momentum": 0.7, "running_mean": np.full(4, 0.5),
                "running_var": np.full(4, 2.0)}
    batchnorm_forward(x, np.ones(4), np.zeros(4), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.7 * 0.5 + 0.3 * x.mean(axis=0),
                               rtol=1e-14)
    np.testing.assert_allclose(bn_param["running_var"], 0.7 * 2.0 + 0.3 * x.var(axis=0),
                               rtol=1e-14)


def test_batchnorm_backward_gradient_check():
    np.random.seed(231)
    N, D = 4, 5
    x = 5 * np.random.randn(N, D) + 12
    gamma = np.random.randn(D)
    beta = np.random.randn(D)
    dout = np.random.randn(N, D)
    bn_param = {"mode": "train"}
    errors = norm_gradient_errors(lambda x, g, b: batchnorm_forward(x, g, b, bn_param),
                                  batchnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8  # "between 1e-13 and 1e-8"


def test_batchnorm_backward_alt_agrees():
    np.random.seed(231)
    N, D = 100, 500
    x = 5 * np.random.randn(N, D) + 12
    gamma = np.random.randn(D)
    beta = np.random.randn(D)
    dout = np.random.randn(N, D)
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    for first, second in zip(batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache)):
        assert rel_error(first, second) < 1e-12  # the notebook: 8.5e-13, 0, 0


def test_batchnorm_of_one_sample_is_beta():
    out, _ = batchnorm_forward(np.array([[1.0, -2.0, 3.0]]), np.ones(3), np.arange(3.0),
                               {"mode": "train"})
    np.testing.assert_array_equal(out, [[0.0, 1.0, 2.0]])


def test_float32_running_statistics_are_kept_in_the_inputs_type():
    x = np.random.randn(8, 3).astype(np.float32)
    bn_param = {"mode": "train", "running_mean": np.zeros(3)}  # float64, as a user might
    out, _ = batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), bn_param)
    assert out.dtype == np.float32
    assert bn_param["running_mean"].dtype == np.float32 == bn_param["running_var"].dtype
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-5)


# ---- layer normalization ------------------------------------------------------------

def test_layernorm_forward_statistics():
    np.random.seed(231)
    a = two_layer_activations(4)
    a_norm, _ = layernorm_forward(a, np.ones(3), np.zeros(3), {"mode": "train"})
    assert np.max(np.abs(a_norm.mean(axis=1))) < 1e-14
    # the notebook prints [0.99999995 0.99999999 1. 0.99999969]
    np.testing.assert_allclose(a_norm.std(axis=1), [0.99999995, 0.99999999, 1., 0.99999969],
                               atol=1e-8)
    a_norm, _ = layernorm_forward(a, np.full(3, 3.0), np.full(3, 5.0), {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=1), 5.0, rtol=1e-14)
    np.testing.assert_allclose(a_norm.std(axis=1), [2.99999985, 2.99999998, 2.99999999,
                                                    2.99999907], atol=1e-8)


def test_layernorm_backward_gradient_check():
    np.random.seed(231)
    N, D = 4, 5
    x = 5 * np.random.randn(N, D) + 12
    gamma = np.random.randn(D)
    beta = np.random.randn(D)
    dout = np.random.randn(N, D)
    ln_param = {}
    errors = norm_gradient_errors(lambda x, g, b: layernorm_forward(x, g, b, ln_param),
                                  layernorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-8  # "between 1e-12 and 1e-8"


# ---- spatial batch and group normalization (ConvolutionalNetworks.ipynb) -------------------

def test_spatial_batchnorm_forward_training_statistics():
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), {"mode": "train"})
    assert out.shape == x.shape
    assert np.max(np.abs(out.mean(axis=(0, 2, 3)))) < 1e-14
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [0.99999962, 0.99999951, 0.9999996],
                               atol=1e-8)
    # integer gamma and beta, as the notebook passes them
    out, _ = spatial_batchnorm_forward(x, np.asarray([3, 4, 5]), np.asarray([6, 7, 8]),
                                       {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [6, 7, 8], rtol=1e-14)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [2.99999885, 3.99999804, 4.99999798],
                               atol=1e-8)


def test_spatial_batchnorm_test_time_matches_the_notebook():
    np.random.seed(231)
    N, C, H, W = 10, 4, 11, 12
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(C), np.zeros(C)
    for t in range(50):
        x = 2.3 * np.random.randn(N, C, H, W) + 13
        spatial_batchnorm_forward(x, gamma, beta, bn_param)
    bn_param["mode"] = "test"
    x = 2.3 * np.random.randn(N, C, H, W) + 13
    a_norm, _ = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(a_norm.mean(axis=(0, 2, 3)),
                               [-0.08034406, 0.07562881, 0.05716371, 0.04378383], atol=1e-8)
    np.testing.assert_allclose(a_norm.std(axis=(0, 2, 3)),
                               [0.96718744, 1.0299714, 1.02887624, 1.00585577], atol=1e-8)


def test_spatial_batchnorm_backward_gradient_check():
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(C)
    beta = np.random.randn(C)
    dout = np.random.randn(N, C, H, W)
    bn_param = {"mode": "train"}
    errors = norm_gradient_errors(lambda x, g, b: spatial_batchnorm_forward(x, g, b, bn_param),
                                  spatial_batchnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-6  # "between 1e-12 and 1e-06"


def test_spatial_groupnorm_forward_statistics():
    np.random.seed(231)
    N, C, H, W = 2, 6, 4, 5
    G = 2
    x = 4 * np.random.randn(N, C, H, W) + 10
    gamma, beta = np.ones((1, C, 1, 1)), np.zeros((1, C, 1, 1))
    out, _ = spatial_groupnorm_forward(x, gamma, beta, G, {"mode": "train"})
    assert out.shape == x.shape
    out_g, x_g = out.reshape((N * G, -1)), x.reshape((N * G, -1))
    assert np.max(np.abs(out_g.mean(axis=1))) < 1e-14
    np.testing.assert_allclose(out_g.std(axis=1), normalized_std(x_g.std(axis=1)), rtol=1e-12)


def test_spatial_groupnorm_backward_gradient_check():
    np.random.seed(231)
    N, C, H, W = 2, 6, 4, 5
    G = 2
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(1, C, 1, 1)
    beta = np.random.randn(1, C, 1, 1)
    dout = np.random.randn(N, C, H, W)
    gn_param = {}
    errors = norm_gradient_errors(
        lambda x, g, b: spatial_groupnorm_forward(x, g, b, G, gn_param),
        spatial_groupnorm_backward, x, gamma, beta, dout)
    assert max(errors) < 1e-7  # "between 1e-12 and 1e-07"


def test_conv_bn_relu_sandwich_gradient_check():
    np.random.seed(231)
    x = np.random.randn(2, 3, 6, 6)
    w = np.random.randn(4, 3, 3, 3)
    b = np.random.randn(4)
    gamma, beta = np.random.randn(4), np.random.randn(4)
    dout = np.random.randn(2, 4, 6, 6)
    conv_param, bn_param = {"stride": 1, "pad": 1}, {"mode": "train"}

    def forward(*args):
        return conv_bn_relu_forward(*args, conv_param, bn_param)

    args = [x, w, b, gamma, beta]
    _, cache = forward(*args)
    grads = conv_bn_relu_backward(dout, cache)
    for k, grad in enumerate(grads):
        def f(value, k=k):
            return forward(*args[:k], value, *args[k + 1:])[0]
        numerical = eval_numerical_gradient_array(f, args[k].copy(), dout)
        if k == 2:  # batch norm removes the conv bias: db is 0 (numerically ~1e-11)
            assert np.max(np.abs(grad)) < 1e-12 and np.max(np.abs(numerical)) < 1e-9
        else:
            assert rel_error(numerical, grad) < 1e-6


# ---- bad input (issue 10) --------------------------------------------------------------

X2 = np.random.randn(4, 3)
ONES, ZEROS = np.ones(3), np.zeros(3)
X4 = np.random.randn(2, 4, 3, 3)


@pytest.mark.parametrize("call, error, match", [
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {}), ValueError, "missing the key 'mode'"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "eval"}), ValueError,
     "bn_param\\['mode'\\] must be 'train' or 'test'"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "train", "eps": 0}), ValueError,
     "bn_param\\['eps'\\]"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "train", "eps": -1e-5}), ValueError,
     "bn_param\\['eps'\\]"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "train", "momentum": 1.5}), ValueError,
     "bn_param\\['momentum'\\]"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "train", "momentun": 0.9}), ValueError,
     "'momentun' \\(did you mean 'momentum'\\?\\)"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "train", "running_mean": np.zeros(4)}),
     ValueError, "bn_param\\['running_mean'\\] must have shape \\(3,\\)"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, {"mode": "test", "running_var": np.zeros((1, 3))}),
     ValueError, "bn_param\\['running_var'\\]"),
    (lambda: batchnorm_forward(X2, np.ones(4), ZEROS, {"mode": "train"}), ValueError, "gamma"),
    (lambda: batchnorm_forward(X2, ONES, np.zeros(2), {"mode": "train"}), ValueError, "beta"),
    (lambda: batchnorm_forward(X2, ONES, ZEROS, "train"), TypeError, "bn_param must be a dict"),
    (lambda: spatial_batchnorm_forward(X4, np.ones(4), np.zeros(4),
                                       {"mode": "train", "running_mean": np.zeros(3)}),
     ValueError, "running_mean"),
    (lambda: layernorm_forward(X2, ONES, ZEROS, {"epsilon": 1e-5}), ValueError,
     "'epsilon' \\(did you mean 'eps'\\?\\)"),
    (lambda: layernorm_forward(X2, ONES, ZEROS, {"eps": 0.0}), ValueError, "ln_param\\['eps'\\]"),
    (lambda: layernorm_forward(X2, np.ones(2), ZEROS, {}), ValueError, "gamma"),
    (lambda: spatial_groupnorm_forward(X4, np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1)), 3, {}),
     ValueError, "group"),
    (lambda: spatial_groupnorm_forward(X4, np.ones((1, 3, 1, 1)), np.zeros((1, 4, 1, 1)), 2, {}),
     ValueError, "gamma"),
    (lambda: spatial_groupnorm_forward(X4, np.ones(4), np.zeros(4), 2, {"eps": "small"}),
     TypeError, "gn_param\\['eps'\\]"),
])
def test_bad_normalization_parameters_name_the_key(call, error, match):
    with pytest.raises(error, match=match):
        call()
