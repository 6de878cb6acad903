"""Baked Helion configs for the H100, per shape class, and the machinery shared by the Helion backends.

No Helion kernel here autotunes at call time: each call picks a shipped ``helion.Config`` by
shape class (short/long rows; small/large M for matmul), and a ``config`` given to the backend
function is merged over it key by key (so ``{"num_warps": 16}`` changes only that).  The
choices are educated guesses for an H100 until the autotuner's results are baked in here.

``helion_config_space(fn, args)`` returns Helion's own ``ConfigSpec`` for a kernel bound to
some arguments (``Kernel.bind(args).config_spec`` in Helion 1.4.0): the autotuner's search space.
Each backend wraps it as ``<op>_config_space(*op_args)``, its ``Backend.config_space``.
It needs no GPU (binding traces the kernel on fake tensors), but it must be obtained with
reference mode off, since a kernel bound in reference mode (``HELION_INTERPRET=1``) is never
traced and its ConfigSpec is empty.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import math
import os
import random
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import helion
import torch
from helion.autotuner.config_spec import VALID_MAXNREG
from helion.runtime.ref_mode import RefMode

from . import registry

#: Keys a ``helion.Config`` understands; anything else in a ``config`` is a typo.
_HELION_CONFIG_KEYS = frozenset(
    name
    for name, p in inspect.signature(helion.Config.__init__).parameters.items()
    if name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY
)


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --------------------------------------------------------------------------------------------
# Row-wise ops (RMSNorm, softmax): x[M, N] reduced over N, one ``hl.tile(m)`` loop.
# --------------------------------------------------------------------------------------------

#: Above this many columns a row no longer sits in one program's registers: the reduction is
#: rolled into a loop over chunks (``reduction_loops``), or softmax switches to its online kernel.
MAX_ROW_IN_REGISTERS = 32768


def rowwise_config(n: int, *, looped_chunk: int = 8192) -> dict[str, Any]:
    """The shipped config of a row-wise kernel whose one reduction is over ``n`` columns.

    ``block_sizes[0]`` is rows per program; ``reduction_loops[0]`` is None to hold a whole row
    in registers (x read once) or a chunk size to loop over the row (x read twice).
    """
    block_n = next_power_of_2(n)
    if block_n <= 1024:
        # Short rows: several rows per program so each program still moves ~16 KB.
        rows = max(1, min(64, 8192 // block_n))
        warps = 4 if rows * block_n <= 4096 else 8
        return {"block_sizes": [rows], "reduction_loops": [None], "num_warps": warps, "num_stages": 1}
    if block_n <= MAX_ROW_IN_REGISTERS:
        # One row per program, ~16-32 fp32 values per thread: no spills, one read of x.
        return {
            "block_sizes": [1],
            "reduction_loops": [None],
            "num_warps": max(4, min(32, block_n // 1024)),
            "num_stages": 1,
        }
    return {"block_sizes": [1], "reduction_loops": [looped_chunk], "num_warps": 16, "num_stages": 2}


# Split rows (the "split" variants): a long row is shared by up to MAX_SPLIT_PARTS programs,
# each holding its chunk in registers; they swap partial reductions through global memory.
#: Most programs one row is split over: the partial-reduction slots of a row are summed in a
#: fixed, unrolled order (deterministic), one slot per part.  32 lets a 262144-column row take
#: 8192-column parts (16 KiB of bf16, 8 warps: the size that reaches ~0.97x quack at 65536);
#: with 16 it needed 16384-column parts at 16 warps, two programs an SM.
MAX_SPLIT_PARTS = 32
#: float32 slots per row and partial in the exchange buffer: 32 x 4 bytes is one 128-byte line,
#: so no two rows share a cache line and no program can hold a stale copy of another row's
#: slots in L1 (RMSNorm: one line a row; softmax: two, its maxes then its sums).
SPLIT_SLOTS_PER_ROW = 32

#: Config values the split kernels need, because the parts of a row spin until all of them have
#: arrived, so they must be resident together.  A flat grid in launch order (a row's parts are
#: adjacent program ids: the column-block dimension varies fastest) guarantees it: blocks are
#: dispatched in order, so every resident group but the last is complete and finishes, freeing
#: room for the rest.  A swapped loop order, L2 grouping or a persistent grid (which would put a
#: row's parts in one program's sequential loop) breaks that order and can hang.
SPLIT_REQUIRED: dict[str, Any] = {"pid_type": "flat", "l2_groupings": [1], "loop_orders": [[0, 1]]}


#: Most float32 values one program of a row-wise kernel may hold (64 a thread at 16 warps: the
#: shipped configs' largest tiles), and one thread.  Helion's space lets a program take up to M
#: rows, and one warp a whole row: sampled such configs took minutes to compile and spilled
#: (the 913fd71 tune).
MAX_ROW_TILE_ELEMENTS = 32768
MAX_ROW_VALUES_PER_THREAD = 128


def row_tile_elements(variant: str, n: int, config: Mapping[str, Any]) -> int | None:
    """Float32 values of the row one program of ``variant`` holds at ``n`` columns under
    ``config`` (None when its block sizes are not given)."""
    blocks = config.get("block_sizes") or []
    if not blocks or not all(isinstance(b, int) for b in blocks):
        return None
    if variant == "rows":  # [rows per program] x (the reduction loop's chunk, or the whole row)
        loops = config.get("reduction_loops") or [None]
        return blocks[0] * (loops[0] if isinstance(loops[0], int) else next_power_of_2(n))
    if variant.endswith("_stream"):  # [columns per part, rows]: one row's chunk and the next's
        return 2 * blocks[0]
    return math.prod(blocks)  # split: [columns per part]; online: [rows, columns per chunk]


def row_tile_problem(variant: str, n: int, config: Mapping[str, Any]) -> str | None:
    """Why ``config`` gives a row-wise kernel of ``variant`` at ``n`` columns a tile too large
    to hold in registers, or None."""
    elements = row_tile_elements(variant, n, config)
    if elements is None:
        return None
    if elements > MAX_ROW_TILE_ELEMENTS:
        return (
            f"config: block_sizes {config['block_sizes']} give one program {elements} values of the row "
            f"to hold, more than {MAX_ROW_TILE_ELEMENTS}"
        )
    return _per_thread_problem(
        elements, config.get("num_warps"), MAX_ROW_VALUES_PER_THREAD, "values of the row"
    )


def _per_thread_problem(values: int, warps: Any, limit: int, what: str) -> str | None:
    """Why ``values`` spread over ``warps`` leave a thread more than ``limit`` of them, or None."""
    if isinstance(warps, int) and warps > 0 and values > limit * 32 * warps:
        return (
            f"config: num_warps {warps} leaves each thread {values // (32 * warps)} {what}, more than {limit}"
        )
    return None


#: A matmul program's output tile and float32 accumulators per thread: wgmma's largest tiles
#: (256 x 256 over two warpgroups).  Sampled tiles of 4096 x 1024 on two warps never compile.
MAX_MATMUL_TILE = 256 * 256
MAX_MATMUL_ACCUMULATORS_PER_THREAD = 256
#: Deepest K step and the shared memory the pipeline's stages may fill (the H100's 227 KiB a
#: block; 2-byte operands).
MAX_MATMUL_BLOCK_K = 256
MATMUL_SHARED_MEMORY_BYTES = 227 * 1024


def matmul_tile_problem(config: Mapping[str, Any]) -> str | None:
    """Why ``config``'s tile ([rows, columns, k] block sizes) cannot sit in one program's
    registers and shared memory, or None."""
    blocks = config.get("block_sizes") or []
    if len(blocks) < 3 or not all(isinstance(b, int) for b in blocks[:3]):
        return None
    if blocks[2] > MAX_MATMUL_BLOCK_K:
        return f"config: block_sizes {blocks} step K by {blocks[2]}, more than {MAX_MATMUL_BLOCK_K}"
    stages = config.get("num_stages")
    staged = (blocks[0] + blocks[1]) * blocks[2] * 2 * (stages if isinstance(stages, int) else 1)
    if staged > MATMUL_SHARED_MEMORY_BYTES:
        return (
            f"config: block_sizes {blocks} x num_stages {stages} stage {staged} bytes of operands, "
            f"more than the {MATMUL_SHARED_MEMORY_BYTES} bytes of shared memory"
        )
    tile = blocks[0] * blocks[1]
    if tile > MAX_MATMUL_TILE:
        return (
            f"config: block_sizes {blocks} give an output tile of {tile} values, more than {MAX_MATMUL_TILE}"
        )
    return _per_thread_problem(
        tile, config.get("num_warps"), MAX_MATMUL_ACCUMULATORS_PER_THREAD, "accumulators"
    ) or matmul_register_cap_problem(config)


#: Registers a thread needs besides one wgmma's accumulators.  ptxas refuses a cap below
#: ``accumulators + 26`` ("Insufficient registers ... Try to compile with register target of
#: 154": 128x256 tiles under maxnreg 64; 42 for a 32-column tile under 32): 55 of the eab33cf
#: Helion matmul candidates failed so.
WGMMA_REGISTER_OVERHEAD = 26


def matmul_register_cap_problem(config: Mapping[str, Any]) -> str | None:
    """Why ``config``'s ``maxnreg`` is too small for the tile's wgmma, or None.  A wgmma of
    m64nNk16 keeps N / 2 float32 accumulators a thread (N = the tile's columns, at most 256);
    tiles under 64 rows use mma.sync, whose fragments are small (32x256 ran under a cap of 64).
    Checked against the eab33cf tune: all 55 refusals caught, none of its 174 winners and
    runners-up refused."""
    cap = config.get("maxnreg")
    blocks = config.get("block_sizes") or []
    if not isinstance(cap, int) or len(blocks) < 2 or not all(isinstance(b, int) for b in blocks[:2]):
        return None
    if blocks[0] < 64:
        return None
    needed = min(blocks[1], 256) // 2 + WGMMA_REGISTER_OVERHEAD
    if cap < needed:
        return f"config: maxnreg {cap} is under the {needed} registers a thread of block_sizes {blocks} needs"
    return None


def split_block_range(n: int) -> tuple[int, int]:
    """(smallest, largest) columns per part of a split row of ``n``: at most MAX_SPLIT_PARTS
    parts, and at least one (a whole padded row)."""
    return next_power_of_2(-(-n // MAX_SPLIT_PARTS)), next_power_of_2(n)


#: Rows one program of a streaming split kernel (the ``split_stream`` variants) walks by
#: default: its second block size.  Each program owns one part of a block of this many
#: consecutive rows and loads the next row's chunk before waiting on the current row's
#: exchange; 8 amortises the one load nothing overlaps (the block's first) over 8 rows while
#: keeping the grid long enough that its last wave is a small fraction of the run.  Never
#: shipped: on the H100 it ran 5-16 % slower than split / split_keep at 65536 and 262144 columns
#: (2 programs an SM by registers; reports/h100/NOTES.md, Session 12), and stays to measure
#: against, as split_fenced does.
SPLIT_STREAM_ROWS = 8


def split_config(n: int, rows: int | None = None) -> dict[str, Any]:
    """Shipped config of a split-row kernel: ``block_sizes`` = [columns per part], or
    [columns per part, rows per program] for a streaming one (``rows`` given).

    8192 columns per part where the part count allows it (8 parts at 65536, 32 at 262144),
    with a warp per 1024 columns: 32 float32 values per thread, no spills, and several programs
    per SM to keep bytes in flight.  The autotuner refines both.
    """
    low, high = split_block_range(n)
    block = min(high, max(low, 8192))
    return {
        "block_sizes": [block] if rows is None else [block, rows],
        "num_warps": max(4, min(16, block // 1024)),
        "num_stages": 1,
        "indexing": "pointer",
        **SPLIT_REQUIRED,
    }


def split_config_problem(config: Mapping[str, Any]) -> str | None:
    """Why ``config`` may hang a split-row kernel, or None."""
    for key, needed in SPLIT_REQUIRED.items():
        if key in config and config[key] != needed:
            return (
                f"config: the split kernel needs {key}={needed!r} (its programs wait for each other, "
                f"so they must launch in row order), got {config[key]!r}"
            )
    return None


def split_variant_config(n: int, overrides: Mapping[str, Any], rows: int | None = None) -> dict[str, Any]:
    """The full config of a split-row kernel: the shipped one overridden key by key, refused
    (ValueError naming ``config``) if it breaks the launch order the parts rely on.  ``rows``:
    a streaming kernel's default rows per program (its second block size)."""
    full = merge_config(split_config(n, rows), overrides)
    problem = split_config_problem(full)
    if problem:
        raise ValueError(problem)
    if interpreting():
        # Reference mode runs the parts one after another: a part waiting for the next would
        # spin forever.  One part per row (no waiting) still runs the kernel's arithmetic; the
        # exchange between parts is exercised on the GPU only.  A streaming kernel keeps its rows
        # per program: one part walking several rows never waits either.
        whole_row = split_block_range(n)[1]
        full["block_sizes"] = [whole_row] if rows is None else [whole_row, *list(full["block_sizes"])[1:]]
    return full


def variant_and_overrides(
    config: Mapping[str, Any] | helion.Config | None, variants: tuple[str, ...], shipped: str
) -> tuple[str, dict[str, Any]]:
    """(kernel variant, Helion config keys) of a row-wise backend's ``config``: its ``"variant"``
    key (default ``shipped``) chooses the kernel, the rest override that kernel's config."""
    if isinstance(config, helion.Config):
        config = dict(config.config)
    variant = (config or {}).get("variant", shipped)
    if variant not in variants:
        raise ValueError(f"config: 'variant' must be one of {variants}, got {variant!r}")
    return variant, {k: v for k, v in (config or {}).items() if k != "variant"}


class RowwiseVariants:
    """A row-wise op's Helion kernels, one per variant: ``plan(n, config)`` gives the kernel
    function and its full config, ``shipped_variant(n)`` the default variant.  Builds the
    kernels the backend calls and keeps the default one per row length."""

    def __init__(
        self,
        plan: Callable[[int, Any], tuple[Callable[..., Any], dict[str, Any]]],
        shipped_variant: Callable[[int], str],
    ) -> None:
        self.plan = plan
        self.shipped_variant = shipped_variant
        # ``interpret`` only keys the cache: a kernel built in reference mode stays there.
        self._shipped = lru_cache(maxsize=1024)(lambda n, interpret: self.kernel(n, None))

    def kernel(self, n: int, config: Mapping[str, Any] | helion.Config | None) -> helion.Kernel:
        fn, full_config = self.plan(n, config)
        return helion_kernel(fn, full_config, static_shapes=False)

    def for_call(self, n: int, config: Mapping[str, Any] | helion.Config | None) -> helion.Kernel:
        """The kernel a call on rows of ``n`` runs: one look-up on the default path."""
        return self._shipped(n, interpreting()) if config is None else self.kernel(n, config)

    def shipped_config(self, n: int) -> dict[str, Any]:
        """The config (with its ``variant``) a call uses when none is given."""
        return {"variant": self.shipped_variant(n), **self.plan(n, None)[1]}


def softmax_online_config(n: int) -> dict[str, Any]:
    """Config of the two-pass online softmax (rows longer than ``MAX_ROW_IN_REGISTERS``):
    ``block_sizes`` = [rows per program, columns per chunk]."""
    return {"block_sizes": [1, min(8192, next_power_of_2(n))], "num_warps": 16, "num_stages": 2}


# --------------------------------------------------------------------------------------------
# Matmul: C[M, N] = A[M, K] @ B, ``hl.tile([m, n])`` with an ``hl.tile(k)`` loop inside.
# --------------------------------------------------------------------------------------------


def matmul_config(m: int, n: int, k: int) -> dict[str, Any]:
    """The shipped config for an (M, N, K) problem: ``block_sizes`` = [BLOCK_M, BLOCK_N, BLOCK_K].

    Tiles are clamped to the problem (at least 16, the smallest tensor-core tile), so a tiny
    problem does not ask for a 128-wide tile of a 5-wide matrix.
    """
    if m <= 16:
        # Decode: B's bytes dominate; many narrow programs over N stream it at full bandwidth.
        bm, bn, bk, warps, stages, pid = 16, 64, 128, 4, 4, "flat"
    elif m <= 64:
        bm, bn, bk, warps, stages, pid = 64, 64, 128, 4, 4, "flat"
    elif m <= 512:
        bm, bn, bk, warps, stages, pid = 128, 128, 64, 8, 4, "flat"
    else:
        # Large GEMM: the classic Hopper tile, persistent over the SMs, grouped for L2 reuse.
        bm, bn, bk, warps, stages, pid = 128, 256, 64, 8, 3, "persistent_interleaved"

    def clamp(block: int, dim: int) -> int:
        return max(16, min(block, next_power_of_2(dim)))

    return {
        "block_sizes": [clamp(bm, m), clamp(bn, n), clamp(bk, k)],
        "l2_groupings": [8],
        "num_warps": warps,
        "num_stages": stages,
        "pid_type": pid,
        # TMA loads on Hopper; Helion falls back per tensor where a descriptor is not allowed
        # (unaligned strides, a tile larger than the matrix).  Per-loop knobs (range_*) are left
        # to Helion's defaults: their count differs by device, so a fixed list would not fit.
        "indexing": "tensor_descriptor",
    }


def swaps_operands(m: int, transpose_b: bool) -> bool:
    """Decode-sized M against an nn.Linear weight ([N, K]) runs the swap-AB kernel."""
    return transpose_b and m <= 16


def matmul_swap_config(m: int, n: int, k: int) -> dict[str, Any]:
    """The shipped config of the swap-AB kernel (C^T = B^T A^T): ``block_sizes`` =
    [BLOCK_N, BLOCK_M, BLOCK_K], B's 64 columns on the MMA's 64-row side and A's rows (padded to
    16) on its N side, a 6-stage pointer (cp.async) pipeline: the tiles and depth that ran
    1.0-1.15x cuBLAS as a Triton kernel on the H100 at M = 1 and 16 (Helion emits the same
    loads and dot)."""

    def clamp(block: int, dim: int) -> int:
        return max(16, min(block, next_power_of_2(dim)))

    return {
        "block_sizes": [clamp(64, n), clamp(16, m), clamp(128, k)],
        "l2_groupings": [1],
        "num_warps": 4,
        "num_stages": 6,
        "pid_type": "flat",
        "indexing": "pointer",
    }


# --------------------------------------------------------------------------------------------
# Shared machinery.
# --------------------------------------------------------------------------------------------


def merge_config(
    shipped: Mapping[str, Any],
    config: Mapping[str, Any] | helion.Config | None,
    extra_keys: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``shipped`` overridden key by key by ``config``; raises ValueError naming an unknown key.

    ``extra_keys`` are backend-level keys (not Helion's) that the caller pops itself.
    """
    if config is None:
        return dict(shipped)
    if isinstance(config, helion.Config):
        config = dict(config.config)
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping or helion.Config, got {type(config).__name__}")
    unknown = sorted(set(config) - _HELION_CONFIG_KEYS - extra_keys)
    if unknown:
        raise ValueError(f"config: unknown Helion config key(s) {unknown}; expected keys of helion.Config")
    warps = config.get("num_warps")
    if warps is not None and (not isinstance(warps, int) or warps not in (1, 2, 4, 8, 16, 32)):
        # Helion passes num_warps straight to Triton, which fails only at launch.
        raise ValueError(f"config: num_warps must be a power of two from 1 to 32, got {warps!r}")
    return {**shipped, **config}


def _freeze(value: Any) -> Any:
    # Exact type checks: an isinstance against the Mapping ABC costs microseconds per call.
    if type(value) in (list, tuple):
        return tuple([_freeze(v) for v in value])
    if type(value) is dict:
        return tuple(sorted([(k, _freeze(v)) for k, v in value.items()]))
    return value


def interpreting() -> bool:
    """Whether kernels built now run in Helion's reference mode (``HELION_INTERPRET``)."""
    return os.environ.get("HELION_INTERPRET", "") not in ("", "0")


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@lru_cache(maxsize=256)
def _compiled_kernel(
    fn: Callable[..., Any], frozen_config: tuple, static_shapes: bool, ref_mode: bool, frozen_settings: tuple
) -> helion.Kernel:
    config = helion.Config(**{k: _thaw(v) for k, v in frozen_config})
    return helion.kernel(
        fn,
        config=config,
        static_shapes=static_shapes,
        autotune_effort="none",
        ref_mode=RefMode.EAGER if ref_mode else RefMode.OFF,
        **dict(frozen_settings),
    )


def helion_kernel(
    fn: Callable[..., Any], config: Mapping[str, Any], *, static_shapes: bool, **settings: Any
) -> helion.Kernel:
    """One ``helion.Kernel`` per (kernel function, config), built once and kept.

    Helion caches the bound (compiled) kernel per shape specialisation inside each Kernel and
    dispatches repeat calls through a dictionary keyed on shapes and dtypes, so after the first
    call of a shape class a call costs two dictionary look-ups and the launch.  The reference
    (interpret) mode is read from ``HELION_INTERPRET`` when a kernel is first built, the way
    Helion's own Settings read it; it is part of the cache key so tests can switch it.
    ``settings`` are further ``helion.Settings`` fields (e.g. ``dot_precision``).
    """

    return _compiled_kernel(fn, _freeze(config), static_shapes, interpreting(), _freeze(settings))


def run_kernel(kernel: helion.Kernel, *args: Any) -> Any:
    """Call a Helion kernel; an invalid config value surfaces as a ValueError naming ``config``."""
    try:
        return kernel(*args)
    except helion.exc.InvalidConfig as exc:
        raise ValueError(f"config: {exc}") from exc


def helion_config_space(
    fn: Callable[..., Any], args: tuple[Any, ...], *, static_shapes: bool, **settings: Any
) -> Any:
    """Helion's ``ConfigSpec`` (the autotuner's search space) for ``fn`` bound to ``args``."""
    kernel = helion.kernel(
        fn, static_shapes=static_shapes, autotune_effort="none", ref_mode=RefMode.OFF, **settings
    )
    return kernel.bind(tuple(args)).config_spec


def describe_config_space(config_spec: Any) -> dict[str, str]:
    """A readable {key: fragment} view of a ConfigSpec, for reports and the autotuner's logs."""
    from helion.autotuner.block_id_sequence import BlockIdSequence

    def show(field: Any) -> str:
        # A BlockIdSequence holds one spec per tiled loop / reduction; its own repr is an address.
        if isinstance(field, BlockIdSequence):
            return repr([field[i] for i in range(len(field))])
        return repr(field)

    return {key: show(field) for key, field in config_spec._flat_fields().items()}


# --------------------------------------------------------------------------------------------
# Tuning: Helion's ConfigSpec as a tilearena ConfigSpace, and Helion's own autotuner.
# --------------------------------------------------------------------------------------------


def _backend_module(op: str) -> Any:
    return importlib.import_module(f"{__package__}.{op}.helion")


def _to_plain(config: helion.Config | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-able dict (what the tuning store keeps) of a Helion config."""
    items = config.config if isinstance(config, helion.Config) else config
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(items).items()}


def _on_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_meta:
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="cpu")
    return value


class HelionConfigSpace:
    """``Backend.config_space`` of a Helion backend.

    Helion's search space depends on the arguments (one block size per ``hl.tile`` dimension,
    the reduction's extent, how many loads can take a tensor descriptor), so it is built per
    shape: called with the op's arguments it returns Helion's ``ConfigSpec``; as a tilearena
    ``ConfigSpace`` (the protocol of ``autotune/space.py``) it builds that ConfigSpec from
    ``context.shape`` on meta tensors (no GPU) and samples, mutates and validates with Helion's
    own fragments and ``ConfigSpec.normalize``.  Configs are plain dicts of Helion keys.
    """

    def __init__(self, op: str) -> None:
        self.op = op
        self.default: dict[str, Any] = {}
        self._specs: dict[tuple, Any] = {}

    def __call__(self, *op_args: Any, variant: str | None = None) -> Any:
        module = _backend_module(self.op)
        options = {} if variant is None else {"variant": variant}
        fn, args, static_shapes, settings = module.kernel_call(*op_args, **options)
        return helion_config_space(fn, args, static_shapes=static_shapes, **settings)

    def config_spec(self, context: Any, variant: str | None = None) -> Any:
        """Helion's ConfigSpec at ``context``'s shape, for the kernel ``variant`` (default: the
        one the shape selects)."""
        shape = dict(getattr(context, "shape", {}) or {})
        dtype = torch.float32 if getattr(context, "dtype_bytes", 2) == 4 else torch.bfloat16
        key = (tuple(sorted(shape.items())), dtype, variant)
        if key not in self._specs:
            # Meta tensors: binding traces shapes only, so the sweep's GiB-sized inputs cost nothing.
            args = _backend_module(self.op).meta_args(shape, dtype)
            try:
                self._specs[key] = self(*args, variant=variant)
            except Exception:
                # On the H100 image (torch 2.11) binding meta tensors gave unbacked sizes that
                # Helion's reduction lowering rejects (the 0d27b72 tune: every row-wise job failed
                # there), while torch 2.13 here binds them.  CPU tensors of the same shape and
                # strides are the fallback: torch.empty does not touch the pages, so they cost no
                # memory either.
                self._specs[key] = self(*[_on_cpu(a) for a in args], variant=variant)
        return self._specs[key]

    # --- the tilearena ConfigSpace protocol ---------------------------------------------------
    def size(self) -> int | None:
        return None

    def enumerate(self, context: Any) -> Any:
        raise TypeError("Helion's config space cannot be enumerated; use a sampling search")

    def _variant(self, context: Any) -> str | None:
        """The row-wise kernel variant this shape runs by default (what the space tunes), or None
        (not a row-wise op)."""
        shape = dict(getattr(context, "shape", {}) or {})
        shipped_variant = getattr(_backend_module(self.op), "shipped_variant", None)
        if shipped_variant is None or "N" not in shape:
            return None
        return shipped_variant(shape["N"])

    def _required(self, context: Any) -> dict[str, Any]:
        """Values every config must take at this shape: the split-row kernels' launch order."""
        variant = self._variant(context)
        return copy.deepcopy(SPLIT_REQUIRED) if variant is not None and variant.startswith("split") else {}

    def _tile_problem(self, config: Mapping[str, Any], context: Any) -> str | None:
        if self.op == "matmul":
            return matmul_tile_problem(config)
        variant = self._variant(context)
        return None if variant is None else row_tile_problem(variant, context.shape["N"], config)

    def _fit_tile(self, config: dict[str, Any], context: Any) -> dict[str, Any]:
        """``config`` with its tile shrunk until it fits a program (a row tile's first block size,
        a matmul tile's longer side, halved), then its warps doubled (up to 32) until it fits
        the threads."""
        if self.op == "matmul" and matmul_register_cap_problem(config):
            # No register cap rather than one ptxas refuses (None is one of Helion's values).
            return {**config, "maxnreg": None}
        variant = self._variant(context)
        if variant is None:
            return config
        n = context.shape["N"]
        while (row_tile_elements(variant, n, config) or 0) > MAX_ROW_TILE_ELEMENTS and config["block_sizes"][
            0
        ] > 1:
            config = {**config, "block_sizes": [config["block_sizes"][0] // 2, *config["block_sizes"][1:]]}
        while row_tile_problem(variant, n, config) and isinstance(config.get("num_warps"), int):
            if config["num_warps"] >= 32:
                break
            config = {**config, "num_warps": config["num_warps"] * 2}
        return config

    def seeds(self, context: Any) -> list[dict[str, Any]]:
        """The config the kernel ships for this shape (the search's first candidate)."""
        module = _backend_module(self.op)
        dtype = torch.float32 if getattr(context, "dtype_bytes", 2) == 4 else torch.bfloat16
        shipped = dict(module.shipped_config(*module.meta_args(dict(context.shape), dtype)))
        shipped.pop("variant", None)
        normalized = self._normalized(shipped, self.config_spec(context))
        return [normalized] if normalized is not None else []

    def sample(self, rng: random.Random, context: Any) -> dict[str, Any] | None:
        spec = self.config_spec(context)
        required = self._required(context)
        for _ in range(32):
            # Helion's fragments draw from the global `random`; seed it from rng, then restore it.
            state = random.getstate()
            try:
                random.seed(rng.getrandbits(64))
                sampled = _to_plain(spec.flat_config(lambda fragment: fragment.random()))
            finally:
                random.setstate(state)
            sampled = self._fit_tile(sampled, context)
            if required:
                # Pinned to a flat grid, the persistent grid's knob no longer applies.
                sampled.pop("num_sm_multiplier", None)
            pinned = self._normalized({**sampled, **required}, spec)
            if pinned is not None and self._tile_problem(pinned, context) is None:
                return pinned
        return None

    def neighbours(self, config: Mapping[str, Any], context: Any) -> list[dict[str, Any]]:
        from helion.autotuner.block_id_sequence import BlockIdSequence
        from helion.autotuner.config_fragment import ConfigSpecFragment

        spec = self.config_spec(context)
        found: list[dict[str, Any]] = []
        for key, field in spec._flat_fields().items():
            if key not in config:
                continue
            if isinstance(field, ConfigSpecFragment):
                try:
                    values = field.pattern_neighbors(config[key])
                except ValueError:  # a shorthand Helion accepts (indexing="pointer" for every load)
                    continue
                for value in values:
                    found.append({**config, key: value})
            elif isinstance(field, BlockIdSequence) and isinstance(config[key], list):
                for i, current in enumerate(config[key][: len(field)]):
                    item = field[i]
                    if hasattr(item, "_flat_fragment"):  # reduction_loops: None means "whole row"
                        fragment = item._flat_fragment(spec)
                        current = item._encode_flat_value(spec, current)
                    else:
                        fragment = item._fragment(spec)
                    try:
                        values = fragment.pattern_neighbors(current)
                    except Exception:  # a field whose values this fragment does not encode
                        continue
                    for value in values:
                        changed = list(config[key])
                        changed[i] = value
                        found.append({**config, key: changed})
        valid = []
        required = self._required(context)
        for candidate in found:
            if any(candidate.get(key, value) != value for key, value in required.items()):
                continue  # a step away from what the split kernel needs
            normalized = self._normalized(candidate, spec)
            if normalized is None or normalized == dict(config) or self._tile_problem(normalized, context):
                continue
            valid.append(normalized)
        return valid

    def invalid_reason(self, config: Mapping[str, Any], context: Any = None) -> str | None:
        """Why ``config`` is not a config of this kernel (at ``context``'s shape when given), or
        None.  A row-wise config may name its kernel ``"variant"`` (what the dispatcher, Helion's
        own tuner and ``timing-check --adopt`` write); the rest is checked against that
        variant's kernel."""
        if not isinstance(config, Mapping):
            return f"a config is a mapping, got {type(config).__name__}"
        config = dict(config)
        variant = config.pop("variant", None)
        if variant is not None:
            variants = getattr(_backend_module(self.op), "VARIANTS", ())
            if variant not in variants:
                return f"config: 'variant' must be one of {variants}, got {variant!r}"
        try:
            merge_config({}, config)
        except ValueError as exc:
            return str(exc)
        if config.get("maxnreg") not in VALID_MAXNREG:
            # Helion checks this only where CUDA is present: on a CPU machine its normalize would
            # pass a config that every GPU call then refuses.
            return f"config: 'maxnreg' must be one of {list(VALID_MAXNREG)}, got {config['maxnreg']!r}"
        if context is None:
            return None
        if variant is None:
            if self._required(context):
                problem = split_config_problem(config)
                if problem:
                    return problem
            problem = self._tile_problem(config, context)
        else:
            if variant.startswith("split"):  # every split kernel walks its row's parts in order
                problem = split_config_problem(config)
                if problem:
                    return problem
            problem = row_tile_problem(variant, context.shape["N"], config)
        if problem:
            return problem
        try:
            self.config_spec(context, variant).normalize(config)
        except helion.exc.InvalidConfig as exc:
            return str(exc)
        return None

    def features(self, config: Mapping[str, Any]) -> list[float]:
        values: list[float] = []
        for key in sorted(config):
            for v in config[key] if isinstance(config[key], list) else [config[key]]:
                if isinstance(v, bool):
                    values.append(float(v))
                elif isinstance(v, (int, float)):
                    # Block sizes and warps are powers of two: their log is what varies smoothly.
                    values.append(math.log2(v) if isinstance(v, int) and v > 0 else float(v))
                elif v is None:
                    values.append(-1.0)
                else:  # enum strings: a stable code in [0, 1)
                    values.append((zlib.crc32(str(v).encode()) % 997) / 997)
        return values

    def effective_key(self, config: Mapping[str, Any], context: Any) -> str:
        normalized = self._normalized(config, self.config_spec(context))
        return json.dumps(normalized if normalized is not None else dict(config), sort_keys=True, default=str)

    def complete(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    @staticmethod
    def _normalized(config: Mapping[str, Any], spec: Any) -> dict[str, Any] | None:
        candidate = copy.deepcopy(dict(config))
        try:
            spec.normalize(candidate)
        except helion.exc.InvalidConfig:
            return None
        return _to_plain(candidate)


def helion_autotune(op: str, *op_args: Any, effort: str = "quick", **options: Any) -> dict[str, Any]:
    """Run Helion's own autotuner for ``op`` on these arguments (on the GPU); the best config
    as a plain dict that the backend's ``config=`` accepts and the tuning store can keep."""
    module = _backend_module(op)
    fn, args, static_shapes, settings = module.kernel_call(*op_args)
    kernel = helion.kernel(
        fn,
        static_shapes=static_shapes,
        ref_mode=RefMode.OFF,
        autotune_effort=effort if effort in ("quick", "full") else "quick",
        **settings,
    )
    best = _to_plain(kernel.autotune(args, force=True, **options))
    if op == "softmax":
        # The tuned config is for the kernel variant this row length selects.
        best["variant"] = module.shipped_variant(op_args[0].shape[-1])
    return best


def external_autotuner(
    op: str, backend: str, shape: Mapping[str, int], dtype_name: str, effort: str, budget_s: float | None
) -> dict[str, Any]:
    """For ``autotune.tuner.register_external_autotuner("helion", external_autotuner)``.

    ``budget_s`` is not passed on: Helion's effort profile bounds its own search.
    """
    args = registry.spec(op).make_inputs(dict(shape), getattr(torch, dtype_name), "cuda", 0)
    return helion_autotune(op, *args, effort=effort)
