"""Lowering, second half: the backward pass as statements.

The nodes to visit come from plan.py and the equations beside the code from
equations.py. Each VJP's statement is printed from the ops its grads recorded
(derive.py), or from the op's hand-tuned template where it has one
(``Code.fast_vjps``). A gradient handed on unchanged (``dA = G`` of an add)
is a rename, not a statement; a tensor used by several ops gets numbered
terms and one sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import broadcast_axes
from ..tensor import Tensor
from .derive import Writer
from .equations import Equations
from .ir import Stmt
from .plan import Plan


class Backward:
    """One backward lowering: per tensor id, its gradient's terms and, once summed, its name.

    ``grad[id(x)]`` is ``(name, fresh, dtype)``: ``fresh`` says the array is
    the statement's own (not a view of G or of an operand), so it may be
    returned as it is.
    """

    def __init__(self, view: Any, forward: dict[int, Stmt], contexts: dict, sources: list,
                 derived: dict, consts: dict, fast_vjps: bool = True) -> None:
        self.view, self.forward, self.contexts = view, forward, contexts
        self.derived, self.consts, self.fast_vjps = derived, consts, fast_vjps
        self.called = {key for key, stmt in forward.items() if stmt.kind == "call"}
        self.plan = Plan(view, sources, self.called, derived)
        self.sources = set(map(id, sources))
        self.maths = Equations(view, contexts, derived)
        self.terms: dict[int, list[tuple[str, bool, str, np.dtype]]] = {}
        self.grad: dict[int, tuple[str, bool, np.dtype]] = {}
        self.stmts: list[Stmt] = []
        self.seed = ""
        self.seed_equations: list[str] = []  # for gradients that are the seed, handed on

    @property
    def node_equations(self) -> dict[int, str]:
        return self.maths.by_node

    def run(self) -> list[Stmt]:
        target = self.view.target
        self.seed = self.view.grad(target)
        self.grad[id(target)] = (self.seed, False, target.dtype)
        for node in reversed(self.plan.nodes):
            if id(node.output) in self.grad:
                self._node(node)
        return self.stmts

    def _node(self, node: Any) -> None:
        """The VJP statements of one node, and its equation for the step page."""
        called, local = id(node) in self.called, []
        for i, x in enumerate(node.inputs):
            if not self.plan.gets_gradient(node, i, x):
                continue
            self._term(node, i, x, called)
            by_name = self.maths.term(node, i, x, called, by_name=True)
            symbol = self.maths.symbol(x)
            if self.plan.expected[id(x)] > 1:  # one term of x's gradient: numbered as in the code
                symbol = f"{symbol}_{len(self.terms[id(x)])}"
            local.append(f"{symbol} = {by_name}")
            self._receive(x)
        self.maths.by_node[id(node)] = ";  ".join(local)

    def _term(self, node: Any, i: int, x: Tensor, called: bool) -> None:
        """Write input i's gradient term, or pass G on as a rename."""
        g, _, g_dtype = self.grad[id(node.output)]
        dtype = np.result_type(g_dtype, node.output.dtype)
        maths = self.maths.term(node, i, x, called)
        name = self.view.grad(x) if self.plan.expected[id(x)] == 1 else self.view.fresh(
            f"d_{self.view.of(x)}_{len(self.terms.get(id(x), [])) + 1}")
        if called:
            vjps = next(iter(self.forward[id(node)].temps))
            call = f"{name} = {vjps}[{i}]({g})"
            self.stmts.append(Stmt(name, "vjp_call", frozenset({vjps, g}), x.size, view=True,
                                   node=node, role=i, fast=[call], text=[call]))
            self.terms.setdefault(id(x), []).append((name, False, maths, dtype))
            return
        fast = node.op.code.fast_vjps
        if self.fast_vjps and i < len(fast) and fast[i] is not None:
            axes = ()
            if node.op.broadcasts and x.shape != node.output.shape:
                axes = broadcast_axes(x.shape, node.output.shape)
            # A template may work in G's and the output's buffers only where they are
            # the gradient's own shape and dtype (and G is not the seed, which is kept).
            spare = (not axes and g != self.seed and g_dtype == node.output.dtype
                     and x.shape == node.output.shape)
            self.stmts.append(self._vjp(node, i, x, name, g, axes, spare))
            self.terms.setdefault(id(x), []).append((name, True, maths, dtype))
            return
        d = self.derived[id(node)][i]
        if d.renames_g:
            self.terms.setdefault(id(x), []).append((g, False, maths, dtype))  # a rename
            return
        self.stmts.append(self._derived(node, i, x, name, g, d))
        self.terms.setdefault(id(x), []).append((name, d.fresh, maths, dtype))

    def _derived(self, node: Any, i: int, x: Tensor, name: str, g: str, d: Any) -> Stmt:
        """Input i's VJP printed from the ops its grads recorded, in this program's names."""
        c = self.contexts[id(node)]
        outer = {id(d.g): g, id(node.output): c._out}
        outer.update((id(v), text) for v, text in zip(node.inputs, c._names)
                     if isinstance(v, (Tensor, np.ndarray)))
        writer = Writer(d, outer, name, self.view, self.consts)
        fast, reads = writer.code(False, False)
        text, _ = writer.code(True, False)
        stmt = Stmt(name, "vjp", reads, x.size, view=not d.fresh, node=node, role=i, fast=fast,
                    text=text, temps=dict(writer.temps))
        if g == self.seed:  # the value function's seed is ones: G ∘ X is X
            stmt.one_fast, stmt.one_reads = writer.code(False, True)
            stmt.one_text, _ = writer.code(True, True)
        return stmt

    def _vjp(self, node: Any, i: int, x: Tensor, name: str, g: str, axes: tuple,
             spare: bool) -> Stmt:
        """Input i's VJP from the op's hand-tuned template (``Code.fast_vjps``)."""
        c, template = self.contexts[id(node)], node.op.code.fast_vjps[i]
        c.target, c.i, c._g = name, i, g
        c.dead = frozenset() if spare else None
        fast, reads, text = c.both(template)
        c.dead = None
        stmt = Stmt(name, "vjp", reads, x.size,
                    node=node, role=i, fast=fast, text=text,
                    reduce=(axes, x.shape, node.output.shape) if axes else None)
        if spare and c.asked:
            stmt.spare, stmt.spare_fast = c.sparing(template)
        if g == self.seed:  # the value function's seed is ones: the template may drop G
            stmt.one_fast, stmt.one_reads, stmt.one_text = c.both(template, one=True)
        return stmt

    def _receive(self, x: Tensor) -> None:
        """Once every term of x's gradient is in, sum them and name the result."""
        terms = self.terms[id(x)]
        if len(terms) < self.plan.expected[id(x)]:
            return
        if len(terms) == 1:
            name, fresh, _, dtype = terms[0]
        else:
            name, parts = self.view.grad(x), [t[0] for t in terms]
            line = " + ".join(parts)
            self.stmts.append(Stmt(name, "sum", frozenset(parts), x.size, fast=line, text=line,
                                   comment=f"{len(terms)} uses of {self.view.of(x)}: "
                                           "their gradients add up"))
            fresh, dtype = True, np.result_type(*[t[3] for t in terms])
        self.grad[id(x)] = (name, fresh, dtype)
        equation = self.maths.received(x, id(x) in self.sources, [t[2] for t in terms])
        if equation is not None:
            self._attach(name, equation)

    def _attach(self, name: str, equation: str) -> None:
        """Give the statement that computes ``name`` its equation (a rename's too)."""
        for stmt in reversed(self.stmts):
            if name in stmt.defines:
                stmt.equations += (equation,)
                return
        self.seed_equations.append(equation)  # the seed itself, handed on unchanged
