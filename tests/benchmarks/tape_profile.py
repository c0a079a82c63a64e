"""Where the eager step's time goes: each phase of one tape step, timed inside the step.

cProfile (``--profile``) counts calls but charges its own cost to every one
of them, which at a few microseconds an op is most of what it shows. Here one
step is cut where its work changes hands and each piece is read off
``time.perf_counter``: opening the tape, each op as it runs and is recorded
(its numpy work and the tape's bookkeeping together), closing the tape; then
``tape.gradient`` taken apart as it runs: finding the target, planning the
pass, the stale-tape check, the seed, letting go of the record, each VJP, the
sweep's own loop (timed on a second tape, without the VJPs' clocks), the copies
that keep gradients from sharing memory; then
``SGD.step``. The numpy closed form's three phases are timed in the same
rounds, for scale.

The step is the benchmark's tape contender (``models.TwoLayerNet.loss`` on a
``mt.Tape(persistent=False)``) written out op by op, and the gradient runs
the tape's own helpers in the order ``Tape._backprop`` calls them;
``check`` holds both to the real thing (the ops recorded, the gradients
returned), so the profile cannot drift from the code it describes.
"""

from __future__ import annotations

import time

import numpy as np

import microtape as mt
from microtape import tape as tape_module
from microtape.naming import index_of
from microtape.state import _EDITS

from .contenders import NumpyStep, TapeStep
from .problem import PARAM_NAMES, Problem, make_problem
from .timing import interleave_phases

_clock = time.perf_counter

# The ops TwoLayerNet.loss records, in order, with the names the table gives them.
OPS = (("matmul", "x W1"), ("add", "+ b1"), ("sigmoid", "sigmoid"), ("matmul", "h W2"),
       ("add", "+ b2"), ("softmax_cross_entropy", "loss"))

FORWARD = ("open the tape", *(f"record {label}" for _, label in OPS), "close the tape")
# Each VJP the pass calls, in the order it calls them: last op first, each op's
# inputs in order (x gets none: it is data).
# A bias add hands G on to its other operand without a call (tape.pass_on): those
# rows read zero, the loop's own work counted with the loop.
VJPS = ("VJP loss → v", "VJP + b2 → h W2 (G handed on)", "VJP + b2 → b2", "VJP h W2 → h",
        "VJP h W2 → W2", "VJP sigmoid → t", "VJP + b1 → x W1 (G handed on)", "VJP + b1 → b1",
        "VJP x W1 → W1")
GRADIENT = ("find the target", "plan the pass", "stale-tape check", "seed", "let go of the record",
            *VJPS, "sweep's own loop", "copies (no shared memory)")
PHASES = (*FORWARD, *GRADIENT, "SGD update")


class TapePhases(TapeStep):
    """The tape contender's step, returning the seconds of each phase in ``PHASES``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem, persistent=False)

    def forward(self, times: list[float]) -> tuple[mt.Tape, mt.Tensor]:
        """TwoLayerNet.loss, op by op (models/two_layer.py and models/mlp.py), on a new tape."""
        net, p = self.net, self.net.params
        t0 = _clock()
        tape = mt.Tape(persistent=False).__enter__()
        t1 = _clock()
        xw = mt.matmul(net._input(self.x), p["W1"])
        t2 = _clock()
        t = mt.add(xw, p["b1"], name="t")
        t3 = _clock()
        h = mt.sigmoid(t, name="h")
        t4 = _clock()
        hw = mt.matmul(h, p["W2"])
        t5 = _clock()
        v = mt.add(hw, p["b2"], name="v")
        t6 = _clock()
        loss = mt.softmax_cross_entropy(v, self.labels, reduction="sum", name="J")
        t7 = _clock()
        tape.__exit__(None, None, None)
        t8 = _clock()
        times += [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7]
        return tape, loss

    def gradient(self, tape: mt.Tape, loss: mt.Tensor, times: list[float]) -> dict:
        """``tape.gradient(loss, params)``, helper by helper (Tape._gradients and _backprop).

        The VJPs are timed one by one inside the sweep; the sweep's own loop is
        what a second tape, recorded alike and swept without clocks, takes
        beyond them (a clock around each VJP costs more than many of them).
        """
        sources = list(self.net.params.values())
        t0 = _clock()
        nodes = tape.nodes
        end = len(nodes) if nodes and nodes[-1].output is loss else index_of(
            nodes, loss, "gradient", sources)
        nodes = nodes if end == len(nodes) else nodes[:end]
        t1 = _clock()
        wanted = set(map(id, sources))
        plan, _ = tape_module._plan(nodes, wanted)
        t2 = _clock()
        stale = tape_module._stale(nodes, plan) if nodes and nodes[0].clock != _EDITS[0] else {}
        t3 = _clock()
        cotangents = {id(loss): tape_module._seed_for(loss, None, "gradient")}
        t4 = _clock()
        tape._let_go()
        del nodes
        t5 = _clock()
        spent = [0.0] * len(VJPS)
        kept = tape_module._sweep(_timed(plan, spent), cotangents, wanted, stale, "gradient")
        t6 = _clock()
        grads = tape_module._distinct(kept, sources, None)
        t7 = _clock()
        loop = self._plain_sweep(wanted) - sum(spent)
        times += [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, *spent, max(loop, 0.0), t7 - t6]
        return dict(zip(self.net.params, grads))

    def _plain_sweep(self, wanted: set[int]) -> float:
        """Seconds of the sweep alone, on a tape recorded as the timed one was (untimed)."""
        tape, loss = self.forward([])
        plan, _ = tape_module._plan(tape.nodes, wanted)
        cotangents = {id(loss): tape_module._seed_for(loss, None, "gradient")}
        tape._let_go()
        t0 = _clock()
        tape_module._sweep(plan, cotangents, wanted, {}, "gradient")
        return _clock() - t0

    def phases(self) -> tuple[float, ...]:
        """One step: the seconds of each phase, in the order of ``PHASES``."""
        times: list[float] = []
        tape, loss = self.forward(times)
        grads = self.gradient(tape, loss, times)
        t0 = _clock()
        self.opt.step(grads)
        times.append(_clock() - t0)
        return tuple(times)


def _timed(plan: list, spent: list[float]) -> list:
    """The plan with each VJP wrapped to add its seconds to ``spent[k]``, k counting the VJPs
    in the order the sweep calls them (last node first)."""
    order = [(n, j) for n in range(len(plan) - 1, -1, -1) for j in range(len(plan[n][1]))]
    if len(order) != len(spent):
        raise AssertionError(f"the pass calls {len(order)} VJPs; the profile names {len(spent)}")
    slots = {position: k for k, position in enumerate(order)}

    def timed(vjp, k):
        if vjp is tape_module.pass_on:
            return vjp  # the loop calls none: G is handed on as it is

        def run(g):
            start = _clock()
            dx = vjp(g)
            spent[k] += _clock() - start
            return dx
        return run

    return [(out, [(i, key, timed(vjp, slots[n, j])) for j, (i, key, vjp) in enumerate(edges)])
            for n, (out, edges) in enumerate(plan)]


def check(problem: Problem) -> None:
    """Raise AssertionError unless the profiled step records the ops and gives the gradients
    of the benchmark's tape step."""
    profiled, reference = TapePhases(problem), TapeStep(problem)
    with mt.Tape() as tape:
        reference.net.loss(reference.x, reference.labels, reduction="sum")
    recorded = [node.op.name for node in tape.nodes]
    if recorded != [name for name, _ in OPS]:
        raise AssertionError(f"TwoLayerNet.loss records {recorded}; the profile times {OPS}")
    times: list[float] = []
    ours = profiled.gradient(*profiled.forward(times), times)
    _, theirs = reference.gradients()
    if len(times) != len(PHASES) - 1:
        raise AssertionError(f"{len(times)} phases timed before the update, not {len(PHASES) - 1}")
    for name in PARAM_NAMES:
        if not np.array_equal(ours[name], theirs[name]):
            raise AssertionError(f"the profiled gradient of {name} differs from tape.gradient's")


def measure(size: str, dtype: str, rounds: int, block_seconds: float) -> dict[str, list[float]]:
    """Median seconds per phase: ``{"microtape": [... PHASES], "numpy": [forward, gradients,
    update]}``, interleaved over ``rounds``."""
    problem = make_problem(size, dtype)
    check(problem)
    return interleave_phases({"microtape": TapePhases(problem).phases,
                              "numpy": NumpyStep(problem).phases}, rounds, block_seconds)


def table(size: str, dtype: str, medians: dict[str, list[float]], fmt_time) -> list[list[str]]:
    """Rows of phase, time, share of the tape's step, and where the textbook stands."""
    tape, numpy_phases = medians["microtape"], medians["numpy"]
    total = sum(tape)
    rows = [[f"{size} {dtype}", phase, fmt_time(seconds), f"{seconds / total:.0%}"]
            for phase, seconds in zip(PHASES, tape)]
    parts = {"forward with loss": FORWARD, "gradients": GRADIENT, "update": ("SGD update",)}
    for (part, names), reference in zip(parts.items(), numpy_phases):
        mine = sum(tape[PHASES.index(name)] for name in names)
        rows.append([f"{size} {dtype}", f"**{part}**: microtape against numpy",
                     f"{fmt_time(mine)} vs {fmt_time(reference)}", f"{mine / reference:.2f}x"])
    rows.append([f"{size} {dtype}", "**the step**: microtape against numpy",
                 f"{fmt_time(total)} vs {fmt_time(sum(numpy_phases))}",
                 f"{total / sum(numpy_phases):.2f}x"])
    return rows
