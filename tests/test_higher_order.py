"""Derivatives of derivatives: each op's VJP spelled in ops, and the tape differentiating itself.

Every op is drawn from the one table of op cases (tests/op_cases.py): its
differentiable VJP must give the numpy VJP's numbers for a random G (float64
and float32), its second derivatives (the gradient of Σ grad ∘ v) must equal
central differences of the first gradient along v, and its third (the
gradient of vᵀHv) differences of vᵀHv.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from microtape.tape import active_tapes
from tests.op_cases import op_cases, primitives

CASES = op_cases(np.random.default_rng(0), np.float64)
IDS = [f"{name}-{k}" for k, (name, _) in enumerate(CASES)]


def _record(call):
    """Run one case on a tape; its sources, or else the last op's Tensor inputs."""
    with mt.Tape() as tape:
        out, sources = call()
    if not sources:
        sources = [x for x in tape.nodes[-1].inputs if isinstance(x, mt.Tensor)]
    return tape, out, sources


CASES32 = op_cases(np.random.default_rng(0), np.float32)


def test_every_op_has_differentiable_vjps_and_cases():
    ops_by_name = primitives()
    assert {name for name, _ in CASES} == set(ops_by_name)
    for name, op in ops_by_name.items():
        assert op.grads is not None, name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", range(len(CASES)), ids=IDS)
def test_the_differentiable_vjp_equals_the_numpy_vjp(k, dtype):
    name, call = (CASES if dtype == np.float64 else CASES32)[k]
    tape, out, sources = _record(call)
    G = np.random.default_rng(1).normal(size=out.shape).astype(dtype)
    eager = tape.gradient(out, sources, seed=G)
    graph = tape.gradient(out, sources, seed=G, create_graph=True)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for e, g in zip(eager, graph):
        assert isinstance(g, mt.Tensor), name
        assert g.shape == e.shape and g.dtype == e.dtype == dtype, name
        np.testing.assert_allclose(g.value, e, rtol=tol, atol=tol, err_msg=name)


def _first_gradient(call, sources, R):
    """∇ Σ R ∘ op(sources), by the eager (numpy) backward pass."""
    with mt.Tape() as tape:
        out, _ = call()
    return tape.gradient(out, sources, seed=R)


def _directions(call, seed: int):
    """The case's sources, a random output weighting R and a random direction v per source."""
    _, out, sources = _record(call)
    rng = np.random.default_rng(seed)
    return sources, rng.normal(size=out.shape), [rng.normal(size=s.shape) for s in sources]


# Differences see a stop_gradient's input change the value; no derivative of any order does.
DIFFERENTIABLE = [(c, i) for c, i in zip(CASES, IDS) if c[0] != "stop_gradient"]


@pytest.mark.parametrize("case", [c for c, _ in DIFFERENTIABLE], ids=[i for _, i in DIFFERENTIABLE])
def test_second_derivatives_equal_differences_of_the_gradient(case):
    name, call = case
    sources, R, v = _directions(call, seed=2)
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            out, _ = call()
        grads = inner.gradient(out, sources, seed=R, create_graph=True)
        # Σ_i grad_i ∘ v_i, whose gradient is the Hessian (of Σ R ∘ op) times v
        total = mt.sum(mt.Tensor(np.zeros(())))
        for g, vi in zip(grads, v):
            total = total + mt.sum(g * vi)
    hvp = outer.gradient(total, sources)
    eps = 1e-6
    base = [s.value for s in sources]
    for s, b, vi in zip(sources, base, v):
        s.value = b + eps * vi
    up = _first_gradient(call, sources, R)
    for s, b, vi in zip(sources, base, v):
        s.value = b - eps * vi
    down = _first_gradient(call, sources, R)
    for s, b in zip(sources, base):
        s.value = b
    for h, u, d in zip(hvp, up, down):
        np.testing.assert_allclose(h, (u - d) / (2 * eps), rtol=1e-5, atol=1e-6, err_msg=name)


def test_no_derivative_of_any_order_flows_through_stop_gradient():
    b0 = np.array([1.0, -2.0])
    f = lambda a, b: mt.sum(a * a * mt.stop_gradient(b))  # noqa: E731
    cross = mt.grad(lambda b: mt.sum(mt.grad(f)(np.ones(2), b)), argnums=0)(b0)
    np.testing.assert_array_equal(cross, np.zeros(2))


def test_grad_of_a_sum_of_grad_is_the_second_derivative():
    # Before, this raised "the target of shape () was not recorded on this tape".
    f = lambda x: mt.sum(x ** 3)  # noqa: E731
    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(mt.grad(lambda x: mt.sum(mt.grad(f)(x)))(x), 6 * x)


def test_no_perturbation_confusion():
    # d/dx [x · d/dy (x + y)] = x · 1, so its derivative is 1 (2 if y were taken for x)
    f = lambda x: x * mt.grad(lambda y: x + y)(x)  # noqa: E731
    assert mt.grad(f)(3.0) == 1.0


def test_nested_value_and_grad_gives_tensors_of_the_outer_computation():
    seen = {}

    def f(x):
        value, g = mt.value_and_grad(lambda y: mt.sum(mt.exp(y)))(x)
        seen["types"] = type(value), type(g)
        return value + mt.sum(g)

    x = np.array([0.2, -0.4])
    np.testing.assert_allclose(mt.grad(f)(x), 2 * np.exp(x))
    assert seen["types"] == (mt.Tensor, mt.Tensor)
    assert isinstance(mt.grad(lambda y: mt.sum(mt.exp(y)))(x), np.ndarray)  # top level: arrays


@pytest.mark.parametrize("op, third", [
    (mt.tanh, lambda x: -2 * (1 - np.tanh(x) ** 2) * (1 - 3 * np.tanh(x) ** 2)),
    (mt.exp, np.exp),
])
def test_third_order(op, third):
    d = lambda f: mt.grad(lambda x: mt.sum(f(x)))  # noqa: E731
    x = np.array([-1.3, 0.0, 0.4, 2.0])
    np.testing.assert_allclose(d(d(d(op)))(x), third(x), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_loss_hessian_wrt_logits_is_the_softmax_jacobian(reduction):
    rng = np.random.default_rng(3)
    n, c = 4, 3
    v = mt.Tensor(rng.normal(size=(n, c)))
    labels = np.array([0, 2, 1, 2])
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            loss = mt.softmax_cross_entropy(v, labels, reduction=reduction)
        g = inner.gradient(loss, v, create_graph=True)
        rows = [[outer.gradient(g[i, a], v) for a in range(c)] for i in range(n)]
    H = np.array(rows)  # H[i, a, j, b] = ∂²J / ∂v_ia ∂v_jb
    yhat = np.exp(v.value) / np.exp(v.value).sum(axis=1, keepdims=True)
    scale = 1 / n if reduction == "mean" else 1
    for i in range(n):
        block = (np.diag(yhat[i]) - np.outer(yhat[i], yhat[i])) * scale
        np.testing.assert_allclose(H[i, :, i, :], block, atol=1e-12)
        for j in set(range(n)) - {i}:
            assert not H[i, :, j, :].any()  # rows of the batch do not interact


@pytest.mark.parametrize("n", [5, 5000], ids=["allocating", "in place"])
def test_sigmoid_second_derivative_uses_the_recorded_output(n):
    x = np.linspace(-4, 4, n)
    s = 1 / (1 + np.exp(-x))
    second = mt.grad(lambda x: mt.sum(mt.grad(lambda y: mt.sum(mt.sigmoid(y)))(x)))(x)
    np.testing.assert_allclose(second, s * (1 - s) * (1 - 2 * s), atol=1e-12)


def test_relu_second_derivative_is_zero():
    x = np.array([-1.0, 0.5, 2.0])
    second = mt.grad(lambda x: mt.sum(mt.grad(lambda y: mt.sum(mt.relu(y) ** 1))(x) * x))(x)
    np.testing.assert_array_equal(second, (x > 0).astype(float))  # d/dx [x ∘ [x > 0]]


def test_a_user_op_with_a_numpy_vjp_works_once_and_is_refused_by_name_twice():
    @mt.primitive("dA = G ∘ 3 A²")
    def cube(a):
        return a ** 3, (lambda g: g * 3 * a ** 2,)

    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(mt.grad(lambda x: mt.sum(cube(x)))(x), 3 * x ** 2)
    with pytest.raises(TypeError, match="cube: this op is once-differentiable.*grads="):
        mt.grad(lambda x: mt.sum(mt.grad(lambda y: mt.sum(cube(y)))(x)))(x)


def test_a_user_op_missing_one_differentiable_vjp_is_refused_naming_the_input():
    @mt.primitive("dA = G B, dB = G A", grads=(lambda g, c, a, b: g * b, None))
    def times(a, b):
        return a * b, (lambda g: g * b, lambda g: g * a)

    f = lambda a, b: times(a, b)  # noqa: E731
    assert mt.grad(lambda a: mt.grad(f)(a, 3.0))(2.0) == 0.0  # input 0's VJP is in ops
    with pytest.raises(TypeError, match="times: this op is once-differentiable: the VJP of its input 1"):
        mt.grad(lambda b: mt.grad(f, argnums=1)(2.0, b))(3.0)


def test_a_user_op_with_differentiable_vjps_goes_to_second_order():
    @mt.primitive("dA = G ∘ 3 A²", grads=(lambda g, c, a: g * 3 * a ** 2,))
    def cube(a):
        return a ** 3, (lambda g: g * 3 * a ** 2,)

    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(
        mt.grad(lambda x: mt.sum(mt.grad(lambda y: mt.sum(cube(y)))(x)))(x), 6 * x)


def test_float32_stays_float32_at_second_order(two_layer):
    rng = np.random.default_rng(4)
    p = {k: v.astype(np.float32) for k, v in two_layer.params(rng).items()}
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])

    def grad_norm(W1):
        g = mt.grad(lambda W1: two_layer.loss(x, {**p, "W1": W1}, y))(W1)
        assert g.dtype == np.float32
        return mt.sum(g * g)

    h = mt.grad(grad_norm)(p["W1"])
    assert h.dtype == np.float32 and h.shape == p["W1"].shape


def test_create_graph_false_is_unchanged():
    x = mt.Tensor(np.array([0.5, 1.5]))
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x))
    g = tape.gradient(y, x)
    assert type(g) is np.ndarray
    np.testing.assert_array_equal(g, tape.gradient(y, x, create_graph=True).value)


def test_a_seed_tensor_is_differentiable_so_a_vjp_transposes_to_a_jvp():
    # J v as the derivative of uᵀJ (a VJP with seed u) with respect to u
    rng = np.random.default_rng(5)
    W = rng.normal(size=(3, 4))
    x = mt.Tensor(rng.normal(size=3))
    v = rng.normal(size=3)
    u = mt.Tensor(np.zeros(4))
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            y = mt.tanh(x @ W)
        g = inner.gradient(y, x, seed=u, create_graph=True)
        s = mt.sum(g * v)
    jv = outer.gradient(s, u)
    np.testing.assert_allclose(jv, (1 - np.tanh(x.value @ W) ** 2) * (v @ W), rtol=1e-12)


def test_the_hessian_of_the_two_layer_loss_is_symmetric(two_layer):
    rng = np.random.default_rng(6)
    p = two_layer.params(rng, n_in=3, n_hidden=2, n_out=3)
    x, y = rng.normal(size=(4, 3)), np.array([0, 2, 1, 2])
    W1 = mt.Tensor(p["W1"])
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            loss = two_layer.loss(x, {**p, "W1": W1}, y)
        g = inner.gradient(loss, W1, create_graph=True)
        flat = mt.reshape(g, -1)
        H = np.array([outer.gradient(flat[k], W1).ravel() for k in range(flat.shape[0])])
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    assert np.abs(H).max() > 1e-3  # not symmetric by being zero


def test_create_graph_refuses_a_spent_tape_and_a_seed_of_the_wrong_shape():
    x = mt.Tensor(np.ones(3))
    with mt.Tape() as tape:
        y = mt.tanh(x)
    with pytest.raises(mt.ShapeError, match="seed has shape"):
        tape.gradient(y, x, seed=mt.Tensor(np.ones(2)), create_graph=True)
    with mt.Tape(persistent=False) as once:
        z = mt.sum(mt.tanh(x))
    once.gradient(z, x, create_graph=True)
    with pytest.raises(RuntimeError, match="persistent=False"):
        once.gradient(z, x, create_graph=True)


def test_create_graph_refuses_a_tape_whose_tensor_changed_in_place():
    w = mt.Tensor(np.array([0.5, -1.0]), name="w")
    with mt.Tape() as tape:
        y = mt.sum(mt.exp(w))
    w.value += 1.0
    w.mark_modified()
    with pytest.raises(RuntimeError, match="'w' was changed in place"):
        tape.gradient(y, w, create_graph=True)


def test_backward_with_create_graph_sets_tensors_an_outer_tape_differentiates():
    x = mt.Tensor(np.array([0.3, -0.7]))
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            h = mt.tanh(x)
            y = mt.sum(h * h)
        inner.backward(y, create_graph=True)
        assert isinstance(x.grad, mt.Tensor) and isinstance(h.grad, mt.Tensor)
        s = mt.sum(x.grad)
    t = np.tanh(x.value)
    np.testing.assert_allclose(x.grad.value, 2 * t * (1 - t * t), rtol=1e-12)
    np.testing.assert_allclose(outer.gradient(s, x), 2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12)


def test_a_float32_source_gets_float32_gradients_when_float64_constants_join_in():
    x = mt.Tensor(np.array([0.5, 1.5], dtype=np.float32))
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            y = mt.sum(mt.tanh(x) * np.array([2.0, 3.0]))  # float64 constant: y is float64
        g = inner.gradient(y, x, create_graph=True)
        s = mt.sum(g)
    assert g.dtype == np.float32 and outer.gradient(s, x).dtype == np.float32
    np.testing.assert_allclose(g.value, inner.gradient(y, x), rtol=1e-6)


def _directional(call, sources, R, v, order):
    """D^order of Σ R ∘ op, along v in every slot, as a Tensor, and the outer tape that recorded it.

    order + 1 nested tapes: each inner one is differentiated with create_graph
    while the ones outside it record.
    """
    tapes = [mt.Tape() for _ in range(order + 1)]
    for t in tapes:
        t.__enter__()
    try:
        out, _ = call()
        scalar = mt.sum(out * R)
        for level in range(order, 0, -1):
            tapes[level].__exit__(None, None, None)
            grads = tapes[level].gradient(scalar, sources, create_graph=True)
            scalar = mt.sum(mt.Tensor(np.zeros(())))
            for g, vi in zip(grads, v):
                scalar = scalar + mt.sum(g * vi)
    finally:  # whatever failed, leave no tape of this test recording
        for t in reversed(tapes):
            if t in active_tapes():
                t.__exit__(None, None, None)
    return scalar, tapes[0]


@pytest.mark.parametrize("case", [c for c, _ in DIFFERENTIABLE], ids=[i for _, i in DIFFERENTIABLE])
def test_third_derivatives_equal_differences_of_the_second(case):
    name, call = case
    sources, R, v = _directions(call, seed=7)
    second, tape = _directional(call, sources, R, v, 2)  # vᵀ H v, recorded
    third = sum(float(np.sum(g * vi)) for g, vi in zip(tape.gradient(second, sources), v))
    eps, base = 1e-4, [s.value for s in sources]
    at = []
    for sign in (1, -1):
        for s, b, vi in zip(sources, base, v):
            s.value = b + sign * eps * vi
        at.append(float(_directional(call, sources, R, v, 2)[0].value))
    for s, b in zip(sources, base):
        s.value = b
    np.testing.assert_allclose(third, (at[0] - at[1]) / (2 * eps), rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_recorded_backward_pass_marks_each_op_with_the_vjp_it_came_from():
    x = mt.Tensor(np.array([0.5, -1.0, 2.0]), name="x")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            y = mt.sum(mt.sigmoid(x), name="y")
        (dx,) = inner.gradient(y, [x], create_graph=True)
        mt.sum(dx * dx)
    forward = [n for n in outer.nodes if n.origin is None]
    backward = [n for n in outer.nodes if n.origin is not None]
    assert [n.op.name for n in forward] == ["sigmoid", "sum", "mul", "sum"]
    assert {(n.origin[0].op.name, n.origin[1]) for n in backward} == {("sum", 0), ("sigmoid", 0)}
    assert all(n.origin[0] in forward[:2] for n in backward)
