"""viz.render_anomaly: the op that made the first NaN or Inf, drawn in red on its tape."""

from __future__ import annotations

import shutil
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
    assert ">log #0</FONT>" in op                                # the op number, spaced
    assert "op1 [" not in g.source and ">sum #" not in g.source    # drawn up to the failing op
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


def _real_backward_anomaly():
    x = mt.Tensor(np.array([1.0, 0.0, 4.0]), name="x")
    with np.errstate(divide="ignore"), pytest.raises(mt.AnomalyError) as info:
        with mt.detect_anomaly(), mt.Tape() as tape:
            J = mt.sum(x ** 0.5 * 3.0, name="J")
            tape.gradient(J, x)
    return info.value, tape, J


def test_a_real_backward_anomaly_is_drawn_from_its_own_tape():
    err, tape, J = _real_backward_anomaly()
    assert err.tape is tape and err.target is J
    g = viz.draw_anomaly(err)
    op = _node_line(g, "op0")
    assert "its VJP made Inf" in op and "A = 0, p = 0.5" in op
    assert "called at test_viz_anomaly.py:" in op
    assert sum("#c92a2a" in line for line in g.body if "->" in line) == 5   # x->pow, then to J


def test_a_real_forward_anomaly_is_drawn_up_to_the_op_that_made_it():
    x = mt.Tensor(np.array([1.0, 0.0]), name="x")
    with np.errstate(divide="ignore"), pytest.raises(mt.AnomalyError) as info:
        with mt.detect_anomaly(), mt.Tape():
            mt.sum(mt.log(x) * 2.0)
    g = viz.draw_anomaly(info.value)
    assert "made Inf in the forward pass at [1]" in _node_line(g, "op0")
    assert "op1 [" not in g.source


class _Shell:
    """The parts of IPython's shell that viz.notebook uses."""

    class display_formatter:
        class _Formatter:
            def for_type(self, cls, f):
                pass
        formatters = {"image/svg+xml": _Formatter(), "text/html": _Formatter()}

    def __init__(self):
        self.handler, self.shown = None, []
        shell = self

        class Publisher:
            def publish(self, data, metadata=None):
                shell.shown.append(("display", data))
        self.display_pub = Publisher()

    def set_custom_exc(self, types, handler):
        self.types, self.handler = types, handler

    def showtraceback(self, exc_tuple=None, tb_offset=None):
        self.shown.append(("traceback", exc_tuple[1]))


@needs_dot
def test_in_jupyter_the_error_shows_its_traceback_then_its_drawing():
    from viz import notebook
    shell = _Shell()
    assert notebook.register(shell) and shell.types == (mt.AnomalyError,)
    err, _, _ = _real_backward_anomaly()
    shell.handler(shell, type(err), err, err.__traceback__)   # as IPython calls it
    (kind, shown), (then, data) = shell.shown
    assert kind == "traceback" and shown is err and then == "display"
    svg = data["image/svg+xml"]
    assert "</svg>" in svg and "pow" in svg and "Inf" in svg
    assert data["text/html"] == notebook.fitted(svg)      # the same drawing, fitted to the width


def test_the_readme_example_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## When a NaN appears")[1]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    monkeypatch.chdir(tmp_path)                   # the example writes anomaly.svg here
    with np.errstate(divide="ignore"):
        exec(compile(code, "my_script.py", "exec"), {})
    printed = capsys.readouterr().out
    assert printed == shown
    assert (tmp_path / "anomaly.svg").exists() or shutil.which("dot") is None


@needs_dot
def test_the_step_page_stops_on_the_frame_where_the_anomaly_appears(tmp_path):
    err, tape, J = _real_backward_anomaly()
    with np.errstate(divide="ignore"):
        page = viz.render_backward_steps(tape, J, tmp_path).read_text(encoding="utf-8")
    # The pass is played up to pow, whose VJP made the Inf, and no further.
    assert "Step 3 of 3: pow #0 takes G = dJ/dpow_, and its VJP makes Inf in dJ/dx at [1]" in page
    assert "Stopped at step 3: pow made Inf" in page and "Done:" not in page
    assert '"counters":["forward pass","step 1 of 3","step 2 of 3","step 3 of 3","stopped"]' in page
    assert "sends back dJ/dx" not in page
    # The gradients it had finished are the page's: no .grad was set from them.
    assert all(t.grad is None for n in tape.nodes for t in (*n.inputs, n.output)
               if isinstance(t, mt.Tensor))


def test_the_stopped_pass_keeps_only_the_gradients_it_had_finished():
    _, tape, J = _real_backward_anomaly()
    with np.errstate(divide="ignore"), pytest.raises(mt.AnomalyError) as info:
        tape.backward(J)                                   # keeps every visited op's output
    err = info.value
    reached = {id(n.output) for n in tape.nodes}          # sum, mul and pow were visited
    assert set(err.gradients) == reached
    assert np.all(err.gradients[id(tape.nodes[0].output)] == 3.0)   # pow's own G


def test_the_bad_edge_names_the_input_as_the_message_does():
    # err.input counted einsum's subscripts, and the drawing called the operand 'arg 1'
    x = mt.Tensor(np.array([1e-10, 1.0]), name="x")
    y = mt.Tensor(np.array([1e10, 1.0]), name="y")
    with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
        with mt.detect_anomaly(), mt.Tape() as tape:
            loss = mt.sum(mt.einsum("i,i->i", x, y) * 1e300)  # G = 1e300: dA_0 = G y overflows
            tape.gradient(loss, [x, y])
    err = caught.value
    assert (err.op, err.phase, err.input, err.input_name) == ("einsum", "backward", 0, "x")
    assert "its VJP gave dA_0[0] = inf (the gradient of input 0, 'x')" in str(err)
    assert "A_0 · dA_0 holds Inf" in viz.draw_anomaly(err).source


def test_on_a_spent_tape_the_failing_op_s_output_is_not_called_the_loss():
    # a spent tape keeps the failing op alone, and its output was drawn as the loss (the
    # legend's "the target, seeded with gradient 1"), which it is not: its G came from J
    x = mt.Tensor(np.array([4.0, 0.0]), name="x")
    with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
        with mt.detect_anomaly(), mt.Tape(persistent=False) as tape:
            tape.gradient(mt.sum(mt.sqrt(x) * 3.0), x)
    assert caught.value.op == "sqrt" and tape.spent
    drawn = [line for line in viz.draw_anomaly(caught.value).body
             if not line.lstrip().startswith("legend")]
    assert not any("loss (2,)" in line or "#ffe3b3" in line for line in drawn)
