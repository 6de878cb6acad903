"""RMSNorm forward in TileLang.

Two kernels, chosen by ``row_kernel_key`` (``kernels/tilelang_common.py``):

* ``rows``: a block holds ``rows`` whole rows, padded to a power of two ``block_n``, in
  register fragments; one vectorised read of x, a block all-reduce per row, one write of y.
  The copies' boundary predicates zero the padding columns and rows past M (zeros add nothing
  to the sum of squares) and skip their stores.
* ``chunked``: rows too long for registers (up to 262144). One row per block; a pipelined loop
  over ``chunk`` columns accumulates squares elementwise, one all-reduce at the end, then a
  second pipelined loop normalises. x is read twice; the second read of a row the block has
  just streamed mostly hits L2.

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
    ROW_CONFIG_SPACE,
    ROW_DEFAULT_CONFIG,
    compiled_kernel,
    row_kernel_key,
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

    chunk = block_n
    num_chunks = (n + chunk - 1) // chunk

    @T.prim_func
    def rmsnorm_chunked(
        x: T.Tensor((m, n), dtype),
        weight: T.Tensor((n,), weight_dtype),
        y: T.Tensor((m, n), dtype),
        eps: T.float32,
    ):
        with T.Kernel(m, threads=threads) as row:
            x_chunk = T.alloc_fragment((chunk,), accum)
            sum_squares = T.alloc_fragment((chunk,), accum)
            total = T.alloc_fragment((1,), accum)
            T.clear(sum_squares)
            for step in T.Pipelined(num_chunks, num_stages=num_stages):
                T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    sum_squares[j] += x_chunk[j] * x_chunk[j]
            T.reduce_sum(sum_squares, total, dim=0)
            for j in T.Parallel(1):
                total[j] = T.rsqrt(total[j] / n + eps)
            # Walk the row backwards: its tail is the part most likely still in L2.
            for back in T.Pipelined(num_chunks, num_stages=num_stages):
                step = num_chunks - 1 - back
                T.copy(x[row, step * chunk], x_chunk)
                for j in T.Parallel(chunk):
                    x_chunk[j] = x_chunk[j] * total[0] * weight[step * chunk + j]
                T.copy(x_chunk, y[row, step * chunk])

    return rmsnorm_chunked


def kernel_key(
    x_dtype: torch.dtype, weight_dtype: torch.dtype, n: int, config: Mapping[str, Any] | None
) -> tuple:
    return (n, tilelang_dtype(x_dtype), tilelang_dtype(weight_dtype), *row_kernel_key(n, config))


def rmsnorm_tilelang(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    key = kernel_key(x.dtype, weight.dtype, n, config)  # validates config even when M == 0
    y = torch.empty_like(x) if out is None else out
    x2 = x.view(-1, n)
    if x2.shape[0] == 0:
        return y
    kernel = compiled_kernel(build_rmsnorm, key)
    kernel(x2, weight, y.view(-1, n), float(eps))
    return y


BACKENDS = [
    Backend("rmsnorm", "tilelang", "tilelang", rmsnorm_tilelang, requires=("tilelang",),
            config_space=ROW_CONFIG_SPACE, default_config=ROW_DEFAULT_CONFIG),
]
