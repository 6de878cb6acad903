"""Matmul C = A @ B (B as [K, N], or [N, K] with ``transpose_b``, nn.Linear's layout) in TileLang.

One Hopper GEMM: a ``block_m x block_n`` output tile per block, a ``T.Pipelined`` loop over K in
``block_k`` steps with ``num_stages`` shared-memory buffers, ``T.gemm`` on shared operands and a
float32 register accumulator, the tile staged through shared memory for the store.

What TileLang 0.1.15 makes of this on sm_90a (seen in the generated source): the global ->
shared copies become TMA loads on mbarriers, the shared layouts are swizzled for them, T.gemm
becomes ``wgmma`` (``tl::wgmma_ss``) because the block has whole warpgroups, the loop is warp
specialised (an extra producer warpgroup issues the TMA; ``threads`` counts consumers only), and
the store is a TMA store. ``T.use_swizzle`` rasterises blocks in panels for L2 reuse. Tiles past
M, N, K are handled by TMA's bounds (zero-filled loads, clipped stores).

TMA needs 16-byte aligned row strides: when N or K is not a multiple of 8 elements, the kernel is
compiled with TMA lowering off (cp.async copies with boundary predicates, no warp
specialisation).

``swap_ab=True`` (for decode-sized M) computes C^T = B^T A^T instead: B's ``block_n`` columns
fill wgmma's 64-row side and A's few rows its narrow N side (``block_m`` is cut to the rows, at
least 16), instead of padding 1-16 rows of A to a 64-row tile; the accumulator tile is stored
transposed. (The same trick took the Triton decode kernel from 0.75-0.9x to 1.0-1.15x cuBLAS.)

M is symbolic; kernels are compiled per (M bucket, N, K, layout, dtype, tile config), so one
compile serves every M of a bucket. Each bucket has its own tiles: decode-sized M (<= 64) takes
64-row tiles, with block_n chosen so the grid still covers the GPU, because there the op is a
stream of B through the SMs.
"""

# No `from __future__ import annotations`: T.prim_func evaluates its parameters' annotations,
# which name the builder's locals (dtype, n), and string annotations lose that closure.
from collections.abc import Mapping
from typing import Any

import tilelang.language as T
import torch

from ..registry import Backend
from ..tilelang_common import compiled_kernel, merged_config, misaligned, tilelang_dtype

#: Tunable parameters; ``None`` means "derive from the shape" (see ``matmul_config``).
CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    "block_m": (64, 128, 256),
    "block_n": (32, 64, 128, 256),
    "block_k": (32, 64, 128),
    "num_stages": (2, 3, 4, 5),
    "threads": (128, 256),
    "swizzle_panel": (0, 4, 8, 16),  # 0: no block rasterisation swizzle
    "swap_ab": (False, True),  # C^T = B^T A^T (decode): see the module docstring
}

#: Upper bounds of the M buckets and each bucket's tiles.
M_BUCKETS: tuple[int, ...] = (64, 256, 1 << 62)
BUCKET_CONFIGS: dict[int, dict[str, Any]] = {
    # Decode: 64-row tiles (one wgmma M), deep K pipeline; B streams from HBM once.
    64: {
        "block_m": 64,
        "block_n": None,
        "block_k": 128,
        "num_stages": 4,
        "threads": 128,
        "swizzle_panel": 0,
        "swap_ab": False,
    },
    # Small prefill: 128x128 tiles, two consumer warpgroups.
    256: {
        "block_m": 128,
        "block_n": 128,
        "block_k": 64,
        "num_stages": 4,
        "threads": 256,
        "swizzle_panel": 8,
        "swap_ab": False,
    },
    # Large: 128x256 tiles, 3 stages (3 x 48 KB operands + 64 KB output staging < 227 KB).
    1 << 62: {
        "block_m": 128,
        "block_n": 256,
        "block_k": 64,
        "num_stages": 3,
        "threads": 256,
        "swizzle_panel": 8,
        "swap_ab": False,
    },
}
DEFAULT_CONFIG: dict[str, Any] = {name: None for name in CONFIG_SPACE}

#: Shared memory a block may use on H100 (227 KB opt-in).
SHARED_MEMORY_BYTES = 227 * 1024
#: Aim for at least this many output tiles for decode-sized M (the H100 has 132 SMs).
DECODE_MIN_TILES = 120


def m_bucket(m: int) -> int:
    return next(bound for bound in M_BUCKETS if m <= bound)


def matmul_config(m: int, n: int, k: int, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The tile config for this shape: the M bucket's defaults, overridden by ``config``."""
    cfg = merged_config(DEFAULT_CONFIG, CONFIG_SPACE, config)
    bucket = BUCKET_CONFIGS[m_bucket(m)]
    resolved = {name: bucket[name] if cfg[name] is None else cfg[name] for name in CONFIG_SPACE}
    if resolved["block_n"] is None and resolved["swap_ab"]:
        resolved["block_n"] = 64  # one wgmma M slice; the deep pipeline keeps enough bytes in flight
    elif resolved["block_n"] is None:
        resolved["block_n"] = next((bn for bn in (128, 64) if -(-n // bn) >= DECODE_MIN_TILES), 32)
    if resolved["swap_ab"]:
        # A's rows are the MMA's N side: as few as exist (padded to 16, wgmma's smallest useful N).
        resolved["block_m"] = min(resolved["block_m"], max(16, 1 << max(0, (m - 1).bit_length())))
        if resolved["block_n"] % 64 or resolved["block_n"] // 64 > resolved["threads"] // 128 * 2:
            raise ValueError(
                f"block_n: {resolved['block_n']} (swap_ab: the wgmma M side) needs 64-row slices for each "
                f"of {resolved['threads'] // 128} consumer warpgroup(s) (at most 2 per warpgroup)"
            )
    elif resolved["block_m"] % 64 or resolved["block_m"] // 64 > resolved["threads"] // 128 * 2:
        raise ValueError(
            f"block_m: {resolved['block_m']} needs 64-row wgmma slices for each of "
            f"{resolved['threads'] // 128} consumer warpgroup(s) (at most 2 per warpgroup)"
        )
    operand_bytes = 2 * resolved["block_k"] * (resolved["block_m"] + resolved["block_n"])
    shared_bytes = resolved["num_stages"] * operand_bytes + 2 * resolved["block_m"] * resolved["block_n"]
    if shared_bytes > SHARED_MEMORY_BYTES:
        raise ValueError(
            f"num_stages: {resolved['num_stages']} stages of {resolved['block_m']}x{resolved['block_n']}x"
            f"{resolved['block_k']} tiles need {shared_bytes} B of shared memory, "
            f"more than {SHARED_MEMORY_BYTES}"
        )
    return resolved


def build_matmul(
    n: int,
    k: int,
    transpose_b: bool,
    dtype: str,
    block_m: int,
    block_n: int,
    block_k: int,
    num_stages: int,
    threads: int,
    swizzle_panel: int,
    swap_ab: bool = False,
) -> Any:
    """The GEMM ``T.prim_func`` for fixed N, K and B layout; M symbolic."""
    m = T.dynamic("M")
    accum = "float32"
    b_shape = (n, k) if transpose_b else (k, n)
    b_tile_shape = (block_n, block_k) if transpose_b else (block_k, block_n)

    if swap_ab:

        @T.prim_func
        def matmul_swap_ab(
            a: T.Tensor((m, k), dtype), b: T.Tensor(b_shape, dtype), c: T.Tensor((m, n), dtype)
        ):
            with T.Kernel(T.ceildiv(n, block_n), T.ceildiv(m, block_m), threads=threads) as (tile_n, tile_m):
                b_tile = T.alloc_shared(b_tile_shape, dtype)
                a_tile = T.alloc_shared((block_m, block_k), dtype)
                c_accum_t = T.alloc_fragment((block_n, block_m), accum)  # C^T's tile
                T.use_swizzle(panel_size=max(swizzle_panel, 1), enable=swizzle_panel > 0)
                T.clear(c_accum_t)
                for step in T.Pipelined(T.ceildiv(k, block_k), num_stages=num_stages):
                    if transpose_b:
                        T.copy(b[tile_n * block_n, step * block_k], b_tile)
                    else:
                        T.copy(b[step * block_k, tile_n * block_n], b_tile)
                    T.copy(a[tile_m * block_m, step * block_k], a_tile)
                    # B^T tile (block_n x block_k) times A^T (block_k x block_m).
                    T.gemm(b_tile, a_tile, c_accum_t, transpose_A=not transpose_b, transpose_B=True)
                # A decode tile of C is small (block_m rows): a direct, bounds-checked store.
                for i, j in T.Parallel(block_m, block_n):
                    c[tile_m * block_m + i, tile_n * block_n + j] = c_accum_t[j, i]

        return matmul_swap_ab

    @T.prim_func
    def matmul(a: T.Tensor((m, k), dtype), b: T.Tensor(b_shape, dtype), c: T.Tensor((m, n), dtype)):
        with T.Kernel(T.ceildiv(n, block_n), T.ceildiv(m, block_m), threads=threads) as (tile_n, tile_m):
            a_tile = T.alloc_shared((block_m, block_k), dtype)
            b_tile = T.alloc_shared(b_tile_shape, dtype)
            c_accum = T.alloc_fragment((block_m, block_n), accum)
            c_tile = T.alloc_shared((block_m, block_n), dtype)
            T.use_swizzle(panel_size=max(swizzle_panel, 1), enable=swizzle_panel > 0)
            T.clear(c_accum)
            for step in T.Pipelined(T.ceildiv(k, block_k), num_stages=num_stages):
                T.copy(a[tile_m * block_m, step * block_k], a_tile)
                if transpose_b:
                    T.copy(b[tile_n * block_n, step * block_k], b_tile)
                else:
                    T.copy(b[step * block_k, tile_n * block_n], b_tile)
                T.gemm(a_tile, b_tile, c_accum, transpose_B=transpose_b)
            T.copy(c_accum, c_tile)
            T.copy(c_tile, c[tile_m * block_m, tile_n * block_n])

    return matmul


def tma_pass_configs(n: int, k: int) -> dict[str, Any]:
    """TMA descriptors need 16-byte aligned row strides (8 bf16/fp16 elements)."""
    if n % 8 == 0 and k % 8 == 0:
        return {}
    return {"tl.disable_tma_lower": True, "tl.disable_warp_specialized": True}


def kernel_key(
    m: int, n: int, k: int, transpose_b: bool, dtype: torch.dtype, config: Mapping[str, Any] | None
) -> tuple:
    cfg = matmul_config(m, n, k, config)
    return (n, k, transpose_b, tilelang_dtype(dtype), *(cfg[name] for name in CONFIG_SPACE))


def matmul_tilelang(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool = False,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    m, k = a.shape
    n = b.shape[0] if transpose_b else b.shape[1]
    key = kernel_key(m, n, k, transpose_b, a.dtype, config)  # validates config even when M == 0
    c = torch.empty((m, n), device=a.device, dtype=a.dtype) if out is None else out
    if m == 0 or n == 0:
        return c
    if k == 0:
        return c.zero_()
    kernel = compiled_kernel(build_matmul, key, tma_pass_configs(n, k))
    kernel(a, b, c)
    return c


def _supports(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> str | None:
    if a.dtype not in (torch.bfloat16, torch.float16):
        return f"TileLang matmul takes bf16/fp16 inputs, got {a.dtype}"
    return misaligned(a=a, b=b)


BACKENDS = [
    Backend(
        "matmul",
        "tilelang",
        "tilelang",
        matmul_tilelang,
        requires=("tilelang",),
        min_cc=(9, 0),
        supports=_supports,
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    ),
]
