"""The ops that choose among values: abs, maximum, minimum, clip, where, max, min; and sqrt.

Each VJP passes G to the value that was chosen. Where two values tie, the
choice is not differentiable; microtape splits G equally between them (as
HIPS autograd and JAX do): ``maximum(A, B)`` gives each of A and B half of G
where A = B, a value exactly on a bound of ``clip`` gets half of G (clip is
a maximum, then a minimum), and ``max`` over an axis shares G equally among
the elements that tie for the largest.

The masks that choose are ops too (``sign``, ``heaviside``, ``above``, ``is_equal``),
computed in the grads from the recorded values: so a closed form computes
them from the values it is called with, and a derivative of a derivative
sees them as the constants they are (their own VJPs are zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .ops import _expand_in_ops, _shape, div, is_equal, mul, sum, unbroadcast
from .primitive import Code, primitive
from .validation import broadcast_hint

_SUMMED = "each summed over the axes it was broadcast along"


# -- the masks: no gradient flows through them ---------------------------------------

@primitive("dA: none (sign is flat wherever it is defined)",
           code=Code("np.sign({A})", math="sign({A})"), grads=(None,))
def sign(a):
    """C = sign(A): −1, 0 or 1 (abs's derivative, 0 at 0)."""
    return np.sign(a)


@primitive("dA: none (H is flat wherever it is defined)",
           code=Code("np.heaviside({A}, 0.5)", math="H({A})"), grads=(None,))
def heaviside(a):
    """C = H(A): 1 where A > 0, ½ where A = 0, 0 where A < 0 (a tie's share of G)."""
    return np.heaviside(a, 0.5)


@primitive("dA, dB: none (the step is flat wherever it is defined)", broadcasts=True,
           explain=broadcast_hint,
           code=Code(lambda c: f"np.add(np.greater({c.A}, {c.B}), np.greater_equal({c.A}, {c.B}), "
                               f"dtype=np.{c.dtype.name}) / 2", math="H({A} − {B})"),
           grads=(None, None))
def above(a, b):
    """C = H(A − B) = ([A > B] + [A ≥ B]) / 2: 1, ½ on a tie, or 0, as floats.

    Compared, not subtracted: A − B overflows for values far apart, and is NaN
    for two equal infinities, which tie as any two equal numbers do.
    """
    dtype = np.result_type(a, b)
    c = np.add(np.greater(a, b), np.greater_equal(a, b),
               dtype=dtype if dtype.kind == "f" else np.float64)
    c /= 2
    return c


# -- elementwise ---------------------------------------------------------------------

@primitive("dA = G ∘ sign(A)  (0 at A = 0)", code=Code("np.abs({A})", math="|{A}|"),
           grads=(lambda g, c, a: mul(g, sign(a)),))
def abs(a):
    """C = |A|."""
    return np.abs(a)


@primitive("dA = G / (2 ∘ C)  (from the output C = √A)",
           code=Code("np.sqrt({A})", math="√{A}", tight=("maths",)),
           grads=(lambda g, c, a: div(g, mul(2.0, c)),))
def sqrt(a):
    """C = √A (A ≥ 0; its slope is infinite at 0)."""
    return np.sqrt(a)


@primitive(f"dA = G ∘ H(A − B),  dB = G ∘ H(B − A)  (H(0) = ½: a tie gives each half of G; "
           f"{_SUMMED})", broadcasts=True, explain=broadcast_hint,
           code=Code("np.maximum({A}, {B})", math="max({A}, {B})"),
           grads=(lambda g, c, a, b: unbroadcast(mul(g, above(a, b)), _shape(a)),
                  lambda g, c, a, b: unbroadcast(mul(g, above(b, a)), _shape(b))))
def maximum(a, b):
    """C = the larger of A and B, elementwise, with broadcasting; a tie shares G equally."""
    return np.maximum(a, b)


@primitive(f"dA = G ∘ H(B − A),  dB = G ∘ H(A − B)  (H(0) = ½: a tie gives each half of G; "
           f"{_SUMMED})", broadcasts=True, explain=broadcast_hint,
           code=Code("np.minimum({A}, {B})", math="min({A}, {B})"),
           grads=(lambda g, c, a, b: unbroadcast(mul(g, above(b, a)), _shape(a)),
                  lambda g, c, a, b: unbroadcast(mul(g, above(a, b)), _shape(b))))
def minimum(a, b):
    """C = the smaller of A and B, elementwise, with broadcasting; a tie shares G equally."""
    return np.minimum(a, b)


def _bound(c, k: int) -> str:
    return c.name(k) if k < len(c.values) else "None"


def _clip_grad(g, a, lo, hi):
    """dA = G ∘ H(A − lo) ∘ H(hi − A), each factor only for a bound that was given."""
    d = g
    if lo is not None:
        d = mul(d, above(a, lo))
    if hi is not None:
        d = mul(d, above(hi, a))
    return unbroadcast(d, _shape(a))


def _clip_lo_grad(g, a, lo, hi):
    """dlo = G ∘ H(lo − A) ∘ H(hi − lo): where the lower bound is the value, as maximum
    then minimum hand it G (the last factor, 1 for bounds in order, only with hi)."""
    d = mul(g, above(lo, a))
    if hi is not None:
        d = mul(d, above(hi, lo))
    return unbroadcast(d, _shape(lo))


def _clip_hi_grad(g, a, lo, hi):
    """dhi = G ∘ H(max(A, lo) − hi): where the upper bound is the value."""
    kept = a if lo is None else maximum(a, lo)
    return unbroadcast(mul(g, above(kept, hi)), _shape(hi))


@primitive("dA = G ∘ H(A − lo) ∘ H(hi − A),  dlo = G ∘ H(lo − A) ∘ H(hi − lo),  "
           "dhi = G ∘ H(max(A, lo) − hi)  (maximum then minimum: a value on a bound gives "
           "each half of G; each summed over the axes it was broadcast along)",
           broadcasts=True, explain=broadcast_hint,
           code=Code(lambda c: f"np.clip({c.A}, {_bound(c, 1)}, {_bound(c, 2)})",
                     math=lambda c: f"clip({c.A}, {_bound(c, 1)}, {_bound(c, 2)})"),
           grads=(lambda g, c, a, lo=None, hi=None: _clip_grad(g, a, lo, hi),
                  lambda g, c, a, lo=None, hi=None: _clip_lo_grad(g, a, lo, hi),
                  lambda g, c, a, lo=None, hi=None: _clip_hi_grad(g, a, lo, hi)))
def clip(a, lo=None, hi=None, /):
    """C = A limited to [lo, hi] (None: no bound; by position, as np.clip(a, 0, None)).

    C is min(max(A, lo), hi), and its gradients are that composition's: a
    value exactly on a bound gets half of G, and a bound that is a Tensor
    gets G wherever it is the value (half on a tie).
    """
    if lo is None and hi is None:
        raise InputError("clip: give a lower bound, an upper bound or both (None means no bound)")
    return np.clip(a, lo, hi)


@primitive(f"da = G where the condition holds, else 0;  db = G where it does not  "
           f"(the condition gets none; {_SUMMED})", broadcasts=True, explain=broadcast_hint,
           code=Code(lambda c: f"np.where({c.A}, {c.B}, {c.name(2)})",
                     math=lambda c: f"({c.B} where {c.A}, else {c.name(2)})"),
           grads=(None,
                  lambda g, c, cond, a, b: unbroadcast(where(cond, g, 0.0), _shape(a)),
                  lambda g, c, cond, a, b: unbroadcast(where(cond, 0.0, g), _shape(b))))
def where(condition, a, b, /):
    """C = A where ``condition`` holds, else B (numpy's where, with broadcasting).

    ``condition`` is a bool array (``x > 0``) or a Tensor of 0s and 1s
    (``mt.is_positive(x)``, which a compiled function computes afresh).
    """
    return np.where(condition, a, b)


# -- reductions ------------------------------------------------------------------------

def _extreme_grad(g, c, a, axis, keepdims):
    """G put back on the reduced axes, shared equally among the elements equal to C there."""
    chosen = is_equal(a, _expand_in_ops(c, a, axis, keepdims))
    return div(mul(_expand_in_ops(g, a, axis, keepdims), chosen),
               sum(chosen, axis=axis, keepdims=True))


def _reduce_code(name: str):
    def code(c) -> str:
        args = "" if c.params.get("axis") is None else f", axis={c.lit(c.params['axis'])}"
        args += ", keepdims=True" if c.params.get("keepdims") else ""
        return f"np.{name}({c.A}{args})"
    return code


def _reduce_math(name: str):
    def math(c) -> str:
        axis = c.params.get("axis")
        return f"{name} {c.A}" if axis is None else f"{name} over axes {axis} of {c.A}"
    return math


@primitive("dA = G ∘ [A = C] / (how many tie for C), copied along the reduced axes "
           "(ties share G equally)",
           code=Code(_reduce_code("max"), math=_reduce_math("max"), tight=("maths",)),
           grads=(lambda g, c, a, axis=None, keepdims=False: _extreme_grad(g, c, a, axis, keepdims),))
def max(a, axis: Any = None, keepdims: bool = False):
    """C = the largest element of A over ``axis`` (all by default); ties share G equally."""
    return np.max(a, axis=axis, keepdims=keepdims)


@primitive("dA = G ∘ [A = C] / (how many tie for C), copied along the reduced axes "
           "(ties share G equally)",
           code=Code(_reduce_code("min"), math=_reduce_math("min"), tight=("maths",)),
           grads=(lambda g, c, a, axis=None, keepdims=False: _extreme_grad(g, c, a, axis, keepdims),))
def min(a, axis: Any = None, keepdims: bool = False):
    """C = the smallest element of A over ``axis`` (all by default); ties share G equally."""
    return np.min(a, axis=axis, keepdims=keepdims)

