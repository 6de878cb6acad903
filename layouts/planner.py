"""Layout-conversion planner: how data must move to go from one distributed layout to another.

As Triton (lib/Analysis/Utility.cpp, minimalCvtLayout and cvtReordersRegisters /
cvtNeedsWarpShuffle / cvtNeedsSharedMemory):

    conversion = dst.invert_and_compose(src)   # dst hardware index -> src hardware index
    quotient out block, then warp, then lane, while the conversion is the identity on them

What is left says where the data has to travel: only registers (a permutation inside
each thread, or nothing at all), registers and lanes (warp shuffles, when at most one
register bit trades places with a lane bit), or more (a round trip through shared
memory, through the swizzled buffer of Triton's generic swizzling, see swizzling.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .linear import LinearLayout
from .swizzling import (
    SharedPlan,
    bank_conflicts,
    nvidia_tiles,
    optimal_swizzling,
    without_broadcast_registers,
)

__all__ = [
    "ConversionPlan",
    "WarpDecomposition",
    "bank_conflicts",
    "plan_conversion",
    "quotient",
    "warp_decomposition",
]

REGISTER, LANE, WARP, BLOCK = "register", "lane", "warp", "block"


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


def _shuffle_count(warp: WarpDecomposition) -> int:
    """shfl.sync per thread in Triton's transferWithinWarp, R = packed 32-bit registers:
    one mixed transposition with lanes in place ships half the registers (R/2); otherwise
    the swap method shuffles (1 - 2**-m) * R registers, or all R when lanes are permuted.
    Whether the 'ship' method applies also depends on prmt selectors for packed low
    register bits; here it is assumed when the transposed register bit is not a packed one
    and the packed bits stay in place."""
    packed = (1 << len(warp.register_permutation)) >> warp.pack_bits
    mixed = len(warp.mixed_transpositions)
    low_bits_fixed = all(warp.register_permutation[i] == i for i in range(warp.pack_bits))
    if mixed == 0 or not warp.lane_permutation_is_trivial:
        return packed
    if mixed == 1 and warp.mixed_transpositions[0][0] >= warp.pack_bits and low_bits_fixed:
        return packed // 2
    return packed - (packed >> mixed)


def warp_decomposition(src: LinearLayout, dst: LinearLayout, element_bits: int = 32) -> WarpDecomposition:
    """Factor an intra-warp conversion into register, lane and mixed transpositions, as Triton does."""
    src, dst = without_broadcast_registers(src), without_broadcast_registers(dst)
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
    shared: SharedPlan | None = None
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
        if self.shared is None:
            return "shared_memory: store, barrier, load (no swizzle computed)"
        shared = self.shared
        return (
            f"shared_memory: {shared.store_instruction} ({shared.store_vector_bits}-bit pieces), "
            f"{shared.load_instruction} ({shared.load_vector_bits}-bit pieces) "
            f"through a swizzled buffer in {shared.reps} round(s); bank conflicts: write "
            f"{shared.write_conflicts}, read {shared.read_conflicts} (unswizzled: write "
            f"{shared.unswizzled_write_conflicts}, read {shared.unswizzled_read_conflicts})"
        )


def plan_conversion(
    src: LinearLayout,
    dst: LinearLayout,
    element_bits: int = 16,
    choose_swizzle: bool = True,
    capability: int = 90,
) -> ConversionPlan:
    """Plan `convert_layout(src -> dst)` of one tensor as Triton 3.6 would.

    element_bits is the element type's width (it sets how many values share a 32-bit
    shuffle and how wide shared-memory vectors are). capability (e.g. 80, 90) decides
    which of ldmatrix/stmatrix exist. choose_swizzle=False leaves the buffer of a
    shared-memory plan uncomputed.
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
            plan = ConversionPlan("warp_shuffle", conversion, warp=warp)
            plan.details["shuffles"] = _shuffle_count(warp)
            return plan
    plan = ConversionPlan("shared_memory", conversion)
    if choose_swizzle:
        stores, loads = nvidia_tiles(element_bits, capability)
        plan.shared = optimal_swizzling(
            without_broadcast_registers(src), without_broadcast_registers(dst), element_bits, stores, loads
        )
    return plan
