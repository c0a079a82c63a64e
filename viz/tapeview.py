"""What a drawing shows of a tape: which nodes, which tensors, and their names.

A ``TapeView`` reads ``tape.nodes`` once, in creation order, and settles
everything the drawing needs to be deterministic: the target's ancestors,
a name and a DOT id for each tensor (by first appearance, never ``id()``;
see ``TapeView`` for how unnamed tensors are called), the kind of each
leaf, and how many ops use each tensor (fan-out).

Every drawing classifies leaves the same way: a parameter is a leaf asked
about (``params=``); data is any other array the computation took as an
input, a leaf Tensor or a plain array operand; a constant is a number or
option folded into an op, drawn inside the op's box.
``id()`` only serves as a dictionary key while the view is alive.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from microtape import Node, Tape, Tensor

from .labels import is_index


@dataclass
class TensorInfo:
    """One tensor of the drawing."""

    tensor: Tensor
    node_id: str                 # DOT id: "T0", "T1", ... by first appearance
    name: str                    # the tensor's name, or t0, t1, ... when it has none
    kind: str                    # "parameter", "data", "intermediate" or "loss"
    producer: int | None = None  # position in view.nodes of the op that computed it
    consumers: list[int] = field(default_factory=list)  # positions in view.nodes, once per use


@dataclass
class ArrayInfo:
    """A plain array passed to an op: data the computation took as an input."""

    value: np.ndarray
    node_id: str                 # "A0", "A1", ...
    name: str                    # c0, c1, ...


class TapeView:
    """The drawn part of ``tape``: the target's ancestors, or every node.

    ``params`` marks which leaves are parameters (a Tensor, a list or a dict
    of them); every other leaf is data, named or not: a name says what a
    leaf is called, not whether it is asked about.
    The loss is ``target``, or without one the tape's last output when no op
    uses it.

    Names: ``names`` ({name: Tensor or array}) wins, then the tensor's own
    ``name``. An unnamed leaf or constant array takes the name of the
    parameter it fills in the first op using it, when that name is a word
    (``labels`` of softmax_cross_entropy, not the ``a`` of add); an unnamed
    output of a named input reads as its expression (``x W1``, ``tanh(h)``).
    Anything else is t0, t1, ... (tensors) or c0, c1, ... (constants).
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
        self.tape = tape
        self.indices = _ancestors(tape, target)          # tape positions of the drawn nodes
        self.nodes: list[Node] = [tape.nodes[i] for i in self.indices]
        self.target = target
        self.loss = target if target is not None else self._unused_last_output()
        self.tensors: dict[int, TensorInfo] = {}
        self.arrays: dict[int, ArrayInfo] = {}
        self._name_everything(_param_ids(params), _given_names(names))
        if target is not None and not self.nodes:
            self._add_tensor(target)

    def _unused_last_output(self) -> Tensor | None:
        """Without a target, the loss is the last output, unless an op uses it."""
        if not self.nodes:
            return None
        last = self.nodes[-1].output
        return None if any(x is last for node in self.nodes for x in node.inputs) else last

    def _name_everything(self, param_ids: set[int], given: dict[int, str]) -> None:
        """A TensorInfo or ArrayInfo for everything the drawn nodes use, in order."""
        self._param_ids = param_ids
        self._given = given
        self._counters = {"t": 0, "c": 0}
        self._generated: set[str] = set()   # t0, c0, ...: too vague for an expression
        self._taken = {str(t.name) for node in self.nodes for t in (*node.inputs, node.output)
                       if isinstance(t, Tensor) and t.name is not None} | set(given.values())
        self._outputs = {id(node.output): k for k, node in enumerate(self.nodes)}
        for k, node in enumerate(self.nodes):
            params_of = parameter_names(node.op)
            for i, x in enumerate(node.inputs):
                word = params_of[i] if i < len(params_of) and len(params_of[i]) > 1 else None
                if isinstance(x, Tensor):
                    self._add_tensor(x, word).consumers.append(k)
                elif is_data_array(x) and id(x) not in self.arrays:
                    n = len(self.arrays)
                    name = given.get(id(x)) or self._fresh("c", word)
                    self.arrays[id(x)] = ArrayInfo(np.asarray(x), f"A{n}", name)
            self._add_tensor(node.output, self._expression(node))

    def _fresh(self, prefix: str, suggestion: str | None) -> str:
        """``suggestion`` if no tensor has that name yet, else the next t0, t1, ... (c0, ...)."""
        if suggestion is not None and suggestion not in self._taken:
            self._taken.add(suggestion)
            return suggestion
        name = f"{prefix}{self._counters[prefix]}"
        self._counters[prefix] += 1
        self._generated.add(name)
        return name

    def _add_tensor(self, t: Tensor, suggestion: str | None = None) -> TensorInfo:
        """The TensorInfo of ``t``, made on its first appearance."""
        info = self.tensors.get(id(t))
        if info is not None:
            return info
        if id(t) in self._given:
            name = self._given[id(t)]
        elif t.name is not None:
            name = t.name
        else:
            name = self._fresh("t", suggestion)
        producer = self._outputs.get(id(t))
        if t is self.loss:
            kind = "loss"
        elif producer is not None:
            kind = "intermediate"
        elif id(t) in self._param_ids:
            kind = "parameter"
        else:
            kind = "data"
        info = TensorInfo(t, f"T{len(self.tensors)}", name, kind, producer=producer)
        self.tensors[id(t)] = info
        return info

    def _expression(self, node: Node) -> str | None:
        """``x W1``, ``h + b``, ``tanh(h)``: an op on inputs with one-word names, else None."""
        names = []
        for x in node.inputs:
            if isinstance(x, Tensor) and id(x) in self.tensors:
                names.append(self.tensors[id(x)].name)
            elif is_data_array(x) and id(x) in self.arrays:
                names.append(self.arrays[id(x)].name)
            else:
                return None   # a folded number or option: the expression would hide it
        if any(not _is_word(n) or n in self._generated for n in names):
            return None
        op = node.op.name
        if op in _INFIX and len(names) == 2:
            text = _INFIX[op].join(names)
        else:
            text = f"{op}({', '.join(names)})"
        return text if len(text) <= 16 else None

    def info(self, t: Tensor) -> TensorInfo:
        return self.tensors[id(t)]

    @property
    def leaves(self) -> list[TensorInfo]:
        """Tensors no drawn op computed, in order of first appearance."""
        return [i for i in self.tensors.values() if i.producer is None]


# How the expression name of an unnamed output writes these ops; the rest
# read as calls, ``tanh(h)``.
_INFIX = {"matmul": " ", "add": " + ", "sub": " − ", "mul": " ∘ ", "div": " / "}


def _is_word(name: str) -> bool:
    return name.replace("_", "a").isalnum()


@functools.lru_cache(maxsize=256)
def parameter_names(op: Any) -> tuple[str, ...]:
    """The positional parameter names of an op's forward (``logits``, ``labels``)."""
    try:
        return tuple(p.name for p in inspect.signature(op).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        return ()


def _given_names(names: Mapping[str, Any] | None) -> dict[int, str]:
    """{id(object): name} from draw_graph's ``names`` ({name: Tensor or array})."""
    if names is None:
        return {}
    if not isinstance(names, Mapping):
        raise TypeError(f"viz: names must be a dict {{name: Tensor or array}}, not a "
                        f"{type(names).__name__}")
    ids = {}
    for name, obj in names.items():
        if not isinstance(name, str) or not isinstance(obj, (Tensor, np.ndarray)):
            raise TypeError(f"viz: names maps a name (str) to the Tensor or array it names; got "
                            f"{name!r}: {type(obj).__name__}")
        ids[id(obj)] = name
    return ids


def is_data_array(x: object) -> bool:
    """A plain array operand drawn as its own data node (more than one element, not an
    index); a smaller one is a constant folded into the op."""
    return isinstance(x, np.ndarray) and x.size > 1 and not is_index(x)


def _ancestors(tape: Tape, target: Tensor | None) -> list[int]:
    """Tape positions of the nodes ``target`` depends on, in creation order.

    One reverse sweep: a node is needed when its output is.
    """
    nodes = tape.nodes
    if target is None:
        return list(range(len(nodes)))
    end = _index_of(tape, target)
    needed = {id(target)}
    kept = []
    for k in range(end - 1, -1, -1):
        node = nodes[k]
        if id(node.output) in needed:
            kept.append(k)
            needed.update(id(x) for x in node.inputs if isinstance(x, Tensor))
    kept.reverse()
    return kept


def _index_of(tape: Tape, target: Tensor) -> int:
    """One past the node that produced ``target``; 0 for a leaf target (drawn alone).

    The tape's own lookup and its error, repeated here until the tape offers
    it publicly; keep the two in step.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"viz: the target must be a Tensor, not {type(target).__name__}")
    nodes = tape.nodes
    for k in range(len(nodes) - 1, -1, -1):
        if nodes[k].output is target:
            return k + 1
    if any(x is target for node in nodes for x in node.inputs):
        return 0
    name = repr(target.name) if target.name is not None else f"of shape {target.shape}"
    raise ValueError(f"viz: the target {name} was not recorded on this tape; compute it "
                     f"inside 'with tape:' from Tensors")


def _param_ids(params) -> set[int]:
    if params is None:
        return set()
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, Mapping):
        params = list(params.values())
    ids = set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"viz: params must be Tensors (a Tensor, a list or a dict of them), "
                            f"got a {type(p).__name__}")
        ids.add(id(p))
    return ids
