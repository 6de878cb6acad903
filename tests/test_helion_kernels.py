"""CPU tests of the Helion backends (RMSNorm, softmax, matmul).

Two ways of running a Helion kernel without a GPU:

* reference mode (``HELION_INTERPRET=1``): the kernel body runs as eager PyTorch ops on CPU
  tensors, one tile at a time, with the block sizes of the config.  Helion reads the variable
  when a kernel's Settings are built, not at import; the backends build their kernels lazily
  and key their cache on it, so ``monkeypatch.setenv`` is enough and nothing leaks into other
  test files.  It checks the arithmetic (fp32 accumulation, bf16/fp16 in and out, ragged
  tiles), not Helion's masks: eager slicing never over-reads.
* code generation with reference mode off: ``bound.to_triton_code(config)`` traces the kernel
  and emits the Triton source for a config, which checks that every shipped config is legal
  for Helion's ConfigSpec of that shape class, and lets us look at the masks and the dot
  precision.  It binds meta tensors, so the sweep's multi-GiB shapes cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

helion = pytest.importorskip("helion")

from tilearena.kernels import registry  # noqa: E402
from tilearena.kernels.helion_configs import (  # noqa: E402
    describe_config_space,
    helion_kernel,
    matmul_config,
    rowwise_config,
)
from tilearena.kernels.matmul import helion as matmul_mod  # noqa: E402
from tilearena.kernels.rmsnorm import helion as rmsnorm_mod  # noqa: E402
from tilearena.kernels.softmax import helion as softmax_mod  # noqa: E402

ROW_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MATMUL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@pytest.fixture
def interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELION_INTERPRET", "1")
    # Helion refuses to run with both interpreters on.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def compile_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELION_INTERPRET", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture(scope="module")
def mm_dtype_on_cpu() -> Iterator[None]:
    """Reference mode turns ``torch.addmm(fp32 acc, bf16, bf16)`` into ``aten::mm.dtype`` (mm
    with an fp32 out_dtype), which has no CPU kernel; supply one for this module only."""
    lib = torch.library.Library("aten", "IMPL")

    def mm_dtype(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        return (a.float() @ b.float()).to(out_dtype)

    lib.impl("mm.dtype", mm_dtype, "CPU")
    yield
    lib._destroy()  # unregisters the CPU kernel again


def rel_l2(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).norm() / ref.norm()).item()


def nan_like(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, float("nan"))


# ------------------------------------------------------------------ reference mode: numerics


# The quick shapes plus one row longer than MAX_ROW_IN_REGISTERS (looped / online kernels).
ROW_SHAPES = (*registry.spec("rmsnorm").shapes["quick"], {"M": 2, "N": 40000})


@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: f"{s['M']}x{s['N']}")
def test_rmsnorm_matches_float64(interpret: None, shape: dict[str, int], dtype: torch.dtype) -> None:
    spec = registry.spec("rmsnorm")
    x, weight, eps = spec.make_inputs(shape, dtype, "cpu", 0)
    out = nan_like(x)
    y = rmsnorm_mod.rmsnorm_helion(x, weight, eps, out=out)
    assert y is out and y.dtype == dtype
    assert rel_l2(y, spec.reference(x, weight, eps)) <= spec.tolerance[dtype]


def test_rmsnorm_fp32_weight_3d_input_and_empty(interpret: None) -> None:
    spec = registry.spec("rmsnorm")
    x = torch.randn(2, 3, 100, dtype=torch.bfloat16)
    weight = 1.0 + 0.5 * torch.randn(100)
    y = rmsnorm_mod.rmsnorm_helion(x, weight, 1e-6)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert rel_l2(y, spec.reference(x, weight, 1e-6)) <= spec.tolerance[torch.bfloat16]
    empty = torch.empty(0, 64, dtype=torch.float16)
    assert rmsnorm_mod.rmsnorm_helion(empty, torch.ones(64, dtype=torch.float16), 1e-6).shape == (0, 64)


@pytest.mark.parametrize("variant", ["split_narrow", "split_fenced"])
@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: f"{s['M']}x{s['N']}")
def test_rmsnorm_split_matches_float64(
    interpret: None, shape: dict[str, int], dtype: torch.dtype, variant: str
) -> None:
    """The split kernels' arithmetic (reference mode runs them with one part per row: the
    exchange between parts needs programs running at once, a GPU test); ``split_narrow``'s
    bf16 widening by bit shift included."""
    spec = registry.spec("rmsnorm")
    x, weight, eps = spec.make_inputs(shape, dtype, "cpu", 0)
    y = rmsnorm_mod.rmsnorm_helion(x, weight, eps, out=nan_like(x), config={"variant": variant})
    assert rel_l2(y, spec.reference(x, weight, eps)) <= spec.tolerance[dtype]


@pytest.mark.parametrize("variant", [None, "rows", "online", "split", "split_keep"])
@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: f"{s['M']}x{s['N']}")
def test_softmax_matches_float64(interpret: None, shape: dict[str, int], dtype: torch.dtype,
                                 variant: str | None) -> None:
    spec = registry.spec("softmax")
    (x,) = spec.make_inputs(shape, dtype, "cpu", 0)
    # Small tiles so that several chunks, and a ragged last one, are exercised on small N.
    config = None if variant is None else (
        {"variant": "online", "block_sizes": [2, 256]} if variant == "online"
        else {"variant": variant} if variant in ("split", "split_keep")
        else {"variant": "rows", "block_sizes": [4]}
    )
    out = nan_like(x)
    y = softmax_mod.softmax_helion(x, out=out, config=config)
    assert y is out and y.dtype == dtype
    assert rel_l2(y, spec.reference(x)) <= spec.tolerance[dtype]


@pytest.mark.parametrize("variant", ["rows", "online", "split", "split_keep"])
def test_softmax_of_masked_scores(interpret: None, variant: str) -> None:
    """Leading chunks of -inf (masked attention scores) give exact zeros, not NaN."""
    spec = registry.spec("softmax")
    (x,) = spec.make_inputs({"M": 3, "N": 1000}, torch.float32, "cpu", 0)
    x[:, :600] = float("-inf")  # more than two whole 256-column chunks
    config = {"variant": "online", "block_sizes": [2, 256]} if variant == "online" else {"variant": variant}
    y = softmax_mod.softmax_helion(x, out=nan_like(x), config=config)
    assert torch.equal(y[:, :600], torch.zeros(3, 600))
    assert rel_l2(y, spec.reference(x)) <= spec.tolerance[torch.float32]


MATMUL_SHAPES = (*registry.spec("matmul").shapes["quick"], {"M": 70, "N": 50, "K": 130, "BT": 1})


@pytest.mark.parametrize("tiles", [None, [16, 16, 32]], ids=["shipped", "small-tiles"])
@pytest.mark.parametrize("dtype", MATMUL_DTYPES, ids=str)
@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: f"{s['M']}x{s['N']}x{s['K']}-bt{s['BT']}")
def test_matmul_matches_float64(interpret: None, mm_dtype_on_cpu: None, shape: dict[str, int],
                                dtype: torch.dtype, tiles: list[int] | None) -> None:
    spec = registry.spec("matmul")
    a, b, transpose_b = spec.make_inputs(shape, dtype, "cpu", 0)
    out = nan_like(spec.empty_output(a, b, transpose_b))
    config = None if tiles is None else {"block_sizes": tiles}
    c = matmul_mod.matmul_helion(a, b, transpose_b, out=out, config=config)
    assert c is out and c.dtype == dtype
    assert rel_l2(c, spec.reference(a, b, transpose_b)) <= spec.tolerance[dtype]


def test_matmul_empty(interpret: None) -> None:
    a = torch.empty(0, 32, dtype=torch.bfloat16)
    b = torch.randn(32, 16, dtype=torch.bfloat16)
    assert matmul_mod.matmul_helion(a, b).shape == (0, 16)


# ------------------------------------------------------------------ code generation (no GPU)


def _triton_code(fn, args: tuple, config: dict, *, static_shapes: bool, **settings) -> str:
    bound = helion_kernel(fn, config, static_shapes=static_shapes, **settings).bind(args)
    return bound.to_triton_code(helion.Config(**config))


ROW_CLASSES = ({"M": 262144, "N": 256}, {"M": 5, "N": 1000}, {"M": 16384, "N": 4096},
               {"M": 16384, "N": 32768}, {"M": 8192, "N": 65536}, {"M": 4096, "N": 262144},
               {"M": 3, "N": 4100}, {"M": 1, "N": 40000})


@pytest.mark.parametrize("shape", ROW_CLASSES, ids=lambda s: f"{s['M']}x{s['N']}")
def test_rowwise_shipped_configs_generate_code(compile_only: None, shape: dict[str, int]) -> None:
    m, n = shape["M"], shape["N"]
    x = torch.empty(m, n, dtype=torch.bfloat16, device="meta")
    w = torch.empty(n, dtype=torch.bfloat16, device="meta")
    code = _triton_code(rmsnorm_mod._rmsnorm_rows, (x, w, 1e-6, x), rowwise_config(n), static_shapes=False)
    assert "tl.sum" in code
    fn, config = softmax_mod._plan(n, None)
    code = _triton_code(fn, (x, x), config, static_shapes=False)
    if n % 1024:
        # A ragged row: padded lanes must be -inf in the max and 0 in the sum.
        assert "float('-inf')" in code and "tl.where" in code


_PTX_OF_GENERATED = """
import importlib.util, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

path, num_warps = sys.argv[1], int(sys.argv[2])
# NAME=VALUE: a constexpr argument's value (a persistent reduction's _RDIM_SIZE_1, the row).
given = dict(arg.split("=") for arg in sys.argv[3:] if "=" in arg)
spec = importlib.util.spec_from_file_location("helion_generated", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
kernel = next(v for k, v in vars(module).items() if k.startswith("_helion_") and hasattr(v, "arg_names"))
signature, constexprs, attrs = {}, {}, {}
for i, name in enumerate(kernel.arg_names):
    if name in given:
        signature[name], constexprs[(i,)] = "constexpr", int(given[name])
    elif name in ("x", "out", "weight"):
        signature[name], attrs[(i,)] = "*bf16", [["tt.divisibility", 16]]
    elif name in ("slots", "arrivals"):
        signature[name], attrs[(i,)] = ("*fp32" if name == "slots" else "*i32"), [["tt.divisibility", 16]]
    elif name.endswith("_stride_1") or name in ("weight_stride_0", "slots_stride_0", "arrivals_stride_0"):
        signature[name], constexprs[(i,)] = "constexpr", 1
    elif name == "eps":
        signature[name] = "fp32"
    else:
        signature[name], attrs[(i,)] = "i32", [["tt.divisibility", 16]]
source = ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
print(compiled.asm["ptx"])
if "resources" in sys.argv[3:]:  # ptxas's resource use (registers, stack) of the cubin (cuobjdump)
    import os, subprocess, tempfile
    cubin = os.path.join(tempfile.mkdtemp(), "kernel.cubin")
    with open(cubin, "wb") as out:
        out.write(compiled.asm["cubin"])
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    usage = subprocess.run([tool, "-res-usage", cubin], capture_output=True, text=True, check=True)
    print("RESOURCES", usage.stdout)
"""


def _ptx(
    code: str,
    num_warps: int,
    tmp_path: Path,
    resources: bool = False,
    constexprs: dict[str, int] | None = None,
) -> str:
    """PTX for sm_90a of a generated Helion kernel, its pointers and row strides marked 16-byte
    divisible and unit strides constant, as Triton specialises them at launch on the GPU.  In a
    fresh process: this one imported Triton's helpers under the interpreter (conftest)."""
    import os
    import subprocess
    import sys

    path = tmp_path / "generated.py"
    path.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "HELION_INTERPRET")}
    extra = (["resources"] if resources else []) + [f"{k}={v}" for k, v in (constexprs or {}).items()]
    done = subprocess.run(
        [sys.executable, "-c", _PTX_OF_GENERATED, str(path), str(num_warps), *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


#: Each op's split kernel with the relaxed exchange (shipped) and the fenced one (kept to measure).
SPLIT_EXCHANGES = {"relaxed": {"rmsnorm": "split_narrow", "softmax": "split"},
                   "fenced": {"rmsnorm": "split_fenced", "softmax": "split_fenced"}}


@pytest.mark.parametrize("exchange", ["relaxed", "fenced"])
@pytest.mark.parametrize("n", [65536, 262144])
def test_split_kernels_compile_for_sm90(compile_only: None, n: int, exchange: str, tmp_path: Path) -> None:
    """The split kernels build for the H100.  The shipped one publishes each partial with a relaxed
    exchange and polls with relaxed compare-and-swaps: no fence, which would wait for every load
    in flight (the fenced variant's release/acquire counter is kept to measure against).  Both
    move x in 128-bit loads and keep the chunk in registers (no stack, no spill); the shipped one
    leaves room for at least two programs per SM."""
    import re

    x = torch.empty(64, n, dtype=torch.bfloat16, device="meta")
    w = torch.empty(n, dtype=torch.bfloat16, device="meta")
    assert rmsnorm_mod.shipped_config(x)["variant"] == "split_narrow"  # faster (NOTES.md, Session 16)
    assert softmax_mod.shipped_config(x)["variant"] == "split_keep"  # measured faster (NOTES.md, Session 9)
    variants = SPLIT_EXCHANGES[exchange]
    kernels = (
        (*rmsnorm_mod._plan(n, {"variant": variants["rmsnorm"]}), (x, w, 1e-6, x)),
        (*softmax_mod._plan(n, {"variant": variants["softmax"]}), (x, x)),
    )
    for fn, config, args in kernels:
        code = _triton_code(fn, args, config, static_shapes=False)
        assert "while while_cond" in code
        ptx = _ptx(code, config["num_warps"], tmp_path, resources=True)
        if exchange == "relaxed":
            assert re.search(r"atom\.[\w.]*relaxed[\w.]*\.exch", ptx)
            assert re.search(r"atom\.[\w.]*relaxed[\w.]*\.cas", ptx)
            assert not re.search(r"\b(membar|fence)\.", ptx)
            assert ".acquire" not in ptx and ".release" not in ptx
        else:
            assert re.search(r"atom\.[\w.]*acquire", ptx) and re.search(r"atom\.[\w.]*release", ptx)
        assert re.search(r"ld\.global[\w.]*\.v4", ptx)
        assert "ld.local" not in ptx and "st.local" not in ptx
        usage = ptx[ptx.index("RESOURCES") :]
        registers = int(re.search(r"REG:(\d+)", usage).group(1))
        assert "STACK:0 " in usage, usage
        if exchange == "relaxed":  # (the fenced softmax needs 100 registers at 262144: one per SM)
            assert registers * 32 * config["num_warps"] <= 65536 // 2, (registers, config["num_warps"])


@pytest.mark.parametrize("warps", [4, 8])
def test_rmsnorm_split_narrow_holds_bf16_across_the_exchange(
    compile_only: None, warps: int, tmp_path: Path
) -> None:
    """``split_narrow`` holds x as loaded across the exchange, not its float32 copy: at 262144
    columns in parts of 8192 (sm_90a) ptxas gives it few enough registers for a fifth program an
    SM (at most 96 at 4 warps, 48 at 8; the removed ``split``, which held float32, needed 105 and
    63: four), with 8 128-bit loads of x and 8 of the weight a thread at 4 warps and the relaxed,
    unfenced exchange."""
    import re

    n = 262144
    x = torch.empty(64, n, dtype=torch.bfloat16, device="meta")
    w = torch.empty(n, dtype=torch.bfloat16, device="meta")
    fn, config = rmsnorm_mod._plan(n, {"variant": "split_narrow", "block_sizes": [8192], "num_warps": warps})
    code = _triton_code(fn, (x, w, 1e-6, x), config, static_shapes=False)
    ptx = _ptx(code, warps, tmp_path, resources=True)
    usage = ptx[ptx.index("RESOURCES") :]
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    assert "STACK:0 " in usage, usage
    assert len(re.findall(r"ld\.global[\w.]*\.v4", ptx)) == 16 * 4 // warps
    assert re.search(r"atom\.[\w.]*relaxed[\w.]*\.cas", ptx)
    assert not re.search(r"\b(membar|fence)\.", ptx)
    programs = 65536 // (-(-registers // 8) * 8 * 32 * warps)
    assert programs >= 5, (registers, programs)


# ------------------------------------------------------------------ split_stream: rows walked per program

#: (M, N, rows per program): M not a multiple of the rows (the last block's prefetch runs past M
#: and is masked), one row, a ragged last part, a block of one row.
STREAM_SHAPES = ((13, 1000, 4), (1, 40000, 8), (5, 4100, 2), (16, 300, 8), (3, 65537, 8), (7, 256, 1))


def _stream_inputs(op: str, m: int, n: int, dtype: torch.dtype) -> tuple:
    return registry.spec(op).make_inputs({"M": m, "N": n}, dtype, "cpu", 0)


def _stream_call(op: str, args: tuple, rows: int, out: torch.Tensor | None = None) -> torch.Tensor:
    # The part size is any value: reference mode runs one part per row (split_variant_config).
    config = {"variant": "split_stream", "block_sizes": [1024, rows]}
    if op == "rmsnorm":
        return rmsnorm_mod.rmsnorm_helion(*args, out=out, config=config)
    return softmax_mod.softmax_helion(*args, out=out, config=config)


@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("shape", STREAM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_stream_matches_float64(interpret: None, op: str, shape: tuple, dtype: torch.dtype) -> None:
    """``split_stream``'s arithmetic: each program walks a block of rows, its next row's chunk
    loaded (and masked past the block and past M) before the current row's exchange and carried
    round the loop.  Reference mode runs one part per row, but keeps the rows per program, so
    the row loop and the prefetch run here; the exchange between parts is a GPU test."""
    m, n, rows = shape
    args = _stream_inputs(op, m, n, dtype)
    out = nan_like(args[0])
    y = _stream_call(op, args, rows, out=out)
    assert y is out and y.dtype == dtype
    spec = registry.spec(op)
    assert rel_l2(y, spec.reference(*args)) <= spec.tolerance[dtype]


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_stream_nan_inf_and_masked_rows(interpret: None, op: str) -> None:
    """A NaN or an inf stays in its own row (not carried into the next row of the block), and
    softmax gives exact zeros for masked (-inf) columns."""
    spec = registry.spec(op)
    args = _stream_inputs(op, 7, 1000, torch.float32)
    x = args[0]
    x[1, 777] = float("nan")
    x[3, 400] = float("inf")
    x[4, :] = float("nan")
    if op == "softmax":
        x[5, :600] = -float("inf")
        x[6, :] = -float("inf")
    y = _stream_call(op, args, 4)
    ref = spec.reference(*args)
    finite = torch.isfinite(y).all(dim=1).tolist()
    assert not finite[1] and not finite[3] and not finite[4]
    assert torch.isnan(y[4]).all()
    for row in (0, 2, 5):
        assert finite[row] and rel_l2(y[row], ref[row]) <= spec.tolerance[torch.float32]
    if op == "softmax":
        assert torch.isnan(y[1]).all() and torch.isnan(y[3]).all()  # the reference's NaN rows
        assert torch.equal(y[5, :600], torch.zeros(600))
        # A row of nothing but -inf: NaN, as the reference; split_keep (whose arithmetic
        # split_stream shares) gave zeros before 0 / row sum replaced its factor's 0.
        assert torch.isnan(ref[6]).all() and torch.isnan(y[6]).all()
        keep = softmax_mod.softmax_helion(x, config={"variant": "split_keep"})
        assert torch.isnan(keep[6]).all() and torch.equal(keep[5, :600], torch.zeros(600))
    else:
        assert rel_l2(y[6], ref[6]) <= spec.tolerance[torch.float32]


def test_split_stream_config(compile_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt-in only; [columns per part, rows per program] = [8192, SPLIT_STREAM_ROWS] at the
    shipped shapes, with the launch order every split kernel needs; reference mode widens the
    part to the whole row and keeps the rows."""
    from tilearena.kernels.helion_configs import SPLIT_REQUIRED, SPLIT_STREAM_ROWS

    for mod in (rmsnorm_mod, softmax_mod):
        assert "split_stream" in mod.VARIANTS
        assert mod.shipped_variant(65536) != "split_stream" and mod.shipped_variant(262144) != "split_stream"
        for n in (65536, 262144):
            fn, config = mod._plan(n, {"variant": "split_stream"})
            assert fn.__name__.endswith("_split_stream")
            assert config["block_sizes"] == [8192, SPLIT_STREAM_ROWS] and config["num_warps"] == 8
            assert all(config[k] == v for k, v in SPLIT_REQUIRED.items())
            assert mod._plan(n, {"variant": "split_stream", "block_sizes": [4096, 16]})[1]["block_sizes"] == [
                4096, 16]
        monkeypatch.setenv("HELION_INTERPRET", "1")
        assert mod._plan(40000, {"variant": "split_stream", "block_sizes": [4096, 4]})[1]["block_sizes"] == [
            65536, 4]
        monkeypatch.delenv("HELION_INTERPRET")
    x = torch.randn(2, 70000)
    for bad in ({"pid_type": "persistent_blocked"}, {"l2_groupings": [4]}, {"loop_orders": [[1, 0]]}):
        with pytest.raises(ValueError, match="config"):
            rmsnorm_mod.rmsnorm_helion(x, torch.ones(70000), 1e-6, config={"variant": "split_stream", **bad})
        with pytest.raises(ValueError, match="config"):
            softmax_mod.softmax_helion(x, config={"variant": "split_stream", **bad})


def _stream_code(op: str, n: int) -> tuple[str, dict]:
    """Triton code of ``split_stream`` at ``n`` columns (bf16).  Bound to (small, untouched) CPU
    tensors, not meta ones: its exchange reduces [1, 32] slots with a size-1 row that is a
    constant, and Inductor's lowering of such a reduction asks for the device's backend,
    which the meta device has none of (the tile-shaped split kernels' rows are symbolic)."""
    x = torch.empty(64, n, dtype=torch.bfloat16)
    mod = rmsnorm_mod if op == "rmsnorm" else softmax_mod
    fn, config = mod._plan(n, {"variant": "split_stream"})
    args = (x, torch.empty(n, dtype=torch.bfloat16), 1e-6, x) if op == "rmsnorm" else (x, x)
    return _triton_code(fn, args, config, static_shapes=False), config


@pytest.mark.parametrize("n", [65536, 262144])
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_stream_prefetches_across_the_exchange(compile_only: None, op: str, n: int,
                                                     tmp_path: Path) -> None:
    """In the generated code the next row's chunk is loaded (masked past the row block) before
    the current row's exchange and carried round the row loop in x's dtype; RMSNorm's weight is
    loaded once, before the loop.  In the PTX for sm_90a those 128-bit loads sit in the row
    loop before the relaxed exchange and its polling loop (nothing waits for them there; their
    first use is the next iteration's conversion), with no fence, no stack and no spill, in at
    most 128 registers a thread: two 8-warp programs an SM (the split kernels fit four)."""
    import re

    code, config = _stream_code(op, n)
    loop = code.index("for offset_2 in tl.range(")
    spin = code.index("while while_cond")
    prefetch = code.index("ahead = tl.load(x", loop)
    assert loop < prefetch < code.index("tl.atomic_xchg", loop) < spin
    # Masked past the block's last row (tile_b.end, which is clamped to M).
    assert re.match(r"ahead = tl\.load\(x \+ [^\n]*\bsubscript, other=0\)", code[prefetch:spin])
    assert code.index("ahead = tl.load(x") < loop  # the block's first row, before the loop
    if op == "rmsnorm":
        assert code.index("tl.load(weight") < loop and "tl.load(weight" not in code[loop:]
    ptx = _ptx(code, config["num_warps"], tmp_path, resources=True)
    assert re.search(r"atom\.[\w.]*relaxed[\w.]*\.exch", ptx)
    assert re.search(r"atom\.[\w.]*relaxed[\w.]*\.cas", ptx)
    assert not re.search(r"\b(membar|fence)\.", ptx)
    assert ".acquire" not in ptx and ".release" not in ptx
    assert "ld.local" not in ptx and "st.local" not in ptx
    row_loop = ptx[ptx.index("This Loop Header: Depth=1") : ptx.index("Inner Loop Header: Depth=2")]
    loads = [m.start() for m in re.finditer(r"ld\.global[\w.]*\.v4", row_loop)]
    per_thread = config["block_sizes"][0] // (32 * config["num_warps"])
    assert len(loads) == per_thread // 8, len(loads)  # the next row's chunk, 8 bf16 a load
    assert max(loads) < re.search(r"atom\.[\w.]*\.exch", row_loop).start()
    usage = ptx[ptx.index("RESOURCES") :]
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    assert "STACK:0 " in usage, usage
    print(f"{op} split_stream N={n}: {registers} registers a thread, "
          f"{65536 // (registers * 32 * config['num_warps'])} programs an SM")
    assert registers * 32 * config["num_warps"] <= 65536 // 2, (registers, config["num_warps"])


#: ``tilearena timing-check --against override --override JSON`` for split_stream against the baked
#: split configs (autotune/baked/h100-sxm.json): every key of the baked config whose length the
#: new kernel changes (a second block size, a row loop, one more load for RMSNorm's weight, no
#: reduction loop).
STREAM_OVERRIDES = {
    op: {
        "variant": "split_stream", "block_sizes": [8192, 8], "range_unroll_factors": [0, 0],
        "range_num_stages": [0, 0], "range_multi_buffers": [None, None], "range_flattens": [None, None],
        "load_eviction_policies": [""] * loads, "reduction_loops": [],
    }
    for op, loads in (("softmax", 2), ("rmsnorm", 3))
}


@pytest.mark.parametrize("shape", [{"M": 8192, "N": 65536}, {"M": 4096, "N": 262144}], ids=str)
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_stream_override_fits_the_baked_config(compile_only: None, op: str, shape: dict) -> None:
    """The A/B override above, merged onto the baked config as timing-check merges it, is a valid
    config of the split_stream kernel, the one it would run and the one --adopt would bake."""
    import json

    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.autotune.store import config_fits_kernel
    from tilearena.kernels.helion_configs import _to_plain

    baked = json.loads((Path(__file__).parents[1] / "autotune" / "baked" / "h100-sxm.json").read_text())
    (entry,) = [e for e in baked["entries"] if e["op"] == op and e["backend"] == "helion"
                and e["shape"] == shape and e["dtype"] == "bfloat16"]
    merged = {**entry["config"], **STREAM_OVERRIDES[op]}
    # Parts of 8192 columns over 8 rows need at least 4 warps (128 values a thread); the softmax
    # 65536 entry is baked at 2 warps (parts of 4096) since session 16, so an A/B run there names
    # its warps too.
    merged["num_warps"] = max(merged["num_warps"], 4)
    space = space_for(registry.backend(op, "helion"))
    assert space.invalid_reason(merged, TuneContext(shape=shape, dtype_bytes=2)) is None
    assert config_fits_kernel(op, "helion", merged) is None
    mod = rmsnorm_mod if op == "rmsnorm" else softmax_mod
    fn, config = mod._plan(shape["N"], merged)
    assert fn.__name__.endswith("_split_stream") and config["block_sizes"] == [8192, 8]
    # The same kernel as the variant's own default config at the same warps, once Helion has
    # filled in its defaults.
    _, default = mod._plan(shape["N"], {"variant": "split_stream", "num_warps": merged["num_warps"]})
    spec = space.config_spec(TuneContext(shape=shape, dtype_bytes=2), "split_stream")
    normalized = [helion.Config(**c) for c in (config, default)]
    for c in normalized:
        spec.normalize(c)
    assert _to_plain(normalized[0]) == _to_plain(normalized[1])


def test_split_refuses_an_unsafe_launch_order(compile_only: None) -> None:
    x = torch.randn(2, 70000)
    for bad in ({"pid_type": "persistent_blocked"}, {"l2_groupings": [4]}, {"loop_orders": [[1, 0]]}):
        with pytest.raises(ValueError, match="config"):
            rmsnorm_mod.rmsnorm_helion(x, torch.ones(70000), 1e-6, config={"variant": "split_narrow", **bad})
        with pytest.raises(ValueError, match="config"):
            softmax_mod.softmax_helion(x, config={"variant": "split", **bad})


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_config_space_keeps_the_launch_order(compile_only: None, op: str) -> None:
    import random

    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.kernels.helion_configs import SPLIT_REQUIRED

    space = space_for(registry.backend(op, "helion"))
    context = TuneContext(shape={"M": 8192, "N": 65536}, dtype_bytes=2)
    rng = random.Random(1)
    for _ in range(8):
        config = space.sample(rng, context)
        assert all(config[k] == v for k, v in SPLIT_REQUIRED.items()), config
        assert space.invalid_reason(config, context) is None
        for step in space.neighbours(config, context):
            assert all(step.get(k, v) == v for k, v in SPLIT_REQUIRED.items()), step
    assert space.invalid_reason({"pid_type": "persistent_blocked"}, context) is not None


def test_config_space_accepts_a_named_variant(compile_only: None) -> None:
    """A baked config may name its kernel variant (timing-check --adopt and Helion's own tuner
    write one): the store must keep it, checked against that variant's kernel."""
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.autotune.store import config_fits_kernel

    space = space_for(registry.backend("softmax", "helion"))
    context = TuneContext(shape={"M": 8192, "N": 65536}, dtype_bytes=2)
    shipped = softmax_mod.shipped_config(torch.empty(8192, 65536, device="meta"))
    assert shipped["variant"] == "split_keep"
    split = {**shipped, "variant": "split"}
    keep = {**split, "variant": "split_keep"}
    assert space.invalid_reason(split, context) is None
    assert space.invalid_reason(keep, context) is None
    assert config_fits_kernel("softmax", "helion", keep) is None
    assert "variant" in space.invalid_reason({**split, "variant": "fastest"}, context)
    # The variant's own rules still apply: a split kernel's parts must launch in row order.
    assert "pid_type" in space.invalid_reason({**keep, "pid_type": "persistent_blocked"}, context)


@pytest.mark.parametrize("cap", [96, 80, 48])
def test_config_space_refuses_a_register_cap_helion_refuses(compile_only: None, cap: int) -> None:
    """Helion accepts maxnreg only from its own list (None, 32, 64, 128, 256) and checks it only
    where CUDA is present: the space must refuse other caps on a CPU machine too, or a planned
    override (96 for the RMSNorm split kernel, session 13) fails on every GPU call."""
    from tilearena.autotune.space import TuneContext, space_for

    space = space_for(registry.backend("rmsnorm", "helion"))
    context = TuneContext(shape={"M": 4096, "N": 262144}, dtype_bytes=2)
    split = rmsnorm_mod.shipped_config(torch.empty(4096, 262144, device="meta"))
    assert space.invalid_reason({**split, "maxnreg": 128}, context) is None
    assert "maxnreg" in space.invalid_reason({**split, "maxnreg": cap}, context)
    assert "maxnreg" in space.invalid_reason({"maxnreg": cap})


MATMUL_CLASSES = ({"M": 1, "N": 4096, "K": 4096}, {"M": 16, "N": 28672, "K": 4096},
                  {"M": 128, "N": 6144, "K": 4096}, {"M": 4096, "N": 4096, "K": 14336},
                  {"M": 17, "N": 33, "K": 65})


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("shape", MATMUL_CLASSES, ids=lambda s: f"{s['M']}x{s['N']}x{s['K']}")
def test_matmul_shipped_configs_generate_code(compile_only: None, shape: dict[str, int],
                                              transpose_b: bool) -> None:
    m, n, k = shape["M"], shape["N"], shape["K"]
    a = torch.empty(m, k, dtype=torch.bfloat16, device="meta")
    b = torch.empty((n, k) if transpose_b else (k, n), dtype=torch.bfloat16, device="meta")
    c = torch.empty(m, n, dtype=torch.bfloat16, device="meta")
    fn, _, _, _ = matmul_mod.kernel_call(a, b, transpose_b, c)
    code = _triton_code(fn, (a, b, c), matmul_mod.shipped_config(a, b, transpose_b), static_shapes=True)
    assert "tl.dot" in code and "tl.float32" in code
    if m <= 16 and transpose_b:
        # Decode takes the swap-AB kernel: B's tile is the dot's left operand, A's the right one,
        # loaded with pointers (the cp.async pipeline), and C is stored transposed.
        assert fn is matmul_mod._matmul_nk_swap
        assert "tl.dot(tl.cast(load, tl.bfloat16)" in code  # B's tile (the first load) on the left
        assert "make_tensor_descriptor" not in code and "num_stages=6" in code


def test_matmul_fp32_is_not_tf32(compile_only: None) -> None:
    a = torch.empty(64, 64, dtype=torch.float32, device="meta")
    code = _triton_code(matmul_mod._matmul_kn, (a, a, a), matmul_config(64, 64, 64), static_shapes=True,
                        **matmul_mod._settings(torch.float32))
    assert "input_precision='ieee'" in code


# ------------------------------------------------------------------ configs and config spaces


def test_config_overrides_and_errors(compile_only: None) -> None:
    x = torch.randn(4, 64)
    with pytest.raises(ValueError, match="config"):
        rmsnorm_mod.rmsnorm_helion(x, torch.ones(64), 1e-6, config={"blok_sizes": [1]})
    with pytest.raises(ValueError, match="num_warps"):
        rmsnorm_mod.rmsnorm_helion(x, torch.ones(64), 1e-6, config={"num_warps": 3})
    with pytest.raises(ValueError, match="variant"):
        softmax_mod.softmax_helion(x, config={"variant": "fast"})
    a = torch.randn(17, 65, dtype=torch.bfloat16)
    b = torch.randn(65, 33, dtype=torch.bfloat16)
    # Helion's own validation (one block size per tiled loop) surfaces as a ValueError too.
    with pytest.raises(ValueError, match="block_sizes"):
        matmul_mod.matmul_helion(a, b, config={"block_sizes": [16]})
    shipped = softmax_mod.shipped_config(torch.empty(2, 300000))
    assert shipped["variant"] == "split_keep"
    assert softmax_mod._plan(300000, {"num_warps": 8})[1]["num_warps"] == 8


def test_config_spaces(compile_only: None) -> None:
    x = torch.empty(16, 4096, dtype=torch.bfloat16, device="meta")
    weight = torch.empty(4096, dtype=torch.bfloat16, device="meta")
    space = registry.backend("rmsnorm", "helion").config_space(x, weight, 1e-6)
    assert len(space.block_sizes) == 1 and len(space.reduction_loops) == 1
    assert "num_warps" in describe_config_space(space)
    assert softmax_mod.kernel_call(x, variant="online")[0] is softmax_mod._softmax_online
    a = torch.empty(128, 256, dtype=torch.bfloat16, device="meta")
    b = torch.empty(512, 256, dtype=torch.bfloat16, device="meta")
    space = registry.backend("matmul", "helion").config_space(a, b, True)
    assert len(space.block_sizes) == 3
    # The shipped config is a point of the space.
    space.normalize(helion.Config(**matmul_config(128, 512, 256)))


@pytest.mark.parametrize("op,shape", [("rmsnorm", {"M": 64, "N": 4096}), ("softmax", {"M": 8, "N": 65536}),
                                      ("matmul", {"M": 128, "N": 256, "K": 512, "BT": 1})])
def test_config_space_protocol(compile_only: None, op: str, shape: dict[str, int]) -> None:
    """The Helion space works with the project's searches (autotune/space.py's protocol)."""
    import random

    from tilearena.autotune.space import TuneContext, space_for

    space = space_for(registry.backend(op, "helion"))
    context = TuneContext(shape=shape, dtype_bytes=2)
    rng = random.Random(0)
    samples = [space.sample(rng, context) for _ in range(3)]
    assert space.sample(random.Random(0), context) == samples[0]  # seeded by rng alone
    for config in samples:
        assert space.invalid_reason(config, context) is None, config
        assert all(space.invalid_reason(n, context) is None for n in space.neighbours(config, context))
        assert space.features(config) and space.effective_key(config, context)
    assert space.neighbours(samples[0], context), "a sampled config has no neighbours"
    assert space.invalid_reason({"block_sizes": [16] * 5}, context) is not None
    assert space.size() is None


def test_backends_registered() -> None:
    for op in ("rmsnorm", "softmax", "matmul"):
        b = registry.backend(op, "helion")
        assert b.dsl == "helion" and b.requires == ("helion",) and b.devices == ("cuda",)
        assert callable(b.config_space)


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        ("rmsnorm", {"M": 32768, "N": 4096}),
        ("softmax", {"M": 4096, "N": 262144}),
        ("rmsnorm", {"M": 262144, "N": 256}),
        ("matmul", {"M": 4096, "N": 4096, "K": 4096, "BT": 1}),
        ("matmul", {"M": 1, "N": 4096, "K": 14336, "BT": 1}),
    ],
    ids=lambda v: v if isinstance(v, str) else "x".join(map(str, v.values())),
)
def test_helion_space_seeds_the_shipped_config_and_samples_tiles_that_fit(
    compile_only: None, op: str, shape: dict[str, int]
) -> None:
    """The tuner starts from the config the kernel ships, and never spends a compile on a tile
    that cannot sit in a program's registers and shared memory (Helion's own space allows
    8192-row programs and 16384-deep K steps: the 913fd71 tune spent minutes compiling them)."""
    import random

    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.kernels.helion_configs import matmul_tile_problem, row_tile_elements

    space = space_for(registry.backend(op, "helion"))
    context = TuneContext(shape=shape, dtype_bytes=2)
    (seed,) = space.seeds(context)
    assert space.invalid_reason(seed, context) is None
    meta = _backend_module_for(op).meta_args(shape, torch.bfloat16)
    shipped = dict(_backend_module_for(op).shipped_config(*meta))
    assert seed["block_sizes"] == shipped["block_sizes"] and seed["num_warps"] == shipped["num_warps"]
    rng = random.Random(3)
    for _ in range(20):
        config = space.sample(rng, context)
        assert config is not None and space.invalid_reason(config, context) is None, config
        if op == "matmul":
            assert matmul_tile_problem(config) is None
        else:
            variant = shipped["variant"]
            assert row_tile_elements(variant, shape["N"], config) <= 32768
            assert row_tile_elements(variant, shape["N"], config) <= 128 * 32 * config["num_warps"]
    too_big = {**seed, "block_sizes": [8192, 256, 64] if op == "matmul" else [65536]}
    assert "config: block_sizes" in space.invalid_reason(too_big, context)


def _backend_module_for(op: str):
    return {"rmsnorm": rmsnorm_mod, "softmax": softmax_mod}.get(op) or __import__(
        "tilearena.kernels.matmul.helion", fromlist=["helion"]
    )


@pytest.mark.parametrize(
    ("blocks", "warps", "cap", "refused"),
    [
        ([128, 256, 16], 8, 64, True),  # ptxas: "register target of 154 or higher"
        ([1024, 32, 16], 8, 32, True),  # ptxas: 42
        ([64, 512, 32], 4, 128, True),  # a 256-column wgmma: 154
        ([512, 32, 32], 8, 128, False),  # ran in the eab33cf tune
        ([32, 256, 16], 8, 64, False),  # under 64 rows: mma.sync, ran
        ([256, 64, 64], 32, 64, False),  # 58 needed, ran
        ([128, 256, 64], 8, None, False),  # no cap
    ],
)
def test_matmul_register_cap_matches_what_ptxas_refused(blocks, warps, cap, refused) -> None:
    from tilearena.kernels.helion_configs import matmul_register_cap_problem

    config = {"block_sizes": blocks, "num_warps": warps, "maxnreg": cap}
    assert (matmul_register_cap_problem(config) is not None) == refused


@pytest.mark.parametrize("n", [65536, 262144])
def test_softmax_split_keep_halves_the_exponentials(compile_only: None, n: int, tmp_path: Path) -> None:
    """``split_keep`` holds exp(x - chunk max) where ``split`` holds x, so its PTX has about half
    the ex2 of ``split`` (one per element, not two, plus the 32-slot rescale), in no more
    registers and with no stack; the exchange is the same relaxed one (no fence)."""
    import re

    x = torch.empty(64, n, dtype=torch.bfloat16, device="meta")
    found = {}
    for variant in ("split", "split_keep"):
        fn, config = softmax_mod._plan(n, {"variant": variant})
        ptx = _ptx(_triton_code(fn, (x, x), config, static_shapes=False), config["num_warps"], tmp_path,
                   resources=True)
        usage = ptx[ptx.index("RESOURCES") :]
        assert "STACK:0 " in usage and "ld.local" not in ptx, usage
        assert not re.search(r"\b(membar|fence)\.", ptx)
        found[variant] = (len(re.findall(r"ex2\.approx", ptx)), int(re.search(r"REG:(\d+)", usage).group(1)))
    (split_ex2, split_regs), (keep_ex2, keep_regs) = found["split"], found["split_keep"]
    assert keep_ex2 <= split_ex2 // 2 + 2, found
    assert keep_regs <= split_regs, found


@pytest.mark.parametrize("variant", ["rows", "online", "split", "split_keep", "split_fenced"])
def test_softmax_kernels_exponentiate_in_base_2(compile_only: None, variant: str, tmp_path: Path) -> None:
    """Every softmax variant calls exp2 (ex2.approx in the PTX), never libdevice's expf, whose
    range reduction cost the one-program-a-row kernel ~8 instructions an element (01948b8)."""
    n = 32768 if variant == "rows" else 65536
    x = torch.empty(64, n, dtype=torch.bfloat16, device="meta")
    fn, config = softmax_mod._plan(n, {"variant": variant})
    code = _triton_code(fn, (x, torch.empty_like(x)), config, static_shapes=False)
    assert "libdevice.exp2(" in code and "libdevice.exp(" not in code and "tl.exp(" not in code
    assert "1.4426950408889634" in code  # x scaled by log2 e before its max
    if variant in ("rows", "split_keep"):  # the kernels the H100 runs at 32768 and beyond
        row = {"_RDIM_SIZE_1": n} if variant == "rows" else None
        ptx = _ptx(code, config["num_warps"], tmp_path, constexprs=row)
        assert "ex2.approx" in ptx
