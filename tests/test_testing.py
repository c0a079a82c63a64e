"""microtape.testing: the assertions a user writes tests with, and what their failures say."""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt
from microtape.testing import assert_gradients_close, assert_vjp_matches


def _problem():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)


def _loss(W, b, x):
    return (mt.tanh(x @ W + b) ** 2).sum()


def _by_hand(W, b, x):
    th = np.tanh(x @ W + b)
    delta = 2 * th * (1 - th ** 2)
    return x.T @ delta, delta.sum(axis=0)


def test_gradients_close_passes_for_the_right_formula_and_returns_the_tape_gradients():
    x, W, b = _problem()
    dW, db = _by_hand(W, b, x)
    grads = assert_gradients_close(lambda W, b: _loss(W, b, x), {"W": W, "b": b}, {"b": db, "W": dW})
    np.testing.assert_allclose(grads["W"], dW)
    listed = assert_gradients_close(lambda W, b: _loss(W, b, x), [W, b], [dW, db])
    assert isinstance(listed, list) and len(listed) == 2


def test_gradients_close_failure_is_one_block_naming_input_index_values_and_error():
    x, W, b = _problem()
    dW, db = _by_hand(W, b, x)
    wrong = dW.copy()
    wrong[2, 1] *= 1.5                      # the user's formula is off at one element
    with pytest.raises(AssertionError) as info:
        assert_gradients_close(lambda W, b: _loss(W, b, x), {"W": W, "b": b}, {"W": wrong, "b": db})
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == "the tape's gradient of W differs from the expected one"
    assert "W, shape (3, 2)" in message
    assert re.search(r"^  worst element: +index \(2, 1\)$", message, re.M)
    assert re.search(rf"^  tape: +{dW[2, 1]:.10g}$", message, re.M)
    assert re.search(rf"^  expected: +{wrong[2, 1]:.10g}$", message, re.M)
    assert re.search(r"^  relative error: +0\.333", message, re.M)   # 0.5 / 1.5
    assert "rtol=1e-07, atol=1e-10" in message


def test_gradients_close_respects_its_tolerances_and_checks_shapes_and_keys():
    x, W, b = _problem()
    dW, db = _by_hand(W, b, x)
    f = lambda W, b: _loss(W, b, x)  # noqa: E731
    assert_gradients_close(f, [W, b], [dW * (1 + 1e-4), db], rtol=1e-3)
    with pytest.raises(AssertionError):
        assert_gradients_close(f, [W, b], [dW * (1 + 1e-4), db])
    with pytest.raises(AssertionError, match=r"gradient of b has shape \(2,\) but the expected "
                                             r"array has shape \(1, 2\)"):
        assert_gradients_close(f, {"W": W, "b": b}, {"W": dW, "b": db[None]})
    with pytest.raises(TypeError, match="expected must match inputs"):
        assert_gradients_close(f, {"W": W, "b": b}, {"W": dW})
    with pytest.raises(TypeError, match="single element"):
        assert_gradients_close(lambda W: W * 2.0, [W], [dW])


def test_vjp_matches_passes_for_the_library_ops():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    assert_vjp_matches(mt.matmul, [a, b])
    assert_vjp_matches(mt.add, [a, rng.normal(size=4)])     # a broadcast bias
    assert_vjp_matches(mt.sigmoid, [a])
    assert_vjp_matches(lambda v: mt.softmax_cross_entropy(v, np.array([0, 3, 1])), [a])


def test_vjp_matches_catches_a_wrong_custom_vjp_with_a_readable_message():
    @mt.primitive("dA = 2 G ∘ A²  (deliberately wrong: should be 3)")
    def cube(a):
        """C = A³."""
        return a ** 3, (lambda g: 2 * g * a * a,)

    x = np.array([[0.5, -1.0], [2.0, 1.5]])
    with pytest.raises(AssertionError) as info:
        assert_vjp_matches(cube, [mt.Tensor(x, name="x")])
    message = str(info.value)
    assert message.splitlines()[0] == ("assert_vjp_matches(cube): the gradient of x disagrees "
                                       "with finite differences")
    assert "x, shape (2, 2)" in message and "worst element:   index (" in message
    assert re.search(r"^  relative error: +0\.333", message, re.M)   # (3 − 2) / 3
    assert "numeric:" in message and "tape:" in message


@pytest.mark.parametrize("call, match", [
    (lambda f, x: mt.gradcheck(f, [x], eps=0.0), "gradcheck: eps must be a finite number above 0"),
    (lambda f, x: mt.gradcheck(f, [x], rtol=-1.0), "gradcheck: rtol must be a finite number at least 0"),
    (lambda f, x: mt.gradcheck(f, [x], atol=float("nan")), "gradcheck: atol must be"),
    (lambda f, x: assert_vjp_matches(mt.tanh, [x], eps=float("inf")), "assert_vjp_matches(tanh): eps"),
    (lambda f, x: assert_gradients_close(f, [x], [2 * x], rtol=-1.0),
     "assert_gradients_close: rtol must be"),
], ids=["eps 0", "negative rtol", "NaN atol", "infinite eps", "negative rtol (close)"])
def test_bad_tolerances_are_refused_not_blamed_on_the_gradient(call, match):
    # eps=0 made every difference 0/0 and rtol=-1 made every element fail: each reported
    # the user's gradient as wrong
    with pytest.raises(ValueError, match=re.escape(match)):
        call(lambda x: mt.sum(x * x), np.ones(3))


def test_vjp_matches_wants_a_list_of_operands():
    with pytest.raises(TypeError, match=r"inputs must be a list of op's operands, e.g. \[x\]"):
        assert_vjp_matches(mt.tanh, np.ones(3))
