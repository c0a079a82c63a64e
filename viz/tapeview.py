"""What a drawing shows of a tape: which nodes, which tensors, and their names.

A ``TapeView`` reads ``tape.nodes`` once, in creation order, and settles
everything the drawing needs to be deterministic: the target's ancestors
and every name, both from the core's naming view (``microtape.naming``, the
one the closed form uses, so the drawing, the captions and the equations
say the same names), a DOT id for each tensor (by first appearance, never
``id()``), the kind of each leaf, and how many ops use each tensor (fan-out).
``id()`` only serves as a dictionary key while the view is alive.

Every drawing classifies leaves the same way: a parameter is a leaf asked
about (``params=``); data is any other array the computation took as an
input, a leaf Tensor or a plain array operand; a constant is a number or
option folded into an op, drawn inside the op's box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from microtape import Node, Tape, Tensor
from microtape.anomaly_message import input_labels
from microtape.naming import TapeNames, index_of

from .labels import is_index


@dataclass
class TensorInfo:
    """One tensor of the drawing."""

    tensor: Tensor
    node_id: str                 # DOT id: "T0", "T1", ... by first appearance
    name: str                    # its one name (microtape.naming)
    kind: str                    # "parameter", "data", "intermediate" or "loss"
    producer: int | None = None  # position in view.nodes of the op that computed it
    consumers: list[int] = field(default_factory=list)  # positions in view.nodes, once per use
    # The gradient the drawing shows, which graph.attach_gradients computes from the tape;
    # never read from .grad, which another tape's backward pass may have overwritten.
    grad: np.ndarray | None = None


@dataclass
class ArrayInfo:
    """A plain array passed to an op: data the computation took as an input."""

    value: np.ndarray
    node_id: str                 # "A0", "A1", ...
    name: str                    # its one name (microtape.naming)


class TapeView:
    """The drawn part of ``tape``: the target's ancestors, or every node.

    ``params`` marks which leaves are parameters (a Tensor, a list or a dict
    of them); every other leaf is data, named or not: a name says what a
    leaf is called, not whether it is asked about. The loss is ``target``,
    or without one the tape's last output when no op uses it.

    Names are ``microtape.naming.TapeNames`` of the drawn nodes: a tensor's
    own ``name``, then ``names`` ({name: Tensor or array}), then the
    parameter an unnamed leaf fills (``labels``, else ``x``) or the op an
    unnamed output comes from (``xW1``, ``tanh``).
    """

    def __init__(self, tape: Tape, target: Tensor | None = None,
                 params: Tensor | Iterable[Tensor] | Mapping[Any, Tensor] | None = None,
                 names: Mapping[str, Any] | None = None) -> None:
        if not isinstance(tape, Tape):
            raise TypeError(f"viz: expected a microtape Tape, got {type(tape).__name__}")
        if tape.spent:
            raise ValueError("viz: this tape was made with persistent=False and has answered a "
                             "gradient, so its record is gone; draw a tape recorded with mt.Tape()")
        tape.check_unchanged("viz")  # a drawing after an optimizer step would show new values
        if target is not None:       # a leaf target is drawn alone; an unknown one is an error
            index_of(tape.nodes, target, "viz", [x for node in tape.nodes for x in node.inputs
                                                if x is target])
        try:
            self.names = TapeNames(tape.nodes, target, names)
        except TypeError as e:
            raise TypeError(f"viz: {e}") from None
        self.tape = tape
        self.given_names = names      # passed on to the closed form the step page shows
        self.nodes: list[Node] = self.names.nodes
        position = {id(node): k for k, node in enumerate(tape.nodes)}
        self.indices = [position[id(node)] for node in self.nodes]   # tape positions
        self.target = target
        self.loss = target if target is not None else self._unused_last_output()
        self.tensors: dict[int, TensorInfo] = {}
        self.arrays: dict[int, ArrayInfo] = {}
        self._classify(_param_ids(params))
        if target is not None and not self.nodes:
            self._add_tensor(target)

    def _unused_last_output(self) -> Tensor | None:
        """Without a target, the loss is the last output, unless an op uses it."""
        if not self.nodes:
            return None
        last = self.nodes[-1].output
        return None if any(x is last for node in self.nodes for x in node.inputs) else last

    def _classify(self, param_ids: set[int]) -> None:
        """A TensorInfo or ArrayInfo for everything the drawn nodes use, in order."""
        self._param_ids = param_ids
        self._outputs = {id(node.output): k for k, node in enumerate(self.nodes)}
        for k, node in enumerate(self.nodes):
            for x in node.inputs:
                if isinstance(x, Tensor):
                    self._add_tensor(x).consumers.append(k)
                elif is_data_array(x) and id(x) not in self.arrays:
                    self.arrays[id(x)] = ArrayInfo(np.asarray(x), f"A{len(self.arrays)}",
                                                   self.names[x])
            self._add_tensor(node.output)

    def _add_tensor(self, t: Tensor) -> TensorInfo:
        """The TensorInfo of ``t``, made on its first appearance."""
        info = self.tensors.get(id(t))
        if info is not None:
            return info
        producer = self._outputs.get(id(t))
        if t is self.loss:
            kind = "loss"
        elif producer is not None:
            kind = "intermediate"
        else:
            kind = "parameter" if id(t) in self._param_ids else "data"
        info = TensorInfo(t, f"T{len(self.tensors)}", self.names[t], kind, producer=producer)
        self.tensors[id(t)] = info
        return info

    def info(self, t: Tensor) -> TensorInfo:
        return self.tensors[id(t)]

    @property
    def leaves(self) -> list[TensorInfo]:
        """Tensors no drawn op computed, in order of first appearance."""
        return [i for i in self.tensors.values() if i.producer is None]

    def drawn_names(self) -> dict[str, str]:
        """DOT id -> name of every tensor and array drawn: what the picture calls them."""
        return {i.node_id: i.name for i in [*self.tensors.values(), *self.arrays.values()]}


def argument_names(node: Node) -> list[str]:
    """What to call each argument: the formula's name (A, B, p, lo), else the parameter's
    name in the op's signature, else ``arg k``; the anomaly message's names too."""
    return input_labels(node)


def is_data_array(x: object) -> bool:
    """A plain array operand drawn as its own data node (more than one element, not an
    index); a smaller one is a constant folded into the op."""
    return isinstance(x, np.ndarray) and x.size > 1 and not is_index(x)


def _param_ids(params) -> set[int]:
    if params is None:
        return set()
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, Mapping):
        params = list(params.values())
    elif not isinstance(params, (list, tuple, set, frozenset)):
        raise TypeError(f"viz: params must be Tensors (a Tensor, a list or a dict of them), "
                        f"not {type(params).__name__}")
    ids = set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"viz: params must be Tensors (a Tensor, a list or a dict of them), "
                            f"got a {type(p).__name__}")
        ids.add(id(p))
    return ids
