"""Launch planning shared by the row-wise Triton kernels (RMSNorm, softmax).

A row-wise op is memory bound: the speed of light is one read of x and one write of y. How a
row maps onto programs decides whether that is reached:

* ``rows``   short rows (N <= 1024): a program takes a [ROWS, BLOCK_N] tile, so each program
             still moves tens of KB and the grid is not a quarter million tiny programs.
* ``row``    a row fits in one program's registers (N <= 32768): one read, one write.
* ``split``  a row is too long for one program's registers: SPLIT programs share a row, each
             holds a CHUNK of it in registers, they exchange partial reductions through global
             memory and wait for each other. The grid is persistent and no larger than what is
             resident at once, so all programs sharing a row run together (no deadlock).
             x is still read once — the job thread-block clusters do in CuTe. Each partial is
             one word written with a relaxed atomic into a slot that starts EMPTY, so neither
             side needs a memory fence. The exchange costs a round trip through L2 per row, so
             it is pipelined two rows deep: a program publishes row r, then finishes row r - G,
             whose partials were published an iteration earlier, so it rarely waits.
* ``loop``   the fallback for the Triton interpreter, which runs programs one after the other
             (so ``split`` would wait forever): one program per row loops over chunks, reading
             x twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import triton
import triton.language as tl

#: An empty exchange slot. Partials are published as raw bits; a float sum can only produce this
#: pattern as a NaN, and ``publish_bits`` rewrites such a NaN to the canonical one first, so a
#: published slot never looks empty and a waiter never spins on a value that was written.
EMPTY_SLOT = -1


@triton.jit
def float_bits(value):
    """The int32 bit pattern of a float32 scalar, never equal to EMPTY_SLOT."""
    bits = value.to(tl.int32, bitcast=True)
    return tl.where(bits == -1, 0x7FFFFFFF, bits)


@triton.jit
def publish_bits(slots_ptr, slot, bits):
    """Publish one program's partial into its slot.

    Relaxed on purpose: the value and the "written" flag are the same word, so the waiter needs
    no ordering against anything else. A release atomic would make ptxas put MEMBAR.ALL.GPU in
    front of it, which waits for this thread's loads and stores in flight — the prefetch of the
    next row among them — and serialises the pipeline (measured: 2.1 TB/s at 65536 columns).
    """
    tl.atomic_xchg(slots_ptr + slot, bits, sem="relaxed")


@triton.jit
def wait_for_slots(slots_ptr, first_slot, SPLIT: tl.constexpr, SPLIT_P2: tl.constexpr):
    """Spin until the SPLIT slots of one row are all published; returns their bits.

    Volatile loads go to L2 every time and need no fence; the extra lanes of the power-of-two
    range read as 0, which is never EMPTY_SLOT.
    """
    parts = tl.arange(0, SPLIT_P2)
    valid = parts < SPLIT
    bits = tl.load(slots_ptr + first_slot + parts, mask=valid, other=0, volatile=True)
    while tl.sum((bits == -1).to(tl.int32), axis=0) > 0:
        bits = tl.load(slots_ptr + first_slot + parts, mask=valid, other=0, volatile=True)
    return bits


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@lru_cache(maxsize=8)
def sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


@dataclass(frozen=True)
class RowPlan:
    kind: str  # "rows" | "row" | "split" | "loop"
    block_n: int  # columns a program handles at once (a power of two)
    rows_per_program: int = 1
    num_warps: int = 4
    split: int = 1  # programs per row (kind "split")
    grid: int = 1
    prefetch: int = 1  # rows of x in flight ahead of the one being published (kind "split")
    reread: bool = False  # finish a row from a second read of x (served by L2) instead of registers
    residency_key: tuple = ()  # what learn_residency records this launch's residency under


#: Tunable parameters of the row-wise Triton kernels; the autotuner enumerates these.
CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    # Most likely first: a search cut short by its budget enumerates the leading values first.
    "num_warps": (8, 4, 16, 2, 1, 32),
    "elements_per_program": (2048, 4096, 8192, 16384),  # "rows" kind: tile size
    "max_row_in_registers": (8192, 16384, 32768),
    "chunk": (4096, 8192, 16384),  # "split" kind: columns per program (32768 always spills)
    # "split" kind: rows loaded ahead. 2 doubles the bytes in flight per program (one more
    # chunk of registers), which is what a row shared by 64 programs needs to keep HBM busy.
    "prefetch": (1, 2),
    # "split" kind: programs per SM the persistent grid may use (fewer if registers allow fewer).
    # A program holds only ~one chunk of loads in flight, so more resident programs put more bytes
    # in flight; with 2 per SM a 262144-column row is latency bound (~2.8 TB/s).
    "programs_per_sm": (4, 8),
    # "split" kind: hold a published row's chunk in registers until its partials arrive, or read
    # it again (L2 still has it, one iteration later). Rereading frees a third of the data
    # registers (sm_90a: softmax chunk 8192 x 8 warps 124 -> 80 registers, 2 -> 3 programs/SM).
    "reread": (False, True),
}

DEFAULT_CONFIG: dict[str, Any] = {
    "elements_per_program": 8192,
    "chunk": 4096,
    "max_row_in_registers": 32768,
    "prefetch": 1,
    "programs_per_sm": 4,
    "reread": False,
}

# Programs per SM that the cooperative kernel may count on being resident at once, learnt from
# the compiled kernel's registers and shared memory after its first (always safe) launch.
_RESIDENT_PER_SM: dict[tuple, int] = {}


def resident_per_sm(key: tuple) -> int:
    return _RESIDENT_PER_SM.get(key, 1)


def _occupancy_from_driver(compiled: Any, num_warps: int, shared: int) -> int | None:
    """The CUDA occupancy calculator's answer, when cuda-bindings is installed (else None)."""
    try:
        from cuda.bindings import driver

        handle = compiled.function
        if handle is None:
            return None
        err, blocks = driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(
            driver.CUfunction(int(handle)), num_warps * 32, shared
        )
    except Exception:  # no cuda-bindings, or a handle it does not take: use the arithmetic alone
        return None
    return int(blocks) if int(err) == 0 else None


def learn_residency(key: tuple, compiled: Any, num_warps: int) -> None:
    """Record how many programs of ``compiled`` fit on one SM (Hopper: 64K registers, 64 warps,
    32 blocks), and the driver's occupancy answer when it can be asked: the smaller wins, since
    counting one program too many deadlocks the cooperative kernel."""
    if key in _RESIDENT_PER_SM:
        return
    try:
        regs = int(compiled.n_regs)
        shared = int(compiled.metadata.shared)
    except (AttributeError, TypeError, ValueError):
        _RESIDENT_PER_SM[key] = 1
        return
    # Registers are allocated per warp in units of 256.
    regs_per_warp = -(-regs * 32 // 256) * 256
    by_regs = 65536 // max(1, regs_per_warp * num_warps)
    by_warps = min(64 // num_warps, 32)
    by_shared = (227 * 1024) // shared if shared else by_warps
    resident = min(by_regs, by_warps, by_shared)
    driver_says = _occupancy_from_driver(compiled, num_warps, shared)
    if driver_says is not None:
        resident = min(resident, driver_says)
    _RESIDENT_PER_SM[key] = max(1, resident)


def plan_rows(
    m: int, n: int, device: torch.device, config: Mapping[str, Any] | None = None, residency_key: tuple = ()
) -> RowPlan:
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    block_n = next_power_of_2(n)
    if block_n <= 1024:
        rows = max(1, min(cfg["elements_per_program"] // block_n, next_power_of_2(max(m, 1))))
        warps = cfg.get("num_warps") or (4 if rows * block_n <= 4096 else 8)
        return RowPlan("rows", block_n, rows, warps, grid=-(-m // rows))
    if block_n <= cfg["max_row_in_registers"]:
        # ~16-32 elements per thread keeps the row in registers without spills.
        warps = cfg.get("num_warps") or max(4, min(32, block_n // 1024))
        return RowPlan("row", block_n, 1, warps, grid=m)
    chunk = min(cfg["chunk"], block_n)
    if interpreting() or device.type != "cuda":
        return RowPlan("loop", chunk, 1, cfg.get("num_warps") or 16, grid=m)
    split = -(-n // chunk)
    warps = cfg.get("num_warps") or max(4, min(16, chunk // 256 // 4))
    prefetch = cfg["prefetch"]
    if isinstance(prefetch, bool) or prefetch not in (1, 2):
        raise ValueError(f"prefetch: expected 1 or 2, got {prefetch!r}")
    per_sm = cfg["programs_per_sm"]
    if isinstance(per_sm, bool) or not isinstance(per_sm, int) or per_sm < 1:
        raise ValueError(f"programs_per_sm: expected a positive int, got {per_sm!r}")
    reread = cfg["reread"]
    if not isinstance(reread, bool):
        raise ValueError(f"reread: expected True or False, got {reread!r}")
    key = (*residency_key, chunk, warps, split, prefetch, reread)
    resident = sm_count(device.index or 0) * min(per_sm, resident_per_sm(key))
    if split > resident:
        # More programs per row than can be resident at once would wait forever: read x twice.
        return RowPlan("loop", chunk, 1, cfg.get("num_warps") or 16, grid=m)
    groups = resident // split
    grid = min(groups, m) * split
    return RowPlan(
        "split",
        chunk,
        1,
        warps,
        split=split,
        grid=grid,
        prefetch=prefetch,
        reread=reread,
        residency_key=key,
    )
