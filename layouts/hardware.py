"""Triton's GPU layouts (TritonGPU encodings) as linear layouts, following Triton 3.6's
`LinearLayoutConversions.cpp`: distributed layouts have in dims register/lane/warp/block,
shared layouts offset/block; out dims are dim0, dim1, ... in logical order. One CTA per
CGA (block dim of size 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from .linear import LinearLayout

__all__ = [
    "blocked",
    "dot_operand",
    "mma_v2",
    "mma_v3",
    "nvmma_shared",
    "slice",
    "swizzled_shared",
]

REGISTER, LANE, WARP, BLOCK, OFFSET = "register", "lane", "warp", "block", "offset"


def _dim_names(rank: int) -> list[str]:
    return [f"dim{i}" for i in range(rank)]


def _identity_nd(in_dim: str, sizes: Sequence[int], order: Sequence[int]) -> LinearLayout:
    """in_dim walks the dims in `order` (fastest first); out dims are listed in that order too."""
    names = _dim_names(len(sizes))
    result = LinearLayout.empty()
    for dim in order:
        result = result * LinearLayout.identity_1d(sizes[dim], in_dim, names[dim])
    return result


def _matrix_order(rank: int, row_major: bool) -> list[int]:
    order = list(range(rank - 1, -1, -1))
    if not row_major:
        order[0], order[1] = order[1], order[0]
    return order


def _with_out_sizes(bases: dict[str, list[list[int]]], out_names: list[str]) -> LinearLayout:
    """Out sizes inferred from the bases, as Triton's LinearLayout(bases, outDimNames) does."""
    largest = [0] * len(out_names)
    for vectors in bases.values():
        for vector in vectors:
            largest = [max(a, b) for a, b in zip(largest, vector)]
    return LinearLayout(bases, [(n, 1 << v.bit_length()) for n, v in zip(out_names, largest)])


def _not_smaller_than(layout: LinearLayout, shape: dict[str, int], in_dim: str = REGISTER) -> LinearLayout:
    """Repeat along `in_dim` (registers: each thread holds more values) until every dim covers the shape."""
    for name in layout.get_out_dim_names():
        size = layout.get_out_dim_size(name)
        if size < shape[name]:
            layout = layout * LinearLayout.identity_1d(shape[name] // size, in_dim, name)
    return layout


def _not_larger_than(layout: LinearLayout, shape: dict[str, int], broadcast_registers: bool) -> LinearLayout:
    """Clamp dims larger than the shape: the largest bases are zeroed (broadcast), or, for
    registers when not broadcasting, dropped (a thread does not hold duplicate values)."""
    bases = {name: [list(v) for v in vectors] for name, vectors in layout.bases}
    out_names = layout.get_out_dim_names()
    dropped_registers: set[int] = set()
    for position, name in enumerate(out_names):
        actual, desired = layout.get_out_dim_size(name), shape[name]
        if actual <= desired:
            continue
        candidates = [
            (vectors[index][position], in_dim, index)
            for in_dim, vectors in bases.items()
            for index in range(len(vectors))
            if vectors[index][position] != 0
        ]
        candidates.sort(key=lambda item: -item[0])
        for _, in_dim, index in candidates:
            if actual <= desired:
                break
            if not broadcast_registers and in_dim == REGISTER:
                dropped_registers.add(index)
            else:
                bases[in_dim][index][position] = 0
            actual //= 2
    if not broadcast_registers and REGISTER in bases:
        bases[REGISTER] = [v for i, v in enumerate(bases[REGISTER]) if i not in dropped_registers]
    return _with_out_sizes(bases, out_names)


def _fit_to_shape(cta_layout: LinearLayout, shape: Sequence[int], in_dim: str = REGISTER) -> LinearLayout:
    """Triton's combineCtaCgaWithShape for a single CTA: repeat or broadcast to the shape, add block."""
    names = _dim_names(len(shape))
    labelled = dict(zip(names, shape))
    fitted = _not_smaller_than(cta_layout, labelled, in_dim)
    fitted = _not_larger_than(fitted, labelled, broadcast_registers=True)
    block = LinearLayout.empty()
    for name in fitted.get_out_dim_names():
        block = block * LinearLayout.identity_1d(1, BLOCK, name)
    return (fitted * block).transpose_outs(names)


def blocked(
    size_per_thread: Sequence[int],
    threads_per_warp: Sequence[int],
    warps_per_cta: Sequence[int],
    order: Sequence[int],
    shape: Sequence[int],
) -> LinearLayout:
    """#ttg.blocked: each thread holds a size_per_thread block, tiled over lanes then warps."""
    rank = len(shape)
    for what, values in (
        ("size_per_thread", size_per_thread),
        ("threads_per_warp", threads_per_warp),
        ("warps_per_cta", warps_per_cta),
        ("order", order),
    ):
        if len(values) != rank:
            raise ValueError(f"{what} has {len(values)} entries, the shape has rank {rank}")
    if sorted(order) != list(range(rank)):
        raise ValueError(f"order {list(order)} is not a permutation of 0..{rank - 1}")
    cta = (
        _identity_nd(REGISTER, size_per_thread, order)
        * _identity_nd(LANE, threads_per_warp, order)
        * _identity_nd(WARP, warps_per_cta, order)
    )
    return _fit_to_shape(cta, shape)


def _mma_tile(
    tile_shape: Sequence[int], k_width: int, order: Sequence[int], rep_order: Sequence[int]
) -> LinearLayout:
    """The register/lane tile of an mma.sync fragment (Triton's nvidiaMmaTile)."""
    names = _dim_names(len(rep_order))
    layout = _identity_nd(REGISTER, [1] * len(rep_order), rep_order)
    inner, outer = order[0], order[1]
    rows, cols = tile_shape[outer], tile_shape[inner]
    if rows % 8 or cols % (k_width * 4):
        raise ValueError(f"mma tile {list(tile_shape)} is not a multiple of 8 x {k_width * 4}")
    return layout * (
        LinearLayout.identity_1d(k_width, REGISTER, names[inner])
        * LinearLayout.identity_1d(4, LANE, names[inner])
        * LinearLayout.identity_1d(8, LANE, names[outer])
        * LinearLayout.identity_1d(rows // 8, REGISTER, names[outer])
        * LinearLayout.identity_1d(cols // (k_width * 4), REGISTER, names[inner])
    )


def _mma(
    version: int, tile_shape: Sequence[int], warps_per_cta: Sequence[int], shape: Sequence[int]
) -> LinearLayout:
    rank = len(shape)
    if len(warps_per_cta) != rank:
        raise ValueError(f"warps_per_cta has {len(warps_per_cta)} entries, the shape has rank {rank}")
    rep_order = _matrix_order(rank, row_major=True)
    cta = _mma_tile(list(tile_shape), 2, rep_order, rep_order)
    warp_order = _matrix_order(rank, row_major=version == 2)
    warps = _identity_nd(WARP, warps_per_cta, warp_order).transpose_outs(cta.get_out_dim_names())
    return _fit_to_shape(cta * warps, shape)


def mma_v2(
    warps_per_cta: Sequence[int], shape: Sequence[int], instr_shape: Sequence[int] = (16, 8)
) -> LinearLayout:
    """#ttg.nvidia_mma<{versionMajor = 2}> (Ampere mma.sync m16n8) accumulator layout."""
    rank = len(shape)
    tile = [1] * (rank - 2) + list(instr_shape[-2:])
    return _mma(2, tile, warps_per_cta, shape)


def mma_v3(instr_shape: Sequence[int], warps_per_cta: Sequence[int], shape: Sequence[int]) -> LinearLayout:
    """#ttg.nvidia_mma<{versionMajor = 3}> (Hopper wgmma) accumulator; instr_shape = (16, N, K)."""
    if len(instr_shape) != 3:
        raise ValueError(f"mma_v3 instr_shape is (M, N, K), got {list(instr_shape)}")
    rank = len(shape)
    tile = [1] * (rank - 2) + [instr_shape[0], instr_shape[1]]
    return _mma(3, tile, warps_per_cta, shape)


class MmaParent:
    """What dot_operand needs to know about its mma parent (version and warps)."""

    def __init__(self, version: int, warps_per_cta: Sequence[int]) -> None:
        if version not in (2, 3):
            raise ValueError(f"mma version {version} is not supported (2: Ampere, 3: Hopper)")
        self.version = version
        self.warps_per_cta = list(warps_per_cta)


def dot_operand(parent: MmaParent | tuple, op_idx: int, k_width: int, shape: Sequence[int]) -> LinearLayout:
    """#ttg.dot_op<{opIdx, parent = nvidia_mma, kWidth}> in registers.

    `parent` is an MmaParent or a tuple (version, warps_per_cta). Warps along K hold
    copies (broadcast); Hopper takes its B operand from shared memory, so op_idx=1
    needs version 2.
    """
    if not isinstance(parent, MmaParent):
        parent = MmaParent(*parent)
    rank = len(shape)
    if op_idx not in (0, 1):
        raise ValueError(f"op_idx must be 0 (A) or 1 (B), got {op_idx}")
    if op_idx == 1 and parent.version != 2:
        raise ValueError("the B operand of a Hopper (v3) mma comes from shared memory, not registers")
    tile = [1] * rank
    if op_idx == 0:
        tile[rank - 2], tile[rank - 1] = 16, k_width * 8
    else:
        tile[rank - 2], tile[rank - 1] = k_width * 8, 8
    # K is the contiguous (fastest) dim of either operand.
    order = _matrix_order(rank, row_major=op_idx == 0)
    cta = _mma_tile(tile, k_width, order, order)
    k_dim = rank - 1 if op_idx == 0 else rank - 2
    warp_order = _matrix_order(rank, row_major=parent.version == 2)
    names = _dim_names(rank)
    warps = LinearLayout.empty()
    for dim in warp_order:
        if dim == k_dim:
            warps = warps * LinearLayout.zeros_1d(parent.warps_per_cta[dim], WARP, names[dim])
        else:
            warps = warps * LinearLayout.identity_1d(parent.warps_per_cta[dim], WARP, names[dim])
    return _fit_to_shape(cta * warps.transpose_outs(cta.get_out_dim_names()), shape)


def slice(parent_layout_of: object, dim: int, shape: Sequence[int] | None = None) -> LinearLayout:
    """#ttg.slice<{dim, parent}>: the parent with `dim` removed.

    `parent_layout_of` is either the parent's LinearLayout over the shape with a 1
    inserted at `dim`, or a callable shape -> LinearLayout (then `shape` is needed).
    """
    if callable(parent_layout_of):
        if shape is None:
            raise ValueError("slice with a parent constructor needs the sliced shape")
        parent_shape = list(shape)
        parent_shape.insert(dim, 1)
        parent = parent_layout_of(parent_shape)
    else:
        parent = parent_layout_of
    if not isinstance(parent, LinearLayout):
        raise TypeError("slice needs a parent LinearLayout or a callable returning one")
    out_names = parent.get_out_dim_names()
    if not 0 <= dim < len(out_names):
        raise ValueError(f"slice dim {dim} outside rank {len(out_names)}")
    if parent.get_out_dim_size(out_names[dim]) != 1:
        raise ValueError(
            f"the parent must be built over the shape with extent 1 at dim {dim}; "
            f"it has {parent.get_out_dim_size(out_names[dim])}"
        )
    kept = [i for i in range(len(out_names)) if i != dim]
    new_names = _dim_names(len(kept))
    bases = {}
    for in_dim, vectors in parent.bases:
        projected = [[v[i] for i in kept] for v in vectors]
        if in_dim == REGISTER:
            projected = [v for v in projected if any(v)]  # a thread holds no duplicate registers
        bases[in_dim] = projected
    return _with_out_sizes(bases, new_names)


def swizzled_shared(
    vec: int, per_phase: int, max_phase: int, order: Sequence[int], shape: Sequence[int]
) -> LinearLayout:
    """#ttg.swizzled_shared: row r of the two fastest dims has its vec-element groups XORed by
    (r // per_phase) % max_phase."""
    rank = len(shape)
    names = _dim_names(rank)
    if rank == 1:
        return _fit_to_shape(LinearLayout.identity_1d(shape[0], OFFSET, names[0]), shape, OFFSET)
    col_dim, row_dim = order[0], order[1]
    num_cols, num_rows = shape[col_dim], shape[row_dim]
    offset_bases = [[0, col] for col in _powers_of_two_below(num_cols)]
    offset_bases += [
        [row, (vec * ((row // per_phase) % max_phase)) % num_cols] for row in _powers_of_two_below(num_rows)
    ]
    layout = LinearLayout({OFFSET: offset_bases}, [(names[row_dim], num_rows), (names[col_dim], num_cols)])
    for dim in order[2:]:
        layout = layout * LinearLayout.identity_1d(shape[dim], OFFSET, names[dim])
    return _fit_to_shape(layout, shape, OFFSET)


def _powers_of_two_below(limit: int) -> list[int]:
    values, value = [], 1
    while value < limit:
        values.append(value)
        value *= 2
    return values


def nvmma_swizzle_parameters(swizzle_bytes: int, element_bits: int) -> tuple[int, int, int]:
    """(vec, per_phase, max_phase) of an NVMMA swizzle: 16-byte vectors, 128-byte rows of phases."""
    phases = {32: (4, 2), 64: (2, 4), 128: (1, 8)}
    if swizzle_bytes not in phases:
        raise ValueError(f"NVMMA swizzle must be 32, 64 or 128 bytes, got {swizzle_bytes}")
    per_phase, max_phase = phases[swizzle_bytes]
    return 128 // element_bits, per_phase, max_phase


def nvmma_shared(swizzle_bytes: int, element_bits: int, shape: Sequence[int]) -> LinearLayout:
    """#ttg.nvmma_shared (non-transposed, rank 2): the TMA/wgmma swizzle of 8 rows by swizzle_bytes.

    Tiles of 8 rows x (swizzle_bytes * 8 / element_bits) columns are stacked down the rows
    first (a TMA box), then repeated along the columns.
    """
    if len(shape) != 2:
        raise ValueError("nvmma_shared is implemented for rank-2 shapes")
    rows, cols = shape
    names = _dim_names(2)
    if swizzle_bytes == 0:
        layout = LinearLayout.identity_1d(cols, OFFSET, names[1]) * LinearLayout.identity_1d(
            rows, OFFSET, names[0]
        )
        return _fit_to_shape(layout, shape, OFFSET)
    vec, per_phase, max_phase = nvmma_swizzle_parameters(swizzle_bytes, element_bits)
    tile_cols = swizzle_bytes * 8 // element_bits
    if cols < tile_cols:
        raise ValueError(f"nvmma_shared: {cols} columns is fewer than one {swizzle_bytes}-byte swizzle row")
    tile_rows = min(8, rows)
    box_rows = min(rows, 256)
    offset_bases = [[0, col] for col in _powers_of_two_below(tile_cols)]
    offset_bases += [[row, vec * ((row // per_phase) % max_phase)] for row in _powers_of_two_below(tile_rows)]
    offset_bases += [[row, 0] for row in _powers_of_two_below(box_rows) if row >= tile_rows]
    layout = LinearLayout({OFFSET: offset_bases}, [(names[0], box_rows), (names[1], tile_cols)])
    layout = _not_smaller_than(layout, dict(zip(names, shape)), OFFSET)
    return _fit_to_shape(layout, shape, OFFSET)
