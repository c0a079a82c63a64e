"""Text that enters a drawing: escaped, bounded and formatted for reading.

Every string a user controls (tensor names, values, constants) reaches
Graphviz through one of two doors, and each door has its own escaping:

- ``html(...)`` for the HTML-like labels drawn inside nodes and on edges:
  ``& < > " '`` become entities, so a name like ``<script>`` is text, never
  markup; backslashes are doubled, since Graphviz expands ``\\N``, ``\\G``
  and the like even inside HTML labels.
- ``tooltip(...)`` for the ``tooltip`` attribute: ``&`` becomes ``&amp;``
  (Graphviz decodes entities there) and a backslash is shown as ``∖``
  (U+2216), because Graphviz versions disagree on how many times they expand
  backslash sequences in tooltips; the graphviz package escapes the quotes
  and Graphviz itself the ``< > "`` of the SVG attribute.

Both first make control characters visible as Unicode control pictures
(``␇`` for BEL), since they are not valid in the XML of an SVG.
"""

from __future__ import annotations

import html as _html
import re
from typing import Iterable

import graphviz
import numpy as np

# Characters XML forbids (C0 controls but tab and newline, lone surrogates,
# U+FFFE/U+FFFF); carriage returns are shown too so a name stays one line.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

# Tooltips carry full arrays, but Graphviz refuses a quoted string longer
# than 16,384 characters. A tooltip holds a value and a gradient at about 14
# characters an element, so arrays up to this size are shown whole; larger
# ones get numpy's own summary (first and last few, with "...").
TOOLTIP_MAX_ELEMENTS = 500
TOOLTIP_MAX_CHARS = 16_000


def _picture(m: re.Match) -> str:
    c = ord(m.group())
    if c < 0x20:
        return chr(0x2400 + c)          # ␀ ... ␟
    return "\u2421" if c == 0x7F else "\ufffd"


def visible(text: str) -> str:
    """``text`` with control characters drawn as control pictures (BEL -> ␇)."""
    return _INVISIBLE.sub(_picture, text)


def html(text: object, limit: int | None = None) -> str:
    """``text`` as the content of an HTML-like label: entities, line breaks.

    With ``limit``, text longer than that many characters is cut with "…"
    (the tooltip keeps it whole).
    """
    text = visible(str(text))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return "<BR/>".join(_html.escape(line.replace("\\", "\\\\"), quote=True)
                        for line in text.split("\n"))


def table(rows: Iterable[str], spacing: int = 0, padding: int = 0, bgcolor: str | None = None,
          label: bool = False) -> str:
    """A borderless HTML-like ``<TABLE>`` of ``rows`` (each ``<TR>...</TR>``).

    Every table of a drawing is built here, so they all share one border
    and spacing convention. ``label``: wrapped in ``< >``, ready to be a
    node's whole label.
    """
    bg = f' BGCOLOR="{bgcolor}"' if bgcolor is not None else ""
    text = (f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="{spacing}" CELLPADDING="{padding}"'
            f'{bg}>' + "".join(rows) + "</TABLE>")
    return f"<{text}>" if label else text


def tooltip(text: str) -> str:
    """``text`` as a tooltip attribute, shown as text by Graphviz and browsers."""
    text = visible(text).replace("&", "&amp;").replace("\\", "\u2216")
    if len(text) > TOOLTIP_MAX_CHARS:  # only a pathological name gets here
        text = re.sub(r"&[a-z]*$", "", text[:TOOLTIP_MAX_CHARS]) + "…"
    return graphviz.nohtml(text)


# -- numbers ---------------------------------------------------------------------

def number(v: object) -> str:
    """A number rounded for a label: integers whole, floats to 3 significant digits."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _special(float(v)) or _unsigned_zero(f"{float(v):.3g}")
    return repr(v)


def numbers(a: np.ndarray) -> list[str]:
    """Every element of ``a`` in one shared format, so a matrix's columns line up.

    Integers and integral floats print whole (one-hot rows read 0 and 1).
    Other floats share one number of decimals: three, or more when the
    largest element is below 0.1, so that it keeps three significant digits
    (fewer above 10). Magnitudes below 0.001 or from 100,000 up switch the
    whole array to ``1.23e-05`` notation; a single number gets its own three
    digits. Exact zeros print ``0``; nothing prints ``-0``.
    """
    a = np.asarray(a)
    flat = a.ravel().tolist()
    if a.dtype.kind in "biu":
        return [str(int(v)) for v in flat]
    if a.dtype.kind != "f":
        return [str(v) for v in flat]
    if a.size == 1:
        return [_special(flat[0]) or number(flat[0])]
    finite = [abs(v) for v in flat if np.isfinite(v) and v != 0]
    if all(float(v).is_integer() for v in flat if np.isfinite(v)) and max(finite, default=0) < 1e5:
        return [_special(v) or str(int(v)) for v in flat]
    top = max(finite, default=0.0)
    if 1e-3 <= top < 1e5:
        decimals = max(0 if top >= 10 else 3, 2 - int(np.floor(np.log10(top))))
        text = lambda v: f"{v:.{decimals}f}"  # noqa: E731 - one shared format
    else:
        text = lambda v: f"{v:.2e}"  # noqa: E731
    return [_special(v) or ("0" if v == 0 else _unsigned_zero(text(v))) for v in flat]


def _special(v: float) -> str:
    """nan and the infinities, which no format rounds."""
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return ""


def _unsigned_zero(text: str) -> str:
    """"-0.000" (a tiny negative, rounded) reads as "0.000"."""
    mantissa = text.split("e")[0]
    rounded_to_zero = not any(c in "123456789" for c in mantissa)
    return text[1:] if text.startswith("-") and rounded_to_zero else text


def matrix(a: np.ndarray) -> list[list[str]]:
    """The rows of ``a`` as rounded strings: a scalar is one cell, a vector one row.

    Arrays of three or more dimensions are shown as their last-axis rows.
    """
    a = np.asarray(a)
    cols = 1 if a.ndim == 0 else a.shape[-1]
    flat = numbers(a)
    return [flat[i:i + cols] for i in range(0, len(flat), cols)] if flat else [[]]


def summary(a: np.ndarray) -> list[str]:
    """Two lines that stand in for an array too big to show.

    Floats: range, mean and the Euclidean norm ‖·‖. Integers (class labels,
    indices) are what they are: their count and range, then the first few.
    """
    a = np.asarray(a)
    if a.size == 0:
        return ["(empty)"]
    if a.dtype.kind in "iu":
        first = numbers(a.ravel()[:8])
        more = " …" if a.size > 8 else ""
        return [f"{a.size} integers, {a.min()} to {a.max()}", "first: " + " ".join(first) + more]
    if a.dtype.kind not in "fb":
        return [f"{a.size} elements"]
    f = a.astype(np.float64, copy=False)
    low, high, mean = numbers(np.array([f.min(), f.max(), f.mean()]))
    norm = number(np.linalg.norm(f.ravel()))
    return [f"min {low}   max {high}", f"mean {mean}   ‖·‖ {norm}"]


def full(a: np.ndarray) -> str:
    """Every element of ``a`` (up to TOOLTIP_MAX_ELEMENTS), to the digits its dtype holds."""
    a = np.asarray(a)
    if a.dtype.kind != "f" or a.size == 0:
        return np.array2string(a, separator=", ", threshold=TOOLTIP_MAX_ELEMENTS, max_line_width=120)
    # Significant digits, not decimals, so small gradients keep their
    # precision: 8 for float64, 7 for float32 (all it holds).
    digits = min(8, np.finfo(a.dtype).precision + 1)
    flat = a.ravel()
    shown = flat if a.size <= TOOLTIP_MAX_ELEMENTS else np.concatenate([flat[:3], flat[-3:]])
    width = max(len(f"{v:.{digits}g}") for v in shown.tolist())
    return np.array2string(a, separator=", ", threshold=TOOLTIP_MAX_ELEMENTS, max_line_width=120,
                           formatter={"float_kind": lambda v: f"{v:.{digits}g}".rjust(width)})


def shape_text(shape: tuple[int, ...]) -> str:
    """``(3, 4)``; a scalar's empty shape reads ``()``."""
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def axes_text(axes: tuple[int, ...]) -> str:
    """``axis 0`` or ``axes 0, 1``."""
    return ("axis " if len(axes) == 1 else "axes ") + ", ".join(str(a) for a in axes)


# -- constants folded into an op's label -------------------------------------------

def index_text(index: object) -> str:
    """A numpy index as it was written: ``[0, :2]``, ``[..., None]``."""
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(_index_part(p) for p in parts) + "]"


def _index_part(p: object) -> str:
    if isinstance(p, slice):
        text = ("" if p.start is None else str(p.start)) + ":" + ("" if p.stop is None else str(p.stop))
        return text + (f":{p.step}" if p.step is not None else "")
    if p is Ellipsis:
        return "..."
    if p is None:
        return "None"
    if isinstance(p, np.ndarray):
        return np.array2string(p, separator=",", threshold=8)
    return repr(p)


def gradient_name(of: str, by: str) -> str:
    """dJ/dW1 in the target's own name (dL/dW1 for a loss named L); a name that
    is not one word is bracketed, dJ/d(x W1)."""
    wrap = lambda n: n if n.replace("_", "a").isalnum() else f"({n})"  # noqa: E731
    return f"d{wrap(of)}/d{wrap(by)}"


def op_title(name: str, index: int) -> str:
    """An op's name and its place on the tape, ``softmax_cross_entropy #5``, as one
    run of an HTML-like label, in a regular face.

    One run, because Graphviz places each run where its own measure of the
    previous one ends; regular, because it measures a bold face about 4%
    narrower than browsers draw it. A bold name and a muted number side by
    side read "softmax_cross_entropy#5" in a browser, the title touching the
    box's edge.
    """
    return f'<FONT POINT-SIZE="10.5">{html(name, 40)} #{index}</FONT>'


def is_index(obj: object) -> bool:
    """True for slices, Ellipsis and tuples holding them: text, not a constant array."""
    parts = obj if isinstance(obj, tuple) else (obj,)
    return any(isinstance(p, slice) or p is Ellipsis for p in parts)


def constant_text(obj: object) -> str:
    """A short rendering of a constant argument (a number, a string, an index)."""
    if is_index(obj):
        return index_text(obj)
    if isinstance(obj, np.ndarray) and obj.size == 1:
        return number(obj.item())
    if isinstance(obj, (int, float, np.number, bool)):
        return number(obj)
    with np.printoptions(threshold=8, precision=3):
        return repr(obj) if not isinstance(obj, np.ndarray) else np.array2string(obj, separator=",")


def wrap(text: str, width: int = 44) -> list[str]:
    """``text`` broken at spaces into lines of at most about ``width`` characters."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return [ln for ln in lines if ln.strip()] or [""]

