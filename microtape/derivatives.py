"""Derivatives built from gradients: Jacobians, Hessians and their products with vectors.

Each is a few reverse passes of the tape, never a new kind of differentiation:

- ``jacobian``: one VJP per output element, seeded with that element's one-hot.
- ``hessian``: the Jacobian of the gradient, which ``create_graph=True`` records.
- ``hvp``: H·v as the gradient of ⟨∇f, v⟩, so H itself is never formed: the
  recorded gradient's own backward pass, started with v at ∇f.
- ``jvp``: J·v as the gradient, with respect to a cotangent u, of ⟨uᵀJ, v⟩. The VJP
  uᵀJ is linear in u, so this is exact, whatever u's value (zeros here).

Every function gives numpy arrays of the arguments' dtype, as ``mt.grad`` does;
called while a tape records (inside ``mt.grad``, say) it gives Tensors that tape
recorded, so they can be differentiated again. Each differentiates with respect to
a fresh variable holding the argument's value: a use of the same Tensor through a
closure counts as a constant, not as the variable (no perturbation confusion). A
Tensor given at two places is one variable, as for ``mt.grad``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np

from .compiled import _NESTED, _name, argnums_positions
from .errors import ShapeError, TraceError
from .ops import add, astype, reshape, scatter_add
from .state import _tracing
from .tape import Tape, _active, active_tapes
from .tensor import Tensor

__all__ = ["jacobian", "hessian", "hvp", "jvp"]

#: What the functions give: arrays, or Tensors when called while a tape records.
Array = Union[np.ndarray, Tensor]


def jacobian(f: Callable[..., Tensor], argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``f`` with respect to the arguments ``argnums``.

    The returned function gives an array of shape ``f``'s output shape + the
    argument's shape (J[i..., j...] = ∂out[i...]/∂arg[j...]), or a tuple of them,
    one per argument, for a tuple of argnums. It costs one backward pass per
    output element: the tape's way, row by row.
    """
    positions, single = argnums_positions("jacobian", argnums)

    def wrapped(*args: Any) -> Any:
        nested = _nested()
        args, sources = _sources(wrapped.__name__, args, positions, nested)
        with Tape() as tape:
            out = f(*args)
        _require_tensor("jacobian", f, out)
        rows = _rows(tape, out, sources, nested)
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
    positions, single = argnums_positions("hessian", argnums)

    def wrapped(*args: Any) -> Any:
        nested = _nested()
        args, sources = _sources(wrapped.__name__, args, positions, nested)
        with Tape() as outer:  # records the forward pass and the first backward pass
            out, grads = _gradient("hessian", f, lambda: f(*args), sources)
        blocks = tuple(tuple(_rows(outer, g, sources, nested)) for g in grads)
        return blocks[0][0] if single else blocks

    wrapped.__name__ = f"hessian({_name(f)})"
    return wrapped


def hvp(f: Callable[..., Tensor], primals: Sequence[Any],
        tangents: Sequence[Any]) -> tuple[Array, tuple[Array, ...]]:
    """``(f(*primals), H·v)`` for the scalar ``f``, without forming the Hessian H.

    ``tangents`` holds one array v_i per primal, of its shape; the answer holds
    (H·v)_i = Σ_j ∂²f/∂x_i∂x_j v_j, one array per primal. Two backward passes: the
    gradient recorded with ``create_graph=True``, then the gradient of ⟨∇f, v⟩, which
    is that record's backward pass seeded with v_i at each gradient.
    """
    nested = _nested()
    sources, tangents = _primals("hvp", f, primals, tangents, nested)
    with Tape(persistent=False) as outer:
        out, grads = _gradient("hvp", f, lambda: f(*sources), sources)
    return out if nested else out.value, _answers(outer, grads, tangents, sources, nested)


def jvp(f: Callable[..., Tensor], primals: Sequence[Any],
        tangents: Sequence[Any]) -> tuple[Array, Array]:
    """``(f(*primals), J·v)``: the directional derivative of ``f`` along ``tangents``.

    ``tangents`` holds one array per primal, of its shape; J·v has the shape of
    ``f``'s output. Exact: the VJP uᵀJ recorded with ``create_graph=True`` for a
    cotangent u, dotted with v, and differentiated with respect to u.
    """
    nested = _nested()
    sources, tangents = _primals("jvp", f, primals, tangents, nested)
    with Tape(persistent=False) as inner:
        out = f(*sources)
    _require_tensor("jvp", f, out)
    u = Tensor(np.zeros(out.shape, dtype=out.dtype), name="u")
    with Tape(persistent=False) as outer:
        vjps = inner.gradient(out, sources, seed=u, create_graph=True)
    return out if nested else out.value, _answers(outer, vjps, tangents, [u], nested)[0]


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


def _rows(tape: Tape, out: Any, sources: list[Tensor], nested: bool) -> list[Any]:
    """∂out/∂source for each source, one backward pass of ``tape`` per element of ``out``."""
    shape = np.shape(out.value if isinstance(out, Tensor) else out)
    size = int(np.prod(shape))
    rows: list[list] = [[] for _ in sources]
    for k in range(size if _recorded(tape, out, sources) else 0):  # else a constant: zeros
        seed = np.zeros(shape, dtype=out.dtype)
        seed.flat[k] = 1
        for row, g in zip(rows, tape.gradient(out, sources, seed=seed, create_graph=nested)):
            row.append(g)
    return [_stack(r, size, s, nested).reshape(shape + s.shape) for r, s in zip(rows, sources)]


def _stack(rows: list, size: int, source: Tensor, nested: bool) -> Any:
    """The rows as one (size, source.size) array (zeros if none), or a recorded Tensor nested."""
    if not nested or not rows:
        block = np.zeros((size, source.size), dtype=source.dtype)
        for k, g in enumerate(rows):
            block[k] = _array(g).reshape(-1)
        return Tensor(block) if nested else block
    placed = [scatter_add(reshape(g, (source.size,)), k, (size, source.size))
              for k, g in enumerate(rows)]
    while len(placed) > 1:  # added pairwise: the sum's depth grows as log(size)
        placed = [add(*placed[i:i + 2]) if i + 1 < len(placed) else placed[i]
                  for i in range(0, len(placed), 2)]
    return placed[0]


def _answers(tape: Tape, grads: list, tangents: Sequence[np.ndarray],
             sources: list[Tensor], nested: bool) -> tuple:
    """The gradient of ⟨grads, tangents⟩ with respect to each source, zeros where it is a constant.

    The backward pass of ``tape`` starts with each tangent at its gradient, so
    the inner product itself is never formed (``Tape._pullback``). ``grads`` is
    emptied: the pass lets go of the gradients' values before it runs.
    """
    recorded = [_recorded(tape, g, sources) for g in grads]  # else a constant: derivative zero
    targets = [g for g, r in zip(grads, recorded) if r]
    seeds = [_in_dtype(v, g.dtype) for g, v, r in zip(grads, tangents, recorded) if r]
    grads.clear()
    if not targets:
        zeros = [np.zeros(s.shape, dtype=s.dtype) for s in sources]
        return tuple(Tensor(z) if nested else z for z in zeros)
    answers = tape._pullback(targets, seeds, sources, create_graph=nested)
    return tuple(answers) if nested else tuple(_array(g) for g in answers)


def _in_dtype(v: Any, dtype: np.dtype) -> Any:
    """A tangent in its gradient's dtype; a recorded tangent by a recorded cast."""
    if v.dtype == dtype:
        return v
    return astype(v, dtype=dtype.name) if isinstance(v, Tensor) else v.astype(dtype)


def _recorded(tape: Tape, t: Any, sources: Sequence[Tensor]) -> bool:
    return isinstance(t, Tensor) and (any(s is t for s in sources)
                                      or any(n.output is t for n in reversed(tape.nodes)))


def _nested() -> bool:
    """Whether a tape records this call, so that its answers must be recorded Tensors."""
    return bool(_active.get()) and bool(active_tapes())  # the first test is the cheap one


def _variable(arg: Any, nested: bool) -> Tensor:
    """A fresh Tensor to differentiate with respect to; nested, a recorded copy of ``arg``."""
    if nested and isinstance(arg, Tensor):
        return reshape(arg, arg.shape)  # outer tapes still see it depend on the argument
    return Tensor(arg)


def _variables(values: Sequence[Any], nested: bool) -> list[Tensor]:
    """A fresh variable for each value, one per Tensor: a Tensor given at two places is one
    variable, as mt.grad takes it, so that each place gets the total derivative and the
    Hessian is the derivative of mt.grad's answer."""
    made: dict[Any, Tensor] = {}
    variables = []
    for k, value in enumerate(values):
        key = id(value) if isinstance(value, Tensor) else ("place", k)
        if key not in made:
            made[key] = _variable(value, nested)
        variables.append(made[key])
    return variables


def _array(g: Any) -> np.ndarray:
    return g.value if isinstance(g, Tensor) else np.asarray(g)


# -- checking what the user passed ------------------------------------------------

def _sources(kind: str, args: tuple, positions: tuple[int, ...],
             nested: bool) -> tuple[list, list[Tensor]]:
    """``args`` with the differentiated ones as Tensors, and those Tensors in argnums order."""
    if _tracing.get():
        raise TraceError(_NESTED.format(kind))
    args = list(args)
    for i in positions:
        if not -len(args) <= i < len(args):
            raise IndexError(f"{kind}: argnums {i} is out of range for {len(args)} arguments")
    if len({i % len(args) for i in positions}) < len(positions):
        raise ValueError(f"{kind}: argnums {positions} names an argument twice; name each once")
    sources = _variables([args[i] for i in positions], nested)
    for i, source in zip(positions, sources):
        args[i] = source
    return args, sources


def _primals(kind: str, f: Callable, primals: Any, tangents: Any,
             nested: bool) -> tuple[list[Tensor], list[np.ndarray]]:
    """The primals as Tensors and the tangents as arrays of their shapes (or, nested,
    Tensors as given)."""
    if _tracing.get():
        raise TraceError(_NESTED.format(kind))
    for what, seq in (("primals", primals), ("tangents", tangents)):
        if not isinstance(seq, (tuple, list)):
            raise TypeError(f"{kind}: {what} must be a tuple with one array per argument of "
                            f"{_name(f)}, e.g. (x,), not a {type(seq).__name__}")
    if len(primals) != len(tangents):
        raise ValueError(f"{kind}: {len(primals)} primals but {len(tangents)} tangents; pass one "
                         f"tangent per primal, of its shape")
    sources = _variables(primals, nested)
    # Nested, a tangent that is a Tensor stays one: an outer tape then sees H·v depend on v
    vs = [v if nested and isinstance(v, Tensor) else np.asarray(_array(v)) for v in tangents]
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
