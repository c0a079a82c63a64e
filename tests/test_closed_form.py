"""Tape.closed_form: generated numpy code and equations that equal the tape.

Every op's code template is held to its closure (one place states the maths;
this test holds the other to it), random programs are held to the tape on
traced and fresh values, and the derivation's network to a golden file.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microtape as mt
from microtape.primitive import _PROMOTES_0D
from models import TwoLayerNet
from tests.op_cases import op_cases, primitives, tensor as _t

GOLDEN = Path(__file__).parent / "golden/two_layer_closed_form.md"
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def _close(a, b, dtype) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.abs(b).max(initial=0.0), 1.0)
    assert np.abs(a - b).max(initial=0.0) <= TOL[np.dtype(dtype)] * scale


def _check_against_tape(build, sources, dtype=np.float64, fresh=None):
    """Record ``build()`` on a tape; its closed form must give the tape's value and gradients."""
    with mt.Tape() as tape:
        target = build()
    cf = tape.closed_form(target, sources)
    compile(cf.source, "<test>", "exec")
    value, grads = cf()
    _close(value, target.value, dtype)
    for g, ref in zip(grads, tape.gradient(target, sources)):
        assert g.dtype == ref.dtype
        _close(g, ref, dtype)
    if fresh is not None:  # new values of the same shapes: the tape recorded again
        for s, new in zip(sources, fresh):
            s.value = new
        with mt.Tape() as tape:
            target = build()
        value, grads = cf(**{n: s.value for n, s in zip(cf.inputs, _leaves(cf, sources))})
        _close(value, target.value, dtype)
        for g, ref in zip(grads, tape.gradient(target, sources)):
            _close(g, ref, dtype)
    return cf


def _leaves(cf, sources):
    named = {s.name: s for s in sources}
    return [named[n] for n in cf.inputs if n in named]


# -- every primitive's template against its closure ---------------------------------
# The cases are the one table of op cases (tests/op_cases.py) the per-op tests share.

def _cases(rng, dtype):
    return op_cases(rng, dtype, templated_only=True)


def test_every_primitive_has_a_template_and_a_case():
    cased = {name for name, _ in _cases(np.random.default_rng(0), np.float64)}
    assert cased == set(primitives())
    for name, op in primitives().items():
        assert op.code is not None, name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_template_agrees_with_its_closure(dtype):
    rng = np.random.default_rng(1)
    for name, call in _cases(rng, dtype):
        weights = {}

        def build():
            out, sources = call()
            weights.setdefault("R", rng.normal(size=out.shape).astype(dtype))
            build.sources = sources
            return out if out.ndim == 0 else mt.sum(mt.mul(out, weights["R"]))

        with mt.Tape() as tape:
            target = build()
        sources = build.sources
        cf = tape.closed_form(target, sources)
        assert "no code template" not in cf.source, name
        value, grads = cf()
        _close(value, target.value, dtype)
        for g, ref in zip(grads, tape.gradient(target, sources)):
            assert g.dtype == ref.dtype, name
            _close(g, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [5, 4000], ids=["allocating", "in place"])
def test_sigmoid_template_gives_the_ops_bits_at_extreme_inputs(dtype, n):
    # exp's argument is capped where it would overflow: the generated line
    # must cap it at the same place, or S(−1e4) would differ (and warn).
    a = mt.Tensor(np.linspace(-1e4, 1e4, n).astype(dtype))
    with mt.Tape() as tape:
        target = mt.sum(mt.sigmoid(a))
    cf = tape.closed_form(target, [a])
    with np.errstate(all="raise", under="ignore"):
        value, (grad,) = cf()
    assert value == target.value
    np.testing.assert_array_equal(grad, tape.gradient(target, a))


# Ops whose templates name scratch arrays of their own (Code temps): at 4096 elements
# and more the fast form deletes each once read, so each must be one it defines.
LARGE_WITH_TEMPS = {
    "softmax": [lambda x: mt.softmax(x, axis=0), lambda x: mt.softmax(x)],
    "log_softmax": [lambda x: mt.log_softmax(x, axis=0), lambda x: mt.log_softmax(x)],
    "softmax_cross_entropy": [
        lambda x: mt.softmax_cross_entropy(x, np.arange(len(x)) % 4),
        lambda x: mt.softmax_cross_entropy(x, np.full(x.shape, 0.25), reduction="none")],
}


def test_every_op_with_scratch_names_is_run_large():
    assert set(LARGE_WITH_TEMPS) == {name for name, op in primitives().items()
                                     if op.code is not None and op.code.temps}


@pytest.mark.parametrize("name", sorted(LARGE_WITH_TEMPS))
def test_templates_with_scratch_names_run_large_as_the_tape(name):
    x = mt.Tensor(np.random.default_rng(3).standard_normal((1024, 4)))  # 4096 elements
    weights = np.random.default_rng(4).standard_normal(1024)
    for op in LARGE_WITH_TEMPS[name]:
        def f(x):
            out = op(x)
            return mt.sum(out * (weights[:, None] if out.ndim == 2 else weights[: out.size]))
        with mt.Tape() as tape:
            target = f(x)
        cf = tape.closed_form(target, [x])
        assert "del " in cf.fast_source  # the large form, which frees
        value, (grad,) = cf()
        _close(value, target.value, np.float64)
        _close(grad, tape.gradient(target, x), np.float64)
        compiled_value, compiled_grad = mt.value_and_grad(f, compile=True)(x)
        _close(compiled_value, target.value, np.float64)
        _close(compiled_grad, tape.gradient(target, x), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_sigmoid_of_a_scalar_is_written_without_a_buffer(dtype):
    # −A of a 0-d A is a numpy scalar, which np.minimum(..., out=) cannot write into: the
    # generated code crashed on σ(w·x + b) for one example.
    def f(w):
        return mt.sigmoid(w * 2.0 - 1.0) * 3.0

    for value in (0.25, -1e4, 1e4):
        w = mt.Tensor(np.asarray(value, dtype))
        with mt.Tape() as tape:
            target = f(w)
        with np.errstate(all="raise", under="ignore"):
            got, (grad,) = tape.closed_form(target, [w])()
            compiled = mt.value_and_grad(f, compile=True)(w)
        want = (target.value, tape.gradient(target, w))
        for answer in ((got, grad), compiled):
            assert answer[0].dtype == answer[1].dtype == dtype
            if _PROMOTES_0D and dtype == np.float32:
                # numpy 1.x computes w * 2.0 of a 0-d float32 w in float64: the closed form
                # casts once at the end, eager after each op, so a subnormal S can differ
                np.testing.assert_allclose(answer, want, rtol=1e-5, atol=0)
            else:
                assert answer[0] == want[0] and answer[1] == want[1]


def test_inputs_passed_by_name_or_by_position_write_the_same_code():
    # The templates take an op's inputs by position (getitem's index, the loss's labels)
    # and its parameters by name; broadcast_to's shape, astype's dtype and scatter_add's
    # shape passed by position, or getitem's index by name, crashed the writer.
    rng = np.random.default_rng(3)
    a, v = mt.Tensor(rng.normal(size=3)), mt.Tensor(rng.normal(size=(2, 3)))
    index, labels = np.array([0, 2, 2]), np.array([2, 0])
    pairs = [(lambda: mt.broadcast_to(a, (2, 3)), lambda: mt.broadcast_to(a, shape=(2, 3))),
             (lambda: mt.astype(a, "float32"), lambda: mt.astype(a, dtype="float32")),
             (lambda: mt.scatter_add(a, index, (4,)), lambda: mt.scatter_add(a, index=index, shape=(4,))),
             (lambda: mt.getitem(a, index), lambda: mt.getitem(a, index=index)),
             (lambda: mt.softmax_cross_entropy(v, labels), lambda: mt.softmax_cross_entropy(v, labels=labels))]
    for by_position, by_name in pairs:
        sources, written = [a, v], []
        for call in (by_position, by_name):
            with mt.Tape() as tape:
                target = mt.sum(call() * 2.0)
            cf = tape.closed_form(target, sources)
            value, grads = cf()
            assert value == target.value
            for g, ref in zip(grads, tape.gradient(target, sources)):
                np.testing.assert_array_equal(g, ref)
            written.append(cf.source)
        assert written[0] == written[1]
    # compile=True binds the labels and the index of each call, passed by name
    def f(v, labels, index):
        return mt.softmax_cross_entropy(v, labels=labels) + mt.sum(mt.getitem(v[0], index=index))

    compiled, eager = mt.value_and_grad(f, compile=True), mt.value_and_grad(f)
    for labels, index in ((np.array([2, 0]), np.array([1])), (np.array([1, 1]), np.array([0, 2]))):
        got, want = compiled(v, labels, index), eager(v, labels, index)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])


def test_a_one_element_constant_is_a_number_in_the_maths():
    # The VJP of einsum("ij->") spreads G with vectors of ones: of one element along a
    # length-1 axis, which float() refused when the equations wrote it as a number.
    x = mt.Tensor(np.arange(3.0).reshape(1, 3), name="x")
    with mt.Tape() as tape:
        target = mt.einsum("ij->", x) * 2.0
    cf = tape.closed_form(target, [x])
    np.testing.assert_array_equal(cf()[1][0], np.full((1, 3), 2.0))
    assert cf.equations


# -- the derivation's network --------------------------------------------------------

def _two_layer(reduction="mean", dtype=np.float64):
    net = TwoLayerNet(10, 5, 3, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 10)).astype(dtype)
    labels = rng.integers(0, 3, 20)
    with mt.Tape() as tape:
        J = net.loss(x, labels, reduction=reduction)
    return net, x, labels, tape, J


def test_the_derivation_network_matches_the_golden_file():
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    text = f"{cf.source}\n{cf.equations}"
    assert text == GOLDEN.read_text(encoding="utf-8")
    assert cf.inputs == ("x", "W1", "b1", "W2", "b2", "labels")
    # The derivation's batched formulas, one a line, with the mean's 1/N.
    assert cf.equations.splitlines() == [
        "- `delta2 = (ŷ − y) / N`", "- `db2 = column sums of delta2`", "- `dW2 = hᵀ delta2`",
        "- `delta1 = (delta2 W2ᵀ) ∘ h ∘ (1 − h)`", "- `db1 = column sums of delta1`",
        "- `dW1 = xᵀ delta1`"]
    # No dJ/dx: x is data, not a source.
    assert "d_x" not in cf.source and "W1.T" not in cf.source
    assert "d_b1 = d_t.sum(axis=0)" in cf.source                       # textbook numpy
    assert re.search(r"d_b1 = np.dot\(_ones_[0-9]+, d_t\)", cf.fast_source)  # what runs: ones · G by BLAS


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_two_layer_equals_the_tape_on_new_values(reduction, dtype):
    net, x, labels, tape, J = _two_layer(reduction, dtype)
    cf = tape.closed_form(J, net.params)
    rng = np.random.default_rng(5)
    x2 = rng.normal(size=x.shape).astype(dtype)
    labels2 = rng.integers(0, 3, len(labels))
    value, grads = cf(x=x2, labels=labels2)
    with mt.Tape() as tape2:
        J2 = net.loss(x2, labels2, reduction=reduction)
    ref = tape2.gradient(J2, net.params)
    _close(value, J2.value, dtype)
    assert set(grads) == set(ref)
    for k in ref:
        _close(grads[k], ref[k], dtype)


def test_equation_for_names_the_step_each_node_applies():
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    steps = [cf.equation_for(node) for node in tape.nodes]
    assert steps[0] == "dW1 = xᵀ dxW1"                       # x W1: no dJ/dx asked
    assert steps[2] == "delta1 = dh ∘ h ∘ (1 − h)"            # sigmoid
    assert steps[-1] == "delta2 = (ŷ − y) / N"               # the loss
    with mt.Tape() as other:
        mt.sigmoid(net.params["W1"])
    assert cf.equation_for(other.nodes[0]) is None


def test_a_step_that_makes_one_term_of_a_gradient_names_the_term_not_the_sum():
    # h is read three times: each step's line said dh = (one term), three times over
    r = mt.Tensor(np.array([1.0, 2.0]), name="r")
    x = mt.Tensor(np.array([0.5, -1.0]), name="x")
    with mt.Tape() as tape:
        h = mt.tanh(x, name="h")
        J = mt.sum(h * r + h * h)
    cf = tape.closed_form(J, [x, r])
    steps = [cf.equation_for(node) for node in tape.nodes]
    assert steps[1] == "dh_3 = dmul ∘ r;  dr = dmul ∘ h"
    assert steps[2] == "dh_1 = dmul2 ∘ h;  dh_2 = dmul2 ∘ h"
    assert {"d_h_1", "d_h_2", "d_h_3"} <= set(re.findall(r"\bd_h_\d\b", cf.fast_source))


def test_a_gradients_symbol_is_never_a_tensors_name():
    # A tensor named dW1 beside W1: the equations wrote dW1 for both
    W1 = mt.Tensor(np.ones((2, 2)), name="W1")
    dW1 = mt.Tensor(np.full((2, 2), 2.0), name="dW1")
    x = mt.Tensor(np.ones(2), name="x")
    with mt.Tape() as tape:
        J = mt.sum(mt.tanh(x @ W1) * dW1)
    lines = tape.closed_form(J, [W1, dW1]).equations.splitlines()
    defined = [line[3:].split(" = ")[0] for line in lines]
    assert "d_W1" in defined and "ddW1" in defined and "dW1" not in defined


def test_sgd_step_updates_every_source_by_minus_lr_times_its_gradient():
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    before = {k: p.value.copy() for k, p in net.params.items()}
    value, grads = cf()
    assert cf.sgd_step(0.1) == pytest.approx(float(value))
    for k, p in net.params.items():
        np.testing.assert_allclose(p.value, before[k] - 0.1 * grads[k], rtol=1e-12, atol=1e-15)
    assert "W1 += d_W1" in cf.step_source


def test_sgd_step_leaves_the_recording_tape_refusing_and_checks_lr():
    # The step updates the Tensors in place; the tape that recorded their old values
    # answered afterwards, with gradients mixing old values and new, until it refused
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    tape.gradient(J, net.params["W1"])
    cf.sgd_step(0.1)
    with pytest.raises(RuntimeError, match="changed in place"):
        tape.gradient(J, net.params["W1"])
    before = {k: p.value.copy() for k, p in net.params.items()}
    for bad, error in ((-1.0, ValueError), (float("nan"), ValueError), (0.0, ValueError),
                       ("0.1", TypeError)):
        with pytest.raises(error, match="sgd_step: lr must be"):
            cf.sgd_step(bad)
    for k, p in net.params.items():
        np.testing.assert_array_equal(p.value, before[k])
    arrays = {k: p.value.copy() for k, p in net.params.items()}
    with mt.Tape() as kept:  # arrays of one's own: the Tensors are not the ones stepped
        J2 = net.loss(x, labels)
    cf.sgd_step(0.1, **arrays)
    kept.gradient(J2, net.params["W1"])


# -- guards --------------------------------------------------------------------------

def test_a_wrong_shape_or_dtype_names_the_argument_and_both_shapes():
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    with pytest.raises(mt.ShapeError, match=r"'x' has shape \(3, 10\).*traced with shape \(20, 10\)"):
        cf(x=np.zeros((3, 10)))
    with pytest.raises(mt.ShapeError, match=r"'W1'.*float32.*float64"):
        cf(W1=np.zeros((10, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="unknown argument"):
        cf(y=x)


def test_left_out_arguments_read_the_tensors_current_values():
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    net.params["W1"].value[...] = 0.5
    with mt.Tape() as tape2:
        J2 = net.loss(x, labels)
    value, grads = cf()
    _close(value, J2.value, np.float64)
    _close(grads["W1"], tape2.gradient(J2, net.params["W1"]), np.float64)


def test_a_user_primitive_without_a_template_is_called_and_says_so():
    @mt.primitive("dA = G ∘ 3 A²")
    def cube(a):
        """C = A³."""
        return a ** 3, (lambda g: g * 3 * a ** 2,)

    rng = np.random.default_rng(2)
    w = _t(rng, 4, 3, name="w")
    cf = _check_against_tape(lambda: mt.sum(mt.tanh(cube(w))), [w],
                             fresh=[rng.normal(size=(4, 3))])
    assert "cube has no code template: call its forward and its VJPs" in cf.source
    assert "- `dw = VJP of cube(" in cf.equations  # named, though not written out

    @mt.primitive("dA = G ∘ B  (B gets none)")
    def scale_by(a, b):
        """C = A ∘ B, with B a constant however it is passed."""
        return a * b, (lambda g: g * b, None)

    s = _t(rng, 4, 3, name="s")
    cf = _check_against_tape(lambda: mt.sum(scale_by(w, mt.exp(s))), [w, s],
                             fresh=[rng.normal(size=(4, 3)), rng.normal(size=(4, 3))])
    assert "np.zeros((4, 3), dtype=np.float64)" in cf.source  # s reached only through b


def test_fan_out_is_an_explicit_sum_and_unused_sources_get_zeros():
    rng = np.random.default_rng(3)
    a, b, unused = _t(rng, 3, name="a"), _t(rng, 3, name="b"), _t(rng, 2, name="u")
    cf = _check_against_tape(lambda: mt.sum(mt.mul(mt.exp(a), a) + b * b), [a, b, unused],
                             fresh=[rng.normal(size=3), rng.normal(size=3), rng.normal(size=2)])
    assert "d_a = d_a_1 + d_a_2" in cf.source and "d_b = d_b_1 + d_b_2" in cf.source
    assert "np.zeros((2,), dtype=np.float64)" in cf.source
    assert "u" not in cf.inputs


def test_returned_gradients_never_share_memory():
    rng = np.random.default_rng(4)
    a, b = _t(rng, 3, name="a"), _t(rng, 3, name="b")
    with mt.Tape() as tape:
        s = mt.sum(a + b)
    _, (da, db) = tape.closed_form(s, [a, b])()
    da += 1
    assert db.flags.writeable and np.all(db == 1)


# -- random programs -------------------------------------------------------------------

UNARY = ["exp", "tanh", "sigmoid", "relu", "neg", "square", "softmax", "log_softmax", "T", "sum0",
         "mean1", "reshape", "pick", "log"]
BINARY = ["add", "sub", "mul", "div", "matmul", "einsum", "add_row", "mul_col"]


@st.composite
def programs(draw):
    steps = draw(st.lists(st.tuples(st.sampled_from(UNARY + BINARY), st.integers(0, 99)),
                          min_size=1, max_size=7))
    end = draw(st.sampled_from(["sum", "loss_index", "loss_onehot", "loss_soft"]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    asked = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    return steps, end, dtype, asked


def _run(program, values):
    """A program on three 3×3 leaves; each step combines what was computed so far."""
    steps, end, dtype, _ = program
    a, b, c = values
    pool = [a, b, c]
    for op, k in steps:
        x, y = pool[k % len(pool)], pool[(k // 7) % len(pool)]
        z = {
            "exp": lambda: mt.exp(mt.tanh(x)), "tanh": lambda: mt.tanh(x),
            "sigmoid": lambda: mt.sigmoid(x), "relu": lambda: mt.relu(x), "neg": lambda: -x,
            "square": lambda: x ** 2, "softmax": lambda: mt.softmax(x, axis=k % 2),
            "log_softmax": lambda: mt.log_softmax(x), "T": lambda: x.T,
            "sum0": lambda: mt.sum(x, axis=0, keepdims=True) + x,
            "mean1": lambda: mt.mean(x, axis=1) + x, "reshape": lambda: x.reshape(9).reshape(3, 3),
            "pick": lambda: x[np.array([0, 2, 2])] * 0.5,  # a repeated fancy index
            "log": lambda: mt.log(mt.exp(x) + 1.0),
            "add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
            "div": lambda: x / (mt.exp(y) + 1.0), "matmul": lambda: x @ y,
            "einsum": lambda: mt.einsum("ij,kj->ik", x, y),
            "add_row": lambda: x + y[0], "mul_col": lambda: x * y[:, 1:2],
        }[op]()
        pool.append(z)
    last = pool[-1]
    if end == "sum":
        return mt.sum(last * last)
    if end == "loss_index":
        return mt.softmax_cross_entropy(last, np.array([2, 0, 2]))
    if end == "loss_onehot":
        return mt.softmax_cross_entropy(last, np.eye(3, dtype=dtype)[[1, 1, 0]], reduction="sum")
    return mt.softmax_cross_entropy(last, np.full((3, 3), 1 / 3, dtype=dtype))


def _recorded(program, seed):
    """A random program run on a tape over leaves a, b, c: what the tests below compare."""
    _, _, dtype, asked = program
    rng = np.random.default_rng(seed)
    leaves = [mt.Tensor(rng.uniform(-1, 1, size=(3, 3)).astype(dtype), name=n) for n in "abc"]
    sources = [s for s, wanted in zip(leaves, asked) if wanted] or leaves[:1]
    with mt.Tape() as tape:
        target = _run(program, leaves)
    return rng, dtype, leaves, sources, tape, target


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 2**32 - 1))
def test_random_programs_equal_the_tape_on_traced_and_fresh_values(program, seed):
    rng, dtype, leaves, sources, tape, target = _recorded(program, seed)
    cf = tape.closed_form(target, sources)
    value, grads = cf()
    _close(value, target.value, dtype)
    for g, ref in zip(grads, tape.gradient(target, sources)):
        assert g.dtype == ref.dtype
        _close(g, ref, dtype)
    # Fresh values of the same shapes.
    fresh = {n: rng.uniform(-1, 1, size=(3, 3)).astype(dtype) for n in cf.inputs if n in "abc"}
    for s in leaves:
        if s.name in fresh:
            s.value = fresh[s.name]
    with mt.Tape() as tape:
        target = _run(program, leaves)
    value, grads = cf(**fresh)
    _close(value, target.value, dtype)
    for g, ref in zip(grads, tape.gradient(target, sources)):
        _close(g, ref, dtype)
    # No work for leaves not asked for: no gradient of them is written.
    for s in leaves:
        if all(s is not t for t in sources):
            assert f"d_{s.name} =" not in cf.source


# -- value_and_grad(..., compile=True) ---------------------------------------------------

def _net_loss(W, b, x, labels):
    return mt.softmax_cross_entropy(mt.tanh(x @ W + b), labels)


def test_compiled_value_and_grad_equals_the_tape_and_caches_by_signature():
    rng = np.random.default_rng(6)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=4)
    compiled = mt.value_and_grad(_net_loss, (0, 1), compile=True)
    plain = mt.value_and_grad(_net_loss, (0, 1))
    for n in (5, 5, 5, 7, 7):
        x, labels = rng.normal(size=(n, 3)), rng.integers(0, 4, n)
        (v1, (dW1, db1)), (v2, (dW2, db2)) = compiled(W, b, x, labels), plain(W, b, x, labels)
        _close(v1, v2, np.float64)
        _close(dW1, dW2, np.float64)
        _close(db1, db2, np.float64)
    assert compiled.cache_info() == (3, 2, 64, 2)  # hits, misses, maxsize, currsize
    # A float32 batch is a new signature too; grad shares the machinery.
    g = mt.grad(_net_loss, 0, compile=True)
    dW = g(W.astype(np.float32), b.astype(np.float32), x.astype(np.float32), labels)
    assert dW.dtype == np.float32 and g.cache_info().misses == 1
    g(W.astype(np.float32), b.astype(np.float32), x.astype(np.float32), labels)
    assert g.cache_info().hits == 1


def test_other_argument_values_are_part_of_the_signature():
    def f(w, power):
        return mt.sum(w ** power)

    g = mt.grad(f, compile=True)
    w = np.array([1.0, 2.0])
    np.testing.assert_allclose(g(w, 2), 2 * w)
    np.testing.assert_allclose(g(w, 3), 3 * w ** 2)
    np.testing.assert_allclose(g(w, 2), 2 * w)
    assert g.cache_info().misses == 2 and g.cache_info().hits == 1


@pytest.mark.parametrize("branch", [
    lambda s: s > 0, lambda s: 0.5 <= s, lambda s: bool(s), lambda s: float(s) > 0,
    lambda s: s.item() > 0])
def test_branching_on_a_traced_value_raises_trace_error(branch):
    def f(w):
        s = mt.sum(w)
        return s if branch(s) else -s

    with pytest.raises(mt.TraceError, match="compile=False"):
        mt.grad(f, compile=True)(np.ones(3))
    np.testing.assert_allclose(mt.grad(lambda w: mt.sum(w * 2))(np.ones(3)), 2.0)
    assert bool(mt.Tensor(1.0)) and float(mt.Tensor(2.0)) == 2.0  # outside a trace: as before


# -- where it shows: training with --compile, the demo's print --------------------------

def test_fit_with_compile_trains_to_the_same_parameters():
    from models import data
    from models.fit import fit

    x, y = data.spirals(n_per_class=30, n_classes=3, seed=0)
    nets = []
    for compile_ in (False, True):
        net = TwoLayerNet(2, 8, 3, seed=0)
        fit(net, mt.optim.SGD(net.params, lr=0.5, momentum=0.9), x, y, epochs=3, batch_size=32,
            seed=0, compile=compile_)  # 90 examples: batches of 32, 32 and 26, two signatures
        nets.append(net)
    for name in nets[0].params:
        np.testing.assert_allclose(nets[1].params[name].value, nets[0].params[name].value,
                                   rtol=1e-9, atol=1e-12)


def test_the_training_command_prints_the_closed_form_and_takes_compile(tmp_path, capsys):
    from models.train import main

    assert main(["--dataset", "spirals", "--epochs", "2", "--hidden", "8", "--compile",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "    delta1 = (delta2 W2ᵀ) ∘ h ∘ (1 − h)\n" in out
    assert "    def value_and_gradients(x, W1, b1, W2, b2, labels):\n" in out


def test_large_arrays_are_worked_in_place_and_freed_without_touching_the_arguments():
    net = TwoLayerNet(30, 80, 4, seed=1)          # t and h: 64 × 80 = 5120 elements, "large"
    rng = np.random.default_rng(7)
    x, labels = rng.normal(size=(64, 30)), rng.integers(0, 4, 64)
    with mt.Tape() as tape:
        J = net.loss(x, labels)
    cf = tape.closed_form(J, net.params)
    # The fast form does the in-place work and the freeing; the textbook form reads plainly.
    assert "t = xW1  # in place" in cf.fast_source and "t += b1" in cf.fast_source
    assert "del " not in cf.source and "in place" not in cf.source
    deleted = {n.strip() for line in re.findall(r"^ +del ([\w, ]+)", cf.fast_source, re.M)
               for n in line.split(",")}
    assert {"xW1", "t", "h"} <= deleted and not deleted & set(cf.inputs)  # arguments stay
    before = {k: p.value.copy() for k, p in net.params.items()}
    x_before = x.copy()
    for _ in range(2):  # twice: nothing the code reads was changed by the first call
        value, grads = cf()
        _close(value, J.value, np.float64)
        for k, ref in tape.gradient(J, net.params).items():
            _close(grads[k], ref, np.float64)
    assert np.array_equal(x, x_before)
    assert all(np.array_equal(p.value, before[k]) for k, p in net.params.items())


def test_the_readme_shows_the_code_the_tape_writes():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (example,) = [b for b in blocks if "tape.closed_form(J, net.params)" in b]
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(example, "README.md", "exec"), scope)
    source = scope["cf"].source
    assert source in blocks                         # the generated code, as the README shows it
    assert out.getvalue() == f"{source}\n{scope['cf'].equations}\n"
    assert GOLDEN.read_text(encoding="utf-8") == f"{source}\n{scope['cf'].equations}"
    for line in scope["cf"].equations.splitlines():  # each equation in the side-by-side table
        assert f"| {line[2:]} |" in readme
    compiled = [b for b in blocks if "compile=True" in b]
    scope = {"mt": mt}
    exec(compile(compiled[0], "README.md", "exec"), scope)
    rng = np.random.default_rng(0)
    value, (dW, db) = scope["loss_and_grads"](rng.normal(size=(3, 4)), np.zeros(4),
                                              rng.normal(size=(5, 3)), np.array([0, 1, 2, 3, 0]))
    assert dW.shape == (3, 4) and db.shape == (4,)


def test_a_long_chain_is_written_without_recursion_and_a_spent_tape_says_why():
    x = mt.Tensor(np.linspace(-1, 1, 3), name="x")
    cf = _check_against_tape(lambda: mt.sum(_chain(x, 1500)), [x], fresh=[np.zeros(3)])
    assert cf.source.count("\n") > 3000
    with mt.Tape(persistent=False) as tape:
        y = mt.sum(x * x)
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="persistent=False"):
        tape.closed_form(y, x)


def _chain(x, n):
    for _ in range(n):
        x = mt.tanh(x) * 0.9
    return x


def test_gradients_of_an_intermediate_come_back_but_sgd_step_refuses_to_update_it():
    rng = np.random.default_rng(8)
    w = _t(rng, 3, name="w")
    with mt.Tape() as tape:
        h = mt.tanh(w, name="h")
        y = mt.sum(h * h)
    cf = tape.closed_form(y, {"h": h, "w": w})
    _, grads = cf()
    ref = tape.gradient(y, {"h": h, "w": w})
    _close(grads["h"], ref["h"], np.float64)
    _close(grads["w"], ref["w"], np.float64)
    with pytest.raises(ValueError, match="nothing to update"):
        cf.sgd_step(0.1)


# -- the textbook source, tracebacks and the defects of issue 15 -------------------------

def _textbook(cf, tmp_path):
    """``cf.source`` run from a real file that imports only numpy."""
    path = tmp_path / "textbook.py"
    path.write_text(f"import numpy as np\n\n\n{cf.source}", encoding="utf-8")
    scope: dict = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
    return scope["value_and_gradients"]


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(programs(), st.integers(0, 2**32 - 1))
def test_the_textbook_source_runs_alone_and_equals_the_tape(tmp_path, program, seed):
    rng, dtype, leaves, sources, tape, target = _recorded(program, seed)
    cf = tape.closed_form(target, sources)
    textbook = _textbook(cf, tmp_path)
    for fresh in (False, True):
        if fresh:
            for s in leaves:
                s.value = rng.uniform(-1, 1, size=(3, 3)).astype(dtype)
            with mt.Tape() as tape:
                target = _run(program, leaves)
        arrays = [_current_value(cf.leaves[n]) for n in cf.inputs]
        value, grads = textbook(*arrays)
        _close(value, target.value, dtype)
        for g, ref in zip(grads, tape.gradient(target, sources)):
            _close(g, ref, dtype)


def _current_value(leaf):
    return leaf.value if isinstance(leaf, mt.Tensor) else leaf


def test_a_traceback_inside_generated_code_shows_its_line():
    import inspect
    import traceback

    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    assert inspect.getsource(cf.function) == cf.fast_source
    bad = np.array(labels)
    bad[0] = 7
    with pytest.raises(mt.InputError, match="class index 7 is out of range") as info:
        cf(labels=bad)  # validated in the generated code, as the op does
    shown = "".join(traceback.format_tb(info.tb))
    assert "<microtape closed form" in shown and "_check_labels(labels, (20, 3))" in shown


def test_the_loss_keeps_the_ops_precision_for_a_confident_row():
    w = mt.Tensor(np.array([[0.0, -40.0]]), name="w")
    for build in (lambda: mt.softmax_cross_entropy(w, np.array([0])),
                  lambda: -mt.sum(mt.log_softmax(w)[:, 0])):
        with mt.Tape() as tape:
            y = build()
        value, _ = tape.closed_form(y, w)()
        assert value == y.value and 4e-18 < value < 5e-18


def test_unused_sources_are_accepted_and_get_zeros():
    w, u = mt.Tensor(np.ones(3), name="w"), mt.Tensor(np.ones(2), name="u")
    with mt.Tape() as tape:
        y = mt.sum(w * w)
    cf = tape.closed_form(y, {"w": w, "u": u})
    value, grads = cf(w=np.full(3, 2.0), u=np.zeros(2))
    assert value == 12.0 and np.array_equal(grads["u"], np.zeros(2))


def test_inputs_named_self_and_lr_can_be_passed():
    s, lr = mt.Tensor(np.ones(2), name="self"), mt.Tensor(np.ones(2), name="lr")
    with mt.Tape() as tape:
        y = mt.sum(s * lr)
    cf = tape.closed_form(y, [s, lr])
    assert set(cf.inputs) == {"self_", "lr_"}
    value, _ = cf(self_=np.full(2, 3.0), lr_=np.ones(2))
    assert value == 6.0
    cf.sgd_step(0.5, lr_=lr.value)


def test_a_left_out_leaf_with_a_new_shape_is_refused():
    x, W = mt.Tensor(np.ones(2), name="x"), mt.Tensor(np.ones(3), name="W")
    with mt.Tape() as tape:
        y = mt.sum(x * mt.mean(W))
    cf = tape.closed_form(y, x)
    W.value = np.ones(6)
    with pytest.raises(mt.ShapeError, match=r"left-out argument.*'W' has shape \(6,\)"):
        cf()


def test_index_arrays_are_arguments_and_mixed_tuple_indices_work():
    w = mt.Tensor(np.arange(12.0).reshape(3, 4), name="w")
    idx = np.array([0, 2])
    with mt.Tape() as tape:
        y = mt.sum(w[idx, 1] * w[idx, 1])
    cf = tape.closed_form(y, w)
    assert "index" in cf.inputs
    value, grad = cf(index=np.array([1, 1]))
    assert value == 2 * 5.0 ** 2 and grad[1, 1] == 4 * 5.0


@pytest.mark.parametrize("index", [lambda i: (i, slice(1, None)), lambda i: (Ellipsis, i),
                                   lambda i: (slice(0, 2), i), lambda i: (i, None, slice(None, None, 2))])
def test_tuple_indices_mixing_arrays_with_slices_equal_the_tape(index):
    # The fancy VJP scatters with np.add.at, where a slice must be spelled inside [].
    w = mt.Tensor(np.arange(12.0).reshape(4, 3), name="w")
    with mt.Tape() as tape:
        y = mt.sum(w[index(np.array([0, 2]))] ** 2)
    cf = tape.closed_form(y, w)
    for fresh in (np.array([0, 2]), np.array([1, 1])):
        with mt.Tape() as again:
            ref = mt.sum(w[index(fresh)] ** 2)
        value, grad = cf(index=fresh)
        assert value == ref.value
        np.testing.assert_array_equal(grad, again.gradient(ref, w))


def test_literals_are_valid_python():
    w = mt.Tensor(np.ones(3), name="w")
    with mt.Tape() as tape:
        y = mt.sum(mt.exp(w - float("inf")) + w * float("nan") * 0.0 + mt.sum(w, axis=np.array(0)))
    cf = tape.closed_form(y, w)
    value, grad = cf()
    assert np.isnan(value) and np.isnan(y.value)


def test_a_target_that_is_a_source_and_a_non_scalar_target():
    w = mt.Tensor(np.array(2.0), name="w")
    with mt.Tape() as tape:
        v = mt.tanh(mt.Tensor(np.ones(3), name="a"))
    cf = tape.closed_form(w, w)
    value, grad = cf()
    assert value == 2.0 and isinstance(grad, np.ndarray) and grad == 1.0
    with pytest.raises(ValueError, match="not a scalar"):
        tape.closed_form(v, v)


def test_sgd_step_returns_the_value_before_the_update():
    w = mt.Tensor(np.array([3.0]), name="w")
    with mt.Tape() as tape:
        y = mt.reshape(w, ())
    cf = tape.closed_form(y, w)
    assert cf.sgd_step(0.5) == 3.0 and w.value[0] == 2.5


def test_code_from_names_never_runs():
    @mt.primitive("dA = G")
    def ident(a, **kw):
        return a, (lambda g: g,)
    ident.name = "x\nraise SystemExit"
    w = mt.Tensor(np.ones(2), name="w")
    with mt.Tape() as tape:
        h = ident(w, name="h\nimport os")
        y = mt.sum(h * h)
    cf = tape.closed_form(y, w)
    cf()
    assert "raise SystemExit" not in cf.fast_source.replace("x_raise_SystemExit", "")
    assert all(line.startswith("- `") for line in cf.equations.splitlines())


@pytest.mark.parametrize("labels", [[0, 2], (2, 2), [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]],
                         ids=["list", "tuple", "rows as lists"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_labels_given_as_a_list_compile_as_the_op_takes_them(tmp_path, labels, reduction):
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])

    def f(w, y):
        return mt.sum(mt.softmax_cross_entropy(w, y, reduction=reduction) * np.array([1.0, 3.0]))

    value, grad = mt.value_and_grad(f)(x, labels)
    vg = mt.value_and_grad(f, compile=True)
    for _ in range(2):  # the trace, then the cached code
        compiled_value, compiled_grad = vg(x, labels)
        _close(compiled_value, value, np.float64)
        _close(compiled_grad, grad, np.float64)
    with mt.Tape() as tape:
        w = mt.Tensor(x, name="w")
        target = f(w, labels)
    cf = tape.closed_form(target, [w])
    _close(cf()[1][0], grad, np.float64)
    arrays = [_current_value(cf.leaves[n]) for n in cf.inputs]
    _close(_textbook(cf, tmp_path)(*arrays)[1][0], grad, np.float64)  # the textbook form, alone


@pytest.mark.parametrize("bad, phrase", [(-1, "class index -1 is out of range"),
                                         (3, "class index 3 is out of range")])
def test_the_fused_step_refuses_labels_out_of_range_with_the_ops_error(bad, phrase):
    net, x, labels, tape, J = _two_layer()
    cf = tape.closed_form(J, net.params)
    wrong = np.array(labels)
    wrong[5] = bad
    arrays = {"x": x, "labels": wrong, **{n: p.value.copy() for n, p in net.params.items()}}
    before = {n: a.copy() for n, a in arrays.items()}
    for run in (lambda: cf.step_function(*[arrays[n] for n in cf.inputs], 0.1),
                lambda: cf.function(*[arrays[n] for n in cf.inputs]),
                lambda: cf(**arrays)):
        with pytest.raises(mt.InputError, match=phrase):
            run()
    assert all(np.array_equal(arrays[n], before[n]) for n in arrays)  # nothing updated


def test_soft_label_rows_that_do_not_sum_to_one_are_refused_in_generated_code():
    w = mt.Tensor(np.zeros((2, 3)), name="w")
    rows = np.full((2, 3), 1 / 3)
    with mt.Tape() as tape:
        y = mt.softmax_cross_entropy(w, rows)
    cf = tape.closed_form(y, w)
    assert cf.inputs == ("w", "labels")
    with pytest.raises(mt.InputError, match="must sum to 1"):
        cf(labels=rows * 2)


# -- leftovers of the compiler: each once wrong in generated code -----------------------

def _function_and_call(y, w):
    with mt.Tape() as tape:
        out = y(w)
    cf = tape.closed_form(out, w)
    return out, tape.gradient(out, w), cf


def test_the_mean_over_an_empty_axis_is_refused_as_the_op_refuses_it():
    w = mt.Tensor(np.ones((3, 0)), name="w")
    f = lambda w: mt.sum(mt.mean(w, axis=1) * 2.0)  # noqa: E731
    with pytest.raises(mt.InputError, match="nothing to average"):
        _function_and_call(f, w)
    with pytest.raises(mt.InputError, match="nothing to average"):
        mt.value_and_grad(f, compile=True)(w)
    out, grad, cf = _function_and_call(lambda w: mt.sum(mt.mean(w, axis=0) * 2.0), w)
    value, got = cf()  # no means at all: an empty result, and a gradient of zeros
    assert out.value == value == 0.0 and got.shape == grad.shape == (3, 0)


def test_an_int_past_uint64_as_a_constant_is_a_float_in_the_code():
    w = mt.Tensor(np.ones(3), name="w")
    out, grad, cf = _function_and_call(lambda w: mt.sum(w * 2**64), w)
    value, got = cf.function(w.value)
    assert value == out.value and np.asarray(value).dtype == np.float64
    assert got[0].dtype == np.float64 and np.array_equal(got[0], grad)
    assert "18446744073709551616" not in cf.fast_source  # an object array on numpy 1.24


def test_a_fraction_operand_gives_a_float_result_not_an_object_array():
    w = mt.Tensor(np.arange(3.0), name="w")
    out, grad, cf = _function_and_call(lambda w: mt.sum(w * Fraction(1, 3)), w)
    value, got = cf.function(w.value)
    assert np.asarray(value).dtype == np.float64 and got[0].dtype == np.float64
    np.testing.assert_allclose(got[0], grad, rtol=1e-15)


def test_a_number_to_a_float32_power_keeps_float32_gradients_in_the_function():
    w = mt.Tensor(np.array([0.5, 1.0, 2.0], dtype=np.float32), name="w")
    out, grad, cf = _function_and_call(lambda w: mt.sum(2.0 ** w), w)
    value, got = cf.function(w.value)
    assert grad.dtype == np.float32 and got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], grad, rtol=1e-6)
    assert cf()[1].dtype == np.float32


@pytest.mark.parametrize("power", [True, False])
def test_a_bool_power_of_float32_keeps_float32_gradients_as_eager_does(power):
    # numpy reads True as the Python int 1; the code wrote np.where(True == 0, ...), an
    # int64 array, which made the compiled gradient float64
    def loss(w):
        return mt.sum(mt.pow(w, power) * w)
    compiled = mt.value_and_grad(loss, compile=True)
    compiled(np.ones(3, dtype=np.float32))
    new_w = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    value, grad = compiled(new_w)
    want_value, want_grad = mt.value_and_grad(loss)(new_w)
    assert want_grad.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    w = mt.Tensor(new_w, name="w")
    out, grad, cf = _function_and_call(loss, w)
    assert cf.function(new_w)[1][0].dtype == np.float32


def test_a_node_on_plain_arrays_alone_is_recomputed_from_its_argument():
    from microtape.tape import Node

    rng = np.random.default_rng(0)
    x, W = rng.normal(size=(4, 3)), mt.Tensor(rng.normal(size=(3, 2)), name="W")
    with mt.Tape() as tape:
        value, vjps = mt.tanh.forward(x)  # recorded as a tape that records data-only ops would
        t = mt.Tensor(value)
        tape._record(Node(mt.tanh, (x,), t, vjps, {}))
        y = mt.sum(t @ W)
    cf = tape.closed_form(y, W)
    assert cf.inputs == ("x", "W")
    fresh = rng.normal(size=(4, 3))
    value, grad = cf(x=fresh)
    np.testing.assert_allclose(value, np.sum(np.tanh(fresh) @ W.value), rtol=1e-14)
    np.testing.assert_allclose(grad, np.tanh(fresh).T @ np.ones((4, 2)), rtol=1e-14)


def test_an_op_whose_vjp_is_none_gets_no_dead_gradient():
    @mt.primitive("dA = nothing: no gradient flows through")
    def doubled(a):
        return a * 2, (None,)

    w = mt.Tensor(np.arange(3.0), name="w")
    out, grad, cf = _function_and_call(lambda w: mt.sum(doubled(w) * w), w)
    value, got = cf()
    assert value == out.value and np.array_equal(got, grad)
    assert "d_doubled" not in cf.fast_source and "d_doubled" not in cf.source
    out, grad, cf = _function_and_call(lambda w: mt.sum(doubled(w)), w)
    assert np.array_equal(cf()[1], np.zeros(3)) and "d_sum_" not in cf.fast_source


@mt.primitive("dA = 2 G ∘ A")
def _square_called(a):
    """A user op without a code template: the closed form calls it, and its VJP holds A."""
    return a * a, (lambda g: 2 * g * a,)


@pytest.mark.parametrize("holder", [
    None, lambda a: a.T, lambda a: mt.reshape(mt.reshape(a, (4096,)), (64, 64)), lambda a: a[:],
    _square_called], ids=["no view", "transpose", "reshape", "slice", "called op"])
def test_a_large_buffer_still_held_by_a_view_or_a_vjp_is_not_worked_in_place(holder):
    # t = a + b may reuse a's buffer only when nothing holds a any more: a view
    # of it, or a called op's VJP closure, would see the sum instead of a.
    rng = np.random.default_rng(3)
    w = mt.Tensor(rng.normal(size=(64, 64)), name="w")
    b = mt.Tensor(rng.normal(size=(64, 64)), name="b")
    with mt.Tape() as tape:
        a = mt.mul(w, 2.0, name="a")  # no VJP reads a: only a holder keeps it alive
        held = holder(a) if holder else b
        t = a + b
        y = mt.sum(t * held)
    cf = tape.closed_form(y, [w, b])
    assert ("a  # in place" in cf.fast_source) == (holder is None)
    value, grads = cf()
    _close(value, y.value, np.float64)
    for g, ref in zip(grads, tape.gradient(y, [w, b])):
        _close(g, ref, np.float64)


def test_the_generated_lines_live_as_long_as_the_function():
    # linecache holds each closed form's source for tracebacks and inspect;
    # a compile=True loop that traces many signatures must not keep them all.
    import gc
    import linecache
    w = mt.Tensor(np.ones(3), name="w")
    with mt.Tape() as tape:
        y = mt.sum(w * w)
    cf = tape.closed_form(y, w)
    files = {cf.function.__code__.co_filename, cf.step_function.__code__.co_filename}
    assert inspect.getsource(cf.function) == cf.fast_source and files <= set(linecache.cache)
    del cf
    gc.collect()
    assert not files & set(linecache.cache)


def test_each_equation_belongs_to_the_statement_that_computes_its_gradient():
    # The program is data: cf.equations is printed from the statements, each
    # carrying the derivation's line for the gradient it defines.
    from microtape.closed_form.build import lower
    net = TwoLayerNet(3, 4, 3, seed=0)
    with mt.Tape() as tape:
        loss = net.loss(np.ones((5, 3)), np.array([0, 1, 2, 0, 1]))
    program, *_ = lower(tape.nodes, loss, list(net.params.values()))
    carried = {s.name: s.equations for s in program.backward if s.equations}
    assert carried == {"d_v": ("delta2 = (ŷ − y) / N",), "d_b2": ("db2 = column sums of delta2",),
                       "d_W2": ("dW2 = hᵀ delta2",), "d_t": ("delta1 = (delta2 W2ᵀ) ∘ h ∘ (1 − h)",),
                       "d_b1": ("db1 = column sums of delta1",), "d_W1": ("dW1 = xᵀ delta1",)}


def test_an_inline_gradient_of_two_bracketed_factors_is_bracketed_whole_where_used():
    # "(P) ∘ (Q)" starts with "(" and ends with ")", so it went in unbracketed: the column sums
    # and the transpose then read as applying to the last factor only
    r = np.random.default_rng(0)
    a, b = mt.Tensor(r.normal(size=(3, 4)), name="a"), mt.Tensor(r.normal(size=4), name="b")
    v, w = mt.Tensor(r.normal(size=(3, 4)), name="v"), r.normal(size=(3, 4))
    with mt.Tape() as tape:
        J = mt.sum(mt.tanh(a + b) * w)
    lines = tape.closed_form(J, [a, b]).equations.splitlines()
    assert "- `da = ((1 copied to every element) ∘ x) ∘ (1 − tanh²)`" in lines
    assert "- `db = column sums of (((1 copied to every element) ∘ x) ∘ (1 − tanh²))`" in lines
    with mt.Tape() as tape:
        J = mt.sum(mt.tanh(v.T) * w.T)
    assert "(((1 copied to every element) ∘ x) ∘ (1 − tanh²))ᵀ" in tape.closed_form(J, v).equations


@pytest.mark.parametrize("labels_as", ["indices", "rows"])
def test_the_textbook_source_of_a_recorded_pass_writes_its_constants_out(tmp_path, labels_as):
    # The recorded softmax-CE gradient reads I (one-hot rows) and N, which only the fast
    # form held: the textbook form, run alone, raised NameError
    r = np.random.default_rng(0)
    x, index = r.normal(size=(4, 3)), r.integers(0, 2, 4)
    labels = index if labels_as == "indices" else np.eye(2)[index]
    W = mt.Tensor(r.normal(size=(3, 2)), name="W")
    with mt.Tape() as tape:
        J = mt.softmax_cross_entropy(mt.tanh(x @ W), labels)
        (g,) = tape.gradient(J, [W], create_graph=True)
        s = mt.sum(g * g)
    cf = tape.closed_form(s, W)
    assert "N = np.array(4.0, dtype=np.float64)  # a constant the tape computed" in cf.source
    value, (dW,) = _textbook(cf, tmp_path)(x, W.value, labels)
    want_value, want = cf()
    assert value == want_value
    np.testing.assert_array_equal(dW, want)


def test_the_per_row_loss_equation_makes_g_a_column_as_its_code_does():
    # A reshape that only adds length-1 axes printed as the same symbol: G of shape (N,)
    # then read as meeting ŷ − y along the classes, not the rows
    v = mt.Tensor(np.zeros((4, 3)), name="v")
    with mt.Tape() as tape:
        J = mt.sum(mt.softmax_cross_entropy(v, np.array([0, 1, 2, 0]), reduction="none")
                   * np.arange(4.0))
    cf = tape.closed_form(J, v)
    assert "[:, None] ∘ (ŷ − y)" in cf.equations and "[:, None]" in cf.source
