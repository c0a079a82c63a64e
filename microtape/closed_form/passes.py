"""Passes: functions from program to program, driven by what each statement reads and its size.

``unused`` drops gradients nothing reads; ``in_place`` lets a large
elementwise step reuse its input's buffer when nothing reads that input
again (nor any view of it, nor a called op's VJPs, which may hold it);
``spare`` does the same for a VJP that offers to work in its operands'
buffers (the sigmoid's ``d_h *= h``); ``frees`` deletes each large name after its last read, so a generated step
lets go of memory as the tape does. None looks at generated text.
"""

from __future__ import annotations

from dataclasses import replace

from ..ops import IN_PLACE_MIN_SIZE
from .ir import Program, Stmt


def _reads(stmt: Stmt) -> frozenset[str]:
    return stmt.reads if stmt.one_reads is None else stmt.reads | stmt.one_reads


def aliases(stmts: list[Stmt]) -> dict[str, set[str]]:
    """For each name, the names whose memory it may share (views, and VJPs that hold inputs)."""
    alias: dict[str, set[str]] = {}
    for stmt in stmts:
        if stmt.view:
            shared = set(stmt.reads).union(*(alias.get(r, ()) for r in stmt.reads))
            for name in stmt.defines:
                alias[name] = shared
    return alias


def _kept(program: Program) -> set[str]:
    """Names the function returns or updates: never freed nor overwritten."""
    kept = {program.value, program.seed, *program.inputs}
    kept.update(name for name, *_ in program.results if name)
    kept.update(g for _, g in program.updates)
    return kept


def _later_reads(stmts: list[Stmt]) -> list[frozenset[str]]:
    """For each statement, every name read after it."""
    later: list[frozenset[str]] = [frozenset()] * len(stmts)
    seen: set[str] = set()
    for k in range(len(stmts) - 1, -1, -1):
        later[k] = frozenset(seen)
        seen |= _reads(stmts[k])
    return later


def _holders(name: str, alias: dict[str, set[str]]) -> set[str]:
    """``name`` and every name that may share its memory (its views, VJPs that hold it)."""
    return {name} | {n for n, shared in alias.items() if name in shared}


def unused(program: Program) -> Program:
    """Drop backward statements whose names nothing returns or reads.

    A gradient reaches an op's output whenever that output depends on a
    source, but an op whose VJP for that input is None (or a called op that
    hands back None) never reads it: its statement would be dead weight.
    """
    needed = set(_kept(program))
    kept = []
    for stmt in reversed(program.backward):
        if needed.isdisjoint(stmt.defines):
            continue
        needed |= _reads(stmt)
        kept.append(stmt)
    return replace(program, backward=kept[::-1])


def in_place(program: Program) -> Program:
    """``t = xW1 + b1`` as ``t = xW1; t += b1`` when the large buffer x W1 is dead after it."""
    stmts = program.forward
    made = {s.name: s for s in stmts if s.kind == "op" and not s.view}
    alias, kept = aliases(program.statements), _kept(program)
    later_reads = _later_reads(program.statements)
    out = []
    for k, stmt in enumerate(stmts):
        source = stmt.operands[0] if stmt.operands else None
        donor = made.get(source)
        if (stmt.operator and stmt.size >= IN_PLACE_MIN_SIZE and donor is not None
                and donor.node.output.shape == stmt.node.output.shape
                and donor.node.output.dtype == stmt.node.output.dtype
                and stmt.operands[1] != source and source not in kept):
            holders = _holders(source, alias)
            if not holders & later_reads[k] and not holders & kept:
                stmt = replace(stmt, in_place=True)
        out.append(stmt)
    return replace(program, forward=out)


def spare(program: Program) -> Program:
    """``d_h *= h`` where the sigmoid's VJP offers it and d_h and h are dead after it.

    A name may be overwritten only if its statement made it as a fresh array
    (not a view, not an argument), and neither it nor anything that may share
    its memory is read after, returned or updated.
    """
    stmts = program.statements
    owned = {s.name for s in stmts if s.kind in ("op", "vjp", "sum") and not s.view}
    alias, kept = aliases(stmts), _kept(program)
    later_reads = _later_reads(stmts)
    n = len(program.forward)
    backward = []
    for k, stmt in enumerate(stmts[n:], n):
        if stmt.spare and all(name in owned and not _holders(name, alias) & (later_reads[k] | kept)
                              for name in stmt.spare):
            stmt = replace(stmt, fast=stmt.spare_fast, overwrites=tuple(sorted(stmt.spare)))
        backward.append(stmt)
    return replace(program, backward=backward)


def frees(program: Program) -> Program:
    """``del`` each large name right after the statement that last reads (or makes) it."""
    stmts = program.statements
    kept = _kept(program)
    last: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for k, stmt in enumerate(stmts):
        for name, size in ((stmt.name, stmt.size), *stmt.temps.items()):
            sizes[name] = size
            last.setdefault(name, k)
        for name in _reads(stmt):
            if name in sizes:
                last[name] = k
    dead: dict[int, list[str]] = {}
    for name, k in last.items():
        if sizes[name] >= IN_PLACE_MIN_SIZE and name not in kept:
            dead.setdefault(k, []).append(name)
    new = [replace(s, frees=tuple(sorted(dead[k]))) if k in dead else s for k, s in enumerate(stmts)]
    n = len(program.forward)
    return replace(program, forward=new[:n], backward=new[n:])
