"""python -m models.jacobians: the derivation's chain of Jacobians, factor by factor.

For one example of a small TwoLayerNet, each factor of

    ∂J/∂x_k = ∂J/∂ŷ_a · ∂ŷ_a/∂v_b · ∂v_b/∂h_c · ∂h_c/∂t_d · ∂t_d/∂x_k

is computed with ``mt.jacobian`` and printed beside its hand formula
(models/DERIVATION.md, "The chain of Jacobians"), then their product beside
the tape's dJ/dx, then the loss's Hessian in the logits beside diag(ŷ) − ŷŷᵀ.
``chain_costs`` counts what forming the chain costs against the tape's VJPs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NamedTuple, Sequence

import numpy as np

import microtape as mt

from .two_layer import TwoLayerNet

__all__ = ["Factor", "factors", "chain_product", "tape_input_gradient", "logit_hessian",
           "chain_costs", "main"]


class Factor(NamedTuple):
    """One factor of the chain: computed by the tape, and written by hand."""
    name: str
    formula: str
    tape: np.ndarray
    hand: np.ndarray


def _forward(net: TwoLayerNet, x: np.ndarray) -> dict[str, np.ndarray]:
    """The values t, h, v, ŷ of one example, in numpy, for the hand formulas."""
    p = {k: w.value for k, w in net.params.items()}
    t = x @ p["W1"] + p["b1"]
    h = 1.0 / (1.0 + np.exp(-t))
    v = h @ p["W2"] + p["b2"]
    e = np.exp(v - v.max())
    return {"t": t, "h": h, "v": v, "yhat": e / e.sum(), **p}


def factors(net: TwoLayerNet, x: np.ndarray, label: int) -> list[Factor]:
    """The five factors, each a Jacobian of one forward line, for one example ``x``."""
    f = _forward(net, x)
    y = np.eye(net.n_out)[label]
    yhat, h = f["yhat"], f["h"]
    ce = mt.jacobian(lambda p: -mt.sum(y * mt.log(p)))
    return [
        Factor("∂J/∂ŷ_a", "−y_a / ŷ_a", ce(yhat), -y / yhat),
        Factor("∂ŷ_a/∂v_b", "ŷ_a δ_ab − ŷ_a ŷ_b", mt.jacobian(mt.softmax)(f["v"]),
               np.diag(yhat) - np.outer(yhat, yhat)),
        Factor("∂v_b/∂h_c", "W2_cb", mt.jacobian(lambda h_: h_ @ f["W2"] + f["b2"])(h), f["W2"].T),
        Factor("∂h_c/∂t_d", "σ'(t_c) δ_cd", mt.jacobian(mt.sigmoid)(f["t"]), np.diag(h * (1 - h))),
        Factor("∂t_d/∂x_k", "W1_kd", mt.jacobian(lambda x_: x_ @ f["W1"] + f["b1"])(x), f["W1"].T),
    ]


def chain_product(chain: list[Factor]) -> np.ndarray:
    """The factors multiplied from the loss side: a row vector times each matrix in turn."""
    row = chain[0].tape
    for factor in chain[1:]:
        row = row @ factor.tape
    return row


def tape_input_gradient(net: TwoLayerNet, x: np.ndarray, label: int) -> np.ndarray:
    """dJ/dx by the tape's VJPs, never a Jacobian: the example as a batch of one."""
    def loss(x_batch: mt.Tensor) -> mt.Tensor:
        return mt.softmax_cross_entropy(net.forward(x_batch, net.params), [label])
    return mt.grad(loss)(x[None, :])[0]


def logit_hessian(net: TwoLayerNet, x: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """(∂²J/∂v², diag(ŷ) − ŷŷᵀ) for the mean loss over N = 1, the first by ``mt.hessian``."""
    f = _forward(net, x)
    hessian = mt.hessian(lambda v: mt.softmax_cross_entropy(mt.reshape(v, (1, -1)), [label]))
    yhat = f["yhat"]
    return hessian(f["v"]), np.diag(yhat) - np.outer(yhat, yhat)


def chain_costs(n_in: int, n_hidden: int, n_out: int, batch: int = 1
                ) -> dict[str, tuple[int, int]]:
    """(Jacobian entries formed, multiply-adds) of three ways to dJ/dx, for the summed loss.

    The Jacobians' entries are those of the five factors; for a batch each factor
    relates all N examples' values to all N examples' values, so both its sides
    grow N-fold (block diagonal, but full if formed). Multiplied from the input
    side the products are matrices; from the loss side, row vectors. The tape's
    VJPs count one operation per elementwise step: ŷ − y, G W2ᵀ, G ∘ S ∘ (1 − S)
    (three per hidden unit) and G W1ᵀ, once per example.
    """
    a, k, c = n_in * batch, n_hidden * batch, n_out * batch
    shapes = [(1, c), (c, c), (c, k), (k, k), (k, a)]
    from_input = sum(r * m * a for r, m in shapes[:-1])
    from_loss = sum(r * m for r, m in shapes[1:])
    vjps = batch * (n_out + n_out * n_hidden + 3 * n_hidden + n_hidden * n_in)
    entries = sum(r * m for r, m in shapes)
    return {"Jacobians, multiplied from the input side": (entries, from_input),
            "Jacobians, multiplied from the loss side": (entries, from_loss),
            "the tape's VJPs": (0, vjps)}


def _show(a: np.ndarray) -> str:
    """A small array on as few lines as reads well: a row per matrix row."""
    # + 0.0 turns −0.0 into 0.0, which numpy would print as "-0."
    return np.array2string(np.atleast_1d(a) + 0.0, precision=4, suppress_small=True,
                           max_line_width=100)


def _pair(title: str, left: tuple[str, np.ndarray], right: tuple[str, np.ndarray]) -> str:
    """Two arrays of one shape side by side under their labels, and their largest difference."""
    columns = [[label, *_show(a).splitlines()] for label, a in (left, right)]
    width = max(len(line) for line in columns[0]) + 4
    rows = [f"    {l:<{width}}{r}" for l, r in zip(*columns)]
    diff = np.max(np.abs(left[1] - right[1]))
    return "\n".join([title, *rows, f"    largest difference: {diff:.1e}", ""])


def _cost_table(n_in: int, n_hidden: int, n_out: int, batch: int) -> str:
    lines = [f"dJ/dx in the digits network ({n_in} inputs, {n_hidden} hidden, {n_out} logits):",
             f"    {'examples':<10}{'way':<44}{'Jacobian entries':>18}{'multiply-adds':>16}"]
    for n in (1, batch):
        for way, (entries, ops) in chain_costs(n_in, n_hidden, n_out, n).items():
            lines.append(f"    {n:<10}{way:<44}{entries:>18,}{ops:>16,}")
    lines.append("Each VJP is one factor applied to a vector, its structure used: no Jacobian is "
                 "formed\n(models/DERIVATION.md, \"Why the tape never forms a Jacobian\").")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the chain for one example of a small net, then the digits network's cost table."""
    argparse.ArgumentParser(prog="python -m models.jacobians", description=__doc__.splitlines()[0]
                            ).parse_args(argv)  # --help, and a typo refused: it takes no options
    try:
        _print_chain()
    except BrokenPipeError:
        # The reader of stdout went away (| head); stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _print_chain() -> None:
    net = TwoLayerNet(4, 3, 3, seed=0)
    x, label = np.random.default_rng(0).normal(size=4), 1
    print(f"One example of {net}: x = {_show(x)}, label {label}\n")
    chain = factors(net, x, label)
    for factor in chain:
        print(_pair(f"{factor.name} = {factor.formula}",
                    ("mt.jacobian", factor.tape), ("by hand", factor.hand)))
    print(_pair("∂J/∂x_k = ∂J/∂ŷ_a ∂ŷ_a/∂v_b ∂v_b/∂h_c ∂h_c/∂t_d ∂t_d/∂x_k",
                ("product of the factors", chain_product(chain)),
                ("tape.gradient (VJPs)", tape_input_gradient(net, x, label))))
    hessian, hand = logit_hessian(net, x, label)
    print(_pair("∂²J/∂v_a∂v_b = ŷ_a δ_ab − ŷ_a ŷ_b, the loss's Hessian in the logits",
                ("mt.hessian", hessian), ("diag(ŷ) − ŷŷᵀ", hand)))
    print(_cost_table(64, 64, 10, batch=32))


if __name__ == "__main__":
    raise SystemExit(main())
