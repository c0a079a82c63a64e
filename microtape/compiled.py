"""value_and_grad(..., compile=True): one closed form per signature, bound to each call's arguments.

The first call of a signature (the shapes and dtypes of the arrays among the
arguments, inside lists, tuples and dicts too, and the values of the rest)
records ``f`` on a tape and writes its closed form (``Tape.closed_form``).
``f`` is traced on private copies of the arguments, so each input of the
closed form is found at exactly one place among them: later calls bind
their own arguments there, by position, whatever aliases the first call
had. An array the code holds as a constant instead (an index, for now) makes
its value part of the signature. A Tensor or array ``f`` reads from outside
its arguments (a model's, say) is read again at every call, the same object;
a Python number it reads there is written into the code. A Tensor ``f`` makes
with ``mt.Tensor(x)`` is read from ``x`` at every call, an argument's place
when ``x`` is one (a constant, as eager's is). A source that ``f``
also reads from outside is one variable, as eager sees it: traced as itself,
its identity joins the signature.

A training loop calls with one signature again and again. For the last
signature used, when its arguments are plain arrays, Tensors, numbers and
strings, the whole call is written out as code (``arguments.guard``): it
checks each argument's type, shape and dtype in place, then binds and runs,
so a hit builds and hashes no key and takes no lock. So is the fused SGD
step ``opt.step(vg, *args)`` runs, whose check also finds the optimizer's
parameters at the argnums by identity, so that SGD need not look for them.
The two become the compiled function's own ``__call__`` and ``_sgd_step``,
on a class each compiled function has to itself; any call they refuse they
hand to the general methods, which build the key.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections import namedtuple
from typing import Any, Callable, NoReturn

import numpy as np

from .arguments import (baked, binder, count_checks, getters, guard, keyed, masks,
                        other_signature, private, read_from_outside, with_repeats)
from .errors import TraceError
from .ops import reshape
from .primitive import _PROMOTES_0D
from .state import _ANOMALY, _made, _tracing
from .tape import Tape, _active, _anomaly_mode, active_tapes
from .tensor import Tensor

_ndarray = np.ndarray  # signature()'s first case, inlined on the hot path

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


class _TracingTape(Tape):
    """A tape recording for compile=True: Tensors refuse bool/float/item while it is active."""

    __slots__ = ("_trace_token", "_made_token", "made")

    def __enter__(self) -> "_TracingTape":
        super().__enter__()
        self._trace_token = _tracing.set(_tracing.get() + 1)
        self.made: dict[int, tuple[Tensor, Any]] = {}  # mt.Tensor(...)s f makes (state._made)
        self._made_token = _made.set(self.made)
        return self

    def __exit__(self, *exc) -> None:
        try:
            _made.reset(self._made_token)
            _tracing.reset(self._trace_token)
        except (ValueError, RuntimeError):
            pass  # exited in another thread or task: Tape.__exit__ raises the error that says so
        super().__exit__(*exc)


class _Entry:
    """One signature's closed form and how a call's arguments become its inputs.

    ``same``: (argument index, Tensor) for each source that ``f`` also read from
    outside its arguments when traced: the code holds for that Tensor there
    alone. ``outside``: the other Tensors it read from outside, none of which may
    be a source (see ``Compiled._with_outside``).
    """

    __slots__ = ("cf", "function", "bind", "finish", "used", "call", "sgd_step", "same", "outside")

    def __init__(self, cf: Any, bind: Callable, finish: Callable | None, same: tuple = (),
                 outside: tuple = ()) -> None:
        self.cf, self.function, self.bind, self.finish = cf, cf.function, bind, finish
        self.same, self.outside = same, outside
        self.used = 0  # when it was last used, on the cache's clock of calls
        self.call: Callable | None = None  # the whole call for this signature, if it has one
        self.sgd_step: Callable | None = None  # the same for the fused SGD step, if it has one


class Compiled:
    """``value_and_grad(f, compile=True)``: a closed form per signature, least recently used out."""

    maxsize = 64

    def __new__(cls, *args: Any, **kwargs: Any) -> "Compiled":
        # A class of its own, so that the last signature's call, written out as code, can be
        # its __call__ (see _use): Python looks __call__ up on the type, and a general
        # __call__ that handed a hit on to that code cost a frame, a fifth of all the call adds.
        own = type(cls.__name__, (cls,), {"__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        return super().__new__(own)

    def __init__(self, f: Callable, argnums: Any, positions: tuple[int, ...], single: bool,
                 kind: str = "value_and_grad", eager: Callable | None = None) -> None:
        self.f, self.positions, self.single, self.kind = f, positions, single, kind
        self.eager = eager  # value_and_grad(f, argnums) without compile: anomaly mode runs it
        self._cache: dict[tuple, _Entry] = {}
        # One tick per hit and per miss, each entry keeping the tick of its last use. next() on
        # a count is atomic, so a hit needs no lock: hits are the ticks less misses and looks.
        self._ticks = itertools.count()
        self._looks = 0  # ticks cache_info took to read the count
        self._by_value: dict[tuple, tuple] = {}  # signature -> places whose values key too
        # Tensors some trace read from outside the arguments (a closure, a global), by id:
        # passed as a source too, they are one variable there, which the key must tell apart
        self._read_outside: dict[int, Tensor] = {}
        self._lock = threading.Lock()  # the bookkeeping only: tracing runs outside it
        self.misses = 0
        try:
            self.arg_names = list(inspect.signature(f).parameters)
        except (TypeError, ValueError):
            self.arg_names = []
        self._shown = f"{kind}({_name(f)}, argnums={argnums!r}, compile=True)"
        self.__name__ = f"{kind}({_name(f)}, compile=True)"

    def __repr__(self) -> str:
        n = len(self._cache)
        return f"<{self._shown}: {n} closed form{'s' * (n != 1)} cached>"

    def cache_info(self) -> CacheInfo:
        with self._lock:
            ticks = next(self._ticks)
            hits = ticks - self.misses - self._looks
            self._looks += 1
            return CacheInfo(hits, self.misses, self.maxsize, len(self._cache))

    def closed_form(self, *args: Any) -> Any:
        """The ``mt.ClosedForm`` that calls with these arguments run (traced now if new)."""
        return self._entry(args).cf

    def __call__(self, *args: Any) -> tuple[np.ndarray, Any]:
        if _tracing.get():
            raise TraceError(_NESTED.format(self.__name__))
        if _active.get() and active_tapes():
            raise TraceError(_RECORDING.format(self.__name__))
        if _ANOMALY[0] and _anomaly_mode():
            return self.eager(*args)  # the closed form cannot be checked op by op
        # signature(), its array and Tensor cases inlined, and _hit()
        holders: list = []
        key = with_repeats(tuple([
            (a.shape, a.dtype) if type(a) is _ndarray else
            (Tensor, a.value.shape, a.value.dtype) if type(a) is Tensor else
            other_signature(a, holders) for a in args]), args, holders)
        entry = self._hit(key, args) or self._miss(key, args)
        try:
            value, grads = entry.function(*entry.bind(args))
        except IndexError as error:
            _as_eager(self, args, error)
        if entry.finish is not None:
            value, grads = entry.finish(value, grads)
        return np.asarray(value), grads[0] if self.single else grads

    def _entry(self, args: tuple) -> _Entry:
        if _tracing.get():
            raise TraceError(_NESTED.format(self.__name__))
        holders: list = []
        key = with_repeats(tuple([other_signature(a, holders) for a in args]), args, holders)
        return self._hit(key, args) or self._miss(key, args)

    def _with_outside(self, key: tuple, args: tuple) -> tuple:
        """``key``, and which sources are Tensors a trace read from outside the arguments:
        where f reads a model's W itself and W is passed to be differentiated, the two
        reads are one variable, as eager sees them, and need a closed form of their own."""
        n, known = len(args), self._read_outside
        if not known:
            return key
        found = tuple(i % n for i in self.positions if -n <= i < n and id(args[i]) in known)
        return (key, "read from outside", found) if found else key

    def _hit(self, signature: tuple, args: tuple, by_value: bool = False) -> _Entry | None:
        """The entry cached for ``args`` of ``signature``, now the most recently used, or None.
        ``by_value``: look under the key with the values its arrays are keyed by, if any.

        The key is completed under the lock: another thread's trace may have found meanwhile
        that f reads an argument from outside too, which the key must then say."""
        with self._lock:
            key = self._with_outside(signature, args)
            if by_value:
                plan = self._by_value.get(key)
                if plan is None:
                    return None
                key = keyed(key, plan, args)
            entry = self._cache.get(key)
            if entry is not None:
                entry.used = next(self._ticks)  # a tick, not a reordering: hits stay cheap
                self._use(entry)
            return entry

    def _use(self, entry: _Entry) -> None:
        """Make ``entry``'s written-out call and fused step this function's own ``__call__``
        and ``_sgd_step``, or the general ones where it has none. Under the lock."""
        own = type(self)
        call = entry.call or own.__base__.__call__
        sgd_step = entry.sgd_step or own.__base__._sgd_step
        if own.__dict__.get("__call__") is not call:  # setting a type's attribute resets its caches
            own.__call__ = call
        if own.__dict__.get("_sgd_step") is not sgd_step:
            own._sgd_step = sgd_step

    def _miss(self, signature: tuple, args: tuple) -> _Entry:
        entry = self._hit(signature, args, by_value=True)
        if entry is not None:
            return entry
        _check_argnums(self.positions, args)
        entry, held, counted = self._trace(args)  # outside the lock: f may be slow, or compiled
        with self._lock:
            # known now: the key tells such calls apart
            self._read_outside.update((id(t), t) for _, t in entry.same)
            self._read_outside.update((id(t), t) for t in entry.outside)
            key = self._with_outside(signature, args)  # as others' traces have left it too
            self.misses += 1
            key = self._keyed_by_arrays(key, args, held, counted, entry)
            entry.used = next(self._ticks)
            self._cache[key] = entry
            self._use(entry)
            if len(self._cache) > self.maxsize:  # the least recently used goes, never the new one
                del self._cache[min(self._cache, key=lambda k: self._cache[k].used)]
        return entry

    def _keyed_by_arrays(self, key: tuple, args: tuple, held: list, counted: list,
                         entry: _Entry) -> tuple:
        """``key``, and what of the arrays at ``held`` and ``counted`` keys too: the values of
        those the code holds as constants, the counts of True values of the boolean arrays it
        indexes with (the shapes after the index follow them). Once an array of a signature
        keys so, it always does. Under the lock."""
        held_before, counted_before = self._by_value.get(key, ((), ()))
        if not (held or counted or held_before or counted_before):
            return key
        plan = (tuple(sorted(set(held).union(held_before))),
                tuple(sorted(set(counted).union(counted_before))))
        if plan[0] or plan[1] != tuple(counted):  # a check would need the values: keyed instead
            entry.call = entry.sgd_step = None
        self._by_value[key] = plan
        if len(self._by_value) > self.maxsize:
            del self._by_value[next(iter(self._by_value))]
        return keyed(key, plan, args)

    def _trace(self, args: tuple,
               itself: dict[int, Tensor] | None = None) -> tuple[_Entry, list, list]:
        """The entry for ``args``'s signature, traced on private copies of the arguments but
        for the sources in ``itself`` (by id), which f also reads from outside them; and the
        places of the arrays it holds as constants and of the boolean arrays it indexes with."""
        memo = dict(itself or {})  # a Tensor passed twice: one copy, one variable, as eager
        traced = [private(a, memo) for a in args]  # copies: each array found at one place only
        sources: dict[int, Tensor] = {}
        for i in self.positions:
            i %= len(args)
            if i not in sources:  # argnums=(0, 0): one Tensor, its gradient twice, as eager
                a, name = traced[i], self.arg_names[i] if i < len(self.arg_names) else None
                if isinstance(a, Tensor):  # the copy itself, wherever else it was passed
                    if a is not args[i]:  # the caller's own Tensor keeps its name
                        a.name = a.name or name
                    sources[i] = a
                else:
                    sources[i] = traced[i] = Tensor(a, name=name)
        listed = [sources[i % len(args)] for i in self.positions]
        with _TracingTape() as tape:
            out = self.f(*traced)
            if not isinstance(out, Tensor):
                raise TypeError(f"grad: {_name(self.f)} must return a Tensor, "
                                f"not {type(out).__name__}")
            if tape.index_of(out, "gradient", listed) == 0:
                out = reshape(out, out.shape)  # f returned a source itself: record the identity
        require_scalar_output(self.f, out)  # refused as the eager grad refuses it
        cf = tape.closed_form(out, listed)
        outside = read_from_outside(cf, traced, tape.made)
        same = {id(t): t for t in outside if any(t is args[i] for i in sources)}
        if same and itself is None:  # trace again with those sources as themselves
            return self._trace(args, same)
        found = getters(cf, traced, args, sources, tape)
        bind = binder(found)
        entry = _Entry(cf, bind, _finisher(cf, listed, lambda: cf.function(*bind(args))),
                       same=tuple((i, args[i]) for i in sorted(sources) if traced[i] is args[i]),
                       outside=outside)
        counted = masks(tape.nodes, traced)
        entry.call, entry.sgd_step = self._written_calls(entry, args, found, counted)
        return entry, baked(tape.nodes, traced, sources), counted

    def _written_calls(self, entry: _Entry, args: tuple, found: list, counted: list) -> tuple:
        """``__call__`` for ``args``'s signature written out as one function, and the fused
        SGD step's ``_sgd_step``: the refusals while tracing, recording or checking anomalies,
        the check of the arguments in place of the key, the hit's tick, binding, the run. Any
        call they refuse goes to the general methods. (None, None) where the signature has no
        such check. ``counted``: the places of boolean indexes, whose counts are checked too."""
        # Each source is, or is not, each Tensor f read from outside, as when traced
        read = {id(t): t for t in (*(t for _, t in entry.same), *entry.outside)}.values()
        identities = [(i, t, any(i == j and t is u for j, u in entry.same))
                      for i in sorted({i % len(args) for i in self.positions}) for t in read]
        elsewhere = "return general_call(self, *args)"
        checked = guard(args, found, elsewhere, identities=identities)
        if checked is None or any(len(place) > 1 for place in counted):
            return None, None
        lines, inputs, namespace = checked
        lines += count_checks(args, counted, elsewhere, namespace)
        general = type(self).__base__
        namespace.update(entry=entry, tick=self._ticks.__next__, function=entry.function,
                         step_function=entry.cf.step_function, finish=entry.finish,
                         asarray=np.asarray, tracing=_tracing.get, active=_active.get,
                         active_tapes=active_tapes, ANOMALY=_ANOMALY, anomaly_mode=_anomaly_mode,
                         general_call=general.__call__, general_step=general._sgd_step,
                         as_eager=_as_eager)
        finish = entry.finish is not None
        grads = f"grads{'[0]' if self.single else ''}"
        call = [_REFUSING, f"    {elsewhere}", *lines, "entry.used = tick()",
                "try:", f"    value, grads = function({inputs})",
                "except IndexError as error:", "    as_eager(self, args, error)",
                *(["value, grads = finish(value, grads)"] if finish else []),
                f"return asarray(value), {grads}" if self.kind == "value_and_grad" else f"return {grads}"]
        where = f"<compile=True call of {_name(self.f)}>"
        return (_written("__call__", "self, *args", call, namespace, where),
                self._written_step(entry, args, found, identities, namespace, where, counted))

    def _written_step(self, entry: _Entry, args: tuple, found: list, identities: list,
                      namespace: dict, where: str, counted: list) -> Callable | None:
        """``_written_calls``'s fused step, whose check also finds the optimizer's parameters
        at the argnums by identity; None where the closed form has none."""
        elsewhere = "return general_step(self, lr, args, params)"
        stepped = guard(args, found, elsewhere, [i % len(args) for i in self.positions], identities)
        if entry.cf.step_function is None or stepped is None:
            return None
        lines, inputs, names = stepped
        namespace.update(names)  # the same names as the call's, and the same values
        lines += count_checks(args, counted, elsewhere, namespace)
        step = [_REFUSING, f"    {elsewhere}", *lines, "entry.used = tick()",
                "try:", f"    value = step_function({inputs}, lr)",
                "except IndexError as error:", "    as_eager(self, args, error)",
                *(["value = finish(value, ())[0]"] if entry.finish is not None else []),
                "return asarray(value)"]
        return _written("_sgd_step", "self, lr, args, params", step, namespace, where)

    def _sgd_step(self, lr: float, args: tuple, params: tuple) -> np.ndarray | None:
        """``f(*args)``'s value, each source updated in place by ``p ← p − lr·∂f/∂p`` in the
        closed form's fused step (its backward pass seeded with −lr); what ``opt.step(vg,
        *args)`` runs for plain SGD. ``params``: the optimizer's Tensors, distinct, one per
        argnums entry in its order. None, with nothing run, where they are not the arguments
        there, where the closed form has no fused step (a source is computed, not a leaf) or
        where anomaly mode checks each op."""
        n = len(args)
        if len(params) != len(self.positions) or not all(
                -n <= i < n and args[i] is p for i, p in zip(self.positions, params)):
            return None
        if _tracing.get():
            raise TraceError(_NESTED.format(self.__name__))
        if _active.get() and active_tapes():
            raise TraceError(_RECORDING.format(self.__name__))
        if _ANOMALY[0] and _anomaly_mode():
            return None
        entry = self._entry(args)
        if entry.cf.step_function is None:
            return None
        try:
            value = entry.cf.step_function(*entry.bind(args), lr)
        except IndexError as error:
            _as_eager(self, args, error)
        if entry.finish is not None:
            value = entry.finish(value, ())[0]
        return np.asarray(value)


def _as_eager(compiled: Compiled, args: tuple, error: IndexError) -> NoReturn:
    """Raise the error eager raises for ``args``, which names the op and the shapes it was
    given, in place of ``error``, the generated code's bare one (an index past the end):
    run only once the code has failed, so a call that succeeds pays nothing for it."""
    if compiled.eager is not None:
        try:
            compiled.eager(*args)
        except IndexError as eager_error:
            raise eager_error from None
    raise error


# What a written-out call refuses first, as the general methods refuse it
_REFUSING = "if tracing() or active() and active_tapes() or ANOMALY[0] and anomaly_mode():"


def _written(name: str, params: str, body: list[str], namespace: dict, where: str) -> Callable:
    """The function ``def name(params): body`` compiled in ``namespace``."""
    source = f"def {name}({params}):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, where, "exec"), namespace)
    return namespace[name]


_NESTED = ("{} was called while value_and_grad(..., compile=True) traces a function: its answer "
           "would not be recorded, so the closed form would keep the first call's for every later "
           "call; compute it outside the compiled function and pass it in, or use compile=False "
           "(derivatives of derivatives need it: a nested eager grad records its backward pass)")

_RECORDING = ("{} was called while a tape records (inside another mt.grad, say): a compiled "
              "function gives first-order arrays, which an outer tape would take for constants, "
              "so derivatives of derivatives through it would be silently wrong; use "
              "compile=False there (a nested eager grad records its backward pass)")


def _finisher(cf: Any, sources: list[Tensor], run: Callable[[], tuple]) -> Callable | None:
    """What turns the generated code's results into eager's types, if anything must.

    ``run()`` runs the code once, on this call's arguments: whether it gives a narrower
    source's gradient in a wider dtype (pow's VJP with a bool exponent is float64 for a
    float32 base), which eager's are never, is seen only then. A float64 one cannot widen.
    """
    zero_d = any(s.ndim == 0 for s in sources)
    widened = any(s.dtype != np.float64 for s in sources) and any(
        np.asarray(g).dtype != s.dtype for g, s in zip(run()[1], sources))
    if not (_PROMOTES_0D or zero_d or widened):
        return None

    def finish(value: Any, grads: tuple) -> tuple:
        if _PROMOTES_0D or widened:
            value, grads = cf.as_traced(value, grads)
        return value, tuple(map(np.asarray, grads)) if zero_d else grads  # np.float64 -> 0-d array
    return finish


def argnums_positions(kind: str, argnums: Any) -> tuple[tuple[int, ...], bool]:
    """``argnums`` as a tuple of positions, and whether it was a single int."""
    single = isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool)
    positions = (int(argnums),) if single else argnums
    if not single:
        if not isinstance(argnums, (tuple, list)) or not argnums or not all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in argnums):
            raise TypeError(f"{kind}: argnums must be an int or a non-empty tuple of ints, "
                            f"got {argnums!r}")
        positions = tuple(int(i) for i in argnums)
    return positions, single


def _check_argnums(positions: tuple[int, ...], args: tuple) -> None:
    for i in positions:
        if not -len(args) <= i < len(args):
            raise IndexError(f"grad: argnums {i} is out of range for {len(args)} arguments")


def require_scalar_output(f: Callable, out: Tensor) -> None:
    """grad needs a scalar ``f``; the tape's own hint (seed=) is no option grad has."""
    if out.size != 1:
        raise ValueError(
            f"gradient: the target has shape {out.shape}, not a scalar: grad differentiates a "
            f"function with one output (a loss); reduce what {_name(f)} returns (mt.sum(...)), "
            f"or use mt.jacobian(f) for the derivative of each output element")


def _name(f: Callable) -> str:
    return getattr(f, "__name__", repr(f))
