"""Which drawn ops a recorded backward pass ran, and whose VJP each belongs to.

``tape.gradient(..., create_graph=True)`` records the ops of each VJP it
runs, on every tape active meanwhile, and marks each with ``Node.origin``:
the forward node and the input whose gradient that VJP computes (None for
the user's own ops). A drawing groups those ops into one frame per VJP,
labelled "backward of pow #0 → dA (for x)", and the step page says the
same in its captions. ``Node.origin`` is tape data; nothing here reaches
into an op.
"""

from __future__ import annotations

from dataclasses import dataclass

import graphviz

from microtape import Node

from . import labels as L
from .tapeview import TapeView, argument_names

# The frame around the ops of one recorded VJP (teal: no other kind uses it).
FRAME_FILL = "#e3f4f1"
FRAME_BORDER = "#0b7285"


@dataclass(frozen=True)
class Origin:
    """The VJP a recorded op belongs to: the forward op and the input it differentiates."""

    vjp: tuple[int, int]  # (id of the forward node, input index): which VJP, while drawing
    op: str               # "pow #0", or "pow (recorded on another tape)"
    letter: str           # the input's letter in the op's formula: "A"
    input_name: str       # the input's name in the drawing, or "" when it is not drawn
    depth: int = 1        # 1: the VJP of a user's op; 2: of an op a backward pass recorded; ...

    @property
    def label(self) -> str:
        """The frame's title: ``backward of pow #0 → dA (for x)``; ``, 2nd order`` when the
        op it differentiates was itself recorded by a backward pass."""
        to = f" (for {self.input_name})" if self.input_name else ""
        nth = f", {_ordinal(self.depth)} order" if self.depth > 1 else ""
        return f"backward of {self.op} → d{self.letter}{to}{nth}"

    @property
    def phrase(self) -> str:
        """For a caption: ``recorded by a backward pass, in the VJP of pow #0 for dA (x)``."""
        to = f" ({self.input_name})" if self.input_name else ""
        nth = f" ({_ordinal(self.depth)} order)" if self.depth > 1 else ""
        return (f"recorded by a backward pass{nth}, in the VJP of {self.op} "
                f"for d{self.letter}{to}")


def _ordinal(n: int) -> str:
    return f"{n}{'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def has_recorded_pass(view: TapeView) -> bool:
    """Whether any drawn op was recorded by a backward pass (so the drawing has frames)."""
    return any(node.origin is not None for node in view.nodes)


def origins(view: TapeView) -> dict[int, Origin]:
    """Position in ``view.nodes`` -> the Origin of each drawn op a backward pass recorded."""
    found: dict[int, Origin] = {}
    position: dict[int, int] | None = None
    for k, node in enumerate(view.nodes):
        if node.origin is None:
            continue
        if position is None:  # only a tape that recorded a backward pass pays for this
            position = {id(n): j for j, n in enumerate(view.tape.nodes)}
        forward, i = node.origin
        found[k] = _origin(view, forward, i, position.get(id(forward)))
    return found


def _origin(view: TapeView, forward: Node, i: int, index: int | None) -> Origin:
    op = (f"{forward.op.name} #{index}" if index is not None
          else f"{forward.op.name} (recorded on another tape)")
    x = forward.inputs[i] if i < len(forward.inputs) else None
    info = view.tensors.get(id(x)) if x is not None else None
    depth, up = 1, forward.origin
    while up is not None:  # the forward op was itself recorded by a backward pass
        depth, up = depth + 1, up[0].origin
    return Origin((id(forward), i), op, argument_names(forward)[i],
                  info.name if info is not None else "", depth)


def op_phrase(origin: Origin | None) -> str:
    """The words a step caption adds after an op a backward pass recorded (``origin``
    from ``origins``): ``, recorded by a backward pass, in the VJP of pow #0 for dA (x),``."""
    return f", {origin.phrase}," if origin is not None else ""


def recorded_note(made: dict[int, Origin]) -> str:
    """For the step page's first frame: which of the ops it shows a backward pass recorded."""
    if not made:
        return ""
    vjps = len(set(made.values()))
    return (f"{len(made)} of these ops were recorded by a backward pass (create_graph=True), "
            f"in {vjps} VJP{'s' if vjps > 1 else ''} (the teal frames); this page differentiates "
            f"them like any other op. ")


def frame_ops(g: graphviz.Digraph, view: TapeView) -> tuple[tuple[str, str], ...]:
    """Put each recorded VJP's ops and their outputs in one labelled frame of ``g``.

    Ops of the same VJP share a frame, in the order they were recorded.
    Returns the legend's note on the frames, or nothing when none was drawn.
    """
    groups: dict[Origin, list[int]] = {}
    for k, origin in origins(view).items():
        groups.setdefault(origin, []).append(k)
    for n, (origin, members) in enumerate(groups.items()):
        with g.subgraph(name=f"cluster_backward{n}") as frame:
            frame.attr(label=L.html(origin.label).join("<>"), tooltip=L.tooltip(origin.label),
                       style="rounded,filled", fillcolor=FRAME_FILL, color=FRAME_BORDER,
                       fontcolor=FRAME_BORDER, fontsize="9", labeljust="l", margin="6")
            for k in members:
                frame.node(f"op{view.indices[k]}")
                frame.node(view.info(view.nodes[k].output).node_id)
    return (LEGEND_NOTE,) if groups else ()


LEGEND_NOTE = (FRAME_BORDER, "teal frame: ops a recorded backward pass ran for one op's VJP "
                             "(create_graph=True)")
