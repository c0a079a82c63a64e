"""Names and values reach the SVG and index.html as text, never as markup."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

import microtape as mt
import viz
from viz.labels import visible

from .test_viz_graph import by_name, needs_dot, svg_nodes

NASTY = [
    "<script>alert(1)</script>",
    "\" onload=\"alert(1)",
    "' onmouseover='alert(1)",
    "<img src=x onerror=alert(1)>",
    "{braces} | pipes | <ports>",
    "back\\slash \\N \\G \\E \\T \\H \\L \\l \\n \\",
    "two\nlines",
    "]]> &amp; &lt;b&gt; &#60;script&#62;",
    "bell\x07 nul\x00 esc\x1b",
    "</title></svg><script>x</script>",
]


def nasty_op(name: str) -> mt.Primitive:
    """An identity op whose name (and formula note) is ``name``: op names are user strings."""
    def forward(a):
        return a * 1.0, (lambda g: g,)
    forward.__name__ = name
    return mt.primitive("dA = G")(forward)


def nasty_tape():
    # Tensor names become the identifiers the code uses (microtape.naming), so the
    # strings that still reach a drawing as they are written are op names.
    ops = [nasty_op(n) for n in NASTY]
    x = mt.Tensor(np.arange(1.0, 4.0), name="x")
    with mt.Tape() as tape:
        s = x
        for op in ops:
            s = op(s)
        loss = s.sum()
    loss.name = "<b>loss</b>\"'"
    return tape, loss, ops


def assert_no_markup_from_names(root: ET.Element) -> None:
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1].lower()
        assert tag not in ("script", "img", "foreignobject", "iframe"), tag
        for attr in el.attrib:
            assert not attr.rsplit("}", 1)[-1].lower().startswith("on"), attr


def as_drawn(name: str) -> str:
    """The name as a label shows it: control characters as pictures."""
    return visible(name)


@needs_dot
def test_nasty_names_are_text_in_the_svg(tmp_path):
    tape, loss, ops = nasty_tape()
    path = viz.render(tape, tmp_path / "graph.svg", loss)
    root = ET.parse(path).getroot()
    assert_no_markup_from_names(root)
    nodes = svg_nodes(path.read_bytes())
    for k, op in enumerate(ops):
        [node] = [n for n in nodes.values() if n["tooltip"].startswith(
            as_drawn(op.name).replace("\\", "∖") + f" (op #{k} on the tape)")]
        # The label draws each line of the name exactly, backslashes included
        # (names past 40 characters are cut with "…"; the tooltip has them whole).
        drawn = as_drawn(op.name)
        drawn = drawn if len(drawn) <= 40 else drawn[:39] + "…"
        for line in drawn.split("\n"):
            assert line in " ".join(node["text"]), (op.name, node["text"])
    # The loss's name is drawn as the identifier the code calls it.
    assert by_name(nodes, "_b_loss__b___")["tooltip"].startswith("_b_loss__b___: loss ")


def test_nasty_names_stay_inside_their_dot_strings():
    tape, loss, ops = nasty_tape()
    source = viz.draw_graph(tape, loss).source
    # Tooltips are quoted DOT strings (Graphviz escapes them in the SVG); what
    # is left is ids, attributes and HTML labels, where names must be entities.
    outside = re.sub(r'tooltip="(?:[^"\\]|\\.)*"', "", source)
    assert "tooltip=" not in outside.replace("tooltip=legend", "")
    assert "<script" not in outside and "<img" not in outside and "<b>" not in outside
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outside
    assert re.search(r"(?<!\\)\\N", outside) is None      # backslashes doubled: no \N expansion


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@needs_dot
def test_nasty_names_are_text_in_the_step_page(tmp_path):
    tape, loss, ops = nasty_tape()
    index = viz.render_backward_steps(tape, loss, tmp_path)
    page = index.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "walk"}, {}]   # data, our one script
    assert [tag for tag, _ in parser.tags if tag in ("img", "iframe", "object")] == []
    for tag, attrs in parser.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        for a in ("src", "href", "data-src", "xlink:href"):
            assert attrs.get(a, "#") == "#", (tag, attrs)
    text = "".join(parser.text)
    assert "Backward pass of _b_loss__b___" in text
    [data] = re.findall(r'<script type="application/json" id="walk">(.*?)</script>', page, re.S)
    assert "<" not in data and ">" not in data and "&" not in data
    captions = " ".join(json.loads(data)["captions"])
    for name in NASTY:
        assert f"{visible(name)} #" in captions, name
    assert "bell␇ nul␀ esc␛" in captions
    csp = [attrs["content"] for tag, attrs in parser.tags
           if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "script-src 'sha256-" in csp[0]
    [svg] = re.findall(r"(<svg.*</svg>)", page, re.S)
    assert_no_markup_from_names(ET.fromstring(svg))


@pytest.mark.parametrize("name", NASTY)
def test_each_nasty_name_renders_to_valid_dot(name):
    x = mt.Tensor([1.0, 2.0], name=name)
    with mt.Tape() as tape:
        y = mt.exp(x).sum()
    g = viz.draw_graph(tape, y)
    label = g.body[0]
    assert "<B>" in label and label.count("<TABLE") == label.count("</TABLE>")
