"""The derivation's closed-form results as oracles for the tape.

Everything on the right-hand side is plain numpy, written from
models/DERIVATION.md's tables (the batched form: delta2 = Ŷ − Y, dW2 = Hᵀ delta2,
db2 = column sums of delta2, delta1 = (delta2 W2ᵀ) ∘ H ∘ (1 − H),
dW1 = Xᵀ delta1, db1 = column sums of delta1, dX = delta1 W1ᵀ; all ÷ N for
the mean). The tape must agree to 1e-10, relative to each gradient's size.

``closed_form`` below is written separately from models/by_hand.py on
purpose, and must stay so: it is the tests' one independent oracle, so a
mistake copied into the library's closed form (which the benchmark and the
training command's table use) cannot pass by being compared with itself.
The network it is checked against is conftest.py's ``two_layer``.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from microtape.testing import assert_gradients_close, assert_vjp_matches

RTOL = 1e-10


def assert_relative(actual, expected, rtol=RTOL):
    """|actual − expected| <= rtol · max|expected|, elementwise, and the shapes agree."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = np.max(np.abs(expected), initial=0.0)
    assert scale > 0, "an all-zero oracle would test nothing"
    worst = np.max(np.abs(actual - expected), initial=0.0)
    assert worst <= rtol * scale, f"max error {worst:.3e} vs size {scale:.3e}"


def softmax_rows(v):
    z = v - v.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


# -- dCE/dθ = ŷ − y --------------------------------------------------------------------

@pytest.mark.parametrize("label_kind", ["int", "one-hot", "soft"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_is_yhat_minus_y(label_kind, batched, reduction, rng):
    n, c = (7, 5) if batched else (1, 5)
    theta = rng.normal(size=(n, c)) * 2
    index = rng.integers(0, c, size=n)
    if label_kind == "soft":
        y = rng.uniform(0.05, 1.0, size=(n, c))
        y /= y.sum(axis=1, keepdims=True)
    else:
        y = np.eye(c)[index]
    labels = index if label_kind == "int" else y
    if not batched:
        theta, y = theta[0], y[0]
        labels = int(index[0]) if label_kind == "int" else y
    t = mt.Tensor(theta, name="theta")
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(t, labels, reduction=reduction)
    yhat = softmax_rows(theta)
    divide = n if (reduction == "mean" and batched) else 1
    assert_relative(tape.gradient(loss, t), (yhat - y) / divide)
    ce = -np.sum(y * np.log(yhat)) / divide
    assert_relative(loss.value, ce)


def test_softmax_then_cross_entropy_unfused_gives_the_same_gradient():
    """The fused VJP ŷ − y equals the chain through the softmax Jacobian."""
    rng = np.random.default_rng(1)
    theta, y = rng.normal(size=(4, 3)), np.eye(3)[[0, 2, 1, 1]]
    t = mt.Tensor(theta)
    with mt.Tape() as tape:
        unfused = -(y * mt.log(mt.softmax(t))).sum()
    assert_relative(tape.gradient(unfused, t), softmax_rows(theta) - y)


# -- the two-layer network ----------------------------------------------------------------

def closed_form(x, y, W1, b1, W2, b2, reduction):
    """models/DERIVATION.md's gradients in plain numpy; x and y one row each or N rows.

    The independent oracle: deliberately not ``models.by_hand``.
    """
    single = x.ndim == 1
    X, Y = np.atleast_2d(x), np.atleast_2d(y)
    n = X.shape[0]
    T = X @ W1 + b1                                        # t = x W1 + b1
    H = sigmoid(T)                                         # h = sigmoid(t)
    V = H @ W2 + b2                                        # v = h W2 + b2
    Yhat = softmax_rows(V)                                 # ŷ = softmax(v)
    scale = 1.0 / n if reduction == "mean" else 1.0
    delta2 = (Yhat - Y) * scale                            # ŷ − y
    delta1 = (delta2 @ W2.T) * H * (1 - H)                 # (ŷ − y) W2ᵀ ∘ sigmoid'(t)
    grads = {
        "x": delta1 @ W1.T,                                # dJ/dx = delta1 W1ᵀ
        "W1": X.T @ delta1,                                # dJ/dW1 = xᵀ delta1
        "b1": delta1.sum(axis=0),                          # column sums of delta1
        "W2": H.T @ delta2,                                # dJ/dW2 = hᵀ (ŷ − y)
        "b2": delta2.sum(axis=0),                          # column sums of delta2
    }
    loss = -np.sum(Y * np.log(Yhat)) * scale
    if single:
        grads["x"] = grads["x"][0]
    return loss, grads


def network_loss(two_layer, labels, reduction):
    """J as a function of x and the parameters, for microtape.testing."""
    def loss(x, W1, b1, W2, b2):
        return two_layer.loss(x, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, labels, reduction)
    return loss


def tape_gradients(two_layer, x, labels, params, reduction):
    p = {k: mt.Tensor(v, name=k) for k, v in params.items()}
    xt = mt.Tensor(x, name="x")
    with mt.Tape() as tape:
        loss = two_layer.loss(xt, p, labels, reduction)
    return loss, tape.gradient(loss, {"x": xt, **p})


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_kind", ["int", "one-hot"])
def test_single_example(reduction, label_kind, two_layer):
    rng = np.random.default_rng(2)
    params = two_layer.params(rng)
    x = rng.normal(size=4)                                 # one example: a 1-d row
    label = 2
    y = np.eye(3)[label]
    labels = label if label_kind == "int" else y
    loss, grads = tape_gradients(two_layer, x, labels, params, reduction)
    expected_loss, expected = closed_form(x, y, **params, reduction=reduction)
    assert_relative(loss.value, expected_loss)
    assert set(grads) == set(expected)
    for name in expected:
        assert_relative(grads[name], expected[name])
    # the single-example forms of the table: outer products and plain rows
    h = sigmoid(x @ params["W1"] + params["b1"])
    yhat = softmax_rows(h @ params["W2"] + params["b2"])
    assert_relative(grads["W2"], np.outer(h, yhat - y))
    assert_relative(grads["b2"], yhat - y)
    delta1 = ((yhat - y) @ params["W2"].T) * h * (1 - h)
    assert_relative(grads["W1"], np.outer(x, delta1))
    assert_relative(grads["b1"], delta1)
    assert_relative(grads["x"], delta1 @ params["W1"].T)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_kind", ["int", "one-hot"])
@pytest.mark.parametrize("n", [1, 2, 9])
def test_batched(reduction, label_kind, n, two_layer):
    rng = np.random.default_rng(3 + n)
    params = two_layer.params(rng)
    X = rng.normal(size=(n, 4))
    index = rng.integers(0, 3, size=n)
    Y = np.eye(3)[index]
    labels = index if label_kind == "int" else Y
    expected_loss, expected = closed_form(X, Y, **params, reduction=reduction)
    assert_gradients_close(network_loss(two_layer, labels, reduction), {"x": X, **params}, expected,
                           rtol=1e-9, atol=1e-15)
    loss, _ = tape_gradients(two_layer, X, labels, params, reduction)
    assert_relative(loss.value, expected_loss)


def test_mean_is_the_sum_divided_by_n(two_layer):
    rng = np.random.default_rng(4)
    params = two_layer.params(rng)
    X, index = rng.normal(size=(5, 4)), rng.integers(0, 3, size=5)
    _, mean_grads = tape_gradients(two_layer, X, index, params, "mean")
    _, sum_grads = tape_gradients(two_layer, X, index, params, "sum")
    for name in mean_grads:
        assert_relative(mean_grads[name] * 5, sum_grads[name])


def test_batched_gradient_is_the_sum_of_per_example_gradients(two_layer):
    rng = np.random.default_rng(5)
    params = two_layer.params(rng)
    X, index = rng.normal(size=(4, 4)), rng.integers(0, 3, size=4)
    _, batch = tape_gradients(two_layer, X, index, params, "sum")
    per_example = [tape_gradients(two_layer, X[i], int(index[i]), params, "sum")[1]
                   for i in range(4)]
    for name in ("W1", "b1", "W2", "b2"):
        assert_relative(batch[name], sum(g[name] for g in per_example))
    assert_relative(batch["x"], np.stack([g["x"] for g in per_example]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_library_closed_form_agrees_with_this_oracle(reduction, two_layer, rng):
    """models.by_hand (the benchmark's baseline, the training table's column) against ours."""
    from models import closed_form_gradients
    params = two_layer.params(rng)
    X, index = rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)
    _, expected = closed_form(X, np.eye(3)[index], **params, reduction=reduction)
    got = closed_form_gradients(params, X, index, reduction=reduction)
    assert set(got) == set(expected)
    for name in expected:
        assert_relative(got[name], expected[name])


def test_sigmoid_derivative_is_s_times_one_minus_s():
    t = np.linspace(-6, 6, 13)
    x = mt.Tensor(t)
    with mt.Tape() as tape:
        s = mt.sigmoid(x)
    assert_relative(tape.gradient(s, x, seed=np.ones_like(t)), sigmoid(t) * (1 - sigmoid(t)))


# -- the four ops' VJPs, each against finite differences ---------------------------------

def test_the_four_ops_vjps_match_finite_differences():
    rng = np.random.default_rng(6)
    X, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    assert_vjp_matches(mt.matmul, [X, W])                  # dA = G Bᵀ, dB = Aᵀ G
    assert_vjp_matches(mt.add, [X @ W, b])                 # the bias: column sums of G
    assert_vjp_matches(mt.sigmoid, [X])                    # G ∘ S ∘ (1 − S)
    labels = rng.integers(0, 3, size=5)
    for reduction in ("mean", "sum"):                      # G (ŷ − y), ÷ N for the mean
        assert_vjp_matches(lambda v: mt.softmax_cross_entropy(v, labels, reduction=reduction),
                           [X @ W])
