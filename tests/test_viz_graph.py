"""viz.draw_graph: what the drawing of a tape holds, read back from the SVG."""

from __future__ import annotations

import ast
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microtape as mt
import viz
from viz.example import two_layer
from viz.legend import CHECK_FAILED, CHECK_PASSED, LOOKS

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot program is not installed "
                                      "(apt-get install graphviz)")

SVG = "{http://www.w3.org/2000/svg}"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"


# -- helpers the other viz test files share ------------------------------------------

def svg_nodes(svg: bytes | str) -> dict[str, dict]:
    """DOT id -> {"tooltip": str, "text": [str]} for every node of a rendered SVG.

    Graphviz writes runs of spaces as " \xa0" (no-break spaces) to keep them;
    they are turned back into spaces here.
    """
    root = ET.fromstring(svg)
    nodes = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        node_id = g.find(f"{SVG}title").text
        tips = [el.get(XLINK_TITLE) for el in g.iter() if el.get(XLINK_TITLE) is not None]
        texts = [el.text for el in g.iter(f"{SVG}text") if el.text]
        nodes[node_id] = {"tooltip": tips[0].replace("\xa0", " ") if tips else "",
                          "text": [t.replace("\xa0", " ") for t in texts]}
    return nodes


def tooltip_array(tooltip: str, what: str) -> np.ndarray | None:
    """The array printed after ``what =`` in a tooltip (None when absent)."""
    lines = tooltip.split("\n")
    if f"{what} =" not in lines:
        return None
    start = lines.index(f"{what} =") + 1
    body = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" "):   # continuation rows of a matrix are indented
            break
        body.append(line)
    return np.array(ast.literal_eval("".join(body)), dtype=float)


def by_name(nodes: dict[str, dict], name: str) -> dict:
    """The node whose tooltip starts with the tensor's name."""
    [node] = [n for n in nodes.values() if n["tooltip"].startswith(f"{name}: ")]
    return node


def node_line(g, node_id: str) -> str:
    """The DOT statement of one node."""
    [line] = [ln for ln in g.body if ln.startswith(f"\t{node_id} [")]
    return line


def drawn_array(g, name: str, what: str = "grad") -> np.ndarray | None:
    """The array the DOT text shows as ``what`` for the tensor called ``name`` (its tooltip),
    or None when the node has none."""
    [line] = [ln for ln in g.body if f"<B>{name}</B>" in ln and 'tooltip="' in ln]
    return tooltip_array(line.split('tooltip="', 1)[1].rsplit('"', 1)[0], what)


def node_lines(g, prefix: str) -> list[str]:
    """The DOT statements of the nodes whose id starts with ``prefix`` (T, C, op)."""
    return [ln for ln in g.body if ln.startswith(f"\t{prefix}") and " -> " not in ln]


# -- the two-layer network ----------------------------------------------------------------

def test_every_op_and_tensor_of_the_two_layer_net_is_drawn():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss, params=net.params)
    ops = [f"op{k}" for k in range(len(net.tape.nodes))]
    assert len(ops) == 6
    for k, (op_id, node) in enumerate(zip(ops, net.tape.nodes)):
        line = node_line(g, op_id)
        assert f">{node.op.name} #{k}</FONT>" in line
    for name in ("X", "Y", "W1", "b1", "W2", "b2", "t", "h", "v", "J", "XW1", "hW2"):
        assert any(f"<B>{name}</B>" in ln for ln in g.body), name
    tensors = node_lines(g, "T")
    assert len(tensors) == 12     # 6 leaves (X Y W1 b1 W2 b2), 5 intermediates, the loss J
    # inputs -> op (matmul 2, add 2, sigmoid 1, matmul 2, add 2, sce 2) and op -> output
    drawn = [ln for ln in g.body if " -> " in ln and "style=invis" not in ln]
    assert len(drawn) == 11 + 6


@needs_dot
def test_svg_tooltips_carry_the_tapes_gradients_and_values():
    net = two_layer()
    nodes = svg_nodes(viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg"))
    expected = net.tape.gradient(net.loss, net.params)
    for name, tensor in net.params.items():
        node = by_name(nodes, name)
        np.testing.assert_allclose(tooltip_array(node["tooltip"], "grad"), expected[name],
                                   rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(tooltip_array(node["tooltip"], "value"), tensor.value,
                                   rtol=1e-6, atol=1e-10)
    # dJ/dv = (ŷ − y) / N, the derivation's delta2 for the mean loss.
    v = by_name(nodes, "v")
    logits = tooltip_array(v["tooltip"], "value")
    yhat = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tooltip_array(v["tooltip"], "grad"),
                               (yhat - net.data["Y"].value) / len(logits), rtol=1e-6, atol=1e-9)


@needs_dot
def test_every_matrix_of_the_two_layer_net_fits_in_its_node():
    net = two_layer()
    nodes = svg_nodes(viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg"))
    W1 = by_name(nodes, "W1")
    shown = [s for s in W1["text"] if _is_number(s)]
    assert len(shown) == 24       # the 12 values and the 12 gradients of W1
    exact = np.concatenate([net.params["W1"].value.ravel(),
                            net.tape.gradient(net.loss, net.params["W1"]).ravel()])
    for text, value in zip(shown, exact):     # right to the last decimal shown
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text) - value) <= 0.5 * 10.0 ** -decimals + 1e-12, (text, value)
    # One format per matrix: every value shows 3 decimals; the gradients,
    # all below 0.1, one more so the largest keeps 3 significant digits.
    assert {len(t.split(".")[1]) for t in shown[:12]} == {3}
    assert {len(t.split(".")[1]) for t in shown[12:]} == {4}


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def test_draw_graph_computes_the_gradients_it_shows_without_a_backward_pass():
    # It used to run tape.backward(loss) and show .grad; it asks the tape now, and
    # leaves .grad as it was (here: never set).
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss)
    assert net.params["W1"].grad is None and net.tape.backward_target is None
    np.testing.assert_allclose(drawn_array(g, "W1"), net.tape.gradient(net.loss, net.params["W1"]))


def test_gradients_from_another_target_are_neither_shown_nor_overwritten():
    net = two_layer()
    h = [n.output for n in net.tape.nodes if n.output.name == "h"][0]
    with net.tape:
        other = h.sum()
    net.tape.backward(other)          # .grad now holds d(other)/d(...), not dJ/d(...)
    kept = net.params["W1"].grad
    g = viz.draw_graph(net.tape, net.loss)
    for name in ("W1", "W2"):
        np.testing.assert_allclose(drawn_array(g, name),
                                   net.tape.gradient(net.loss, net.params[name]))
    assert net.params["W1"].grad is kept and net.params["W2"].grad is None
    assert net.loss.grad is None and net.tape.backward_target is other


def test_a_term_of_the_loss_holding_ones_from_the_losss_pass_is_recomputed():
    # loss = ce + a penalty: the loss's pass leaves dloss/dce = 1 on ce, exactly the seed a
    # drawing of ce would use, so ce's drawing showed dloss/dW captioned as dce/dW.
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(4, 3)), np.array([0, 1, 2, 1])
    W = mt.Tensor(rng.normal(size=(3, 3)), name="W")
    with mt.Tape() as tape:
        ce = mt.softmax_cross_entropy(x @ W, labels, name="ce")
        loss = mt.add(ce, 0.5 * mt.sum(W * W), name="loss")
    tape.backward(loss)
    assert ce.grad == 1 and tape.backward_target is loss
    g = viz.draw_graph(tape, ce, params=W)
    np.testing.assert_allclose(drawn_array(g, "W"), tape.gradient(ce, W), rtol=1e-7)
    # and the loss's pass is left as it was: what an optimizer step would read
    assert tape.backward_target is loss
    np.testing.assert_allclose(W.grad, tape.gradient(loss, W), rtol=1e-15)


def test_a_drawing_shows_its_own_tapes_gradients_after_another_tape_set_grad():
    # tape2's pass left dL2/dW on W: the drawing of tape1 showed it as dL1/dW, and
    # check=True then coloured W red, blaming tape1.
    W = mt.Tensor(np.array([[1.0], [2.0]]), name="W")
    x = np.array([[1.0, 1.0]])
    with mt.Tape() as tape1:
        L1 = mt.sum(x @ W, name="L1")
        y1 = mt.mul(W, 2.0, name="y1")
    tape1.backward(L1)
    with mt.Tape() as tape2:
        L2 = mt.sum(mt.mul(x @ W, 100.0), name="L2")
    tape2.backward(L2)
    g = viz.draw_graph(tape1, L1, check=True)
    np.testing.assert_allclose(drawn_array(g, "W"), [[1.0], [1.0]])
    assert "DISAGREE" not in g.source and "finite differences agree" in g.source
    np.testing.assert_allclose(W.grad, [[100.0], [100.0]])   # tape2's, as tape2 left it
    # With no target or a non-scalar one, the drawing would read the seed tape1's pass
    # left; tape2's pass ran since, so it shows no gradients rather than a mix.
    assert ">grad<" not in viz.draw_graph(tape1).source
    tape1.backward(y1, seed=np.ones((2, 1)))
    assert ">grad<" in viz.draw_graph(tape1, y1).source
    tape2.backward(L2)
    assert ">grad<" not in viz.draw_graph(tape1, y1).source


def test_drawing_a_term_of_the_loss_leaves_what_the_optimizer_steps_on():
    # The drawing of reg ran tape.backward(reg): W.grad became dreg/dW, and opt.step()
    # stepped on it instead of on dJ/dW.
    W = mt.Tensor(np.array([1.0, 2.0]), name="W")
    opt = mt.optim.SGD([W], lr=0.1)
    with mt.Tape() as tape:
        reg = mt.sum(W * W, name="reg")
        loss = mt.add(mt.sum(W * 3.0), reg, name="J")
    tape.backward(loss)
    grad = W.grad
    g = viz.draw_graph(tape, reg, check=True)
    np.testing.assert_allclose(drawn_array(g, "W"), [2.0, 4.0])
    assert W.grad is grad and tape.last_backward() is loss
    opt.step()
    np.testing.assert_allclose(W.value, [0.5, 1.3])


def test_op_nodes_show_the_vjp_formula_of_their_primitive():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss)
    assert "dA = G Bᵀ,  dB = Aᵀ G" in node_line(g, "op0")
    assert "dv = G (ŷ − y)" in node_line(g, "op5")
    plain = viz.draw_graph(net.tape, net.loss, formulas=False)
    assert "dA = G Bᵀ" not in node_line(plain, "op0")


def test_a_new_op_brings_its_formula_along():
    @mt.primitive("dA = G ∘ 2A  (the square's slope)")
    def square(a):
        """C = A²."""
        return a * a, (lambda g: g * 2 * a,)

    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        y = square(x).sum()
    g = viz.draw_graph(tape, y)
    assert ">square #0</FONT>" in node_line(g, "op0")
    assert "dA = G ∘ 2A" in node_line(g, "op0")
    assert "(the square&#x27;s slope)" in node_line(g, "op0")


BROADCAST_NOTE = "(each summed over the axes it was broadcast along)"


def test_the_broadcast_note_appears_only_where_an_input_was_broadcast():
    a = mt.Tensor(np.ones((2, 3)), name="a")
    b = mt.Tensor(np.ones((2, 3)), name="b")
    row = mt.Tensor(np.ones(3), name="row")
    with mt.Tape() as tape:
        loss = mt.sum((a + b) * (a - b) * 2.0 + a * row)
    g = viz.draw_graph(tape, loss)
    by_op = {node.op.name + str(k): node_line(g, f"op{k}") for k, node in enumerate(tape.nodes)}
    for op in ("add0", "sub1", "mul2", "mul3", "add5"):    # equal shapes, or a folded number
        assert "broadcast along" not in by_op[op], op
    assert "dA = G,  dB = G" in by_op["add0"]
    assert "broadcast along" in by_op["mul4"]                # row: (3,) stretched to (2, 3)
    # The derivation's biases are broadcast over the batch: both adds keep the note.
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss)
    assert [k for k in range(6) if "broadcast along" in node_line(g, f"op{k}")] == [1, 4]
    assert viz.graph.vjp_formula(tape.nodes[0]) == "dA = G,  dB = G"
    assert viz.graph.vjp_formula(tape.nodes[4]).endswith(BROADCAST_NOTE)


@needs_dot
def test_an_op_number_is_one_run_with_its_name_after_a_space():
    # Two runs (the name, then the number) are placed by Graphviz's font measure,
    # and a browser's wider bold face drew "softmax_cross_entropy#5".
    net = two_layer()
    nodes = svg_nodes(viz.draw_graph(net.tape, net.loss).pipe(format="svg"))
    assert nodes["op5"]["text"][0] == "softmax_cross_entropy #5"
    assert [nodes[f"op{k}"]["text"][0] for k in range(5)] == [
        "matmul #0", "add #1", "sigmoid #2", "matmul #3", "add #4"]


def test_the_bias_edge_says_its_gradient_was_summed_over_the_batch_axis():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss)
    bias_edges = [ln for ln in g.body if "summed over axis 0" in ln]
    assert len(bias_edges) == 2                     # b1 and b2
    ids = {node_line(g, f"T{k}").split("<B>")[1].split("</B>")[0]: f"T{k}" for k in range(12)}
    assert any(ln.startswith(f"\t{ids['b1']} -> op1") for ln in bias_edges)
    assert any(ln.startswith(f"\t{ids['b2']} -> op4") for ln in bias_edges)
    assert not any(ln.startswith(f"\t{ids['XW1']} -> op1") for ln in bias_edges)


def test_fan_out_says_the_gradient_is_a_sum_of_contributions():
    x = mt.Tensor([1.0, 2.0, 3.0], name="x")
    with mt.Tape() as tape:
        y = mt.tanh(x) * x + mt.exp(x)
        loss = y.sum()
    g = viz.draw_graph(tape, loss)
    line = node_line(g, "T0")
    assert "Σ of 3 contributions" in line         # tanh, mul and exp each use x
    np.testing.assert_allclose(drawn_array(g, "x"), np.tanh(x.value) + x.value * (1 - np.tanh(x.value) ** 2)
                               + np.exp(x.value))
    other = [ln for ln in node_lines(g, "T") if "contributions" in ln and not ln.startswith("\tT0 [")]
    assert other == []


def test_looks_follow_params_never_names():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss)          # nothing asked about: every leaf is data
    for name in ("X", "W1", "b1"):
        line = [ln for ln in g.body if f"<B>{name}</B>" in ln][0]
        assert f'fillcolor="{LOOKS["data"].fill}"' in line, name    # named, yet data
    g = viz.draw_graph(net.tape, net.loss, params=net.params)
    assert f'fillcolor="{LOOKS["data"].fill}"' in node_line(g, "T0")        # X is data now
    assert "data (2, 3) float64" in node_line(g, "T0")
    w1 = [ln for ln in g.body if "<B>W1</B>" in ln][0]
    assert f'fillcolor="{LOOKS["parameter"].fill}"' in w1
    loss = [ln for ln in g.body if "<B>J</B>" in ln][0]
    assert f'fillcolor="{LOOKS["loss"].fill}"' in loss
    assert any("<B>legend</B>" in ln for ln in g.body)


def test_unnamed_tensors_are_named_as_the_code_names_them():
    a = mt.Tensor(np.ones((2, 2)))
    b = mt.Tensor(np.ones((2, 2)))
    with mt.Tape() as tape:
        c = a @ b
        d = mt.relu(c)
    g = viz.draw_graph(tape)
    names = [ln.split("<B>")[1].split("</B>")[0] for ln in node_lines(g, "T")]
    # microtape.naming: unnamed data is x, then x2; an output is named by its op.
    assert names == ["x", "x2", "xx2", "relu"]
    assert f'fillcolor="{LOOKS["data"].fill}"' in node_line(g, "T0")
    assert f'fillcolor="{LOOKS["loss"].fill}"' in node_line(g, "T3")    # the final output
    assert "grad" not in node_line(g, "T3")          # no target, no backward: no gradients
    del d


def test_the_same_program_gives_the_same_dot_text():
    first = viz.draw_graph(two_layer().tape)
    net = two_layer()
    second = viz.draw_graph(net.tape)
    assert first.source == second.source
    assert "id(" not in first.source
    with_grads = viz.draw_graph(net.tape, net.loss, params=net.params, check=True)
    again = two_layer()
    assert viz.draw_graph(again.tape, again.loss, params=again.params, check=True).source \
        == with_grads.source


def test_only_the_targets_ancestors_are_drawn():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        unused = mt.exp(x).sum()
        loss = (x * x).sum()
    g = viz.draw_graph(tape, loss)
    assert not any(">exp #" in ln for ln in g.body)
    assert any(ln.startswith("\top2 [") for ln in g.body)       # ids keep tape positions
    assert not any(ln.startswith("\top0 [") for ln in g.body)
    assert "Σ of 2 contributions" in node_line(g, "T0")         # x * x uses x twice
    np.testing.assert_allclose(drawn_array(g, "x"), 2 * x.value)
    del unused


def test_big_tensors_show_a_summary_and_keep_full_arrays_in_the_tooltip():
    w = mt.Tensor(np.arange(20.0).reshape(4, 5), name="w")
    with mt.Tape() as tape:
        loss = (w * w).sum()
    g = viz.draw_graph(tape, loss)
    line = node_line(g, "T0")
    assert "min 0   max 19" in line and "mean 9.5" in line and "‖·‖" in line
    assert "[15, 16, 17, 18, 19]" in line                   # the tooltip has every element
    small = viz.draw_graph(tape, loss, max_elements=20)
    assert "min 0" not in node_line(small, "T0")
    assert ">19<" in node_line(small, "T0")


def test_values_and_grads_can_be_left_out():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss, values=False, grads=False)
    assert net.params["W1"].grad is None
    assert ">value<" not in g.source and ">grad<" not in g.source


def test_constants_are_drawn_and_folded():
    x = mt.Tensor(np.ones((2, 3)), name="x")
    labels = np.array([0, 2])
    with mt.Tape() as tape:
        y = mt.einsum("ij,j->i", x, np.arange(3.0))
        z = 2.0 * mt.pow(x, 3)[:, 1:]
        loss = mt.softmax_cross_entropy(x, labels, reduction="sum") + y.sum() + z.sum()
    g = viz.draw_graph(tape, loss)
    assert "ij,j-&gt;i" in g.source                       # the subscripts, escaped
    assert "p = 3" in g.source and "A = 2" in g.source
    assert "[:, 1:]" in g.source
    assert "reduction=&#x27;sum&#x27;" in g.source
    arrays = node_lines(g, "A")     # plain array operands are data, as leaf Tensors are
    assert len(arrays) == 2 and all(" data (" in ln for ln in arrays)
    assert all(f'fillcolor="{LOOKS["data"].fill}"' in ln for ln in arrays)
    assert any(ln.startswith("\tA1 -> ") and "labels" in ln for ln in g.body)
    # The numbers folded into an op sit in the constant look, inside the op's box.
    [power] = [ln for ln in g.body if "p = 3" in ln]
    assert f'BGCOLOR="{LOOKS["constant"].fill}"' in power and 'STYLE="dashed"' in power


def test_check_colours_leaves_green_when_the_tape_agrees():
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss, params=net.params, check=True)
    for name in ("X", "W1", "b1", "W2", "b2"):
        line = [ln for ln in g.body if f"<B>{name}</B>" in ln][0]
        assert f'fillcolor="{CHECK_PASSED.fill}"' in line, name
        assert "finite differences agree" in line
    y_line = [ln for ln in g.body if "<B>Y</B>" in ln][0]          # labels get no gradient
    assert "finite differences" not in y_line


def test_check_colours_a_wrong_vjp_red_with_its_relative_error():
    @mt.primitive("dA = 3 G  (deliberately wrong: the slope is 2)")
    def double(a):
        """C = 2A."""
        return 2 * a, (lambda g: 3 * g,)

    w = mt.Tensor(np.linspace(-1, 1, 100), name="w")
    with mt.Tape() as tape:
        loss = mt.tanh(double(w)).sum()
    g = viz.draw_graph(tape, loss, check=True, check_elements=5)
    line = node_line(g, "T0")
    assert f'fillcolor="{CHECK_FAILED.fill}"' in line
    assert "DISAGREE" in line and "5 of 100 elements" in line
    rel = float(line.split("rel. error ")[1].split(",")[0])
    assert rel == pytest.approx(1 / 3, abs=0.01)                  # |3 − 2| / 3 at every element


def test_check_needs_a_target():
    net = two_layer()
    with pytest.raises(ValueError, match="check=True needs target="):
        viz.draw_graph(net.tape, check=True)


def test_a_non_scalar_target_is_drawn_without_guessing_a_seed():
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        y = mt.exp(x)
    g = viz.draw_graph(tape, y)
    assert ">grad<" not in g.source
    tape.backward(y, seed=np.array([1.0, 0.0]))
    g = viz.draw_graph(tape, y, check=True)
    assert ">grad<" in node_line(g, "T0") and "finite differences agree" in node_line(g, "T0")


def test_wrong_arguments_are_named():
    net = two_layer()
    with mt.Tape() as other:
        stray = mt.exp(mt.Tensor([1.0]))
    with pytest.raises(ValueError, match="not recorded on this tape"):
        viz.draw_graph(net.tape, stray)
    with pytest.raises(TypeError, match="params must be Tensors"):
        viz.draw_graph(net.tape, net.loss, params=["W1"])
    with pytest.raises(TypeError, match="Tape"):
        viz.draw_graph(other.nodes)
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_graph(net.tape, rankdir="sideways")
    # Each of these raised Python's own error, or was taken
    with pytest.raises(TypeError, match="params must be Tensors .*, not int"):
        viz.draw_graph(net.tape, net.loss, params=3)
    with pytest.raises(TypeError, match="max_elements must be an int, not str"):
        viz.draw_graph(net.tape, max_elements="5")
    with pytest.raises(ValueError, match="max_elements must be at least 0, got -1"):
        viz.draw_graph(net.tape, max_elements=-1)
    with pytest.raises(ValueError, match="check_elements must be at least 1, got 0"):
        viz.draw_graph(net.tape, net.loss, check=True, check_elements=0)


def test_a_drawing_or_a_step_page_given_the_wrong_kind_of_path_says_so(tmp_path):
    # A folder got its drawing beside it as folder.svg; a file as the step page's folder
    # raised a bare "[Errno 17] File exists"
    net = two_layer()
    with pytest.raises(IsADirectoryError, match="this is a folder; give the drawing's file name"):
        viz.render(net.tape, tmp_path, net.loss)
    assert not tmp_path.with_name(tmp_path.name + ".svg").exists()
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="the step page goes in a folder"):
        viz.render_backward_steps(net.tape, net.loss, tmp_path / "taken")
    with mt.Tape(persistent=False) as spent:
        w = mt.Tensor([1.0, 2.0])
        loss = mt.exp(w).sum()
    spent.gradient(loss, w)
    with pytest.raises(ValueError, match="persistent=False.*mt.Tape()"):
        viz.draw_graph(spent, loss)


def test_rankdir_puts_blocks_side_by_side_top_to_bottom():
    x = mt.Tensor([[1.0, 2.0]], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(mt.tanh(x))
    g = viz.draw_graph(tape, loss, rankdir="TB")
    assert "rankdir=TB" in g.source
    assert 'COLSPAN="2"' in node_line(g, "T0")                     # value | grad in one row
    # A chain wrapped into columns keeps each column narrow: value above grad.
    net = two_layer()
    g = viz.draw_graph(net.tape, net.loss, rankdir="TB")
    assert "column_tops" in g.source and 'COLSPAN="2"' not in node_line(g, "T0")
