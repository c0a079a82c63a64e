"""Three ways to the same gradients, side by side: the tape, the closed form, finite differences.

For the derivation's network and one batch, ``check_gradients`` computes
dJ/dW1, dJ/db1, dJ/dW2, dJ/db2 and dJ/dx by

- the tape (``tape.gradient`` of ``net.loss``),
- the closed form (``closed_form_gradients``, models/DERIVATION.md's batched formulas),
- central finite differences, (J(θ + eps) − J(θ − eps)) / 2eps per element
  (``microtape.gradient_checking.central_differences``),

and reports for each variable how far apart each pair is
(``microtape.gradient_checking.relative_error``). Everything runs in
float64, whatever the network's dtype, so the numbers measure the methods
rather than float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import microtape as mt
from microtape.gradient_checking import central_differences, relative_error

from .by_hand import closed_form_gradients
from .two_layer import TwoLayerNet

__all__ = ["check_gradients", "GradientCheck", "GradientRow"]

# Above these the row is marked as failing: the tape and the closed form do
# the same arithmetic in a different order, so they agree to rounding; finite
# differences carry O(eps²) truncation and O(1e-16 / eps) cancellation error.
EXACT_TOL = 1e-10
NUMERIC_TOL = 1e-5


@dataclass
class GradientRow:
    """One variable's gradient by the three methods, compared pairwise."""

    name: str
    shape: tuple[int, ...]
    tape_vs_closed: float
    tape_vs_numeric: float
    closed_vs_numeric: float
    checked: int  # elements compared with finite differences

    @property
    def passed(self) -> bool:
        return (self.tape_vs_closed <= EXACT_TOL and self.tape_vs_numeric <= NUMERIC_TOL
                and self.closed_vs_numeric <= NUMERIC_TOL)


@dataclass
class GradientCheck:
    """The rows for W1, b1, W2, b2 and x; prints as a table."""

    rows: list[GradientRow] = field(default_factory=list)
    batch_size: int = 0
    eps: float = 1e-6

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def __str__(self) -> str:
        lines = [
            f"gradient check on one batch of {self.batch_size} examples (float64, eps={self.eps:g});",
            "relative error of a against b = max|a - b| / max(max|a|, max|b|)",
            f"{'':<4} {'shape':<10} {'tape vs closed':>15} {'tape vs finite':>15} "
            f"{'closed vs finite':>17} {'elements':>11}  ok",
        ]
        for r in self.rows:
            size = int(np.prod(r.shape))
            lines.append(
                f"{r.name:<4} {str(r.shape):<10} {r.tape_vs_closed:>15.1e} {r.tape_vs_numeric:>15.1e} "
                f"{r.closed_vs_numeric:>17.1e} {f'{r.checked}/{size}':>11}  {'yes' if r.passed else 'NO'}"
            )
        lines.append(f"ok: tape vs closed <= {EXACT_TOL:g} (the same arithmetic in another order) "
                     f"and each vs finite <= {NUMERIC_TOL:g} (what differences can resolve)")
        return "\n".join(lines)

    def summary(self) -> str:
        """The table's verdict in one line: the worst of each comparison, against its bound."""
        names = ", ".join(r.name for r in self.rows)
        closed = max((r.tape_vs_closed for r in self.rows), default=0.0)
        finite = max((max(r.tape_vs_numeric, r.closed_vs_numeric) for r in self.rows), default=0.0)
        verdict = "passed" if self.passed else "FAILED"
        return (f"gradient check {verdict} on {names}: worst relative error tape vs closed form "
                f"{closed:.1e} (limit {EXACT_TOL:g}), vs finite differences {finite:.1e} "
                f"(limit {NUMERIC_TOL:g})")


def check_gradients(net: TwoLayerNet, x: Any, labels: Any, reduction: str = "mean",
                    eps: float = 1e-6, max_elements: int = 5000, seed: int = 0) -> GradientCheck:
    """Compare the tape, the closed form and finite differences on one batch.

    Finite differences cost two forward passes per element, so a variable
    with more than ``max_elements`` elements is checked at that many
    positions drawn with ``seed``; the other two methods are compared
    everywhere.
    """
    if not isinstance(net, TwoLayerNet):
        raise TypeError(f"check_gradients: the closed form covers the derivation's network, a "
                        f"TwoLayerNet; got {type(net).__name__}")
    x = np.array(net._input(x), dtype=np.float64)
    values = {name: p.value.astype(np.float64) for name, p in net.params.items()}
    values["x"] = x

    def loss(variables: dict) -> mt.Tensor:
        return mt.softmax_cross_entropy(net.forward(variables["x"], variables), labels,
                                        reduction=reduction)

    tensors = {name: mt.Tensor(v, name=name) for name, v in values.items()}
    with mt.Tape() as tape:
        J = loss(tensors)
    by_tape = tape.gradient(J, tensors)
    by_formula = closed_form_gradients({name: values[name] for name in net.params}, x, labels,
                                       reduction=reduction)

    result = GradientCheck(batch_size=x.shape[0] if x.ndim == 2 else 1, eps=eps)
    result.rows = _rows(lambda: float(loss(values).value), values, by_tape, by_formula,
                        eps, max_elements, np.random.default_rng(seed))
    return result


def _rows(J: Callable[[], float], values: dict[str, np.ndarray], by_tape: dict, by_formula: dict,
          eps: float, max_elements: int, rng: np.random.Generator) -> list[GradientRow]:
    """Each variable's three gradients compared; ``J()`` reads ``values``, which are perturbed."""
    rows = []
    for name, v in values.items():
        picks = np.arange(v.size)
        if v.size > max_elements:
            picks = np.sort(rng.choice(v.size, max_elements, replace=False))
        # No tape is active here: each evaluation records nothing.
        numeric = central_differences(J, v, picks, eps)
        tape_at, formula_at = by_tape[name].reshape(-1)[picks], by_formula[name].reshape(-1)[picks]
        rows.append(GradientRow(
            name=name, shape=v.shape,
            tape_vs_closed=relative_error(by_tape[name], by_formula[name]),
            tape_vs_numeric=relative_error(tape_at, numeric),
            closed_vs_numeric=relative_error(formula_at, numeric),
            checked=len(picks),
        ))
    return rows
