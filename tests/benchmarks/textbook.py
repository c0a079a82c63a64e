"""The baseline: models/DERIVATION.md's batched formulas in plain numpy, as a textbook writes them.

Deliberately unoptimised: every line is one formula and makes its own
temporaries. This is what the tape is measured against, and (in float64)
the reference every contender's gradients must agree with.
"""

from __future__ import annotations

import numpy as np


def forward(x, y, W1, b1, W2, b2):
    """The loss J and what the backward pass needs (h, ŷ)."""
    t = x @ W1 + b1                                  # t = x W1 + b1
    h = 1 / (1 + np.exp(-t))                         # h = sigmoid(t)
    v = h @ W2 + b2                                  # v = h W2 + b2
    e = np.exp(v - v.max(axis=1, keepdims=True))     # shifted so exp cannot overflow
    yhat = e / e.sum(axis=1, keepdims=True)          # ŷ = softmax(v)
    loss = -np.sum(y * np.log(yhat))                 # J = Σ CE(y, ŷ) over the batch
    return loss, h, yhat


def backward(x, y, W2, h, yhat):
    """The four parameter gradients of the summed loss (not dJ/dx)."""
    delta2 = yhat - y                                # delta2 = Ŷ − Y
    dW2 = h.T @ delta2                               # dW2 = Hᵀ delta2
    db2 = delta2.sum(axis=0)                         # db2 = column sums of delta2
    delta1 = (delta2 @ W2.T) * h * (1 - h)           # delta1 = (delta2 W2ᵀ) ∘ H ∘ (1 − H)
    dW1 = x.T @ delta1                               # dW1 = Xᵀ delta1
    db1 = delta1.sum(axis=0)                         # db1 = column sums of delta1
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def loss_and_gradients(x, y, params):
    """J and its gradients with respect to W1, b1, W2, b2."""
    loss, h, yhat = forward(x, y, params["W1"], params["b1"], params["W2"], params["b2"])
    return loss, backward(x, y, params["W2"], h, yhat)


def reference(problem) -> tuple[float, dict[str, np.ndarray]]:
    """The closed form in float64 from the problem's own values (float32 ones upcast)."""
    def f64(a):
        return np.asarray(a, dtype=np.float64)

    params = {name: f64(p) for name, p in problem.params0.items()}
    loss, grads = loss_and_gradients(f64(problem.x), f64(problem.onehot), params)
    return float(loss), grads
