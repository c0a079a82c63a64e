"""Which recorded nodes the backward pass visits, and which of their inputs get a gradient.

Only nodes on a path from a source to the target get VJPs; an input gets a
gradient when it is a Tensor on such a path and the op has a VJP for it
(``None`` in the template or in the recorded VJPs means none). ``expected``
counts the terms each tensor's gradient will have, so that a tensor used by
several ops is summed once all its terms are in.
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Plan:
    """The live nodes, in recorded order, and how many gradient terms each tensor gets."""

    __slots__ = ("nodes", "live", "called", "expected")

    def __init__(self, view: Any, sources: list, called: set[int]) -> None:
        self.live = set(map(id, sources))
        self.called = called  # ids of nodes whose forward is called (no code template)
        self.nodes = []
        for node in view.nodes:
            if any(id(x) in self.live for x in node.inputs if isinstance(x, Tensor)):
                self.live.add(id(node.output))
                self.nodes.append(node)
        self.expected: dict[int, int] = {}
        for node in self.nodes:
            for i, x in enumerate(node.inputs):
                if self.gets_gradient(node, i, x):
                    self.expected[id(x)] = self.expected.get(id(x), 0) + 1

    def gets_gradient(self, node: Any, i: int, x: Any) -> bool:
        """Whether input ``i`` (``x``) of ``node`` receives a gradient term."""
        if not isinstance(x, Tensor) or id(x) not in self.live:
            return False
        recorded = i < len(node.vjps) and node.vjps[i] is not None
        if id(node) in self.called:
            return recorded
        vjps = node.op.code.vjps
        return recorded and i < len(vjps) and vjps[i] is not None
