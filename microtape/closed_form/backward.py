"""Lowering, second half: the backward pass as statements, and its equations.

Only nodes on a path from a source to the target get VJP statements. A
gradient handed on unchanged (``dA = G`` of an add) is a rename, not a
statement; a tensor used by several ops gets numbered terms and one sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..naming import identifier
from ..ops import broadcast_axes
from ..tensor import Tensor
from . import wording
from .context import Context
from .ir import Stmt


class Backward:
    """The state of one backward lowering: per tensor id, its gradient's terms and name."""

    def __init__(self, view: Any, forward: dict[int, Stmt], contexts: dict, sources: list) -> None:
        self.view, self.forward, self.contexts = view, forward, contexts
        self.target = view.target
        self.source_ids = set(map(id, sources))
        self.live = set(self.source_ids)
        self.plan = []
        for node in view.nodes:
            if any(id(x) in self.live for x in node.inputs if isinstance(x, Tensor)):
                self.live.add(id(node.output))
                self.plan.append(node)
        producer = {id(node.output): node for node in view.nodes}
        self.deltas = wording.delta_names(view.nodes, producer)
        self.producer = producer
        self.terms: dict[int, list[tuple[str, bool, str, np.dtype]]] = {}
        self.grad: dict[int, tuple[str, bool, np.dtype]] = {}
        self.gmath: dict[int, str] = {}
        self.symbols: dict[int, str] = {}
        self.equations: list[str] = []
        self.node_equations: dict[int, str] = {}
        self.stmts: list[Stmt] = []

    def run(self) -> list[Stmt]:
        target = self.target
        self.seed = self.view.grad(target)
        self.grad[id(target)] = (self.seed, False, target.dtype)
        self.gmath[id(target)] = "1"
        self.symbols[id(target)] = wording.gradient_symbol(self.view.of(target))
        self.expected = self._expected_terms()
        for node in reversed(self.plan):
            if id(node.output) in self.grad:
                self.node_equations[id(node)] = self._step(node)
        return self.stmts

    def _gets_gradient(self, node: Any, i: int, x: Any) -> bool:
        if not isinstance(x, Tensor) or id(x) not in self.live:
            return False
        if self.forward[id(node)].kind == "call":
            return i < len(node.vjps) and node.vjps[i] is not None
        vjps = node.op.code.vjps
        return i < len(vjps) and vjps[i] is not None and i < len(node.vjps) and node.vjps[i] is not None

    def _expected_terms(self) -> dict[int, int]:
        expected: dict[int, int] = {}
        for node in self.plan:
            for i, x in enumerate(node.inputs):
                if self._gets_gradient(node, i, x):
                    expected[id(x)] = expected.get(id(x), 0) + 1
        return expected

    def _step(self, node: Any) -> str:
        """The VJP statements of one node; returns its equation for the step page."""
        out = node.output
        g, _, g_dtype = self.grad[id(out)]
        local = []
        for i, x in enumerate(node.inputs):
            if not self._gets_gradient(node, i, x):
                continue
            expected = self.expected[id(x)]
            base = f"d_{self.view.of(x)}"
            name = self.view.grad(x) if expected == 1 else self.view.fresh(
                f"{base}_{len(self.terms.get(id(x), [])) + 1}")
            maths = self._term(node, i, x, name, g, g_dtype)
            if not maths.startswith("VJP of"):  # this step alone: its G by name
                maths = self._maths(node, i, x, self._symbol(out))
            local.append(f"{self._symbol(x)} = {maths}")
            self._receive(x)
        return ";  ".join(local)

    def _term(self, node: Any, i: int, x: Tensor, name: str, g: str, g_dtype: Any) -> str:
        """Write input i's gradient term; return it as maths."""
        dtype = np.result_type(g_dtype, node.output.dtype)
        if self.forward[id(node)].kind == "call":
            vjps = next(iter(self.forward[id(node)].temps))
            call = f"{name} = {vjps}[{i}]({g})"
            self._emit(Stmt(name, "vjp_call", frozenset({vjps, g}), x.size, view=True, node=node,
                            role=i, fast=[call], text=[call]))
            maths = f"VJP of {identifier(node.op.name)}({wording.wrap(self.gmath[id(node.output)])})"
            self.terms.setdefault(id(x), []).append((name, False, maths, dtype))
            return maths
        code = node.op.code
        axes = ()
        if node.op.broadcasts and x.shape != node.output.shape:
            axes = broadcast_axes(x.shape, node.output.shape)
        maths = self._maths(node, i, x, wording.wrap(self.gmath[id(node.output)]))
        if code.vjps[i] == "{G}" and not axes:
            self.terms.setdefault(id(x), []).append((g, False, maths, dtype))  # a rename
            return maths
        stmt = self._vjp_stmt(node, i, x, name, g, axes)
        fresh = bool(axes) or not (code.grad_view or code.vjps[i] == "{G}")
        self.terms.setdefault(id(x), []).append((name, fresh, maths, dtype))
        self._emit(stmt)
        return maths

    def _vjp_stmt(self, node: Any, i: int, x: Tensor, name: str, g: str, axes: tuple) -> Stmt:
        c: Context = self.contexts[id(node)]
        c.target, c.i, c._g = name, i, g
        template = node.op.code.vjps[i]
        c.read.clear()
        c.one, c.textbook = False, False
        fast = c.render(template)
        reads = frozenset(c.read)
        c.textbook = True
        text = c.render(template)
        stmt = Stmt(name, "vjp", reads, x.size, view=node.op.code.grad_view and not axes,
                    node=node, role=i, fast=fast, text=text,
                    reduce=(axes, x.shape, node.output.shape) if axes else None)
        if g == self.seed:  # the value function's seed is ones: the template may drop G
            c.one, c.textbook = True, False
            c.read.clear()
            stmt.one_fast = c.render(template)
            stmt.one_reads = frozenset(c.read)
            c.textbook = True
            stmt.one_text = c.render(template)
        c.one, c.textbook = False, False
        return stmt

    def _emit(self, stmt: Stmt) -> None:
        self.stmts.append(stmt)

    def _maths(self, node: Any, i: int, x: Tensor, g: str) -> str:
        code = node.op.code
        c: Context = self.contexts[id(node)]
        kept = c._g, c.i, c.one
        c._g, c.i, c.one = g, i, id(node.output) == id(self.target)
        maths = c.render(code.math[i]) if i < len(code.math) and code.math[i] else "?"
        c._g, c.i, c.one = kept
        if node.op.broadcasts and x.shape != node.output.shape:
            maths = wording.summed(maths, broadcast_axes(x.shape, node.output.shape), x.shape,
                                   node.output.shape)
        return maths

    def _symbol(self, x: Tensor) -> str:
        key = id(x)
        if key not in self.symbols:
            node = self.producer.get(key)
            delta = self.deltas.get(id(node)) if node is not None else None
            self.symbols[key] = delta or wording.gradient_symbol(self.view.of(x))
        return self.symbols[key]

    def _receive(self, x: Tensor) -> None:
        """Once every term of x's gradient is in, sum them and name the result."""
        terms = self.terms[id(x)]
        if len(terms) < self.expected[id(x)]:
            return
        if len(terms) == 1:
            name, fresh, maths, dtype = terms[0]
        else:
            name = self.view.grad(x)
            parts = [t[0] for t in terms]
            line = " + ".join(parts)
            self._emit(Stmt(name, "sum", frozenset(parts), x.size, fast=line, text=line,
                            comment=f"{len(terms)} uses of {self.view.of(x)}: their gradients add up"))
            fresh, dtype = True, np.result_type(*[t[3] for t in terms])
            maths = " + ".join(t[2] for t in terms)
        self.grad[id(x)] = (name, fresh, dtype)
        symbol = self._symbol(x)
        if wording.shown(id(x) in self.source_ids, len(terms), maths, symbol):
            self.equations.append(f"{symbol} = {maths}")
            self.gmath[id(x)] = symbol
        else:
            self.gmath[id(x)] = maths
