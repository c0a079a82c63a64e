"""Gradient checking: the tape against central finite differences.

The CS224n-style check made a library function: perturb every element of
every input by ±eps, difference the function values, and compare with the
tape's gradient. The check runs in float64 whatever the inputs' dtype, since
finite differences in float32 measure rounding more than slope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import GradcheckError
from .tape import Tape, no_grad
from .tensor import Tensor


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
        rows = [f"{'input':<12} {'shape':<14} {'max abs err':>12} {'max rel err':>12}  ok"]
        for c in self.inputs:
            rows.append(f"{c.name:<12} {str(c.shape):<14} {c.max_abs_error:>12.3e} "
                        f"{c.max_rel_error:>12.3e}  {'yes' if c.passed else 'NO'}")
        return "\n".join(rows)


def gradcheck(f: Callable[..., Tensor], inputs: Sequence[Any] | Mapping[str, Any],
              eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8) -> GradcheckReport:
    """Check ``f``'s tape gradients against central finite differences.

    ``f(*tensors)`` (or ``f(**tensors)`` when ``inputs`` is a dict) must
    return a 0-d Tensor. Every element of every input is checked; an element
    passes when ``|analytic − numeric| <= atol + rtol·|numeric|``. Raises
    :class:`GradcheckError` naming the first failing input; returns a
    :class:`GradcheckReport` otherwise.
    """
    if isinstance(inputs, Mapping):
        names = [str(k) for k in inputs]
        arrays = [_as_float64(v) for v in inputs.values()]
        call = lambda xs: f(**dict(zip(inputs.keys(), xs)))  # noqa: E731
    else:
        if isinstance(inputs, (Tensor, np.ndarray)):
            inputs = [inputs]
        names = [getattr(v, "name", None) or f"input {i}" for i, v in enumerate(inputs)]
        arrays = [_as_float64(v) for v in inputs]
        call = lambda xs: f(*xs)  # noqa: E731

    tensors = [Tensor(a, name=n) for a, n in zip(arrays, names)]
    with Tape(persistent=False) as tape:  # asked once, never shown
        out = call(tensors)
    if not isinstance(out, Tensor) or out.size != 1:
        raise TypeError("gradcheck: f must return a Tensor with a single element (the loss)")
    analytic = tape.gradient(out, tensors)

    def value() -> float:
        with no_grad():  # the cheap mode, even when called inside a tape
            return float(call([Tensor(x) for x in arrays]).value)

    report = GradcheckReport(eps=eps, rtol=rtol, atol=atol)
    for i, (name, a) in enumerate(zip(names, arrays)):
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            # Perturb one element in place and put it back exactly.
            original = a[idx]
            a[idx] = original + eps
            f_plus = value()
            a[idx] = original - eps
            f_minus = value()
            a[idx] = original
            numeric[idx] = (f_plus - f_minus) / (2 * eps)
        report.inputs.append(_compare(name, analytic[i], numeric, rtol, atol))
        if not report.inputs[-1].passed:
            c = report.inputs[-1]
            raise GradcheckError(
                f"gradcheck: the gradient of {name} (shape {c.shape}) disagrees with finite "
                f"differences at index {c.worst_index}: tape {c.analytic:.10g}, numeric "
                f"{c.numeric:.10g}, relative error {c.max_rel_error:.3g} "
                f"(rtol={rtol}, atol={atol}, eps={eps})"
            )
    return report


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, rtol: float, atol: float) -> InputCheck:
    err = np.abs(analytic - numeric)
    excess = err - (atol + rtol * np.abs(numeric))  # > 0 where an element fails
    # np.asarray: for 0-d inputs numpy's division returns a scalar, which cannot be assigned into.
    rel = np.asarray(err / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), np.finfo(np.float64).tiny))
    rel[err == 0] = 0.0
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else ()
    return InputCheck(
        name=name, shape=analytic.shape, worst_index=tuple(int(i) for i in worst),
        analytic=float(analytic[worst]) if analytic.size else 0.0,
        numeric=float(numeric[worst]) if numeric.size else 0.0,
        max_abs_error=float(err.max(initial=0.0)), max_rel_error=float(rel.max(initial=0.0)),
        passed=bool((excess <= 0).all()),
    )


def _as_float64(v: Any) -> np.ndarray:
    return np.array(v.value if isinstance(v, Tensor) else v, dtype=np.float64)
