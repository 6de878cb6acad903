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

    @property
    def reps(self) -> int:
        return self.smem.get_in_dim_size(REPS)


def _prefix_length(registers: list[int], vbasis: list[int]) -> int:
    length = 0
    while length < len(vbasis) and length < len(registers) and registers[length] == vbasis[length]:
        length += 1
    return length


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

    dim = src_flat.get_total_out_dim_size_log2()
    bank_length = min(_log2(BANK_BITS // ((1 << len(vbasis)) * element_bits)), dim - len(vbasis))
    segment_length = dim - bank_length - len(vbasis)
    segment = _compute_segment(vbasis + tile_src, vbasis + tile_dst, dim, segment_length)
    bank = _complement_basis(vbasis + segment, dim)
    # segment bases that are registers on both sides are repetitions: separate rounds
    reps = [s for s in segment if s in regs_src and s in regs_dst]
    segment = [s for s in segment if s not in reps]
    out_dims = src_flat.out_dims
    smem_flat = LinearLayout(
        [
            (VECTOR, [[v] for v in vbasis]),
            (BANK, [[b] for b in bank]),
            (SEGMENT, [[s] for s in segment]),
            (REPS, [[r] for r in reps]),
        ],
        out_dims,
        require_surjective=True,
    )
    smem = smem_flat.reshape_outs(src.out_dims)
    read, write = bank_conflicts_from_tiles(tile_src, tile_dst, smem)
    # Baseline: the same vectors, then the remaining element bits in increasing order.
    plain = _complement_basis(vbasis, dim)
    plain_flat = LinearLayout(
        [
            (VECTOR, [[v] for v in vbasis]),
            (BANK, [[b] for b in plain[:bank_length]]),
            (SEGMENT, [[s] for s in plain[bank_length:]]),
        ],
        out_dims,
        require_surjective=True,
    )
    plain_read, plain_write = bank_conflicts_from_tiles(
        tile_src, tile_dst, plain_flat.reshape_outs(src.out_dims)
    )
    return SharedPlan(smem, read, write, vector_bits[0], vector_bits[1], plain_read, plain_write)
