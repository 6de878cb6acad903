"""Checks of the CuTe DSL RMSNorm and softmax: the tiling plan, configs, and sm_90a PTX.

No GPU is needed for most of it: the kernels are compiled against fake tensors (symbolic M)
with ``--gpu-arch sm_90a --keep-ptx``, and the PTX is checked for the machinery the design
relies on: 128-bit global loads and stores, and for a row split over a cluster, the
distributed-shared-memory exchange (``mapa``, ``st.async`` completing on an mbarrier,
``barrier.cluster``).  Where ``ptxas`` is installed, the PTX is also assembled and must not
spill.  The GPU tests at the end compare against float64 on a Hopper GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("cutlass")

from tilearena.kernels import cute_rows
from tilearena.kernels.rmsnorm import cute as rmsnorm_cute
from tilearena.kernels.softmax import cute as softmax_cute

WIDE_LOAD = re.compile(r"ld\.global(\.nc)?(\.L\d::\S+)?\.(v4\.(b32|u32|f32)|v2\.(b64|u64))")
WIDE_STORE = re.compile(r"st\.global(\.\S+)?\.(v4\.(b32|u32|f32)|v2\.(b64|u64))")
CLUSTER_MARKERS = ("mapa.shared::cluster", "st.async.shared::cluster.mbarrier::complete_tx::bytes",
                   "barrier.cluster.arrive", "barrier.cluster.wait", "mbarrier.try_wait")


# ------------------------------------------------------------------------------------------
# plans and configs (pure Python)


def test_default_config_is_in_config_space() -> None:
    for name, value in cute_rows.DEFAULT_CONFIG.items():
        assert value in cute_rows.CONFIG_SPACE[name]


@pytest.mark.parametrize("n", [256, 512, 1024, 4096, 8192, 32768, 65536, 262144])
def test_default_plan_covers_the_row(n: int) -> None:
    plan = rmsnorm_cute.rmsnorm_plan(n, torch.bfloat16, torch.bfloat16)
    assert plan.vec == 8  # 128-bit accesses for bf16
    assert plan.cols_per_cta * plan.cluster_size >= n
    assert plan.vec * plan.vecs_per_thread <= cute_rows.MAX_ELEMENTS_PER_THREAD
    if n <= 1024:
        assert plan.rows_per_cta > 1 and plan.cluster_size == 1  # short rows: several per CTA
    if n >= 32768:
        assert plan.cluster_size == n * 2 // cute_rows.CTA_ROW_BYTES  # 32 KiB of a row per CTA


def test_long_rows_use_a_cluster() -> None:
    plan = softmax_cute.softmax_plan(262144, torch.bfloat16)
    assert (plan.cluster_size, plan.threads_per_cta, plan.vecs_per_thread) == (16, 256, 8)
    fp32 = softmax_cute.softmax_plan(262144, torch.float32)
    assert fp32.cluster_size == 16 and fp32.vec == 4


def test_ragged_or_misaligned_rows_fall_back_to_narrower_vectors() -> None:
    assert softmax_cute.softmax_plan(4100, torch.bfloat16).vec == 4
    assert softmax_cute.softmax_plan(4097, torch.bfloat16).vec == 1
    assert softmax_cute.softmax_plan(4096, torch.bfloat16, (2, 0)).vec == 1  # 2-byte offset
    assert softmax_cute.softmax_plan(5000, torch.bfloat16).needs_column_predicate
    # A float32 weight sets the vector for both tensors (4 elements: 128 bits of weight).
    assert rmsnorm_cute.rmsnorm_plan(4096, torch.bfloat16, torch.float32).vec == 4


@pytest.mark.parametrize(
    ("config", "parameter"),
    [
        ({"cluster_size": 3}, "cluster_size"),
        ({"threads_per_cta": 96}, "threads_per_cta"),
        ({"vecs_per_thread": 64}, "vecs_per_thread"),
        ({"vector_bits": 256}, "vector_bits"),
        ({"tile": 4}, "config"),
    ],
)
def test_bad_config_names_the_parameter(config: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        softmax_cute.softmax_plan(4096, torch.bfloat16, config=config)


def test_configs_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="cluster_size"):  # a whole 262144 row in one CTA
        softmax_cute.softmax_plan(262144, torch.bfloat16, config={"cluster_size": 1})
    with pytest.raises(ValueError, match="cluster_size"):  # a warp would span rows
        softmax_cute.softmax_plan(512, torch.bfloat16, config={"cluster_size": 2})


def test_config_overrides_the_default() -> None:
    plan = softmax_cute.softmax_plan(262144, torch.bfloat16,
                                     config={"cluster_size": 8, "threads_per_cta": 512})
    assert (plan.cluster_size, plan.threads_per_row, plan.vecs_per_thread) == (8, 512, 8)


# ------------------------------------------------------------------------------------------
# sm_90a PTX, compiled on the CPU


def _ptx(compiled) -> str:
    text = compiled.__ptx__
    assert text, "the DSL kept no PTX"
    return Path(text).read_text() if not text.lstrip().startswith("//") and Path(text).is_file() else text


def _compile(op: str, n: int, ptx_dir: Path) -> str:
    ptx_dir.mkdir(parents=True, exist_ok=True)
    if op == "rmsnorm":
        plan = rmsnorm_cute.rmsnorm_plan(n, torch.bfloat16, torch.bfloat16)
        compiled = rmsnorm_cute.compile_rmsnorm(torch.bfloat16, torch.bfloat16, plan,
                                                gpu_arch="sm_90a", ptx_dir=str(ptx_dir))
    else:
        plan = softmax_cute.softmax_plan(n, torch.bfloat16)
        compiled = softmax_cute.compile_softmax(torch.bfloat16, plan, gpu_arch="sm_90a", ptx_dir=str(ptx_dir))
    return _ptx(compiled)


def _assemble(ptx: str, path: Path) -> str | None:
    """ptxas -v's report, or None where no ptxas is installed."""
    candidates = ("/usr/local/cuda/bin/ptxas", "/usr/local/cuda-13.0/bin/ptxas")
    ptxas = shutil.which("ptxas") or next((p for p in candidates if Path(p).is_file()), None)
    if ptxas is None:
        return None
    path.write_text(ptx)
    result = subprocess.run([ptxas, "-arch=sm_90a", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
@pytest.mark.parametrize(("n", "clustered"), [(1024, False), (5000, False), (262144, True)])
def test_sm90_ptx(op: str, n: int, clustered: bool, tmp_path: Path) -> None:
    ptx = _compile(op, n, tmp_path / "ptx")
    assert ".target sm_90a" in ptx
    assert WIDE_LOAD.search(ptx), "no 128-bit global load"
    assert WIDE_STORE.search(ptx), "no 128-bit global store"
    assert not re.search(r"ld\.global(\.\S+)?\.(b16|u16)\b", ptx), "a scalar bf16 load slipped in"
    for marker in CLUSTER_MARKERS:
        assert (marker in ptx) == clustered, marker
    report = _assemble(ptx, tmp_path / f"{op}_{n}.ptx")
    if report is not None:
        assert "0 bytes spill stores" in report, report


def _registers(report: str) -> int:
    return int(re.search(r"Used (\d+) registers", report).group(1))


def _compile_rmsnorm_options(
    plan: cute_rows.RowPlan, option: str, values: tuple[str, ...], tmp_path: Path
) -> tuple[dict[str, str], dict[str, str | None]]:
    """The bf16 RMSNorm kernel of ``plan`` compiled for sm_90a once per value of one of its
    options (``weight_load`` or ``x_staging``): (PTX, ptxas report or None) by value."""
    ptxs, reports = {}, {}
    for value in values:
        ptx_dir = tmp_path / value
        ptx_dir.mkdir()
        compiled = rmsnorm_cute.compile_rmsnorm(torch.bfloat16, torch.bfloat16, plan, gpu_arch="sm_90a",
                                                ptx_dir=str(ptx_dir), **{option: value})
        ptxs[value] = _ptx(compiled)
        reports[value] = _assemble(ptxs[value], ptx_dir / "k.ptx")
    return ptxs, reports


def test_late_weight_load_frees_registers_at_long_rows(tmp_path: Path) -> None:
    """weight_load "late" exists to keep the weight's registers dead across x's loads and the
    cluster exchange: at 262144 columns over 16 CTAs of 256 threads (64 elements a thread) the
    kernel must need fewer registers than with the weight loaded beside x, and spill nothing."""
    config = {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 16, "vector_bits": 64}
    plan = rmsnorm_cute.rmsnorm_plan(262144, torch.bfloat16, torch.bfloat16, config=config)
    ptxs, reports = _compile_rmsnorm_options(plan, "weight_load", ("early", "late"), tmp_path)
    for ptx in ptxs.values():
        assert WIDE_LOAD.search(ptx) or ".v2.b32" in ptx
    if reports["early"] is None:
        pytest.skip("no ptxas to count registers with")
    assert "0 bytes spill stores" in reports["late"], reports["late"]
    assert _registers(reports["late"]) < _registers(reports["early"]), reports


@pytest.mark.parametrize(
    ("option", "unknown", "known", "values"),
    [
        ("weight_load", "eager", "late", ("early", "late")),
        ("x_staging", "tma", "smem", ("registers", "smem")),
    ],
)
def test_rmsnorm_option_is_validated(option: str, unknown: str, known: str, values: tuple[str, ...]) -> None:
    """An RMSNorm option (weight_load, x_staging) refuses an unknown value by name, and a known
    one leaves the tiling as it is."""
    with pytest.raises(ValueError, match=f"{option}: expected one of"):
        rmsnorm_cute.rmsnorm_plan(4096, torch.bfloat16, torch.bfloat16, config={option: unknown})
    plan = rmsnorm_cute.rmsnorm_plan(4096, torch.bfloat16, torch.bfloat16, config={option: known})
    assert plan == rmsnorm_cute.rmsnorm_plan(4096, torch.bfloat16, torch.bfloat16)
    assert rmsnorm_cute.RMSNORM_CONFIG_SPACE[option] == values


def test_smem_staging_issues_cp_async_and_frees_registers(tmp_path: Path) -> None:
    """x_staging "smem" exists to issue x's loads without registers to hold them (cp.async into
    shared memory) and to keep x's registers dead across the exchange: at 262144 columns over
    16 CTAs of 256 threads its kernel must have the cp.async copies, still 128-bit global stores,
    no direct global loads of x, and fewer registers than x loaded into registers."""
    config = {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 8, "vector_bits": 128}
    plan = rmsnorm_cute.rmsnorm_plan(262144, torch.bfloat16, torch.bfloat16, config=config)
    ptxs, reports = _compile_rmsnorm_options(plan, "x_staging", ("registers", "smem"), tmp_path)
    # 8 vectors of 16 bytes a thread: 8 cp.async of 16 bytes, and the weight's 8 global loads.
    cp_async_16 = re.compile(r"cp\.async\.c[ag]\.shared\.global(\.\S+)? \[[^]]+\], \[[^]]+\], 16")
    assert len(cp_async_16.findall(ptxs["smem"])) == 8
    assert re.search(r"cp\.async\.wait_group\s+0;", ptxs["smem"])
    assert len(WIDE_LOAD.findall(ptxs["smem"])) == 8 and len(WIDE_LOAD.findall(ptxs["registers"])) == 16
    assert WIDE_STORE.search(ptxs["smem"])
    assert "cp.async" not in ptxs["registers"]
    if reports["smem"] is None:
        pytest.skip("no ptxas to count registers with")
    assert "0 bytes spill stores" in reports["smem"], reports["smem"]
    assert _registers(reports["smem"]) < _registers(reports["registers"]), reports


def test_smem_staging_falls_back_where_cp_async_cannot_copy() -> None:
    """A staged config applied where cp.async cannot move the vectors (2-byte accesses of a
    ragged bf16 row) or where the tile is too big loads x into registers, never fails."""
    def staged(n: int, dtype: torch.dtype, config: dict) -> bool:
        plan = rmsnorm_cute.rmsnorm_plan(n, dtype, dtype, config={**config, "x_staging": "smem"})
        return rmsnorm_cute.stages_x_in_smem(plan, torch.finfo(dtype).bits, "smem")

    long_rows = {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 8, "vector_bits": 128}
    assert staged(262144, torch.bfloat16, long_rows)
    assert staged(262144, torch.float32, long_rows)  # 16384 x 4 bytes: 64 KiB, the limit
    assert not staged(262143, torch.bfloat16, {"cluster_size": 16})  # 2-byte accesses
    assert staged(262143, torch.float32, {"cluster_size": 16})  # 4-byte accesses
    # One CTA of a 32768 fp32 row: 128 KiB, more than MAX_STAGED_TILE_BYTES.
    assert not staged(32768, torch.float32, {"cluster_size": 1, "threads_per_cta": 1024})
    assert not rmsnorm_cute.stages_x_in_smem(
        rmsnorm_cute.rmsnorm_plan(262144, torch.bfloat16, torch.bfloat16), 16, "registers")


def test_tuner_space_takes_weight_load() -> None:
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.kernels import registry

    space = space_for(registry.backend("rmsnorm", "cute"))
    context = TuneContext(shape={"M": 4096, "N": 262144}, dtype_bytes=2)
    good = {"cluster_size": 16, "threads_per_cta": 128, "vecs_per_thread": 32, "vector_bits": 64,
            "weight_load": "late"}
    assert space.invalid_reason(good, context) is None
    assert "weight_load" in space.invalid_reason({**good, "weight_load": "never"}, context)
    assert space.invalid_reason({**good, "x_staging": "smem"}, context) is None
    assert "x_staging" in space.invalid_reason({**good, "x_staging": "tma"}, context)


def test_odd_n_compiles_with_scalar_accesses(tmp_path: Path) -> None:
    ptx = _compile("softmax", 4097, tmp_path / "ptx")
    assert not WIDE_LOAD.search(ptx)
    assert re.search(r"ld\.global(\.\S+)?\.(b16|u16)\b", ptx)


# ------------------------------------------------------------------------------------------
# numerics on a Hopper GPU


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)


GPU_SHAPES = [(1, 256), (3, 4097), (37, 5000), (1000, 256), (5, 32768), (2, 262144), (64, 8192)]


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs a Hopper (sm_90+) GPU")
@pytest.mark.parametrize(("m", "n"), GPU_SHAPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_matches_float64(m: int, n: int, dtype: torch.dtype) -> None:
    from tilearena.kernels.rmsnorm import spec as rmsnorm_spec
    from tilearena.kernels.softmax import spec as softmax_spec

    for spec, fn in ((rmsnorm_spec, rmsnorm_cute.rmsnorm_cute), (softmax_spec, softmax_cute.softmax_cute)):
        args = spec.make_inputs({"M": m, "N": n}, dtype, "cuda", 0)
        out = torch.full_like(args[0], float("nan"))
        fn(*args, out=out)
        ref = spec.reference(*args)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        assert err <= spec.SPEC.tolerance[dtype], (spec.SPEC.name, err)


#: RMSNorm's non-default options on the GPU, weight_load "late" and x_staging "smem": (shape, full
#: config); ids name the option and what each case covers.
LONG_ROWS_128T = {"cluster_size": 16, "threads_per_cta": 128, "vecs_per_thread": 32, "vector_bits": 64}
LONG_ROWS_256T = {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 16, "vector_bits": 64}
QUACK_LONG_ROWS = {"cluster_size": 16, "threads_per_cta": 256, "vecs_per_thread": 8, "vector_bits": 128}
# The last CTA's columns end inside it: the column predicate.
CLUSTER4_RAGGED = ({"M": 9, "N": 65536 + 8}, {"cluster_size": 4, "threads_per_cta": 256})
LATE, SMEM = {"weight_load": "late"}, {"x_staging": "smem"}
OPTION_CASES = {
    "late-ragged": ({"M": 37, "N": 5000}, LATE),
    "late-cluster16-128t": ({"M": 3, "N": 262144}, {**LONG_ROWS_128T, **LATE}),
    "late-cluster16-256t": ({"M": 5, "N": 262144}, {**LONG_ROWS_256T, **LATE}),
    "late-cluster4-ragged": (CLUSTER4_RAGGED[0], {**CLUSTER4_RAGGED[1], **LATE}),
    "late-rows-per-cta": ({"M": 1000, "N": 512}, LATE),  # several rows per CTA
    "smem-one-row": ({"M": 1, "N": 4096}, SMEM),
    "smem-ragged": ({"M": 37, "N": 5000}, SMEM),  # 2-byte bf16 accesses: x in registers instead
    "smem-cluster16-quack": ({"M": 7, "N": 262144}, {**QUACK_LONG_ROWS, **SMEM}),
    "smem-cluster16-256t": ({"M": 5, "N": 262144}, {**LONG_ROWS_256T, **SMEM}),
    "smem-cluster16-65536": (
        {"M": 33, "N": 65536},
        {"cluster_size": 16, "threads_per_cta": 128, "vecs_per_thread": 4, "vector_bits": 64, **SMEM},
    ),
    "smem-cluster4-ragged": (CLUSTER4_RAGGED[0], {**CLUSTER4_RAGGED[1], **SMEM}),
    "smem-rows-per-cta": ({"M": 1000, "N": 512}, SMEM),  # several rows per CTA, rows past M
    "smem-late": ({"M": 3, "N": 262144}, {"cluster_size": 16, **LATE, **SMEM}),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("case", OPTION_CASES)
def test_option_cases_are_plannable(case: str, dtype: torch.dtype) -> None:
    """The GPU cases below must be valid plans for both dtypes (the 95bf897 GPU run found two
    that were not: they failed on the plan, not on the numerics)."""
    shape, config = OPTION_CASES[case]
    plan = rmsnorm_cute.rmsnorm_plan(shape["N"], dtype, dtype, config=config)
    assert plan.cluster_size == config.get("cluster_size", plan.cluster_size)


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs a Hopper (sm_90+) GPU")
@pytest.mark.parametrize("case", OPTION_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_option_cases_match_float64(case: str, dtype: torch.dtype) -> None:
    shape, config = OPTION_CASES[case]
    from tilearena.bench import numerics  # fresh inputs, a NaN-poisoned output, float64

    result = numerics.check_backend("rmsnorm", "cute", shape, dtype, "cuda", 11, config=config)
    assert result.ok, result


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs a Hopper (sm_90+) GPU")
def test_gpu_float32_weight_and_empty_input() -> None:
    x = torch.randn(4, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.rand(4096, device="cuda", dtype=torch.float32) + 0.5
    ref = x.double() * torch.rsqrt(x.double().square().mean(-1, keepdim=True) + 1e-6) * w.double()
    got = rmsnorm_cute.rmsnorm_cute(x, w, 1e-6)
    assert ((got.double() - ref).norm() / ref.norm()).item() < 8e-3
    empty = torch.empty(0, 4096, device="cuda", dtype=torch.bfloat16)
    assert softmax_cute.softmax_cute(empty).shape == (0, 4096)
