"""The package's layout: the course's modules and names, so that a notebook
runs after replacing `cs231n.` with `fastfc.cs231n.` in its imports."""
import importlib

import pytest

# What the notebooks (2017 and 2022) import and then call by name.
STAR_IMPORTS = {
    "fastfc.cs231n.classifiers.fc_net": [
        "TwoLayerNet", "FullyConnectedNet", "affine_forward", "affine_backward", "relu_forward",
        "relu_backward", "svm_loss", "softmax_loss", "dropout_forward", "dropout_backward",
        "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
        "layernorm_backward", "affine_relu_forward", "affine_relu_backward"],
    "fastfc.cs231n.classifiers.cnn": [
        "ThreeLayerConvNet", "conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive",
        "max_pool_backward_naive", "conv_forward_fast", "conv_backward_fast",
        "max_pool_forward_fast", "max_pool_backward_fast", "conv_relu_pool_forward",
        "conv_relu_pool_backward", "conv_relu_forward", "conv_relu_backward",
        "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
        "spatial_groupnorm_backward"],
    "fastfc.cs231n.layers": ["conv_forward_naive", "spatial_groupnorm_backward"],
    "fastfc.cs231n.fast_layers": ["conv_forward_fast", "max_pool_backward_fast"],
    "fastfc.cs231n.layer_utils": ["affine_relu_forward", "conv_relu_pool_backward",
                                  "conv_bn_relu_forward"],
    "fastfc.cs231n.optim": ["sgd", "sgd_momentum", "rmsprop", "adam"],
    "fastfc.cs231n.gradient_check": ["eval_numerical_gradient", "eval_numerical_gradient_array",
                                     "grad_check_sparse"],
    "fastfc.cs231n.solver": ["Solver"],
}


@pytest.mark.parametrize("module", list(STAR_IMPORTS))
def test_star_imports_give_the_names_the_notebooks_use(module):
    namespace = {}
    exec(f"from {module} import *", namespace)
    missing = [name for name in STAR_IMPORTS[module] if not callable(namespace.get(name))]
    assert not missing, f"{module} lacks {missing}"
    importlib.import_module(module)  # and the module itself imports on its own
