"""The look of each kind of node, and the legend that documents it.

All colours live here, so the legend and the drawing cannot disagree.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .labels import gradient_name, html as html_text, table, wrap

FONT = "Helvetica,Arial,sans-serif"
GRAD_COLOR = "#b3261e"       # gradient numbers and the word "grad"
MUTED = "#6b6b6b"            # shapes, dtypes, notes
VALUE_BG = "#f4f4f4"         # behind a value matrix
GRAD_BG = "#fdecea"          # behind a gradient matrix
EDGE = "#555555"
BROADCAST = "#1864ab"        # an edge whose VJP summed a broadcast back
FANOUT = "#7048e8"           # a tensor whose gradient sums several contributions
CURRENT = "#e8590c"          # step page: the op applying its VJP, the gradients just arrived
ANOMALY = "#c92a2a"          # the op that made the first NaN or Inf, and what it touched


@dataclass(frozen=True)
class Look:
    fill: str
    border: str
    style: str = "rounded,filled"
    penwidth: str = "1"
    shape: str = "box"


LOOKS = {
    "parameter": Look("#d0e2ff", "#1c4f9c", penwidth="1.6"),
    # Data and constants must not be mistaken for each other: grey and solid
    # for an input array, violet and dashed for a number folded into an op.
    "data": Look("#d0d0d0", "#505050"),
    "constant": Look("#f3e8ff", "#8b5cf6", style="rounded,filled,dashed"),
    "intermediate": Look("#ffffff", "#8a8a8a"),
    "loss": Look("#ffe3b3", "#c25e00", penwidth="2.2"),
    "op": Look("#fff7d6", "#b08900", style="filled", shape="box"),
}
CHECK_PASSED = Look("#c9f2cf", "#1f7a32", penwidth="2.2")
CHECK_FAILED = Look("#ffc9c9", "#c92a2a", penwidth="2.2")
ANOMALY_OP = Look("#ffe3e3", ANOMALY, style="filled", penwidth="3")

_ENTRIES = [
    ("parameter", "parameter: a leaf asked about (params=)"),
    ("data", "data: any other input, a leaf Tensor or an array"),
    ("constant", "constant: a number or option folded into an op"),
    ("intermediate", "intermediate: computed by an op"),
    ("loss", "loss: the target, seeded with gradient 1"),
    ("op", "op #k, k-th on the tape, and the VJP it applies: G = gradient of its output, "
           "dA = what it sends back to input A"),
]

# The legend's sentences are wrapped to this many characters: a compact box,
# and short lines, which Graphviz's font measure and a browser's agree on.
LEGEND_WIDTH = 50

# Symbols the drawing may use, each explained when it appears.
SYMBOLS = [
    ("", "(2, 3) float64", "shape and dtype"),
    ("‖·‖", "‖·‖", "Euclidean norm of all elements (big arrays are summarised)"),
    ("integers,", "integers", "class labels or indices, drawn as they are"),
    ("∘", "∘", "elementwise product"),
    ("ᵀ", "Aᵀ", "transpose"),
    ("Σ", "Σ", "sum"),
    ("²", "T²", "elementwise square"),
    ("^", "A^p", "elementwise power"),
    ("≥", "≥", "at least"),
    ("[A > 0]", "[A > 0]", "1 where A > 0, else 0"),
    ("δ", "δ_ab", "1 when a = b, else 0"),
    ("ŷ", "ŷ, y", "predicted probabilities softmax(v), and the labels as rows"),
    ("÷ N", "÷ N", "divided by N, the number of examples in the batch"),
    ("…", "…", "cut short; hover for the whole text"),
]


def legend_label(check: bool = False, notes: tuple[tuple[str, str], ...] = (),
                 text: str = "", target: str = "J", grads: bool = True) -> str:
    """The legend as an HTML-like label: a swatch and a sentence per kind, the
    notes on colours (``notes``: more (colour, sentence) pairs, from a page
    around the drawing), then the symbols that ``text`` (the drawing's
    labels) uses, each explained. ``target``: the loss's name, as the
    gradients are written (dL/d... for a loss named L); ``grads``: whether the
    drawing shows gradients, and so the line that explains their colour."""
    rows = ['<TR><TD COLSPAN="2" ALIGN="LEFT"><B>legend</B></TD></TR>']
    entries = [(LOOKS[k], sentence) for k, sentence in _ENTRIES]
    if check:
        entries += [(CHECK_PASSED, "leaf gradient agrees with finite differences"),
                    (CHECK_FAILED, "leaf gradient disagrees (relative error shown)")]
    for look, sentence in entries:
        kept = [s.upper() for s in ("rounded", "dashed") if s in look.style]
        style = f' STYLE="{",".join(kept)}"' if kept else ""
        first, *more = wrap(sentence, LEGEND_WIDTH)
        rows.append(f'<TR><TD BGCOLOR="{look.fill}" COLOR="{look.border}" BORDER="1" '
                    f'WIDTH="18" HEIGHT="12" FIXEDSIZE="TRUE"{style}></TD>'
                    f'<TD ALIGN="LEFT">{html_text(first)}</TD></TR>')
        rows += [f'<TR><TD></TD><TD ALIGN="LEFT">{html_text(line)}</TD></TR>' for line in more]
    colours = [
        *([(GRAD_COLOR, f"red numbers: the gradient {gradient_name(target, 'each tensor')}; "
                        f"hover for full arrays")] if grads else []),
        (BROADCAST, "blue edge “summed over axis k”: the VJP summed a broadcast back"),
        (FANOUT, "purple “Σ of n”: a tensor used n times gets the sum of n contributions"),
        *notes,
    ]
    for color, note in colours:
        rows += [f'<TR><TD></TD><TD ALIGN="LEFT"><FONT COLOR="{color}">{html_text(line)}</FONT>'
                 f'</TD></TR>' for line in wrap(note, LEGEND_WIDTH)]
    for marker, symbol, meaning in SYMBOLS:
        if marker in text or html.escape(marker) in text:
            first, *more = wrap(meaning, LEGEND_WIDTH)
            rows.append(f'<TR><TD ALIGN="RIGHT">{html.escape(symbol)}</TD>'
                        f'<TD ALIGN="LEFT">{html.escape(first)}</TD></TR>')
            rows += [f'<TR><TD></TD><TD ALIGN="LEFT">{html.escape(line)}</TD></TR>'
                     for line in more]
    return table(rows, spacing=2, padding=1, label=True)

