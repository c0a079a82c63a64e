"""What the README says about return types, branching and timings holds for the code as it is."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import microtape as mt

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
TEXT = re.sub(r"\s+", " ", README)  # sentences, whatever the line breaks


def test_tape_gradient_returns_arrays_as_the_readme_says():
    assert ("`tape.gradient(target, sources, seed=None)` returns the gradients as numpy arrays"
            in TEXT)
    assert "Tensors only with `create_graph=True`" in TEXT
    x = mt.Tensor(np.array([0.5, -1.0]), name="x")
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x) * x)
    assert type(tape.gradient(y, x)) is np.ndarray
    assert all(type(g) is np.ndarray for g in tape.gradient(y, [x, x]))
    assert type(tape.gradient(y, {"x": x})["x"]) is np.ndarray
    assert isinstance(tape.gradient(y, x, create_graph=True), mt.Tensor)


def test_the_closed_form_returns_arrays_as_the_readme_says():
    assert "`cf(**arrays)` returns `(value, gradients)` as numpy arrays" in TEXT
    x = mt.Tensor(np.array([0.5, -1.0]), name="x")
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x) * x)
    for sources, kind in ((x, np.ndarray), ([x], list), ({"x": x}, dict)):
        value, grads = tape.closed_form(y, sources)()
        assert type(value) is np.ndarray and type(grads) is kind
        leaves = list(grads.values()) if kind is dict else grads if kind is list else [grads]
        assert all(type(g) is np.ndarray for g in leaves)


def test_the_branching_advice_works_as_written():
    assert "Without `compile=True` each call is recorded afresh, so such a" in TEXT
    assert "`mt.where(mt.is_positive(t), t, 0.1 * t)` is recorded" in TEXT

    def compares(x):
        t = mt.sum(x)
        return t * 2.0 if t > 0 else t * 3.0   # a branch on a comparison, as the README shows

    np.testing.assert_array_equal(mt.grad(compares)(np.ones(2)), [2.0, 2.0])
    np.testing.assert_array_equal(mt.grad(compares)(-np.ones(2)), [3.0, 3.0])
    with pytest.raises(mt.TraceError, match=r"a comparison \(>\)") as info:
        mt.grad(compares, compile=True)(np.ones(2))
    assert "mt.where(mt.is_positive(a - b), x, y)" in str(info.value)

    def leaky(x):   # the per-element choice, written with ops, compiles
        return mt.sum(mt.where(mt.is_positive(x), x, 0.1 * x))

    x = np.array([2.0, -1.0])
    np.testing.assert_allclose(mt.grad(leaky, compile=True)(x), [1.0, 0.1])
    np.testing.assert_allclose(mt.grad(leaky, compile=True)(-x), [0.1, 1.0])


def test_the_training_timings_come_from_named_measured_runs():
    from models.train import DEFAULT_EPOCHS

    (paragraph,) = [p for p in README.split("\n\n") if "default run reaches" in p]
    text = " ".join(paragraph.split())
    # Ranges from runs said to be measured, on a named machine: never "about 0.12 s".
    assert re.search(r"the steps took [\d.]+–[\d.]+ s", text)
    assert re.search(r"the whole command, .*took [\d.]+–[\d.]+ s", text)
    assert "five runs of the default command" in text and "Intel Xeon" in text
    assert ("no other load" in text or "load average" in text) and not re.search(r"about [\d.]+ s", text)
    steps = int(re.search(r"after ([\d,]+) steps", text).group(1).replace(",", ""))
    assert steps == math.ceil(1438 / 32) * DEFAULT_EPOCHS["digits"]  # batches of 32, 30 epochs
