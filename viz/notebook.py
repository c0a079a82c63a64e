"""In Jupyter, a Tape shown as a cell's value is drawn as its graph, and an
``mt.AnomalyError`` shows its drawing under its traceback.

``import viz`` registers an SVG formatter for ``microtape.Tape`` with the
running IPython (when there is one), so microtape itself never needs to know
about drawings. The drawing is ``draw_graph(tape)``: values always, and the
gradients of the target of the tape's last ``backward``, computed again from
the tape, while no backward pass has run since on any tape (it may have
overwritten some ``.grad``). When it cannot be drawn (no
``dot`` program, a non-persistent tape already spent), the cell falls back
to the tape's text repr.

The error's drawing comes through IPython's ``set_custom_exc``: the usual
traceback first, then ``draw_anomaly(err)`` as SVG. IPython keeps one such
handler per shell, so this one replaces any set before.

Every drawing also comes as HTML: the SVG in an ``<img>`` no wider than the
output area (``max-width: 100%``), which the front ends prefer. JupyterLab
shows an SVG output as an image at its full size, cut off at the right when
it is wider than the cell, and not at all in a notebook it does not trust
(one opened with outputs someone else stored); the HTML image is shown
either way. The SVG stays in the output too, for tools that read it.
"""

from __future__ import annotations

import base64
import sys

import graphviz

from microtape import AnomalyError, Tape

from .anomaly import draw_anomaly
from .graph import DRAWING_NAME, draw_graph


def tape_svg(tape: Tape) -> str | None:
    """The tape's drawing as SVG text, or None when it cannot be drawn here."""
    try:
        return draw_graph(tape).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, RuntimeError, ValueError):
        return None


def fitted(svg: str | None) -> str | None:
    """``svg`` as an HTML image that shrinks to the output area's width, never grows."""
    if svg is None:
        return None
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<img src="data:image/svg+xml;base64,{data}" alt="a drawing of the tape" '
            f'style="max-width: 100%; height: auto">')


def drawing_html(graph: graphviz.Digraph) -> str | None:
    """A drawing viz made (``draw_graph``, ``draw_anomaly``) as a fitted HTML image; None for
    other Digraphs, which keep their own display."""
    if graph.name != DRAWING_NAME:
        return None
    try:
        return fitted(graph.pipe(format="svg", encoding="utf-8"))
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return None


def register(shell=None) -> bool:
    """Make ``shell`` (default: the running IPython) display Tapes as SVG, and every drawing
    also as a fitted HTML image; True if it did."""
    if shell is None:
        ipython = sys.modules.get("IPython")  # never import IPython just to look for it
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    formatters = shell.display_formatter.formatters
    formatters["image/svg+xml"].for_type(Tape, tape_svg)
    formatters["text/html"].for_type(Tape, lambda tape: fitted(tape_svg(tape)))
    formatters["text/html"].for_type(graphviz.Digraph, drawing_html)
    if hasattr(shell, "set_custom_exc"):
        shell.set_custom_exc((AnomalyError,), show_anomaly)
    return True


def anomaly_svg(err: AnomalyError) -> str | None:
    """The error's drawing as SVG text, or None when it cannot be drawn here."""
    try:
        return draw_anomaly(err).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, RuntimeError, ValueError):
        return None


def show_anomaly(shell, etype, value, tb, tb_offset=None) -> None:
    """IPython's handler for an AnomalyError: the traceback, then the drawing."""
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    svg = anomaly_svg(value)
    if svg is not None:
        shell.display_pub.publish(data={"image/svg+xml": svg, "text/html": fitted(svg)},
                                  metadata={})
