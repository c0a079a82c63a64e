"""``make bench``: one SGD step of the derivation's network, microtape against numpy.

    python -m tests.benchmarks.bench                  # the full run (a few minutes)
    python -m tests.benchmarks.bench --quick          # a rough look (seconds): one short table
    python -m tests.benchmarks.bench --profile tiny   # the tape's step phase by phase, and cProfile

In one process, and interleaved over rounds, it times one training step
(forward with the summed loss, the four parameter gradients, the SGD update)
for each contender at each size and dtype, after checking that every
contender computes the same gradients as the closed form. Then the tape's
own costs: the eager step phase by phase, one op, long chains of ops, and
the memory of one step; and the Hessian-vector product of the same loss
against PyTorch's and JAX's (hvp.py). Results
go to a markdown file (``out/bench.md`` by default) and to stdout, with the
project's speed targets marked met or missed and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from microtape.files import why_unwritable, write_atomic

from . import agreement, contenders, hvp, machine, overhead, tape_profile, user_path
from .problem import DTYPES, SIZES, make_problem
from .timing import Timing, calls_for, interleave, interleave_phases

DEFAULT_OUT = machine.ROOT / "out" / "bench.md"

# The speed targets: the tape's median step over the closed form's, same run.
STEP_TARGETS = {"tiny": 1.8, "small": 1.4, "medium": 0.95, "large": 0.9}
# The generated closed form's (meant for OpenBLAS's own kernel choice).
COMPILED_TARGETS = {"tiny": 0.95, "small": 0.95, "medium": 0.97, "large": 0.97}
# The step in anomaly mode over the tape's own step, same run (no goal at tiny).
ANOMALY_TARGETS = {"small": 1.5, "medium": 1.5}
BUILD_TARGET = 5e-3      # seconds to write a recorded step's closed form
COMPILED_MEMORY_TARGET = 0.8
PER_OP_TARGET = 3.0      # sigmoid forward + backward on one element, over bare numpy
MEMORY_TARGET = 1.2      # peak memory of one step at the large size, over the closed form's
FLAT_LIMIT = 2.0         # per-op time of the longest chain over the shortest's: "stays flat"
BUSY_WARNING = 0.10      # warn when other processes took more than this share of the CPUs


@dataclass
class Options:
    sizes: list[str]
    dtypes: list[str]
    contenders: list[str]
    rounds: int
    block_seconds: float
    chains: list[int]
    chain_budget: int
    memory_size: str | None
    hvp_sizes: list[str]
    hvp_peers: bool
    out: Path
    quick: bool = False


def parse(argv: list[str] | None) -> tuple[Options, str | None]:
    def names(allowed):
        def split(text: str) -> list[str]:
            items = [s.strip() for s in text.split(",") if s.strip()]
            if not items:
                raise argparse.ArgumentTypeError(f"name at least one of {', '.join(allowed)}")
            for item in items:
                if item not in allowed:
                    raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(allowed)}")
            return items
        return split

    def ints(text: str) -> list[int]:
        try:
            values = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError("chain lengths must be positive integers")
        return values

    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench",
        description="One SGD step of the derivation's network: microtape against numpy and its peers.")
    p.add_argument("--quick", action="store_true",
                   help="few short rounds and short chains, and no PyTorch or JAX Hessian-vector "
                        "products: a rough look in seconds, not a measurement")
    p.add_argument("--sizes", type=names(list(SIZES)), default=list(SIZES),
                   help=f"comma-separated, from {','.join(SIZES)} (default: all)")
    p.add_argument("--dtypes", type=names(list(DTYPES)), default=list(DTYPES),
                   help="comma-separated, from float64,float32 (default: both)")
    p.add_argument("--contenders", type=names(list(contenders.ALL)), default=list(contenders.ALL),
                   help=f"comma-separated, from {','.join(contenders.ALL)} (default: every one that "
                        f"imports; numpy, the baseline, always runs)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per measurement (default 25, quick 3)")
    p.add_argument("--block-ms", type=float,
                   help="milliseconds of calls per contender per round (default 40, quick 4)")
    p.add_argument("--chains", type=ints, help="chain lengths in adds (default 1000,10000,100000; "
                                               "quick 1000,10000)")
    p.add_argument("--memory-size", choices=[*SIZES, "none"], default="large",
                   help="size whose step's peak memory is measured (default large; none skips it)")
    p.add_argument("--hvp-sizes", type=names([*SIZES, "none"]),
                   help="sizes for the Hessian-vector product, or none (default: small and medium, "
                        "those of --sizes)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"markdown file to write (default {DEFAULT_OUT.relative_to(machine.ROOT)})")
    p.add_argument("--profile", choices=list(SIZES), metavar="SIZE",
                   help="instead of the benchmark: cProfile the tape's step at SIZE (first --dtypes)")
    a = p.parse_args(argv)
    problem = why_unwritable(a.out)
    if problem:  # said now, not after minutes of timing
        p.error(f"--out {a.out}: {problem}")
    if a.rounds is not None and a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.block_ms is not None and a.block_ms <= 0:
        p.error("--block-ms must be positive")
    chosen = ["numpy"] + [c for c in a.contenders if c != "numpy"]
    options = Options(
        sizes=a.sizes, dtypes=a.dtypes, contenders=chosen,
        rounds=a.rounds or (3 if a.quick else 25),
        block_seconds=(a.block_ms or (4.0 if a.quick else 40.0)) / 1e3,
        chains=a.chains or ([1000, 10_000] if a.quick else [1000, 10_000, 100_000]),
        chain_budget=20_000 if a.quick else 300_000,
        memory_size=None if a.memory_size == "none" else a.memory_size,
        hvp_sizes=[s for s in a.hvp_sizes if s != "none"] if a.hvp_sizes else [
            s for s in hvp.DEFAULT_SIZES if s in a.sizes],
        hvp_peers=not a.quick,
        out=a.out, quick=a.quick,
    )
    return options, a.profile


_START = time.perf_counter()
_QUIET = [False]  # --quick: its table is the whole output, without the progress lines


def log(message: str, always: bool = False) -> None:
    if always or not _QUIET[0]:
        print(f"[{time.perf_counter() - _START:5.1f} s] {message}", file=sys.stderr, flush=True)


# -- the measurements --------------------------------------------------------------

@dataclass
class StepResult:
    size: str
    dtype: str
    timings: dict[str, Timing]
    phases: dict[str, list[float]]   # contender -> [forward, gradients, update] seconds
    warnings: list[str]              # numerical warnings raised while timing
    others: float | None             # share of all CPUs that other processes used meanwhile
    builds: dict[str, float]         # contender -> one-off build seconds (the compiled step)


def build_and_check(options: Options, found: dict) -> tuple[dict, dict]:
    """Every contender at every size and dtype, checked against the closed form.

    Returns the checked contenders, ready to time, keyed (size, dtype), and
    each one's worst relative error. Raises ``DisagreementError`` on the
    first disagreement, before anything is timed.
    """
    built: dict[tuple[str, str], dict[str, object]] = {}
    errors: dict[tuple[str, str, str], float] = {}
    for size in options.sizes:
        for dtype in options.dtypes:
            problem = make_problem(size, dtype)
            built[size, dtype] = {}
            log(f"checking {', '.join(found)} at {size} {SIZES[size]}, {dtype}")
            for name, make in found.items():
                contender = make(problem)
                errors[size, dtype, name] = agreement.check(name, contender, problem)
                built[size, dtype][name] = contender
    return built, errors


def time_steps(options: Options, built: dict) -> list[StepResult]:
    results = []
    for (size, dtype), group in built.items():
        log(f"timing one step at {size} {SIZES[size]}, {dtype}")
        # Thousands of steps on one batch: a NaN or overflow would change
        # what is timed, so any numerical warning is reported with the numbers.
        watch = machine.CpuWatch()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            timings = interleave({name: c.step for name, c in group.items()},
                                 options.rounds, options.block_seconds)
            phases = interleave_phases({name: group[name].phases for name in ("numpy", "microtape")},
                                       options.rounds, options.block_seconds)
        notes = sorted({f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
                        for w in caught})
        shares = watch.shares()
        builds = {name: c.build_seconds for name, c in group.items() if hasattr(c, "build_seconds")}
        results.append(StepResult(size, dtype, timings, phases, notes, shares[0] if shares else None,
                                  builds))
    return results


def time_floors(options: Options) -> dict[tuple[str, str], tuple[Timing, Timing]]:
    """The two large products alone, interleaved with the closed form's step: (floor, numpy).

    Timed after every step, not among them: keeping its buffers alive while
    the steps run shifts where the allocator puts their multi-megabyte arrays,
    and with that how many page faults a step takes.
    """
    floors = {}
    for size in options.sizes:
        for dtype in options.dtypes:
            log(f"timing the BLAS floor at {size} {SIZES[size]}, {dtype}")
            problem = make_problem(size, dtype)
            floor, numpy_step = contenders.BlasFloor(problem), contenders.NumpyStep(problem)
            t = interleave({"floor": floor.step, "numpy": numpy_step.step},
                           options.rounds, options.block_seconds)
            floors[size, dtype] = (t["floor"], t["numpy"])
            del floor, numpy_step
    return floors


def time_user_path(options: Options) -> tuple[str, str, dict[str, Timing], dict[str, float]]:
    """The user's compiled step at the tiny size, piece by piece (see ``user_path``)."""
    dtype = options.dtypes[0]
    log(f"timing the compiled step's pieces at tiny, {dtype}")
    return ("tiny", dtype, *user_path.measure("tiny", dtype, options.rounds, options.block_seconds))


def profile(size: str, dtype: str, seconds: float = 2.0) -> str:
    """The tape's training step phase by phase, then its cProfile, function by function."""
    medians = tape_profile.measure(size, dtype, rounds=15, block_seconds=seconds / 30)
    phases = "\n".join(table(["size", "phase", "median", "share"],
                             tape_profile.table(size, dtype, medians, fmt_time)))
    step = contenders.TapeStep(make_problem(size, dtype)).step
    n = calls_for(step, seconds)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    out = _Lines()
    stats = pstats.Stats(prof, stream=out)
    out.write(f"cProfile of {n} microtape steps at {size} {SIZES[size]}, {dtype}; per step divide by {n}\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    return (f"One microtape step at {size} {SIZES[size]}, {dtype}, phase by phase (medians):\n\n"
            f"{phases}\n\n" + "".join(out.parts))


class _Lines:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


# -- the report ----------------------------------------------------------------------

def fmt_time(seconds: float) -> str:
    """Three significant figures in µs or ms."""
    value, unit = (seconds * 1e6, "µs") if seconds < 1e-3 else (seconds * 1e3, "ms")
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "**missed**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _anomaly_targets(res: StepResult, name: str, row: list[str]) -> list[list[str]]:
    """Anomaly mode's cost: over the tape's own step, and against PyTorch's anomaly mode.

    Fills the row's target column too (its ratio stays over numpy's, as every row's).
    """
    ours, theirs = res.timings.get("anomaly"), res.timings.get("torch-anomaly")
    if name == "torch-anomaly" or "microtape" not in res.timings:
        return []
    over = ours.ratio_to(res.timings["microtape"])
    goal = ANOMALY_TARGETS.get(res.size)
    row[6] = f"{over:.2f}x microtape's step" + (f", ≤ {goal}x {verdict(over, goal)}" if goal else "")
    targets = []
    if goal:
        targets.append([f"anomaly-mode step, {res.size}, {res.dtype}", f"≤ {goal}x microtape's step",
                        f"{over:.2f}x", verdict(over, goal)])
    if theirs is not None:
        ratio = ours.ratio_to(theirs)
        targets.append([f"anomaly-mode step vs PyTorch's, {res.size}, {res.dtype}", "< 1x",
                        f"{ratio:.2f}x", verdict(ratio, 0.999)])
    return targets


# The README's table leaves anomaly mode out: it has its own goal and paragraph.
README_SKIPS = ("anomaly", "torch-anomaly")
README_LABELS = {"numpy": "numpy textbook", "torch": "PyTorch eager", "jax": "JAX jit"}


def readme_table(record: list[tuple[str, str]], steps: list[StepResult]) -> list[str]:
    """The README's speed table from this run, with the machine and the BLAS kernel it ran on."""
    if not steps:
        return []
    facts = dict(record)
    names = [name for name in steps[0].timings if name not in README_SKIPS]
    rows = []
    for res in steps:
        base = res.timings["numpy"]
        rows.append([f"{res.size} {SIZES[res.size]}", res.dtype, fmt_time(base.median)] + [
            f"{fmt_time(res.timings[name].median)} ({res.timings[name].ratio_to(base):.2f}x)"
            for name in names[1:]])
    labels = [README_LABELS.get(name) or contenders.LABELS.get(name, name) for name in names]
    return ["", "## The table for the README", "",
            f"One run at {facts['microtape source']} on {facts['date']}: {facts['CPU']}, "
            f"{facts['Python']}, numpy {facts['numpy']} (BLAS environment: "
            f"{facts['BLAS environment']}). Median per step, and its ratio to the textbook numpy "
            f"step in the same run (the median of each round's ratio):", "",
            *table(["size (N, in, hidden, out)", "dtype", *labels], rows)]


def report(options: Options, argv: list[str], record: list[tuple[str, str]], missing: dict[str, str],
           worst: dict, steps: list[StepResult], op: dict[str, Timing] | None,
           chains: list[overhead.ChainTiming], memory: dict[str, dict[str, int]],
           floors: dict[tuple[str, str], tuple[Timing, Timing]],
           seconds: float, shares: tuple[float, float] | None,
           pieces: tuple[str, str, dict[str, Timing], dict[str, float]] | None = None,
           hvps: list[hvp.HvpResult] = (),
           profiles: dict[tuple[str, str], dict[str, list[float]]] | None = None) -> str:
    command = " ".join(["python -m tests.benchmarks.bench", *argv]).strip()
    targets: list[list[str]] = []
    md = [
        "# microtape benchmark",
        "",
        f"`{command}` — {options.rounds} interleaved rounds of about "
        f"{options.block_seconds * 1e3:g} ms per contender per measurement; median and min over "
        f"rounds; the garbage collector paused inside a timed block, as timeit does; "
        f"{seconds:.0f} s in all.",
        "",
        "## Machine",
        "",
        *table(["", ""], [[k, v] for k, v in record]),
    ]
    if shares:
        others, steal = shares
        md[-1:] = [md[-1], f"| CPU taken by other processes during the run | {others:.0%} of "
                           f"{os.cpu_count()} CPUs (hypervisor steal {steal:.0%}) |"]
        if others > BUSY_WARNING:
            md += ["", f"**The machine was busy**: other processes used {others:.0%} of its CPUs "
                   f"while this ran. Libraries that run two threads (PyTorch, JAX, BLAS on large "
                   f"matrices) stall when a neighbour holds a core; the min column and a rerun on "
                   f"a quiet machine are more telling than the medians."]
    if missing:
        md += ["", "Not measured (cannot be imported here): "
               + "; ".join(f"{k} ({v})" for k, v in missing.items()) + "."]

    md += ["", "## One SGD training step", "",
           "Forward with the loss summed over the batch, the gradients of W1, b1, W2, b2 (not of "
           "x), and `p ← p − lr·g`. numpy is models/DERIVATION.md's closed form written "
           "plainly (`tests/benchmarks/textbook.py`); microtape is `models.TwoLayerNet` on a "
           "`mt.Tape(persistent=False)`, as `models/fit.py` trains, with `mt.optim.SGD`. Ratio: the "
           "contender's time over numpy's in each round of the same run, the median of those "
           "ratios (a drift of the machine slows both blocks of a round alike). "
           "Before timing, each contender's loss, gradients and one update were checked against "
           "the float64 closed form (grad. error: the worst relative error). Page faults: per step, "
           "the pages the kernel mapped in for fresh arrays (a few thousand cost milliseconds at "
           "the large size, and come and go with the allocator's state). Others' CPU: the "
           "share of the machine other processes used while that size and dtype were timed. "
           "The numpy step is the textbook one, each formula as the derivation reads it "
           "(`.max` and `.sum` over rows, a one-hot `y`); the tuned numpy step is microtape fused, "
           "the code the tape writes. microtape kept tape is the eager step on `mt.Tape()`, "
           "which keeps every value for drawing. microtape compiled is the step as a user writes it: "
           "`mt.value_and_grad(loss, argnums=(0, 1, 2, 3), compile=True)` on the parameters "
           "`mt.optim.SGD` holds, each step `opt.step(vg, *args)` (for plain SGD, the closed "
           "form's fused step behind the function's argument checks). microtape fused is the closed form's "
           "fused SGD step (`tape.closed_form(loss, params)`, `cf.sgd_step`'s generated code): "
           "the backward pass seeded with −lr, each gradient added to its parameter in place; "
           "build: the one-off cost of writing and compiling that code from a recorded tape "
           "(median of 5). microtape "
           "anomaly is the eager step inside `mt.detect_anomaly()` (each op's output and each "
           "VJP's result checked), its target over microtape's own step; torch anomaly is "
           "PyTorch's step under `torch.autograd.set_detect_anomaly(True)`.", ""]
    rows = []
    for res in steps:
        base = res.timings["numpy"]
        for name, t in res.timings.items():
            ratio = t.ratio_to(base)
            goal = {"microtape": STEP_TARGETS, "compiled": COMPILED_TARGETS,
                    "fused": COMPILED_TARGETS}.get(name, {}).get(res.size)
            build = res.builds.get(name)
            rows.append([f"{res.size} {SIZES[res.size]}", res.dtype, contenders.LABELS.get(name, name),
                         fmt_time(t.median),
                         fmt_time(t.min), f"{ratio:.2f}x",
                         f"≤ {goal}x {verdict(ratio, goal)}" if goal else "",
                         f"{worst[res.size, res.dtype, name]:.1e}", f"{t.faults_per_call:,.0f}",
                         "" if res.others is None else f"{res.others:.0%}",
                         "" if build is None else fmt_time(build)])
            if goal:
                what = {"microtape": "step", "compiled": "compiled step"}.get(name, "fused step")
                targets.append([f"{what}, {res.size}, {res.dtype}", f"≤ {goal}x", f"{ratio:.2f}x",
                                verdict(ratio, goal)])
            if name in ("anomaly", "torch-anomaly"):
                targets += _anomaly_targets(res, name, rows[-1])
            if build is not None:
                targets.append([f"building the closed form, {res.size}, {res.dtype}",
                                f"≤ {fmt_time(BUILD_TARGET)}", fmt_time(build),
                                verdict(build, BUILD_TARGET)])
    md += table(["size (N, in, hidden, out)", "dtype", "contender", "median", "min", "ratio",
                 "target", "grad. error", "page faults", "others' CPU", "build"], rows)
    for res in steps:
        for note in res.warnings:
            md += ["", f"Warning while timing {res.size} {res.dtype}: {note}"]

    if floors:
        md += ["", "## The BLAS floor", "",
               "`x W1` and `xᵀ delta1` alone, interleaved with the closed form's step after all "
               "the steps above were timed. Every contender computes these two products, and on "
               "numpy they run in the same BLAS, so their time over the closed form's step is as "
               "low as a numpy-based tape can go. The rest of a step (bias adds, sigmoid, softmax, "
               "the small products, the update) must fit in what is left under the target.", ""]
        rows = []
        for (size, dtype), (floor, base) in floors.items():
            ratio = floor.ratio_to(base)
            goal = STEP_TARGETS[size]
            room = (goal - ratio) * base.median
            rows.append([f"{size} {SIZES[size]}", dtype, fmt_time(floor.median), fmt_time(base.median),
                         f"{ratio:.2f}x", f"≤ {goal}x", fmt_time(room) if room > 0 else "none"])
        md += table(["size (N, in, hidden, out)", "dtype", "two products", "numpy step", "ratio",
                     "target", "left for the rest of the step"], rows)

    md += ["", "## Where the time goes", "",
           "Median time per phase of one step, measured inside the step (same rounds scheme). "
           "For microtape, forward includes opening the tape and recording; gradients is "
           "`tape.gradient`; update is `SGD.step`.", ""]
    rows = []
    for res in steps:
        for name, (fwd, grad, upd) in res.phases.items():
            total = fwd + grad + upd
            rows.append([res.size, res.dtype, contenders.LABELS.get(name, name), fmt_time(fwd),
                         fmt_time(grad), fmt_time(upd),
                         fmt_time(total)])
    md += table(["size", "dtype", "contender", "forward with loss", "gradients", "update", "sum"], rows)

    if op is not None:
        ratio = op["tape"].ratio_to(op["numpy"])
        grad_ratio = op["tape gradient"].ratio_to(op["numpy backward"])
        md += ["", "## Per-op overhead", "",
               "`mt.sigmoid` on a one-element float64 array: open a tape, record, `tape.gradient`; "
               "against the bare numpy expressions `s = 1/(1+np.exp(-x))` and `g*s*(1-s)`.", ""]
        md += table(["what", "microtape", "numpy", "ratio", "target"], [
            ["forward + backward", fmt_time(op["tape"].median), fmt_time(op["numpy"].median),
             f"{ratio:.2f}x", f"≤ {PER_OP_TARGET:g}x {verdict(ratio, PER_OP_TARGET)}"],
            ["backward alone (a recorded tape asked again)", fmt_time(op["tape gradient"].median),
             fmt_time(op["numpy backward"].median), f"{grad_ratio:.2f}x", ""],
        ])
        targets.append(["per-op overhead (sigmoid, one element)", f"≤ {PER_OP_TARGET:g}x",
                        f"{ratio:.2f}x", verdict(ratio, PER_OP_TARGET)])

    if chains:
        first = chains[0]
        md += ["", "## Chains of adds", "",
               "`y = y + c` repeated on one tape, then `tape.gradient(y, x)`; time per op "
               "(median of repeats). Flat means no work grows with the tape's length.", ""]
        md += table(["adds", "forward per op", "gradient per op", "total per op", f"vs {first.length:,}"],
                    [[f"{c.length:,}", fmt_time(c.forward), fmt_time(c.gradient), fmt_time(c.total),
                      f"{c.total / first.total:.2f}x"] for c in chains])
        if len(chains) > 1:
            growth = chains[-1].total / first.total
            targets.append([f"chain per op, {chains[-1].length:,} vs {first.length:,} adds (flat)",
                            f"≤ {FLAT_LIMIT:g}x", f"{growth:.2f}x", verdict(growth, FLAT_LIMIT)])

    if memory:
        md += ["", f"## Peak memory of one step ({options.memory_size})", "",
               "tracemalloc's peak during one step (numpy's arrays included) above what was in "
               "use before it. The kept tape is `mt.Tape()`, which holds every value for "
               "drawing and asking again; the step above uses `mt.Tape(persistent=False)`.", ""]
        rows = []
        for dtype, peaks in memory.items():
            ratio = peaks["microtape"] / peaks["numpy"]
            kept = peaks["kept tape"] / peaks["numpy"]
            compiled = peaks["compiled"] / peaks["numpy"]
            rows.append([dtype, fmt_bytes(peaks["numpy"]), fmt_bytes(peaks["microtape"]), f"{ratio:.2f}x",
                         f"≤ {MEMORY_TARGET:g}x {verdict(ratio, MEMORY_TARGET)}",
                         fmt_bytes(peaks["kept tape"]), f"{kept:.2f}x",
                         fmt_bytes(peaks["compiled"]), f"{compiled:.2f}x",
                         f"≤ {COMPILED_MEMORY_TARGET:g}x {verdict(compiled, COMPILED_MEMORY_TARGET)}"])
            targets.append([f"peak memory, {options.memory_size}, {dtype}", f"≤ {MEMORY_TARGET:g}x",
                            f"{ratio:.2f}x", verdict(ratio, MEMORY_TARGET)])
            targets.append([f"compiled peak memory, {options.memory_size}, {dtype}",
                            f"≤ {COMPILED_MEMORY_TARGET:g}x", f"{compiled:.2f}x",
                            verdict(compiled, COMPILED_MEMORY_TARGET)])
        md += table(["dtype", "numpy", "microtape", "ratio", "target", "kept tape", "ratio",
                     "compiled", "ratio", "target"], rows)

    if pieces is not None:
        lines, rows = user_path.section(*pieces)
        md += lines
        targets += rows

    if hvps:
        section, goals = hvp.section(hvps, hvp.numpy_threads())
        md += section
        targets += goals

    md += readme_table(record, steps)
    md += _profile_section(profiles or {})
    md += ["", "## Goals for speed and memory, met or missed", "",
           "The compiled step's goals are meant for OpenBLAS choosing its own kernel: compare "
           "them on the run made with `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` unset "
           "(`make bench` makes both runs).", ""]
    md += table(["target", "goal", "measured", ""], targets)
    met = sum(row[3] == "met" for row in targets)
    md += ["", f"{met} of {len(targets)} targets met."]
    return "\n".join(md) + "\n"


def _profile_section(profiles: dict[tuple[str, str], dict[str, list[float]]]) -> list[str]:
    """The eager step cut into phases (tape_profile.py), one table per size measured."""
    if not profiles:
        return []
    md = ["", "## The eager step, phase by phase", "",
          "One `mt.Tape(persistent=False)` step of microtape, cut where its work changes hands "
          "and read off the clock inside the step (median over rounds): each op as it runs and "
          "is recorded, then `tape.gradient` helper by helper (each VJP on its own, the sweep's "
          "own loop less its VJPs), then `SGD.step`. The last rows set each part beside the numpy "
          "closed form's, timed in the same rounds. The clock's own cost (about 0.1 µs a "
          "reading) is in every row, so the rows add up to a little more than the step above.",
          ""]
    rows = [row for (size, dtype), medians in profiles.items()
            for row in tape_profile.table(size, dtype, medians, fmt_time)]
    return md + table(["size", "phase", "median", "share of the step"], rows)


def quick_table(options: Options, steps: list[StepResult]) -> str:
    """--quick's output: each contender's median step beside numpy's, one row per size and dtype.

    Rounds this short measure the machine's mood as much as the code, so no goal
    is judged here; the full report, with the goals, is written to ``options.out``.
    """
    names = list(dict.fromkeys(name for res in steps for name in res.timings))
    rows = []
    for res in steps:
        base = res.timings["numpy"]
        cells = [fmt_time(base.median) if name == "numpy" else
                 f"{fmt_time(res.timings[name].median)} ({res.timings[name].ratio_to(base):.2f}x)"
                 if name in res.timings else "" for name in names]
        rows.append([f"{res.size} {SIZES[res.size]}", res.dtype, *cells])
    header = ["size (N, in, hidden, out)", "dtype", *(contenders.LABELS.get(n, n) for n in names)]
    return "\n".join([
        f"One SGD step, median of {options.rounds} short rounds, and its ratio to numpy's closed "
        f"form: a rough look, not a measurement (make bench measures and judges the goals).", "",
        *table(header, rows), "", f"Full report: {options.out}"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options, profile_size = parse(argv)
    if profile_size:
        print(profile(profile_size, options.dtypes[0]))
        return 0
    _QUIET[0] = options.quick
    found, missing = contenders.load(options.contenders)

    start = time.perf_counter()
    watch = machine.CpuWatch()
    record = machine.describe({name: contenders.version_of(name) for name in found})
    try:
        built, worst = build_and_check(options, found)
        if options.hvp_sizes:
            log(f"checking the Hessian-vector product at {', '.join(options.hvp_sizes)}")
        hvp_checked = hvp.check(options.hvp_sizes, options.hvp_peers)
    except agreement.DisagreementError as e:
        log(f"error: {e}", always=True)
        return 1
    steps = time_steps(options, built)
    del built
    floors = time_floors(options)
    profiles = {}
    for size in options.sizes:
        log(f"timing the eager step phase by phase at {size} {SIZES[size]}, {options.dtypes[0]}")
        profiles[size, options.dtypes[0]] = tape_profile.measure(
            size, options.dtypes[0], options.rounds, options.block_seconds)
    log("timing the per-op overhead")
    op = overhead.per_op(options.rounds, options.block_seconds)
    pieces = time_user_path(options)
    log(f"timing chains of {', '.join(f'{n:,}' for n in options.chains)} adds")
    chains = overhead.chains(options.chains, options.chain_budget)
    memory = {}
    if options.memory_size:
        log(f"measuring peak memory at {options.memory_size}")
        memory = {dtype: overhead.step_memory(options.memory_size, dtype) for dtype in options.dtypes}
    hvps = []
    if hvp_checked:
        log(f"timing the Hessian-vector product at {', '.join(options.hvp_sizes)}")
        hvps = hvp.measure(hvp_checked, options.rounds, options.block_seconds)
    text = report(options, argv, record, missing, worst, steps, op, chains, memory, floors,
                  time.perf_counter() - start, watch.shares(), pieces, hvps, profiles)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(options.out, text)
    print(quick_table(options, steps) if options.quick else text)
    log(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
