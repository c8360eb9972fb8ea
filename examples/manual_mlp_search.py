"""The manual-MLP workflow in fastfc's own API: an MLP trained with squared
error on one-hot targets by SGD with momentum and weight decay (torch's
formula, step for step), a seeded random search over the learning rate,
weight decay and momentum on log scales, the best model chosen on
validation accuracy, and one final evaluation on the test set.

    python examples/manual_mlp_search.py --trials 12 --epochs 20

On the embedded digits (8x8 images, 10 classes). `fastfc search
--optimizer sgd --momentum-range 0.5,0.99` searches the same space from the
command line (with the softmax loss).
"""
import argparse

import numpy as np

import fastfc
from fastfc import datasets, layers
from fastfc.models import Sequential
from fastfc.search import LogUniform, random_search


def accuracy(model, X, y):
    """Fraction of X whose largest output is its label."""
    return float(np.mean(model.predict(X) == y))


def trainer(data, epochs, batch_size, hidden, seed):
    """train(hyper) -> (model, best validation accuracy) for random_search:
    one model per trial, from the same initial weights and batch order."""
    targets = np.eye(10, dtype=np.float32)[data["y_train"]]  # one-hot, for the squared error

    def train(hyper):
        model = Sequential(layers.Flatten(), layers.Linear(64, hidden, seed=seed), layers.ReLU(),
                           layers.Linear(hidden, 10, seed=seed + 1))
        criterion = layers.MSELoss()
        # torch.optim.SGD's update: g = grad + wd * w; v = momentum * v + g; w -= lr * v
        optimizer = fastfc.optim.SGD(model.parameters(), lr=hyper["lr"],
                                     momentum=hyper["momentum"],
                                     weight_decay=hyper["weight_decay"])
        rng = np.random.default_rng(seed)
        best_acc, best_params = -1.0, None
        for _ in range(epochs):
            model.train()
            order = rng.permutation(len(targets))
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                loss = criterion.forward(model.forward(data["X_train"][batch]), targets[batch])
                if not np.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss}")
                model.backward(criterion.backward())
                optimizer.step()
            model.eval()
            val_acc = accuracy(model, data["X_val"], data["y_val"])
            if val_acc > best_acc:  # keep the best epoch's weights (early stopping)
                best_acc, best_params = val_acc, {k: v.copy() for k, v in model.params.items()}
        model.params = best_params
        return model, best_acc
    return train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = datasets.normalize(datasets.load_digits(seed=args.seed))
    space = {"lr": LogUniform(1e-3, 3e-1), "weight_decay": LogUniform(1e-6, 1e-2),
             "momentum": LogUniform(0.5, 0.99)}
    result = random_search(trainer(data, args.epochs, args.batch_size, args.hidden, args.seed),
                           space, trials=args.trials, seed=args.seed,
                           test=lambda model: accuracy(model, data["X_test"], data["y_test"]))
    print(f"{'rank':>4}  {'trial':>5}  {'lr':>8}  {'wd':>8}  {'momentum':>8}  {'val acc':>8}")
    for rank, t in enumerate(result.trials, 1):
        val_acc = "diverged" if t["diverged"] else f"{t['val_acc']:.2%}"
        print(f"{rank:>4}  {t['number']:>5}  {t['lr']:8.2e}  {t['weight_decay']:8.2e}  "
              f"{t['momentum']:8.3f}  {val_acc:>8}")
    best = result.best
    print(f"best: trial {best['number']} (lr {best['lr']:.2e}, weight decay "
          f"{best['weight_decay']:.2e}, momentum {best['momentum']:.3f}): val accuracy "
          f"{best['val_acc']:.2%}, test accuracy {result.test:.2%}")


if __name__ == "__main__":
    main()
