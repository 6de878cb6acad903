"""CuTe hierarchical layouts and their algebra (CUTLASS `cute/01_layout.md`, `02_layout_algebra.md`).

A layout is a pair of congruent IntTuples (shape, stride); it maps a coordinate, or a
1-D index read colexicographically, to the inner product of coordinate and stride.
The algebra (coalesce, composition, complement, inverses, divides, products) follows
the definitions of CuTe; results are returned in the same normal form CuTe DSL prints,
which the tests check against `nvidia-cutlass-dsl`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .int_tuple import (
    IntTuple,
    as_int_tuple,
    ceil_div,
    congruent,
    crd2idx,
    depth,
    flatten,
    format_int_tuple,
    idx2crd,
    is_int,
    is_tuple,
    parse_int_tuple,
    prefix_product,
    product,
    rank,
    unflatten,
)

__all__ = [
    "ComposedLayout",
    "Layout",
    "Swizzle",
    "blocked_product",
    "coalesce",
    "complement",
    "composition",
    "cosize",
    "crd2idx",
    "filter",
    "flat_divide",
    "flat_product",
    "idx2crd",
    "left_inverse",
    "logical_divide",
    "logical_product",
    "make_layout",
    "raked_product",
    "right_inverse",
    "size",
    "tiled_divide",
    "tiled_product",
    "zipped_divide",
    "zipped_product",
]


class Layout:
    """A CuTe layout: shape and stride, congruent IntTuples. The default stride is column-major."""

    __slots__ = ("shape", "stride")

    def __init__(self, shape: IntTuple | Sequence, stride: IntTuple | Sequence | None = None) -> None:
        normal_shape = as_int_tuple(shape)
        normal_stride = prefix_product(normal_shape) if stride is None else as_int_tuple(stride)
        if not congruent(normal_shape, normal_stride):
            raise ValueError(
                f"shape {format_int_tuple(normal_shape)} and stride {format_int_tuple(normal_stride)} "
                "are not congruent"
            )
        if any(leaf < 0 for leaf in flatten(normal_shape)):
            raise ValueError(f"shape {format_int_tuple(normal_shape)} has a negative extent")
        self.shape: IntTuple = normal_shape
        self.stride: IntTuple = normal_stride

    @classmethod
    def parse(cls, text: str) -> Layout:
        """Read CuTe's printed notation, e.g. "((2,2),3):((24,2),8)" or "(4,8)" (column-major)."""
        cleaned = text.strip()
        depth_count = 0
        split_at = -1
        for position, character in enumerate(cleaned):
            if character == "(":
                depth_count += 1
            elif character == ")":
                depth_count -= 1
            elif character == ":" and depth_count == 0:
                if split_at >= 0:
                    raise ValueError(f"more than one ':' at the top level of {text!r}")
                split_at = position
        if split_at < 0:
            return cls(parse_int_tuple(cleaned))
        return cls(parse_int_tuple(cleaned[:split_at]), parse_int_tuple(cleaned[split_at + 1 :]))

    # --- basic queries -------------------------------------------------------------------
    def size(self) -> int:
        return product(self.shape)

    def cosize(self) -> int:
        """One past the largest index the layout produces (1 + sum of (extent - 1) * |stride|)."""
        return 1 + sum((s - 1) * abs(d) for s, d in zip(flatten(self.shape), flatten(self.stride)))

    def rank(self) -> int:
        return rank(self.shape)

    def depth(self) -> int:
        return depth(self.shape)

    def __len__(self) -> int:
        return self.rank()

    def __getitem__(self, mode: int) -> Layout:
        if is_tuple(self.shape):
            return Layout(self.shape[mode], self.stride[mode])
        if mode in (0, -1):
            return self
        raise IndexError(f"mode {mode} of a rank-1 layout")

    def modes(self) -> list[Layout]:
        return [self[i] for i in range(self.rank())]

    def flat_modes(self) -> list[tuple[int, int]]:
        """(extent, stride) of every leaf mode, left to right."""
        return list(zip(flatten(self.shape), flatten(self.stride)))

    # --- evaluation ----------------------------------------------------------------------
    def __call__(self, *coordinate: IntTuple) -> int:
        if len(coordinate) == 1:
            return crd2idx(as_int_tuple(coordinate[0]), self.shape, self.stride)
        return crd2idx(as_int_tuple(coordinate), self.shape, self.stride)

    def crd2idx(self, coordinate: IntTuple) -> int:
        return self(coordinate)

    def idx2crd(self, index: int) -> IntTuple:
        """The natural (hierarchical) coordinate of a 1-D index in this layout's shape."""
        return idx2crd(index, self.shape)

    def values(self) -> list[int]:
        """The layout as a table: value at every 1-D index 0..size-1."""
        return [self(i) for i in range(self.size())]

    # --- identity ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return self.shape == other.shape and self.stride == other.stride

    def __hash__(self) -> int:
        return hash((self.shape, self.stride))

    def __str__(self) -> str:
        return f"{format_int_tuple(self.shape)}:{format_int_tuple(self.stride)}"

    def __repr__(self) -> str:
        return f"Layout({format_int_tuple(self.shape)}:{format_int_tuple(self.stride)})"


LayoutLike = Layout | int
Tiler = Layout | int | tuple


def _as_layout(value: LayoutLike | tuple) -> Layout:
    if isinstance(value, Layout):
        return value
    if is_int(value):
        return Layout(value, 1)
    raise TypeError(f"expected a Layout or an int, got {value!r}")


def make_layout(*layouts: Layout) -> Layout:
    """Concatenate layouts into one whose modes are the arguments (CuTe make_layout(L0, L1, ...))."""
    if len(layouts) == 1:
        return layouts[0]
    return Layout(tuple(layout.shape for layout in layouts), tuple(layout.stride for layout in layouts))


def size(value: Layout | IntTuple) -> int:
    return value.size() if isinstance(value, Layout) else product(value)


def cosize(layout: Layout) -> int:
    return layout.cosize()


def _from_flat_modes(modes: list[tuple[int, int]]) -> Layout:
    """Build the canonical layout of a list of leaf modes: 1:0 if empty, scalar if one."""
    if not modes:
        return Layout(1, 0)
    if len(modes) == 1:
        return Layout(modes[0][0], modes[0][1])
    return Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes))


def _coalesce_flat(modes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop size-1 modes and merge neighbours where the second continues the first (d1 == s0 * d0)."""
    merged: list[tuple[int, int]] = []
    for extent, stride in modes:
        if extent == 1:
            continue
        if merged and merged[-1][0] * merged[-1][1] == stride:
            previous_extent, previous_stride = merged[-1]
            merged[-1] = (previous_extent * extent, previous_stride)
        else:
            merged.append((extent, stride))
    return merged


def coalesce(layout: Layout, profile: IntTuple | None = None) -> Layout:
    """Simplify without changing the function on 1-D indices.

    With a tuple `profile`, only modes inside each top-level mode named by the profile
    are merged ("by-mode" coalesce); modes beyond the profile are kept as they are.
    """
    if profile is None or not is_tuple(profile):
        return _from_flat_modes(_coalesce_flat(layout.flat_modes()))
    if len(profile) > layout.rank():
        raise ValueError(f"coalesce profile {format_int_tuple(profile)} has more modes than {layout}")
    coalesced = [coalesce(layout[i], profile[i]) for i in range(len(profile))]
    kept = [layout[i] for i in range(len(profile), layout.rank())]
    return Layout(
        tuple(mode.shape for mode in coalesced + kept), tuple(mode.stride for mode in coalesced + kept)
    )


def filter(layout: Layout, profile: IntTuple | None = None) -> Layout:
    """Remove stride-0 (broadcast) and size-1 modes, then coalesce."""
    zero_removed = Layout(
        unflatten((1 if stride == 0 else extent for extent, stride in layout.flat_modes()), layout.shape),
        layout.stride,
    )
    return coalesce(zero_removed, profile)


# ---------------------------------------------------------------------------------------
# composition
# ---------------------------------------------------------------------------------------
def _compose_with_scalar(
    outer_modes: list[tuple[int, int]], extent: int, stride: int, whole_inner: bool = False
) -> Layout:
    """R = A o (extent:stride) with A given by its coalesced leaf modes.

    `whole_inner` says extent:stride is the entire inner layout (not one mode of it): then
    an image that stays inside A's first mode needs no divisibility, since no index ever
    carries into the next mode. For one mode among several the divisibility conditions
    are what make composition distribute over the modes, so they are kept.
    """
    if stride == 0 or extent == 1:
        return Layout(extent, 0)
    if len(outer_modes) == 1:
        return Layout(extent, stride * outer_modes[0][1])

    # Step 1: divide the stride out of A's shape, leftmost modes first. A mode entirely
    # skipped becomes extent 1; a partially skipped mode keeps extent/remaining and its
    # stride is scaled by what was skipped.
    remaining_stride = stride
    strided_modes: list[tuple[int, int]] = []
    for mode_extent, mode_stride in outer_modes[:-1]:
        stays_inside = (extent - 1) * remaining_stride < mode_extent and remaining_stride % mode_extent != 0
        if whole_inner and stays_inside and all(m == 1 for m, _ in strided_modes):
            return Layout(extent, remaining_stride * mode_stride)
        if mode_extent % remaining_stride == 0:
            new_extent = mode_extent // remaining_stride
            strided_modes.append((new_extent, mode_stride * remaining_stride))
            remaining_stride = 1
        elif remaining_stride % mode_extent == 0:
            strided_modes.append((1, mode_stride * mode_extent))
            remaining_stride //= mode_extent
        else:
            raise ValueError(
                f"composition stride divisibility condition failed: stride {stride} and the "
                f"layout's mode of extent {mode_extent} do not divide one another"
            )

    # Step 2: keep only `extent` elements of what is left, again leftmost first.
    remaining_extent = extent
    result_modes: list[tuple[int, int]] = []
    for mode_extent, mode_stride in strided_modes:
        if mode_extent == 1:
            continue
        if remaining_extent == 1:
            break
        if remaining_extent % mode_extent == 0:
            result_modes.append((mode_extent, mode_stride))
            remaining_extent //= mode_extent
        elif remaining_extent < mode_extent:
            # The rest fits inside this mode: no carry into the next mode ever happens.
            result_modes.append((remaining_extent, mode_stride))
            remaining_extent = 1
        else:
            raise ValueError(
                f"composition shape divisibility condition failed: extent {extent} and the "
                f"layout's mode of extent {mode_extent} do not divide one another"
            )
    last_stride = outer_modes[-1][1] * remaining_stride
    result_modes.append((remaining_extent, last_stride))
    return _from_flat_modes(_coalesce_flat(result_modes) or [(remaining_extent, last_stride)])


def _compose_layout(outer: Layout, inner: Layout) -> Layout:
    outer_modes = coalesce(outer).flat_modes()

    def compose_node(shape: IntTuple, stride: IntTuple) -> Layout:
        if is_tuple(shape):
            parts = [compose_node(s, d) for s, d in zip(shape, stride)]
            return Layout(tuple(p.shape for p in parts), tuple(p.stride for p in parts))
        return _compose_with_scalar(outer_modes, shape, stride, whole_inner=not is_tuple(inner.shape))

    return compose_node(inner.shape, inner.stride)


def composition(outer: Layout, inner: Tiler) -> Layout:
    """Functional composition R(c) = outer(inner(c)); R has inner's shape.

    `inner` may be a Layout, an int n (meaning n:1), or a tuple tiler whose elements
    (Layouts, ints or nested tuples) are composed with outer's modes one by one. As in
    CuTe DSL, the result of a tuple tiler has only the tiled modes (divides and products
    keep the untiled ones).
    """
    if isinstance(inner, Layout) or is_int(inner):
        return _compose_layout(outer, _as_layout(inner))
    if is_tuple(inner):
        if len(inner) > outer.rank():
            raise ValueError(
                f"tiler of rank {len(inner)} is longer than layout {outer} of rank {outer.rank()}"
            )
        parts = [composition(outer[i], inner[i]) for i in range(len(inner))]
        return Layout(tuple(p.shape for p in parts), tuple(p.stride for p in parts))
    raise TypeError(f"cannot compose a layout with {inner!r}")


# ---------------------------------------------------------------------------------------
# complement and inverses
# ---------------------------------------------------------------------------------------
def complement(layout: Layout, cotarget: IntTuple | None = None) -> Layout:
    """The layout whose image fills the gaps of `layout`'s image up to `cotarget`, ordered by stride.

    Requires `layout` to be injective with strides that nest: after sorting modes by
    stride, each stride is a multiple of the previous mode's extent * stride.
    """
    target = layout.cosize() if cotarget is None else product(cotarget)
    modes = sorted(
        (
            (stride, extent)
            for extent, stride in filter(layout).flat_modes()
            if not (extent == 1 or stride == 0)
        ),
    )
    result: list[tuple[int, int]] = []
    covered = 1
    for stride, extent in modes:
        if stride % covered != 0:
            raise ValueError(
                f"complement condition failed for {layout}: stride {stride} is not a multiple of "
                f"{covered}, the extent covered by the modes with smaller strides"
            )
        result.append((stride // covered, covered))
        covered = extent * stride
    result.append((ceil_div(target, covered), covered))
    return coalesce(_from_flat_modes(result))


def right_inverse(layout: Layout) -> Layout:
    """R such that layout(R(i)) == i for every i < size(R), with R as large as possible."""
    flat = coalesce(layout)
    extents = flatten(flat.shape)
    positions = flatten(prefix_product(flat.shape))
    modes = list(zip(flatten(flat.stride), extents, positions))
    result: list[tuple[int, int]] = []
    # Follow the chain of strides 1, s0, s0*s1, ...: each step needs the mode whose stride
    # continues exactly where the previous one ended (CuTe looks the mode up, not in order).
    next_stride = 1
    while True:
        follower = next(
            (
                (extent, position)
                for stride, extent, position in modes
                if stride == next_stride and extent > 1
            ),
            None,
        )
        if follower is None:
            break
        extent, position = follower
        result.append((extent, position))
        next_stride *= extent
    return coalesce(_from_flat_modes(result))


def left_inverse(layout: Layout) -> Layout:
    """L such that L(layout(i)) == i for every i < size(layout) (layout must be injective)."""
    return right_inverse(make_layout(layout, complement(layout)))


# ---------------------------------------------------------------------------------------
# divides and products
# ---------------------------------------------------------------------------------------
def _by_mode(layout: Layout, tiler: tuple, operation) -> Layout:
    if len(tiler) > layout.rank():
        raise ValueError(f"tiler of rank {len(tiler)} is longer than layout {layout} of rank {layout.rank()}")
    parts = [operation(layout[i], tiler[i]) for i in range(len(tiler))]
    parts += [layout[i] for i in range(len(tiler), layout.rank())]
    return Layout(tuple(p.shape for p in parts), tuple(p.stride for p in parts))


def logical_divide(layout: Layout, tiler: Tiler) -> Layout:
    """Split `layout` into (tile, rest): composition with (tiler, complement(tiler, size(layout)))."""
    if is_tuple(tiler):
        return _by_mode(layout, tiler, logical_divide)
    tile = _as_layout(tiler)
    return composition(layout, make_layout(tile, complement(tile, layout.size())))


def _unzip(layout: Layout, tiler: Tiler) -> Layout:
    """((tile modes...), (rest modes..., untiled modes...)) from a by-mode divide or product."""
    if not is_tuple(tiler):
        return layout
    tiled = len(tiler)
    firsts = [layout[i][0] for i in range(tiled)]
    seconds = [layout[i][1] for i in range(tiled)] + [layout[i] for i in range(tiled, layout.rank())]
    return make_layout(
        Layout(tuple(m.shape for m in firsts), tuple(m.stride for m in firsts)),
        Layout(tuple(m.shape for m in seconds), tuple(m.stride for m in seconds)),
    )


def _unpack(layout: Layout, first_flat: bool) -> Layout:
    """Expand the second mode (and the first too when `first_flat`) one level into the top level."""
    first, second = layout[0], layout[1]
    parts = first.modes() if first_flat else [first]
    parts += second.modes()
    return Layout(tuple(p.shape for p in parts), tuple(p.stride for p in parts))


def zipped_divide(layout: Layout, tiler: Tiler) -> Layout:
    return _unzip(logical_divide(layout, tiler), tiler)


def tiled_divide(layout: Layout, tiler: Tiler) -> Layout:
    return _unpack(zipped_divide(layout, tiler), first_flat=False)


def flat_divide(layout: Layout, tiler: Tiler) -> Layout:
    return _unpack(zipped_divide(layout, tiler), first_flat=True)


def logical_product(block: Layout, tiler: Tiler) -> Layout:
    """(block, repetition): the block repeated as the tiler says, over the block's unused codomain."""
    if is_tuple(tiler):
        return _by_mode(block, tiler, logical_product)
    repetition = _as_layout(tiler)
    return make_layout(block, composition(complement(block, block.size() * repetition.cosize()), repetition))


def zipped_product(block: Layout, tiler: Tiler) -> Layout:
    return _unzip(logical_product(block, tiler), tiler)


def tiled_product(block: Layout, tiler: Tiler) -> Layout:
    return _unpack(zipped_product(block, tiler), first_flat=False)


def flat_product(block: Layout, tiler: Tiler) -> Layout:
    return _unpack(zipped_product(block, tiler), first_flat=True)


def _pad_rank(layout: Layout, target_rank: int) -> Layout:
    if layout.rank() >= target_rank:
        return layout
    modes = layout.modes() + [Layout(1, 0)] * (target_rank - layout.rank())
    return Layout(tuple(m.shape for m in modes), tuple(m.stride for m in modes))


def _zip_product(block: Layout, tiler: Layout, block_first: bool) -> Layout:
    target_rank = max(block.rank(), tiler.rank())
    product_layout = logical_product(_pad_rank(block, target_rank), _pad_rank(tiler, target_rank))
    blocks, repeats = product_layout[0], product_layout[1]
    # For rank 1 the whole block and repetition are the single mode (CuTe DSL keeps a
    # rank-1 tuple around the pair).
    block_modes = blocks.modes() if target_rank > 1 else [blocks]
    repeat_modes = repeats.modes() if target_rank > 1 else [repeats]
    zipped = [
        make_layout(b, r) if block_first else make_layout(r, b) for b, r in zip(block_modes, repeat_modes)
    ]
    result = Layout(tuple(m.shape for m in zipped), tuple(m.stride for m in zipped))
    if block_first:
        # CuTe DSL returns blocked_product's zipped modes as they are.
        return result
    # ...and coalesces each mode of raked_product (as C++ CuTe does for both).
    return coalesce(result, (1,) * target_rank)


def blocked_product(block: Layout, tiler: Layout) -> Layout:
    """Mode i is (block_i, tiler_i): whole blocks are laid out as the tiler says."""
    return _zip_product(block, _as_layout(tiler), block_first=True)


def raked_product(block: Layout, tiler: Layout) -> Layout:
    """Mode i is (tiler_i, block_i): the blocks are interleaved (raked) across the tiler."""
    return _zip_product(block, _as_layout(tiler), block_first=False)


# ---------------------------------------------------------------------------------------
# swizzles
# ---------------------------------------------------------------------------------------
class Swizzle:
    """CuTe Swizzle<B, M, S>: XOR the B bits at [M+S, M+S+B) into the bits at [M, M+B).

    With S < 0 the roles are mirrored (bits move up instead of down), as in CuTe.
    """

    __slots__ = ("base", "bits", "shift")

    def __init__(self, bits: int, base: int, shift: int) -> None:
        if bits < 0 or base < 0:
            raise ValueError(f"Swizzle<{bits},{base},{shift}> needs non-negative B and M")
        if bits > abs(shift):
            raise ValueError(
                f"Swizzle<{bits},{base},{shift}> needs B <= |S| so the bit ranges do not overlap"
            )
        self.bits = bits
        self.base = base
        self.shift = shift

    @property
    def yyy_mask(self) -> int:
        """The source bits (the ones read)."""
        return ((1 << self.bits) - 1) << (self.base + max(0, self.shift))

    @property
    def zzz_mask(self) -> int:
        """The destination bits (the ones flipped)."""
        return ((1 << self.bits) - 1) << (self.base + max(0, -self.shift))

    def __call__(self, offset: int) -> int:
        if self.shift >= 0:
            return offset ^ ((offset & self.yyy_mask) >> self.shift)
        return offset ^ ((offset & self.yyy_mask) << -self.shift)

    def size(self) -> int:
        return 1 << (self.base + self.bits + abs(self.shift))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Swizzle):
            return NotImplemented
        return (self.bits, self.base, self.shift) == (other.bits, other.base, other.shift)

    def __hash__(self) -> int:
        return hash(("Swizzle", self.bits, self.base, self.shift))

    def __str__(self) -> str:
        return f"S<{self.bits},{self.base},{self.shift}>"

    __repr__ = __str__


class ComposedLayout:
    """outer o offset o inner: c -> outer(offset + inner(c)); outer is usually a Swizzle."""

    __slots__ = ("inner", "offset", "outer")

    def __init__(self, outer: Swizzle | Layout, offset: int, inner: Layout) -> None:
        self.outer = outer
        self.offset = offset
        self.inner = inner

    @property
    def shape(self) -> IntTuple:
        return self.inner.shape

    def size(self) -> int:
        return self.inner.size()

    def cosize(self) -> int:
        return max(self(i) for i in range(self.size())) + 1

    def rank(self) -> int:
        return self.inner.rank()

    def __call__(self, *coordinate: IntTuple) -> int:
        return self.outer(self.offset + self.inner(*coordinate))

    def values(self) -> list[int]:
        return [self(i) for i in range(self.size())]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComposedLayout):
            return NotImplemented
        return (self.outer, self.offset, self.inner) == (other.outer, other.offset, other.inner)

    def __hash__(self) -> int:
        return hash((self.outer, self.offset, self.inner))

    def __str__(self) -> str:
        return f"{self.outer} o {self.offset} o {self.inner}"

    __repr__ = __str__
