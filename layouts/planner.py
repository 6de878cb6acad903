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

__all__ = ["ConversionPlan", "WarpDecomposition", "bank_conflicts", "plan_conversion", "quotient", "warp_decomposition"]

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
        [d for d in layout.get_in_dim_names() if d != dim],
        [d for d in layout.get_out_dim_names() if d != dim],
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
class WarpDecomposition:
    """A conversion inside a warp as Triton factors it (getWarpLayoutConvertDecomposition):
    the permutation P of register and lane index bits = P_mixed o P_lane o P_reg, where
    P_mixed is a product of disjoint (register bit, lane bit) transpositions."""

    register_permutation: list[int]  # P_reg: register bit i -> bit register_permutation[i]
    lane_permutation: list[int]  # P_lane: lane bit i -> bit lane_permutation[i]
    mixed_transpositions: list[tuple[int, int]]  # (register bit, lane bit)
    pack_bits: int  # log2 of how many values share one 32-bit shuffle

    @property
    def lane_permutation_is_trivial(self) -> bool:
        return self.lane_permutation == list(range(len(self.lane_permutation)))


def _without_broadcast_registers(layout: LinearLayout) -> LinearLayout:
    """Drop register bases that are zero: such registers are copies and need not move."""
    return LinearLayout(
        [(name, [v for v in vectors if any(v)] if name == REGISTER else vectors) for name, vectors in layout.bases],
        layout.out_dims,
    )


def _padded(layout: LinearLayout, register_bits: int, lane_bits: int) -> LinearLayout:
    zero = [0] * layout.num_out_dims
    bases = dict(layout.bases)
    return LinearLayout(
        [
            (REGISTER, bases[REGISTER] + [zero] * (register_bits - len(bases[REGISTER]))),
            (LANE, bases[LANE] + [zero] * (lane_bits - len(bases[LANE]))),
        ],
        layout.out_dims,
    )


def warp_decomposition(src: LinearLayout, dst: LinearLayout, element_bits: int = 32) -> WarpDecomposition:
    """Factor an intra-warp conversion into register, lane and mixed transpositions, as Triton does."""
    src, dst = _without_broadcast_registers(src), _without_broadcast_registers(dst)
    register_bits = max(src.get_in_dim_size_log2(REGISTER), dst.get_in_dim_size_log2(REGISTER))
    lane_bits = max(src.get_in_dim_size_log2(LANE), dst.get_in_dim_size_log2(LANE))
    out_names = src.get_out_dim_names()
    source = _padded(src.sublayout([REGISTER, LANE], out_names), register_bits, lane_bits)
    target = _padded(dst.sublayout([REGISTER, LANE], out_names), register_bits, lane_bits)
    # P maps every source index bit to the destination index bit that holds the same element.
    skeleton = dict(source.invert_and_compose(target, check_surjective=False).bases)
    dims = [REGISTER, LANE]
    bit_count = {REGISTER: register_bits, LANE: lane_bits}
    # P as a map on (dim, bit) pairs; zero columns (broadcast bits) are paired up so P is a permutation.
    permutation: dict[tuple[str, int], tuple[str, int]] = {}
    source_flat, target_flat = source.flatten_outs(), target.flatten_outs()
    source_free, target_free = [], []
    for dim in dims:
        source_values = dict(source_flat.bases)[dim]
        target_values = dict(target_flat.bases)[dim]
        for bit in range(bit_count[dim]):
            source_zero, target_zero = source_values[bit] == [0], target_values[bit] == [0]
            if source_zero and target_zero:
                permutation[(dim, bit)] = (dim, bit)
            elif source_zero:
                source_free.append((dim, bit))
            elif target_zero:
                target_free.append((dim, bit))
            if not source_zero:
                vector = skeleton[dim][bit]
                for position, value in enumerate(vector):
                    if value:
                        permutation[(dim, bit)] = (dims[position], value.bit_length() - 1)
    for source_bit, target_bit in zip(source_free, target_free):
        permutation[source_bit] = target_bit

    # Walk the cycles of P. A run "r_m -> l_j -> ... -> l_k -> r_i" is cut out as the
    # transposition (r_i l_j), leaving r_m -> r_i in P_reg and l_k -> l_j in P_lane.
    register_map = list(range(register_bits))
    lane_map = list(range(lane_bits))
    mixed: list[tuple[int, int]] = []
    visited: set[tuple[str, int]] = set()
    for dim in dims:
        for bit in range(bit_count[dim]):
            if (dim, bit) in visited:
                continue
            current = (dim, bit)
            run_register_start = run_lane_start = -1
            while True:
                visited.add(current)
                following = permutation[current]
                if current[0] == REGISTER and following[0] == REGISTER:
                    register_map[current[1]] = following[1]
                elif current[0] == LANE and following[0] == LANE:
                    lane_map[current[1]] = following[1]
                elif current[0] == REGISTER:
                    run_register_start, run_lane_start = current[1], following[1]
                else:
                    register_map[run_register_start] = following[1]
                    lane_map[current[1]] = run_lane_start
                    mixed.append((following[1], run_lane_start))
                current = following
                if current == (dim, bit):
                    break
    pack = min({8: 2, 16: 1}.get(element_bits, 0) if element_bits < 32 else 0, register_bits - len(mixed))
    return WarpDecomposition(register_map, lane_map, mixed, max(pack, 0))


@dataclass
class ConversionPlan:
    kind: str  # "noop" | "register" | "warp_shuffle" | "shared_memory"
    conversion: LinearLayout
    register_permutation: list[int] | None = None
    warp: WarpDecomposition | None = None
    shared_layout: LinearLayout | None = None
    swizzle: tuple[int, int, int, tuple[int, ...]] | None = None  # (vec, per_phase, max_phase, order)
    bank_conflicts: int | None = None
    unswizzled_bank_conflicts: int | None = None
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "noop":
            return "noop: every thread already holds the right values in the right registers"
        if self.kind == "register":
            permutation = self.register_permutation
            return f"register: permute registers within each thread, dst[r] = src[{permutation}[r]]"
        if self.kind == "warp_shuffle" and self.warp is not None:
            return (
                f"warp_shuffle: {self.details['shuffles']} shfl.sync per thread "
                f"(lane permutation {self.warp.lane_permutation}, register permutation "
                f"{self.warp.register_permutation}, mixed register/lane transpositions "
                f"{self.warp.mixed_transpositions}, {1 << self.warp.pack_bits} value(s) per shuffle)"
            )
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


def plan_conversion(
    src: LinearLayout, dst: LinearLayout, element_bits: int = 16, choose_swizzle: bool = True
) -> ConversionPlan:
    """Plan `convert_layout(src -> dst)` of one tensor as Triton would.

    With choose_swizzle=False a shared-memory plan skips the (slower) swizzle search.
    """
    if src.out_dims != dst.out_dims:
        raise ValueError(f"layouts cover different tensors: {src.out_dims} vs {dst.out_dims}")
    conversion = minimal_conversion(src, dst)
    in_dims = conversion.get_in_dim_names()
    if in_dims == [REGISTER]:
        permutation = [
            conversion.apply({REGISTER: r})[REGISTER] for r in range(conversion.get_in_dim_size(REGISTER))
        ]
        kind = "noop" if permutation == list(range(len(permutation))) else "register"
        return ConversionPlan(kind, conversion, register_permutation=permutation)
    if in_dims == [REGISTER, LANE]:
        # Triton shuffles when at most one register bit trades places with a lane bit;
        # anything more goes through shared memory (cvtNeedsWarpShuffle).
        warp = warp_decomposition(src, dst, element_bits)
        if len(warp.mixed_transpositions) < 2:
            registers = 1 << len(warp.register_permutation)
            plan = ConversionPlan("warp_shuffle", conversion, warp=warp)
            # one shuffle per packed 32-bit register (a mixed transposition exchanges halves
            # of register pairs, which still costs one shuffle per register)
            plan.details["shuffles"] = registers >> warp.pack_bits
            return plan
    shape = [size for _, size in src.out_dims]
    plan = ConversionPlan("shared_memory", conversion)
    if not choose_swizzle:
        return plan
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
