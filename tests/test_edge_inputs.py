"""Inputs at the edges of an op's domain: each once gave a silently wrong number or a crash."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import microtape as mt
from microtape.ops import IN_PLACE_MIN_SIZE


def _grads(f, *values):
    tensors = [mt.Tensor(v) for v in values]
    with mt.Tape() as tape:
        out = f(*tensors)
    return tape.gradient(out, tensors)


# -- einsum: a length-1 axis numpy broadcasts ----------------------------------

@pytest.mark.parametrize("spec, b_shape", [("ij,ij->ij", (3, 4)), ("ij,jk->ik", (4, 2)),
                                           ("ij,j->i", (4,))])
def test_einsum_sums_the_gradient_back_over_a_broadcast_axis(spec, b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 1)), rng.normal(size=b_shape)
    da, db = _grads(lambda x, y: mt.einsum(spec, x, y).sum(), a, b)
    # The same product with the broadcast made explicit, where nothing is length 1.
    wide = np.repeat(a, 4, axis=1)
    dwide, db_wide = _grads(lambda x, y: mt.einsum(spec, x, y).sum(), wide, b)
    assert da.shape == (3, 1) and db.shape == b_shape
    np.testing.assert_allclose(da, dwide.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(db, db_wide)


def test_einsum_gradient_when_the_other_operand_is_the_broadcast_one():
    a, b = np.ones((3, 4)), np.ones((1, 4))
    da, db = _grads(lambda x, y: mt.einsum("ij,ij->ij", x, y).sum(), a, b)
    np.testing.assert_array_equal(da, np.ones((3, 4)))
    np.testing.assert_array_equal(db, np.full((1, 4), 3.0))


# -- pow at a zero base ---------------------------------------------------------

def test_pow_gradient_wrt_the_exponent_is_zero_at_a_zero_base():
    dx, dp = _grads(lambda x, p: (x ** p).sum(), np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    np.testing.assert_allclose(dp, [0.0, 8 * np.log(2.0)])
    np.testing.assert_allclose(dx, [0.0, 12.0])


def test_pow_to_the_zero_has_zero_gradient_even_at_zero():
    (dx,) = _grads(lambda x: (x ** 0).sum(), np.array([0.0, 3.0]))
    np.testing.assert_array_equal(dx, [0.0, 0.0])
    dx, dp = _grads(lambda x, p: (x ** p).sum(), np.array([0.0, 3.0]), np.array([0.0, 0.0]))
    np.testing.assert_array_equal(dx, [0.0, 0.0])
    np.testing.assert_allclose(dp, [0.0, np.log(3.0)])


# -- sigmoid far out on the negative side ----------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [3, IN_PLACE_MIN_SIZE + 1], ids=["allocating", "in place"])
def test_log_sigmoid_of_a_very_negative_input_is_finite(dtype, size):
    x = np.full(size, -20.0 if dtype == np.float32 else -600.0, dtype=dtype)
    with np.errstate(all="raise", under="ignore"):
        (dx,) = _grads(lambda t: mt.log(mt.sigmoid(t)).sum(), x)
        s = mt.sigmoid(x).value
    np.testing.assert_allclose(s, np.exp(x.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(dx, 1.0, rtol=1e-6)  # d log σ(x)/dx = 1 − σ(x)


# -- every Tensor an op makes is float ---------------------------------------------

def test_an_op_on_integer_arrays_makes_a_float64_tensor():
    out = mt.add(np.array([1, 2]), np.array([3, 4]))
    assert out.dtype == np.float64
    with mt.Tape() as tape:
        loss = (out * 0.3).sum()
    da = tape.gradient(loss, out)
    np.testing.assert_allclose(da, [0.3, 0.3])
    assert mt.sum(np.array([True, False, True])).dtype == np.float64
    assert mt.matmul(np.eye(2, dtype=int), np.ones((2, 1), dtype=int)).dtype == np.float64


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", [np.int64, np.uint8, np.bool_])
def test_the_loss_of_whole_number_logits_is_the_loss_of_their_floats(kind, reduction):
    # the stable form subtracts each row's max: in integers, exp of that stayed an
    # integer too, and the mean loss came out 0 for any such logits
    logits = np.array([[1, 2, 3], [3, 1, 0], [0, 0, 1]]).astype(kind)
    labels = np.array([2, 0, 1])
    floats = logits.astype(np.float64)
    got = mt.softmax_cross_entropy(logits, labels, reduction=reduction)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.value, mt.softmax_cross_entropy(floats, labels, reduction=reduction).value)
    one = mt.softmax_cross_entropy(logits[0], 1, reduction=reduction).value
    assert one == mt.softmax_cross_entropy(floats[0], 1, reduction=reduction).value
    value, grad = mt.value_and_grad(lambda v: mt.softmax_cross_entropy(v, labels).sum())(logits)
    expect = mt.value_and_grad(lambda v: mt.softmax_cross_entropy(v, labels).sum())(floats)
    assert value == expect[0]
    np.testing.assert_array_equal(grad, expect[1])


def test_float32_operands_keep_their_dtype():
    out = mt.mul(np.ones(3, np.float32), np.ones(3, np.float32))
    assert out.dtype == np.float32


def test_an_op_refuses_a_complex_array():
    with pytest.raises(TypeError, match="neg: microtape differentiates real functions"):
        mt.neg(np.array([1j, 2]))


# -- labels -----------------------------------------------------------------------

def test_uint64_class_indices_work():
    logits = mt.Tensor(np.random.default_rng(0).normal(size=(4, 3)))
    labels = np.array([0, 2, 1, 2])
    expect = mt.softmax_cross_entropy(logits, labels).value
    got = mt.softmax_cross_entropy(logits, labels.astype(np.uint64)).value
    assert got == expect


def test_negative_int8_label_with_256_classes_is_refused():
    logits = mt.Tensor(np.zeros((2, 300)))
    with pytest.raises(mt.InputError, match="class index -1 is out of range for 300 classes"):
        mt.softmax_cross_entropy(logits, np.array([3, -1], dtype=np.int8))


def test_an_int8_label_of_255_with_300_classes_is_fine():
    logits = mt.Tensor(np.zeros((1, 300)))
    loss = mt.softmax_cross_entropy(logits, np.array([-128], dtype=np.int16) + 383)
    np.testing.assert_allclose(loss.value, np.log(300))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_label_row_holding_nan_is_refused_naming_the_row(bad):
    rows = np.full((3, 2), 0.5)
    rows[1, 0] = bad
    with pytest.raises(mt.InputError, match="label row 1 holds NaN or inf"):
        mt.softmax_cross_entropy(mt.Tensor(np.zeros((3, 2))), rows)


# -- empty batches --------------------------------------------------------------------

def test_an_empty_batch_with_the_mean_is_a_clear_error():
    with pytest.raises(mt.InputError, match=r"the batch is empty \(logits of shape \(0, 3\)\)"):
        mt.softmax_cross_entropy(mt.Tensor(np.zeros((0, 3))), np.zeros(0, dtype=int))


@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), 0), ((3, 0), 1), ((2, 0, 3), (0, 1))])
def test_a_mean_of_no_elements_is_refused_naming_the_shape(shape, axis):
    # numpy's NaN came with a warning from numpy's own code, naming neither op nor call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(mt.InputError, match=rf"mean: there is nothing to average \(A has "
                                                rf"shape {re.escape(str(shape))}"):
            mt.mean(mt.Tensor(np.zeros(shape)), axis=axis)


def test_an_empty_batch_sums_to_zero_with_a_zero_gradient():
    logits = mt.Tensor(np.zeros((0, 3)))
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(logits, np.zeros(0, dtype=int), reduction="sum")
    assert loss.value == 0.0
    assert tape.gradient(loss, logits).shape == (0, 3)


def test_logits_with_no_classes_are_a_shape_error():
    with pytest.raises(mt.ShapeError, match=r"logits of shape \(2, 0\) have no classes"):
        mt.softmax_cross_entropy(mt.Tensor(np.zeros((2, 0))), np.zeros(2, dtype=int))


@pytest.mark.parametrize("op", [lambda t: t + 0.5, lambda t: t * 2.0, lambda t: 1.0 / t,
                                lambda t: t ** 2.0, mt.sigmoid, mt.relu, lambda t: t - 3])
def test_a_float32_scalar_stays_float32_with_python_numbers(op):
    # numpy 1.x promotes a 0-d float32 met with a Python number to float64; CI runs this there too.
    t = mt.Tensor(np.float32(1.5))
    with mt.Tape() as tape:
        out = op(t)
    assert out.dtype == np.float32
    assert tape.gradient(out, t).dtype == np.float32


@pytest.mark.parametrize("op", [mt.sum, mt.max, mt.min])
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_a_reduction_of_a_0d_input_over_axis_0_has_the_gradient_of_no_reduction(op, axis, keepdims):
    # numpy takes axis 0 (or -1) of a 0-d array; the VJP put the "reduced" axis back: its
    # backward pass failed in numpy's broadcast (sum) or with a ZeroDivisionError (max, min)
    f = lambda a: mt.sum(op(a, axis=axis, keepdims=keepdims) ** 3)  # noqa: E731
    assert mt.grad(f)(np.array(2.0)) == 12.0
    assert mt.grad(mt.grad(f))(np.array(2.0)) == 12.0
    compiled = mt.value_and_grad(f, compile=True)
    compiled(np.array(2.0))
    assert compiled(np.array(3.0))[1] == 27.0
