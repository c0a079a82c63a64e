"""python -m viz: draw the derivation's two-layer network with its gradients.

    python -m viz                      # graph.svg
    python -m viz --out net.png        # the format follows the suffix
    python -m viz --format pdf         # graph.pdf
    python -m viz --steps steps        # also steps/index.html: backprop step by step
    python -m viz --check              # leaves green or red by finite differences, and a verdict
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from microtape.files import why_unwritable

from .example import TwoLayer, two_layer
from .graph import attach_gradients
from .leafcheck import check_leaves
from .render import FORMATS, GraphvizNotFoundError, render, suffix_format
from .steps import render_backward_steps
from .tapeview import TapeView


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    if args.seed < 0:
        parser.error(f"argument --seed: expected a non-negative integer, got {args.seed}")
    if args.out == "" or args.steps == "":  # an empty name would quietly mean the default
        parser.error(f"argument {'--out' if args.out == '' else '--steps'}: expected a path, "
                     f"got an empty one")
    out = args.out or f"graph.{args.format or 'svg'}"
    for option, path, problem in (("--out", out, _out_problem(out, args.format)),
                                  ("--steps", args.steps,
                                   why_unwritable(args.steps, True) if args.steps else None)):
        if problem:  # said before anything is drawn or written
            parser.error(f"{option} {path}: {problem}")
    net = two_layer(seed=args.seed)
    try:
        path = render(net.tape, out, net.loss, format=args.format,
                      params=net.params, check=args.check)
        print(f"wrote {path}: {len(net.tape)} ops, loss J = {float(net.loss):.4f}")
        if args.check:
            verdict, passed = check_verdict(net)
            print(verdict)
        if args.steps:
            index = render_backward_steps(net.tape, net.loss, args.steps, params=net.params)
            print(f"wrote {index}: open it in a browser and step with the arrow keys")
    except GraphvizNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:       # --out and --format disagree
        parser.error(str(e))
    except OSError as e:          # a folder that cannot be made or written to
        print(f"error: cannot write {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0 if not args.check or passed else 1


def _out_problem(out: str, fmt: str | None) -> str | None:
    """What stops --out from being drawn to, in the command's words, with a name that works."""
    path = Path(out)
    if path.is_dir():   # why_unwritable's example has no suffix, from which no format follows
        return f"is a folder; name a file in it, e.g. {path / ('graph.' + (fmt or 'svg'))}"
    if fmt is None and suffix_format(path) not in FORMATS:
        return (f"cannot tell the format; end the name in .svg, .png, .pdf or .dot "
                f"(e.g. {out}.svg), or add --format")
    if fmt is not None and suffix_format(path) in FORMATS and suffix_format(path) != fmt:
        return f"names a .{suffix_format(path)} file but --format is {fmt}; make them agree"
    return why_unwritable(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m viz",
        description="Draw the derivation's two-layer network (2 examples, 3 inputs, 4 hidden, "
                    "3 classes) with values, gradients and the VJP of every op.")
    parser.add_argument("--out", help="file to write (default: graph.svg, or graph.FORMAT)")
    parser.add_argument("--format", choices=("svg", "png", "pdf", "dot"),
                        help="output format (default: from --out's suffix)")
    parser.add_argument("--steps", metavar="DIR",
                        help="also write DIR/index.html, a page that steps through the "
                             "backward pass one op at a time")
    parser.add_argument("--check", action="store_true",
                        help="colour the leaves by a finite-difference check of their gradients")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the batch and weights")
    return parser


def check_verdict(net: TwoLayer) -> tuple[str, bool]:
    """One line saying what the --check drawing's green or red leaves found; True if all agree."""
    view = TapeView(net.tape, net.loss, net.params)
    attach_gradients(view)
    checks = check_leaves(view)
    failed = [view.tensors[k].name for k, c in checks.items() if not c.passed]
    worst = max((c.rel_error for c in checks.values()), default=0.0)
    leaves = ", ".join(view.tensors[k].name for k in checks)
    if failed:
        return (f"finite-difference check: the tape's gradient DISAGREES for {', '.join(failed)} "
                f"(red in the drawing); largest relative error {worst:.1e}", False)
    return (f"finite-difference check: the tape's gradients agree for every leaf ({leaves}); "
            f"largest relative error {worst:.1e}", True)


if __name__ == "__main__":
    sys.exit(main())
