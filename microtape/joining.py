"""Tensors joined into one: concatenate along an existing axis, stack along a new one.

Each input's gradient is its own part of G, cut back out with a getitem; the
ops take a list, as numpy's do (the list is unpacked into the op's inputs,
so that the tape sees each Tensor).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .errors import InputError, ShapeError
from .ops import _shape, getitem, reshape
from .primitive import Code, primitive
from .tensor import Tensor


def _named(name: str) -> Callable:
    """Give a forward the op's public name: the op itself takes its inputs unpacked."""
    def rename(forward: Callable) -> Callable:
        forward.__name__ = forward.__qualname__ = name
        return forward
    return rename


def _axis(op: str, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise InputError(f"{op}: axis {axis} is out of range for the result's {ndim} axes; "
                         f"valid axes are {-ndim} to {ndim - 1}")
    return axis % ndim


def _part(i: int, g, inputs: tuple, axis: int):
    """Input i's span of G along ``axis``."""
    ndim = len(_shape(g))
    k = _axis("concatenate", axis, ndim)
    start = int(np.sum([_shape(x)[k] for x in inputs[:i]], dtype=int))
    return getitem(g, (slice(None),) * k + (slice(start, start + _shape(inputs[i])[k]),))


@primitive("dA_i = input i's span of G along the axis",
           code=Code(lambda c: f"np.concatenate(({', '.join(c.names)},), "
                               f"axis={c.lit(c.params['axis'])})",
                     math=lambda c: f"[{', '.join(c.names)}] along axis {c.params['axis']}"),
           grads=lambda i, g, c, *inputs, axis=0: _part(i, g, inputs, axis))
@_named("concatenate")
def _concatenate(*arrays, axis=0):
    shapes = [np.shape(a) for a in arrays]
    if shapes and all(len(s) == len(shapes[0]) > 0 for s in shapes):
        k = _axis("concatenate", axis, len(shapes[0]))
        rest = {s[:k] + s[k + 1:] for s in shapes}
        if len(rest) > 1:
            raise ShapeError(f"concatenate: cannot join shapes {' and '.join(map(str, shapes))} "
                             f"along axis {axis}: every other axis must have the same length")
    return np.concatenate(arrays, axis=axis)


@primitive("dA_i = G at index i of the new axis",
           code=Code(lambda c: f"np.stack(({', '.join(c.names)},), axis={c.lit(c.params['axis'])})",
                     math=lambda c: f"[{', '.join(c.names)}] stacked on axis {c.params['axis']}"),
           grads=lambda i, g, c, *inputs, axis=0: getitem(
               g, (slice(None),) * _axis("stack", axis, len(_shape(g))) + (i,)))
@_named("stack")
def _stack(*arrays, axis=0):
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) > 1:
        raise ShapeError(f"stack: every input needs the same shape; got "
                         f"{' and '.join(str(np.shape(a)) for a in arrays)}")
    return np.stack(arrays, axis=axis)


def _inputs(op: str, tensors: Sequence) -> tuple:
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, Sequence):
        raise TypeError(f"{op}: pass a list of Tensors (or arrays), as for np.{op}([a, b]); "
                        f"got a {type(tensors).__name__}")
    if not tensors:
        raise InputError(f"{op}: the list is empty; pass at least one Tensor")
    return tuple(tensors)


def _check_axis(op: str, axis: object, flattens: bool = False) -> None:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        also = " (or None, to join the flattened inputs)" if flattens else ""
        raise TypeError(f"{op}: axis must be an int{also}, not {axis!r}")


def concatenate(tensors: Sequence, axis: int | None = 0, name: str | None = None) -> Tensor:
    """C = the tensors joined end to end along ``axis`` (numpy's concatenate); ``axis=None``
    joins them flattened.

    VJP: each input gets its own span of G along the axis.
    """
    tensors = _inputs("concatenate", tensors)
    if axis is None:  # numpy's flattened join, spelled in ops the tape knows
        tensors, axis = tuple(reshape(t, -1) for t in tensors), 0
    _check_axis("concatenate", axis, flattens=True)
    return _concatenate(*tensors, axis=axis, name=name)


def stack(tensors: Sequence, axis: int = 0, name: str | None = None) -> Tensor:
    """C = tensors of one shape stacked along a new ``axis`` (numpy's stack).

    VJP: input i gets G at index i of the new axis.
    """
    _check_axis("stack", axis)
    return _stack(*_inputs("stack", tensors), axis=axis, name=name)
