"""A VJP's code and equation, derived from its one spelling in ops (an op's ``grads=``).

The closed form runs the op's grads once, on the traced values and a G
that is only a shape and a dtype (abstract.py), under a private tape: the
few ops they record are a small program from ``G``, ``C`` and the inputs
to the gradient. It is printed with those ops' own forward
templates and forward maths (``primitive.Code``), its inputs renamed to the
closed form's names, so a VJP's fast code, its textbook code and its
equation all come from the grads. A result read once is written inline, in
parentheses where it binds more loosely than the template it goes into;
the rest get a statement of their own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import IN_PLACE_MIN_SIZE
from ..primitive import ATOM, POWER_BINDS
from ..tape import Tape, _active
from ..tensor import Tensor, wrap
from .abstract import SHAPES_DECIDE, Abstract, AbstractTape
from .context import Context, literal

ABSTRACT_MIN_SIZE = IN_PLACE_MIN_SIZE  # elements; below it the grads run on a seed of ones


class Derived:
    """Input i's VJP of one node, recorded: its ops, its result and the stand-in for G."""

    __slots__ = ("nodes", "result", "g", "node", "uses")

    def __init__(self, nodes: list, result: Any, g: Tensor, node: Any) -> None:
        self.nodes, self.result, self.g, self.node = nodes, result, g, node
        self.uses: dict[int, int] = {id(result): 1}
        for sub in nodes:
            for x in sub.inputs:
                self.uses[id(x)] = self.uses.get(id(x), 0) + 1

    @property
    def renames_g(self) -> bool:
        """The gradient is G itself, handed on (``dA = G`` of an add): no statement."""
        return self.result is self.g

    @property
    def fresh(self) -> bool:
        """Whether the result is an array of its own, not a view of G or an operand."""
        made = self.nodes and self.nodes[-1].output is self.result
        return bool(made) and not self.nodes[-1].op.code.view


def derive(node: Any, i: int) -> Derived | None:
    """Run input i's grads on the traced values; None where no template can print them.

    Where the arrays are large, G is abstract (abstract.py): only its shape
    and dtype are known, so the grads' full-size arithmetic on it is never
    done. Grads that need more of G than that (a number read from it) fail
    there, and run again on a seed of ones, as all of them did before.
    """
    grads = node.op.grads
    if grads is None or not callable(grads) and (i >= len(grads) or grads[i] is None):
        return None
    ran = _abstract_run(node, i) if SHAPES_DECIDE and _large(node) else None
    if ran is None:
        ran = _run(node, i, np.ones(node.output.shape, dtype=node.output.dtype), Tape)
    g, result, nodes = ran
    if not isinstance(result, Tensor):
        return None
    for sub in nodes:
        code = sub.op.code
        if code is None or code.when is not None and not code.when(
                Context(sub, ["_"] * len(sub.inputs), "_", {}, {}, {}, None)):
            return None
    return Derived(nodes, result, g, node)


def _large(node: Any) -> bool:
    """Whether the grads' arithmetic could cost more than an abstract G's bookkeeping: on small
    arrays (a matmul's three below ABSTRACT_MIN_SIZE elements each) it is cheaper to do it."""
    return node.output.size >= ABSTRACT_MIN_SIZE or any(
        isinstance(x, Tensor) and x.size >= ABSTRACT_MIN_SIZE for x in node.inputs)


def _abstract_run(node: Any, i: int) -> tuple[Tensor, Any, list] | None:
    """The grads run on an abstract G; None where they need more of it than its shape."""
    try:
        return _run(node, i, Abstract.of(node.output.shape, node.output.dtype), AbstractTape)
    except Exception:  # noqa: BLE001 - whatever it was, the run on ones meets it as before
        return None


def _run(node: Any, i: int, seed: np.ndarray, tape_type: type) -> tuple[Tensor, Any, list]:
    """G, what input i's grads return for it, and the ops they recorded."""
    g = wrap(seed)
    token = _active.set(())  # only the private tape records: no user tape sees these ops
    try:
        with tape_type() as tape:
            result = node.op.differentiable_vjp(i)(g, node.output, *node.inputs, **node.params)
    finally:
        _active.reset(token)
    return g, result, tape.nodes


class Writer:
    """Prints one ``Derived`` as code (fast or textbook) or maths, in the closed form's names.

    ``outer`` maps the ids of G, C and the node's inputs to their names;
    ``view`` gives fresh names for intermediates, ``consts`` holds arrays the
    fast code reads instead of writing out.
    """

    __slots__ = ("d", "outer", "target", "view", "consts", "names", "held", "temps", "read")

    def __init__(self, d: Derived, outer: dict[int, str], target: str, view: Any,
                 consts: dict) -> None:
        self.d, self.outer, self.target, self.view, self.consts = d, outer, target, view, consts
        self.names: dict[Any, str] = {}   # an intermediate's key -> its name
        self.held: dict[int, str] = {}    # id of a constant array -> its held name
        self.temps: dict[str, int] = {}   # names defined besides the target -> size
        self.read: set[str] = set()

    def code(self, textbook: bool, one: bool) -> tuple[Any, frozenset[str]]:
        """The VJP as one expression, or statements that end by assigning the target."""
        self.read = set()
        lines, last = self._walk(textbook, one, maths=False)
        if last is None:
            return lines, frozenset(self.read)
        return (lines + [f"{self.target} = {last}"] if lines else last), frozenset(self.read)

    def maths(self, g: str, one: bool) -> str:
        """The VJP as one expression in the derivation's notation, ``g`` standing for G."""
        self.outer = {**self.outer, id(self.d.g): g}
        return self._walk(False, one, maths=True)[1]

    def _walk(self, textbook: bool, one: bool, maths: bool) -> tuple[list[str], str | None]:
        """Lines for the results that need a name, and the result's expression (None: assigned)."""
        d, lines = self.d, []
        exprs: dict[int, tuple[str, int]] = {}
        for k, sub in enumerate(d.nodes):
            code = sub.op.code
            # G is the seed of ones: 1 ∘ X is X. Not for the result in code, which
            # would then be X's array itself, or a view of it, not an array of its own.
            if one and sub.op.name == "mul" and any(x is d.g for x in sub.inputs) and (
                    maths or sub.output is not d.result):
                other = sub.inputs[1] if sub.inputs[0] is d.g else sub.inputs[0]
                exprs[id(sub.output)] = self._atom(other, exprs, textbook, maths)
                continue
            where = "maths" if maths else "textbook" if textbook else "fast"
            texts = [self._operand(x, exprs, code, j, where == code.tight or where in code.tight,
                                   textbook, maths) for j, x in enumerate(sub.inputs)]
            if maths:
                c = Context(sub, texts, "", {}, {}, {}, self.view)
                text = c.render(code.math) if code.math else f"{sub.op.name}({', '.join(texts)})"
                named = sub.output.name  # a name the grads gave it (ŷ): the derivation's symbol
                exprs[id(sub.output)] = (named, ATOM) if named else (text, code.math_binds)
                continue
            last = sub.output is d.result
            out = self.target if last else self._name(k, sub.op.name)
            c = Context(sub, texts, out, {}, {key: self._name((k, key), key) for key in code.temps},
                        self.consts, self.view)
            c.textbook = textbook
            made = c.render(code.forward)
            self.read |= {r for r in c.read if r.isidentifier()}
            self.temps.update((n, sub.output.size) for n in c.temps.values() if n in c.read)
            if isinstance(made, list) or not last and d.uses[id(sub.output)] > 1:
                lines += made if isinstance(made, list) else [f"{out} = {made}"]
                exprs[id(sub.output)] = (out, ATOM)
                if last:
                    return lines, None
                self.temps[out] = sub.output.size
            else:
                exprs[id(sub.output)] = (made, code.binds)
        return lines, (exprs.get(id(d.result)) or self._atom(d.result, exprs, textbook, maths))[0]

    def _name(self, key: Any, what: str) -> str:
        """One fresh name per intermediate, the same in every printing."""
        if key not in self.names:
            self.names[key] = self.view.fresh(f"{self.target}_{what}")
        return self.names[key]

    def _operand(self, x: Any, exprs: dict, code: Any, j: int, tight: bool, textbook: bool,
                 maths: bool) -> str:
        """Input j of an op as its template reads it, in parentheses where it binds too loosely."""
        text, binds = exprs.get(id(x)) or self._atom(x, exprs, textbook, maths)
        outer = code.math_binds if maths else code.binds
        if binds >= ATOM:
            return text
        if outer >= ATOM:
            return f"({text})" if tight else text
        if binds < outer or binds == outer and (j > 0 or binds == POWER_BINDS):
            return f"({text})"
        return text

    def _atom(self, x: Any, exprs: dict, textbook: bool, maths: bool) -> tuple[str, int]:
        """An input of the recorded VJP that no op of it made: a name, a number or a constant."""
        if id(x) in exprs:
            return exprs[id(x)]
        if id(x) in self.outer:
            name = self.outer[id(x)]
            if not maths:
                self.read.add(name)
            return name, ATOM
        if isinstance(x, (Tensor, np.ndarray)):
            value = x.value if isinstance(x, Tensor) else x
            if maths:
                named = x.name if isinstance(x, Tensor) else None
                return named or _number(value), ATOM
            return self._constant(x, value, textbook), ATOM
        if maths and isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
            return _number(x), ATOM
        try:
            return literal(x), ATOM
        except TypeError:  # a slice in an index, say: templates read it from c.values
            return (str(x) if maths else self._held(x)), ATOM

    def _constant(self, x: Any, value: np.ndarray, textbook: bool) -> str:
        """An array the grads made (ones for an einsum, the identity for one-hot labels)."""
        if value.ndim == 0:
            return literal(value.item() if value.dtype != np.float32 else np.float32(value))
        return _array_source(value) if textbook else self._held(value)

    def _held(self, x: Any) -> str:
        """A value the code reads from its namespace rather than writes out."""
        if id(x) not in self.held:
            name = self.view.fresh("_const")
            self.consts[name] = x
            self.held[id(x)] = name
        return self.held[id(x)]


def _number(x: Any) -> str:
    """A number as the maths writes it: 1, not 1.0."""
    value = np.asarray(x)
    if value.size != 1:
        uniform = value.size and (value == value.flat[0]).all()
        return _number(value.flat[0]) if uniform else "const"
    v = float(value.flat[0])  # float() refuses an array of one element that is not 0-d
    return f"{v:g}" if v == v else "nan"


def _array_source(value: np.ndarray) -> str:
    dtype = f"dtype=np.{value.dtype.name}"
    if (value == 1).all():
        return f"np.ones({literal(value.shape)}, {dtype})"
    if value.ndim == 2 and value.shape[0] == value.shape[1] and (value == np.eye(len(value))).all():
        return f"np.eye({len(value)}, {dtype})"
    return f"np.array({value.tolist()!r}, {dtype})"
