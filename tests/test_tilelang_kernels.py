"""TileLang backends on a machine without a GPU.

TileLang lowers a kernel to CUDA C++ without a device, so CI checks what the H100 would run:
each kernel is lowered once for sm_90a (module-scoped fixture, lowering is slow), the sources
are compiled by nvcc to PTX and assembled by ptxas for sm_90a, and the matmul is checked to
use wgmma and TMA. The kernels' numerics are checked on the GPU by the harness, not here.

To keep nvcc's time down (parsing TileLang's and CUTLASS's headers dominates), the row-wise
kernels share one translation unit and the matmuls another; their kernel names are made unique.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from sass_tools import sass

pytest.importorskip("tilelang")

from tilearena.kernels import registry
from tilearena.kernels.matmul import tilelang as matmul_tl
from tilearena.kernels.rmsnorm import tilelang as rmsnorm_tl
from tilearena.kernels.softmax import tilelang as softmax_tl
from tilearena.kernels.tilelang_common import (
    HOPPER_ARCH,
    ROW_SEED_CONFIGS,
    lower_to_cuda_source,
    nvcc_command,
    nvcc_path,
)

BF16 = torch.bfloat16

#: cluster_slice "bulk" with the chunking of the adopted "shared" configs (cluster_size added).
BULK = {"cluster_slice": "bulk", "chunk": 4096, "chunk_threads": 256}

#: The kernel shipped at 262144 columns (bf16, both ops) with its walks rearranged.
LEAN = {**BULK, "cluster_size": 8, "cluster_walk": "lean"}

#: name -> (prim_func factory, pass configs, features the source must show).
ROWWISE_CASES = {
    # Short rows: several rows per block in registers.
    "rmsnorm_small": lambda: rmsnorm_tl.build_rmsnorm(*rmsnorm_tl.kernel_key(BF16, BF16, 128, None)),
    # Ragged N (odd: no vector loads possible), fp32 weight.
    "rmsnorm_ragged": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, torch.float32, 1001, None)
    ),
    # Too long for registers, fits in shared memory: resident kernel.
    "rmsnorm_resident": lambda: rmsnorm_tl.build_rmsnorm(*rmsnorm_tl.kernel_key(BF16, BF16, 65536, None)),
    # The longest row the spec allows: chunked kernel.
    "rmsnorm_large": lambda: rmsnorm_tl.build_rmsnorm(*rmsnorm_tl.kernel_key(BF16, BF16, 262144, None)),
    "softmax_small": lambda: softmax_tl.build_softmax(*softmax_tl.kernel_key(BF16, 4096, None)),
    "softmax_ragged": lambda: softmax_tl.build_softmax(*softmax_tl.kernel_key(torch.float16, 100003, None)),
    "softmax_large": lambda: softmax_tl.build_softmax(*softmax_tl.kernel_key(BF16, 262144, None)),
    # A row split over a thread-block cluster, slices swapped through distributed shared memory;
    # ragged N (the padded slice past N is predicated).
    "rmsnorm_cluster": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 65536 + 40, {"cluster_size": 4})
    ),
    "softmax_cluster": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 262144, {"cluster_size": 8})
    ),
    # The slice in shared memory, partials sent as bulk copies between SMs.
    "rmsnorm_cluster_shared": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 65536 + 64, {"cluster_size": 4, "cluster_slice": "shared"})
    ),
    "softmax_cluster_shared": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 262144, {"cluster_size": 8, "cluster_slice": "shared", "chunk": 4096,
                                              "chunk_threads": 256})
    ),
    # The same, the slice brought into shared memory by one bulk copy (cp.async.bulk) per CTA.
    "rmsnorm_cluster_bulk": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 262144, {**BULK, "cluster_size": 8})
    ),
    "rmsnorm_cluster_bulk_65536": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 65536, {**BULK, "cluster_size": 4})
    ),
    "softmax_cluster_bulk": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 262144, {**BULK, "cluster_size": 8})
    ),
    "softmax_cluster_bulk_65536": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 65536, {**BULK, "cluster_size": 4})
    ),
    # 16 CTAs a row (a non-portable cluster): 32 KiB slices, six CTAs an SM.
    "softmax_cluster_bulk_16": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 262144, {**BULK, "cluster_size": 16})
    ),
    # cluster_walk "lean": the shipped 262144-column kernels with their walks rearranged; a ragged
    # row (the element-wise "shared" kernel, columns past N masked in every walk) with an fp32
    # weight; and one chunk a slice (no pairs of chunks to prefetch between).
    "rmsnorm_cluster_bulk_lean": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 262144, LEAN)
    ),
    "softmax_cluster_bulk_lean": lambda: softmax_tl.build_softmax(*softmax_tl.kernel_key(BF16, 262144, LEAN)),
    "rmsnorm_cluster_shared_lean": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, torch.float32, 65536 + 40, {**LEAN, "cluster_size": 4})
    ),
    "softmax_cluster_shared_lean": lambda: softmax_tl.build_softmax(
        *softmax_tl.kernel_key(BF16, 65536 + 40, {**LEAN, "cluster_size": 4})
    ),
    "rmsnorm_cluster_bulk_lean_1chunk": lambda: rmsnorm_tl.build_rmsnorm(
        *rmsnorm_tl.kernel_key(BF16, BF16, 65536, {**LEAN, "cluster_size": 4, "chunk": 16384,
                                                   "chunk_threads": 1024})
    ),
}

#: The bulk-copy cluster kernels among ROWWISE_CASES -> the slice's size in bytes.
BULK_CASES = {
    "rmsnorm_cluster_bulk": 65536,
    "rmsnorm_cluster_bulk_65536": 32768,
    "softmax_cluster_bulk": 65536,
    "softmax_cluster_bulk_65536": 32768,
    "softmax_cluster_bulk_16": 32768,
    "rmsnorm_cluster_bulk_lean": 65536,
    "softmax_cluster_bulk_lean": 65536,
    "rmsnorm_cluster_bulk_lean_1chunk": 32768,
}

MATMUL_SHAPES = {
    # Decode: M = 16 against a Llama-3 8B projection in nn.Linear layout.
    "matmul_decode_nt": (16, 4096, 4096, True),
    # Prefill-sized M, B as [K, N].
    "matmul_large_nn": (4096, 14336, 4096, False),
    # Decode as C^T = B^T A^T (wgmma 64xN16), in both layouts of B.
    "matmul_swap_nt": (1, 4096, 4096, True, {"swap_ab": True}),
    "matmul_swap_nn": (16, 4096, 4096, False, {"swap_ab": True, "num_stages": 5}),
}


def _matmul_case(m: int, n: int, k: int, transpose_b: bool, config: dict | None = None) -> tuple:
    key = matmul_tl.kernel_key(m, n, k, transpose_b, BF16, config)
    return matmul_tl.build_matmul(*key), matmul_tl.tma_pass_configs(n, k)


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    lowered = {name: lower_to_cuda_source(factory()) for name, factory in ROWWISE_CASES.items()}
    for name, shape in MATMUL_SHAPES.items():
        func, pass_configs = _matmul_case(*shape)
        lowered[name] = lower_to_cuda_source(func, pass_configs=pass_configs)
    return lowered


def _one_translation_unit(named_sources: dict[str, str]) -> str:
    """Concatenate generated sources, giving each ``extern "C"`` kernel a unique name."""
    parts = []
    for name, source in named_sources.items():
        parts.append(re.sub(r"\b(\w+_kernel)\(", rf"\1_{name}(", source))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def compiled(
    sources: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str]]:
    """group -> (exit status, compiler messages, PTX text), for nvcc --ptx then ptxas."""
    if nvcc_path() is None:
        pytest.skip("nvcc not found: the generated CUDA could not be compiled here")
    folder = tmp_path_factory.mktemp("tilelang_cuda")
    groups = {
        "rowwise": {name: sources[name] for name in ROWWISE_CASES},
        "matmul": {name: sources[name] for name in MATMUL_SHAPES},
    }
    running = {}
    for group, named in groups.items():
        source_path = folder / f"{group}.cu"
        source_path.write_text(_one_translation_unit(named))
        command = nvcc_command(str(source_path), str(folder / f"{group}.ptx"), ptx_only=True)
        running[group] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    results = {}
    ptxas = str(Path(nvcc_path()).with_name("ptxas"))
    for group, process in running.items():
        messages, _ = process.communicate(timeout=300)
        ptx_path = folder / f"{group}.ptx"
        if process.returncode != 0 or not ptx_path.exists():
            results[group] = (process.returncode or 1, messages, "")
            continue
        # Assembling for the real sm_90a is what proves wgmma/TMA instructions are legal there.
        assembled = subprocess.run(
            [ptxas, f"-arch={HOPPER_ARCH}", str(ptx_path), "-o", str(folder / f"{group}.cubin")],
            capture_output=True, text=True, timeout=300,
        )
        results[group] = (assembled.returncode, messages + assembled.stderr, ptx_path.read_text())
    _CUBINS.update({group: folder / f"{group}.cubin" for group in running})
    return results


_CUBINS: dict[str, Path] = {}


def compiled_cubin(compiled: dict, group: str = "matmul") -> Path:
    """The cubin the ``compiled`` fixture assembled for ``group``."""
    return _CUBINS[group]


# ------------------------------------------------------------------------- no lowering needed


def test_backends_register() -> None:
    for op in ("rmsnorm", "softmax", "matmul"):
        backend = registry.backend(op, "tilelang")
        assert not isinstance(backend, registry.UnavailableBackend), getattr(backend, "reason", "")
        assert backend.dsl == "tilelang" and backend.requires == ("tilelang",)
        assert set(backend.default_config) <= set(backend.config_space)
    assert registry.backend("matmul", "tilelang").min_cc == (9, 0)


def test_row_plans() -> None:
    assert rmsnorm_tl.kernel_key(BF16, BF16, 128, None)[3:] == ("rows", 128, 64, 256, 0)
    assert rmsnorm_tl.kernel_key(BF16, BF16, 4096, None)[3:6] == ("rows", 4096, 2)
    assert rmsnorm_tl.kernel_key(BF16, BF16, 32768, None)[3:6] == ("rows", 32768, 1)
    assert rmsnorm_tl.kernel_key(BF16, BF16, 65536, None)[3] == "resident"
    assert rmsnorm_tl.kernel_key(torch.float32, torch.float32, 65536, None)[3] == "chunked"
    assert rmsnorm_tl.kernel_key(BF16, BF16, 32769, None)[3] == "chunked"  # rows not 16-byte aligned
    assert rmsnorm_tl.kernel_key(BF16, BF16, 65536, {"max_resident_bytes": 0})[3] == "chunked"
    assert softmax_tl.kernel_key(BF16, 262144, {"chunk": 4096})[2:4] == ("chunked", 4096)
    # cluster: (kind, slice per CTA, CTAs per cluster, threads)
    assert softmax_tl.kernel_key(BF16, 262144, {"cluster_size": 8})[2:6] == ("cluster", 32768, 8, 1024)
    assert rmsnorm_tl.kernel_key(BF16, BF16, 65536, {"cluster_size": 4})[3:7] == ("cluster", 16384, 4, 512)
    # cluster_shared: (kind, chunk, CTAs per cluster, threads); a ragged row takes registers.
    shared = {"cluster_size": 8, "cluster_slice": "shared", "chunk": 4096, "chunk_threads": 256}
    assert softmax_tl.kernel_key(BF16, 262144, shared)[2:6] == ("cluster_shared", 4096, 8, 256)
    assert softmax_tl.kernel_key(BF16, 262144 - 4, shared)[2] == "cluster"
    wide = {**shared, "chunk": 16384}  # a chunk no longer than the slice
    assert rmsnorm_tl.kernel_key(BF16, BF16, 65536, wide)[3:5] == ("cluster_shared", 8192)
    # Rows that fit in registers ignore the cluster size.
    assert softmax_tl.kernel_key(BF16, 4096, {"cluster_size": 8})[2] == "rows"


@pytest.mark.parametrize(
    ("config", "parameter"),
    [({"chunk": 1000}, "chunk"), ({"num_stages": 9}, "num_stages"), ({"block": 64}, "block"),
     ({"chunk": 2048, "chunk_threads": 1024}, "chunk_threads"), ({"cluster_size": 3}, "cluster_size"),
     ({"cluster_size": 2}, "cluster_size"),  # 131072 per CTA: more than max_row_in_registers
     ({"cluster_size": 2, "cluster_slice": "shared"}, "cluster_size"),  # 256 KiB of shared memory
     ({"cluster_size": 2, "cluster_slice": "bulk"}, "cluster_size"),  # the same limits as "shared"
     ({"cluster_size": 8, "cluster_slice": "bulk", "chunk": 2048, "chunk_threads": 1024}, "chunk_threads"),
     ({"cluster_slice": "global"}, "cluster_slice"),
     ({**BULK, "cluster_size": 8, "cluster_walk": "fast"}, "cluster_walk"),
     ({**BULK, "cluster_size": 8, "cluster_walk": True}, "cluster_walk"),
     ({"cluster_size": 8, "cluster_slice": "shared", "chunk": 2048, "chunk_threads": 1024}, "chunk_threads")],
)
def test_bad_row_config_raises(config: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        rmsnorm_tl.kernel_key(BF16, BF16, 262144, config)


def test_bulk_row_plans() -> None:
    # cluster_bulk: (kind, chunk, CTAs per cluster, threads), as cluster_shared.
    assert softmax_tl.kernel_key(BF16, 262144, {**BULK, "cluster_size": 8})[2:6] == (
        "cluster_bulk", 4096, 8, 256
    )
    assert rmsnorm_tl.kernel_key(BF16, BF16, 65536, {**BULK, "cluster_size": 4})[3:7] == (
        "cluster_bulk", 4096, 4, 256
    )
    # A bulk copy cannot zero the columns past N: a row whose padded slices overrun it (the last
    # CTA's slice partly or wholly past N) takes the kernel "shared" gives, decided at build time.
    for n in (65536 + 64, 131072 - 64):
        bulk = rmsnorm_tl.kernel_key(BF16, BF16, n, {**BULK, "cluster_size": 4})
        shared = rmsnorm_tl.kernel_key(BF16, BF16, n, {**BULK, "cluster_size": 4, "cluster_slice": "shared"})
        assert bulk == shared and bulk[3] == "cluster_shared", n
    assert softmax_tl.kernel_key(BF16, 65536 + 36, {**BULK, "cluster_size": 4})[2] == "cluster"  # not 16-byte
    # Rows that fit in registers ignore it, as every cluster setting.
    assert softmax_tl.kernel_key(BF16, 4096, {**BULK, "cluster_size": 8})[2] == "rows"
    # The builders refuse a ragged row outright rather than copy past its end.
    with pytest.raises(ValueError, match="n: a bulk-copied slice"):
        rmsnorm_tl.build_rmsnorm(65536 + 64, "bfloat16", "bfloat16", "cluster_bulk", 4096, 4, 256, 0)
    with pytest.raises(ValueError, match="n: a bulk-copied slice"):
        softmax_tl.build_softmax(65536 + 64, "bfloat16", "cluster_bulk", 4096, 4, 256, 0)


def test_bulk_seeds_mirror_the_shared_seeds() -> None:
    seeds = {
        (s["cluster_slice"], s["cluster_size"]): s
        for s in ROW_SEED_CONFIGS
        if s["cluster_size"] > 1 and s["cluster_walk"] == "plain"
    }
    for size in (2, 4, 8):
        assert seeds[("bulk", size)] == {**seeds[("shared", size)], "cluster_slice": "bulk"}
    # Where the rows fit the bulk kernel, its seeds reach it; cluster 2 leaves 256 KiB slices at
    # 262144 columns and is refused, as the "shared" seed is.
    assert rmsnorm_tl.kernel_key(BF16, BF16, 262144, seeds[("bulk", 8)])[3] == "cluster_bulk"
    with pytest.raises(ValueError, match="cluster_size"):
        rmsnorm_tl.kernel_key(BF16, BF16, 262144, seeds[("bulk", 2)])


def test_lean_seeds_reach_the_lean_kernels_where_they_won() -> None:
    lean = [s for s in ROW_SEED_CONFIGS if s["cluster_walk"] == "lean"]
    assert {(s["cluster_slice"], s["cluster_size"]) for s in lean} == {
        (held, size) for held in ("shared", "bulk") for size in (4, 8)
    }
    for seed in lean:
        if seed["cluster_size"] != 8:
            continue
        kind = "cluster_bulk_lean" if seed["cluster_slice"] == "bulk" else "cluster_shared_lean"
        assert rmsnorm_tl.kernel_key(BF16, BF16, 262144, seed)[3] == kind
        assert softmax_tl.kernel_key(BF16, 262144, seed)[2] == kind


def test_bulk_kernel_refuses_misaligned_rows() -> None:
    """A view 2 bytes off a 16-byte boundary: the dispatcher's ``supports`` refuses it, and a
    direct call fails with the argument's name before any kernel (a bulk copy from it would fault)."""
    n = 65536
    x = torch.randn(2 * n + 8, dtype=BF16)[1 : 1 + 2 * n].view(2, n)
    weight = torch.ones(n, dtype=BF16)
    for config in ({**BULK, "cluster_size": 4}, {**BULK, "cluster_size": 4, "cluster_walk": "lean"}):
        with pytest.raises(ValueError, match="x is not 16-byte aligned"):
            rmsnorm_tl.rmsnorm_tilelang(x, weight, 1e-6, config=config)
        with pytest.raises(ValueError, match="x is not 16-byte aligned"):
            softmax_tl.softmax_tilelang(x, config=config)
    assert "16-byte" in registry.backend("rmsnorm", "tilelang").supports(x, weight, 1e-6)
    assert "16-byte" in registry.backend("softmax", "tilelang").supports(x)


def test_lean_row_plans() -> None:
    """``cluster_walk`` "lean" changes only the kind (so the tuner measures it apart), only where
    the slice is in shared memory; "plain" is the default: the shipped kernels keep their key."""
    shipped = {**BULK, "cluster_size": 8}
    for walk in (None, "plain"):
        config = shipped if walk is None else {**shipped, "cluster_walk": walk}
        assert rmsnorm_tl.kernel_key(BF16, BF16, 262144, config)[3:7] == ("cluster_bulk", 4096, 8, 256)
        assert softmax_tl.kernel_key(BF16, 262144, config)[2:6] == ("cluster_bulk", 4096, 8, 256)
    assert rmsnorm_tl.kernel_key(BF16, BF16, 262144, LEAN)[3:7] == ("cluster_bulk_lean", 4096, 8, 256)
    assert softmax_tl.kernel_key(BF16, 262144, LEAN)[2:6] == ("cluster_bulk_lean", 4096, 8, 256)
    # A row whose slices overrun N takes the element-wise copy, as "bulk" does, still lean.
    assert softmax_tl.kernel_key(BF16, 65536 + 40, {**LEAN, "cluster_size": 4})[2] == "cluster_shared_lean"
    # The kernels without a walk over a shared slice ignore it, as the tuner's plan shows.
    registers = {"cluster_size": 8, "cluster_slice": "registers"}
    lean = {**registers, "cluster_walk": "lean"}
    assert softmax_tl.kernel_key(BF16, 262144, lean) == softmax_tl.kernel_key(BF16, 262144, registers)
    assert softmax_tl.kernel_key(BF16, 4096, LEAN)[2] == "rows"
    assert softmax_tl.kernel_key(BF16, 262144, {"cluster_walk": "lean"})[2] == "chunked"


def test_empty_input_needs_no_kernel() -> None:
    # M == 0 returns before compiling anything, so this runs on the CPU.
    x = torch.empty(0, 64, dtype=BF16)
    assert rmsnorm_tl.rmsnorm_tilelang(x, torch.ones(64, dtype=BF16), 1e-6).shape == (0, 64)
    assert softmax_tl.softmax_tilelang(x).shape == (0, 64)
    b = torch.empty(64, 32, dtype=BF16)
    assert matmul_tl.matmul_tilelang(x, b).shape == (0, 32)


def test_supports_rejects_misaligned_views() -> None:
    x = torch.randn(4, 65, dtype=BF16)
    assert registry.backend("softmax", "tilelang").supports(x[:, :64].contiguous()) is None
    assert "16-byte" in registry.backend("softmax", "tilelang").supports(x.view(-1)[1:257].view(4, 64))
    a = torch.randn(16, 64, dtype=BF16)
    assert "bf16/fp16" in registry.backend("matmul", "tilelang").supports(a.float(), a.float().t(), False)


def test_matmul_configs() -> None:
    decode = matmul_tl.matmul_config(1, 4096, 4096, None)
    assert decode["block_m"] == 64 and decode["block_n"] == 32  # 128 tiles for 132 SMs
    assert matmul_tl.matmul_config(16, 28672, 8192, None)["block_n"] == 128
    assert matmul_tl.matmul_config(8192, 4096, 4096, None)["block_n"] == 256
    with pytest.raises(ValueError, match="num_stages"):
        matmul_tl.matmul_config(8192, 4096, 4096, {"num_stages": 5, "block_k": 128})
    with pytest.raises(ValueError, match="block_m"):
        matmul_tl.matmul_config(8192, 4096, 4096, {"block_m": 256, "threads": 128})
    with pytest.raises(ValueError, match="block_k"):
        matmul_tl.matmul_config(8192, 4096, 4096, {"block_k": 48})
    swap = matmul_tl.matmul_config(1, 4096, 4096, {"swap_ab": True})
    assert (swap["block_m"], swap["block_n"]) == (16, 64)  # A's one row padded to wgmma's N=16
    assert matmul_tl.matmul_config(40, 4096, 4096, {"swap_ab": True})["block_m"] == 64
    with pytest.raises(ValueError, match="block_n"):
        matmul_tl.matmul_config(1, 4096, 4096, {"swap_ab": True, "block_n": 32})
    assert matmul_tl.tma_pass_configs(4096, 4096) == {}
    assert matmul_tl.tma_pass_configs(4096, 1001)["tl.disable_tma_lower"] is True


# ------------------------------------------------------------------------- lowered for sm_90a


def test_rowwise_sources(sources: dict[str, str]) -> None:
    for name in ROWWISE_CASES:
        assert "__global__" in sources[name], name
    # Whole rows in registers, vectorised 16-byte loads, a block all-reduce.
    assert "uint4" in sources["rmsnorm_small"] and "AllReduce" in sources["rmsnorm_small"]
    # Ragged N: the padding columns are predicated by the real N.
    assert "1001" in sources["rmsnorm_ragged"] and "100003" in sources["softmax_ragged"]
    # The resident kernel stages the row in shared memory.
    assert "row_shared" in sources["rmsnorm_resident"]
    # Chunked kernels loop over the row instead of holding it.
    assert re.search(r"for \(int \w+ = 0; \w+ < 32; \+\+\w+\)", sources["rmsnorm_large"])


def test_matmul_sources_use_wgmma_and_tma(sources: dict[str, str]) -> None:
    for name in MATMUL_SHAPES:
        assert "wgmma" in sources[name], name
        assert "tma_load" in sources[name], name
    # The swapped decode kernels run B's 64 columns against A's rows as wgmma's N=16 side.
    for name in ("matmul_swap_nt", "matmul_swap_nn"):
        assert re.search(r"wgmma_ss<[^>]*, 64, 16, 16,", sources[name]), name


def test_rowwise_kernels_compile_for_sm90a(compiled: dict[str, tuple[int, str, str]]) -> None:
    status, messages, _ = compiled["rowwise"]
    assert status == 0, messages[-4000:]


def test_matmul_kernels_compile_for_sm90a(compiled: dict[str, tuple[int, str, str]]) -> None:
    status, messages, ptx = compiled["matmul"]
    assert status == 0, messages[-4000:]
    assert "wgmma.mma_async" in ptx
    assert "cp.async.bulk.tensor" in ptx  # TMA


def test_matmul_sass_runs_on_hgmma(compiled: dict[str, tuple[int, str, str]]) -> None:
    """What the H100 executes (cuobjdump -sass of the assembled sm_90a cubin)."""
    status, messages, _ = compiled["matmul"]
    assert status == 0, messages[-4000:]
    machine = sass(compiled_cubin(compiled))
    assert machine.count("HGMMA.64x") >= len(MATMUL_SHAPES), machine[:2000]
    assert "HGMMA.64x16x16.F32.BF16" in machine  # the swap-AB decode kernels
    assert "UTMALDG" in machine  # TMA loads


def test_cluster_kernels_swap_partials_through_distributed_shared_memory(
    sources: dict[str, str], compiled: dict[str, tuple[int, str, str]]
) -> None:
    for name in ("rmsnorm_cluster", "softmax_cluster"):
        source = sources[name]
        # Launched as clusters; writes into peers' shared memory between two cluster barriers.
        assert "map_shared_rank" in source and source.count("tl::cluster_sync()") == 2, name
    for name in ("rmsnorm_cluster_shared", "softmax_cluster_shared", *BULK_CASES):
        source = sources[name]
        # One bulk copy per peer completing on the peer's barrier; no full cluster sync; the
        # remotely written slots placed apart from every other buffer (the all-reduce scratch).
        assert "tl::tma_store_cluster(" in source and "tl::cluster_sync()" not in source, name
        assert source.count("tl::cluster_arrive()") == 2 and source.count("tl::cluster_wait()") == 2, name
        placed = r"void\* (\w+) = \(\(void\*\)\(\(char\*\)buf_dyn_shmem \+ (\d+)\)\)"
        offsets = dict(re.findall(placed, source))
        assert offsets["slots"] not in {v for k, v in offsets.items() if k != "slots"}, offsets
    status, messages, ptx = compiled["rowwise"]
    assert status == 0, messages[-4000:]
    assert "barrier.cluster.arrive" in ptx and "barrier.cluster.wait" in ptx
    # A peer CTA's shared address, mapped into the cluster window (the stores then go through it).
    assert re.search(r"mapa(\.shared::cluster)?\.u(32|64)", ptx), "no DSMEM address mapping"
    assert "cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes" in ptx


#: A store into the slice in shared memory (the element-wise copy's st.shared), and a load of x
#: from global memory, as TileLang writes them in CUDA C++.
SLICE_STORE = re.compile(r"\(\(bfloat16_t\*\)slice_shared\) \+[^;]*\) = ")
X_LOAD = re.compile(r"\(x \+ ")


def test_cluster_bulk_sources_load_the_slice_in_one_bulk_copy(sources: dict[str, str]) -> None:
    # The element-wise kernel, as a control that the patterns find what they look for.
    for name in ("rmsnorm_cluster_shared", "softmax_cluster_shared"):
        assert SLICE_STORE.search(sources[name]) and X_LOAD.search(sources[name]), name
        assert "tl::tma_load(" not in sources[name], name
    for name, size in BULK_CASES.items():
        source = sources[name]
        # One elected thread arms the barrier with the slice's bytes (mbarrier.arrive.expect_tx)
        # and issues one 1-D bulk copy (no tensor map: not a TMA of 256-column boxes) of x into it.
        assert source.count("arrive_and_expect_tx(") == 1, name
        assert f"loaded[0].arrive_and_expect_tx({size});" in source, name
        loads = re.findall(r"tl::tma_load\((.*)\);", source)
        assert len(loads) == 1, loads
        assert loads[0].startswith("(&(((bfloat16_t*)slice_shared)[0])), (&(x[") and loads[0].endswith(
            f"loaded[0], {size}"
        ), loads[0]
        assert "CUtensorMap" not in source
        # Every thread waits for the copy; nothing else writes the slice and nothing else reads x.
        assert source.count("loaded[0].wait(0);") == 1
        assert not SLICE_STORE.search(source) and not X_LOAD.search(source), name


def _ptx_entries(ptx: str) -> dict[str, str]:
    """Kernel name -> its PTX, from the ``.entry`` directives of one module."""
    parts = re.split(r"^\.visible \.entry (\w+)\(", ptx, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_cluster_bulk_ptx_has_one_global_bulk_copy(compiled: dict[str, tuple[int, str, str]]) -> None:
    status, messages, ptx = compiled["rowwise"]
    assert status == 0, messages[-4000:]
    entries = _ptx_entries(ptx)
    # nvcc >= 12.8 takes TileLang's shared::cta form; older nvcc the shared::cluster form.
    bulk_load = re.compile(r"cp\.async\.bulk\.shared::(cta|cluster)\.global\.mbarrier::complete_tx::bytes")
    for name in (*BULK_CASES, "rmsnorm_cluster_shared", "softmax_cluster_shared"):
        [body] = [body for entry, body in entries.items() if entry.endswith(f"_kernel_{name}")]
        if name in BULK_CASES:
            assert len(bulk_load.findall(body)) == 1, name
            assert "mbarrier.arrive.expect_tx.shared::cta" in body, name
            # No element-wise copy: no 16-byte stores into shared memory at all.
            assert "st.shared.v4" not in body, name
        else:
            assert not bulk_load.search(body) and "st.shared.v4" in body, name
        if name.startswith("softmax"):
            # Softmax reads x only: with the bulk copy, no global load remains.
            assert ("ld.global" in body) == (name not in BULK_CASES), name


def test_nvcc_is_found_when_installed() -> None:
    if shutil.which("nvcc") is None and nvcc_path() is None:
        pytest.skip("no CUDA toolkit on this machine")
    assert Path(nvcc_path()).name == "nvcc"


def _loop_bodies(source: str, header: str) -> list[str]:
    """The bodies (brace-matched) of the ``for`` loops whose header matches ``header``."""
    bodies = []
    for found in re.finditer(header, source):
        start = source.index("{", found.end())
        depth = 0
        for end in range(start, len(source)):
            depth += {"{": 1, "}": -1}.get(source[end], 0)
            if depth == 0:
                bodies.append(source[start + 1 : end])
                break
    return bodies


#: The loops that walk a CTA's slice chunk by chunk (``step``), or two chunks at a time (``pair``).
WALK = r"for \(int (step|pair)\w* = 0;"


def test_lean_softmax_walks_hold_no_barrier(sources: dict[str, str]) -> None:
    """cluster_walk "lean": the shipped softmax kernel's first walk all-reduces the block max once
    per chunk (a __syncthreads and a named-barrier butterfly each time); the lean one walks the
    slice three times (max, sum of exp2, write) with no barrier or all-reduce inside any walk."""
    plain = _loop_bodies(sources["softmax_cluster_bulk"], WALK)
    assert len(plain) == 2 and "tl::AllReduce<tl::MaxOp" in plain[0] and "__syncthreads()" in plain[0]
    for name in ("softmax_cluster_bulk_lean", "softmax_cluster_shared_lean"):
        source = sources[name]
        walks = _loop_bodies(source, WALK)
        assert len(walks) == 3, (name, len(walks))
        for walk in walks:
            assert "slice_shared" in walk and "AllReduce" not in walk and "__syncthreads" not in walk, name
            assert "bar.sync" not in walk and "NamedBarrier" not in walk, name
        # One max, one sum: a CTA-wide all-reduce each, after its walk.
        assert source.count("tl::AllReduce<tl::MaxOp") == 1 and source.count("tl::AllReduce<tl::SumOp") == 1
        # The max walk exponentiates nothing; the sum and write walks one exp2 per element each.
        assert "exp2f" not in walks[0] and "exp2f" in walks[1] and "exp2f" in walks[2], name
        # 16-byte reads of the slice in shared memory; 16-byte stores of y.
        assert all("*(uint4*)(((bfloat16_t*)slice_shared)" in walk for walk in walks), name
        assert "*(uint4*)(y + " in walks[2], name
    # The ragged row masks its columns past N (zeros in shared memory) in the max and sum walks:
    # 8-column groups of the row below 65576 / 8.
    ragged = _loop_bodies(sources["softmax_cluster_shared_lean"], WALK)
    assert "< 8197))" in ragged[0] and "< 8197))" in ragged[1]


#: A 16-byte load of the weight into a register buffer, as TileLang writes it.
WEIGHT_LOAD = re.compile(r"\*\(uint4\*\)\((weight_even|weight_odd) \+ [^;]*\) = \*\(uint4\*\)\(weight \+ ")


def test_lean_rmsnorm_loads_the_weight_a_chunk_ahead(sources: dict[str, str]) -> None:
    """cluster_walk "lean": the weight comes in 16-byte loads into two register buffers, the first
    chunk's before the slice is waited for, each next chunk's before the current one is stored."""
    plain = sources["rmsnorm_cluster_bulk"]
    # The shipped kernel: 16-byte weight loads too, but inside the step that uses them.
    [finish] = _loop_bodies(plain, WALK)[1:]
    assert "*(uint4*)(weight_local_cast" in finish and "weight_even" not in plain
    source = sources["rmsnorm_cluster_bulk_lean"]
    loads = [(found.start(), found.group(1)) for found in WEIGHT_LOAD.finditer(source)]
    assert [buffer for _, buffer in loads] == ["weight_even", "weight_odd", "weight_even"], loads
    assert "weight_local_cast" not in source and "weight[" not in source
    # Chunk 0's weight before the slice's wait (through the sum of squares and the exchange).
    assert loads[0][0] < source.index("loaded[0].wait(0);")
    [pairs] = _loop_bodies(source, r"for \(int pair = 0; pair < 4;")
    stores = [found.start() for found in re.finditer(r"\*\(uint4\*\)\(y \+ ", pairs)]
    in_loop = [(found.start(), found.group(1)) for found in WEIGHT_LOAD.finditer(pairs)]
    assert [buffer for _, buffer in in_loop] == ["weight_odd", "weight_even"], in_loop
    [(odd_load, _), (even_load, _)] = in_loop
    # Chunk 2p + 1's weight before chunk 2p's stores; chunk 2p + 2's (if any) before chunk 2p + 1's.
    assert len(stores) == 2 and odd_load < stores[0] < even_load < stores[1]
    assert "if (pair < 3)" in pairs
    # One chunk a slice: its weight loaded early, nothing left to pair.
    one = sources["rmsnorm_cluster_bulk_lean_1chunk"]
    assert len(WEIGHT_LOAD.findall(one)) == 1 and "weight_odd" not in one.split("rsqrtf")[1]
    # The ragged row with an fp32 weight: 16-byte loads of 4 floats, bounded by N (8197 groups
    # of 8 columns), into the buffers.
    ragged = sources["rmsnorm_cluster_shared_lean"]
    assert len(re.findall(r"condval\w* = \*\(float4\*\)\(weight \+ ", ragged)) == 3
    assert "< 8197)" in ragged and "*(float4*)(weight_odd + " in ragged


def test_lean_rmsnorm_ptx_loads_the_weight_in_128_bits(compiled: dict[str, tuple[int, str, str]]) -> None:
    """What the H100 runs: only 128-bit global loads (the weight) and stores (y), in both walks'
    kernels; the lean one issues chunk 0's weight before its wait on the slice."""
    status, messages, ptx = compiled["rowwise"]
    assert status == 0, messages[-4000:]
    entries = _ptx_entries(ptx)
    for name, loads in (("rmsnorm_cluster_bulk", 2), ("rmsnorm_cluster_bulk_lean", 6)):
        [body] = [body for entry, body in entries.items() if entry.endswith(f"_kernel_{name}")]
        global_ops = re.findall(r"\b(ld\.global\S*|st\.global\S*)", body)
        assert global_ops.count("ld.global.nc.v4.u32") == loads, (name, global_ops)
        assert set(global_ops) == {"ld.global.nc.v4.u32", "st.global.v4.u32"}, (name, global_ops)
        first_load = body.index("ld.global")
        slice_wait = body.index("mbarrier.try_wait.parity.shared::cta.b64")
        assert (first_load < slice_wait) == name.endswith("_lean"), name
