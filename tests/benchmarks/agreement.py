"""Before anything is timed: every contender must compute the same step.

Two checks per contender, against the float64 closed form of models/DERIVATION.md
(``textbook.reference``):

1. its loss and four gradients at the starting parameters;
2. one ``step()`` from there lands on ``p0 − lr · g`` (so the timed code
   really updates the parameters, and with the right gradients).

Errors are relative to the size of the reference: for an array,
``max |g − g_ref| / max |g_ref|``. A contender that disagrees stops the
benchmark: timing a wrong answer measures nothing.
"""

from __future__ import annotations

import numpy as np

from . import textbook
from .problem import PARAM_NAMES, Problem

# Relative tolerances: float32 rounding over sums of up to 784 terms stays
# near 1e-6, so 1e-4 leaves room without hiding a wrong formula.
TOLERANCE = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}


class DisagreementError(AssertionError):
    """A contender's loss, gradients or update differ from the closed form."""


def relative_error(value, ref) -> float:
    """``max |value − ref| / max |ref|`` (the absolute error where ref is all zeros)."""
    value = np.asarray(value, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max(initial=0.0)
    err = np.abs(value - ref).max(initial=0.0)
    return float(err / scale) if scale > 0 else float(err)


def check(name: str, contender, problem: Problem) -> float:
    """Raise ``DisagreementError`` unless ``contender`` agrees with the closed form; return its worst error.

    ``contender`` must be freshly built from ``problem``: the check runs one
    step on it.
    """
    where = f"{name} at {problem.size} ({problem.dtype})"
    tol = TOLERANCE[problem.dtype]
    ref_loss, ref = textbook.reference(problem)

    loss, grads = contender.gradients()
    errors = {"loss": relative_error(loss, ref_loss)}
    for p in PARAM_NAMES:
        got = np.asarray(grads[p])
        if got.shape != ref[p].shape:
            raise DisagreementError(f"{where}: the gradient of {p} has shape {got.shape}, "
                                    f"the closed form's {ref[p].shape}")
        errors[f"d{p}"] = relative_error(got, ref[p])
    for what, err in errors.items():
        if not err <= tol:  # also catches NaN
            raise DisagreementError(
                f"{where}: {what} differs from the closed form of models/DERIVATION.md by a "
                f"relative {err:.3g} (tolerance {tol:g}); fix the contender before timing it")

    contender.step()
    after = contender.params()
    eps = float(np.finfo(problem.dtype).eps)
    for p in PARAM_NAMES:
        p0 = problem.params0[p].astype(np.float64)
        expected = p0 - problem.lr * ref[p]
        err = np.abs(np.asarray(after[p], dtype=np.float64) - expected).max()
        # The update is lr·g: judge it relative to that, plus the rounding of p itself.
        allowed = tol * problem.lr * np.abs(ref[p]).max() + 4 * eps * np.abs(p0).max()
        if not err <= allowed:
            raise DisagreementError(
                f"{where}: after one step, {p} is off from p0 − lr·g by {err:.3g} (allowed "
                f"{allowed:.3g}); the update is missing, wrong, or uses other gradients")
    return max(errors.values())
