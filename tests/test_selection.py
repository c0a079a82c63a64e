"""The ops that choose (abs, maximum, minimum, clip, where, max, min) and sqrt.

The shared checks (the VJP in ops against the eager one, second derivatives
against differences, templates against the tape, random programs against
autograd) draw these ops from tests/op_cases.py; here: what a tie gets, that
the masks are computed from the values a closed form is called with (at
first and second order), the formulas, and the errors.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt
from microtape.closed_form.derive import Writer, derive

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")


def test_a_tie_of_maximum_or_minimum_gives_each_side_half_of_g():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    for op in (mt.maximum, mt.minimum):
        da, db = mt.grad(lambda x, y: mt.sum(op(x, y)), argnums=(0, 1))(a, b)
        assert da[0] == db[0] == 0.5
        assert da[1] + db[1] == da[2] + db[2] == 1.0 and {da[1], da[2]} == {0.0, 1.0}


def test_infinities_and_far_apart_values_choose_as_other_numbers_do():
    # The masks subtracted, H(A − B): two equal infinities gave NaN gradients (inf − inf),
    # where PyTorch and JAX split G as for any tie, and values far apart warned of overflow
    inf, big = np.inf, np.finfo(np.float64).max
    pairs = [(np.array([inf, big, 1.0]), np.array([inf, -big, 1.0]), [0.5, 1, 0.5]),
             (np.array([-inf, -big]), np.array([-inf, big]), [0.5, 0])]  # sums with no inf − inf
    with np.errstate(all="raise"):
        for a, b, first in pairs:
            for op, da_want in ((mt.maximum, first), (mt.minimum, [0.5 if d == 0.5 else 1 - d
                                                                 for d in first])):
                for compile in (False, True):
                    da, db = mt.grad(lambda x, y: mt.sum(op(x, y)), (0, 1), compile=compile)(a, b)
                    np.testing.assert_array_equal(da, da_want)
                    np.testing.assert_array_equal(db, 1 - np.array(da_want))
        d = mt.grad(lambda t: mt.sum(mt.clip(t, -inf, inf)))(np.array([inf, big, 0.0]))
        np.testing.assert_array_equal(d, [0.5, 1, 1])  # on a bound: half, as at any bound
        d = mt.grad(lambda t: mt.sum(mt.clip(t, -big, big)))(np.array([-inf, big, 0.0]))
        np.testing.assert_array_equal(d, [0, 0.5, 1])
    assert mt.above(np.float32(1.0), np.array([0.5, 1.0, 2.0], np.float32)).dtype == np.float32
    np.testing.assert_array_equal(mt.above(np.array([3, 2, 1]), 2), [1.0, 0.5, 0.0])


def test_max_over_an_axis_shares_g_equally_among_its_ties():
    x = np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 2.0, -1.0, 2.0]])
    d = mt.grad(lambda t: mt.sum(mt.max(t, axis=1) * np.array([3.0, 10.0])))(x)
    np.testing.assert_array_equal(d, [[1.0, 0.0, 1.0, 1.0], [0.0, 5.0, 0.0, 5.0]])
    d = mt.grad(lambda t: t.min())(x)
    np.testing.assert_array_equal(d, np.eye(4)[2][None] * [[0.0], [1.0]])


def test_clip_passes_g_inside_its_bounds_and_half_of_it_on_one():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    d = mt.grad(lambda t: mt.sum(mt.clip(t, -1.0, 1.0)))(x)
    np.testing.assert_array_equal(d, [0.0, 0.5, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(mt.grad(lambda t: mt.sum(mt.clip(t, 0.0)))(x), [0, 0, 0.5, 1, 1])


def test_clip_bounds_that_are_tensors_get_the_gradients_of_maximum_then_minimum():
    # Bounds that are Tensors got no gradient at all, silently; they get G wherever they
    # are the value, half on a tie, as min(max(A, lo), hi) gives them: bounds in order,
    # ties with A and with each other, and bounds out of order (then hi is the value).
    rng = np.random.default_rng(5)
    x = np.array([[-2.0, -1.0, 0.0, 0.5], [1.0, 2.0, 0.25, -0.5], [0.5, 0.5, 3.0, -3.0]])
    bounds = [(np.full((3, 1), -1.0), np.array([1.0, 2.0, 0.25, 0.5])),  # on A in places
              (np.array(0.5), np.array(0.5)),                            # lo = hi
              (np.array(1.0), np.array(-1.0)),                            # out of order
              (np.array(-0.75), None), (None, np.array(0.3))]
    for lo, hi in bounds:
        w = rng.normal(size=x.shape)
        given = [v for v in (lo, hi) if v is not None]

        def clipped(a, *bs):
            lo_t, hi_t = (bs[0] if lo is not None else None,
                          bs[-1] if hi is not None else None)
            return mt.sum(mt.clip(a, lo_t, hi_t) * w)

        def composed(xp):  # min(max(A, lo), hi) in microtape's ops or autograd's (ties as ours)
            def f(a, *bs):
                out = a
                if lo is not None:
                    out = xp.maximum(out, bs[0])
                if hi is not None:
                    out = xp.minimum(out, bs[-1])
                return xp.sum(out * w)
            return f

        argnums = tuple(range(1 + len(given)))
        got = mt.grad(clipped, argnums=argnums)(x, *given)
        want = mt.grad(composed(mt), argnums=argnums)(x, *given)
        for g, ref, v in zip(got, want, (x, *given)):
            assert g.shape == np.shape(v)
            np.testing.assert_array_equal(g, ref)
        assert any(np.any(g != 0) for g in got[1:])
        for g, ref in zip(got, autograd.grad(composed(anp), argnums)(x, *given)):
            np.testing.assert_allclose(g, ref, rtol=1e-15, atol=0)


def test_where_gives_each_branch_g_where_it_was_chosen_and_broadcasts():
    x, row = np.arange(6.0).reshape(2, 3), np.array([10.0, 20.0, 30.0])
    condition = np.array([[True, False, True], [False, False, True]])
    dx, drow = mt.grad(lambda a, b: mt.sum(mt.where(condition, a, b)), argnums=(0, 1))(x, row)
    np.testing.assert_array_equal(dx, condition.astype(float))
    np.testing.assert_array_equal(drow, [1.0, 2.0, 0.0])  # summed over the broadcast axis


def test_abs_is_an_operator_and_its_gradient_is_0_at_0():
    x = mt.Tensor(np.array([-2.0, 0.0, 3.0]))
    with mt.Tape() as tape:
        y = abs(x)
    assert tape.nodes[-1].op is mt.abs
    np.testing.assert_array_equal(y.value, [2.0, 0.0, 3.0])
    np.testing.assert_array_equal(tape.gradient(y, x, seed=np.ones(3)), [-1.0, 0.0, 1.0])


def test_tensor_max_and_min_methods_are_the_ops():
    x = mt.Tensor(np.arange(12.0).reshape(3, 4))
    with mt.Tape() as tape:
        m, n = x.max(axis=0, keepdims=True), x.min()
    assert [node.op.name for node in tape.nodes] == ["max", "min"]
    assert m.shape == (1, 4) and float(n) == 0.0


# -- the masks are ops: a closed form computes them from its own arguments ----------------

def _choosing(x, y):
    return (mt.sum(mt.maximum(x, y) ** 2 * mt.abs(x) + mt.clip(x, -0.3, 0.4) ** 3)
            + mt.sum(mt.max(x * y, axis=1) ** 2) + mt.sum(mt.where(mt.is_positive(y), x, y) ** 2)
            + mt.sum(mt.minimum(mt.sqrt(mt.abs(y) + 1.0), x)))


def _second_order(x, y):
    """T = |∇f|² + Σ ∂f/∂y, recorded: its gradient is a Hessian-vector product of f."""
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            f = _choosing(x, y)
        gx, gy = inner.gradient(f, [x, y], create_graph=True)
        target = mt.sum(gx * gx) + mt.sum(gy)
    return outer, target


def test_a_second_order_closed_form_recomputes_every_mask_from_fresh_values():
    rng = np.random.default_rng(0)
    x, y = (mt.Tensor(rng.normal(size=(3, 4)), name=n) for n in "xy")
    tape, target = _second_order(x, y)
    cf = tape.closed_form(target, [x, y])
    for _ in range(3):  # fresh values: every mask (sign, H, [x = max], where's) flips somewhere
        fresh = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(3, 4))}
        value, grads = cf(**fresh)
        X, Y = mt.Tensor(fresh["x"]), mt.Tensor(fresh["y"])
        again, want_value = _second_order(X, Y)
        np.testing.assert_allclose(value, want_value.value, rtol=1e-12)
        for got, want in zip(grads, again.gradient(want_value, [X, Y])):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_second_order_tape_agrees_with_autograd():
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(3, 4)) for _ in range(2)]
    tape, target = _second_order(*(X := [mt.Tensor(v) for v in xs]))
    got = tape.gradient(target, X)

    def f(x, y):
        h = lambda a, lo, hi: anp.minimum(anp.maximum(a, lo), hi)  # noqa: E731 (ties as ours)
        return (anp.sum(anp.maximum(x, y) ** 2 * anp.abs(x) + h(x, -0.3, 0.4) ** 3)
                + anp.sum(anp.max(x * y, axis=1) ** 2) + anp.sum(anp.where(y > 0, x, y) ** 2)
                + anp.sum(anp.minimum(anp.sqrt(anp.abs(y) + 1.0), x)))

    def t(xy):
        gx, gy = autograd.grad(lambda v: f(*v))(xy)
        return anp.sum(gx * gx) + anp.sum(gy)

    for g, w in zip(got, autograd.grad(t)(xs)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


# -- the formula of each op is what its grads print -------------------------------------

@pytest.mark.parametrize("op", [mt.abs, mt.sqrt, mt.maximum, mt.minimum])
def test_each_formula_is_its_grads_printed_with_generic_names(op):
    rng = np.random.default_rng(0)
    n = 2 if op in (mt.maximum, mt.minimum) else 1
    inputs = [mt.Tensor(rng.uniform(0.5, 2.0, size=(3, 4)), name=letter) for letter in "AB"[:n]]
    with mt.Tape() as tape:
        op(*inputs, name="C")
    (node,) = tape.nodes
    formulas = dict(re.findall(r"d([A-Z]) = (.*?)(?:,  |  \(|$)", op.formula))
    assert sorted(formulas) == ["A", "B"][:n]
    for i, x in enumerate(inputs):
        outer = {id(node.output): "C", **{id(t): t.name for t in inputs}}
        printed = Writer(derive(node, i), outer, "", None, {}).maths("G", False)
        assert printed == formulas[x.name], (op.name, x.name)


def test_the_docstrings_say_what_a_tie_gets():
    for op in (mt.maximum, mt.minimum):
        assert "a tie shares G equally" in op.__doc__
    for op in (mt.max, mt.min):
        assert "ties share G equally" in op.__doc__
    assert "half of G" in mt.clip.__doc__


# -- errors -------------------------------------------------------------------------------

def test_errors_name_the_op_and_say_what_to_fix():
    with pytest.raises(mt.InputError, match="clip: give a lower bound, an upper bound or both"):
        mt.clip(mt.Tensor(np.ones(2)))
    with pytest.raises(mt.ShapeError, match=r"maximum: cannot combine shapes \(2,\) and \(3,\)"):
        mt.maximum(mt.Tensor(np.ones(2)), np.ones(3))
    with pytest.raises(mt.InputError, match=r"max: axis 2 is out of range"):
        mt.max(mt.Tensor(np.ones((2, 3))), axis=2)
    with pytest.raises(mt.InputError, match=r"max: zero-size array"):
        mt.max(mt.Tensor(np.ones((0, 3))))
    with pytest.raises(TypeError, match="use mt.maximum"):
        np.maximum(mt.Tensor(np.ones(2)), 0)
    with pytest.raises(TypeError, match="use mt.abs"):
        np.abs(mt.Tensor(np.ones(2)))
