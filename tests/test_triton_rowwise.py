"""Triton RMSNorm and softmax under the interpreter (CPU) or on the GPU, against float64."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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
    monkeypatch.setitem(triton_rows._RESIDENT_PER_SM, ("op", 8192, 8, 32, 2, False, 8192), 2)
    monkeypatch.setitem(triton_rows._RESIDENT_PER_SM, ("op", 8192, 8, 32, 2, True, 8192), 6)
    cfg = {"chunk": 8192, "num_warps": 8, "prefetch": 2}
    gpu = torch.device("cuda", 0)
    plan = plan_rows(4096, 262144, gpu, cfg, residency_key=("op",))
    assert (plan.kind, plan.split, plan.prefetch, plan.reread) == ("split", 32, 2, False)
    assert plan.residency_key == ("op", 8192, 8, 32, 2, False, 8192)
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
    with pytest.raises(ValueError, match="split_fill"):
        plan_rows(4096, 262144, gpu, {**cfg, "split_fill": 1})


def test_split_fill_puts_whole_groups_on_every_sm(monkeypatch: pytest.MonkeyPatch) -> None:
    """``split_fill`` on an H100 (132 SMs): 16 programs of 16384 columns a 262144-column row
    leave 132 // 16 * 16 = 128 SMs busy; 22 parts of 11920 columns fill all 132."""
    from tilearena.kernels import triton_rows

    monkeypatch.setattr(triton_rows, "interpreting", lambda: False)
    monkeypatch.setattr(triton_rows, "sm_count", lambda index: 132)
    gpu = torch.device("cuda", 0)
    plain = plan_rows(4096, 262144, gpu, {"chunk": 16384, "num_warps": 16}, ("op",))
    assert (plain.split, plain.part, plain.grid) == (16, 16384, 128)
    filled = plan_rows(4096, 262144, gpu, {"chunk": 16384, "num_warps": 16, "split_fill": True}, ("op",))
    assert (filled.split, filled.part, filled.block_n, filled.grid) == (22, 11920, 16384, 132)
    assert filled.residency_key != plain.residency_key  # another kernel: its residency is its own
    assert triton_rows.split_parts(262144, 8192, 132) == (33, 7952)
    assert triton_rows.split_parts(262144, 16384, 128) == (16, 16384)  # already whole groups
    assert triton_rows.split_parts(65536, 16384, 0) == (4, 16384)  # off: ceil(N / chunk) parts


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=1 << 20),
    chunk=st.sampled_from([1024, 4096, 8192, 16384]),
    sms=st.integers(min_value=0, max_value=200),
)
def test_split_parts_cover_the_row(n: int, chunk: int, sms: int) -> None:
    """Any row, chunk and SM count: the parts tile the row with none empty and none wider than
    the register block; a narrowed part is 16-column aligned and its count divides the SMs."""
    from tilearena.kernels.triton_rows import PART_ALIGN, split_parts

    split, part = split_parts(n, chunk, sms)
    assert 0 < part <= chunk
    assert split * part >= n > (split - 1) * part
    if part != chunk:
        assert part % PART_ALIGN == 0 and sms % split == 0
    else:
        assert split == -(-n // chunk) or sms % split == 0


_SPLIT_PTX = """
import os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tilearena.kernels.rmsnorm.triton import _rmsnorm_split
from tilearena.kernels.softmax.triton import _softmax_split

op, chunk, part, split, num_warps = sys.argv[1], *map(int, sys.argv[2:6])
kernel = _rmsnorm_split if op == "rmsnorm" else _softmax_split
given = {"SPLIT": split, "SPLIT_P2": triton.next_power_of_2(split), "CHUNK": chunk, "PART": part,
         "PREFETCH": 1, "REREAD": False, "KEEP_EXP": False}
signature, constexprs, attrs = {}, {}, {}
for i, name in enumerate(kernel.arg_names):
    if name in given:
        signature[name], constexprs[(i,)] = "constexpr", given[name]
    elif name == "slots_ptr":  # rmsnorm's slots hold int32 bits, softmax's int64 pairs
        signature[name], attrs[(i,)] = ("*i32" if op == "rmsnorm" else "*i64"), [["tt.divisibility", 16]]
    elif name.endswith("_ptr"):
        signature[name], attrs[(i,)] = "*bf16", [["tt.divisibility", 16]]
    elif name == "eps":
        signature[name] = "fp32"
    else:  # M, N and the row strides, specialised as multiples of 16 at launch
        signature[name], attrs[(i,)] = "i32", [["tt.divisibility", 16]]
source = ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
cubin = os.path.join(tempfile.mkdtemp(), "kernel.cubin")
with open(cubin, "wb") as out:
    out.write(compiled.asm["cubin"])
tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
usage = subprocess.run([tool, "-res-usage", cubin], capture_output=True, text=True, check=True).stdout
print(compiled.asm["ptx"])
print("RESOURCES", usage)
"""


@pytest.mark.parametrize(
    ("op", "chunk", "part", "split", "num_warps"),
    [("rmsnorm", 16384, 11920, 22, 16), ("softmax", 8192, 7952, 33, 8)],
)
def test_split_fill_keeps_128_bit_accesses(
    op: str, chunk: int, part: int, split: int, num_warps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part narrower than its register block (split_fill at N = 262144 on 132 SMs) still
    compiles for sm_90a to 128-bit loads and stores only, with no stack: the part's mask is
    constant over 16 columns, so it does not break the vectors (a fresh process: this one runs
    Triton's interpreter)."""
    import re
    import subprocess
    import sys

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    done = subprocess.run(
        [sys.executable, "-c", _SPLIT_PTX, op, str(chunk), str(part), str(split), str(num_warps)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ptx, usage = done.stdout.split("RESOURCES", 1)
    # x, the weight and y (the exchange's polls are ld.volatile.global, not matched here).
    accesses = re.findall(r"\b(?:ld|st)\.global[\w.]*", ptx)
    assert accesses and all(".v4.b32" in access for access in accesses), sorted(set(accesses))
    assert "ld.local" not in ptx and "st.local" not in ptx
    assert "STACK:0 " in usage, usage
