"""The problem every contender solves: one batch, one network, one learning rate.

Sizes are models/DERIVATION.md's (batch N, inputs, hidden units, classes). The
starting parameters come from ``models.TwoLayerNet`` with a fixed seed, so
every contender starts from the same values and the gradients can be
compared element by element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import TwoLayerNet

# (batch, n_in, n_hidden, n_out)
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (20, 10, 5, 10),
    "small": (64, 64, 32, 10),
    "medium": (128, 784, 256, 10),
    "large": (512, 784, 1024, 10),
}

DTYPES: dict[str, type] = {"float64": np.float64, "float32": np.float32}

# The step size for the loss averaged over the batch; with the summed loss the
# learning rate is this over N. Small enough that the many thousand steps of a
# run on one batch never push softmax into underflow (log 0 in the textbook
# loss, denormals), which would change what is timed.
MEAN_LEARNING_RATE = 0.05

PARAM_NAMES = ("W1", "b1", "W2", "b2")


@dataclass
class Problem:
    """One batch ``x`` with its labels, and the network's starting parameters."""

    size: str
    dtype: np.dtype
    x: np.ndarray            # (N, n_in), standard normal
    labels: np.ndarray       # (N,) class indices, int64
    onehot: np.ndarray       # (N, n_out) rows of the identity: y of the derivation
    params0: dict[str, np.ndarray]
    lr: float                # for the summed loss: MEAN_LEARNING_RATE / N

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return SIZES[self.size]


def make_problem(size: str, dtype: str, seed: int = 0) -> Problem:
    """The batch and starting parameters for ``size`` in ``dtype`` (same seed, same data)."""
    batch, n_in, n_hidden, n_out = SIZES[size]
    dt = np.dtype(DTYPES[dtype])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dt)
    labels = rng.integers(0, n_out, size=batch)
    onehot = np.eye(n_out, dtype=dt)[labels]
    net = TwoLayerNet(n_in, n_hidden, n_out, seed=seed, dtype=dt)
    params0 = {name: net.params[name].value.copy() for name in PARAM_NAMES}
    return Problem(size, dt, x, labels, onehot, params0, MEAN_LEARNING_RATE / batch)
