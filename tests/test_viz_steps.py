"""viz.render_backward_steps: one frame per backward step, gradients growing."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microtape as mt
import viz
from viz.example import two_layer

from viz.legend import CURRENT

from .test_viz_graph import SVG, by_name, needs_dot, svg_nodes, tooltip_array


def gradients_shown(svg: bytes) -> dict[str, np.ndarray]:
    """Tensor name -> the gradient its tooltip carries, for one frame."""
    shown = {}
    for node in svg_nodes(svg).values():
        grad = tooltip_array(node["tooltip"], "grad")
        if grad is not None:
            shown[node["tooltip"].split(": ")[0]] = grad
    return shown


@needs_dot
def test_one_frame_per_step_each_with_more_gradients(tmp_path):
    net = two_layer()
    index = viz.render_backward_steps(net.tape, net.loss, tmp_path / "steps", params=net.params)
    frames = sorted((tmp_path / "steps").glob("step_*.svg"))
    assert index == tmp_path / "steps" / "index.html"
    assert [f.name for f in frames] == [f"step_00{k}.svg" for k in range(1, 7)]   # 6 ops

    shown = [gradients_shown(f.read_bytes()) for f in frames]
    counts = [len(s) for s in shown]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    assert set(shown[0]) == {"J"}                        # step 1: the loss's seed
    assert set(shown[1]) == {"J", "v", "b2"}             # add #4 takes dJ/dv; b2 is done
    assert set(shown[-1]) == {"J", "v", "h W2", "h", "t", "X W1", "W2", "b2", "W1", "b1", "X"}
    # Every gradient shown is the final one, equal to the tape's.
    for frame in shown:
        for name, grad in frame.items():
            tensor = {**net.params, **net.data}.get(name)
            if tensor is not None:
                np.testing.assert_allclose(grad, tensor.grad, rtol=1e-7, atol=1e-12)

    page = index.read_text(encoding="utf-8")
    for f in frames:
        assert f'data-src="{f.name}"' in page
    assert "ArrowRight" in page and "ArrowLeft" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<script src" not in page


@needs_dot
def test_frames_share_one_layout(tmp_path):
    net = two_layer()
    viz.render_backward_steps(net.tape, net.loss, tmp_path)
    sizes = set()
    for k, f in enumerate(sorted(tmp_path.glob("step_*.svg")), start=1):
        root = ET.parse(f).getroot()
        sizes.add((root.get("width"), root.get("height")))
        # The op applying its VJP in this frame is outlined in the highlight
        # colour: sce (op5) first, back to the first matmul (op0).
        outlined = [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")
                    if g.get("class") == "node" and g.find(f"{SVG}title").text.startswith("op")
                    and any(el.get("stroke") == CURRENT for el in g.iter())]
        assert outlined == [f"op{6 - k}"]
    assert len(sizes) == 1


@needs_dot
def test_fan_out_frames_still_grow(tmp_path):
    x = mt.Tensor([0.5, -1.0], name="x")
    with mt.Tape() as tape:
        h = mt.tanh(x)
        a = h * 2.0
        b = mt.exp(h)
        loss = (a + b).sum()
    viz.render_backward_steps(tape, loss, tmp_path)
    shown = [gradients_shown(f.read_bytes()) for f in sorted(tmp_path.glob("step_*.svg"))]
    assert len(shown) == 5
    counts = [len(s) for s in shown]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    # h (tanh(x)) is used twice; its gradient is shown when tanh takes it, after both
    # ops using it (mul, exp) have sent their contributions.
    assert ["tanh(x)" in s for s in shown] == [False, False, False, False, True]
    np.testing.assert_allclose(shown[-1]["tanh(x)"], h.grad)
    np.testing.assert_allclose(shown[-1]["tanh(x)"], 2.0 + np.exp(h.value))
    np.testing.assert_allclose(shown[-1]["x"], x.grad)


def test_step_arguments_are_checked(tmp_path):
    net = two_layer()
    with pytest.raises(TypeError, match="unexpected option"):
        viz.render_backward_steps(net.tape, net.loss, tmp_path, check=True)
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        y = mt.exp(x)
    with pytest.raises(ValueError, match="seed its gradient first"):
        viz.render_backward_steps(tape, y, tmp_path)


def test_missing_dot_writes_the_frames_as_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    net = two_layer()
    with pytest.raises(viz.GraphvizNotFoundError, match="brew install graphviz"):
        viz.render_backward_steps(net.tape, net.loss, tmp_path)
    assert len(list(tmp_path.glob("step_*.dot"))) == 6


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_script_parses(tmp_path):
    from viz.steps import _SCRIPT
    script = tmp_path / "page.js"
    script.write_text(_SCRIPT, encoding="utf-8")
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_dot
def test_the_csp_hash_pins_the_inline_script(tmp_path):
    import base64
    import hashlib
    net = two_layer()
    page = viz.render_backward_steps(net.tape, net.loss, tmp_path).read_text(encoding="utf-8")
    [body] = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in page
    assert by_name(svg_nodes((tmp_path / "step_006.svg").read_bytes()), "W1")
