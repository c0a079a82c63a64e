"""Derivatives built from gradients: Jacobians, Hessians and their products with vectors.

Each is a few reverse passes of the tape, never a new kind of differentiation:

- ``jacobian``: one VJP per output element, seeded with that element's one-hot.
- ``hessian``: the Jacobian of the gradient, which ``create_graph=True`` records.
- ``hvp``: H·v as the gradient of ⟨∇f, v⟩, so H itself is never formed.
- ``jvp``: J·v as the gradient, with respect to a cotangent u, of ⟨uᵀJ, v⟩. The VJP
  uᵀJ is linear in u, so this is exact, whatever u's value (zeros here).

Every function gives numpy arrays of the arguments' dtype, as ``mt.grad`` does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .compiled import _NESTED, _name
from .errors import ShapeError, TraceError
from .ops import mul, sum as _sum
from .state import _tracing
from .tape import Tape
from .tensor import Tensor

__all__ = ["jacobian", "hessian", "hvp", "jvp"]


def jacobian(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``f`` with respect to the arguments ``argnums``.

    The returned function gives an array of shape ``f``'s output shape + the
    argument's shape (J[i..., j...] = ∂out[i...]/∂arg[j...]), or a tuple of them,
    one per argument, for a tuple of argnums. It costs one backward pass per
    output element: the tape's way, row by row.
    """
    positions, single = _argnums("jacobian", argnums)

    def wrapped(*args: Any) -> Any:
        args, sources = _sources(wrapped.__name__, args, positions)
        with Tape() as tape:
            out = f(*args)
        _require_tensor("jacobian", f, out)
        rows = _rows(tape, out, sources)
        return rows[0] if single else tuple(rows)

    wrapped.__name__ = f"jacobian({_name(f)})"
    return wrapped


def hessian(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """The Hessian of the scalar ``f`` with respect to the arguments ``argnums``.

    The returned function gives an array of shape the argument's shape twice
    (H[i..., j...] = ∂²f/∂arg[i...]∂arg[j...]); for a tuple of argnums, nested
    tuples with ``H[i][j]`` the block of arguments ``argnums[i]`` and ``argnums[j]``.
    It is the Jacobian of the gradient: one backward pass per element.
    """
    positions, single = _argnums("hessian", argnums)

    def wrapped(*args: Any) -> Any:
        args, sources = _sources(wrapped.__name__, args, positions)
        with Tape() as outer:  # records the forward pass and the first backward pass
            out, grads = _gradient("hessian", f, lambda: f(*args), sources)
        blocks = tuple(tuple(_rows(outer, g, sources)) for g in grads)
        return blocks[0][0] if single else blocks

    wrapped.__name__ = f"hessian({_name(f)})"
    return wrapped


def hvp(f: Callable[..., Tensor], primals: Sequence[Any],
        tangents: Sequence[Any]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """``(f(*primals), H·v)`` for the scalar ``f``, without forming the Hessian H.

    ``tangents`` holds one array v_i per primal, of its shape; the answer holds
    (H·v)_i = Σ_j ∂²f/∂x_i∂x_j v_j, one array per primal. Two backward passes: the
    gradient recorded with ``create_graph=True``, then the gradient of ⟨∇f, v⟩.
    """
    sources, tangents = _primals("hvp", f, primals, tangents)
    with Tape(persistent=False) as outer:
        out, grads = _gradient("hvp", f, lambda: f(*sources), sources)
        dot = _dot(grads, tangents)
    return out.value, _answers(outer, dot, sources)


def jvp(f: Callable[..., Tensor], primals: Sequence[Any],
        tangents: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(f(*primals), J·v)``: the directional derivative of ``f`` along ``tangents``.

    ``tangents`` holds one array per primal, of its shape; J·v has the shape of
    ``f``'s output. Exact: the VJP uᵀJ recorded with ``create_graph=True`` for a
    cotangent u, dotted with v, and differentiated with respect to u.
    """
    sources, tangents = _primals("jvp", f, primals, tangents)
    with Tape(persistent=False) as inner:
        out = f(*sources)
        _require_tensor("jvp", f, out)
        u = Tensor(np.zeros(out.shape, dtype=out.dtype), name="u")
        weighed = _sum(mul(out, u))  # ⟨u, out⟩: its gradient is uᵀJ
    with Tape(persistent=False) as outer:
        dot = _dot(inner.gradient(weighed, sources, create_graph=True), tangents)
    return out.value, _answers(outer, dot, [u])[0]


# -- the passes ------------------------------------------------------------------

def _gradient(kind: str, f: Callable, call: Callable[[], Any],
              sources: list[Tensor]) -> tuple[Tensor, list]:
    """``f``'s scalar output and its gradients as Tensors, recorded on every open tape."""
    with Tape(persistent=False) as inner:
        out = call()
    _require_tensor(kind, f, out)
    if out.size != 1:
        raise ValueError(f"{kind}: f must return a scalar (one element), but {_name(f)} returned "
                         f"shape {out.shape}; reduce it (e.g. .sum()), or use mt.jacobian for a "
                         f"function with several outputs")
    return out, inner.gradient(out, sources, create_graph=True)


def _rows(tape: Tape, out: Any, sources: list[Tensor]) -> list[np.ndarray]:
    """∂out/∂source for each source, one backward pass of ``tape`` per element of ``out``."""
    shape = np.shape(out.value if isinstance(out, Tensor) else out)
    blocks = [np.zeros((int(np.prod(shape)), s.size), dtype=s.dtype) for s in sources]
    if _recorded(tape, out, sources):  # else a constant: its rows stay zero
        for k in range(blocks[0].shape[0] if blocks else 0):
            seed = np.zeros(shape, dtype=out.dtype)
            seed.flat[k] = 1
            for block, g in zip(blocks, tape.gradient(out, sources, seed=seed)):
                block[k] = _array(g).reshape(-1)
    return [b.reshape(shape + s.shape) for b, s in zip(blocks, sources)]


def _dot(grads: Sequence[Any], tangents: Sequence[np.ndarray]) -> Tensor | None:
    """⟨grads, tangents⟩ recorded on the open tapes; None when no gradient is a Tensor."""
    dot = None
    for g, v in zip(grads, tangents):
        if isinstance(g, Tensor):  # a plain array is a constant: its derivative is zero
            term = _sum(mul(g, v.astype(g.dtype, copy=False)))
            dot = term if dot is None else dot + term
    return dot


def _answers(tape: Tape, dot: Tensor | None, sources: list[Tensor]) -> tuple[np.ndarray, ...]:
    """The gradient of ``dot`` with respect to each source, zeros where it is a constant."""
    if dot is None or not _recorded(tape, dot, sources):
        return tuple(np.zeros(s.shape, dtype=s.dtype) for s in sources)
    return tuple(_array(g) for g in tape.gradient(dot, sources))


def _recorded(tape: Tape, t: Any, sources: Sequence[Tensor]) -> bool:
    return isinstance(t, Tensor) and (any(s is t for s in sources)
                                      or any(n.output is t for n in tape.nodes))


def _array(g: Any) -> np.ndarray:
    return g.value if isinstance(g, Tensor) else np.asarray(g)


# -- checking what the user passed ------------------------------------------------

def _argnums(kind: str, argnums: Any) -> tuple[tuple[int, ...], bool]:
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


def _sources(kind: str, args: tuple, positions: tuple[int, ...]) -> tuple[list, list[Tensor]]:
    """``args`` with the differentiated ones as Tensors, and those Tensors in argnums order."""
    if _tracing.get():
        raise TraceError(_NESTED.format(kind))
    args = list(args)
    for i in positions:
        if not -len(args) <= i < len(args):
            raise IndexError(f"{kind}: argnums {i} is out of range for {len(args)} arguments")
    if len({i % len(args) for i in positions}) < len(positions):
        raise ValueError(f"{kind}: argnums {positions} names an argument twice; name each once")
    for i in positions:
        args[i] = args[i] if isinstance(args[i], Tensor) else Tensor(args[i])
    return args, [args[i] for i in positions]


def _primals(kind: str, f: Callable, primals: Any,
             tangents: Any) -> tuple[list[Tensor], list[np.ndarray]]:
    """The primals as Tensors and the tangents as arrays of their shapes and dtypes."""
    if _tracing.get():
        raise TraceError(_NESTED.format(kind))
    for what, seq in (("primals", primals), ("tangents", tangents)):
        if not isinstance(seq, (tuple, list)):
            raise TypeError(f"{kind}: {what} must be a tuple with one array per argument of "
                            f"{_name(f)}, e.g. (x,), not a {type(seq).__name__}")
    if len(primals) != len(tangents):
        raise ValueError(f"{kind}: {len(primals)} primals but {len(tangents)} tangents; pass one "
                         f"tangent per primal, of its shape")
    sources = [p if isinstance(p, Tensor) else Tensor(p) for p in primals]
    vs = [np.asarray(_array(v)) for v in tangents]
    for i, (x, v) in enumerate(zip(sources, vs)):
        if v.shape != x.shape:
            raise ShapeError(f"{kind}: tangent {i} has shape {v.shape} but primal {i} has shape "
                             f"{x.shape}; each tangent is a direction for its primal, so the "
                             f"shapes must match")
        if v.dtype.kind not in "fiub":
            raise TypeError(f"{kind}: tangent {i} must be a real array, not {v.dtype}")
    return sources, vs


def _require_tensor(kind: str, f: Callable, out: Any) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"{kind}: {_name(f)} must return a Tensor, not {type(out).__name__}")
