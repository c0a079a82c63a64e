"""The equations of a recorded backward pass, in the names its tensors have in the code.

A tape that recorded ``tape.gradient(J, ..., create_graph=True)`` holds that
pass as ops; the closed form writes them as code like any op. Their
equations are the first-order ones of ``J``: each VJP the pass ran
(``RecordedPass.steps``, those that recorded no op too) applied to the
gradient of its op's output, by the same templates the closed form's own
backward pass uses (equations.py), but with G named ``dJ_dh`` as the naming
view names it. A gradient with several terms is their sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor
from .context import Context, literal
from .derive import derive
from .equations import Equations


def recorded_equations(view: Any, contexts: dict, consts: dict) -> list[tuple[Any, list[str]]]:
    """Per recorded pass in the view, in order: (its target, its equations)."""
    passes: dict[int, Any] = {}
    for node in view.nodes:
        part = getattr(node, "part", None)
        if part is not None:
            passes.setdefault(id(part[0]), part[0])
    return [(p.target, _equations(view, p, contexts, consts)) for p in passes.values()]


def _equations(view: Any, recorded: Any, contexts: dict, consts: dict) -> list[str]:
    """``dJ_dx = ...`` for every tensor the pass reached, in the order the pass completed them."""
    symbols = _gradient_names(view, recorded)

    def symbol(x: Any) -> str:
        return symbols.get(id(x)) or f"d{view.named(recorded.target)}_d{view.named(x)}"

    expected: dict[int, int] = {}
    for f, i in recorded.steps:
        expected[id(f.inputs[i])] = expected.get(id(f.inputs[i]), 0) + 1
    derived: dict[int, dict] = {}
    maths = Equations(view, contexts, derived)
    terms: dict[int, list[str]] = {}
    lines = []
    for f, i in recorded.steps:
        if id(f) not in contexts:
            contexts[id(f)] = _context(f, view, consts)
        x, code = f.inputs[i], f.op.code
        called = code is None or code.when is not None and not code.when(contexts[id(f)])
        if not called:  # the VJP's maths, from the op's grads as the closed form's own pass
            d = derived.setdefault(id(f), {}).get(i) or derive(f, i)
            derived[id(f)][i], called = d, d is None
        maths.symbols[id(f.output)] = symbol(f.output)
        terms.setdefault(id(x), []).append(maths.term(f, i, x, called, by_name=True))
        if len(terms[id(x)]) == expected[id(x)]:
            lines.append(f"{symbol(x)} = {' + '.join(terms.pop(id(x)))}")
    return lines


def _gradient_names(view: Any, recorded: Any) -> dict[int, str]:
    """By tensor id, the code's name of its whole gradient in this pass, where the view holds it."""
    found = {}
    if recorded.ones:  # the derivation's "1", as the closed form's own pass writes its seed
        found[id(recorded.target)] = "1"
    elif recorded.seed in view:
        found[id(recorded.target)] = view.of(recorded.seed)
    for node in view.nodes:
        part = view.part(node.output)
        if part is not None and part.suffix == "" and node.part[0] is recorded:
            found[id(part.wrt)] = view.of(node.output)
    return found


def _context(node: Any, view: Any, consts: dict) -> Context:
    """A template context for a forward op the closed form does not compute (``J``'s own op)."""
    texts = []
    for x in node.inputs:
        if isinstance(x, (Tensor, np.ndarray)):
            texts.append(view.named(x))
        else:
            try:
                texts.append(literal(x))
            except TypeError:
                texts.append("…")
    code = node.op.code
    saved = {k: k for k in (code.saved if code else ())}
    temps = {k: k for k in (code.temps if code else ())}
    return Context(node, texts, view.named(node.output), saved, temps, consts, view)
