"""A Tensor in a notebook: its name, shape and dtype over small tables of its value and gradient.

Jupyter calls ``Tensor._repr_html_``, which calls :func:`tensor_html`. Big
arrays show their corners (``EDGE`` rows and columns from each side) with
an ellipsis between, as numpy's printing does; arrays of more than two
dimensions show their last two axes at the first index of the others.
"""

from __future__ import annotations

import html

import numpy as np

EDGE = 3  # rows or columns shown from each side of a long axis

_STYLE = ("border-collapse:collapse;font-family:monospace;font-size:12px;"
          "display:inline-table;vertical-align:top;margin-right:1.5em")
_CELL = "padding:1px 6px;text-align:right;border:1px solid #ddd"


def tensor_html(value: np.ndarray, grad: np.ndarray | None, name: str | None) -> str:
    """The HTML block: a header line, then the value table and, when set, the gradient table."""
    title = f"<b>{html.escape(name)}</b> " if name else ""
    grad_note = "" if grad is not None else ", no gradient yet"
    parts = [f"<div class='microtape-tensor'><div style='font-family:monospace;margin-bottom:2px'>"
             f"{title}Tensor, shape {value.shape}, {value.dtype}{grad_note}</div>",
             _table(value, "value")]
    if grad is not None:
        parts.append(_table(np.asarray(grad), "gradient dJ/d(tensor)", color="#b00"))
    parts.append("</div>")
    return "".join(parts)


def _table(a: np.ndarray, caption: str, color: str = "inherit") -> str:
    note = ""
    if a.ndim > 2:
        note = f" [{', '.join(['0'] * (a.ndim - 2))}, :, :]"
        a = a[(0,) * (a.ndim - 2)]
    grid = np.atleast_2d(a)
    rows = _picks(grid.shape[0])
    cols = _picks(grid.shape[1])
    lines = [f"<table style='{_STYLE};color:{color}'><caption style='text-align:left'>"
             f"{html.escape(caption + note)}</caption>"]
    for i in rows:
        cells = []
        for j in cols:
            text = "…" if i is None or j is None else _number(grid[i, j])
            cells.append(f"<td style='{_CELL}'>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "".join(lines)


def _picks(n: int) -> list[int | None]:
    """Indices along an axis of length n; None marks the gap in a long one."""
    if n <= 2 * EDGE + 1:
        return list(range(n))
    return [*range(EDGE), None, *range(n - EDGE, n)]


def _number(x) -> str:
    x = float(x)
    return "0" if x == 0 else f"{x:.4g}"   # no "-0": a zero is a zero
