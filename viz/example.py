"""The derivation's two-layer network on one small batch, recorded on a tape.

Shapes are small enough that every matrix fits in its node (at most 12
elements): N = 2 examples, 3 inputs, 4 hidden units, 3 classes. The tensors
carry the derivation's names: t = X W1 + b1, h = sigmoid(t), v = h W2 + b2,
J = CE(Y, softmax(v)) averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import microtape as mt


@dataclass
class TwoLayer:
    tape: mt.Tape
    loss: mt.Tensor
    params: dict[str, mt.Tensor]   # W1, b1, W2, b2
    data: dict[str, mt.Tensor]     # X, Y


def two_layer(n: int = 2, inputs: int = 3, hidden: int = 4, classes: int = 3,
              seed: int = 0) -> TwoLayer:
    """Record one forward pass of the derivation's network on a random batch."""
    rng = np.random.default_rng(seed)
    X = mt.Tensor(rng.normal(size=(n, inputs)), name="X")
    Y = mt.Tensor(np.eye(classes)[rng.integers(0, classes, size=n)], name="Y")  # one-hot rows
    params = {
        "W1": mt.Tensor(rng.normal(scale=inputs ** -0.5, size=(inputs, hidden)), name="W1"),
        "b1": mt.Tensor(rng.normal(scale=0.1, size=hidden), name="b1"),
        "W2": mt.Tensor(rng.normal(scale=hidden ** -0.5, size=(hidden, classes)), name="W2"),
        "b2": mt.Tensor(rng.normal(scale=0.1, size=classes), name="b2"),
    }
    W1, b1, W2, b2 = params.values()
    with mt.Tape() as tape:
        t = X @ W1 + b1
        h = mt.sigmoid(t)
        v = h @ W2 + b2
        J = mt.softmax_cross_entropy(v, Y)
    for tensor, name in ((t, "t"), (h, "h"), (v, "v"), (J, "J")):
        tensor.name = name
    return TwoLayer(tape, J, params, {"X": X, "Y": Y})
