"""Drawings of a tape: the computation graph with its values and gradients.

    import viz
    viz.draw_graph(tape, loss)                 # a graphviz.Digraph (notebooks show it)
    viz.render(tape, "graph.svg", loss)        # svg, png, pdf or dot; hover for full arrays
    viz.render_backward_steps(tape, loss, "steps")   # steps/index.html: watch backprop
    viz.draw_graph(tape, loss, names={"x": x})       # name what the program left unnamed
    viz.render_anomaly(err, "anomaly.svg")     # an mt.AnomalyError: the op that made a NaN, in red

In Jupyter, after ``import viz``, a Tape shown as a cell's value is drawn.

Needs the ``graphviz`` Python package (``pip install 'microtape[viz]'``) and,
to render, Graphviz's ``dot`` program. viz only reads the tape; microtape
knows nothing of it.
"""

try:
    import graphviz  # noqa: F401
except ImportError as e:  # often a fresh shell's python rather than the project's .venv
    from microtape._install import missing_package
    raise ImportError("viz needs the graphviz Python package. " + missing_package(
        "graphviz", "pip install 'microtape[viz]' (and Graphviz's dot program to render: "
                    "apt-get/brew/conda install graphviz)")) from None

from .anomaly import draw_anomaly, render_anomaly
from .graph import draw_graph
from .render import GraphvizNotFoundError, render
from .steps import render_backward_steps
from . import notebook

notebook.register()  # in Jupyter, a Tape shown as a cell's value is drawn as its graph

__all__ = ["draw_graph", "render", "render_backward_steps", "draw_anomaly", "render_anomaly",
           "GraphvizNotFoundError"]
