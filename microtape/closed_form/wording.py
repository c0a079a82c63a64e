"""The derivation's wording, in one place: how the equations name and describe things.

models/DERIVATION.md writes the two-layer network's backward pass with
``delta1``, ``delta2`` for the gradients of each layer's ``x W + b`` (numbered
from the input), ``dJ`` for the seed and ``dW1`` for the gradient of ``W1``. The closed form's equations use the
same words, so that they read beside the derivation; the code uses ``d_W1``.
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


def delta_names(nodes: list, producer: dict[int, Any]) -> dict[int, str]:
    """``delta1``, ``delta2``, ...: each add of a bias to a matrix product, by node id."""
    found, k = {}, 0
    for node in nodes:
        first = node.inputs[0] if node.inputs else None
        made = producer.get(id(first)) if isinstance(first, Tensor) else None
        if node.op.name == "add" and made is not None and made.op.name == "matmul":
            k += 1
            found[id(node)] = f"delta{k}"
    return found


def gradient_symbol(name: str) -> str:
    """The maths name of a gradient: ``dW1``; ``d_dJ_dW`` for a name that is itself one.

    A recorded backward pass names its gradients ``dJ_dW`` (microtape/naming.py),
    so the next pass's gradient of it is written as in the code.
    """
    return f"d_{name}" if name.startswith("d") and "_d" in name else f"d{name}"



def wrap(expr: str) -> str:
    """Parenthesised for use inside a larger maths expression, unless it is one symbol or
    already one bracketed whole (``(a ∘ b)``, not ``(a) ∘ (b)``)."""
    return f"({expr})" if " " in expr and not _bracketed(expr) else expr


def unwrap(expr: str) -> str:
    """``expr`` without the brackets around the whole of it, if it has them."""
    return expr[1:-1] if _bracketed(expr) else expr


def _bracketed(expr: str) -> bool:
    """Whether the opening bracket of ``expr`` closes at its last character."""
    if not expr.startswith("("):
        return False
    depth = 0
    for k, ch in enumerate(expr):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return k == len(expr) - 1
    return False


def shown(is_source: bool, terms: int, maths: str, symbol: str) -> bool:
    """Whether a gradient gets an equation of its own, or is written inline where it is used."""
    return is_source or terms > 1 or len(maths) > 48 or symbol.startswith("delta") or "VJP of" in maths
