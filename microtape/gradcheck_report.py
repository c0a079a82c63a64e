"""What a gradient check found: one row per input, the report, and the bound they are held to.

``gradcheck``, microtape.testing, the training command's gradient table and
the drawings' ``check=True`` compare the tape's numbers with central
differences (``gradient_checking.central_differences``) by
:func:`relative_error` or the element-wise bound of :func:`compare_elements`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
        return float(np.max([c.max_rel_error for c in self.inputs], initial=0.0))  # NaN wins

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        # No relative error column: near-zero gradients make it large for elements that pass
        # (7e-02 beside "passed: yes" reads as a failure); the verdict is error / tolerance.
        checked = [f"{c.checked:,} of {c.total:,}" for c in self.inputs]
        width = max([len("checked")] + [len(s) for s in checked])
        name = max([12] + [len(c.name) for c in self.inputs])
        rows = [f"{'input':<{name}} {'shape':<14} {'checked':>{width}} "
                f"{'worst |tape − numeric|':>22} {'worst |error| / tolerance':>25}  passed"]
        for c, n in zip(self.inputs, checked):
            rows.append(f"{c.name:<{name}} {str(c.shape):<14} {n:>{width}} "
                        f"{c.max_abs_error:>22.3e} {c.tolerance_used:>25.2g}  "
                        f"{'yes' if c.passed else 'NO'}")
        rows.append(f"An element passes when |tape − numeric| <= tolerance = atol + rtol·|numeric|, "
                    f"with rtol={self.rtol:g} and atol={self.atol:g}:")
        rows.append(f"a worst |error| / tolerance of at most 1 passes. Central differences, "
                    f"eps={self.eps:g}.")
        if any(" H·v " in c.name for c in self.inputs):
            rows.append("A row 'H·v k' is the tape's Hessian-vector product along random "
                        "direction k against central differences of the gradient along it.")
        return "\n".join(rows)


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
    worst = np.abs(a - b).max()
    if np.isnan(worst):
        return math.nan  # a NaN on either side is no agreement, never "0"
    scale = max(np.abs(a).max(), np.abs(b).max())
    return float(worst / scale) if scale > 0 else 0.0


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
    if math.isnan(c.analytic) or math.isnan(c.numeric):
        lines.append("  NaN:             a NaN is never within the tolerance; the function or its "
                     "gradient is NaN at this point or next to it")
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
    nan = np.isnan(err)  # a NaN on either side: reported as NaN, never as a small error
    rel[nan] = used[nan] = np.nan
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
