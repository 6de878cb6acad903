"""RMSNorm forward in TileLang.

Five kernels, chosen by ``row_kernel_key`` (``kernels/tilelang_common.py``):

* ``rows``: a block holds ``rows`` whole rows, padded to a power of two ``block_n``, in
  register fragments; one vectorised read of x, a block all-reduce per row, one write of y.
  The copies' boundary predicates zero the padding columns and rows past M (zeros add nothing
  to the sum of squares) and skip their stores.
* ``resident`` (rows too long for registers that fit in shared memory, e.g. 65536 bf16) and
  ``chunked`` (longer rows, up to 262144): one row per block; a loop over ``chunk`` columns
  accumulates squares elementwise, one all-reduce at the end, then a second loop normalises.
  ``resident`` first copies the whole row into shared memory and both loops read it from there
  (x read once); ``chunked`` reads x from global memory in both loops (x read twice; the second,
  backwards walk starts with what is most likely still in L2).
* ``cluster`` / ``cluster_shared`` / ``cluster_bulk`` (``cluster_size`` > 1): a row per
  thread-block cluster, a slice per CTA, held in registers (``cluster``) or in shared memory and
  walked in chunks (``cluster_shared``: fewer registers, so several CTAs per SM; ``cluster_bulk``:
  the same, the slice brought in by one asynchronous bulk copy); the CTAs swap their sums of
  squares through distributed shared memory (x read once).  With ``cluster_walk`` "lean"
  (``cluster_shared_lean`` / ``cluster_bulk_lean``) the finishing walk loads chunk s + 1's
  weight before it finishes chunk s, so no chunk's stores wait on a load from global memory.

M is symbolic: one compile per (dtype, weight dtype, N, plan) serves every M.
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


def build_rmsnorm(
    n: int, dtype: str, weight_dtype: str, kind: str, block_n: int, rows: int, threads: int, num_stages: int
) -> Any:
    """The RMSNorm ``T.prim_func`` for rows of ``n`` elements; ``kind`` as in ``row_kernel_key``."""
    m = T.dynamic("M")
    accum = "float32"

    if kind == "rows":

        @T.prim_func
        def rmsnorm_rows(
            x: T.Tensor((m, n), dtype),
            weight: T.Tensor((n,), weight_dtype),
            y: T.Tensor((m, n), dtype),
            eps: T.float32,
        ):
            with T.Kernel(T.ceildiv(m, rows), threads=threads) as block:
                x_tile = T.alloc_fragment((rows, block_n), accum)
                squares = T.alloc_fragment((rows, block_n), accum)
                rstd = T.alloc_fragment((rows,), accum)
                T.copy(x[block * rows, 0], x_tile)
                for i, j in T.Parallel(rows, block_n):
                    squares[i, j] = x_tile[i, j] * x_tile[i, j]
                T.reduce_sum(squares, rstd, dim=1)
                for i in T.Parallel(rows):
                    rstd[i] = T.rsqrt(rstd[i] / n + eps)
                for i, j in T.Parallel(rows, block_n):
                    x_tile[i, j] = x_tile[i, j] * rstd[i] * weight[j]
                T.copy(x_tile, y[block * rows, 0])

        return rmsnorm_rows

    if kind == "cluster":
        return _build_rmsnorm_cluster(n, dtype, weight_dtype, block_n, rows, threads)
    if kind in SHARED_SLICE_KINDS:
        return _build_rmsnorm_cluster_shared(
            n, dtype, weight_dtype, block_n, rows, threads,
            bulk=kind.startswith("cluster_bulk"), lean=kind.endswith("_lean"),
        )

    chunk = block_n
    num_chunks = (n + chunk - 1) // chunk
    resident = kind == "resident"
    # Where the walks over the row read from: shared memory (resident) or global memory.
    staged_shape = (num_chunks * chunk,) if resident else (1,)

    @T.prim_func
    def rmsnorm_long_rows(
        x: T.Tensor((m, n), dtype),
        weight: T.Tensor((n,), weight_dtype),
        y: T.Tensor((m, n), dtype),
        eps: T.float32,
    ):
        with T.Kernel(m, threads=threads) as row:
            row_shared = T.alloc_shared(staged_shape, dtype)
            x_chunk = T.alloc_fragment((chunk,), accum)
            sum_squares = T.alloc_fragment((chunk,), accum)
            total = T.alloc_fragment((1,), accum)
            T.clear(sum_squares)
            if resident:
                # One copy of the whole row: every load of it is in flight at once.
                T.copy(x[row, 0], row_shared)
            for step in T.Pipelined(num_chunks, num_stages=num_stages):
                if resident:
                    T.copy(row_shared[step * chunk : (step + 1) * chunk], x_chunk)
                else:
                    T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    sum_squares[j] += x_chunk[j] * x_chunk[j]
            T.reduce_sum(sum_squares, total, dim=0)
            for j in T.Parallel(1):
                total[j] = T.rsqrt(total[j] / n + eps)
            # Walk the row backwards: its tail is the part most likely still in L2.
            for back in T.Pipelined(num_chunks, num_stages=num_stages):
                step = num_chunks - 1 - back
                if resident:
                    T.copy(row_shared[step * chunk : (step + 1) * chunk], x_chunk)
                else:
                    T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    x_chunk[j] = x_chunk[j] * total[0] * weight[step * chunk + j]
                T.copy(x_chunk, y[row, step * chunk])

    return rmsnorm_long_rows


def _build_rmsnorm_cluster(
    n: int, dtype: str, weight_dtype: str, slice_n: int, cluster: int, threads: int
) -> Any:
    m = T.dynamic("M")
    accum = "float32"

    @T.prim_func
    def rmsnorm_cluster(
        x: T.Tensor((m, n), dtype),
        weight: T.Tensor((n,), weight_dtype),
        y: T.Tensor((m, n), dtype),
        eps: T.float32,
    ):
        with T.Kernel(m * cluster, threads=threads, cluster_dims=cluster) as block:
            row = block // cluster
            rank = T.block_rank_in_cluster()
            x_slice = T.alloc_fragment((slice_n,), accum)
            squares = T.alloc_fragment((slice_n,), accum)
            own = T.alloc_fragment((1,), accum)
            peers = T.alloc_fragment((cluster,), accum)
            total = T.alloc_fragment((1,), accum)
            # own_shared: this CTA's sum of squares; slots[r]: CTA r's, written by CTA r.
            own_shared = T.alloc_shared((1,), accum)
            slots = T.alloc_shared((cluster,), accum)
            # Columns past N load as zeros (the copy's bounds check): they add nothing.
            T.copy(x[row, rank * slice_n], x_slice)
            for j in T.Parallel(slice_n):
                squares[j] = x_slice[j] * x_slice[j]
            T.reduce_sum(squares, own, dim=0)
            T.copy(own, own_shared)
            # Every CTA of the cluster has started (its shared memory exists) before any writes.
            T.cluster_sync()
            for peer in T.serial(cluster):
                T.copy_cluster(own_shared, slots[rank : rank + 1], dst_block=peer)
            # Release/acquire: every slot written in every CTA is visible after the barrier.
            T.cluster_sync()
            T.copy(slots, peers)
            T.reduce_sum(peers, total, dim=0)
            for j in T.Parallel(1):
                total[j] = T.rsqrt(total[j] / n + eps)
            for j in T.Parallel(slice_n):
                x_slice[j] = x_slice[j] * total[0] * weight[rank * slice_n + j]
            T.copy(x_slice, y[row, rank * slice_n])

    return rmsnorm_cluster


def _build_rmsnorm_cluster_shared(
    n: int, dtype: str, weight_dtype: str, chunk: int, cluster: int, threads: int, bulk: bool = False,
    lean: bool = False,
) -> Any:
    """``cluster_shared``, or with ``bulk`` ``cluster_bulk`` (the slice loaded by a bulk copy);
    ``lean``: the finishing walk with the weight loaded one chunk ahead (``cluster_walk``)."""
    m = T.dynamic("M")
    accum = "float32"
    slice_n = padded_row(n) // cluster
    num_chunks = slice_n // chunk
    swap_prologue, swap_partials = cluster_swap_macros(cluster, PARTIAL_WIDTH)
    issue_load, wait_load = slice_bulk_load_macros(n, cluster, dtype) if bulk else (None, None)

    @T.macro
    def load_weight(weight: Any, rank: Any, step: Any, weight_chunk: Any) -> None:
        # Columns past N load as zeros (the copy's bounds check); their outputs are not stored.
        T.copy(weight[rank * slice_n + step * chunk : rank * slice_n + (step + 1) * chunk], weight_chunk)

    @T.macro
    def finish_chunk(
        slice_shared: Any, x_chunk: Any, weight_chunk: Any, total: Any, y: Any, row: Any, rank: Any, step: Any
    ) -> None:
        T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
        for j in T.Parallel(chunk):
            x_chunk[j] = x_chunk[j] * total * weight_chunk[j]
        T.copy(x_chunk, y[row, rank * slice_n + step * chunk])

    @T.prim_func
    def rmsnorm_cluster_shared(
        x: T.Tensor((m, n), dtype),
        weight: T.Tensor((n,), weight_dtype),
        y: T.Tensor((m, n), dtype),
        eps: T.float32,
    ):
        with T.Kernel(m * cluster, threads=threads, cluster_dims=cluster) as block:
            row = block // cluster
            rank = cluster_cta_rank(block, cluster, provable=bulk)
            slice_shared = T.alloc_shared((slice_n,), dtype)
            x_chunk = T.alloc_fragment((chunk,), accum)
            sum_squares = T.alloc_fragment((chunk,), accum)
            own = T.alloc_fragment((1,), accum)
            # own_shared[0, 0]: this CTA's sum of squares; slots[r, 0]: CTA r's (16-byte rows,
            # the unit of a bulk copy between SMs).
            own_shared = T.alloc_shared((1, PARTIAL_WIDTH), accum)
            slots = T.alloc_shared((cluster, PARTIAL_WIDTH), accum)
            received = T.alloc_barrier([cluster])
            total = T.alloc_var(accum)
            if lean:
                # Two register buffers: chunk s + 1's weight arrives while chunk s is finished.
                weight_even = T.alloc_fragment((chunk,), weight_dtype)
                weight_odd = T.alloc_fragment((chunk,), weight_dtype)
            if bulk:
                loaded = T.alloc_barrier([1])
                # Started before the prologue, which then runs while the slice is in flight.
                issue_load(x, row, rank, slice_shared, loaded)
            if lean:
                # The first chunk's weight: in flight through the reduction and the exchange.
                load_weight(weight, rank, 0, weight_even)
            swap_prologue(slots)
            if bulk:
                wait_load(loaded)
            else:
                # Columns past N load as zeros (the copy's bounds check): they add nothing.
                T.copy(x[row, rank * slice_n], slice_shared)
            T.clear(sum_squares)
            for step in T.serial(num_chunks):
                T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    sum_squares[j] += x_chunk[j] * x_chunk[j]
            T.reduce_sum(sum_squares, own, dim=0)
            own_shared[0, 0] = own[0]
            swap_partials(own_shared, slots, received, rank)
            total = 0.0
            for r in T.serial(cluster):
                total += slots[r, 0]
            total = T.rsqrt(total / n + eps)
            if lean and num_chunks == 1:
                finish_chunk(slice_shared, x_chunk, weight_even, total, y, row, rank, 0)
            elif lean:
                # num_chunks is a power of two (slice and chunk are): the chunks go in pairs.
                for pair in T.serial(num_chunks // 2):
                    load_weight(weight, rank, 2 * pair + 1, weight_odd)
                    finish_chunk(slice_shared, x_chunk, weight_even, total, y, row, rank, 2 * pair)
                    if pair < num_chunks // 2 - 1:
                        load_weight(weight, rank, 2 * pair + 2, weight_even)
                    finish_chunk(slice_shared, x_chunk, weight_odd, total, y, row, rank, 2 * pair + 1)
            else:
                for step in T.serial(num_chunks):
                    T.copy(slice_shared[step * chunk : (step + 1) * chunk], x_chunk)
                    for j in T.Parallel(chunk):
                        x_chunk[j] = x_chunk[j] * total * weight[rank * slice_n + step * chunk + j]
                    T.copy(x_chunk, y[row, rank * slice_n + step * chunk])
            # No CTA leaves while a peer's copy may still read its shared memory.
            T.cluster_wait()

    return rmsnorm_cluster_shared


def kernel_key(
    x_dtype: torch.dtype, weight_dtype: torch.dtype, n: int, config: Mapping[str, Any] | None
) -> tuple:
    plan = row_kernel_key(n, x_dtype.itemsize, config)
    return (n, tilelang_dtype(x_dtype), tilelang_dtype(weight_dtype), *plan)


def rmsnorm_tilelang(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    key = kernel_key(x.dtype, weight.dtype, n, config)  # validates config even when M == 0
    check_bulk_alignment(key[3], x=x)
    y = torch.empty_like(x) if out is None else out
    x2 = x.view(-1, n)
    if x2.shape[0] == 0:
        return y
    kernel = compiled_kernel(build_rmsnorm, key)
    kernel(x2, weight, y.view(-1, n), float(eps))
    return y


def _supports(x: torch.Tensor, weight: torch.Tensor, eps: float) -> str | None:
    return misaligned(x=x, weight=weight)


BACKENDS = [
    Backend(
        "rmsnorm",
        "tilelang",
        "tilelang",
        rmsnorm_tilelang,
        requires=("tilelang",),
        supports=_supports,
        config_space=ROW_CONFIG_SPACE,
        default_config=ROW_DEFAULT_CONFIG,
        seed_configs=ROW_SEED_CONFIGS,
    ),
]
