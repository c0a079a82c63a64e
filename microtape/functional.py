"""grad and value_and_grad: the tape wrapped around a function of arrays."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .tape import Tape
from .tensor import Tensor


def value_and_grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """``f``'s value and its gradient with respect to the arguments ``argnums``.

    ``f`` takes arrays or Tensors and returns a 0-d Tensor. The returned
    function gives ``(value, gradient)`` as numpy arrays; with a tuple of
    argnums the gradient is a tuple, one array per argument.
    """
    single = isinstance(argnums, int)
    positions = (argnums,) if single else tuple(argnums)

    def wrapped(*args: Any) -> tuple[np.ndarray, Any]:
        for i in positions:
            if not -len(args) <= i < len(args):
                raise IndexError(f"grad: argnums {i} is out of range for {len(args)} arguments")
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


def grad(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """The gradient of ``f`` with respect to the arguments ``argnums``, as numpy arrays."""
    both = value_and_grad(f, argnums)

    def wrapped(*args: Any) -> Any:
        return both(*args)[1]

    wrapped.__name__ = f"grad({_name(f)})"
    return wrapped


def _name(f: Callable) -> str:
    return getattr(f, "__name__", repr(f))
