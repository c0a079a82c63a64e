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
call it, and compare with :func:`relative_error` or an element-wise bound
(``gradcheck_report.py``, imported here too).

``order=2`` checks second derivatives the same way, a direction at a time:
along a random v, (∇f(x + eps·v) − ∇f(x − eps·v)) / 2eps approximates H·v at
every element at once, two gradients per direction whatever the inputs' size.
A VJP whose first derivative is right but whose own derivative is wrong (a
saved intermediate frozen as a constant, say) passes the first check and
fails this one.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np

from .derivatives import hvp
from .errors import GradcheckError
from .gradcheck_report import (GradcheckReport, InputCheck, compare_elements,  # noqa: F401
                               mismatch_message, relative_error)
from .tape import Tape, no_grad
from .tensor import Tensor
from .validation import check_count, check_setting

#: Elements checked per input by default; larger inputs are sampled.
DEFAULT_MAX_ELEMENTS = 1000
#: Random directions v along which gradcheck(order=2) checks H·v.
DIRECTIONS = 2
#: A check expected to take longer than this (in seconds) reports its progress on stderr.
PROGRESS_AFTER = 5.0


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
    gradient along v (``_check_second_order`` below).

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
            return call([Tensor(x) for x in xs]).value.item()  # one element, of any shape

    report = compare_with_differences("gradcheck", value, names, arrays, analytic, eps=eps,
                                      rtol=rtol, atol=atol, max_elements=max_elements, seed=seed,
                                      progress=progress)
    if order == 2:
        _check_second_order(call, names, arrays, report, seed=seed)
    return report


def _inputs(f: Callable[..., Tensor], inputs: Any) -> tuple[list[str], list[np.ndarray],
                                                             Callable[[list[Tensor]], Tensor]]:
    """The inputs' names, their float64 copies, and ``f`` as a function of a list."""
    if isinstance(inputs, Mapping):
        names = [str(k) for k in inputs]
        arrays = [float64_copy(v) for v in inputs.values()]
        return names, arrays, lambda xs: f(**dict(zip(inputs.keys(), xs)))
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    names = [getattr(v, "name", None) or f"input {i}" for i, v in enumerate(inputs)]
    return names, [float64_copy(v) for v in inputs], lambda xs: f(*xs)


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
    eps = check_setting(kind, "eps", eps, 0.0, low_open=True)  # 0: every difference is 0 / 0
    rtol, atol = check_setting(kind, "rtol", rtol, 0.0), check_setting(kind, "atol", atol, 0.0)
    if max_elements is not None:
        check_count(kind, "max_elements (or None, for all)", max_elements, 1)
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
                         "it is perturbed in place; pass np.array(a, dtype=np.float64, order='C')")
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


def _check_second_order(call: Callable[[list[Tensor]], Tensor], names: Sequence[str],
                       arrays: list[np.ndarray], report: GradcheckReport, seed: int = 0) -> None:
    """Append one check per input and direction to ``report``; raise at the first that fails.

    ``call(tensors)`` is the scalar function and ``arrays`` its float64 inputs.
    """
    rng = np.random.default_rng([seed, 2])  # not the first-order check's sample
    for d in range(1, DIRECTIONS + 1):
        vs = [rng.standard_normal(a.shape) for a in arrays]
        _, products = hvp(lambda *xs: call(list(xs)), [Tensor(a) for a in arrays], vs)
        numeric = _differences(call, names, arrays, vs, report.eps)
        for name, a, got, want in zip(names, arrays, products, numeric):
            check = compare_elements(f"{name} H·v {d}", a.shape, np.arange(a.size),
                                     np.asarray(got, np.float64).reshape(-1), want,
                                     report.rtol, report.atol)
            report.inputs.append(check)
            if not check.passed:
                raise GradcheckError(mismatch_message(
                    f"gradcheck: the second derivative of {name} disagrees with differences of "
                    f"the gradient (H·v along random direction {d} of {DIRECTIONS})", check,
                    expected="numeric", rtol=report.rtol, atol=report.atol,
                    extra=f"central differences of the gradient along v, eps={report.eps:g}"))


def _differences(call: Callable[[list[Tensor]], Tensor], names: Sequence[str],
                 arrays: list[np.ndarray], vs: list[np.ndarray], eps: float) -> list[np.ndarray]:
    """(∇f(x + eps·v) − ∇f(x − eps·v)) / 2eps, flat, one array per input."""
    t = np.zeros(1)  # the step along v, which central_differences perturbs

    def gradient() -> np.ndarray:
        moved = [a + t[0] * v for a, v in zip(arrays, vs)]
        grads = _tape_gradients("gradcheck", call, moved, list(names))
        return np.concatenate([np.asarray(g, np.float64).reshape(-1) for g in grads])

    flat = central_differences(gradient, t, [0], eps)[0]
    return np.split(flat, np.cumsum([a.size for a in arrays])[:-1])


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


def float64_copy(v: Any) -> np.ndarray:
    # A copy in C order whatever the input's layout (a transpose, a broadcast view): the
    # differences perturb it in place through a flat view of its memory.
    return np.array(v.value if isinstance(v, Tensor) else v, dtype=np.float64, order="C")
