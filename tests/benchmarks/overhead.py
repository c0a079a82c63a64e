"""What the tape costs beyond the arithmetic: per op, per chain length, in memory."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

import microtape as mt

from .contenders import CompiledStep, NumpyStep, TapeStep
from .problem import make_problem
from .timing import Timing, interleave


# -- one op: sigmoid forward and backward on one element ----------------------

def per_op(rounds: int, block_seconds: float) -> dict[str, Timing]:
    """mt.sigmoid recorded and differentiated, against the bare numpy expressions.

    Four timings: ``tape`` (open a tape, record sigmoid, ``tape.gradient``)
    against ``numpy`` (``s = 1/(1+exp(−x))`` then ``g ∘ s ∘ (1 − s)``), and
    the tape's gradient alone (a recorded tape asked again) against the
    numpy backward expression alone.
    """
    x = np.array([0.3])
    g = np.ones_like(x)
    xt = mt.Tensor(x)

    def tape_both():
        with mt.Tape() as tape:
            s = mt.sigmoid(xt)
        return tape.gradient(s, xt)

    def numpy_both():
        s = 1 / (1 + np.exp(-x))
        return g * s * (1 - s)

    with mt.Tape() as recorded:
        s_t = mt.sigmoid(xt)
    s = 1 / (1 + np.exp(-x))

    def tape_gradient():
        return recorded.gradient(s_t, xt)

    def numpy_backward():
        return g * s * (1 - s)

    return interleave({"tape": tape_both, "numpy": numpy_both, "tape gradient": tape_gradient,
                       "numpy backward": numpy_backward}, rounds, block_seconds)


# -- chains: the cost per op must not grow with the tape ----------------------

@dataclass
class ChainTiming:
    length: int
    forward: float   # seconds per op, recording
    gradient: float  # seconds per op, tape.gradient

    @property
    def total(self) -> float:
        return self.forward + self.gradient


def chain(length: int, repeats: int) -> ChainTiming:
    """``y ← y + c`` ``length`` times on one tape, then dy/dx; medians over ``repeats``."""
    c = np.ones(1)
    forward, gradient = [], []
    gc.collect()  # once: with torch and jax loaded a full collection takes ~0.1 s
    for _ in range(repeats):
        x = mt.Tensor(np.zeros(1))
        enabled = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            with mt.Tape() as tape:
                y = x
                for _ in range(length):
                    y = y + c
            t1 = time.perf_counter()
            dx = tape.gradient(y, x)
            t2 = time.perf_counter()
        finally:
            if enabled:
                gc.enable()
        if dx[0] != 1.0:
            raise AssertionError(f"a chain of {length} adds gave dy/dx = {dx[0]}, not 1")
        forward.append((t1 - t0) / length)
        gradient.append((t2 - t1) / length)
        del tape, y
    return ChainTiming(length, statistics.median(forward), statistics.median(gradient))


def chains(lengths: list[int], budget_ops: int) -> list[ChainTiming]:
    """One ``ChainTiming`` per length, repeated until about ``budget_ops`` ops ran (at least 3 times)."""
    return [chain(n, max(3, budget_ops // n)) for n in lengths]


# -- memory: the peak of one training step -------------------------------------

def peak_bytes(step) -> int:
    """The most memory (tracemalloc, numpy's arrays included) in use during ``step()`` beyond before."""
    step()  # warm: anything allocated once is not part of a step
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def step_memory(size: str, dtype: str) -> dict[str, int]:
    """Peak bytes of one SGD step: the closed form, the tape, a tape that keeps its values, the compiled step."""
    problem = make_problem(size, dtype)
    return {"numpy": peak_bytes(NumpyStep(problem).step),
            "microtape": peak_bytes(TapeStep(problem).step),
            "kept tape": peak_bytes(TapeStep(problem, persistent=True).step),
            "compiled": peak_bytes(CompiledStep(problem).step)}
