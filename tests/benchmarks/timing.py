"""Interleaved timing: every contender runs once per round, so drift hits all alike.

A shared machine speeds up and slows down over seconds. Timing contender A
for ten seconds and then B would fold that drift into the ratio; here each
round times one block of each (in a rotating order), and the median over
rounds is reported; a ratio between two contenders is the median of each
round's ratio (``Timing.ratio_to``). Like ``timeit``, the garbage collector is off inside a
block; reference counting still frees everything.

Each block starts with untimed calls (a quarter of the block, at least one).
A library that has just worked leaves its threads spinning for a while
(OpenBLAS's for up to ~0.1 s), and the next library's first multi-threaded
call waits for a core: seen here on 2 cores, a 0.1 ms PyTorch step took
20-60 ms right after a numpy step. A training loop never pays that switching
cost; the warm-up absorbs it, so each contender is timed in its steady state.
"""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping


try:
    from resource import RUSAGE_SELF, getrusage
except ImportError:  # not on Windows: page faults then go unreported
    getrusage = None


def minor_faults() -> int:
    """Pages the kernel has mapped into this process so far (0 where unknown).

    A fresh multi-megabyte array costs one fault per 4 KiB page on first
    touch; whether an array is fresh depends on the allocator's state, which
    is why large steps vary from run to run.
    """
    return getrusage(RUSAGE_SELF).ru_minflt if getrusage else 0


@dataclass
class Timing:
    """Seconds per call, one number per round (each the mean over one block)."""

    per_call: list[float]
    calls_per_block: int
    faults_per_call: float = 0.0  # minor page faults per call, over every timed block

    @property
    def median(self) -> float:
        return statistics.median(self.per_call)

    @property
    def min(self) -> float:
        return min(self.per_call)

    def ratio_to(self, base: "Timing") -> float:
        """This timing over ``base``, taken round by round: the median of each round's ratio.

        Both come from one ``interleave``, a block of each per round, so a
        machine that slows down for a few seconds slows both blocks of a round
        alike, and their ratio keeps little of it; the ratio of the two medians
        divides times taken at different moments, each with its own drift.
        """
        if len(self.per_call) != len(base.per_call):
            raise ValueError(f"ratio_to: {len(self.per_call)} rounds against {len(base.per_call)}; "
                             f"a ratio round by round needs timings from one interleave")
        return statistics.median(t / b for t, b in zip(self.per_call, base.per_call))


def time_block(fn: Callable[[], object], n: int) -> float:
    """Seconds for ``n`` calls of ``fn``, the collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in itertools.repeat(None, n):
            fn()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def calls_for(fn: Callable[[], object], block_seconds: float) -> int:
    """How many calls of ``fn`` fill about ``block_seconds`` (at least one; ``fn`` warmed first)."""
    fn()
    fn()
    n = 1
    while True:
        elapsed = min(time_block(fn, n) for _ in range(2))  # one stalled trial misleads
        if elapsed >= block_seconds / 8 or n >= 1 << 20:
            break
        n *= 8
    return max(1, math.ceil(n * block_seconds / max(elapsed, 1e-9)))


def warm_up(calls: int) -> int:
    """Untimed calls before a block of ``calls``: a quarter as many, at least one."""
    return max(1, calls // 4)


def interleave(fns: Mapping[str, Callable[[], object]], rounds: int,
               block_seconds: float) -> dict[str, Timing]:
    """Time each function over ``rounds`` rounds, one block of each per round."""
    names = list(fns)
    counts = {name: calls_for(fns[name], block_seconds) for name in names}
    per_call: dict[str, list[float]] = {name: [] for name in names}
    faults = dict.fromkeys(names, 0)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            time_block(fns[name], warm_up(counts[name]))
            before = minor_faults()
            per_call[name].append(time_block(fns[name], counts[name]) / counts[name])
            faults[name] += minor_faults() - before
    return {name: Timing(per_call[name], counts[name], faults[name] / (rounds * counts[name]))
            for name in names}


def paired(a: Callable[[], object], b: Callable[[], object], seconds: float) -> list[float]:
    """Seconds each call of ``a`` took beyond a call of ``b`` made right beside it, one
    difference per pair, for about ``seconds`` of pairs.

    For a difference of a few microseconds between calls of tens: two blocks
    timed apart differ by what the machine did between them, which on a shared
    machine is more than that (the compiled call's overhead, taken as the
    difference of two blocks per round, read 2.8 µs in one run and 9.6 in the
    next). A pair's two calls are microseconds apart, and which goes first
    alternates, so that a cache warmed by the first call helps each side as
    often; the median of the differences is the cost ``a`` adds.
    """
    pairs = calls_for(lambda: (a(), b()), seconds)
    clock = time.perf_counter
    differences = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(pairs):
            first, second = (a, b) if k & 1 else (b, a)
            t0 = clock()
            first()
            t1 = clock()
            second()
            t2 = clock()
            differences.append((t1 - t0) - (t2 - t1) if first is a else (t2 - t1) - (t1 - t0))
    finally:
        if enabled:
            gc.enable()
    return differences


def interleave_phases(fns: Mapping[str, Callable[[], tuple[float, ...]]], rounds: int,
                      block_seconds: float) -> dict[str, list[float]]:
    """Median seconds per phase: each function runs one step and returns its phases' times."""
    names = list(fns)
    counts = {name: calls_for(fns[name], block_seconds) for name in names}
    samples: dict[str, list[tuple[float, ...]]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time_block(fns[name], warm_up(counts[name]))
            enabled = gc.isenabled()
            gc.disable()
            try:
                totals = [sum(col) for col in zip(*(fns[name]() for _ in range(counts[name])))]
            finally:
                if enabled:
                    gc.enable()
            samples[name].append(tuple(t / counts[name] for t in totals))
    return {name: [statistics.median(col) for col in zip(*samples[name])] for name in names}
