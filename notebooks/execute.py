"""Run a notebook in a fresh kernel and store its outputs: ``make notebook-outputs``.

    python notebooks/execute.py                      # notebooks/first_hour.ipynb, in place
    python notebooks/execute.py other.ipynb --out copy.ipynb

The notebook runs from its own folder, against this checkout's microtape
(the kernel gets the checkout first on its PYTHONPATH), with every output
cleared first. Its cells seed their random numbers, so a second run on the
same machine writes the same file; what would still change from run to run
is replaced by a fixed text:

- an object's address in a plain repr (``<... at 0x7f...>`` becomes ``<...>``);
- the kernel's temporary file for a cell (``/tmp/ipykernel_<pid>/<hash>.py``
  becomes ``<cell>.py``), which error messages name as "your line";
- the checkout's own folder in a path (a warning's ``/home/.../microtape/ops.py``
  becomes ``microtape/ops.py``);
- how the kernel happened to split printed text into messages: a cell's
  printed text between two other outputs is stored as one stdout output,
  then one stderr output (the order of the two streams is not kept by
  Jupyter either).

Execution times are not recorded and the notebook's metadata is kept as it
was. Needs nbclient, nbformat and ipykernel (the ``dev`` extra); no network.
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "first_hour.ipynb"


def volatile(root: Path = ROOT) -> list[tuple[re.Pattern, str]]:
    """(pattern, replacement) for each text that changes between two runs of one notebook."""
    return [
        (re.compile(r" at 0x[0-9a-fA-F]+>"), ">"),
        (re.compile(r"(?:/[\w.-]+)*/ipykernel_\d+/-?\d+\.py"), "<cell>.py"),
        (re.compile(re.escape(str(root)) + r"[/\\]"), ""),
    ]


def steady(text: str, root: Path = ROOT) -> str:
    """``text`` with what changes from run to run replaced (see the module docstring)."""
    for pattern, replacement in volatile(root):
        text = pattern.sub(replacement, text)
    return text


_SVG_IMAGE = re.compile(r"(data:image/svg\+xml;base64,)([A-Za-z0-9+/=]+)")


def _steady_image(m: re.Match) -> str:
    """An SVG inlined as base64 (a drawing's HTML image), made steady inside."""
    svg = steady(base64.b64decode(m.group(2)).decode("utf-8"))
    return m.group(1) + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _steady_outputs(nb) -> None:
    """Every text an output holds, made steady in place."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = steady(output["text"])
            for mime, data in output.get("data", {}).items():
                if isinstance(data, str) and mime in ("text/html", "image/svg+xml", "text/plain"):
                    output["data"][mime] = _SVG_IMAGE.sub(_steady_image, steady(data))
            if "traceback" in output:
                output["traceback"] = [steady(line) for line in output["traceback"]]


def _joined_streams(outputs: list) -> list:
    """Each run of stream outputs as at most one stdout and one stderr output."""
    joined: list = []
    run: dict[str, object] = {}
    for output in [*outputs, None]:
        if output is not None and output.get("output_type") == "stream":
            if output["name"] in run:
                run[output["name"]]["text"] += output["text"]
            else:
                run[output["name"]] = copy.copy(output)   # the text grows; the cell's stays
            continue
        joined += [run[name] for name in ("stdout", "stderr") if name in run]
        run = {}
        if output is not None:
            joined.append(output)
    return joined


def execute(path: Path = NOTEBOOK, timeout: int = 300):
    """The notebook at ``path`` run top to bottom in a fresh python3 kernel, outputs steady.

    Raises nbclient's CellExecutionError, naming the cell, when a cell fails.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    metadata = dict(nb.metadata)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     record_timing=False,
                                     resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute(env=env)
    nb.metadata = metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _joined_streams(cell.outputs)
    _steady_outputs(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python notebooks/execute.py",
                                     description="Run a notebook and store its outputs in it.")
    parser.add_argument("notebook", nargs="?", type=Path, default=NOTEBOOK)
    parser.add_argument("--out", type=Path, help="write here instead of over the notebook")
    args = parser.parse_args(argv)
    import nbformat

    sys.path.insert(0, str(ROOT))
    from microtape.files import write_atomic

    nb = execute(args.notebook)
    out = write_atomic(args.out or args.notebook, nbformat.writes(nb) + "\n")
    cells = sum(c.cell_type == "code" for c in nb.cells)
    print(f"ran {cells} code cells of {args.notebook.name}; wrote {out} with their outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
