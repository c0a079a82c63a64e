"""G as a shape and a dtype: what derive.py runs an op's grads on.

The closed form runs each VJP's grads once, to learn which ops they record
and the shapes and dtypes those ops see; no number computed from G is ever
printed. On a seed of ones the grads did the full-size work all the same
(xᵀ G of a large layer cost more than the rest of the build together).

``Abstract`` is an array of G's shape and dtype whose elements are all one
element in memory (a stride-0 view of a single 1), and whose ufunc calls
work out only the result's shape and dtype, by numpy's own rules:
elementwise calls broadcast, ``matmul`` and reductions. Anything else runs
as numpy runs it, on the plain view: the shape right, the numbers those of
a seed of ones. ``AbstractTape`` keeps what the grads compute from G
abstract too. C, the inputs and the arrays the grads make (the identity of
one-hot labels, N) stay real, so what the grads read from them is as before.

So the ops recorded are the same as on a seed of ones as long as the grads
use G only through ops (as primitive.py asks of them) and each op's output
shape and dtype follow from its inputs' (as for every op of microtape).
A grad that reads a number of an abstract array (``float``, ``bool``, an
element) gets a TypeError, and derive.py runs it on ones instead.

numpy 1.x picks some result dtypes from the values (value-based casting),
so there the grads run on a seed of ones (``SHAPES_DECIDE`` is False).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import _PROMOTES_0D
from ..tape import Tape
from ..tensor import Tensor

SHAPES_DECIDE = not _PROMOTES_0D  # numpy 2: a result's dtype follows the operands' dtypes only

_REDUCE_KEYWORDS = frozenset(("axis", "dtype", "keepdims", "where"))
_ONE: dict[np.dtype, np.ndarray] = {}  # per dtype, the one element every Abstract shows
_DTYPES: dict[tuple, np.dtype] = {}  # (ufunc, what decides each operand's part): result dtype


class Abstract(np.ndarray):
    """An array whose shape and dtype are known and whose numbers are never computed."""

    @staticmethod
    def of(shape: tuple[int, ...], dtype: Any) -> Abstract:
        return _ones(Abstract, shape, dtype)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method == "__call__" and not kwargs and ufunc.nout == 1 and (
                ufunc.signature is None or ufunc is np.matmul):
            return _called(ufunc, inputs)
        if method == "reduce" and len(inputs) == 1 and _REDUCE_KEYWORDS.issuperset(kwargs) \
                and kwargs.get("where", True) is True:
            found = _reduced(ufunc, inputs[0], kwargs)
            if found is not None:
                return found
        # Anything else (out=, at, accumulate) as numpy does it, on the plain arrays
        inputs = tuple(_plain(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        found = super().__getitem__(key)
        return found if isinstance(found, np.ndarray) else self._numbers()

    def _numbers(self, *args: Any, **kwargs: Any) -> Any:
        # Its elements are not its numbers (they are all 1): grads that read them
        # run again on a seed of ones, which these would be read from before.
        raise TypeError("an abstract array has a shape and a dtype, not numbers")

    __bool__ = __float__ = __int__ = __index__ = __complex__ = __iter__ = _numbers
    item = tolist = tobytes = _numbers

    def __repr__(self) -> str:
        return f"Abstract(shape={self.shape}, dtype={self.dtype})"

    __str__ = __repr__


def _plain(x: Any) -> Any:
    return x.view(np.ndarray) if isinstance(x, Abstract) else x


def _ones(kind: type, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array of ``shape`` whose elements are all one read-only 1 (a stride-0 view)."""
    dtype = np.dtype(dtype)
    one = _ONE.get(dtype)
    if one is None:
        one = _ONE[dtype] = np.ones(1, dtype)
        one.flags.writeable = False
    return np.ndarray.__new__(kind, shape, dtype, buffer=one, strides=(0,) * len(shape))


def _small(x: Any) -> tuple[Any, Any]:
    """What decides ``x``'s part in a result's dtype, and ``x`` with that alone: a number as it
    is (a Python number promotes weakly, a numpy scalar does not; a Python int too large for
    an integer array is an error), an array as length-1 ones of its dtype and axes."""
    if isinstance(x, int):
        return (type(x), x), x
    if isinstance(x, (float, complex, np.generic)):
        return type(x), x
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    return (x.dtype, x.ndim), _ones(np.ndarray, (1,) * x.ndim, x.dtype)


def _called(ufunc: np.ufunc, inputs: tuple) -> Abstract:
    """``ufunc(*inputs)``'s shape from the operands' shapes, its dtype from a call on length-1 ones."""
    shapes = [np.shape(x) for x in inputs]
    shape = _matmul_shape(*shapes) if ufunc is np.matmul else np.broadcast_shapes(*shapes)
    kinds, small = zip(*map(_small, inputs))
    dtype = _DTYPES.get((ufunc, kinds))
    if dtype is None:
        with np.errstate(all="ignore"):  # 1 is in every domain but arctanh's and the like
            dtype = np.asarray(ufunc(*small)).dtype
        if len(_DTYPES) >= 256:  # many Python ints seen: forget them rather than grow
            _DTYPES.clear()
        _DTYPES[ufunc, kinds] = dtype
    return Abstract.of(shape, dtype)


def _matmul_shape(a: tuple, b: tuple) -> tuple[int, ...]:
    """numpy's matmul rule: a vector is a one-row (or one-column) matrix, stacks broadcast."""
    if not a or not b:
        raise ValueError("matmul: a scalar operand")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: shapes {a} and {b} do not fit")
    shape = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(b) == 1:
        shape = shape[:-1]
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:] if len(b) > 1 else shape[:-1]
    return shape


def _reduced(ufunc: np.ufunc, x: Any, kwargs: dict) -> Abstract | None:
    """``ufunc.reduce(x, ...)``'s shape by the axes; None where an axis reduced is empty (the
    ufunc's identity, or its error, then decides)."""
    ndim, axis, keep = np.ndim(x), kwargs.get("axis", 0), kwargs.get("keepdims", False)
    axes = range(ndim) if axis is None else np.lib.array_utils.normalize_axis_tuple(axis, ndim)
    shape = np.shape(x)
    if any(shape[k] == 0 for k in axes):
        return None
    kept = tuple(1 if k in axes else n for k, n in enumerate(shape)) if keep else tuple(
        n for k, n in enumerate(shape) if k not in axes)
    small = _ones(np.ndarray, (1,) * ndim, x.dtype)
    dtype = np.asarray(ufunc.reduce(small, axis=axis, dtype=kwargs.get("dtype"),
                                    keepdims=keep)).dtype
    return Abstract.of(kept, dtype)


class AbstractTape(Tape):
    """A private tape on which an op's output is abstract wherever one of its inputs is."""

    __slots__ = ()

    def __enter__(self) -> AbstractTape:
        super().__enter__()
        self._record = self._keep_abstract
        return self

    def _keep_abstract(self, node: Any) -> None:
        if any(isinstance(x.value if isinstance(x, Tensor) else x, Abstract) for x in node.inputs):
            out = node.output
            out.value = Abstract.of(out.shape, out.dtype)
        self.nodes.append(node)
