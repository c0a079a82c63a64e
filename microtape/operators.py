"""Tensor's operators and array methods, attached once the ops exist.

``a + b``, ``a @ b``, ``-a``, ``abs(a)``, ``a ** 2``, ``a[i]``, ``a.T``,
``a.sum()``, ``a.max()`` and numpy's own operators on a Tensor (``ndarray +
Tensor``) each forward to one op of ``ops.py`` or ``selection.py``;
``ndarray < Tensor`` is the Tensor's own comparison, which reads the values. They are set on ``Tensor`` here, above both modules, so that
imports run one way (tensor, tape, primitive, ops, then this), as HIPS
autograd attaches its box methods after defining the primitives.
"""

from __future__ import annotations

import numpy as np

from . import joining, losses, ops, selection
from .ops import (add, astype, div, getitem, matmul, mean, mul, neg, pow, reshape, stop_gradient,
                  sub, sum, transpose)
from .selection import abs as _abs, max as _max_op, min as _min_op
from .state import _tracing
from .tensor import Tensor

# numpy ufunc name -> op: exactly Python's arithmetic operators
_OPERATOR_UFUNCS = {
    "add": add, "subtract": sub, "multiply": mul, "divide": div,
    "true_divide": div, "matmul": matmul, "power": pow, "negative": neg,
}
# ...and its comparisons (``ndarray > Tensor``), which read the values as Tensor's own do
_COMPARISON_UFUNCS = {"less": "__gt__", "less_equal": "__ge__", "greater": "__lt__",
                      "greater_equal": "__le__", "equal": "__eq__", "not_equal": "__ne__"}
# numpy's names for functions microtape spells otherwise
_ALIASES = {"absolute": "abs", "amax": "max", "amin": "min", "fmax": "maximum",
            "fmin": "minimum", "concat": "concatenate"}


def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
    """Route numpy's operators to the tape; refuse every other ufunc.

    ``ndarray + Tensor`` reaches here as ``np.add(ndarray, Tensor)``; the ops
    it routes are exactly Python's arithmetic operators, and its comparisons
    go to the Tensor's own (``ndarray < t`` is ``t > ndarray``). Anything else
    (``np.exp(t)``) would compute on the value and silently leave the tape, so
    it is an error that names the op to use instead.
    """
    op = _OPERATOR_UFUNCS.get(ufunc.__name__)
    if op is not None and method == "__call__" and not kwargs:
        return op(*inputs)
    mirrored = _COMPARISON_UFUNCS.get(ufunc.__name__)
    if mirrored is not None and method == "__call__" and not kwargs and len(inputs) == 2:
        return getattr(inputs[1], mirrored)(inputs[0])  # ndarray < t is t > ndarray
    name = ufunc.__name__
    raise TypeError(
        f"np.{name} was called on a Tensor; numpy cannot record it on the tape, "
        f"so the gradient would be lost: {_hint(name)}, or call np.{name} on t.value for a "
        f"constant"
    )


def __array_function__(self, func, types, args, kwargs):
    name = func.__name__
    raise TypeError(
        f"np.{name} was called on a Tensor; numpy cannot record it on the tape: "
        f"{_hint(name)}, or call np.{name} on t.value for a constant"
    )


def _hint(name: str) -> str:
    name = _ALIASES.get(name, name)
    if any(hasattr(module, name) for module in (ops, selection, joining, losses)):
        return f"use mt.{name}(...)"
    return "use the ops in microtape"


def _T(self) -> Tensor:
    return transpose(self)


def _sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    return sum(self, axis=axis, keepdims=keepdims)


def _mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    return mean(self, axis=axis, keepdims=keepdims)


def _max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    return _max_op(self, axis=axis, keepdims=keepdims)


def _min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    return _min_op(self, axis=axis, keepdims=keepdims)


def _reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
    return reshape(self, *shape)


def _transpose(self, *axes: int) -> Tensor:
    return transpose(self, *axes)


def _detach(self) -> Tensor:
    """The same value as a new Tensor that tapes treat as a constant.

    While value_and_grad(..., compile=True) traces, it is recorded as
    ``mt.stop_gradient``, so the closed form computes it at every call
    instead of keeping the first call's value; outside, nothing is recorded.
    """
    if _tracing.get():
        return stop_gradient(self)
    return Tensor(self.value, name=self.name)


_METHODS = {
    "__add__": lambda self, other: add(self, other),
    "__radd__": lambda self, other: add(other, self),
    "__sub__": lambda self, other: sub(self, other),
    "__rsub__": lambda self, other: sub(other, self),
    "__mul__": lambda self, other: mul(self, other),
    "__rmul__": lambda self, other: mul(other, self),
    "__truediv__": lambda self, other: div(self, other),
    "__rtruediv__": lambda self, other: div(other, self),
    "__matmul__": lambda self, other: matmul(self, other),
    "__rmatmul__": lambda self, other: matmul(other, self),
    "__pow__": lambda self, exponent: pow(self, exponent),
    "__rpow__": lambda self, base: pow(base, self),
    "__neg__": lambda self: neg(self),
    "__abs__": lambda self: _abs(self),
    "__pos__": lambda self: self,
    "__getitem__": lambda self, index: getitem(self, index),
    "__array_ufunc__": __array_ufunc__,
    "__array_function__": __array_function__,
    "T": property(_T),
    "sum": _sum,
    "mean": _mean,
    "max": _max,
    "min": _min,
    "reshape": _reshape,
    "transpose": _transpose,
    "detach": _detach,
    "astype": lambda self, dtype: astype(self, dtype=np.dtype(dtype).name),
}

for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)
