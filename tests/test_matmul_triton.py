"""The Triton matmul against the float64 reference: both tile paths, split-K, every shape class.

On a machine without CUDA this runs under the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported; set here too in case this file runs alone).
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tilearena.kernels import registry
from tilearena.kernels.matmul import triton as matmul_triton_module
from tilearena.kernels.matmul.spec import SPEC

matmul_triton = matmul_triton_module.matmul_triton
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETING else "cuda"
QUICK = SPEC.shapes["quick"]


def _label(shape: dict[str, int]) -> str:
    return f"{shape['M']}x{shape['N']}x{shape['K']}{'_bt' if shape['BT'] else ''}"


def _check(shape: dict[str, int], dtype: torch.dtype, config: dict | None = None,
           seed: int = 0) -> torch.Tensor:
    args = SPEC.make_inputs(shape, dtype, DEVICE, seed)
    # NaN-poisoned output: any element the kernel fails to write fails the comparison.
    out = SPEC.empty_output(*args).fill_(math.nan)
    result = matmul_triton(*args, out=out, config=config)
    assert result is out
    ref = SPEC.reference(*args)
    error = ((result.double() - ref).norm() / ref.norm()).item()
    assert error <= SPEC.tolerance[dtype], f"{_label(shape)} {dtype} {config}: rel L2 error {error:.3e}"
    return result


def test_runs_where_expected() -> None:
    assert torch.cuda.is_available() or INTERPRETING, "no CUDA: TRITON_INTERPRET=1 must be set"
    backend = registry.backend("matmul", "triton")
    assert backend.fn is matmul_triton, getattr(backend, "reason", "")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", QUICK, ids=_label)
def test_default_config(shape: dict[str, int], dtype: torch.dtype) -> None:
    _check(shape, dtype)


@pytest.mark.parametrize("shape", QUICK, ids=_label)
def test_pointer_path(shape: dict[str, int]) -> None:
    # The default takes TMA wherever strides allow; force the masked-pointer path everywhere.
    _check(shape, torch.bfloat16, {"path": "pointer"})


@pytest.mark.parametrize("shape", [{"M": 17, "N": 33, "K": 65, "BT": 1}, {"M": 64, "N": 64, "K": 96, "BT": 0},
                                   {"M": 40, "N": 48, "K": 200, "BT": 1}], ids=_label)
def test_split_k_is_exact_and_deterministic(shape: dict[str, int]) -> None:
    # Three programs for more work items than that: the persistent loop and the split-K
    # reduction (uneven slices when K-tiles do not divide) are both exercised, on the pointer
    # path (K=65: unaligned rows) and on the TMA path.
    config = {"SPLIT_K": 3, "BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16 if shape["K"] < 128 else 32,
              "NUM_SMS": 3}
    first = _check(shape, torch.float16, config)
    second = _check(shape, torch.float16, config)
    assert torch.equal(first, second)
    # The kernel re-arms its arrival counters, so the next split-K launch starts from zero.
    for counters in matmul_triton_module._ARRIVALS.values():
        assert int(counters.abs().sum()) == 0


@pytest.mark.parametrize("shape_class", sorted(matmul_triton_module.SHAPE_CLASS_CONFIGS))
@pytest.mark.parametrize("bt", [0, 1])
def test_each_shape_class_config(shape_class: str, bt: int) -> None:
    # Each class's H100 tiles on a shape smaller than one tile: edge clipping on every side.
    config = dict(matmul_triton_module.SHAPE_CLASS_CONFIGS[shape_class])
    _check({"M": 70, "N": 72, "K": 96, "BT": bt}, torch.bfloat16, config)


@pytest.mark.parametrize("bt", [0, 1])
@pytest.mark.parametrize(
    ("shape", "config"),
    [
        # One ragged column tile, one ragged K tile, a single row.
        ({"M": 1, "N": 72, "K": 200}, {"BLOCK_N": 64, "BLOCK_K": 64}),
        # Rows spread over three BLOCK_M=16 tiles of the grid's second axis.
        ({"M": 40, "N": 64, "K": 96}, {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}),
        # Unaligned K (no TMA possible) with 5 rows.
        ({"M": 5, "N": 33, "K": 65}, {"BLOCK_N": 32, "BLOCK_K": 32}),
    ],
    ids=["m1", "m40", "m5-unaligned"],
)
@pytest.mark.parametrize("path", ["pointer", "auto"])
def test_swap_ab_kernel(shape: dict, config: dict, bt: int, path: str) -> None:
    config = {**config, "swap_ab": True, "path": path, "num_stages": 3}
    _check({**shape, "BT": bt}, torch.float16, config)
    _check({**shape, "BT": bt}, torch.float32, config)


def test_swap_ab_ignores_the_persistent_kernels_knobs() -> None:
    a, b, bt = SPEC.make_inputs({"M": 3, "N": 64, "K": 64, "BT": 1}, torch.float16, DEVICE, 0)
    out = SPEC.empty_output(a, b, bt)
    plain = matmul_triton_module.plan_matmul(a, b, bt, out, {"swap_ab": True})
    knobs = {"swap_ab": True, "SPLIT_K": 4, "GROUP_M": 16, "NUM_SMS": None, "flatten": True}
    assert matmul_triton_module.plan_matmul(a, b, bt, out, knobs) == plain
    assert (plain.split_k, plain.grid) == (1, 1)


def test_warp_specialized_config_runs() -> None:
    _check({"M": 64, "N": 64, "K": 64, "BT": 1}, torch.float16,
           matmul_triton_module.LARGE_WARP_SPECIALIZED_CONFIG)


def test_pipeline_depth_fits_shared_memory() -> None:
    a, b, bt = SPEC.make_inputs({"M": 40, "N": 64, "K": 64, "BT": 0}, torch.float32, DEVICE, 0)
    out = SPEC.empty_output(a, b, bt)
    # The "small" class asks for 4 stages of 64x64x128 tiles; in fp32 that is over 227 KiB,
    # so the default drops stages, while an explicit num_stages is refused.
    plan = matmul_triton_module.plan_matmul(a, b, bt, out)
    assert plan.num_stages < 4
    with pytest.raises(ValueError, match="num_stages"):
        matmul_triton_module.plan_matmul(a, b, bt, out, {"num_stages": 4, "BLOCK_N": 64})
    # Even the 128x256 "large" tiles have an fp32 default that fits (narrower tiles).
    a, b, bt = SPEC.make_inputs({"M": 512, "N": 512, "K": 64, "BT": 1}, torch.float32, DEVICE, 0)
    plan = matmul_triton_module.plan_matmul(a, b, bt, SPEC.empty_output(a, b, bt))
    assert plan.block_n < 256 and plan.num_stages >= 2


def test_allocates_output_and_handles_empty() -> None:
    a, b, bt = SPEC.make_inputs({"M": 5, "N": 16, "K": 32, "BT": 1}, torch.float16, DEVICE, 0)
    c = matmul_triton(a, b, bt)
    assert c.shape == (5, 16) and c.dtype == torch.float16
    empty = matmul_triton(a[:0], b, bt)
    assert empty.shape == (0, 16)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"BLOCK_M": 48}, "BLOCK_M"),
        ({"BLOCK_N": 8}, "BLOCK_N"),
        ({"BLOCK_K": 512}, "BLOCK_K"),
        ({"GROUP_M": 0}, "GROUP_M"),
        ({"SPLIT_K": 0}, "SPLIT_K"),
        ({"num_warps": 3}, "num_warps"),
        ({"num_stages": 0}, "num_stages"),
        ({"NUM_SMS": -1}, "NUM_SMS"),
        ({"path": "cuda"}, "path"),
        ({"warp_specialize": True, "SPLIT_K": 2}, "warp_specialize"),
        ({"warp_specialize": True, "num_stages": 5}, "warp_specialize"),
        ({"flatten": 1}, "flatten"),
        ({"swap_ab": "yes"}, "swap_ab"),
        ({"block_m": 64}, "config"),
    ],
)
def test_bad_config_names_the_parameter(config: dict, named: str) -> None:
    a, b, bt = SPEC.make_inputs({"M": 4, "N": 16, "K": 16, "BT": 0}, torch.float16, DEVICE, 0)
    with pytest.raises(ValueError, match=named):
        matmul_triton(a, b, bt, config=config)


def test_forcing_tma_on_unaligned_strides_is_refused() -> None:
    a, b, bt = SPEC.make_inputs({"M": 4, "N": 16, "K": 13, "BT": 1}, torch.float16, DEVICE, 0)
    with pytest.raises(ValueError, match="path"):
        matmul_triton(a, b, bt, config={"path": "tma"})


def test_h100_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launches the default configs make on a 132-SM GPU for Llama-3-8B shapes."""
    monkeypatch.setattr(matmul_triton_module, "_sm_count", lambda device: 132)

    def plan(m: int, n: int, k: int) -> matmul_triton_module.MatmulPlan:
        a = torch.empty(m, k, dtype=torch.bfloat16)
        b = torch.empty(n, k, dtype=torch.bfloat16)
        return matmul_triton_module.plan_matmul(a, b, True, torch.empty(m, n, dtype=torch.bfloat16))

    decode = plan(1, 4096, 4096)  # swap-AB: one program per 64 columns of the weight, cp.async
    assert (decode.swap_ab, decode.block_m, decode.split_k, decode.grid, decode.use_tma) == (
        True, 16, 1, 64, False)
    assert plan(16, 28672, 4096).grid == 448
    small = plan(64, 4096, 4096)  # 64 tiles of 64x64: split-K fills the SMs
    assert (small.swap_ab, small.split_k, small.grid) == (False, 4, 256)
    medium = plan(128, 4096, 14336)
    assert (medium.block_m, medium.split_k, medium.grid) == (128, 8, 132)
    # 1024^3 has only 32 tiles of 128x256: it takes the 128x128 split-K config instead.
    square = plan(1024, 1024, 1024)
    assert (square.block_n, square.split_k) == (128, 4)
    large = plan(4096, 4096, 4096)
    assert (large.block_m, large.block_n, large.split_k, large.grid) == (128, 256, 1, 132)
    assert large.flatten and not large.warp_specialize


def test_a_config_for_more_rows_is_cut_to_the_rows_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 128-token config used at 16 tokens (the nearest baked bucket) must not compute 112 zero rows."""
    monkeypatch.setattr(matmul_triton_module, "_sm_count", lambda device: 132)
    a = torch.empty(16, 4096, dtype=torch.bfloat16)
    b = torch.empty(4096, 4096, dtype=torch.bfloat16)
    out = torch.empty(16, 4096, dtype=torch.bfloat16)
    config = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}
    assert matmul_triton_module.plan_matmul(a, b, True, out, config).block_m == 16
    wide = torch.empty(200, 4096, dtype=torch.bfloat16)
    wide_out = torch.empty(200, 4096, dtype=torch.bfloat16)
    assert matmul_triton_module.plan_matmul(wide, b, True, wide_out, config).block_m == 128
