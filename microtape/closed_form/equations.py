"""The backward pass in the derivation's notation: ``cf.equations`` and the step page's lines.

Each gradient is either shown as an equation of its own (a source's, a sum
of several terms, a long one, a ``delta``) or written inline where it is
used; ``wording.py`` holds the words and that rule.
"""

from __future__ import annotations

from typing import Any

from ..naming import identifier
from ..ops import broadcast_axes
from ..tensor import Tensor
from . import wording


class Equations:
    """Per tensor id, its gradient's symbol and maths; per node, the step page's line."""

    __slots__ = ("view", "contexts", "target", "producer", "deltas", "symbols", "gmath",
                 "by_node")

    def __init__(self, view: Any, contexts: dict) -> None:
        self.view, self.contexts, self.target = view, contexts, view.target
        self.producer = {id(node.output): node for node in view.nodes}
        self.deltas = wording.delta_names(view.nodes, self.producer)
        self.symbols = {id(self.target): wording.gradient_symbol(view.of(self.target))}
        self.gmath = {id(self.target): "1"}
        self.by_node: dict[int, str] = {}

    def symbol(self, x: Tensor) -> str:
        """``dW1``, or the derivation's ``delta2`` for a layer's ``x W + b``."""
        key = id(x)
        if key not in self.symbols:
            node = self.producer.get(key)
            delta = self.deltas.get(id(node)) if node is not None else None
            self.symbols[key] = delta or wording.gradient_symbol(self.view.of(x))
        return self.symbols[key]

    def term(self, node: Any, i: int, x: Tensor, called: bool, by_name: bool = False) -> str:
        """Input i's gradient term as maths, from G's maths (or, ``by_name``, G's symbol).

        A called op (no code template) has no formula to show: its term is
        the VJP applied to G's maths either way.
        """
        out = node.output
        if called:
            return f"VJP of {identifier(node.op.name)}({wording.wrap(self.gmath[id(out)])})"
        g = self.symbol(out) if by_name else wording.wrap(self.gmath[id(out)])
        c, code = self.contexts[id(node)], node.op.code
        kept = c._g, c.i, c.one
        c._g, c.i, c.one = g, i, id(out) == id(self.target)
        maths = c.render(code.math[i]) if i < len(code.math) and code.math[i] else "?"
        c._g, c.i, c.one = kept
        if node.op.broadcasts and x.shape != out.shape:
            axes = broadcast_axes(x.shape, out.shape)
            maths = wording.summed(maths, axes, x.shape, out.shape)
        return maths

    def received(self, x: Tensor, is_source: bool, terms: list[str]) -> str | None:
        """All of x's terms are in: its equation when shown, else None (its maths goes inline)."""
        maths, symbol = " + ".join(terms), self.symbol(x)
        if wording.shown(is_source, len(terms), maths, symbol):
            self.gmath[id(x)] = symbol
            return f"{symbol} = {maths}"
        self.gmath[id(x)] = maths
        return None
