"""draw_anomaly and render_anomaly: the op that made the first NaN or Inf, on its graph.

``mt.AnomalyError`` carries the tape that was recording and the node that
went bad. The drawing is the tape up to that node (the ancestors of its
output, or of the target in the backward pass), drawn as ``draw_graph``
draws it, with the failing op in red: the bad element, the formula and the
operands' values there, and the user's line that called it. In the backward
pass, the edges the gradient took from the target down to the op are red
too, and so is the edge to the input whose gradient went bad.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphviz

from microtape import Tape, Tensor
from microtape.anomaly_message import operand_positions

from . import labels as L
from .graph import Options, Page, _argument_names, build, vjp_formula
from .legend import ANOMALY, ANOMALY_OP, MUTED
from .render import output_path, write_drawing
from .tapeview import TapeView, is_data_array

_PATH_EDGE = {"color": ANOMALY, "penwidth": "2.4"}
_BAD_EDGE = {"color": ANOMALY, "penwidth": "2.4", "style": "dashed"}


def draw_anomaly(err: Any, *, values: bool = True, max_elements: int = 12,
                 rankdir: str = "TB", legend: bool = True) -> graphviz.Digraph:
    """The drawing of ``err`` (an ``mt.AnomalyError``) as a graphviz.Digraph.

    The tape ``err.tape`` up to the failing op (without a tape, the op with
    its inputs and output), with values and without gradients: in the
    backward pass the gradients were never finished, and older ones would
    mislead. ``values``, ``max_elements``, ``rankdir`` and ``legend`` are
    ``draw_graph``'s.
    """
    node = getattr(err, "node", None)
    if node is None or not hasattr(err, "phase"):
        raise TypeError(f"draw_anomaly: expected an mt.AnomalyError, got {type(err).__name__}")
    tape, target = _record(err)
    view = TapeView(tape, target)
    # The loss was never computed (forward), or a spent tape kept only the failing op:
    # either way the output drawn last is an intermediate, not the seeded loss.
    if err.phase == "forward" or target is not err.target:
        view.info(target).kind, view.loss = "intermediate", None
    k = next(k for k, n in enumerate(view.nodes) if n is node)
    op_id = f"op{view.indices[k]}"
    notes = ((ANOMALY, f"red: the op that made the first {err.kind}"
                       + (", and the path of the gradient down to it" if err.phase == "backward"
                          else "")),)
    page = Page(grad_block=lambda info, block: block, legend_notes=notes,
                edges=_marked_edges(view, err, op_id))
    g = build(view, Options(values, False, True, max_elements, rankdir, legend), page=page)
    a = ANOMALY_OP
    g.node(op_id, _op_label(err, view.indices[k]), tooltip=L.tooltip(str(err)), fillcolor=a.fill,
           color=a.border, penwidth=a.penwidth, style=a.style)
    if err.phase == "forward" and err.input is None:
        g.node(view.info(node.output).node_id, color=ANOMALY, penwidth="2.4")
    title = "".join(L.html(line) + '<BR ALIGN="LEFT"/>'
                    for line in L.wrap(str(err).split("\n")[0], 110))
    g.attr(label=f"<{title}>", labelloc="t", labeljust="l", fontcolor=ANOMALY, fontsize="11")
    return g


def render_anomaly(err: Any, path: str | Path, format: str | None = None,
                   **draw_options: Any) -> Path:
    """Draw ``err`` (see ``draw_anomaly``) into ``path``, as ``render`` draws a tape.

    svg, png, pdf or dot, from ``format`` or the path's suffix; the file is
    replaced atomically; without Graphviz's ``dot``, the DOT source is
    written beside it and ``GraphvizNotFoundError`` says how to install it.
    """
    path, fmt = output_path(path, format)
    return write_drawing(draw_anomaly(err, **draw_options), path, fmt)


def _record(err: Any) -> tuple[Tape, Tensor]:
    """A tape holding the record up to the failing node, and the tensor to draw back from.

    A spent or missing tape leaves the node alone. The copy is a new Tape
    object over the same nodes, so the user's tape is only read.
    """
    node, tape = err.node, err.tape
    nodes = list(tape.nodes) if isinstance(tape, Tape) and not tape.spent else []
    at = next((k for k, n in enumerate(nodes) if n is node), None)
    nodes = nodes[:at + 1] if at is not None else [node]
    target = node.output
    if err.phase == "backward" and isinstance(err.target, Tensor) and at is not None:
        end = next((k for k, n in enumerate(tape.nodes) if n.output is err.target), None)
        if end is not None and end >= at:
            nodes, target = list(tape.nodes[:end + 1]), err.target
    record = Tape()
    record.nodes = nodes
    return record, target


def _marked_edges(view: TapeView, err: Any, op_id: str) -> dict:
    """Backward: the edges from the target down to the failing op, and the edge to the
    input whose gradient went bad."""
    if err.phase != "backward":
        return {}
    node = err.node
    k = next(k for k, n in enumerate(view.nodes) if n is node)
    on_path = {id(node.output)}  # tensors the failing op's output flows into
    edges: dict[tuple[str, str], dict] = {}
    for j in range(k + 1, len(view.nodes)):
        later = view.nodes[j]
        fed = [x for x in later.inputs if isinstance(x, Tensor) and id(x) in on_path]
        if fed:
            on_path.add(id(later.output))
            for x in fed:
                edges[(view.info(x).node_id, f"op{view.indices[j]}")] = _PATH_EDGE
            edges[(f"op{view.indices[j]}", view.info(later.output).node_id)] = _PATH_EDGE
    ends = {id(view.target)} if view.target is not None else set()
    edges = {e: a for e, a in edges.items() if ends & on_path}   # the target depends on it
    operands = operand_positions(node)  # err.input counts operands, not einsum's subscripts
    if err.input is not None and err.input < len(operands):
        x = node.inputs[operands[err.input]]
        name = _argument_names(node)[operands[err.input]]
        bad = {**_BAD_EDGE, "label": L.html(f"{name} · d{name} holds {err.kind}").join("<>")}
        if isinstance(x, Tensor):
            edges[(view.info(x).node_id, op_id)] = bad
        elif is_data_array(x):
            edges[(view.arrays[id(x)].node_id, op_id)] = bad
    return edges


def _op_label(err: Any, index: int) -> str:
    """The failing op's box: its name, what went wrong where, the formula and the values."""
    where = f"at {list(err.index)}" if err.index else ""
    if err.phase == "backward" and err.input is not None:
        what = f"its VJP made {err.kind} in the gradient of input {err.input} {where}"
    elif err.input is not None:
        name = f" ({err.input_name})" if err.input_name else ""
        what = f"read {err.kind} already in input {err.input}{name} {where}"
    else:
        what = f"made {err.kind} in the {err.phase} pass {where}"
    rows = [f'<TR><TD>{L.op_title(err.op, index)}</TD></TR>']
    rows += [f'<TR><TD><FONT COLOR="{ANOMALY}"><B>{L.html(line)}</B></FONT></TD></TR>'
             for line in L.wrap(what.strip(), 40)]
    rows += [f'<TR><TD><FONT POINT-SIZE="9.5" COLOR="#5c3d00">{L.html(line)}</FONT></TD></TR>'
             for line in L.wrap(vjp_formula(err.node), 44)]
    filled = ", ".join(f"{label} = {L.number(v)}" for label, v in (err.values or {}).items())
    if filled:
        rows += [f'<TR><TD><FONT COLOR="{ANOMALY}">{L.html(line)}</FONT></TD></TR>'
                 for line in L.wrap("there: " + filled, 44)]
    if err.source:
        rows.append(f'<TR><TD><FONT POINT-SIZE="8" COLOR="{MUTED}">called at '
                    f'{L.html(Path(str(err.source)).name, 60)}</FONT></TD></TR>')
    return L.table(rows, label=True)
