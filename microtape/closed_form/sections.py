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


def headings(view: Any, forward: list[Stmt]) -> tuple[dict[int, str], str]:
    """{forward statement index: heading} where a new pass starts, and the backward heading.

    The first statement's heading, ``forward pass``, is the printer's own.
    """
    orders: dict[int, int] = {}  # id(tensor) -> the order of derivative it holds
    found, previous, recorded = {}, None, False
    for k, stmt in enumerate(forward):
        if stmt.kind == "seed":  # a seed starts its pass: it belongs with the statement after it
            stmt = next((s for s in forward[k + 1:] if s.node is not None), stmt)
        part = view.part(stmt.node.output) if stmt.node is not None else None
        order = _order(stmt.node, part, orders)
        key = ("pass", id(part.target)) if part is not None else "forward"
        if key != previous and (k > 0 or key != "forward"):
            found[k] = (f"{_ordinal(order)} backward pass (of {view.of(part.target)}), recorded"
                        if part is not None else "forward pass, continued")
        recorded |= part is not None
        previous = key
    if not recorded:
        return {}, "backward pass"
    target = view.target
    order = 1 + orders.get(id(target), 0)
    return found, f"{_ordinal(order)} backward pass (of {view.of(target)})"


def _order(node: Any, part: Any, orders: dict[int, int]) -> int:
    """Note the order of derivative ``node``'s output holds; for a recorded op, its pass's order."""
    if node is None:
        return 1
    if part is None:  # the user's op: as high as its highest input
        orders[id(node.output)] = max((orders.get(id(x), 0) for x in node.inputs), default=0)
        return 0
    forward, i = node.origin
    order = 1 + max(orders.get(id(forward.output), 0), orders.get(id(forward.inputs[i]), 0))
    orders[id(node.output)] = order
    return order
