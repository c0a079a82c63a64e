"""render_backward_steps: watch the backward pass walk your own graph.

The page holds one drawing of the tape (an inline SVG with every value and
gradient) and a small script that switches it from frame to frame:

- frame 0: the forward pass only, every value and no gradient;
- one frame per op, in the order ``Tape.backward`` visits them (the tape in
  reverse): the op is highlighted, and the gradients its VJP sends to its
  inputs appear, highlighted too. A tensor used by several ops gets one
  contribution from each: until the last one arrives, it shows the partial
  sum so far (the same numbers the tape adds up). The first step also shows
  the seed, the target's gradient 1;
- a final frame with every gradient.

What changes per frame is stored per tensor and per op (the frame where a
gradient or contribution arrives, the frame where an op runs), so the page
grows linearly with the tape. It loads nothing: one file, no network.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from microtape import AnomalyError, Node, Tape, Tensor
from microtape.anomaly_message import operand_positions
from microtape.files import write_atomic

from . import labels as L
from . import passes
from .graph import Options, Page, attach_gradients, block_texts, build, vjp_formula
from .legend import CURRENT, MUTED
from .render import INSTALL_HINT, GraphvizNotFoundError, pipe
from .tapeview import TapeView, TensorInfo, is_data_array

_DRAW_OPTIONS = ("values", "formulas", "max_elements", "rankdir", "legend")

# What earlier versions wrote into the folder (one SVG per frame); removed so
# the folder never mixes two renderings.
_STALE = re.compile(r"step_\d+\.(svg|dot)|steps\.dot")


def render_backward_steps(tape: Tape, target: Tensor, out_dir: str | Path, *, params: Any = None,
                          names: Any = None, **draw_options: Any) -> Path:
    """Write ``out_dir/index.html``: the backward pass of ``target``, one op at a time.

    Buttons and the arrow keys step through the frames (see the module
    docstring); the view follows the highlighted op. ``draw_options``:
    values, formulas, max_elements, rankdir, legend, as for ``draw_graph``;
    ``params`` and ``names`` too. The gradients are the target's, computed
    from the tape as ``draw_graph`` computes them; no ``.grad`` changes.
    Returns the path of ``index.html``; frames
    an earlier version wrote there (step_*.svg) are removed. Without
    Graphviz's ``dot``, writes the drawing's source as ``steps.dot`` and
    raises ``GraphvizNotFoundError``.
    """
    unknown = sorted(set(draw_options) - set(_DRAW_OPTIONS))
    if unknown:
        raise TypeError(f"render_backward_steps: unexpected option(s) {', '.join(unknown)}; "
                        f"the page accepts {', '.join(_DRAW_OPTIONS)}, params and names")
    if target is None:
        raise ValueError("render_backward_steps: a target is needed (the loss to differentiate)")
    # One column, unwrapped: each op's frame then shows its inputs just above it.
    opts = Options(grads=True, wrap=False, **draw_options)
    view = TapeView(tape, target, params, names)
    stopped = _backward_or_stop(view)
    walk = backward_walk(view, opts.max_elements, stopped)
    if walk.steps == 0:
        raise ValueError("render_backward_steps: the target was not computed by any op on this "
                         "tape, so there is no backward pass to show")
    out_dir = Path(out_dir)
    svg = _drawing(view, opts, out_dir)
    index = out_dir / "index.html"
    write_atomic(index, page(view.info(target).name, svg, walk))
    return index


def _backward_or_stop(view: TapeView) -> AnomalyError | None:
    """The drawing's gradients (``attach_gradients``); an anomaly stops the pass at its op.

    A tape recorded in anomaly mode raises at the first VJP that makes a NaN
    or an Inf; the page then plays the pass up to that op, with the
    gradients it had finished (``err.gradients``), and says what went wrong.
    """
    target = view.target
    try:
        if not attach_gradients(view):
            raise ValueError(f"render_backward_steps: the target has shape {target.shape}; seed "
                             f"its gradient with tape.backward(target, seed=...) right before, "
                             f"with no other backward pass in between")
    except AnomalyError as err:
        if err.phase != "backward" or not err.gradients:
            raise
        for info in view.tensors.values():
            info.grad = err.gradients.get(id(info.tensor))
        return err
    return None


def _drawing(view: TapeView, opts: Options, out_dir: Path) -> str:
    """The page's one drawing, as SVG text; clears what earlier versions left in ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(errno.ENOTDIR, f"the step page goes in a folder, and "
                                                f"{str(out_dir)!r} or a part of it is a file; give "
                                                f"a folder", str(out_dir)) from None
    graph = build(view, opts, page=STEP_PAGE)
    try:
        svg = pipe(graph, "svg", out_dir / "steps.svg")
    except GraphvizNotFoundError:   # pipe has written the source as steps.dot
        raise GraphvizNotFoundError(
            f"cannot draw the backward steps: Graphviz's 'dot' program was not found on PATH. "
            f"The drawing's source was written to {out_dir / 'steps.dot'} instead. "
            f"{INSTALL_HINT}; then draw again.") from None
    for old in out_dir.iterdir():
        if _STALE.fullmatch(old.name) and old.is_file():
            old.unlink()
    return svg.decode("utf-8")


# Until its gradient arrives, a tensor's gradient block says this, in 11 px
# (8.25 pt) type; the block is drawn at least this wide (pt) to hold it, so it
# never spills over the value beside it (a scalar's block is one short number).
PENDING = "grad: not yet"
PENDING_WIDTH = 64


def _grad_link(info: TensorInfo, block: str) -> str:
    """A gradient table as a link with the id ``<node id>_grad`` (Graphviz writes
    ``a_<node id>_grad``), so the page can hide, show and rewrite it frame by frame.

    A link only for its id: the page keeps clicks on it from going anywhere.
    """
    hover = "&#10;".join(L.html(line) for line in
                         f"{info.name}: grad =\n{L.full(info.grad)}".split("\n"))
    return L.table([f'<TR><TD ID="{info.node_id}_grad" HREF="#" TOOLTIP="{hover}" '
                    f'WIDTH="{PENDING_WIDTH}">{block}</TD></TR>'])


# The step page's drawing: each node's DOT id is its SVG id, each gradient a
# link the script can find, and the legend explains what the page highlights.
STEP_PAGE = Page(grad_block=_grad_link, legend_notes=(
    (CURRENT, "orange: the op applying its VJP now, and the gradients it sent"),
    (MUTED, "“not yet”: a gradient the backward pass has not reached"),
))


def step_equation(node: Node, closed_form: Any = None) -> str:
    """The equation the step that visits ``node`` applies, shown under the caption.

    The line the tape's closed form writes for this node, in the names of the
    drawing (``delta1 = dh ∘ h ∘ (1 − h)``); the op's VJP formula where the
    closed form has none.
    """
    equation = closed_form.equation_for(node) if closed_form is not None else None
    return equation or vjp_formula(node)


def _closed_form(view: TapeView) -> Any:
    """The closed form of the drawn computation, with every Tensor leaf as a source and
    the drawing's ``names``, so its equations say the drawing's names."""
    leaves = [info.tensor for info in view.leaves if info.tensor is not view.target]
    return view.tape.closed_form(view.target, leaves, names=view.given_names)


# -- the frames --------------------------------------------------------------------

@dataclass
class Walk:
    """The backward pass as the page plays it.

    Frame 0 is the forward pass, frames 1..steps one op each, frame
    steps + 1 the end. ``ops``: DOT id of an op -> its frame. ``grads``:
    DOT id of a tensor -> the frames where gradient reaches it, each with
    the texts of the partial sum so far, or None once it is complete (the
    drawing's own numbers). ``inputs``: DOT id of an op -> the DOT ids of
    its inputs, which its frame must show beside it. ``captions`` and
    ``equations``: one per frame. ``stopped``: an anomaly ended the pass.
    """

    steps: int
    stopped: bool = False
    ops: dict[str, int] = field(default_factory=dict)
    grads: dict[str, list[tuple[int, list[str] | None]]] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)
    equations: list[str] = field(default_factory=list)

    @property
    def counters(self) -> list[str]:
        """What the counter beside the buttons says at each frame, in the captions' words."""
        return (["forward pass"] + [f"step {s} of {self.steps}" for s in range(1, self.steps + 1)]
                + ["stopped" if self.stopped else "done"])

    @property
    def frames(self) -> int:
        return self.steps + 2

    def shown(self, frame: int) -> set[str]:
        """Tensors whose gradient (complete or partial) is visible at ``frame``."""
        return {t for t, arrivals in self.grads.items() if arrivals[0][0] <= frame}

    def fresh(self, frame: int) -> set[str]:
        """Tensors whose gradient changes at ``frame`` (highlighted)."""
        return {t for t, arrivals in self.grads.items() if any(f == frame for f, _ in arrivals)}

    def current(self, frame: int) -> str | None:
        """The op applying its VJP at ``frame``."""
        return next((op for op, f in self.ops.items() if f == frame), None)


def backward_walk(view: TapeView, max_elements: int = 12,
                  stopped: AnomalyError | None = None) -> Walk:
    """The frames of the backward pass over ``view``, with its gradients (attached here
    when none are: ``attach_gradients``). ``stopped``: the anomaly that ended the pass
    early; its op's frame is the last step, and its caption says what went wrong.
    """
    if stopped is None and all(info.grad is None for info in view.tensors.values()):
        attach_gradients(view)
    order = [k for k in range(len(view.nodes) - 1, -1, -1)
             if view.info(view.nodes[k].output).grad is not None]
    walk = Walk(steps=len(order), stopped=stopped is not None)
    closed_form = _closed_form(view)
    J = view.info(view.target).name
    sums = _RunningSums(view, order, max_elements)
    made = passes.origins(view)
    walk.captions.append(_forward_caption(J, made))
    walk.equations.append("")
    walk.grads[view.info(view.target).node_id] = [(1, None)]   # the seed, with the first step
    for s, k in enumerate(order, start=1):
        node = view.nodes[k]
        walk.ops[f"op{view.indices[k]}"] = s
        walk.inputs[f"op{view.indices[k]}"] = _input_ids(view, node)
        sent = []
        for x in _receivers(view, node):
            info = view.info(x)
            n, total, texts = sums.arrive(node, x)
            walk.grads.setdefault(info.node_id, []).append((s, texts))
            sent.append(L.gradient_name(J, info.name) + (f" ({n} of {total} contributions)" if total > 1
                                             else ""))
        walk.captions.append(_step_caption(view, k, f"Step {s} of {len(order)}", sent, made))
        walk.equations.append(step_equation(node, closed_form))
    if stopped is not None:
        walk.captions[-1] = _anomaly_caption(view, order[-1], len(order), stopped)
        walk.captions.append(f"Stopped at step {len(order)}: {stopped.op} made {stopped.kind} in "
                             f"the backward pass; draw it with viz.render_anomaly(err, path).")
    else:
        walk.captions.append(f"Done: the tape was walked in reverse, {len(order)} ops, and every "
                             f"gradient of {J} is known.")
    walk.equations.append("")
    return walk


def _forward_caption(J: str, made: dict[int, passes.Origin]) -> str:
    """Frame 0: the forward pass done (and which of its ops a backward pass recorded)."""
    return (f"Forward pass: every op has computed its output from its inputs; no gradient yet. "
            f"{passes.recorded_note(made)}Next, the backward pass starts at {J} with the seed "
            f"{L.gradient_name(J, J)} = 1.")


def _anomaly_caption(view: TapeView, k: int, s: int, err: AnomalyError) -> str:
    """The failing op's frame: what its VJP made, and where."""
    node = view.nodes[k]
    J = view.info(view.target).name
    operands = operand_positions(node)  # err.input counts operands, not einsum's subscripts
    bad = node.inputs[operands[err.input]] if err.input is not None else None
    of = (L.gradient_name(J, view.info(bad).name) if isinstance(bad, Tensor)
          else f"the gradient of input {err.input}")
    where = f" at {list(err.index)}" if err.index else ""
    return (f"Step {s} of {s}: {node.op.name} #{view.indices[k]} takes G = "
            f"{L.gradient_name(J, view.info(node.output).name)}, and its VJP makes {err.kind} in "
            f"{of}{where}: the first bad number of the backward pass, so it stops here.")


class _RunningSums:
    """The contributions a tensor's gradient has received so far, step by step.

    A tensor that several visited ops send gradient to shows the running
    sum until the last contribution arrives (the same numbers the tape adds).
    """

    def __init__(self, view: TapeView, order: list[int], max_elements: int) -> None:
        self.view, self.max_elements = view, max_elements
        self.senders: dict[int, int] = {}
        for k in order:
            for x in _receivers(view, view.nodes[k]):
                self.senders[id(x)] = self.senders.get(id(x), 0) + 1
        self.received: dict[int, int] = {}
        self.partial: dict[int, np.ndarray] = {}

    def arrive(self, node: Node, x: Tensor) -> tuple[int, int, list[str] | None]:
        """``node`` sends its contribution to ``x``: which one it is (n of total), and the
        texts of the partial sum, or None once the sum is complete (the drawing's numbers)."""
        self.received[id(x)] = self.received.get(id(x), 0) + 1
        n, total = self.received[id(x)], self.senders[id(x)]
        if total == 1:
            return n, total, None
        # Each slot x fills (x * x has two) sends its part of the sum.
        g = self.view.info(node.output).grad
        for j, y in enumerate(node.inputs):
            if y is x:
                self.partial[id(x)] = self.partial.get(id(x), 0) + np.asarray(node.vjps[j](g))
        texts = block_texts(self.partial[id(x)], self.max_elements) if n < total else None
        return n, total, texts


def _step_caption(view: TapeView, k: int, step: str, sent: list[str],
                  made: dict[int, passes.Origin]) -> str:
    """What the op at ``view.nodes[k]`` takes and sends back, for its frame, and the VJP
    it belongs to when a recorded backward pass ran it (``made``: ``passes.origins``)."""
    node = view.nodes[k]
    J = view.info(view.target).name
    given = (f"the seed G = {L.gradient_name(J, J)}" if node.output is view.target
             else f"G = {L.gradient_name(J, view.info(node.output).name)}")
    action = ("sends back " + ", ".join(sent)) if sent else \
        "sends nothing back (its inputs are constants)"
    return (f"{step}: {node.op.name} #{view.indices[k]}{passes.op_phrase(made.get(k))} takes "
            f"{given} and {action}.")


def _input_ids(view: TapeView, node: Node) -> list[str]:
    """The DOT ids of the tensors and arrays drawn as ``node``'s inputs."""
    return [view.info(x).node_id if isinstance(x, Tensor) else view.arrays[id(x)].node_id
            for x in node.inputs if isinstance(x, Tensor) or is_data_array(x)]


def _receivers(view: TapeView, node: Node) -> list[Tensor]:
    """The Tensors the node's VJPs send gradient to, each once, in argument order."""
    out: list[Tensor] = []
    for x, vjp in zip(node.inputs, node.vjps):
        if isinstance(x, Tensor) and vjp is not None and view.info(x).grad is not None \
                and not any(x is y for y in out):
            out.append(x)
    return out


# -- the page --------------------------------------------------------------------------

def _asset(name: str) -> str:
    """A file of the page (its HTML, style or script) from viz/assets/."""
    return resources.files("viz").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _text(s: str) -> str:
    """``s`` as HTML text or attribute value: entities, visible control characters."""
    return html.escape(L.visible(s), quote=True)


def _json(walk: Walk) -> str:
    """The frames as JSON that is safe inside <script>: no "<", "&" or ">" as such."""
    data = {"frames": walk.frames, "ops": walk.ops, "inputs": walk.inputs,
            "pending": PENDING, "counters": walk.counters,
            "grads": {t: [list(arrival) for arrival in arrivals]
                      for t, arrivals in walk.grads.items()},
            "captions": [L.visible(c) for c in walk.captions],
            "equations": [L.visible(e) for e in walk.equations]}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inline(svg: str) -> str:
    """Graphviz's SVG file as an element of the page: no XML prolog, no doctype."""
    return svg[svg.index("<svg"):]


def page(target_name: str, svg: str, walk: Walk) -> str:
    """index.html: every user string enters as escaped text or escaped JSON; the one
    script is inline and pinned by its hash in the Content-Security-Policy, so
    nothing else can run and nothing is fetched from the network."""
    script = _asset("steps.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
           f"base-uri 'none'; form-action 'none'")
    # substitute() reads the template once: a "$" in what it puts in is left alone
    return Template(_asset("steps.html")).substitute(
        csp=csp, title=_text(f"Backward pass of {target_name}"), style=_asset("steps.css"),
        counter=_text(walk.counters[0]), caption=_text(walk.captions[0]), svg=_inline(svg),
        walk=_json(walk), script=script)
