"""render_backward_steps: watch the backward pass walk your own graph.

The backward pass visits the tape's nodes in reverse (``Tape.backward``).
At the step that visits a node, the gradient of its output, ``G``, is
complete (every op that used the output came later on the tape, so it was
visited earlier) and the node hands it to its VJP. Frame k therefore shows

- ``G`` on the outputs of the first k nodes visited, and
- the gradient of each leaf once the last op using it has been visited,

so every frame shows more gradients than the one before, from the loss back
to the inputs. Every frame has the same layout: node sizes are taken from
the last frame (which shows everything) and fixed.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path
from typing import Any

from microtape import Tape, Tensor
from microtape.files import write_atomic

from .graph import Frame, Options, build
from .render import INSTALL_HINT, GraphvizNotFoundError, pipe
from .labels import visible
from .tapeview import TapeView, ensure_gradients

_DRAW_OPTIONS = ("values", "formulas", "max_elements", "rankdir", "legend")


def render_backward_steps(tape: Tape, target: Tensor, out_dir: str | Path, *, params: Any = None,
                          **draw_options: Any) -> Path:
    """One SVG per backward step in ``out_dir``, plus an ``index.html`` that steps
    through them (buttons and arrow keys; no network, no external scripts).

    ``draw_options``: values, formulas, max_elements, rankdir, legend, as for
    ``draw_graph``; ``params`` marks the parameters. Runs
    ``tape.backward(target)`` when the gradients are not there yet. Returns
    the path of ``index.html``. Each frame costs one run of ``dot``, so this
    is meant for graphs of up to a few dozen ops.
    """
    unknown = sorted(set(draw_options) - set(_DRAW_OPTIONS))
    if unknown:
        raise TypeError(f"render_backward_steps: unexpected option(s) {', '.join(unknown)}; "
                        f"frames accept {', '.join(_DRAW_OPTIONS)} and params")
    if target is None:
        raise ValueError("render_backward_steps: a target is needed (the loss to differentiate)")
    opts = Options(grads=True, **draw_options)
    view = TapeView(tape, target, params)
    if not ensure_gradients(tape, target):
        raise ValueError(f"render_backward_steps: the target has shape {target.shape}; seed its "
                         f"gradient first with tape.backward(target, seed=...)")
    frames, captions = _frames(view)
    if not frames:
        raise ValueError("render_backward_steps: the target was not computed by any op on this "
                         "tape, so there is no backward pass to show")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(len(frames))))
    names = [f"step_{k:0{width}d}.svg" for k in range(1, len(frames) + 1)]

    # The last frame shows every gradient: its node sizes fit every frame.
    final = build(view, opts, frame=frames[-1])
    try:
        sizes = _node_sizes(pipe(final, "plain", out_dir / names[-1]))
    except GraphvizNotFoundError:
        for name, frame in zip(names, frames):
            write_atomic((out_dir / name).with_suffix(".dot"), build(view, opts, frame=frame).source)
        raise GraphvizNotFoundError(
            f"cannot draw the backward steps: Graphviz's 'dot' program was not found on PATH. "
            f"The {len(frames)} frames were written as .dot files in {out_dir} instead. "
            f"{INSTALL_HINT}; then draw again.") from None
    for name, frame in zip(names, frames):
        frame.sizes = sizes
        write_atomic(out_dir / name, pipe(build(view, opts, frame=frame), "svg", out_dir / name))

    target_name = view.info(target).name
    index = out_dir / "index.html"
    write_atomic(index, _page(target_name, names, captions))
    return index


def _frames(view: TapeView) -> tuple[list[Frame], list[str]]:
    """The frames of the backward pass over ``view``, with a caption for each."""
    steps = [k for k in range(len(view.nodes) - 1, -1, -1) if view.nodes[k].output.grad is not None]
    order = {k: s for s, k in enumerate(steps)}
    ready: dict[int, list] = {}  # step -> leaves whose gradient is complete after it
    for info in view.leaves:
        uses = [order[k] for k in info.consumers if k in order]
        if info.tensor.grad is not None and uses:
            ready.setdefault(max(uses), []).append(info)

    target = view.info(view.target).name
    frames, captions = [], []
    shown: set[int] = set()
    for s, k in enumerate(steps):
        node = view.nodes[k]
        out = view.info(node.output)
        leaves = ready.get(s, [])
        fresh = {id(node.output)} | {id(i.tensor) for i in leaves}
        shown |= fresh
        frames.append(Frame(shown=set(shown), current=k, fresh=fresh))
        if node.output is not view.target:
            given = f"G = d{target}/d{out.name}"
        else:
            given = "the seed G = 1" if view.target.size == 1 else "the seed G"
        caption = (f"Step {s + 1} of {len(steps)}: {node.op.name} #{view.indices[k]} receives "
                   f"{given} and applies {node.op.formula}.")
        if leaves:
            caption += " Complete now: " + ", ".join(f"d{target}/d{i.name}" for i in leaves) + "."
        captions.append(caption)
    return frames, captions


def _node_sizes(plain: bytes) -> dict[str, tuple[float, float]]:
    """DOT id -> (width, height) from ``dot -Tplain`` ("node id x y w h ...")."""
    sizes = {}
    for line in plain.decode("utf-8", "replace").splitlines():
        parts = line.split(None, 6)
        if len(parts) >= 6 and parts[0] == "node":
            sizes[parts[1].strip('"')] = (float(parts[4]), float(parts[5]))
    return sizes


_STYLE = """
body { font: 14px/1.4 Helvetica, Arial, sans-serif; margin: 1em; color: #222; }
nav { display: flex; gap: .4em; align-items: center; flex-wrap: wrap; }
button { font: inherit; padding: .2em .8em; }
#counter { min-width: 6em; text-align: center; font-variant-numeric: tabular-nums; }
#caption { min-height: 3em; margin: .6em 0; }
#view { overflow: auto; border: 1px solid #ddd; }
#frame.fit { max-width: 100%; height: auto; }
ol { color: #555; font-size: 12px; }
li { cursor: pointer; }
li[aria-current="step"] { color: #000; font-weight: bold; }
"""

_SCRIPT = """
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll("#steps li"));
  var img = document.getElementById("frame");
  var link = document.getElementById("open");
  var caption = document.getElementById("caption");
  var counter = document.getElementById("counter");
  var play = document.getElementById("play");
  var timer = null;
  var k = 0;
  function show(i) {
    k = Math.max(0, Math.min(items.length - 1, i));
    var src = items[k].getAttribute("data-src");
    img.setAttribute("src", src);
    link.setAttribute("href", src);
    caption.textContent = items[k].textContent;
    counter.textContent = (k + 1) + " / " + items.length;
    items.forEach(function (li, j) {
      if (j === k) { li.setAttribute("aria-current", "step"); } else { li.removeAttribute("aria-current"); }
    });
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; } }
  function toggle() {
    if (timer) { stop(); return; }
    if (k === items.length - 1) { show(0); }
    play.textContent = "pause";
    timer = setInterval(function () { if (k === items.length - 1) { stop(); } else { show(k + 1); } }, 1200);
  }
  document.getElementById("first").addEventListener("click", function () { stop(); show(0); });
  document.getElementById("prev").addEventListener("click", function () { stop(); show(k - 1); });
  document.getElementById("next").addEventListener("click", function () { stop(); show(k + 1); });
  document.getElementById("last").addEventListener("click", function () { stop(); show(items.length - 1); });
  play.addEventListener("click", toggle);
  document.getElementById("zoom").addEventListener("click", function () {
    var fit = img.classList.toggle("fit");
    this.textContent = fit ? "actual size" : "fit to width";
  });
  items.forEach(function (li, j) { li.addEventListener("click", function () { stop(); show(j); }); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft" || e.key === "ArrowUp") { stop(); show(k - 1); e.preventDefault(); }
    else if (e.key === "ArrowRight" || e.key === "ArrowDown") { stop(); show(k + 1); e.preventDefault(); }
    else if (e.key === "Home") { stop(); show(0); e.preventDefault(); }
    else if (e.key === "End") { stop(); show(items.length - 1); e.preventDefault(); }
  });
  show(0);
})();
"""


def _text(s: str) -> str:
    """``s`` as HTML text or attribute value: entities, visible control characters."""
    return html.escape(visible(s), quote=True)


def _page(target_name: str, names: list[str], captions: list[str]) -> str:
    """index.html: every user string enters as escaped text; the one script is
    inline and pinned by its hash in the Content-Security-Policy, so nothing
    else can run and nothing is fetched from the network."""
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")
    title = _text(f"Backward pass of {target_name}")
    items = "\n".join(f'<li data-src="{_text(name)}">{_text(text)}</li>'
                      for name, text in zip(names, captions))
    first = _text(names[0])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p>The gradients appear from the loss back towards the inputs, one op at a time:
at each step the highlighted op receives the gradient of its output and applies
its VJP. Keys: &larr; &rarr; step, Home / End jump. Open a frame alone
to hover over its nodes for the full arrays.</p>
<nav>
<button id="first" type="button">&laquo; first</button>
<button id="prev" type="button">&larr; back</button>
<span id="counter">1 / {len(names)}</span>
<button id="next" type="button">next &rarr;</button>
<button id="last" type="button">last &raquo;</button>
<button id="play" type="button">play</button>
<button id="zoom" type="button">actual size</button>
<a id="open" href="{first}">open this frame alone (hover for full arrays)</a>
</nav>
<p id="caption">{_text(captions[0])}</p>
<div id="view"><img id="frame" class="fit" src="{first}" alt="the graph at this step of the backward pass"></div>
<ol id="steps">
{items}
</ol>
<script>{_SCRIPT}</script>
</body>
</html>
"""
