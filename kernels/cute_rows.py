"""Row-reduction machinery shared by the CuTe DSL RMSNorm and softmax kernels.

Memory hierarchy, from the top:

* **Global -> registers.**  A CTA owns a ``[rows_per_cta, cols_per_cta]`` tile.  Thread ``t``
  handles row ``t // threads_per_row`` of the tile and, within it, ``vecs_per_thread`` vectors of
  ``vec`` elements (128 bits when N and the pointers allow), ``threads_per_row * vec`` elements
  apart, so at every step a warp reads contiguous 16-byte chunks.  Every load is issued before
  the first reduction, so each thread has ``vecs_per_thread`` independent 16-byte loads in
  flight; the tile stays in registers (no shared-memory copy of x), which keeps shared memory
  free and lets several CTAs share an SM.
* **Threads -> warp.**  Each thread reduces its own elements, then a butterfly of warp shuffles
  over the ``min(threads_per_row, 32)`` lanes that share a row.
* **Warps -> CTA.**  When a row spans several warps, lane 0 of each warp parks its partial in a
  small shared-memory buffer; after a barrier every warp reads all the row's partials and
  reduces them with shuffles again (so every thread ends with the row's result, no broadcast).
* **CTAs -> cluster.**  A row too long for one CTA's registers is split over a thread-block
  cluster of ``cluster_size`` CTAs (up to 16 on Hopper; above 8 is "non-portable", which the
  DSL allows on every kernel).  Each warp pushes its partial into *every* peer CTA's buffer with
  ``st.async`` to distributed shared memory (lane ``r`` writes to CTA ``r``), each store
  completing bytes on the receiver's mbarrier; a CTA waits until all
  ``rows * warps_per_row * cluster_size`` partials have landed.  One round trip, no
  ``barrier.cluster`` after the exchange: a CTA exits only once everything addressed to it has
  arrived, and the only cluster barrier is the one at the start that publishes the mbarrier
  initialisation before any peer may write to it (its wait overlaps the global loads).

Everything here but ``plan_rows`` needs ``cutlass``; ``plan_rows`` is plain Python so the
config space can be inspected without the DSL.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Tunable parameters; ``vector_bits`` is an upper bound (N or a pointer may force narrower).
CONFIG_SPACE: dict[str, tuple[int, ...]] = {
    "threads_per_cta": (32, 64, 128, 256, 512, 1024),
    "cluster_size": (1, 2, 4, 8, 16),
    "vecs_per_thread": (1, 2, 4, 8, 16, 32),
    "vector_bits": (32, 64, 128),
}

#: Shape classes of the default plan (bf16 / fp16 numbers; fp32 rows are twice the bytes):
#:   N <= 2048    several rows per 128-thread CTA (N=256: 32 rows, 4 threads per row)
#:   N <= 16384   one row per CTA (128 threads up to N=8192, 256 above), no cluster
#:   N >  16384   256 threads per CTA, cluster_size = row bytes / 32 KiB (2 for 32768 ... 16 for 262144)
DEFAULT_CONFIG: dict[str, int] = {"vecs_per_thread": 8, "vector_bits": 128}

#: At most this many float32 values of x per thread, so the tile stays in registers.
MAX_ELEMENTS_PER_THREAD = 128
#: Bytes of a row a CTA takes by default before a cluster is used (256 threads x 128 B).
CTA_ROW_BYTES = 32768
MAX_CLUSTER_SIZE = 16
WARP_SIZE = 32


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class RowPlan:
    """How rows of length ``n`` are tiled over threads, CTAs and clusters (all static)."""

    n: int
    vec: int  # elements per vector access
    threads_per_row: int
    rows_per_cta: int
    cluster_size: int
    vecs_per_thread: int

    @property
    def threads_per_cta(self) -> int:
        return self.threads_per_row * self.rows_per_cta

    @property
    def cols_per_cta(self) -> int:
        return self.threads_per_row * self.vec * self.vecs_per_thread

    @property
    def warps_per_row(self) -> int:
        return max(1, self.threads_per_row // WARP_SIZE)

    @property
    def lanes_per_row(self) -> int:
        """Lanes of a warp that share a row (the width of the shuffle reduction)."""
        return min(self.threads_per_row, WARP_SIZE)

    @property
    def needs_column_predicate(self) -> bool:
        return self.cols_per_cta * self.cluster_size != self.n


def _power_of_2_in(name: str, value: Any, allowed: tuple[int, ...]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
    return value


def vector_elements(n: int, vector_bits: int, operands: Sequence[tuple[int, int]]) -> int:
    """Widest power-of-two vector (in elements) keeping every row start of every operand aligned.

    ``operands`` are ``(element_bits, data_ptr)`` pairs; a vector of ``vec`` elements is one
    ``vec * element_bits``-bit access, at most ``vector_bits`` wide for the widest operand.
    Ragged N (not a multiple of the vector) or a misaligned pointer falls back to narrower
    vectors, down to scalar accesses.
    """
    if vector_bits not in CONFIG_SPACE["vector_bits"]:
        raise ValueError(f"vector_bits: expected one of {CONFIG_SPACE['vector_bits']}, got {vector_bits!r}")
    vec = max(1, vector_bits // max(bits for bits, _ in operands))
    while vec > 1 and (n % vec or any(ptr % (vec * bits // 8) for bits, ptr in operands)):
        vec //= 2
    return vec


def plan_rows(n: int, vec: int, element_bits: int, config: Mapping[str, Any] | None = None) -> RowPlan:
    """Choose the tiling for rows of ``n`` elements read as ``vec``-element vectors.

    ``element_bits`` is the width of the widest tensor read per element (it sets the row's byte
    size, hence the default cluster size).  ``config`` may fix ``threads_per_cta``,
    ``cluster_size`` and ``vecs_per_thread``; the rest is derived.
    """
    unknown = set(config or {}) - set(CONFIG_SPACE)
    if unknown:
        raise ValueError(f"config: unknown parameter(s) {sorted(unknown)}; known: {sorted(CONFIG_SPACE)}")
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    vecs_target = _power_of_2_in("vecs_per_thread", cfg["vecs_per_thread"], CONFIG_SPACE["vecs_per_thread"])
    _power_of_2_in("vector_bits", cfg["vector_bits"], CONFIG_SPACE["vector_bits"])
    num_vecs = -(-n // vec)

    if "cluster_size" not in cfg:
        # Rounding the row's bytes up to a power of two can overshoot (N = 131080 asks for 16 CTAs
        # where 8 hold it, leaving the last CTA empty): fall back to smaller clusters until valid.
        row_bytes = n * element_bits // 8
        cluster = min(MAX_CLUSTER_SIZE, next_power_of_2(-(-row_bytes // CTA_ROW_BYTES)))
        while True:
            try:
                return plan_rows(n, vec, element_bits, {**cfg, "cluster_size": cluster})
            except ValueError:
                if cluster == 1:
                    raise
                cluster //= 2
    cluster = _power_of_2_in("cluster_size", cfg["cluster_size"], CONFIG_SPACE["cluster_size"])
    vecs_per_cta = -(-num_vecs // cluster)

    if "threads_per_cta" in cfg:
        threads_per_cta = _power_of_2_in(
            "threads_per_cta", cfg["threads_per_cta"], CONFIG_SPACE["threads_per_cta"]
        )
    else:
        threads_per_cta = 256 if vecs_per_cta > 128 * vecs_target else 128
    threads_per_row = min(threads_per_cta, next_power_of_2(-(-vecs_per_cta // vecs_target)))
    vecs_per_thread = -(-vecs_per_cta // threads_per_row)
    if vecs_per_thread * vec > MAX_ELEMENTS_PER_THREAD:
        raise ValueError(
            f"config: N={n} needs {vecs_per_thread * vec} elements per thread with threads_per_cta="
            f"{threads_per_cta} and cluster_size={cluster} (at most {MAX_ELEMENTS_PER_THREAD} fit in "
            "registers); raise threads_per_cta or cluster_size"
        )
    if cluster > 1 and threads_per_row < WARP_SIZE:
        # The cluster exchange sends one partial per warp, so a warp must not span rows.
        raise ValueError(
            f"cluster_size: {cluster} splits rows of N={n} so thinly that a row has {threads_per_row} "
            f"threads per CTA (< {WARP_SIZE}); use cluster_size=1 or fewer vecs_per_thread"
        )
    if cluster > 1 and (cluster - 1) * vecs_per_thread * threads_per_row >= num_vecs:
        raise ValueError(f"cluster_size: {cluster} leaves a CTA of the cluster without columns of N={n}")
    return RowPlan(
        n=n,
        vec=vec,
        threads_per_row=threads_per_row,
        rows_per_cta=threads_per_cta // threads_per_row,
        cluster_size=cluster,
        vecs_per_thread=vecs_per_thread,
    )


# ----------------------------------------------------------------------------------------------
# Device code.  Imported lazily by the backends, so importing this module never needs cutlass.
# ----------------------------------------------------------------------------------------------

try:
    import cutlass
    import cutlass.cute as cute
    from cutlass import Float32, Int32, const_expr
except ImportError:  # the backends record cutlass's absence themselves
    cutlass = None  # type: ignore[assignment]

if cutlass is not None:
    LOG2_E = math.log2(math.e)

    def make_tile_copy(dtype: type, plan: RowPlan) -> tuple[Any, Any]:
        """A copy atom of ``plan.vec`` elements and the tiled copy laying threads over a CTA tile.

        Threads are row-major over ``(rows_per_cta, threads_per_row)``; each thread moves one
        vector per copy step, so a warp's step is ``lanes_per_row`` contiguous vectors per row.
        """
        bits = plan.vec * dtype.width
        atom = cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), dtype, num_bits_per_copy=bits)
        thread_layout = cute.make_ordered_layout((plan.rows_per_cta, plan.threads_per_row), order=(1, 0))
        value_layout = cute.make_layout((1, plan.vec))
        return atom, cute.make_tiled_copy_tv(atom, thread_layout, value_layout)

    def make_async_copy_atom(dtype: type, plan: RowPlan) -> Any:
        """A ``cp.async`` global-to-shared atom of ``plan.vec`` elements (4, 8 or 16 bytes), for
        the thread layout of ``make_tile_copy``'s partitions."""
        bits = plan.vec * dtype.width
        return cute.make_copy_atom(cute.nvgpu.cpasync.CopyG2SOp(), dtype, num_bits_per_copy=bits)

    def partials_layout(plan: RowPlan, num_values: int) -> Any:
        """Shared buffer of per-warp partials: (row in CTA, slot = rank * warps_per_row + warp, value)."""
        slots = plan.warps_per_row * plan.cluster_size
        return cute.make_ordered_layout((plan.rows_per_cta, slots, num_values), order=(1, 0, 2))

    @cute.jit
    def cluster_prologue(mbar_ptr: cute.Pointer, cluster_size: cutlass.Constexpr[int]) -> None:
        """Initialise the exchange mbarrier and tell the cluster (the matching wait comes later)."""
        if const_expr(cluster_size > 1):
            if cute.arch.thread_idx()[0] == 0:
                # One arrival: the local thread that announces how many bytes to expect.
                cute.arch.mbarrier_init(mbar_ptr, 1)
            cute.arch.mbarrier_init_fence()
            cute.arch.cluster_arrive_relaxed()

    @cute.jit
    def store_remote_f32(
        value: Float32, local_ptr: cute.Pointer, mbar_ptr: cute.Pointer, peer: Int32
    ) -> None:
        """st.async one float into CTA ``peer``'s copy of ``local_ptr``; completes 4 bytes on its mbarrier."""
        remote = cute.arch.map_dsmem_ptr(local_ptr, peer).toint()
        remote_mbar = cute.arch.map_dsmem_ptr(mbar_ptr, peer).toint()
        cute.arch.inline_ptx(
            "st.async.shared::cluster.mbarrier::complete_tx::bytes.f32 [{$r0}], {$r1}, [{$r2}];",
            read_only_args=[Int32(remote), Float32(value), Int32(remote_mbar)],
        )

    @cute.jit
    def publish_partials(
        values: tuple,
        partials: cute.Tensor,
        mbar_ptr: cute.Pointer,
        warps_per_row: cutlass.Constexpr[int],
        cluster_size: cutlass.Constexpr[int],
    ) -> None:
        """Make every warp's partials visible in ``partials`` of every CTA of the cluster.

        ``values`` are this warp's (already warp-reduced) partials.  On return, ``partials[row,
        slot, k]`` holds value ``k`` of every warp working on this CTA's row ``row``, from every
        CTA of the cluster.  With one warp per row and no cluster there is nothing to do.
        """
        lane = cute.arch.lane_idx()
        warp = cute.arch.warp_idx()
        row_in_cta = warp // warps_per_row
        warp_in_row = warp % warps_per_row
        if const_expr(cluster_size == 1):
            if const_expr(warps_per_row > 1):
                if lane == 0:
                    for k in cutlass.range_constexpr(len(values)):
                        partials[row_in_cta, warp_in_row, k] = values[k]
                cute.arch.barrier()
        else:
            if warp == 0:
                with cute.arch.elect_one():
                    cute.arch.mbarrier_arrive_and_expect_tx(mbar_ptr, cute.cosize(partials.layout) * 4)
            # Peers may write only once their mbarriers are initialised (cluster_prologue).
            cute.arch.cluster_wait()
            rank = cute.arch.block_idx_in_cluster()
            if lane < cluster_size:
                slot = rank * warps_per_row + warp_in_row
                for k in cutlass.range_constexpr(len(values)):
                    target = partials.iterator + cute.crd2idx((row_in_cta, slot, k), partials.layout)
                    store_remote_f32(values[k], target, mbar_ptr, lane)
            cute.arch.mbarrier_wait(mbar_ptr, 0)

    @cute.jit
    def row_sum(
        partial: Float32,
        partials: cute.Tensor,
        mbar_ptr: cute.Pointer,
        plan: cutlass.Constexpr[RowPlan],
    ) -> Float32:
        """Sum of a row from each thread's ``partial``; every thread of the row gets the result."""
        total = cute.arch.warp_reduction(partial, operator.add, threads_in_group=plan.lanes_per_row)
        slots = plan.warps_per_row * plan.cluster_size
        if const_expr(slots > 1):
            publish_partials((total,), partials, mbar_ptr, plan.warps_per_row, plan.cluster_size)
            row_in_cta = cute.arch.warp_idx() // plan.warps_per_row
            lane = cute.arch.lane_idx()
            total = Float32(0.0)
            for i in cutlass.range_constexpr(-(-slots // WARP_SIZE)):
                slot = lane + i * WARP_SIZE
                if slot < slots:
                    total += partials[row_in_cta, slot, 0]
            total = cute.arch.warp_reduction(total, operator.add)
        return total

    @cute.jit
    def finite_or_zero(value: Float32) -> Float32:
        # exp(x - max) with max = -inf (a lane or warp that saw only padding) would be NaN.
        return value if value > -Float32.inf else Float32(0.0)

    @cute.jit
    def softmax_row(
        x: cute.TensorSSA,
        partials: cute.Tensor,
        mbar_ptr: cute.Pointer,
        plan: cutlass.Constexpr[RowPlan],
    ) -> cute.TensorSSA:
        """exp(x - max) / sum(exp(x - max)) of this thread's part of a row, with one exchange.

        Online statistics: each warp takes its own max, exponentiates against it and sums; the
        (max, sum) pairs of the row's warps (of every CTA of the cluster) are merged by rescaling
        each sum to the common max.  A thread then rescales its exps by exp(warp max - row max)
        instead of exponentiating again: one exp per element.
        """
        local_max = x.reduce(cute.ReductionOp.MAX, init_val=-Float32.inf, reduction_profile=0)
        warp_max = cute.arch.warp_reduction(local_max, cute.arch.fmax, threads_in_group=plan.lanes_per_row)
        exp_x = cute.math.exp2(x * LOG2_E - finite_or_zero(warp_max) * LOG2_E, fastmath=True)
        local_sum = exp_x.reduce(cute.ReductionOp.ADD, init_val=Float32(0.0), reduction_profile=0)
        warp_sum = cute.arch.warp_reduction(local_sum, operator.add, threads_in_group=plan.lanes_per_row)
        scale = cute.arch.rcp_approx(warp_sum)
        slots = plan.warps_per_row * plan.cluster_size
        if const_expr(slots > 1):
            publish_partials((warp_max, warp_sum), partials, mbar_ptr, plan.warps_per_row, plan.cluster_size)
            row_in_cta = cute.arch.warp_idx() // plan.warps_per_row
            lane = cute.arch.lane_idx()
            num_reads = -(-slots // WARP_SIZE)
            slot_max = cute.make_rmem_tensor(num_reads, Float32)
            slot_sum = cute.make_rmem_tensor(num_reads, Float32)
            row_max = -Float32.inf
            for i in cutlass.range_constexpr(num_reads):
                slot = lane + i * WARP_SIZE
                slot_max[i] = -Float32.inf
                slot_sum[i] = Float32(0.0)
                if slot < slots:
                    slot_max[i] = partials[row_in_cta, slot, 0]
                    slot_sum[i] = partials[row_in_cta, slot, 1]
                row_max = cute.arch.fmax(row_max, slot_max[i])
            row_max = cute.arch.warp_reduction(row_max, cute.arch.fmax)
            row_shift = finite_or_zero(row_max) * LOG2_E
            row_sum_exp = Float32(0.0)
            for i in cutlass.range_constexpr(num_reads):
                # An empty slot or a warp of padding has max -inf: its factor is exp2(-inf) = 0.
                row_sum_exp += slot_sum[i] * cute.math.exp2(slot_max[i] * LOG2_E - row_shift, fastmath=True)
            row_sum_exp = cute.arch.warp_reduction(row_sum_exp, operator.add)
            scale = cute.math.exp2(warp_max * LOG2_E - row_shift, fastmath=True) * cute.arch.rcp_approx(
                row_sum_exp
            )
        return exp_x * scale

    def fake_rows(dtype: type, n: int, vec: int) -> Any:
        """A (symbolic M, n) row-major tensor whose rows start ``vec``-element aligned."""
        return cute.runtime.make_fake_tensor(
            dtype,
            (cute.sym_int(), n),
            stride=(cute.sym_int64(divisibility=vec), 1),
            assumed_align=vec * dtype.width // 8,
        )

    def fake_vector(dtype: type, n: int, vec: int) -> Any:
        return cute.runtime.make_fake_tensor(dtype, (n,), stride=(1,), assumed_align=vec * dtype.width // 8)

    def compile_options(gpu_arch: str | None = None, ptx_dir: str | None = None) -> str:
        """cute.compile options: TVM-FFI entry (torch tensors in, torch's current stream), and
        optionally a target arch and a PTX dump (how the CPU test compiles without a GPU)."""
        options = ["--enable-tvm-ffi"]
        if gpu_arch:
            options.append(f"--gpu-arch {gpu_arch}")
        if ptx_dir:
            options.append(f"--keep-ptx --dump-dir {ptx_dir}")
        return " ".join(options)

    TORCH_TO_CUTE: dict[Any, type] = {}

    def cute_dtype(torch_dtype: Any) -> type:
        if not TORCH_TO_CUTE:
            import torch

            TORCH_TO_CUTE.update(
                {
                    torch.bfloat16: cutlass.BFloat16,
                    torch.float16: cutlass.Float16,
                    torch.float32: cutlass.Float32,
                }
            )
        return TORCH_TO_CUTE[torch_dtype]

    @cute.jit
    def column_predicate(coords: cute.Tensor, n: cutlass.Constexpr[int]) -> cute.Tensor:
        """Per-vector in-bounds flags for a thread's copy partition of the identity tensor.

        ``coords`` has the copy profile ``((vec, atom_rest), rest_m, rest_n)``; the flag of a
        vector is whether its first column is inside the row (N is a multiple of the vector
        width, so a vector is all in or all out).  Rows are checked separately, once per thread.
        """
        flags = cute.make_rmem_tensor(
            cute.make_layout(
                (cute.size(coords, mode=[0, 1]), cute.size(coords, mode=[1]), cute.size(coords, mode=[2])),
                stride=(cute.size(coords, mode=[2]), 0, 1),
            ),
            cutlass.Boolean,
        )
        for v in cutlass.range_constexpr(cute.size(flags, mode=[0])):
            for k in cutlass.range_constexpr(cute.size(flags, mode=[2])):
                flags[v, 0, k] = cute.elem_less(coords[(0, v), 0, k][1], n)
        return flags
