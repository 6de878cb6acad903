"""Softmax forward in TileLang (same row mapping as RMSNorm: see ``row_kernel_key`` in
``kernels/tilelang_common.py``).

* ``rows``: whole rows, padded to a power of two, in register fragments: one read, a block
  max-reduce and sum-reduce per row, one write. Padding columns are set to -inf after the load
  (the copy zero-fills them, and a zero could be the maximum). Rows past M load as zeros, so
  they stay finite, and their stores are predicated off.
* ``resident`` / ``chunked``: longer rows, one per block. Pass 1 is an online softmax over
  ``chunk``-column steps: a block max per chunk, and a per-thread running sum of exp rescaled
  when the max grows (one exp per element plus one per chunk). Pass 2 writes exp(x - max) * (1 / sum).
  ``resident`` copies the row into shared memory first and both passes read it there (x read
  once); ``chunked`` (rows too long for shared memory, up to 262144) reads x in both passes.
* ``cluster`` (``cluster_size`` > 1, long rows): one row per thread-block cluster, a slice per
  CTA in registers. Each CTA exponentiates its slice against its own max and sums, swaps
  (max, sum) with its peers through distributed shared memory, then rescales its held
  exponentials by exp(own max - row max) / row sum: x read once, one exp per element.
  ``cluster_shared`` holds the slice in shared memory instead (several CTAs per SM): an online
  softmax over its chunks gives the CTA's (max, sum), swapped as bulk copies between SMs; a
  second walk writes exp(x - row max) / row sum (two exps per element, x still read once).
  ``cluster_bulk`` is ``cluster_shared`` with the slice brought in by one asynchronous bulk copy.
  With ``cluster_walk`` "lean" (``cluster_shared_lean`` / ``cluster_bulk_lean``) the online
  softmax's block max per chunk (a CTA-wide all-reduce, about 7 barriers, each chunk) gives way
  to a walk keeping a running max per element and one all-reduce, then a walk summing exp2
  against that max and one all-reduce: three walks of shared memory instead of two, no barrier
  inside any, the same two exps per element.

Everything is computed in base 2 (x * log2 e, then exp2), which is what exp lowers to anyway.
"""

# No `from __future__ import annotations`: T.prim_func evaluates its parameters' annotations,
# which name the builder's locals (dtype, n), and string annotations lose that closure.
from collections.abc import Mapping
from typing import Any

import tilelang.language as T
import torch

from ..registry import Backend
from ..tilelang_common import (
    PARTIAL_WIDTH,
    ROW_CONFIG_SPACE,
    ROW_DEFAULT_CONFIG,
    ROW_SEED_CONFIGS,
    SHARED_SLICE_KINDS,
    check_bulk_alignment,
    cluster_cta_rank,
    cluster_swap_macros,
    compiled_kernel,
    misaligned,
    padded_row,
    row_kernel_key,
    slice_bulk_load_macros,
    tilelang_dtype,
)

LOG2_E = 1.4426950408889634


def build_softmax(
    n: int, dtype: str, kind: str, block_n: int, rows: int, threads: int, num_stages: int
) -> Any:
    """The softmax ``T.prim_func`` for rows of ``n`` elements; ``kind`` as in ``row_kernel_key``."""
    m = T.dynamic("M")
    accum = "float32"

    if kind == "rows":

        @T.prim_func
        def softmax_rows(x: T.Tensor((m, n), dtype), y: T.Tensor((m, n), dtype)):
            with T.Kernel(T.ceildiv(m, rows), threads=threads) as block:
                x_tile = T.alloc_fragment((rows, block_n), accum)
                row_max = T.alloc_fragment((rows,), accum)
                row_sum = T.alloc_fragment((rows,), accum)
                T.copy(x[block * rows, 0], x_tile)
                for i, j in T.Parallel(rows, block_n):
                    x_tile[i, j] = T.if_then_else(j < n, x_tile[i, j] * LOG2_E, -T.infinity(accum))
                T.reduce_max(x_tile, row_max, dim=1)
                for i, j in T.Parallel(rows, block_n):
                    x_tile[i, j] = T.exp2(x_tile[i, j] - row_max[i])
                T.reduce_sum(x_tile, row_sum, dim=1)
                # One division per row; a multiply per element (a division is ~10 instructions).
                for i in T.Parallel(rows):
                    row_sum[i] = 1.0 / row_sum[i]
                for i, j in T.Parallel(rows, block_n):
                    x_tile[i, j] = x_tile[i, j] * row_sum[i]
                T.copy(x_tile, y[block * rows, 0])

        return softmax_rows

    if kind == "cluster":
        return _build_softmax_cluster(n, dtype, block_n, rows, threads)
    if kind in SHARED_SLICE_KINDS:
        return _build_softmax_cluster_shared(
            n, dtype, block_n, rows, threads,
            bulk=kind.startswith("cluster_bulk"), lean=kind.endswith("_lean"),
        )

    chunk = block_n
    num_chunks = (n + chunk - 1) // chunk
    resident = kind == "resident"
    # Where the walks over the row read from: shared memory (resident) or global memory.
    staged_shape = (num_chunks * chunk,) if resident else (1,)

    @T.prim_func
    def softmax_long_rows(x: T.Tensor((m, n), dtype), y: T.Tensor((m, n), dtype)):
        with T.Kernel(m, threads=threads) as row:
            row_shared = T.alloc_shared(staged_shape, dtype)
            x_chunk = T.alloc_fragment((chunk,), accum)
            sum_exp = T.alloc_fragment((chunk,), accum)
            chunk_max = T.alloc_fragment((1,), accum)
            running_max = T.alloc_fragment((1,), accum)
            previous_max = T.alloc_fragment((1,), accum)
            safe_max = T.alloc_fragment((1,), accum)
            total = T.alloc_fragment((1,), accum)
            T.clear(sum_exp)
            T.fill(running_max, -T.infinity(accum))
            if resident:
                # One copy of the whole row: every load of it is in flight at once.
                T.copy(x[row, 0], row_shared)
            for step in T.Pipelined(num_chunks, num_stages=num_stages):
                if resident:
                    T.copy(row_shared[step * chunk : (step + 1) * chunk], x_chunk)
                else:
                    T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    x_chunk[j] = T.if_then_else(step * chunk + j < n, x_chunk[j] * LOG2_E, -T.infinity(accum))
                T.reduce_max(x_chunk, chunk_max, dim=0)
                for j in T.Parallel(1):
                    previous_max[j] = running_max[j]
                    running_max[j] = T.max(running_max[j], chunk_max[j])
                    # While every column so far is -inf (masked scores), exponentiate against 0:
                    # those columns add 0 instead of NaN. exp2(-inf - finite) = 0 rescales the
                    # empty sum of the first chunk.
                    safe_max[j] = T.if_then_else(running_max[j] == -T.infinity(accum), 0.0, running_max[j])
                for j in T.Parallel(chunk):
                    sum_exp[j] = sum_exp[j] * T.exp2(previous_max[0] - safe_max[0]) + T.exp2(
                        x_chunk[j] - safe_max[0]
                    )
            T.reduce_sum(sum_exp, total, dim=0)
            for j in T.Parallel(1):
                total[j] = 1.0 / total[j]  # so pass 2 multiplies instead of dividing
            # Walk the row backwards: its tail is the part most likely still in L2.
            for back in T.Pipelined(num_chunks, num_stages=num_stages):
                step = num_chunks - 1 - back
                if resident:
                    T.copy(row_shared[step * chunk : (step + 1) * chunk], x_chunk)
                else:
                    T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    x_chunk[j] = T.exp2(x_chunk[j] * LOG2_E - running_max[0]) * total[0]
                T.copy(x_chunk, y[row, step * chunk])

    return softmax_long_rows


def _build_softmax_cluster(n: int, dtype: str, slice_n: int, cluster: int, threads: int) -> Any:
    m = T.dynamic("M")
    accum = "float32"
    neg_inf = -T.infinity(accum)

    @T.prim_func
    def softmax_cluster(x: T.Tensor((m, n), dtype), y: T.Tensor((m, n), dtype)):
        with T.Kernel(m * cluster, threads=threads, cluster_dims=cluster) as block:
            row = block // cluster
            rank = T.block_rank_in_cluster()
            x_slice = T.alloc_fragment((slice_n,), accum)
            own_max = T.alloc_fragment((1,), accum)
            own_sum = T.alloc_fragment((1,), accum)
            safe_max = T.alloc_fragment((1,), accum)
            peer_max = T.alloc_fragment((cluster,), accum)
            peer_sum = T.alloc_fragment((cluster,), accum)
            row_max = T.alloc_fragment((1,), accum)
            row_sum = T.alloc_fragment((1,), accum)
            factor = T.alloc_fragment((1,), accum)
            # own_shared: this CTA's (max, sum); slots[2r], slots[2r + 1]: CTA r's, written by it.
            own_shared = T.alloc_shared((2,), accum)
            slots = T.alloc_shared((2 * cluster,), accum)
            T.copy(x[row, rank * slice_n], x_slice)
            for j in T.Parallel(slice_n):
                x_slice[j] = T.if_then_else(rank * slice_n + j < n, x_slice[j] * LOG2_E, neg_inf)
            T.reduce_max(x_slice, own_max, dim=0)
            for j in T.Parallel(1):
                # A slice of nothing but -inf (masked scores) exponentiates against 0: zeros, not NaN.
                safe_max[j] = T.if_then_else(own_max[j] == neg_inf, 0.0, own_max[j])
            for j in T.Parallel(slice_n):
                x_slice[j] = T.exp2(x_slice[j] - safe_max[0])
            T.reduce_sum(x_slice, own_sum, dim=0)
            for j in T.Parallel(1):
                own_shared[0] = own_max[j]
                own_shared[1] = own_sum[j]
            # Every CTA of the cluster has started (its shared memory exists) before any writes.
            T.cluster_sync()
            for peer in T.serial(cluster):
                T.copy_cluster(own_shared, slots[2 * rank : 2 * rank + 2], dst_block=peer)
            # Release/acquire: every slot written in every CTA is visible after the barrier.
            T.cluster_sync()
            for r in T.Parallel(cluster):
                peer_max[r] = slots[2 * r]
            T.reduce_max(peer_max, row_max, dim=0)
            for r in T.Parallel(cluster):
                # exp2(-inf - finite) = 0 drops a masked slice; an all -inf row gives NaN (as torch).
                peer_sum[r] = slots[2 * r + 1] * T.exp2(slots[2 * r] - row_max[0])
            T.reduce_sum(peer_sum, row_sum, dim=0)
            for j in T.Parallel(1):
                # A masked slice holds zeros; its factor must not be exp2(0 - row max) = inf.
                # (A row of nothing but -inf keeps the NaN of 0 * inf, as torch gives.)
                factor[j] = T.if_then_else(
                    (own_max[j] == neg_inf) & (row_max[j] != neg_inf),
                    0.0,
                    T.exp2(safe_max[j] - row_max[j]) / row_sum[j],
                )
            for j in T.Parallel(slice_n):
                x_slice[j] = x_slice[j] * factor[0]
            T.copy(x_slice, y[row, rank * slice_n])

    return softmax_cluster


def _build_softmax_cluster_shared(
    n: int, dtype: str, chunk: int, cluster: int, threads: int, bulk: bool = False, lean: bool = False
) -> Any:
    """``cluster_shared``, or with ``bulk`` ``cluster_bulk`` (the slice loaded by a bulk copy);
    ``lean``: the CTA's (max, sum) from two barrier-free walks (``cluster_walk``)."""
    m = T.dynamic("M")
    accum = "float32"
    neg_inf = -T.infinity(accum)
    slice_n = padded_row(n) // cluster
    num_chunks = slice_n // chunk
    swap_prologue, swap_partials = cluster_swap_macros(cluster, PARTIAL_WIDTH)
    issue_load, wait_load = slice_bulk_load_macros(n, cluster, dtype) if bulk else (None, None)

    @T.prim_func
    def softmax_cluster_shared(x: T.Tensor((m, n), dtype), y: T.Tensor((m, n), dtype)):
        with T.Kernel(m * cluster, threads=threads, cluster_dims=cluster) as block:
            row = block // cluster
            rank = cluster_cta_rank(block, cluster, provable=bulk)
            slice_shared = T.alloc_shared((slice_n,), dtype)
            x_chunk = T.alloc_fragment((chunk,), accum)
            sum_exp = T.alloc_fragment((chunk,), accum)
            chunk_max = T.alloc_fragment((1,), accum)
            running_max = T.alloc_fragment((1,), accum)
            previous_max = T.alloc_fragment((1,), accum)
            safe_max = T.alloc_fragment((1,), accum)
            own_sum = T.alloc_fragment((1,), accum)
            # own_shared[0, :2]: this CTA's (max, sum of exp against it); slots[r, :2]: CTA r's.
            own_shared = T.alloc_shared((1, PARTIAL_WIDTH), accum)
            slots = T.alloc_shared((cluster, PARTIAL_WIDTH), accum)
            received = T.alloc_barrier([cluster])
            row_max = T.alloc_var(accum)
            row_sum = T.alloc_var(accum)
            if lean:
                # Per element position of a chunk: the largest x seen there over the chunks.
                element_max = T.alloc_fragment((chunk,), accum)
            if bulk:
                loaded = T.alloc_barrier([1])
                # Started before the prologue, which then runs while the slice is in flight.
                issue_load(x, row, rank, slice_shared, loaded)
            swap_prologue(slots)
            if bulk:
                wait_load(loaded)
            else:
                # Columns past N load as zeros here and are masked to -inf below.
                T.copy(x[row, rank * slice_n], slice_shared)
            T.clear(sum_exp)
            if lean:
                T.fill(element_max, neg_inf)
                # Elementwise: no exp, no barrier; the block reduces once, after the walk.
                for step in T.serial(num_chunks):
                    T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                    for j in T.Parallel(chunk):
                        element_max[j] = T.max(
                            element_max[j],
                            T.if_then_else(rank * slice_n + step * chunk + j < n, x_chunk[j], neg_inf),
                        )
                T.reduce_max(element_max, running_max, dim=0)
                for j in T.Parallel(1):
                    # Scaling by log2 e > 0 is monotonic, rounding too: the max of the scaled x.
                    running_max[j] = running_max[j] * LOG2_E
                    safe_max[j] = T.if_then_else(running_max[j] == neg_inf, 0.0, running_max[j])
                for step in T.serial(num_chunks):
                    T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                    for j in T.Parallel(chunk):
                        sum_exp[j] += T.if_then_else(
                            rank * slice_n + step * chunk + j < n,
                            T.exp2(x_chunk[j] * LOG2_E - safe_max[0]),
                            0.0,
                        )
            else:
                T.fill(running_max, neg_inf)
                # The online softmax of the resident kernel (see there), over this CTA's slice.
                for step in T.serial(num_chunks):
                    T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                    for j in T.Parallel(chunk):
                        x_chunk[j] = T.if_then_else(
                            rank * slice_n + step * chunk + j < n, x_chunk[j] * LOG2_E, neg_inf
                        )
                    T.reduce_max(x_chunk, chunk_max, dim=0)
                    for j in T.Parallel(1):
                        previous_max[j] = running_max[j]
                        running_max[j] = T.max(running_max[j], chunk_max[j])
                        safe_max[j] = T.if_then_else(running_max[j] == neg_inf, 0.0, running_max[j])
                    for j in T.Parallel(chunk):
                        sum_exp[j] = sum_exp[j] * T.exp2(previous_max[0] - safe_max[0]) + T.exp2(
                            x_chunk[j] - safe_max[0]
                        )
            T.reduce_sum(sum_exp, own_sum, dim=0)
            own_shared[0, 0] = running_max[0]
            own_shared[0, 1] = own_sum[0]
            swap_partials(own_shared, slots, received, rank)
            row_max = neg_inf
            for r in T.serial(cluster):
                row_max = T.max(row_max, slots[r, 0])
            row_sum = 0.0
            for r in T.serial(cluster):
                # A slice of only -inf summed nothing; exp2(0 - row max) could overflow, 0 * inf
                # is NaN.  (A row of only -inf gets a NaN sum, as torch gives.)
                row_sum += T.if_then_else(
                    (slots[r, 0] == neg_inf) & (row_max != neg_inf),
                    0.0,
                    slots[r, 1] * T.exp2(slots[r, 0] - row_max),
                )
            row_sum = 1.0 / row_sum  # so the walk multiplies instead of dividing
            for step in T.serial(num_chunks):
                T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    x_chunk[j] = T.exp2(x_chunk[j] * LOG2_E - row_max) * row_sum
                T.copy(x_chunk, y[row, rank * slice_n + step * chunk])
            # No CTA leaves while a peer's copy may still read its shared memory.
            T.cluster_wait()

    return softmax_cluster_shared


def kernel_key(x_dtype: torch.dtype, n: int, config: Mapping[str, Any] | None) -> tuple:
    return (n, tilelang_dtype(x_dtype), *row_kernel_key(n, x_dtype.itemsize, config))


def softmax_tilelang(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    key = kernel_key(x.dtype, n, config)  # validates config even when M == 0
    check_bulk_alignment(key[2], x=x)
    y = torch.empty_like(x) if out is None else out
    x2 = x.view(-1, n)
    if x2.shape[0] == 0:
        return y
    kernel = compiled_kernel(build_softmax, key)
    kernel(x2, y.view(-1, n))
    return y


def _supports(x: torch.Tensor) -> str | None:
    return misaligned(x=x)


BACKENDS = [
    Backend(
        "softmax",
        "tilelang",
        "tilelang",
        softmax_tilelang,
        requires=("tilelang",),
        supports=_supports,
        config_space=ROW_CONFIG_SPACE,
        default_config=ROW_DEFAULT_CONFIG,
        seed_configs=ROW_SEED_CONFIGS,
    ),
]
