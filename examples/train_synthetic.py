"""Train a two-layer network on synthetic data with fastfc.functional and plain
SGD, printing the loss as it falls. A minimal end-to-end check of the kernels."""
import numpy as np

import fastfc
import fastfc.functional as F


def make_blobs(n_per_class, n_classes, dim, rng):
    """Gaussian clusters around random centres, one per class."""
    centres = rng.normal(scale=0.7, size=(n_classes, dim))
    x = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x.astype(np.float32), y


def main():
    rng = np.random.default_rng(0)
    x, y = make_blobs(200, 5, 20, rng)
    w1 = (rng.normal(size=(20, 64)) * np.sqrt(2 / 20)).astype(np.float32)
    b1 = np.zeros(64, np.float32)
    w2 = (rng.normal(size=(64, 5)) * np.sqrt(2 / 64)).astype(np.float32)
    b2 = np.zeros(5, np.float32)
    lr, batch = 0.1, 50
    print(f"fastfc {fastfc.__version__}, {fastfc.get_num_threads()} threads")
    for epoch in range(10):
        order = rng.permutation(len(x))
        losses = []
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            h, cache1 = F.affine_relu_forward(x[idx], w1, b1)
            scores, cache2 = F.affine_forward(h, w2, b2)
            loss, dscores = F.softmax_loss(scores, y[idx])
            dh, dw2, db2 = F.affine_backward(dscores, cache2)
            _, dw1, db1 = F.affine_relu_backward(dh, cache1, compute_dx=False)
            for param, grad in ((w1, dw1), (b1, db1), (w2, dw2), (b2, db2)):
                param -= lr * grad
            losses.append(loss)
        scores, _ = F.affine_forward(F.affine_relu_forward(x, w1, b1)[0], w2, b2)
        accuracy = np.mean(scores.argmax(axis=1) == y)
        print(f"epoch {epoch + 1:2d}  loss {np.mean(losses):.4f}  train accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
