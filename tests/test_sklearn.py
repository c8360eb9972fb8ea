"""fastfc.sklearn: scikit-learn's own estimator checks; the same training
trajectories as sklearn.neural_network in float64 (so the parameters, the
L2 term, Adam, SGD and its schedules, the stopping rules and early stopping
mean what scikit-learn's do); float32 training; reproducibility; partial_fit,
warm_start and pickling; Pipeline and the searches with n_jobs=2; bad
parameters; and scikit-learn staying an optional import."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install scikit-learn)")

from joblib import parallel_backend  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastfc.datasets import load_digits  # noqa: E402
from fastfc.sklearn import MLPClassifier, MLPRegressor, _Trainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    """(X_train, y_train, X_test, y_test): the embedded digits as rows in [0, 1]."""
    data = load_digits(val_size=0)
    return tuple(data[key].reshape(len(data[key]), -1) if key.startswith("X") else data[key]
                 for key in ("X_train", "y_train", "X_test", "y_test"))


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def all_parameters(model):
    return [*model.coefs_, *model.intercepts_]


# ---- scikit-learn's estimator checks ------------------------------------------------

# max_iter=100 is the setting scikit-learn's own test suite gives its MLPs.
# No check needs to be marked as an expected failure.
@parametrize_with_checks([MLPClassifier(max_iter=100, random_state=0),
                          MLPRegressor(max_iter=100, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- the same algorithm as scikit-learn's ------------------------------------------

def regression_data(outputs=1):
    X, y = make_regression(120, 5, n_targets=outputs, noise=1.0, random_state=0)
    return X / 2, y / 50


CLASSIFIER_CASES = {
    "adam relu": dict(),
    "adam tanh batch 32 alpha": dict(activation="tanh", batch_size=32, alpha=0.05),
    "sgd logistic invscaling": dict(activation="logistic", solver="sgd", learning_rate="invscaling",
                                    learning_rate_init=0.1),
    "sgd identity adaptive plateaus": dict(activation="identity", solver="sgd",
                                           learning_rate="adaptive", tol=1e-2, n_iter_no_change=2,
                                           learning_rate_init=0.05, batch_size=16, max_iter=50),
    "sgd plain momentum unshuffled": dict(solver="sgd", nesterovs_momentum=False, shuffle=False,
                                          learning_rate_init=0.05),
    "sgd no momentum": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    "adam early stopping": dict(early_stopping=True, n_iter_no_change=3, learning_rate_init=0.01,
                                max_iter=60),
    "adam stops on tol": dict(tol=0.05, n_iter_no_change=2, hidden_layer_sizes=(8, 6),
                              max_iter=50),
    "no hidden layer": dict(hidden_layer_sizes=()),
}


def classification_target(kind, y, X):
    return {"multiclass": y, "binary": np.where(y == 1, "yes", "no"),
            "multilabel": np.c_[y == 1, y == 2, X[:, 0] > 5].astype(int)}[kind]


def assert_same_fit(ours, theirs, rtol=1e-9):
    """Two fits of the same data followed the same trajectory (float64)."""
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_layers_ == theirs.n_layers_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    for name in ("best_loss_", "validation_scores_", "best_validation_score_"):
        assert (getattr(ours, name) is None) == (getattr(theirs, name) is None), name
        if getattr(theirs, name) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=rtol)
    for a, b in zip(all_parameters(ours), all_parameters(theirs), strict=True):
        assert a.shape == b.shape and a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_classifier_follows_sklearn_in_float64(iris, case, target):
    X, y = iris
    y = classification_target(target, y, X)
    settings = {"max_iter": 15, "random_state": 0, **CLASSIFIER_CASES[case]}
    theirs = neural_network.MLPClassifier(**settings).fit(X, y)
    ours = MLPClassifier(dtype=np.float64, **settings).fit(X, y)
    assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7,
                               atol=1e-12)


@pytest.mark.parametrize("case", ["adam relu", "sgd logistic invscaling", "adam early stopping",
                                  "sgd identity adaptive plateaus"])
@pytest.mark.parametrize("loss,outputs", [("squared_error", 1), ("squared_error", 2),
                                          ("poisson", 1)])
def test_regressor_follows_sklearn_in_float64(case, loss, outputs):
    X, y = regression_data(outputs)
    settings = {"max_iter": 15, "random_state": 0, **CLASSIFIER_CASES[case]}
    if loss == "poisson":
        if "loss" not in neural_network.MLPRegressor().get_params():
            pytest.skip("scikit-learn < 1.7 has no loss='poisson'")
        y = np.abs(y)
        settings["loss"] = loss
    theirs = neural_network.MLPRegressor(**settings).fit(X, y)
    ours = MLPRegressor(dtype=np.float64, **settings).fit(X, y)
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-12)


def test_partial_fit_and_warm_start_follow_sklearn(iris):
    """partial_fit continues one optimizer across calls; fit with warm_start
    continues the weights with a fresh optimizer; both as scikit-learn."""
    X, y = iris
    sides = [neural_network.MLPClassifier(random_state=0, solver="sgd", learning_rate="invscaling",
                                          learning_rate_init=0.05),
             MLPClassifier(random_state=0, solver="sgd", learning_rate="invscaling",
                           learning_rate_init=0.05, dtype=np.float64)]
    for model in sides:
        for start in range(0, 150, 50):
            model.partial_fit(X[start:start + 50], y[start:start + 50], classes=np.unique(y))
        model.set_params(warm_start=True, max_iter=5, solver="adam").fit(X, y)
        model.fit(X, y)
    assert_same_fit(sides[1], sides[0])


# ---- float32, the default -----------------------------------------------------------

def test_float32_training_matches_sklearn_accuracy(digits):
    X, y, X_test, y_test = digits
    ours = MLPClassifier((64,), max_iter=40, random_state=0).fit(X, y)
    with threadpool_limits(1, user_api="blas"):  # NumPy's BLAS threads only slow this small fit
        theirs = neural_network.MLPClassifier((64,), max_iter=40, random_state=0).fit(X, y)
    assert all(p.dtype == np.float32 for p in all_parameters(ours))
    assert ours.predict_proba(X_test).dtype == np.float64
    assert ours.score(X_test, y_test) >= theirs.score(X_test, y_test) - 0.01
    assert ours.score(X_test, y_test) > 0.95
    # The same trajectory to float32 rounding.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, "float64", np.dtype("float32")])
def test_dtype_parameter(iris, dtype):
    X, y = iris
    model = MLPClassifier((5,), max_iter=3, dtype=dtype).fit(X, y)
    assert all(p.dtype == np.dtype(dtype) for p in all_parameters(model))


def test_results_depend_only_on_random_state(digits):
    X, y, X_test, _ = digits
    fits = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        fits.append(MLPClassifier((32,), max_iter=3, random_state=7).fit(X, y))
    for a, b in zip(all_parameters(fits[0]), all_parameters(fits[1])):
        np.testing.assert_array_equal(a, b)
    other = MLPClassifier((32,), max_iter=3, random_state=8).fit(X, y)
    assert not np.array_equal(other.coefs_[0], fits[0].coefs_[0])
    # random_state=None draws from NumPy's global generator, as scikit-learn.
    np.random.seed(3)
    a = MLPClassifier((8,), max_iter=1).fit(X, y)
    np.random.seed(3)
    b = MLPClassifier((8,), max_iter=1).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))


# ---- the estimator's state ----------------------------------------------------------

def test_partial_fit_needs_classes_first(iris):
    X, y = iris
    model = MLPClassifier(max_iter=2)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    model.partial_fit(X[:10], y[:10], classes=[0, 1, 2])  # y holds one class: allowed
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="not the same"):
        model.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        model.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_cannot_change_layers(iris):
    X, y = iris
    model = MLPClassifier((5,), max_iter=2, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="cannot change its layers"):
        model.set_params(hidden_layer_sizes=(6,)).fit(X, y)
    # Without warm_start the new architecture is simply fitted.
    model.set_params(warm_start=False).fit(X, y)
    assert model.coefs_[0].shape == (4, 6)


def test_pickle_keeps_predictions_and_optimizer_state(iris):
    """A pickled and unpickled model predicts the same, and partial_fit goes
    on from the same optimizer state (Adam's moments and step count)."""
    X, y = iris
    model = MLPClassifier((10,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    model.partial_fit(X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))
    for fitted in (model, clone):
        fitted.partial_fit(X, y)
    for a, b in zip(all_parameters(model), all_parameters(clone)):
        np.testing.assert_array_equal(a, b)
    # The pickle holds no network (nor its buffers and last batch).
    assert not any(isinstance(value, _Trainer) for value in model.__getstate__().values())


def test_pickle_from_before_the_epsilon_variant_resumes_alike(iris):
    """fastfc once kept Adam's per-step rescaled eps in the optimizer's groups;
    a model pickled then resumes with its epsilon, not the stale value."""
    X, y = iris
    model = MLPClassifier((10,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    state = model.__getstate__()
    for group in state["_fastfc_optimizer_state"]["state_dict"]["param_groups"]:
        assert group["eps"] == model.epsilon
        group["eps"] = 1e-2  # what an old pickle could hold (a large step count's eps is ~1e-8)
    old = MLPClassifier()
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    clone = pickle.loads(pickle.dumps(model))
    for fitted in (old, clone):
        fitted.partial_fit(X, y)
    for a, b in zip(all_parameters(old), all_parameters(clone)):
        np.testing.assert_array_equal(a, b)


def test_assigned_coefs_are_used(iris):
    """coefs_ may be replaced (as with scikit-learn): predict uses the new
    arrays and the next partial_fit trains on from them."""
    X, y = iris
    model = MLPClassifier((6,), random_state=0, max_iter=5).fit(X, y)
    other = MLPClassifier((6,), random_state=1, max_iter=5).fit(X, y)
    before = model.coefs_[0].copy()
    model.coefs_ = [c.copy() for c in other.coefs_]
    model.intercepts_ = [b.copy() for b in other.intercepts_]
    np.testing.assert_array_equal(model.predict_proba(X), other.predict_proba(X))
    model.partial_fit(X, y)  # one Adam step of at most about learning_rate_init
    assert np.abs(model.coefs_[0] - other.coefs_[0]).max() < 0.01
    assert np.abs(before - other.coefs_[0]).max() > 0.1


def test_predictions_and_probabilities(iris):
    X, y = iris
    X = StandardScaler().fit_transform(X)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = MLPClassifier((16,), max_iter=100, learning_rate_init=0.01, random_state=0)
    model.fit(X, labels)
    proba = model.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))
    assert model.score(X, labels) > 0.9
    # Binary: one logistic output, two probability columns.
    binary = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, labels == "setosa")
    assert binary.coefs_[-1].shape == (4, 1) and binary.predict_proba(X).shape == (150, 2)
    # Multi-label: an indicator matrix in and out.
    Y = np.c_[y == 0, y == 2]
    multilabel = MLPClassifier((8,), max_iter=50, random_state=0).fit(X, Y)
    assert multilabel.out_activation_ == "logistic" and multilabel.predict(X).shape == (150, 2)


def test_many_rows_predict_in_pieces(digits):
    """predict runs _PREDICT_ROWS rows at a time: pieces agree with one pass."""
    X, y, _, _ = digits
    model = MLPClassifier((16,), max_iter=2, random_state=0).fit(X, y)
    X_big = np.tile(X, (4, 1))  # 5748 rows: two pieces
    proba = model.predict_proba(X)
    # The GEMMs may round a row differently in a batch of another size.
    np.testing.assert_allclose(model.predict_proba(X_big), np.tile(proba, (4, 1)), rtol=1e-5)


def test_verbose_prints_each_epoch(iris, capsys):
    X, y = iris
    MLPClassifier((4,), max_iter=2, verbose=True).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and lines[1].startswith("Iteration 2, ")


def test_convergence_warning_and_stopping(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier((4,), max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MLPClassifier((4,), max_iter=500, tol=1.0, n_iter_no_change=1).fit(X, y)
    # Epoch 1 sets the best loss; epochs 2 and 3 do not improve it by tol:
    # more than n_iter_no_change such epochs stop training.
    assert model.n_iter_ == 3


# ---- scikit-learn's tools ------------------------------------------------------------

def test_pipeline(digits):
    X, y, X_test, y_test = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=20, random_state=0))
    assert pipe.fit(X, y).score(X_test, y_test) > 0.93


def test_grid_search_with_two_processes(digits):
    """joblib's default backend: the estimators travel to 2 worker processes."""
    X, y, _, _ = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=10, batch_size=64,
                                                         random_state=0))
    grid = {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__learning_rate_init": [1e-3, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
    serial = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X, y)
    assert search.best_score_ > 0.9
    assert search.best_params_["mlpclassifier__learning_rate_init"] == 1e-2
    # Other processes may run other thread counts: scores agree to rounding.
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], atol=0.02)


def test_randomized_search_with_two_threads(digits):
    """Two fits at once in one process (fastfc's kernels release the GIL)."""
    X, y, _, _ = digits
    distributions = {"alpha": loguniform(1e-5, 1e-1), "hidden_layer_sizes": [(16,), (32,)],
                     "learning_rate_init": loguniform(1e-3, 1e-2)}
    search = RandomizedSearchCV(MLPClassifier(max_iter=10, batch_size=64, random_state=0),
                                distributions, n_iter=3, cv=2, n_jobs=2, random_state=0)
    with parallel_backend("threading", n_jobs=2):
        search.fit(X, y)
    assert search.best_score_ > 0.85
    assert search.best_estimator_.coefs_[0].dtype == np.float32


# ---- bad input -----------------------------------------------------------------------

def test_lbfgs_is_refused_with_the_reason(iris):
    with pytest.raises(ValueError, match="lbfgs.*full-batch"):
        MLPClassifier(solver="lbfgs").fit(*iris)


@pytest.mark.parametrize("name,value,error", [
    ("hidden_layer_sizes", (10, 0), ValueError), ("hidden_layer_sizes", "10", TypeError),
    ("activation", "softplus", ValueError), ("solver", "rmsprop", ValueError),
    ("alpha", -1.0, ValueError), ("alpha", "0.1", TypeError), ("batch_size", 0, ValueError),
    ("batch_size", 2.5, TypeError), ("learning_rate", "cosine", ValueError),
    ("learning_rate_init", 0.0, ValueError), ("power_t", -0.5, ValueError),
    ("max_iter", 0, ValueError), ("max_iter", 10.0, TypeError), ("shuffle", 1, TypeError),
    ("tol", float("nan"), ValueError), ("verbose", "yes", TypeError),
    ("warm_start", "no", TypeError), ("momentum", 1.5, ValueError),
    ("nesterovs_momentum", None, TypeError), ("early_stopping", 0, TypeError),
    ("validation_fraction", 1.0, ValueError), ("beta_1", 1.0, ValueError),
    ("beta_2", -0.1, ValueError), ("epsilon", 0.0, ValueError),
    ("n_iter_no_change", 0, ValueError), ("max_fun", 0, ValueError),
    ("random_state", "seed", ValueError), ("dtype", np.int32, ValueError),
    ("dtype", None, TypeError),
])
def test_bad_parameters_are_named(iris, name, value, error):
    model = MLPClassifier(max_iter=1).set_params(**{name: value})
    with pytest.raises(error, match=name if name != "random_state" else "seed"):
        model.fit(*iris)


def test_bad_regressor_input():
    X, y = regression_data()
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="y >= 0"):
        MLPRegressor(loss="poisson").fit(X, y - 10)


def test_sparse_input_is_refused(iris):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = iris
    with pytest.raises(TypeError, match="[Ss]parse"):
        MLPClassifier(max_iter=1).fit(scipy_sparse.csr_matrix(X), y)


# ---- scikit-learn stays optional -----------------------------------------------------

def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)


def test_import_fastfc_does_not_import_sklearn():
    result = run_python("import sys, fastfc, fastfc.models, fastfc.optim, fastfc.solver\n"
                        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fastfc_sklearn_without_sklearn_says_how_to_install():
    result = run_python("import sys\nsys.modules['sklearn'] = None  # as if not installed\n"
                        "import fastfc.sklearn")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert 'pip install "fastfc[sklearn]"' in result.stderr
