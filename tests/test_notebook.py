"""The shipped notebook runs in a real Jupyter kernel, offline, and shows what it says;
it is stored with its outputs (``make notebook-outputs``).

Also the display hooks it relies on: a Tensor as an HTML table, a Tape (once
viz is imported) as an SVG drawing of its graph.
"""

from __future__ import annotations

import base64
import importlib.util
import re
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


def _executor():
    """notebooks/execute.py, the script behind ``make notebook-outputs``, as a module."""
    spec = importlib.util.spec_from_file_location("notebook_execute", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fitted_svg(html: str) -> str:
    """The SVG inside a drawing's HTML output, which must fit the output area's width."""
    assert html.startswith("<img ") and 'style="max-width: 100%; height: auto"' in html
    [data] = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    return base64.b64decode(data).decode("utf-8")


def _numbers_after(text: str, marker: str) -> np.ndarray:
    line = next(ln for ln in text.splitlines() if marker in ln)
    return np.fromstring(line.split(marker)[1].strip(" []"), sep=" ")


@pytest.mark.slow
def test_the_first_hour_notebook_runs_in_a_kernel_and_shows_tables_graph_and_checks(tmp_path):
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program draws the tape")
    copy = tmp_path / NOTEBOOK.name           # run where the notebook's outputs cannot land
    copy.write_bytes(NOTEBOOK.read_bytes())
    nb = _executor().execute(copy)            # raises CellExecutionError on any error
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
    # "small enough to read every number": no array of the batch is summarised.
    assert "‖·‖" not in svg and "min " not in svg
    assert _fitted_svg(code[3]["text/html"]) == svg  # and it fits the output's width
    assert "gradient" in code[4]["text/html"]       # h, with its gradient set by backward
    report = code[5]["stdout"]
    assert report.count(" yes") == 4 and " NO" not in report and "rtol=" in report
    assert "the tape agrees with the closed form" in code[6]["stdout"]
    assert "exp made Inf in the forward pass" in code[7]["stdout"]   # one anomaly, drawn
    drawn = code[7]["image/svg+xml"]
    assert "</svg>" in drawn and "#c92a2a" in drawn and "made Inf in the forward" in drawn
    _check_derivatives_of_derivatives(code[8:])
    # The stored notebook holds the outputs this run made: same cells, same kinds.
    stored = nbformat_read(NOTEBOOK)
    assert [_kinds(c) for c in stored.cells] == [_kinds(c) for c in nb.cells]


def _check_derivatives_of_derivatives(code: list[dict[str, str]]) -> None:
    """The notebook's last section: the chain of Jacobians, the Hessian, a drawn backward pass."""
    chain = code[0]["stdout"]
    errors = [float(ln.rsplit("=", 1)[1]) for ln in chain.splitlines() if "hand formula" in ln]
    assert len(errors) == 5 and max(errors) < 1e-12, chain
    np.testing.assert_allclose(_numbers_after(chain, "the chain's product:"),
                               _numbers_after(chain, "the tape's dJ/dx:"), rtol=1e-10)
    hessian = code[1]["stdout"]
    assert "Hessian (4, 3, 4, 3)" in hessian
    assert all(float(ln.rsplit("=", 1)[1]) < 1e-12 for ln in hessian.splitlines() if "=" in ln)
    second = code[2]["stdout"]
    for derivative in ("σ'(t0):", "σ''(t0):"):
        block = second.split(derivative)[1]
        np.testing.assert_allclose(_numbers_after(block, "tape"), _numbers_after(block, "hand"),
                                   rtol=1e-10)
    assert "backward of sigmoid #0 → dA (for t0)" in code[2]["image/svg+xml"]
    _fitted_svg(code[2]["text/html"])


def nbformat_read(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def _kinds(cell) -> list[tuple[str, tuple[str, ...]]]:
    return [(o.output_type, tuple(sorted(o.get("data", {})))) for o in cell.get("outputs", [])]


def test_the_notebook_is_stored_with_its_outputs_and_nothing_that_changes_between_runs():
    pytest.importorskip("nbformat")
    nb = nbformat_read(NOTEBOOK)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code), "run `make notebook-outputs` to store the outputs"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    text = NOTEBOOK.read_text(encoding="utf-8")
    for changing in (" at 0x", "ipykernel_", str(ROOT), '"execution":'):
        assert changing not in text, changing
    # Every drawing also comes as an image that fits the output area.
    drawings = [o for c in code for o in c.outputs if "image/svg+xml" in o.get("data", {})]
    assert len(drawings) == 3
    for output in drawings:
        assert _fitted_svg(output.data["text/html"]) == output.data["image/svg+xml"]


def test_the_executor_replaces_only_what_changes_from_run_to_run(tmp_path):
    steady = _executor().steady
    root = tmp_path / "checkout"
    assert steady("<graphviz.graphs.Digraph at 0x7f5664706a10>", root) == \
        "<graphviz.graphs.Digraph>"
    assert steady("  called at /tmp/ipykernel_31769/3752379373.py:3", root) == \
        "  called at <cell>.py:3"
    assert steady(f"{root}/microtape/ops.py:417: RuntimeWarning", root) == \
        "microtape/ops.py:417: RuntimeWarning"
    kept = "J = 1.0637462855223943 at 0.5 (x0, y0) /tmp/other/file.py"
    assert steady(kept, root) == kept


def test_the_executor_stores_printed_text_however_the_kernel_split_it():
    joined = _executor()._joined_streams

    def stream(name, text):
        return {"output_type": "stream", "name": name, "text": text}

    picture = {"output_type": "execute_result", "data": {"text/plain": "<drawing>"}}
    split = [stream("stdout", "a\n"), stream("stderr", "warning\n"), stream("stdout", "b\n"),
             picture, stream("stdout", "c\n")]
    assert joined(split) == [stream("stdout", "a\nb\n"), stream("stderr", "warning\n"), picture,
                             stream("stdout", "c\n")]
    assert joined([stream("stdout", "a\nb\n"), stream("stderr", "warning\n"), picture,
                   stream("stdout", "c\n")]) == joined(split)


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
    import graphviz
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
            formatters = {"image/svg+xml": Formatter(), "text/html": Formatter()}

    assert viz.notebook.register(Shell()) is True
    assert Shell.display_formatter.formatters["image/svg+xml"].types[mt.Tape] is notebook.tape_svg
    as_html = Shell.display_formatter.formatters["text/html"].types
    assert as_html[mt.Tape](tape) is None                          # still no dot: no image
    other = graphviz.Digraph("mine")
    assert as_html[graphviz.Digraph](other) is None                # not viz's: left alone
    monkeypatch.undo()
    if shutil.which("dot"):
        drawing = viz.draw_graph(tape)
        assert _fitted_svg(as_html[graphviz.Digraph](drawing)) == drawing.pipe(
            format="svg", encoding="utf-8")
        assert _fitted_svg(as_html[mt.Tape](tape)) == notebook.tape_svg(tape)
    assert notebook.register() is False     # no IPython running in this process


def test_every_cell_of_the_notebook_has_an_id():
    # nbformat 4.5 requires one; without it Jupyter rewrites the file on open
    # and nbformat warns that it will become an error.
    import json
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    ids = [c.get("id") for c in cells]
    assert all(ids) and len(set(ids)) == len(ids), ids
