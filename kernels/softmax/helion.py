"""Softmax forward in Helion: kernels chosen by row length.

``_softmax_rows`` (N <= 32768): a program holds its rows in registers; max, exp, sum and scale
in one pass over x.  ``_softmax_online``: the two-pass online softmax, a running (max, sum of
exp) per row updated chunk by chunk, then a second pass writes exp(x - max) * (1 / sum); x is
read twice.  (Helion's ``reduction_loops`` could roll ``_softmax_rows`` over chunks too, but its
max and sum are then separate loops: x would be read three times.)  ``_softmax_split``: a row
is shared by up to 32 programs, each holding its chunk in registers; each publishes its chunk's
max and sum of exp to slots in global memory, waits for every part of its row, combines the
slots in a fixed order and writes its chunk: x is read once.  ``_softmax_split_keep`` (the
default for longer rows since session 9: 6-10 % faster than ``split`` on the H100) holds
exp(x - chunk max) instead of x, so the output is that times one per-part factor: one exp per
element instead of two, in the same registers.  ``_softmax_split_fenced`` is the split exchange
through a release/acquire arrival counter (the first design, kept to measure against).  The
config key ``"variant"`` ("rows", "online", "split", "split_fenced" or "split_keep") overrides
the choice; the rest are Helion config keys.

Every kernel works in base 2 (x * log2 e, then exp2), as the Triton and TileLang ones do:
Helion lowers torch.exp to libdevice's expf, about 8 more instructions an element than exp2's
ex2.approx (helper's static analysis at 01948b8: 608 against 384 SASS instructions a warp for the
32768-column row kernel, which runs one program an SM and cannot hide them behind its loads).
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
    softmax_online_config,
    split_block_range,
    split_variant_config,
    variant_and_overrides,
)
from ..registry import Backend

VARIANTS = ("rows", "online", "split", "split_fenced", "split_keep", "split_stream")


def _softmax_rows(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    for tile_m in hl.tile(m):
        # In base 2 (x * log2 e, then exp2; the literal because Helion passes module globals as
        # kernel arguments): torch.exp lowers to libdevice's expf, ~8 more instructions an element
        # (SASS compiled here: 608 against 384 a warp at 32768), and one program per SM never
        # hides them behind its loads.
        rows = x[tile_m, :].to(torch.float32) * 1.4426950408889634
        row_max = torch.amax(rows, dim=-1, keepdim=True)
        e = torch.exp2(rows - row_max)
        # One division per row, then a multiply per element.
        out[tile_m, :] = (e * (1.0 / torch.sum(e, dim=-1, keepdim=True))).to(out.dtype)
    return out


def _softmax_online(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    block_m = hl.register_block_size(m)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m, block_size=block_m):
        run_max = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        run_sum = hl.zeros([tile_m], dtype=torch.float32)
        for tile_n in hl.tile(n, block_size=block_n):
            chunk = x[tile_m, tile_n].to(torch.float32) * 1.4426950408889634  # base 2, as _softmax_rows
            new_max = torch.maximum(run_max, torch.amax(chunk, dim=-1))
            # While every column so far is -inf (masked scores) the max is -inf: exponentiate
            # against 0 instead, so those columns add 0 rather than NaN.
            safe_max = torch.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * torch.exp2(run_max - safe_max) + torch.sum(
                torch.exp2(chunk - safe_max[:, None]), dim=-1
            )
            run_max = new_max
        inv_sum = 1.0 / run_sum  # one division per row, then a multiply per element
        for tile_n in hl.tile(n, block_size=block_n):
            chunk = x[tile_m, tile_n].to(torch.float32) * 1.4426950408889634
            out[tile_m, tile_n] = (torch.exp2(chunk - run_max[:, None]) * inv_sum[:, None]).to(out.dtype)
    return out


def _softmax_split(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # Row r's part p publishes its max into slots[r, p] and its sum of exp into slots[r, 32 + p]:
    # two 128-byte lines per row (helion_configs.SPLIT_SLOTS_PER_ROW; literals because Helion
    # passes module globals as kernel arguments).  NaN marks "not yet published", so a NaN
    # partial (a NaN or +inf in the chunk) is published as +inf instead: the row's sum is then
    # inf * exp(inf - inf) = NaN, and the whole row is NaN, as in the float64 reference.
    slots = torch.full([m, 64], float("nan"), dtype=torch.float32, device=x.device)
    # Columns first: a row's parts are adjacent program ids (see helion_configs.SPLIT_REQUIRED).
    for tile_n, tile_m in hl.tile([n, m], block_size=[block_n, 1]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        chunk = x[tile_m, tile_n].to(torch.float32) * 1.4426950408889634  # base 2, as _softmax_rows
        chunk_max = torch.amax(chunk, dim=-1)
        # A chunk of only -inf (masked scores) exponentiates against 0: its sum is 0, not NaN.
        safe_max = torch.where(chunk_max == float("-inf"), 0.0, chunk_max)
        chunk_sum = torch.sum(torch.exp2(chunk - safe_max[:, None]), dim=-1)
        # Relaxed: each value is its own "published" flag, so nothing needs ordering around it
        # (a release atomic makes ptxas fence every load and store in flight: MEMBAR.ALL.GPU).
        published_max = torch.where(chunk_max != chunk_max, float("inf"), chunk_max)
        published_sum = torch.where(chunk_sum != chunk_sum, float("inf"), chunk_sum)
        hl.atomic_xchg(slots, [tile_m, tile_n.id], published_max, sem="relaxed")
        hl.atomic_xchg(slots, [tile_m, tile_n.id + 32], published_sum, sem="relaxed")
        part = hl.arange(32)
        used = (part < parts)[None, :]
        # Compare-and-swap of the empty mark with itself: an atomic read (at L2) that never
        # changes a published value.
        empty = torch.where(used, float("nan"), float("nan"))
        maxes = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
        sums = hl.atomic_cas(slots, [tile_m, part + 32], empty, empty, sem="relaxed")
        waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
        while waiting.sum() > 0:
            maxes = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
            sums = hl.atomic_cas(slots, [tile_m, part + 32], empty, empty, sem="relaxed")
            waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
        # Every part combines the same slots in the same order: all agree, run after run.
        row_max = torch.amax(torch.where(used, maxes, float("-inf")), dim=-1)
        safe_row_max = torch.where(row_max == float("-inf"), 0.0, row_max)
        # Each part's sum was taken against its own max: rescale it to the row's.
        part_safe = torch.where(maxes == float("-inf"), 0.0, maxes)
        rescaled = sums * torch.exp2(part_safe - safe_row_max[:, None])
        row_sum = torch.sum(torch.where(used, rescaled, 0.0), dim=-1)
        inv_sum = 1.0 / row_sum  # one division per row, then a multiply per element
        # As 0-d scalars (a tile_m is one row): broadcast as [1] tensors, the 32-slot vectors'
        # layout would spread to the chunk, 512 values per thread, and spill.
        out[tile_m, tile_n] = (torch.exp2(chunk - row_max.sum()) * inv_sum.sum()).to(out.dtype)
    return out


def _softmax_split_keep(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # The slots and the exchange are _softmax_split's (see there), written out again: Helion
    # refuses closures, so one body with a keep flag would need a constexpr kernel argument.
    slots = torch.full([m, 64], float("nan"), dtype=torch.float32, device=x.device)
    for tile_n, tile_m in hl.tile([n, m], block_size=[block_n, 1]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        chunk = x[tile_m, tile_n].to(torch.float32) * 1.4426950408889634  # base 2, as _softmax_rows
        chunk_max = torch.amax(chunk, dim=-1)
        safe_max = torch.where(chunk_max == float("-inf"), 0.0, chunk_max)
        # Kept instead of x (x is dead after this): the output needs no second exp per element.
        e = torch.exp2(chunk - safe_max[:, None])
        chunk_sum = torch.sum(e, dim=-1)
        published_max = torch.where(chunk_max != chunk_max, float("inf"), chunk_max)
        published_sum = torch.where(chunk_sum != chunk_sum, float("inf"), chunk_sum)
        hl.atomic_xchg(slots, [tile_m, tile_n.id], published_max, sem="relaxed")
        hl.atomic_xchg(slots, [tile_m, tile_n.id + 32], published_sum, sem="relaxed")
        part = hl.arange(32)
        used = (part < parts)[None, :]
        empty = torch.where(used, float("nan"), float("nan"))
        maxes = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
        sums = hl.atomic_cas(slots, [tile_m, part + 32], empty, empty, sem="relaxed")
        waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
        while waiting.sum() > 0:
            maxes = hl.atomic_cas(slots, [tile_m, part], empty, empty, sem="relaxed")
            sums = hl.atomic_cas(slots, [tile_m, part + 32], empty, empty, sem="relaxed")
            waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
        row_max = torch.amax(torch.where(used, maxes, float("-inf")), dim=-1)
        safe_row_max = torch.where(row_max == float("-inf"), 0.0, row_max)
        part_safe = torch.where(maxes == float("-inf"), 0.0, maxes)
        rescaled = sums * torch.exp2(part_safe - safe_row_max[:, None])
        row_sum = torch.sum(torch.where(used, rescaled, 0.0), dim=-1)
        # This part's factor, exp(chunk max - row max) / row sum, as a 0-d scalar (see
        # _softmax_split).  A chunk of only -inf has e = 0 and factor 0 / row sum: exp(0 - row
        # max) could overflow to inf when the row's max is very negative, and 0 * inf is NaN.  A
        # row of nothing but -inf has row sum 0, so 0 / 0: NaN, as the reference (and the other
        # variants) give.  A NaN or +inf anywhere in the row makes the row sum NaN, so every part
        # writes NaN, as the reference.
        chunk_max_0 = chunk_max.sum()
        total = row_sum.sum()
        factor = torch.where(
            chunk_max_0 == float("-inf"), 0.0 / total, torch.exp2(safe_max.sum() - safe_row_max.sum()) / total
        )
        out[tile_m, tile_n] = (e * factor).to(out.dtype)
    return out


def _softmax_split_stream(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # Rows per program (helion_configs.SPLIT_STREAM_ROWS by default): a Helion block size, so the
    # tuner can vary it.
    block_rows = hl.register_block_size(1, 64)
    # Written out again, as _softmax_split_keep is: Helion refuses closures, and a plain helper
    # function holding the shared arithmetic failed to lower (aten.slice in Inductor, 2b03ba1).
    # _softmax_split_keep's slots, exchange and arithmetic (see there and _softmax_split), one
    # row at a time over a block of rows: each program owns one part of the block's rows and
    # loads row r + 1's chunk before it waits on row r's exchange, so a load is in flight while
    # it spins.  The parts of a row block are adjacent program ids (columns first, as
    # helion_configs.SPLIT_REQUIRED keeps them) and walk the same rows in the same order: a part
    # waits only for the parts of its own row block, at the same row.
    slots = torch.full([m, 64], float("nan"), dtype=torch.float32, device=x.device)
    for tile_n, tile_b in hl.tile([n, m], block_size=[block_n, block_rows]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        part = hl.arange(32)
        used = (part < parts)[None, :]
        empty = torch.where(used, float("nan"), float("nan"))
        # Rows as [1] index tensors, not tiles: a tile's size is symbolic, so a chunk loaded
        # before the loop would not match the one carried round it.
        first = tile_b.begin + hl.zeros([1], dtype=torch.int32)
        # Carried in x's dtype and converted where it is used: the conversion would otherwise
        # wait for the load right after it is issued, before the exchange it should overlap.
        ahead = hl.load(x, [first, tile_n])
        for row in hl.grid(tile_b.begin, tile_b.end):
            r = row + hl.zeros([1], dtype=torch.int32)
            chunk = ahead.to(torch.float32) * 1.4426950408889634  # base 2, as _softmax_rows
            # The next row's chunk (none past the block's last row, which tile_b.end clamps to m).
            ahead = hl.load(x, [r + 1, tile_n], extra_mask=(r + 1 < tile_b.end)[:, None])
            chunk_max = torch.amax(chunk, dim=-1)
            safe_max = torch.where(chunk_max == float("-inf"), 0.0, chunk_max)
            e = torch.exp2(chunk - safe_max[:, None])
            chunk_sum = torch.sum(e, dim=-1)
            published_max = torch.where(chunk_max != chunk_max, float("inf"), chunk_max)
            published_sum = torch.where(chunk_sum != chunk_sum, float("inf"), chunk_sum)
            hl.atomic_xchg(slots, [r, tile_n.id], published_max, sem="relaxed")
            hl.atomic_xchg(slots, [r, tile_n.id + 32], published_sum, sem="relaxed")
            maxes = hl.atomic_cas(slots, [r, part], empty, empty, sem="relaxed")
            sums = hl.atomic_cas(slots, [r, part + 32], empty, empty, sem="relaxed")
            waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
            while waiting.sum() > 0:
                maxes = hl.atomic_cas(slots, [r, part], empty, empty, sem="relaxed")
                sums = hl.atomic_cas(slots, [r, part + 32], empty, empty, sem="relaxed")
                waiting = torch.sum((used & ((maxes != maxes) | (sums != sums))).to(torch.int32), dim=-1)
            row_max = torch.amax(torch.where(used, maxes, float("-inf")), dim=-1)
            safe_row_max = torch.where(row_max == float("-inf"), 0.0, row_max)
            part_safe = torch.where(maxes == float("-inf"), 0.0, maxes)
            rescaled = sums * torch.exp2(part_safe - safe_row_max[:, None])
            row_sum = torch.sum(torch.where(used, rescaled, 0.0), dim=-1)
            chunk_max_0 = chunk_max.sum()
            total = row_sum.sum()
            # As _softmax_split_keep's: 0 / row sum for a chunk of only -inf (NaN for a row of them).
            factor = torch.where(
                chunk_max_0 == float("-inf"),
                0.0 / total,
                torch.exp2(safe_max.sum() - safe_row_max.sum()) / total,
            )
            hl.store(out, [r, tile_n], (e * factor).to(out.dtype))
    return out


def _softmax_split_fenced(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    fewest_columns, most_columns = split_block_range(n)
    block_n = hl.register_block_size(fewest_columns, most_columns)
    # Row r's parts publish their max into slots [64 r, 64 r + 32) and their sum of exp into
    # [64 r + 32, 64 r + 64): two 128-byte lines per row (helion_configs.SPLIT_SLOTS_PER_ROW;
    # written as literals: Helion passes module globals as kernel arguments, and
    # hl.static_range needs a constant).
    slots = torch.empty([m * 64], dtype=torch.float32, device=x.device)
    arrivals = torch.zeros([m], dtype=torch.int32, device=x.device)
    # Columns first: a row's parts are adjacent program ids (see helion_configs.SPLIT_REQUIRED).
    for tile_n, tile_m in hl.tile([n, m], block_size=[block_n, 1]):
        parts = (n + tile_n.block_size - 1) // tile_n.block_size
        chunk = x[tile_m, tile_n].to(torch.float32) * 1.4426950408889634  # base 2, as _softmax_rows
        chunk_max = torch.amax(chunk, dim=-1)
        # A chunk of only -inf (masked scores) exponentiates against 0: its sum is 0, not NaN.
        safe_max = torch.where(chunk_max == float("-inf"), 0.0, chunk_max)
        chunk_sum = torch.sum(torch.exp2(chunk - safe_max[:, None]), dim=-1)
        hl.store(slots, [tile_m.index * 64 + tile_n.id], chunk_max)
        hl.store(slots, [tile_m.index * 64 + 32 + tile_n.id], chunk_sum)
        # Release: the slots' stores are visible to whoever sees the incremented count.
        hl.atomic_add(arrivals, [tile_m], 1, sem="release")
        seen = hl.atomic_add(arrivals, [tile_m], 0, sem="acquire")
        while seen.sum() < parts:
            seen = hl.atomic_add(arrivals, [tile_m], 0, sem="acquire")
        # Every part reads the same slots in the same order: all agree, run after run.
        row_max = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        row_sum = hl.zeros([tile_m], dtype=torch.float32)
        for part in hl.static_range(32):
            valid = hl.zeros([tile_m], dtype=torch.int32) + part < parts  # slots past the last part
            part_max = hl.load(slots, [tile_m.index * 64 + part], extra_mask=valid)
            # A masked slot loads 0, which must not count as a max: -inf instead.
            row_max = torch.maximum(row_max, torch.where(valid, part_max, float("-inf")))
        safe_row_max = torch.where(row_max == float("-inf"), 0.0, row_max)
        for part in hl.static_range(32):
            valid = hl.zeros([tile_m], dtype=torch.int32) + part < parts
            part_max = hl.load(slots, [tile_m.index * 64 + part], extra_mask=valid)
            part_sum = hl.load(slots, [tile_m.index * 64 + 32 + part], extra_mask=valid)
            # Each part's sum was taken against its own max: rescale it to the row's.  Slots
            # past the last part are masked out by the where (their exp may overflow).
            part_safe = torch.where(part_max == float("-inf"), 0.0, part_max)
            rescaled = part_sum * torch.exp2(part_safe - safe_row_max)
            row_sum = row_sum + torch.where(valid, rescaled, 0.0)
        inv_sum = 1.0 / row_sum  # one division per row, then a multiply per element
        out[tile_m, tile_n] = (torch.exp2(chunk - row_max[:, None]) * inv_sum[:, None]).to(out.dtype)
    return out


def shipped_variant(n: int) -> str:
    # split_keep: one exp an element instead of two; on the H100 (d526df4) 6.2 % faster than
    # split at 8192x65536 and 9.8 % at 4096x262144, numerics alike (NOTES.md, Session 9).
    return "rows" if next_power_of_2(n) <= MAX_ROW_IN_REGISTERS else "split_keep"


def _plan(n: int, config: Mapping[str, Any] | helion.Config | None) -> tuple[Any, dict[str, Any]]:
    """(kernel function, full Helion config) for rows of ``n`` columns."""
    variant, overrides = variant_and_overrides(config, VARIANTS, shipped_variant(n))
    if variant == "rows":
        return _softmax_rows, merge_config(rowwise_config(n), overrides)
    if variant == "online":
        return _softmax_online, merge_config(softmax_online_config(n), overrides)
    split_kernels = {
        "split": _softmax_split,
        "split_fenced": _softmax_split_fenced,
        "split_keep": _softmax_split_keep,
    }
    if variant == "split_stream":
        return _softmax_split_stream, split_variant_config(n, overrides, rows=SPLIT_STREAM_ROWS)
    return split_kernels[variant], split_variant_config(n, overrides)


KERNELS = RowwiseVariants(_plan, shipped_variant)


def shipped_config(x: torch.Tensor) -> dict[str, Any]:
    """The config (with its ``variant``) a call on ``x`` uses when none is given."""
    return KERNELS.shipped_config(x.shape[-1])


def softmax_helion(
    x: torch.Tensor, out: torch.Tensor | None = None, config: Mapping[str, Any] | helion.Config | None = None
) -> torch.Tensor:
    n = x.shape[-1]
    y = torch.empty_like(x) if out is None else out
    x2, y2 = x.view(-1, n), y.view(-1, n)
    if x2.shape[0] == 0:
        return y
    run_kernel(KERNELS.for_call(n, config), x2, y2)
    return y


def kernel_call(
    x: torch.Tensor, out: torch.Tensor | None = None, variant: str | None = None
) -> tuple[Any, tuple, bool, dict[str, Any]]:
    """(kernel function, its arguments, static_shapes, extra Settings) for these op arguments
    and kernel ``variant`` (default: the one x's N selects); see ``helion_configs``."""
    n = x.shape[-1]
    fn, _ = _plan(n, None if variant is None else {"variant": variant})
    y = torch.empty_like(x) if out is None else out
    return fn, (x.view(-1, n), y.view(-1, n)), False, {}


def meta_args(shape: Mapping[str, int], dtype: torch.dtype) -> tuple[Any, ...]:
    """Op arguments of this shape on the meta device (for the config space; no memory)."""
    return (torch.empty(shape["M"], shape["N"], dtype=dtype, device="meta"),)


BACKENDS = [
    Backend(
        "softmax",
        "helion",
        "helion",
        softmax_helion,
        requires=("helion",),
        devices=("cuda",),
        config_space=HelionConfigSpace("softmax"),
    ),
]
