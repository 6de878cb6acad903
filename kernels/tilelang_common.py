"""Shared plumbing of the TileLang backends: dtype names, the compile cache, and CPU lowering.

TileLang compiles a ``T.prim_func`` per set of Python-level constants (dtype, N, tile sizes).
Every backend builds its kernel from a hashable *key* and compiles it once per process through
``compiled_kernel``; the batch dimension M is symbolic, so one compile serves every M.

``lower_to_cuda_source`` runs the same lowering without a GPU (the CI check): it returns the
CUDA C++ that TileLang would hand to nvcc for the given architecture.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import torch

#: torch dtype -> TileLang dtype name.
TILELANG_DTYPES: dict[torch.dtype, str] = {
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
    torch.float32: "float32",
}

#: The architecture the kernels are tuned for, and the one the CPU test lowers to.
HOPPER_ARCH = "sm_90a"


def tilelang_dtype(dtype: torch.dtype) -> str:
    if dtype not in TILELANG_DTYPES:
        raise TypeError(f"dtype: TileLang backends take {list(TILELANG_DTYPES)}, got {dtype}")
    return TILELANG_DTYPES[dtype]


def misaligned(**tensors: torch.Tensor) -> str | None:
    """Why these tensors cannot be used, or None: the kernels use 16-byte vector loads and TMA,
    which assume 16-byte aligned base pointers (true of torch allocations, not of every view)."""
    for name, tensor in tensors.items():
        if tensor.data_ptr() % 16:
            return f"{name} is not 16-byte aligned (a view at an odd offset); TileLang kernels need it"
    return None


def check_bulk_alignment(kind: str, **tensors: torch.Tensor) -> None:
    """Raise ValueError naming the tensor when ``kind`` bulk-copies from one not 16-byte aligned.

    The backends' ``supports`` already refuses such views before dispatch; a direct call that
    bypasses it would otherwise fault inside the bulk copy (a sticky CUDA error that ends the
    process's use of the device), not fail here with a message.
    """
    if kind in BULK_KINDS:
        reason = misaligned(**tensors)
        if reason:
            raise ValueError(f"{reason} (cluster_slice 'bulk' copies it with cp.async.bulk)")


#: The row kernels whose slice arrives by one bulk copy (``cluster_slice`` "bulk"), either walk.
BULK_KINDS = ("cluster_bulk", "cluster_bulk_lean")

#: The cluster kernels that hold their slice in shared memory (``cluster_slice`` "shared" or
#: "bulk"), with ``cluster_walk`` "plain" or "lean" (the kind's "_lean" suffix).
SHARED_SLICE_KINDS = ("cluster_shared", "cluster_bulk", "cluster_shared_lean", "cluster_bulk_lean")


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Raise ValueError naming ``name`` when a config value is outside its declared space."""
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")


def merged_config(
    default: Mapping[str, Any], space: Mapping[str, tuple[Any, ...]], config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``default`` overridden by ``config``; unknown keys and out-of-space values raise ValueError."""
    merged = dict(default)
    for name, value in (config or {}).items():
        if name not in space:
            raise ValueError(f"{name}: not a parameter of this backend; expected one of {sorted(space)}")
        if value is not None:
            check_choice(name, value, space[name])
        merged[name] = value
    return merged


@functools.cache
def _compile_cached(
    builder: Callable[..., Any], key: tuple[Any, ...], pass_configs: tuple[tuple[str, Any], ...]
) -> Any:
    import tilelang

    return tilelang.compile(builder(*key), target="cuda", pass_configs=dict(pass_configs))


def compiled_kernel(
    builder: Callable[..., Any], key: tuple[Any, ...], pass_configs: Mapping[str, Any] | None = None
) -> Any:
    """The compiled ``builder(*key)``, compiled on first use and cached for the process.

    The compiled kernel launches on torch's current CUDA stream (TileLang's tvm-ffi adapter
    takes the stream from torch through the DLPack exchange API).
    """
    return _compile_cached(builder, key, tuple(sorted((pass_configs or {}).items())))


def lower_to_cuda_source(
    prim_func: Any, arch: str = HOPPER_ARCH, pass_configs: Mapping[str, Any] | None = None
) -> str:
    """The CUDA C++ TileLang generates for ``prim_func`` on ``arch``; needs no GPU."""
    import tilelang
    from tilelang import tvm
    from tvm.target import Target

    # 0.1.15 no longer parses "cuda -arch=..." strings: targets with attributes are dicts, and
    # layout inference needs the target as the ambient context, not only as an argument.
    target = Target({"kind": "cuda", "arch": arch})
    with target, tvm.transform.PassContext(config=dict(pass_configs or {})):
        return tilelang.lower(prim_func, target=target).kernel_source


def nvcc_path() -> str | None:
    """nvcc on PATH, else under the usual CUDA install folders; None when there is none."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in sorted(os.listdir("/usr/local"), reverse=True) if os.path.isdir("/usr/local") else []:
        candidate = os.path.join("/usr/local", root, "bin", "nvcc")
        if root.startswith("cuda") and os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc_command(
    source_path: str, output_path: str, arch: str = HOPPER_ARCH, ptx_only: bool = False
) -> list[str]:
    """The nvcc command TileLang itself would run on generated source (same includes, C++20)."""
    from tilelang.env import CUTLASS_INCLUDE_DIR, TILELANG_TEMPLATE_PATH

    nvcc = nvcc_path()
    if nvcc is None:
        raise FileNotFoundError("nvcc: not found on PATH nor under /usr/local/cuda*/bin")
    compute = arch.replace("sm_", "compute_")
    return [
        nvcc,
        "-std=c++20",
        "-w",
        f"-I{TILELANG_TEMPLATE_PATH}",
        f"-I{CUTLASS_INCLUDE_DIR}",
        "-DENABLE_BF16",
        f"-gencode=arch={compute},code={arch}",
        "--ptx" if ptx_only else "-c",
        source_path,
        "-o",
        output_path,
    ]


# ---------------------------------------------------------------------------------------------
# Row-wise ops (RMSNorm, softmax): how a row maps onto thread blocks.
# ---------------------------------------------------------------------------------------------

#: Tunable parameters of the row-wise TileLang kernels.
ROW_CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    # "rows" kernel: elements (rows x padded N) one block holds in registers.
    "elements_per_block": (2048, 4096, 8192, 16384, 32768),
    # fp32 elements each thread holds; sets the thread count of a block (None: derive).
    "elements_per_thread": (8, 16, 32, 64),
    # Longest (padded) row held whole in registers; longer rows take the chunked kernel.
    "max_row_in_registers": (8192, 16384, 32768),
    # "chunked" kernel: columns per pipeline step, threads, and pipeline depth.
    "chunk": (2048, 4096, 8192, 16384),
    "chunk_threads": (128, 256, 512, 1024),
    "num_stages": (1, 2, 3, 4),
    # "resident" kernel: the longest row (bytes, padded to a chunk multiple) kept in shared
    # memory; 0 turns it off (rows that do not fit in registers then take the chunked kernel).
    "max_resident_bytes": (0, 65536, 131072, 196608),
    # Rows longer than max_row_in_registers split over a thread-block cluster of this many CTAs,
    # each holding its slice in registers and swapping partial results through distributed
    # shared memory (x read once, several CTAs per SM); 1: the resident/chunked kernels.  16 is
    # a "non-portable" cluster size: TileLang's launcher allows it on every cluster kernel.
    "cluster_size": (1, 2, 4, 8, 16),
    # Where a cluster CTA holds its slice: "registers" (fp32, one load, no shared memory; a
    # 1024-thread CTA per SM at 32768 columns) or "shared" (the input dtype in shared memory,
    # walked in ``chunk``-column steps by ``chunk_threads`` threads: 64 KiB of bf16 per CTA
    # at 32768 columns, so 3 CTAs per SM overlap one's loads with another's exchange), or
    # "bulk" (as "shared", but the slice arrives as one asynchronous bulk copy issued by one
    # thread, with no registers staging it; rows whose padded slices overrun N take "shared").
    "cluster_slice": ("registers", "shared", "bulk"),
    # How a "shared"/"bulk" cluster CTA walks its slice.  "plain": softmax's online softmax takes
    # a block-wide max all-reduce per chunk (about 7 CTA barriers each, 8 chunks at 262144/8);
    # RMSNorm's finishing walk loads each chunk's weight from global memory where it first
    # needs it, so every chunk waits out an L2 round trip before its stores.  "lean": softmax
    # takes a per-element max walk, then a walk summing exp2 against the CTA's max (one
    # all-reduce after each; one more walk of shared memory, no barrier inside any walk, the
    # same two exps per element); RMSNorm loads chunk s + 1's weight before finishing chunk s
    # (the first chunk's before the partials' exchange), two register buffers.  Other kernels
    # ignore it.
    "cluster_walk": ("plain", "lean"),
}

ROW_DEFAULT_CONFIG: dict[str, Any] = {
    "elements_per_block": 8192,
    "elements_per_thread": 32,
    "max_row_in_registers": 32768,
    "chunk": 8192,
    "chunk_threads": 512,
    "num_stages": 2,
    "max_resident_bytes": 196608,
    "cluster_size": 1,
    "cluster_slice": "registers",
    "cluster_walk": "plain",
}


#: Extra starting points for the tuner: the cluster kernel at each cluster size.  From the
#: default (cluster_size 1) a local search reaches it only by a step in cluster_size whose
#: slice still fits max_row_in_registers; the H100 quick tunes of 00a0283 (14-25 candidates
#: per shape) never tried it at 65536 or 262144 columns.  A seed whose slice does not fit the
#: shape is refused by the space; on rows that fit in registers every seed is the "rows"
#: kernel, measured once.
ROW_SEED_CONFIGS: tuple[dict[str, Any], ...] = tuple(
    {**ROW_DEFAULT_CONFIG, "cluster_size": size, "max_row_in_registers": 32768, "elements_per_thread": 32}
    for size in (2, 4, 8)
) + tuple(
    {**ROW_DEFAULT_CONFIG, "cluster_size": size, "cluster_slice": held, "chunk": 4096,
     "chunk_threads": 256}
    for held in ("shared", "bulk")
    for size in (2, 4, 8, 16)
) + tuple(
    # cluster_walk "lean" won at 4096x262144 on the H100 (697e436: rmsnorm -2.9 %, softmax -6.0 %
    # against the plain walk, bulk, cluster 8); seeded where that slice size recurs.
    {**ROW_DEFAULT_CONFIG, "cluster_size": size, "cluster_slice": held, "chunk": 4096,
     "chunk_threads": 256, "cluster_walk": "lean"}
    for held in ("shared", "bulk")
    for size in (4, 8)
)

#: The most shared memory a cluster CTA's slice may take (bytes): one CTA per SM at most.
MAX_SLICE_BYTES = 196608

#: The most bytes one mbarrier phase can expect: PTX keeps an mbarrier's tx-count within
#: 2**20 - 1, so a larger slice would need its bulk copy split over several phases or barriers.
MAX_TX_BYTES = (1 << 20) - 1


#: float32 values per CTA in a cluster's exchange: 16 bytes, the smallest bulk copy between SMs.
PARTIAL_WIDTH = 4


def padded_row(n: int) -> int:
    """The row length the row-wise kernels lay out: N padded to a power of two, >= 32."""
    return max(next_power_of_2(n), 32)


def cluster_swap_macros(cluster: int, width: int) -> tuple[Any, Any]:
    """``(prologue, swap)``: two ``T.macro`` that swap every cluster CTA's partials with every other's.

    ``prologue(slots)`` starts the kernel (inside ``T.Kernel``); ``swap(own_shared, slots,
    received, rank)`` does the exchange; the kernel ends with ``T.cluster_wait()`` (a CTA leaves
    only when no peer's copy may still read its shared memory).  ``own_shared`` is a (1, width)
    float32 shared buffer with this CTA's partials, ``slots`` a (cluster, width) one that receives
    CTA r's in row r, ``received`` a barrier of ``cluster`` arrivals (``T.alloc_barrier([cluster])``:
    TileLang's cluster barrier would add a cluster-wide sync before the loads).

    One thread sends ``width`` floats to each peer as one bulk copy that completes on the peer's
    barrier (cp.async.bulk.shared::cluster): no cluster-wide barrier between the partials and
    their use; a receiver waits for exactly its ``cluster`` arrivals.
    """
    import tilelang.language as T

    @T.macro
    def prologue(slots: Any) -> None:
        # Peers write ``slots`` from the moment they pass their cluster_wait, which may be long
        # before this CTA reads them.  TileLang's shared-memory planner cannot see remote writes:
        # a buffer first written at the swap may share bytes with scratch used earlier (the
        # all-reduce's), which a fast peer's partial would overwrite.  Writing ``slots`` here
        # makes them live from the start, so nothing else is placed on them.
        T.clear(slots)
        T.sync_threads()
        # "My shared memory and barrier exist" (release: the clear is ordered before any peer's
        # write).  Peers wait for it only before writing, so the slice's loads go out first.
        T.cluster_arrive()

    @T.macro
    def swap(own_shared: Any, slots: Any, received: Any, rank: Any) -> None:
        # The partial is in shared memory (tma_store_cluster fences the async proxy itself).
        T.sync_threads()
        # Every peer has arrived, so its barrier is initialised and its shared memory exists.
        T.cluster_wait()
        if T.get_thread_binding() == 0:
            for peer in T.serial(cluster):
                T.copy_cluster(
                    own_shared[0:1, 0:width], slots[rank : rank + 1, 0:width],
                    dst_block=peer, remote_barrier=received[0],
                )
        T.mbarrier_wait_parity(received[0], 0)
        # Paired with the kernel's last cluster_wait.
        T.cluster_arrive()

    return prologue, swap


def cluster_cta_rank(block: Any, cluster: int, provable: bool) -> Any:
    """A 1-D cluster CTA's rank, inside a ``T.Kernel`` whose block index is ``block``.

    ``provable``: as ``block % cluster``, whose range TileLang can bound (the bulk copy's bounds
    must be provable, see ``slice_bulk_load_macros``); otherwise the hardware's register.
    """
    import tilelang.language as T

    return block % cluster if provable else T.block_rank_in_cluster()


def slice_bulk_load_macros(n: int, cluster: int, dtype: str) -> tuple[Any, Any]:
    """``(issue, wait)``: two ``T.macro`` that bring a cluster CTA's slice of a row into shared memory
    as one asynchronous bulk copy (TMA without a tensor map: cp.async.bulk global -> shared).

    ``issue(x, row, rank, slice_shared, loaded)``: one elected thread arms ``loaded`` (a barrier of
    one arrival, ``T.alloc_barrier([1])``) with the slice's byte count (mbarrier.arrive.expect_tx)
    and starts the copy of ``x[row, rank * slice_n : (rank + 1) * slice_n]`` (``slice_n`` =
    ``padded_row(n) // cluster`` elements of ``dtype``, ``x`` being (M, n)) into ``slice_shared``,
    which completes on ``loaded``.  ``wait(loaded)``: every thread waits for it (parity 0: the
    barrier completes once per kernel), after which the slice is visible to ordinary loads.  Work
    between the two (the exchange's prologue) overlaps the copy.

    Unlike the element-wise copy, which stages every byte in registers (ld.global, then
    st.shared), the whole slice is in flight from one instruction and costs no registers.  A bulk
    copy has no bounds check, so the caller guarantees what the lowering also needs to prove: the
    slice lies inside the row (``rank`` must be provably below the cluster size, e.g.
    ``block % cluster`` rather than the opaque ``T.block_rank_in_cluster()``; otherwise TileLang
    silently picks a tensor-map TMA of 256-column boxes instead).  Both addresses must be 16-byte
    aligned and the size a multiple of 16 bytes.  Checked here: N fills its padded row (then
    every slice is inside it, and row * N + rank * slice_n elements is a multiple of 16 bytes)
    and the slice's size.  The caller's: x's base pointer 16-byte aligned (``misaligned``).
    """
    import tilelang.language as T

    if n != padded_row(n):
        raise ValueError(f"n: a bulk-copied slice must lie inside the row (N a power of two >= 32), got {n}")
    slice_n = n // cluster
    size = slice_n * T.dtype(dtype).bits // 8
    if size % 16 or size > MAX_TX_BYTES:
        raise ValueError(
            f"cluster: {cluster} CTAs leave each a slice of {size} bytes; one bulk copy must be a "
            f"multiple of 16 bytes and at most {MAX_TX_BYTES} bytes (one mbarrier phase)"
        )

    @T.macro
    def issue(x: Any, row: Any, rank: Any, slice_shared: Any, loaded: Any) -> None:
        # row = block // cluster < M holds for every block of the launch, but TileLang's analyser
        # cannot derive it from the symbolic grid (M * cluster); without the bound the copy is not
        # provably in bounds and TileLang will not emit the 1-D bulk copy.
        T.assume(row < x.shape[0])
        # emit_arrive: the elected thread's arrival completes the barrier's single expected
        # arrival; TileLang fuses it with expect_tx into one mbarrier.arrive.expect_tx.
        T.tma_copy(
            x[row, rank * slice_n : (rank + 1) * slice_n], slice_shared,
            barrier=loaded[0], annotations={"emit_arrive": 1},
        )

    @T.macro
    def wait(loaded: Any) -> None:
        T.mbarrier_wait_parity(loaded[0], 0)

    return issue, wait


def row_kernel_key(n: int, itemsize: int, config: Mapping[str, Any] | None) -> tuple[str, int, int, int, int]:
    """(kind, block_n, rows_per_block, threads, num_stages) for rows of ``n`` elements of ``itemsize`` bytes.

    ``rows``: rows_per_block whole rows, padded to a power of two, live in registers: one read
    of x, one write of y. Padding columns are masked by the copies' boundary predicates.
    ``resident``: a row too long for registers but not for shared memory (N <= 98304 in bf16 by
    default): one row per block, copied whole into shared memory (one read of x), then walked
    twice in ``chunk``-column steps from there (reduce, then normalise).
    ``chunked``: longer rows (up to 262144): one row per block, walked twice in ``chunk``-column
    steps from global memory, so x is read twice; the second walk runs backwards so the row's
    most recently read part, still in L2, comes first.
    ``cluster`` (``cluster_size`` > 1, for rows longer than ``max_row_in_registers``): a row per
    cluster of ``cluster_size`` CTAs (returned as rows_per_block), each holding a slice of
    ``block_n`` = padded row / cluster_size elements in registers; the CTAs swap their partial
    reductions through distributed shared memory, then each finishes its slice (x read once).
    ``cluster_shared`` (``cluster_slice`` "shared"): the same exchange, but each CTA copies its
    slice (padded row / cluster_size elements) into shared memory and walks it in ``block_n``-column
    chunks, twice (reduce, then finish); rows not 16-byte aligned take ``cluster`` instead.
    ``cluster_bulk`` (``cluster_slice`` "bulk"): ``cluster_shared`` with the slice brought in by
    one asynchronous bulk copy per CTA (``slice_bulk_load_macros``).  A bulk copy cannot zero the
    columns past N, so only a row that fills its padded row (N a power of two, so every slice
    lies inside it) takes it; any other row takes ``cluster_shared`` (or ``cluster``) as "shared"
    would, under the same limits.
    ``cluster_shared_lean`` / ``cluster_bulk_lean`` (``cluster_walk`` "lean"): the same two
    kernels, their walks over the slice rearranged so that none waits on a block barrier or a
    global load (see ``ROW_CONFIG_SPACE``); the same limits, the same fallbacks.
    """
    cfg = merged_config(ROW_DEFAULT_CONFIG, ROW_CONFIG_SPACE, config)
    padded = padded_row(n)
    if padded <= cfg["max_row_in_registers"]:
        rows = max(1, cfg["elements_per_block"] // padded)
        threads = min(1024, max(128, rows * padded // cfg["elements_per_thread"]))
        return ("rows", padded, rows, threads, 0)
    cluster = cfg["cluster_size"]
    aligned = (n * itemsize) % 16 == 0
    if cluster > 1 and cfg["cluster_slice"] in ("shared", "bulk") and aligned:
        slice_n = padded // cluster
        if slice_n * itemsize > MAX_SLICE_BYTES:
            raise ValueError(
                f"cluster_size: {cluster} CTAs leave {slice_n * itemsize} bytes of a row to each, more "
                f"than the {MAX_SLICE_BYTES} bytes of shared memory a slice may take"
            )
        chunk = min(cfg["chunk"], slice_n)
        if chunk // cfg["chunk_threads"] < 4:
            raise ValueError(
                f"chunk_threads: {cfg['chunk_threads']} threads leave fewer than 4 columns each of a "
                f"{chunk}-column chunk"
            )
        # Decided here, at build time: the bulk kernel has no bounds checks to fall back on.
        in_bounds = n == padded
        kind = "cluster_bulk" if cfg["cluster_slice"] == "bulk" and in_bounds else "cluster_shared"
        # A None (the tuner's "derive it") is the default walk.
        if cfg["cluster_walk"] == "lean":
            kind += "_lean"
        return (kind, chunk, cluster, cfg["chunk_threads"], 0)
    if cluster > 1:
        slice_n = padded // cluster
        if slice_n > cfg["max_row_in_registers"]:
            raise ValueError(
                f"cluster_size: {cluster} CTAs leave {slice_n} elements of a {padded}-element (padded) row "
                f"to each, more than max_row_in_registers={cfg['max_row_in_registers']}"
            )
        threads = min(1024, max(128, slice_n // cfg["elements_per_thread"]))
        return ("cluster", slice_n, cluster, threads, 0)
    chunk = cfg["chunk"]
    if chunk // cfg["chunk_threads"] < 4:
        raise ValueError(
            f"chunk_threads: {cfg['chunk_threads']} threads leave fewer than 4 columns each of chunk {chunk}"
        )
    row_bytes = -(-n // chunk) * chunk * itemsize
    # 16-byte aligned rows keep the global -> shared copy vectorised (cp.async of 16 bytes).
    if row_bytes <= cfg["max_resident_bytes"] and aligned:
        return ("resident", chunk, 1, cfg["chunk_threads"], cfg["num_stages"])
    return ("chunked", chunk, 1, cfg["chunk_threads"], cfg["num_stages"])
