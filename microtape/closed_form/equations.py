"""The backward pass in the derivation's notation: ``cf.equations`` and the step page's lines.

Each gradient is either shown as an equation of its own (a source's, a sum
of several terms, a long one, a ``delta``) or written inline where it is
used; ``wording.py`` holds the words and that rule.
"""

from __future__ import annotations

from typing import Any

from ..naming import identifier
import numpy as np

from ..tensor import Tensor
from . import wording
from .derive import Writer


class Equations:
    """Per tensor id, its gradient's symbol and maths; per node, the step page's line."""

    __slots__ = ("view", "contexts", "derived", "target", "producer", "deltas", "symbols",
                 "taken", "gmath", "by_node")

    def __init__(self, view: Any, contexts: dict, derived: dict) -> None:
        self.view, self.contexts, self.target = view, contexts, view.target
        self.derived = derived  # by node id: {input index: its VJP recorded from grads}
        self.producer = {id(node.output): node for node in view.nodes}
        self.deltas = wording.delta_names(view.nodes, self.producer)
        self.symbols = {id(self.target): wording.gradient_symbol(view.of(self.target))}
        # The tensors' own names and the symbols handed out: a gradient's symbol is none of them
        self.taken = {view.of(x) for node in view.nodes for x in (*node.inputs, node.output)
                      if isinstance(x, Tensor) and x in view} | set(self.symbols.values())
        self.gmath = {id(self.target): "1"}
        self.by_node: dict[int, str] = {}

    def symbol(self, x: Tensor) -> str:
        """``dW1``, or the derivation's ``delta2`` for a layer's ``x W + b``."""
        key = id(x)
        if key not in self.symbols:
            node = self.producer.get(key)
            delta = self.deltas.get(id(node)) if node is not None else None
            symbol = delta or wording.gradient_symbol(self.view.of(x))
            if symbol in self.taken:  # a tensor named dW1 beside W1: the code's name, d_W1
                symbol = base = self.view.grad(x)
                k = 2
                while symbol in self.taken:
                    symbol, k = f"{base}{k}", k + 1
            self.taken.add(symbol)
            self.symbols[key] = symbol
        return self.symbols[key]

    def term(self, node: Any, i: int, x: Tensor, called: bool, by_name: bool = False) -> str:
        """Input i's gradient term as maths, from G's maths (or, ``by_name``, G's symbol).

        The term is the op's grads printed with each recorded op's forward
        maths (derive.py), the node's operands by their names. A called op
        (no code template) has no formula to show: its term is the VJP
        applied to G's maths either way.
        """
        out = node.output
        g = self.symbol(out) if by_name else wording.wrap(self.gmath[id(out)])
        if called:
            return f"VJP of {identifier(node.op.name)}({g})"
        d, c = self.derived[id(node)][i], self.contexts[id(node)]
        outer = {id(node.output): self.view.of(node.output)}
        outer.update((id(v), self.view.of(v)) for v in node.inputs
                     if isinstance(v, (Tensor, np.ndarray)) and v in self.view)
        return Writer(d, outer, "", self.view, {}).maths(g, id(out) == id(self.target))

    def received(self, x: Tensor, is_source: bool, terms: list[str]) -> str | None:
        """All of x's terms are in: its equation when shown, else None (its maths goes inline)."""
        # one term that is G bracketed whole needs no brackets of its own: wrap() adds them where used
        maths = " + ".join(terms) if len(terms) > 1 else wording.unwrap(terms[0])
        symbol = self.symbol(x)
        if wording.shown(is_source, len(terms), maths, symbol):
            self.gmath[id(x)] = symbol
            return f"{symbol} = {maths}"
        self.gmath[id(x)] = maths
        return None
