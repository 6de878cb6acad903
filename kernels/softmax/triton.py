"""Softmax forward in Triton (same row mapping as RMSNorm: see ``kernels/triton_rows.py``).

``_softmax_tile`` keeps whole rows in registers; ``_softmax_split`` spreads a long row over
resident programs that exchange (max, sum of exp) pairs — the online-softmax merge — so x is
read once; ``_softmax_loop`` is the online two-read fallback for the interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import triton
import triton.language as tl

from ..registry import Backend
from ..triton_rows import CONFIG_SPACE as ROW_CONFIG_SPACE
from ..triton_rows import DEFAULT_CONFIG as ROW_DEFAULT_CONFIG
from ..triton_rows import (
    EMPTY_SLOT,
    float_bits,
    learn_residency,
    next_power_of_2,
    plan_rows,
    publish_bits,
    wait_for_slots,
)

#: The row-wise space plus softmax's own choice for split rows: finish a published row from its
#: float32 exponentials (one exp2 per element, more registers) or from x (two).
CONFIG_SPACE = {**ROW_CONFIG_SPACE, "keep_exp": (False, True)}
DEFAULT_CONFIG = {**ROW_DEFAULT_CONFIG, "keep_exp": False}


@triton.jit
def _softmax_tile(x_ptr, y_ptr, M, N, stride_x, stride_y, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + rows64 * stride_x + cols[None, :], mask=mask, other=-float("inf")).to(tl.float32)
    # Rows past M are all -inf; their max is replaced by 0 so no NaN is ever computed.
    row_max = tl.max(x, axis=1)
    row_max = tl.where(rows < M, row_max, 0.0)
    e = tl.exp2((x - row_max[:, None]) * 1.4426950408889634)
    inv_sum = 1.0 / tl.where(rows < M, tl.sum(e, axis=1), 1.0)
    y = e * inv_sum[:, None]  # a multiply per element, not a division
    tl.store(y_ptr + rows64 * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _chunk_exp(x_raw):
    """This chunk's max and 2^(x - max) in base 2 (padding is -inf and adds 0).

    A chunk that is all -inf (masked scores) keeps max -inf for its partner programs, and uses 0
    locally so that its exponentials are 0 rather than NaN.
    """
    x = x_raw.to(tl.float32) * 1.4426950408889634
    chunk_max = tl.max(x, axis=0)
    local_max = tl.where(chunk_max == -float("inf"), 0.0, chunk_max)
    return tl.exp2(x - local_max), chunk_max, local_max


@triton.jit
def _publish_stats(slots_ptr, slot, chunk_max, chunk_sum):
    """Both floats travel in one 64-bit word (max in the high half), so one relaxed atomic
    publishes the pair and a reader can never see one half without the other."""
    high = float_bits(chunk_max).to(tl.int64) << 32
    low = float_bits(chunk_sum).to(tl.uint32, bitcast=True).to(tl.int64)  # zero-extended
    publish_bits(slots_ptr, slot, high | low)


@triton.jit
def _softmax_split(
    x_ptr,
    y_ptr,
    slots_ptr,
    M,
    N,
    stride_x,
    stride_y,
    SPLIT: tl.constexpr,
    SPLIT_P2: tl.constexpr,
    CHUNK: tl.constexpr,
    PREFETCH: tl.constexpr,
    REREAD: tl.constexpr,
    KEEP_EXP: tl.constexpr,
):
    # Same pipeline as RMSNorm's split kernel; the partials are online-softmax pairs. A published
    # row is finished from one of: its x held in registers (2 exponentials per element), x read
    # again from L2 (REREAD, same), or its exponentials held in float32 (KEEP_EXP: one
    # exponential per element, twice the registers). The exponentials are what bound softmax
    # next to RMSNorm at the same bytes.
    groups = tl.num_programs(0) // SPLIT
    group = tl.program_id(0) // SPLIT
    part = tl.program_id(0) % SPLIT
    cols = part * CHUNK + tl.arange(0, CHUNK)
    col_mask = cols < N
    valid = tl.arange(0, SPLIT_P2) < SPLIT  # arange needs a power of two; extra slots are masked
    if group < M:
        x_prev = tl.load(x_ptr + group.to(tl.int64) * stride_x + cols, mask=col_mask, other=-float("inf"))
        e_prev, max_prev, local_prev = _chunk_exp(x_prev)
        _publish_stats(slots_ptr, group * SPLIT + part, max_prev, tl.sum(e_prev, axis=0))
        second = group + groups
        x_cur = tl.load(
            x_ptr + second.to(tl.int64) * stride_x + cols, mask=col_mask & (second < M), other=-float("inf")
        )
        if PREFETCH == 2:
            third = second + groups
            x_ahead = tl.load(
                x_ptr + third.to(tl.int64) * stride_x + cols, mask=col_mask & (third < M), other=-float("inf")
            )
        for row in range(second, M + groups, groups):
            following = row + PREFETCH * groups
            x_next = tl.load(
                x_ptr + following.to(tl.int64) * stride_x + cols,
                mask=col_mask & (following < M),
                other=-float("inf"),
            )
            # Past the last row (the pipeline's drain) this is computed on padding and not used.
            e_cur, max_cur, local_cur = _chunk_exp(x_cur)
            if row < M:
                _publish_stats(slots_ptr, row * SPLIT + part, max_cur, tl.sum(e_cur, axis=0))
            done = row - groups
            pairs = wait_for_slots(slots_ptr, done * SPLIT, SPLIT, SPLIT_P2)
            maxes = tl.where(valid, (pairs >> 32).to(tl.int32).to(tl.float32, bitcast=True), -float("inf"))
            sums = tl.where(valid, pairs.to(tl.int32).to(tl.float32, bitcast=True), 0.0)
            row_max = tl.max(maxes, axis=0)
            inv_sum = 1.0 / tl.sum(sums * tl.exp2(maxes - row_max), axis=0)  # one division per row
            if KEEP_EXP:
                y = e_prev * (tl.exp2(local_prev - row_max) * inv_sum)
            else:
                if REREAD:
                    # Read back from L2 (see the RMSNorm split kernel) instead of holding it.
                    x_prev = tl.load(x_ptr + done.to(tl.int64) * stride_x + cols, mask=col_mask, other=0.0)
                y = tl.exp2(x_prev.to(tl.float32) * 1.4426950408889634 - row_max) * inv_sum
            tl.store(y_ptr + done.to(tl.int64) * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=col_mask)
            if KEEP_EXP:
                e_prev = e_cur
                local_prev = local_cur
            else:
                x_prev = x_cur
            if PREFETCH == 2:
                x_cur = x_ahead
                x_ahead = x_next
            else:
                x_cur = x_next


@triton.jit
def _softmax_loop(x_ptr, y_ptr, N, stride_x, stride_y, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    # Online softmax per lane: a running max and a running sum rescaled when the max grows.
    run_max = tl.full([BLOCK_N], -float("inf"), dtype=tl.float32)
    run_sum = tl.zeros([BLOCK_N], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        x = tl.load(x_ptr + row * stride_x + cols, mask=cols < N, other=-float("inf")).to(tl.float32)
        x = x * 1.4426950408889634
        new_max = tl.maximum(run_max, x)
        safe_max = tl.where(new_max == -float("inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp2(run_max - safe_max) + tl.exp2(x - safe_max)
        run_max = new_max
    row_max = tl.max(run_max, axis=0)
    safe_lane_max = tl.where(run_max == -float("inf"), row_max, run_max)
    inv_sum = 1.0 / tl.sum(run_sum * tl.exp2(safe_lane_max - row_max), axis=0)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = cols < N
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        y = tl.exp2(x * 1.4426950408889634 - row_max) * inv_sum
        tl.store(y_ptr + row * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton(
    x: torch.Tensor, out: torch.Tensor | None = None, config: Mapping[str, Any] | None = None
) -> torch.Tensor:
    n = x.shape[-1]
    x2 = x.view(-1, n)
    y = torch.empty_like(x) if out is None else out
    y2 = y.view(-1, n)
    m = x2.shape[0]
    if m == 0:
        return y
    keep_exp = (config or {}).get("keep_exp", DEFAULT_CONFIG["keep_exp"])
    if not isinstance(keep_exp, bool):
        raise ValueError(f"keep_exp: expected True or False, got {keep_exp!r}")
    key = ("softmax", x.dtype, keep_exp)
    plan = plan_rows(m, n, x.device, config, residency_key=key)
    if plan.kind in ("rows", "row"):
        _softmax_tile[(plan.grid,)](
            x2,
            y2,
            m,
            n,
            x2.stride(0),
            y2.stride(0),
            ROWS=plan.rows_per_program,
            BLOCK_N=plan.block_n,
            num_warps=plan.num_warps,
        )
    elif plan.kind == "split":
        slots = torch.full((m * plan.split,), EMPTY_SLOT, device=x.device, dtype=torch.int64)
        compiled = _softmax_split[(plan.grid,)](
            x2,
            y2,
            slots,
            m,
            n,
            x2.stride(0),
            y2.stride(0),
            SPLIT=plan.split,
            SPLIT_P2=next_power_of_2(plan.split),
            CHUNK=plan.block_n,
            PREFETCH=plan.prefetch,
            REREAD=plan.reread,
            KEEP_EXP=keep_exp,
            num_warps=plan.num_warps,
        )
        learn_residency(plan.residency_key, compiled, plan.num_warps)
    else:
        _softmax_loop[(plan.grid,)](
            x2, y2, n, x2.stride(0), y2.stride(0), BLOCK_N=plan.block_n, num_warps=plan.num_warps
        )
    return y


BACKENDS = [
    Backend(
        "softmax",
        "triton",
        "triton",
        softmax_triton,
        requires=("triton",),
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    ),
]
