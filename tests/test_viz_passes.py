"""Drawings and step pages of a tape that recorded a backward pass (create_graph=True):
each op a VJP ran sits in a frame naming that VJP, and the captions say the same."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microtape as mt
import viz
from viz.example import two_layer
from viz.steps import backward_walk
from viz.tapeview import TapeView

from .test_viz_graph import SVG, by_name, needs_dot, svg_nodes, tooltip_array
from .test_viz_steps import page_parts


def second_derivative_tape():
    """z = Σ d/dx Σ x³ recorded on ``outer``: the user's pow #0 and sum #1, the VJPs
    of sum #1 and of pow #0 recorded by the inner backward pass, and the user's sum."""
    x = mt.Tensor(np.array([0.5, -1.0, 2.0]), name="x")
    with mt.Tape() as outer:
        with mt.Tape() as inner:
            y = mt.sum(x ** 3, name="y")
        (dx,) = inner.gradient(y, [x], create_graph=True)
        z = mt.sum(dx, name="z")
    return outer, x, z


def third_derivative_tape():
    """w = Σ (d/dx Σ d/dx Σ x³)², each backward pass recorded by the tapes around it."""
    x = mt.Tensor(np.array([0.5, -1.0, 2.0]), name="x")
    with mt.Tape() as third:
        with mt.Tape() as outer:
            with mt.Tape() as inner:
                y = mt.sum(x ** 3, name="y")
            (dx,) = inner.gradient(y, [x], create_graph=True)
            z = mt.sum(dx, name="z")
        (ddx,) = outer.gradient(z, [x], create_graph=True)
        w = mt.sum(ddx * ddx, name="w")
    return third, x, w


def _box(el) -> tuple[float, float, float, float]:
    """The bounding box (left, top, right, bottom) of an SVG group's outline."""
    numbers = []
    for shape in el.iter():
        if shape.tag in (f"{SVG}polygon", f"{SVG}path"):
            numbers += [float(v) for v in re.findall(r"-?\d+\.?\d*", shape.get("points")
                                                     or shape.get("d"))]
            break
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def frames_and_boxes(svg: bytes) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """The frames (their label -> box) and the nodes (DOT id -> box) of a drawing."""
    frames, nodes = {}, {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") == "cluster":
            frames[" ".join(t.text for t in g.iter(f"{SVG}text"))] = _box(g)
        elif g.get("class") == "node":
            nodes[g.find(f"{SVG}title").text] = _box(g)
    return frames, nodes


def inside(box, frame) -> bool:
    return box[0] >= frame[0] and box[1] >= frame[1] and box[2] <= frame[2] and box[3] <= frame[3]


def frames_holding(svg: bytes, node_id: str) -> list[str]:
    frames, nodes = frames_and_boxes(svg)
    return [label for label, box in frames.items() if inside(nodes[node_id], box)]


def expected_frame(view, node) -> str | None:
    """What the frame of ``node`` should say, read from the tape's own record; the input
    is named as the view names it, when it is drawn."""
    if node.origin is None:
        return None
    forward, i = node.origin
    index = next(j for j, n in enumerate(view.tape.nodes) if n is forward)
    letter = "AB"[i]                        # pow, sum and mul: the formula's A and B
    x = view.tensors.get(id(forward.inputs[i]))
    return f"backward of {forward.op.name} #{index} → d{letter}" + \
        (f" (for {x.name})" if x is not None else "")


@needs_dot
@pytest.mark.parametrize("whole_tape", [False, True])
def test_each_op_a_backward_pass_recorded_sits_in_the_frame_of_its_vjp(whole_tape):
    tape, x, z = second_derivative_tape()
    view = TapeView(tape, None if whole_tape else z)
    svg = viz.draw_graph(tape, None if whole_tape else z).pipe(format="svg")
    expected = {}
    for k, node in enumerate(view.nodes):
        frame = expected_frame(view, node)
        for node_id in (f"op{view.indices[k]}", view.info(node.output).node_id):
            assert frames_holding(svg, node_id) == ([frame] if frame else []), (node_id, frame)
        expected.setdefault(frame, []).append(node.op.name)
    # The inner backward pass: sum's VJP (a broadcast), pow's (3 x², times G).
    [of_sum] = [f for f in expected if f and f.startswith("backward of sum #1 → dA")]
    assert expected[of_sum] == ["broadcast_to"]
    assert sorted(expected["backward of pow #0 → dA (for x)"]) == ["mul", "mul", "pow"]
    assert expected[None] == (["pow", "sum", "sum"] if whole_tape else ["sum"])
    # Leaves (x, the seed) sit in no frame, and the legend explains the frames.
    assert frames_holding(svg, view.info(x).node_id) == []
    assert "teal frame: ops a recorded backward pass ran" in svg.decode()


@needs_dot
def test_the_backward_of_a_backward_op_says_its_order():
    tape, x, w = third_derivative_tape()
    view = TapeView(tape, w)
    svg = viz.draw_graph(tape, w).pipe(format="svg")
    frames, _ = frames_and_boxes(svg)
    second = {label for label in frames if label.endswith(", 2nd order")}
    assert second, frames
    for k, node in enumerate(view.nodes):
        [frame] = frames_holding(svg, f"op{view.indices[k]}") or [None]
        of_a_backward_op = node.origin is not None and node.origin[0].origin is not None
        assert (frame in second) == of_a_backward_op, (node, frame)


def test_a_drawing_without_a_recorded_backward_pass_has_no_frames():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss, params=net.params)
    assert "cluster" not in g.source and "teal frame" not in g.source


def test_a_forward_op_recorded_on_another_tape_is_named_without_a_number():
    x = mt.Tensor(np.array([0.5, -1.0]), name="x")
    with mt.Tape() as inner:
        y = mt.sum(mt.exp(x), name="y")
    with mt.Tape() as outer:          # records the backward pass only
        (dx,) = inner.gradient(y, [x], create_graph=True)
        z = mt.sum(dx, name="z")
    source = viz.draw_graph(outer, z).source
    # exp's VJP reads exp's output, drawn as a leaf here, and never x.
    e = TapeView(outer, z).info(inner.nodes[0].output).name
    assert f"backward of sum (recorded on another tape) → dA (for {e})" in source
    assert "backward of exp (recorded on another tape) → dA>" in source


def test_step_captions_name_the_vjp_each_recorded_op_belongs_to():
    tape, x, z = second_derivative_tape()
    view = TapeView(tape, z)
    tape.backward(z)
    walk = backward_walk(view)
    order = [k for k in range(len(view.nodes) - 1, -1, -1)]
    assert walk.steps == len(order) == 5
    x_name = view.info(x).name
    for step, k in enumerate(order, start=1):
        node, caption = view.nodes[k], walk.captions[step]
        assert caption.startswith(f"Step {step} of 5: {node.op.name} #{view.indices[k]}")
        frame = expected_frame(view, node)
        if frame is None:
            assert "recorded by a backward pass" not in caption
        else:
            forward_op = frame.split(" → ")[0].removeprefix("backward of ")
            of_x = f" ({x_name})" if f"(for {x_name})" in frame else ""
            assert (f"#{view.indices[k]}, recorded by a backward pass, in the VJP of "
                    f"{forward_op} for dA{of_x}, takes G = ") in caption
        assert walk.equations[step]                      # every step shows what it applies
    assert "4 of these ops were recorded by a backward pass" in walk.captions[0]
    assert "in 2 VJPs (the teal frames)" in walk.captions[0]


@needs_dot
def test_the_step_page_of_a_third_derivative_draws_its_frames_and_every_caption(tmp_path):
    tape, x, w = third_derivative_tape()
    index = viz.render_backward_steps(tape, w, tmp_path / "steps")
    _, data, svg = page_parts(index)
    walk = backward_walk(TapeView(tape, w))
    assert data["frames"] == walk.frames == walk.steps + 2
    assert data["captions"] == walk.captions and all(data["equations"][1:-1])
    frames, nodes = frames_and_boxes(svg)
    assert any(label.endswith("2nd order") for label in frames)
    assert set(data["ops"]) <= set(nodes)          # every op the page steps through is drawn
    assert x.grad is None                                # the page leaves .grad alone
    np.testing.assert_allclose(tooltip_array(by_name(svg_nodes(svg), "x")["tooltip"], "grad"),
                               72 * x.value)     # w = Σ (6x)², so dw/dx = 72x
