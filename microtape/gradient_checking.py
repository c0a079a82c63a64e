"""Gradient checking: the tape against central finite differences.

The CS224n-style check made a library function: perturb elements of every
input by ±eps, difference the function values, and compare with the tape's
gradient. The check runs in float64 whatever the inputs' dtype, since
finite differences in float32 measure rounding more than slope.

Each checked element costs two evaluations of the function, so an input
with more than ``max_elements`` elements is checked on a random sample of
them (the same sample for the same ``seed``): a wrong VJP is wrong almost
everywhere, and a thousand elements find it as surely as a hundred thousand.

The differences themselves are :func:`central_differences`, the one place
in the project that perturbs an element; ``gradcheck``, microtape.testing,
the training command's gradient table and the drawings' ``check=True`` all
call it, and compare with :func:`relative_error` or an element-wise bound.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np

from .errors import GradcheckError
from .tape import Tape, no_grad
from .tensor import Tensor

#: Elements checked per input by default; larger inputs are sampled.
DEFAULT_MAX_ELEMENTS = 1000
#: A check expected to take longer than this (in seconds) reports its progress on stderr.
PROGRESS_AFTER = 5.0


@dataclass
class InputCheck:
    """How one input fared: its worst element and the errors there."""

    name: str
    shape: tuple[int, ...]
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    max_abs_error: float
    max_rel_error: float
    passed: bool
    checked: int = 0            # elements compared
    total: int = 0              # elements in the input
    tolerance_used: float = 0.0  # worst |tape − numeric| / (atol + rtol·|numeric|): ≤ 1 passes


@dataclass
class GradcheckReport:
    """What ``gradcheck`` compared; truthy when every input passed."""

    inputs: list[InputCheck] = field(default_factory=list)
    eps: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-8

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.inputs)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.inputs), default=0.0)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        checked = [f"{c.checked:,} of {c.total:,}" for c in self.inputs]
        width = max([len("checked")] + [len(s) for s in checked])
        rows = [f"{'input':<12} {'shape':<14} {'checked':>{width}} {'max abs err':>12} "
                f"{'max rel err':>12} {'err/tol':>8}  ok"]
        for c, n in zip(self.inputs, checked):
            rows.append(f"{c.name:<12} {str(c.shape):<14} {n:>{width}} {c.max_abs_error:>12.3e} "
                        f"{c.max_rel_error:>12.3e} {c.tolerance_used:>8.2g}  "
                        f"{'yes' if c.passed else 'NO'}")
        rows.append(f"An element passes when |tape − numeric| <= atol + rtol·|numeric|, with "
                    f"rtol={self.rtol:g} and atol={self.atol:g};")
        rows.append(f"err/tol is the worst element's error over that bound. Central differences, "
                    f"eps={self.eps:g}.")
        return "\n".join(rows)


def gradcheck(f: Callable[..., Tensor], inputs: Sequence[Any] | Mapping[str, Any],
              eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8,
              max_elements: int | None = DEFAULT_MAX_ELEMENTS, seed: int = 0,
              progress: bool | None = None, order: int = 1) -> GradcheckReport:
    """Check ``f``'s tape gradients against central finite differences.

    ``f(*tensors)`` (or ``f(**tensors)`` when ``inputs`` is a dict) must
    return a 0-d Tensor. An element passes when
    ``|analytic − numeric| <= atol + rtol·|numeric|``. Inputs with at most
    ``max_elements`` elements are checked at every element; larger ones at
    ``max_elements`` elements drawn at random with ``seed`` (``None``
    checks everything). ``progress`` shows how far the check has got on
    stderr: ``None`` does so when it will take more than a few seconds.
    ``order=2`` also checks second derivatives: the tape's Hessian-vector
    products along random directions v against central differences of its
    gradient along v (``second_order.py``).

    Raises :class:`GradcheckError` naming the first failing input, its worst
    element, both values and the tolerance; returns a
    :class:`GradcheckReport` otherwise.
    """
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"gradcheck: order must be 1 (gradients) or 2 (also Hessian-vector "
                         f"products), got {order!r}")
    names, arrays, call = _inputs(f, inputs)
    analytic = _tape_gradients("gradcheck", call, arrays, names)

    def value(xs: list[np.ndarray]) -> float:
        with no_grad():  # the cheap mode, even when called inside a tape
            return float(call([Tensor(x) for x in xs]).value)

    report = compare_with_differences("gradcheck", value, names, arrays, analytic, eps=eps,
                                      rtol=rtol, atol=atol, max_elements=max_elements, seed=seed,
                                      progress=progress)
    if order == 2:
        from .second_order import check_second_order  # it builds on this module's comparisons
        check_second_order(call, names, arrays, report, seed=seed)
    return report


def _inputs(f: Callable[..., Tensor], inputs: Any) -> tuple[list[str], list[np.ndarray],
                                                             Callable[[list[Tensor]], Tensor]]:
    """The inputs' names, their float64 copies, and ``f`` as a function of a list."""
    if isinstance(inputs, Mapping):
        names = [str(k) for k in inputs]
        arrays = [_as_float64(v) for v in inputs.values()]
        return names, arrays, lambda xs: f(**dict(zip(inputs.keys(), xs)))
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    names = [getattr(v, "name", None) or f"input {i}" for i, v in enumerate(inputs)]
    return names, [_as_float64(v) for v in inputs], lambda xs: f(*xs)


def _tape_gradients(kind: str, call: Callable[[list[Tensor]], Tensor],
                    arrays: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
    """The tape's gradients of the scalar ``call(tensors)`` at ``arrays``."""
    tensors = [Tensor(a, name=n) for a, n in zip(arrays, names)]
    with Tape(persistent=False) as tape:  # asked once, never shown
        out = call(tensors)
    if not isinstance(out, Tensor) or out.size != 1:
        raise TypeError(f"{kind}: f must return a Tensor with a single element (the loss)")
    return tape.gradient(out, tensors)


def compare_with_differences(kind: str, value: Callable[[list[np.ndarray]], float],
                             names: Sequence[str], arrays: list[np.ndarray],
                             analytic: Sequence[np.ndarray], *, eps: float, rtol: float,
                             atol: float, max_elements: int | None, seed: int,
                             progress: bool | None) -> GradcheckReport:
    """The tape's ``analytic`` gradients against central differences of ``value(arrays)``.

    ``arrays`` are float64 and are perturbed in place, one element at a
    time, and put back exactly. Raises :class:`GradcheckError` (its message
    from :func:`mismatch_message`) at the first input that fails.
    """
    if max_elements is not None and (not isinstance(max_elements, (int, np.integer))
                                     or max_elements < 1):
        raise ValueError(f"{kind}: max_elements must be a positive int or None, "
                         f"got {max_elements!r}")
    rng = np.random.default_rng(seed)
    picks = [_sample(a.size, max_elements, rng) for a in arrays]
    meter = _Progress(kind, [(n, len(p)) for n, p in zip(names, picks)], progress)
    report = GradcheckReport(eps=eps, rtol=rtol, atol=atol)
    for i, (name, a) in enumerate(zip(names, arrays)):
        numeric = central_differences(lambda: value(arrays), a, picks[i], eps,
                                      each=lambda j, name=name: meter.tick(name, j))
        got = np.asarray(analytic[i], dtype=np.float64).reshape(-1)[picks[i]]
        check = compare_elements(name, a.shape, picks[i], got, numeric, rtol, atol)
        report.inputs.append(check)
        if not check.passed:
            meter.close()
            raise GradcheckError(mismatch_message(
                f"{kind}: the gradient of {name} disagrees with finite differences", check,
                expected="numeric", rtol=rtol, atol=atol,
                extra=f"central differences with eps={eps:g}"))
    meter.close()
    return report


def central_differences(value: Callable[[], float], array: np.ndarray, picks: Sequence[int],
                        eps: float = 1e-6, *,
                        each: Callable[[int], None] | None = None) -> np.ndarray:
    """The slopes (f(a + eps·e_k) − f(a − eps·e_k)) / 2eps at the flat indices ``picks``.

    ``value()`` computes f from ``array``, which is perturbed in place, one
    element at a time, and each element put back exactly (so ``array`` must
    be writable and C-contiguous: ``value`` reads the perturbed memory).
    ``each(j)`` is called after the j-th slope (counting from 1), for
    progress. ``value()`` may return an array (a gradient, for second
    derivatives): each of its elements is differenced, and the answer has
    one row per pick. The error is O(eps²) truncation plus O(1e-16 / eps)
    cancellation: about 1e-10 relative in float64 at the default eps.
    """
    if not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError("central_differences: array must be writable and C-contiguous, since "
                         "it is perturbed in place; pass np.array(a, dtype=np.float64)")
    flat = array.reshape(-1)  # a view: writing it perturbs array, which value() reads
    slopes = []
    for j, k in enumerate(picks):
        original = flat[k]
        flat[k] = original + eps
        f_plus = value()
        flat[k] = original - eps
        f_minus = value()
        flat[k] = original
        slopes.append((np.asarray(f_plus) - np.asarray(f_minus)) / (2 * eps))
        if each is not None:
            each(j + 1)
    return np.array(slopes, dtype=np.float64) if slopes else np.empty(0)


def relative_error(a: Any, b: Any) -> float:
    """max|a − b| over the larger of the two arrays' largest magnitudes (0 for empty or all-zero).

    Scaled by the whole gradient, not element by element: an element whose
    true gradient is ~1e-12 would otherwise show finite differences' 1e-11
    noise as a 10x error. This is the number the training command's table
    and the drawings' ``check=True`` report.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else 0.0


def mismatch_message(headline: str, c: InputCheck, expected: str, rtol: float, atol: float,
                     extra: str = "") -> str:
    """One readable block: the input, its worst element, both values, the error and the bound."""
    sampled = "" if c.checked == c.total else f" (a random sample of {c.checked:,} of {c.total:,})"
    lines = [
        headline,
        f"  input:           {c.name}, shape {c.shape}",
        f"  worst element:   index {c.worst_index}{sampled}",
        f"  tape:            {c.analytic:.10g}",
        f"  {expected + ':':<16} {c.numeric:.10g}",
        f"  relative error:  {c.max_rel_error:.3g} (|tape − {expected}| / the larger of the two)",
        f"  tolerance:       |tape − {expected}| <= atol + rtol·|{expected}|, rtol={rtol:g}, "
        f"atol={atol:g}" + (f"; {extra}" if extra else ""),
    ]
    return "\n".join(lines)


def compare_elements(name: str, shape: tuple[int, ...], picks: np.ndarray,
                     analytic: np.ndarray, numeric: np.ndarray, rtol: float,
                     atol: float) -> InputCheck:
    """Compare the flat values at ``picks``; the worst is the element furthest past its bound."""
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    excess = err - bound  # > 0 where an element fails
    larger = np.maximum(np.abs(analytic), np.abs(numeric))
    rel = np.zeros_like(err)
    np.divide(err, larger, out=rel, where=err > 0)
    used = np.full_like(err, np.inf)
    np.divide(err, bound, out=used, where=bound > 0)
    used[err == 0] = 0.0
    w = int(np.argmax(excess)) if excess.size else 0
    worst = np.unravel_index(picks[w], shape) if excess.size else ()
    return InputCheck(
        name=name, shape=tuple(shape), worst_index=tuple(int(i) for i in worst),
        analytic=float(analytic[w]) if analytic.size else 0.0,
        numeric=float(numeric[w]) if numeric.size else 0.0,
        max_abs_error=float(err.max(initial=0.0)), max_rel_error=float(rel.max(initial=0.0)),
        passed=bool((excess <= 0).all()), checked=int(len(picks)),
        total=int(np.prod(shape, dtype=np.int64)), tolerance_used=float(used.max(initial=0.0)),
    )


def _sample(size: int, max_elements: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or ``max_elements`` distinct ones in order."""
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, size=int(max_elements), replace=False))


class _Progress:
    """Elements checked so far, on stderr, once the first evaluations say it will take a while."""

    def __init__(self, kind: str, plan: list[tuple[str, int]], show: bool | None,
                 stream: TextIO | None = None) -> None:
        self.kind, self.plan, self.show = kind, dict(plan), show
        self.total = sum(n for _, n in plan)
        self.done = 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = -1.0
        self.shown = False

    def tick(self, name: str, k: int) -> None:
        self.done += 1
        if self.show is False:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        if self.show is None:
            # Decide once, after a second's work (the first evaluations run slow, warming
            # caches): show when the whole check, at the rate so far, takes longer.
            if elapsed < min(1.0, PROGRESS_AFTER / 3):
                return
            self.show = elapsed / self.done * self.total > PROGRESS_AFTER
            if not self.show:
                return
        if self.shown and now - self.last < 1.0 and self.done < self.total:
            return
        left = elapsed / self.done * (self.total - self.done)
        end = "\r" if self.stream.isatty() else "\n"
        self.stream.write(f"{self.kind}: {name} {k:,}/{self.plan[name]:,} elements, "
                          f"{self.done:,}/{self.total:,} in all, about {left:.0f} s left{end}")
        self.stream.flush()
        self.shown, self.last = True, now

    def close(self) -> None:
        if self.shown:
            end = "\n" if self.stream.isatty() else ""
            self.stream.write(f"{end}{self.kind}: {self.done:,} elements checked in "
                              f"{time.perf_counter() - self.start:.1f} s\n")
            self.stream.flush()
            self.shown = False


def _as_float64(v: Any) -> np.ndarray:
    return np.array(v.value if isinstance(v, Tensor) else v, dtype=np.float64)
