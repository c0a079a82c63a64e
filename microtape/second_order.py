"""Second derivatives checked: the tape's Hessian-vector products against differences of its gradient.

``gradcheck(..., order=2)`` runs this after the first-order check has passed, so
the gradient it differences is already known to be right. Along a random
direction v, (∇f(x + eps·v) − ∇f(x − eps·v)) / 2eps approximates H·v for every
element at once: two gradients per direction, whatever the inputs' size, and the
same ``central_differences`` that checks the gradient itself, moving x along v.
A VJP whose first derivative is right but whose own derivative is wrong (a saved
intermediate frozen as a constant, say) passes the first check and fails here.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .derivatives import hvp
from .errors import GradcheckError
from .gradient_checking import (GradcheckReport, _tape_gradients, central_differences,
                                compare_elements, mismatch_message)
from .tensor import Tensor

#: Random directions v along which H·v is checked.
DIRECTIONS = 2


def check_second_order(call: Callable[[list[Tensor]], Tensor], names: Sequence[str],
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
