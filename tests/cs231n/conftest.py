"""Fixtures of the fastfc.cs231n tests: a CIFAR-10 stand-in made of the
embedded digits."""
import numpy as np
import pytest

from fastfc import datasets


@pytest.fixture(scope="session")
def cifar_like_digits():
    """The digits shaped and scaled like the notebooks' preprocessed CIFAR-10
    (get_CIFAR10_data): (N, 3, 32, 32) float64 pixels in 0..255 (each 8x8
    pixel a 4x4 block, the same in the three channels) minus the training
    mean image, integer labels 0..9."""
    data = datasets.load_digits()

    def cifar_like(X):
        X = np.repeat(np.repeat(X.astype(np.float64) * 255.0, 4, axis=2), 4, axis=3)
        return np.repeat(X, 3, axis=1)

    out = {key: (cifar_like(value) if key.startswith("X") else value)
           for key, value in data.items()}
    mean_image = out["X_train"].mean(axis=0)
    for key in ("X_train", "X_val", "X_test"):
        out[key] -= mean_image
    return out
