"""render: draw a tape into a file, and say how to get Graphviz when it is missing."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import graphviz

from microtape import Tape, Tensor
from microtape.files import write_atomic

from .graph import draw_graph

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("Install Graphviz: 'sudo apt-get install graphviz' (Debian/Ubuntu), "
                "'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz'")


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program is not on PATH, so only the DOT source was written."""


def render(tape: Tape, path: str | Path, target: Tensor | None = None, format: str | None = None,
           **draw_options: Any) -> Path:
    """Draw ``tape`` (see ``draw_graph`` for ``draw_options``) into ``path``; return the path.

    The format is ``format`` or else the path's suffix: svg, png, pdf or dot.
    A path without one of those suffixes gets ``.<format>`` appended; missing
    folders are created. The file is replaced atomically (``microtape.files``),
    so a failed draw leaves the old one intact. Without Graphviz's ``dot``
    program, the DOT source is still written next to ``path`` (same name,
    ``.dot``) and ``GraphvizNotFoundError`` says how to install Graphviz.
    """
    path, fmt = output_path(path, format)
    return write_drawing(draw_graph(tape, target, **draw_options), path, fmt)


def output_path(path: str | Path, format: str | None) -> tuple[Path, str]:
    """The file a drawing goes to and its format, checked, with its folder created."""
    path = Path(path)
    if path.is_dir():  # drawn beside it as path.svg, the drawing would not be where it was asked
        raise IsADirectoryError(errno.EISDIR, f"this is a folder; give the drawing's file name, "
                                              f"e.g. {str(path / 'graph.svg')!r}", str(path))
    fmt = _format_for(path, format)
    if suffix_format(path) != fmt:
        path = path.with_name(f"{path.name}.{fmt}")
    _make_folder(path)
    return path, fmt


def write_drawing(graph: graphviz.Digraph, path: Path, fmt: str) -> Path:
    """``graph`` rendered as ``fmt`` into ``path``, atomically; the DOT source for "dot"."""
    if fmt == "dot":
        return write_atomic(path, graph.source)
    return write_atomic(path, pipe(graph, fmt, path))


def pipe(graph: graphviz.Digraph, fmt: str, path: Path) -> bytes:
    """``dot -T<fmt>`` of ``graph``; without ``dot``, writes ``path``'s .dot and raises."""
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        source = path.with_suffix(".dot")
        write_atomic(source, graph.source)
        raise GraphvizNotFoundError(
            f"cannot draw {path}: Graphviz's 'dot' program was not found on PATH. The graph's "
            f"source was written to {source} instead. {INSTALL_HINT}; then run "
            f"'dot -T{fmt} {source} -o {path}', or draw again."
        ) from None


def _make_folder(path: Path) -> None:
    """Create ``path``'s folder; errors name ``path``, as the writer's do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(errno.ENOTDIR, f"part of {str(path.parent)!r} is a file, not a "
                                                f"folder", str(path)) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot create the folder {str(path.parent)!r}: {e.strerror}",
                      str(path)) from None


def suffix_format(path: Path) -> str:
    """The format ``path``'s suffix names (one of ``FORMATS`` if it names one)."""
    suffix = path.suffix.lower().lstrip(".")
    return "dot" if suffix == "gv" else suffix


def _format_for(path: Path, format: str | None) -> str:
    suffix = suffix_format(path)
    if format is None:
        if suffix not in FORMATS:
            raise ValueError(f"render: cannot tell the format from {path.name!r}; use a path "
                             f"ending in .svg, .png, .pdf or .dot, or pass format=")
        return suffix
    fmt = format.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"render: format must be one of {', '.join(FORMATS)}, not {format!r}")
    if suffix in FORMATS and suffix != fmt:
        raise ValueError(f"render: the path {path.name!r} says {suffix} but format={format!r}; "
                         f"make them agree")
    return fmt
