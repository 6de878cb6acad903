"""Drawings of layouts: a terminal index grid and an SVG in the style of CuTe's print_latex.

The SVG writer only builds strings (with XML escaping), so reports can embed it.
"""

from __future__ import annotations

import colorsys
from xml.sax.saxutils import escape

from .cute import ComposedLayout, Layout
from .int_tuple import product
from .linear import LinearLayout

__all__ = ["grid_text", "layout_grid", "linear_views", "to_svg"]

CELL = 28


def _rank2_extents(layout: Layout | ComposedLayout) -> tuple[int, int]:
    shape = layout.shape
    if isinstance(shape, tuple) and len(shape) == 2:
        return product(shape[0]), product(shape[1])
    if isinstance(shape, tuple) and len(shape) == 1:
        return product(shape[0]), 1
    if isinstance(shape, int):
        return shape, 1
    raise ValueError(f"drawing needs a rank-1 or rank-2 layout, got shape {shape}")


def layout_grid(layout: Layout | ComposedLayout) -> list[list[int]]:
    """grid[m][n] = layout(m, n) for a rank-2 layout (rank 1 is drawn as a column)."""
    rows, cols = _rank2_extents(layout)
    if isinstance(layout.shape, tuple) and len(layout.shape) == 2:
        return [[layout((m, n)) for n in range(cols)] for m in range(rows)]
    return [[layout(m)] for m in range(rows)]


def tv_grid(tv_layout: Layout, tile: tuple[int, int]) -> list[list[tuple[int, int] | None]]:
    """For a thread-value layout (thread, value) -> index into an M x N tile (column-major),
    which (thread, value) owns each cell; None where nobody does."""
    rows, cols = tile
    owners: list[list[tuple[int, int] | None]] = [[None] * cols for _ in range(rows)]
    threads, values = product(tv_layout.shape[0]), product(tv_layout.shape[1])
    for value in range(values):
        for thread in range(threads):
            index = tv_layout((thread, value))
            m, n = index % rows, index // rows
            if 0 <= n < cols and owners[m][n] is None:
                owners[m][n] = (thread, value)
    return owners


def grid_text(grid: list[list[object]]) -> str:
    texts = [[str(v) if v is not None else "." for v in row] for row in grid]
    width = max((len(t) for row in texts for t in row), default=1)
    columns = len(texts[0]) if texts else 0
    header = " " * (width + 2) + " ".join(f"{n:>{width}}" for n in range(columns))
    lines = [header]
    for m, row in enumerate(texts):
        lines.append(f"{m:>{width}}: " + " ".join(f"{t:>{width}}" for t in row))
    return "\n".join(lines)


def _colour(key: int, count: int) -> str:
    hue = (key % max(count, 1)) / max(count, 1)
    r, g, b = colorsys.hls_to_rgb(hue, 0.82, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _svg_document(cells: list[tuple[int, int, str, str]], rows: int, cols: int, title: str) -> str:
    width, height = (cols + 1) * CELL, (rows + 1) * CELL + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<text x="2" y="14">{escape(title)}</text>',
    ]
    for n in range(cols):
        parts.append(
            f'<text x="{(n + 1) * CELL + CELL / 2}" y="{20 + CELL * 0.65}" text-anchor="middle">{n}</text>'
        )
    for m in range(rows):
        parts.append(
            f'<text x="{CELL / 2}" y="{20 + (m + 1) * CELL + CELL * 0.65}" text-anchor="middle">{m}</text>'
        )
    for m, n, fill, label in cells:
        x, y = (n + 1) * CELL, 20 + (m + 1) * CELL
        parts.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="black"/>')
        parts.append(
            f'<text x="{x + CELL / 2}" y="{y + CELL * 0.65}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def to_svg(
    layout: Layout | ComposedLayout | LinearLayout,
    tv_tile: tuple[int, int] | None = None,
    title: str | None = None,
) -> str:
    """SVG of a layout. CuTe layouts: cells coloured by value (print_latex style); with
    `tv_tile`, a thread-value layout drawn over an M x N tile, coloured by thread and
    labelled T<thread>V<value>. Linear layouts: Triton's distributed view (which
    thread/register holds each element) or shared view (offset of each element)."""
    if isinstance(layout, LinearLayout):
        grid, colour_keys = linear_views(layout)
        rows, cols = len(grid), len(grid[0])
        count = max(colour_keys[m][n] for m in range(rows) for n in range(cols)) + 1
        cells = [
            (m, n, _colour(colour_keys[m][n], count), grid[m][n]) for m in range(rows) for n in range(cols)
        ]
        return _svg_document(cells, rows, cols, title or "linear layout")
    if tv_tile is not None:
        owners = tv_grid(layout, tv_tile)
        threads = product(layout.shape[0])
        cells = [
            (
                m,
                n,
                _colour(owner[0], min(threads, 8)) if owner else "#ffffff",
                f"T{owner[0]}V{owner[1]}" if owner else "",
            )
            for m, row in enumerate(owners)
            for n, owner in enumerate(row)
        ]
        return _svg_document(cells, tv_tile[0], tv_tile[1], title or str(layout))
    grid = layout_grid(layout)
    cells = [(m, n, _colour(v, 8), str(v)) for m, row in enumerate(grid) for n, v in enumerate(row)]
    return _svg_document(cells, len(grid), len(grid[0]), title or str(layout))


def linear_views(layout: LinearLayout) -> tuple[list[list[str]], list[list[int]]]:
    """Triton's two views over a rank-1/2 tensor: for distributed layouts each element's
    "T<lane+32*warp>:<register>" (first holder; the colour key is the thread); for
    shared layouts each element's offset (colour key: offset // 32, one per bank row)."""
    out_names = layout.get_out_dim_names()
    if len(out_names) not in (1, 2):
        raise ValueError("linear views are drawn for rank-1 or rank-2 tensors")
    rows = layout.get_out_dim_size(out_names[0])
    cols = layout.get_out_dim_size(out_names[1]) if len(out_names) == 2 else 1
    labels: list[list[str | None]] = [[None] * cols for _ in range(rows)]
    keys = [[0] * cols for _ in range(rows)]
    in_dims = dict(layout.in_dims)
    distributed = "lane" in in_dims
    if distributed:
        lanes = in_dims.get("lane", 1)
        for warp in range(in_dims.get("warp", 1)):
            for lane in range(lanes):
                for register in range(in_dims.get("register", 1)):
                    point = {"register": register, "lane": lane, "warp": warp}
                    point.update({d: 0 for d in in_dims if d not in point})
                    out = layout.apply(point)
                    m, n = out[out_names[0]], out[out_names[1]] if cols > 1 else 0
                    if labels[m][n] is None:
                        thread = lane + lanes * warp
                        labels[m][n], keys[m][n] = f"T{thread}:{register}", thread
    else:
        offset_dim = next(iter(in_dims))
        for offset in range(in_dims[offset_dim]):
            point = {d: 0 for d in in_dims}
            point[offset_dim] = offset
            out = layout.apply(point)
            m, n = out[out_names[0]], out[out_names[1]] if cols > 1 else 0
            if labels[m][n] is None:
                labels[m][n], keys[m][n] = str(offset), offset // 32
    return [[label or "" for label in row] for row in labels], keys
