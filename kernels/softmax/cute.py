"""Softmax forward in CuTe DSL, over the last dimension, accumulated in float32.

Same tiling as the CuTe RMSNorm (see ``kernels/cute_rows.py``): a row tile is read once into
registers with 128-bit loads, reduced across threads, warps, and (for long rows) the CTAs of a
thread-block cluster, then written once.  The row statistics are computed "online": each warp
reduces its own (max, sum of exp(x - max)) pair and the pairs are merged by rescaling, so a
clustered row needs a single exchange through distributed shared memory, not one for the max
and another for the sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cutlass
import cutlass.cute as cute
import cutlass.memory
import torch
from cutlass import Float32, const_expr

from .. import cute_rows as rows
from ..cute_rows import CONFIG_SPACE, DEFAULT_CONFIG, RowPlan, plan_rows, vector_elements
from ..registry import Backend


@cute.kernel
def _softmax_kernel(mX: cute.Tensor, mY: cute.Tensor, plan: cutlass.Constexpr[RowPlan]):
    tidx, _, _ = cute.arch.thread_idx()
    row_block, rank, _ = cute.arch.block_idx()  # grid y is the rank in the (1, cluster, 1) cluster
    m = mX.shape[0]
    n = plan.n

    smem = cutlass.memory.SmemAllocator()
    partials = smem.allocate_tensor(Float32, rows.partials_layout(plan, 2), byte_alignment=16)
    mbar_ptr = smem.allocate_array(cutlass.Int64, num_elems=1)
    rows.cluster_prologue(mbar_ptr, plan.cluster_size)

    tiler = (plan.rows_per_cta, plan.cols_per_cta)
    gX = cute.local_tile(mX, tiler, (row_block, rank))
    gY = cute.local_tile(mY, tiler, (row_block, rank))
    cX = cute.local_tile(cute.make_identity_tensor((m, n)), tiler, (row_block, rank))

    atom, tiled = rows.make_tile_copy(mX.element_type, plan)
    thr = tiled.get_slice(tidx)
    tXgX = thr.partition_S(gX)
    tXgY = thr.partition_D(gY)
    tXcX = thr.partition_S(cX)
    tXrX = cute.make_rmem_tensor_like(tXgX)
    tXrY = cute.make_rmem_tensor_like(tXgY)

    # Padding reads as -inf: it never wins the max and adds exp(-inf) = 0 to the sum.
    tXrX.fill(-tXrX.element_type.inf)
    in_row = tXcX[0][0] < m
    if const_expr(plan.needs_column_predicate):
        in_cols = rows.column_predicate(tXcX, n)
        if in_row:
            cute.copy(atom, tXgX, tXrX, pred=in_cols)
    else:
        if in_row:
            cute.copy(atom, tXgX, tXrX)

    y = rows.softmax_row(tXrX.load().to(Float32), partials, mbar_ptr, plan)
    tXrY.store(y.to(tXrY.element_type))
    if in_row:
        if const_expr(plan.needs_column_predicate):
            cute.copy(atom, tXrY, tXgY, pred=in_cols)
        else:
            cute.copy(atom, tXrY, tXgY)


@cute.jit
def _softmax_launch(mX: cute.Tensor, mY: cute.Tensor, stream: Any, plan: cutlass.Constexpr[RowPlan]):
    _softmax_kernel(mX, mY, plan).launch(
        grid=[cute.ceil_div(mX.shape[0], plan.rows_per_cta), plan.cluster_size, 1],
        block=[plan.threads_per_cta, 1, 1],
        cluster=[1, plan.cluster_size, 1] if const_expr(plan.cluster_size > 1) else None,
        stream=stream,
    )


_COMPILED: dict[tuple, Any] = {}


def compile_softmax(
    dtype: torch.dtype,
    plan: RowPlan,
    gpu_arch: str | None = None,
    ptx_dir: str | None = None,
) -> Any:
    """Compile (once per key) for any M; the result takes (x2d, y2d) torch arguments."""
    key = (dtype, plan, gpu_arch, ptx_dir)
    if key not in _COMPILED:
        element = rows.cute_dtype(dtype)
        _COMPILED[key] = cute.compile(
            _softmax_launch,
            rows.fake_rows(element, plan.n, plan.vec),
            rows.fake_rows(element, plan.n, plan.vec),
            cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True),
            plan,
            options=rows.compile_options(gpu_arch, ptx_dir),
        )
    return _COMPILED[key]


def softmax_plan(
    n: int, dtype: torch.dtype, pointers: tuple[int, int] = (0, 0), config: Mapping[str, Any] | None = None
) -> RowPlan:
    """The tiling for rows of ``n``; ``pointers`` are x's and y's data pointers."""
    bits = torch.finfo(dtype).bits
    vector_bits = (config or {}).get("vector_bits", DEFAULT_CONFIG["vector_bits"])
    vec = vector_elements(n, vector_bits, ((bits, pointers[0]), (bits, pointers[1])))
    return plan_rows(n, vec, bits, config)


def softmax_cute(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    x2 = x.view(-1, n)
    y = torch.empty_like(x) if out is None else out
    y2 = y.view(-1, n)
    plan = softmax_plan(n, x.dtype, (x2.data_ptr(), y2.data_ptr()), config)
    if x2.shape[0] == 0:
        return y
    compile_softmax(x.dtype, plan)(x2, y2)
    return y


BACKENDS = [
    Backend(
        "softmax",
        "cute",
        "cute",
        softmax_cute,
        requires=("cutlass",),
        min_cc=(9, 0),
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    ),
]
