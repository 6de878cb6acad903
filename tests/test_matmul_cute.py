"""CPU checks of the CuTe DSL Hopper GEMM: config validation, ``supports`` and sm_90a PTX.

No GPU is needed: the kernel is compiled against fake tensors with ``CUTE_DSL_ARCH=sm_90a``
in a subprocess (the DSL reads its environment once, at import), and the PTX is checked
for the Hopper machinery the design relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("cutlass")

from sass_tools import sass
from tilearena.kernels.matmul import cute as cute_matmul

# ------------------------------------------------------------------------------------------
# configs


def test_default_config_is_in_config_space() -> None:
    for name, value in cute_matmul.DEFAULT_CONFIG.items():
        assert value in cute_matmul.CONFIG_SPACE[name]


@pytest.mark.parametrize(
    ("m", "n", "k"),
    [(1, 4096, 4096), (64, 28672, 4096), (512, 4096, 4096), (4096, 4096, 4096), (16384, 57344, 8192)],
)
def test_shipped_configs_resolve(m: int, n: int, k: int) -> None:
    tile_m, tile_n, stages, group_m = cute_matmul.resolve_config(None, m, n, k)
    assert tile_m in (64, 128) and tile_n in cute_matmul.CONFIG_SPACE["tile_n"]
    assert 2 <= stages <= 8 and group_m >= 1
    if m <= 64:
        assert tile_m == 64  # decode shapes do not pad half of every WGMMA
    if m >= 4096:
        assert (tile_m, tile_n) == (128, 256)


@pytest.mark.parametrize(
    ("config", "parameter"),
    [
        ({"tile_m": 96}, "tile_m"),
        ({"tile_n": 512}, "tile_n"),
        ({"stages": 1}, "stages"),
        ({"tile_m": 128, "tile_n": 256, "stages": 8}, "stages"),  # does not fit in smem
        ({"group_m": 3}, "group_m"),
        ({"block_k": 64}, "block_k"),
    ],
)
def test_bad_config_names_the_parameter(config: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        cute_matmul.resolve_config(config, 4096, 4096, 4096)


# ------------------------------------------------------------------------------------------
# supports


def test_supports_accepts_aligned_bf16() -> None:
    a = torch.empty(5, 64, dtype=torch.bfloat16)
    b = torch.empty(24, 64, dtype=torch.bfloat16)
    assert cute_matmul.supports(a, b, transpose_b=True) is None
    assert cute_matmul.supports(a, torch.empty(64, 24, dtype=torch.bfloat16)) is None


@pytest.mark.parametrize("transpose_b", [False, True])
def test_supports_refuses_unaligned_rows(transpose_b: bool) -> None:
    a = torch.empty(16, 60, dtype=torch.bfloat16)  # K = 60: 120-byte rows
    b = torch.empty((30, 60) if transpose_b else (60, 30), dtype=torch.bfloat16)
    reason = cute_matmul.supports(a, b, transpose_b=transpose_b)
    assert reason is not None and "16-byte" in reason


def test_supports_refuses_fp32() -> None:
    a = torch.empty(16, 64, dtype=torch.float32)
    assert "dtype" in cute_matmul.supports(a, torch.empty(64, 64, dtype=torch.float32))


def test_backend_declaration() -> None:
    (backend,) = cute_matmul.BACKENDS
    assert (backend.op, backend.name, backend.dsl) == ("matmul", "cute", "cute")
    assert backend.requires == ("cutlass",) and backend.min_cc == (9, 0)
    assert backend.config_space is cute_matmul.CONFIG_SPACE


# ------------------------------------------------------------------------------------------
# sm_90a PTX, compiled without a GPU

_COMPILE_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from tilearena.kernels.matmul.cute import compile_gemm
    found = {}
    # (transpose_b, tile_m, tile_n, stages): nn.Linear layout with 2 consumer warpgroups,
    # and a [K, N] B (N-major WGMMA operand) with one consumer warpgroup.
    for name, args in {"nt_128x256": (True, 128, 256, 4), "nn_64x128": (False, 64, 128, 8)}.items():
        kernel = compile_gemm(torch.bfloat16, *args, 8, options="--enable-tvm-ffi --keep-ptx --keep-cubin")
        ptx = kernel.__ptx__
        open(f"{name}.cubin", "wb").write(kernel.__cubin__)  # what the GPU loads: read as SASS
        found[name] = {
            "target": ".target sm_90a" in ptx,
            "wgmma": ptx.count("wgmma.mma_async"),
            "wgmma_shape": [line.split()[0] for line in ptx.splitlines() if "wgmma.mma_async" in line][:1],
            "tma_load": ptx.count("cp.async.bulk.tensor.2d.shared::cta.global"),
            "tma_store": ptx.count("cp.async.bulk.tensor.2d.global.shared::cta"),
            "mbarrier_wait": ptx.count("mbarrier.try_wait"),
            "expect_tx": ptx.count("mbarrier.arrive.expect_tx"),
            "setmaxnreg": [line.strip() for line in ptx.splitlines() if "setmaxnreg" in line],
            "stmatrix": ptx.count("stmatrix"),
            "local_memory": ptx.count(".local"),
            # WGMMA's last two immediates say whether A and B are transposed (MN-major).
            "transpose_flags": sorted({line.rstrip(";").split(",")[-2:].__repr__()
                                       for line in ptx.splitlines() if "wgmma.mma_async" in line}),
            "threads": [line.strip() for line in ptx.splitlines() if ".reqntid" in line],
        }
    json.dump(found, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def ptx_facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("cute_ptx")
    env = dict(os.environ, CUTE_DSL_ARCH="sm_90a", CUTE_DSL_DUMP_DIR=str(workdir))
    # The PTX is dumped under a name that does not depend on the config: compile in our own
    # directory, one kernel after the other.
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT], cwd=workdir, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    for name in facts:
        facts[name]["sass"] = sass(workdir / f"{name}.cubin")
    return facts


@pytest.mark.parametrize("variant", ["nt_128x256", "nn_64x128"])
def test_ptx_has_hopper_machinery(ptx_facts: dict, variant: str) -> None:
    facts = ptx_facts[variant]
    assert facts["target"]
    assert facts["wgmma"] >= 4  # four k16 WGMMAs per 64-wide k tile
    assert facts["tma_load"] >= 2 and facts["tma_store"] >= 1
    assert facts["mbarrier_wait"] >= 2 and facts["expect_tx"] >= 1
    assert any("setmaxnreg.dec" in line for line in facts["setmaxnreg"])
    assert any("setmaxnreg.inc" in line for line in facts["setmaxnreg"])
    assert facts["stmatrix"] >= 1
    assert facts["local_memory"] == 0  # no spills to local memory in the PTX


@pytest.mark.parametrize("variant", ["nt_128x256", "nn_64x128"])
def test_sass_runs_on_hgmma(ptx_facts: dict, variant: str) -> None:
    """What the H100 executes (cuobjdump -sass of the sm_90a cubin): warpgroup MMAs and TMA."""
    machine = ptx_facts[variant]["sass"]
    assert machine.count("HGMMA.64x") >= 4, machine[:2000]
    assert "UTMALDG" in machine and "UTMASTG" in machine
    assert "LDL" not in machine and "STL" not in machine  # nothing spilled to local memory


def test_ptx_tile_shapes(ptx_facts: dict) -> None:
    assert ptx_facts["nt_128x256"]["wgmma_shape"] == ["wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16"]
    assert ptx_facts["nn_64x128"]["wgmma_shape"] == ["wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"]
    assert ptx_facts["nt_128x256"]["threads"] == [".reqntid 384, 1, 1"]  # producer + 2 consumer warpgroups
    assert ptx_facts["nn_64x128"]["threads"] == [".reqntid 256, 1, 1"]
    # A is K-major in both; B is K-major for [N, K] and MN-major (transposed) for [K, N].
    assert ptx_facts["nt_128x256"]["transpose_flags"] == [repr([" 0", " 0"])]
    assert ptx_facts["nn_64x128"]["transpose_flags"] == [repr([" 0", " 1"])]
