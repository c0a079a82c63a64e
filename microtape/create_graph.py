"""The backward pass that is itself recorded: ``tape.gradient(..., create_graph=True)``.

The same plain loop over the tape as ``tape._sweep``, but each node's VJPs
are the ones its op spells in microtape's ops (``Primitive.differentiable_vjp``)
and run on Tensors, so every tape active meanwhile records the backward pass
and the gradients come back as Tensors: an outer tape can differentiate them
again. A derivative of a derivative is nothing more than that.

Each op a VJP records is marked with where it came from (``Node.origin``:
the forward node and the input whose gradient it computes) and with what
it is (``Node.part``: the ``RecordedPass`` and which part of the gradient),
so that the naming view, the drawings and the closed form can tell the
passes apart and name a gradient for what it is (``dJ_dh``) without
retracing the loop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .tensor import Tensor


class RecordedPass:
    """One recorded backward pass: its target, and its seed (the target's gradient).

    ``ones`` says the pass made the seed itself (ones, for a scalar target),
    so it is a constant of the recording and not an input; a seed the user
    gave is an input like any other Tensor. ``steps`` lists every VJP it ran
    as (forward node, input), in order, those that recorded no op (an add's
    ``dA = G``) too: the closed form writes each one's equation.
    """

    __slots__ = ("target", "seed", "ones", "steps")

    def __init__(self, target: Tensor, seed: Tensor, ones: bool) -> None:
        self.target, self.seed, self.ones = target, seed, ones
        self.steps: list[tuple] = []

    def __repr__(self) -> str:
        return f"RecordedPass(of {self.target!r})"


class _Marks:
    """What each recorded node of one pass is, set on ``Node.origin`` and ``Node.part``.

    ``part`` is ``(pass, k)``: k = 0 for the whole gradient of the input
    ``origin`` names, j > 0 for its j-th term when that input feeds several
    ops, −j for the sum of its first j terms, None for a step inside a VJP.
    """

    __slots__ = ("recorded", "terms", "last")

    def __init__(self, recorded: RecordedPass) -> None:
        self.recorded = recorded
        self.terms: dict[int, int] = {}   # id(x) -> terms of its gradient so far
        self.last: dict[int, object] = {}  # id(x) -> the node whose output is its gradient so far

    def vjp(self, made: list, node, i: int, dx, total) -> None:
        """The nodes ``made`` by input i's VJP of ``node`` (and the fan-out sum, if any)."""
        key = id(node.inputs[i])
        self.recorded.steps.append((node, i))
        k = self.terms[key] = self.terms.get(key, 0) + 1
        summed = k > 1 and made and made[-1].output is total
        for recorded in made:
            recorded.origin = (node, i)
            recorded.part = (self.recorded, None)
        term = next((n for n in reversed(made[:-1] if summed else made) if n.output is dx), None)
        if term is not None:
            term.part = (self.recorded, k)
        if summed:
            made[-1].part = (self.recorded, -k)
        self.last[key] = made[-1] if summed else term

    def complete(self, key: int, g) -> None:
        """Every term of ``key``'s gradient is in: the node that made ``g`` made all of it."""
        last = self.last.pop(key, None)
        if last is not None and last.output is g:
            last.part = (self.recorded, 0)

    def finish(self, cotangents: dict) -> None:
        """The pass is over: what is left are the leaves' gradients, each complete now."""
        for key, g in cotangents.items():
            self.complete(key, g)


def sweep_graph(nodes: list, target: Tensor, cotangents: dict, wanted: set[int], stale: dict,
                check: Callable, recording: tuple = (), ones: bool = False,
                checks=None) -> dict[int, Tensor]:
    """Walk ``nodes`` (the tape's) in reverse from the seeds in ``cotangents`` (by their
    targets' ids: ``target``'s, and any more a pullback starts from); return
    {id(source): gradient Tensor}.

    ``check(node, k)`` raises for a ``stale`` node (changed in place since recorded).
    ``recording`` are the tapes active meanwhile, whose new nodes get marked;
    ``ones`` says the seed is the pass's own ones, not the user's. ``checks``, in
    anomaly mode (anomaly.GraphChecks), checks the seed and runs each VJP.
    """
    plan, live = _plan(nodes, wanted)
    kept: dict[int, Tensor] = {}
    recorder, marks = _recorder(recording, target, cotangents[id(target)], ones)
    if checks is not None:
        checks.seed(cotangents[id(target)])
    while plan:
        node = plan.pop()
        out = id(node.output)
        g = cotangents.pop(out, None)
        if g is None:
            continue  # the target does not depend on this node
        if marks is not None:
            marks.complete(out, g)
        if stale and out in stale:
            check(*stale.pop(out))
        if out in wanted:  # an intermediate asked for (tape.backward asks for all)
            kept[out] = g
        for i, x in enumerate(node.inputs):
            key = id(x)
            if key in live and node.vjps[i] is not None:
                start = len(recorder.nodes) if recorder is not None else 0
                dx, cotangents[key] = _term(node, i, g, cotangents.get(key), checks, kept)
                if marks is not None:
                    marks.vjp(recorder.nodes[start:], node, i, dx, cotangents[key])
    if marks is not None:
        marks.finish(cotangents)
    kept.update((key, cotangents[key]) for key in wanted.intersection(cotangents))
    return kept


def _term(node, i: int, g, earlier, checks, kept: dict) -> tuple:
    """Input i's gradient term from ``node``'s VJP, and its sum with the ``earlier`` terms
    (None if it is the first)."""
    if checks is not None:  # anomaly mode: the same, each result checked
        return checks.step(node, i, g, earlier, kept)
    dx = run_vjp(node, i, g)
    # Fan-out: the sum is an op too, so the outer tape sees it.
    return dx, dx if earlier is None else earlier + dx


def run_vjp(node, i: int, g):
    """Input i's VJP of ``node``, run as ops on ``g``: a Tensor the active tapes record."""
    d = node.op.differentiable_vjp(i)(g, node.output, *node.inputs, **node.params)
    if node.op.checks_vjps:  # an op declared outside microtape (see Primitive)
        node.op.check_vjp_shape(i, d, node.inputs[i])
    return d


def _recorder(recording: tuple, target: Tensor, seed: Tensor, ones: bool) -> tuple:
    """The tape whose new nodes show what each VJP recorded, and the marks to set on them."""
    # Every active tape records the same Node objects: reading one tape tells them all.
    recorder = next((t for t in reversed(recording) if not t.spent), None)
    return recorder, (_Marks(RecordedPass(target, seed, ones)) if recorder is not None else None)


def _plan(nodes: list, wanted: set[int]) -> tuple[list, set[int]]:
    """As tape._plan: the nodes between the sources and the target, and the ids they reach."""
    live = set(wanted)
    plan = []
    for node in nodes:
        if not live.isdisjoint(map(id, node.inputs)):
            live.add(id(node.output))
            plan.append(node)
    return plan, live


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
