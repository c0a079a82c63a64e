"""Finite differences on a drawing's leaves, by replaying the recorded ops.

For a leaf ``x`` and an element ``i``, the gradient the drawing shows for it
(``TensorInfo.grad``, from the tape) should equal

    (f(x + eps e_i) − f(x − eps e_i)) / (2 eps),   f = Σ seed ∘ target

where ``seed`` is the target's own gradient (1 for a scalar loss). ``f`` is
evaluated by calling each recorded node's op again, in creation order, on
the perturbed values: ``node.op(*inputs, **node.params)`` with plain arrays,
so nothing is recorded. Only nodes downstream of the perturbed leaf rerun.

The check is bounded: at most ``max_elements`` elements per leaf, spread
evenly over the flattened array, each costing two replays. It runs in
float64 whatever the leaves' dtype, with the differences and the relative
error of ``microtape.gradcheck`` (``microtape.gradient_checking.central_differences``,
``relative_error``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microtape import Tensor
from microtape.gradient_checking import central_differences, relative_error

from .tapeview import TapeView, TensorInfo


@dataclass(frozen=True)
class LeafCheck:
    """How one leaf's tape gradient compares with finite differences."""

    checked: int          # elements compared
    total: int            # elements in the leaf
    rel_error: float      # max |tape − numeric| / max(max |tape|, max |numeric|)
    passed: bool          # every checked element within atol + rtol |numeric|

    def describe(self) -> str:
        mark = "agree" if self.passed else "DISAGREE"
        part = "" if self.checked == self.total else f", {self.checked} of {self.total} elements"
        return f"finite differences {mark}: rel. error {self.rel_error:.1e}{part}"


def check_leaves(view: TapeView, max_elements: int = 16, eps: float = 1e-6) -> dict[int, LeafCheck]:
    """{id(leaf): LeafCheck} for every leaf with a gradient; needs ``view.target`` and the
    drawing's gradients (``graph.attach_gradients``)."""
    target = view.target
    if target is None:
        raise ValueError("draw_graph: check=True needs target= (the scalar, or seeded tensor, "
                         "whose gradients are checked)")
    if view.info(target).grad is None:
        raise ValueError(f"draw_graph: check=True on a target of shape {target.shape} needs its "
                         f"seed: call tape.backward(target, seed=...) right before drawing, with "
                         f"no other backward pass in between")
    seed = np.asarray(view.info(target).grad, dtype=np.float64)
    first_use = {}
    for k, node in enumerate(view.nodes):
        for x in node.inputs:
            if isinstance(x, Tensor):
                first_use.setdefault(id(x), k)
    return {id(info.tensor): _check_leaf(view, first_use[id(info.tensor)], info, seed,
                                         max_elements, eps)
            for info in view.leaves
            if info.grad is not None and info.tensor is not target
            and id(info.tensor) in first_use}


def _check_leaf(view: TapeView, start: int, info: TensorInfo, seed: np.ndarray,
                max_elements: int, eps: float) -> LeafCheck:
    """The leaf's tape gradient against slopes at ``max_elements`` evenly spread elements."""
    leaf = info.tensor
    moved = np.array(leaf.value, dtype=np.float64)  # perturbed in place by central_differences
    count = min(moved.size, max_elements)
    picks = np.unique(np.linspace(0, moved.size - 1, count).round().astype(int)) if count else []
    numeric = central_differences(lambda: _replay(view, start, leaf, moved, seed), moved, picks,
                                  eps)
    analytic = np.asarray(info.grad, dtype=np.float64).ravel()[picks]
    rtol, atol = (1e-5, 1e-8) if info.grad.dtype == np.float64 else (1e-3, 1e-5)
    err = np.abs(analytic - numeric)
    return LeafCheck(checked=len(picks), total=moved.size,
                     rel_error=relative_error(analytic, numeric),
                     passed=bool(np.all(err <= atol + rtol * np.abs(numeric))))


def _replay(view: TapeView, start: int, leaf: Tensor, value: np.ndarray, seed: np.ndarray) -> float:
    """f = Σ seed ∘ target with ``leaf`` replaced by ``value``."""
    changed = {id(leaf): value}
    for node in view.nodes[start:]:
        if any(isinstance(x, Tensor) and id(x) in changed for x in node.inputs):
            args = [changed.get(id(x), x.value) if isinstance(x, Tensor) else x for x in node.inputs]
            changed[id(node.output)] = node.op(*args, **node.params).value
    out = changed.get(id(view.target), view.target.value)
    return float(np.sum(seed * out))
