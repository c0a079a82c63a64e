"""The tape: a Wengert list of the ops that ran, and the backward pass over it.

Recording appends one ``Node`` per op to every active tape. The backward pass
is a plain loop over that list in reverse: each node hands its output's
gradient (the cotangent ``G``) to the VJPs of its inputs, and the results are
summed per input. Nothing recurses, so chains of any length work.
"""

from __future__ import annotations

import inspect
import threading
from contextvars import ContextVar
from functools import wraps
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from .create_graph import as_tensors, sweep_graph
from .errors import ShapeError, TraceError
from .naming import index_of
from .state import _ANOMALY, _EDITS, _tracing
from .tensor import Tensor

# The tapes recording in this thread (contextvars are per thread), innermost
# last. An empty tuple means ops only compute values: the cheap mode. In
# anomaly mode (anomaly.py) one more entry, not a Tape, checks each node.
_active: ContextVar[tuple["Tape", ...]] = ContextVar("microtape_active_tapes", default=())


def active_tapes() -> tuple["Tape", ...]:
    """The tapes recording in this thread or task, innermost last."""
    # A tape exited from another thread cannot leave this thread's stack; it
    # no longer records, so it is not listed.
    return tuple(t for t in _active.get() if t._token is not None and isinstance(t, Tape))


# What each open no_grad block paused, innermost last, per thread and task
# like the tapes themselves; so one no_grad object can be entered any number
# of times, nested or from several threads at once.
_paused: ContextVar[tuple[tuple["Tape", ...], ...]] = ContextVar("microtape_paused_tapes", default=())

# The starts and ends of backward() passes so far, on any tape and thread, and how many run
# now: a pass counted after a tape's last one, or running during it, may have overwritten
# the .grad that tape set, which nothing else records.
_BACKWARDS = [0, 0]
_BACKWARDS_LOCK = threading.Lock()


def _count_backward(running: int) -> tuple[int, int]:
    """Count a pass's start (``running`` 1) or end (-1); the count and the passes running."""
    with _BACKWARDS_LOCK:  # += alone can lose a count to another thread's
        _BACKWARDS[0] += 1
        _BACKWARDS[1] += running
        return _BACKWARDS[0], _BACKWARDS[1]


class no_grad:
    """A block in which no tape records: ops compute values only.

    For evaluation inside a training step (accuracy, predictions) without
    growing the tape. Tapes entered inside the block record as usual. One
    ``no_grad()`` object may be entered again while open, and by several
    threads.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        if _tracing.get():
            raise TraceError(
                "no_grad: entered while value_and_grad(..., compile=True) traces the function; "
                "ops in the block would not be recorded, so the closed form would keep their "
                "first call's values; use mt.stop_gradient(t) for values that take no gradient, "
                "or compile=False")
        stack = _active.get()
        _paused.set(_paused.get() + (stack,))
        # Anomaly mode keeps checking: only the tapes pause.
        _active.set(tuple(t for t in stack if not isinstance(t, Tape)) if stack else ())

    def __exit__(self, *exc) -> None:
        paused = _paused.get()
        if not paused:
            raise RuntimeError(
                "no_grad: exited in a thread or asyncio task where no no_grad block is open; "
                "enter and exit it in the same one (a 'with' block does)"
            )
        _paused.set(paused[:-1])
        inside = _active.get()
        _active.set(tuple(t for t in paused[-1] if t._token is not None))
        # Tapes entered in the block and still open (their with-blocks end later) record on.
        reopen(tuple(t for t in inside if isinstance(t, Tape) and t not in paused[-1]))

    def __call__(self, f: Callable) -> Callable:
        """As a decorator (``@mt.no_grad()``): each call of ``f`` runs in the block."""
        if inspect.isgeneratorfunction(f) or inspect.iscoroutinefunction(f) or \
                inspect.isasyncgenfunction(f):
            raise TypeError(f"no_grad: cannot decorate {f.__name__}: its body runs after the call "
                            f"has returned, outside the block; open 'with mt.no_grad():' in it")

        @wraps(f)
        def unrecorded(*args: Any, **kwargs: Any) -> Any:
            with self:
                return f(*args, **kwargs)
        return unrecorded


class Node:
    """One recorded op: ``output = op(*inputs)`` and one VJP per input.

    ``inputs`` holds the arguments as the user passed them (Tensors, arrays
    or numbers); ``vjps[i]`` maps the output's gradient to input i's, or is
    None where input i gets no gradient (labels, say).
    """

    # source: the user's (file, line) that called the op, noted in anomaly mode only.
    # origin: for an op a recorded backward pass ran (create_graph=True), the
    # (forward node, input index) whose VJP it belongs to; None for the user's ops.
    # part: for such an op, (pass, k): which gradient part it makes (create_graph.py);
    # unset for the user's ops, so recording pays nothing for it: read it with getattr.
    # Primitive.__call__ fills the slots itself, without calling __init__ (its frame
    # was a fifth of recording an op): a field set here must be set there too.
    __slots__ = ("op", "inputs", "output", "vjps", "params", "clock", "source", "origin", "part")

    def __init__(self, op, inputs: tuple, output: Tensor, vjps: tuple, params: dict,
                 clock: int = 0) -> None:
        self.op = op
        self.inputs = inputs
        self.output = output
        self.vjps = vjps
        self.params = params
        self.clock = clock  # the in-place update count when recorded (see Tensor.mark_modified)
        self.origin = None

    def __repr__(self) -> str:
        return f"Node({self.op.name}, {len(self.inputs)} inputs -> {self.output.shape})"


Sources = Union[Tensor, Sequence[Tensor], Mapping[Any, Tensor]]


def pass_on(g: np.ndarray) -> np.ndarray:
    """The VJP of an input the output's gradient reaches unchanged (dA = G: a bias add's
    other operand, say). The backward loop hands G on without calling it."""
    return g


class Tape:
    """Records every op that runs while the block is open (ops on plain arrays too).

    >>> with Tape() as tape:
    ...     loss = (w * x).sum()
    >>> dw = tape.gradient(loss, w)

    Tapes nest: every active tape records. A tape can be asked for gradients
    any number of times, and drawn; dropping it frees everything it recorded.
    ``tape.closed_form(target, sources)`` writes the record out as numpy code;
    the ``closed_form`` package defines it, since the writer reads the ops.

    ``Tape(persistent=False)`` is for training loops: its first ``gradient``
    or ``backward`` call lets go of the record, so each intermediate value is
    freed as soon as no VJP still needs it (a large two-layer step peaks at
    12 MiB instead of 22). Such a tape answers once and cannot be drawn
    afterwards; once it has answered, it records nothing more.

    The VJPs read the values as they were recorded, so a tape whose tensors
    were since changed in place through microtape (an optimizer step, or
    ``Tensor.mark_modified()``) refuses to answer or be drawn, naming the
    tensor: take the gradients before the step, or record again. A write
    into ``.value`` that bypasses microtape cannot be seen, and the tape
    would mix old and new values: record again after one, or call
    ``mark_modified()`` on the tensor. The check is not a lock: an optimizer
    stepping in another thread while this one records or answers can change
    values the tape is reading without being seen; step in the thread that
    records, between its tapes.

    A tape is entered and exited in one thread or asyncio task; exiting it
    from another is an error that stops its recording and leaves it usable.
    """

    __slots__ = ("nodes", "persistent", "spent", "anomaly", "backward_target", "_backwards",
                 "_token", "_record")

    def __init__(self, persistent: bool = True) -> None:
        if persistent is not True and persistent is not False and not isinstance(
                persistent, np.bool_):  # "no" would be true: kept, silently
            raise TypeError(f"Tape: persistent must be True or False, not {persistent!r}")
        self.nodes: list[Node] = []
        self.persistent = persistent
        self.spent = False  # a non-persistent tape that has answered
        self.anomaly = None  # the anomaly mode it recorded in, if any: its backward pass checks
        self.backward_target: Tensor | None = None  # whose gradients the last backward() set
        self._backwards = 0  # _BACKWARDS once its last backward() had set every .grad
        self._token = None
        self._record = _ignore  # what ops hand each new node to: nodes.append while open

    def __enter__(self) -> Tape:
        if self._token is not None:
            # Entered twice, it would record every op twice.
            raise RuntimeError("Tape: this tape is already recording; nest a new mt.Tape() instead")
        stack = _active.get()
        if stack:
            for t in stack:
                if t._token is None:  # exited from another thread, it still sits in this one's stack
                    stack = tuple(t for t in stack if t._token is not None)
                    break
            for t in stack:
                if not isinstance(t, Tape):  # anomaly mode's checker
                    self.anomaly = t
        self._token = _active.set(stack + (self,))
        if not self.spent:
            self._record = self.nodes.append
        return self

    def __exit__(self, *exc) -> None:
        token, self._token = self._token, None
        if token is None:
            raise RuntimeError("Tape: exited without being entered; use 'with mt.Tape() as tape:'")
        # Stacks copied from this one (an asyncio task started in the block)
        # may still hold the tape: whatever happens below, it stops recording.
        self._record = _ignore
        stack = _active.get()
        try:
            _active.reset(token)
        except (ValueError, RuntimeError):
            # The token belongs to another thread's or task's context.
            _active.set(tuple(t for t in _active.get() if t is not self))
            if exc and exc[0] is not None:
                return  # do not hide the error that is unwinding the block
            raise RuntimeError(
                "Tape: exited in a different thread or asyncio task from the one that entered it; "
                "it has stopped recording and can still be asked for gradients, but enter and exit "
                "a tape in the same thread or task"
            ) from None
        if not stack or stack[-1] is not self:
            _exited_out_of_order(self, stack)

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"<Tape of {len(self.nodes)} ops{', spent' if self.spent else ''}>"

    # -- asking for gradients -------------------------------------------------
    def gradient(self, target: Tensor, sources: Sources, seed: Any = None,
                 create_graph: bool = False):
        """The gradient of ``target`` with respect to each source.

        ``sources`` is a Tensor (returns one ndarray), a list or tuple of them
        (returns a list) or a dict (returns a dict with the same keys). A
        source the target does not depend on gets zeros. Only the VJPs on a
        path from a source to the target run.

        ``create_graph=True`` runs the VJPs as microtape ops instead
        (create_graph.py): every tape active meanwhile records the backward
        pass, and the gradients are Tensors, which an outer tape can
        differentiate again (a ``seed`` Tensor too). It needs ops declared
        with differentiable VJPs (every built-in op is).
        """
        if isinstance(sources, Tensor):
            return self._gradients(target, [sources], seed, None, create_graph)[0]
        if isinstance(sources, (dict, Mapping)):  # dict first: the ABC check is slow
            # positional arguments: keywords cost a tenth of a microsecond a call
            return dict(zip(sources, self._gradients(
                target, list(sources.values()), seed, sources, create_graph)))
        if isinstance(sources, (list, tuple)):
            return self._gradients(target, list(sources), seed, None, create_graph)
        raise TypeError(
            f"gradient: sources must be a Tensor, a list/tuple of Tensors or a dict of "
            f"Tensors, not {type(sources).__name__}"
        )

    def _gradients(self, target: Tensor, sources: list, seed: Any, keys: Mapping | None = None,
                   create_graph: bool = False) -> list:
        for s in sources:
            if not isinstance(s, Tensor):
                _refuse_source(sources, keys)
        if create_graph:
            return as_tensors(self._graph_gradients(target, sources, seed, "gradient"), sources)
        return _distinct(self._backprop(target, seed, sources, False, "gradient"), sources, seed)

    def _graph_gradients(self, target: Tensor, sources: list, seed: Any, caller: str,
                         more: dict | None = None) -> dict:
        """The backward pass as recorded ops (create_graph.py): {id(source): gradient Tensor}.

        ``more``: other targets' seeds by id, for a pass from several targets (``_pullback``).
        """
        self._check_not_spent()
        nodes = self.nodes[:self.index_of(target, caller, sources)]
        # _stale needs the plan only if something changed in place since the first node
        stale = _stale(nodes, _plan(nodes, set(map(id, sources)))[0]) if (
            nodes and nodes[0].clock != _EDITS[0]) else {}
        ones = seed is None  # ones it makes itself: a constant of the recording, not an input
        if not isinstance(seed, Tensor):
            seed = Tensor(_seed_for(target, seed, caller))
        elif seed.shape != target.shape:
            _seed_for(target, seed, caller)  # raises the ShapeError that names both shapes
        if not self.persistent:
            self._let_go()
        cotangents = {id(target): seed}
        if more:
            cotangents.update((key, s if isinstance(s, Tensor) else Tensor(s))
                              for key, s in more.items())
        mode = (_ANOMALY[0] and _anomaly_mode()) or self.anomaly  # as in _pass
        checks = mode.graph_checks(nodes, self, target) if mode else None
        return sweep_graph(nodes, target, cotangents, set(map(id, sources)), stale,
                           lambda node, k: _check_node(node, k, caller), active_tapes(), ones,
                           checks)

    def _pullback(self, targets: list[Tensor], seeds: Sequence[Any], sources: list[Tensor],
                  create_graph: bool = False, caller: str = "gradient") -> list:
        """The gradients of Σ_k ⟨seeds[k], targets[k]⟩ with respect to ``sources``.

        One backward pass started from several targets, each with a seed of its
        shape. H·v is the recorded gradient's pass started with v at the
        gradient (derivatives.hvp), so the inner product ⟨∇f, v⟩ is never formed,
        nor its gradient, v again. Each target is recorded here or is a source.
        Without ``create_graph`` the list ``targets`` is emptied before the pass:
        it needs only where they were recorded, and their values can go first, so
        the answer may reuse their memory (in some memory layouts the bench's
        medium hvp otherwise took fresh pages for W1's gradient and its H·v,
        about 800 page faults a call).
        """
        ends = [self.index_of(t, caller, sources) for t in targets]
        end = max(ends)  # the pass starts at the last target recorded
        cotangents = _seeds(targets, seeds, caller, keep_tensors=create_graph)
        if create_graph:
            last = targets[ends.index(end)]
            seed = cotangents.pop(id(last))
            return as_tensors(self._graph_gradients(last, sources, seed, caller, cotangents), sources)
        self._check_not_spent()
        seeded = {_owner(s) for s in cotangents.values()}  # the seeds never leave as answers
        # The last target is named only in the call, so that _pass holds the one reference.
        grads = self._pass(end, cotangents, sources, False, caller, targets[ends.index(end)],
                           release=targets)
        return [g.copy() if _owner(g) in seeded else g
                for g in _distinct(grads, sources, None)]

    def backward(self, target: Tensor, seed: Any = None, create_graph: bool = False) -> None:
        """Set ``.grad`` on every tensor of this tape that ``target`` depends on.

        Intermediates included. Each call overwrites: tensors the target does
        not depend on get ``grad = None``; ``tape.backward_target`` is then
        ``target``, and ``last_backward()`` too until another pass runs.
        ``create_graph=True`` sets Tensors, recorded as in ``gradient``.
        """
        tensors = self._tensors()
        self.backward_target = None  # set again once this pass has set every .grad
        start, _ = _count_backward(1)  # before any .grad changes: a failed pass may change some
        try:
            self._set_grads(tensors, target, seed, create_graph)
        finally:
            end, running = _count_backward(-1)
        self.backward_target = target
        # Its own only if no other thread's pass started, ended or ran meanwhile
        self._backwards = end if end == start + 1 and running == 0 else -1

    def _set_grads(self, tensors: list[Tensor], target: Tensor, seed: Any,
                   create_graph: bool) -> None:
        if create_graph:
            grads = self._graph_gradients(target, tensors, seed, "backward")
            for t in tensors:
                t.grad = grads.get(id(t))
            return
        grads = self._backprop(target, seed, tensors, keep_all=True, caller="backward")
        for t in tensors:
            t.grad = None
        reached = [t for t in tensors if id(t) in grads]
        for t, g in zip(reached, _distinct(grads, reached, seed)):
            t.grad = g

    def last_backward(self) -> Tensor | None:
        """The target of this tape's last ``backward`` while the ``.grad`` it set is still
        its own, else None.

        Its own means no ``backward`` has run since, on any tape: another pass may have
        overwritten some of it (a tensor two tapes share, or this tape's pass from another
        target). A drawing shows a seeded target's gradients only then. Assignments to
        ``.grad`` are not seen.
        """
        fresh = self.backward_target is not None and self._backwards == _BACKWARDS[0]
        return self.backward_target if fresh else None

    def check_unchanged(self, caller: str = "Tape") -> None:
        """Raise RuntimeError if a tensor was changed in place after this tape recorded it.

        Drawings call this before they show the recorded values; ``caller``
        starts the message. ``gradient`` and ``backward`` make the same check,
        but only on the ops their answer depends on. Only changes made through
        microtape (optimizers, ``Tensor.mark_modified``) can be seen.
        """
        now = _EDITS[0]
        for k, node in enumerate(self.nodes):
            if node.clock == now:
                return  # this node and every later one were recorded after the last change
            _check_node(node, k, caller)

    # -- the backward pass ------------------------------------------------------
    def _backprop(self, target: Tensor, seed: Any, sources: list[Tensor], keep_all: bool,
                  caller: str = "gradient") -> dict:
        """Walk the tape in reverse; return {id(tensor): gradient}.

        Keeps the gradients of ``sources`` (and, with ``keep_all``, of every
        tensor reached); every other cotangent is dropped once its node has
        passed it on.
        """
        if self.spent:
            self._check_not_spent()
        # The usual call, the loss recorded last, without a call to find it. No local
        # holds the record: the pass lets go of it, so that its values can go.
        end = len(self.nodes) if self.nodes and self.nodes[-1].output is target else index_of(
            self.nodes, target, caller, sources)
        cotangents = {id(target): _seed_for(target, seed, caller)}
        return self._pass(end, cotangents, sources, keep_all, caller, target)

    def _pass(self, end: int, cotangents: dict, sources: list[Tensor], keep_all: bool,
              caller: str, target: Tensor, release: list = ()) -> dict:
        """The reverse pass over ``nodes[:end]`` from the seeds in ``cotangents`` (by id).

        ``release`` lists what the caller holds only for this pass (the targets of a
        pullback): it is emptied before the sweep, so their memory can go first.
        """
        nodes = self.nodes if end == len(self.nodes) else self.nodes[:end]  # read, never changed
        wanted = set(map(id, sources))
        plan, live = _plan(nodes, wanted)
        # clocks never decrease along a tape: a first node recorded after the last update says all were
        stale = _stale(nodes, plan) if nodes and nodes[0].clock != _EDITS[0] else {}
        mode = (_ANOMALY[0] and _anomaly_mode()) or self.anomaly  # the innermost settings win
        if mode:
            return self._checked(plan, live, cotangents, keep_all, wanted, stale, caller,
                                 nodes, target, mode)
        if not self.persistent:
            self._let_go()
        del nodes, target
        if release:
            release.clear()
        keep = live if keep_all else wanted
        return _sweep(plan, cotangents, keep, stale, caller)

    def _checked(self, plan, live, cotangents, keep_all, wanted, stale, caller, nodes, target,
                 mode) -> dict:
        """The backward pass in anomaly mode: each VJP's result is checked."""
        if not self.persistent:
            self._let_go()
        keep = live if keep_all else wanted
        return mode.sweep(plan, cotangents, keep, stale, caller, nodes, self, target)

    def index_of(self, target: Tensor, caller: str = "gradient",
                 sources: Sequence[Tensor] = ()) -> int:
        """One past the node that produced ``target``: the record it depends on is ``nodes[:k]``.

        0 if ``target`` is one of ``sources`` (its own gradient needs no op).
        ``caller`` starts the error messages: TypeError for a non-Tensor, and
        ValueError for a tensor this tape did not record.
        """
        return index_of(self.nodes, target, caller, sources)

    def _check_not_spent(self) -> None:
        if self.spent:
            raise RuntimeError(
                "Tape: this tape was made with persistent=False and has already answered a "
                "gradient or backward call, so its record is gone; record with mt.Tape() to ask "
                "more than once"
            )

    def _let_go(self) -> None:
        """Drop the record, so each value is freed once no planned VJP needs it.

        Values only the record kept (x W1 before the bias, say) go at once, the
        rest as soon as their VJPs have run. Nodes recorded from now on could
        never be used: recording stops.
        """
        self.nodes = []
        self.spent = True
        self._record = _ignore

    def _tensors(self) -> list[Tensor]:
        """Every Tensor on the tape, each once, in the order it first appears."""
        seen: dict[int, Tensor] = {}
        for node in self.nodes:
            for x in node.inputs:
                if isinstance(x, Tensor):
                    seen.setdefault(id(x), x)
            seen.setdefault(id(node.output), node.output)
        return list(seen.values())


def _plan(nodes: list[Node], wanted: set[int]) -> tuple[list, set[int]]:
    """The nodes between the sources and the target, in order, and the ids they reach.

    A forward sweep: a node is planned when one of its VJPs takes a gradient
    to an input that depends on a source; any other VJP would compute a
    gradient nobody asked for (the gradient of the input data, above all).
    Each entry is ``(output id, edges)``, an edge ``(i, input id, vjp)`` for
    each VJP the pass will call, so the reverse loop tests nothing per input.
    The plan holds ids, taken while every tensor is alive; no Tensor is made
    during the pass, so they stay unique even once the record goes.
    """
    live = set(wanted)  # the sources' ids, then every output that depends on them
    plan = []
    for node in nodes:
        edges = []  # a plain loop: a comprehension here costs twice as much (Python 3.11)
        vjps = node.vjps
        i = 0  # counted by hand: enumerate costs a tenth of the plan
        for x in node.inputs:
            key = id(x)
            if key in live and vjps[i] is not None:
                edges.append((i, key, vjps[i]))
            i += 1
        if edges:
            out = id(node.output)
            live.add(out)
            plan.append((out, edges))
    return plan, live


def _stale(nodes: list[Node], plan: list) -> dict[int, tuple[Node, int]]:
    """Planned nodes recorded before the last in-place update, by output id, each with the
    node to check when the pass reaches it, and that node's index: the planned node itself,
    or an op off the plan whose output it reads, if that op's tensors changed (``x @ W.T``
    with W updated since: W.T is a view of W's memory, and W is not on the plan when only
    x's gradient is asked for)."""
    now = _EDITS[0]
    if not nodes or nodes[0].clock == now:
        return {}  # clocks never decrease along a tape: all recorded after the last update
    planned = {out for out, _ in plan}
    made = {id(node.output): k for k, node in enumerate(nodes)}
    stale = {}
    for k, node in enumerate(nodes):
        if node.clock == now:
            break
        if id(node.output) in planned:
            stale[id(node.output)] = (node, k) if _changed(node) is not None else (
                _changed_off_plan(nodes, k, made, planned) or (node, k))
    return stale


def _changed_off_plan(nodes: list[Node], k: int, made: dict[int, int],
                      planned: set[int]) -> tuple[Node, int] | None:
    """An op off the plan, among those whose outputs node k reads (and theirs, and so on),
    with a tensor changed in place since it was recorded, and its index; or None."""
    todo, seen = [k], set()
    while todo:
        j = todo.pop()
        for x in nodes[j].inputs:
            i = made.get(id(x))
            if i is not None and i not in seen and id(x) not in planned:
                seen.add(i)
                if _changed(nodes[i]) is not None:
                    return nodes[i], i
                todo.append(i)
    return None


def _changed(node: Node) -> Tensor | None:
    """A tensor of ``node`` changed in place after the node was recorded, or None."""
    for x in (*node.inputs, node.output):
        if isinstance(x, Tensor) and getattr(x, "_version", 0) > node.clock:
            return x
    return None


def _sweep(plan: list, cotangents: dict, keep: set[int],
           stale: dict[int, tuple[Node, int]], caller: str) -> dict[int, np.ndarray]:
    """The reverse loop: each planned node, last first, passes its G on to its inputs.

    Returns the cotangents of the tensors in ``keep`` (and the seed of any
    target no source reaches); every other one is dropped once its node has
    passed it on. A stale node raises only if the answer depends on it.
    """
    kept: dict[int, np.ndarray] = {}
    pop = cotangents.pop
    while plan:
        out, edges = plan.pop()  # popped, so its VJPs' saved values can go
        g = pop(out, None)
        if g is None:
            continue  # the target does not depend on this node
        if stale and out in stale:
            _check_node(*stale.pop(out), caller)
        if out in keep:
            kept[out] = g
        for _, key, vjp in edges:
            dx = g if vjp is pass_on else vjp(g)
            # Fan-out: a value used by several ops receives the sum.
            cotangents[key] = cotangents[key] + dx if key in cotangents else dx
    # What is left are the leaves' gradients (and the target's, if a leaf): each in keep,
    # but for the seed of a target the sources do not reach, which nobody asks for.
    if not kept:
        return cotangents
    kept.update(cotangents)
    return kept


def _refuse_source(sources: list, keys: Mapping | None) -> None:
    """Raise the TypeError that names the first source that is not a Tensor."""
    i = next(i for i, s in enumerate(sources) if not isinstance(s, Tensor))
    raise TypeError(
        f"gradient: source {list(keys)[i] if keys else i!r} is a {type(sources[i]).__name__}, "
        f"not a Tensor; wrap it as mt.Tensor(...) before the ops that use it"
    )


def _anomaly_mode():
    """The checker of the anomaly mode on in this thread or task, or None."""
    for t in _active.get():
        if not isinstance(t, Tape):
            return t
    return None


def _exited_out_of_order(tape: Tape, stack: tuple) -> None:
    """Mend the stack after ``tape`` exited while not innermost (``stack``: as it was).

    The reset put back the stack from before ``tape`` was entered. Tapes entered
    after it are open still (generators closed out of order, say): they are put back,
    or they would silently stop recording. A tape missing from ``stack`` was paused by a
    no_grad block, which is still open: the tapes outside the block stay paused.
    """
    if tape in stack:
        reopen(stack[stack.index(tape) + 1:])
    else:
        _active.set(stack)


def reopen(entries: tuple) -> None:
    """Put back on the stack the open tapes among ``entries``, which an exit out of order
    (of a tape, a no_grad block or an anomaly block entered before them) took off it.

    Entered again, each with a token of its own, they record on, and each one's exit
    restores the stack as it is now, not the one from before the block that has ended.
    """
    for t in entries:
        if isinstance(t, Tape) and t._token is not None:
            t._token = _active.set(_active.get() + (t,))


def _ignore(node: Node) -> None:
    """Where a tape that is not open sends new nodes."""


def _check_node(node: Node, k: int, caller: str) -> None:
    """Raise if a tensor of ``node`` was changed in place after it was recorded."""
    x = _changed(node)
    if x is not None:
        raise RuntimeError(
            f"{caller}: the tensor {_label(x)} was changed in place (by an optimizer step, "
            f"say) after this tape recorded it in op #{k} ({node.op.name}), so the values the "
            f"tape saved no longer match it; take the gradients before the step, or record "
            f"the computation again on a new tape"
        )



def _read_only_one(dtype) -> np.ndarray:
    one = np.ones((), dtype=dtype)
    one.flags.writeable = False  # shared by every backward pass: nobody may edit it
    return one


# The seed of a scalar loss, made once: np.ones costs as much as a small op.
# Read-only, and so is every reshaped view of it.
_ONE = {np.dtype(d): _read_only_one(d) for d in (np.float64, np.float32)}


def require_scalar(target: Tensor, caller: str) -> None:
    """Refuse a target that is not a scalar, where no seed says how to weigh its elements.

    The tape's gradient without ``seed=`` and every closed form share this rule.
    """
    value = target.value
    if value.size != 1:
        named = f" {target.name!r}" if target.name is not None else ""
        raise ValueError(
            f"{caller}: the target{named} has shape {value.shape}, not a scalar; "
            f"reduce it first (e.g. .sum()) or pass seed=, an array of shape {value.shape}"
        )


def _seed_for(target: Tensor, seed: Any, caller: str = "gradient") -> np.ndarray:
    """The output gradient that starts the backward pass."""
    if seed is None:
        value = target.value
        one = _ONE.get(value.dtype)
        if one is not None and value.ndim == 0:
            return one  # the usual loss, checked by what it is
        require_scalar(target, caller)
        if one is None:
            return np.ones(value.shape, dtype=value.dtype)
        return one.reshape(value.shape)
    seed = np.asarray(seed.value if isinstance(seed, Tensor) else seed)
    if seed.dtype.kind not in "fiub":  # astype would read "2.5" as a number
        raise TypeError(f"{caller}: seed must be numbers, an array of the target's shape "
                        f"{target.shape}, not data of dtype {seed.dtype}")
    if seed.shape != target.shape:
        named = f" {target.name!r}" if target.name is not None else ""
        raise ShapeError(
            f"{caller}: seed has shape {seed.shape} but the target{named} has shape "
            f"{target.shape}; the seed is the target's gradient, so the shapes must match"
        )

    if seed.dtype.kind != "f":
        seed = seed.astype(target.dtype)
    return seed


def _seeds(targets: Sequence[Tensor], seeds: Sequence[Any], caller: str,
           keep_tensors: bool = False) -> dict[int, Any]:
    """Each target's seed by its id, checked against its shape; a target named twice gets their sum.

    ``keep_tensors``: a seed that is a Tensor stays one (create_graph=True), so that the
    recorded pass depends on it: H·v differentiated with respect to v, say.
    """
    cotangents: dict[int, Any] = {}
    for t, s in zip(targets, seeds):
        checked = _seed_for(t, s, caller)
        s = s if keep_tensors and isinstance(s, Tensor) else checked
        key = id(t)
        cotangents[key] = cotangents[key] + s if key in cotangents else s
    return cotangents


def _distinct(grads: dict[int, np.ndarray], tensors: list[Tensor], seed: Any) -> list[np.ndarray]:
    """Each tensor's gradient from ``grads`` (by id; zeros where missing), every one a
    writable array of its own.

    VJPs may pass one array on unchanged (the two sides of an add share ``G``)
    or return a broadcast view; handing such aliases to a user who then edits
    one in place would silently change another, so those few get copied.
    Reshape and transpose pass ``G`` back as a view of itself, so arrays are
    compared by the memory they own, not by identity alone.
    """
    seen = set() if seed is None else {_owner(seed.value if isinstance(seed, Tensor) else seed)}
    out = []
    for t in tensors:
        g, value = grads.get(id(t)), t.value
        if g is None:
            g = np.zeros(value.shape, dtype=value.dtype)
        else:
            base = getattr(g, "base", None)  # _owner(g), inline: this runs per source
            owner = id(g if base is None else base)
            dtype = g.dtype  # `is` first: the same dtype is nearly always the same object
            if (owner in seen or not g.flags.writeable
                    or dtype is not value.dtype and dtype != value.dtype):
                g = np.array(g, dtype=value.dtype)
            else:
                seen.add(owner)
        out.append(g)
    return out


def _owner(a: Any) -> int:
    """The id of the array whose memory ``a`` uses (a view's base, else ``a``)."""
    base = getattr(a, "base", None)
    return id(a if base is None else base)


def _label(t: Tensor) -> str:
    return repr(t.name) if t.name is not None else f"of shape {t.shape}"
