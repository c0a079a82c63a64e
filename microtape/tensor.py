"""Tensor: a numpy array that ops can record on a tape.

A Tensor is deliberately thin: a value, a gradient slot and a name. It knows
nothing about tapes: ``Primitive.__call__`` records each op that runs. Its
operators (``+``, ``@``, ``.sum()``, ``.T``, numpy's ufuncs) forward to the
ops, so ``operators.py`` attaches them once the ops exist, and this module
imports nothing above it.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np

from .errors import TraceError
from .state import _EDITS, _made, _tracing


class Tensor:
    """A numpy array whose operations are recorded by any active ``Tape``.

    Float arrays keep their dtype (float32 or float64); ints, bools, lists and
    Python scalars become float64. The array is wrapped, not copied.

    Optimizers change ``value`` in place and call ``mark_modified()``, so a
    tape that recorded the old value refuses to answer instead of mixing old
    and new. Writing into ``value`` yourself is invisible to microtape: call
    ``mark_modified()`` afterwards, or record again.
    """

    # _version is set by mark_modified() only; unset, it reads as 0 (never changed).
    __slots__ = ("value", "grad", "name", "_version")

    def __init__(self, data: Any, name: str | None = None) -> None:
        given = data
        if isinstance(data, Tensor):
            data = data.value
        elif (type(data) is list or type(data) is tuple) and holds_tensor(data):
            raise TypeError(
                "Tensor: the list holds Tensors, which it would copy as constants: no gradient "
                "would reach them; combine them with mt.stack([...]) or mt.concatenate([...]), "
                "which are recorded, or pass their values (t.value) for data")
        elif type(data) is not np.ndarray and isinstance(data, np.ma.MaskedArray):
            raise TypeError(
                "Tensor: a masked array's mask would be dropped, and every masked number used; "
                "pass data.filled(x) with the number the masked entries should be, or "
                "data.compressed() for the unmasked ones alone")
        try:
            value = np.asarray(data)
        except ValueError as e:  # rows of different lengths
            raise ValueError(f"Tensor: the data is not a rectangular array of numbers "
                             f"({_shown(data)}): {e}") from None
        if value.dtype.kind == "c":
            raise TypeError("Tensor: microtape differentiates real functions; got a complex array")
        if value.dtype.kind in "OSUV":  # numpy would turn None into NaN, silently
            raise TypeError(f"Tensor: the data must be numbers, but {_shown(data)} gives an "
                            f"array of dtype {value.dtype}; pass numbers (float('nan') where "
                            f"one is missing)")
        if value.dtype.kind != "f":
            value = value.astype(np.float64)
        self.value: np.ndarray = value
        self.grad: np.ndarray | None = None
        self.name: str | None = name
        made = _made.get()
        if made is not None:  # a trace records: it reads this one from its data at every call
            made[id(self)] = (self, given)

    # -- array facts ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return self.value.size

    def item(self) -> float:
        _refuse_while_tracing("t.item()")
        return self.value.item()

    def __float__(self) -> float:
        _refuse_while_tracing("float(t)")
        return float(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self):
        # Without it Python iterates by indexing until an IndexError, which a 0-d
        # Tensor raises at once: a loop over a scalar would silently run no times.
        if self.value.ndim == 0:
            raise TypeError("iteration over a 0-d Tensor: it holds one number; use t.item() "
                            "for it, or index the Tensor it came from")
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        _refuse_while_tracing("bool(t) (an `if` or `while` on a Tensor)")
        return bool(self.value)

    # Comparisons read the values and are not recorded (no gradient flows
    # through one): they give numpy bool arrays, for an `if` on a scalar or a
    # condition for mt.where. A trace refuses them, as it refuses bool(t).
    def __lt__(self, other): return _compare(self, other, "<", np.less)
    def __le__(self, other): return _compare(self, other, "<=", np.less_equal)
    def __gt__(self, other): return _compare(self, other, ">", np.greater)
    def __ge__(self, other): return _compare(self, other, ">=", np.greater_equal)
    def __eq__(self, other): return _compare(self, other, "==", np.equal)
    def __ne__(self, other): return _compare(self, other, "!=", np.not_equal)

    # == is elementwise, so identity keeps hashing: tapes and closed forms key
    # tensors by identity (dicts by id, `is`), never by ==.
    __hash__ = object.__hash__

    def numpy(self) -> np.ndarray:
        """The value as a read-only view: no copy, so it follows later in-place updates
        (an optimizer's step); ``t.numpy().copy()`` keeps a snapshot."""
        _refuse_while_tracing("t.numpy()", _LEAVES)
        view = self.value.view()
        view.flags.writeable = False
        return view

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # Explicit conversion (np.asarray(t), plotting) reads the value; it is
        # not an op, so nothing is recorded, and inside a trace it is refused.
        _refuse_while_tracing("np.asarray(t) (or np.array, or a numpy scalar type)", _LEAVES)
        if dtype is not None and dtype != self.value.dtype:
            return self.value.astype(dtype)
        return self.value.copy() if copy else self.value

    def __repr__(self) -> str:
        body = np.array2string(self.value, precision=4, threshold=20, edgeitems=2, separator=", ")
        body = body.replace("\n", "\n" + " " * 7)
        name = f"name={self.name!r}, " if self.name is not None else ""
        grad = ", grad=set" if self.grad is not None else ""
        return f"Tensor({name}shape={self.shape}, dtype={self.dtype}{grad},\n       {body})"

    def _repr_html_(self) -> str:
        """Jupyter's display: compact tables of the value and, once set, the gradient."""
        from .display import tensor_html  # only notebooks need it
        return tensor_html(self.value, self.grad, self.name)

    def __copy__(self) -> Tensor:
        _refuse_while_tracing("copy.copy(t)", _LEAVES)
        return self._copied(lambda v: v)

    def __deepcopy__(self, memo: dict) -> Tensor:
        _refuse_while_tracing("copy.deepcopy(t)", _LEAVES)
        return self._copied(lambda v: copy.deepcopy(v, memo))

    def _copied(self, copier) -> Tensor:
        new = _new(Tensor)
        for slot in Tensor.__slots__:
            if hasattr(self, slot):
                setattr(new, slot, copier(getattr(self, slot)))
        return new

    def mark_modified(self) -> None:
        """Declare that ``value`` was changed in place.

        Every tape that recorded this tensor before the change then refuses
        to answer (or to be drawn): its saved values would no longer match.
        The optimizers call this after each update.
        """
        _EDITS[0] += 1
        self._version = _EDITS[0]

    @property
    def backward(self):
        # A PyTorch or micrograd habit; a property, so hasattr() stays False.
        raise AttributeError(
            "a Tensor has no backward(): gradients come from the tape that recorded it; "
            "use tape.backward(loss) to set .grad, or tape.gradient(loss, params) to get them"
        )

    # detach() is set by operators.py: inside a trace it is the op stop_gradient.


_new = object.__new__

def holds_tensor(items: list | tuple) -> bool:
    """Whether a Tensor hides in ``items`` (or in a list or tuple inside): numpy would read
    its value, and what it makes would be a constant no gradient crosses back to it."""
    return any(holds_tensor(x) if type(x) is list or type(x) is tuple else isinstance(x, Tensor)
               for x in items)


def _shown(data: Any) -> str:
    """``data`` for an error message, cut short."""
    text = repr(data)
    return text if len(text) <= 60 else text[:57] + "..."


def mark_all_modified(tensors: Iterable[Tensor]) -> None:
    """``Tensor.mark_modified`` for several tensors at once, as an optimizer step needs."""
    _EDITS[0] += 1
    clock = _EDITS[0]
    for t in tensors:
        t._version = clock


# Why a call is refused while a trace records: it would decide a branch, or
# hand out a value the closed form would keep as it was at the first call.
_BRANCH = ("the closed form is written once per signature, so a branch on a traced value "
           "would be baked in for every later call; use compile=False (the tape records each "
           "call afresh), or pass the deciding value as a Python argument")
_LEAVES = ("what it returns leaves the tape, so the closed form would keep the first call's "
           "value for every later call; compute with microtape's ops instead "
           "(mt.stop_gradient(t) for a value that takes no gradient), or use compile=False")


_COMPARED = (_BRANCH + "; for a choice made per element, mt.where(mt.is_positive(a - b), x, y) "
             "is recorded, and computed again at every call")


def _refuse_while_tracing(what: str, why: str = _BRANCH) -> None:
    """Raise TraceError if a compile=True trace is recording in this thread or task."""
    if _tracing.get():
        raise TraceError(f"{what} was called on a Tensor while value_and_grad(..., compile=True) "
                         f"traces the function: {why}")


_COMPARABLE = (np.ndarray, np.generic, int, float, bool, list, tuple)


def _compare(t: Tensor, other: Any, symbol: str, ufunc: np.ufunc) -> Any:
    """``t symbol other`` on the values, as numpy gives it; refused while tracing."""
    if isinstance(other, Tensor):
        other = other.value
    elif not isinstance(other, _COMPARABLE):
        return NotImplemented  # None, a string: Python's own answer (== is then `is`)
    _refuse_while_tracing(f"a comparison ({symbol})", _COMPARED)
    return ufunc(t.value, other)


def wrap(value: np.ndarray) -> Tensor:
    """A Tensor around an op's output: no conversion, it is already an ndarray."""
    t = _new(Tensor)
    t.value = value
    t.grad = None
    t.name = None
    return t
