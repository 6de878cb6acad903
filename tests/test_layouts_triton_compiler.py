"""Triton's compiler as the oracle: compile small gluon kernels for sm_90 on the CPU (no GPU;
ptxas ships with triton) and compare (1) how convert_layout was lowered with the planner's
kind, (2) the offsets of Triton's shared layouts with ours."""

from __future__ import annotations

import layouts_conftest_helpers  # noqa: F401  (puts the repo root on sys.path)
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts import hardware as hw
from layouts.linear import LinearLayout
from layouts.planner import plan_conversion

ttgl = pytest.importorskip(
    "triton.experimental.gluon.language", reason="triton with gluon (the compiler oracle) is not installed"
)
from layouts_conftest_helpers import (  # noqa: E402
    LAST_SHARED_INSTRUCTIONS,
    triton_convert_lowering,
    triton_shared_offsets,
)

SHAPE = [64, 64]
COMPILER = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _ours(src: LinearLayout, dst: LinearLayout) -> tuple[str, int]:
    """Our plan in the oracle's terms: kind, and shuffles (0 unless a warp shuffle)."""
    plan = plan_conversion(src, dst, choose_swizzle=False)
    kind = "registers" if plan.kind in ("noop", "register") else plan.kind
    return kind, plan.details.get("shuffles", 0)


def _same_plan(ours: tuple[str, int], theirs: tuple[str, int]) -> bool:
    # shuffle counts are compared for warp shuffles only (the shared path may shuffle too)
    return ours[0] == theirs[0] and (ours[0] != "warp_shuffle" or ours[1] == theirs[1])


def _blocked(spt, tpw, wpc, order):
    return ttgl.BlockedLayout(spt, tpw, wpc, order), hw.blocked(spt, tpw, wpc, order, SHAPE)


def _mma_v2(warps):
    return ttgl.NVMMADistributedLayout([2, 0], warps, [16, 8]), hw.mma_v2(warps, SHAPE)


def _mma_v3(warps):
    return ttgl.NVMMADistributedLayout([3, 0], warps, [16, 64, 16]), hw.mma_v3([16, 64, 16], warps, SHAPE)


def _dot(parent, version, warps, op_idx, k_width):
    return (
        ttgl.DotOperandLayout(op_idx, parent[0], k_width),
        hw.dot_operand((version, warps), op_idx, k_width, SHAPE),
    )


BLOCKED = _blocked([1, 4], [4, 8], [2, 2], [1, 0])
REAL_CONVERSIONS = {
    "mma_v2 -> blocked": (_mma_v2([2, 2]), BLOCKED),
    "mma_v3 -> blocked": (_mma_v3([4, 1]), _blocked([1, 8], [4, 8], [4, 1], [1, 0])),
    "blocked -> dot A": (BLOCKED, _dot(_mma_v2([2, 2]), 2, [2, 2], 0, 2)),
    "blocked -> dot B": (BLOCKED, _dot(_mma_v2([2, 2]), 2, [2, 2], 1, 2)),
    "mma_v2 -> dot A (chained matmul)": (_mma_v2([4, 1]), _dot(_mma_v2([4, 1]), 2, [4, 1], 0, 2)),
    "mma_v3 -> dot A (wgmma RS)": (_mma_v3([4, 1]), _dot(_mma_v3([4, 1]), 3, [4, 1], 0, 2)),
    "blocked -> itself": (BLOCKED, BLOCKED),
    "blocked lanes 4x8 -> 8x4": (BLOCKED, _blocked([1, 4], [8, 4], [2, 2], [1, 0])),
    "blocked row-major -> column-major": (
        _blocked([1, 1], [1, 32], [4, 1], [1, 0]),
        _blocked([1, 1], [32, 1], [1, 4], [0, 1]),
    ),
    "blocked warps [4,1] -> [2,2]": (_blocked([1, 4], [4, 8], [4, 1], [1, 0]), BLOCKED),
    "mma_v2 [2,2] -> [4,1]": (_mma_v2([2, 2]), _mma_v2([4, 1])),
    "dot A kWidth 2 -> 4": (_dot(_mma_v2([4, 1]), 2, [4, 1], 0, 2), _dot(_mma_v2([4, 1]), 2, [4, 1], 0, 4)),
}


@pytest.mark.parametrize("name", list(REAL_CONVERSIONS))
def test_planner_equals_triton_on_real_conversions(name):
    (src_triton, src_ours), (dst_triton, dst_ours) = REAL_CONVERSIONS[name]
    assert _same_plan(_ours(src_ours, dst_ours), triton_convert_lowering(src_triton, dst_triton))
    plan = plan_conversion(src_ours, dst_ours)
    if plan.kind == "shared_memory":
        # the instructions Triton emitted are the pair our swizzle search picked
        assert {plan.shared.store_instruction, plan.shared.load_instruction} == LAST_SHARED_INSTRUCTIONS


@st.composite
def shuffled_blocked(draw):
    """A blocked layout with its register, lane and warp bases shuffled among themselves (and,
    sometimes, one register basis swapped with one lane basis): every kind of conversion."""
    base = hw.blocked([2, 4], [4, 8], [2, 2], [1, 0], SHAPE)
    bases = dict(base.bases)
    registers, lanes, warps = (list(bases[d]) for d in ("register", "lane", "warp"))
    registers = draw(st.permutations(registers))
    lanes = draw(st.permutations(lanes))
    warps = draw(st.permutations(warps))
    if draw(st.booleans()):
        i, j = draw(st.integers(0, len(registers) - 1)), draw(st.integers(0, len(lanes) - 1))
        registers[i], lanes[j] = lanes[j], registers[i]
    return registers, lanes, warps


@st.composite
def conversion_pairs(draw):
    src = draw(shuffled_blocked())
    if draw(st.booleans()):
        return src, draw(shuffled_blocked())
    # same warps, registers shuffled and maybe one register bit traded with a lane bit
    registers, lanes, warps = list(src[0]), list(src[1]), list(src[2])
    registers = draw(st.permutations(registers))
    if draw(st.booleans()):
        i, j = draw(st.integers(0, len(registers) - 1)), draw(st.integers(0, len(lanes) - 1))
        registers[i], lanes[j] = lanes[j], registers[i]
    return src, (registers, lanes, warps)


@COMPILER
@given(conversion_pairs())
def test_planner_equals_triton_on_random_linear_layouts(pair):
    src, dst = pair

    def both(bases):
        registers, lanes, warps = ([list(v) for v in b] for b in bases)
        theirs = ttgl.DistributedLinearLayout(registers, lanes, warps, [], SHAPE)
        ours = LinearLayout(
            [("register", registers), ("lane", lanes), ("warp", warps), ("block", [])],
            [("dim0", SHAPE[0]), ("dim1", SHAPE[1])],
        )
        return theirs, ours

    (src_triton, src_ours), (dst_triton, dst_ours) = both(src), both(dst)
    assert _same_plan(_ours(src_ours, dst_ours), triton_convert_lowering(src_triton, dst_triton))


def test_shared_instructions_mostly_equal_triton():
    """Which st/ld instructions the swizzle search picks, against the PTX, over seeded random
    conversions through shared memory. Triton's choice among equally good pairs is not fully
    reproduced (we measured 226 of 228 on another seed), so this asserts a rate, not each case."""
    import random

    rng = random.Random(5)
    sources = [
        dict(hw.blocked([2, 4], [4, 8], [2, 2], [1, 0], SHAPE).bases),
        dict(hw.mma_v2([2, 2], SHAPE).bases),
    ]

    def random_layout():
        bases = rng.choice(sources)
        registers, lanes, warps = (list(bases[d]) for d in ("register", "lane", "warp"))
        for values in (registers, lanes, warps):
            rng.shuffle(values)
        for _ in range(rng.choice([0, 1, 2, 3])):
            i, j = rng.randrange(len(registers)), rng.randrange(len(lanes))
            registers[i], lanes[j] = lanes[j], registers[i]
        theirs = ttgl.DistributedLinearLayout(registers, lanes, warps, [], SHAPE)
        ours = LinearLayout(
            [("register", registers), ("lane", lanes), ("warp", warps), ("block", [])],
            [("dim0", SHAPE[0]), ("dim1", SHAPE[1])],
        )
        return theirs, ours

    agree = total = 0
    for _ in range(40):
        (src_triton, src_ours), (dst_triton, dst_ours) = random_layout(), random_layout()
        kind, _ = triton_convert_lowering(src_triton, dst_triton)
        plan = plan_conversion(src_ours, dst_ours)
        assert plan.kind == kind or (kind == "registers" and plan.kind in ("noop", "register"))
        if kind == "shared_memory":
            total += 1
            agree += {plan.shared.store_instruction, plan.shared.load_instruction} == LAST_SHARED_INSTRUCTIONS
    print(f"shared instructions equal to Triton in {agree} of {total} conversions")
    assert total >= 20 and agree >= 0.9 * total, (agree, total)


def _row_major_offsets(layout: LinearLayout, columns: int) -> list[int]:
    return [row * columns + col for row, col in dict(layout.bases)["offset"]]


@COMPILER
@given(
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([[1, 0], [0, 1]]),
    st.sampled_from([[16, 64], [64, 32], [32, 128], [8, 8]]),
)
def test_swizzled_shared_equals_triton(vec, per_phase, max_phase, order, shape):
    ours = hw.swizzled_shared(vec, per_phase, max_phase, order, shape)
    theirs = triton_shared_offsets(ttgl.SwizzledSharedLayout(vec, per_phase, max_phase, order), shape, 16)
    assert _row_major_offsets(ours, shape[1]) == theirs


@COMPILER
@given(
    st.sampled_from([0, 32, 64, 128]),
    st.sampled_from([8, 16, 32]),
    st.sampled_from([[8, 64], [16, 128], [64, 64], [128, 32], [32, 256]]),
)
def test_nvmma_shared_equals_triton(swizzle_bytes, element_bits, shape):
    if swizzle_bytes and shape[1] * element_bits < swizzle_bytes * 8:
        with pytest.raises(ValueError, match="fewer than one"):
            hw.nvmma_shared(swizzle_bytes, element_bits, shape)
        return
    ours = hw.nvmma_shared(swizzle_bytes, element_bits, shape)
    theirs = triton_shared_offsets(ttgl.NVMMASharedLayout(swizzle_bytes, element_bits), shape, element_bits)
    assert _row_major_offsets(ours, shape[1]) == theirs
