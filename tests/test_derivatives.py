"""jacobian, hessian, hvp and jvp against closed forms, finite differences and each other."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import microtape as mt
from microtape.gradient_checking import central_differences

RNG = np.random.default_rng(16)


def softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def two_layer(x, W1, W2):
    return mt.tanh(x @ W1) @ W2


# -- jacobian ----------------------------------------------------------------------

def test_jacobian_of_matmul_is_the_other_factor_in_index_notation():
    x, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    Jx, JW = mt.jacobian(lambda x, W: x @ W, argnums=(0, 1))(x, W)
    assert Jx.shape == (4, 2, 4, 3) and JW.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(Jx, np.einsum("ik,lj->ijkl", np.eye(4), W), atol=1e-15)  # W_lj δ_ik
    np.testing.assert_allclose(JW, np.einsum("ik,jl->ijkl", x, np.eye(2)), atol=1e-15)  # x_ik δ_jl


def test_jacobian_of_tanh_is_diagonal():
    t = RNG.normal(size=5)
    np.testing.assert_allclose(mt.jacobian(mt.tanh)(t), np.diag(1 - np.tanh(t) ** 2), atol=1e-15)


def test_jacobian_of_softmax_is_diag_yhat_minus_yhat_yhat_t():
    v = RNG.normal(size=6)
    y = softmax(v)
    np.testing.assert_allclose(mt.jacobian(mt.softmax)(v), np.diag(y) - np.outer(y, y),
                               atol=1e-15)
    V = RNG.normal(size=(3, 4))  # row-wise: one such block per row, zero across rows
    J, Y = mt.jacobian(mt.softmax)(V), softmax(V)
    for n in range(3):
        for m in range(3):
            want = np.diag(Y[n]) - np.outer(Y[n], Y[n]) if n == m else np.zeros((4, 4))
            np.testing.assert_allclose(J[n, :, m, :], want, atol=1e-15)


def test_jacobian_rows_are_the_gradients_of_each_output():
    x, W1, W2 = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2))
    J = mt.jacobian(two_layer, argnums=1)(x, W1, W2)
    assert J.shape == (2, 2, 3, 4)
    for i in range(2):
        for j in range(2):
            g = mt.grad(lambda W1: two_layer(x, W1, W2)[i, j])(W1)
            np.testing.assert_allclose(J[i, j], g, atol=1e-14)


def test_jacobian_of_identity_constant_and_unused_arguments():
    x = RNG.normal(size=(2, 3))
    np.testing.assert_array_equal(mt.jacobian(lambda x: x)(x), np.eye(6).reshape(2, 3, 2, 3))
    const = mt.jacobian(lambda x, y: y * 2.0, argnums=(0, 1))(x, np.ones(2))
    np.testing.assert_array_equal(const[0], np.zeros((2, 2, 3)))
    np.testing.assert_array_equal(const[1], 2 * np.eye(2))
    # Arguments not differentiated pass through as they were; negative argnums count from the end.
    J = mt.jacobian(lambda k, x: x * k, argnums=-1)(3, x)
    np.testing.assert_array_equal(J, 3 * np.eye(6).reshape(2, 3, 2, 3))


def test_jacobian_keeps_float32():
    x = RNG.normal(size=3).astype(np.float32)
    J = mt.jacobian(mt.tanh)(x)
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, np.diag(1 - np.tanh(x) ** 2), rtol=1e-6)


@pytest.mark.parametrize("argnums, error, phrase", [
    ("0", TypeError, "argnums must be an int or a non-empty tuple of ints"),
    ((), TypeError, "argnums must be an int or a non-empty tuple of ints"),
    (True, TypeError, "argnums must be an int"),
    ((0, 1.0), TypeError, "argnums must be an int"),
    (2, IndexError, "argnums 2 is out of range for 2 arguments"),
    ((0, -2), ValueError, "names an argument twice"),
])
@pytest.mark.parametrize("transform", [mt.jacobian, mt.hessian])
def test_bad_argnums_are_named(transform, argnums, error, phrase):
    with pytest.raises(error, match=phrase):
        transform(lambda x, y: mt.sum(x * y), argnums=argnums)(np.ones(2), np.ones(2))


def test_jacobian_wants_a_tensor_back():
    with pytest.raises(TypeError, match="must return a Tensor, not float"):
        mt.jacobian(lambda x: 1.0)(np.ones(2))


# -- hessian -----------------------------------------------------------------------

def loss(x, W1, W2, labels):
    return mt.softmax_cross_entropy(two_layer(x, W1, W2), labels)


def differences_of_the_gradient(f, x, eps=1e-6):
    """∂(∇f)/∂x_k by central differences of the tape's gradient: H's rows, numerically."""
    x = np.array(x, dtype=np.float64)
    rows = central_differences(lambda: mt.grad(f)(x), x, np.arange(x.size), eps)
    return rows.reshape(x.shape + x.shape)


def test_hessian_is_symmetric_and_matches_differences_of_the_gradient():
    x, W2 = RNG.normal(size=(3, 2)), RNG.normal(size=(4, 3))
    labels = np.array([0, 2, 1])
    f = lambda W1: loss(x, W1, W2, labels)  # noqa: E731
    W1 = RNG.normal(size=(2, 4))
    H = mt.hessian(f)(W1)
    assert H.shape == (2, 4, 2, 4)
    flat = H.reshape(8, 8)
    np.testing.assert_allclose(flat, flat.T, atol=1e-14)
    np.testing.assert_allclose(H, differences_of_the_gradient(f, W1), atol=1e-8)


def test_hessian_of_the_loss_wrt_the_logits_is_the_softmax_jacobian_over_n():
    N, C = 4, 3
    logits, labels = RNG.normal(size=(N, C)), np.array([0, 2, 1, 1])
    H = mt.hessian(lambda z: mt.softmax_cross_entropy(z, labels))(logits)
    Y = softmax(logits)
    for n in range(N):
        for m in range(N):
            want = (np.diag(Y[n]) - np.outer(Y[n], Y[n])) / N if n == m else np.zeros((C, C))
            np.testing.assert_allclose(H[n, :, m, :], want, atol=1e-15)
    Hsum = mt.hessian(lambda z: mt.softmax_cross_entropy(z, labels, reduction="sum"))(logits)
    np.testing.assert_allclose(Hsum, N * H, atol=1e-14)


def test_hessian_with_a_tuple_of_argnums_is_nested_blocks():
    x, labels = RNG.normal(size=(3, 2)), np.array([0, 1, 2])
    W1, W2 = RNG.normal(size=(2, 4)), RNG.normal(size=(4, 3))
    H = mt.hessian(loss, argnums=(1, 2))(x, W1, W2, labels)
    assert [[b.shape for b in row] for row in H] == [[(2, 4, 2, 4), (2, 4, 4, 3)],
                                                     [(4, 3, 2, 4), (4, 3, 4, 3)]]
    np.testing.assert_allclose(H[0][1], H[1][0].transpose(2, 3, 0, 1), atol=1e-14)
    np.testing.assert_allclose(H[0][0], mt.hessian(loss, argnums=1)(x, W1, W2, labels), atol=0)
    # The mixed block, column by column: ∂(∂f/∂W1)/∂W2 by differences of the gradient.
    mixed = central_differences(lambda: mt.grad(loss, argnums=1)(x, W1, W2, labels), W2,
                                np.arange(W2.size)).reshape(W2.shape + W1.shape)
    np.testing.assert_allclose(H[1][0], mixed, atol=1e-8)


def test_hessian_of_a_linear_function_is_zero_and_of_a_quadratic_is_constant():
    A = RNG.normal(size=(3, 3))
    x = RNG.normal(size=3)
    np.testing.assert_array_equal(mt.hessian(lambda x: mt.sum(x * 2.0))(x), np.zeros((3, 3)))
    np.testing.assert_allclose(mt.hessian(lambda x: mt.sum(x * (x @ A)))(x), A + A.T, atol=1e-15)


def test_hessian_wants_a_scalar():
    with pytest.raises(ValueError, match="f must return a scalar"):
        mt.hessian(lambda x: x * x)(np.ones(3))
    with pytest.raises(TypeError, match="must return a Tensor"):
        mt.hessian(lambda x: 3.0)(np.ones(3))


def test_hessian_keeps_float32():
    x = RNG.normal(size=4).astype(np.float32)
    H = mt.hessian(lambda x: mt.sum(mt.tanh(x) * x))(x)
    assert H.dtype == np.float32
    t = np.tanh(x.astype(np.float64))
    want = np.diag(2 * (1 - t ** 2) - 2 * x * t * (1 - t ** 2))  # (x tanh x)''
    np.testing.assert_allclose(H, want, rtol=1e-5, atol=1e-6)


# -- hvp ---------------------------------------------------------------------------

def test_hvp_is_the_hessian_times_v():
    x, labels = RNG.normal(size=(3, 2)), np.array([0, 1, 2])
    W1, W2 = RNG.normal(size=(2, 4)), RNG.normal(size=(4, 3))
    v1, v2 = RNG.normal(size=W1.shape), RNG.normal(size=W2.shape)
    f = lambda W1, W2: loss(x, W1, W2, labels)  # noqa: E731
    value, (h1, h2) = mt.hvp(f, (W1, W2), (v1, v2))
    H = mt.hessian(f, argnums=(0, 1))(W1, W2)
    np.testing.assert_allclose(value, f(mt.Tensor(W1), mt.Tensor(W2)).value, atol=0)
    for i, h in enumerate((h1, h2)):
        want = sum(np.tensordot(H[i][j], v, axes=v.ndim) for j, v in enumerate((v1, v2)))
        np.testing.assert_allclose(h, want, atol=1e-13)


def test_hvp_and_jvp_are_differentiable_in_their_tangents_too():
    # H·v is linear in v, so the gradient of Σ (H·v) with respect to v is H·1 (H is
    # symmetric); J·v of tanh is (1 − t²) v, so that of Σ (J·v)² is 2 (1 − t²)² v.
    # Nested, the tangents were read as plain arrays: their gradients were zeros.
    x, v = RNG.normal(size=3), RNG.normal(size=3)
    f = lambda x: mt.sum(mt.tanh(x) ** 3 * mt.exp(x))  # noqa: E731
    for tangent in (v, v.astype(np.float32)):  # a float32 tangent is cast as a recorded op
        got = mt.grad(lambda v: mt.sum(mt.hvp(f, (x,), (v,))[1][0]))(tangent)
        assert got.dtype == tangent.dtype
        np.testing.assert_allclose(got, mt.hvp(f, (x,), (np.ones(3),))[1][0],
                                   rtol=1e-12 if tangent.dtype == np.float64 else 1e-5)
    t = np.tanh(x)
    got = mt.grad(lambda v: mt.sum(mt.jvp(mt.tanh, (x,), (v,))[1] ** 2))(v)
    np.testing.assert_allclose(got, 2 * (1 - t ** 2) ** 2 * v, rtol=1e-12)
    # with respect to the primal and the tangent at once: ∂/∂v Σ (H·v)² = 2 H (H·v)
    H = mt.hessian(f)(x)
    _, dv = mt.grad(lambda x, v: mt.sum(mt.hvp(f, (x,), (v,))[1][0] ** 2), argnums=(0, 1))(x, v)
    np.testing.assert_allclose(dv, 2 * H @ (H @ v), rtol=1e-12)


def test_hvp_never_forms_the_hessian():
    # (Σx²)² has the dense Hessian 4(Σx²)I + 8xxᵀ: 10⁸ numbers for 10⁴ of x.
    n = 10_000
    x, v = RNG.normal(size=n) / 100, RNG.normal(size=n)
    f = lambda x: mt.sum(x * x) * mt.sum(x * x)  # noqa: E731
    mt.hvp(f, (x,), (v,))  # warm up
    tracemalloc.start()
    start = time.perf_counter()
    value, (hv,) = mt.hvp(f, (x,), (v,))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    s = x @ x
    np.testing.assert_allclose(value, s * s, rtol=1e-14)
    np.testing.assert_allclose(hv, 4 * s * v + 8 * x * (x @ v), rtol=1e-12, atol=1e-14)
    assert peak < 4_000_000, f"hvp allocated {peak:,} bytes at its peak; H alone is 800 MB"
    assert seconds < 1.0


def test_hvp_lets_go_of_the_gradient_before_its_second_pass():
    # H·v of Σ exp(x) needs exp(x), the cotangent reaching it and the answer at once;
    # the gradient itself, and any ⟨∇f, v⟩ with its own gradient, need not be held.
    x, v = RNG.normal(size=1_000_000), RNG.normal(size=1_000_000)
    f = lambda x: mt.sum(mt.exp(x))  # noqa: E731
    mt.hvp(f, (x,), (v,))  # warm up
    tracemalloc.start()
    _, (hv,) = mt.hvp(f, (x,), (v,))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(hv, np.exp(x) * v, rtol=1e-14)
    assert peak < 3.5 * x.nbytes, f"hvp peaked at {peak / x.nbytes:.1f} arrays of x's size"


def test_hvp_keeps_float32_and_checks_its_tangents():
    x = RNG.normal(size=3).astype(np.float32)
    value, (hv,) = mt.hvp(lambda x: mt.sum(x * x * x), (x,), (np.ones(3),))
    assert value.dtype == hv.dtype == np.float32
    np.testing.assert_allclose(hv, 6 * x, rtol=1e-6)
    with pytest.raises(mt.ShapeError, match="tangent 0 has shape \\(2,\\) but primal 0 has shape"):
        mt.hvp(lambda x: mt.sum(x), (x,), (np.ones(2),))
    with pytest.raises(ValueError, match="1 primals but 2 tangents"):
        mt.hvp(lambda x: mt.sum(x), (x,), (np.ones(3), np.ones(3)))
    with pytest.raises(TypeError, match="primals must be a tuple"):
        mt.hvp(lambda x: mt.sum(x), x, (np.ones(3),))
    with pytest.raises(ValueError, match="f must return a scalar"):
        mt.hvp(lambda x: x, (x,), (np.ones(3),))


@pytest.mark.parametrize("create_graph", [False, True])
def test_one_backward_pass_from_several_seeded_targets(create_graph):
    # What hvp runs: Σ_k ⟨s_k, t_k⟩ differentiated in one pass, a repeated target's seeds
    # added and a source as its own target passing its seed straight on.
    x, y = mt.Tensor(RNG.normal(size=(2, 3))), mt.Tensor(RNG.normal(size=3))
    sa, sb, sa2, sx = (RNG.normal(size=(2, 3)) for _ in range(4))
    sy = RNG.normal(size=3)
    with mt.Tape() as tape:
        a, b = mt.exp(x), x * x
    dx, dy = tape._pullback([a, b, a, x, y], [sa, sb, sa2, sx, sy], [x, y],
                            create_graph=create_graph)
    assert isinstance(dx, mt.Tensor) == isinstance(dy, mt.Tensor) == create_graph
    dx, dy = (d.value if create_graph else d for d in (dx, dy))
    np.testing.assert_allclose(dx, np.exp(x.value) * (sa + sa2) + 2 * x.value * sb + sx, rtol=1e-14)
    np.testing.assert_array_equal(dy, sy)
    assert create_graph or not np.shares_memory(dy, sy)  # an array answer is the caller's own


# -- jvp ---------------------------------------------------------------------------

def test_jvp_is_the_jacobian_times_v():
    x, W1, W2 = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2))
    vx, v1, v2 = (RNG.normal(size=a.shape) for a in (x, W1, W2))
    value, jv = mt.jvp(two_layer, (x, W1, W2), (vx, v1, v2))
    assert jv.shape == value.shape == (2, 2)
    Js = mt.jacobian(two_layer, argnums=(0, 1, 2))(x, W1, W2)
    want = sum(np.tensordot(J, v, axes=v.ndim) for J, v in zip(Js, (vx, v1, v2)))
    np.testing.assert_allclose(jv, want, atol=1e-13)
    np.testing.assert_allclose(value, two_layer(x, W1, W2).value, atol=0)


def test_jvp_of_softmax_and_of_a_scalar():
    z, v = RNG.normal(size=5), RNG.normal(size=5)
    y = softmax(z)
    _, jv = mt.jvp(mt.softmax, (z,), (v,))
    np.testing.assert_allclose(jv, (np.diag(y) - np.outer(y, y)) @ v, atol=1e-15)
    value, jv = mt.jvp(lambda z: mt.sum(mt.exp(z)), (z,), (v,))
    assert np.shape(jv) == ()
    np.testing.assert_allclose(jv, np.exp(z) @ v, rtol=1e-14)


def test_jvp_of_identity_constant_and_float32():
    x = RNG.normal(size=3).astype(np.float32)
    v = np.arange(3.0)
    np.testing.assert_array_equal(mt.jvp(lambda x: x, (x,), (v,))[1], v.astype(np.float32))
    value, jv = mt.jvp(lambda x: mt.Tensor(np.ones(2)) * 2.0, (x,), (v,))
    np.testing.assert_array_equal(jv, np.zeros(2))
    _, jv = mt.jvp(mt.tanh, (x,), (v,))
    assert jv.dtype == np.float32
    with pytest.raises(mt.ShapeError, match="tangent 0 has shape"):
        mt.jvp(mt.tanh, (x,), (np.ones((3, 1)),))


# -- gradcheck(order=2) ------------------------------------------------------------

def _sigmoid(a):
    s = 1 / (1 + np.exp(-a))
    return s, (lambda g: g * s * (1 - s),)


# S recorded as the Tensor C: its own dependence on A is differentiated again.
good_sigmoid = mt.primitive("dA = G S(1 − S)",
                            grads=(lambda g, c, a: g * c * (1.0 - c),))(_sigmoid)
# S frozen as numbers: the first derivative is right, the second misses S's slope.
frozen_sigmoid = mt.primitive("dA = G S(1 − S)",
                              grads=(lambda g, c, a: g * (c.value * (1.0 - c.value)),))(_sigmoid)


def test_gradcheck_order_2_passes_correct_ops():
    x, labels = RNG.normal(size=(3, 2)), np.array([0, 1, 2])
    W1, W2 = RNG.normal(size=(2, 4)), RNG.normal(size=(4, 3))
    report = mt.gradcheck(lambda W1, W2: loss(x, W1, W2, labels), [W1, W2], order=2)
    names = [c.name for c in report.inputs]
    assert names[:2] == ["input 0", "input 1"] and "input 1 H·v 2" in names
    assert all(c.checked == c.total for c in report.inputs[2:])
    assert mt.gradcheck(lambda a: mt.sum(good_sigmoid(a) * a), [RNG.normal(size=5)], order=2)


def test_gradcheck_order_2_catches_a_wrong_second_derivative():
    a = RNG.normal(size=5)
    f = lambda a: mt.sum(frozen_sigmoid(a) * a)  # noqa: E731
    assert mt.gradcheck(f, [a])  # right to first order
    with pytest.raises(mt.GradcheckError, match="the second derivative of input 0 disagrees"):
        mt.gradcheck(f, [a], order=2)


def test_gradcheck_order_is_1_or_2():
    with pytest.raises(ValueError, match="order must be 1"):
        mt.gradcheck(lambda a: mt.sum(a), [np.ones(2)], order=3)


def test_central_differences_of_an_array_valued_function():
    x = np.array([0.3, -1.2])
    rows = central_differences(lambda: np.array([x[0] * x[1], x[0] ** 2, 1.0]), x, [0, 1])
    np.testing.assert_allclose(rows, [[x[1], 2 * x[0], 0.0], [x[0], 0.0, 0.0]], atol=1e-9)


# -- nested: answers an outer tape can differentiate again ---------------------------

def test_no_perturbation_confusion_through_a_closure():
    x = mt.Tensor(RNG.normal(size=3))
    # The closure's x is a constant to the transform: only the argument varies.
    np.testing.assert_array_equal(mt.jacobian(lambda y: x * y)(x), np.diag(x.value))
    _, (hv,) = mt.hvp(lambda y: mt.sum(x * y * y), (x,), (np.ones(3),))
    np.testing.assert_allclose(hv, 2 * x.value, atol=1e-15)
    _, jv = mt.jvp(lambda y: x * y, (x,), (np.ones(3),))
    np.testing.assert_array_equal(jv, x.value)


def test_third_derivatives_through_hvp_jvp_and_jacobian():
    x, v = RNG.normal(size=4), RNG.normal(size=4)
    # d/dx Σ (H·v) for Σ exp(x), whose H·v is exp(x)·v: exp(x)·v again.
    third = mt.grad(lambda x: mt.sum(mt.hvp(lambda y: mt.sum(mt.exp(y)), (x,), (v,))[1][0]))(x)
    np.testing.assert_allclose(third, np.exp(x) * v, rtol=1e-14)
    second = mt.grad(lambda x: mt.sum(mt.jvp(mt.exp, (x,), (v,))[1]))(x)
    np.testing.assert_allclose(second, np.exp(x) * v, rtol=1e-14)
    # The Jacobian of tanh's Hessian: tanh''' = (1 − t²)(6t² − 2) on the diagonal i = j = k.
    T = mt.jacobian(lambda x: mt.hessian(lambda y: mt.sum(mt.tanh(y)))(x))(x)
    t = np.tanh(x)
    want = np.zeros((4, 4, 4))
    want[np.arange(4), np.arange(4), np.arange(4)] = (1 - t ** 2) * (6 * t ** 2 - 2)
    np.testing.assert_allclose(T, want, atol=1e-14)


def test_under_a_tape_the_answers_are_recorded_tensors():
    x = mt.Tensor(RNG.normal(size=3))
    with mt.Tape() as tape:
        J = mt.jacobian(mt.tanh)(x)
        value, (hv,) = mt.hvp(lambda y: mt.sum(y * y * y), (x,), (np.ones(3),))
        total = mt.sum(J) + mt.sum(hv)
    assert isinstance(J, mt.Tensor) and isinstance(hv, mt.Tensor) and isinstance(value, mt.Tensor)
    t = np.tanh(x.value)
    np.testing.assert_allclose(tape.gradient(total, x), -2 * t * (1 - t ** 2) + 6, atol=1e-14)


def test_gradcheck_order_2_with_named_inputs_reports_each_direction():
    W = RNG.normal(size=(3, 2))
    report = mt.gradcheck(lambda W: mt.sum(mt.tanh(W) ** 3), {"W": W}, order=2)
    assert [c.name for c in report.inputs] == ["W", "W H·v 1", "W H·v 2"]
    assert "W H·v 2" in str(report) and "A row 'H·v k' is the tape's Hessian-vector" in str(report)


def test_gradcheck_order_2_names_a_once_differentiable_op():
    once = mt.primitive("dA = G S(1 − S)")(_sigmoid)
    f = lambda a: mt.sum(once(a) * a)  # noqa: E731
    assert mt.gradcheck(f, [RNG.normal(size=3)])
    with pytest.raises(TypeError, match="_sigmoid: this op is once-differentiable"):
        mt.gradcheck(f, [RNG.normal(size=3)], order=2)


def test_a_tensor_passed_at_two_places_is_one_variable_for_every_derivative():
    # As for mt.grad: each place gets the total derivative, and the Hessian is the derivative
    # of grad's answer. jacobian and hessian made a variable per place: partial derivatives.
    x = np.array([0.3, -0.7, 1.2])
    X = mt.Tensor(x)
    f = lambda a, b: mt.sum(a * a * b)  # noqa: E731  f(t, t) = Σ t³
    total, second = 3 * x ** 2, np.diag(6 * x)
    for g in mt.grad(f, argnums=(0, 1))(X, X) + mt.jacobian(f, argnums=(0, 1))(X, X):
        np.testing.assert_allclose(g, total, rtol=1e-14)
    H = mt.hessian(f, argnums=(0, 1))(X, X)
    for block in (H[0][0], H[0][1], H[1][0], H[1][1]):
        np.testing.assert_allclose(block, second, rtol=1e-14)
    v1, v2 = np.array([1.0, 2.0, -1.0]), np.array([0.5, 0.0, 3.0])
    value, hv = mt.hvp(f, (X, X), (v1, v2))  # the blocks' H·v: Σ_j H_kj v_j for each place k
    for row in hv:
        np.testing.assert_allclose(row, second @ (v1 + v2), rtol=1e-14)
    np.testing.assert_allclose(mt.jvp(f, (X, X), (v1, v2))[1], total @ (v1 + v2), rtol=1e-14)
    # Arrays are values, not variables: equal ones at two places are two variables
    np.testing.assert_allclose(mt.jacobian(f, argnums=(0, 1))(x, x)[1], x ** 2, rtol=1e-14)
