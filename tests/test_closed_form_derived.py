"""Each VJP is spelled once, in the op's grads: the closed form's code and equations come from it.

The hand-tuned VJP templates that remain (``Code.fast_vjps``) are held to
the derived code on every op case, on the traced values and on fresh ones,
and an op declared as one short block (forward, grads, forward template)
works everywhere: eagerly, differentiated again and in the closed form.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt
from microtape.closed_form import closed_form
from tests.op_cases import op_cases


def _close(a, b, dtype):
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _recorded(call, weights):
    with mt.Tape() as tape:
        out, sources = call()
        target = out if out.ndim == 0 else mt.sum(mt.mul(out, weights(out.shape)))
    return tape, target, sources


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_vjps_and_the_derived_code_both_equal_the_tape_on_traced_and_fresh_values(dtype):
    rng = np.random.default_rng(7)
    for name, call in op_cases(rng, dtype, templated_only=True):
        kept = {}
        weights = lambda shape: kept.setdefault("R", rng.normal(size=shape).astype(dtype))  # noqa: E731
        tape, target, sources = _recorded(call, weights)
        forms = [closed_form(tape.nodes, target, sources, fast_vjps=fast) for fast in (True, False)]
        for cf in forms:
            assert "no code template" not in cf.source, name
        assert forms[0].equations == forms[1].equations, name  # the equation always comes from grads
        _agree(forms, tape, target, sources, dtype, name)
        for s in sources:  # fresh values in the op's domain: positive stays positive (log's)
            fresh = rng.uniform(0.7, 1.3, size=s.shape) * s.value if (s.value > 0).all() else (
                rng.uniform(-2.0, 2.0, size=s.shape))  # new signs: a mask baked in would show
            s.value = fresh.astype(dtype)
        tape, target, _ = _recorded(call, weights)
        _agree(forms, tape, target, sources, dtype, name)


def _agree(forms, tape, target, sources, dtype, name):
    expected = tape.gradient(target, sources)
    for cf in forms:
        value, grads = cf()  # left-out arguments read the tensors' current values
        _close(value, target.value, dtype)
        for g, ref in zip(grads, expected):
            assert g.dtype == ref.dtype, name
            _close(g, ref, dtype)


def test_without_fast_vjps_the_two_layer_code_is_its_grads_and_the_equations_do_not_change():
    from tests.test_closed_form import _two_layer
    net, x, labels, tape, J = _two_layer()
    fast = tape.closed_form(J, net.params)
    derived = closed_form(tape.nodes, J, net.params, fast_vjps=False)
    assert derived.equations == fast.equations
    assert "d_t = d_h * h * (1 - h)" in fast.source          # sigmoid's hand template
    assert "d_t = d_h * h * (1.0 - h)" in derived.source     # sigmoid's grads, printed
    assert "d_h = d_v @ W2.T" in derived.source and "d_W1 = x.T @ d_t" in derived.source
    _, grads = derived()
    expected = tape.gradient(J, net.params)
    for key, ref in expected.items():
        np.testing.assert_allclose(grads[key], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op, expected", [
    (lambda x: mt.sigmoid(x), "dx = G ∘ sigmoid ∘ (1 − sigmoid)"),
    (lambda x: mt.div(1.0, x), "dx = −G ∘ div / x"),
    (lambda x: mt.mul(mt.exp(x), x), None),
])
def test_each_equation_is_its_grads_printed_with_the_forward_maths(op, expected):
    x = mt.Tensor(np.linspace(0.5, 2.0, 6).reshape(2, 3), name="x")
    G = mt.Tensor(np.ones((2, 3)), name="G")
    with mt.Tape() as tape:
        out = op(x)
        J = mt.sum(mt.mul(out, mt.stop_gradient(G)))
    cf = tape.closed_form(J, x)
    lines = cf.equations.replace("((1 copied to every element) ∘ G_const)", "G").splitlines()
    if expected is not None:
        assert f"- `{expected}`" in lines
    _, dx = cf()
    np.testing.assert_allclose(dx, tape.gradient(J, x), rtol=1e-12)


# -- an op declared as one short block ------------------------------------------------

@mt.primitive("dA = G ∘ σ(A)",
              code=mt.Code("np.logaddexp(0, {A})", math="softplus({A})"),
              grads=(lambda g, c, a: mt.mul(g, mt.sigmoid(a)),))
def softplus(a):
    """C = log(1 + exp(A))."""
    return np.logaddexp(0, a)


def test_an_op_of_one_short_block_works_eagerly_again_and_in_the_closed_form():
    rng = np.random.default_rng(3)
    x = mt.Tensor(rng.normal(size=(4, 3)), name="x")
    report = mt.gradcheck(lambda t: mt.sum(mt.mul(softplus(t), t)), [x], order=2)
    assert report.passed
    with mt.Tape() as tape:
        J = mt.sum(softplus(x))
    cf = tape.closed_form(J, x)
    assert "np.logaddexp(0, x)" in cf.source
    assert "1 / (1 + np.exp(-x))" in cf.source   # its VJP: sigmoid's own forward template
    assert cf.equations == "- `dx = (1 copied to every element) ∘ σ(x)`\n"
    _, dx = cf()
    np.testing.assert_allclose(dx, 1 / (1 + np.exp(-x.value)), rtol=1e-12)


def test_an_ops_grads_run_eagerly_record_nothing_on_the_tapes_around_them():
    x = mt.Tensor(np.arange(3.0), name="x")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            J = mt.sum(softplus(x))
        recorded = len(outer)
        inner.gradient(J, x)
    assert len(outer) == recorded


def test_a_forward_that_returns_its_output_alone_needs_grads():
    @mt.primitive("dA = 2 G A")
    def square(a):
        return a * a

    with mt.Tape():
        with pytest.raises(TypeError, match="square: the forward returned its output alone"):
            square(mt.Tensor(np.ones(2)))


def test_vjp_templates_after_the_forward_are_refused_with_what_to_do():
    with pytest.raises(TypeError, match="derives each VJP from the op's grads="):
        mt.Code("np.log({A})", "{G} / {A}")


# -- the formula strings ----------------------------------------------------------------

# The letter each formula gives the op's output (the derivation's S and T).
OUTPUT_LETTER = {"sigmoid": "S", "tanh": "T"}
FORMULA_OPS = {
    "matmul": ((3, 4), (4, 2)), "add": ((3, 4), (3, 4)), "sub": ((3, 4), (3, 4)),
    "mul": ((3, 4), (3, 4)), "div": ((3, 4), (3, 4)), "neg": ((3, 4),), "exp": ((3, 4),),
    "log": ((3, 4),), "tanh": ((3, 4),), "sigmoid": ((3, 4),), "relu": ((3, 4),),
}


@pytest.mark.parametrize("name", sorted(FORMULA_OPS))
def test_each_formula_is_its_grads_printed_with_generic_names(name):
    """The docstring formula (dA = ..., before its note) is what the op's grads print as."""
    from microtape.closed_form.derive import Writer, derive
    op = getattr(mt, name)
    rng = np.random.default_rng(0)
    inputs = [mt.Tensor(rng.uniform(0.5, 2.0, size=shape), name=letter)
              for shape, letter in zip(FORMULA_OPS[name], "AB")]
    with mt.Tape() as tape:
        op(*inputs, name="C")
    (node,) = tape.nodes
    formulas = dict(re.findall(r"d([A-Z]) = (.*?)(?:,  |  \(|$)", op.formula))
    assert sorted(formulas) == ["AB"[i] for i in range(len(inputs))]
    for i, x in enumerate(inputs):
        outer = {id(node.output): "C", **{id(t): t.name for t in inputs}}
        printed = Writer(derive(node, i), outer, "", None, {}).maths("G", False)
        expected = formulas[x.name].replace(OUTPUT_LETTER.get(name, "C"), "C")
        assert printed == expected, (name, x.name)


def test_an_op_of_one_block_without_code_is_called_by_the_closed_form_and_its_grads_run():
    @mt.primitive("dA = G ∘ σ(A)", grads=(lambda g, c, a: mt.mul(g, mt.sigmoid(a)),))
    def softplus_called(a):
        return np.logaddexp(0, a)

    x = mt.Tensor(np.linspace(-2, 2, 6), name="x")
    with mt.Tape() as tape:
        J = mt.sum(softplus_called(x))
    cf = tape.closed_form(J, x)
    assert "softplus_called has no code template" in cf.source
    _, dx = cf(x=x.value + 1.0)
    np.testing.assert_allclose(dx, 1 / (1 + np.exp(-(x.value + 1.0))), rtol=1e-12)


def test_a_gradient_that_is_an_input_times_the_seed_is_an_array_of_its_own():
    a, b = mt.Tensor(2.0, name="a"), mt.Tensor(3.0, name="b")
    with mt.Tape() as tape:
        J = mt.mul(a, b)
    cf = tape.closed_form(J, [a, b])
    _, (da, db) = cf()
    da += 1.0  # the caller's own array: b's value is untouched
    assert b.value == 3.0 and da == 4.0 and db == 2.0
