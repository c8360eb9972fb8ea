"""fastfc.cs231n.layers, fast_layers and layer_utils against the check cells
of the course notebooks (FullyConnectedNets, Dropout, ConvolutionalNetworks,
2017 and 2022): their inputs, seeds and expected numbers."""
import numpy as np
import pytest

from fastfc import reference
from fastfc.cs231n.fast_layers import (conv_backward_fast, conv_forward_fast,
                                       max_pool_backward_fast, max_pool_forward_fast)
from fastfc.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from fastfc.cs231n.layer_utils import (affine_relu_backward, affine_relu_forward,
                                       conv_relu_backward, conv_relu_forward,
                                       conv_relu_pool_backward, conv_relu_pool_forward)
from fastfc.cs231n.layers import (affine_backward, affine_forward, conv_backward_naive,
                                  conv_forward_naive, dropout_backward, dropout_forward,
                                  max_pool_backward_naive, max_pool_forward_naive,
                                  relu_backward, relu_forward, softmax_loss, svm_loss)

from .notebook import rel_error


def numerical_grads(forward, args, dout):
    """The numerical gradient of sum(forward(*args) * dout) for each of args,
    as the notebooks compute them (lambdas over each argument)."""
    grads = []
    for k in range(len(args)):
        def f(value, k=k):
            return forward(*args[:k], value, *args[k + 1:])[0]
        grads.append(eval_numerical_gradient_array(f, args[k], dout))
    return grads


# ---- FullyConnectedNets.ipynb (2017) ---------------------------------------------------

def test_affine_forward_matches_the_notebook():
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size = num_inputs * np.prod(input_shape)
    weight_size = output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = affine_forward(x, w, b)
    correct_out = np.array([[1.49834967, 1.70660132, 1.91485297],
                            [3.25553199, 3.5141327, 3.77273342]])
    assert rel_error(out, correct_out) < 1e-8  # the notebook: "around 1e-9"


def test_affine_backward_gradient_check():
    np.random.seed(231)
    x = np.random.randn(10, 2, 3)
    w = np.random.randn(6, 5)
    b = np.random.randn(5)
    dout = np.random.randn(10, 5)
    dx_num, dw_num, db_num = numerical_grads(affine_forward, (x, w, b), dout)
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert dx.shape == x.shape
    for got, want in ((dx, dx_num), (dw, dw_num), (db, db_num)):
        assert rel_error(want, got) < 1e-9  # "around 1e-10"


def test_relu_forward_matches_the_notebook():
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = relu_forward(x)
    correct_out = np.array([[0., 0., 0., 0.],
                            [0., 0., 0.04545455, 0.13636364],
                            [0.22727273, 0.31818182, 0.40909091, 0.5]])
    assert rel_error(out, correct_out) < 1e-7  # "around 5e-8"


def test_relu_backward_gradient_check():
    np.random.seed(231)
    x = np.random.randn(10, 10)
    dout = np.random.randn(*x.shape)
    dx_num = eval_numerical_gradient_array(lambda x: relu_forward(x)[0], x, dout)
    _, cache = relu_forward(x)
    assert rel_error(dx_num, relu_backward(dout, cache)) < 1e-10  # "around 3e-12"


def test_affine_relu_sandwich_gradient_check():
    np.random.seed(231)
    x = np.random.randn(2, 3, 4)
    w = np.random.randn(12, 10)
    b = np.random.randn(10)
    dout = np.random.randn(2, 10)
    out, cache = affine_relu_forward(x, w, b)
    np.testing.assert_allclose(out, np.maximum(0, x.reshape(2, 12) @ w + b), rtol=1e-12)
    dx, dw, db = affine_relu_backward(dout, cache)
    dx_num, dw_num, db_num = numerical_grads(affine_relu_forward, (x, w, b), dout)
    for got, want in ((dx, dx_num), (dw, dw_num), (db, db_num)):
        assert rel_error(want, got) < 1e-8


def test_svm_and_softmax_losses_match_the_notebook():
    np.random.seed(231)
    num_classes, num_inputs = 10, 50
    x = 0.001 * np.random.randn(num_inputs, num_classes)
    y = np.random.randint(num_classes, size=num_inputs)

    dx_num = eval_numerical_gradient(lambda x: svm_loss(x, y)[0], x, verbose=False)
    loss, dx = svm_loss(x, y)
    assert abs(loss - 8.9996027491) < 1e-9
    assert rel_error(dx_num, dx) < 1e-8  # "1e-9"

    dx_num = eval_numerical_gradient(lambda x: softmax_loss(x, y)[0], x, verbose=False)
    loss, dx = softmax_loss(x, y)
    assert abs(loss - 2.3025458445) < 1e-9
    assert rel_error(dx_num, dx) < 1e-7  # "1e-8"


# ---- Dropout.ipynb (2022: p is the keep probability) -----------------------------------

@pytest.mark.parametrize("p", [0.25, 0.4, 0.7])
def test_dropout_forward_statistics(p):
    np.random.seed(231)
    x = np.random.randn(500, 500) + 10
    out, _ = dropout_forward(x, {"mode": "train", "p": p})
    out_test, _ = dropout_forward(x, {"mode": "test", "p": p})
    # The notebook prints a zero fraction of 1 - p and a mean near the input's.
    assert abs((out == 0).mean() - (1 - p)) < 0.005
    assert abs(out.mean() - x.mean()) < 0.15  # 4 std of the mean at p = 0.25
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / p, rtol=1e-15)
    np.testing.assert_array_equal(out_test, x)


def test_dropout_backward_gradient_check():
    np.random.seed(231)
    x = np.random.randn(10, 10) + 10
    dout = np.random.randn(*x.shape)
    dropout_param = {"mode": "train", "p": 0.2, "seed": 123}
    out, cache = dropout_forward(x, dropout_param)
    dx = dropout_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda xx: dropout_forward(xx, dropout_param)[0], x,
                                           dout)
    assert rel_error(dx, dx_num) < 1e-9  # "around e-10 or less"
    assert 0 < (out == 0).mean() < 1


def test_dropout_seed_fixes_the_mask_and_np_random_seed_reproduces_the_rest():
    x = np.ones((64, 64))
    fixed = {"mode": "train", "p": 0.5, "seed": 7}
    np.testing.assert_array_equal(dropout_forward(x, fixed)[0], dropout_forward(x, fixed)[0])
    free = {"mode": "train", "p": 0.5}
    first, second = dropout_forward(x, free)[0], dropout_forward(x, free)[0]
    assert not np.array_equal(first, second)
    np.random.seed(3)
    again = dropout_forward(x, free)[0]
    np.random.seed(3)
    np.testing.assert_array_equal(dropout_forward(x, free)[0], again)


def test_dropout_keep_probability_one_keeps_everything():
    x = np.random.randn(20, 30)
    np.testing.assert_array_equal(dropout_forward(x, {"mode": "train", "p": 1})[0], x)


# ---- ConvolutionalNetworks.ipynb ----------------------------------------------------

def test_conv_forward_naive_matches_the_notebook():
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    correct_out = np.array([[[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                             [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                             [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
                            [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                             [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                             [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]])
    assert rel_error(out, correct_out) < 1e-7  # "around e-8"


def test_conv_takes_integer_biases_as_the_image_processing_aside_does():
    # The notebook's aside builds b = np.array([0, 128]) (ints) for float images.
    x = np.zeros((2, 3, 6, 6))
    x[:, 2] = np.arange(6)[:, None]
    w = np.zeros((2, 3, 3, 3))
    w[0, :, 1, 1] = [0.3, 0.6, 0.1]
    w[1, 2] = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    out, _ = conv_forward_naive(x, w, np.array([0, 128]), {"stride": 1, "pad": 1})
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[:, 0], 0.1 * x[:, 2], rtol=1e-12)
    # rows above weigh 1+2+1, rows below -(1+2+1), on a ramp rising 1 per row
    np.testing.assert_allclose(out[:, 1, 1:-1, 1:-1], 128 - 8.0, rtol=1e-12)


def test_conv_backward_naive_gradient_check():
    np.random.seed(231)
    x = np.random.randn(4, 3, 5, 5)
    w = np.random.randn(2, 3, 3, 3)
    b = np.random.randn(2,)
    dout = np.random.randn(4, 2, 5, 5)
    conv_param = {"stride": 1, "pad": 1}
    dx_num, dw_num, db_num = numerical_grads(
        lambda x, w, b: conv_forward_naive(x, w, b, conv_param), (x, w, b), dout)
    _, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    for got, want in ((dx, dx_num), (dw, dw_num), (db, db_num)):
        assert rel_error(got, want) < 1e-8  # "around e-8 or less"


def test_max_pool_forward_naive_matches_the_notebook():
    x_shape = (2, 3, 4, 4)
    x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
    out, _ = max_pool_forward_naive(x, {"pool_width": 2, "pool_height": 2, "stride": 2})
    correct_out = np.array([[[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                             [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                             [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
                            [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                             [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                             [[0.32631579, 0.34105263], [0.38526316, 0.4]]]])
    assert rel_error(out, correct_out) < 1e-7  # "on the order of e-8"


def test_max_pool_backward_naive_gradient_check():
    np.random.seed(231)
    x = np.random.randn(3, 2, 8, 8)
    dout = np.random.randn(3, 2, 4, 4)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dx_num = eval_numerical_gradient_array(lambda x: max_pool_forward_naive(x, pool_param)[0],
                                           x, dout)
    _, cache = max_pool_forward_naive(x, pool_param)
    assert rel_error(max_pool_backward_naive(dout, cache), dx_num) < 1e-11  # "e-12"


def test_fast_conv_and_pool_agree_with_the_numpy_reference():
    # The notebook compares naive and fast (one kernel here): compare both
    # with fastfc.reference, the NumPy twin, instead.
    np.random.seed(231)
    x = np.random.randn(100, 3, 31, 31)
    w = np.random.randn(25, 3, 3, 3)
    b = np.random.randn(25,)
    dout = np.random.randn(100, 25, 16, 16)
    out_fast, cache_fast = conv_forward_fast(x, w, b, {"stride": 2, "pad": 1})
    out_ref, cache_ref = reference.conv_forward(x, w, b, 2, 1)
    assert rel_error(out_fast, out_ref) < 1e-9  # "around e-9 or less"
    for got, want in zip(conv_backward_fast(dout, cache_fast),
                         reference.conv_backward(dout, cache_ref)):
        assert rel_error(got, want) < 1e-9

    x = np.random.randn(100, 3, 32, 32)
    dout = np.random.randn(100, 3, 16, 16)
    out_fast, cache_fast = max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2,
                                                     "stride": 2})
    out_ref, cache_ref = reference.max_pool_forward(x, 2, 2, 2)
    assert rel_error(out_fast, out_ref) == 0.0  # "close to 0.0"
    assert rel_error(max_pool_backward_fast(dout, cache_fast),
                     reference.max_pool_backward(dout, cache_ref)) == 0.0


def test_conv_relu_pool_sandwich_gradient_check():
    np.random.seed(231)
    x = np.random.randn(2, 3, 16, 16)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dx, dw, db = conv_relu_pool_backward(dout, cache)
    dx_num, dw_num, db_num = numerical_grads(
        lambda x, w, b: conv_relu_pool_forward(x, w, b, conv_param, pool_param), (x, w, b), dout)
    for got, want in ((dx, dx_num), (dw, dw_num), (db, db_num)):
        assert rel_error(want, got) < 1e-7  # "around e-8 or less"


def test_conv_relu_sandwich_gradient_check():
    np.random.seed(231)
    x = np.random.randn(2, 3, 8, 8)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param = {"stride": 1, "pad": 1}
    out, cache = conv_relu_forward(x, w, b, conv_param)
    dx, dw, db = conv_relu_backward(dout, cache)
    dx_num, dw_num, db_num = numerical_grads(
        lambda x, w, b: conv_relu_forward(x, w, b, conv_param), (x, w, b), dout)
    for got, want in ((dx, dx_num), (dw, dw_num), (db, db_num)):
        assert rel_error(want, got) < 1e-7


# ---- types --------------------------------------------------------------------------

def test_mixed_float_types_compute_in_the_common_type():
    x = np.random.randn(4, 6).astype(np.float32)
    w = np.random.randn(6, 3)
    out, _ = affine_forward(x, w, np.zeros(3, dtype=np.float32))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x.astype(np.float64) @ w, rtol=1e-12)
    out32, _ = affine_forward(x, w.astype(np.float32), np.zeros(3, dtype=np.float32))
    assert out32.dtype == np.float32


# ---- bad input (issue 10): a clear error naming the key ----------------------------------

X4 = np.zeros((2, 3, 8, 8))
W4 = np.zeros((4, 3, 3, 3))
B4 = np.zeros(4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: conv_forward_naive(X4, W4, B4, {"stride": 1}), ValueError, "missing the key 'pad'"),
    (lambda: conv_forward_naive(X4, W4, B4, {"stride": 1, "pda": 1}), ValueError,
     "unknown key 'pda' \\(did you mean 'pad'\\?\\)"),
    (lambda: conv_forward_naive(X4, W4, B4, [1, 1]), TypeError, "conv_param must be a dict"),
    (lambda: conv_forward_naive(X4, W4, B4, {"stride": 0, "pad": 1}), ValueError, "stride"),
    (lambda: conv_forward_naive(X4, W4, B4, {"stride": 1, "pad": -1}), ValueError, "pad"),
    (lambda: max_pool_forward_naive(X4, {"pool_height": 2, "pool_width": 2}), ValueError,
     "missing the key 'stride'"),
    (lambda: max_pool_forward_naive(X4, {"pool_height": 2, "pool_widht": 2, "stride": 2}),
     ValueError, "'pool_widht' \\(did you mean 'pool_width'\\?\\)"),
    (lambda: max_pool_forward_naive(X4, {"pool_height": 9, "pool_width": 2, "stride": 2}),
     ValueError, "pool_height"),
    (lambda: dropout_forward(X4, {"mode": "train"}), ValueError, "missing the key 'p'"),
    (lambda: dropout_forward(X4, {"p": 0.5}), ValueError, "missing the key 'mode'"),
    (lambda: dropout_forward(X4, {"mode": "training", "p": 0.5}), ValueError,
     "dropout_param\\['mode'\\] must be 'train' or 'test'"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": 0.0}), ValueError,
     "dropout_param\\['p'\\] must be a number in \\(0.0, 1.0\\]"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": 1.5}), ValueError, "\\['p'\\]"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": "half"}), TypeError, "\\['p'\\]"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": 0.5, "seed": -1}), ValueError, "seed"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": 0.5, "sead": 1}), ValueError,
     "did you mean 'seed'"),
])
def test_bad_dict_parameters_name_the_key(call, error, match):
    with pytest.raises(error, match=match):
        call()
