"""Losses beside the derivation's softmax cross-entropy: mean squared error and the
binary cross-entropy of logits.

``reduction`` is "mean" (over every element: N is the input's size), "sum",
or "none" (the per-element losses, the input's shape). The gradients are
the familiar ones, written in ops: ``2 (P − T) / N`` and ``(σ(z) − y) / N``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, ShapeError
from .ops import _shape, _value, astype, div, mul, neg, sigmoid, sub
from .primitive import POWER_BINDS, SUM_BINDS, Code, primitive
from .tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check(op: str, a, b, what: str, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """The two inputs as arrays, the second in the first's float dtype (as the loss computes)."""
    if reduction not in _REDUCTIONS:
        raise InputError(f"{op}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if a.shape != b.shape:
        # a number can be spread to the other's shape; a misshapen array needs a reshape
        fix = (f"for one target for every element, pass np.full({a.shape}, value)" if b.size == 1
               else f"reshape one, e.g. t.reshape({a.shape})" if a.size == b.size
               else "pair each prediction with its own target")
        raise ShapeError(f"{op}: {what} must have one shape, got {a.shape} and {b.shape}; "
                         f"broadcasting them would pair values that do not belong together ({fix})")
    if reduction == "mean" and a.size == 0:
        raise InputError(f"{op}: a mean over no elements (shape {a.shape}) is undefined; "
                         f"pass at least one, or reduction='sum'")
    return a, b.astype(a.dtype, copy=False)


def _reduced(x: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return x
    return np.mean(x) if reduction == "mean" else np.sum(x)


def _per_element(g, d, reduction: str, dtype):
    """G ∘ d, divided by N for the mean (N named, so the equation reads ``/ N``)."""
    d = mul(g, d)
    if reduction != "mean":
        return d
    return div(d, Tensor(np.asarray(int(np.prod(_shape(d))), dtype=dtype), name="N"))


def _wrap_reduction(c, body: str, maths: bool = False) -> str:
    reduction = c.params.get("reduction", "mean")
    if reduction == "none":
        return body
    if maths:
        return f"mean({body})" if reduction == "mean" else f"Σ {body}"
    return f"np.{reduction}({body})"


@primitive("dP = G ∘ 2 (P − T) / N,  dT = G ∘ 2 (T − P) / N  (N elements for the mean, "
           "else 1)",
           code=Code(lambda c: _wrap_reduction(c, f"({c.A} - {_second(c)}) ** 2"),
                     math=lambda c: _wrap_reduction(c, f"({c.A} − {c.B})²", maths=True),
                     binds=POWER_BINDS, math_binds=POWER_BINDS),
           grads=(lambda g, c, p, t, reduction="mean":
                  _per_element(g, mul(2.0, sub(p, _as_first(p, t))), reduction, c.dtype),
                  lambda g, c, p, t, reduction="mean":
                  _per_element(g, mul(2.0, sub(_as_first(p, t), p)), reduction, c.dtype)))
def mse(pred, target, /, reduction: str = "mean"):
    """J = mean((P − T)²): the mean squared error of predictions P from targets T (same shape).

    Both get a gradient; T is read in P's dtype (float32 predictions, float64 data).
    """
    p, t = _check("mse", pred, target, "pred and target", reduction)
    return _reduced(np.square(p - t), reduction)


def _as_first(first, second):
    """``second`` in ``first``'s dtype, as a recorded (differentiable) cast where they differ."""
    dtype = _value(first).dtype
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    return second if _value(second).dtype == dtype else astype(second, dtype=dtype.name)


def _second(c) -> str:
    """The second operand in the output's dtype, as the forward casts it."""
    return c.B if c.dtypes[1] == c.dtype else f"{c.B}.astype(np.{c.dtype.name})"


def _bce_code(c) -> str:
    z, y = c.A, _second(c)
    return _wrap_reduction(
        c, f"np.maximum({z}, 0) * (1 - {y}) + np.maximum(-{z}, 0) * {y} + np.log1p(np.exp(-np.abs({z})))")


@primitive("dz = G ∘ (σ(z) − y) / N,  dy = −G ∘ z / N  (N elements for the mean, else 1)",
           code=Code(_bce_code, math=lambda c: _wrap_reduction(
               c, f"softplus({c.A}) − {c.A} ∘ {c.B}", maths=True),
               binds=SUM_BINDS, math_binds=SUM_BINDS),
           grads=(lambda g, c, z, y, reduction="mean":
                  _per_element(g, sub(sigmoid(z), _as_first(z, y)), reduction, c.dtype),
                  lambda g, c, z, y, reduction="mean":
                  _per_element(g, neg(_as_first(y, z)), reduction, c.dtype)))
def binary_cross_entropy_with_logits(logits, targets, /, reduction: str = "mean"):
    """J = mean(log(1 + e^z) − z y): the cross-entropy of σ(z) against targets y in [0, 1].

    Computed as max(z, 0)(1 − y) + max(−z, 0) y + log(1 + e^−|z|), so no exp
    overflows, a confident, right logit keeps its tiny loss instead of rounding
    it to 0, and a target near 1 keeps it too: max(z, 0) − z y, the same number,
    loses it to cancellation (z − z y at y = 1 − 2⁻³⁰).
    The targets have the logits' shape; targets that are Tensors get dJ/dy = −z
    (÷ N for the mean), as probabilities from another network do.
    """
    z, y = _check("binary_cross_entropy_with_logits", logits, targets, "logits and targets",
                  reduction)
    loss = np.maximum(z, 0) * (1 - y) + np.maximum(-z, 0) * y + np.log1p(np.exp(-np.abs(z)))
    return _reduced(loss, reduction)
