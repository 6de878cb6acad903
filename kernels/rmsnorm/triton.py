"""RMSNorm forward in Triton.

Three kernels, chosen by ``plan_rows`` (see ``kernels/triton_rows.py`` for why):
``_rmsnorm_tile`` holds one or more whole rows in registers; ``_rmsnorm_split`` spreads a long
row over several resident programs that exchange partial sums of squares through global memory,
so x is still read once; ``_rmsnorm_loop`` reads x twice (interpreter fallback).
Every load converts to float32 at once: the interpreter computes bf16 arithmetic on raw bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import triton
import triton.language as tl

from ..registry import Backend
from ..triton_rows import (
    CONFIG_SPACE,
    DEFAULT_CONFIG,
    EMPTY_SLOT,
    float_bits,
    learn_residency,
    next_power_of_2,
    plan_rows,
    publish_bits,
    wait_for_slots,
)


@triton.jit
def _rmsnorm_tile(
    x_ptr, w_ptr, y_ptr, M, N, stride_x, stride_y, eps, ROWS: tl.constexpr, BLOCK_N: tl.constexpr
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    col_mask = cols < N
    mask = (rows < M)[:, None] & col_mask[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N + eps)
    w = tl.load(w_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    y = x * rstd[:, None] * w[None, :]
    tl.store(y_ptr + rows64 * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_split(
    x_ptr,
    w_ptr,
    y_ptr,
    slots_ptr,
    M,
    N,
    stride_x,
    stride_y,
    eps,
    SPLIT: tl.constexpr,
    SPLIT_P2: tl.constexpr,
    CHUNK: tl.constexpr,
    PREFETCH: tl.constexpr,
    REREAD: tl.constexpr,
):
    # Program `part` of each group of SPLIT programs owns columns [part*CHUNK, (part+1)*CHUNK)
    # of every row the group handles: rows group, group + G, group + 2G, ...
    groups = tl.num_programs(0) // SPLIT
    group = tl.program_id(0) // SPLIT
    part = tl.program_id(0) % SPLIT
    cols = part * CHUNK + tl.arange(0, CHUNK)
    col_mask = cols < N
    if group < M:
        # Pipeline: x_prev is published and waits to be finished, x_cur is being published,
        # PREFETCH more rows are in flight. Rows stay in their loaded dtype until used, to save
        # registers.
        x_prev = tl.load(x_ptr + group.to(tl.int64) * stride_x + cols, mask=col_mask, other=0.0)
        first = x_prev.to(tl.float32)
        publish_bits(slots_ptr, group * SPLIT + part, float_bits(tl.sum(first * first, axis=0)))
        second = group + groups
        x_cur = tl.load(
            x_ptr + second.to(tl.int64) * stride_x + cols, mask=col_mask & (second < M), other=0.0
        )
        if PREFETCH == 2:
            third = second + groups
            x_ahead = tl.load(
                x_ptr + third.to(tl.int64) * stride_x + cols, mask=col_mask & (third < M), other=0.0
            )
        for row in range(second, M + groups, groups):
            following = row + PREFETCH * groups
            x_next = tl.load(
                x_ptr + following.to(tl.int64) * stride_x + cols, mask=col_mask & (following < M), other=0.0
            )
            if row < M:
                current = x_cur.to(tl.float32)
                publish_bits(slots_ptr, row * SPLIT + part, float_bits(tl.sum(current * current, axis=0)))
            done = row - groups
            bits = wait_for_slots(slots_ptr, done * SPLIT, SPLIT, SPLIT_P2)
            # Every program sums the partials in the same order: the result is deterministic.
            total = tl.sum(bits.to(tl.float32, bitcast=True), axis=0)
            rstd = tl.rsqrt(total / N + eps)
            if REREAD:
                # Read back from L2 (it was read one iteration ago) instead of holding it: the
                # registers go to more programs per SM, i.e. more bytes in flight.
                x_prev = tl.load(x_ptr + done.to(tl.int64) * stride_x + cols, mask=col_mask, other=0.0)
            # w is reloaded (from L1) every row rather than held: registers limit residency.
            w = tl.load(w_ptr + cols, mask=col_mask, other=0.0)
            y = x_prev.to(tl.float32) * rstd * w.to(tl.float32)
            tl.store(y_ptr + done.to(tl.int64) * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=col_mask)
            x_prev = x_cur
            if PREFETCH == 2:
                x_cur = x_ahead
                x_ahead = x_next
            else:
                x_cur = x_next


@triton.jit
def _rmsnorm_loop(x_ptr, w_ptr, y_ptr, N, stride_x, stride_y, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        x = tl.load(x_ptr + row * stride_x + cols, mask=cols < N, other=0.0).to(tl.float32)
        acc += x * x
    rstd = tl.rsqrt(tl.sum(acc, axis=0) / N + eps)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = cols < N
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + row * stride_y + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


def rmsnorm_triton(
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
    m = x2.shape[0]
    if m == 0:
        return y
    key = ("rmsnorm", x.dtype, weight.dtype)
    plan = plan_rows(m, n, x.device, config, residency_key=key)
    if plan.kind in ("rows", "row"):
        _rmsnorm_tile[(plan.grid,)](
            x2,
            weight,
            y2,
            m,
            n,
            x2.stride(0),
            y2.stride(0),
            eps,
            ROWS=plan.rows_per_program,
            BLOCK_N=plan.block_n,
            num_warps=plan.num_warps,
        )
    elif plan.kind == "split":
        slots = torch.full((m * plan.split,), EMPTY_SLOT, device=x.device, dtype=torch.int32)
        compiled = _rmsnorm_split[(plan.grid,)](
            x2,
            weight,
            y2,
            slots,
            m,
            n,
            x2.stride(0),
            y2.stride(0),
            eps,
            SPLIT=plan.split,
            SPLIT_P2=next_power_of_2(plan.split),
            CHUNK=plan.block_n,
            PREFETCH=plan.prefetch,
            REREAD=plan.reread,
            num_warps=plan.num_warps,
        )
        learn_residency(plan.residency_key, compiled, plan.num_warps)
    else:
        _rmsnorm_loop[(plan.grid,)](
            x2, weight, y2, n, x2.stride(0), y2.stride(0), eps, BLOCK_N=plan.block_n, num_warps=plan.num_warps
        )
    return y


BACKENDS = [
    Backend(
        "rmsnorm",
        "triton",
        "triton",
        rmsnorm_triton,
        requires=("triton",),
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    ),
]
