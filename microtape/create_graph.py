"""The backward pass that is itself recorded: ``tape.gradient(..., create_graph=True)``.

The same plain loop over the tape as ``tape._sweep``, but each node's VJPs
are the ones its op spells in microtape's ops (``Primitive.differentiable_vjp``)
and run on Tensors, so every tape active meanwhile records the backward pass
and the gradients come back as Tensors: an outer tape can differentiate them
again. A derivative of a derivative is nothing more than that.

Each op a VJP records is marked with where it came from (``Node.origin``:
the forward node and the input whose gradient it computes), so a drawing or
a closed form can tell the backward pass from the forward one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .tensor import Tensor


def sweep_graph(nodes: list, cotangents: dict, wanted: set[int], stale: dict,
                check: Callable, recording: tuple = ()) -> dict[int, Tensor]:
    """Walk ``nodes`` (the tape's) in reverse from the seeds in ``cotangents`` (by their
    targets' ids); return {id(source): gradient Tensor}.

    ``check(node, k)`` raises for a ``stale`` node (changed in place since recorded).
    ``recording`` are the tapes active meanwhile, whose new nodes get their origin.
    """
    live = set(wanted)
    plan = []
    for node in nodes:  # as tape._plan: only the nodes between the sources and the target
        if not live.isdisjoint(map(id, node.inputs)):
            live.add(id(node.output))
            plan.append(node)
    kept: dict[int, Tensor] = {}
    # Every active tape records the same Node objects: reading one tape tells them all.
    recorder = next((t for t in reversed(recording) if not t.spent), None)
    while plan:
        node = plan.pop()
        out = id(node.output)
        g = cotangents.pop(out, None)
        if g is None:
            continue  # the target does not depend on this node
        if stale and out in stale:
            check(*stale.pop(out))
        if out in wanted:  # an intermediate asked for (tape.backward asks for all)
            kept[out] = g
        for i, x in enumerate(node.inputs):
            key = id(x)
            if key in live and node.vjps[i] is not None:
                start = len(recorder.nodes) if recorder is not None else 0
                dx = node.op.differentiable_vjp(i)(g, node.output, *node.inputs, **node.params)
                # Fan-out: the sum is an op too, so the outer tape sees it.
                cotangents[key] = cotangents[key] + dx if key in cotangents else dx
                if recorder is not None:
                    for recorded in recorder.nodes[start:]:
                        recorded.origin = (node, i)
    for key in wanted.intersection(cotangents):
        kept[key] = cotangents[key]
    return kept


def as_tensors(grads: dict[int, Tensor], sources: list[Tensor]) -> list[Tensor]:
    """One gradient Tensor per source, in the source's dtype; zeros where none was reached."""
    out = []
    for s in sources:
        g = grads.get(id(s))
        if g is None:
            g = Tensor(np.zeros(s.shape, dtype=s.dtype))
        elif not isinstance(g, Tensor):  # a VJP that gave a constant array
            g = Tensor(g)
        if g.dtype != s.dtype:  # float64 constants met a float32 source: cast back, as recorded
            g = g.astype(s.dtype)
        out.append(g)
    return out
