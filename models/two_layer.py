"""TwoLayerNet: exactly the network of models/DERIVATION.md, on the tape.

    t = x W1 + b1,   h = sigmoid(t),   v = h W2 + b2,   J = CE(y, softmax(v))

Its closed-form gradients, written by hand, are in ``by_hand.py``; the tests hold the two
to 1e-10 of each other.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import microtape as mt
from microtape import Tensor

from .checkpoint import CheckpointError
from .mlp import MLP

__all__ = ["TwoLayerNet"]


class TwoLayerNet(MLP):
    """The derivation's network: ``n_in`` inputs, ``n_hidden`` sigmoid units, ``n_out`` logits.

    ``params`` holds ``W1`` (n_in, n_hidden), ``b1`` (n_hidden,), ``W2``
    (n_hidden, n_out) and ``b2`` (n_out,): Glorot-uniform weights from
    ``np.random.default_rng(seed)``, zero biases. It is the MLP with sizes
    ``(n_in, n_hidden, n_out)`` and sigmoid, written out as the derivation
    writes it.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, seed: Any = None,
                 dtype: Any = np.float64) -> None:
        super().__init__((n_in, n_hidden, n_out), "sigmoid", seed=seed, dtype=dtype)

    @property
    def n_hidden(self) -> int:
        return self.sizes[1]

    def __repr__(self) -> str:
        return (f"TwoLayerNet(n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out}, "
                f"dtype={self.dtype})")

    def forward(self, x: Any, params: Mapping[str, Any]) -> Tensor:
        """The logits ``v``, the derivation's forward pass line by line."""
        t = mt.add(mt.matmul(x, params["W1"]), params["b1"], name="t")     # t = x W1 + b1
        h = mt.sigmoid(t, name="h")                                        # h = sigmoid(t)
        return mt.add(mt.matmul(h, params["W2"]), params["b2"], name="v")  # v = h W2 + b2

    @classmethod
    def _check_loaded(cls, sizes: tuple[int, ...], activation: str, path: Any) -> None:
        if len(sizes) != 3 or activation != "sigmoid":
            raise CheckpointError(
                f"{str(path)!r} holds an MLP with sizes {sizes} and activation {activation!r}, "
                f"not a TwoLayerNet (one sigmoid hidden layer); load it with MLP.load"
            )
