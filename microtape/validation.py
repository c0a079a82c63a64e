"""What is checked before anything computes: label arrays, settings such as a learning
rate, and hints for shapes numpy rejects.

Kept apart from ``ops.py`` so that each op there reads as its maths. A hint
(``explain=`` of ``@primitive``) turns the input shapes into the end of the
ShapeError that ``Primitive.__call__`` raises when numpy refuses them; the
label check raises ShapeError or InputError naming softmax_cross_entropy.
"""

from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from .errors import InputError, ShapeError


def broadcast_hint(*shapes) -> str:
    """Which axis breaks numpy's rule: shapes align from the right, each pair equal or 1.

    For three operands (where, clip) the first pair that breaks it is named.
    """
    if len(shapes) != 2:
        hints = (broadcast_hint(a, b) for a, b in itertools.combinations(shapes, 2))
        return next((hint for hint in hints if hint), "")
    a_shape, b_shape = shapes
    for k in range(1, min(len(a_shape), len(b_shape)) + 1):
        m, n = a_shape[-k], b_shape[-k]
        if m != n and m != 1 and n != 1:
            hint = (f"; axis {-k} has {m} against {n}, but numpy lines shapes up from the last "
                    f"axis and each pair must be equal or 1")
            if len(a_shape) == len(b_shape) == 2 and a_shape == b_shape[::-1]:
                hint += "; did you mean the transpose of one operand?"
            elif len(b_shape) == 1 and len(a_shape) >= 2 and a_shape[-2] == n:
                hint += f"; for one value per row, give the second operand shape ({n}, 1)"
            return hint
    return ""


def matmul_hint(a_shape, b_shape) -> str:
    if len(a_shape) >= 1 and len(b_shape) >= 2 and a_shape[-1] == b_shape[-1]:
        return ("; the inner dimensions differ "
                f"({a_shape[-1]} vs {b_shape[-2]}): did you mean the transpose of the second operand?")
    if len(a_shape) >= 2 and len(b_shape) >= 1 and a_shape[-2] == b_shape[0]:
        return ("; the inner dimensions differ "
                f"({a_shape[-1]} vs {b_shape[0]}): did you mean the transpose of the first operand?")
    if len(a_shape) >= 1 and len(b_shape) >= 1:
        inner_b = b_shape[-2] if len(b_shape) >= 2 else b_shape[0]
        return f"; the inner dimensions differ ({a_shape[-1]} vs {inner_b})"
    return "; matmul needs arrays of at least one dimension"


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED_MAX = {1: 2**7 - 1, 2: 2**15 - 1, 4: 2**31 - 1, 8: 2**63 - 1}


def check_labels(labels, shape: tuple[int, ...]) -> np.ndarray:
    """Class indices of shape ``shape[:-1]``, or label rows of ``shape`` summing to 1."""
    labels = np.asarray(labels)
    kind = labels.dtype.kind
    if kind not in "iu":
        return _check_label_rows(labels, shape)
    n_classes = shape[-1]
    if labels.shape != shape[:-1]:
        rows = (" (integer label rows of the logits' shape, one-hot say, are read as rows once "
                "they are floats: labels.astype(float), or give labels.argmax(-1))"
                if labels.shape == shape else "")
        raise ShapeError(
            f"softmax_cross_entropy: class-index labels must have shape {shape[:-1]} for "
            f"logits of shape {shape}, got {labels.shape}{rows}"
        )
    # One look at the largest checks both ends: read as unsigned, a negative
    # index is huge (at least 2^(bits−1), so only while there are fewer
    # classes). argmax finds it in a third of the time of .max() (a ufunc
    # reduction), which every training step pays.
    unsigned = labels.view(_UNSIGNED[labels.itemsize])
    if labels.size and (
            unsigned.item(unsigned.argmax()) >= n_classes
            or kind == "i" and n_classes > _SIGNED_MAX[labels.itemsize]
            and labels.min() < 0):
        bad = labels[(labels < 0) | (labels >= n_classes)].ravel()[0]
        raise InputError(
            f"softmax_cross_entropy: class index {bad} is out of range for {n_classes} "
            f"classes (valid: 0 to {n_classes - 1})"
        )
    if kind == "u" and labels.itemsize == 8:
        labels = labels.astype(np.intp)  # in range, so exact; uint64 + int64 would be float
    return labels


def _check_label_rows(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if labels.dtype.kind not in "fb":
        raise InputError(f"softmax_cross_entropy: labels must be class indices or rows of "
                         f"probabilities, got dtype {labels.dtype}")
    if labels.shape != shape:
        if labels.shape == shape[:-1]:
            # The right shape for class indices: it is the dtype that is wrong.
            raise InputError(
                f"softmax_cross_entropy: labels of shape {labels.shape} are class indices only "
                f"if they are integers, but their dtype is {labels.dtype}; pass an integer array "
                f"(np.asarray(labels, dtype=int)), or label rows of the logits' shape {shape} "
                f"(labels are data: mt.Tensor turns integers into floats, so pass the array itself)")
        raise ShapeError(
            f"softmax_cross_entropy: label rows must have the logits' shape {shape}, got "
            f"{labels.shape} (or pass integer class indices of shape {shape[:-1]})"
        )
    # NaN passes every comparison, so each test is written to fail on it.
    totals = labels.sum(axis=-1, dtype=np.float64)
    if totals.size and not np.isfinite(totals).all():
        row = np.unravel_index(np.argmin(np.isfinite(totals)), totals.shape)
        raise InputError(f"softmax_cross_entropy: label row {row[0] if row else 0} holds NaN or "
                         f"inf; label rows must be probabilities")
    if labels.size and labels.min() < 0:
        raise InputError("softmax_cross_entropy: label rows must be non-negative")
    # The derivation's dCE/dθ = ŷ − y uses Σ_i y_i = 1; rows that break it
    # would silently get a wrong gradient.
    off = np.abs(totals - 1.0)
    if off.size and off.max() > (1e-6 if labels.dtype == np.float64 else 1e-4):
        row = np.unravel_index(np.argmax(off), off.shape)
        raise InputError(
            f"softmax_cross_entropy: each label row must sum to 1 (one-hot or a distribution); "
            f"row {row[0] if row else 0} sums to {float(totals[row])!r}"
        )
    return labels


def check_setting(kind: str, name: str, value: float, low: float, high: float = math.inf,
                  low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float: a finite real number within the bounds, or an error naming
    ``kind`` and ``name`` (an optimizer's learning rate, say). A bool or a string is
    refused, not read as 1 or parsed: either is a slip of the caller's."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kind}: {name} must be a real number, not {type(value).__name__} "
                        f"({value!r})")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        if high == math.inf:
            bounds = f"{'above' if low_open else 'at least'} {low}"
        else:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{kind}: {name} must be a finite number {bounds}, got {value}")
    return value


def check_count(kind: str, name: str, n: object, least: int) -> None:
    """Refuse ``n`` unless it is an int of at least ``least`` (a count: epochs, elements),
    naming ``kind`` and ``name``; a bool or a float is a slip, not a count."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{kind}: {name} must be an int, not {type(n).__name__} ({n!r})")
    if n < least:
        raise ValueError(f"{kind}: {name} must be at least {least}, got {n}")


def check_broadcast_from(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    """Refuse a ``shape`` that no broadcast to ``out_shape`` starts from (mt.unbroadcast called
    with the shapes swapped, say): its sum would fail in a reshape, or fit one by chance."""
    lead = len(out_shape) - len(shape)
    if lead < 0 or any(n != 1 and n != out_shape[lead + i] for i, n in enumerate(shape)):
        raise ShapeError(f"unbroadcast: an input of shape {tuple(shape)} cannot have been "
                         f"broadcast to G's shape {out_shape}; each of its axes must be 1 or G's")
