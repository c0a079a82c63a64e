"""Fixtures the test files share: a seeded generator and the derivation's network written out.

``two_layer`` is models/DERIVATION.md's network in microtape's ops, by hand
(not ``models.TwoLayerNet``), for tests of the tape itself: its parameters
drawn from a generator and its loss J = CE(y, softmax(sigmoid(x W1 + b1) W2 + b2)),
recorded as six ops in that order (matmul, add, sigmoid, matmul, add, the loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import microtape as mt


class TwoLayer:
    """The two-layer network's parameters and loss, as plain functions."""

    @staticmethod
    def params(rng: np.random.Generator, n_in: int = 4, n_hidden: int = 6, n_out: int = 3,
               tensors: bool = False) -> dict[str, Any]:
        """W1, b1, W2, b2 drawn from ``rng`` (standard normal, biases halved), in that order.

        Float64 arrays, or Tensors named for their keys when ``tensors``.
        """
        p = {
            "W1": rng.normal(size=(n_in, n_hidden)),
            "b1": rng.normal(size=n_hidden) * 0.5,
            "W2": rng.normal(size=(n_hidden, n_out)),
            "b2": rng.normal(size=n_out) * 0.5,
        }
        return {k: mt.Tensor(v, name=k) for k, v in p.items()} if tensors else p

    @staticmethod
    def loss(x: Any, p: dict[str, Any], labels: Any, reduction: str = "mean") -> mt.Tensor:
        """J for the batch (or example) ``x``: parameters ``p`` may be Tensors or arrays."""
        h = mt.sigmoid(x @ p["W1"] + p["b1"])
        return mt.softmax_cross_entropy(h @ p["W2"] + p["b2"], labels, reduction=reduction)


@pytest.fixture
def two_layer() -> type[TwoLayer]:
    return TwoLayer


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator seeded with 0: the same numbers on every run."""
    return np.random.default_rng(0)
