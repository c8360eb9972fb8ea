"""fastfc.search: seeded draws from the search space (log-uniform learning
rate, weight decay and momentum), ranking on validation accuracy, and the
test set touched once, by the chosen model."""
import math

import numpy as np
import pytest

from fastfc.search import Choice, LogUniform, Uniform, random_search, rank, sample_trials

SPACE = {"lr": LogUniform(1e-4, 1e-1), "weight_decay": LogUniform(1e-6, 1e-2),
         "momentum": LogUniform(0.5, 0.99), "hidden": Choice([16, 32]), "dropout": Uniform(0, 0.5)}


def test_draws_stay_in_range_are_log_uniform_and_repeat_with_the_seed():
    trials = list(sample_trials(SPACE, 2000, seed=3))
    lrs = np.array([t["lr"] for t in trials])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # Log-uniform: each decade of [1e-4, 1e-1] gets about a third of the draws.
    assert all(abs(np.mean((lrs >= lo) & (lrs < lo * 10)) - 1 / 3) < 0.05 for lo in (1e-4, 1e-3, 1e-2))
    assert all(0.5 <= t["momentum"] <= 0.99 and t["hidden"] in (16, 32) for t in trials)
    assert list(sample_trials(SPACE, 5, seed=3)) == trials[:5]
    assert list(sample_trials(SPACE, 5, seed=4)) != trials[:5]
    assert list(sample_trials({"lr": LogUniform(0, 0), "fixed": 7}, 1, seed=0)) == [{"lr": 0.0, "fixed": 7}]


@pytest.mark.parametrize("make, message", [
    (lambda: LogUniform(0, 1e-2), "LOW > 0"),
    (lambda: LogUniform(1e-2, 1e-4), "LOW <= HIGH"),
    (lambda: Uniform(0, math.inf), "finite"),
    (lambda: Choice([]), "at least one option"),
    (lambda: sample_trials(SPACE, 0, seed=0), "trials must be a positive int"),
])
def test_bad_spaces_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_random_search_ranks_on_validation_and_tests_the_best_once():
    seen, tested = [], []

    def train(hyper):
        seen.append(hyper)
        if hyper["lr"] > 0.05:
            raise FloatingPointError("diverged")
        return {"lr": hyper["lr"]}, -abs(math.log10(hyper["lr"]) + 2.5)  # best near lr 10**-2.5

    result = random_search(train, SPACE, trials=12, seed=1, test=lambda model: tested.append(model) or 0.9)
    assert len(seen) == 12 and len(tested) == 1 and result.test == 0.9
    assert tested[0] is result.model and result.model["lr"] == result.best["lr"]
    finite = [t for t in result.trials if not t["diverged"]]
    assert [t["val_acc"] for t in finite] == sorted((t["val_acc"] for t in finite), reverse=True)
    assert all(t["diverged"] for t in result.trials[len(finite):])
    assert rank(result.trials) == result.trials


def test_a_search_where_every_trial_diverges_says_so():
    def diverge(hyper):
        raise FloatingPointError("the loss became NaN")
    with pytest.raises(FloatingPointError, match="every trial diverged"):
        random_search(diverge, SPACE, trials=2)
