"""Matmul in Triton: C[M, N] = A[M, K] @ B ([K, N], or [N, K] with ``transpose_b``).

One persistent kernel, ``_matmul_kernel``, with two ways of reading tiles, chosen per call:

* ``path="tma"``: tensor descriptors (``tl.make_tensor_descriptor``, i.e. TMA on sm_90), which
  zero-fill the K tail and clip the C store at the edges.  Needs 16-byte aligned base pointers
  and row strides (K and N multiples of 8 in 16-bit types); the GPU default when they are.
* ``path="pointer"``: masked ``tl.load`` of the same tiles (cp.async pipelined on the GPU),
  for unaligned shapes and pre-Hopper GPUs.

Both walk output tiles in grouped order (GROUP_M tiles of M share each column of B tiles while
it is hot in L2) and accumulate in float32.  With SPLIT_K > 1 each tile's K range is cut into
SPLIT_K slices computed by different programs; the slices land in a float32 workspace and the
last program to finish a tile (counted with an atomic) sums them in a fixed order, so results
are deterministic and there is no second launch.  Split-K is how mid M (128 tokens) fills 132 SMs
when there are fewer output tiles than SMs.

Decode shapes (a few rows of A against a weight) take a second kernel, ``_swap_ab_kernel``
(``swap_ab=True``): it computes C^T = B^T A^T, so B's columns fill the 64-row side of the
Hopper MMA (wgmma m64nNk16) and A's few rows its narrow N side, instead of padding 1-16 rows of A
to a 64-row MMA.  One program per BLOCK_N columns, the whole K loop pipelined (cp.async or TMA),
no split-K and no workspace.  On the H100 this ran 1.0-1.15x cuBLAS at M=1 and M=16 where the
persistent kernel ran 0.75-0.9x (reports/h100/NOTES.md, the decode probe).

Under TRITON_INTERPRET=1 tiles are converted to float32 after loading (the interpreter's dot
multiplies bf16 raw bits); descriptors work in the interpreter, so both paths are tested on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from ..registry import Backend


@triton.jit
def _tile_coordinates(tile, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped ordering: consecutive tiles go down GROUP_M rows of tiles before moving right."""
    tiles_per_group = GROUP_M * num_pid_n
    group = tile // tiles_per_group
    first_pid_m = group * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % tiles_per_group) % group_rows
    pid_n = (tile % tiles_per_group) // group_rows
    return pid_m, pid_n


@triton.jit
def _operand_descriptors(
    a_ptr,
    b_ptr,
    M,
    N,
    K,
    stride_am,
    stride_b,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    B_TRANSPOSED: tl.constexpr,
):
    """TMA descriptors of A's [BLOCK_M, BLOCK_K] tiles and B's tiles in B's own layout."""
    a_desc = tl.make_tensor_descriptor(
        a_ptr, shape=[M, K], strides=[stride_am, 1], block_shape=[BLOCK_M, BLOCK_K]
    )
    if B_TRANSPOSED:
        b_desc = tl.make_tensor_descriptor(
            b_ptr, shape=[N, K], strides=[stride_b, 1], block_shape=[BLOCK_N, BLOCK_K]
        )
    else:
        b_desc = tl.make_tensor_descriptor(
            b_ptr, shape=[K, N], strides=[stride_b, 1], block_shape=[BLOCK_K, BLOCK_N]
        )
    return a_desc, b_desc


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    partial_ptr,
    arrivals_ptr,
    M,
    N,
    K,
    stride_am,
    stride_b,
    stride_cm,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    B_TRANSPOSED: tl.constexpr,
    USE_TMA: tl.constexpr,
    UPCAST: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    FLATTEN: tl.constexpr,
):
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    k_tiles = tl.cdiv(K, BLOCK_K)
    k_tiles_per_split = tl.cdiv(k_tiles, SPLIT_K)
    num_work = num_tiles * SPLIT_K
    c_dtype = c_ptr.dtype.element_ty

    if USE_TMA:
        a_desc, b_desc = _operand_descriptors(
            a_ptr, b_ptr, M, N, K, stride_am, stride_b, BLOCK_M, BLOCK_N, BLOCK_K, B_TRANSPOSED
        )
        c_desc = tl.make_tensor_descriptor(
            c_ptr, shape=[M, N], strides=[stride_cm, 1], block_shape=[BLOCK_M, BLOCK_N]
        )

    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    # The epilogue recomputes its tile from its own counter rather than reusing the loop's
    # coordinates, so a flattened (software-pipelined across tiles) loop keeps them apart.
    work_c = tl.program_id(0) - tl.num_programs(0)
    for work in tl.range(
        tl.program_id(0), num_work, tl.num_programs(0), flatten=FLATTEN, warp_specialize=WARP_SPECIALIZE
    ):
        # Slices of one tile are adjacent work items, so they run at the same time.
        tile = work // SPLIT_K
        pid_m, pid_n = _tile_coordinates(tile, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        k_first = (work % SPLIT_K) * k_tiles_per_split
        k_last = tl.minimum(k_first + k_tiles_per_split, k_tiles)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kt in range(k_first, k_last):
            off_k = kt * BLOCK_K
            if USE_TMA:
                a = a_desc.load([off_m, off_k])
                if B_TRANSPOSED:
                    b = b_desc.load([off_n, off_k]).T
                else:
                    b = b_desc.load([off_k, off_n])
            else:
                row_ids = (off_m + rows).to(tl.int64)
                col_ids = (off_n + cols).to(tl.int64)
                k_ids = off_k + ks
                a = tl.load(
                    a_ptr + row_ids[:, None] * stride_am + k_ids[None, :],
                    mask=(row_ids < M)[:, None] & (k_ids < K)[None, :],
                    other=0.0,
                )
                b_mask = (k_ids < K)[:, None] & (col_ids < N)[None, :]
                if B_TRANSPOSED:
                    b = tl.load(b_ptr + col_ids[None, :] * stride_b + k_ids[:, None], mask=b_mask, other=0.0)
                else:
                    b = tl.load(b_ptr + k_ids[:, None] * stride_b + col_ids[None, :], mask=b_mask, other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            # "ieee" matters only for float32 inputs: no TF32, matching the spec's tolerance.
            acc = tl.dot(a, b, acc, input_precision="ieee")

        work_c += tl.num_programs(0)
        tile_c = work_c // SPLIT_K
        pid_m_c, pid_n_c = _tile_coordinates(tile_c, num_pid_m, num_pid_n, GROUP_M)
        off_cm = pid_m_c * BLOCK_M
        off_cn = pid_n_c * BLOCK_N
        finish = True
        if SPLIT_K > 1:
            # Workspace layout [num_tiles, SPLIT_K, BLOCK_M, BLOCK_N]: a slice is one dense block.
            tile_block = partial_ptr + tile_c.to(tl.int64) * (SPLIT_K * BLOCK_M * BLOCK_N)
            in_block = rows[:, None] * BLOCK_N + cols[None, :]
            tl.store(tile_block + (work_c % SPLIT_K) * (BLOCK_M * BLOCK_N) + in_block, acc)
            # Every thread's stores precede the release; the last arrival sees them all.
            tl.debug_barrier()
            arrived = tl.atomic_add(arrivals_ptr + tile_c, 1, sem="acq_rel")
            finish = arrived == SPLIT_K - 1
            if finish:
                # Sum in slice order, whichever slice finished last: deterministic results.
                acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                for s in range(SPLIT_K):
                    acc += tl.load(tile_block + s * (BLOCK_M * BLOCK_N) + in_block, cache_modifier=".cg")
                # Re-arm the counter for the next launch (no memset launch needed).
                tl.atomic_xchg(arrivals_ptr + tile_c, 0)
        if finish:
            c = acc.to(c_dtype)
            if USE_TMA:
                c_desc.store([off_cm, off_cn], c)
            else:
                c_rows = (off_cm + rows).to(tl.int64)
                c_cols = off_cn + cols
                tl.store(
                    c_ptr + c_rows[:, None] * stride_cm + c_cols[None, :],
                    c,
                    mask=(c_rows < M)[:, None] & (c_cols < N)[None, :],
                )


@triton.jit
def _swap_ab_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M,
    N,
    K,
    stride_am,
    stride_b,
    stride_cm,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    B_TRANSPOSED: tl.constexpr,
    USE_TMA: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """One [BLOCK_M, BLOCK_N] tile of C, computed transposed: acc[BLOCK_N, BLOCK_M] = B^T A^T."""
    off_n = tl.program_id(0) * BLOCK_N
    off_m = tl.program_id(1) * BLOCK_M
    rows = off_m + tl.arange(0, BLOCK_M)
    cols = off_n + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    if USE_TMA:
        a_desc, b_desc = _operand_descriptors(
            a_ptr, b_ptr, M, N, K, stride_am, stride_b, BLOCK_M, BLOCK_N, BLOCK_K, B_TRANSPOSED
        )
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for kt in range(tl.cdiv(K, BLOCK_K)):
        off_k = kt * BLOCK_K
        if USE_TMA:
            a = a_desc.load([off_m, off_k])
            if B_TRANSPOSED:
                b_t = b_desc.load([off_n, off_k])
            else:
                b_t = b_desc.load([off_k, off_n]).T
        else:
            k_ids = off_k + ks
            a = tl.load(
                a_ptr + rows.to(tl.int64)[:, None] * stride_am + k_ids[None, :],
                mask=(rows < M)[:, None] & (k_ids < K)[None, :],
                other=0.0,
            )
            b_mask = (cols < N)[:, None] & (k_ids < K)[None, :]
            if B_TRANSPOSED:
                b_t = tl.load(
                    b_ptr + cols.to(tl.int64)[:, None] * stride_b + k_ids[None, :], mask=b_mask, other=0.0
                )
            else:
                b_t = tl.load(
                    b_ptr + k_ids.to(tl.int64)[None, :] * stride_b + cols[:, None], mask=b_mask, other=0.0
                )
        if UPCAST:
            a = a.to(tl.float32)
            b_t = b_t.to(tl.float32)
        acc = tl.dot(b_t, a.T, acc, input_precision="ieee")
    c = acc.T.to(c_ptr.dtype.element_ty)
    tl.store(
        c_ptr + rows.to(tl.int64)[:, None] * stride_cm + cols[None, :],
        c,
        mask=(rows < M)[:, None] & (cols < N)[None, :],
    )


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

#: Tunable parameters and the values worth trying on an H100.  ``SPLIT_K=None`` chooses the
#: split from the tile count; ``NUM_SMS=None`` is the device's SM count, 0 launches one program
#: per work item (non-persistent: better when several small programs share an SM).
#: ``warp_specialize`` on sm_90 with Triton 3.6: the Hopper pass partitions the loop (a TMA
#: producer warpgroup plus two consumer warpgroups, 12 warps, setmaxnreg) only with
#: ``num_warps=4``; with 8 warps the loop compiles unpartitioned (software pipelining only).
#: Checked by compiling for sm_90 on a CPU, not yet timed.
#: ``swap_ab`` launches ``_swap_ab_kernel`` (one program per tile, no persistence or split-K):
#: GROUP_M, SPLIT_K, NUM_SMS, warp_specialize and flatten do not apply to it and are ignored.
CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    "BLOCK_M": (16, 32, 64, 128, 256),
    "BLOCK_N": (32, 64, 128, 256),
    "BLOCK_K": (32, 64, 128),
    "GROUP_M": (1, 4, 8, 16),
    "SPLIT_K": (None, 1, 2, 4, 8, 16),
    "num_stages": (2, 3, 4, 5, 6),
    "num_warps": (4, 8),
    "NUM_SMS": (None, 0),
    "warp_specialize": (False, True),
    "flatten": (False, True),
    "path": ("auto", "tma", "pointer"),
    "swap_ab": (False, True),
}

#: Per shape class, by M (the token count for nn.Linear shapes).  Decode and small batches are
#: bound by reading B.  Decode takes the swap-AB kernel: 64 columns of B per program, a deep
#: (6-stage) cp.async pipeline, the best of the probe on the H100 at M=1 and 16 (split-K with
#: atomics and the TMA path were both slower there).  Small batches keep the persistent kernel,
#: whose tile count N / BLOCK_N is under 132 SMs for N=4096, so split-K supplies the parallelism.
#: 128 tokens is still memory-bound (M flop per byte of B, the H100's ridge is ~300), so it keeps
#: split-K with 128x128 tiles.  Large M is the classic
#: Hopper wgmma config: 128x256x64 tiles, 3 stages, 8 warps (two consumer warpgroups).
SHAPE_CLASS_CONFIGS: dict[str, dict[str, Any]] = {
    "decode": {
        "BLOCK_M": 16,
        "BLOCK_N": 64,
        "BLOCK_K": 128,
        "GROUP_M": 1,
        "SPLIT_K": 1,
        "num_stages": 6,
        "num_warps": 4,
        "NUM_SMS": 0,
        "warp_specialize": False,
        "flatten": False,
        "path": "pointer",
        "swap_ab": True,
    },
    "small": {
        "BLOCK_M": 64,
        "BLOCK_N": 64,
        "BLOCK_K": 128,
        "GROUP_M": 1,
        "SPLIT_K": None,
        "num_stages": 4,
        "num_warps": 4,
        "NUM_SMS": 0,
        "warp_specialize": False,
        "flatten": False,
    },
    "medium": {
        "BLOCK_M": 128,
        "BLOCK_N": 128,
        "BLOCK_K": 64,
        "GROUP_M": 8,
        "SPLIT_K": None,
        "num_stages": 4,
        "num_warps": 8,
        "NUM_SMS": None,
        "warp_specialize": False,
        "flatten": False,
    },
    "large": {
        "BLOCK_M": 128,
        "BLOCK_N": 256,
        "BLOCK_K": 64,
        "GROUP_M": 8,
        "SPLIT_K": 1,
        "num_stages": 3,
        "num_warps": 8,
        "NUM_SMS": None,
        "warp_specialize": False,
        "flatten": True,
    },
}

#: Large-M alternative to bench against "large": Triton's Hopper warp specialisation, which
#: engages with num_warps=4 (see CONFIG_SPACE); 128x256 tiles split over two consumer warpgroups
#: as in CUTLASS's cooperative kernel.  Not the default until timed on the H100.
LARGE_WARP_SPECIALIZED_CONFIG: dict[str, Any] = {
    **SHAPE_CLASS_CONFIGS["large"],
    "num_warps": 4,
    "warp_specialize": True,
    "flatten": False,
}

#: What ``config`` keys default to when the shape class does not say; ``path="auto"`` takes TMA
#: where the tensors allow it.
DEFAULT_CONFIG: dict[str, Any] = {"path": "auto"}


def shape_class(m: int) -> str:
    if m <= 16:
        return "decode"
    if m <= 64:
        return "small"
    if m <= 256:
        return "medium"
    return "large"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        # The interpreter: a few programs, so the persistent loop takes several tiles each.
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def _is_power_of_two(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _check_config(cfg: Mapping[str, Any]) -> None:
    unknown = sorted(set(cfg) - set(CONFIG_SPACE))
    if unknown:
        raise ValueError(f"config: unknown parameter(s) {unknown}; expected some of {sorted(CONFIG_SPACE)}")
    for name, low, high in (("BLOCK_M", 16, 256), ("BLOCK_N", 16, 256), ("BLOCK_K", 16, 256)):
        value = cfg[name]
        if not _is_power_of_two(value) or not low <= value <= high:
            raise ValueError(
                f"{name}: expected a power of two in [{low}, {high}] (tl.dot's minimum "
                f"is 16; a TMA box side is at most 256), got {value!r}"
            )
    if not isinstance(cfg["GROUP_M"], int) or cfg["GROUP_M"] < 1:
        raise ValueError(f"GROUP_M: expected an int >= 1, got {cfg['GROUP_M']!r}")
    split = cfg["SPLIT_K"]
    if split is not None and (not isinstance(split, int) or isinstance(split, bool) or not 1 <= split <= 64):
        raise ValueError(f"SPLIT_K: expected None (automatic) or an int in [1, 64], got {split!r}")
    if not isinstance(cfg["num_stages"], int) or not 1 <= cfg["num_stages"] <= 8:
        raise ValueError(f"num_stages: expected an int in [1, 8], got {cfg['num_stages']!r}")
    if cfg["num_warps"] not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps: expected one of 1, 2, 4, 8, 16, got {cfg['num_warps']!r}")
    sms = cfg["NUM_SMS"]
    if sms is not None and (not isinstance(sms, int) or isinstance(sms, bool) or sms < 0):
        raise ValueError(
            f"NUM_SMS: expected None (the device's SM count), 0 (one program per work "
            f"item) or a positive int, got {sms!r}"
        )
    for flag in ("warp_specialize", "flatten", "swap_ab"):
        if not isinstance(cfg[flag], bool):
            raise ValueError(f"{flag}: expected a bool, got {cfg[flag]!r}")
    if cfg["path"] not in ("auto", "tma", "pointer"):
        raise ValueError(f"path: expected 'auto', 'tma' or 'pointer', got {cfg['path']!r}")
    if cfg["warp_specialize"] and cfg["SPLIT_K"] not in (None, 1):
        raise ValueError(
            "warp_specialize: needs SPLIT_K=1 (the split-K epilogue's atomics and "
            "branches are not a loop Triton can partition)"
        )
    if cfg["warp_specialize"] and cfg["num_stages"] >= 5:
        # Measured, not derived: in the H100 tuning runs (Triton 3.6) 27 of the 32
        # warp-specialised candidates at 5-6 stages that compiled left part of C unwritten (NaN
        # where the test poisoned it); none at 2-4 stages did.  Refused rather than risked.
        raise ValueError(
            "warp_specialize: needs num_stages <= 4 (Triton 3.6's warp-specialised loop left "
            "output tiles unwritten at 5-6 stages on the H100)"
        )
    if cfg["warp_specialize"] and cfg["path"] == "pointer":
        raise ValueError(
            "warp_specialize: needs path 'tma' or 'auto' (Triton partitions "
            "descriptor loads into producer warps, not pointer loads)"
        )


#: Shared memory one sm_90 CTA may use.  Configs are checked against an estimate before launch
#: because Triton only reports an oversized one when it launches (OutOfResources).
SHARED_MEMORY_BYTES = 227 * 1024
# Barriers, descriptor and layout-conversion scratch on top of the tiles (measured: ~5 KiB
# for 128x256x64 bf16 tiles compiled for sm_90).
_SHARED_SLACK_BYTES = 8 * 1024


def shared_memory_estimate(cfg: Mapping[str, Any], num_stages: int, itemsize: int) -> int:
    """num_stages buffers of an A and a B tile, plus the C tile staged for the TMA store."""
    a_tile = cfg["BLOCK_M"] * cfg["BLOCK_K"]
    b_tile = cfg["BLOCK_K"] * cfg["BLOCK_N"]
    c_tile = cfg["BLOCK_M"] * cfg["BLOCK_N"]
    return (num_stages * (a_tile + b_tile) + c_tile) * itemsize + _SHARED_SLACK_BYTES


def _fit_shared_memory(cfg: dict[str, Any], user_config: Mapping[str, Any], itemsize: int) -> None:
    """Shrink a default config until it fits: fewer stages, then (fp32 only, in practice)
    narrower tiles.  What the caller set explicitly is never changed: it is refused instead."""
    while shared_memory_estimate(cfg, cfg["num_stages"], itemsize) > SHARED_MEMORY_BYTES:
        if "num_stages" not in user_config and cfg["num_stages"] > 2:
            cfg["num_stages"] -= 1
        elif "BLOCK_N" not in user_config and cfg["BLOCK_N"] > 64:
            cfg["BLOCK_N"] //= 2
        else:
            needed_kib = shared_memory_estimate(cfg, cfg["num_stages"], itemsize) // 1024
            raise ValueError(
                f"num_stages: {cfg['num_stages']} stages of {cfg['BLOCK_M']}x{cfg['BLOCK_N']}x"
                f"{cfg['BLOCK_K']} tiles need ~{needed_kib} KiB of shared memory, more than the "
                f"{SHARED_MEMORY_BYTES // 1024} KiB an sm_90 CTA has"
            )


def _tma_ready(*tensors: torch.Tensor) -> bool:
    """TMA needs 16-byte aligned base addresses and row strides."""
    return all(t.data_ptr() % 16 == 0 and (t.stride(0) * t.element_size()) % 16 == 0 for t in tensors)


@dataclass(frozen=True)
class MatmulPlan:
    """The launch ``matmul_triton`` makes: kernel, tiles, split, grid and compile options."""

    use_tma: bool
    block_m: int
    block_n: int
    block_k: int
    group_m: int
    split_k: int
    grid: int
    num_tiles: int
    num_stages: int
    num_warps: int
    warp_specialize: bool
    flatten: bool
    swap_ab: bool = False


def plan_matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool,
    c: torch.Tensor,
    config: Mapping[str, Any] | None = None,
) -> MatmulPlan:
    m, k = a.shape
    n = c.shape[1]
    tma_possible = a.device.type != "cuda" or torch.cuda.get_device_capability(a.device) >= (9, 0)
    return plan_for_dims(
        m,
        n,
        k,
        a.element_size(),
        _sm_count(a.device),
        tma_possible and _tma_ready(a, b, c),
        config,
        tma_detail=f"strides a {a.stride()}, b {b.stride()}, c {c.stride()} in {a.dtype}",
    )


def resolved_config(m: int, n: int, sms: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``config`` with what it leaves out taken from the shape class's config (not validated)."""
    cls = shape_class(m)
    large = SHAPE_CLASS_CONFIGS["large"]
    if cls == "large" and triton.cdiv(m, large["BLOCK_M"]) * triton.cdiv(n, large["BLOCK_N"]) < sms // 2:
        # Too few 128x256 tiles to occupy half the SMs (e.g. 1024^3): smaller tiles and split-K.
        cls = "medium"
    # swap_ab is False unless the class (decode) or the config says otherwise.
    return {"swap_ab": False, **DEFAULT_CONFIG, **SHAPE_CLASS_CONFIGS[cls], **(config or {})}


def plan_for_dims(
    m: int,
    n: int,
    k: int,
    itemsize: int,
    sms: int,
    tma_allowed: bool,
    config: Mapping[str, Any] | None = None,
    tma_detail: str = "",
) -> MatmulPlan:
    """The plan from sizes alone (no tensors, no CUDA): what the tuner dedups configs by."""
    cfg = resolved_config(m, n, sms, config)
    _check_config(cfg)
    # A tile taller than M padded to a power of two only multiplies zero rows. That happens when
    # a config tuned for a larger M is the nearest one baked (a 128-token config at 16 tokens ran
    # 2x slower than cuBLAS on the H100), so the tile is cut to the rows that exist.
    cfg["BLOCK_M"] = min(cfg["BLOCK_M"], max(16, _next_power_of_two(m)))
    _fit_shared_memory(cfg, config or {}, itemsize)
    block_m, block_n, block_k = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    num_tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    k_tiles = triton.cdiv(k, block_k)

    if cfg["path"] == "tma" and not tma_allowed:
        raise ValueError(
            "path: 'tma' needs an sm_90+ GPU (or the interpreter) and 16-byte aligned "
            f"tensors and row strides; got {tma_detail or f'M={m}, N={n}, K={k}'}"
        )
    use_tma = tma_allowed and cfg["path"] != "pointer"
    if cfg["swap_ab"]:
        # One program per tile, each running the whole K loop.
        return MatmulPlan(
            use_tma,
            block_m,
            block_n,
            block_k,
            group_m=1,
            split_k=1,
            grid=num_tiles,
            num_tiles=num_tiles,
            num_stages=cfg["num_stages"],
            num_warps=cfg["num_warps"],
            warp_specialize=False,
            flatten=False,
            swap_ab=True,
        )

    split = cfg["SPLIT_K"]
    if split is None:
        # Enough slices to give every SM a program, each slice still >= 4 K-tiles long so the
        # pipeline fills; a power of two so the slices are equal for power-of-two K.
        wanted = _next_power_of_two(triton.cdiv(sms, num_tiles)) if num_tiles < sms else 1
        split = max(1, min(wanted, 16, k_tiles // 4))
    # Never more slices than K-tiles: an empty slice would only add a workspace round trip.
    split = max(1, min(split, k_tiles))

    work = num_tiles * split
    programs = cfg["NUM_SMS"]
    programs = work if programs == 0 else min(work, sms if programs is None else programs)
    # Triton's Hopper warp specialisation does not work on flattened loops (see the Triton
    # persistent-matmul tutorial), and it partitions only descriptor loads.
    warp_specialize = cfg["warp_specialize"] and use_tma and split == 1
    flatten = cfg["flatten"] and split == 1 and not warp_specialize
    return MatmulPlan(
        use_tma,
        block_m,
        block_n,
        block_k,
        cfg["GROUP_M"],
        split,
        programs,
        num_tiles,
        cfg["num_stages"],
        cfg["num_warps"],
        warp_specialize,
        flatten,
    )


# Per device, an int32 arrival counter per output tile; the kernel re-arms each to 0 after use,
# so it is zeroed once here and never again.  (Two streams running split-K matmuls at once on
# one device would share it: not a case tilearena runs.)
_ARRIVALS: dict[torch.device, torch.Tensor] = {}


def _arrivals(device: torch.device, tiles: int) -> torch.Tensor:
    counters = _ARRIVALS.get(device)
    if counters is None or counters.numel() < tiles:
        counters = torch.zeros(max(tiles, 4096), dtype=torch.int32, device=device)
        _ARRIVALS[device] = counters
    return counters


def _torch_scratch(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Scratch memory for device-side tensor descriptors, from torch's caching allocator."""
    return torch.empty(size, dtype=torch.int8, device="cuda" if torch.cuda.is_available() else "cpu")


def matmul_triton(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool = False,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    m, k = a.shape
    n = b.shape[0] if transpose_b else b.shape[1]
    c = torch.empty(m, n, dtype=a.dtype, device=a.device) if out is None else out
    if m == 0 or n == 0:
        return c
    plan = plan_matmul(a, b, transpose_b, c, config)
    if plan.use_tma:
        # The allocator is a context variable, so it is set where the launch happens.
        triton.set_allocator(_torch_scratch)
    # Arguments both kernels take: the sizes and strides, then tiles and compile options.
    sizes = (m, n, k, a.stride(0), b.stride(0), c.stride(0))
    options = {
        "BLOCK_M": plan.block_m,
        "BLOCK_N": plan.block_n,
        "BLOCK_K": plan.block_k,
        "B_TRANSPOSED": bool(transpose_b),
        "USE_TMA": plan.use_tma,
        "UPCAST": _interpreting(),
        "num_stages": plan.num_stages,
        "num_warps": plan.num_warps,
    }
    if plan.swap_ab:
        grid = (triton.cdiv(n, plan.block_n), triton.cdiv(m, plan.block_m))
        _swap_ab_kernel[grid](a, b, c, *sizes, **options)
        return c
    if plan.split_k > 1:
        partial = torch.empty(
            plan.num_tiles * plan.split_k * plan.block_m * plan.block_n, dtype=torch.float32, device=a.device
        )
        arrivals = _arrivals(a.device, plan.num_tiles)
    else:
        partial = arrivals = c  # never read: the split-K branch is compiled out
    _matmul_kernel[(plan.grid,)](
        a,
        b,
        c,
        partial,
        arrivals,
        *sizes,
        GROUP_M=plan.group_m,
        SPLIT_K=plan.split_k,
        WARP_SPECIALIZE=plan.warp_specialize,
        FLATTEN=plan.flatten,
        **options,
    )
    return c


BACKENDS = [
    Backend(
        "matmul",
        "triton",
        "triton",
        matmul_triton,
        requires=("triton",),
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
        # Every class's tiles, spelled out in full (a partial config would take the tuned
        # shape's class defaults for what it leaves out): on the H100 the best decode config at
        # 1x4096x14336 was the "small" class's persistent kernel, not the decode default, and a
        # quick search seeded only with the default did not get there in 48 evaluations.
        seed_configs=tuple(
            {"swap_ab": False, **DEFAULT_CONFIG, **config}
            for config in (*SHAPE_CLASS_CONFIGS.values(), LARGE_WARP_SPECIALIZED_CONFIG)
        ),
    ),
]
