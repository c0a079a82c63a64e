"""Anomaly mode: the first NaN or Inf, named at the op that made it.

``with mt.detect_anomaly():`` puts a checker among the active tapes, so
``Primitive.__call__`` hands it each new node as it hands the tapes theirs:
outside the mode an op does no more work than before. The checker notes the
user's line that called the op and raises ``mt.AnomalyError`` at the first op
whose output holds a value it should not. A tape recorded in the mode, or
asked for a gradient inside it, runs ``checked_sweep`` instead of its plain
backward loop, and checks what each VJP returns.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
from contextvars import ContextVar
from typing import Any, Callable, Generator

import numpy as np

from .anomaly_message import backward_error, clean, forward_error, gradient_error
from .create_graph import run_vjp
from .errors import AnomalyError
from .ops import _value
from .state import _ANOMALY
from .tape import Node, Tape, _active, _check_node, _ignore, reopen
from .tensor import Tensor

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

# What each open detect_anomaly block set, innermost last, per thread and task.
_opened: ContextVar[tuple] = ContextVar("microtape_anomaly_blocks", default=())
_count_lock = threading.Lock()


class Checker:
    """The mode's entry among the active tapes: checks each node handed to it."""

    __slots__ = ("nan", "inf", "_token", "_record", "_outer")

    def __init__(self, nan: bool, inf: bool) -> None:
        self.nan, self.inf = nan, inf
        self._token = None
        self._record = self.check
        self._outer: list = []  # (tape, the outer block's checker it had), restored on exit

    def check(self, node: Node) -> None:
        """Note where the user called the op; raise if its output is bad and it made that."""
        node.source = _caller()
        if not clean(node.output.value, self):
            for t in _after(self):  # the tapes entered inside the mode get the node too
                t._record(node)
            raise forward_error(node, self, innermost_tape())

    def sweep(self, plan: list, cotangents: dict, keep: set, stale: dict, caller: str,
              nodes: list, tape: Tape, target: Tensor) -> dict:
        """``tape._sweep`` with each G and each VJP result checked (see tape.py for the loop).

        Called by the tape itself, so that tape.py need not import this module.
        """
        by_out = {id(node.output): node for node in nodes}
        kept: dict[int, np.ndarray] = {}
        seed = cotangents[id(target)]
        if nodes and not clean(seed, self):
            raise gradient_error(by_out.get(id(target), nodes[-1]), seed, self, tape, target,
                                 seed=True)
        while plan:
            out, edges = plan.pop()
            g = cotangents.pop(out, None)
            if g is None:
                continue
            if stale and out in stale:
                _check_node(*stale.pop(out), caller)
            node = by_out[out]
            if out in keep:
                kept[out] = g
            for i, key, vjp in edges:
                dx = vjp(g)
                if not clean(dx, self):
                    raise _reached(_blame(nodes, node, i, g, dx, self, tape, target), kept, out, g)
                if key in cotangents:  # fan-out: finite gradients whose sum may overflow
                    dx = cotangents[key] + dx
                    if not clean(dx, self):
                        raise _reached(gradient_error(node, dx, self, tape, target), kept, out, g)
                cotangents[key] = dx
        for key in keep.intersection(cotangents):
            kept[key] = cotangents[key]
        return kept

    def graph_checks(self, nodes: list, tape: Tape, target: Tensor) -> GraphChecks:
        """The checks of ``tape``'s recorded backward pass (create_graph=True) of ``target``."""
        return GraphChecks(self, nodes, tape, target)

    def __repr__(self) -> str:
        return f"<anomaly mode: nan={self.nan}, inf={self.inf}>"


class GraphChecks:
    """``Checker.sweep``'s checks, for the recorded backward pass (create_graph.py).

    There the VJPs run as ops, which the mode checks as it checks the user's:
    a VJP that goes bad would be told as the forward-pass anomaly of an op
    inside it (a div, for sqrt's VJP at 0). It is told as the plain pass tells
    it instead: the VJP of which op, for which input, or the fan-out sum.
    """

    __slots__ = ("mode", "nodes", "tape", "target")

    def __init__(self, mode: Checker, nodes: list, tape: Tape, target: Tensor) -> None:
        self.mode, self.nodes, self.tape, self.target = mode, nodes, tape, target

    def seed(self, seed) -> None:
        """Raise if the seed, the target's gradient, is bad already: no VJP made it."""
        if self.nodes and not clean(seed, self.mode):
            node = next((n for n in reversed(self.nodes) if n.output is self.target),
                        self.nodes[-1])
            raise gradient_error(node, _value(seed), self.mode, self.tape, self.target, seed=True)

    def step(self, node: Node, i: int, g, earlier, kept: dict) -> tuple:
        """Input i's gradient term from ``node``'s VJP, and its sum with the ``earlier`` terms."""
        inside = None
        try:
            dx = run_vjp(node, i, g)
        except AnomalyError as err:
            if err.phase != "forward":
                raise
            inside, dx = err, None  # an op inside the VJP went bad: the VJP's result says where
        if inside is not None or not clean(dx, self.mode):
            with np.errstate(all="ignore"):  # the VJP's ops have warned already
                bad = node.vjps[i](_value(g))
            if inside is not None and clean(bad, self.mode):
                raise inside  # only an op inside the VJP saw the bad value: say so as it did
            raise self._reached(_blame(self.nodes, node, i, g, bad, self.mode, self.tape,
                                       self.target), kept, node, g)
        return dx, (dx if earlier is None else self._sum(node, g, earlier, dx, kept))

    def _sum(self, node: Node, g, earlier, dx, kept: dict):
        """Fan-out: the sum of finite gradient terms, which may overflow."""
        try:
            total = earlier + dx
        except AnomalyError:  # the mode saw the sum (an add) go bad
            total = None
        if total is None or not clean(total, self.mode):
            with np.errstate(all="ignore"):
                total = _value(earlier) + _value(dx)
            raise self._reached(gradient_error(node, total, self.mode, self.tape, self.target),
                                kept, node, g)
        return total

    @staticmethod
    def _reached(err, kept: dict, node: Node, g) -> Exception:
        """``err`` with the pass's finished gradients as arrays, as ``Checker.sweep`` gives them."""
        return _reached(err, {k: _value(v) for k, v in kept.items()}, id(node.output), _value(g))


class detect_anomaly:
    """Raise ``mt.AnomalyError`` at the first op that makes a NaN or an Inf.

    A context manager and a decorator. Inside it every op's output is checked
    as it is computed; an op whose inputs are fine and whose output is not
    raises at once, naming the op, the first bad element, your line that
    called it and the VJP formula. An input that already holds a bad value
    (data, a parameter, a constant, or a value computed outside the mode) is
    named by the first op whose output it spoils. A tape recorded in the
    mode, or a gradient asked inside it, checks each VJP's result as well.

    ``inf=False`` lets ±Inf through and checks NaN only (for ``-inf`` masks
    before a softmax). Blocks nest, the innermost settings winning; the mode
    holds per thread and asyncio task, as tapes do.

    ``value_and_grad(f, compile=True)`` runs ``f`` eagerly, op by op, while
    the mode is on (the closed form cannot be checked op by op); its cache
    is left as it was. The mode costs: the checks and one look at the call
    stack per op, and a backward pass that keeps every node until it ends.
    """

    __slots__ = ("nan", "inf")

    def __init__(self, nan: bool = True, inf: bool = True) -> None:
        if callable(nan):  # @mt.detect_anomaly over a function, without the call
            raise TypeError(f"detect_anomaly: as a decorator it is called first: write "
                            f"@mt.detect_anomaly() above {getattr(nan, '__name__', 'the function')}")
        if not isinstance(nan, bool) or not isinstance(inf, bool):
            raise TypeError(f"detect_anomaly: nan and inf must be True or False, "
                            f"not {nan!r} and {inf!r}")
        self.nan, self.inf = nan, inf

    def __enter__(self) -> detect_anomaly:
        checker = Checker(self.nan, self.inf)
        stack = _active.get()
        for t in stack:
            if isinstance(t, Tape):
                if t.anomaly is not None:
                    checker._outer.append((t, t.anomaly))
                t.anomaly = checker  # recorded in the mode: its backward pass is checked too
        # One checker at a time: the innermost settings win.
        kept = tuple(t for t in stack if isinstance(t, Tape) and t._token is not None)
        checker._token = _active.set(kept + (checker,))
        _opened.set(_opened.get() + (checker,))
        with _count_lock:
            _ANOMALY[0] += 1
        return self

    def __exit__(self, *exc) -> None:
        opened = _opened.get()
        if not opened:
            raise RuntimeError("detect_anomaly: exited in a thread or asyncio task where no "
                               "anomaly block is open; enter and exit it in the same one "
                               "(a 'with' block does)")
        checker = opened[-1]
        _opened.set(opened[:-1])
        checker._record = _ignore  # stacks copied into tasks stop checking too
        # A tape of an outer block answers with that block's settings again, not this
        # one's. A tape opened outside the mode keeps this one: it recorded in the mode.
        for t, outer in checker._outer:
            t.anomaly = outer
        token, checker._token = checker._token, None
        with _count_lock:
            _ANOMALY[0] -= 1
        stack = _active.get()
        later = stack[stack.index(checker) + 1:] if checker in stack else ()
        try:
            _active.reset(token)
        except ValueError:  # exited in another thread or task: take the checker out of this one
            _active.set(tuple(t for t in _active.get() if t is not checker))
            return
        if later:
            reopen(later)
        elif any(t._token is None for t in _active.get()):
            # A tape entered before the block and exited in it (across a generator's yield):
            # the reset put it back, and each op would build a node for it.
            _active.set(tuple(t for t in _active.get() if t._token is not None))

    def __call__(self, f: Callable) -> Callable:
        """As a decorator: each call of ``f`` runs in anomaly mode (a coroutine's whole run,
        a generator's every resumption)."""
        nan, inf = self.nan, self.inf
        if inspect.isasyncgenfunction(f):
            raise TypeError(f"detect_anomaly: cannot decorate the async generator {f.__name__}; "
                            f"open 'with mt.detect_anomaly():' inside it instead")
        if inspect.iscoroutinefunction(f):  # calling it only makes the coroutine: run it inside
            @functools.wraps(f)
            async def checked_run(*args: Any, **kwargs: Any) -> Any:
                with detect_anomaly(nan, inf):
                    return await f(*args, **kwargs)
            return checked_run
        if inspect.isgeneratorfunction(f):  # nor a generator's body, run by each next()
            @functools.wraps(f)
            def checked_steps(*args: Any, **kwargs: Any) -> Any:
                return (yield from _checked_steps(f(*args, **kwargs), nan, inf))
            return checked_steps

        @functools.wraps(f)
        def checked(*args: Any, **kwargs: Any) -> Any:
            with detect_anomaly(nan, inf):
                return f(*args, **kwargs)
        return checked

    def __repr__(self) -> str:
        return f"detect_anomaly(nan={self.nan}, inf={self.inf})"


def innermost_tape() -> Tape | None:
    for t in reversed(_active.get()):
        if isinstance(t, Tape) and t._token is not None:
            return t
    return None


def _after(checker: Checker) -> list:
    stack = _active.get()
    return [t for t in stack[stack.index(checker) + 1:]] if checker in stack else []


def _checked_steps(steps: Generator, nan: bool, inf: bool) -> Generator:
    """``yield from steps``, with the mode on while ``steps`` runs and off while its caller
    does, as ``yield from`` passes on what is sent or thrown in."""
    # yield from's protocol (PEP 380) spelled out: each resumption of ``steps``, and its
    # closing, runs inside a block of its own.
    sent, thrown = None, None
    while True:
        with detect_anomaly(nan, inf):
            try:
                value = steps.send(sent) if thrown is None else steps.throw(thrown)
            except StopIteration as stop:
                return stop.value
        try:
            sent, thrown = (yield value), None
        except GeneratorExit:
            with detect_anomaly(nan, inf):
                steps.close()
            raise
        except BaseException as e:  # thrown in by the caller: on to the generator
            sent, thrown = None, e


def _caller() -> tuple[str, int] | None:
    """The first frame outside microtape: the user's line that called the op."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE):
        f = f.f_back
    return None if f is None else (f.f_code.co_filename, f.f_lineno)


def _reached(err, kept: dict, out: int, g) -> Exception:
    """``err`` with the gradients the pass had finished, its failing op's G included."""
    err.gradients = {**kept, out: g}
    return err


def _blame(nodes: list, node: Node, i: int, g, dx, mode: Checker, tape: Tape, target: Tensor):
    """The error for a bad VJP result: its own, unless the forward pass already went bad."""
    if all(clean(x, mode) for x in (*node.inputs, node.output)):
        return backward_error(node, i, g, dx, mode, tape, target)
    # Recorded outside the mode, the forward pass made the bad value: find where, among
    # the ops this one depends on (a bad value the target never read is not the cause).
    for earlier in _ancestors(nodes, node):
        if not clean(earlier.output, mode):
            return forward_error(earlier, mode, tape)
    return backward_error(node, i, g, dx, mode, tape, target)


def _ancestors(nodes: list, node: Node) -> list:
    """The nodes ``node``'s output depends on, itself included, in the order recorded."""
    made = {id(n.output): n for n in nodes}
    seen, todo = {id(node)}, [node]
    while todo:
        for x in todo.pop().inputs:
            maker = made.get(id(x))
            if maker is not None and id(maker) not in seen:
                seen.add(id(maker))
                todo.append(maker)
    return [n for n in nodes if id(n) in seen]
