"""The row gather (a shuffled batch's rows of the data set) against
fastfc.reference, on every thread count, and its bad input."""
import numpy as np
import pytest

import fastfc.functional as F
import fastfc.reference as R

from testutil import noncontiguous, num_threads


@pytest.mark.parametrize("shape, n_index", [
    ((1, 1), 1),
    ((5, 3), 12),                # repeats: more rows asked than there are
    ((97, 131), 64),             # a row length off every SIMD width
    ((2000, 784), 640),          # a batch large enough for every thread
    ((40, 3, 4, 5), 17),         # image rows (N, C, H, W)
    ((7,), 9),                   # 1-d: the rows are single values
    ((6, 0), 4),                 # empty rows
])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_reference(rng, dtype, shape, n_index, threads):
    x = rng.standard_normal(shape).astype(dtype)
    index = rng.integers(0, shape[0], n_index)
    index[0], index[-1] = shape[0] - 1, 0  # the last and the first row
    with num_threads(threads):
        got = F.gather_rows(x, index)
    assert got.dtype == dtype and got.shape == (n_index,) + shape[1:]
    np.testing.assert_array_equal(got, R.gather_rows(x, index))


def test_into_out_and_from_a_strided_x(rng, dtype):
    x = rng.standard_normal((50, 9)).astype(dtype)
    index = rng.permutation(50)[:20].astype(np.int32)  # any integer type
    out = np.full((20, 9), np.nan, dtype)
    assert F.gather_rows(noncontiguous(x), index, out=out) is out
    np.testing.assert_array_equal(out, x[index])


def test_no_rows_asked(dtype):
    x = np.ones((4, 3), dtype)
    got = F.gather_rows(x, np.array([], np.int64))
    assert got.shape == (0, 3)
    assert R.gather_rows(x, np.array([], np.int64)).shape == (0, 3)


@pytest.mark.parametrize("index, error, match", [
    ([0, 4], ValueError, r"index\[1\] is 4, outside the 4 rows"),
    ([-1], ValueError, r"index\[0\] is -1.*negative ones are refused"),
    (np.array([2**64 - 1], np.uint64), ValueError, r"index\[0\] is 18446744073709551615"),
    ([0.0, 1.0], TypeError, "index must be an array of integers"),
    ([[0, 1]], ValueError, r"index must be 1-d"),
], ids=["past-the-end", "negative", "huge-unsigned", "floats", "2-d"])
def test_bad_index_is_refused_and_out_untouched(index, error, match):
    x = np.arange(12.0).reshape(4, 3)
    out = np.full((np.asarray(index).size, 3), -7.0)
    with pytest.raises(error, match=match):
        F.gather_rows(x, index, out=out if np.ndim(index) == 1 else None)
    assert (out == -7.0).all()
    with pytest.raises((TypeError, ValueError)):
        R.gather_rows(x, np.asarray(index))


@pytest.mark.parametrize("x, out, error, match", [
    (np.arange(12).reshape(4, 3), None, TypeError, "x must be a float32 or float64 array"),
    (np.ones((4, 3)), np.ones((2, 3), np.float32), ValueError, "out must be a float64 array of shape"),
    (np.ones((4, 3)), np.ones((3, 3)), ValueError, r"out must be a float64 array of shape \(2, 3\)"),
    (np.ones((4, 3)), np.ones((2, 6))[:, ::2], ValueError, "out must be C-contiguous"),
], ids=["integer-x", "out-dtype", "out-shape", "out-strided"])
def test_bad_arrays_are_refused(x, out, error, match):
    with pytest.raises(error, match=match):
        F.gather_rows(x, [0, 1], out=out)


def test_out_overlapping_x_is_refused():
    x = np.arange(12.0).reshape(4, 3)
    with pytest.raises(ValueError, match="out overlaps an input"):
        F.gather_rows(x, [3, 2], out=x[:2])
