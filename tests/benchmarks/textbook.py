"""The baseline's formulas as the reference: models/DERIVATION.md's batched closed form in numpy.

The baseline contender (``contenders.NumpyStep``) times ``models.by_hand``'s
``forward``, ``loss`` and ``backward``: deliberately unoptimised, every line
one formula making its own temporaries, as a textbook writes them. The same
functions, in float64, give the reference every contender's loss and
gradients must agree with.
"""

from __future__ import annotations

import numpy as np

from models import by_hand as cf


def loss_and_gradients(x, y, params):
    """J (summed over the batch) and its gradients with respect to W1, b1, W2, b2."""
    h, yhat = cf.forward(x, params["W1"], params["b1"], params["W2"], params["b2"])
    grads, _ = cf.backward(x, y, params["W2"], h, yhat)
    return cf.loss(y, yhat), grads


def reference(problem) -> tuple[float, dict[str, np.ndarray]]:
    """The closed form in float64 from the problem's own values (float32 ones upcast)."""
    def f64(a):
        return np.asarray(a, dtype=np.float64)

    params = {name: f64(p) for name, p in problem.params0.items()}
    loss, grads = loss_and_gradients(f64(problem.x), f64(problem.onehot), params)
    return float(loss), grads
