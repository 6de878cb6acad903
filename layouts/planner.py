"""Layout-conversion planner: how data must move to go from one distributed layout to another.

As Triton (lib/Analysis/Utility.cpp, minimalCvtLayout and cvtReordersRegisters /
cvtNeedsWarpShuffle / cvtNeedsSharedMemory):

    conversion = dst.invert_and_compose(src)   # dst hardware index -> src hardware index
    quotient out block, then warp, then lane, while the conversion is the identity on them

What is left says where the data has to travel: only registers (a permutation inside
each thread, or nothing at all), registers and lanes (warp shuffles), or more (a round
trip through shared memory, for which a swizzle is picked to avoid bank conflicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .hardware import swizzled_shared
from .linear import LinearLayout

__all__ = ["ConversionPlan", "ShuffleRound", "bank_conflicts", "plan_conversion", "quotient"]

REGISTER, LANE, WARP, BLOCK = "register", "lane", "warp", "block"
BANKS = 32
BANK_BYTES = 4


def _is_identity_on(layout: LinearLayout, dim: str) -> bool:
    """The block-matrix test of Triton's isTrivialOver: dim -> dim is the identity, and dim
    neither feeds nor is fed by the other dims."""
    if not layout.has_in_dim(dim) or dim not in layout.get_out_dim_names():
        return False
    if layout.get_in_dim_size(dim) != layout.get_out_dim_size(dim):
        return False
    out_names = layout.get_out_dim_names()
    for in_dim, vectors in layout.bases:
        for bit, vector in enumerate(vectors):
            for out_name, value in zip(out_names, vector):
                if in_dim == dim and out_name == dim:
                    if value != 1 << bit:
                        return False
                elif (in_dim == dim or out_name == dim) and value != 0:
                    return False
    return True


def quotient(layout: LinearLayout, dim: str) -> LinearLayout | None:
    """The layout without `dim` (in and out) if it acts as the identity there, else None."""
    if not _is_identity_on(layout, dim):
        return None
    return layout.sublayout(
        [d for d in layout.get_in_dim_names() if d != dim], [d for d in layout.get_out_dim_names() if d != dim]
    )


def minimal_conversion(src: LinearLayout, dst: LinearLayout) -> LinearLayout:
    conversion = dst.invert_and_compose(src)
    for dim in (BLOCK, WARP, LANE):
        reduced = quotient(conversion, dim)
        if reduced is None:
            break
        conversion = reduced
    return conversion


@dataclass
class ShuffleRound:
    """One warp shuffle: every lane reads `source_register` values from lane `source_lane(lane)`."""

    destination_register: int
    source_lanes: list[int]
    source_registers: list[int]

    @property
    def xor_mask(self) -> int | None:
        """Set when the shuffle is a butterfly (shfl.sync.bfly): source lane = lane ^ mask."""
        masks = {lane ^ source for lane, source in enumerate(self.source_lanes)}
        return masks.pop() if len(masks) == 1 else None


@dataclass
class ConversionPlan:
    kind: str  # "noop" | "register" | "warp_shuffle" | "shared_memory"
    conversion: LinearLayout
    register_permutation: list[int] | None = None
    shuffle_rounds: list[ShuffleRound] = field(default_factory=list)
    shared_layout: LinearLayout | None = None
    swizzle: tuple[int, int, int, tuple[int, ...]] | None = None  # (vec, per_phase, max_phase, order)
    bank_conflicts: int | None = None
    unswizzled_bank_conflicts: int | None = None
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "noop":
            return "noop: every thread already holds the right values in the right registers"
        if self.kind == "register":
            return f"register: permute registers within each thread, dst[r] = src[{self.register_permutation}[r]]"
        if self.kind == "warp_shuffle":
            parts = []
            for shuffle in self.shuffle_rounds:
                how = (
                    f"shfl.bfly xor {shuffle.xor_mask}"
                    if shuffle.xor_mask is not None
                    else f"shfl.idx from lanes {shuffle.source_lanes}"
                )
                parts.append(f"reg {shuffle.destination_register}: {how}")
            return f"warp_shuffle: {len(self.shuffle_rounds)} round(s): " + "; ".join(parts)
        vec, per_phase, max_phase, order = self.swizzle or (1, 1, 1, ())
        return (
            "shared_memory: store, barrier, load through a swizzled buffer "
            f"(vec={vec}, per_phase={per_phase}, max_phase={max_phase}, order={list(order)}); "
            f"bank conflicts {self.bank_conflicts} (unswizzled: {self.unswizzled_bank_conflicts})"
        )


class _FlatMap:
    """A linear layout evaluated on flattened ints: in bits of each named dim -> flattened out value."""

    def __init__(self, layout: LinearLayout) -> None:
        columns = layout._column_vectors()
        self.columns_by_dim: dict[str, list[int]] = {}
        start = 0
        for name, size in layout.in_dims:
            bits = size.bit_length() - 1
            self.columns_by_dim[name] = columns[start : start + bits]
            start += bits
        self.all_columns = columns

    def of(self, name: str, value: int) -> int:
        result = 0
        for bit, column in enumerate(self.columns_by_dim.get(name, [])):
            if value >> bit & 1:
                result ^= column
        return result

    def of_flat(self, value: int) -> int:
        result = 0
        for bit, column in enumerate(self.all_columns):
            if value >> bit & 1:
                result ^= column
        return result


def _vector_width(registers: list[int], to_offset: _FlatMap, element_bits: int) -> int:
    """How many consecutive registers land on consecutive offsets (one vector instruction), up to 16 bytes."""
    limit = max(1, 128 // element_bits)
    width = 1
    for bit, logical in enumerate(registers):
        if width >= limit or to_offset.of_flat(logical) != 1 << bit:
            break
        width *= 2
    return width


def bank_conflicts(distributed: LinearLayout, shared: LinearLayout, element_bits: int = 16) -> int:
    """Extra shared-memory wavefronts when warp 0 stores `distributed` into `shared`, summed over
    all of its store instructions.

    Each instruction is the warp's lanes writing one vector of registers; lanes are served
    in groups of 128 bytes; inside a group each bank serves one distinct 4-byte word per
    wavefront. Extra wavefronts = wavefronts - groups (0 means conflict-free).
    """
    offset_dims = [n for n in shared.get_in_dim_names() if n != BLOCK]
    to_offset = _FlatMap(shared.sublayout(offset_dims, shared.get_out_dim_names()).invert())
    to_logical = _FlatMap(distributed)
    vector = _vector_width(to_logical.columns_by_dim.get(REGISTER, []), to_offset, element_bits)
    bytes_per_lane = max(1, vector * element_bits // 8)
    lanes = distributed.get_in_dim_size(LANE)
    lanes_per_group = max(1, min(lanes, BANKS * BANK_BYTES // bytes_per_lane))
    lane_parts = [to_logical.of(LANE, lane) for lane in range(lanes)]
    extra = 0
    for first_register in range(0, distributed.get_in_dim_size(REGISTER), vector):
        register_part = to_logical.of(REGISTER, first_register)
        for group_start in range(0, lanes, lanes_per_group):
            words_per_bank: dict[int, set[int]] = {}
            for lane in range(group_start, group_start + lanes_per_group):
                offset = to_offset.of_flat(register_part ^ lane_parts[lane])
                first_byte = offset * element_bits // 8
                for byte in range(first_byte, first_byte + bytes_per_lane, BANK_BYTES):
                    word = byte // BANK_BYTES
                    words_per_bank.setdefault(word % BANKS, set()).add(word)
            extra += max(len(words) for words in words_per_bank.values()) - 1
    return extra


def _candidate_swizzles(shape: Sequence[int], element_bits: int):
    max_vec = max(1, 128 // element_bits)
    for order in ((1, 0), (0, 1)):
        columns = shape[order[0]]
        vec = 1
        while vec <= max_vec:
            per_phase = 1
            while per_phase <= 4:
                max_phase = 1
                while max_phase * vec <= columns and max_phase <= 8:
                    yield vec, per_phase, max_phase, order
                    max_phase *= 2
                per_phase *= 2
            vec *= 2


def plan_conversion(src: LinearLayout, dst: LinearLayout, element_bits: int = 16) -> ConversionPlan:
    """Plan `convert_layout(src -> dst)` of one tensor as Triton would."""
    if src.out_dims != dst.out_dims:
        raise ValueError(f"layouts cover different tensors: {src.out_dims} vs {dst.out_dims}")
    conversion = minimal_conversion(src, dst)
    in_dims = conversion.get_in_dim_names()
    if in_dims == [REGISTER]:
        permutation = [conversion.apply({REGISTER: r})[REGISTER] for r in range(conversion.get_in_dim_size(REGISTER))]
        kind = "noop" if permutation == list(range(len(permutation))) else "register"
        return ConversionPlan(kind, conversion, register_permutation=permutation)
    if in_dims == [REGISTER, LANE]:
        rounds = []
        for register in range(conversion.get_in_dim_size(REGISTER)):
            sources = [
                conversion.apply({REGISTER: register, LANE: lane}) for lane in range(conversion.get_in_dim_size(LANE))
            ]
            source_lanes = [s[LANE] for s in sources]
            if source_lanes != list(range(len(source_lanes))):
                rounds.append(ShuffleRound(register, source_lanes, [s[REGISTER] for s in sources]))
        return ConversionPlan("warp_shuffle", conversion, shuffle_rounds=rounds)
    shape = [size for _, size in src.out_dims]
    plan = ConversionPlan("shared_memory", conversion)
    if len(shape) != 2:
        plan.details["note"] = "swizzle search is implemented for rank-2 tensors"
        return plan
    unswizzled = swizzled_shared(1, 1, 1, (1, 0), shape)
    plan.unswizzled_bank_conflicts = bank_conflicts(src, unswizzled, element_bits) + bank_conflicts(
        dst, unswizzled, element_bits
    )
    best = None
    for vec, per_phase, max_phase, order in _candidate_swizzles(shape, element_bits):
        shared = swizzled_shared(vec, per_phase, max_phase, order, shape)
        conflicts = bank_conflicts(src, shared, element_bits) + bank_conflicts(dst, shared, element_bits)
        # Fewest conflicts; among equals, the widest vectors (fewest instructions).
        score = (conflicts, -vec)
        if best is None or score < best[0]:
            best = (score, (vec, per_phase, max_phase, order), shared, conflicts)
    _, plan.swizzle, plan.shared_layout, plan.bank_conflicts = best
    return plan
