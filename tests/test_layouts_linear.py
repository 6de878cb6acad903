"""F2 linear layouts against triton.tools.LinearLayout, Triton's GPU layouts against gluon's
to_linear_layout, CuTe <-> linear conversions, the conversion planner, drawings and the CLI."""

from __future__ import annotations

import argparse
import functools

import layouts_conftest_helpers  # noqa: F401  (puts the repo root on sys.path)
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts import ComposedLayout, Layout, Swizzle
from layouts import hardware as hw
from layouts.cli import add_parser, run
from layouts.convert import cute_to_linear, linear_to_cute, swizzled_shared_to_cute
from layouts.draw import to_svg
from layouts.linear import LinearLayout
from layouts.planner import plan_conversion
from layouts.swizzling import bank_conflicts

ORACLE = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
OUT_NAMES = ["dim0", "dim1"]


@st.composite
def linear_layouts(draw, surjective: bool = False):
    """Random bases over register/lane (and sometimes warp) -> dim0, dim1 of power-of-two sizes."""
    out_bits = [draw(st.integers(0, 3)), draw(st.integers(0, 3))]
    in_dims = []
    for name in draw(st.sampled_from([["register"], ["register", "lane"], ["register", "lane", "warp"]])):
        count = draw(st.integers(0, 3))
        in_dims.append((name, [[draw(st.integers(0, (1 << b) - 1)) for b in out_bits] for _ in range(count)]))
    if surjective:
        # add the unit vectors so that the layout reaches every output
        extra = [[1 << i, 0] for i in range(out_bits[0])] + [[0, 1 << i] for i in range(out_bits[1])]
        in_dims[0] = (in_dims[0][0], in_dims[0][1] + extra)
    return in_dims, [1 << b for b in out_bits]


def _both(bases, sizes):
    triton_ll = pytest.importorskip("triton.tools", reason="triton (LinearLayout oracle) is not installed")
    theirs = triton_ll.LinearLayout.from_bases(bases, OUT_NAMES, sizes, require_surjective=False)
    ours = LinearLayout.from_bases(bases, OUT_NAMES, sizes, require_surjective=False)
    return ours, theirs


@ORACLE
@given(linear_layouts(), st.integers(0, 1 << 12))
def test_linear_layout_queries_equal_triton(case, seed):
    ours, theirs = _both(*case)
    assert ours.bases == [(n, [list(v) for v in b]) for n, b in theirs.bases]
    assert ours.out_dims == list(theirs.out_dims)
    assert ours.get_matrix_view() == theirs.get_matrix_view()
    assert (ours.is_surjective(), ours.is_injective(), ours.is_invertible()) == (
        theirs.is_surjective(),
        theirs.is_injective(),
        theirs.is_invertible(),
    )
    point = {name: seed % size for name, size in ours.in_dims}
    assert ours.apply(point) == theirs.apply(point)
    assert str(ours) == str(theirs)


@ORACLE
@given(linear_layouts(surjective=True), linear_layouts(surjective=True))
def test_inverses_and_products_equal_triton(first, second):
    ours, theirs = _both(*first)
    assert ours.is_surjective()
    assert str(ours.pseudoinvert()) == str(theirs.pseudoinvert())
    if theirs.is_invertible():
        assert str(ours.invert()) == str(theirs.invert())
    other_ours, other_theirs = _both(*second)
    assert str(ours * other_ours) == str(theirs * other_theirs)
    if other_ours.out_dims == ours.out_dims:
        # (triton aborts the process on some of these inputs, so check the defining law instead)
        try:
            solution = ours.invert_and_compose(other_ours)
        except ValueError:
            return  # inputs outside Triton's preconditions (it asserts on them)
        for index in range(min(ours.get_total_in_dim_size(), 64)):
            point = {}
            for name, size in ours.in_dims:
                point[name], index = index % size, index // size
            assert other_ours.apply(solution.apply(point)) == ours.apply(point)
    # compose: self's out dims feed an identity-like layout over those dims
    outer = LinearLayout.identity_1d(ours.get_out_dim_size("dim0"), "dim0", "x") * LinearLayout.identity_1d(
        ours.get_out_dim_size("dim1"), "dim1", "y"
    )
    triton_ll = pytest.importorskip("triton.tools")
    outer_theirs = triton_ll.LinearLayout.identity_1d(ours.get_out_dim_size("dim0"), "dim0", "x") * (
        triton_ll.LinearLayout.identity_1d(ours.get_out_dim_size("dim1"), "dim1", "y")
    )
    assert str(ours.compose(outer)) == str(theirs.compose(outer_theirs))


def test_one_dimensional_constructors():
    assert LinearLayout.strided_1d(4, 2, "a", "b").bases == [("a", [[2], [4]])]
    assert LinearLayout.zeros_1d(4, "a", "b", 8).out_dims == [("b", 8)]
    with pytest.raises(ValueError, match="surjective"):
        LinearLayout.from_bases([("in", [[1], [2], [8]])], ["out"])
    with pytest.raises(ValueError, match="out_dim_sizes"):
        LinearLayout.from_bases([("in", [[1]])], ["out"], require_surjective=False)


def test_cpp_only_operations():
    layout = hw.blocked([1, 4], [4, 8], [2, 2], [1, 0], [64, 64])
    sub = layout.sublayout(["lane"], ["dim1"])
    assert sub.bases == [("lane", [[4], [8], [16], [0], [0]])]
    assert layout.transpose_outs(["dim1", "dim0"]).transpose_outs(["dim0", "dim1"]) == layout
    flat = layout.flatten_ins()
    assert flat.reshape_ins(layout.in_dims) == layout
    assert layout.reshape_outs([("all", 64 * 64)]).reshape_outs(layout.out_dims) == layout
    masks = hw.dot_operand((2, [2, 2]), 0, 2, [64, 64]).free_variable_masks()
    assert masks == {"register": 0, "lane": 0, "warp": 1, "block": 0}  # warps along K hold copies
    regs = LinearLayout.identity_1d(4, "register", "dim1")
    quotient = layout.divide_left(
        regs * LinearLayout.identity_1d(1, "register", "dim0").transpose_outs(["dim0"])
    )
    assert quotient is None or isinstance(quotient, LinearLayout)
    exact = LinearLayout.identity_1d(4, "r", "x").divide_left(LinearLayout.identity_1d(2, "r", "x"))
    assert exact == LinearLayout.identity_1d(2, "r", "x")
    assert LinearLayout.identity_1d(4, "r", "x").divide_left(LinearLayout.strided_1d(2, 2, "r", "x")) is None
    both = LinearLayout.identity_1d(2, "a", "x").concat_ins(LinearLayout.identity_1d(2, "b", "x"))
    assert both.bases == [("a", [[1]]), ("b", [[1]])]
    wide = LinearLayout.identity_1d(2, "a", "x").concat_outs(LinearLayout.identity_1d(2, "a", "y"))
    assert wide.bases == [("a", [[1, 1]])]


# --------------------------------------------------------------------------------------
# hardware layouts against gluon's to_linear_layout (Triton's own C++ conversions)
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _gluon():
    pytest.importorskip("triton.experimental.gluon", reason="triton with gluon is not installed")
    from triton._C.libtriton import gluon_ir, ir
    from triton.experimental.gluon import language as ttgl

    context = ir.context()
    ir.load_dialects(context)
    return ttgl, gluon_ir.GluonOpBuilder(context), context


def _triton_bases(layout, shape):
    _, builder, _ = _gluon()
    result = builder.to_linear_layout(layout._to_ir(builder), list(shape))
    return {
        "register": result.reg_bases,
        "lane": result.lane_bases,
        "warp": result.warp_bases,
        "block": result.block_bases,
    }


pow2 = st.sampled_from([1, 2, 4, 8])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    st.lists(pow2, min_size=2, max_size=2),
    st.sampled_from([[1, 32], [2, 16], [4, 8], [8, 4], [32, 1]]),
    st.sampled_from([[1, 4], [2, 2], [4, 1], [1, 1], [8, 1]]),
    st.permutations([0, 1]),
    st.lists(st.sampled_from([1, 2, 8, 32, 64, 256]), min_size=2, max_size=2),
)
def test_blocked_equals_triton(size_per_thread, threads, warps, order, shape):
    ttgl, _, _ = _gluon()
    expected = _triton_bases(ttgl.BlockedLayout(size_per_thread, threads, warps, list(order)), shape)
    assert dict(hw.blocked(size_per_thread, threads, warps, order, shape).bases) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    st.sampled_from([[1, 4], [2, 2], [4, 1], [4, 2], [8, 1]]),
    st.sampled_from([16, 32, 64, 128, 256]),
    st.sampled_from([16, 32, 64, 128, 256]),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([0, 1]),
)
def test_mma_and_dot_operand_equal_triton(warps, rows, cols, k_width, op_idx):
    ttgl, _, _ = _gluon()
    v2 = ttgl.NVMMADistributedLayout([2, 0], warps, [16, 8])
    assert dict(hw.mma_v2(warps, [rows, cols]).bases) == _triton_bases(v2, [rows, cols])
    dot = ttgl.DotOperandLayout(op_idx, v2, k_width)
    assert dict(hw.dot_operand((2, warps), op_idx, k_width, [rows, cols]).bases) == _triton_bases(
        dot, [rows, cols]
    )
    if warps[0] * warps[1] % 4 == 0:
        v3 = ttgl.NVMMADistributedLayout([3, 0], warps, [16, 64, 16])
        assert dict(hw.mma_v3([16, 64, 16], warps, [rows, cols]).bases) == _triton_bases(v3, [rows, cols])
        dot3 = ttgl.DotOperandLayout(0, v3, k_width)
        assert dict(hw.dot_operand((3, warps), 0, k_width, [rows, cols]).bases) == _triton_bases(
            dot3, [rows, cols]
        )
    sliced = ttgl.SliceLayout(1, v2)
    assert dict(hw.slice(lambda s: hw.mma_v2(warps, s), 1, [rows]).bases) == _triton_bases(sliced, [rows])


def test_shared_layouts_worked_cases():
    # 128-byte swizzle of 16-bit elements: row r XORs vector group r % 8 (derived by hand).
    layout = hw.swizzled_shared(8, 1, 8, [1, 0], [16, 64])
    assert dict(layout.bases)["offset"] == [
        [0, 1],
        [0, 2],
        [0, 4],
        [0, 8],
        [0, 16],
        [0, 32],
        [1, 8],
        [2, 16],
        [4, 32],
        [8, 0],
    ]
    assert dict(hw.nvmma_shared(128, 16, [16, 64]).bases) == dict(layout.bases)
    # 64-byte swizzle: two rows per phase, four phases, 32 columns per tile
    assert dict(hw.nvmma_shared(64, 16, [8, 32]).bases)["offset"] == [
        [0, 1],
        [0, 2],
        [0, 4],
        [0, 8],
        [0, 16],
        [1, 0],
        [2, 8],
        [4, 16],
    ]
    assert dict(hw.swizzled_shared(1, 1, 1, [0, 1], [4, 4]).bases)["offset"] == [
        [1, 0],
        [2, 0],
        [0, 1],
        [0, 2],
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    st.lists(pow2, min_size=2, max_size=2),
    st.sampled_from([[1, 32], [2, 16], [4, 8], [8, 4], [32, 1]]),
    st.sampled_from([[1, 4], [2, 2], [4, 1]]),
    st.permutations([0, 1]),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2, 4, 8]),
    st.permutations([0, 1]),
    st.sampled_from([8, 16, 32]),
)
def test_bank_conflicts_equal_triton(spt, tpw, wpc, order, vec, per_phase, max_phase, shared_order, bits):
    ttgl, builder, _ = _gluon()
    shape = [64, 64]
    triton_count = builder.get_shared_bank_conflicts(
        ttgl.BlockedLayout(spt, tpw, wpc, list(order))._to_ir(builder),
        ttgl.SwizzledSharedLayout(vec, per_phase, max_phase, list(shared_order))._to_ir(builder),
        shape,
        bits,
    )
    ours = bank_conflicts(
        hw.blocked(spt, tpw, wpc, order, shape),
        hw.swizzled_shared(vec, per_phase, max_phase, shared_order, shape),
        bits,
    )
    assert ours == triton_count


def test_bank_conflicts_of_mma_and_nvmma_equal_triton():
    ttgl, builder, _ = _gluon()
    mma = ttgl.NVMMADistributedLayout([2, 0], [2, 2], [16, 8])
    for shared, ours_shared in [
        (ttgl.NVMMASharedLayout(128, 16), hw.nvmma_shared(128, 16, [64, 64])),
        (ttgl.NVMMASharedLayout(64, 16), hw.nvmma_shared(64, 16, [64, 64])),
        (ttgl.SwizzledSharedLayout(1, 1, 1, [0, 1]), hw.swizzled_shared(1, 1, 1, [0, 1], [64, 64])),
    ]:
        expected = builder.get_shared_bank_conflicts(
            mma._to_ir(builder), shared._to_ir(builder), [64, 64], 16
        )
        assert bank_conflicts(hw.mma_v2([2, 2], [64, 64]), ours_shared, 16) == expected


# --------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------
def test_cute_to_linear_and_back():
    layout = Layout((4, 8), (8, 1))
    linear = cute_to_linear(layout)
    assert linear.bases == [("dim0", [[8], [16]]), ("dim1", [[1], [2], [4]])]
    assert linear_to_cute(cute_to_linear(Layout(((4, 8),), ((8, 1),)))) == Layout((4, 8), (8, 1))
    with pytest.raises(ValueError, match="mode 1"):
        cute_to_linear(Layout((4, 3), (1, 4)))
    with pytest.raises(ValueError, match="shares bits"):
        cute_to_linear(Layout((4, 4), (1, 2)))
    with pytest.raises(ValueError, match="several bits"):
        linear_to_cute(LinearLayout.from_bases([("i", [[3]])], ["o"], [4], require_surjective=False))


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2, 4, 8]),
    st.permutations([0, 1]),
    st.sampled_from([8, 16, 64]),
    st.sampled_from([64, 128]),
)
def test_swizzled_shared_is_cute_swizzle(vec, per_phase, max_phase, order, rows, cols):
    shape = [rows, cols] if order[0] == 1 else [cols, rows]
    composed = swizzled_shared_to_cute(vec, per_phase, max_phase, order, shape)
    triton_layout = hw.swizzled_shared(vec, per_phase, max_phase, order, shape)
    assert cute_to_linear(composed).invert() == triton_layout.sublayout(["offset"], ["dim0", "dim1"])


def test_swizzle_composed_is_linear():
    composed = ComposedLayout(Swizzle(2, 0, 2), 0, Layout(16, 1))
    linear = cute_to_linear(composed)
    assert [linear.apply_flat(i) for i in range(16)] == [composed(i) for i in range(16)]


# --------------------------------------------------------------------------------------
# planner
# --------------------------------------------------------------------------------------
SHAPE = [64, 64]


def test_planner_kinds_on_real_conversions():
    blocked = hw.blocked([1, 4], [4, 8], [2, 2], [1, 0], SHAPE)
    assert plan_conversion(blocked, blocked).kind == "noop"
    # MMAv2 accumulator -> dot operand A with all warps along M: a register-only conversion in Triton.
    assert plan_conversion(hw.mma_v2([4, 1], SHAPE), hw.dot_operand((2, [4, 1]), 0, 2, SHAPE)).kind in (
        "noop",
        "register",
    )
    # blocked with a different register order: only registers move
    reordered = LinearLayout(
        [(n, b if n != "register" else [b[1], b[0], *b[2:]]) for n, b in blocked.bases], blocked.out_dims
    )
    plan = plan_conversion(blocked, reordered)
    assert plan.kind == "register" and plan.register_permutation[:4] == [0, 2, 1, 3]
    # swapping two lane bits: a warp shuffle
    swapped = LinearLayout(
        [(n, b if n != "lane" else [b[1], b[0], *b[2:]]) for n, b in blocked.bases], blocked.out_dims
    )
    plan = plan_conversion(blocked, swapped)
    assert plan.kind == "warp_shuffle" and plan.warp.mixed_transpositions == [] and "shfl" in str(plan)
    assert plan.warp.lane_permutation[:2] == [1, 0]
    # accumulator -> blocked needs shared memory; the swizzle avoids the plain layout's conflicts
    plan = plan_conversion(hw.mma_v2([2, 2], SHAPE), blocked)
    assert plan.kind == "shared_memory" and "st.shared" in str(plan)
    shared = plan.shared
    assert shared.read_conflicts + shared.write_conflicts < (
        shared.unswizzled_read_conflicts + shared.unswizzled_write_conflicts
    )
    # the buffer is a bijection onto the tensor
    assert shared.smem.is_invertible()


# --------------------------------------------------------------------------------------
# drawings and CLI
# --------------------------------------------------------------------------------------
def test_svg_is_escaped_and_well_formed():
    from xml.etree import ElementTree

    svg = to_svg(Layout.parse("(2,3):(3,1)"), title="a<b & c")
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "a&lt;b &amp; c" in svg
    assert svg.count("<rect") == 6
    ElementTree.fromstring(to_svg(hw.blocked([1, 1], [4, 8], [1, 1], [1, 0], [4, 8])))
    ElementTree.fromstring(to_svg(Layout.parse("((4,8),2):((16,1),8)"), tv_tile=(8, 8)))


def test_cli_show(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    svg_path = tmp_path / "layout.svg"
    assert run(parser.parse_args(["layout", "show", "((2,2),3):((24,2),8)", "--svg", str(svg_path)])) == 0
    printed = capsys.readouterr().out
    assert "((2,2),3):((24,2),8)" in printed and " 26 " in printed
    assert svg_path.read_text().startswith("<svg")
    assert run(parser.parse_args(["layout", "show", "((4,8),2):((16,1),8)", "--tv", "8x8"])) == 0
    assert "T31V1" in capsys.readouterr().out
    assert run(parser.parse_args(["layout", "show", "(2,3:1"])) == 2


def test_layouts_package_uses_only_the_standard_library():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, layouts, layouts.cli, layouts.hardware, layouts.planner, layouts.swizzling; "
        "print(sorted(m for m in ('torch', 'numpy', 'triton', 'cutlass') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
