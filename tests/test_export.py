"""ONNX export: the exported MLP and CNN run in onnxruntime and give
fastfc's scores and predictions; what is not covered is refused by name."""
import numpy as np
import pytest

import fastfc
from fastfc import layers as L
from fastfc.datasets import load_digits, normalize
from fastfc.models import ConvNet, FullyConnectedNet, Sequential

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from fastfc.export import export_onnx, onnx_model  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return normalize(load_digits())


def trained(model, data, epochs=2):
    fastfc.Solver(model, data, batch_size=64, num_epochs=epochs, seed=0, verbose=False).train()
    return model


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"input": X})
    return scores


def assert_same_predictions(model, path, X, rtol):
    model.eval()
    want = model.forward(X)
    got = run_onnx(path, X)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    np.testing.assert_array_equal(got.argmax(axis=1), model.predict(X))


def test_mlp_on_images_matches_fastfc(tmp_path, digits):
    model = trained(FullyConnectedNet([32, 32], input_dim=64, num_classes=10, weight_scale=None,
                                      seed=0, dropout=0.2), digits)
    path = export_onnx(model, tmp_path / "mlp.onnx", input_shape=(1, 8, 8))
    # Any batch size: the batch dimension is free.
    for n in (1, 7, len(digits["X_test"])):
        assert_same_predictions(model, path, digits["X_test"][:n], rtol=1e-5)


def test_cnn_matches_fastfc(tmp_path, digits):
    model = trained(ConvNet(input_dim=(1, 8, 8), num_filters=(8, 16), hidden_dim=32, seed=0), digits)
    path = export_onnx(model, tmp_path / "cnn.onnx")
    assert_same_predictions(model, path, digits["X_test"], rtol=1e-5)
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["scores"]
    # The weights carry the model's own names.
    assert {"W1", "b1", "W2", "W4", "b4"} <= {t.name for t in graph.initializer}


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_float64_mlp_with_normalization(tmp_path, digits, normalization):
    data = {k: v.astype(np.float64) if k.startswith("X") else v for k, v in digits.items()}
    model = trained(FullyConnectedNet([24], input_dim=64, num_classes=10, weight_scale=None, seed=0,
                                      dtype=np.float64, normalization=normalization), data)
    path = export_onnx(model, tmp_path / "m.onnx", input_shape=(64,))
    assert_same_predictions(model, path, data["X_test"].reshape(-1, 64), rtol=1e-10)


def test_sequential_of_other_layers(tmp_path, digits):
    model = Sequential(L.Conv2d(1, 4, 3, padding=1, seed=0), L.BatchNorm2d(4), L.Tanh(),
                       L.MaxPool2d(2), L.Flatten(), L.Linear(64, 16, bias=False, seed=1), L.Sigmoid(),
                       L.Linear(16, 10, seed=2), loss=L.SoftmaxCrossEntropy())
    trained(model, digits, epochs=1)
    path = export_onnx(model, tmp_path / "s.onnx", input_shape=(1, 8, 8))
    assert_same_predictions(model, path, digits["X_test"], rtol=1e-5)


def test_what_cannot_be_exported_is_named():
    with pytest.raises(TypeError, match="Sequential"):
        onnx_model(object())
    model = Sequential(L.Linear(4, 4, seed=0), L.GroupNorm(2, 4), L.Linear(4, 2, seed=0))
    with pytest.raises(ValueError, match=r"layer 1 \(GroupNorm"):
        onnx_model(model, input_shape=(4,))
    with pytest.raises(ValueError, match="input_shape"):
        onnx_model(Sequential(L.Conv2d(1, 2, 3), L.Flatten(), L.Linear(2, 2)))
    with pytest.raises(ValueError, match="input_shape"):
        onnx_model(FullyConnectedNet([4], input_dim=4, num_classes=2), input_shape=(0, 4))
    with pytest.raises(ValueError, match="has 5 features, the first Linear layer takes 4"):
        onnx_model(FullyConnectedNet([4], input_dim=4, num_classes=2), input_shape=(5,))
    with pytest.raises(ValueError, match="not the ConvNet's input_dim"):
        onnx_model(ConvNet(input_dim=(1, 8, 8), num_filters=2, hidden_dim=4), input_shape=(1, 9, 9))
    # A disagreement deeper in fails the graph's shape check, not later in a runtime.
    with pytest.raises(ValueError, match=r"input_shape \(1, 6, 6\) does not fit the model"):
        onnx_model(Sequential(L.Conv2d(1, 2, 3, padding=1), L.Flatten(), L.Linear(128, 2)),
                   input_shape=(1, 6, 6))
