"""Every op's forward value against numpy and its VJP against central differences.

The finite-difference oracle here is written independently of mt.gradcheck:
for an op ``C = op(A, B, ...)`` and a random output gradient ``G``, the VJP
must equal the gradient of the scalar ``Σ G ∘ C`` computed by central
differences in float64. A random ``G`` (rather than a sum) checks the VJP
with a cotangent that differs from element to element.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import microtape as mt
from tests.op_cases import EINSUMS, MATMUL_CASES

EPS = 1e-6


def central_differences(f, arrays, eps=EPS):
    """∂f/∂arrays[i] for a scalar numpy function f, element by element."""
    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            shifted = list(arrays)
            up, down = a.copy(), a.copy()
            up[idx] += eps
            down[idx] -= eps
            shifted[i] = up
            f_up = f(*shifted)
            shifted[i] = down
            g[idx] = (f_up - f(*shifted)) / (2 * eps)
        grads.append(g)
    return grads


def assert_vjp(op, *arrays, seed=0, rtol=1e-5, atol=1e-7):
    """The tape's VJP of ``op`` for a random G equals the central differences of Σ G ∘ op."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    xs = [mt.Tensor(a) for a in arrays]
    with mt.Tape() as tape:
        out = op(*xs)
    assert isinstance(out, mt.Tensor)
    G = np.random.default_rng(seed).normal(size=out.shape)
    analytic = tape.gradient(out, xs, seed=G)

    def scalar(*values):
        return float(np.sum(op(*[mt.Tensor(v) for v in values]).value * G))

    numeric = central_differences(scalar, arrays)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        assert a.shape == arrays[i].shape, f"input {i}: gradient shape {a.shape} != {arrays[i].shape}"
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
    return analytic


def away_from_zero(rng, shape, low=0.5, high=2.0):
    """Random values with |x| in [low, high]: safe denominators, no relu kinks."""
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


# -- elementwise binary ops with every kind of broadcasting ---------------------

BINARY = {
    "add": (mt.add, np.add),
    "sub": (mt.sub, np.subtract),
    "mul": (mt.mul, np.multiply),
    "div": (mt.div, np.divide),
}

BROADCAST_CASES = {
    "same shape": ((3, 4), (3, 4)),
    "row": ((3, 4), (4,)),
    "row on the left": ((4,), (3, 4)),
    "column": ((3, 4), (3, 1)),
    "column on the left": ((3, 1), (3, 4)),
    "leading axis": ((2, 3, 4), (3, 4)),
    "leading axis on the left": ((3, 4), (2, 3, 4)),
    "0-d Tensor": ((3, 4), ()),
    "0-d Tensor on the left": ((), (3, 4)),
    "both sides": ((3, 1), (1, 4)),
    "both sides, 3-d": ((2, 1, 4), (3, 1)),
    "size-1 axes kept": ((1, 3, 1), (2, 1, 1)),
    "two 0-d": ((), ()),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("case", BROADCAST_CASES)
def test_binary_op_broadcasting(name, case):
    op, reference = BINARY[name]
    rng = np.random.default_rng(zlib.crc32(f"{name} {case}".encode()))
    a_shape, b_shape = BROADCAST_CASES[case]
    a, b = away_from_zero(rng, a_shape), away_from_zero(rng, b_shape)
    np.testing.assert_allclose(op(mt.Tensor(a), mt.Tensor(b)).value, reference(a, b))
    da, db = assert_vjp(op, a, b)
    assert da.shape == a_shape and db.shape == b_shape


@pytest.mark.parametrize("name", BINARY)
def test_binary_op_with_python_scalar_on_either_side(name):
    op, reference = BINARY[name]
    x = away_from_zero(np.random.default_rng(1), (2, 3))
    for f in (lambda t: op(t, 2.5), lambda t: op(-1.5, t)):
        (dx,) = assert_vjp(f, x)
        assert dx.shape == x.shape
    np.testing.assert_allclose(op(mt.Tensor(x), 2.5).value, reference(x, 2.5))
    np.testing.assert_allclose(op(-1.5, mt.Tensor(x)).value, reference(-1.5, x))


@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    name=st.sampled_from(sorted(BINARY)),
    seed=st.integers(0, 2**16),
)
def test_binary_op_random_broadcast_shapes(shapes, name, seed):
    op, _ = BINARY[name]
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    a, b = away_from_zero(rng, a_shape), away_from_zero(rng, b_shape)
    assert_vjp(op, a, b, seed=seed)
    # atol above the rounding of a difference quotient of a sum of up to 27 squares
    report = mt.gradcheck(lambda a, b: mt.sum(op(a, b) * op(a, b)), [a, b], atol=1e-6)
    assert report.passed and [c.shape for c in report.inputs] == [a_shape, b_shape]


def test_broadcast_axes_names_the_summed_axes():
    assert mt.broadcast_axes((3, 4), (3, 4)) == ()
    assert mt.broadcast_axes((4,), (3, 4)) == (0,)
    assert mt.broadcast_axes((3, 1), (3, 4)) == (1,)
    assert mt.broadcast_axes((), (2, 3)) == (0, 1)
    assert mt.broadcast_axes((1, 3, 1), (2, 3, 5)) == (0, 2)
    assert mt.broadcast_axes((3, 1), (2, 3, 1)) == (0,)
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(mt.unbroadcast(g, (3, 1)), g.sum(axis=(0, 2)).reshape(3, 1))


# -- elementwise unary ops ----------------------------------------------------

UNARY = {
    "neg": (mt.neg, np.negative, None),
    "exp": (mt.exp, np.exp, None),
    "log": (mt.log, np.log, "positive"),
    "tanh": (mt.tanh, np.tanh, None),
    "sigmoid": (mt.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), None),
    "relu": (mt.relu, lambda x: np.maximum(x, 0.0), None),
}


@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples every run
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    name=st.sampled_from(sorted(UNARY)),
    seed=st.integers(0, 2**16),
)
def test_unary_op_values_and_vjp(shape, name, seed):
    op, reference, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, shape, 0.1, 2.0)
    if domain == "positive":
        x = np.abs(x)
    np.testing.assert_allclose(op(mt.Tensor(x)).value, reference(x), rtol=1e-12)
    assert_vjp(op, x, seed=seed)


def test_relu_gradient_is_the_indicator_of_positive_inputs():
    x = mt.Tensor([-2.0, -0.5, 0.5, 3.0])
    with mt.Tape() as tape:
        y = mt.relu(x)
    np.testing.assert_array_equal(tape.gradient(y, x, seed=np.full(4, 7.0)), [0, 0, 7, 7])


# -- matmul ---------------------------------------------------------------------



@pytest.mark.parametrize("case", MATMUL_CASES)
def test_matmul(case):
    a_shape, b_shape = MATMUL_CASES[case]
    rng = np.random.default_rng(len(case))
    a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
    out = mt.matmul(mt.Tensor(a), mt.Tensor(b))
    np.testing.assert_allclose(out.value, a @ b, rtol=1e-12)
    assert out.shape == np.shape(a @ b)
    assert_vjp(mt.matmul, a, b)


def test_matmul_2d_vjp_is_the_derivation_formula():
    rng = np.random.default_rng(2)
    A, B, G = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    a, b = mt.Tensor(A), mt.Tensor(B)
    with mt.Tape() as tape:
        c = a @ b
    dA, dB = tape.gradient(c, [a, b], seed=G)
    np.testing.assert_allclose(dA, G @ B.T, rtol=1e-14)
    np.testing.assert_allclose(dB, A.T @ G, rtol=1e-14)


# -- pow ------------------------------------------------------------------------

@pytest.mark.parametrize("p", [2, 3, 0.5, -1, -1.5])
def test_pow_with_scalar_exponent(p):
    x = np.random.default_rng(3).uniform(0.5, 2.0, size=(2, 3))
    np.testing.assert_allclose((mt.Tensor(x) ** p).value, x ** p)
    assert_vjp(lambda t: t ** p, x)


def test_pow_of_negative_base_with_integer_exponent():
    x = np.array([-2.0, -0.5, 1.5])
    (dx,) = assert_vjp(lambda t: mt.pow(t, 3), x)
    np.testing.assert_allclose(dx, 3 * x ** 2 * np.random.default_rng(0).normal(size=3))


@pytest.mark.parametrize("p_shape", [(2, 3), (3,), ()])
def test_pow_with_tensor_exponent(p_shape):
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 2.0, size=(2, 3))
    p = rng.uniform(-2.0, 2.0, size=p_shape)
    np.testing.assert_allclose(mt.pow(mt.Tensor(a), mt.Tensor(p)).value, a ** p)
    da, dp = assert_vjp(mt.pow, a, p)
    assert dp.shape == p_shape


def test_pow_with_tensor_exponent_and_number_base():
    p = np.random.default_rng(5).normal(size=4)
    (dp,) = assert_vjp(lambda t: 2.0 ** t, p)
    np.testing.assert_allclose(dp, 2.0 ** p * np.log(2.0) * np.random.default_rng(0).normal(size=4))


# -- reductions and shape ops ---------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, 0)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_and_mean(name, axis, keepdims):
    x = np.random.default_rng(6).normal(size=(2, 3, 4))
    op, reference = getattr(mt, name), getattr(np, name)
    out = op(mt.Tensor(x), axis=axis, keepdims=keepdims)
    expected = reference(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.value, expected, rtol=1e-12)
    assert_vjp(lambda t: op(t, axis=axis, keepdims=keepdims), x)
    # the method form is the same op
    method = getattr(mt.Tensor(x), name)(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(method.value, expected, rtol=1e-12)


def test_mean_gradient_is_one_over_n():
    x = mt.Tensor(np.ones((4, 5)))
    with mt.Tape() as tape:
        m = x.mean(axis=0)
    np.testing.assert_allclose(tape.gradient(m, x, seed=np.ones(5)), np.full((4, 5), 0.25))


TRANSPOSES = {
    ".T of a matrix": ((3, 4), lambda t: t.T),
    ".T of a vector": ((4,), lambda t: t.T),
    ".T of a 3-d array": ((2, 3, 4), lambda t: t.T),
    "axes as a tuple": ((2, 3, 4), lambda t: mt.transpose(t, (1, 0, 2))),
    "axes as arguments": ((2, 3, 4), lambda t: t.transpose(2, 0, 1)),
    "negative axes": ((2, 3, 4), lambda t: mt.transpose(t, (-1, 0, 1))),
}


@pytest.mark.parametrize("case", TRANSPOSES)
def test_transpose(case):
    shape, f = TRANSPOSES[case]
    x = np.random.default_rng(7).normal(size=shape)
    assert_vjp(f, x)


def test_transpose_values():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(mt.transpose(mt.Tensor(x), (1, 0, 2)).value, x.transpose(1, 0, 2))
    np.testing.assert_array_equal(mt.Tensor(x).T.value, x.T)


RESHAPES = {
    "flatten with -1": lambda t: t.reshape(-1),
    "-1 in a tuple": lambda t: t.reshape((4, -1)),
    "-1 in the middle": lambda t: mt.reshape(t, 2, -1, 2),
    "explicit shape": lambda t: mt.reshape(t, (3, 2, 2)),
    "add an axis": lambda t: t.reshape(1, 12),
}


@pytest.mark.parametrize("case", RESHAPES)
def test_reshape(case):
    x = np.random.default_rng(8).normal(size=(2, 6))
    out = RESHAPES[case](mt.Tensor(x))
    np.testing.assert_array_equal(out.value.ravel(), x.ravel())
    assert_vjp(RESHAPES[case], x)


def test_reshape_with_minus_one_infers_the_axis():
    assert mt.Tensor(np.zeros((2, 6))).reshape(3, -1).shape == (3, 4)


# -- indexing -------------------------------------------------------------------

INDICES = {
    "an int": 1,
    "a negative int": -1,
    "a slice": (slice(None), slice(1, 3)),
    "a reversed slice and an int": (slice(None, None, -1), 0),
    "None and Ellipsis": (None, 1, Ellipsis),
    "a fancy list": [2, 0],
    "a repeated fancy list": [0, 0, 2, 0],
    "repeated index pairs": ([0, 2, 0], [1, 1, 1]),
    "a 2-d index array": np.array([[0, 1], [1, 0]]),
    "fancy and a slice": ([1, 1], slice(1, None)),
    "a boolean mask": np.array([True, False, True]),
}


@pytest.mark.parametrize("case", INDICES)
def test_getitem(case):
    index = INDICES[case]
    x = np.random.default_rng(9).normal(size=(3, 4))
    np.testing.assert_array_equal(mt.Tensor(x)[index].value, x[index])
    assert_vjp(lambda t: t[index], x)
    assert_vjp(lambda t: mt.getitem(t, index), x)


def test_getitem_repeated_index_accumulates():
    x = mt.Tensor(np.zeros(3))
    with mt.Tape() as tape:
        y = x[[0, 0, 0, 2]].sum()
    np.testing.assert_array_equal(tape.gradient(y, x), [3.0, 0.0, 1.0])


# -- softmax and log_softmax ------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", [((3, 4), 0), ((3, 4), -1), ((5,), -1), ((5,), 0),
                                         ((2, 3, 4), 1), ((2, 3, 4), -1)])
def test_softmax_and_log_softmax(name, shape, axis):
    x = np.random.default_rng(10).normal(size=shape) * 3
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    s = e / e.sum(axis=axis, keepdims=True)
    op = getattr(mt, name)
    expected = s if name == "softmax" else np.log(s)
    np.testing.assert_allclose(op(mt.Tensor(x), axis=axis).value, expected, rtol=1e-12, atol=1e-14)
    assert_vjp(lambda t: op(t, axis=axis), x)


def test_softmax_default_axis_is_last():
    x = np.random.default_rng(11).normal(size=(3, 4))
    np.testing.assert_allclose(mt.softmax(mt.Tensor(x)).value.sum(axis=-1), np.ones(3))


def test_softmax_vjp_is_the_jacobian_of_the_derivation():
    v = np.random.default_rng(12).normal(size=5)
    x = mt.Tensor(v)
    with mt.Tape() as tape:
        s = mt.softmax(x)
    y = s.value
    jacobian = np.diag(y) - np.outer(y, y)  # ∂ŷ_a/∂v_b = ŷ_a δ_ab − ŷ_a ŷ_b
    for a in range(5):
        np.testing.assert_allclose(tape.gradient(s, x, seed=np.eye(5)[a]), jacobian[a], atol=1e-15)


# -- einsum -----------------------------------------------------------------------



@pytest.mark.parametrize("case", EINSUMS)
def test_einsum(case):
    subscripts, shapes = EINSUMS[case]
    rng = np.random.default_rng(13)
    arrays = [rng.normal(size=s) for s in shapes]
    out = mt.einsum(subscripts, *[mt.Tensor(a) for a in arrays])
    np.testing.assert_allclose(out.value, np.einsum(subscripts, *arrays), rtol=1e-12)
    assert_vjp(lambda *ts: mt.einsum(subscripts, *ts), *arrays)


def test_einsum_with_one_tensor_used_twice():
    x = mt.Tensor(np.random.default_rng(14).normal(size=(3, 4)))
    with mt.Tape() as tape:
        y = mt.einsum("bi,bi->b", x, x)  # squared row norms
    np.testing.assert_allclose(tape.gradient(y, x, seed=np.ones(3)), 2 * x.value, rtol=1e-14)


def test_einsum_with_a_constant_operand():
    rng = np.random.default_rng(15)
    W, x = rng.normal(size=(4, 2)), rng.normal(size=(3, 4))
    (dW,) = assert_vjp(lambda w: mt.einsum("bi,ij->bj", x, w), W)
    assert dW.shape == (4, 2)


def test_einsum_equals_matmul_gradient():
    rng = np.random.default_rng(16)
    a, b = mt.Tensor(rng.normal(size=(3, 4))), mt.Tensor(rng.normal(size=(4, 2)))
    G = rng.normal(size=(3, 2))
    with mt.Tape() as tape:
        c1 = mt.einsum("ij,jk->ik", a, b)
        c2 = a @ b
    for g1, g2 in zip(tape.gradient(c1, [a, b], seed=G), tape.gradient(c2, [a, b], seed=G)):
        np.testing.assert_allclose(g1, g2, rtol=1e-13)


# -- softmax cross-entropy ----------------------------------------------------------

def _reference_ce(v, y, reduction):
    """−Σ y log softmax(v) in plain numpy, y as rows."""
    z = v - v.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    per_row = -(y * log_p).sum(axis=-1)
    return per_row.mean() if reduction == "mean" else per_row.sum()


def _labels(kind, rng, n=5, c=4):
    if kind == "int labels":
        idx = rng.integers(0, c, size=n)
        return idx, np.eye(c)[idx], (n, c)
    if kind == "one-hot rows":
        rows = np.eye(c)[rng.integers(0, c, size=n)]
        return rows, rows, (n, c)
    if kind == "soft rows":
        rows = rng.uniform(0.1, 1.0, size=(n, c))
        rows /= rows.sum(axis=1, keepdims=True)
        return rows, rows, (n, c)
    if kind == "1-d logits, int label":
        return 2, np.eye(c)[2], (c,)
    if kind == "1-d logits, numpy int label":
        return np.int64(1), np.eye(c)[1], (c,)
    if kind == "1-d logits, soft row":
        row = np.array([0.1, 0.2, 0.3, 0.4])
        return row, row, (c,)
    if kind == "boolean one-hot rows":
        idx = rng.integers(0, c, size=n)
        return np.eye(c, dtype=bool)[idx], np.eye(c)[idx], (n, c)
    if kind == "int labels as a list":
        idx = rng.integers(0, c, size=n)
        return idx.tolist(), np.eye(c)[idx], (n, c)
    raise AssertionError(kind)


LABEL_KINDS = ["int labels", "one-hot rows", "soft rows", "1-d logits, int label",
               "1-d logits, numpy int label", "1-d logits, soft row", "boolean one-hot rows",
               "int labels as a list"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_softmax_cross_entropy(kind, reduction):
    rng = np.random.default_rng(17)
    labels, rows, shape = _labels(kind, rng)
    v = rng.normal(size=shape) * 2
    loss = mt.softmax_cross_entropy(mt.Tensor(v), labels, reduction=reduction)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.value, _reference_ce(v, rows, reduction), rtol=1e-12)
    assert_vjp(lambda t: mt.softmax_cross_entropy(t, labels, reduction=reduction), v)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(20, 10), (2000, 10), (3, 300), (1500, 300)],
                         ids=["few classes", "few classes, many rows", "many classes, few rows",
                              "many classes, many rows"])
def test_softmax_cross_entropy_sums_rows_of_any_length(shape, dtype):
    # Each row's sum takes one of three paths by its length and the batch's;
    # each must give the textbook loss and its gradient ŷ − y.
    rng = np.random.default_rng(21)
    v = (rng.normal(size=shape) * 3).astype(dtype)
    idx = rng.integers(0, shape[1], size=shape[0])
    rows = np.eye(shape[1])[idx]
    t = mt.Tensor(v)
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(t, idx, reduction="sum")
    dv = tape.gradient(loss, t)
    assert loss.dtype == dv.dtype == dtype
    wide = v.astype(np.float64)
    p = np.exp(wide - wide.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss.value, _reference_ce(wide, rows, "sum"), rtol=rtol)
    np.testing.assert_allclose(dv, p - rows, rtol=0, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("rows", [20, 3000], ids=["small", "large"])
def test_a_bias_gradient_is_the_column_sum_of_g(rows, dtype):
    # unbroadcast sums small matrices by BLAS and the rest by numpy: both must
    # give each column's sum, in g's dtype.
    g = np.random.default_rng(22).normal(size=(rows, 5)).astype(dtype)
    summed = mt.unbroadcast(g, (5,))
    assert summed.shape == (5,) and summed.dtype == dtype
    tol = {np.float64: 1e-12, np.float32: 1e-5, np.float16: 1e-2}[dtype]
    np.testing.assert_allclose(summed, g.astype(np.float64).sum(axis=0), rtol=tol, atol=tol * rows)


def test_softmax_cross_entropy_default_reduction_is_mean():
    rng = np.random.default_rng(18)
    v, labels = rng.normal(size=(6, 3)), rng.integers(0, 3, size=6)
    total = mt.softmax_cross_entropy(v, labels, reduction="sum").value
    np.testing.assert_allclose(mt.softmax_cross_entropy(mt.Tensor(v), labels).value, total / 6)


def test_softmax_cross_entropy_labels_get_no_gradient():
    rng = np.random.default_rng(19)
    v = mt.Tensor(rng.normal(size=(3, 4)))
    y = mt.Tensor(np.eye(4)[[0, 3, 1]])
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, y)
    dv, dy = tape.gradient(loss, [v, y])
    np.testing.assert_array_equal(dy, np.zeros((3, 4)))
    assert np.abs(dv).sum() > 0


# -- stop_gradient --------------------------------------------------------------------

def test_stop_gradient_keeps_the_value():
    x = mt.Tensor(np.arange(3.0), name="x")
    for y in (mt.stop_gradient(x), x.detach()):
        assert y is not x
        np.testing.assert_array_equal(y.value, x.value)
    np.testing.assert_array_equal(mt.stop_gradient(np.arange(3)).value, np.arange(3.0))


@pytest.mark.parametrize("op, args, expected", [
    (mt.add, ([1.0, 2.0], [3.0, 4.0]), [4.0, 6.0]),        # not list concatenation
    (mt.mul, ([1.0, 2.0], 3), [3.0, 6.0]),                 # not list repetition
    (mt.sub, ([1.0, 2.0], [1.0, 1.0]), [0.0, 1.0]),
    (mt.div, ([1.0, 2.0], [2.0, 2.0]), [0.5, 1.0]),
    (mt.neg, ([1.0, 2.0],), [-1.0, -2.0]),
    (mt.sigmoid, ([0.0],), [0.5]),
    (mt.matmul, ([[1.0, 2.0]], [[3.0], [4.0]]), [[11.0]]),
])
def test_lists_are_constants_with_numpy_meaning(op, args, expected):
    np.testing.assert_array_equal(op(*args).value, expected)
    t = mt.Tensor(np.ones(np.shape(args[0])))
    with mt.Tape() as tape:       # a list beside a Tensor is a constant too
        y = op(t, *args[1:]).sum()
    assert tape.gradient(y, t).shape == t.shape


def test_an_op_names_its_output_when_asked():
    a = mt.Tensor(np.ones((2, 3)), name="a")
    with mt.Tape() as tape:
        h = mt.sigmoid(a, name="h")
        s = mt.sum(h, axis=0, name="s")
        total = s.sum()
    assert (h.name, s.name, total.name) == ("h", "s", None)
    np.testing.assert_allclose(tape.gradient(total, a), h.value * (1 - h.value))


def test_two_layer_net_names_its_tensors_as_the_derivation_does():
    from models import TwoLayerNet
    net = TwoLayerNet(4, 3, 2, seed=0)
    with mt.Tape() as tape:
        loss = net.loss(np.ones((5, 4)), np.array([0, 1, 1, 0, 1]))
    names = [node.output.name for node in tape.nodes]
    assert names == [None, "t", "h", None, "v", "J"]
    assert loss.name == "J"


@pytest.mark.parametrize("make", [lambda t, k: mt.pow(t, k), lambda t, k: mt.pow(k, t)],
                         ids=["list exponent", "list base"])
def test_pow_of_a_list_differentiates_as_pow_of_its_array(make):
    # The VJPs computed with the list itself: p − 1 raised a TypeError, and A == 0 was
    # False for a list, so a base of 0 gave NaN where its mask gives 0
    x = np.array([0.5, 1.0, 2.0])
    listed, array = [2.0, 3.0, 0.0], np.array([2.0, 3.0, 0.0])
    for grad in (lambda f: mt.grad(f), lambda f: mt.grad(f, compile=True),
                 lambda f: mt.grad(lambda w: mt.sum(mt.grad(f)(w) ** 2))):  # and second order
        got = grad(lambda w: mt.sum(make(w, listed)))(x)
        want = grad(lambda w: mt.sum(make(w, array)))(x)
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, want)
