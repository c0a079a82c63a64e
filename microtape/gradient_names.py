"""What a recorded backward pass made, for the naming view to name it (see naming.py).

A backward pass run with ``create_graph=True`` marks each op it records
(create_graph.py): ``Node.origin`` is the forward node and input whose VJP
it belongs to, ``Node.part`` the pass and which part of that input's
gradient its output is. From those marks alone, and without the tape that
ran the pass, this module says what each such tensor is: the gradient of
which target with respect to which tensor, and which piece of it.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import numpy as np

from .tensor import Tensor


class GradientPart(NamedTuple):
    """A tensor of a recorded pass: a part of the gradient of ``target`` w.r.t. ``wrt``.

    ``suffix`` tells the part: ``""`` the whole gradient, ``"_2"`` its second
    term (``wrt`` feeds several ops), ``"_1to2"`` the sum of its first two
    terms, ``"_t1"`` (after a term's suffix) the first step inside the VJP
    that computes it.
    """

    target: Tensor
    wrt: Tensor
    suffix: str
    reader: tuple = ()  # (forward node, input position): where ``wrt`` is read


def _suffix(k: int) -> str:
    return "" if k == 0 else (f"_{k}" if k > 0 else f"_1to{-k}")


def gradient_parts(nodes: Iterable[Any]) -> dict[int, GradientPart]:
    """By tensor id: what each output of a recorded pass in ``nodes`` is, and each seed of ones."""
    nodes = [n for n in nodes if getattr(n, "part", None) is not None and n.origin is not None]
    terms: dict[tuple, str] = {}  # (pass, forward node, input) -> the suffix of the term it makes
    for node in nodes:
        recorded, k = node.part
        if k is not None and k >= 0:  # the term comes before the fan-out sum that may follow it
            terms.setdefault((id(recorded), id(node.origin[0]), node.origin[1]), _suffix(k))
    parts: dict[int, GradientPart] = {}
    steps: dict[tuple, int] = {}
    for node in nodes:
        (recorded, k), (forward, i) = node.part, node.origin
        if recorded.ones and id(recorded.seed) not in parts:
            parts[id(recorded.seed)] = GradientPart(recorded.target, recorded.target, "")
        if k is None:
            group = (id(recorded), id(forward), i)
            steps[group] = steps.get(group, 0) + 1
            suffix = f"{terms.get(group, '')}_t{steps[group]}"
        else:
            suffix = _suffix(k)
        wrt = forward.inputs[i]
        parts[id(node.output)] = GradientPart(recorded.target, wrt, suffix, (forward, i))
    return parts


def producers(nodes: Iterable[Any]) -> dict[int, Any]:
    """By tensor id, the node that made it: ``nodes``, and the forward nodes their passes ran.

    So a tensor the view does not hold (the first target, say) can still be
    named as a view holding it would name it.
    """
    found: dict[int, Any] = {}
    for node in nodes:
        found[id(node.output)] = node
        origin = getattr(node, "origin", None)
        if origin is not None:
            found.setdefault(id(origin[0].output), origin[0])
    return found


def _forward_input(obj: Any, node: Any) -> tuple[Any, int] | None:
    """(forward op, position) if ``node`` is a recorded step and ``obj`` its forward op's input."""
    origin = getattr(node, "origin", None)
    if origin is None:
        return None
    for j, x in enumerate(origin[0].inputs):
        if x is obj or isinstance(x, tuple) and any(part is obj for part in x):
            return origin[0].op, j
    return None


def read_as(obj: Any, node: Any, pos: int) -> tuple[Any, int]:
    """The op and position whose parameter names a leaf first read at ``node``'s input ``pos``.

    A recorded step reading an input of its forward op (the labels, say)
    names it as that op would: as the view that holds the forward op does.
    """
    return _forward_input(obj, node) or (node.op, pos)


def made_by_vjp(obj: Any, node: Any) -> bool:
    """Whether the array or leaf Tensor ``obj``, first read by ``node``, is one a VJP made.

    Read by a recorded step and no input of the forward op, it is a constant
    of the recording (``np.eye(C)`` of the fused loss, its ``N``), not an input.
    """
    if isinstance(obj, Tensor):  # a seed the user gave the pass is an input, not a constant
        part = getattr(node, "part", None)
        if part is not None and obj is part[0].seed:
            return False
    return (isinstance(obj, (np.ndarray, Tensor)) and getattr(node, "origin", None) is not None
            and _forward_input(obj, node) is None)
