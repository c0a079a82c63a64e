"""viz.render_backward_steps: one drawing, a forward frame, one frame per op, a final frame."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import microtape as mt
import viz
import viz.steps
from viz import labels as L
from viz.example import two_layer
from viz.steps import backward_walk
from viz.tapeview import TapeView

from .test_viz_graph import SVG, by_name, needs_dot, svg_nodes, tooltip_array


def walk_of(tape, loss, **kw):
    view = TapeView(tape, loss, kw.pop("params", None))
    tape.backward(loss)
    ids = {info.node_id: info.name for info in view.tensors.values()}
    return backward_walk(view, **kw), ids


def page_parts(index) -> tuple[str, dict, bytes]:
    """The page's HTML, its frame data and its one inline SVG."""
    page = index.read_text(encoding="utf-8")
    [data] = re.findall(r'<script type="application/json" id="walk">(.*?)</script>', page, re.S)
    [svg] = re.findall(r"(<svg.*</svg>)", page, re.S)
    return page, json.loads(data), svg.encode("utf-8")


def test_each_frame_shows_exactly_the_gradients_its_op_sent():
    net = two_layer()
    walk, names = walk_of(net.tape, net.loss, params=net.params)
    assert walk.frames == 8                     # forward, 6 ops, the end

    def named(ids):
        return {names[i] for i in ids}

    # Frame 0, the forward pass: no gradient, no op.
    assert walk.shown(0) == set() and walk.current(0) is None
    # One frame per op, from the loss back. The op's inputs' gradients appear
    # in its own frame, intermediates and leaves alike; the seed with step 1.
    expected = [("op5", {"J", "v"}), ("op4", {"hW2", "b2"}), ("op3", {"h", "W2"}),
                ("op2", {"t"}), ("op1", {"XW1", "b1"}), ("op0", {"X", "W1"})]
    shown = set()
    for frame, (op, new) in enumerate(expected, start=1):
        assert walk.current(frame) == op
        assert named(walk.fresh(frame)) == new, frame
        shown |= new
        assert named(walk.shown(frame)) == shown, frame
        assert "{" not in walk.captions[frame]
    # The labels Y never get a gradient; the final frame shows every other one.
    assert named(walk.shown(walk.frames - 1)) == shown == {n for n in names.values()} - {"Y"}
    assert walk.current(7) is None and walk.fresh(7) == set()
    assert walk.captions[0].startswith("Forward pass") and walk.captions[7].startswith("Done")
    assert "takes G = dJ/dhW2 and sends back dJ/dh, dJ/dW2" in walk.captions[3]


def test_the_counter_says_what_the_caption_says():
    net = two_layer()
    walk, _ = walk_of(net.tape, net.loss)
    assert len(walk.counters) == len(walk.captions) == walk.frames
    assert walk.counters[0] == "forward pass" and walk.captions[0].startswith("Forward pass:")
    for s in range(1, walk.frames - 1):                 # "step 1 of 6" beside "Step 1 of 6: ..."
        assert walk.captions[s].startswith(walk.counters[s].capitalize() + ":"), s
    assert walk.counters[-1] == "done" and walk.captions[-1].startswith("Done:")


def test_a_tensor_used_twice_shows_its_partial_sum_until_the_last_contribution():
    x = mt.Tensor([0.5, -1.0], name="x")
    with mt.Tape() as tape:
        h = mt.tanh(x, name="h")
        a = mt.mul(h, 2.0, name="a")
        b = mt.exp(h, name="b")
        loss = mt.sum(a + b, name="L")
    walk, names = walk_of(tape, loss)
    [h_id] = [i for i, n in names.items() if n == "h"]
    # Visited: sum, add, exp (sends exp(h) to h), mul (sends 2: h is complete), tanh.
    assert [f for f, _ in walk.grads[h_id]] == [3, 4]
    first, complete = walk.grads[h_id]
    assert first[1] == L.numbers(np.exp(h.value))          # the partial sum, as drawn
    assert complete[1] is None                              # the drawing's own numbers
    np.testing.assert_allclose(h.grad, 2.0 + np.exp(h.value))
    assert "dL/dh (1 of 2 contributions)" in walk.captions[3]
    assert "dL/dh (2 of 2 contributions)" in walk.captions[4]
    assert {names[i] for i in walk.fresh(5)} == {"x"}


def test_x_times_x_is_one_contribution_from_one_step():
    x = mt.Tensor([1.5, -2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(x * x)
    walk, names = walk_of(tape, loss)
    [x_id] = [i for i, n in names.items() if n == "x"]
    assert walk.grads[x_id] == [(2, None)]


@needs_dot
def test_the_page_is_one_drawing_whose_ids_the_frames_name(tmp_path):
    net = two_layer()
    index = viz.render_backward_steps(net.tape, net.loss, tmp_path / "steps", params=net.params)
    assert index == tmp_path / "steps" / "index.html"
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["index.html"]
    page, data, svg = page_parts(index)
    assert page.count("<svg") == 1
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert set(data["ops"]) <= ids
    for tensor_id in data["grads"]:
        assert tensor_id in ids and f"a_{tensor_id}_grad" in ids
    assert len(data["captions"]) == len(data["equations"]) == data["frames"] == 8
    # The drawing holds every final gradient, as the tooltips show.
    nodes = svg_nodes(svg)
    for name, p in net.params.items():
        np.testing.assert_allclose(tooltip_array(by_name(nodes, name)["tooltip"], "grad"),
                                   net.tape.gradient(net.loss, p), rtol=1e-7, atol=1e-12)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<script src" not in page and "<img" not in page


@needs_dot
def test_the_equation_line_comes_from_one_function(tmp_path, monkeypatch):
    net = two_layer()
    monkeypatch.setattr(viz.steps, "step_equation",
                        lambda node, closed_form=None: f"<{node.op.name} & co>")
    page, data, _ = page_parts(viz.render_backward_steps(net.tape, net.loss, tmp_path))
    assert data["equations"][1:7] == [f"<{n.op.name} & co>" for n in reversed(net.tape.nodes)]
    assert "<softmax_cross_entropy & co>" not in page           # escaped inside the script
    assert data["equations"][0] == data["equations"][7] == ""


def test_each_step_shows_the_line_the_closed_form_writes_for_it():
    net = two_layer()
    walk, _ = walk_of(net.tape, net.loss)
    by_op = dict(zip([n.op.name for n in reversed(net.tape.nodes)], walk.equations[1:7]))
    assert by_op["softmax_cross_entropy"] == "delta2 = (ŷ − y) / N"
    assert by_op["sigmoid"] == "delta1 = dh ∘ h ∘ (1 − h)"
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(mt.pow(x, 3.0))
    walk, _ = walk_of(tape, loss)
    assert walk.equations[2] == "dx = dpow_ ∘ 3 ∘ x²"  # no dp: the exponent is a number


def test_without_a_closed_form_line_the_equation_is_the_ops_formula():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        mt.pow(x, 3.0)
    assert viz.steps.step_equation(tape.nodes[0]) == "dA = G ∘ p A^(p−1)  (0 where p = 0)"


def _chain(n_ops: int):
    x = mt.Tensor(np.linspace(-1, 1, 6).reshape(2, 3), name="x")
    with mt.Tape() as tape:
        h = x
        for _ in range(n_ops - 1):
            h = mt.tanh(h)
        loss = mt.sum(h)
    return tape, loss


@needs_dot
def test_the_page_grows_linearly_with_the_tape(tmp_path):
    sizes = []
    for n in (25, 50, 100):
        tape, loss = _chain(n)
        index = viz.render_backward_steps(tape, loss, tmp_path / str(n))
        sizes.append(index.stat().st_size)
    # Quadratic growth (a drawing per frame) would multiply the size by 4
    # each time the tape doubles; linear growth by at most 2.
    assert sizes[1] / sizes[0] < 2.2 and sizes[2] / sizes[1] < 2.2, sizes


@needs_dot
def test_rendering_again_replaces_the_old_frames(tmp_path):
    for stale in ("step_001.svg", "step_002.svg", "step_001.dot", "steps.dot"):
        (tmp_path / stale).write_text("old", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("the user's own", encoding="utf-8")
    net = two_layer()
    viz.render_backward_steps(net.tape, net.loss, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "notes.txt"]
    tape, loss = _chain(3)
    loss.name = "other"
    index = viz.render_backward_steps(tape, loss, tmp_path)
    _, data, _ = page_parts(index)
    assert data["frames"] == 5 and "Backward pass of other" in index.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "notes.txt"]


@needs_dot
def test_the_page_leaves_grad_as_it_found_it(tmp_path):
    # It ran tape.backward(reg): the next opt.step() would have stepped on dreg/dW.
    W = mt.Tensor(np.array([1.0, 2.0]), name="W")
    with mt.Tape() as tape:
        reg = mt.sum(W * W, name="reg")
        loss = mt.add(mt.sum(W * 3.0), reg, name="J")
    tape.backward(loss)
    grad = W.grad
    _, data, _ = page_parts(viz.render_backward_steps(tape, reg, tmp_path / "steps"))
    assert W.grad is grad and tape.last_backward() is loss
    assert "dreg/dW" in " ".join(data["captions"])


def test_step_arguments_are_checked(tmp_path):
    net = two_layer()
    with pytest.raises(TypeError, match="unexpected option"):
        viz.render_backward_steps(net.tape, net.loss, tmp_path, check=True)
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        y = mt.exp(x)
    with pytest.raises(ValueError, match=r"seed its gradient with tape.backward\(target, seed="):
        viz.render_backward_steps(tape, y, tmp_path)


def test_missing_dot_writes_the_drawing_as_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    net = two_layer()
    with pytest.raises(viz.GraphvizNotFoundError, match="brew install graphviz"):
        viz.render_backward_steps(net.tape, net.loss, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["steps.dot"]
    assert (tmp_path / "steps.dot").read_text(encoding="utf-8").startswith("digraph microtape {")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_script_parses(tmp_path):
    script = Path(viz.__file__).parent / "assets" / "steps.js"
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_dot
def test_the_csp_hash_pins_the_inline_script(tmp_path):
    net = two_layer()
    page = viz.render_backward_steps(net.tape, net.loss, tmp_path).read_text(encoding="utf-8")
    [body] = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in page
    assert "default-src 'none'" in page


@needs_dot
def test_user_strings_stay_text_in_the_page(tmp_path):
    # Tensor names become identifiers; an op's name reaches the captions as written.
    def forward(a):
        return a * 1.0, (lambda g: g,)
    forward.__name__ = "</script><script>alert(1)</script>"
    hostile = mt.primitive("dA = G")(forward)
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(hostile(x), name="J&<b>")
    page, data, svg = page_parts(viz.render_backward_steps(tape, loss, tmp_path))
    assert "<script>alert(1)" not in page and "<b>" not in page
    assert any("</script><script>alert(1)</script>" in c for c in data["captions"])
    assert any("dJ__b_/dx" in c for c in data["captions"])
    ET.fromstring(svg)
    assert f"{SVG}script" not in {el.tag for el in ET.fromstring(svg).iter()}


@needs_dot
def test_names_reach_the_page(tmp_path):
    v = mt.Tensor(np.zeros((2, 3)), name="v")
    labels = np.array([0, 2])
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, labels, name="J")
    _, _, svg = page_parts(viz.render_backward_steps(tape, loss, tmp_path, names={"y": labels}))
    assert any(n["tooltip"].startswith("y: data (2,) int64") for n in svg_nodes(svg).values())
