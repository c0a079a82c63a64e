"""The two printers: the same program as fast code or as the derivation's textbook numpy.

``fast`` is what runs (``cf()``, ``cf.function``, ``cf.sgd_step``): held
constants, reductions across rows, work in place and ``del`` of dead names.
``textbook`` is what a person writes beside the derivation, self-contained
after ``import numpy as np``: the constants the fast form holds (a recorded
pass's ``N`` and ``I``) are written out at its top. The exception is an op the
closed form calls by its held forward, as the fast form does: a user op with
no code template, or a built-in one whose template does not cover the traced
call (``@`` of a vector, the loss of one example); its name is left undefined.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .context import literal
from .ir import Program, Stmt


def _reduce(expr: str, reduce: tuple, textbook: bool) -> str:
    """The adjoint of a broadcast, with the axes fixed from the traced shapes."""
    axes, shape, out_shape = reduce
    axis = axes[0] if len(axes) == 1 else axes
    grouped = f"({expr})" if " " in expr else expr
    summed = f"{grouped}.sum(axis={axis})" if textbook else f"np.add.reduce({expr}, axis={axis})"
    kept = tuple(n for i, n in enumerate(out_shape) if i not in axes)
    return summed if kept == tuple(shape) else f"{summed}.reshape({tuple(shape)})"


def _body(stmt: Stmt, textbook: bool, one: bool) -> list[str]:
    if textbook:
        code = stmt.one_text if one and stmt.one_text is not None else stmt.text
    else:
        code = stmt.one_fast if one and stmt.one_fast is not None else stmt.fast
    lines = [f"# {stmt.comment}"] if stmt.comment and stmt.kind == "call" else []
    if not textbook and stmt.in_place:
        a, b = stmt.operands[0], stmt.operands[1]
        return lines + [f"{stmt.name} = {a}  # in place: {a} is not read again",
                        f"{stmt.name} {stmt.operator}= {b}"]
    if isinstance(code, str):
        expr = _reduce(code, stmt.reduce, textbook) if stmt.reduce else code
        comment = f"  # {stmt.comment}" if stmt.comment and stmt.kind != "call" else ""
        return lines + [f"{stmt.name} = {expr}{comment}"]
    lines += list(code)
    if stmt.overwrites and not textbook:
        names = " and ".join(stmt.overwrites)
        lines[-len(code)] += f"  # in place: {names} {'is' if len(stmt.overwrites) == 1 else 'are'} not read again"
    if stmt.reduce:
        lines.append(f"{stmt.name} = {_reduce(stmt.name, stmt.reduce, textbook)}")
    return lines


def _statements(stmts: list[Stmt], textbook: bool, one: bool,
                headings: dict[int, str] | None = None) -> list[str]:
    lines = []
    for k, stmt in enumerate(stmts):
        if headings and k in headings:  # a recorded backward pass, or the user's ops after one
            lines += ["", f"# {headings[k]}"]
        lines += _body(stmt, textbook, one)
        if stmt.frees and not textbook:
            lines.append(f"del {', '.join(stmt.frees)}  # not read again: free it now")
    return lines


def _seed_used(program: Program, one: bool) -> bool:
    seed = program.seed
    if any(name == seed for name, *_ in program.results) or any(g == seed for _, g in program.updates):
        return True
    return any(seed in (s.one_reads if one and s.one_reads is not None else s.reads)
               for s in program.backward)


def _results(program: Program) -> list[str]:
    returned, out = set(), []
    for name, source, fresh, dtype in program.results:
        if not name:
            out.append(f"np.zeros({source.shape}, dtype=np.{source.dtype.name})")
            continue
        if dtype != source.dtype:
            name = f"{name}.astype(np.{source.dtype.name})"
        elif not fresh or name in returned:
            name = f"{name}.copy()"  # a view or a name already returned: its own array
        returned.add(name)
        out.append(name)
    return out


def print_function(program: Program, step: bool, textbook: bool, name: str) -> str:
    """The program as one Python function's source."""
    one = not step
    params = [*program.inputs, program.lr] if step else list(program.inputs)
    body = ["# forward pass", *_statements(program.forward, textbook, one, program.headings), "",
            f"# {program.backward_heading}"]
    if _seed_used(program, one):
        t = program.target
        body.append(f"{program.seed} = -{program.lr}" if step else
                    f"{program.seed} = np.ones({t.shape}, dtype=np.{t.dtype.name})")
    body += _statements(program.backward, textbook, one)
    body += _ending(program, step)
    if textbook:
        body = _written_constants(program.consts, body) + body
    return f"def {name}({', '.join(params)}):\n" + "".join(
        f"    {line}\n" if line else "\n" for line in body)


def _written_constants(consts: dict[str, Any], body: list[str]) -> list[str]:
    """An assignment for each held constant ``body`` reads that numpy can write down."""
    text = "\n".join(body)
    lines = []
    for name, value in consts.items():
        if callable(value) or not re.search(rf"\b{re.escape(name)}\b", text):
            continue  # a held forward stays the fast form's; the docstring says so
        if isinstance(value, np.ndarray):  # its dtype written too: a 0-d N keeps float32
            written = f"np.array({value.tolist()!r}, dtype=np.{value.dtype.name})"
        else:
            try:
                written = literal(value)
            except TypeError:
                continue  # nothing numpy writes down: the fast form keeps holding it
        lines.append(f"{name} = {written}  # a constant the tape computed")
    return lines + [""] if lines else []


def _ending(program: Program, step: bool) -> list[str]:
    if not step:
        results = _results(program)
        inner = f"{results[0]}," if len(results) == 1 else ", ".join(results)
        return [f"return {program.value}, ({inner})"]
    value = program.value
    lines = ["", "# the update: each gradient above already carries the factor -lr"]
    if program.value_aliases_update:
        lines.insert(1, f"{program.before} = np.array({value})  # the value before the update")
        value = program.before
    return lines + [f"{p} += {g}" for p, g in program.updates] + [f"return {value}"]


def print_equations(program: Program) -> str:
    """The backward pass in the derivation's notation: each statement's equations, in order.

    A recorded backward pass comes first, under its heading, then this one under its own.
    """
    lines = [*program.seed_equations, *(e for stmt in program.backward for e in stmt.equations)]
    own = "".join(f"- `{e}`\n" for e in lines)
    if not program.recorded:
        return own or "\n"
    parts = [f"{_capital(heading)}:\n" + "".join(f"- `{e}`\n" for e in eqs)
             for heading, eqs in program.recorded]
    return "\n".join([*parts, f"{_capital(program.backward_heading)}:\n" + own])


def _capital(heading: str) -> str:
    return heading[:1].upper() + heading[1:]
