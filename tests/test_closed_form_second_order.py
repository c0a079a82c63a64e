"""The closed form of a tape that recorded a backward pass (``create_graph=True``).

Each program records a loss ``J``, its gradient as ops (the first backward
pass), and a scalar ``s`` of that gradient; ``outer.closed_form(s, ...)``
writes the forward pass, the recorded pass and the backward pass of ``s``.
It must replay on fresh random values (equal to recording again, and to
HIPS autograd for the two-layer net), name the recorded pass's tensors
``dJ_d...`` and the second pass's ``d_dJ_d...``, take no seed argument,
and keep float32 in float32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import microtape as mt
from microtape.naming import TapeNames
from models import TwoLayerNet

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

LABELS = np.array([0, 2, 1, 2, 0])


@dataclass
class Case:
    """A second-order program: its leaves (name -> shape), J, s and the sources."""

    shapes: dict[str, tuple]
    tensors: tuple[str, ...]                 # the leaves that are Tensors
    loss: Callable                           # leaves -> J (named "J")
    wrt: tuple[str, ...]                     # J's gradient is taken w.r.t. these, recorded
    outer: Callable                          # (gradients, leaves) -> s
    sources: tuple[str, ...]                 # s is differentiated w.r.t. these
    inputs: tuple[str, ...]                  # what the closed form must take: the real leaves


def _two_layer(t):
    net = TwoLayerNet(3, 4, 3, seed=0)  # its forward: t = x W1 + b1, h, v = h W2 + b2
    return mt.softmax_cross_entropy(net.forward(t["x"], t), t.get("labels", LABELS), name="J")


NET = {"x": (5, 3), "W1": (3, 4), "b1": (4,), "W2": (4, 3), "b2": (3,)}
CASES = {
    "two_layer_gradient_norm": Case(
        NET, ("W1", "b1", "W2", "b2"), _two_layer, ("W1",),
        lambda g, t: mt.sum(g[0] * g[0], name="s"), ("W1", "W2", "b1"), (*NET, "labels")),
    "two_layer_hvp": Case(  # s = g · u: its gradient is the Hessian times u
        {**NET, "u": (3, 4)}, ("W1", "b1", "W2", "b2"), _two_layer, ("W1",),
        lambda g, t: mt.sum(g[0] * t["u"], name="s"), ("W1",), (*NET, "labels", "u")),
    "tanh_exp_chain": Case(
        {"x": (4, 3), "w": (3,)}, ("w",),
        lambda t: mt.sum(mt.exp(mt.tanh(t["x"] * t["w"]) * 0.5), name="J"), ("w",),
        lambda g, t: mt.sum(mt.tanh(g[0]), name="s"), ("w",), ("x", "w")),
    "fan_out": Case(  # h feeds three ops: its gradient has three terms
        {"x": (3, 4), "W": (4, 2)}, ("W",),
        lambda t: mt.sum(_fan_out(mt.sigmoid(t["x"] @ t["W"], name="h")), name="J"), ("W",),
        lambda g, t: mt.sum(g[0] * g[0], name="s"), ("W",), ("x", "W")),
    "bias_add": Case(  # b is broadcast over the rows: its gradient sums them back
        {"x": (5, 3), "W": (3, 2), "b": (2,)}, ("W", "b"),
        lambda t: mt.sum(mt.tanh(t["x"] @ t["W"] + t["b"]) ** 2, name="J"), ("W", "b"),
        lambda g, t: mt.add(mt.sum(g[0] * g[0]), mt.sum(g[1] * g[1]), name="s"), ("W", "b"),
        ("x", "W", "b")),
}


def _fan_out(h):
    return h * h + mt.exp(h)


def _leaves(case: Case, seed: int, dtype) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.normal(size=shape) * 0.7).astype(dtype) for k, shape in case.shapes.items()}


def _record(case: Case, arrays: dict[str, np.ndarray]):
    """Record J, its gradient as ops and s; returns the outer tape, s and the leaves."""
    t = {k: mt.Tensor(v, name=k) if k in case.tensors else v for k, v in arrays.items()}
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            J = case.loss(t)
        grads = inner.gradient(J, [t[k] for k in case.wrt], create_graph=True)
        s = case.outer(grads, t)
    return outer, s, t


def _eager(case: Case, arrays: dict[str, np.ndarray]):
    outer, s, t = _record(case, arrays)
    return s.value, outer.gradient(s, [t[k] for k in case.sources])


def _closed_form(case: Case, arrays: dict[str, np.ndarray]):
    outer, s, t = _record(case, arrays)
    plain = {k: v for k, v in t.items() if k not in case.tensors}  # arrays have no own name
    return outer.closed_form(s, [t[k] for k in case.sources], names=plain)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_the_closed_form_replays_on_fresh_values_as_recording_again(name, dtype):
    case = CASES[name]
    cf = _closed_form(case, _leaves(case, 0, dtype))
    fresh = _leaves(case, 1, dtype)
    value, grads = cf(**fresh)
    want_value, want_grads = _eager(case, fresh)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=rtol)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    assert np.abs(np.concatenate([g.ravel() for g in grads])).max() > 1e-3  # not zeros


@pytest.mark.parametrize("name", list(CASES))
def test_the_inputs_are_the_real_leaves_and_no_seed(name):
    case = CASES[name]
    arrays = _leaves(case, 0, np.float64)
    cf = _closed_form(case, arrays)
    assert cf.inputs == case.inputs  # no seed of ones, no array a VJP made
    assert "dJ_dJ = np.ones((), dtype=np.float64)" in cf.source  # the seed, written as a constant


@pytest.mark.parametrize("name", list(CASES))
def test_names_tell_the_passes_apart(name):
    case = CASES[name]
    outer, s, t = _record(case, _leaves(case, 0, np.float64))
    cf = outer.closed_form(s, [t[k] for k in case.sources])
    view = TapeNames(outer.nodes, s)
    recorded = [view.of(n.output) for n in view.nodes if n.origin is not None]
    assert recorded and all(n.startswith("dJ_d") for n in recorded), recorded
    assert all(f"    {n} = " in cf.source for n in recorded)  # the same names in the code
    for wrt in case.wrt:
        assert f"    dJ_d{wrt} = " in cf.source  # the recorded pass: Leibniz names
    assert "d_dJ_d" in cf.source  # the second pass: d_ of a first-pass name
    headings = [line.strip() for line in cf.source.splitlines() if line.strip().startswith("#")
                and "pass" in line]
    assert headings[:2] == ["# forward pass", "# first backward pass (of J), recorded"]
    assert headings[-1] == "# second backward pass (of s)"
    assert "d_dJ_d" in cf.equations and "ddJ" not in cf.equations


def test_the_two_layer_net_equals_autograd_on_fresh_values():
    case = CASES["two_layer_hvp"]
    cf = _closed_form(case, _leaves(case, 0, np.float64))
    fresh = _leaves(case, 2, np.float64)

    def J(W1):
        h = 1 / (1 + anp.exp(-(fresh["x"] @ W1 + fresh["b1"])))
        v = h @ fresh["W2"] + fresh["b2"]
        logp = v - anp.log(anp.sum(anp.exp(v), axis=1, keepdims=True))
        return -anp.mean(logp[np.arange(len(LABELS)), LABELS])

    def s(W1):
        return anp.sum(autograd.grad(J)(W1) * fresh["u"])

    value, (hv,) = cf(**fresh)
    np.testing.assert_allclose(value, s(fresh["W1"]), rtol=1e-10)
    np.testing.assert_allclose(hv, autograd.grad(s)(fresh["W1"]), rtol=1e-9, atol=1e-12)


def test_fresh_labels_reach_the_recorded_pass_of_the_fused_loss():
    case = CASES["two_layer_gradient_norm"]
    cf = _closed_form(case, _leaves(case, 0, np.float64))
    fresh, labels = _leaves(case, 3, np.float64), np.array([2, 2, 0, 1, 1])
    value, grads = cf(**fresh, labels=labels)
    want_value, want_grads = _eager(case, {**fresh, "labels": labels})
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32_in_the_generated_code():
    case = CASES["two_layer_gradient_norm"]
    arrays = _leaves(case, 0, np.float32)
    cf = _closed_form(case, arrays)
    value, grads = cf.function(*[arrays[k] if k in arrays else LABELS for k in cf.inputs])
    assert np.asarray(value).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    assert "float64" not in cf.fast_source


def test_sgd_step_runs_on_a_second_order_tape():
    case = CASES["tanh_exp_chain"]
    arrays = _leaves(case, 0, np.float64)
    cf = _closed_form(case, arrays)
    fresh = _leaves(case, 4, np.float64)
    value, (g,) = cf(**fresh)
    w = fresh["w"].copy()
    before = cf.sgd_step(0.1, **{**fresh, "w": w})
    np.testing.assert_allclose(before, value, rtol=1e-12)
    np.testing.assert_allclose(w, fresh["w"] - 0.1 * g, rtol=1e-12)


def test_fan_out_terms_their_partial_sums_and_the_steps_inside_a_vjp_are_named():
    x = mt.Tensor(np.linspace(-1, 1, 4), name="x")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            h = mt.tanh(x, name="h")
            J = mt.sum(h * h * h, name="J")  # h feeds three multiplications
        (g,) = inner.gradient(J, [x], create_graph=True)
        s = mt.sum(g * g, name="s")
    view = TapeNames(outer.nodes, s)
    names = {view.of(n.output) for n in view.nodes}
    assert {"dJ_dh_1", "dJ_dh_2", "dJ_dh_1to2", "dJ_dh_3", "dJ_dh", "dJ_dx"} <= names
    assert view.of(g) == "dJ_dx" and view.grad(g) == "d_dJ_dx"
    assert any(n.startswith("dJ_dx_t") for n in names)  # tanh's VJP: steps before dJ_dx
    cf = outer.closed_form(s, x)
    np.testing.assert_allclose(cf(x=x.value * 0.5)[1], _eager_cube(x.value * 0.5), rtol=1e-10)


def _eager_cube(x):
    t = mt.Tensor(x)
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            J = mt.sum(mt.tanh(t) ** 3)
        s = mt.sum(inner.gradient(J, t, create_graph=True) ** 2)
    return outer.gradient(s, t)


def test_an_own_name_wins_and_a_loss_keeps_its_name():
    x = mt.Tensor(np.array([0.3, -0.2]), name="x")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            L = mt.sum(mt.exp(x), name="L")
        g = inner.gradient(L, x, create_graph=True)
        g.name = "g"
        s = mt.sum(g * g, name="s")
    cf = outer.closed_form(s, x)
    assert "    g = " in cf.source and "d_g" in cf.source
    assert "    dL_dexp = " in cf.source and "dJ_" not in cf.source  # the loss is L, not J


def test_a_seed_tensor_the_user_gives_stays_an_input():
    x = mt.Tensor(np.array([0.5, -1.0, 2.0]), name="x")
    u = mt.Tensor(np.array([1.0, 2.0, -1.0]), name="u")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            y = mt.tanh(x, name="y")
        g = inner.gradient(y, x, seed=u, create_graph=True)
        s = mt.sum(g * g, name="s")
    cf = outer.closed_form(s, [x, u])
    assert cf.inputs == ("x", "u")
    fresh = {"x": np.array([0.1, 0.2, -0.3]), "u": np.array([-1.0, 0.5, 3.0])}
    got = cf(**fresh)[1]
    d = 1 - np.tanh(fresh["x"]) ** 2  # s = Σ (u d)²
    np.testing.assert_allclose(got[1], 2 * fresh["u"] * d ** 2, rtol=1e-12)
    dd = -2 * np.tanh(fresh["x"]) * d  # d' of d = 1 − tanh²
    np.testing.assert_allclose(got[0], 2 * (fresh["u"] * d) * fresh["u"] * dd, rtol=1e-12)


def test_a_first_order_closed_form_keeps_its_two_headings():
    x = mt.Tensor(np.array([0.5, -1.0]), name="x")
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x), name="y")
    source = tape.closed_form(y, x).source
    assert [line.strip() for line in source.splitlines() if line.strip().startswith("# ")] == [
        "# forward pass", "# backward pass"]


@pytest.mark.parametrize("name", list(CASES))
def test_the_equations_write_both_passes_and_define_every_gradient_they_use(name):
    case = CASES[name]
    cf = _closed_form(case, _leaves(case, 0, np.float64))
    first, second = cf.equations.split("\n\n")
    assert first.startswith("First backward pass (of J), recorded:\n")
    assert second.startswith("Second backward pass (of s):\n")
    defined = set()
    for line in first.splitlines()[1:]:
        left, right = line.strip("-` ").split(" = ", 1)
        used = set(re.findall(r"\bdJ_d\w+", right))
        assert used <= defined, (line, used - defined)  # each G is an earlier line's gradient
        defined.add(left)
    assert {f"dJ_d{w}" for w in case.wrt} <= defined


def test_the_two_layer_recorded_pass_reads_as_the_derivation():
    case = CASES["two_layer_gradient_norm"]
    cf = _closed_form(case, _leaves(case, 0, np.float64))
    for line in ("dJ_dh = dJ_dhW2 W2ᵀ", "dJ_dt = dJ_dh ∘ h ∘ (1 − h)",
                 "dJ_dW1 = xᵀ dJ_dxW1"):
        assert f"- `{line}`" in cf.equations


def test_a_third_order_tape_numbers_its_passes_by_the_order_of_derivative():
    x = mt.Tensor(np.array([0.3, -0.5, 1.2]), name="x")

    def record(t):
        with mt.Tape() as t0:
            with mt.Tape() as t1:
                with mt.Tape() as t2:
                    J = mt.sum(mt.tanh(t) ** 3, name="J")
                s = mt.sum(t2.gradient(J, t, create_graph=True) ** 2, name="s")
            u = mt.sum(mt.exp(t1.gradient(s, t, create_graph=True)), name="u")
        return t0, u

    t0, u = record(x)
    cf = t0.closed_form(u, x)
    headings = [line.strip() for line in cf.source.splitlines() if line.strip().startswith("# ")
                and "pass" in line]
    assert headings == ["# forward pass", "# first backward pass (of J), recorded",
                        "# second backward pass (of s), recorded", "# forward pass, continued",
                        "# third backward pass (of u)"]
    assert "ds_ddJ_dx" in cf.source and cf.inputs == ("x",)
    fresh = mt.Tensor(np.array([0.1, 0.2, -0.7]))
    t0, u = record(fresh)
    np.testing.assert_allclose(cf(x=fresh.value)[1], t0.gradient(u, fresh), rtol=1e-10)


def test_the_steps_of_a_term_carry_the_terms_number_and_backward_records_the_same_way():
    x = mt.Tensor(np.array([0.3, -0.5, 1.2]), name="x")

    def record(t):
        with mt.Tape() as outer:
            with mt.Tape() as inner:
                J = mt.sum(mt.tanh(t, name="h") * t, name="J")  # x feeds two ops
            inner.backward(J, create_graph=True)
            s = mt.sum(t.grad * t.grad, name="s")
        return outer, s

    outer, s = record(x)
    cf = outer.closed_form(s, x)
    for line in ("dJ_dx_1 = ", "dJ_dx_2_t1 = h ** 2", "dJ_dx_2 = ", "dJ_dx = dJ_dx_1 + dJ_dx_2"):
        assert f"    {line}" in cf.source
    fresh = mt.Tensor(np.array([-0.4, 0.9, 0.1]))
    outer, s = record(fresh)
    np.testing.assert_allclose(cf(x=fresh.value)[1], outer.gradient(s, fresh), rtol=1e-10)


def test_pows_masks_are_computed_from_the_values_given_not_the_recorded_ones():
    # dA is 0 where p = 0 and dp is 0 where A = 0 ≤ p: masks that move with the
    # zeros. Read off the recorded values, they were wrong at every fresh zero
    # (and, shifting an exponent, at a fresh nonzero too).
    def record(base, exponent):
        a, p = mt.Tensor(base, name="a"), mt.Tensor(exponent, name="p")
        with mt.Tape() as outer:
            with mt.Tape() as inner:
                J = mt.sum(a ** p, name="J")
            da, dp = inner.gradient(J, [a, p], create_graph=True)
            s = mt.sum(da * da + dp * dp, name="s")
        return outer, s, a, p

    outer, s, a, p = record(np.array([0.0, 1.5, 2.0]), np.array([0.0, 2.0, 3.0]))
    cf = outer.closed_form(s, [a, p])
    fresh = np.array([1.2, 0.0, 0.0]), np.array([2.0, 0.0, 1.0])
    again, s2, a2, p2 = record(*fresh)
    expected = again.gradient(s2, [a2, p2])
    got = cf(a=fresh[0], p=fresh[1])[1]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)
    # s = Σ (p a^(p−1))² + (a^p log a)² at a = 1.2, p = 2: its a-derivative by hand
    x = 1.2
    by_hand = 8 * x + 2 * x ** 4 * np.log(x) * (2 * np.log(x) + 1) / x
    np.testing.assert_allclose(got[0][0], by_hand, rtol=1e-12)


@pytest.mark.parametrize("op", [
    lambda a: mt.matmul(a, a),                                             # a vector product
    lambda a: mt.einsum("ii->", mt.reshape(a, (3, 1)) * mt.reshape(a, (1, 3))),  # a diagonal
    lambda a: mt.softmax_cross_entropy(a, 1)],                             # one example's logits
    ids=["vector matmul", "einsum diagonal", "1-d logits"])
def test_a_recorded_pass_through_an_op_without_a_template_compiles(op):
    # Such an op is called in the code; its equation read G's maths, which a recorded
    # pass's equations name instead of keeping, so writing them raised KeyError.
    def penalty(a):
        with mt.Tape() as tape:
            y = op(a)
        return mt.sum(tape.gradient(y, a, create_graph=True) ** 2)

    x = np.array([0.3, -0.8, 1.1])
    value, grad = mt.value_and_grad(penalty)(x)
    compiled = mt.value_and_grad(penalty, compile=True)
    for _ in range(2):
        got_value, got_grad = compiled(x)
        np.testing.assert_allclose(got_value, value, rtol=1e-13)
        np.testing.assert_allclose(got_grad, grad, rtol=1e-13)
    assert "VJP of" in compiled.closed_form(x).equations
