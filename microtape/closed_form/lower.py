"""Lowering: the recorded nodes a target depends on, as the forward half of a ``Program``.

Each node becomes one statement: its op's code template rendered for both
printers (see context.py), or, for an op without one, a call of its recorded
forward that keeps the VJPs it returns. Every Tensor and array the
computation reads and did not compute is an argument, named by the tape's
naming view; only numbers and strings are written into the code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..naming import TapeNames, identifier, operands
from ..tensor import Tensor, wrap
from .context import Context, literal
from .derive import Derived, derive
from .ir import Stmt


def operand_texts(node: Any, view: TapeNames, args: dict[str, Any], consts: dict) -> list[str]:
    """Each input of ``node`` as code: its name (leaves become arguments) or a literal."""
    texts = []
    for x in node.inputs:
        for obj in operands(x):
            if view.is_leaf(obj) and not view.is_seed(obj) and not view.is_constant(obj):
                args.setdefault(view.of(obj), obj)
        if isinstance(x, np.ndarray) and view.is_constant(x):
            texts.append(_held(x, view, consts))
        elif isinstance(x, Tensor) and view.is_constant(x):  # a VJP's own Tensor (the loss's N)
            consts[view.of(x)] = x.value
            texts.append(view.of(x))
        elif isinstance(x, (Tensor, np.ndarray)):
            texts.append(view.of(x))
        else:
            try:
                texts.append(literal(x))
            except TypeError:
                texts.append(_held(x, view, consts))
    return texts


def _held(x: Any, view: TapeNames, consts: dict) -> str:
    """A value no literal writes (a slice tuple, an odd object): the code holds it."""
    name = view.fresh("_const")
    consts[name] = x
    return name


def lower_forward(view: TapeNames, args: dict[str, Any], consts: dict, live: set[int]
                  ) -> tuple[list[Stmt], dict, dict]:
    """One statement per node of the view; also, by node id, each node's template context
    and its VJPs recorded from its grads (derive.py), {input index: Derived}, for the
    inputs in ``live`` (those that depend on a source)."""
    stmts, contexts, derived, seeds = [], {}, {}, set()
    for node in view.nodes:
        stmts += _seeds(node, view, seeds)
        texts = operand_texts(node, view, args, consts)
        out = view.of(node.output)
        code = node.op.code
        saved = {k: view.fresh(k) for k in (code.saved if code else ())}
        temps = {k: view.fresh(k) for k in (code.temps if code else ())}
        c = Context(node, texts, out, saved, temps, consts, view)
        vjps = _derived(node, live) if code is not None and (code.when is None or code.when(c)) else None
        if vjps is not None:
            stmt = _templated(node, c, texts, out)
            derived[id(node)] = vjps
        else:
            stmt = _called(node, view, texts, out, consts)
        contexts[id(node)] = c
        stmts.append(stmt)
    return stmts, contexts, derived


def _derived(node: Any, live: set[int]) -> dict[int, Derived] | None:
    """Each live input's VJP, recorded from the op's grads; None if one cannot be."""
    found = {}
    for i, x in enumerate(node.inputs):
        if id(x) in live and isinstance(x, Tensor) and node.vjps[i] is not None:
            d = derive(node, i)
            if d is None:
                return None
            found[i] = d
    return found


def _seeds(node: Any, view: TapeNames, written: set[int]) -> list[Stmt]:
    """A recorded backward pass's seed of ones, where first read: a constant, not an argument."""
    stmts = []
    for x in node.inputs:
        if isinstance(x, Tensor) and id(x) not in written and view.is_seed(x):
            written.add(id(x))
            ones = f"np.ones({x.shape}, dtype=np.{x.dtype.name})"
            stmts.append(Stmt(view.of(x), "seed", frozenset(), x.size, fast=ones, text=ones))
    return stmts


def _templated(node: Any, c: Context, texts: list[str], out: str) -> Stmt:
    code = node.op.code
    fast, reads, text = c.both(code.forward)
    defined = {n for n in (*c.saved.values(), *c.temps.values()) if n in reads}
    size = node.output.size
    stmt = Stmt(out, "op", frozenset(reads - defined), size, view=code.view, node=node,
                operands=tuple(texts), fast=fast, text=text,
                temps={n: _size_of(node) for n in defined}, operator=code.operator)
    return stmt


def _size_of(node: Any) -> int:
    first = node.inputs[0] if node.inputs else None
    return int(np.size(first.value if isinstance(first, Tensor) else first)) if first is not None else 0


def _called(node: Any, view: TapeNames, texts: list[str], out: str, consts: dict) -> Stmt:
    """An op without a template: its forward is called, and keeps its VJPs for the backward pass."""
    forward = view.fresh(f"_{node.op.name}")
    consts[forward] = _forward_with_vjps(node.op)
    params = ""
    if node.params:
        held = view.fresh("_params")
        consts[held] = dict(node.params)
        params = f", **{held}"
    vjps = view.fresh(f"{node.op.name}_vjps")
    call = [f"{out}, {vjps} = {forward}({', '.join(texts)}{params})"]
    reads = frozenset(view.of(o) for x in node.inputs for o in operands(x))
    return Stmt(out, "call", reads, node.output.size, view=True, node=node, operands=tuple(texts),
                fast=call, text=call, temps={vjps: 0},
                comment=f"{identifier(node.op.name)} has no code template: call its forward and its VJPs")


def _forward_with_vjps(op: Any) -> Any:
    """The op's forward as the generated code calls it: ``(output, numpy VJPs)``, also for a
    forward that returns its output alone (its VJPs are then its grads, run on arrays)."""
    def call(*args: Any, **params: Any) -> tuple:
        out = op.forward(*args, **params)
        if type(out) is tuple:
            return out
        return out, op._eager_vjps(args, wrap(np.asarray(out)), params)
    return call
