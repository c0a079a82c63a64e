"""Relative precision, entry by entry, against extended-precision references.

An error scaled to the largest entry hides exactly the failures that matter
here: a sigmoid that rounds 2e-9 to 0 is "within 1e-9 of the right answer",
but its log is −inf. So every entry whose true value is a normal float must be
within a few units in the last place (ulp) of the reference, computed in
numpy's long double from the same inputs.

The softmax family is checked on logits whose differences x − max are exact
in the dtype (integers and eighths): elsewhere that subtraction's rounding,
which every working-precision implementation shares, dominates.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from microtape.ops import IN_PLACE_MIN_SIZE

LONG = np.longdouble
EXTENDED = np.finfo(LONG).eps < np.finfo(np.float64).eps
ULPS = 8  # allowed error, in units in the last place of the true value


def _needs_reference(dtype):
    if dtype == np.float64 and not EXTENDED:
        pytest.skip("long double is float64 here: no more precise reference for float64")


def assert_ulps(got, want, dtype, what):
    """Every entry whose true value ``want`` is a normal float is within ULPS ulp of it."""
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}"
    want = np.asarray(want, dtype=LONG)
    normal = np.abs(want) >= np.finfo(dtype).tiny
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(LONG)
    err = np.where(normal, np.abs(got.astype(LONG) - want) / ulp, 0)
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err[worst] <= ULPS, (f"{what}: {float(err[worst]):.3g} ulp at {worst}: "
                                f"{got[worst]!r} against {float(want[worst])!r}")


# -- references ---------------------------------------------------------------------

def sigmoid_reference(x):
    x = np.asarray(x, dtype=LONG)
    e = np.exp(-np.abs(x))  # ≤ 1: no overflow, and no cancellation on either side
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def log_softmax_reference(x, axis=-1):
    """(x − m) − log1p(Σ over all but one largest entry of exp(x − m)), in long double."""
    x = np.asarray(x, dtype=LONG)
    z = x - np.max(x, axis=axis, keepdims=True)
    top = np.argmax(x, axis=axis)
    e = np.exp(z)
    np.put_along_axis(e, np.expand_dims(top, axis), 0, axis)
    return z - np.log1p(np.sum(e, axis=axis, keepdims=True))


def loss_reference(x, labels):
    lsm = log_softmax_reference(x)
    return -np.mean(np.take_along_axis(lsm, labels[:, None], axis=1))


# -- sigmoid ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_has_its_relative_precision_everywhere(dtype):
    _needs_reference(dtype)
    low = -87.0 if dtype == np.float32 else -708.0  # below, the true value is subnormal
    x = np.concatenate([np.linspace(low, 40.0, 200_001), np.linspace(-20.0, 20.0, 20_001)])
    x = x.astype(dtype)
    want = sigmoid_reference(x)
    with np.errstate(all="raise", under="ignore"):
        assert_ulps(mt.sigmoid(x).value, want, dtype, "sigmoid, in place")
        small = np.concatenate([mt.sigmoid(part).value
                                for part in np.array_split(x, len(x) // (IN_PLACE_MIN_SIZE // 2))])
    assert_ulps(small, want, dtype, "sigmoid, allocating")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_gives_no_warning_for_any_finite_input(dtype):
    fi = np.finfo(dtype)
    x = np.array([fi.min, -1e4, -745.0, -88.8, -1e-30, -0.0, 0.0, fi.tiny, 88.8, 1e4, fi.max],
                 dtype=dtype)
    with np.errstate(all="raise", under="ignore"):
        s = mt.sigmoid(x).value
    # at fi.min the true S is 0; capping exp's argument gives a subnormal at most
    assert (s[:4] < 0.5).all() and 0.0 <= s[0] < fi.tiny and s[-1] == 1.0
    assert (s[4:8] == 0.5).all() and (s[8:] > 0.5).all()


# -- the softmax family ---------------------------------------------------------------

EXTREME_ROWS = [
    [0.0, -20.0, -21.0],                 # one confident class
    [30.0, 0.0, 0.0],
    [1e4, -1e4, 0.0],
    [-50.0, -60.0, -70.0],
    [5.0, 5.0, -3.0],                    # a tie for the largest
    [0.125, 0.25, -0.5],
    [88.0, 0.0, -88.0],
    [700.0, 0.0, -30.0],
]


def _rows(dtype, seed=0):
    rng = np.random.default_rng(seed)
    extra = np.round(rng.normal(size=(16, 3)) * 8 * 30) / 8  # eighths: exact differences
    return np.concatenate([np.array(EXTREME_ROWS), extra]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_and_softmax_entry_by_entry(dtype, axis):
    _needs_reference(dtype)
    x = _rows(dtype)
    want = log_softmax_reference(x, axis)
    assert_ulps(mt.log_softmax(x, axis=axis).value, want, dtype, "log_softmax")
    assert_ulps(mt.softmax(x, axis=axis).value, np.exp(want), dtype, "softmax")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loss_of_each_row_and_of_the_batch(dtype):
    _needs_reference(dtype)
    x = _rows(dtype)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=len(x))
    labels[:len(EXTREME_ROWS)] = np.argmax(x[:len(EXTREME_ROWS)], axis=1)  # the confident, right rows
    for k in range(len(x)):  # one row at a time: a tiny loss must not be rounded to 0
        got = mt.softmax_cross_entropy(x[k:k + 1], labels[k:k + 1]).value
        assert_ulps(got, loss_reference(x[k:k + 1], labels[k:k + 1]), dtype, f"loss of row {k}")
    got = mt.softmax_cross_entropy(x, labels).value
    assert_ulps(got, loss_reference(x, labels), dtype, "loss of the batch")
