"""Which pass each statement belongs to, and the headings that say so in the source.

A tape that recorded a backward pass (``create_graph=True``) holds the
forward pass, that backward pass as ops, perhaps more of the user's ops on
the gradients, and then the closed form adds its own backward pass. Each
run of statements from one pass gets a heading; a backward pass is
numbered by the order of derivative it computes, found from the marks the
recorded pass left on its nodes (``view.part``):

    # forward pass
    # first backward pass (of J), recorded
    # forward pass, continued
    # second backward pass (of s)

A tape without a recorded pass keeps the two headings it always had.
"""

from __future__ import annotations

from typing import Any

from .ir import Stmt

_ORDINALS = ("first", "second", "third", "fourth", "fifth")


def _ordinal(order: int) -> str:
    return _ORDINALS[order - 1] if order <= len(_ORDINALS) else f"order-{order}"


def headings(view: Any, forward: list[Stmt]) -> tuple[dict[int, str], str, dict[int, str]]:
    """{forward statement index: heading} where a new pass starts, the backward heading, and
    {id(target): heading} of each recorded pass.

    The first statement's heading, ``forward pass``, is the printer's own.
    """
    orders: dict[int, int] = {}  # id(tensor) -> the order of derivative it holds
    found, previous, passes = {}, None, {}
    for k, stmt in enumerate(forward):
        if stmt.kind == "seed":  # a seed starts its pass: it belongs with the statement after it
            stmt = next((s for s in forward[k + 1:] if s.node is not None), stmt)
        node = stmt.node
        part = view.part(node.output) if node is not None else None
        if part is not None:
            order = orders[id(node.output)] = _order(node.part[0], orders)
        elif node is not None:  # the user's op: as high as its highest input
            orders[id(node.output)] = max((orders.get(id(x), 0) for x in node.inputs), default=0)
        key = ("pass", id(part.target)) if part is not None else "forward"
        if key != previous and (k > 0 or key != "forward"):
            found[k] = (f"{_ordinal(order)} backward pass (of {view.named(part.target)}), recorded"
                        if part is not None else "forward pass, continued")
            if part is not None:
                passes.setdefault(id(part.target), found[k])
        previous = key
    if not passes:
        return {}, "backward pass", {}
    target = view.target
    order = 1 + orders.get(id(target), 0)
    return found, f"{_ordinal(order)} backward pass (of {view.of(target)})", passes


def _order(recorded: Any, orders: dict[int, int]) -> int:
    """The order of derivative a recorded pass computes: one more than what its VJPs read."""
    read = (x for f, i in recorded.steps for x in (f.output, f.inputs[i]))
    return 1 + max((orders.get(id(x), 0) for x in read), default=0)
