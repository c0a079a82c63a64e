"""mse, binary_cross_entropy_with_logits and softmax_cross_entropy's per-example losses
(reduction="none"): values, the familiar gradients, stability, errors.

Their second derivatives, templates and agreement with autograd are held by
the shared checks over tests/op_cases.py and random programs.
"""

from __future__ import annotations

import math
from fractions import Fraction

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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_keeps_a_soft_targets_tiny_loss(dtype):
    # A target just below 1 and a confident logit: the loss is z (1 − y) + log(1 + e^−z),
    # 3.4e-8 at the first, which z − z y gave with an error of an ulp of z (4e-15 in float64).
    z = np.array([36.7, 1e30, -36.7, 5.0], dtype=dtype)
    y = np.array([1 - 2.0**-30, 1 - 2.0**-20, 2.0**-30, 0.9], dtype=dtype)
    exact = np.array([_bce_exact(a, b) for a, b in zip(z.tolist(), y.tolist())])
    tolerance = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(BCE(mt.Tensor(z), y, reduction="none").value, exact, rtol=tolerance)
    compiled = mt.value_and_grad(lambda v: BCE(v, y, reduction="sum"), compile=True)(z)[0]
    np.testing.assert_allclose(compiled, exact.sum(), rtol=tolerance)


def _bce_exact(z: float, y: float) -> float:
    """max(z, 0) − z y + log(1 + e^−|z|), the first two terms in exact rational arithmetic."""
    linear = max(Fraction(z), Fraction(0)) - Fraction(z) * Fraction(y)
    return float(linear + Fraction(math.log1p(math.exp(-abs(z)))))


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


# -- softmax_cross_entropy(reduction="none"): one loss per example ------------------------

SCE = mt.softmax_cross_entropy
LOGITS = np.array([[2.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [-3.0, 4.0, 1.0, 2.5]])
CLASSES = np.array([0, 3, 1])
ROWS = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0], [0.0, 0.1, 0.0, 0.9]])


def _per_row_reference(v, y):
    """−Σ y log softmax(v) of each row, in float64 (y: class indices or label rows)."""
    v = np.asarray(v, dtype=np.float64)
    log_p = v - v.max(axis=-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
    y = np.asarray(y)
    rows = np.eye(v.shape[-1])[y] if y.dtype.kind in "iu" else y
    return -(rows * log_p).sum(axis=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [CLASSES, ROWS], ids=["classes", "rows"])
def test_per_example_losses_match_numpy_and_add_up_to_the_sum(dtype, labels):
    v = mt.Tensor(LOGITS.astype(dtype))
    per = SCE(v, labels, reduction="none")
    assert per.shape == (3,) and per.dtype == dtype
    np.testing.assert_allclose(per.value, _per_row_reference(LOGITS, labels),
                               rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(per.value.sum(), float(SCE(v, labels, reduction="sum")), rtol=1e-6)
    np.testing.assert_allclose(per.value.mean(), float(SCE(v, labels)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_example_gives_a_0d_loss_and_its_gradient(dtype):
    v = mt.Tensor(LOGITS[2].astype(dtype))
    for labels in (1, ROWS[2]):
        with mt.Tape() as tape:
            per = SCE(v, labels, reduction="none")
        assert per.shape == () and per.dtype == dtype
        np.testing.assert_allclose(float(per), _per_row_reference(LOGITS[2], labels), rtol=1e-6)
        g = tape.gradient(per, v, seed=np.asarray(3.0, dtype=dtype))
        p = np.exp(LOGITS[2]) / np.exp(LOGITS[2]).sum()
        y = np.eye(4)[labels] if isinstance(labels, int) else labels
        assert g.dtype == dtype
        np.testing.assert_allclose(g, 3.0 * (p - y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_example_losses_stay_precise_at_extreme_logits(dtype):
    # a confident, right row: the loss is log(1 + e^−40 + e^−60) ≈ e^−40, which log(1 + rest) would
    # round to 0; and a confident, wrong one, with a loss near 1e4
    v = np.array([[40.0, 0.0, -20.0], [0.0, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        per = SCE(mt.Tensor(v), np.array([0, 0, 2]), reduction="none").value
    want = [np.exp(-40.0) + np.exp(-60.0), 1e4, np.log(3.0)]
    np.testing.assert_allclose(per, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("labels", [CLASSES, ROWS], ids=["classes", "rows"])
def test_per_example_gradient_weights_each_row_of_yhat_minus_y(labels):
    w = np.array([0.5, -2.0, 3.0])  # each example's G
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    y = np.eye(4)[labels] if labels.dtype.kind in "iu" else labels
    mt.testing.assert_gradients_close(
        lambda v: mt.sum(mt.mul(w, SCE(v, labels, reduction="none"))), [LOGITS],
        [w[:, None] * (p - y)], rtol=1e-13)
    mt.gradcheck(lambda v: mt.sum(mt.mul(w, SCE(v, labels, reduction="none"))), [LOGITS])
    mt.gradcheck(lambda v: mt.sum(mt.mul(w, SCE(v, labels, reduction="none"))), [LOGITS], order=2)


def test_per_example_loss_differentiates_twice_with_create_graph():
    w = np.array([0.5, -2.0, 3.0])
    v = mt.Tensor(LOGITS.copy())
    direction = np.random.default_rng(1).normal(size=LOGITS.shape)
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            J = mt.sum(mt.mul(w, SCE(v, CLASSES, reduction="none")))
        dv = inner.gradient(J, v, create_graph=True)
        s = mt.sum(mt.mul(dv, direction))
    hvp = outer.gradient(s, v)
    # row i's Hessian is w_i (diag(p) − p pᵀ)
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    want = w[:, None] * (p * direction - p * (p * direction).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(hvp, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [CLASSES, ROWS, ROWS.astype(np.float32)],
                         ids=["classes", "rows", "float32 rows"])
def test_closed_forms_of_a_weighted_per_example_loss_agree_with_the_tape(dtype, labels):
    v, w = mt.Tensor(LOGITS.astype(dtype)), mt.Tensor(np.array([0.5, -2.0, 3.0], dtype=dtype))
    with mt.Tape() as tape:
        J = mt.sum(mt.mul(w, SCE(v, labels, reduction="none")))
    eager = tape.gradient(J, [v, w])
    value, grads = tape.closed_form(J, [v, w])()
    compiled = mt.value_and_grad(lambda v, w: mt.sum(mt.mul(w, SCE(v, labels, reduction="none"))),
                                 argnums=(0, 1), compile=True)
    for _ in range(2):  # the trace, then the generated code
        value_c, grads_c = compiled(v.value, w.value)
    assert compiled.cache_info().hits == 1  # the second call ran the closed form
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for got_value, got in ((value, grads), (value_c, grads_c)):
        np.testing.assert_allclose(got_value, J.value, rtol=rtol)
        for g, ref in zip(got, eager):
            assert g.dtype == ref.dtype == dtype
            np.testing.assert_allclose(g, ref, rtol=rtol, atol=rtol)


def test_an_unknown_reduction_names_all_three():
    with pytest.raises(mt.InputError, match=r"softmax_cross_entropy: reduction must be 'mean', "
                                            r"'sum' or 'none', not 'avg'"):
        SCE(mt.Tensor(LOGITS), CLASSES, reduction="avg")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", [np.zeros(0, dtype=np.int64), np.zeros((0, 4))],
                         ids=["classes", "rows"])
def test_an_empty_batch_gives_no_per_example_losses_and_empty_gradients(dtype, labels):
    # reduction="sum" gives 0 for an empty batch; "none" gives each of its (no) examples' losses
    v = mt.Tensor(np.zeros((0, 4), dtype=dtype))
    with mt.Tape() as tape:
        per = SCE(v, labels, reduction="none")
        J = mt.sum(per)
    assert per.shape == (0,) and per.dtype == dtype
    for g in (tape.gradient(J, v), tape.gradient(per, v, seed=np.zeros(0, dtype=dtype)),
              tape.gradient(J, v, create_graph=True).value):
        assert g.shape == (0, 4) and g.dtype == dtype
    value, (g,) = tape.closed_form(J, [v])()
    assert float(value) == 0.0 and g.shape == (0, 4) and g.dtype == dtype


# -- the binary cross-entropy's targets that are Tensors get their gradient ------------------

@pytest.mark.parametrize("reduction, n", [("mean", 4), ("sum", 1)])
def test_bce_targets_that_are_tensors_get_minus_z_over_n(reduction, n):
    z, y = np.array([-3.0, 0.0, 0.5, 1e4]), np.array([0.0, 1.0, 0.3, 1.0])
    dz, dy = mt.grad(lambda a, b: BCE(a, b, reduction=reduction), argnums=(0, 1))(z, y)
    np.testing.assert_allclose(dz, (_sigmoid(z) - y) / n, rtol=1e-12)
    np.testing.assert_array_equal(dy, -z / n)
