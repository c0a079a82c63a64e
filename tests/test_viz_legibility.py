"""The two pictures a newcomer sees, read at a glance: their shape, their text, their names."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import graphviz
import numpy as np
import pytest

import microtape as mt
import viz
from models import MLP, TwoLayerNet
from models.data import load_digits
from models.train import _graph
from viz import labels as L
from viz.__main__ import main
from viz.example import two_layer
from viz.legend import LOOKS

from .test_viz_graph import SVG, by_name, needs_dot, node_line, svg_nodes

SCREEN_WIDTH = 1400     # px: the whole drawing shown this wide...
LEGIBLE = 9.0           # ...every node's text is at least this many px tall


def layout(svg: bytes) -> tuple[float, float, dict[str, list[float]]]:
    """Width and height (pt) of a drawing, and each node's font sizes (pt)."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    fonts = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            fonts[g.find(f"{SVG}title").text] = [float(t.get("font-size"))
                                                 for t in g.iter(f"{SVG}text")]
    return width, height, fonts


def assert_readable_at_a_glance(svg: bytes) -> None:
    width, height, fonts = layout(svg)
    assert max(width / height, height / width) <= 2.0, f"{width:.0f} x {height:.0f} pt"
    scale = SCREEN_WIDTH / width                       # px per pt at 1400 px wide
    for node, sizes in fonts.items():
        assert sizes, node
        assert min(sizes) * scale >= LEGIBLE, (node, min(sizes) * scale)


def training_graph(tmp_path, hidden: int = 64):
    """graph.svg as `python -m models.train` draws it, on the digits' first 16 examples."""
    x, labels = load_digits()[:2]
    net = TwoLayerNet(64, hidden, 10, seed=0)
    path = _graph(net, x[:16], labels[:16], tmp_path / "graph.svg")
    return path.read_bytes(), labels[:16]


@needs_dot
def test_the_derivations_graph_is_readable_at_a_glance(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert_readable_at_a_glance((tmp_path / "graph.svg").read_bytes())


@needs_dot
def test_the_training_graph_is_readable_at_a_glance(tmp_path):
    svg, _ = training_graph(tmp_path)
    assert_readable_at_a_glance(svg)


@needs_dot
def test_the_old_left_to_right_layout_would_fail_the_measure(tmp_path):
    # The measure has teeth: the same drawing laid out left to right is 4:1.
    net = two_layer()
    svg = viz.draw_graph(net.tape, net.loss, params=net.params, rankdir="LR").pipe(format="svg")
    with pytest.raises(AssertionError):
        assert_readable_at_a_glance(svg)


@needs_dot
def test_the_training_graph_reads_like_the_derivation(tmp_path):
    svg, labels = training_graph(tmp_path)
    nodes = svg_nodes(svg)
    names = {n["tooltip"].split(": ")[0] for k, n in nodes.items() if k[0] in "TA"}
    assert names == {"x", "W1", "xW1", "b1", "t", "h", "W2", "hW2", "b2", "v", "labels", "J"}
    # The labels are class indices: drawn as the integers they are, not a mean.
    [labels_node] = [n for n in nodes.values() if n["tooltip"].startswith("labels: ")]
    assert "mean" not in " ".join(labels_node["text"])
    shown = [int(t) for t in labels_node["text"] if t.isdigit()]
    assert shown == labels.tolist()
    # matmul(x, W1) sends nothing back to the data x: only dB = Aᵀ G is shown.
    [first_matmul] = [n for k, n in nodes.items() if k == "op0"]
    assert "dB = Aᵀ G" in first_matmul["text"]
    assert not any("dA" in t for t in first_matmul["text"])


def node_boxes(svg: bytes) -> tuple[float, float, list[tuple[float, float, float, float]]]:
    """Width and height (pt) of a drawing, and each node's bounding box in it
    (x0, y0, x1, y1 from the top left), from the points of its outline."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    dx, dy = (float(v) for v in re.search(r"translate\(([-\d.]+)[ ,]([-\d.]+)\)",
                                          root.find(f"{SVG}g").get("transform")).groups())
    boxes = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            points = [(float(x), float(y)) for el in g.iter() if el.tag in (f"{SVG}polygon", f"{SVG}path")
                      for x, y in re.findall(r"([-\d.]+),([-\d.]+)", el.get("points") or el.get("d"))]
            xs, ys = zip(*points)
            boxes.append((min(xs) + dx, min(ys) + dy, max(xs) + dx, max(ys) + dy))
    return width, height, boxes


def empty_share(svg: bytes, cells: int = 200) -> float:
    """The largest rectangle of the canvas that no node touches, as a share of its area.

    The canvas is cut into cells x cells; a cell is taken when a node's bounding
    box reaches into it (edges and their labels cross empty canvas freely). The
    largest rectangle of free cells is found row by row, as the largest
    rectangle under a histogram of free cells above each cell.
    """
    width, height, boxes = node_boxes(svg)
    free = np.ones((cells, cells), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        free[int(y0 / height * cells):int(np.ceil(y1 / height * cells)),
             int(x0 / width * cells):int(np.ceil(x1 / width * cells))] = False
    best, heights = 0, np.zeros(cells, dtype=int)
    for row in free:
        heights = np.where(row, heights + 1, 0)
        stack: list[tuple[int, int]] = []          # (first column, height), heights rising
        for i, h in enumerate([*heights.tolist(), 0]):
            start = i
            while stack and stack[-1][1] >= h:
                start, top = stack.pop()
                best = max(best, top * (i - start))
            stack.append((start, h))
    return best / cells ** 2


@needs_dot
def test_the_derivations_graph_leaves_little_canvas_empty():
    # Was 29.5%: the chain in one column, the legend alone in the top right.
    net = two_layer()
    svg = viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg")
    assert empty_share(svg) <= 0.15, empty_share(svg)
    # The measure has teeth: a lone box in one corner leaves most of the canvas empty.
    lone = graphviz.Digraph(graph_attr={"size": "4,4!", "ratio": "fill"})
    lone.node("a", shape="box")
    assert empty_share(lone.pipe(format="svg")) > 0.5


def tanh_regression():
    """A three-layer tanh network fitting one number per example by mean squared error."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(8, 1))
    net = MLP([2, 16, 16, 1], activation="tanh", seed=0)
    with mt.Tape() as tape:
        out = net(x)
        loss = mt.mean((out - y) ** 2, name="L")
    return tape, loss, net.params


@needs_dot
@pytest.mark.parametrize("which", ["mlp", "tanh_mse"])
def test_deeper_chains_are_wrapped_into_columns_and_stay_within_2_to_1(which):
    # Were 0.51 and 0.40 wide over high: one row per op and per tensor.
    if which == "mlp":
        net = MLP([64, 32, 16, 10], seed=0)
        x, labels = load_digits()[:2]
        with mt.Tape() as tape:
            loss = net.loss(x[:16], labels[:16])
        params = net.params
    else:
        tape, loss, params = tanh_regression()
    g = viz.draw_graph(tape, loss, params=params)
    assert_readable_at_a_glance(g.pipe(format="svg"))
    assert "column_tops" in g.source


def test_a_short_chain_stays_in_one_column():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(mt.exp(mt.tanh(x)))
    assert "column_tops" not in viz.draw_graph(tape, loss).source
    assert "constraint=false" not in viz.draw_graph(tape, loss).source


def legend_text(svg: bytes) -> str:
    return " ".join(svg_nodes(svg)["legend"]["text"])


@needs_dot
@pytest.mark.parametrize("which", ["derivation", "training", "summaries"])
def test_the_legend_explains_every_symbol_the_nodes_use(tmp_path, which):
    if which == "derivation":
        net = two_layer()
        svg = viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg")
    elif which == "training":
        svg, _ = training_graph(tmp_path, hidden=8)
    else:
        x = mt.Tensor(np.linspace(-1, 1, 30).reshape(5, 6), name="x")
        with mt.Tape() as tape:
            loss = (mt.tanh(x) * mt.relu(x)).sum() + mt.pow(mt.exp(x), 2.0).sum()
        svg = viz.draw_graph(tape, loss).pipe(format="svg")
    legend = legend_text(svg)
    used = set()
    for node_id, node in svg_nodes(svg).items():
        if node_id != "legend":
            used |= {c for t in node["text"] for c in t if ord(c) > 127}
    used.discard("−")   # a minus sign needs no explaining
    assert used, "the drawing should use some symbols"
    unexplained = sorted(c for c in used if c not in legend)
    assert not unexplained, unexplained
    if which == "summaries":
        assert "‖·‖" in legend and "Euclidean norm" in legend


@needs_dot
def test_the_legend_is_compact():
    # Its lines are wrapped short: the longest was 115 characters, and touched the border.
    net = two_layer()
    svg = viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg")
    lines = svg_nodes(svg)["legend"]["text"]
    assert max(len(line) for line in lines) <= 52, max(lines, key=len)


def test_the_legend_leaves_out_symbols_the_drawing_does_not_use():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.exp(x).sum()
    [legend] = [ln for ln in viz.draw_graph(tape, loss).body if "legend [" in ln]
    assert "‖·‖" not in legend and "transpose" not in legend


def test_no_negative_zero_anywhere():
    # relu's gradient G ∘ [A > 0] is −0.0 where G < 0 and A ≤ 0.
    x = mt.Tensor([-1.0, 2.0, -3.0], name="x")
    with mt.Tape() as tape:
        loss = (mt.relu(x) * -1.0).sum()
    g = viz.draw_graph(tape, loss)
    dx = tape.gradient(loss, x)
    assert np.signbit(dx[0]) and dx[0] == 0          # the tape does hold a −0.0
    assert ">-0<" not in g.source and ">-0." not in "".join(g.body).replace(">-0.5", "")
    assert L.numbers(np.array([-0.0, -0.0])) == ["0", "0"]
    assert L.numbers(np.array([-1e-4, 0.5])) == ["0.000", "0.500"]
    assert L.number(-0.0) == "0"


def test_numbers_share_one_format_per_array():
    assert L.numbers(np.array([0.547, -0.36, 0.0239, -1.342])) == ["0.547", "-0.360", "0.024",
                                                                    "-1.342"]
    assert L.numbers(np.array([-0.0455, 0.00306])) == ["-0.0455", "0.0031"]
    assert L.numbers(np.array([0.0, 1.0, 0.0])) == ["0", "1", "0"]          # one-hot rows
    assert L.numbers(np.array([1e-6, -3e-7])) == ["1.00e-06", "-3.00e-07"]
    assert L.numbers(np.array([3, 1, 4])) == ["3", "1", "4"]
    assert L.summary(np.arange(40) % 10) == ["40 integers, 0 to 9", "first: 0 1 2 3 4 5 6 7 …"]


def test_a_constant_exponent_gets_no_vjp():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.pow(x, 3.0).sum() + mt.pow(x, x).sum()
    g = viz.draw_graph(tape, loss)
    assert "dA = G ∘ p A^(p−1)" in node_line(g, "op0") and "dp" not in node_line(g, "op0")
    assert "dp = G ∘ C ∘ log A" in node_line(g, "op2")              # a Tensor exponent has one


def test_unnamed_leaves_take_names_from_the_op_or_from_names():
    logits = mt.Tensor(np.zeros((2, 3)))
    labels = np.array([0, 2])
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(logits, labels)
    g = viz.draw_graph(tape, loss)
    assert "<B>logits</B>" in node_line(g, "T0") and "<B>labels</B>" in node_line(g, "A0")
    g = viz.draw_graph(tape, loss, names={"v": logits, "y": labels})
    assert "<B>v</B>" in node_line(g, "T0") and "<B>y</B>" in node_line(g, "A0")
    with pytest.raises(TypeError, match="names maps a name"):
        viz.draw_graph(tape, loss, names={"v": [1, 2]})


@needs_dot
def test_every_drawing_calls_the_input_data(tmp_path, monkeypatch, capsys):
    # One classification for every drawing: x is data, the parameters asked about are
    # parameters, and a name alone makes nothing a parameter.
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0                                    # python -m viz
    demo = svg_nodes((tmp_path / "graph.svg").read_bytes())
    assert by_name(demo, "X")["tooltip"].startswith("X: data ")
    assert by_name(demo, "W1")["tooltip"].startswith("W1: parameter ")
    svg, _ = training_graph(tmp_path)                       # python -m models.train
    training = svg_nodes(svg)
    assert by_name(training, "x")["tooltip"].startswith("x: data ")
    assert by_name(training, "labels")["tooltip"].startswith("labels: data ")
    assert by_name(training, "W2")["tooltip"].startswith("W2: parameter ")
    net = MLP([64, 32, 16, 10], seed=0)                     # any MLP
    x, labels = load_digits()[:2]
    with mt.Tape() as tape:
        loss = net.loss(x[:4], labels[:4])
    for params in (net.params, None):
        nodes = svg_nodes(viz.draw_graph(tape, loss, params=params).pipe(format="svg"))
        inputs = [n for k, n in nodes.items() if k.startswith("A")]
        assert inputs and all(": data " in n["tooltip"] for n in inputs)
        kind = "parameter" if params else "data"
        assert by_name(nodes, "W3")["tooltip"].startswith(f"W3: {kind} ")


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def test_data_and_constants_look_plainly_different():
    data, constant = LOOKS["data"], LOOKS["constant"]
    assert np.linalg.norm(_rgb(data.fill) - _rgb(constant.fill)) >= 50
    assert np.linalg.norm(_rgb(data.border) - _rgb(constant.border)) >= 100
    assert ("dashed" in data.style) != ("dashed" in constant.style)
    legend = viz.legend.legend_label()
    assert legend.count('STYLE="ROUNDED,DASHED"') == 1              # the constant swatch only
    assert f'BGCOLOR="{data.fill}" COLOR="{data.border}"' in legend
    assert f'BGCOLOR="{constant.fill}" COLOR="{constant.border}"' in legend


def test_the_legend_writes_gradients_in_the_targets_name():
    w = mt.Tensor([1.0, 2.0], name="w")
    with mt.Tape() as tape:
        L_ = mt.sum(w * w, name="L")
    [legend] = [ln for ln in viz.draw_graph(tape, L_).body if "legend [" in ln]
    assert "dL/d(each tensor)" in legend and "dJ/" not in legend


@needs_dot
@pytest.mark.parametrize("order, whole_tape", [(2, False), (2, True), (3, True)])
def test_a_tape_that_recorded_backward_passes_is_readable_at_a_glance(order, whole_tape):
    # Σ x³ differentiated twice (and three times), drawn with the gradients of the
    # last target, the ops of each recorded VJP in their frames. (The third
    # derivative's target alone is 2.8 high over wide: its frames nest three deep,
    # and a framed chain wraps into columns only within the frames.)
    from .test_viz_passes import second_derivative_tape, third_derivative_tape

    tape, x, target = (second_derivative_tape if order == 2 else third_derivative_tape)()
    svg = viz.draw_graph(tape, None if whole_tape else target).pipe(format="svg")
    if whole_tape:      # no target: the drawing shows the gradients a backward pass set
        tape.backward(target)
        svg = viz.draw_graph(tape).pipe(format="svg")
    assert 'class="cluster"' in svg.decode() and "grad" in legend_text(svg)
    assert_readable_at_a_glance(svg)
