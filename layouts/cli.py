"""`tilearena layout show "<layout>" [--tv] [--svg FILE]`: print a layout's grid, write an SVG.

The main CLI calls add_parser(subparsers) to register the subcommand and run(args).
"""

from __future__ import annotations

import argparse
import sys

from .cute import Layout, composition, make_layout
from .draw import grid_text, layout_grid, linear_views, to_svg, tv_grid
from .int_tuple import product

__all__ = ["add_parser", "main", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("layout", help="CuTe and linear layout tools")
    actions = parser.add_subparsers(dest="layout_command", required=True)
    show = actions.add_parser("show", help="print the index grid of a layout and optionally write an SVG")
    show.add_argument("layout", help='CuTe notation, e.g. "((2,2),3):((24,2),8)" or "(4,8):(8,1)"')
    show.add_argument(
        "--tv",
        nargs="?",
        const="auto",
        metavar="MxN",
        help="draw a thread-value layout (thread, value) -> tile index over an MxN tile",
    )
    show.add_argument("--svg", metavar="FILE", help="write an SVG drawing to FILE")
    parser.set_defaults(layout_run=run)
    return parser


def _tile_for(tv_layout: Layout, requested: str) -> tuple[int, int]:
    if requested != "auto":
        m, _, n = requested.lower().partition("x")
        return int(m), int(n)
    # cosize is the span of indices; pick M as the extent of the first thread mode when it makes sense.
    span = tv_layout.cosize()
    rows = 1
    while rows * rows < span:
        rows *= 2
    return rows, max(1, -(-span // rows))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "layout_command", None) != "show":
        print("usage: tilearena layout show <layout> [--tv [MxN]] [--svg FILE]", file=sys.stderr)
        return 2
    try:
        layout = Layout.parse(args.layout)
    except (ValueError, TypeError) as error:
        print(f"error: cannot parse layout {args.layout!r}: {error}", file=sys.stderr)
        return 2
    try:
        if args.tv:
            if layout.rank() != 2:
                raise ValueError("a thread-value layout has rank 2: (thread, value)")
            tile = _tile_for(layout, args.tv)
            owners = tv_grid(layout, tile)
            print(
                f"{layout}  (threads={product(layout.shape[0])}, "
                f"values={product(layout.shape[1])}, tile={tile})"
            )
            print(grid_text([[f"T{o[0]}V{o[1]}" if o else None for o in row] for row in owners]))
            svg = to_svg(layout, tv_tile=tile) if args.svg else None
        else:
            print(layout)
            print(grid_text(layout_grid(layout)))
            svg = to_svg(layout) if args.svg else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if svg is not None:
        with open(args.svg, "w", encoding="utf-8") as handle:
            handle.write(svg)
        print(f"wrote {args.svg}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilearena")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


# Re-exported for callers that draw linear layouts or compose before drawing.
_ = (composition, make_layout, linear_views)

if __name__ == "__main__":
    raise SystemExit(main())
