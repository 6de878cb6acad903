"""RMSNorm forward in CuTe DSL: y = x * rsqrt(mean(x^2) + eps) * weight.

One CTA (or one thread-block cluster, for long rows) per tile of rows; the tile lives in
registers from a single pass of 128-bit loads, so x is read once and y written once.  The
tiling, the warp/CTA/cluster reductions and why they are shaped so are in
``kernels/cute_rows.py``.  One compile serves every M: kernels are compiled against a fake
tensor with a symbolic row count and cached per (dtypes, N, vector width, plan).

``x_staging: "smem"`` (a config key) stages x instead: ``cp.async`` copies the tile from
global to shared memory, the sum of squares is taken from a register copy that dies before the
exchange, and x is read again from shared memory for the output.  That is quack's design for
rows over 8K columns (``reload_from="smem"``), where the bytes in flight are issued without
holding registers and x's registers are not live across the cluster exchange.
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

#: When the weight is loaded into registers: "early" beside x (its latency hidden under x's),
#: or "late", after the row's sum of squares (fewer registers live across the exchange, which
#: lets long rows take more elements per thread).  The op's config space is the shared row
#: plan's plus this key.
WEIGHT_LOADS = ("early", "late")
DEFAULT_WEIGHT_LOAD = "early"
#: Where x's tile waits between its load and its use: "registers" (loaded straight into them) or
#: "smem" (cp.async into shared memory, read from there twice; see the module docstring).
X_STAGINGS = ("registers", "smem")
DEFAULT_X_STAGING = "registers"
#: cp.async copies 4, 8 or 16 bytes: narrower vectors (ragged bf16 rows) load into registers.
CP_ASYNC_BYTES = (4, 8, 16)
#: Largest x tile staged in shared memory (32 KiB at 262144 columns over 16 CTAs): above it the
#: tile would leave too few CTAs an SM, and x loads into registers instead.
MAX_STAGED_TILE_BYTES = 64 * 1024
RMSNORM_CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    **CONFIG_SPACE,
    "weight_load": WEIGHT_LOADS,
    "x_staging": X_STAGINGS,
}


def check_weight_load(weight_load: Any) -> str:
    if weight_load not in WEIGHT_LOADS:
        raise ValueError(f"weight_load: expected one of {WEIGHT_LOADS}, got {weight_load!r}")
    return weight_load


def check_x_staging(x_staging: Any) -> str:
    if x_staging not in X_STAGINGS:
        raise ValueError(f"x_staging: expected one of {X_STAGINGS}, got {x_staging!r}")
    return x_staging


def split_config(config: Mapping[str, Any] | None) -> tuple[dict[str, Any], str, str]:
    """(the row plan's part of ``config``, its weight_load, its x_staging)."""
    plan_config = dict(config or {})
    weight_load = check_weight_load(plan_config.pop("weight_load", DEFAULT_WEIGHT_LOAD))
    x_staging = check_x_staging(plan_config.pop("x_staging", DEFAULT_X_STAGING))
    return plan_config, weight_load, x_staging


def stages_x_in_smem(plan: RowPlan, x_bits: int, x_staging: str) -> bool:
    """Whether a call with this plan stages x in shared memory: asked for, and possible.

    ``x_staging`` is a speed setting, never a reason to fail: a baked "smem" config looked up
    for a nearby N whose accesses cp.async cannot make, or whose tile is too big, runs with x
    in registers."""
    vector_bytes = plan.vec * x_bits // 8
    tile_bytes = plan.rows_per_cta * plan.cols_per_cta * x_bits // 8
    return (
        check_x_staging(x_staging) == "smem"
        and vector_bytes in CP_ASYNC_BYTES
        and tile_bytes <= MAX_STAGED_TILE_BYTES
    )


@cute.kernel
def _rmsnorm_kernel(
    mX: cute.Tensor,
    mW: cute.Tensor,
    mY: cute.Tensor,
    eps: Float32,
    plan: cutlass.Constexpr[RowPlan],
    late_weight: cutlass.Constexpr[bool],
    stage_x: cutlass.Constexpr[bool],
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
    in_cols = rows.column_predicate(tXcX, n) if const_expr(plan.needs_column_predicate) else None
    if const_expr(stage_x):
        # Each thread later reads back exactly the vectors it copied, so waiting for its own
        # cp.async group is enough: no CTA barrier.  A thread past the last row copies nothing
        # and reduces whatever shared memory holds, for a row that is never stored.
        sX = smem.allocate_tensor(mX.element_type, cute.make_ordered_layout(tiler, order=(1, 0)),
                                  byte_alignment=16)
        tXsX = thr_x.partition_D(sX)
        if in_row:
            cute.copy(rows.make_async_copy_atom(mX.element_type, plan), tXgX, tXsX, pred=in_cols)
        cute.arch.cp_async_commit_group()
    elif in_row:
        cute.copy(x_atom, tXgX, tXrX, pred=in_cols)
    if const_expr(not late_weight):
        cute.copy(w_atom, tXgW, tXrW, pred=in_cols)
    if const_expr(stage_x):
        cute.arch.cp_async_wait_group(0)
        cute.copy(x_atom, tXsX, tXrX, pred=in_cols)  # columns past N stay 0

    x = tXrX.load().to(Float32)
    sum_sq = rows.row_sum((x * x).reduce(cute.ReductionOp.ADD, Float32(0.0), 0), partials, mbar_ptr, plan)
    rstd = cute.math.rsqrt(sum_sq / n + eps, fastmath=True)
    if const_expr(late_weight):
        # The weight's registers are not live across the loads of x and the exchange; its
        # latency (an L2 hit: every row reads the same weight) is paid after the exchange.
        cute.copy(w_atom, tXgW, tXrW, pred=in_cols)
    if const_expr(stage_x):
        # x again, from shared memory: the copy above is dead across the exchange.
        cute.copy(x_atom, tXsX, tXrX, pred=in_cols)
        x = tXrX.load().to(Float32)
    y = x * rstd * tXrW.load().to(Float32)
    tXrY.store(y.to(tXrY.element_type))
    if in_row:
        cute.copy(x_atom, tXrY, tXgY, pred=in_cols)


@cute.jit
def _rmsnorm_launch(
    mX: cute.Tensor,
    mW: cute.Tensor,
    mY: cute.Tensor,
    eps: Float32,
    stream: Any,
    plan: cutlass.Constexpr[RowPlan],
    late_weight: cutlass.Constexpr[bool],
    stage_x: cutlass.Constexpr[bool],
):
    _rmsnorm_kernel(mX, mW, mY, eps, plan, late_weight, stage_x).launch(
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
    weight_load: str = DEFAULT_WEIGHT_LOAD,
    x_staging: str = DEFAULT_X_STAGING,
) -> Any:
    """Compile (once per key) for any M; the result takes (x2d, weight, y2d, eps) torch arguments."""
    check_weight_load(weight_load)
    stage_x = stages_x_in_smem(plan, torch.finfo(x_dtype).bits, x_staging)
    key = (x_dtype, w_dtype, plan, gpu_arch, ptx_dir, weight_load, stage_x)
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
            weight_load == "late",
            stage_x,
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
    """The tiling for rows of ``n``; ``pointers`` are x's, y's and the weight's data pointers.

    ``config`` may hold ``weight_load`` and ``x_staging`` too (they do not change the tiling)."""
    config, _, _ = split_config(config)
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
    _, weight_load, x_staging = split_config(config)
    if x2.shape[0] == 0:
        return y
    kernel = compile_rmsnorm(x.dtype, weight.dtype, plan, weight_load=weight_load, x_staging=x_staging)
    kernel(x2, weight, y2, eps)
    return y


BACKENDS = [
    Backend(
        "rmsnorm",
        "cute",
        "cute",
        rmsnorm_cute,
        requires=("cutlass",),
        min_cc=(9, 0),
        config_space=RMSNORM_CONFIG_SPACE,
        default_config={**DEFAULT_CONFIG, "weight_load": DEFAULT_WEIGHT_LOAD, "x_staging": DEFAULT_X_STAGING},
        # Long rows with the weight loaded late (as many elements a thread as the softmax's), and
        # quack's long-row design: x staged in shared memory, 16-byte accesses.
        seed_configs=(
            {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 8, "vector_bits": 128,
             "x_staging": "smem"},
            {"cluster_size": 16, "threads_per_cta": 128, "vecs_per_thread": 32, "vector_bits": 64,
             "weight_load": "late"},
            {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 16, "vector_bits": 64,
             "weight_load": "late"},
        ),
    ),
]
