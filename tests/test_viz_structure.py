"""viz's layers: the tape view only reads, the step page keeps its notions to
itself, and one helper writes every HTML-like table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import viz
import viz.graph
import viz.legend
import viz.steps
import viz.tapeview
from viz import labels as L
from viz.example import two_layer
from viz.graph import Options, attach_gradients, build
from viz.tapeview import TapeView

VIZ = Path(viz.__file__).resolve().parent


def test_the_tape_view_only_reads():
    m = two_layer()
    TapeView(m.tape, m.loss)
    assert all(p.grad is None for p in m.params.values())   # no backward pass ran
    source = inspect.getsource(viz.tapeview)
    assert ".backward(" not in source and not hasattr(viz.tapeview, "ensure_gradients")


def test_the_drawing_knows_no_step_page():
    assert "steps" not in inspect.signature(build).parameters
    assert "steps" not in inspect.signature(viz.legend.legend_label).parameters
    for module in (viz.graph, viz.legend):
        assert "has not reached" not in inspect.getsource(module)   # the page's own sentence


def test_a_page_adds_ids_links_and_legend_notes_only_when_asked():
    m = two_layer()
    view = TapeView(m.tape, m.loss)
    attach_gradients(view)
    plain = build(view, Options()).source
    page = build(view, Options(), page=viz.steps.STEP_PAGE).source
    assert " id=" not in plain and "_grad" not in plain and "not yet" not in plain
    assert ' id=T0' in page and 'ID="T0_grad"' in page and "not yet" in page


def test_one_helper_writes_every_html_table():
    writers = {path.name for path in VIZ.glob("*.py") if re.search(r"<TABLE", path.read_text())}
    assert writers == {"labels.py"}
    assert L.table(["<TR><TD>x</TD></TR>"], spacing=2, padding=1, bgcolor="#fff", label=True) == (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="1" BGCOLOR="#fff">'
        '<TR><TD>x</TD></TR></TABLE>>')
    assert L.table([]) == '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0"></TABLE>'
