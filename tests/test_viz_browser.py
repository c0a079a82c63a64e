"""The step page in a real browser: headless Chromium steps through every frame.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs
them when run as root) and selenium (in the dev extras). Skips, saying
which, when one is missing.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import microtape as mt
import viz
from viz.example import two_layer
from viz.steps import backward_walk
from viz.tapeview import TapeView

from .test_viz_graph import needs_dot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    needs_dot,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                                "(apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="chromedriver is not installed "
                                                    "(apt-get install chromium-driver)"),
]

# Flags that let Chromium run headless as root in a container, offline.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")

# Where each frame stands, read from the page itself.
STATE = """
var view = document.getElementById("view").getBoundingClientRect();
var legend = document.getElementById("legend").getBoundingClientRect();
var svg = document.querySelector("#view svg").getBoundingClientRect();
var current = document.querySelector("#view .current");
var box = current ? current.getBoundingClientRect() : null;
var title = current ? current.querySelector("text").getBoundingClientRect() : null;
var shown = [], fresh = [];
document.querySelectorAll("#view g.node").forEach(function (g) {
  var block = document.getElementById("a_" + g.id + "_grad");
  if (block && !block.classList.contains("hidden")) { shown.push(g.id); }
  if (g.classList.contains("fresh")) { fresh.push(g.id); }
});
return {frame: document.querySelector("#view svg").getAttribute("data-frame"),
        counter: document.getElementById("counter").textContent,
        caption: document.getElementById("caption").textContent,
        current: current ? current.id : null,
        box: box && [box.left, box.top, box.right, box.bottom],
        legend: [legend.left, legend.top, legend.right, legend.bottom],
        svg: [svg.left, svg.top, svg.right, svg.bottom],
        zoomed: document.getElementById("zoomed").textContent,
        view: [view.left, view.top, view.right, view.bottom],
        window: [window.innerWidth, window.innerHeight],
        titleHeight: title && title.height,
        shown: shown.sort(), fresh: fresh.sort()};
"""


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1000,700")     # smaller than the drawing: it must scroll
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def inside(box, area) -> bool:
    left, top, right, bottom = box
    return left >= area[0] - 0.5 and top >= area[1] - 0.5 and right <= area[2] + 0.5 \
        and bottom <= area[3] + 0.5


def test_stepping_through_every_frame_with_the_keys(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    net = two_layer()
    index = viz.render_backward_steps(net.tape, net.loss, tmp_path / "steps", params=net.params)
    walk = backward_walk(TapeView(net.tape, net.loss, net.params))
    browser.get(index.as_uri())
    body = browser.find_element(By.TAG_NAME, "body")

    for frame in range(walk.frames):
        if frame:
            body.send_keys(Keys.ARROW_RIGHT)
        state = browser.execute_script(STATE)
        assert state["frame"] == str(frame) and state["counter"] == walk.counters[frame]
        assert state["caption"] == walk.captions[frame]
        assert state["shown"] == sorted(walk.shown(frame)), frame
        assert state["fresh"] == sorted(walk.fresh(frame)), frame
        assert state["current"] == walk.current(frame)
        if state["current"] is not None:
            # The op applying its VJP is scrolled into view, whole, and legible.
            assert inside(state["box"], state["view"]), state
            assert inside(state["box"], [0, 0, *state["window"]]), state
            assert state["titleHeight"] >= 9, state
        else:
            # The forward pass and the end show the legend: its top, its width.
            left, top, right, bottom = state["legend"]
            assert inside([left, top, right, min(bottom, state["view"][3])], state["view"]), state
    body.send_keys(Keys.ARROW_RIGHT)                        # past the end: stays there
    assert browser.execute_script(STATE)["frame"] == str(walk.frames - 1)
    body.send_keys(Keys.HOME)
    assert browser.execute_script(STATE)["shown"] == []
    body.send_keys(Keys.END, Keys.ARROW_LEFT)
    assert browser.execute_script(STATE)["current"] == walk.current(walk.frames - 2)

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []


def test_partial_sums_are_written_into_the_drawing(tmp_path, browser):
    x = mt.Tensor([0.5, -1.0], name="x")
    with mt.Tape() as tape:
        h = mt.tanh(x, name="h")
        loss = mt.sum(mt.mul(h, 2.0) + mt.exp(h), name="L")
    index = viz.render_backward_steps(tape, loss, tmp_path)
    view = TapeView(tape, loss)
    walk = backward_walk(view)
    h_id = view.info(h).node_id
    browser.get(index.as_uri())
    texts = ("return Array.prototype.map.call(document.querySelectorAll('#a_" + h_id
             + "_grad text'), function (t) { return t.textContent; }).slice(1);")
    frames = {}
    for frame in range(walk.frames):
        if frame:
            browser.find_element("tag name", "body").send_keys("\ue014")   # arrow right
        frames[frame] = browser.execute_script(texts)
    (first, partial), (last, _) = walk.grads[h_id]
    assert frames[first] == partial                      # exp(h): one of two contributions
    assert frames[last] == frames[walk.frames - 1] != partial   # 2 + exp(h), the tape's sum
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


# Every text of the drawing that is showing: its box on screen and the node or
# edge it belongs to, with that node's outline.
TEXTS = """
var out = [];
document.querySelectorAll("#view svg text").forEach(function (t) {
  if (!t.textContent.trim() || getComputedStyle(t).visibility === "hidden") { return; }
  var r = t.getBoundingClientRect(), g = t.closest("g.node, g.edge");
  var shape = g && g.classList.contains("node") ? g.querySelector("path, polygon") : null;
  var s = shape && shape.getBoundingClientRect();
  out.push({text: t.textContent, owner: g ? g.id : null, box: [r.left, r.top, r.right, r.bottom],
            outline: s && [s.left, s.top, s.right, s.bottom]});
});
return out;
"""


def clashes(texts: list[dict]) -> list[tuple[str, str]]:
    """Pairs of texts drawn over each other. Stacked lines' boxes (a font's ascent
    and descent) may graze by under a pixel, so more than 1 px each way counts."""
    found = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            w = min(a["box"][2], b["box"][2]) - max(a["box"][0], b["box"][0])
            h = min(a["box"][3], b["box"][3]) - max(a["box"][1], b["box"][1])
            if w > 1 and h > 1:
                found.append((a["text"], b["text"]))
    return found


def outside_their_node(texts: list[dict], margin: float = 2.0) -> list[str]:
    """Texts that reach within ``margin`` px of their node's outline, or past it."""
    return [t["text"] for t in texts if t["outline"] is not None
            and not inside([t["box"][0] - margin, t["box"][1], t["box"][2] + margin, t["box"][3]],
                           t["outline"])]


def tanh_mse():
    """A learner's first regression: scalars and a column, a tanh layer, mean squared error."""
    rng = np.random.default_rng(0)
    x = mt.Tensor(rng.normal(size=(4, 2)), name="x")
    y = mt.Tensor(rng.normal(size=(4, 1)), name="y")
    W = mt.Tensor(rng.normal(size=(2, 1)), name="W")
    b = mt.Tensor(0.1, name="b")
    with mt.Tape() as tape:
        out = mt.tanh(x @ W + b, name="out")
        loss = mt.mean((out - y) ** 2, name="L")
    return tape, loss, {"W": W, "b": b}


@pytest.mark.parametrize("which", ["derivation", "tanh_mse"])
def test_no_text_is_drawn_over_another_in_any_frame(tmp_path, browser, which):
    from selenium.webdriver.common.keys import Keys

    if which == "derivation":
        net = two_layer()
        tape, loss, params = net.tape, net.loss, net.params
    else:
        tape, loss, params = tanh_mse()
    index = viz.render_backward_steps(tape, loss, tmp_path / "steps", params=params)
    frames = backward_walk(TapeView(tape, loss, params)).frames
    browser.set_window_size(1400, 900)
    browser.get(index.as_uri())
    body = browser.find_element("tag name", "body")
    for frame in range(frames):
        if frame:
            body.send_keys(Keys.ARROW_RIGHT)
        texts = browser.execute_script(TEXTS)
        pending = any(t["text"] == "grad: not yet" for t in texts)
        assert pending or frame > 0                      # the texts the forward pass shows...
        assert not pending or frame < frames - 1
        assert clashes(texts) == [], frame
        assert outside_their_node(texts) == [], frame       # the legend's lines too


def test_fit_shows_the_whole_drawing_and_starts_where_100_percent_would_not(tmp_path, browser):
    net = two_layer()
    index = viz.render_backward_steps(net.tape, net.loss, tmp_path / "steps", params=net.params)
    # Wide enough for every op with its inputs and output at 100%: the page starts there.
    browser.set_window_size(1400, 1000)
    browser.get(index.as_uri())
    state = browser.execute_script(STATE)
    assert state["zoomed"] == "100%" and not inside(state["svg"], state["view"])
    browser.find_element("id", "fit").click()
    state = browser.execute_script(STATE)
    assert inside(state["svg"], state["view"]), state
    browser.find_element("tag name", "body").send_keys("0")
    assert browser.execute_script(STATE)["zoomed"] == "100%"
    # Too narrow for add #1 with XW1 and b1 side by side: the page starts fitted.
    browser.set_window_size(640, 720)
    browser.get(index.as_uri())
    state = browser.execute_script(STATE)
    assert state["zoomed"] != "100%" and inside(state["svg"], state["view"]), state


def test_the_step_page_of_a_recorded_backward_pass_plays_every_frame(tmp_path, browser):
    # z = Σ d/dx Σ x³: the page walks the user's ops and the ops of the recorded VJPs alike.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from .test_viz_passes import second_derivative_tape

    tape, x, z = second_derivative_tape()
    index = viz.render_backward_steps(tape, z, tmp_path / "steps")
    walk = backward_walk(TapeView(tape, z))
    browser.get(index.as_uri())
    body = browser.find_element(By.TAG_NAME, "body")
    recorded = 0
    for frame in range(walk.frames):
        if frame:
            body.send_keys(Keys.ARROW_RIGHT)
        state = browser.execute_script(STATE)
        assert state["frame"] == str(frame) and state["caption"] == walk.captions[frame]
        assert state["shown"] == sorted(walk.shown(frame)), frame
        assert state["current"] == walk.current(frame)
        if state["current"] is not None:
            assert inside(state["box"], state["view"]), state
        caption = state["caption"]
        recorded += caption.startswith("Step") and "recorded by a backward pass" in caption
    assert recorded == 4                       # broadcast_to, mul, pow, mul: two VJPs' ops
    frames = browser.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#view g.cluster text'),"
        " function (t) { return t.textContent; });")
    assert any(f.startswith("backward of pow #0 → dA") for f in frames), frames
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


def test_a_drawing_in_a_notebook_shrinks_to_the_output_width_and_never_grows(tmp_path, browser):
    # The HTML a notebook shows for a drawing (viz.notebook.fitted), in an output area
    # 600 px wide: the derivation's graph is wider and shrinks, keeping its shape; a
    # small drawing keeps its own size.
    import xml.etree.ElementTree as ET

    from selenium.webdriver.support.ui import WebDriverWait

    from viz.notebook import fitted

    net = two_layer()
    big = viz.draw_graph(net.tape, net.loss, params=net.params).pipe(format="svg", encoding="utf-8")
    x = mt.Tensor([1.0, 2.0], name="x")
    with mt.Tape() as tape:
        loss = mt.sum(x * x, name="L")
    small = viz.draw_graph(tape, loss, legend=False).pipe(format="svg", encoding="utf-8")
    page = tmp_path / "outputs.html"
    page.write_text('<!DOCTYPE html><html><body style="margin: 0">'
                    + "".join(f'<div id="{k}" style="width: 600px">{fitted(s)}</div>'
                              for k, s in (("big", big), ("small", small)))
                    + "</body></html>", encoding="utf-8")
    browser.get(page.as_uri())
    WebDriverWait(browser, 10).until(lambda b: b.execute_script(
        "return Array.prototype.every.call(document.images, function (i) { return i.complete; })"))
    sizes = browser.execute_script(
        "return ['big', 'small'].map(function (id) {"
        " var r = document.querySelector('#' + id + ' img').getBoundingClientRect();"
        " return [r.width, r.height]; });")

    def points(svg):   # the drawing's own size, pt
        root = ET.fromstring(svg.encode("utf-8"))
        return float(root.get("width").rstrip("pt")), float(root.get("height").rstrip("pt"))

    (big_w, big_h), (small_w, small_h) = sizes
    width, height = points(big)
    assert width * 4 / 3 > 600 and abs(big_w - 600) < 1      # 1 pt = 4/3 CSS px
    assert abs(big_h / big_w - height / width) < 0.01
    width, height = points(small)
    assert width * 4 / 3 < 600 and abs(small_w - width * 4 / 3) < 1.5
    assert abs(small_h - height * 4 / 3) < 1.5
