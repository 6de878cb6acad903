"""RMSNorm forward in CuTe DSL: y = x * rsqrt(mean(x^2) + eps) * weight.

One CTA (or one thread-block cluster, for long rows) per tile of rows; the tile lives in
registers from a single pass of 128-bit loads, so x is read once and y written once.  The
tiling, the warp/CTA/cluster reductions and why they are shaped so are in
``kernels/cute_rows.py``.  One compile serves every M: kernels are compiled against a fake
tensor with a symbolic row count and cached per (dtypes, N, vector width, plan).
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
def _rmsnorm_kernel(
    mX: cute.Tensor,
    mW: cute.Tensor,
    mY: cute.Tensor,
    eps: Float32,
    plan: cutlass.Constexpr[RowPlan],
):
    tidx, _, _ = cute.arch.thread_idx()
    row_block, rank, _ = cute.arch.block_idx()  # grid y is the rank in the (1, cluster, 1) cluster
    m = mX.shape[0]
    n = plan.n

    smem = cutlass.memory.SmemAllocator()
    partials = smem.allocate_tensor(Float32, rows.partials_layout(plan, 1), byte_alignment=16)
    mbar_ptr = smem.allocate_array(cutlass.Int64, num_elems=1)
    rows.cluster_prologue(mbar_ptr, plan.cluster_size)

    tiler = (plan.rows_per_cta, plan.cols_per_cta)
    # The weight seen as a matrix whose rows all alias the one weight vector.
    mW_rows = cute.make_tensor(mW.iterator, cute.make_layout((plan.rows_per_cta, n), stride=(0, 1)))
    gX = cute.local_tile(mX, tiler, (row_block, rank))
    gY = cute.local_tile(mY, tiler, (row_block, rank))
    gW = cute.local_tile(mW_rows, tiler, (0, rank))
    cX = cute.local_tile(cute.make_identity_tensor((m, n)), tiler, (row_block, rank))

    x_atom, x_tiled = rows.make_tile_copy(mX.element_type, plan)
    w_atom, w_tiled = rows.make_tile_copy(mW.element_type, plan)
    thr_x = x_tiled.get_slice(tidx)
    thr_w = w_tiled.get_slice(tidx)
    tXgX = thr_x.partition_S(gX)
    tXgY = thr_x.partition_D(gY)
    tXgW = thr_w.partition_S(gW)
    tXcX = thr_x.partition_S(cX)
    tXrX = cute.make_rmem_tensor_like(tXgX)
    tXrW = cute.make_rmem_tensor_like(tXgW)
    tXrY = cute.make_rmem_tensor_like(tXgY)

    # Padding reads as 0: it adds nothing to the sum of squares.
    tXrX.fill(0.0)
    tXrW.fill(0.0)
    in_row = tXcX[0][0] < m
    if const_expr(plan.needs_column_predicate):
        in_cols = rows.column_predicate(tXcX, n)
        if in_row:
            cute.copy(x_atom, tXgX, tXrX, pred=in_cols)
        cute.copy(w_atom, tXgW, tXrW, pred=in_cols)
    else:
        if in_row:
            cute.copy(x_atom, tXgX, tXrX)
        cute.copy(w_atom, tXgW, tXrW)

    x = tXrX.load().to(Float32)
    sum_sq = rows.row_sum((x * x).reduce(cute.ReductionOp.ADD, Float32(0.0), 0), partials, mbar_ptr, plan)
    rstd = cute.math.rsqrt(sum_sq / n + eps, fastmath=True)
    y = x * rstd * tXrW.load().to(Float32)
    tXrY.store(y.to(tXrY.element_type))
    if in_row:
        if const_expr(plan.needs_column_predicate):
            cute.copy(x_atom, tXrY, tXgY, pred=in_cols)
        else:
            cute.copy(x_atom, tXrY, tXgY)


@cute.jit
def _rmsnorm_launch(
    mX: cute.Tensor,
    mW: cute.Tensor,
    mY: cute.Tensor,
    eps: Float32,
    stream: Any,
    plan: cutlass.Constexpr[RowPlan],
):
    _rmsnorm_kernel(mX, mW, mY, eps, plan).launch(
        grid=[cute.ceil_div(mX.shape[0], plan.rows_per_cta), plan.cluster_size, 1],
        block=[plan.threads_per_cta, 1, 1],
        cluster=[1, plan.cluster_size, 1] if const_expr(plan.cluster_size > 1) else None,
        stream=stream,
    )


_COMPILED: dict[tuple, Any] = {}


def compile_rmsnorm(
    x_dtype: torch.dtype,
    w_dtype: torch.dtype,
    plan: RowPlan,
    gpu_arch: str | None = None,
    ptx_dir: str | None = None,
) -> Any:
    """Compile (once per key) for any M; the result takes (x2d, weight, y2d, eps) torch arguments."""
    key = (x_dtype, w_dtype, plan, gpu_arch, ptx_dir)
    if key not in _COMPILED:
        x_type, w_type = rows.cute_dtype(x_dtype), rows.cute_dtype(w_dtype)
        _COMPILED[key] = cute.compile(
            _rmsnorm_launch,
            rows.fake_rows(x_type, plan.n, plan.vec),
            rows.fake_vector(w_type, plan.n, plan.vec),
            rows.fake_rows(x_type, plan.n, plan.vec),
            Float32(0.0),
            cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True),
            plan,
            options=rows.compile_options(gpu_arch, ptx_dir),
        )
    return _COMPILED[key]


def rmsnorm_plan(
    n: int,
    x_dtype: torch.dtype,
    w_dtype: torch.dtype,
    pointers: tuple[int, int, int] = (0, 0, 0),
    config: Mapping[str, Any] | None = None,
) -> RowPlan:
    """The tiling for rows of ``n``; ``pointers`` are x's, y's and the weight's data pointers."""
    x_bits, w_bits = torch.finfo(x_dtype).bits, torch.finfo(w_dtype).bits
    vector_bits = (config or {}).get("vector_bits", DEFAULT_CONFIG["vector_bits"])
    # One vector width (in elements) for x and the weight, so one thread layout serves both.
    operands = ((x_bits, pointers[0]), (x_bits, pointers[1]), (w_bits, pointers[2]))
    vec = vector_elements(n, vector_bits, operands)
    return plan_rows(n, vec, max(x_bits, w_bits), config)


def rmsnorm_cute(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    x2 = x.view(-1, n)
    y = torch.empty_like(x) if out is None else out
    y2 = y.view(-1, n)
    plan = rmsnorm_plan(n, x.dtype, weight.dtype, (x2.data_ptr(), y2.data_ptr(), weight.data_ptr()), config)
    if x2.shape[0] == 0:
        return y
    compile_rmsnorm(x.dtype, weight.dtype, plan)(x2, weight, y2, eps)
    return y


BACKENDS = [
    Backend(
        "rmsnorm",
        "cute",
        "cute",
        rmsnorm_cute,
        requires=("cutlass",),
        min_cc=(9, 0),
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    ),
]
