"""fastfc._validation: one rule for every argument check (wrong type:
TypeError, wrong value: ValueError, both naming the argument)."""
import math

import numpy as np
import pytest

from fastfc._validation import (ArgumentTypeError, check_array, check_int, check_probability, check_real,
                                check_seed)


@pytest.mark.parametrize("check, value, error", [
    (lambda v: check_int("n", v, low=1), "3", TypeError),
    (lambda v: check_int("n", v, low=1), True, TypeError),
    (lambda v: check_int("n", v, low=1), 2.0, TypeError),
    (lambda v: check_int("n", v, low=1), 0, ValueError),
    (lambda v: check_int("n", v, low=0, high=9), 10, ValueError),
    (lambda v: check_real("lr", v, low=0), None, TypeError),
    (lambda v: check_real("lr", v, low=0), np.bool_(True), TypeError),
    (lambda v: check_real("lr", v, low=0), -1e-9, ValueError),
    (lambda v: check_real("lr", v, low=0), math.nan, ValueError),
    (lambda v: check_real("lr", v, low=0), math.inf, ValueError),
    (lambda v: check_real("lr", v, low=0, low_open=True), 0.0, ValueError),
    (lambda v: check_real("lr", v, low=0, finite=False), math.nan, ValueError),
    (lambda v: check_probability("p", v), 1.0, ValueError),
    (lambda v: check_probability("p", v), "0.5", TypeError),
    (lambda v: check_seed("seed", v), -1, ValueError),
    (lambda v: check_seed("seed", v), 1.5, TypeError),
    (lambda v: check_seed("seed", v), np.random.default_rng(0), TypeError),
    (lambda v: check_array("X", v, ndim=2), np.zeros(3), ValueError),
    (lambda v: check_array("X", v), np.array(["a"]), TypeError),
])
def test_wrong_type_is_a_type_error_wrong_value_a_value_error(check, value, error):
    with pytest.raises(error) as info:
        check(value)
    assert str(info.value).split()[0] in ("n", "lr", "p", "seed", "X")  # names the argument
    if error is TypeError:
        assert isinstance(info.value, ArgumentTypeError) and isinstance(info.value, ValueError)
    else:
        assert not isinstance(info.value, TypeError)


def test_good_values_come_back_as_stored():
    assert check_int("n", np.int64(5), low=1) == 5 and type(check_int("n", np.int64(5))) is int
    assert check_real("lr", 1, low=0) == 1.0 and type(check_real("lr", np.float32(0.5))) is float
    assert check_real("lr", math.inf, low=0, finite=False) == math.inf
    assert check_probability("p", 0) == 0.0
    generator = np.random.default_rng(0)
    assert check_seed("seed", generator, generator=True) is generator
    assert check_seed("seed", None) is None and check_seed("seed", np.uint8(7)) == 7
    x = np.zeros((2, 3))
    assert check_array("X", x, ndim=2) is x


def test_messages_say_what_the_argument_must_be():
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        check_int("batch_size", 0, low=1)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got 1.0"):
        check_probability("p", 1.0)
    with pytest.raises(ValueError, match=r"X must have shape \(N, C, H, W\), got shape \(3,\)"):
        check_array("X", np.zeros(3), ndim=4, layout="(N, C, H, W)")
