"""mse and binary_cross_entropy_with_logits: values, the familiar gradients, stability, errors.

Their second derivatives, templates and agreement with autograd are held by
the shared checks over tests/op_cases.py and random programs.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt

BCE = mt.binary_cross_entropy_with_logits


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("reduction, n", [("mean", 6), ("sum", 1)])
def test_mse_gradient_is_two_residuals_over_n(reduction, n):
    p, t = np.arange(6.0).reshape(2, 3), np.linspace(-1, 1, 6).reshape(2, 3)
    value = mt.mse(mt.Tensor(p), t, reduction=reduction)
    np.testing.assert_allclose(float(value), np.square(p - t).sum() / n, rtol=1e-14)
    dp, dt = mt.grad(lambda a, b: mt.mse(a, b, reduction=reduction), argnums=(0, 1))(p, t)
    np.testing.assert_allclose(dp, 2 * (p - t) / n, rtol=1e-14)
    np.testing.assert_allclose(dt, -dp, rtol=1e-14)


@pytest.mark.parametrize("reduction, n", [("mean", 4), ("sum", 1)])
def test_bce_gradient_is_sigmoid_minus_y_over_n(reduction, n):
    z, y = np.array([-3.0, 0.0, 0.5, 8.0]), np.array([0.0, 1.0, 0.3, 1.0])
    value = BCE(mt.Tensor(z), y, reduction=reduction)
    s = _sigmoid(z)
    np.testing.assert_allclose(float(value), -(y * np.log(s) + (1 - y) * np.log(1 - s)).sum() / n,
                               rtol=1e-12)
    np.testing.assert_allclose(mt.grad(lambda v: BCE(v, y, reduction=reduction))(z),
                               (s - y) / n, rtol=1e-12)


def test_reduction_none_gives_the_per_element_losses_in_the_inputs_shape():
    z = mt.Tensor(np.array([[1.0, -2.0], [0.0, 3.0]]))
    y = np.array([[1.0, 0.0], [0.5, 0.0]])
    per = BCE(z, y, reduction="none")
    assert per.shape == (2, 2)
    np.testing.assert_allclose(per.value.mean(), float(BCE(z, y)), rtol=1e-14)
    assert mt.mse(z, y, reduction="none").shape == (2, 2)


def test_bce_is_finite_and_precise_for_large_logits():
    z = np.array([1e4, -1e4, 40.0, -40.0, 1e4])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no NaN
        per = BCE(mt.Tensor(z), y, reduction="none").value
        d = mt.grad(lambda v: BCE(v, y, reduction="sum"))(z)
    # right and confident: log(1 + e^−40) = 4.25e-18, kept, not rounded to 0
    np.testing.assert_allclose(per, [0.0, 0.0, np.exp(-40.0), np.exp(-40.0), 1e4], rtol=1e-12)
    np.testing.assert_allclose(d, [0.0, 0.0, -np.exp(-40.0), np.exp(-40.0), 1.0], atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_losses_keep_the_predictions_dtype_with_float64_targets(dtype):
    p = mt.Tensor(np.linspace(-1, 1, 6, dtype=dtype))
    targets = np.linspace(0, 1, 6)  # float64 data, as numpy makes it
    for loss in (mt.mse, BCE):
        with mt.Tape() as tape:
            J = loss(p, targets)
        assert J.dtype == dtype and tape.gradient(J, p).dtype == dtype
        cf = tape.closed_form(J, p)
        value, grad = cf()
        assert value.dtype == grad.dtype == dtype


def test_the_closed_form_equations_read_as_the_familiar_gradients():
    z, p = mt.Tensor(np.zeros(3), name="z"), mt.Tensor(np.ones(3), name="p")
    y = np.array([0.0, 1.0, 1.0])
    with mt.Tape() as tape:
        J = BCE(z, y)
    assert "dz = (σ(z) − targets) / N" in tape.closed_form(J, z).equations
    with mt.Tape() as tape:
        J = mt.mse(p, y)
    assert "dp = 2 ∘ (p − target) / N" in tape.closed_form(J, p).equations


@pytest.mark.parametrize("call, error, phrase", [
    (lambda: mt.mse(mt.Tensor(np.ones((4, 1))), np.ones(4)), mt.ShapeError,
     r"mse: pred and target must have one shape, got \(4, 1\) and \(4,\); broadcasting"),
    (lambda: BCE(mt.Tensor(np.ones(3)), np.ones(2)), mt.ShapeError,
     r"binary_cross_entropy_with_logits: logits and targets must have one shape"),
    (lambda: mt.mse(mt.Tensor(np.ones(3)), np.ones(3), reduction="avg"), mt.InputError,
     r"mse: reduction must be 'mean', 'sum' or 'none', not 'avg'"),
    (lambda: BCE(mt.Tensor(np.ones(0)), np.ones(0)), mt.InputError,
     r"a mean over no elements \(shape \(0,\)\) is undefined"),
    (lambda: mt.mse(mt.Tensor(np.ones(3)), target=np.ones(3)), TypeError,
     r"positional-only arguments passed as keyword arguments: 'target'"),
])
def test_errors_name_the_loss_the_shapes_and_the_fix(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()
