"""Shared helpers for the layout tests: random-layout strategies and the two oracles.

The CuTe oracle runs many algebra operations inside ONE `@cute.jit` trace (CuTe DSL
evaluates static layouts while tracing, on the CPU), because each trace costs ~0.1 s.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

try:
    import layouts
except ImportError:  # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layouts import Layout

# --------------------------------------------------------------------------------------
# hypothesis strategies
# --------------------------------------------------------------------------------------
SMALL_EXTENTS = [1, 2, 3, 4, 6, 8]
POW2_EXTENTS = [1, 2, 4, 8]


@st.composite
def int_tuple_shapes(
    draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3, max_size: int = 512, min_rank: int = 1
):
    """A nested shape of depth <= 2 whose size stays under max_size."""

    def leaf():
        return draw(st.sampled_from(extents))

    rank = draw(st.integers(min_rank, max_rank))
    modes = []
    for _ in range(rank):
        if draw(st.integers(0, 3)) == 0:
            modes.append(tuple(leaf() for _ in range(draw(st.integers(1, 2)))))
        else:
            modes.append(leaf())
    shape = modes[0] if rank == 1 and not isinstance(modes[0], tuple) else tuple(modes)
    from layouts.int_tuple import product

    if product(shape) > max_size:
        return (
            tuple(draw(st.sampled_from(extents)) for _ in range(rank))
            if min_rank > 1
            else draw(st.sampled_from(extents))
        )
    return shape


@st.composite
def layouts(draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3, max_stride: int = 64):
    """Random layouts: either compact (a permuted column-major order, possibly with holes) or arbitrary."""
    from layouts.int_tuple import flatten, unflatten

    shape = draw(int_tuple_shapes(extents, max_rank))
    leaves = flatten(shape)
    style = draw(st.sampled_from(["compact", "compact", "arbitrary"]))
    if style == "arbitrary":
        strides = [draw(st.integers(0, max_stride)) for _ in leaves]
    else:
        # A permutation of a column-major order with optional dilation gaps and stride-0 broadcasts.
        order = draw(st.permutations(range(len(leaves))))
        strides = [0] * len(leaves)
        running = 1
        for position in order:
            running *= draw(st.sampled_from([1, 1, 1, 2]))
            if draw(st.integers(0, 7)) == 0:
                strides[position] = 0
            else:
                strides[position] = running
                running *= leaves[position]
    return Layout(shape, unflatten(strides, shape))


@st.composite
def injective_layouts(draw, extents: Sequence[int] = SMALL_EXTENTS, max_rank: int = 3, min_rank: int = 1):
    """Layouts whose strides nest (what complement, left_inverse and products need)."""
    from layouts.int_tuple import flatten, unflatten

    shape = draw(int_tuple_shapes(extents, max_rank, min_rank=min_rank))
    leaves = flatten(shape)
    order = draw(st.permutations(range(len(leaves))))
    strides = [0] * len(leaves)
    running = 1
    for position in order:
        running *= draw(st.sampled_from([1, 1, 2, 3]))
        strides[position] = running
        running *= leaves[position]
    return Layout(shape, unflatten(strides, shape))


# --------------------------------------------------------------------------------------
# CuTe DSL oracle
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cute_module():
    import cutlass.cute as cute

    return cute


def _to_cute(cute, value: Any):
    """Our Layout -> cute layout; ints stay ints; tuples become tuples of converted elements."""
    if isinstance(value, Layout):
        return cute.make_layout(value.shape, stride=value.stride)
    if isinstance(value, tuple):
        return tuple(_to_cute(cute, element) for element in value)
    return value


def run_cute_batch(calls: Sequence[tuple[str, tuple]]) -> list[str]:
    """Evaluate `cute.<name>(*args)` for every call inside one jit trace; str(result) or 'ERROR'."""
    cute = _cute_module()
    results: list[str] = []

    def trace_body() -> None:
        for name, args in calls:
            function: Callable = getattr(cute, name)
            try:
                results.append(str(function(*(_to_cute(cute, a) for a in args))))
            except Exception:  # the DSL reports impossible algebra as MLIR errors
                results.append("ERROR")

    @cute.jit
    def traced() -> None:
        trace_body()

    traced()
    return results


def normalise_unit_strides(text: str) -> str:
    """Printed layout with the stride of every extent-1 leaf set to 0.

    The stride of an extent-1 mode never contributes to any index, and CuTe DSL and
    this module pick it differently in a few corner cases, so equality ignores it.
    """
    if text == "ERROR":
        return text
    from layouts.int_tuple import format_int_tuple, unflatten

    layout = Layout.parse(text)
    strides = [0 if extent == 1 else stride for extent, stride in layout.flat_modes()]
    return f"{format_int_tuple(layout.shape)}:{format_int_tuple(unflatten(strides, layout.stride))}"


# --------------------------------------------------------------------------------------
# Triton compiler oracle for convert_layout: compile a gluon kernel for sm_90 on the CPU
# (no GPU needed: ptxas ships with triton) and read how the conversion was lowered.
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _convert_kernel():
    from triton.experimental import gluon
    from triton.experimental.gluon import language as ttgl

    @gluon.jit
    def convert_kernel(
        x_ptr, y_ptr, M: ttgl.constexpr, N: ttgl.constexpr, SRC: ttgl.constexpr, DST: ttgl.constexpr
    ):
        rows = ttgl.arange(0, M, layout=ttgl.SliceLayout(1, SRC))
        cols = ttgl.arange(0, N, layout=ttgl.SliceLayout(0, SRC))
        x = ttgl.load(x_ptr + rows[:, None] * N + cols[None, :])
        y = ttgl.convert_layout(x, DST)
        rows_out = ttgl.arange(0, M, layout=ttgl.SliceLayout(1, DST))
        cols_out = ttgl.arange(0, N, layout=ttgl.SliceLayout(0, DST))
        ttgl.store(y_ptr + rows_out[:, None] * N + cols_out[None, :], y)

    return convert_kernel


LAST_SHARED_INSTRUCTIONS: set[str] = set()  # shared-memory instructions of the last compiled kernel


def triton_convert_lowering(
    src_layout, dst_layout, shape=(64, 64), num_warps: int = 4, capability: int = 90
) -> tuple[str, int]:
    """How Triton lowers convert_layout(src -> dst) of an fp16 tensor, and how many shfl.sync
    its PTX has: 'shared_memory' when the LLVM IR touches shared memory (addrspace 3),
    'warp_shuffle' when it shuffles, else 'registers' (a renaming, possibly empty)."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    source = GluonASTSource(
        fn=_convert_kernel(),
        signature={
            "x_ptr": "*fp16",
            "y_ptr": "*fp16",
            "M": "constexpr",
            "N": "constexpr",
            "SRC": "constexpr",
            "DST": "constexpr",
        },
        constexprs={"M": shape[0], "N": shape[1], "SRC": src_layout, "DST": dst_layout},
    )
    compiled = triton.compile(
        source, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps}
    )
    llvm_ir = compiled.asm["llir"]
    shuffles = len(re.findall(r"shfl\.sync", compiled.asm["ptx"]))
    LAST_SHARED_INSTRUCTIONS.clear()
    for instruction in re.findall(r"\b((?:st|ld)\.shared|(?:st|ld)matrix[\w.]*)", compiled.asm["ptx"]):
        kind = instruction.split(".")[0] if "matrix" in instruction else instruction
        LAST_SHARED_INSTRUCTIONS.add(kind + (".trans" if ".trans" in instruction else ""))
    if "addrspace(3)" in llvm_ir:
        return "shared_memory", shuffles
    if shuffles:
        return "warp_shuffle", shuffles
    return "registers", shuffles


@functools.lru_cache(maxsize=1)
def _reshape_kernel():
    from triton.experimental import gluon
    from triton.experimental.gluon import language as ttgl

    @gluon.jit
    def reshape_kernel(
        x_ptr, SHARED: ttgl.constexpr, DTYPE: ttgl.constexpr, M: ttgl.constexpr, N: ttgl.constexpr
    ):
        layout: ttgl.constexpr = ttgl.BlockedLayout([1, 1], [1, 32], [4, 1], [1, 0])
        rows = ttgl.arange(0, M, layout=ttgl.SliceLayout(1, layout))
        cols = ttgl.arange(0, N, layout=ttgl.SliceLayout(0, layout))
        x = ttgl.load(x_ptr + rows[:, None] * N + cols[None, :]).to(DTYPE)
        buffer = ttgl.allocate_shared_memory(DTYPE, [M, N], SHARED, x)
        flat_layout: ttgl.constexpr = ttgl.BlockedLayout([1], [32], [4], [0])
        y = buffer.reshape([M * N]).load(flat_layout)
        ttgl.store(x_ptr + ttgl.arange(0, M * N, layout=flat_layout), y.to(ttgl.float16))

    return reshape_kernel


def triton_shared_offsets(shared_layout, shape, element_bits: int) -> list[int]:
    """Triton's offset bases of a rank-2 shared layout, read from the TTGIR of a kernel that
    reshapes the buffer to 1-D (Triton then prints it as #ttg.shared_linear over the
    row-major flattened index). gluon's to_linear_layout aborts on shared layouts in 3.6."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon import language as ttgl
    from triton.experimental.gluon._runtime import GluonASTSource

    dtype = {8: ttgl.float8e4nv, 16: ttgl.float16, 32: ttgl.float32}[element_bits]
    source = GluonASTSource(
        fn=_reshape_kernel(),
        signature={
            "x_ptr": "*fp16",
            "SHARED": "constexpr",
            "DTYPE": "constexpr",
            "M": "constexpr",
            "N": "constexpr",
        },
        constexprs={"SHARED": shared_layout, "DTYPE": dtype, "M": shape[0], "N": shape[1]},
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    match = re.search(r"#ttg\.shared_linear<\{offset = \[(.*?)\]\}", compiled.asm["ttgir"])
    if match is None:
        raise AssertionError("no #ttg.shared_linear in the TTGIR")
    return [int(v) for v in re.findall(r"\[(\d+)\]", match.group(1))]
