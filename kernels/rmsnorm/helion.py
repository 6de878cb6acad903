"""RMSNorm forward in Helion: two kernels, chosen by row length.

``_rmsnorm_rows`` (N <= 32768): one ``hl.tile(m)`` loop over blocks of rows; each program
reduces its rows over all N columns.  Whether a row sits in registers (x read once) or is walked
in chunks (x read twice) is Helion's ``reduction_loops`` config.
``_rmsnorm_split_narrow`` (longer rows, variant ``split_narrow``): a row is shared by up to 32
programs, each holding its chunk in registers, as loaded (two bf16 values a register; see
there); each publishes its sum of squares to a slot in global memory, waits until every part
of its row has, adds the slots in a fixed order and scales its chunk: x is read once, and the
result does not depend on which part finished first.  ``_rmsnorm_split_fenced`` is the same
exchange through a release/acquire arrival counter (the first design, kept to measure against).
(``split``, the same kernel holding the float32 copy of its chunk across the exchange, needed
63 registers at 8192 columns x 8 warps against 48 and ran 4.7 % slower at 4096x262144 and
2.1 % at 8192x65536 on the H100; it was removed after that measurement: reports/h100/NOTES.md,
Session 16.)
``_rmsnorm_split_stream`` walks a block of rows per program (see there).  (A ``split_reread``
that let the chunk die after its sum of squares and read it again from L2 for the output held 72
registers instead of 105 and so 7 programs an SM instead of 4, and ran 3.5-13 % slower on the
H100; it was removed after that measurement: reports/h100/NOTES.md, Session 14.)
The config key ``"variant"`` (one of ``VARIANTS``) overrides the choice; the rest
are Helion config keys.  N is specialised (a compile-time constant), M is not (one compiled kernel serves
every token count).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import helion
import helion.language as hl
import torch

from ..helion_configs import (
    MAX_ROW_IN_REGISTERS,
    SPLIT_STREAM_ROWS,
    HelionConfigSpace,
    RowwiseVariants,
    merge_config,
    next_power_of_2,
    rowwise_config,
    run_kernel,
    split_block_range,
    split_variant_config,
    variant_and_overrides,
)
from ..registry import Backend

VARIANTS = ("rows", "split_narrow", "split_fenced", "split_stream")


def _rmsnorm_rows(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    for tile_m in hl.tile(m):
        # fp32 straight after the load: the accumulation and the scaling are in fp32.
        rows = x[tile_m, :].to(torch.float32)
        rstd = torch.rsqrt(torch.sum(rows * rows, dim=-1) / n + eps)
        scaled = rows * rstd[:, None] * weight[None, :].to(torch.float32)
        out[tile_m, :] = scaled.to(out.dtype)
    return out


def _rmsnorm_split_narrow(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor
) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # What waits across the exchange is the chunk as loaded, two bf16 values a register, not its
    # float32 copy (the removed ``split`` held that: 105 registers at 8192 x 4 warps, 63 at 8).
    # Converting twice does not do it by itself: Triton merges two identical conversions into
    # one, so for bf16 the second is written as the bit shift it is (a bf16 is the top half of
    # the float32 with the same value: exact).  Compiled for sm_90a: 87 registers at 8192 x 4
    # warps, 48 at 8, 80 at 16384 x 8: 5, 5 and 3 programs an SM against split's 4, 4 and 2
    # (4.7 % faster than split at 4096x262144 on the H100, 8192 x 8 warps).  fp16 and float32
    # take the plain conversion (split's arithmetic).
    # Row r's parts publish their sums of squares into slots[r, :32], one 128-byte line per row
    # (helion_configs.SPLIT_SLOTS_PER_ROW; literals because Helion passes module globals as
    # kernel arguments).  -1 marks "not yet published": a sum of squares is never negative (a
    # NaN one is published too, and propagates to its row).
    slots = torch.full([m, 32], -1.0, dtype=torch.float32, device=x.device)
    # Columns first: a row's parts are adjacent program ids (see helion_configs.SPLIT_REQUIRED).
    for tile_n, tile_m in hl.tile([n, m], block_size=[block_n, 1]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        held = x[tile_m, tile_n]
        chunk = held.to(torch.float32)
        # Relaxed: the value is its own "published" flag, so nothing needs ordering around it.
        # A release atomic (or a counter with acquire polls) makes ptxas fence every thread's
        # loads and stores in flight (MEMBAR.ALL.GPU) and invalidate L1 on each poll.
        hl.atomic_xchg(slots, [tile_m, tile_n.id], torch.sum(chunk * chunk, dim=-1), sem="relaxed")
        part = hl.arange(32)
        used = (part < parts)[None, :]
        # A compare-and-swap of the empty mark with itself: an atomic read (at L2) that never
        # changes a published value.
        empty = torch.where(used, -1.0, -1.0)
        seen = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
        waiting = torch.sum((used & (seen == -1.0)).to(torch.int32), dim=-1)
        while waiting.sum() > 0:
            seen = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
            waiting = torch.sum((used & (seen == -1.0)).to(torch.int32), dim=-1)
        # Every part adds the same slots in the same order: all agree on rstd, run after run.
        total = torch.sum(torch.where(used, seen, 0.0), dim=-1)
        rstd = torch.rsqrt(total / n + eps)
        # x's dtype is fixed when the kernel is specialised: one branch is compiled.
        if x.dtype == torch.bfloat16:
            widened = (held.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
        else:
            widened = held.to(torch.float32)
        scaled = widened * rstd[:, None] * weight[tile_n].to(torch.float32)[None, :]
        out[tile_m, tile_n] = scaled.to(out.dtype)
    return out


def _rmsnorm_split_stream(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor
) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # Rows per program (helion_configs.SPLIT_STREAM_ROWS by default): a Helion block size, so the
    # tuner can vary it.
    block_rows = hl.register_block_size(1, 64)
    # Written out again: Helion refuses closures, and a plain helper function holding shared
    # kernel arithmetic failed to lower (aten.slice in Inductor; tried on softmax at 2b03ba1).
    # _rmsnorm_split_narrow's slots and exchange (see there), one row at a time over a block of rows:
    # each program owns one part of the block's rows and loads row r + 1's chunk before it waits
    # on row r's exchange, so a load is in flight while it spins.  The parts of a row block are
    # adjacent program ids (columns first, as helion_configs.SPLIT_REQUIRED keeps them) and walk
    # the same rows in the same order: a part waits only for the parts of its row block, at the
    # same row.
    slots = torch.full([m, 32], -1.0, dtype=torch.float32, device=x.device)
    for tile_n, tile_b in hl.tile([n, m], block_size=[block_n, block_rows]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        part = hl.arange(32)
        used = (part < parts)[None, :]
        empty = torch.where(used, -1.0, -1.0)
        # The weight's chunk is the same for every row: loaded once, before the rows.
        w = weight[tile_n][None, :]
        # Rows as [1] index tensors, not tiles: a tile's size is symbolic, so a chunk loaded
        # before the loop would not match the one carried round it.
        first = tile_b.begin + hl.zeros([1], dtype=torch.int32)
        # Carried in x's dtype and converted where it is used: the conversion would otherwise
        # wait for the load right after it is issued, before the exchange it should overlap.
        ahead = hl.load(x, [first, tile_n])
        for row in hl.grid(tile_b.begin, tile_b.end):
            r = row + hl.zeros([1], dtype=torch.int32)
            chunk = ahead.to(torch.float32)
            # The next row's chunk (none past the block's last row, which tile_b.end clamps to m).
            ahead = hl.load(x, [r + 1, tile_n], extra_mask=(r + 1 < tile_b.end)[:, None])
            hl.atomic_xchg(slots, [r, tile_n.id], torch.sum(chunk * chunk, dim=-1), sem="relaxed")
            seen = hl.atomic_cas(slots, [r, part], empty, empty, sem="relaxed")
            waiting = torch.sum((used & (seen == -1.0)).to(torch.int32), dim=-1)
            while waiting.sum() > 0:
                seen = hl.atomic_cas(slots, [r, part], empty, empty, sem="relaxed")
                waiting = torch.sum((used & (seen == -1.0)).to(torch.int32), dim=-1)
            total = torch.sum(torch.where(used, seen, 0.0), dim=-1)
            # As a 0-d scalar (see softmax's _softmax_split): a [1] tensor would spread the
            # 32-slot vector's layout to the chunk.
            rstd = torch.rsqrt(total / n + eps).sum()
            hl.store(out, [r, tile_n], (chunk * rstd * w.to(torch.float32)).to(out.dtype))
    return out


def _rmsnorm_split_fenced(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor
) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # Row r's parts publish into slots [32 r, 32 r + 32): a 128-byte line per row (see
    # helion_configs.SPLIT_SLOTS_PER_ROW;
    # written as literals: Helion passes module globals as kernel arguments, and
    # hl.static_range needs a constant); ``arrivals`` counts the parts that have published.
    # Both are allocated per call (the zeroing is one small memset before the kernel).
    slots = torch.empty([m * 32], dtype=torch.float32, device=x.device)
    arrivals = torch.zeros([m], dtype=torch.int32, device=x.device)
    # Columns first: a row's parts are adjacent program ids (see helion_configs.SPLIT_REQUIRED).
    for tile_n, tile_m in hl.tile([n, m], block_size=[block_n, 1]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        chunk = x[tile_m, tile_n].to(torch.float32)
        hl.store(slots, [tile_m.index * 32 + tile_n.id], torch.sum(chunk * chunk, dim=-1))
        # Release: the slot's store is visible to whoever sees the incremented count.
        hl.atomic_add(arrivals, [tile_m], 1, sem="release")
        seen = hl.atomic_add(arrivals, [tile_m], 0, sem="acquire")
        while seen.sum() < parts:
            seen = hl.atomic_add(arrivals, [tile_m], 0, sem="acquire")
        # Every part adds the same slots in the same order: all agree on rstd, run after run.
        total = hl.zeros([tile_m], dtype=torch.float32)
        for part in hl.static_range(32):
            valid = hl.zeros([tile_m], dtype=torch.int32) + part < parts  # slots past the last part
            total = total + hl.load(slots, [tile_m.index * 32 + part], extra_mask=valid)
        rstd = torch.rsqrt(total / n + eps)
        scaled = chunk * rstd[:, None] * weight[tile_n].to(torch.float32)[None, :]
        out[tile_m, tile_n] = scaled.to(out.dtype)
    return out


def shipped_variant(n: int) -> str:
    return "rows" if next_power_of_2(n) <= MAX_ROW_IN_REGISTERS else "split_narrow"


def _plan(n: int, config: Mapping[str, Any] | helion.Config | None) -> tuple[Any, dict[str, Any]]:
    """(kernel function, full Helion config) for rows of ``n`` columns."""
    variant, overrides = variant_and_overrides(config, VARIANTS, shipped_variant(n))
    if variant == "rows":
        return _rmsnorm_rows, merge_config(rowwise_config(n), overrides)
    if variant == "split_stream":
        return _rmsnorm_split_stream, split_variant_config(n, overrides, rows=SPLIT_STREAM_ROWS)
    split_kernels = {
        "split_narrow": _rmsnorm_split_narrow,
        "split_fenced": _rmsnorm_split_fenced,
    }
    return split_kernels[variant], split_variant_config(n, overrides)


KERNELS = RowwiseVariants(_plan, shipped_variant)


def shipped_config(x: torch.Tensor, *_: Any) -> dict[str, Any]:
    """The config (with its ``variant``) a call on ``x`` (weight, eps) uses when none is given."""
    return KERNELS.shipped_config(x.shape[-1])


def rmsnorm_helion(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | helion.Config | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    y = torch.empty_like(x) if out is None else out
    x2, y2 = x.view(-1, n), y.view(-1, n)
    if x2.shape[0] == 0:
        return y
    run_kernel(KERNELS.for_call(n, config), x2, weight, float(eps), y2)
    return y


def kernel_call(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    variant: str | None = None,
) -> tuple[Any, tuple, bool, dict[str, Any]]:
    """(kernel function, its arguments, static_shapes, extra Settings) for these op arguments
    and kernel ``variant`` (default: the one x's N selects): what ``helion_configs`` binds to get
    Helion's ConfigSpec or to run Helion's autotuner."""
    n = x.shape[-1]
    fn, _ = _plan(n, None if variant is None else {"variant": variant})
    y = torch.empty_like(x) if out is None else out
    return fn, (x.view(-1, n), weight, float(eps), y.view(-1, n)), False, {}


def meta_args(shape: Mapping[str, int], dtype: torch.dtype) -> tuple[Any, ...]:
    """Op arguments of this shape on the meta device (for the config space; no memory)."""
    x = torch.empty(shape["M"], shape["N"], dtype=dtype, device="meta")
    return x, torch.empty(shape["N"], dtype=dtype, device="meta"), 1e-6


BACKENDS = [
    Backend(
        "rmsnorm",
        "helion",
        "helion",
        rmsnorm_helion,
        requires=("helion",),
        devices=("cuda",),
        config_space=HelionConfigSpace("rmsnorm"),
    ),
]
