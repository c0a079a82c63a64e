"""How a deep chain is laid out: wrapped into columns that each start at the top.

Top to bottom, dot gives every op and every tensor of a chain a row of its
own, so a network of three layers or more drew tall and narrow
(``MLP([64, 32, 16, 10])`` was 0.52 wide over high). Here the chain is cut
into columns of about equal depth; the edges from one column into the next
do not constrain the rows (``constraint=false``), so each column starts at
the top again, and an invisible edge in the first row keeps the columns in
reading order, left to right.
"""

from __future__ import annotations

import math

import graphviz

from microtape import Tensor

from .tapeview import TapeView, is_data_array

# The number of columns c grows as the square root of the chain's depth (ops
# on its longest path), so a deeper chain gets both taller columns and more
# of them: each about 1.5 c ops deep, since an op with its output tensor is
# about 1.5 times as wide as tall. One column up to 3 ops deep, two from 4 (the
# derivation's 6: a column per layer), three from 10, eight at 100.
DEPTH_PER_COLUMN = 1.5


def op_depths(view: TapeView) -> list[int]:
    """Per op of ``view.nodes``: how many ops run before it on its longest input path."""
    depths: list[int] = []
    for node in view.nodes:
        before = [depths[view.info(x).producer] + 1 for x in node.inputs
                  if isinstance(x, Tensor) and view.info(x).producer is not None]
        depths.append(max(before, default=0))
    return depths


def op_columns(view: TapeView) -> list[int]:
    """Per op of ``view.nodes``: its column, 0 for the first; all 0 for a short chain."""
    depths = op_depths(view)
    levels = max(depths, default=0) + 1
    count = max(1, math.floor(math.sqrt(levels / DEPTH_PER_COLUMN) + 0.5))
    return [depth * count // levels for depth in depths]


def wrap(view: TapeView, rankdir: str) -> tuple[dict[tuple[str, str], dict[str, str]], list[str]]:
    """The attributes of the edges that cross from one column of the chain into the
    next ({(DOT id, DOT id): attributes}), and each column's first op, in order."""
    columns = op_columns(view)
    if rankdir not in ("TB", "BT") or max(columns, default=0) == 0:
        return {}, []
    crossing: dict[tuple[str, str], dict[str, str]] = {}
    home: dict[str, int] = {}           # a leaf's column: that of its first consumer
    firsts: dict[int, str] = {}
    for k, node in enumerate(view.nodes):
        op_id = f"op{view.indices[k]}"
        firsts.setdefault(columns[k], op_id)
        for x in node.inputs:
            if isinstance(x, Tensor):
                info = view.info(x)
                src = info.node_id
                column = columns[info.producer] if info.producer is not None else None
            elif is_data_array(x):
                src, column = view.arrays[id(x)].node_id, None
            else:
                continue
            column = home.setdefault(src, columns[k]) if column is None else column
            if column != columns[k]:
                crossing[(src, op_id)] = {"constraint": "false"}
    return crossing, [firsts[c] for c in sorted(firsts)]


def order_columns(g: graphviz.Digraph, tops: list[str]) -> None:
    """Keeps the columns in reading order: their first ops share a row, left to right."""
    if len(tops) < 2:
        return
    with g.subgraph(name="column_tops", graph_attr={"rank": "same"}) as s:
        for a, b in zip(tops, tops[1:]):
            s.edge(a, b, style="invis")
