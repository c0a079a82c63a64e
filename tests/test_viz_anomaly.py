"""viz.render_anomaly: the op that made the first NaN or Inf, drawn in red on its tape."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microtape as mt
import viz

from .test_viz_graph import needs_dot


class Anomaly(RuntimeError):
    """An error with mt.AnomalyError's attributes, made from a real tape without the mode."""

    def __init__(self, message: str, **attrs) -> None:
        super().__init__(message)
        self.__dict__.update(attrs)


def _pow_at_zero():
    """sqrt of a value that is 0: finite forward, Inf in pow's VJP."""
    with mt.Tape() as tape:
        w = mt.Tensor(np.array([[1.0, 0.0], [2.0, 3.0]]), name="w")
        a = mt.Tensor(np.array([1.0, 0.5]), name="a")
        y = (w * a) ** 0.5
        J = mt.sum(y * 3.0, name="J")
    node = tape.nodes[1]
    return Anomaly("pow made Inf in the backward pass: its VJP gave dA[0, 1] = inf",
                   op="pow", phase="backward", kind="Inf", index=(0, 1), input=0,
                   input_name=None, source="/home/me/train.py:9", tape=tape, node=node,
                   target=J, formula=node.op.formula,
                   values={"A": 0.0, "p": 0.5, "C": 0.0, "G": 3.0})


def _log_of_zero():
    with np.errstate(divide="ignore"), mt.Tape() as tape:
        x = mt.Tensor(np.array([1.0, 0.0, 2.0]), name="x")
        h = mt.log(x, name="logx")
        mt.sum(h * 2.0)
    node = tape.nodes[0]
    return Anomaly("log made Inf in the forward pass: C[1] = -inf", op="log", phase="forward",
                   kind="Inf", index=(1,), input=None, input_name=None,
                   source="/home/me/nb.py:3", tape=tape, node=node, target=None,
                   formula=node.op.formula, values={"A": 0.0, "C": -np.inf})


def _node_line(g, node_id: str) -> str:
    """Every statement about ``node_id``: build's, then the anomaly's restyling."""
    return "\n".join(line for line in g.body if line.lstrip().startswith(f"{node_id} ["))


def test_a_forward_anomaly_marks_the_op_and_its_bad_output_and_stops_there():
    err = _log_of_zero()
    g = viz.draw_anomaly(err)
    op = _node_line(g, "op0")
    assert "#c92a2a" in op and "made Inf in the forward pass at [1]" in op
    assert "A = 0, C = -inf" in op and "called at nb.py:3" in op
    assert "dA = G / A" in op                                    # the formula it applies
    assert "op1 [" not in g.source and "<B>sum</B>" not in g.source   # drawn up to the failing op
    assert "log made Inf in the forward pass" in g.source        # the message heads the drawing


def test_a_backward_anomaly_marks_the_gradients_path_from_the_target():
    err = _pow_at_zero()
    g = viz.draw_anomaly(err)
    red = [line.strip() for line in g.body if "->" in line and "#c92a2a" in line]
    # pow's output -> mul -> its output -> sum -> J: the way the gradient came down.
    assert [line.split(" [")[0] for line in red] == ["T2 -> op1", "T3 -> op2", "op2 -> T4",
                                                     "T4 -> op3", "op3 -> T5"]
    assert "dA holds Inf" in red[0] and "dashed" in red[0]        # the input whose gradient broke
    assert "its VJP made Inf in the gradient of" in _node_line(g, "op1")
    assert "input 0 at [0, 1]" in _node_line(g, "op1")
    assert "A = 0, p = 0.5" in _node_line(g, "op1")
    assert "grad" not in _node_line(g, "T0")                     # no half-finished gradients


def test_without_a_tape_the_op_is_drawn_with_its_inputs_and_output():
    err = _pow_at_zero()
    err.tape = None
    g = viz.draw_anomaly(err)
    assert [line.split(" [")[0].strip() for line in g.body if "->" in line] == ["T0 -> op0", "op0 -> T1"]
    with pytest.raises(TypeError, match="expected an mt.AnomalyError"):
        viz.draw_anomaly(ValueError("not one"))


@needs_dot
@pytest.mark.parametrize("make", [_log_of_zero, _pow_at_zero])
def test_render_anomaly_writes_svg_png_pdf_and_dot(tmp_path, make):
    err = make()
    svg = viz.render_anomaly(err, tmp_path / "anomaly.svg")
    ET.parse(svg)
    text = svg.read_text()
    assert err.op in text and err.kind in text
    assert viz.render_anomaly(err, tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert viz.render_anomaly(err, tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert "digraph" in viz.render_anomaly(err, tmp_path / "a.dot").read_text()
    with pytest.raises(ValueError, match="cannot tell the format"):
        viz.render_anomaly(err, tmp_path / "anomaly.txt")


def test_minus_infinity_keeps_its_sign_in_a_label():
    # It read "inf": the sign was dropped as if -inf were a negative number rounded to 0.
    from viz import labels as L
    assert L.number(-np.inf) == "-inf" and L.number(np.float32(-np.inf)) == "-inf"
    assert L.number(-1e-9) == "-1e-09" and L.number(-0.0) == "0"
