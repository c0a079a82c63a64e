"""The shipped notebook runs in a real Jupyter kernel, offline, and shows what it says.

Also the display hooks it relies on: a Tensor as an HTML table, a Tape (once
viz is imported) as an SVG drawing of its graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import microtape as mt

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "first_hour.ipynb"


def _outputs(cell) -> dict[str, str]:
    """mime type -> the text of that output (stream text under 'stdout')."""
    found: dict[str, str] = {}
    for out in cell.outputs:
        if out.output_type == "stream":
            found["stdout"] = found.get("stdout", "") + out.text
        for mime, data in out.get("data", {}).items():
            found[mime] = data if isinstance(data, str) else "".join(data)
    return found


@pytest.mark.slow
def test_the_first_hour_notebook_runs_in_a_kernel_and_shows_tables_graph_and_checks(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program draws the tape")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "ship the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError on any error
    code = [_outputs(c) for c in nb.cells if c.cell_type == "code"]
    for outputs in code:
        assert "error" not in outputs

    # W1 as a table: its name, shape and 3 rows of 5 numbers.
    assert "<table" in code[0]["text/html"] and "<b>W1</b>" in code[0]["text/html"]
    assert code[0]["text/html"].count("<tr>") == 3
    assert "<Tape of 6 ops>" in code[1]["stdout"]
    tape_rows, closed_rows = code[2]["stdout"].splitlines()
    np.testing.assert_allclose(np.fromstring(tape_rows.split(":")[1].strip(" []"), sep=" "),
                               np.fromstring(closed_rows.split(":")[1].strip(" []"), sep=" "),
                               rtol=1e-6)
    svg = code[3]["image/svg+xml"]                  # the tape, drawn
    assert svg.lstrip().startswith(("<?xml", "<svg", "<!--")) and "</svg>" in svg
    for name in ("W1", "b1", "W2", "b2", "sigmoid", "softmax_cross_entropy"):
        assert name in svg
    assert 'title="x: data (4, 3)' in svg and 'title="W1: parameter (3, 5)' in svg
    assert "gradient" in code[4]["text/html"]       # h, with its gradient set by backward
    report = code[5]["stdout"]
    assert report.count(" yes") == 4 and " NO" not in report and "rtol=" in report
    assert "the tape agrees with the closed form" in code[6]["stdout"]
    assert "exp made Inf in the forward pass" in code[7]["stdout"]   # one anomaly, drawn
    drawn = code[7]["image/svg+xml"]
    assert "</svg>" in drawn and "#c92a2a" in drawn and "made Inf in the forward" in drawn


def test_a_tensor_shows_as_a_compact_table():
    t = mt.Tensor(np.arange(200.0).reshape(20, 10) - 100, name="W<1>")
    page = t._repr_html_()
    assert "<b>W&lt;1&gt;</b>" in page and "shape (20, 10), float64, no gradient yet" in page
    assert page.count("<tr>") == 7 and page.count("…") == 7 + 6   # 3 + gap + 3 rows and columns
    assert ">-100<" in page and ">99<" in page and ">-50<" not in page   # corners, not the middle
    t.grad = -np.zeros((20, 10))
    page = t._repr_html_()
    assert "gradient" in page and "-0" not in page
    assert page.count("<table") == 2
    assert mt.Tensor(2.5)._repr_html_().count("<td") == 1


def test_viz_draws_a_tape_for_ipython_and_degrades_without_dot(monkeypatch):
    viz = pytest.importorskip("viz")
    from viz import notebook

    x = mt.Tensor(np.ones((2, 3)), name="x")
    W = mt.Tensor(np.ones((3, 2)), name="W")
    with mt.Tape() as tape:
        mt.softmax_cross_entropy(x @ W, np.array([0, 1]))
    if shutil.which("dot"):
        assert "</svg>" in notebook.tape_svg(tape)
    monkeypatch.setenv("PATH", "")          # no dot: IPython shows the text repr instead
    assert notebook.tape_svg(tape) is None

    class Formatter:
        def __init__(self):
            self.types = {}

        def for_type(self, cls, f):
            self.types[cls] = f

    class Shell:
        class display_formatter:
            formatters = {"image/svg+xml": Formatter()}

    assert viz.notebook.register(Shell()) is True
    assert Shell.display_formatter.formatters["image/svg+xml"].types[mt.Tape] is notebook.tape_svg
    assert notebook.register() is False     # no IPython running in this process


def test_every_cell_of_the_notebook_has_an_id():
    # nbformat 4.5 requires one; without it Jupyter rewrites the file on open
    # and nbformat warns that it will become an error.
    import json
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    ids = [c.get("id") for c in cells]
    assert all(ids) and len(set(ids)) == len(ids), ids
