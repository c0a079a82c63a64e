"""The closed form as data: a list of statements, each naming what it defines and reads.

Lowering (``lower.py``) turns recorded nodes into a ``Program``; passes
(``passes.py``) are functions from program to program that read only the
facts below, never generated text; the printers (``printing.py``) turn the
same program into fast and textbook source.

A statement's operation is kept as its op, operand names and raw params
(``node``, ``operands``, ``role``); ``fast`` and ``text`` are what the op's
template wrote for each printer, as one expression or a list of statements
assigning ``name``. Passes never look inside them. A VJP template may also
write a fast form that works in the buffers of operands it names
(``spare``); a pass picks it when nothing reads, holds or returns them after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Stmt:
    """One step of the program."""

    name: str                      # the name it defines
    kind: str                      # "op", "call", "vjp", "vjp_call", "sum", "seed", "copy"
    reads: frozenset[str]          # every name it reads
    size: int = 0                  # elements of ``name``
    view: bool = False             # may ``name`` share memory with what it reads?
    equations: tuple[str, ...] = ()  # what it computes, in the derivation's notation
    node: Any = None               # the recorded node it comes from
    role: int = -1                 # -1: the node's forward; i: the VJP for input i
    operands: tuple[str, ...] = () # the names or literals of the node's inputs
    fast: Any = None               # expression or statements, for the fast printer
    text: Any = None               # expression or statements, for the textbook printer
    temps: dict[str, int] = field(default_factory=dict)  # further names it defines -> size
    comment: str = ""              # why, for the reader of the fast source
    operator: str | None = None    # "+", "-", "*", "/": an elementwise binary op
    reduce: tuple | None = None    # (axes, shape, out_shape): sum a broadcast back
    one_fast: Any = None           # fast and text when G is the value function's seed of ones
    one_text: Any = None
    one_reads: frozenset[str] | None = None
    spare: frozenset[str] = frozenset()  # names the template can overwrite, if dead after it
    spare_fast: Any = None         # the fast form that overwrites them
    in_place: bool = False         # set by passes: ``name`` reuses operands[0]'s buffer
    overwrites: tuple[str, ...] = ()  # set by passes: ``spare`` is dead, ``spare_fast`` runs
    frees: tuple[str, ...] = ()    # set by passes: names dead after this statement

    @property
    def defines(self) -> tuple[str, ...]:
        return (self.name, *self.temps)


@dataclass(slots=True)
class Program:
    """A function: its arguments, forward and backward statements, and what it gives back."""

    inputs: list[str]                     # argument names, in order
    forward: list[Stmt]
    backward: list[Stmt]
    value: str                            # the target's name
    results: list[tuple]                  # per source: (gradient name or "", it, fresh, dtype)
    target: Any = None                    # the recorded target Tensor
    seed: str = ""                        # the target's gradient
    lr: str = "lr"                        # the step's learning-rate argument
    updates: list[tuple[str, str]] = field(default_factory=list)  # (parameter, gradient)
    consts: dict[str, Any] = field(default_factory=dict)          # held values (fast only)
    before: str = "value"                 # the step's copy of the value, when an update aliases it
    value_aliases_update: bool = False
    seed_equations: tuple[str, ...] = ()  # equations of gradients that are the seed itself
    headings: dict[int, str] = field(default_factory=dict)  # forward index -> a pass starting
    backward_heading: str = "backward pass"
    recorded: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, equations)

    @property
    def statements(self) -> list[Stmt]:
        return self.forward + self.backward
