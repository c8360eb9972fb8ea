"""The AI535 feed-forward homework's training loop with fastfc.ai535: a
FeedForwardNeuralNetwork trained on the CIFAR-10 horse/ship/truck subset
(3072-dim rows, labels 0..2) with Adam + weight decay, its training and
validation curves plotted as the homework plots them, and the test set
evaluated once at the end. The homework asks for at least 80% validation
accuracy.

    python examples/ai535_cifar_hst.py --data-dir ~/data/cifar-10-batches-py --plot curves.png
    python examples/ai535_cifar_hst.py --digits        # offline: the embedded digits instead

CIFAR-10 is read from its python-version batches in a local directory
(fastfc.datasets.load_cifar10 downloads nothing).
"""
import argparse
import logging

import numpy as np

from fastfc import datasets
from fastfc.ai535 import CrossEntropySoftmax, FeedForwardNeuralNetwork, evaluate

logging.basicConfig(format="%(asctime)s %(levelname)-8s %(message)s", level=logging.INFO,
                    datefmt="%Y-%m-%d %H:%M:%S")


def load(args):
    """(X_train, Y_train, X_val, Y_val, X_test, Y_test), rows of pixels in
    [0, 1] (the homework's images / 255) and integer labels."""
    if args.digits:
        data = datasets.load_digits(seed=args.seed)
    else:
        data = datasets.load_cifar10(args.data_dir, classes=("horse", "ship", "truck"),
                                     seed=args.seed)
    splits = []
    for split in ("train", "val", "test"):
        X = data[f"X_{split}"]
        splits += [X.reshape(len(X), -1).astype(np.float32), data[f"y_{split}"]]
    return splits


def plot(path, losses, accs, val_losses, val_accs, iterations_per_epoch):
    """The homework's figure: loss and accuracy per batch, validation per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs_at = [(i + 1) * iterations_per_epoch for i in range(len(val_losses))]
    fig, ax1 = plt.subplots(figsize=(16, 9))
    ax1.plot(range(len(losses)), losses, c="tab:red", alpha=0.25, label="Train Loss")
    ax1.plot(epochs_at, val_losses, c="red", label="Val. Loss")
    ax1.set_xlabel("Iterations")
    ax1.set_ylabel("Avg. Cross-Entropy Loss", c="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(range(len(losses)), accs, c="tab:blue", alpha=0.25, label="Train Acc.")
    ax2.plot(epochs_at, val_accs, c="blue", label="Val. Acc.")
    ax2.set_ylabel("Accuracy", c="tab:blue")
    ax2.set_ylim(-0.01, 1.01)
    fig.tight_layout()
    ax1.legend(loc="center")
    ax2.legend(loc="center right")
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="directory of CIFAR-10's python batches")
    source.add_argument("--digits", action="store_true", help="the embedded digits instead")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--step-size", type=float, default=2e-4)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="CURVES.png", help="save the curves (needs matplotlib)")
    args = parser.parse_args()

    X_train, Y_train, X_val, Y_val, X_test, Y_test = load(args)
    num_examples, input_dim = X_train.shape
    output_dim = int(Y_train.max()) + 1
    logging.info("Loaded train: %s, val: %s, test: %s", X_train.shape, X_val.shape, X_test.shape)

    net = FeedForwardNeuralNetwork(input_dim, output_dim, args.width, args.layers, seed=args.seed,
                                   weight_decay=args.weight_decay, dtype=np.float32)
    cross_entropy = CrossEntropySoftmax()
    rng = np.random.default_rng(args.seed)
    losses, accs, val_losses, val_accs = [], [], [], []
    for epoch in range(args.epochs):
        order = rng.permutation(num_examples)  # scramble the order of the examples
        for start in range(0, num_examples, args.batch_size):
            batch = order[start:start + args.batch_size]
            outputs = net.forward(X_train[batch])
            losses.append(cross_entropy.forward(outputs, Y_train[batch]))
            net.backward(cross_entropy.backward())
            net.step(args.step_size)
            accs.append(float(np.mean(outputs.argmax(axis=1) == Y_train[batch])))
        epoch_avg_loss, epoch_avg_acc = evaluate(net, X_train, Y_train, args.batch_size)
        vloss, vacc = evaluate(net, X_val, Y_val, args.batch_size)
        val_losses.append(vloss)
        val_accs.append(vacc)
        logging.info("[Epoch %3d]   Loss:  %8.4f     Train Acc:  %8.4f%%      Val Acc:  %8.4f%%",
                     epoch, epoch_avg_loss, epoch_avg_acc * 100, vacc * 100)

    if args.plot:
        try:
            plot(args.plot, losses, accs, val_losses, val_accs,
                 int(np.ceil(num_examples / args.batch_size)))
            logging.info("saved %s", args.plot)
        except ImportError:
            logging.warning("--plot needs matplotlib (pip install matplotlib); no figure saved")
    _, test_acc = evaluate(net, X_test, Y_test, args.batch_size)  # the one look at the test set
    print(f"best val accuracy {max(val_accs):.2%}, test accuracy {test_acc:.2%}")


if __name__ == "__main__":
    main()
