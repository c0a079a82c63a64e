"""draw_graph: a tape as a graphviz.Digraph with values, gradients and VJPs.

The drawing reads only the tape: ``node.op`` (its ``name``, ``formula`` and
``broadcasts``), ``node.inputs``, ``node.output``, ``node.params`` and which
``node.vjps`` are None, and asks it for the gradients it shows
(``tape.gradient``); no tensor's ``.grad`` is read or changed.
Tensors are rounded boxes, ops are square boxes carrying the VJP they apply, and
edges run input -> op -> output. Node ids come from creation order, so the
same program always gives the same DOT text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import graphviz
import numpy as np

import microtape as mt
from microtape import Node, Tape, Tensor
from microtape.validation import check_count

from . import labels as L
from . import layout, passes
from .leafcheck import LeafCheck, check_leaves
from .legend import (BROADCAST, CHECK_FAILED, CHECK_PASSED, EDGE, FANOUT, FONT,
                     GRAD_BG, GRAD_COLOR, LOOKS, MUTED, VALUE_BG, Look, legend_label)
from .tapeview import ArrayInfo, TapeView, TensorInfo, is_data_array
from .tapeview import argument_names as _argument_names


def draw_graph(tape: Tape, target: Tensor | None = None, *, values: bool = True,
               grads: bool = True, formulas: bool = True, check: bool = False,
               max_elements: int = 12, rankdir: str = "TB",
               params: Tensor | Iterable[Tensor] | Mapping[Any, Tensor] | None = None,
               names: Mapping[str, Any] | None = None,
               check_elements: int = 16, legend: bool = True) -> graphviz.Digraph:
    """The computation graph recorded on ``tape``, ready to render or compare as text.

    A node for each tensor and each op (only the target's ancestors when
    ``target`` is given); edges input -> op -> output.

    - Tensor nodes: name, shape, dtype, the value and the gradient (see
      "Gradients" below), as a matrix (one shared number format per array) when the
      tensor has at most ``max_elements`` elements, else as min / max /
      mean / norm; integer arrays (labels) as their integers. Hovering shows
      the full arrays (SVG tooltips).
    - Names: the one name ``microtape.naming`` gives each tensor, the one
      the closed form's code and equations use: a tensor's ``name``, then
      ``names`` ({name: Tensor or array}) for what the program left
      unnamed, such as the data and the labels passed as plain arrays, then
      the op's parameter for an unnamed leaf (``labels``, else ``x``) or
      the op for an unnamed output (``xW1``, ``tanh``).
    - Gradients (with ``grads`` or ``check``) are the target's, computed from
      this tape for the drawing (``tape.gradient``), seeded with 1 for a
      scalar ``target``. No tensor's ``.grad`` changes, and none is read: it
      may hold another tape's gradients, or another target's. A non-scalar
      ``target`` (or none: the target of the tape's last backward pass) is
      seeded with the gradient your ``tape.backward(target, seed=...)`` left
      on it, as long as no backward pass ran since on any tape
      (``Tape.last_backward``); otherwise the drawing shows no gradients.
    - Op nodes: the op's name, its constant arguments and keyword params,
      and with ``formulas`` the VJP it applies (``Primitive.formula``),
      without the parts for inputs that are constants (they get no gradient).
    - ``rankdir``: "TB" (default) runs the chain top to bottom, wrapped into
      columns side by side when it is four ops deep or more (``layout.py``),
      which keeps a network's drawing about as wide as it is tall; "LR" left
      to right.
    - Looks: parameters (the leaves in ``params``, and only those: a name
      alone does not make a parameter), data (every other input: leaf
      Tensors and plain arrays passed to an op), constants (numbers and
      options folded into an op, inside its box), intermediates and the
      loss (``target``, or the tape's last output) differ, as the legend
      says.
    - An edge whose VJP summed a broadcast input back says "summed over axis
      k"; a tensor used by n ops notes that its gradient is the sum of n
      contributions.
    - A tape that recorded a backward pass (``create_graph=True``): the ops
      each VJP ran sit in a teal frame naming it, "backward of pow #0 → dA"
      (``viz.passes``, from each node's ``origin``).
    - ``check``: central finite differences on each leaf (at most
      ``check_elements`` elements per leaf, two replays of the tape each);
      leaves turn green when the tape agrees, red with the relative error
      when not.
    """
    # Long only for its docstring: it is the reference for every option.
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"draw_graph: rankdir must be 'LR', 'RL', 'TB' or 'BT', not {rankdir!r}")
    check_count("draw_graph", "max_elements", max_elements, 0)
    check_count("draw_graph", "check_elements", check_elements, 1)
    view = TapeView(tape, target, params, names)
    if grads or check:
        attach_gradients(view)
    checks = check_leaves(view, check_elements) if check else {}
    return build(view, Options(values, grads, formulas, max_elements, rankdir, legend), checks)


def attach_gradients(view: TapeView) -> bool:
    """Give each drawn tensor (``TensorInfo.grad``) the gradient the drawing shows; returns
    whether there are any (see ``draw_graph``).

    Asked of the tape rather than read from ``.grad`` or set there by ``tape.backward``:
    ``.grad`` may hold dL2/dW from another tape, and a drawing that overwrote it would
    change what ``opt.step()`` then steps on.
    """
    tape, target, seed = view.tape, view.target, None
    if target is None or target.size != 1:
        last = tape.last_backward()   # the user's seed, while their pass was the last one
        if last is None or target is not None and last is not target or last.grad is None:
            return False
        target, seed = last, np.asarray(last.grad.value if isinstance(last.grad, Tensor)
                                        else last.grad)
        if id(target) not in view.tensors:
            return False
    infos = list(view.tensors.values())
    grads = tape.gradient(target, [info.tensor for info in infos], seed=seed)
    reached = _reached(view, target)
    for info, g in zip(infos, grads):
        # tape.gradient gives zeros where the target sends nothing (labels); they show none
        info.grad = g if id(info.tensor) in reached else None
    return True


def _reached(view: TapeView, target: Tensor) -> set[int]:
    """The ids of the drawn tensors the backward pass from ``target`` sends gradient to."""
    reached = {id(target)}
    for node in reversed(view.nodes):
        if id(node.output) in reached:
            reached.update(id(x) for x, vjp in zip(node.inputs, node.vjps)
                           if isinstance(x, Tensor) and vjp is not None)
    return reached


@dataclass(frozen=True)
class Options:
    values: bool = True
    grads: bool = True
    formulas: bool = True
    max_elements: int = 12
    rankdir: str = "TB"
    legend: bool = True
    wrap: bool = True       # a deep chain top to bottom in columns (layout.py)


@dataclass(frozen=True)
class Page:
    """What a page built around the drawing adds to it (the step page, steps.py).

    With a page, every node carries its DOT id as its SVG id, so the page's
    script can find it; ``grad_block`` rewrites the table of a tensor's
    gradient (given the tensor and the table), ``legend_notes`` ((colour,
    sentence) pairs) explain in the legend what the page adds, and
    ``edges`` ({(DOT id, DOT id): attributes}) restyle the edges it stresses.
    """

    grad_block: Callable[[TensorInfo, str], str]
    legend_notes: tuple[tuple[str, str], ...] = ()
    edges: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


def build(view: TapeView, opts: Options, checks: dict[int, LeafCheck] | None = None,
          page: Page | None = None) -> graphviz.Digraph:
    """The Digraph of ``view``; one pass over its nodes, in creation order."""
    checks = checks or {}
    g = _digraph(opts)
    drawn: set[int] = set()
    ids, (marked, tops) = page is not None, _edge_styles(view, opts, page)

    def tensor_node(info: TensorInfo) -> None:
        if id(info.tensor) in drawn:
            return
        drawn.add(id(info.tensor))
        look = LOOKS[info.kind]
        check = checks.get(id(info.tensor))
        if check is not None:
            look = CHECK_PASSED if check.passed else CHECK_FAILED
        label, tip = _tensor_text(view, info, opts, check, page, stacked=bool(tops))
        _node(g, info.node_id, label, tip, look, ids)

    for k, node in enumerate(view.nodes):
        for x in node.inputs:
            if isinstance(x, Tensor):
                tensor_node(view.info(x))
            elif is_data_array(x) and id(x) not in drawn:
                drawn.add(id(x))
                _node(g, view.arrays[id(x)].node_id, *_array_text(view.arrays[id(x)], opts),
                      LOOKS["data"], ids)
        op_id = f"op{view.indices[k]}"
        _node(g, op_id, *_op_text(view, k, node, opts), LOOKS["op"], ids)
        _input_edges(g, view, node, op_id, marked)
        out = view.info(node.output)
        tensor_node(out)
        g.edge(op_id, out.node_id, weight=CHAIN_WEIGHT, **marked.get((op_id, out.node_id), {}))
    for info in view.tensors.values():  # a leaf target with no op
        tensor_node(info)
    layout.order_columns(g, tops)
    frames = passes.frame_ops(g, view)
    if opts.legend:
        _legend(g, view, opts.rankdir, bool(checks), page, opts.grads, frames)
    return g


def _edge_styles(view: TapeView, opts: Options, page: Page | None
                 ) -> tuple[dict[tuple[str, str], dict[str, str]], list[str]]:
    """The attributes of the edges the layout and the page restyle ({(DOT id, DOT id):
    attributes}), and the first op of each column of a wrapped chain."""
    crossing, tops = layout.wrap(view, opts.rankdir) if opts.wrap else ({}, [])
    if passes.has_recorded_pass(view):
        # Its ops are framed VJP by VJP: a row shared by the columns' first ops would
        # pull ops out of their frames, so the columns are left to find their order.
        tops = []
    marked = dict(crossing)
    for key, attrs in (page.edges if page is not None else {}).items():
        marked[key] = {**marked.get(key, {}), **attrs}
    return marked, tops


DRAWING_NAME = "microtape"   # every drawing's graph name: how a notebook tells viz's apart


def _digraph(opts: Options) -> graphviz.Digraph:
    """An empty drawing with the look every node and edge shares."""
    return graphviz.Digraph(
        DRAWING_NAME,
        graph_attr={"rankdir": opts.rankdir, "fontname": FONT, "nodesep": "0.25",
                    "ranksep": "0.35", "bgcolor": "white", "pad": "0.15"},
        node_attr={"fontname": FONT, "fontsize": "10", "margin": "0.06,0.04"},
        edge_attr={"fontname": FONT, "fontsize": "8.5", "color": EDGE, "fontcolor": MUTED,
                   "arrowsize": "0.6"},
    )


def _legend(g: graphviz.Digraph, view: TapeView, rankdir: str, check: bool,
            page: Page | None, grads: bool = True, frames: tuple = ()) -> None:
    """The legend node, explaining the symbols the drawing so far uses (``frames``: the
    recorded backward pass's note, if any); on a page, with its notes, and ``legend`` as
    its SVG id for the page's script."""
    target = view.info(view.loss).name if view.loss is not None else "J"
    notes = (page.legend_notes if page is not None else ()) + tuple(frames)
    with g.subgraph(name="legend_rank", graph_attr={"rank": LEGEND_RANK[rankdir]}) as s:
        used = "".join(g.body)
        s.node("legend", legend_label(check=check, notes=notes, text=used, target=target,
                                      grads=grads),
               shape="box", style="rounded", color="#c8c8c8", fontsize="8.5", tooltip="legend",
               margin="0.1,0.05",
               **({"id": "legend"} if page is not None else {}))


# Top to bottom, the legend sits in the first row, beside the inputs: below
# the chain it would make a tall drawing taller still.
LEGEND_RANK = {"TB": "min", "BT": "max", "LR": "sink", "RL": "source"}


def _node(g: graphviz.Digraph, node_id: str, label: str, tip: str, look: Look,
          svg_id: bool) -> None:
    attrs = {"shape": look.shape, "style": look.style, "fillcolor": look.fill,
             "color": look.border, "penwidth": look.penwidth, "tooltip": tip}
    if svg_id:
        attrs["id"] = node_id
    g.node(node_id, label, **attrs)


# -- tensors --------------------------------------------------------------------

_KIND_TEXT = {"parameter": "parameter", "data": "data", "intermediate": "", "loss": "loss"}


def _tensor_text(view: TapeView, info: TensorInfo, opts: Options, check: LeafCheck | None,
                 page: Page | None, stacked: bool = False) -> tuple[str, str]:
    """The HTML-like label and the tooltip of a tensor node; ``stacked``: the value
    above the gradient, whatever the direction."""
    t = info.tensor
    facts = " ".join(s for s in (_KIND_TEXT[info.kind], L.shape_text(t.shape), str(t.dtype)) if s)
    header = (f'<B>{L.html(info.name, 32)}</B>  '
              f'<FONT POINT-SIZE="8" COLOR="{MUTED}">{L.html(facts)}</FONT>')
    tip = [f"{info.name}: {facts}"]
    blocks = _tensor_blocks(info, opts, page, tip)

    # Left to right, nodes stack their blocks so the long chain stays narrow;
    # top to bottom, they put them side by side, unless the chain is wrapped
    # into columns (layout.py): then the gradient goes below the value, but
    # for a tall array (a column), whose blocks stacked would be twice as tall.
    cells = array_cells(t.value, opts.max_elements)
    tall = cells is not None and len(cells) >= 2 * len(cells[0])
    side_by_side = opts.rankdir in ("TB", "BT") and (tall or not stacked)
    span = len(blocks) if side_by_side and blocks else 1
    rows = [f'<TR><TD ALIGN="LEFT" COLSPAN="{span}">{header}</TD></TR>']
    if side_by_side and blocks:
        rows.append("<TR>" + "".join(f'<TD VALIGN="TOP">{b}</TD>' for b in blocks) + "</TR>")
    else:
        rows += [f'<TR><TD ALIGN="LEFT">{b}</TD></TR>' for b in blocks]
    for color, text in _tensor_notes(view, info, opts, check, tip):
        rows.append(f'<TR><TD ALIGN="LEFT" COLSPAN="{span}">'
                    f'<FONT POINT-SIZE="8" COLOR="{color}">{L.html(text)}</FONT></TD></TR>')
    return L.table(rows, spacing=2, label=True), L.tooltip("\n".join(tip))


def _tensor_blocks(info: TensorInfo, opts: Options, page: Page | None,
                   tip: list[str]) -> list[str]:
    """The value and gradient tables of a tensor node; their full arrays go to ``tip``."""
    t = info.tensor
    blocks = []
    if opts.values:
        blocks.append(_array_block("value", t.value, opts.max_elements, VALUE_BG, None))
        tip.append("value =\n" + L.full(t.value))
    grad = info.grad if opts.grads else None
    if grad is not None:
        block = _array_block("grad", grad, opts.max_elements, GRAD_BG, GRAD_COLOR)
        blocks.append(page.grad_block(info, block) if page is not None else block)
        tip.append("grad =\n" + L.full(grad))
    return blocks


def _tensor_notes(view: TapeView, info: TensorInfo, opts: Options, check: LeafCheck | None,
                  tip: list[str]) -> list[tuple[str, str]]:
    """(colour, text) notes under a tensor: its fan-out, its finite-difference check."""
    notes = []
    uses = len(info.consumers)
    if uses > 1 and opts.grads:
        ops = ", ".join(f"{view.nodes[k].op.name} #{view.indices[k]}" for k in info.consumers)
        notes.append((FANOUT, f"grad = Σ of {uses} contributions (fan-out)"))
        tip.append(f"used {uses} times (by {ops}): its gradient is the sum of the {uses} "
                   f"contributions the VJPs of those ops send back")
    if check is not None:
        notes.append((CHECK_PASSED.border if check.passed else CHECK_FAILED.border, check.describe()))
        tip.append(check.describe())
    return notes


INTEGERS_SHOWN = 48   # integer arrays (labels) up to this size are drawn whole


def array_cells(a: np.ndarray, max_elements: int) -> list[list[str]] | None:
    """The rows of numbers an array block shows, or None when it shows a summary."""
    a = np.asarray(a)
    integers = a.dtype.kind in "iu"
    if not 0 < a.size <= (max(max_elements, INTEGERS_SHOWN) if integers else max_elements):
        return None
    if integers and a.ndim <= 1 and a.size > 16:
        # Labels and indices are a few digits each: all of them, 16 to a row.
        flat = L.numbers(a)
        cells = [flat[i:i + 16] for i in range(0, len(flat), 16)]
        cells[-1] += [""] * (16 - len(cells[-1]))
        return cells
    return L.matrix(a)


def block_texts(a: np.ndarray, max_elements: int) -> list[str]:
    """The texts of an array block below its title, in the order they are drawn."""
    cells = array_cells(a, max_elements)
    return [c for row in cells for c in row if c] if cells is not None else L.summary(a)


def _array_block(title: str, a: np.ndarray, max_elements: int, bg: str, color: str | None) -> str:
    """A small table: the rounded matrix, or a summary when ``a`` is big."""
    a = np.asarray(a)
    font = (lambda s: f'<FONT COLOR="{color}">{s}</FONT>') if color else (lambda s: s)
    head_color = color or MUTED
    cells = array_cells(a, max_elements)
    if cells is not None:
        cols = len(cells[0])
        body = "".join("<TR>" + "".join(f'<TD ALIGN="RIGHT">{font(L.html(v))}</TD>' for v in row)
                       + "</TR>" for row in cells)
    else:
        cols = 1
        body = "".join(f'<TR><TD ALIGN="LEFT">{font(L.html(line))}</TD></TR>'
                       for line in L.summary(a))
    head = (f'<TR><TD ALIGN="LEFT" COLSPAN="{cols}">'
            f'<FONT POINT-SIZE="8" COLOR="{head_color}">{title}</FONT></TD></TR>')
    return L.table([head, body], padding=2, bgcolor=bg)


def _array_text(array: ArrayInfo, opts: Options) -> tuple[str, str]:
    """The label and tooltip of a plain array operand: data, as a leaf Tensor is."""
    name, value = array.name, array.value
    facts = f"data {L.shape_text(value.shape)} {value.dtype}"
    header = f'<B>{L.html(name)}</B>  <FONT POINT-SIZE="8" COLOR="{MUTED}">{L.html(facts)}</FONT>'
    rows = [f'<TR><TD ALIGN="LEFT">{header}</TD></TR>']
    tip = f"{name}: {facts}"
    if opts.values:
        rows.append(f'<TR><TD>{_array_block("value", value, opts.max_elements, VALUE_BG, None)}</TD></TR>')
        tip += "\nvalue =\n" + L.full(value)
    return L.table(rows, spacing=2, label=True), L.tooltip(tip)


# -- ops ------------------------------------------------------------------------

_PARTS = re.compile(r",\s+(?=d[A-Za-z]\w*\s*=)")


def vjp_formula(node: Node) -> str:
    """The op's formula without the parts for its constant inputs.

    ``pow(x, 3)`` applies ``dA = G ∘ p A^(p−1)`` only: a constant exponent
    gets no gradient, so ``dp = ...`` is left out. The k-th ``dX =`` part
    belongs to the k-th argument, as ``_argument_names`` reads it. The note
    that gradients are summed over broadcast axes stays only where an input
    was broadcast.
    """
    formula = node.op.formula
    # A note after the last part that speaks of "each" belongs to every part.
    main, sep, note = formula.rpartition("  (each ")
    if not sep:
        main, sep, note = formula, "", ""
    elif "broadcast" in note and not broadcast_inputs(node):
        sep = note = ""     # "summed over the axes it was broadcast along": none were
    parts = _PARTS.split(main)
    if len(parts) < 2:
        return main + sep + note
    kept = [p for i, p in enumerate(parts)
            if i >= len(node.inputs) or isinstance(node.inputs[i], Tensor)]
    return ",  ".join(kept or parts) + sep + note


def broadcast_inputs(node: Node) -> list[int]:
    """The positions of the Tensor inputs a broadcasting op stretched to its output's
    shape, whose gradients its VJP sums back over the stretched axes."""
    if not node.op.broadcasts:
        return []
    out = tuple(node.output.shape)
    return [i for i, x in enumerate(node.inputs)
            if isinstance(x, Tensor) and mt.broadcast_axes(tuple(x.shape), out)]


def _op_text(view: TapeView, k: int, node: Node, opts: Options) -> tuple[str, str]:
    op = node.op
    names = _argument_names(node)
    folded = []
    for i, x in enumerate(node.inputs):
        if isinstance(x, Tensor) or is_data_array(x):
            continue
        text = L.constant_text(x)
        folded.append(text if isinstance(x, str) or L.is_index(x) else f"{names[i]} = {text}")
    folded += [f"{key}={L.constant_text(v)}" for key, v in node.params.items()]
    index = view.indices[k]
    rows = [f'<TR><TD>{L.op_title(op.name, index)}</TD></TR>']
    if folded:   # constants, in the constant look the legend shows
        c = LOOKS["constant"]
        rows.append(f'<TR><TD BGCOLOR="{c.fill}" COLOR="{c.border}" BORDER="1" STYLE="dashed">'
                    f'<FONT POINT-SIZE="8.5">{L.html(", ".join(folded), 60)}</FONT></TD></TR>')
    tip = [f"{op.name} (op #{index} on the tape)"] + [f"  {f}" for f in folded]
    if opts.formulas:
        formula = vjp_formula(node)
        main, _, note = formula.partition("  (")
        for line in L.wrap(main):
            rows.append(f'<TR><TD><FONT POINT-SIZE="9.5" COLOR="#5c3d00">{L.html(line)}</FONT></TD></TR>')
        if note:
            for line in L.wrap("(" + note, 34):
                rows.append(f'<TR><TD><FONT POINT-SIZE="8" COLOR="{MUTED}">{L.html(line)}</FONT></TD></TR>')
        tip.append(f"VJP: {formula}")
    return L.table(rows, label=True), L.tooltip("\n".join(tip))


# Edges along the chain of computed tensors pull harder than the edges from
# leaves, so the chain runs straight down and the parameters hang beside it
# instead of pushing it sideways, layer after layer.
CHAIN_WEIGHT = "8"


def _input_edges(g: graphviz.Digraph, view: TapeView, node: Node, op_id: str,
                 marked: Mapping[tuple[str, str], Mapping[str, str]]) -> None:
    """input -> op, named by argument where the op has several, with the broadcast note."""
    names = _argument_names(node)
    drawn_inputs = [x for x in node.inputs if isinstance(x, Tensor) or is_data_array(x)]
    out_shape = node.output.shape
    for i, x in enumerate(node.inputs):
        if isinstance(x, Tensor):
            info = view.info(x)
            src, shape = info.node_id, x.shape
        elif is_data_array(x):
            src, shape = view.arrays[id(x)].node_id, np.shape(x)
        else:
            continue
        parts = [names[i]] if len(drawn_inputs) > 1 or len(node.inputs) > 1 else []
        attrs: dict[str, str] = {}
        if node.op.broadcasts and isinstance(x, Tensor) and tuple(shape) != tuple(out_shape):
            axes = mt.broadcast_axes(tuple(shape), tuple(out_shape))
            if axes:
                parts.append(f"summed over {L.axes_text(axes)}")
                attrs.update(color=BROADCAST, fontcolor=BROADCAST, penwidth="1.6")
        if isinstance(x, Tensor) and len(info.consumers) > 1 and "color" not in attrs:
            attrs.update(color=FANOUT)
        if parts:
            attrs["label"] = L.html(" · ".join(parts)).join(("<", ">"))
        if isinstance(x, Tensor) and info.producer is not None:
            attrs["weight"] = CHAIN_WEIGHT
        g.edge(src, op_id, **{**attrs, **marked.get((src, op_id), {})})
