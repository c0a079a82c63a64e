"""grad and value_and_grad: the tape wrapped around a function of arrays.

With ``compile=True`` the tape records ``f`` once per signature (the shapes
and dtypes of the array arguments, the values of the others), writes its
closed form (``Tape.closed_form``) and later calls run that generated numpy
code instead of recording again.
"""

from __future__ import annotations

import inspect
from collections import namedtuple
from typing import Any, Callable, Sequence

import numpy as np

from .primitive import _PROMOTES_0D
from .state import _tracing
from .tape import Tape
from .tensor import Tensor

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


def value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0,
                   compile: bool = False) -> Callable:
    """``f``'s value and its gradient with respect to the arguments ``argnums``.

    ``f`` takes arrays or Tensors and returns a 0-d Tensor. The returned
    function gives ``(value, gradient)`` as numpy arrays; with a tuple of
    argnums the gradient is a tuple, one array per argument.

    ``compile=True`` traces ``f`` on the first call of each signature and
    runs its generated closed form afterwards (the same numbers, without the
    per-op bookkeeping); the function then has ``cache_info()``. ``f`` must
    not branch on a traced value: that raises ``mt.TraceError``. Nor should
    it compute with a Tensor's ``.value`` in plain numpy: that number would
    be written into the code as it was on the first call.
    """
    single = isinstance(argnums, int)
    positions = (argnums,) if single else tuple(argnums)
    if compile:
        return _Compiled(f, positions, single)

    def wrapped(*args: Any) -> tuple[np.ndarray, Any]:
        _check_argnums(positions, args)
        args = list(args)
        sources = []
        for i in positions:
            args[i] = args[i] if isinstance(args[i], Tensor) else Tensor(args[i])
            sources.append(args[i])
        with Tape(persistent=False) as tape:  # asked once, never shown
            out = f(*args)
        if not isinstance(out, Tensor):
            raise TypeError(f"grad: {_name(f)} must return a Tensor, not {type(out).__name__}")
        grads = tape.gradient(out, sources)
        return out.value, grads[0] if single else tuple(grads)

    wrapped.__name__ = f"value_and_grad({_name(f)})"
    return wrapped


def grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0,
         compile: bool = False) -> Callable:
    """The gradient of ``f`` with respect to the arguments ``argnums``, as numpy arrays.

    ``compile=True`` as for ``value_and_grad``.
    """
    both = value_and_grad(f, argnums, compile=compile)

    def wrapped(*args: Any) -> Any:
        return both(*args)[1]

    wrapped.__name__ = f"grad({_name(f)})"
    if compile:
        wrapped.cache_info = both.cache_info
    return wrapped


class _TracingTape(Tape):
    """A tape recording for compile=True: Tensors refuse bool/float/item while it is active."""

    __slots__ = ("_trace_token",)

    def __enter__(self) -> "_TracingTape":
        super().__enter__()
        self._trace_token = _tracing.set(_tracing.get() + 1)
        return self

    def __exit__(self, *exc) -> None:
        try:
            _tracing.reset(self._trace_token)
        except (ValueError, RuntimeError):
            pass  # exited in another thread or task: Tape.__exit__ raises the error that says so
        super().__exit__(*exc)


class _Compiled:
    """value_and_grad(f, compile=True): one closed form per signature, kept in a small cache."""

    maxsize = 64

    def __init__(self, f: Callable, positions: tuple[int, ...], single: bool) -> None:
        self.f, self.positions, self.single = f, positions, single
        self.cache: dict[tuple, tuple] = {}
        self.hits = self.misses = 0
        try:
            self.arg_names = list(inspect.signature(f).parameters)
        except (TypeError, ValueError):
            self.arg_names = []
        self.__name__ = f"value_and_grad({_name(f)}, compile=True)"

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self.cache))

    def __call__(self, *args: Any) -> tuple[np.ndarray, Any]:
        key = tuple(map(_signature, args))
        entry = self.cache.get(key)
        if entry is None:
            _check_argnums(self.positions, args)
            self.misses += 1
            entry = self._trace(args)
            if len(self.cache) >= self.maxsize:
                del self.cache[next(iter(self.cache))]  # the oldest signature goes
            self.cache[key] = entry
        else:
            self.hits += 1
        cf, where, leaves = entry
        values = [_array(leaves[k]) if i is None else _array(args[i]) for k, i in enumerate(where)]
        value, grads = cf.function(*values)
        if _PROMOTES_0D:
            value, grads = cf.as_traced(value, grads)
        return np.asarray(value), grads[0] if self.single else tuple(grads)

    def _trace(self, args: tuple) -> tuple:
        args = list(args)
        sources = []
        for i in self.positions:
            value = args[i].value if isinstance(args[i], Tensor) else args[i]
            name = args[i].name if isinstance(args[i], Tensor) and args[i].name else (
                self.arg_names[i] if i < len(self.arg_names) else None)
            args[i] = Tensor(value, name=name)
            sources.append(args[i])
        with _TracingTape() as tape:
            out = self.f(*args)
        if not isinstance(out, Tensor):
            raise TypeError(f"grad: {_name(self.f)} must return a Tensor, not {type(out).__name__}")
        cf = tape.closed_form(out, sources)
        # Each argument of the closed form is one of f's arguments (found by
        # identity) or something f read from elsewhere, read as it is now.
        where, leaves = [], []
        for name in cf.inputs:
            leaf = cf.leaves[name]
            i = next((k for k, a in enumerate(args) if a is leaf or (
                isinstance(a, Tensor) and a.value is leaf)), None)
            where.append(i)
            leaves.append(leaf)  # a Tensor is read at each call: an optimizer may move it
        return cf, where, leaves


def _signature(a: Any) -> Any:
    if isinstance(a, Tensor):
        a = a.value
    if isinstance(a, np.ndarray):
        return (a.shape, a.dtype.str)
    try:
        hash(a)
    except TypeError:
        return (type(a).__name__, repr(a))
    return (type(a), a)


def _array(a: Any) -> Any:
    return a.value if isinstance(a, Tensor) else a


def _check_argnums(positions: tuple[int, ...], args: tuple) -> None:
    for i in positions:
        if not -len(args) <= i < len(args):
            raise IndexError(f"grad: argnums {i} is out of range for {len(args)} arguments")


def _name(f: Callable) -> str:
    return getattr(f, "__name__", repr(f))
