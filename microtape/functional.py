"""grad and value_and_grad: the tape wrapped around a function of arrays.

With ``compile=True`` the tape records ``f`` once per signature and later
calls run its closed form instead (``compiled.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .compiled import (_NESTED, CacheInfo, Compiled, _check_argnums, _name, argnums_positions,
                       require_scalar_output)
from .errors import TraceError
from .state import _tracing
from .ops import reshape
from .tape import Tape, _active, active_tapes
from .tensor import Tensor

__all__ = ["grad", "value_and_grad", "CacheInfo"]


def value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0,
                   compile: bool = False) -> Callable:
    """``f``'s value and its gradient with respect to the arguments ``argnums``.

    ``f`` takes arrays or Tensors and returns a 0-d Tensor. The returned
    function gives ``(value, gradient)`` as numpy arrays; with a tuple of
    argnums the gradient is a tuple, one array per argument.

    Called while a tape records (inside another ``mt.grad``, say), it gives
    Tensors instead, computed by recorded ops (``create_graph=True``), so the
    outer computation can differentiate them again:
    ``mt.grad(lambda x: mt.sum(mt.grad(f)(x)))`` is a second derivative.

    ``compile=True`` traces ``f`` on the first call of each signature and runs its
    generated closed form afterwards (the same numbers, without the per-op bookkeeping;
    in ``mt.detect_anomaly()`` it runs ``f`` eagerly, each op checked); the function
    then has ``cache_info()`` and ``closed_form(*args)``. Branching on a traced value or
    taking it off the tape (``float(t)``, ``np.asarray(t)``, ``no_grad``, a numpy view
    of an argument) raises ``mt.TraceError``. An array computed in plain numpy
    (``x / 255``, ``t.value * 2``) cannot be seen and stays as it was at the first call:
    microtape's ops work on plain arrays too, and ``mt.stop_gradient(t)`` is the op for
    a value that takes no gradient.
    """
    positions, single = argnums_positions("value_and_grad", argnums)
    if compile:
        return Compiled(f, argnums, positions, single, eager=value_and_grad(f, argnums))
    return _eager(f, positions, single)


def _eager(f: Callable[..., Tensor], positions: tuple[int, ...], single: bool) -> Callable:
    """value_and_grad(f) without compile: a tape around each call."""
    def wrapped(*args: Any) -> tuple[Any, Any]:
        if _tracing.get():
            raise TraceError(_NESTED.format(wrapped.__name__))
        _check_argnums(positions, args)
        # Under an active tape (inside another grad, say) the answer is part of
        # that outer computation: the backward pass is recorded and Tensors
        # come back, which the outer tape can differentiate again.
        nested = bool(_active.get()) and bool(active_tapes())  # the first test is the cheap one
        given, args = args, list(args)
        sources, made = [], {}
        for i in positions:
            arg = given[i]
            if nested or not isinstance(arg, Tensor):
                # One variable per place, and per Tensor: a Tensor at two places (or
                # argnums=(0, 0)) is one variable, nested or not, as eager sees it
                key = id(arg) if isinstance(arg, Tensor) else i % len(given)
                if key not in made:
                    made[key] = _variable(arg)
                arg = made[key]
            args[i] = arg
            sources.append(arg)
        with Tape(persistent=False) as tape:  # asked once, never shown
            out = f(*args)
        if not isinstance(out, Tensor):
            raise TypeError(f"grad: {_name(f)} must return a Tensor, not {type(out).__name__}")
        require_scalar_output(f, out)
        grads = tape.gradient(out, sources, create_graph=nested)
        return out if nested else out.value, grads[0] if single else tuple(grads)

    wrapped.__name__ = f"value_and_grad({_name(f)})"
    # What opt.step(vg, *args) reads, as it reads a compiled one's: which arguments it differentiates.
    wrapped.kind, wrapped.positions, wrapped.single = "value_and_grad", positions, single
    return wrapped


def _variable(arg: Any) -> Tensor:
    """A new Tensor for this call to differentiate with respect to.

    Nested, a Tensor argument becomes a recorded copy, so outer tapes still
    see it depend on the argument: the function may also use the argument
    itself, through a closure, and that use must not count as this
    variable's. Without it d/dx [x · d/dy (x + y)] at y = x would be 2, not 1.
    """
    return reshape(arg, arg.shape) if isinstance(arg, Tensor) else Tensor(arg)


def grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0,
         compile: bool = False) -> Callable:
    """The gradient of ``f`` with respect to the arguments ``argnums``, as numpy arrays.

    ``compile=True`` as for ``value_and_grad``.
    """
    if compile:
        return CompiledGrad(f, argnums, *argnums_positions("grad", argnums))
    both = value_and_grad(f, argnums)

    def wrapped(*args: Any) -> Any:
        return both(*args)[1]

    wrapped.__name__ = f"grad({_name(f)})"
    return wrapped





class CompiledGrad(Compiled):
    """``grad(f, compile=True)``: the gradient part of ``value_and_grad(f, compile=True)``."""

    def __init__(self, f: Callable, argnums: Any, positions: tuple[int, ...], single: bool) -> None:
        super().__init__(f, argnums, positions, single, kind="grad",
                         eager=value_and_grad(f, argnums))

    def __call__(self, *args: Any) -> Any:
        return Compiled.__call__(self, *args)[1]
