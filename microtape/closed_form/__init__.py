"""The tape writes its own closed form: numpy source and equations for a recorded computation.

``Tape.closed_form(target, sources)`` lowers the recorded ops the target
depends on to a small program (ir.py: statements that name what they define
and read), runs passes over it (passes.py: in-place work, freeing dead
names) and prints it twice (printing.py): ``fast_source``, what runs, and
``source``, the textbook numpy a person writes beside the derivation.
``equations`` is the backward pass in the derivation's notation
(wording.py). Names come from the tape's naming view (microtape/naming.py).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ShapeError
from ..ops import index_masks
from ..primitive import _PROMOTES_0D
from ..tape import Tape
from ..tensor import Tensor, mark_all_modified
from ..validation import check_setting
from .build import compile_function, lower
from .printing import print_equations, print_function

__all__ = ["ClosedForm", "closed_form"]


class ClosedForm:
    """A recorded computation as generated numpy code, its equations, and a callable.

    ``source`` is the textbook function, ``fast_source`` the one that runs,
    ``equations`` the backward pass (Markdown, one equation a line),
    ``inputs`` the argument names in order and ``leaves`` what each reads
    when left out (the recorded Tensor, whose current value is read, or the
    array). ``cf(**arrays)`` returns ``(value, gradients)`` shaped like the
    sources; a source the target does not depend on may be passed too (its
    gradient is zeros). ``cf.sgd_step(lr, **arrays)`` runs ``p ← p − lr·g``
    on every source in place and returns the value before the update
    (``step_source`` is its code). ``function`` and ``step_function`` are the
    generated functions, positional in ``inputs`` order, without checks.
    """

    def __init__(self, program: Any, view: Any, back: Any, args: dict, steps: bool,
                 shape: Any, sources: list) -> None:
        self.inputs: tuple[str, ...] = tuple(program.inputs)
        self.leaves: dict[str, Any] = dict(args)
        self.source: str = print_function(program, False, True, "value_and_gradients")
        self.fast_source: str = print_function(program, False, False, "value_and_gradients")
        self.function = compile_function(self.fast_source, "value_and_gradients", program.consts)
        self.step_source, self.step_function = "", None
        if steps:
            self.step_source = print_function(program, True, False, "sgd_step")
            self.step_function = compile_function(self.step_source, "sgd_step", program.consts)
        self.equations: str = print_equations(program)
        self._node_equations = back.node_equations
        self._shape = shape
        self._sources = [s for s in sources if isinstance(s, Tensor)]
        self._dtypes = (program.target.dtype, tuple(s.dtype for s in sources))
        self._traced = {n: (np.shape(_current(a)), np.asarray(_current(a)).dtype) for n, a in args.items()}
        self._unused = {view.of(s) if s in view else s.name for s in sources} - set(self.inputs)
        self._counts: dict[str, int] = {}  # each boolean index's count of True values, which
        # the shapes after it follow (closed_form() sets them)

    def __repr__(self) -> str:
        return f"<ClosedForm ({', '.join(self.inputs)}): {len(self.source.splitlines())} lines>"

    def __call__(self, /, **arrays: Any) -> tuple[np.ndarray, Any]:
        value, grads = self.function(*self._arguments(arrays))
        value, grads = self.as_traced(value, grads)
        return value, self._shaped(grads)

    def as_traced(self, value: Any, grads: tuple) -> tuple[np.ndarray, tuple]:
        """``function``'s results as arrays in the dtypes of the target and the sources."""
        target_dtype, source_dtypes = self._dtypes
        value = np.asarray(value, dtype=target_dtype)
        return value, tuple(np.asarray(g) if g.dtype == d else np.asarray(g).astype(d)
                            for g, d in zip(grads, source_dtypes))

    def sgd_step(self, lr: float, /, **arrays: Any) -> np.ndarray:
        """One SGD step in the generated code: every source ``p -= lr * dJ/dp``, in place.

        The backward pass starts from the seed ``−lr`` instead of 1; everything
        after the seed is linear in it, so each gradient arrives already
        scaled and the update is one in-place ``p += d_p`` per source.
        Sources must be arrays the computation read (parameters).
        """
        if self.step_function is None:
            raise ValueError("sgd_step: a source is computed on the tape, not a leaf array, so "
                             "there is nothing to update; pass the parameters as sources")
        lr = check_setting("sgd_step", "lr", lr, 0.0, low_open=True)
        args = self._arguments(arrays)
        try:
            return self.step_function(*args, lr)
        finally:  # tapes that recorded the sources' old values now refuse to answer
            mark_all_modified([s for s in self._sources if any(s.value is a for a in args)])

    def equation_for(self, node: Any) -> str | None:
        """The equation(s) this node's VJPs apply; None for a node the backward pass skips."""
        return self._node_equations.get(id(node))

    def _arguments(self, arrays: Mapping[str, Any]) -> list:
        unknown = set(arrays).difference(self.inputs).difference(self._unused)
        if unknown:
            raise TypeError(f"closed form: unknown argument(s) {sorted(unknown)}; it takes "
                            f"{', '.join(self.inputs)}")
        args = []
        for name in self.inputs:
            given = name in arrays
            value = _current(arrays[name] if given else self.leaves[name])
            value = value if isinstance(value, np.ndarray) else np.asarray(value)
            shape, dtype = self._traced[name]
            if value.shape != shape or value.dtype != dtype:
                what = "argument" if given else "left-out argument (the recorded value now)"
                raise ShapeError(
                    f"closed form: {what} {name!r} has shape {value.shape} and dtype "
                    f"{value.dtype}, but it was traced with shape {shape} and dtype {dtype}; "
                    f"record the computation again for new shapes")
            if name in self._counts:
                _check_count(name, value, self._counts[name], given)
            args.append(value)
        return args

    def _shaped(self, grads: tuple) -> Any:
        kind = self._shape[0]
        if kind == "one":
            return grads[0]
        if kind == "list":
            return list(grads)
        return dict(zip(self._shape[1], grads))


def _check_count(name: str, mask: np.ndarray, traced: int, given: bool) -> None:
    """Refuse a boolean index with another count of True values than it was traced with:
    the code after the index was written for the shapes that count gave."""
    count = int(np.count_nonzero(mask))
    if count != traced:
        what = "argument" if given else "left-out argument (the recorded value now)"
        raise ShapeError(
            f"closed form: {what} {name!r} is a boolean index (getitem) with {count} True "
            f"values, but it was traced with {traced}, so what it selects has another shape; "
            f"record the computation again for this mask, or use value_and_grad(..., "
            f"compile=True), which traces once per count")


def _current(x: Any) -> Any:
    return x.value if isinstance(x, Tensor) else x


def closed_form(nodes: Sequence[Any], target: Tensor, sources: Any,
                names: Mapping[str, Any] | None = None, fast_vjps: bool = True) -> ClosedForm:
    """Write the closed form of ``target`` over ``sources`` from a tape's ``nodes``.

    ``fast_vjps=False`` derives every VJP from its op's grads, without the
    hand-tuned templates, for tests that hold the two to each other.
    """
    if isinstance(sources, Tensor):
        shape, listed = ("one",), [sources]
    elif isinstance(sources, Mapping):
        shape, listed = ("dict", list(sources)), list(sources.values())
    elif isinstance(sources, (list, tuple)):
        shape, listed = ("list", len(sources)), list(sources)
    else:
        raise TypeError(f"closed_form: sources must be a Tensor, a list/tuple of Tensors or a "
                        f"dict of Tensors, not {type(sources).__name__}")
    for s in listed:
        if not isinstance(s, Tensor):
            raise TypeError(f"closed_form: every source must be a Tensor, got {type(s).__name__}")
    program, view, back, args, steps = lower(nodes, target, listed, names, fast_vjps)
    cf = ClosedForm(program, view, back, args, steps, shape, listed)
    masks = {id(m) for m in index_masks(nodes)}
    cf._counts = {n: int(np.count_nonzero(_current(a))) for n, a in args.items() if id(a) in masks}
    return cf


def _tape_closed_form(self: Tape, target: Tensor, sources: Any,
                      names: Mapping[str, Any] | None = None) -> ClosedForm:
    """The recorded computation written out as numpy code and equations.

    Returns an ``mt.ClosedForm``: ``.source`` (textbook numpy, the forward
    then the backward pass), ``.fast_source`` (what runs), ``.equations``
    (the backward pass in the derivation's notation) and a callable that
    reruns it on new arrays of the same shapes: ``value, grads = cf(x=new_x)``.
    ``names`` ({name: Tensor or array}) names what has no name of its own.
    """
    if self.spent:
        raise RuntimeError("closed_form: this tape was made with persistent=False and has "
                           "already answered, so its record is gone; record with mt.Tape()")
    return closed_form(self.nodes, target, sources, names)


# Set here, above the ops the writer reads, so that tape.py imports nothing above it.
Tape.closed_form = _tape_closed_form
