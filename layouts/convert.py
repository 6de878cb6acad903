"""Conversions between CuTe layouts and F2 linear layouts.

A CuTe layout is F2-linear when every leaf mode has a power-of-two extent and the
values its index bits produce (stride * 2**k) are pairwise bit-disjoint: then
L(i ^ j) == L(i) ^ L(j). A Swizzle is XOR-linear, so a swizzle composed (offset 0)
with a linear layout is linear too.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cute import ComposedLayout, Layout, Swizzle, coalesce
from .linear import LinearLayout

__all__ = ["cute_to_linear", "linear_to_cute", "swizzled_shared_to_cute"]


def _mode_bases(extent: int, stride: int, where: str) -> list[int]:
    if extent < 1 or extent & (extent - 1):
        raise ValueError(f"{where} has extent {extent}, not a power of two, so the layout is not F2-linear")
    return [stride << k for k in range(extent.bit_length() - 1)]


def cute_to_linear(
    layout: Layout | ComposedLayout, out_dim: str = "offset", in_dim_prefix: str = "dim"
) -> LinearLayout:
    """The LinearLayout of a CuTe layout: one in dim per top-level mode (dim0, dim1, ...) -> `out_dim`.

    Raises ValueError naming the mode when the layout is not F2-linear.
    """
    swizzle = None
    if isinstance(layout, ComposedLayout):
        if layout.offset != 0:
            raise ValueError(f"a composed layout with offset {layout.offset} is affine, not linear")
        if not isinstance(layout.outer, Swizzle):
            raise ValueError("only Swizzle o 0 o Layout composed layouts are supported")
        swizzle, layout = layout.outer, layout.inner
    in_bases: list[tuple[str, list[int]]] = []
    for mode_index, mode in enumerate(layout.modes()):
        values: list[int] = []
        for leaf_index, (extent, stride) in enumerate(mode.flat_modes()):
            where = f"mode {mode_index} (leaf {leaf_index}: {extent}:{stride}) of {layout}"
            if stride < 0:
                raise ValueError(f"{where} has a negative stride, so the layout is not F2-linear")
            values += _mode_bases(extent, stride, where)
        in_bases.append((f"{in_dim_prefix}{mode_index}", values))
    seen = 0
    for name, values in in_bases:
        for value in values:
            if value & seen:
                raise ValueError(
                    f"{name} of {layout} produces {value}, which shares bits with the values of "
                    "other index bits, so the layout is not F2-linear"
                )
            seen |= value
    if swizzle is not None:
        in_bases = [(name, [swizzle(v) for v in values]) for name, values in in_bases]
    largest = 0
    for _, values in in_bases:
        for value in values:
            largest |= value
    out_size = 1 << largest.bit_length()
    return LinearLayout([(name, [[v] for v in values]) for name, values in in_bases], [(out_dim, out_size)])


def linear_to_cute(layout: LinearLayout) -> Layout:
    """The CuTe layout of a one-in-dim LinearLayout whose bases are powers of two (or 0).

    Several out dims are flattened column-major (dim0 fastest), CuTe's convention.
    Raises ValueError when a basis has several bits set (e.g. a swizzle): no strided
    layout produces it.
    """
    if layout.num_in_dims != 1:
        raise ValueError(f"linear_to_cute needs exactly one in dim, got {layout.get_in_dim_names()}")
    flat = layout.flatten_outs()
    ((in_name, vectors),) = flat.bases
    strides = []
    for bit, (value,) in enumerate(vectors):
        if value & (value - 1):
            raise ValueError(
                f"basis {bit} of {in_name!r} maps to {value}, several bits: "
                "not representable as a CuTe stride"
            )
        strides.append(value)
    if not strides:
        return Layout(1, 0)
    return coalesce(Layout(tuple([2] * len(strides)), tuple(strides)))


def swizzled_shared_to_cute(
    vec: int, per_phase: int, max_phase: int, order: Sequence[int], shape: Sequence[int]
) -> ComposedLayout:
    """Triton's #ttg.swizzled_shared as CuTe Swizzle<B,M,S> o 0 o (row-major layout of shape).

    B = log2(max_phase), M = log2(vec), S = log2(columns * per_phase / vec): the phase
    bits of the row index move onto the vec-group bits of the column index.
    """
    if len(shape) != 2 or sorted(order) != [0, 1]:
        raise ValueError("swizzled_shared_to_cute handles rank-2 shapes")
    for name, value in (("vec", vec), ("per_phase", per_phase), ("max_phase", max_phase)):
        if value < 1 or value & (value - 1):
            raise ValueError(f"{name}={value} is not a power of two; CuTe Swizzle needs powers of two")
    col_dim, row_dim = order[0], order[1]
    columns = shape[col_dim]
    if vec * max_phase > columns:
        raise ValueError(
            f"vec*max_phase = {vec * max_phase} exceeds the {columns} columns; Triton wraps the phase"
        )
    bits = max_phase.bit_length() - 1
    base = vec.bit_length() - 1
    shift = (columns * per_phase).bit_length() - 1 - base
    strides = [0, 0]
    strides[col_dim], strides[row_dim] = 1, columns
    inner = Layout(tuple(shape), tuple(strides))
    return ComposedLayout(Swizzle(bits, base, shift) if bits else Swizzle(0, 0, 0), 0, inner)
