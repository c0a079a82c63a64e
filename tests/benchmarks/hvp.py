"""The Hessian-vector product of the two-layer loss: ``mt.hvp`` against PyTorch and JAX.

f(W1, W2) is the derivation's mean softmax cross-entropy of the sigmoid net on
one batch, b1 and b2 held fixed; each contender computes H·v along the same
random tangents (v1, v2), in float64. microtape's yardstick is one eager
``mt.value_and_grad`` of the same f, timed in the same rounds.

Before anything is timed, microtape's H·v is checked against central
differences of its own gradient, and every peer's against microtape's: a
peer that computes another function (or float32) stops the benchmark.
PyTorch and JAX are optional (``make bench-peers`` installs them); a peer that
cannot be imported gets a row saying so.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

import microtape as mt
from microtape.gradient_checking import central_differences
from models import TwoLayerNet

from .agreement import DisagreementError, relative_error
from .hvp_peers import PEERS, TORCH_EAGER, numpy_threads
from .problem import SIZES, make_problem
from .timing import Timing, interleave

GOAL_OVER_VALUE_AND_GRAD = {"medium": 3.0}  # mt.hvp over one eager value_and_grad
PEER_GOAL_SIZES = ("medium",)               # where mt.hvp must beat PyTorch's eager H·v
DEFAULT_SIZES = ("small", "medium")
TOLERANCE = 1e-8          # a peer's H·v against microtape's, relative (float64, other sums)
DIFFERENCE_TOLERANCE = 1e-5   # microtape's against central differences of its gradient
INSTALL = "`make bench-peers` installs it"


@dataclass
class HvpProblem:
    """One batch, the fixed biases, the point (W1, W2) and the tangents (v1, v2), float64."""

    size: str
    x: np.ndarray
    labels: np.ndarray
    b1: np.ndarray
    b2: np.ndarray
    W1: np.ndarray
    W2: np.ndarray
    v1: np.ndarray
    v2: np.ndarray


def make(size: str) -> HvpProblem:
    """The step benchmark's batch and starting parameters at ``size``, and random tangents."""
    p = make_problem(size, "float64")
    rng = np.random.default_rng(1)
    W1, W2 = p.params0["W1"], p.params0["W2"]
    return HvpProblem(size, p.x, p.labels, p.params0["b1"], p.params0["b2"], W1, W2,
                      rng.standard_normal(W1.shape), rng.standard_normal(W2.shape))


class Microtape:
    """``mt.hvp`` of the loss as ``models.TwoLayerNet`` computes it; ``value_and_grad`` beside it."""

    def __init__(self, p: HvpProblem) -> None:
        _, n_in, n_hidden, n_out = SIZES[p.size]
        net = TwoLayerNet(n_in, n_hidden, n_out)

        def f(W1, W2):
            logits = net.forward(p.x, {"W1": W1, "b1": p.b1, "W2": W2, "b2": p.b2})
            return mt.softmax_cross_entropy(logits, p.labels)

        self.f, self.p = f, p
        self._value_and_grad = mt.value_and_grad(f, (0, 1))

    def hvp(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        return mt.hvp(self.f, (p.W1, p.W2), (p.v1, p.v2))[1]

    def value_and_grad(self) -> None:
        self._value_and_grad(self.p.W1, self.p.W2)

    def by_differences(self) -> tuple[np.ndarray, np.ndarray]:
        """H·v as central differences of the gradient along v: the check that needs no peer."""
        p, grad = self.p, mt.grad(self.f, (0, 1))
        step = np.zeros(1)  # how far along v; central_differences moves it

        def along() -> np.ndarray:
            g1, g2 = grad(p.W1 + step[0] * p.v1, p.W2 + step[0] * p.v2)
            return np.concatenate([g1.reshape(-1), g2.reshape(-1)])

        flat = central_differences(along, step, [0], eps=1e-5)[0]
        return flat[:p.W1.size].reshape(p.W1.shape), flat[p.W1.size:].reshape(p.W2.shape)


@dataclass
class HvpResult:
    size: str
    timings: dict[str, Timing]    # "value_and_grad", "microtape", and each peer measured
    errors: dict[str, float]      # microtape's against differences; each peer's against microtape's
    missing: dict[str, str]       # peer: why it was not measured
    peers: bool = True            # False: PyTorch and JAX were left out (--quick)


def _check(name: str, got, want, tol: float, size: str, against: str) -> float:
    err = max(relative_error(g, w) for g, w in zip(got, want))
    if not err <= tol:  # also catches NaN
        raise DisagreementError(
            f"hvp: {name} at {size}: H·v differs from {against} by a relative {err:.3g} "
            f"(tolerance {tol:g}); fix it before timing it")
    return err


def build(size: str, threads: int, peers: bool = True
          ) -> tuple[dict[str, Callable], dict[str, float], dict[str, str]]:
    """Every contender at ``size``, checked; their timed calls, their errors, the missing peers.

    ``peers=False`` leaves PyTorch and JAX out (``--quick``: importing them and
    compiling JAX's function take seconds).
    """
    p = make(size)
    ours = Microtape(p)
    want = ours.hvp()
    errors = {"microtape": _check("microtape", want, ours.by_differences(), DIFFERENCE_TOLERANCE,
                                  size, "central differences of its gradient")}
    calls = {"value_and_grad": ours.value_and_grad, "microtape": ours.hvp}
    missing = {}
    for name, (label, module, make_peer) in PEERS.items() if peers else ():
        try:
            importlib.import_module(module)
        except Exception as e:  # an optional peer that cannot be imported is reported, not fatal
            missing[name] = f"{module} not installed; {INSTALL}" if isinstance(
                e, ModuleNotFoundError) else f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        peer = make_peer(p, threads)
        errors[name] = _check(label, peer.hvp(), want, TOLERANCE, size, "microtape's")
        calls[name] = peer.run
    return calls, errors, missing


@dataclass
class Checked:
    """One size's contenders, checked and ready to time."""

    size: str
    calls: dict[str, Callable[[], object]]
    errors: dict[str, float]
    missing: dict[str, str]
    peers: bool


def check(sizes: list[str], peers: bool = True) -> list[Checked]:
    """Build and check every contender at each size; raises ``DisagreementError`` first."""
    threads = numpy_threads()
    return [Checked(size, *build(size, threads, peers), peers) for size in sizes]


def measure(checked: list[Checked], rounds: int, block_seconds: float) -> list[HvpResult]:
    """Time each size's contenders interleaved, value_and_grad among them."""
    return [HvpResult(c.size, interleave(c.calls, rounds, block_seconds), c.errors, c.missing,
                      c.peers) for c in checked]


# -- the report --------------------------------------------------------------------

def section(results: list[HvpResult], threads: int) -> tuple[list[str], list[list[str]]]:
    """The markdown section (one table) and the goals' rows for the summary table."""
    from .bench import fmt_time, table, verdict  # bench imports this module: not at the top

    md = ["", "## Hessian-vector product", "",
          "H·v of the two-layer loss (the mean softmax cross-entropy of the sigmoid net, as "
          "`models.TwoLayerNet` computes it) with respect to (W1, W2), b1 and b2 held fixed, along "
          "random tangents (v1, v2), float64. microtape is `mt.hvp(f, (W1, W2), (v1, v2))`; over "
          "value_and_grad: its time over one eager `mt.value_and_grad(f, (0, 1))`'s in each of the "
          "same rounds, the median of those ratios. PyTorch: double backward (the gradient with `create_graph=True`, then "
          "`torch.autograd.grad` of it with `grad_outputs=v`) and `torch.func.jvp` of "
          "`torch.func.grad`, both eager, with `torch.set_num_threads("
          f"{threads})`, the threads numpy's BLAS runs; JAX: `jax.jvp(jax.grad(f))` op by op and "
          "under `jax.jit` (XLA picks its own threads). Error: microtape's H·v against central "
          "differences of its gradient, and each peer's against microtape's (checked before "
          "timing). Page faults: per call, as in the step's table; an array of W1's shape that "
          "the kernel maps afresh takes 392 of them, and whether it must depends on the "
          "allocator's state, which changes from run to run.", ""]
    rows, targets = [], []
    for res in results:
        base = res.timings["value_and_grad"]
        where = f"{res.size} {SIZES[res.size]}"
        labels = {"value_and_grad": "microtape value_and_grad", "microtape": "microtape hvp",
                  **{name: label for name, (label, _, _) in PEERS.items()}}
        for name, label in labels.items():
            if name in res.missing:
                rows.append([where, label, f"not measured ({res.missing[name]})", *[""] * 5])
                continue
            if name not in res.timings:  # a peer left out by --quick
                continue
            t = res.timings[name]
            ratio = t.ratio_to(base)
            goal = GOAL_OVER_VALUE_AND_GRAD.get(res.size) if name == "microtape" else None
            error = res.errors.get(name)
            rows.append([where, label, fmt_time(t.median), fmt_time(t.min), f"{ratio:.2f}x",
                         f"≤ {goal}x {verdict(ratio, goal)}" if goal else "",
                         "" if error is None else f"{error:.1e}", f"{t.faults_per_call:,.0f}"])
            if goal:
                targets.append([f"hvp over value_and_grad, {res.size}", f"≤ {goal}x",
                                f"{ratio:.2f}x", verdict(ratio, goal)])
        targets += _against_torch(res, verdict)
    md += table(["size (N, in, hidden, out)", "contender", "median", "min", "over value_and_grad",
                 "target", "error", "page faults"], rows)
    if not all(res.peers for res in results):
        md += ["", "PyTorch and JAX are left out with --quick (importing them and compiling take "
                   "seconds)."]
    return md, targets


def _against_torch(res: HvpResult, verdict: Callable) -> list[list[str]]:
    """The goal of being ahead of PyTorch's eager H·v (its faster way), where it was measured."""
    eager = [res.timings[name] for name in TORCH_EAGER if name in res.timings]
    if res.size not in PEER_GOAL_SIZES or not eager:
        return []
    ratio = res.timings["microtape"].ratio_to(min(eager, key=lambda t: t.median))
    return [[f"hvp vs PyTorch's eager H·v, {res.size}", "< 1x", f"{ratio:.2f}x",
             verdict(ratio, 0.999)]]
