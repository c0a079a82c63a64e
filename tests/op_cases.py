"""The one table of op cases the per-op tests share: each op called on inputs from its domain.

``op_cases(rng, dtype)`` lists (op name, call) pairs; each call records the op
on fresh Tensors and returns its output and the sources to differentiate.
The closed form's templates (test_closed_form.py) and the derivatives of
derivatives (test_higher_order.py) are both held to the tape on these cases.
Inputs lie in each op's domain: positive where log, a divisor or a power's
base needs it.
"""

from __future__ import annotations

import numpy as np

import microtape as mt


def tensor(rng, *shape, low=-2.0, high=2.0, dtype=np.float64, name=None):
    return mt.Tensor(rng.uniform(low, high, size=shape).astype(dtype), name=name)


def op_cases(rng, dtype):
    """(op name, call) pairs; each call returns the op's output and the sources."""
    t = lambda *shape, **kw: tensor(rng, *shape, dtype=dtype, **kw)  # noqa: E731
    a, b, row, col, pos = t(3, 4), t(3, 4), t(4), t(3, 1), t(3, 4, low=0.5, high=2.0)
    m, v = t(4, 2), t(2, 3)
    cube = t(2, 3, 4)
    big, w45 = t(80, 60), t(4, 5)  # made once: every call of a case computes the same
    logits = t(5, 4)
    soft = rng.dirichlet(np.ones(4), size=5).astype(dtype)
    return [
        ("matmul", lambda: (mt.matmul(a, m), [a, m])),
        ("add", lambda: (mt.add(a, row), [a, row])),
        ("add", lambda: (mt.add(col, a), [col, a])),
        ("sub", lambda: (mt.sub(a, col), [a, col])),
        ("mul", lambda: (mt.mul(row, a), [row, a])),
        ("div", lambda: (mt.div(a, pos), [a, pos])),
        ("div", lambda: (mt.div(a, 3.0), [a])),
        ("neg", lambda: (mt.neg(a), [a])),
        ("pow", lambda: (mt.pow(pos, 3), [pos])),
        ("pow", lambda: (mt.pow(pos, 2), [pos])),
        ("pow", lambda: (mt.pow(pos, row), [pos, row])),
        ("exp", lambda: (mt.exp(a), [a])),
        ("log", lambda: (mt.log(pos), [pos])),
        ("tanh", lambda: (mt.tanh(a), [a])),
        ("sigmoid", lambda: (mt.sigmoid(a), [a])),
        ("sigmoid", lambda: (mt.sigmoid(big), [])),  # the in-place form, large
        ("relu", lambda: (mt.relu(a), [a])),
        ("sum", lambda: (mt.sum(cube, axis=1), [cube])),
        ("sum", lambda: (mt.sum(cube, axis=(0, 2), keepdims=True), [cube])),
        ("sum", lambda: (mt.sum(a), [a])),
        ("mean", lambda: (mt.mean(cube, axis=-1), [cube])),
        ("mean", lambda: (mt.mean(a), [a])),
        ("transpose", lambda: (mt.transpose(a), [a])),
        ("transpose", lambda: (mt.transpose(cube, (2, 0, 1)), [cube])),
        ("reshape", lambda: (mt.reshape(cube, 6, -1), [cube])),
        ("getitem", lambda: (mt.getitem(a, (slice(1, None), 2)), [a])),
        ("getitem", lambda: (mt.getitem(a, np.array([0, 2, 0, 0])), [a])),
        ("getitem", lambda: (mt.getitem(a, (np.array([1, 1]), np.array([3, 3]))), [a])),
        ("softmax", lambda: (mt.softmax(a), [a])),
        ("softmax", lambda: (mt.softmax(a, axis=0), [a])),
        ("log_softmax", lambda: (mt.log_softmax(a, axis=1), [a])),
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(logits, np.array([0, 3, 1, 1, 2])), [logits])),
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(
            logits, np.eye(4, dtype=dtype)[[2, 0, 1, 3, 3]], reduction="sum"), [logits])),
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(logits, soft), [logits])),
        ("einsum", lambda: (mt.einsum("ij,jk->ik", a, m), [a, m])),
        ("einsum", lambda: (mt.einsum("bij,jk->bk", cube, w45), [cube])),
        ("einsum", lambda: (mt.einsum("ij,jk->i", m, v), [m, v])),
        ("stop_gradient", lambda: (mt.mul(a, mt.stop_gradient(b)), [a, b])),
        ("stop_gradient", lambda: (mt.stop_gradient(a), [a])),
        ("broadcast_to", lambda: (mt.broadcast_to(col, shape=(2, 3, 4)), [col])),
        ("broadcast_to", lambda: (mt.broadcast_to(row, shape=(3, 4)), [row])),
        ("scatter_add", lambda: (mt.scatter_add(row, np.array([0, 2, 0, 0]), shape=(3,)), [row])),
        ("scatter_add", lambda: (mt.scatter_add(m, (slice(1, None), slice(None)), shape=(5, 2)), [m])),
    ]
