"""microtape.gradient_checking's finite differences: one routine, exact where it should be, used everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import math

import numpy as np
import pytest

import microtape as mt
from microtape.gradient_checking import central_differences, relative_error

ROOT = Path(__file__).resolve().parents[1]


def test_central_differences_of_a_quadratic_are_its_slopes_and_leave_the_array_as_it_was():
    a = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]])
    before = a.copy()
    ticks = []
    slopes = central_differences(lambda: float(np.sum(a ** 2)), a, [0, 4, 5], eps=1e-3,
                                 each=ticks.append)
    # A central difference of a quadratic has no truncation error: d(a²)/da = 2a.
    np.testing.assert_allclose(slopes, 2 * before.reshape(-1)[[0, 4, 5]], rtol=1e-9)
    np.testing.assert_array_equal(a, before)
    assert ticks == [1, 2, 3]


def test_central_differences_refuse_an_array_they_could_not_perturb_in_place():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="C-contiguous"):
        central_differences(lambda: 0.0, a.T, [0])
    a.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        central_differences(lambda: 0.0, a, [0])


def test_relative_error_is_scaled_by_the_larger_gradient():
    assert relative_error([1.0, 1e-12], [1.0, 2e-12]) == pytest.approx(1e-12)
    assert relative_error([2.0, 0.0], [1.0, 0.0]) == pytest.approx(0.5)
    assert relative_error([], []) == 0.0
    assert relative_error([0.0], [0.0]) == 0.0
    assert math.isnan(relative_error([1.0, np.nan], [1.0, 2.0]))
    assert math.isnan(relative_error([np.nan], [np.nan]))


def test_a_passing_report_never_shows_an_error_that_reads_as_a_failure():
    # Gradients near zero: tape and differences differ by ~1e-10, a large *relative*
    # error on those elements, yet far inside atol. The table's one number is the verdict.
    x = np.array([0.0, 1e-9, 2.0])
    report = mt.gradcheck(lambda x: mt.sum(x ** 3), [x])
    (check,) = report.inputs
    assert check.passed and check.max_rel_error > 1e-3 and check.tolerance_used < 1
    text = str(report)
    header, row = text.splitlines()[:2]
    assert "worst |error| / tolerance" in header and header.endswith("passed")
    assert "rel" not in text and f"{check.tolerance_used:.2g}" in row and row.endswith("yes")
    assert "a worst |error| / tolerance of at most 1 passes" in text


def test_a_function_that_is_nan_is_reported_as_nan():
    with pytest.raises(mt.GradcheckError) as info:
        mt.gradcheck(lambda w: mt.sum(w * np.nan), [np.ones(3)])
    message = str(info.value)
    assert "relative error:  nan" in message and "NaN is never within the tolerance" in message
    report = mt.GradcheckReport(inputs=[])
    from microtape.gradcheck_report import compare_elements
    check = compare_elements("w", (2,), np.arange(2), np.array([1.0, 0.0]),
                             np.array([1.0, np.nan]), 1e-5, 1e-8)
    report.inputs.append(check)
    assert not check.passed and check.worst_index == (1,)
    assert math.isnan(check.max_rel_error) and math.isnan(check.tolerance_used)
    assert math.isnan(report.max_rel_error) and "nan" in str(report)


def _defines_differences(path: Path) -> list[str]:
    """Functions in ``path`` that subtract two evaluations and divide by 2·eps themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            text = ast.unparse(node.right).replace(" ", "")
            if text in ("2*eps", "(2*eps)", "eps*2"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_finite_differences_are_written_once_in_the_project():
    sources = [p for folder in ("microtape", "models", "viz") for p in (ROOT / folder).glob("*.py")]
    sources += list((ROOT / "tests" / "benchmarks").glob("*.py"))
    written = [hit for p in sources for hit in _defines_differences(p)]
    assert [hit.split(":")[0] for hit in written] == ["microtape/gradient_checking.py"], (
        f"central differences written outside microtape.gradient_checking: {written}")


def test_gradcheck_takes_a_loss_of_one_element_of_any_shape():
    # float() of a (1,) array is refused by numpy 2.4: the check raised a TypeError
    report = mt.gradcheck(lambda a: mt.reshape(mt.sum(a * a), (1,)), [np.ones((3, 4))])
    assert report.passed


@pytest.mark.parametrize("layout", ["transposed", "broadcast", "strided"])
def test_gradcheck_and_assert_vjp_matches_take_inputs_of_any_memory_layout(layout):
    # They check a copy of each input, perturbed in place through a flat view of its memory;
    # the copy must be C-ordered whatever the input's layout (a transpose is Fortran-ordered).
    from microtape.testing import assert_vjp_matches
    A = np.random.default_rng(0).normal(size=(4, 6))
    given = {"transposed": A.T, "broadcast": np.broadcast_to(A[0, :3], (6, 3)),
             "strided": A[::2, ::2].T.copy(order="F")}[layout]
    assert mt.gradcheck(lambda a: mt.sum(mt.tanh(a)), [given]).passed
    assert_vjp_matches(mt.matmul, [given, np.ones((given.shape[1], 2))])
    assert_vjp_matches(mt.tanh, [given])
