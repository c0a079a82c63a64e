"""python -m viz: draw the derivation's two-layer network with its gradients.

    python -m viz                      # graph.svg
    python -m viz --out net.png        # the format follows the suffix
    python -m viz --format pdf         # graph.pdf
    python -m viz --steps steps        # also steps/index.html: backprop step by step
"""

from __future__ import annotations

import argparse
import sys

from .example import two_layer
from .render import GraphvizNotFoundError, render
from .steps import render_backward_steps


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

    out = args.out or f"graph.{args.format or 'svg'}"
    net = two_layer(seed=args.seed)
    net.tape.backward(net.loss)
    try:
        path = render(net.tape, out, net.loss, format=args.format,
                      params=net.params, check=args.check)
        print(f"wrote {path}: {len(net.tape)} ops, loss J = {float(net.loss):.4f}")
        if args.steps:
            index = render_backward_steps(net.tape, net.loss, args.steps, params=net.params)
            print(f"wrote {index}: open it in a browser and step with the arrow keys")
    except GraphvizNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:       # --out and --format disagree
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
