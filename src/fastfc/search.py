"""Random search over hyperparameters: seeded draws, trials ranked by
validation accuracy, and the test set looked at once, by the best.

    from fastfc.search import Choice, LogUniform, Uniform, random_search

    def train(hyper):          # {'lr': ..., 'weight_decay': ..., 'momentum': ...}
        ...                    # train a model with them
        return model, val_acc  # its best validation accuracy

    result = random_search(train, {"lr": LogUniform(1e-3, 3e-1),
                                   "weight_decay": LogUniform(1e-6, 1e-2),
                                   "momentum": LogUniform(0.5, 0.99)},
                           trials=20, seed=0, test=lambda model: evaluate(model, X_test, y_test))
    result.best, result.test   # the chosen hyperparameters, and the one test evaluation

`fastfc search` draws its trials with the same distributions.
"""
import math

import numpy as np

from ._validation import check_int, check_real

__all__ = ["LogUniform", "Uniform", "Choice", "sample_trials", "rank", "random_search",
           "SearchResult"]


def _bounds(name, low, high, positive):
    low, high = check_real(f"{name}'s LOW", low), check_real(f"{name}'s HIGH", high)
    if positive and (low < 0 or low == 0 < high):  # a point range (0,0 say) is a constant
        raise ValueError(f"a log-uniform range needs LOW > 0, got {low}")
    if low > high:
        raise ValueError(f"{name} needs LOW <= HIGH, got {low}, {high}")
    return float(low), float(high)


class LogUniform:
    """Values in [low, high] (low > 0) uniform in log scale: a learning rate,
    a weight decay, a momentum. A point range (low == high, 0 included) is
    that constant."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("LogUniform", low, high, positive=True)

    def sample(self, rng):
        """One draw from the np.random.Generator rng (low itself for a point range)."""
        if self.low == self.high:
            return self.low
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self):
        return f"LogUniform({self.low:g}, {self.high:g})"


class Uniform:
    """Values uniform in [low, high]: a dropout probability, say."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("Uniform", low, high, positive=False)

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def __repr__(self):
        return f"Uniform({self.low:g}, {self.high:g})"


class Choice:
    """One of the given options, each as likely."""

    def __init__(self, options):
        self.options = list(options)
        if not self.options:
            raise ValueError("Choice needs at least one option")

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self):
        return f"Choice({self.options!r})"


def sample_trials(space, trials, seed):
    """trials hyperparameter dicts drawn from space (name -> distribution, or
    a fixed value), in space's order, from np.random.default_rng(seed): the
    same seed gives the same trials. An iterator drawing each trial when it
    is asked for, so a huge count costs nothing up front."""
    check_int("trials", trials, low=1)
    rng = np.random.default_rng(seed)
    return ({name: dist.sample(rng) if hasattr(dist, "sample") else dist
             for name, dist in space.items()} for _ in range(trials))


def rank(trials):
    """The finished trials, best validation accuracy first (ties: the
    earlier trial); diverged trials, recorded with val_acc 0, last."""
    return sorted(trials, key=lambda t: (t["diverged"], -t["val_acc"], t["number"]))


class SearchResult:
    """What random_search found.

    Attributes: trials (ranked: dicts with number, the hyperparameters,
    val_acc, diverged), best (the first of them), model (the best trial's
    model), test (what test(model) returned, or None without test).
    """

    def __init__(self, trials, model, test):
        self.trials = trials
        self.best = trials[0]
        self.model = model
        self.test = test

    def __repr__(self):
        return f"SearchResult(best={self.best!r}, test={self.test!r})"


def random_search(train, space, trials=20, seed=0, test=None):
    """Random search: each trial draws hyperparameters from space (see
    sample_trials) and calls train(hyperparameters) -> (model, val_acc). The
    trials are ranked by val_acc; a trial whose training raises
    FloatingPointError (a diverged loss) ranks last. Only the best trial's
    model is kept, and test(model) is called once, for it alone: the test
    set plays no part in the choice.

    Returns a SearchResult.
    """
    if not callable(train):
        raise TypeError(f"train must be a function of the hyperparameters, got {train!r}")
    finished, best_model, best_key = [], None, None
    for number, hyper in enumerate(sample_trials(space, trials, seed), 1):
        trial = dict(hyper, number=number)
        try:
            model, val_acc = train(dict(hyper))
            trial.update(val_acc=float(val_acc), diverged=False)
        except FloatingPointError:
            model = None
            trial.update(val_acc=0.0, diverged=True)
        finished.append(trial)
        key = (trial["diverged"], -trial["val_acc"], number)
        if not trial["diverged"] and (best_key is None or key < best_key):
            best_model, best_key = model, key
    ranked = rank(finished)
    if best_model is None:
        raise FloatingPointError("every trial diverged (a NaN or infinite loss): try lower "
                                 "learning rates")
    return SearchResult(ranked, best_model, None if test is None else test(best_model))
