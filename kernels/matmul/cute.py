"""Matmul in CuTe DSL: a persistent, warp-specialised Hopper (sm_90a) GEMM.

C[M, N] = A[M, K] @ B, where B is [K, N] or, with ``transpose_b``, [N, K] (nn.Linear layout).

Kernel design (one CTA per SM, ``tile_m`` x ``tile_n`` x 64 tiles):

* Warpgroup 0 is the producer: it gives registers back (``setmaxnreg``) and one warp of it
  issues TMA loads of A and B tiles into 128B-swizzled shared memory, ``stages`` deep, each
  stage guarded by a full/empty mbarrier pair (``PipelineTmaAsync``).
* Warpgroups 1.. are consumers (one per 64 rows of the tile): they take extra registers,
  issue WGMMA from shared memory with one WGMMA batch kept in flight, and release a stage
  as soon as the WGMMA reading it has retired.
* Tiles are handed out round-robin over ``grid = min(#tiles, #SMs)`` CTAs and walked in
  grouped order (``group_m`` tile rows at a time) so the A and B tiles that concurrently
  running CTAs read stay in L2.
* Epilogue: the fp32 accumulators are converted to the output dtype, written to swizzled
  shared memory with ``stmatrix`` in 32-column slices and stored with TMA, which clips the
  rows and columns past M and N (TMA loads zero-fill them), so ragged shapes need no
  predication in the kernel.

TMA needs 16-byte aligned row strides, so K and N must be multiples of 8 elements; the
backend's ``supports`` says so instead of computing garbage.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_helpers
import torch
from cutlass.cute.nvgpu import cpasync, warpgroup
from cutlass.tensor_utils import LayoutEnum

from ..registry import Backend

#: Shared memory an sm_90 CTA may use (227 KiB).
_SMEM_CAPACITY_BYTES = 232448
#: Reserved for the mbarriers and alignment padding of the shared storage struct.
_SMEM_RESERVED_BYTES = 1024
_TILE_K = 64  # 64 bf16/fp16 = 128 bytes: exactly one 128B-swizzle row.
_EPI_STAGES = 2
_THREADS_PER_WARPGROUP = 128
#: Register budgets after ``setmaxnreg``: the producer needs few, the consumers hold the accumulators.
_PRODUCER_REGISTERS = 40
_CONSUMER_REGISTERS = 232
_EPILOGUE_BARRIER_ID = 1  # named barrier 0 is __syncthreads

_TORCH_TO_CUTLASS = {torch.bfloat16: cutlass.BFloat16, torch.float16: cutlass.Float16}


class HopperPersistentGemm:
    """The kernel for one static configuration; shapes stay symbolic."""

    def __init__(self, tile_m: int, tile_n: int, stages: int, group_m: int, b_k_major: bool) -> None:
        self.tile_shape_mnk = (tile_m, tile_n, _TILE_K)
        self.stages = stages
        self.group_m = group_m
        self.b_k_major = b_k_major
        # One consumer warpgroup per 64 rows: a 64 x tile_n accumulator per warpgroup.
        self.consumer_warpgroups = tile_m // 64
        self.consumer_threads = self.consumer_warpgroups * _THREADS_PER_WARPGROUP
        self.threads_per_cta = _THREADS_PER_WARPGROUP + self.consumer_threads
        # Consumer warpgroups together store a (tile_m x 32) slice per epilogue step.
        self.epi_tile = (tile_m, 32)

    @cute.jit
    def __call__(
        self,
        mA: cute.Tensor,
        mB: cute.Tensor,
        mC: cute.Tensor,
        grid_ctas: cutlass.Int32,
        stream: Any,
    ) -> None:
        # The kernel sees B as (N, K); a [K, N] B is the same memory with the modes swapped
        # (N-major), which WGMMA reads directly for 16-bit types.
        if cutlass.const_expr(not self.b_k_major):
            mB = cute.make_tensor(mB.iterator, cute.select(mB.layout, mode=[1, 0]))

        ab_dtype = mA.element_type
        c_dtype = mC.element_type
        a_layout = LayoutEnum.from_tensor(mA)
        b_layout = LayoutEnum.from_tensor(mB)
        c_layout = LayoutEnum.from_tensor(mC)
        # The kernel only sees C through its TMA coordinate view, so keep its dtype and layout here.
        self.c_dtype = c_dtype
        self.c_layout = c_layout

        tiled_mma = sm90_helpers.make_trivial_tiled_mma(
            ab_dtype,
            ab_dtype,
            a_layout.sm90_mma_major_mode(),
            b_layout.sm90_mma_major_mode(),
            cutlass.Float32,
            (self.consumer_warpgroups, 1, 1),
            tiler_mn=(64, self.tile_shape_mnk[1]),
        )
        a_smem_staged = sm90_helpers.make_smem_layout_a(a_layout, self.tile_shape_mnk, ab_dtype, self.stages)
        b_smem_staged = sm90_helpers.make_smem_layout_b(b_layout, self.tile_shape_mnk, ab_dtype, self.stages)
        c_smem_staged = sm90_helpers.make_smem_layout_epi(c_dtype, c_layout, self.epi_tile, _EPI_STAGES)

        a_smem_one = cute.slice_(a_smem_staged, (None, None, 0))
        b_smem_one = cute.slice_(b_smem_staged, (None, None, 0))
        tile_m, tile_n, tile_k = self.tile_shape_mnk
        tma_load_a, tma_view_a = cpasync.make_tiled_tma_atom(
            cpasync.CopyBulkTensorTileG2SOp(), mA, a_smem_one, (tile_m, tile_k)
        )
        tma_load_b, tma_view_b = cpasync.make_tiled_tma_atom(
            cpasync.CopyBulkTensorTileG2SOp(), mB, b_smem_one, (tile_n, tile_k)
        )
        tma_store_c, tma_view_c = cpasync.make_tiled_tma_atom(
            cpasync.CopyBulkTensorTileS2GOp(), mC, cute.slice_(c_smem_staged, (None, None, 0)), self.epi_tile
        )
        bytes_per_stage = cute.size_in_bytes(ab_dtype, a_smem_one) + cute.size_in_bytes(ab_dtype, b_smem_one)

        @cute.struct
        class SharedStorage:
            # full[stages] followed by empty[stages]
            stage_barriers: cute.struct.MemRange[cutlass.Int64, self.stages * 2]
            sA: cute.struct.Align[cute.struct.MemRange[ab_dtype, cute.cosize(a_smem_staged)], 1024]
            sB: cute.struct.Align[cute.struct.MemRange[ab_dtype, cute.cosize(b_smem_staged)], 1024]
            sC: cute.struct.Align[cute.struct.MemRange[c_dtype, cute.cosize(c_smem_staged)], 1024]

        self.shared_storage = SharedStorage

        self.kernel(
            tiled_mma,
            tma_load_a,
            tma_view_a,
            tma_load_b,
            tma_view_b,
            tma_store_c,
            tma_view_c,
            a_smem_staged,
            b_smem_staged,
            c_smem_staged,
            bytes_per_stage,
        ).launch(
            grid=[grid_ctas, 1, 1],
            block=[self.threads_per_cta, 1, 1],
            min_blocks_per_mp=1,
            stream=stream,
        )

    @cute.jit
    def tile_coords(
        self, tile_id: cutlass.Int32, num_m_tiles: cutlass.Int32, num_n_tiles: cutlass.Int32
    ) -> tuple[cutlass.Int32, cutlass.Int32]:
        """Grouped order: ``group_m`` tile rows are swept column by column, m fastest."""
        tiles_per_group = num_n_tiles * self.group_m
        first_m = (tile_id // tiles_per_group) * self.group_m
        rows_in_group = cutlass.min(num_m_tiles - first_m, self.group_m)
        within_group = tile_id % tiles_per_group
        return first_m + within_group % rows_in_group, within_group // rows_in_group

    @cute.kernel
    def kernel(
        self,
        tiled_mma: cute.TiledMma,
        tma_load_a: cute.CopyAtom,
        mA: cute.Tensor,
        tma_load_b: cute.CopyAtom,
        mB: cute.Tensor,
        tma_store_c: cute.CopyAtom,
        mC: cute.Tensor,
        a_smem_staged: cute.ComposedLayout,
        b_smem_staged: cute.ComposedLayout,
        c_smem_staged: cute.ComposedLayout,
        bytes_per_stage: cutlass.Constexpr,
    ) -> None:
        tidx, _, _ = cute.arch.thread_idx()
        cta_id, _, _ = cute.arch.block_idx()
        num_ctas, _, _ = cute.arch.grid_dim()
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        warpgroup_idx = cute.arch.make_warp_uniform(tidx // _THREADS_PER_WARPGROUP)

        if warp_idx == 0:
            cpasync.prefetch_descriptor(tma_load_a)
            cpasync.prefetch_descriptor(tma_load_b)
            cpasync.prefetch_descriptor(tma_store_c)

        smem = cutlass.utils.SmemAllocator()
        storage = smem.allocate(self.shared_storage)
        # One elected producer thread arms each stage; lane 0 of every consumer warp frees it.
        load_pipeline = pipeline.PipelineTmaAsync.create(
            barrier_storage=storage.stage_barriers.data_ptr(),
            num_stages=self.stages,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
            consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, self.consumer_warpgroups * 4),
            tx_count=bytes_per_stage,
            cta_layout_vmnk=cute.make_layout((1, 1, 1, 1)),
        )

        sA = storage.sA.get_tensor(a_smem_staged.outer, swizzle=a_smem_staged.inner)
        sB = storage.sB.get_tensor(b_smem_staged.outer, swizzle=b_smem_staged.inner)
        sC = storage.sC.get_tensor(c_smem_staged.outer, swizzle=c_smem_staged.inner)

        tile_m, tile_n, tile_k = self.tile_shape_mnk
        # (tile, tile, tiles along the first mode, tiles along K)
        gA = cute.local_tile(mA, (tile_m, tile_k), (None, None))
        gB = cute.local_tile(mB, (tile_n, tile_k), (None, None))
        gC = cute.local_tile(mC, (tile_m, tile_n), (None, None))
        num_m_tiles = cute.size(gA, mode=[2])
        num_n_tiles = cute.size(gB, mode=[2])
        num_k_tiles = cute.size(gA, mode=[3])
        num_tiles = num_m_tiles * num_n_tiles

        # TMA views: (TMA, stage) in shared memory, (TMA, tile index, k tile) in global memory.
        tAsA, tAgA = cpasync.tma_partition(
            tma_load_a, 0, cute.make_layout(1), cute.group_modes(sA, 0, 2), cute.group_modes(gA, 0, 2)
        )
        tBsB, tBgB = cpasync.tma_partition(
            tma_load_b, 0, cute.make_layout(1), cute.group_modes(sB, 0, 2), cute.group_modes(gB, 0, 2)
        )

        if warpgroup_idx == 0:
            cute.arch.warpgroup_reg_dealloc(_PRODUCER_REGISTERS)
            if warp_idx == 0:
                load_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.stages)
                tile_id = cta_id
                while tile_id < num_tiles:
                    m_idx, n_idx = self.tile_coords(tile_id, num_m_tiles, num_n_tiles)
                    tAgA_tile = tAgA[(None, m_idx, None)]
                    tBgB_tile = tBgB[(None, n_idx, None)]
                    for k_tile in range(num_k_tiles):
                        load_pipeline.producer_acquire(load_state)
                        full_barrier = load_pipeline.producer_get_barrier(load_state)
                        cute.copy(
                            tma_load_a,
                            tAgA_tile[(None, k_tile)],
                            tAsA[(None, load_state.index)],
                            tma_bar_ptr=full_barrier,
                        )
                        cute.copy(
                            tma_load_b,
                            tBgB_tile[(None, k_tile)],
                            tBsB[(None, load_state.index)],
                            tma_bar_ptr=full_barrier,
                        )
                        load_pipeline.producer_commit(load_state)
                        load_state.advance()
                    tile_id += num_ctas
                # Keep the CTA alive until the consumers have drained every stage.
                load_pipeline.producer_tail(load_state)
        else:
            cute.arch.warpgroup_reg_alloc(_CONSUMER_REGISTERS)
            consumer_tidx = tidx - _THREADS_PER_WARPGROUP
            # WGMMA partitions A and B per warpgroup, so slice by the warpgroup's first thread.
            thr_mma = tiled_mma.get_slice((warpgroup_idx - 1) * _THREADS_PER_WARPGROUP)
            tCrA = tiled_mma.make_fragment_A(thr_mma.partition_A(sA))
            tCrB = tiled_mma.make_fragment_B(thr_mma.partition_B(sB))
            accumulator_shape = thr_mma.partition_C(gC[(None, None, 0, 0)]).shape
            accumulators = cute.make_rmem_tensor(accumulator_shape, cutlass.Float32)
            k_blocks_per_tile = cute.size(tCrA, mode=[2])

            # Epilogue plumbing: registers -> swizzled smem with stmatrix, smem -> gmem with TMA.
            c_dtype = self.c_dtype
            c_layout = self.c_layout
            stmatrix_atom = cute.make_copy_atom(
                cute.nvgpu.warp.StMatrix8x8x16bOp(c_layout.is_m_major_c(), 4), c_dtype
            )
            r2s_copy = cute.make_tiled_copy_S(
                sm90_helpers.get_smem_store_op(c_layout, c_dtype, cutlass.Float32),
                cute.make_tiled_copy_C_atom(stmatrix_atom, tiled_mma),
            )
            thr_r2s = r2s_copy.get_slice(consumer_tidx)
            tRS_sC = thr_r2s.partition_D(sC)
            tRS_acc = r2s_copy.retile(accumulators)
            slice_shape = cute.shape(thr_r2s.partition_S(sC))[:3]
            slice_fp32 = cute.make_rmem_tensor(slice_shape, cutlass.Float32)
            slice_out = cute.make_rmem_tensor(slice_shape, c_dtype)
            values_per_slice = cute.size(slice_fp32)
            slices_per_tile = tile_n // self.epi_tile[1]
            epilogue_barrier = pipeline.NamedBarrier(
                barrier_id=_EPILOGUE_BARRIER_ID, num_threads=self.consumer_threads
            )
            store_pipeline = pipeline.PipelineTmaStore.create(
                num_stages=_EPI_STAGES,
                producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, self.consumer_threads),
            )
            is_store_warp = warp_idx == 4  # first warp of the first consumer warpgroup

            read_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
            release_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.stages)
            slices_stored = cutlass.Int32(0)
            tile_id = cta_id
            while tile_id < num_tiles:
                m_idx, n_idx = self.tile_coords(tile_id, num_m_tiles, num_n_tiles)

                # Mainloop: one WGMMA batch stays in flight, and a stage is released as soon as
                # the batch that read it has retired.
                accumulators.fill(0.0)
                tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
                for k_tile in range(num_k_tiles):
                    load_pipeline.consumer_wait(read_state)
                    warpgroup.fence()
                    for k_block in cutlass.range_constexpr(k_blocks_per_tile):
                        coord = (None, None, k_block, read_state.index)
                        cute.gemm(tiled_mma, accumulators, tCrA[coord], tCrB[coord], accumulators)
                    warpgroup.commit_group()
                    warpgroup.wait_group(1)
                    if k_tile > 0:
                        load_pipeline.consumer_release(release_state)
                        release_state.advance()
                    read_state.advance()
                warpgroup.wait_group(0)
                if num_k_tiles > 0:
                    load_pipeline.consumer_release(release_state)
                    release_state.advance()

                # Epilogue, one tile_m x 32 slice at a time through a double-buffered smem tile.
                tile_views = cute.zipped_divide(gC[(None, None, m_idx, n_idx)], self.epi_tile)
                bSG_sC, bSG_gC = cpasync.tma_partition(
                    tma_store_c, 0, cute.make_layout(1), cute.group_modes(sC, 0, 2), tile_views
                )
                for slice_idx in cutlass.range_constexpr(slices_per_tile):
                    for v in cutlass.range_constexpr(values_per_slice):
                        slice_fp32[v] = tRS_acc[slice_idx * values_per_slice + v]
                    slice_out.store(slice_fp32.load().to(c_dtype))
                    buffer = (slices_stored + slice_idx) % _EPI_STAGES
                    cute.copy(r2s_copy, slice_out, tRS_sC[(None, None, None, buffer)])
                    # Make the generic-proxy smem writes visible to the TMA (async proxy) store.
                    cute.arch.fence_proxy("async.shared", space="cta")
                    epilogue_barrier.arrive_and_wait()
                    if is_store_warp:
                        cute.copy(tma_store_c, bSG_sC[(None, buffer)], bSG_gC[(None, (0, slice_idx))])
                        store_pipeline.producer_commit()
                        # Wait until the store issued before this one has read its buffer,
                        # which the next slice writes into.
                        store_pipeline.producer_acquire()
                    epilogue_barrier.arrive_and_wait()
                slices_stored += slices_per_tile
                tile_id += num_ctas
            if is_store_warp:
                store_pipeline.producer_tail()


# --------------------------------------------------------------------------------------------
# Configuration


CONFIG_SPACE: dict[str, tuple[Any, ...]] = {
    "tile_m": (64, 128),
    "tile_n": (64, 128, 192, 256),
    "stages": (0, 2, 3, 4, 5, 6, 7, 8),  # 0: as many as fit in shared memory
    "group_m": (1, 4, 8, 16),
}
DEFAULT_CONFIG: dict[str, Any] = {"tile_m": 128, "tile_n": 256, "stages": 0, "group_m": 8}


#: Tile shapes (tile_m, tile_n) from the most to the least efficient per WGMMA byte loaded.
_TILE_LADDER = ((128, 256), (128, 128), (64, 128), (64, 64))
_H100_SMS = 132


def config_for_shape(m: int, n: int, k: int) -> dict[str, Any]:
    """The shipped configuration per shape class.

    The largest tile that still gives at least ~3/4 of a wave of CTAs on an H100 wins:
    128x256 for large problems (highest WGMMA efficiency), stepping down for small M
    (decode) so more SMs stream B; decode-sized M (<= 64) starts at 64-row tiles so
    less of each WGMMA is spent on padding rows.
    """
    ladder = [t for t in _TILE_LADDER if m > 64 or t[0] == 64]
    tile_m, tile_n = ladder[-1]
    for candidate_m, candidate_n in ladder:
        if math.ceil(m / candidate_m) * math.ceil(n / candidate_n) >= 0.75 * _H100_SMS:
            tile_m, tile_n = candidate_m, candidate_n
            break
    return {"tile_m": tile_m, "tile_n": tile_n, "stages": 0, "group_m": 8 if m > 64 else 1}


def _stage_bytes(tile_m: int, tile_n: int) -> int:
    return (tile_m + tile_n) * _TILE_K * 2


def _max_stages(tile_m: int, tile_n: int) -> int:
    epilogue_bytes = tile_m * 32 * 2 * _EPI_STAGES
    free = _SMEM_CAPACITY_BYTES - _SMEM_RESERVED_BYTES - epilogue_bytes - 3 * 1024  # struct alignment
    return free // _stage_bytes(tile_m, tile_n)


def resolve_config(config: Mapping[str, Any] | None, m: int, n: int, k: int) -> tuple[int, int, int, int]:
    """Merge ``config`` over the shape's default and validate; returns (tile_m, tile_n, stages, group_m)."""
    merged = config_for_shape(m, n, k)
    if config:
        unknown = set(config) - set(CONFIG_SPACE)
        if unknown:
            raise ValueError(f"config: unknown parameter(s) {sorted(unknown)}; known: {sorted(CONFIG_SPACE)}")
        merged.update(config)
    for name, allowed in CONFIG_SPACE.items():
        if merged[name] not in allowed:
            raise ValueError(f"config[{name!r}] = {merged[name]!r} is not one of {allowed}")
    tile_m, tile_n, stages, group_m = merged["tile_m"], merged["tile_n"], merged["stages"], merged["group_m"]
    most = _max_stages(tile_m, tile_n)
    if stages == 0:
        # Beyond 8 stages the loads are already far enough ahead; more only costs barriers.
        stages = min(most, 8)
    if stages > most:
        raise ValueError(
            f"config['stages'] = {stages} does not fit in shared memory with a {tile_m}x{tile_n} tile "
            f"(at most {most})"
        )
    # A 64-row accumulator per consumer warpgroup of 64 x tile_n fp32 must fit in the register budget.
    if tile_n > 256:
        raise ValueError(f"config['tile_n'] = {tile_n} exceeds the WGMMA N limit of 256")
    return tile_m, tile_n, stages, group_m


# --------------------------------------------------------------------------------------------
# Compilation (once per dtype, layout and config; M, N, K and strides are symbolic)


def _fake_row_major(dtype: type[cutlass.Numeric], rows: Any, cols: Any) -> cute.Tensor:
    # Row strides are only known to be multiples of 8 elements (16 bytes), which TMA needs.
    stride = (cute.sym_int64(divisibility=8), 1)
    return cute.runtime.make_fake_tensor(dtype, (rows, cols), stride=stride, assumed_align=16)


def compile_gemm(
    dtype: torch.dtype,
    transpose_b: bool,
    tile_m: int,
    tile_n: int,
    stages: int,
    group_m: int,
    options: str = "--enable-tvm-ffi",
) -> Any:
    """Compile against fake tensors (no GPU needed); the result is called with torch tensors."""
    ab_dtype = _TORCH_TO_CUTLASS[dtype]
    m = cute.sym_int()
    n = cute.sym_int(divisibility=8)
    k = cute.sym_int(divisibility=8)
    fake_a = _fake_row_major(ab_dtype, m, k)
    fake_b = _fake_row_major(ab_dtype, n, k) if transpose_b else _fake_row_major(ab_dtype, k, n)
    fake_c = _fake_row_major(ab_dtype, m, n)
    gemm = HopperPersistentGemm(tile_m, tile_n, stages, group_m, b_k_major=transpose_b)
    stream = cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True)
    return cute.compile(gemm, fake_a, fake_b, fake_c, cutlass.Int32(1), stream, options=options)


_compiled = functools.lru_cache(maxsize=None)(compile_gemm)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


# --------------------------------------------------------------------------------------------
# Backend


def _shape(a: torch.Tensor, b: torch.Tensor, transpose_b: bool) -> tuple[int, int, int]:
    m, k = a.shape
    n = b.shape[0] if transpose_b else b.shape[1]
    return m, n, k


def supports(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool = False,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> str | None:
    if a.dtype not in _TORCH_TO_CUTLASS:
        return f"dtype {a.dtype} is not supported (bf16 and fp16 only)"
    _, n, k = _shape(a, b, transpose_b)
    if k % 8 or n % 8:
        return f"TMA needs 16-byte aligned rows: K={k} and N={n} must be multiples of 8"
    tensors = [a, b] + ([out] if out is not None else [])
    if any(t.data_ptr() % 16 for t in tensors):
        return "TMA needs 16-byte aligned base pointers"
    if any(not t.is_contiguous() for t in tensors):
        return "inputs must be contiguous"
    return None


def matmul_cute(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool = False,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    m, n, k = _shape(a, b, transpose_b)
    reason = supports(a, b, transpose_b, out)
    if reason is not None:
        raise ValueError(f"matmul_cute: {reason}")
    tile_m, tile_n, stages, group_m = resolve_config(config, m, n, k)
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        # A TMA descriptor cannot describe an empty K extent; the product is all zeros.
        return out.zero_()
    kernel = _compiled(a.dtype, bool(transpose_b), tile_m, tile_n, stages, group_m)
    num_tiles = math.ceil(m / tile_m) * math.ceil(n / tile_n)
    grid_ctas = min(num_tiles, _sm_count(a.device.index if a.device.index is not None else 0))
    kernel(a, b, out, grid_ctas)
    return out


BACKENDS = [
    Backend(
        op="matmul",
        name="cute",
        dsl="cute",
        fn=matmul_cute,
        requires=("cutlass",),
        devices=("cuda",),
        min_cc=(9, 0),
        writes_out=True,
        supports=supports,
        config_space=CONFIG_SPACE,
        default_config=DEFAULT_CONFIG,
    )
]
