"""The two-layer network's gradients by hand: models/DERIVATION.md's batched formulas in numpy.

No tape, no Tensor: this is the reference the tape is checked against, and
a page to read next to ``TwoLayerNet.forward``. For N examples stacked as the
rows of X and one-hot labels Y, with the loss summed over the batch::

    delta2 = Yhat - Y                      (N×C)
    dW2    = H^T delta2                    (hidden×C)
    db2    = column sums of delta2         (C,)
    delta1 = (delta2 W2^T) ∘ H ∘ (1 - H)   (N×hidden)
    dW1    = X^T delta1                    (in×hidden)
    db1    = column sums of delta1         (hidden,)
    dX     = delta1 W1^T                   (N×in)

and every gradient divided by N when the loss is averaged.

``forward``, ``loss`` and ``backward`` are those formulas and nothing else,
one a line, each making its own temporaries, on arrays the caller has
checked: they are also the benchmark's numpy baseline
(tests/benchmarks/textbook.py), a step as a textbook writes it, so keep
them plain. ``closed_form_gradients`` checks its arguments, then calls them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .labels import check_labels

__all__ = ["closed_form_gradients", "forward", "loss", "backward"]


def closed_form_gradients(params: Mapping[str, Any], x: Any, labels: Any,
                          reduction: str = "mean") -> dict[str, np.ndarray]:
    """dJ/dW1, dJ/db1, dJ/dW2, dJ/db2 and dJ/dx of the derivation's network.

    ``params`` maps W1, b1, W2, b2 to arrays or Tensors. ``x`` is a batch
    (N, n_in) or one example (n_in,). ``labels`` are class indices (shape
    (N,), or an int for one example) or label rows summing to 1 (N, C).
    ``reduction`` is "mean" or "sum", as for ``mt.softmax_cross_entropy``.
    Returns a dict with keys W1, b1, W2, b2 and x, each the shape of its
    variable.
    """
    W1, b1, W2, b2 = (_value(params, name) for name in _NAMES)
    extra = [k for k in params if k not in _NAMES]
    if extra:  # a deeper MLP's W3, b3: the gradients would be a two-layer net's, silently
        raise KeyError(f"closed_form_gradients: params has {extra} beyond W1, b1, W2 and b2; "
                       f"these formulas are the two-layer sigmoid network's (TwoLayerNet), so for "
                       f"another network ask its tape: tape.gradient(net.loss(x, labels), net.params)")
    if not (W1.ndim == W2.ndim == 2 and b1.shape == (W1.shape[1],) == (W2.shape[0],)
            and b2.shape == (W2.shape[1],)):
        raise ValueError(f"closed_form_gradients: W1 {W1.shape}, b1 {b1.shape}, W2 {W2.shape} and "
                         f"b2 {b2.shape} do not fit together as (n_in, H), (H,), (H, C), (C,)")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"closed_form_gradients: reduction must be 'mean' or 'sum', not {reduction!r}")
    x = np.asarray(x, dtype=W1.dtype)
    X = np.atleast_2d(x)        # one example is a batch of one row
    N, C = X.shape[0], W2.shape[1]
    if x.ndim not in (1, 2) or X.shape[1] != W1.shape[0]:
        raise ValueError(f"closed_form_gradients: x has shape {x.shape}, but W1 {W1.shape} expects "
                         f"{W1.shape[0]} features per example")
    Y = _one_hot(labels, N, C, single=x.ndim == 1).astype(X.dtype, copy=False)

    # exp(−t) overflows to inf for very negative t, and 1 / (1 + inf) is the right 0.
    with np.errstate(over="ignore"):
        H, Yhat = forward(X, W1, b1, W2, b2)
    grads, delta1 = backward(X, Y, W2, H, Yhat)
    grads["x"] = (delta1 @ W1.T).reshape(x.shape)  # dX = delta1 W1ᵀ
    if reduction == "mean":         # averaging divides every gradient by N
        for g in grads.values():
            g /= N
    return grads


def forward(X: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
            b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H and Ŷ for the rows of X: what the loss and the backward pass need."""
    T = X @ W1 + b1                                  # t = x W1 + b1
    H = 1 / (1 + np.exp(-T))                         # h = sigmoid(t)
    V = H @ W2 + b2                                  # v = h W2 + b2
    E = np.exp(V - V.max(axis=1, keepdims=True))     # shifted so exp cannot overflow
    Yhat = E / E.sum(axis=1, keepdims=True)          # ŷ = softmax(v)
    return H, Yhat


def loss(Y: np.ndarray, Yhat: np.ndarray) -> np.floating:
    """J = Σ CE(y, ŷ) over the batch: −Σ Y ∘ log Ŷ."""
    return -np.sum(Y * np.log(Yhat))


def backward(X: np.ndarray, Y: np.ndarray, W2: np.ndarray, H: np.ndarray,
             Yhat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The four parameter gradients of the summed loss, and delta1 (for dX, if wanted)."""
    delta2 = Yhat - Y                                # delta2 = Ŷ − Y
    dW2 = H.T @ delta2                               # dW2 = Hᵀ delta2
    db2 = delta2.sum(axis=0)                         # db2 = column sums of delta2
    delta1 = (delta2 @ W2.T) * H * (1 - H)           # delta1 = (delta2 W2ᵀ) ∘ H ∘ (1 − H)
    dW1 = X.T @ delta1                               # dW1 = Xᵀ delta1
    db1 = delta1.sum(axis=0)                         # db1 = column sums of delta1
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}, delta1


_NAMES = ("W1", "b1", "W2", "b2")


def _value(params: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        p = params[name]
    except KeyError:
        raise KeyError(f"closed_form_gradients: params has no {name!r}; it needs W1, b1, W2 "
                       f"and b2 (got {list(params)})") from None
    p = np.asarray(getattr(p, "value", p))
    return p if p.dtype.kind == "f" else p.astype(np.float64)


def _one_hot(labels: Any, N: int, C: int, single: bool) -> np.ndarray:
    """Label rows Y (N×C): class indices become one-hot rows; rows pass through.

    The labels get the loss's own check (``models.labels``), so the closed
    form accepts exactly what ``mt.softmax_cross_entropy`` does.
    """
    labels = check_labels(labels, (C,) if single else (N, C), "closed_form_gradients")
    if labels.dtype.kind in "iu":
        Y = np.zeros((N, C))
        Y[np.arange(N), labels.reshape(N)] = 1.0
        return Y
    return labels.reshape(N, C)
