"""value_and_grad(..., compile=True) held to eager (compile=False) where users leave the tape.

Each test here once failed silently: a value computed off the tape, an index
or an argument's identity baked into the closed form at the first call.
Eager is the reference throughout.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import microtape as mt


def _both(f, argnums=0):
    return mt.value_and_grad(f, argnums, compile=True), mt.value_and_grad(f, argnums)


def _same(got, want):
    """(value, gradients) pairs equal to 1e-12, types and shapes included."""
    (v1, g1), (v2, g2) = got, want
    assert type(v1) is np.ndarray and v1.shape == np.shape(v2)
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)
    g1, g2 = (g1, g2) if isinstance(g2, tuple) else ((g1,), (g2,))
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        assert type(a) is np.ndarray and a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _agree(f, calls, argnums=0):
    """Compiled and eager give the same answers on every call in turn."""
    compiled, eager = _both(f, argnums)
    for args in calls:
        _same(compiled(*args), eager(*args))
    return compiled


_rng = np.random.default_rng(0)
W, W2 = _rng.normal(size=3), _rng.normal(size=3)
X, X2 = _rng.normal(size=(4, 3)), _rng.normal(size=(4, 3))


# -- values computed off the tape ---------------------------------------------------------

def test_an_op_on_data_alone_is_computed_from_each_call():
    _agree(lambda w, x: mt.sum(w * mt.mean(x)), [(W, X), (W, X2), (W2, X2)])
    _agree(lambda w, x: mt.sum(mt.tanh(x) @ w), [(W, X), (W, X2)])


@pytest.mark.parametrize("stop", [mt.stop_gradient, lambda t: t.detach()], ids=["stop_gradient", "detach"])
def test_stop_gradient_and_detach_of_a_traced_value_are_not_frozen(stop):
    _agree(lambda w, x: mt.sum(w * stop(mt.mean(x, axis=0) * w)), [(W, X), (W2, X), (W2, X2)])
    _agree(lambda w: mt.sum(w * stop(w)), [(W,), (W2,)])


def test_closed_form_computes_data_only_ops_from_its_arguments():
    w = mt.Tensor(W, name="W")
    x = X.copy()
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x) @ w)
    cf = tape.closed_form(y, w)
    assert cf.inputs == ("x", "W") and "np.tanh(x)" in cf.source
    value, grad = cf(x=X2)
    np.testing.assert_allclose(value, np.tanh(X2).sum(axis=0) @ W)
    np.testing.assert_allclose(grad, np.tanh(X2).sum(axis=0))


def test_closed_form_of_w_times_its_stopped_self_takes_one_w():
    w = mt.Tensor(W, name="w")
    with mt.Tape() as tape:
        y = mt.sum(w * mt.stop_gradient(w))
    cf = tape.closed_form(y, w)
    assert cf.inputs == ("w",)
    value, grad = cf(w=W2)
    np.testing.assert_allclose(value, W2 @ W2)
    np.testing.assert_allclose(grad, W2)  # the stopped factor: no gradient through it
