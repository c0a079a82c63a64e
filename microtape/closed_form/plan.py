"""Which recorded nodes the backward pass visits, and which of their inputs get a gradient.

Only nodes on a path from a source to the target get VJPs; an input gets a
gradient when it is a Tensor on such a path and the op has a VJP for it
(``None`` among the recorded VJPs means none). ``expected``
counts the terms each tensor's gradient will have, so that a tensor used by
several ops is summed once all its terms are in.
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


def vjp_path(nodes: list, source_ids: set[int], target: Tensor) -> tuple[set[int], list]:
    """The nodes on a path of VJPs from a source to the target, and the ids they reach.

    Forward, a node joins when an input it has a VJP for depends on a source;
    backward, only those the target's gradient reaches stay. A stop_gradient
    has no VJP, so nothing before it is asked for a gradient that never comes.
    """
    live, forward = set(source_ids), []
    for node in nodes:
        if any(id(x) in live for x, vjp in zip(node.inputs, node.vjps) if vjp is not None):
            live.add(id(node.output))
            forward.append(node)
    reached, plan = {id(target)}, []
    for node in reversed(forward):
        if id(node.output) in reached:
            reached.update(id(x) for x, vjp in zip(node.inputs, node.vjps) if vjp is not None)
            plan.append(node)
    plan.reverse()
    return live, plan


class Plan:
    """The live nodes, in recorded order, and how many gradient terms each tensor gets."""

    __slots__ = ("nodes", "live", "called", "derived", "expected")

    def __init__(self, view: Any, sources: list, called: set[int], derived: dict) -> None:
        self.called = called  # ids of nodes whose forward is called (no code template)
        self.derived = derived  # by node id: {input index: its VJP recorded from grads}
        self.live, self.nodes = vjp_path(view.nodes, set(map(id, sources)), view.target)
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
        return recorded and i in self.derived[id(node)]
