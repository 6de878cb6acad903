"""Triton RMSNorm and softmax under the interpreter (CPU) or on the GPU, against float64."""

from __future__ import annotations

import os

import pytest
import torch
from tilearena.bench import numerics
from tilearena.kernels import registry
from tilearena.kernels.triton_rows import plan_rows

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape", registry.spec("rmsnorm").shapes["quick"], ids=lambda s: f"{s['M']}x{s['N']}"
)
def test_triton_matches_float64(op: str, dtype: torch.dtype, shape: dict, device: str) -> None:
    result = numerics.check_backend(op, "triton", shape, dtype, device, seed=hash((op, str(dtype))) & 0xFFFF)
    assert result.ok, result.error
    # The check is not vacuous: the tolerance is far below what a wrong kernel produces.
    assert result.rel_err is not None and result.rel_err < registry.spec(op).tolerance[dtype]


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_long_rows_take_the_chunked_path(op: str, device: str) -> None:
    # N = 40000 > 32768: too long for one program's registers; on the interpreter the loop kernel.
    plan = plan_rows(2, 40000, torch.device(device))
    assert plan.kind in ("loop", "split")
    result = numerics.check_backend(op, "triton", {"M": 2, "N": 40000}, torch.bfloat16, device, seed=3)
    assert result.ok, result.error


def test_unwritten_output_is_caught(device: str) -> None:
    """A kernel that skips the last row must fail the NaN-poisoned check."""
    good = registry.backend("softmax", "triton")

    def skips_last_row(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        good.fn(x[:-1], out=out[:-1])
        return out

    registry.register_backend(registry.Backend("softmax", "broken-triton", "triton", skips_last_row))
    result = numerics.check_backend(
        "softmax", "broken-triton", {"M": 4, "N": 64}, torch.float32, device, seed=1
    )
    assert not result.ok
    assert "non-finite" in (result.error or "")


def test_wrong_kernel_is_caught(device: str) -> None:
    """A kernel that forgets the weight must fail on the tolerance, not pass by luck."""
    good = registry.backend("rmsnorm", "triton")

    def ignores_weight(x, weight, eps, out=None):
        return good.fn(x, torch.ones_like(weight), eps, out=out)

    registry.register_backend(registry.Backend("rmsnorm", "no-weight", "triton", ignores_weight))
    result = numerics.check_backend("rmsnorm", "no-weight", {"M": 4, "N": 64}, torch.float32, device, seed=2)
    assert not result.ok and result.rel_err > 0.1


def test_plans_cover_the_shape_classes() -> None:
    cpu = torch.device("cpu")
    assert plan_rows(262144, 256, cpu).kind == "rows"
    assert plan_rows(262144, 256, cpu).rows_per_program * 256 == 8192
    assert plan_rows(32768, 4096, cpu).kind == "row"
    assert plan_rows(16384, 32768, cpu).kind == "row"
    assert plan_rows(4096, 262144, cpu).kind == "loop"  # the interpreter cannot run the cooperative kernel
    assert os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()


def test_split_plan_on_a_gpu_carries_its_residency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The split plan as an H100 would get it (no CUDA needed: only the SM count is read)."""
    from tilearena.kernels import triton_rows

    monkeypatch.setattr(triton_rows, "interpreting", lambda: False)
    monkeypatch.setattr(triton_rows, "sm_count", lambda index: 132)
    monkeypatch.setitem(triton_rows._RESIDENT_PER_SM, ("op", 8192, 8, 32, 2, False), 2)
    monkeypatch.setitem(triton_rows._RESIDENT_PER_SM, ("op", 8192, 8, 32, 2, True), 6)
    cfg = {"chunk": 8192, "num_warps": 8, "prefetch": 2}
    gpu = torch.device("cuda", 0)
    plan = plan_rows(4096, 262144, gpu, cfg, residency_key=("op",))
    assert (plan.kind, plan.split, plan.prefetch, plan.reread) == ("split", 32, 2, False)
    assert plan.residency_key == ("op", 8192, 8, 32, 2, False)
    assert plan.grid == (132 * 2 // 32) * 32  # whole groups of resident programs
    # Fewer registers (reread) let more programs in, up to programs_per_sm.
    rereading = plan_rows(4096, 262144, gpu, {**cfg, "reread": True}, ("op",))
    assert rereading.reread and rereading.grid == 132 * 4 // 32 * 32
    assert (
        plan_rows(4096, 262144, gpu, {**cfg, "reread": True, "programs_per_sm": 8}, ("op",)).grid
        == 132 * 6 // 32 * 32
    )
    with pytest.raises(ValueError, match="prefetch"):
        plan_rows(4096, 262144, gpu, {**cfg, "prefetch": 3})
    with pytest.raises(ValueError, match="programs_per_sm"):
        plan_rows(4096, 262144, gpu, {**cfg, "programs_per_sm": 0})
    with pytest.raises(ValueError, match="reread"):
        plan_rows(4096, 262144, gpu, {**cfg, "reread": "yes"})
