"""One naming view of a tape: every tensor's name, the target lookup and its ancestors.

The closed form, the tape and every drawing name tensors through this module,
so the same tensor carries the same name in the code, the equations, the
captions and the picture. The API is small and stable:

- ``index_of(nodes, target, caller, sources)``: one past the node that made
  ``target`` (0 when ``target`` is one of ``sources``), with the errors every
  caller shares.
- ``ancestors(nodes, target)``: the recorded nodes ``target`` depends on, in
  recording order (every node when ``target`` is None).
- ``TapeNames(nodes, target=None, names=None)``: the names of those nodes'
  tensors and arrays. ``view[x]`` or ``view.of(x)`` is the name of a Tensor,
  a plain array operand or an index array (by identity); ``view.grad(x)`` the
  name of its gradient (``d_W1``; a target named ``L`` gives ``d_L``);
  ``view.leaves`` the operands no node in the view computed, in order of
  first appearance; ``view.nodes`` the nodes named; ``view.fresh(base)`` an
  unused name for a temporary of generated code; ``view.part(x)`` what ``x``
  is when a recorded backward pass made it, ``view.is_seed(x)`` whether it is
  such a pass's own seed of ones and ``view.is_constant(x)`` whether it is an
  array one of its VJPs made (constants, not inputs); ``view.named(x)`` the
  name of a tensor the view need not hold (the target of a recorded pass).

Every name is a Python identifier, unique in the view, and never a keyword,
a builtin, a global of generated code (``np``, ``_check_labels``), ``self`` or
``lr``: generated code holds only identifiers
it made itself. Precedence, highest first: the Tensor's own ``name`` (or
``name=`` on the op that made it), then ``names={name: tensor or array}``
given by the user, then, for an unnamed leaf, the parameter it fills in the
first op that reads it when that is a word (``labels``, ``logits``; else
``x``), and for an unnamed output the op's name template (``xW1`` for
``x @ W1``) or the op's name. A name already taken gets 2, 3, ... appended.
The derivation's roles (``t``, ``h``, ``v``, ``J``) are names the models give
with ``name=``.

A backward pass recorded with ``create_graph=True`` (gradient_names.py
reads its marks) is named in Leibniz's way, so that its tensors read apart
from the forward pass and from a later backward pass (``d_`` names):

- the gradient of a target ``J`` with respect to ``h`` is ``dJ_dh``;
  ``dJ_dJ`` is the pass's seed of ones;
- when ``h`` feeds several ops its terms are ``dJ_dh_1``, ``dJ_dh_2``, ...,
  the sum of the first two ``dJ_dh_1to2``, and the whole sum ``dJ_dh``;
- the steps inside the VJP that computes a gradient or a term are that name
  and ``_t1``, ``_t2``, ... in the order they run (``dJ_dxW_t1``,
  ``dJ_dh_2_t1``).

``J`` and ``h`` are the names those tensors have in the view, or would have
if it held them. A backward pass of such a tensor gives ``d_dJ_dW``. An
own name (``name=``) or a user's name still comes first.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
import unicodedata
import weakref
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .gradient_names import GradientPart, gradient_parts, made_by_vjp, producers, read_as
from .tensor import Tensor
from .validation import check_labels

__all__ = ["TapeNames", "ancestors", "index_of", "identifier"]

# The globals generated code runs with (closed_form/build.py's namespace): a tensor of one
# of these names would shadow it, so the code would call the tensor.
GENERATED_GLOBALS: dict[str, Any] = {"np": np, "_check_labels": check_labels}

# Names generated code uses for itself, so no tensor may take them: its globals, and the
# names it takes for itself (the step function's lr, self).
_RESERVED = frozenset({"self", "lr", *GENERATED_GLOBALS})
_NOT_WORD = re.compile(r"[^0-9A-Za-z_]")


def identifier(text: str) -> str:
    """``text`` as a Python identifier that shadows nothing (``W 1`` gives ``W_1``, ``α`` stays)."""
    text = str(text)
    name = (_NOT_WORD.sub("_", text) if text.isascii() else "".join(map(_letter, text))) or "x"
    if not name.isidentifier():  # a digit first
        name = "x" + name
    if keyword.iskeyword(name) or name in _RESERVED or hasattr(builtins, name):
        name += "_"
    return name


def _letter(c: str) -> str:
    """``c`` where an identifier may hold it and Python reads it as written, else ``_``:
    Python reads ``ﬁ`` as ``fi``, so two names that differ there would be one variable."""
    return c if ("_" + c).isidentifier() and unicodedata.normalize("NFKC", c) == c else "_"


def index_of(nodes: Sequence[Any], target: Any, caller: str = "gradient",
             sources: Sequence[Tensor] = ()) -> int:
    """One past the node that produced ``target``: what it depends on is ``nodes[:k]``.

    0 if ``target`` is one of ``sources`` (its own gradient needs no op).
    TypeError for a non-Tensor, ValueError for a tensor ``nodes`` never made;
    ``caller`` starts the message.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"{caller}: the target must be a Tensor, not {type(target).__name__}")
    if nodes and nodes[-1].output is target:  # the usual case: the loss came last
        return len(nodes)
    for k in range(len(nodes) - 1, -1, -1):
        if nodes[k].output is target:
            return k + 1
    if any(s is target for s in sources):
        return 0
    label = repr(target.name) if target.name is not None else f"of shape {target.shape}"
    raise ValueError(f"{caller}: the target {label} was not recorded on this tape; compute it "
                     f"inside 'with tape:' with microtape's ops")


def ancestors(nodes: Sequence[Any], target: Tensor | None, end: int | None = None) -> list:
    """The nodes ``target`` depends on, in recording order: one reverse sweep.

    ``end`` is ``index_of``'s answer when the caller has it; every node when
    ``target`` is None.
    """
    if target is None:
        return list(nodes)
    if end is None:
        end = index_of(nodes, target, sources=[target])
    needed, kept = {id(target)}, []
    for k in range(end - 1, -1, -1):
        node = nodes[k]
        if id(node.output) in needed:
            kept.append(node)
            needed.update(id(x) for x in node.inputs if isinstance(x, Tensor))
    kept.reverse()
    return kept


def operands(x: Any) -> Iterator[Any]:
    """The nameable things in one op input: a Tensor, an array, or the arrays of a tuple index."""
    if isinstance(x, (Tensor, np.ndarray)):
        yield x
    elif isinstance(x, tuple):
        for part in x:
            if isinstance(part, np.ndarray):
                yield part


class TapeNames:
    """The one name of every tensor and array ``nodes`` use (see the module docstring)."""

    def __init__(self, nodes: Sequence[Any], target: Tensor | None = None,
                 names: Mapping[str, Any] | None = None, *, everything: bool = False) -> None:
        self.nodes: list = list(nodes) if everything or target is None else ancestors(nodes, target)
        self.target = target
        self._names: dict[int, str] = {}
        self._grads: dict[int, str] = {}
        self._objects: dict[int, Any] = {}   # id -> object: holds each alive while the view is
        self._taken: set[str] = set(_RESERVED)
        self._next: dict[str, int] = {}
        given = _given(names)
        self._parts = gradient_parts(self.nodes)  # what a recorded backward pass made
        self._made: dict[int, Any] | None = None
        self._outside: dict[int, Any] = {}  # tensors named for a gradient's name only
        self._given = given
        self._constants: set[int] = set()  # arrays a recorded VJP made: not inputs
        self.leaves: list = []
        self._claim_own_names(given)
        self._name_in_order(given)

    # -- the API -------------------------------------------------------------------
    def of(self, x: Any) -> str:
        """The name of a Tensor or array of the view (KeyError for anything else)."""
        return self._names[id(x)]

    __getitem__ = of

    def __contains__(self, x: Any) -> bool:
        return id(x) in self._names

    def grad(self, x: Any) -> str:
        """The name of ``x``'s gradient in code: ``d_`` and its name, unique in the view."""
        key = id(x)
        name = self._grads.get(key)
        if name is None:
            name = self._grads[key] = self.fresh(f"d_{self._names[key]}")
        return name

    def fresh(self, base: str) -> str:
        """An unused identifier: ``base``, else ``base2``, ``base3``, ..., now taken."""
        base = identifier(base)
        name, k = base, self._next.get(base, 2)
        while name in self._taken:
            name, k = f"{base}{k}", k + 1
        self._next[base] = k
        self._taken.add(name)
        return name

    def named(self, x: Tensor, reader: tuple = ()) -> str:
        """``x``'s name, given now if the view has not reached it, or does not hold it.

        A recorded pass's gradient names the tensors it is of (``J`` in
        ``dJ_dh``) even when the view does not compute them; they are named
        as a view holding them would (``reader``: the op and position that
        read ``x``, for a leaf's word), and their names are then taken.
        """
        key = id(x)
        name = self._names.get(key)
        if name is None:
            if self._made is None:
                self._made = producers(self.nodes)
            node = self._made.get(key)
            base = x.name if x.name is not None else self._given.get(key)
            if base is None:
                base = (self._output_base(node) if node is not None else
                        _parameter_word(reader[0].op, reader[1]) if reader else "y")
            name = self._names[key] = self.fresh(base)
            self._outside[key] = x  # held, so that its id stays its own
        return name

    def is_leaf(self, x: Any) -> bool:
        return id(x) in self._names and id(x) not in self._produced

    def part(self, x: Any) -> GradientPart | None:
        """What ``x`` is, if a recorded backward pass made it (gradient_names.py); else None."""
        return self._parts.get(id(x))

    def is_constant(self, x: Any) -> bool:
        """Whether ``x`` is an array a recorded VJP made with numpy: held, not an input."""
        return id(x) in self._constants

    def is_seed(self, x: Any) -> bool:
        """Whether ``x`` is the ones a recorded backward pass made to start from (``dJ_dJ``)."""
        part = self._parts.get(id(x))
        return part is not None and part.wrt is part.target and id(x) not in self._produced

    # -- naming ----------------------------------------------------------------------
    def _everything(self) -> Iterator[tuple[Any, Any, int]]:
        """(object, node or None, input position) in order of first appearance."""
        for node in self.nodes:
            for pos, x in enumerate(node.inputs):
                for obj in operands(x):
                    yield obj, node, pos
            yield node.output, node, -1
        if self.target is not None:
            yield self.target, None, -1

    def _claim_own_names(self, given: dict[int, str]) -> None:
        """Tensors' own names first, then the user's: they win over anything generated."""
        self._produced = {id(node.output) for node in self.nodes}
        # An op's grads may name the steps inside a VJP (the loss's ŷ): in a recorded
        # pass its own names (dJ_dv_t1) say more, so those names give way. A gradient
        # the pass hands back keeps a name its user gives it.
        in_pass = {id(node.output) for node in self.nodes
                   if node.origin is not None and getattr(node, "part", (None, 0))[1] is None}
        wanted: dict[int, str] = {}
        for obj, _, _ in self._everything():
            if id(obj) not in wanted:
                own = obj.name if isinstance(obj, Tensor) and obj.name is not None and (
                    id(obj) not in in_pass) else None
                if own is not None or id(obj) in given:
                    wanted[id(obj)] = own if own is not None else given[id(obj)]
        # Each exact name to the first that wants it, then the rest numbered: named w, w
        # and w2, the second w is w3, not w2, which the user gave the third.
        later = []
        for key, name in wanted.items():
            if identifier(name) in self._taken:
                later.append((key, name))
            else:
                self._names[key] = self.fresh(name)
        for key, name in later:
            self._names[key] = self.fresh(name)

    def _name_in_order(self, given: dict[int, str]) -> None:
        for obj, node, pos in self._everything():
            key = id(obj)
            if key not in self._objects:
                self._objects[key] = obj
                if key not in self._produced:
                    self.leaves.append(obj)
                    if node is not None and made_by_vjp(obj, node):
                        self._constants.add(key)
            if key in self._names:
                continue
            part = self._parts.get(key)
            if part is not None:
                self._names[key] = self.fresh(self._gradient_base(part))
            elif pos >= 0 or node is None:
                self._names[key] = self.fresh(_parameter_word(*read_as(obj, node, pos)) if node
                                              else "x")
            else:
                self._names[key] = self.fresh(self._output_base(node))

    def _gradient_base(self, part: GradientPart) -> str:
        """``dJ_dh`` and its part's suffix: the rule in the module docstring."""
        # pow_ (the name that does not shadow pow) reads as pow inside a longer name
        target = self.named(part.target).rstrip("_")
        return f"d{target}_d{self.named(part.wrt, part.reader).rstrip('_')}{part.suffix}"

    def _output_base(self, node: Any) -> str:
        """``xW1`` from the op's template when its operands have names, else the op's name."""
        code = getattr(node.op, "code", None)
        template = getattr(code, "name", None)
        if template:
            first = [self._names.get(id(x)) for x in node.inputs[:2]]
            if all(isinstance(x, (Tensor, np.ndarray)) for x in node.inputs[:2]) and all(first):
                return template.format(A=first[0], B=first[1] if len(first) > 1 else "")
        return node.op.name


def _given(names: Mapping[str, Any] | None) -> dict[int, str]:
    """{id(object): name} from ``names`` ({name: Tensor or array})."""
    if names is None:
        return {}
    if not isinstance(names, Mapping):
        raise TypeError(f"names must be a dict {{name: Tensor or array}}, not a "
                        f"{type(names).__name__}")
    ids = {}
    for name, obj in names.items():
        if not isinstance(name, str) or not isinstance(obj, (Tensor, np.ndarray)):
            raise TypeError(f"names maps a name (str) to the Tensor or array it names; got "
                            f"{name!r}: {type(obj).__name__}")
        ids[id(obj)] = name
    return ids


# Per op, read once from its forward's signature (weakly held: user primitives come and go).
_WORDS: "weakref.WeakKeyDictionary[Any, list[str]]" = weakref.WeakKeyDictionary()
_NOT_ROLES = ("operands", "axes", "shape", "args")


def _parameter_word(op: Any, pos: int) -> str:
    """A name for an unnamed leaf: the op's parameter it fills when that says something, else x."""
    words = _WORDS.get(op)
    if words is None:
        try:
            params = inspect.signature(op.forward).parameters.values()
        except (TypeError, ValueError):
            params = []
        words = _WORDS[op] = [p.name for p in params if p.kind in (
            p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    word = words[min(pos, len(words) - 1)] if words else "x"
    return word if len(word) > 1 and word not in _NOT_ROLES else "x"
