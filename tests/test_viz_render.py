"""viz.render and python -m viz: files of every format, and life without `dot`."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microtape as mt
import viz
from viz.__main__ import main
from viz.example import two_layer

from .test_viz_graph import by_name, needs_dot, svg_nodes, tooltip_array

INSTALL_COMMANDS = ("apt-get install graphviz", "brew install graphviz",
                    "conda install -c conda-forge graphviz")


@needs_dot
def test_svg_is_xml_with_every_parameter_gradient(tmp_path):
    net = two_layer()
    path = viz.render(net.tape, tmp_path / "graph.svg", net.loss, params=net.params)
    assert path == tmp_path / "graph.svg"
    ET.parse(path)
    nodes = svg_nodes(path.read_bytes())
    for name, p in net.params.items():
        np.testing.assert_allclose(tooltip_array(by_name(nodes, name)["tooltip"], "grad"),
                                   net.tape.gradient(net.loss, p), rtol=1e-7, atol=1e-12)


@needs_dot
@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF")])
def test_png_and_pdf(tmp_path, fmt, magic):
    net = two_layer()
    path = viz.render(net.tape, tmp_path / f"graph.{fmt}", net.loss)
    assert path.read_bytes().startswith(magic)


def test_dot_needs_no_graphviz_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    net = two_layer()
    path = viz.render(net.tape, tmp_path / "graph.dot", net.loss)
    assert path.read_text(encoding="utf-8") == viz.draw_graph(net.tape, net.loss).source


def test_format_and_suffix(tmp_path):
    net = two_layer()
    assert viz.render(net.tape, tmp_path / "g", net.loss, format="dot") == tmp_path / "g.dot"
    assert viz.render(net.tape, tmp_path / "sub" / "g.gv", net.loss).exists()   # folders made
    with pytest.raises(ValueError, match="cannot tell the format"):
        viz.render(net.tape, tmp_path / "g.txt", net.loss)
    with pytest.raises(ValueError, match="says svg but format='png'"):
        viz.render(net.tape, tmp_path / "g.svg", net.loss, format="png")
    with pytest.raises(ValueError, match="format must be one of"):
        viz.render(net.tape, tmp_path / "g", net.loss, format="jpeg")


def test_missing_dot_says_how_to_install_and_writes_the_dot_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    net = two_layer()
    with pytest.raises(viz.GraphvizNotFoundError) as info:
        viz.render(net.tape, tmp_path / "graph.svg", net.loss)
    message = str(info.value)
    for command in INSTALL_COMMANDS:
        assert command in message
    assert str(tmp_path / "graph.dot") in message
    assert (tmp_path / "graph.dot").read_text(encoding="utf-8") == \
        viz.draw_graph(net.tape, net.loss).source
    assert not (tmp_path / "graph.svg").exists()


def test_missing_dot_in_a_subprocess_with_an_empty_path(tmp_path):
    env = {**os.environ, "PATH": ""}
    result = subprocess.run([sys.executable, "-m", "viz", "--out", "net.png"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    for command in INSTALL_COMMANDS:
        assert command in result.stderr
    assert (tmp_path / "net.dot").read_text(encoding="utf-8").startswith("digraph microtape {")


@needs_dot
def test_python_m_viz_writes_graph_svg_and_the_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--steps", "steps"]) == 0
    out = capsys.readouterr().out
    assert "wrote graph.svg" in out and "index.html" in out
    nodes = svg_nodes((tmp_path / "graph.svg").read_bytes())
    names = {n["tooltip"].split(":")[0] for n in nodes.values() if ": " in n["tooltip"]}
    assert {"X", "Y", "W1", "b1", "W2", "b2", "t", "h", "v", "J"} <= names
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["index.html"]
    assert main(["--out", "again.png", "--check"]) == 0
    assert (tmp_path / "again.png").read_bytes().startswith(b"\x89PNG")
    assert main(["--format", "dot"]) == 0
    assert (tmp_path / "graph.dot").read_text(encoding="utf-8").startswith("digraph microtape {")


@needs_dot
def test_five_hundred_ops_render_with_summaries(tmp_path):
    rng = np.random.default_rng(0)
    x = mt.Tensor(rng.normal(size=(8, 8)), name="x")
    ws = [mt.Tensor(rng.normal(size=(8, 8)) * 0.3, name=f"w{i}") for i in range(250)]
    with mt.Tape() as tape:
        h = x
        for w in ws:
            h = mt.tanh(h @ w)
        loss = h.sum()
    assert len(tape) == 501
    path = viz.render(tape, tmp_path / "big.svg", loss)
    nodes = svg_nodes(path.read_bytes())
    assert len([k for k in nodes if k.startswith("op")]) == 501
    w0 = by_name(nodes, "w0")
    assert any(t.startswith("min ") for t in w0["text"])          # 64 elements: a summary
    np.testing.assert_allclose(tooltip_array(w0["tooltip"], "grad"), tape.gradient(loss, ws[0]),
                               rtol=1e-7, atol=1e-12)


@needs_dot
def test_a_realistic_network_renders_despite_graphvizs_string_limit(tmp_path):
    # dot refuses a quoted string over 16,384 characters; a 64x64 weight
    # matrix written out in full would be four times that.
    rng = np.random.default_rng(0)
    W = mt.Tensor(rng.normal(size=(64, 64)), name="W" * 20_000)
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(mt.sigmoid(rng.normal(size=(16, 64)) @ W), np.arange(16) % 10)
    path = viz.render(tape, tmp_path / "big.svg", loss)
    ET.parse(path)
    tips = [n["tooltip"] for n in svg_nodes(path.read_bytes()).values() if "tooltip" in n]
    assert any("..." in tip and "grad" in tip for tip in tips)  # the big arrays are summarised


@needs_dot
@pytest.mark.parametrize("args", [["--out", "."], ["--out", "folder"], ["--out", "out"],
                                  ["--out", "folder", "--format", "png"],
                                  ["--out", "g.png", "--format", "svg"]])
def test_python_m_viz_refuses_an_out_it_cannot_draw_to_with_a_name_that_works(
        args, tmp_path, monkeypatch, capsys):
    # A folder got "e.g. out" (or "e.g. folder/out"), and --out out then failed with
    # "cannot tell the format ... or pass format=", a keyword the command does not take.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "format=" not in err
    fixed = list(args)
    if "e.g. " in err:
        fixed[1] = err.split("e.g. ")[1].split(")")[0].strip()
    else:
        fixed = fixed[:2]           # the suffix and --format disagreed: drop --format
    assert main(fixed) == 0
    assert (tmp_path / fixed[1]).is_file()


@pytest.mark.parametrize("args, phrase", [
    (["--out", "afile/g.svg"], "--out afile/g.svg: afile is a file, so no folder can be made there"),
    (["--out", "folder"], "--out folder: is a folder; name a file in it"),
    (["--steps", "afile"], "--steps afile: is a file, not a folder"),
    (["--seed", "-3"], "argument --seed: expected a non-negative integer, got -3"),
    (["--out", ""], "argument --out: expected a path, got an empty one"),  # wrote graph.svg
    (["--steps", ""], "argument --steps: expected a path, got an empty one")])
def test_python_m_viz_says_what_is_wrong_with_a_path_or_seed_before_drawing(
        args, phrase, tmp_path, monkeypatch, capsys):
    # Each raised a traceback (NotADirectoryError, IsADirectoryError, FileExistsError
    # after graph.svg was written, numpy's ValueError for the seed)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and phrase in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]  # nothing written
