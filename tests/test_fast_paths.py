"""The fast paths give the same answers as the plain formulas, and never eat a saved value.

sigmoid and SGD switch at ``ops.IN_PLACE_MIN_SIZE`` elements from allocating
to working in place; the fused softmax cross-entropy keeps its probabilities
for the backward pass. Each test runs both sides of the switch, uses a value
in two later ops and asks the same tape twice: an in-place write into
something the backward pass still needs would break one of these.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from microtape.ops import IN_PLACE_MIN_SIZE

SMALL = (3, 7)
LARGE = (IN_PLACE_MIN_SIZE // 32 + 1, 32)  # just past the switch
assert np.prod(SMALL) < IN_PLACE_MIN_SIZE <= np.prod(LARGE)


def plain_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("shape", [SMALL, LARGE], ids=["allocating", "in place"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_value_and_vjp_match_the_formula(shape, dtype):
    rng = np.random.default_rng(0)
    a = mt.Tensor(rng.normal(scale=3.0, size=shape).astype(dtype))
    g = rng.normal(size=shape).astype(dtype)
    a_before = a.value.copy()
    with mt.Tape() as tape:
        s = mt.sigmoid(a)
    assert s.dtype == dtype
    tol = 1e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(s.value, plain_sigmoid(a_before.astype(np.float64)), rtol=0, atol=tol)
    expected = g * s.value * (1 - s.value)                  # dA = G ∘ S ∘ (1 − S)
    first = tape.gradient(s, a, seed=g)
    second = tape.gradient(s, a, seed=g)
    np.testing.assert_allclose(first, expected, rtol=tol)
    np.testing.assert_array_equal(first, second)           # asked twice, same answer
    np.testing.assert_array_equal(a.value, a_before)       # the input was never written
    assert first is not second


@pytest.mark.parametrize("shape", [SMALL, LARGE], ids=["allocating", "in place"])
def test_sigmoid_output_used_by_two_later_ops(shape):
    # s feeds a product and a sum; both VJPs read s after sigmoid's VJP ran.
    rng = np.random.default_rng(1)
    a = mt.Tensor(rng.normal(size=shape))
    w = mt.Tensor(rng.normal(size=shape))
    with mt.Tape() as tape:
        s = mt.sigmoid(a)
        loss = (s * w).sum() + (s * s).sum()
    s_saved = s.value.copy()
    da, dw = tape.gradient(loss, [a, w])
    sv = s_saved
    np.testing.assert_allclose(dw, sv, rtol=1e-14)
    np.testing.assert_allclose(da, (w.value + 2 * sv) * sv * (1 - sv), rtol=1e-13)
    np.testing.assert_array_equal(s.value, s_saved)
    da2, dw2 = tape.gradient(loss, [a, w])
    np.testing.assert_array_equal(da, da2)
    np.testing.assert_array_equal(dw, dw2)


@pytest.mark.parametrize("shape", [SMALL, LARGE], ids=["allocating", "in place"])
def test_sigmoid_of_huge_logits_stays_finite_on_both_paths(shape):
    a = np.full(shape, -1e4)
    a[0, 0] = 1e4
    with np.errstate(all="raise", under="ignore"):  # numpy's default for underflow
        s = mt.sigmoid(a).value
    # S(−1e4) is 0 or subnormal: capped exponent (small arrays) or silenced overflow (large)
    rest = s.ravel()[1:]
    assert s[0, 0] == 1.0 and (rest >= 0.0).all() and (rest < np.finfo(s.dtype).tiny).all()


def test_both_sigmoid_paths_compute_the_same_bits():
    x = np.linspace(-30, 30, IN_PLACE_MIN_SIZE * 2)
    whole = mt.sigmoid(x).value                          # in place
    pieces = np.concatenate([mt.sigmoid(p).value for p in np.split(x, 64)])  # allocating
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ">f8"])
def test_sigmoid_kept_numbers_give_the_bits_of_python_literals(dtype):
    # The small path reads 1 and the exp cap as kept 0-d arrays of A's dtype;
    # the step and its VJP must be what the same formulas give with 1.0 in them.
    from microtape.ops import _exp_cap
    rng = np.random.default_rng(2)
    a = (rng.normal(scale=8.0, size=SMALL)).astype(dtype)
    g = rng.normal(size=SMALL).astype(dtype)
    cap = _exp_cap(np.dtype(dtype))
    with mt.Tape() as tape:
        s = mt.sigmoid(a)
    expected = 1.0 / (1.0 + np.exp(np.minimum(np.negative(a), cap)))
    assert s.dtype == expected.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(s.value, expected)
    vjp, = tape.nodes[0].vjps
    np.testing.assert_array_equal(vjp(g), (1.0 - expected) * expected * g)


@pytest.mark.parametrize("labels_kind", ["indices", "rows"])
def test_softmax_cross_entropy_keeps_its_probabilities_across_two_gradients(labels_kind):
    rng = np.random.default_rng(2)
    v = mt.Tensor(rng.normal(size=(5, 4)))
    idx = rng.integers(0, 4, 5)
    labels = idx if labels_kind == "indices" else np.eye(4)[idx]
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, labels, reduction="sum")
        other = (v * v).sum()
    e = np.exp(v.value - v.value.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True) - np.eye(4)[idx]   # dv = ŷ − y
    for _ in range(2):
        np.testing.assert_allclose(tape.gradient(loss, v), expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(tape.gradient(other, v), 2 * v.value)
    np.testing.assert_allclose(tape.gradient(loss, v, seed=np.array(3.0)), 3 * expected, rtol=1e-13)


@pytest.mark.parametrize("shape", [SMALL, LARGE], ids=["allocating", "in place"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_update_matches_the_formula_and_leaves_the_gradient_alone(shape, momentum):
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=shape)
    p = mt.Tensor(p0.copy(), name="p")
    opt = mt.optim.SGD({"p": p}, lr=0.1, momentum=momentum)
    u = np.zeros(shape)
    for _ in range(3):
        g = rng.normal(size=shape)
        g_before = g.copy()
        expected = p.value.copy()
        u = momentum * u + g                                # u ← momentum · u + g
        expected -= 0.1 * u                                 # p ← p − lr · u
        opt.step({"p": g})
        np.testing.assert_allclose(p.value, expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(g, g_before)


@pytest.mark.parametrize("shape", [(9, 4), (3, 7)], ids=["more rows than classes", "fewer"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("labels_kind", ["indices", "rows"])
def test_softmax_cross_entropy_on_logits_of_any_memory_layout(shape, layout, labels_kind):
    # The label picks index the flattened probabilities, and the row sums
    # may run on a transposed copy: neither may depend on how v is stored.
    rng = np.random.default_rng(5)
    n, c = shape
    data = rng.normal(size=(n, 2 * c)) * 3
    v = {"C": np.ascontiguousarray(data[:, :c]), "F": np.asfortranarray(data[:, :c]),
         "strided": data[:, ::2]}[layout]
    idx = rng.integers(0, c, n)
    labels = idx if labels_kind == "indices" else np.eye(c)[idx]
    v = mt.Tensor(v)
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, labels, reduction="sum")
    z = v.value - v.value.max(axis=1, keepdims=True)
    yhat = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss.value, -np.log(yhat[np.arange(n), idx]).sum(), rtol=1e-13)
    np.testing.assert_allclose(tape.gradient(loss, v), yhat - np.eye(c)[idx], rtol=1e-12, atol=1e-15)


def _loss_and_gradient(v, labels, reduction, seed):
    v = mt.Tensor(v)
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, labels, reduction=reduction)
    return loss.value, tape.gradient(loss, v, seed=seed)


@pytest.mark.parametrize("shape", [(20, 10), (64, 10), (1, 5), (7, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("labels_kind", ["indices", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_cross_entropy_gathered_and_broadcast_rows_give_the_same_bits(
        shape, dtype, labels_kind, reduction, monkeypatch):
    # Small logits meet each row's max and total as a same-shape operand gathered
    # by a kept index, larger ones by broadcasting a column: the two must agree to
    # the bit, whatever the logits' memory layout (the gather assumes row-major z).
    rng = np.random.default_rng(7)
    n, c = shape
    v = (rng.normal(size=shape) * 4).astype(dtype)
    v[0] = v[0, 0]  # a row of ties
    idx = rng.integers(0, c, n)
    labels = idx if labels_kind == "indices" else np.eye(c)[idx]
    seed = rng.random(n).astype(dtype) if reduction == "none" else np.array(0.7, dtype)
    gathered = [_loss_and_gradient(layout(v), labels, reduction, seed)
                for layout in (np.ascontiguousarray, np.asfortranarray)]
    monkeypatch.setattr(mt.ops, "_SPREAD_MAX_SIZE", 0)
    monkeypatch.setattr(mt.ops, "_LOSS_CONSTANTS", {})  # made again without the gather index
    broadcast, *others = [_loss_and_gradient(layout(v), labels, reduction, seed)
                          for layout in (np.ascontiguousarray, np.asfortranarray)]
    assert mt.ops._loss_constants(n, c, np.dtype(dtype))[2] is None  # the broadcast path ran
    for loss, grad in gathered + others:
        np.testing.assert_array_equal(loss, broadcast[0])
        np.testing.assert_array_equal(grad, broadcast[1])
        assert loss.dtype == broadcast[0].dtype == grad.dtype == dtype


@pytest.mark.parametrize("rows", [5, mt.ops._BLAS_SUM_MAX_SIZE // 4 + 1], ids=["BLAS sum", "numpy sum"])
@pytest.mark.parametrize("dtype, seed_dtype", [(np.float64, np.float64), (np.float32, np.float32),
                                               (np.float32, np.float64), (np.float64, np.float32)])
def test_bias_gradient_is_the_column_sum_of_g(rows, dtype, seed_dtype):
    # A bias row added to every example sums G down the rows: small G by a product with
    # ones chosen when the add ran, large G by numpy. A seed may come in another dtype;
    # the bias, used twice, gets both sums, in its own dtype.
    rng = np.random.default_rng(3)
    a = mt.Tensor(rng.normal(size=(rows, 4)).astype(dtype))
    b = mt.Tensor(rng.normal(size=4).astype(dtype))
    g = rng.normal(size=(rows, 4)).astype(seed_dtype)
    with mt.Tape() as tape:
        out = a + b + b
    db = tape.gradient(out, b, seed=g)
    expected = 2 * g.astype(np.float64).sum(axis=0)
    assert db.dtype == dtype and db.shape == (4,)
    tol = 1e-12 if np.float32 not in (dtype, seed_dtype) else 1e-5
    np.testing.assert_allclose(db, expected, rtol=tol)
    np.testing.assert_array_equal(tape.gradient(out, a, seed=g), g.astype(dtype))
