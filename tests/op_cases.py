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


# Shapes (and subscripts) that test_ops.py checks against differences and
# op_cases() draws from, so that both walk the same variety.
MATMUL_CASES = {
    "matrix @ matrix": ((3, 4), (4, 2)),
    "vector @ matrix": ((4,), (4, 2)),
    "matrix @ vector": ((3, 4), (4,)),
    "vector @ vector": ((4,), (4,)),
    "stack @ stack": ((2, 3, 4), (2, 4, 5)),
    "stack @ matrix": ((2, 3, 4), (4, 5)),
    "matrix @ stack": ((3, 4), (2, 4, 5)),
    "vector @ stack": ((4,), (2, 4, 5)),
    "stack @ vector": ((2, 3, 4), (4,)),
    "broadcast stacks": ((2, 1, 3, 4), (5, 4, 2)),
}

EINSUMS = {
    "matrix product": ("ij,jk->ik", [(3, 4), (4, 2)]),
    "batched dot": ("bi,bi->b", [(3, 4), (3, 4)]),
    "summed index": ("ij->i", [(3, 4)]),
    "diagonal": ("ii->i", [(4, 4)]),
    "trace": ("ii->", [(4, 4)]),
    "transpose": ("ij->ji", [(3, 4)]),
    "outer product": ("i,j->ij", [(3,), (4,)]),
    "three operands": ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    "three operands, summed": ("ab,bc,c->", [(2, 3), (3, 4), (4,)]),
    "batched matrix product": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
    "with spaces": ("ij, jk -> ik", [(3, 4), (4, 2)]),
}


def primitives() -> dict[str, mt.Primitive]:
    """Every op microtape defines, by the name a tape records, from each module that holds ops."""
    from microtape import joining, losses, ops, selection
    return {op.name: op for module in (ops, selection, joining, losses)
            for op in vars(module).values() if isinstance(op, mt.Primitive)}


def tensor(rng, *shape, low=-2.0, high=2.0, dtype=np.float64, name=None):
    return mt.Tensor(rng.uniform(low, high, size=shape).astype(dtype), name=name)


def op_cases(rng, dtype, templated_only: bool = False):
    """(op name, call) pairs; each call returns the op's output and the sources.

    ``templated_only`` leaves out the calls the closed form's templates do not
    cover (it calls the op there): vectors and stacks in matmul, einsum's
    shapes, 1-d logits.
    """
    t = lambda *shape, **kw: tensor(rng, *shape, dtype=dtype, **kw)  # noqa: E731
    a, b, row, col, pos = t(3, 4), t(3, 4), t(4), t(3, 1), t(3, 4, low=0.5, high=2.0)
    m, v = t(4, 2), t(2, 3)
    cube = t(2, 3, 4)
    big, w45 = t(80, 60), t(4, 5)  # made once: every call of a case computes the same
    logits = t(5, 4)
    exponents = mt.Tensor(np.array([0.0, 1.5, 0.0, 3.0], dtype=dtype))
    soft = rng.dirichlet(np.ones(4), size=5).astype(dtype)
    beyond = [
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(logits[0], 2), [logits])),
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(logits[1], 0, reduction="none"),
                                           [logits])),
        *[("matmul", _pair(mt.matmul, t(*p), t(*q))) for p, q in MATMUL_CASES.values()],
        *[("einsum", _pair(lambda *xs, s=spec: mt.einsum(s, *xs), *[t(*sh) for sh in shapes]))
          for spec, shapes in EINSUMS.values()],
    ]
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
        ("pow", lambda: (mt.pow(pos, exponents), [pos, exponents])),  # p = 0 in places
        ("pow", lambda: (mt.pow(2.0, a), [a])),
        ("exp", lambda: (mt.exp(a), [a])),
        ("log", lambda: (mt.log(pos), [pos])),
        ("tanh", lambda: (mt.tanh(a), [a])),
        ("sigmoid", lambda: (mt.sigmoid(a), [a])),
        ("sigmoid", lambda: (mt.sigmoid(big), [])),  # the in-place form, large
        ("relu", lambda: (mt.relu(a), [a])),
        ("is_positive", lambda: (mt.mul(a, mt.is_positive(b)), [a, b])),  # b gets no gradient
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
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(
            logits, np.array([2, 0, 3, 3, 1]), reduction="none"), [logits])),
        ("softmax_cross_entropy", lambda: (mt.softmax_cross_entropy(logits, soft, reduction="none"),
                                           [logits])),
        ("einsum", lambda: (mt.einsum("ij,jk->ik", a, m), [a, m])),
        ("einsum", lambda: (mt.einsum("bij,jk->bk", cube, w45), [cube])),
        ("einsum", lambda: (mt.einsum("ij,jk->i", m, v), [m, v])),
        ("stop_gradient", lambda: (mt.mul(a, mt.stop_gradient(b)), [a, b])),
        ("stop_gradient", lambda: (mt.stop_gradient(a), [a])),
        ("transpose", lambda: (mt.transpose(cube, (-1, 0, 1)), [cube])),
        ("mean", lambda: (mt.mean(cube, axis=(0, -1), keepdims=True), [cube])),
        ("astype", lambda: (mt.astype(a, dtype="float64"), [a])),  # a cast only in float32
        ("broadcast_to", lambda: (mt.broadcast_to(col, shape=(2, 3, 4)), [col])),
        ("broadcast_to", lambda: (mt.broadcast_to(row, shape=(3, 4)), [row])),
        ("scatter_add", lambda: (mt.scatter_add(row, np.array([0, 2, 0, 0]), shape=(3,)), [row])),
        ("scatter_add", lambda: (mt.scatter_add(m, (slice(1, None), slice(None)), shape=(5, 2)), [m])),
    ] + _choosing_joining_and_loss_cases(t, rng, dtype) + ([] if templated_only else beyond)


def _choosing_joining_and_loss_cases(t, rng, dtype):
    """selection.py's, joining.py's and losses.py's ops: broadcasting, ties, params.

    A tie is made where a difference step keeps it (the same Tensor on both
    sides, or copies of one row), since a tie is a kink: the second-derivative
    test differentiates the gradient across its step.
    """
    a, b, row, col, pos = t(3, 4), t(3, 4), t(4), t(3, 1), t(3, 4, low=0.5, high=2.0)
    cube, copies = t(2, 3, 4), t(4)
    probs = rng.uniform(0.0, 1.0, size=(3, 4)).astype(dtype)
    return [
        ("abs", lambda: (mt.abs(a), [a])),
        ("sign", lambda: (mt.mul(a, mt.sign(b)), [a, b])),  # b gets no gradient
        ("heaviside", lambda: (mt.mul(a, mt.heaviside(b)), [a, b])),
        ("is_equal", lambda: (mt.mul(a, mt.is_equal(b, mt.maximum(b, 0.0))), [a, b])),
        ("above", lambda: (mt.mul(a, mt.above(b, row)), [a, b, row])),  # b, row get none
        ("sqrt", lambda: (mt.sqrt(pos), [pos])),
        ("maximum", lambda: (mt.maximum(a, row), [a, row])),
        ("maximum", lambda: (mt.maximum(a, a), [a])),  # a tie everywhere: half of G each way
        ("maximum", lambda: (mt.maximum(0.0, a), [a])),
        ("minimum", lambda: (mt.minimum(col, a), [col, a])),
        ("minimum", lambda: (mt.minimum(b, b), [b])),
        ("clip", lambda: (mt.clip(a, -0.5, 1.0), [a])),
        ("clip", lambda: (mt.clip(a, None, row.value), [a])),  # bounds as an array
        ("clip", lambda: (mt.clip(a, col, row), [a, col, row])),  # bounds that learn, broadcast
        ("where", lambda: (mt.where(b.value > 0, a, row), [a, row])),
        ("where", lambda: (mt.where(mt.is_positive(b), a, 0.5), [a])),  # the condition recorded
        ("max", lambda: (mt.max(cube, axis=1), [cube])),
        ("max", lambda: (mt.max(a), [a])),
        ("max", lambda: (mt.max(mt.broadcast_to(copies, shape=(3, 4)), axis=0), [copies])),  # ties
        ("min", lambda: (mt.min(cube, axis=(0, 2), keepdims=True), [cube])),
        ("min", lambda: (mt.min(mt.broadcast_to(col, shape=(3, 4))), [col])),  # four tie
        ("concatenate", lambda: (mt.concatenate([a, col, b], axis=1), [a, col, b])),
        ("concatenate", lambda: (mt.concatenate([cube, cube], axis=-3), [cube])),
        ("stack", lambda: (mt.stack([a, b, a]), [a, b])),
        ("stack", lambda: (mt.stack([row, row * 2.0], axis=-1), [row])),
        ("mse", lambda: (mt.mse(a, b), [a, b])),
        ("mse", lambda: (mt.mse(a, probs, reduction="sum"), [a])),
        ("mse", lambda: (mt.mse(cube, cube * 0.5, reduction="none"), [cube])),
        ("binary_cross_entropy_with_logits",
         lambda: (mt.binary_cross_entropy_with_logits(a, probs), [a])),
        ("binary_cross_entropy_with_logits",
         lambda: (mt.binary_cross_entropy_with_logits(a * 15.0, (probs > 0.5), reduction="sum"), [a])),
        ("binary_cross_entropy_with_logits",
         lambda: (mt.binary_cross_entropy_with_logits(b, probs, reduction="none"), [b])),
        ("binary_cross_entropy_with_logits",  # targets that are Tensors: dy = −z / N
         lambda: (mt.binary_cross_entropy_with_logits(a, pos * 0.4), [a, pos])),
    ]


def _pair(op, *inputs):
    """A case calling ``op`` on ``inputs``, all of them sources."""
    return lambda: (op(*inputs), list(inputs))
