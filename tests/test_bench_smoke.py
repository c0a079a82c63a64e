"""The benchmark's harness runs: its correctness check, one tiny timing round, its table.

No timing is asserted (the machine is shared); this checks that ``make
bench`` would check the gradients, time both contenders and write every row.
"""

import importlib.util
import re

import numpy as np
import pytest

from tests.benchmarks import agreement, bench, contenders, machine, tape_profile, textbook, timing
from tests.benchmarks.problem import make_problem
from tests.benchmarks.timing import Timing

QUICK = ["--quick", "--sizes", "tiny", "--rounds", "1", "--block-ms", "1",
         "--contenders", "numpy,microtape,kept,compiled,fused,anomaly,torch-anomaly", "--chains", "100,1000", "--memory-size", "tiny"]


def test_quick_run_checks_times_and_writes_every_row(tmp_path, capsys):
    # Long on purpose: one run of the harness (the slow part) read section by section.
    out = tmp_path / "bench.md"
    assert bench.main([*QUICK, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    _quick_output_is_one_short_table(capsys.readouterr(), out)
    lines = text.splitlines()

    def rows(prefix):
        return [line for line in lines if line.startswith(prefix)]

    # One step row per dtype and contender, with positive times and a ratio.
    for dtype in ("float64", "float32"):
        for name in ("numpy", "microtape", "microtape kept tape", "microtape compiled",
                     "microtape fused", "microtape anomaly"):
            (row,) = rows(f"| tiny (20, 10, 5, 10) | {dtype} | {name} |")
            ratio = float(re.search(r"\| ([0-9.]+)x \|", row).group(1))
            assert ratio > 0
            error = float(row.split("|")[8])
            assert error <= agreement.TOLERANCE[np.dtype(dtype)]
        (tape_row,) = rows(f"| tiny (20, 10, 5, 10) | {dtype} | microtape |")
        assert "≤ 1.8x" in tape_row
        (compiled_row,) = rows(f"| tiny (20, 10, 5, 10) | {dtype} | microtape compiled |")
        assert "≤ 0.95x" in compiled_row and compiled_row.endswith("|  |")  # the user's: no build
        (fused_row,) = rows(f"| tiny (20, 10, 5, 10) | {dtype} | microtape fused |")
        assert "≤ 0.95x" in fused_row
        assert re.search(r"\| [0-9.]+ (µs|ms) \|$", fused_row)  # the one-off build cost
        # Anomaly mode's cost is read against the tape's own step (no goal at tiny).
        (anomaly_row,) = rows(f"| tiny (20, 10, 5, 10) | {dtype} | microtape anomaly |")
        assert float(re.search(r"\| ([0-9.]+)x microtape's step \|", anomaly_row).group(1)) > 0
        for name in ("numpy", "microtape"):
            assert len(rows(f"| tiny | {dtype} | {name} |")) == 1  # where the time goes
    assert not rows("| small")  # only the sizes asked for

    # The BLAS floor: one row per dtype, with the closed form's step beside it.
    floor = text.split("## The BLAS floor")[1].split("\n## ")[0]
    for dtype in ("float64", "float32"):
        (row,) = [line for line in floor.splitlines() if line.startswith(f"| tiny (20, 10, 5, 10) | {dtype} |")]
        assert "≤ 1.8x" in row and re.search(r"\| [0-9.]+x \|", row)  # a ratio; its size is for make bench, not a test

    assert len(rows("| forward + backward |")) == 1
    assert [line.split("|")[1].strip() for line in lines if re.match(r"\| [0-9,]+ \|", line)] == [
        "100", "1,000"]
    for dtype in ("float64", "float32"):
        (row,) = rows(f"| {dtype} | ")
        assert row.count("MiB") == 4  # numpy, microtape, the kept tape, the compiled step

    # The user's compiled step taken apart, each piece beside the work it wraps.
    pieces = text.split("## The compiled step as a user writes it, taken apart (tiny, float64)")[1]
    pieces = [line for line in pieces.split("\n## ")[0].splitlines() if line.startswith("| ")][2:]
    assert [line.split("|")[1].strip() for line in pieces] == [
        "the generated code (`cf.function`)", "the compiled call (`vg(*args)`)",
        "the compiled call, then `SGD.step(grads)`",
        "the fused step's generated code (`cf.step_function`)",
        "the compiled function's fused step (`vg._sgd_step`)",
        "`opt.step(vg, *args)` (SGD: the fused step)", "the fused step (`cf.sgd_step`)",
        "`SGD.step`", "`Adam.step`"]
    assert re.search(r"µs over the generated code \|$", pieces[1])
    assert re.search(r"µs over its generated code \|$", pieces[4])
    assert re.search(r"µs over its generated code, [-+][0-9.]+ µs per parameter over "
                     r"`vg._sgd_step` \|$", pieces[5])
    assert all(re.search(r"µs per parameter over numpy's [0-9.]+ µs \|$", line) for line in pieces[7:])

    # The README's table: one row per dtype, anomaly mode left out, the machine and BLAS named.
    readme = text.split("## The table for the README")[1].split("\n## ")[0]
    assert "BLAS: " in readme and "BLAS environment: " in readme and machine.cpu_model() in readme
    header, _, *table_rows = [line for line in readme.splitlines() if line.startswith("| ")]
    assert header.split(" | ")[2:] == ["numpy textbook", "microtape", "microtape kept tape",
                                       "microtape compiled", "microtape fused |"]
    assert [row.split(" | ")[1] for row in table_rows] == ["float64", "float32"]
    assert all(len(re.findall(r"\(([0-9.]+)x\)", row)) == 4 for row in table_rows)

    # The report speaks to a reader, not to the project's tracker.
    assert "issue" not in text.lower()
    section = lines[lines.index("## Goals for speed and memory, met or missed"):]
    targets = [line for line in section if line.startswith("| ")][2:]  # past header and rule
    names = [line.split("|")[1].strip() for line in targets]
    torch = importlib.util.find_spec("torch") is not None  # anomaly mode against PyTorch's

    def per_dtype(dtype):
        return [f"step, tiny, {dtype}", f"compiled step, tiny, {dtype}", f"fused step, tiny, {dtype}",
                f"building the closed form, tiny, {dtype}"] + (
                    [f"anomaly-mode step vs PyTorch's, tiny, {dtype}"] if torch else [])

    assert names == [*per_dtype("float64"), *per_dtype("float32"),
                     "per-op overhead (sigmoid, one element)", "chain per op, 1,000 vs 100 adds (flat)",
                     "peak memory, tiny, float64", "compiled peak memory, tiny, float64",
                     "peak memory, tiny, float32", "compiled peak memory, tiny, float32",
                     "compile=True call over its generated code, tiny, float64",
                     "compile=True fused step over its generated code, tiny, float64",
                     "opt.step(vg, *args) per parameter over that fused step, tiny, float64",
                     "SGD.step per parameter over its numpy, tiny, float64",
                     "Adam.step per parameter over its numpy, tiny, float64"]
    for line in targets:
        assert line.endswith("| met |") or line.endswith("| **missed** |")

    if importlib.util.find_spec("torch") is None:  # PyTorch's anomaly mode: said, not skipped
        (line,) = [line for line in lines if line.startswith("Not measured")]
        assert "torch-anomaly (ModuleNotFoundError" in line
    assert f"| numpy | {np.__version__}, BLAS: " in text
    assert "| thread pools |" in text


def _quick_output_is_one_short_table(captured, out):
    """--quick prints one row per size and dtype, every contender's time in it, and no
    goals: a rough look judges nothing (the full report is still written)."""
    printed = captured.out.splitlines()
    rows = [line for line in printed if line.startswith("| tiny (20, 10, 5, 10) |")]
    assert [row.split("|")[2].strip() for row in rows] == ["float64", "float32"]
    assert len(printed) <= 8 and printed[-1] == f"Full report: {out}"
    header = printed[printed.index(next(line for line in printed if line.startswith("| size")))]
    assert "| numpy |" in header and "| microtape |" in header and "| microtape compiled |" in header
    assert "missed" not in captured.out and "met" not in captured.out.split()
    assert all(re.search(r"\(\d+\.\d\dx\)", row) for row in rows)
    assert captured.err == ""  # no progress lines either


def test_a_contender_with_a_wrong_gradient_is_refused():
    problem = make_problem("tiny", "float64")

    class WrongBias(contenders.NumpyStep):
        def gradients(self):
            loss, grads = super().gradients()
            grads["b1"] = grads["b1"] * 1.001
            return loss, grads

    with pytest.raises(agreement.DisagreementError, match=r"WrongBias at tiny .*db1 differs"):
        agreement.check("WrongBias", WrongBias(problem), problem)


def test_a_step_that_does_not_update_is_refused():
    problem = make_problem("tiny", "float32")

    class NoUpdate(contenders.NumpyStep):
        def step(self):
            pass

    with pytest.raises(agreement.DisagreementError, match=r"after one step, W1 is off"):
        agreement.check("NoUpdate", NoUpdate(problem), problem)


def test_the_benchmark_stops_before_timing_when_a_contender_disagrees(monkeypatch, tmp_path, capsys):
    class Wrong(contenders.TapeStep):
        def gradients(self):
            loss, grads = super().gradients()
            return loss, {**grads, "W2": -grads["W2"]}

    monkeypatch.setitem(contenders.REQUIRED, "microtape", Wrong)
    out = tmp_path / "bench.md"
    assert bench.main([*QUICK, "--out", str(out)]) == 1
    assert "microtape at tiny (float64): dW2 differs" in capsys.readouterr().err
    assert not out.exists()


def test_the_numpy_baseline_is_the_closed_form_of_models(monkeypatch):
    """One closed form: the timed baseline and the reference are models.by_hand's."""
    from models import by_hand, closed_form_gradients
    problem = make_problem("tiny", "float64")
    loss, ref = textbook.reference(problem)
    by_models = closed_form_gradients(problem.params0, problem.x, problem.labels, reduction="sum")
    for name in ref:
        np.testing.assert_allclose(ref[name], by_models[name], rtol=1e-12, atol=1e-15)
    called = []
    for name in ("forward", "loss", "backward"):
        original = getattr(by_hand, name)
        monkeypatch.setattr(by_hand, name,
                            lambda *a, _f=original, _n=name: called.append(_n) or _f(*a))
    contenders.NumpyStep(problem).step()
    assert called == ["forward", "loss", "backward"]


def test_anomaly_mode_is_held_to_its_goal_over_the_tape_and_against_pytorch():
    def timing(median):
        return Timing(per_call=[median], calls_per_block=1)

    res = bench.StepResult("small", "float64", {
        "numpy": timing(1.0), "microtape": timing(2.0), "anomaly": timing(2.8),
        "torch-anomaly": timing(4.0)}, {}, [], None, {})
    row = [""] * 11
    targets = bench._anomaly_targets(res, "anomaly", row)
    assert row[6] == "1.40x microtape's step, ≤ 1.5x met"
    assert targets == [["anomaly-mode step, small, float64", "≤ 1.5x microtape's step", "1.40x", "met"],
                       ["anomaly-mode step vs PyTorch's, small, float64", "< 1x", "0.70x", "met"]]
    assert bench._anomaly_targets(res, "torch-anomaly", row) == []


def test_the_report_cuts_the_eager_step_into_phases(tmp_path):
    out = tmp_path / "bench.md"
    bench.main([*QUICK, "--out", str(out)])
    section = out.read_text(encoding="utf-8").split("## The eager step, phase by phase")[1]
    section = section.split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines()
            if line.startswith("| tiny float64 |")]
    assert [cells[1].strip() for cells in rows[:len(tape_profile.PHASES)]] == list(tape_profile.PHASES)
    assert all(re.fullmatch(r" [0-9.,]+ (µs|ms) ", cells[2]) for cells in rows[:len(tape_profile.PHASES)])
    parts = [cells[1].strip() for cells in rows[len(tape_profile.PHASES):]]
    assert parts == ["**forward with loss**: microtape against numpy",
                     "**gradients**: microtape against numpy", "**update**: microtape against numpy",
                     "**the step**: microtape against numpy"]
    assert not any(line.startswith("| tiny float32 |") for line in section.splitlines())


def test_the_profiled_step_is_the_tape_step_it_describes(monkeypatch):
    problem = make_problem("tiny", "float64")
    tape_profile.check(problem)  # the same ops recorded, the same gradients returned
    phases = tape_profile.TapePhases(problem).phases()
    assert len(phases) == len(tape_profile.PHASES) and min(phases) >= 0

    # A model that records another op, or a pass that calls another VJP, is caught.
    monkeypatch.setattr(tape_profile, "OPS", tape_profile.OPS[:-1] + (("log_softmax", "loss"),))
    with pytest.raises(AssertionError, match="TwoLayerNet.loss records"):
        tape_profile.check(problem)
    with pytest.raises(AssertionError, match="the pass calls 9 VJPs; the profile names 8"):
        tape_profile._timed(_plan_of(problem), [0.0] * 8)


def _plan_of(problem):
    import microtape as mt
    from microtape import tape as tape_module
    step = contenders.TapeStep(problem)
    with mt.Tape() as tape:
        step.net.loss(step.x, step.labels, reduction="sum")
    return tape_module._plan(tape.nodes, set(map(id, step.net.params.values())))[0]



def test_a_ratio_between_contenders_is_taken_round_by_round():
    # The machine ran at full speed, then at a third, then at half: in every
    # round the contender took twice numpy's time, and so says each round's ratio.
    numpy_step = Timing(per_call=[1.0, 3.0, 2.0], calls_per_block=1)
    contender = Timing(per_call=[2.0, 6.0, 4.0], calls_per_block=1)
    assert contender.ratio_to(numpy_step) == 2.0
    # One block that missed its round's slowdown (3.5 where the round's pace gave 6)
    # leaves the median of the rounds' ratios at 2; the ratio of medians reads 1.75.
    lucky = Timing(per_call=[2.0, 3.5, 4.0], calls_per_block=1)
    assert lucky.ratio_to(numpy_step) == 2.0
    assert lucky.median / numpy_step.median == 1.75
    with pytest.raises(ValueError, match="one interleave"):
        contender.ratio_to(Timing(per_call=[1.0], calls_per_block=1))


def test_what_a_call_adds_is_taken_pair_by_pair(monkeypatch):
    # A clock that moves only when the two functions run: a costs 5, b costs 2.
    now, pace, order = [0.0], [1.0], []

    def run(name, cost):
        def fn():
            order.append(name)
            now[0] += cost * pace[0]
            if len(order) % 2 == 0:  # after each pair, the machine changes pace: 1, 3, 1, ...
                pace[0] = 4.0 - pace[0]
        return fn

    a, b = run("a", 5.0), run("b", 2.0)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    differences = timing.paired(a, b, seconds=140.0)
    timed = order[-2 * len(differences):]  # the pairs, after calls_for's trial blocks
    assert timed[0::2] == ["b", "a"] * (len(differences) // 2)  # who goes first alternates
    # Each pair ran at one pace, so each difference is what a adds at that pace;
    # a block of a at pace 1 less a block of b at pace 3 would read 5 − 6 = −1.
    assert set(differences) == {3.0, 9.0}


@pytest.mark.parametrize("out, phrase", [("afile/report.txt", "afile is a file, so no folder"),
                                         ("folder", "is a folder; name a file in it")])
def test_a_report_path_that_cannot_be_written_is_refused_before_timing(out, phrase, tmp_path, capsys):
    # It was found only when the report was written, after all the timing
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exit_:
        bench.parse(["--quick", "--out", str(tmp_path / out)])
    assert exit_.value.code == 2 and phrase in capsys.readouterr().err
