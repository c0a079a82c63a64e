"""concatenate and stack: numpy's values, each input's own part of G back, clear errors.

Their second derivatives, templates and agreement with autograd are held by
the shared checks over tests/op_cases.py and random programs.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt


def test_concatenate_gives_each_input_its_own_span_of_g():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(4.0).reshape(2, 2)
    G = np.arange(10.0).reshape(2, 5)
    joined = mt.concatenate([mt.Tensor(a), b], axis=-1)
    np.testing.assert_array_equal(joined.value, np.concatenate([a, b], axis=-1))
    da, db = mt.grad(lambda x, y: mt.sum(mt.concatenate([x, y], axis=1) * G), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(da, G[:, :3])
    np.testing.assert_array_equal(db, G[:, 3:])


def test_concatenate_with_axis_none_joins_the_flattened_inputs_as_numpy_does():
    # It was recorded, then its VJP failed in the backward pass with Python's TypeError
    a, b = np.arange(4.0).reshape(2, 2), np.arange(3.0)
    G = np.arange(7.0) + 1.0
    joined = mt.concatenate([mt.Tensor(a), b], axis=None)
    np.testing.assert_array_equal(joined.value, np.concatenate([a, b], axis=None))
    f = lambda x, y: mt.sum(mt.concatenate([x, y], axis=None) * G)  # noqa: E731
    for compile in (False, True):
        da, db = mt.grad(f, argnums=(0, 1), compile=compile)(a, b)
        np.testing.assert_array_equal(da, G[:4].reshape(2, 2))
        np.testing.assert_array_equal(db, G[4:])


def test_stack_gives_each_input_g_at_its_index_and_one_tensor_twice_gets_both():
    x = np.arange(3.0)
    G = np.arange(9.0).reshape(3, 3)
    d = mt.grad(lambda t: mt.sum(mt.stack([t, t * 2.0, t], axis=1) * G))(x)
    np.testing.assert_array_equal(d, G[:, 0] + 2 * G[:, 1] + G[:, 2])


def test_the_closed_form_slices_g_and_replays_on_fresh_values():
    a, b = (mt.Tensor(np.random.default_rng(k).normal(size=(2, 3)), name=n) for k, n in
            enumerate("ab"))
    with mt.Tape() as tape:
        J = mt.sum(mt.concatenate([a, b]) ** 2) + mt.sum(mt.stack([a, b], axis=-1) ** 3)
    cf = tape.closed_form(J, [a, b])
    assert "np.concatenate((a, b,), axis=0)" in cf.source and "np.stack((a, b,), axis=(-1))" in cf.source
    fresh = {"a": np.ones((2, 3)), "b": -np.arange(6.0).reshape(2, 3)}
    _, grads = cf(**fresh)
    want = mt.grad(lambda x, y: mt.sum(mt.concatenate([x, y]) ** 2)
                   + mt.sum(mt.stack([x, y], axis=-1) ** 3), argnums=(0, 1))(*fresh.values())
    for got, w in zip(grads, want):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_the_drawing_and_the_tape_name_the_ops_as_the_user_wrote_them():
    with mt.Tape() as tape:
        mt.stack([mt.concatenate([mt.Tensor(np.ones(2)), np.zeros(1)])])
    assert [node.op.name for node in tape.nodes] == ["concatenate", "stack"]


@pytest.mark.parametrize("call, error, phrase", [
    (lambda a: mt.concatenate([a, np.ones((3, 2))]), mt.ShapeError,
     r"concatenate: cannot join shapes \(2, 3\) and \(3, 2\) along axis 0: every other axis"),
    (lambda a: mt.concatenate([a], axis=2), mt.InputError, r"concatenate: axis 2 is out of range"),
    (lambda a: mt.stack([a, np.ones(3)]), mt.ShapeError,
     r"stack: every input needs the same shape; got \(2, 3\) and \(3,\)"),
    (lambda a: mt.concatenate([]), mt.InputError, "concatenate: the list is empty"),
    (lambda a: mt.stack(a), TypeError, r"stack: pass a list of Tensors .* got a Tensor"),
    (lambda a: mt.concatenate([mt.Tensor(1.0), mt.Tensor(2.0)]), mt.InputError,
     "concatenate: zero-dimensional arrays cannot be concatenated"),
    (lambda a: mt.concatenate([a, a], axis="1"), TypeError,
     r"concatenate: axis must be an int \(or None, to join the flattened inputs\), not '1'"),
    (lambda a: mt.concatenate([a, a], axis=True), TypeError, "concatenate: axis must be an int"),
    (lambda a: mt.stack([a, a], axis=None), TypeError, "stack: axis must be an int, not None"),
    (lambda a: mt.stack([a, a], axis=1.0), TypeError, "stack: axis must be an int, not 1.0"),
])
def test_errors_name_the_op_and_the_shapes(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call(mt.Tensor(np.ones((2, 3))))
