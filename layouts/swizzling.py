"""Triton's generic shared-memory swizzling (lib/Tools/GenericSwizzling.cpp, Triton 3.6):
the bank-conflict count of a register layout against a shared layout, and the swizzle
Triton builds for a convert_layout that goes through shared memory (the ld.shared /
st.shared path).

Everything works on flattened layouts: one out dim whose value is the logical element
index (dim0 in the low bits), so a basis is one int and a set of bases spans a
subspace of GF(2)^dim.
"""

from __future__ import annotations

from dataclasses import dataclass

from .linear import LinearLayout, _rref

__all__ = ["SharedPlan", "bank_conflicts", "bank_conflicts_ld_st", "optimal_swizzling_ld_st"]

REGISTER, LANE, VECTOR, BANK, SEGMENT, REPS = "register", "lane", "vector", "bank", "segment", "reps"
BANK_BITS = 32 * 32  # one wavefront: 32 banks of 32 bits


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _flat_bases(layout: LinearLayout, dim: str) -> list[int]:
    """The bases of one in dim of a single-out-dim layout, as ints."""
    return [vector[0] for vector in dict(layout.bases).get(dim, [])]


def _pivots(rows: list[int], dim: int) -> set[int]:
    return {(row & -row).bit_length() - 1 for row in _rref(rows, dim) if row}


def _nullspace_basis(vectors: list[int], dim: int) -> list[int]:
    """Basis of {x : <v, x> = 0 for every v} (vectors as rows, read off the RREF)."""
    reduced = [row for row in _rref(list(vectors), dim) if row]
    pivot_of_row = [(row & -row).bit_length() - 1 for row in reduced]
    basis = []
    for free in range(dim):
        if free in pivot_of_row:
            continue
        vector = 1 << free
        for row, pivot in zip(reduced, pivot_of_row):
            if row >> free & 1:
                vector ^= 1 << pivot
        basis.append(vector)
    return basis


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def intersection_basis(first: list[int], second: list[int], dim: int) -> list[int]:
    """A basis of span(first) & span(second); for unit vectors, the common ones in `first`'s order."""
    if all(_is_power_of_two(v) for v in first) and all(_is_power_of_two(v) for v in second):
        common = set(second)
        return [v for v in first if v in common]
    joint = _nullspace_basis(first, dim) + _nullspace_basis(second, dim)
    return _nullspace_basis(joint, dim)


def _complement_basis(basis: list[int], dim: int) -> list[int]:
    """Unit vectors completing `basis` to the whole space (the non-pivot columns)."""
    pivots = _pivots(list(basis), dim)
    return [1 << i for i in range(dim) if i not in pivots]


def bank_conflicts_from_tiles(
    tile_src: list[int], tile_dst: list[int], smem: LinearLayout
) -> tuple[int, int]:
    """(read, write) conflicts: 2**k - 1 where k is the dimension shared by the lanes of one
    access and the segment bases of smem (elements a bank row apart land in one bank)."""
    flat = smem.flatten_outs()
    segment = _flat_bases(flat, SEGMENT)
    dim = smem.get_total_out_dim_size_log2()
    write = 1 << len(intersection_basis(segment, tile_src, dim))
    read = 1 << len(intersection_basis(segment, tile_dst, dim))
    return read - 1, write - 1


def bank_conflicts_ld_st(
    src: LinearLayout, dst: LinearLayout, smem: LinearLayout, element_bits: int
) -> tuple[int, int]:
    """(read, write) conflicts of storing src and loading dst through smem (in dims
    vector/bank/segment). With 64/128-bit accesses the warp is served in 2/4 phases, so
    the highest lane bits do not collide."""
    src_lanes = _flat_bases(src.flatten_outs(), LANE)
    dst_lanes = _flat_bases(dst.flatten_outs(), LANE)
    phase_bits = _log2(max(smem.get_in_dim_size(VECTOR) * element_bits // 32, 1))
    src_lanes = src_lanes[: len(src_lanes) - phase_bits]
    dst_lanes = dst_lanes[: len(dst_lanes) - phase_bits]
    return bank_conflicts_from_tiles(src_lanes, dst_lanes, smem)


def without_broadcast_registers(layout: LinearLayout) -> LinearLayout:
    """Drop zero register bases (copies of a value need not be stored twice)."""
    return LinearLayout(
        [
            (name, [v for v in vectors if any(v)] if name == REGISTER else vectors)
            for name, vectors in layout.bases
        ],
        layout.out_dims,
    )


def _largest_vectorisation(to_shared: LinearLayout, element_bits: int) -> tuple[int, list[int]]:
    """Largest v (<= 128 bits) such that v registers are v consecutive offsets, and the
    register order that puts them first (Triton's largestVectorisation)."""
    offset_position = to_shared.get_out_dim_names().index("offset")
    registers = dict(to_shared.bases)[REGISTER]
    width = max(1, 128 // element_bits)
    while width > 1:
        bits = _log2(width)
        chosen = []
        for k in range(bits):
            match = next(
                (
                    i
                    for i, v in enumerate(registers)
                    if v[offset_position] == 1 << k
                    and not any(x for p, x in enumerate(v) if p != offset_position)
                ),
                None,
            )
            if match is None:
                break
            chosen.append(match)
        if len(chosen) == bits:
            others = [
                (name, v)
                for name, vectors in to_shared.bases
                for i, v in enumerate(vectors)
                if not (name == REGISTER and i in chosen)
            ]
            if all(v[offset_position] & (width - 1) == 0 for _, v in others):
                return width, chosen + [i for i in range(len(registers)) if i not in chosen]
        width //= 2
    return 1, list(range(len(registers)))


def _permute_registers(layout: LinearLayout, order: list[int]) -> LinearLayout:
    return LinearLayout(
        [
            (name, [vectors[i] for i in order] if name == REGISTER else vectors)
            for name, vectors in layout.bases
        ],
        layout.out_dims,
    )


def bank_conflicts(register_layout: LinearLayout, shared_layout: LinearLayout, element_bits: int = 16) -> int:
    """Bank conflicts (extra wavefronts per access) of storing `register_layout` into
    `shared_layout`, as Triton's bankConflictsMemDesc (gluon's get_shared_bank_conflicts)."""
    registers = without_broadcast_registers(register_layout)
    to_shared = registers.invert_and_compose(shared_layout)
    width, order = _largest_vectorisation(to_shared, element_bits)
    registers = _permute_registers(registers, order)
    total = shared_layout.get_total_in_dim_size()
    bank_size = min(BANK_BITS // (width * element_bits), total)
    segment_size = total // (bank_size * width)
    reshaped = shared_layout.reshape_ins([(VECTOR, width), (BANK, bank_size), (SEGMENT, segment_size)])
    return bank_conflicts_ld_st(registers, registers, reshaped, element_bits)[0]


# --------------------------------------------------------------------------------------
# the swizzle of a convert_layout through shared memory
# --------------------------------------------------------------------------------------
def _compute_segment(bank_src: list[int], bank_dst: list[int], dim: int, length: int) -> list[int]:
    """Segment bases (what separates bank rows): first unit vectors neither side touches
    within one access; then XORs of a src-only and a dst-only basis (conflict-free for
    both); only then bases that cost write and read conflicts."""
    src_set, dst_set = set(bank_src) - {0}, set(bank_dst) - {0}
    segment = [1 << b for b in range(dim) if (1 << b) not in src_set and (1 << b) not in dst_set]
    if len(segment) >= length:
        return segment[:length]
    only_src = sorted(v for v in src_set if v not in dst_set)
    only_dst = sorted(v for v in dst_set if v not in src_set)
    if len(only_src) > len(only_dst):
        only_src, only_dst = only_dst, only_src
    conflicted = min(max(0, length - len(only_src) - len(segment)), len(only_src))
    segment += [a ^ b for a, b in zip(only_src[conflicted:], only_dst[conflicted:])]
    segment += only_src[:conflicted] + only_dst[:conflicted]
    return segment[:length]


def _vector_basis(src: LinearLayout, dst: LinearLayout, element_bits: int) -> list[int]:
    """Triton's getVbasis: the element bits stored contiguously (one vector access)."""
    regs_src, regs_dst = _flat_bases(src, REGISTER), _flat_bases(dst, REGISTER)
    dim = src.get_total_out_dim_size_log2()
    vbasis = intersection_basis(regs_src, regs_dst, dim)[: _log2(128 // element_bits)]
    bases_per_bank = 0 if element_bits > 32 else _log2(32 // element_bits)
    lanes_src, lanes_dst = set(_flat_bases(src, LANE)), set(_flat_bases(dst, LANE))

    def more_after_bank0(registers: list[int], current: list[int], other_lanes: set[int]) -> list[int]:
        # registers of one side that are lanes of the other: wider accesses on this side,
        # no conflicts on the other
        limit = _log2(128 // max(element_bits, 32))
        extra: list[int] = []
        for r in registers:
            if len(extra) == limit:
                break
            if r in current:
                continue
            if r in other_lanes:
                extra.append(r)
        return extra

    vectorise_src = True
    if (1 << len(vbasis)) * element_bits < 32:

        def is_prefix(prefix: list[int], registers: list[int]) -> bool:
            return registers[: len(prefix)] == prefix

        src_prefix, dst_prefix = is_prefix(vbasis, regs_src), is_prefix(vbasis, regs_dst)
        if vbasis and not src_prefix and not dst_prefix:
            regs_src = vbasis + [r for r in regs_src if r not in vbasis]
            regs_dst = vbasis + [r for r in regs_dst if r not in vbasis]
            src_prefix = dst_prefix = True

        def fill(registers: list[int]) -> list[int]:
            return vbasis + registers[len(vbasis) : max(len(vbasis), min(bases_per_bank, len(registers)))]

        if src_prefix and dst_prefix:
            extra_src = more_after_bank0(regs_src, fill(regs_src), lanes_dst)
            extra_dst = more_after_bank0(regs_dst, fill(regs_dst), lanes_src)
            src_prefix = len(extra_src) >= len(extra_dst)
        vectorise_src = src_prefix
        vbasis = fill(regs_src if vectorise_src else regs_dst)
    if vectorise_src:
        return vbasis + more_after_bank0(regs_src, vbasis, lanes_dst)
    return vbasis + more_after_bank0(regs_dst, vbasis, lanes_src)


@dataclass
class SharedPlan:
    """The buffer Triton would use: smem maps (vector, bank, segment, reps) to the tensor."""

    smem: LinearLayout
    read_conflicts: int
    write_conflicts: int
    store_vector_bits: int
    load_vector_bits: int
    unswizzled_read_conflicts: int  # same vectors, bank rows in plain element order
    unswizzled_write_conflicts: int
    store_instruction: str = "st.shared"
    load_instruction: str = "ld.shared"

    @property
    def reps(self) -> int:
        return self.smem.get_in_dim_size(REPS)


def _prefix_length(registers: list[int], vbasis: list[int]) -> int:
    length = 0
    while length < len(vbasis) and length < len(registers) and registers[length] == vbasis[length]:
        length += 1
    return length


def _swizzle_from_tiles(
    src_flat: LinearLayout,
    dst_flat: LinearLayout,
    element_bits: int,
    vbasis: list[int],
    tile_src: list[int],
    tile_dst: list[int],
    out_dims: list[tuple[str, int]],
) -> tuple[LinearLayout, int, int, int, int]:
    """Triton's optimalSwizzling core: vector bases, then segment bases chosen so the lanes of
    one access (tile_src / tile_dst) fall in different banks, banks = the complement.
    Returns smem, its (read, write) conflicts and those of the plain (unswizzled) order."""
    regs_src, regs_dst = _flat_bases(src_flat, REGISTER), _flat_bases(dst_flat, REGISTER)
    dim = src_flat.get_total_out_dim_size_log2()
    bank_length = min(_log2(BANK_BITS // ((1 << len(vbasis)) * element_bits)), dim - len(vbasis))
    segment_length = dim - bank_length - len(vbasis)
    segment = _compute_segment(vbasis + tile_src, vbasis + tile_dst, dim, segment_length)
    bank = _complement_basis(vbasis + segment, dim)
    # segment bases that are registers on both sides are repetitions: separate rounds
    reps = [s for s in segment if s in regs_src and s in regs_dst]
    segment = [s for s in segment if s not in reps]
    flat_out = src_flat.out_dims
    smem_flat = LinearLayout(
        [
            (VECTOR, [[v] for v in vbasis]),
            (BANK, [[b] for b in bank]),
            (SEGMENT, [[s] for s in segment]),
            (REPS, [[r] for r in reps]),
        ],
        flat_out,
        require_surjective=True,
    )
    smem = smem_flat.reshape_outs(out_dims)
    read, write = bank_conflicts_from_tiles(tile_src, tile_dst, smem)
    # Baseline: the same vectors, then the remaining element bits in increasing order.
    plain = _complement_basis(vbasis, dim)
    plain_flat = LinearLayout(
        [
            (VECTOR, [[v] for v in vbasis]),
            (BANK, [[b] for b in plain[:bank_length]]),
            (SEGMENT, [[s] for s in plain[bank_length:]]),
        ],
        flat_out,
        require_surjective=True,
    )
    plain_read, plain_write = bank_conflicts_from_tiles(tile_src, tile_dst, plain_flat.reshape_outs(out_dims))
    return smem, read, write, plain_read, plain_write


def optimal_swizzling_ld_st(src: LinearLayout, dst: LinearLayout, element_bits: int = 16) -> SharedPlan:
    """The swizzled buffer of Triton's optimalSwizzlingLdSt for convert_layout(src -> dst)
    via st.shared / ld.shared (registers must not be broadcast: see without_broadcast_registers)."""
    src_flat, dst_flat = src.flatten_outs(), dst.flatten_outs()
    regs_src, regs_dst = _flat_bases(src_flat, REGISTER), _flat_bases(dst_flat, REGISTER)
    if 0 in regs_src or 0 in regs_dst:
        raise ValueError("remove register broadcasting first (without_broadcast_registers)")
    vbasis = _vector_basis(src_flat, dst_flat, element_bits)
    tiles = []
    vector_bits = []
    for registers, layout in ((regs_src, src_flat), (regs_dst, dst_flat)):
        lanes = _flat_bases(layout, LANE)
        vector = _prefix_length(registers, vbasis)
        bits = (1 << vector) * element_bits
        if bits > 32:
            lanes = lanes[: len(lanes) - _log2(bits // 32)]
        tiles.append([lane for lane in lanes if lane not in vbasis])
        vector_bits.append(max(bits, element_bits))
    tile_src, tile_dst = tiles

    smem, read, write, plain_read, plain_write = _swizzle_from_tiles(
        src_flat, dst_flat, element_bits, vbasis, tile_src, tile_dst, src.out_dims
    )
    return SharedPlan(smem, read, write, vector_bits[0], vector_bits[1], plain_read, plain_write)


@dataclass(frozen=True)
class MemoryTile:
    """An access instruction as Triton's LocalMemOpTile: `lane_contig` lane bits whose data is
    contiguous in shared memory, and `lane_address` lane bits that supply row addresses."""

    name: str
    lane_contig: tuple[int, ...]
    lane_address: tuple[int, ...]


LD_ST_SHARED = MemoryTile(".shared", (), (0, 1, 2))
MATRIX = MemoryTile("matrix", (0, 1), (2, 3, 4))
MATRIX_TRANS = MemoryTile("matrix.trans", (2, 3, 4), (0, 1))


def nvidia_tiles(element_bits: int, capability: int = 90) -> tuple[list[MemoryTile], list[MemoryTile]]:
    """(store tiles, load tiles) of one CTA on an NVIDIA GPU: st/ld.shared always; stmatrix
    (sm90+) and ldmatrix (sm75+) for elements up to 32 bits, transposed ones for 16 bits."""
    stores, loads = [LD_ST_SHARED], [LD_ST_SHARED]
    if element_bits <= 32:
        if capability >= 90:
            stores.append(MATRIX)
        if capability >= 75:
            loads.append(MATRIX)
        if element_bits == 16:
            if capability >= 90:
                stores.append(MATRIX_TRANS)
            if capability >= 75:
                loads.append(MATRIX_TRANS)
    return stores, loads


def _register_bit_of(conversion: LinearLayout, in_dim: str, bit: int, out_dim: str) -> int:
    names = conversion.get_out_dim_names()
    return dict(conversion.bases)[in_dim][bit][names.index(out_dim)]


def _tile_vector_basis(
    a: LinearLayout, b: LinearLayout, registers_a: int, registers_b: int, lanes_a: tuple, lanes_b: tuple
) -> list[int] | None:
    """Triton's optimalSwizzlingTile: the 16-byte contiguous piece both instructions agree on
    (common register bases, then the contiguous lanes), or None when they cannot."""
    if registers_a < registers_b:
        return _tile_vector_basis(b, a, registers_b, registers_a, lanes_b, lanes_a)
    dim = a.get_total_out_dim_size_log2()
    conversion = b.invert_and_compose(a)  # b's hardware index -> a's
    regs_a, regs_b = _flat_bases(a, REGISTER), _flat_bases(b, REGISTER)
    all_lanes_a, all_lanes_b = _flat_bases(a, LANE), _flat_bases(b, LANE)
    vbasis = intersection_basis(regs_a, regs_b, dim)
    if len(vbasis) < registers_b:
        return None
    vbasis = vbasis[:registers_b]
    tile_a = [all_lanes_a[i] for i in lanes_a]
    tile_b = [all_lanes_b[i] for i in lanes_b]
    if 0 in tile_a or 0 in tile_b:
        return None
    # b's first contiguous lanes must be a's registers; the rest must be a's contiguous lanes
    for i in range(registers_a - registers_b):
        if _register_bit_of(conversion, LANE, lanes_b[i], REGISTER) == 0:
            return None
    for index_a, index_b in zip(lanes_a, lanes_b[len(lanes_b) - len(lanes_a) :]):
        if _register_bit_of(conversion, LANE, index_b, LANE) != 1 << index_a:
            return None
    return vbasis + tile_b


def _access_tile(
    tile: MemoryTile, registers: list[int], lanes: list[int], vbasis: list[int]
) -> list[int] | None:
    """The bases one access touches in a wavefront: registers to fill 3 address bits, then lanes."""
    needed = 3 - len(tile.lane_address)
    picked = [r for r in registers if r not in vbasis][:needed]
    if len(picked) < needed:
        return None
    return picked + [lanes[i] for i in tile.lane_address]


def optimal_swizzling(
    src: LinearLayout,
    dst: LinearLayout,
    element_bits: int = 16,
    store_tiles: list[MemoryTile] | None = None,
    load_tiles: list[MemoryTile] | None = None,
) -> SharedPlan:
    """The buffer and instructions of Triton's optimalSwizzling for convert_layout(src -> dst)
    (sm90 tiles by default): every pair of store/load instructions that can move 16-byte
    pieces is tried, the fewest bank conflicts win (ties: more rounds); without any such
    pair it falls back to st.shared/ld.shared (optimal_swizzling_ld_st)."""
    if store_tiles is None or load_tiles is None:
        default_stores, default_loads = nvidia_tiles(element_bits)
        store_tiles = default_stores if store_tiles is None else store_tiles
        load_tiles = default_loads if load_tiles is None else load_tiles
    src_flat, dst_flat = src.flatten_outs(), dst.flatten_outs()
    total_bases = _log2(128 // element_bits)
    regs_src, regs_dst = _flat_bases(src_flat, REGISTER), _flat_bases(dst_flat, REGISTER)
    lanes_src, lanes_dst = _flat_bases(src_flat, LANE), _flat_bases(dst_flat, LANE)
    candidates = []
    for store in store_tiles:
        for load in load_tiles:
            vbasis = _tile_vector_basis(
                src_flat,
                dst_flat,
                total_bases - len(store.lane_contig),
                total_bases - len(load.lane_contig),
                store.lane_contig,
                load.lane_contig,
            )
            if vbasis is None:
                continue
            tile_src = _access_tile(store, regs_src, lanes_src, vbasis)
            tile_dst = _access_tile(load, regs_dst, lanes_dst, vbasis)
            if tile_src is None or tile_dst is None:
                continue
            smem, read, write, plain_read, plain_write = _swizzle_from_tiles(
                src_flat, dst_flat, element_bits, vbasis, tile_src, tile_dst, src.out_dims
            )
            plan = SharedPlan(
                smem, read, write, 128, 128, plain_read, plain_write, "st" + store.name, "ld" + load.name
            )
            candidates.append(plan)
    if not candidates:
        return optimal_swizzling_ld_st(src, dst, element_bits)

    # stmatrix with ldmatrix of the same kind (both plain or both .trans): in the PTX of the
    # installed Triton 3.6 such a pair is used only when no other pair can move 16-byte
    # pieces (GenericSwizzling.cpp as we read it would rank it like the others), so it
    # comes last here. See the compiler tests.
    def same_matrix_kind(plan: SharedPlan) -> bool:
        return (
            plan.store_instruction.startswith("stmatrix")
            and plan.store_instruction[2:] == plan.load_instruction[2:]
        )

    mixed = [plan for plan in candidates if not same_matrix_kind(plan)]
    # Fewest conflicts; among equals the most rounds (reps are not stored, so the buffer
    # is smallest); then the first pair tried -- Triton's rule.
    return min(mixed or candidates, key=lambda plan: (plan.read_conflicts + plan.write_conflicts, -plan.reps))
