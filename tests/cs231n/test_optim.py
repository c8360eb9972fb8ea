"""fastfc.cs231n.optim against FullyConnectedNets.ipynb's update-rule cells
(the same in 2017 and 2022), and the course's array semantics."""
import numpy as np
import pytest

from fastfc.cs231n import optim

from .notebook import rel_error

N, D = 4, 5


def linspace(low, high):
    return np.linspace(low, high, num=N * D).reshape(N, D)


def test_sgd_momentum_matches_the_notebook():
    w, dw, v = linspace(-0.4, 0.6), linspace(-0.6, 0.4), linspace(0.6, 0.9)
    config = {"learning_rate": 1e-3, "velocity": v}
    next_w, _ = optim.sgd_momentum(w, dw, config=config)
    expected_next_w = np.asarray([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]])
    expected_velocity = np.asarray([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]])
    assert rel_error(next_w, expected_next_w) < 1e-8  # "errors less than e-8"
    assert rel_error(expected_velocity, config["velocity"]) < 1e-8
    assert config["momentum"] == 0.9


def test_rmsprop_matches_the_notebook():
    w, dw, cache = linspace(-0.4, 0.6), linspace(-0.6, 0.4), linspace(0.6, 0.9)
    config = {"learning_rate": 1e-2, "cache": cache}
    next_w, _ = optim.rmsprop(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]])
    expected_cache = np.asarray([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]])
    assert rel_error(expected_next_w, next_w) < 1e-7  # "around e-7 or less"
    assert rel_error(expected_cache, config["cache"]) < 1e-7


def test_adam_matches_the_notebook():
    w, dw = linspace(-0.4, 0.6), linspace(-0.6, 0.4)
    m, v = linspace(0.6, 0.9), linspace(0.7, 0.5)
    config = {"learning_rate": 1e-2, "m": m, "v": v, "t": 5}
    next_w, _ = optim.adam(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]])
    expected_v = np.asarray([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]])
    expected_m = np.asarray([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]])
    # The notebook's own run prints 1.14e-07 ("around e-7 or less"): the
    # expected values are rounded to 8 places, some near zero.
    assert rel_error(expected_next_w, next_w) < 2e-7
    assert rel_error(expected_v, config["v"]) < 1e-7
    assert rel_error(expected_m, config["m"]) < 1e-7
    assert config["t"] == 6


@pytest.mark.parametrize("rule, state_keys", [
    (optim.sgd_momentum, ("velocity",)), (optim.rmsprop, ("cache",)), (optim.adam, ("m", "v"))])
def test_rules_return_new_arrays_and_leave_the_callers_alone(rule, state_keys):
    w, dw = linspace(-0.4, 0.6), linspace(-0.6, 0.4)
    states = {key: linspace(0.5, 0.7) for key in state_keys}
    config = dict(states, learning_rate=1e-2)
    w_before = w.copy()
    next_w, returned = rule(w, dw, config)
    assert returned is config
    assert next_w is not w and not np.shares_memory(next_w, w)
    np.testing.assert_array_equal(w, w_before)
    for key, given in states.items():
        np.testing.assert_array_equal(given, linspace(0.5, 0.7))  # the caller's array
        assert config[key] is not given and not np.array_equal(config[key], given)
    assert not np.array_equal(next_w, w)


def test_sgd_updates_in_place_as_the_course():
    w, dw = linspace(-0.4, 0.6), linspace(-0.6, 0.4)
    want = w - 1e-2 * dw
    next_w, config = optim.sgd(w, dw)
    assert next_w is w
    np.testing.assert_allclose(w, want, rtol=1e-15)
    assert config == {"learning_rate": 1e-2}


def test_rules_accept_a_gradient_of_another_float_type():
    w = linspace(-0.4, 0.6).astype(np.float32)
    next_w, config = optim.adam(w, linspace(-0.6, 0.4))
    assert next_w.dtype == np.float32 and config["m"].dtype == np.float32


@pytest.mark.parametrize("config, error, match", [
    ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ({"learnig_rate": 1e-3}, ValueError, "'learnig_rate'"),
    ({"velocity": np.zeros((2, 2))}, ValueError, "'velocity'"),
    ("fast", TypeError, "config must be a dict"),
])
def test_bad_configs_name_the_key(config, error, match):
    with pytest.raises(error, match=match):
        optim.sgd_momentum(linspace(0, 1), linspace(0, 1), config)
