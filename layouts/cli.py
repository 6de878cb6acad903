"""`tilearena layout show "<layout>" [--tv [MxN]] [--svg FILE]`: print a layout, write an SVG.

<layout> is CuTe notation ("((2,2),3):((24,2),8)") or a Triton layout constructor from
layouts.hardware with literal arguments ("blocked([1,4],[4,8],[2,2],[1,0],[16,32])",
"mma_v2([2,2],[32,32])", "swizzled_shared(8,1,8,[1,0],[8,64])", ...). The main CLI calls
add_parser(subparsers) to register the subcommand and run(args).
"""

from __future__ import annotations

import argparse
import ast
import sys

from . import hardware
from .cute import Layout
from .draw import grid_text, layout_grid, linear_views, to_svg, tv_grid
from .int_tuple import product
from .linear import LinearLayout

__all__ = ["add_parser", "main", "parse_layout", "run"]

TRITON_CONSTRUCTORS = {
    "blocked": hardware.blocked,
    "mma_v2": hardware.mma_v2,
    "mma_v3": hardware.mma_v3,
    "dot_operand": hardware.dot_operand,
    "swizzled_shared": hardware.swizzled_shared,
    "nvmma_shared": hardware.nvmma_shared,
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("layout", help="CuTe and Triton (linear) layout tools")
    actions = parser.add_subparsers(dest="layout_command", required=True)
    show = actions.add_parser("show", help="print a layout's grid and optionally write an SVG")
    show.add_argument(
        "layout",
        help='CuTe notation, e.g. "((2,2),3):((24,2),8)", or a Triton layout, e.g. '
        '"blocked([1,4],[4,8],[2,2],[1,0],[16,32])"',
    )
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


def parse_layout(text: str) -> Layout | LinearLayout:
    """CuTe notation, or name(literal, ...) of a constructor in TRITON_CONSTRUCTORS."""
    stripped = text.strip()
    name, _, rest = stripped.partition("(")
    if name in TRITON_CONSTRUCTORS:
        if not rest.endswith(")"):
            raise ValueError(f"expected {name}(...) with literal arguments")
        arguments = ast.literal_eval("(" + rest[:-1] + ",)")  # literals only: no code runs
        return TRITON_CONSTRUCTORS[name](*arguments)
    return Layout.parse(stripped)


def _tile_for(tv_layout: Layout, requested: str) -> tuple[int, int]:
    if requested != "auto":
        rows, _, cols = requested.lower().partition("x")
        return int(rows), int(cols)
    # a square-ish power-of-two tile that covers every index the layout produces
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
        layout = parse_layout(args.layout)
    except (ValueError, TypeError, SyntaxError) as error:
        print(f"error: cannot read layout {args.layout!r}: {error}", file=sys.stderr)
        return 2
    try:
        if isinstance(layout, LinearLayout):
            labels, _ = linear_views(layout)
            print(layout)
            print(grid_text(labels))
            svg = to_svg(layout, title=args.layout) if args.svg else None
        elif args.tv:
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


if __name__ == "__main__":
    raise SystemExit(main())
