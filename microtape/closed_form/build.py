"""From a tape's nodes to a lowered, optimised ``Program``, and from source to a function."""

from __future__ import annotations

import itertools
import linecache
import weakref
from typing import Any, Sequence

import numpy as np

from ..naming import GENERATED_GLOBALS, TapeNames, ancestors, index_of
from ..tape import require_scalar
from ..tensor import Tensor
from .backward import Backward
from .ir import Program
from .lower import lower_forward
from .passes import aliases, frees, in_place, spare, unused
from .plan import vjp_path
from .recorded import recorded_equations
from .sections import headings

_COUNT = itertools.count(1)


def lower(nodes: Sequence[Any], target: Tensor, sources: list[Tensor], names: Any = None,
          fast_vjps: bool = True):
    """The program, the naming view and the backward lowering (for its equations).

    ``fast_vjps=False`` writes every VJP from its op's grads, leaving out the
    hand-tuned templates (``Code.fast_vjps``); the tests compare the two.
    """
    end = index_of(nodes, target, "closed_form", sources=[target])
    require_scalar(target, "closed_form")
    view = TapeNames(ancestors(nodes, target, end), target, names, everything=True)
    args: dict[str, Any] = {}
    consts: dict[str, Any] = {}
    live, _ = vjp_path(view.nodes, set(map(id, sources)), target)
    forward, contexts, derived = lower_forward(view, args, consts, live)
    if view.is_leaf(target):
        args.setdefault(view.of(target), target)
    back = Backward(view, {id(s.node): s for s in forward}, contexts, sources, derived, consts,
                    fast_vjps)
    backward = back.run()
    results, updates = [], []
    for s in sources:
        got = back.grad.get(id(s))
        results.append((got[0], s, got[1], got[2]) if got else ("", s, True, s.dtype))
        if got and view.of(s) in args:
            updates.append((view.of(s), got[0]))
    program = Program(list(args), forward, backward, view.of(target), results, target=target,
                      seed=back.seed, lr="lr", updates=updates, consts=consts,
                      before=view.fresh("value"), seed_equations=tuple(back.seed_equations))
    program.headings, program.backward_heading, passes = headings(view, forward)
    program.recorded = [(passes.get(id(target), "recorded backward pass"), lines)
                        for target, lines in recorded_equations(view, contexts, consts)]
    steps_all = len(updates) == sum(1 for s in sources if id(s) in back.grad)
    program.value_aliases_update = _aliases_update(program)
    return frees(spare(in_place(unused(program)))), view, back, args, steps_all


def _aliases_update(program: Program) -> bool:
    alias = aliases(program.statements)
    holders = {program.value} | alias.get(program.value, set())
    return any(p in holders for p, _ in program.updates)


def compile_function(source: str, name: str, consts: dict) -> Any:
    """``source`` run into a function; registered with linecache, so tracebacks show its lines."""
    filename = f"<microtape closed form {next(_COUNT)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {**GENERATED_GLOBALS, **consts}
    exec(compile(source, filename, "exec"), namespace)
    function = namespace[name]
    weakref.finalize(function, linecache.cache.pop, filename, None)  # the lines live as long as it
    return function
