"""What an op's code template sees: operand names, raw params and traced facts.

A template (``primitive.Code``) is a format string over ``{A}``, ``{B}``,
``{C}``, ``{G}`` and the op's keyword params, or a function of a ``Context``.
Params are raw values (``c.params["axis"]`` is ``1``, not ``"1"``); ``c.lit``
writes one as Python source. The names a template may use besides its
operands are declared on ``Code``: ``saved`` (made by the forward, read by
the VJPs) and ``temps`` (the forward's own scratch names). Every name a
template touches is recorded in ``read``, so passes know what a statement
reads without reading its text. ``c.spare(...)`` lets a VJP template offer a
fast form that overwrites operands; see ``Context.spare``.
"""

from __future__ import annotations

import inspect
import math
import string
from fractions import Fraction
from typing import Any

import numpy as np

from ..ops import IN_PLACE_MIN_SIZE
from ..tensor import Tensor


class _Logged(dict):
    """A dict of names that remembers which were looked up."""

    __slots__ = ("read",)

    def __getitem__(self, key: str) -> str:
        name = dict.__getitem__(self, key)
        self.read.add(name)
        return name


class Context:
    """One template's view of one node (see the module docstring)."""

    __slots__ = ("_names", "_out", "_g", "target", "i", "one", "textbook", "values", "shapes",
                 "ndims", "dtypes", "out_shape", "dtype", "big", "params", "saved", "temps",
                 "read", "_consts", "_fresh", "_view", "dead", "asked")

    def __init__(self, node: Any, operands: list[str], out: str, saved: dict[str, str],
                 temps: dict[str, str], consts: dict, view: Any) -> None:
        self._names, self._out, self._g = operands, out, None
        self.target, self.i, self.one, self.textbook = out, 0, False, False
        self.values = [x.value if isinstance(x, Tensor) else x for x in node.inputs]
        arrays = [isinstance(v, (np.ndarray, np.generic, int, float)) for v in self.values]
        self.shapes = [np.shape(v) if ok else () for v, ok in zip(self.values, arrays)]
        self.ndims = [len(s) for s in self.shapes]
        self.dtypes = [np.asarray(v).dtype if ok else None for v, ok in zip(self.values, arrays)]
        self.out_shape, self.dtype = node.output.shape, node.output.dtype
        self.big = node.output.size >= IN_PLACE_MIN_SIZE
        self.params = {**_defaults(node.op), **node.params}
        self.read: set[str] = set()
        self.saved, self.temps = _Logged(saved), _Logged(temps)
        self.saved.read = self.temps.read = self.read
        self._consts, self._view = consts, view
        self.dead: frozenset[str] | None = None  # None: this render may overwrite nothing
        self.asked: set[str] = set()

    def _use(self, name: str | None) -> str | None:
        if name is not None:
            self.read.add(name)
        return name

    A = property(lambda self: self._use(self._names[0] if self._names else None))
    B = property(lambda self: self._use(self._names[1] if len(self._names) > 1 else None))
    C = property(lambda self: self._use(self._out))
    G = property(lambda self: self._use(self._g))

    @property
    def names(self) -> list[str]:
        for n in self._names:
            self._use(n)
        return list(self._names)

    def name(self, k: int) -> str:
        """Operand k's name (or literal)."""
        return self._use(self._names[k])

    def name_of(self, array: Any) -> str:
        """The argument name of an array inside an operand (an index array of a tuple)."""
        return self._use(self._view.of(array))

    def lit(self, value: Any) -> str:
        return literal(value)

    def const(self, value: Any, base: str) -> str:
        """A value the fast code holds instead of writing out (never in the textbook form);
        the same object held twice has one name."""
        for name, held in self._consts.items():
            if held is value:
                return name
        name = self._view.fresh(f"_{base}")
        self._consts[name] = value
        return name

    def both(self, template: Any, one: bool = False) -> tuple[Any, frozenset[str], Any]:
        """The template for the fast printer, the names that reads, and for the textbook one.

        ``one``: G is the value function's seed of ones, which a template may drop.
        """
        self.one, self.textbook = one, False
        self.read.clear()
        self.asked.clear()
        fast = self.render(template)
        reads = frozenset(self.read)
        self.textbook = True
        text = self.render(template)
        self.one, self.textbook = False, False
        return fast, reads, text

    def spare(self, *names: str) -> bool:
        """May the fast form overwrite these operands' buffers (``d_h *= h``)?

        A template asks before writing a form that works in place. The
        closed form renders such a form apart (``sparing``), and a pass picks
        it only where nothing reads, holds or returns those names after the
        statement (passes.spare). The textbook form never asks.
        """
        if self.textbook or self.dead is None:
            return False
        self.asked.update(names)
        return self.dead.issuperset(names)

    def sparing(self, template: Any) -> tuple[frozenset[str], Any]:
        """The names the last fast render asked to overwrite, and the form that overwrites them."""
        asked = self.dead = frozenset(self.asked)
        fast = self.render(template)
        self.dead = None
        return asked, fast

    def render(self, template: Any) -> Any:
        """The template's expression or statements for this context."""
        if callable(template):
            return template(self)
        fields = {k: literal(v) for k, v in self.params.items()}
        for _, field, _, _ in string.Formatter().parse(template):
            if field in ("A", "B", "C", "G"):
                fields[field] = getattr(self, field)
        return template.format(**fields)


def literal(x: Any) -> str:
    """``x`` as Python source that evaluates to the same value (numbers, strings, tuples)."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, (bool, np.bool_, type(None), str)):
        return repr(x if not isinstance(x, np.bool_) else bool(x))
    if isinstance(x, (int, np.integer)):
        value = int(x)
        if not -2**63 <= value < 2**64:
            return literal(float(value))  # numpy makes an object array of a larger int
        if isinstance(x, np.integer):  # numpy 2 keeps a numpy scalar's own type: 3 is not np.int64(3)
            return f"np.{type(x).__name__}({value})"
        return f"({value})" if value < 0 else repr(value)
    if isinstance(x, Fraction):
        return literal(float(x))
    if isinstance(x, (float, np.floating)):
        value = float(x)
        text = repr(value) if math.isfinite(value) else (
            "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "(-np.inf)"))
        if isinstance(x, np.floating):  # a float32 array times 0.1 is float32, times np.float64(0.1) not
            return f"np.{type(x).__name__}({text})"
        return f"({text})" if text.startswith("-") else text
    if isinstance(x, (tuple, list)):
        inner = ", ".join(literal(v) for v in x)
        if isinstance(x, list):
            return f"np.array([{inner}])"
        return f"({inner},)" if len(x) == 1 else f"({inner})"
    if isinstance(x, slice):  # an index a recorded pass holds: x[(slice(None, 2),)]
        return f"slice({literal(x.start)}, {literal(x.stop)}, {literal(x.step)})"
    raise TypeError(f"closed_form: cannot write a {type(x).__name__} into code")


def _defaults(op: Any) -> dict[str, Any]:
    """The op's keyword parameters left at their defaults, which a template also needs."""
    found = getattr(op, "_defaults", None)
    if found is None:  # read once per op from its forward's signature
        found = {p.name: p.default for p in inspect.signature(op.forward).parameters.values()
                 if p.default is not p.empty}
        op._defaults = found
    return found
