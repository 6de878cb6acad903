"""GPU checks of every registered backend (marker ``gpu``; run on the H100 with ``pytest -m gpu``).

Fresh random inputs per check (a new seed each run), output poisoned with NaN, compared with the
float64 reference at the spec's tolerance. A backend that cannot run here (package missing)
is skipped with its reason; a backend that runs and is wrong fails.
"""

from __future__ import annotations

import random
import time

import pytest
import torch
from tilearena.bench import numerics
from tilearena.kernels import registry

import tilearena

pytestmark = pytest.mark.gpu

ROWWISE_EXTRA = (
    {"M": 1, "N": 4096},
    {"M": 1, "N": 262144},
    {"M": 3, "N": 5000},
    {"M": 129, "N": 1000},
    {"M": 17, "N": 65537},
    {"M": 1000, "N": 7},
    {"M": 4, "N": 131072 + 8},
)
MATMUL_EXTRA = (
    {"M": 1, "N": 4096, "K": 4096, "BT": 1},
    {"M": 200, "N": 1000, "K": 72, "BT": 1},
    {"M": 200, "N": 1000, "K": 72, "BT": 0},
    {"M": 777, "N": 1536, "K": 1000, "BT": 1},
    {"M": 4096, "N": 4096, "K": 4096, "BT": 0},
    {"M": 16, "N": 6144, "K": 4096, "BT": 1},
)


def _cases() -> list:
    cases = []
    for op in ("rmsnorm", "softmax"):
        shapes = [*registry.spec(op).shapes["quick"], *ROWWISE_EXTRA]
        for name in registry.backend_names(op):
            for dtype in registry.spec(op).dtypes:
                for shape in shapes:
                    cases.append(
                        pytest.param(
                            op,
                            name,
                            dict(shape),
                            dtype,
                            id=f"{op}-{name}-{str(dtype)[6:]}-{'x'.join(map(str, shape.values()))}",
                        )
                    )
    op = "matmul"
    for name in registry.backend_names(op):
        for dtype in registry.spec(op).dtypes:
            for shape in [*registry.spec(op).shapes["quick"], *MATMUL_EXTRA]:
                cases.append(
                    pytest.param(
                        op,
                        name,
                        dict(shape),
                        dtype,
                        id=f"{op}-{name}-{str(dtype)[6:]}-{'x'.join(map(str, shape.values()))}",
                    )
                )
    return cases


@pytest.mark.parametrize(("op", "backend", "shape", "dtype"), _cases())
def test_backend_matches_float64(op: str, backend: str, shape: dict, dtype: torch.dtype) -> None:
    b = registry.backend(op, backend)
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(f"{backend} unavailable here: {reason}")
    args = registry.spec(op).make_inputs(shape, dtype, "cuda", 0)
    if b.supports is not None and (why := b.supports(*args)):
        pytest.skip(f"{backend} does not support this case: {why}")
    result = numerics.check_backend(op, backend, shape, dtype, "cuda", seed=random.randrange(1 << 30))
    if not b.ours and not result.ok:
        # A peer library's failure is information about the peer, recorded, not our defect.
        pytest.xfail(f"peer {backend} fails here: {result.error}")
    assert result.ok, result.error


@pytest.mark.parametrize("op", ["rmsnorm", "softmax", "matmul"])
def test_opcheck_on_cuda(op: str) -> None:
    op_spec = registry.spec(op)
    shape = dict(op_spec.shapes["quick"][2])
    args = op_spec.make_inputs(shape, op_spec.dtypes[0], "cuda", 0)
    torch.library.opcheck(getattr(torch.ops.tilearena, op).default, args)


def test_fullgraph_compile_with_default_backends() -> None:
    def block(x: torch.Tensor, w: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        h = tilearena.rmsnorm(x, w, 1e-6)
        return tilearena.softmax(tilearena.matmul(h, proj, transpose_b=True))

    x = torch.randn(64, 1024, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1024, device="cuda", dtype=torch.bfloat16)
    proj = torch.randn(512, 1024, device="cuda", dtype=torch.bfloat16) / 32
    compiled = torch.compile(block, fullgraph=True)
    torch.testing.assert_close(compiled(x, w, proj).float(), block(x, w, proj).float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("backend", ["triton", None])
def test_cuda_graph_capture(backend: str | None) -> None:
    x = torch.randn(256, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    expected = tilearena.rmsnorm(x, w, 1e-6, backend=backend)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        tilearena.rmsnorm(x, w, 1e-6, backend=backend)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        y = tilearena.rmsnorm(x, w, 1e-6, backend=backend)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(y, tilearena.rmsnorm(x, w, 1e-6, backend=backend))
    assert not torch.equal(y, expected)


def test_bad_device_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="expected all tensors on one device"):
        tilearena.rmsnorm(torch.randn(4, 8, device="cuda"), torch.randn(8))


#: Helion's split_stream with blocks of 4 rows: the bad rows sit inside a block one program walks.
HELION_STREAM = {"variant": "split_stream", "block_sizes": [8192, 4]}


@pytest.mark.parametrize(
    ("backend", "config"),
    [("triton", None), ("helion", None), ("helion", HELION_STREAM), ("cute", None), ("tilelang", None)],
    ids=["triton", "helion", "helion-stream", "cute", "tilelang"],
)
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_rows_finish_on_nan_and_inf(op: str, backend: str, config: dict | None) -> None:
    """Long rows are shared by programs that wait for each other's partials: a NaN or an inf in
    the input must propagate to its own row, never stall the waiters or leak into other rows
    (nor, where a program walks several rows, into the next row it loads)."""
    b = registry.backend(op, backend)
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    m, n = 6, 65536
    x = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
    x[1, 777] = float("nan")
    x[3, 40000] = float("inf")
    x[4, :] = float("nan")
    if op == "softmax":
        x[5, :40000] = -float("inf")  # masked scores: whole chunks of -inf must give 0, not NaN
    args = (x, torch.randn(n, device="cuda", dtype=torch.bfloat16), 1e-6) if op == "rmsnorm" else (x,)
    y = getattr(tilearena, op)(*args, backend=backend) if config is None else b.fn(*args, config=config)
    torch.cuda.synchronize()
    finite_rows = torch.isfinite(y.float()).all(dim=1).tolist()
    assert finite_rows[0] and finite_rows[2] and finite_rows[5]
    assert not finite_rows[1] and not finite_rows[4]
    ref = registry.spec(op).reference(*args)
    for row in (0, 2, 5):
        assert numerics.compare(y[row], ref[row], registry.spec(op).tolerance[torch.bfloat16]).ok


@pytest.mark.parametrize("n", [4096, 65536, 262144])
@pytest.mark.parametrize("backend", ["triton", "helion", "cute", "tilelang"])
def test_softmax_of_masked_scores(backend: str, n: int) -> None:
    """Rows whose leading columns are all -inf (masked attention scores) give exact zeros there
    and the softmax of the rest: every row kernel (one-pass, online, split, cluster) must
    exponentiate an all -inf chunk to 0, never to NaN."""
    b = registry.backend("softmax", backend)
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    x = torch.randn(4, n, device="cuda", dtype=torch.bfloat16)
    masked = n * 5 // 8
    x[:, :masked] = -float("inf")
    y = tilearena.softmax(x, backend=backend)
    torch.cuda.synchronize()
    assert torch.equal(y[:, :masked].float(), torch.zeros(4, masked, device="cuda"))
    reference = registry.spec("softmax").reference(x)
    assert numerics.compare(y, reference, registry.spec("softmax").tolerance[torch.bfloat16]).ok


@pytest.mark.parametrize(
    "shape",
    [
        {"M": 1, "N": 4096, "K": 4096, "BT": 1},
        {"M": 16, "N": 6144 + 64, "K": 4096 + 64, "BT": 1},  # ragged column and K tiles
        {"M": 13, "N": 1024, "K": 4096, "BT": 0},  # B as [K, N]: wgmma reads A transposed
        {"M": 40, "N": 2048, "K": 1024, "BT": 1},  # block_m 64 (A's rows padded to 64)
    ],
    ids=lambda s: "x".join(str(v) for v in s.values()),
)
def test_tilelang_swap_ab_matches_float64(shape: dict) -> None:
    """TileLang's decode kernel (C^T = B^T A^T, stored transposed) against float64."""
    b = registry.backend("matmul", "tilelang")
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    config = {"swap_ab": True, "num_stages": 5}
    result = numerics.check_backend("matmul", "tilelang", shape, torch.bfloat16, "cuda", 4, config=config)
    assert result.ok, result


@pytest.mark.parametrize(
    ("n", "cluster", "held", "m"),
    [
        (65536, 4, "registers", 37),
        (65536 + 40, 4, "registers", 37),
        (131072, 8, "registers", 37),
        (262144, 8, "registers", 37),
        (65536, 2, "shared", 37),
        # Many rows: clusters race through their exchanges while others still load.
        (65536, 4, "shared", 3000),
        (65536 + 40, 4, "shared", 37),  # ragged (80 bytes past 65536: still 16-byte aligned rows)
        (65536 + 64, 4, "shared", 37),  # the last CTA's slice lies wholly past N
        (131072, 8, "shared", 37),
        (262144, 8, "shared", 300),
        (262144, 4, "shared", 37),
        # The slice as one bulk copy (cp.async.bulk onto an mbarrier) instead of element-wise.
        (65536, 2, "bulk", 37),
        (65536, 4, "bulk", 3000),
        (65536 + 36, 4, "bulk", 37),  # rows not 16-byte aligned: the registers kernel instead
        (65536 + 40, 4, "bulk", 37),  # slices past N: the element-wise "shared" kernel instead
        (65536 + 64, 4, "bulk", 37),  # the last CTA's slice wholly past N: "shared" too
        (131072, 8, "bulk", 37),
        (262144, 8, "bulk", 300),
        (262144, 4, "bulk", 37),
        # 16 CTAs a row: a non-portable cluster size.
        (262144, 16, "bulk", 300),
        (262144, 16, "shared", 37),
        (262144 - 64, 16, "shared", 37),
    ],
    ids=str,
)
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_tilelang_cluster_rows_match_float64(op: str, n: int, cluster: int, held: str, m: int) -> None:
    """TileLang's cluster kernels (a row per cluster, partials through distributed shared memory,
    the slice held in registers or in shared memory): against float64 on a ragged N too, and,
    for softmax, with masked slices."""
    b = registry.backend(op, "tilelang")
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    config = {"cluster_size": cluster, "cluster_slice": held}
    if held in ("shared", "bulk"):
        config |= {"chunk": 4096, "chunk_threads": 256}
    shape = {"M": m, "N": n}
    result = numerics.check_backend(op, "tilelang", shape, torch.bfloat16, "cuda", seed=5, config=config)
    assert result.ok, result
    if op == "softmax":
        from tilearena.kernels.softmax.tilelang import softmax_tilelang

        x = torch.randn(3, n, device="cuda", dtype=torch.bfloat16)
        masked = n * 5 // 8  # whole slices of -inf, and one slice partly masked
        x[:, :masked] = -float("inf")
        y = softmax_tilelang(x, config=config)
        assert torch.equal(y[:, :masked].float(), torch.zeros(3, masked, device="cuda"))
        reference = registry.spec("softmax").reference(x)
        assert numerics.compare(y, reference, registry.spec("softmax").tolerance[torch.bfloat16]).ok


@pytest.mark.parametrize(
    ("n", "cluster", "held", "m", "chunking"),
    [
        # The shipped 262144-column kernel's shape, and one row.
        (262144, 8, "bulk", 300, (4096, 256)),
        (262144, 8, "bulk", 1, (4096, 256)),
        (65536, 4, "bulk", 3000, (4096, 256)),
        (65536, 4, "bulk", 37, (16384, 1024)),  # one chunk a slice: no pairs of chunks
        (131072, 8, "shared", 37, (4096, 256)),
        (65536 + 40, 4, "shared", 37, (4096, 256)),  # ragged: the padded slice past N masked
        (65536 + 64, 4, "shared", 1, (4096, 256)),  # the last CTA's slice wholly past N, one row
        (262144 - 64, 16, "shared", 37, (4096, 256)),
    ],
    ids=str,
)
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_tilelang_lean_cluster_rows_match_float64(
    op: str, n: int, cluster: int, held: str, m: int, chunking: tuple[int, int]
) -> None:
    """``cluster_walk`` "lean" (softmax: max and sum walks without a barrier; RMSNorm: the weight
    loaded a chunk ahead): against float64, for softmax with masked slices; RMSNorm's arithmetic
    is the plain kernel's, so its output is bitwise the plain kernel's."""
    b = registry.backend(op, "tilelang")
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    chunk, threads = chunking
    plain = {"cluster_size": cluster, "cluster_slice": held, "chunk": chunk, "chunk_threads": threads}
    config = {**plain, "cluster_walk": "lean"}
    shape = {"M": m, "N": n}
    seed = random.randrange(1 << 30)
    result = numerics.check_backend(op, "tilelang", shape, torch.bfloat16, "cuda", seed=seed, config=config)
    assert result.ok, (seed, result)
    spec = registry.spec(op)
    args = spec.make_inputs(shape, torch.bfloat16, "cuda", seed)
    if op == "rmsnorm":
        assert torch.equal(b.fn(*args, config=config), b.fn(*args, config=plain))
        # An fp32 weight (16-byte loads of 4 floats into the buffers).
        x, weight, eps = args
        y = b.fn(x, weight.float(), eps, config=config)
        assert numerics.compare(y, spec.reference(x, weight.float(), eps), spec.tolerance[torch.bfloat16]).ok
    else:
        from tilearena.kernels.softmax.tilelang import softmax_tilelang

        x = torch.randn(3, n, device="cuda", dtype=torch.bfloat16)
        masked = n * 5 // 8  # whole slices of -inf, and one slice partly masked
        x[:, :masked] = -float("inf")
        y = softmax_tilelang(x, config=config)
        assert torch.equal(y[:, :masked].float(), torch.zeros(3, masked, device="cuda"))
        assert numerics.compare(y, spec.reference(x), spec.tolerance[torch.bfloat16]).ok
        x[1] = -float("inf")  # a row of nothing but -inf: NaN, as torch gives
        assert torch.isnan(softmax_tilelang(x, config=config)[1]).all()


def _check_helion_split(b: registry.Backend, op: str, shape: dict, dtype: torch.dtype, config: dict) -> None:
    """A Helion split kernel at ``config``: float64 numerics with the output poisoned (fresh seed),
    bitwise the same on a second call (the partials are combined in a fixed order), and for
    softmax the masked-score cases."""
    seed = random.randrange(1 << 30)
    result = numerics.check_backend(op, "helion", shape, dtype, "cuda", seed=seed, config=config)
    assert result.ok, (seed, result)
    args = registry.spec(op).make_inputs(shape, dtype, "cuda", seed)
    assert torch.equal(b.fn(*args, config=config), b.fn(*args, config=config))
    if op == "softmax":
        _check_masked_softmax_parts(b, args[0], config, dtype)


def _check_masked_softmax_parts(
    b: registry.Backend, x: torch.Tensor, config: dict, dtype: torch.dtype
) -> None:
    """A split softmax over masked scores: whole parts of -inf and one part partly masked give
    exact zeros there and the reference elsewhere; a row of nothing but -inf gives NaN, as torch
    does (``split_keep`` wrote zeros there until an all -inf part's factor became 0 / row sum)."""
    spec = registry.spec("softmax")
    m, n = x.shape
    masked = n * 5 // 8
    x[:, :masked] = -float("inf")
    y = b.fn(x, config=config)
    assert torch.equal(y[:, :masked].float(), torch.zeros(m, masked, device="cuda"))
    assert numerics.compare(y, spec.reference(x), spec.tolerance[dtype]).ok
    x[-1] = -float("inf")
    y = b.fn(x, config=config)
    assert torch.isnan(y[-1].float()).all()
    if m > 1:
        assert numerics.compare(y[:-1], spec.reference(x)[:-1], spec.tolerance[dtype]).ok


@pytest.mark.parametrize(
    ("op", "variant"),
    [("rmsnorm", "split_narrow"), ("softmax", "split"), ("softmax", "split_keep")],
    ids=str,
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("shape", "block"),
    [
        ({"M": 1000, "N": 65536}, 4096),  # 16 parts per row
        ({"M": 37, "N": 65537}, 8192),  # ragged: 9 parts, the last one column wide
        ({"M": 256, "N": 262144}, 16384),
        ({"M": 300, "N": 262144}, 8192),  # 32 parts per row, the most
        ({"M": 33, "N": 262144 - 100}, 8192),  # 32 parts, the last one ragged
        ({"M": 1, "N": 131072}, 32768),
        ({"M": 5000, "N": 40000}, 4096),  # more rows than can be resident at once
    ],
    ids=lambda v: "x".join(map(str, v.values())) if isinstance(v, dict) else str(v),
)
def test_helion_split_rows_match_float64(
    op: str, variant: str, dtype: torch.dtype, shape: dict, block: int
) -> None:
    """Helion's split kernels (a row over several programs that wait for each other's partials):
    against float64 with the output poisoned, bitwise the same on a second call (the partials are
    combined in a fixed order), and for softmax with whole parts of -inf (``split_keep``: the
    softmax that keeps exp(x - chunk max), not yet timed)."""
    b = registry.backend(op, "helion")
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    config = {"variant": variant, "block_sizes": [block], "num_warps": max(4, min(16, block // 1024))}
    _check_helion_split(b, op, shape, dtype, config)


@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("shape", "block", "rows"),
    [
        ({"M": 1000, "N": 65536}, 4096, 8),  # 16 parts per row, 125 blocks of 8 rows
        ({"M": 37, "N": 65537}, 8192, 8),  # ragged: 9 parts, the last one column wide; a last block of 5
        ({"M": 300, "N": 262144}, 8192, 8),  # 32 parts per row, the most; a last block of 4
        ({"M": 33, "N": 262144 - 100}, 8192, 16),  # 32 parts, the last one ragged; a last block of 1
        ({"M": 1, "N": 131072}, 32768, 8),  # one row
        ({"M": 5000, "N": 40000}, 4096, 4),  # more row blocks than can be resident at once
        # The shipped part size over many row blocks, a last block of 7 (8191 and 4095 rows ran
        # out of GPU memory under -n 8 while the float64 references were built).
        ({"M": 2047, "N": 65536}, 8192, 8),
        ({"M": 1023, "N": 262144}, 8192, 8),  # likewise at 262144: 32 parts
        ({"M": 2000, "N": 65536}, 8192, 1),  # one row a program
    ],
    ids=lambda v: "x".join(map(str, v.values())) if isinstance(v, dict) else str(v),
)
def test_helion_split_stream_rows_match_float64(
    op: str, dtype: torch.dtype, shape: dict, block: int, rows: int
) -> None:
    """Helion's ``split_stream`` kernels (a program owns one part of a block of rows, walks them
    and loads the next row's chunk before waiting on the current row's exchange): against
    float64 with the output poisoned, bitwise the same on a second call, and for softmax with
    whole parts of -inf."""
    b = registry.backend(op, "helion")
    reason = b.unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    warps = max(4, min(16, block // 1024))
    config = {"variant": "split_stream", "block_sizes": [block, rows], "num_warps": warps}
    _check_helion_split(b, op, shape, dtype, config)


SPLIT_VARIANTS = [
    {"chunk": 4096, "num_warps": 8, "prefetch": 1},
    {"chunk": 8192, "num_warps": 8, "prefetch": 2},
    {"chunk": 4096, "num_warps": 8, "prefetch": 1, "reread": True, "programs_per_sm": 8},
    {"chunk": 8192, "num_warps": 4, "prefetch": 2, "reread": True},
    {"chunk": 8192, "num_warps": 8, "prefetch": 1, "keep_exp": True},  # softmax only; ignored by rmsnorm
    {"chunk": 4096, "num_warps": 4, "prefetch": 2, "keep_exp": True, "programs_per_sm": 8},
]


@pytest.mark.parametrize("config", SPLIT_VARIANTS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("op", ["rmsnorm", "softmax"])
def test_split_row_variants_match_float64(op: str, config: dict) -> None:
    """Every tuned variant of the cooperative kernel (prefetch depth, reread, cache hints, more
    programs per SM) against the float64 reference, with more rows than resident groups so each
    program goes round its pipeline many times; the output is poisoned with NaN first."""
    from tilearena.kernels.triton_rows import plan_rows

    shape = {"M": 1500, "N": 65536 + 40}  # a ragged last chunk
    for seed in (1, 2):  # the first call learns residency; the second runs the full grid
        result = numerics.check_backend(op, "triton", shape, torch.bfloat16, "cuda", seed=seed, config=config)
        assert result.ok, result
    plan = plan_rows(shape["M"], shape["N"], torch.device("cuda"), config, (op,))
    assert plan.kind == "split" and plan.reread == config.get("reread", False)


@pytest.mark.parametrize("path", ["pointer", "tma"])
@pytest.mark.parametrize(
    "shape",
    [
        {"M": 1, "N": 4096, "K": 4096, "BT": 1},
        {"M": 16, "N": 6144 + 8, "K": 4096 + 64, "BT": 1},  # ragged column and K tiles
        {"M": 40, "N": 1024, "K": 4096, "BT": 0},  # three row tiles; B as [K, N]
        {"M": 7, "N": 1000, "K": 72, "BT": 1},
    ],
    ids=lambda s: "x".join(str(v) for v in s.values()),
)
def test_triton_swap_ab_matches_float64(shape: dict, path: str) -> None:
    """The decode kernel (C^T = B^T A^T) on each operand path, including tails of every tile."""
    config = {"swap_ab": True, "BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "num_stages": 4, "path": path}
    result = numerics.check_backend("matmul", "triton", shape, torch.bfloat16, "cuda", seed=3, config=config)
    assert result.ok, result


@pytest.mark.timing
def test_timing_measures_gpu_time_not_launch_cost() -> None:
    """A call that spends 300 us of CPU before launching a ~5 us kernel must time as the kernel:
    the harness queues the samples behind a GPU spin, so Python's launch path is not measured."""
    import time

    from tilearena.bench.timing import time_cuda

    x = torch.zeros(1 << 20, device="cuda")

    def slow_launch() -> None:
        time.sleep(3e-4)
        x.add_(1.0)

    events = time_cuda(slow_launch, flush_l2=False)
    assert events.method == "cuda-events"
    assert events.median_ms < 0.1, events
    graph = time_cuda(slow_launch, graph_fns=[slow_launch], flush_l2=False)
    assert graph.method == "cuda-graph"
    assert graph.median_ms < 0.1, graph


@pytest.mark.timing
def test_steady_timing_samples_a_long_kernel_for_at_least_100_ms() -> None:
    """``measure(steady=True)``: a GEMM of ~1.5 ms gets >= 100 ms of samples (not 20), after the
    settling warm-up; a short kernel is still a graph replay, which steady leaves alone."""
    from tilearena.bench.timing import STEADY_SPAN_MS, measure

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    plain = measure(lambda: a @ a, "cuda", repeats=20)
    steady = measure(lambda: a @ a, "cuda", repeats=20, steady=True)
    assert plain.method == steady.method == "cuda-events"
    assert plain.samples == 20
    # Sized from a 3-run estimate of the time, which other processes on the GPU can inflate: under
    # pytest -n 8 at 697e436 a 1.87 ms median (IQR 0.44 ms) got 37 samples, sized from a ~2.7 ms
    # estimate.  Half the span still tells 100 ms of samples from plain's 20.
    assert steady.samples > plain.samples, steady
    assert steady.samples >= min(200, int(0.5 * STEADY_SPAN_MS / steady.median_ms)), steady
    small = torch.zeros(1 << 16, device="cuda")
    short = measure(lambda: small.add_(1.0), "cuda", graph_fns=[lambda: small.add_(1.0)], steady=True)
    assert short.method == "cuda-graph"


@pytest.mark.timing
def test_hot_start_and_long_windows_time_a_real_gemm() -> None:
    """``measure(steady=True, hot_start=True)`` queues its settling behind the spin and still
    samples >= 100 ms; ``span_ms=1000`` samples past steady's 200-sample cap; ``keep_series``
    returns every sample.  A short kernel stays a graph replay."""
    from tilearena.bench.timing import measure

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    hot = measure(lambda: a @ a, "cuda", repeats=20, steady=True, hot_start=True, keep_series=True)
    assert hot.method == "cuda-events" and hot.series_ms is not None and len(hot.series_ms) == hot.samples
    assert hot.samples >= min(200, int(0.5 * 100.0 / hot.median_ms)), hot
    assert min(hot.series_ms) > 0.5 * hot.median_ms  # no sample ran short (nothing left unqueued)
    long = measure(lambda: a @ a, "cuda", repeats=20, steady=True, span_ms=1000.0)
    assert long.samples > 200 and long.samples * long.median_ms >= 500.0, long
    small = torch.zeros(1 << 16, device="cuda")
    bump = [lambda: small.add_(1.0)]
    short = measure(bump[0], "cuda", graph_fns=bump, steady=True, hot_start=True)
    assert short.method == "cuda-graph"


@pytest.mark.timing
def test_sustained_timing_settles_a_graph_timed_gemm_and_spans_its_window() -> None:
    """``--timing sustained`` on a ~50 us GEMM pinned to graph replay over rotated copies: 200 ms
    of settling replays behind the spin, then samples spanning the mode's graph window, with no warning
    that the GPU waited for the CPU; the per-call time is the plain replay's within 25 % (the
    settled clock may be lower, launch gaps are amortised over more calls)."""
    import time
    import warnings

    from tilearena.autotune.store import measure_kwargs
    from tilearena.bench.timing import STEADY_SETTLE_MS, measure

    def gemm_inputs() -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randn(1024, 4096, device="cuda", dtype=torch.bfloat16)
        return a, torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)

    # Four copies of 40 MiB: together more than three times the H100's 50 MiB L2.
    fns = [lambda a=a, b=b: a @ b for a, b in (gemm_inputs() for _ in range(4))]
    plain = measure(fns[0], "cuda", graph_fns=fns, repeats=20, method="cuda-graph")
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sustained = measure_kwargs("sustained")
        hot = measure(fns[0], "cuda", graph_fns=fns, repeats=20, method="cuda-graph", **sustained)
    took_ms = (time.perf_counter() - began) * 1e3
    assert hot.method == plain.method == "cuda-graph" and hot.samples == 20
    # The samples span the mode's graph window (1 s since session 28), after the settling.
    assert took_ms >= 0.8 * (STEADY_SETTLE_MS + sustained["graph_span_ms"]), took_ms
    assert 0.75 * plain.median_ms <= hot.median_ms <= 1.25 * plain.median_ms, (hot, plain)


@pytest.mark.timing
def test_hot_start_settles_a_mid_sized_gemm_without_retries(monkeypatch) -> None:
    """A ~0.05 ms GEMM needs ~4000 settling runs, each after a read flush (hot timing's).  At
    524746d and cef31a3 the CPU blocked behind a full launch queue while queueing them, the timer
    took that for a GPU gone idle, and retried every measurement twice (16-30 s a store entry).
    The GPU itself says it never waited: one attempt each, a second only where the CPU really
    stalls, and a measurement takes about its settling and sampling time."""
    from tilearena.bench import timing

    attempts: list[int] = []
    event_samples = timing._event_samples

    def counted(*args, **kwargs):
        attempts.append(1)
        return event_samples(*args, **kwargs)

    monkeypatch.setattr(timing, "_event_samples", counted)
    a = torch.randn(1024, 4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    started = time.perf_counter()
    timings = [
        timing.measure(lambda: a @ b, "cuda", steady=True, hot_start=True, flush="read") for _ in range(3)
    ]
    seconds = time.perf_counter() - started
    assert sum(attempts) <= 4, (attempts, timings)
    assert seconds < 6.0, (seconds, timings)
    for timed in timings:
        assert timed.method == "cuda-events" and timed.samples >= 100
        assert timed.iqr_ms < 0.1 * timed.median_ms, timed


@pytest.mark.timing
def test_a_launch_bound_kernel_in_a_sustained_window_times_the_kernel_not_its_launches() -> None:
    """A 0.05 ms GEMM behind 0.15 ms of Python a call (a slow launcher's, like Triton's with TMA
    descriptors): past the spin the GPU would wait for every launch (at f4be60c such GEMMs read
    7-100 % slow with ``--timing sustained``).  The window is cut to what the spin covers, the
    GPU never waits, and the median is the bare GEMM's."""
    import warnings

    from tilearena.autotune.store import measure_kwargs
    from tilearena.bench import timing

    a = torch.randn(1024, 4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)

    def slow_launch() -> torch.Tensor:
        until = time.perf_counter() + 1.5e-4
        while time.perf_counter() < until:
            pass
        return a @ b

    sustained = measure_kwargs("sustained")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a GPU that waited in every attempt
        slow = timing.measure(slow_launch, "cuda", **sustained)
        bare = timing.measure(lambda: a @ b, "cuda", **sustained)
    assert slow.samples == timing.SPIN_COVERS_SAMPLES, slow
    assert bare.samples > timing.SPIN_COVERS_SAMPLES, bare  # the bare GEMM keeps its long window
    assert abs(slow.median_ms / bare.median_ms - 1.0) < 0.05, (slow, bare)


@pytest.mark.timing
def test_timing_records_the_sm_clock_the_samples_ran_at() -> None:
    """Both timing paths read NVML while their samples run: a GEMM's SM clock is a real clock
    (the H100's boost is 1980 MHz), read several times over >= 100 ms of steady samples."""
    from tilearena.bench.timing import measure

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    long = measure(lambda: a @ a, "cuda", repeats=20, steady=True)
    small = torch.zeros(1 << 16, device="cuda")
    short = measure(lambda: small.add_(1.0), "cuda", graph_fns=[lambda: small.add_(1.0)])
    assert long.method == "cuda-events" and short.method == "cuda-graph"
    for timing in (long, short):
        state = timing.gpu_state
        assert state is not None, timing
        assert 200.0 <= state["sm_clock_mhz"] <= 3000.0, state
        low, high = state["sm_clock_range_mhz"]
        assert low <= state["sm_clock_mhz"] <= high and state["readings"] >= 1
        assert state["power_w"] is None or 10.0 < state["power_w"] < 2000.0
    assert long.gpu_state["readings"] >= 10, long.gpu_state  # 5 ms apart over >= 100 ms


def test_retime_rechecks_and_retimes_baked_winners_on_this_gpu(tmp_path) -> None:
    """``tilearena tune --effort retime``: every baked entry asked for is checked and re-timed
    here (steady), keeps its config and search record, and says when and how it was timed."""
    import json
    import subprocess
    import sys

    from tilearena.autotune import store

    path = tmp_path / "store.json"
    shapes = "M=4096,N=4096;M=8192,N=8192"
    tune = [sys.executable, "-m", "tilearena.cli", "tune", "--op", "rmsnorm", "--backend", "triton",
            "--store", str(path), "--out", str(tmp_path / "out")]
    subprocess.run([*tune, "--shapes", shapes, "--effort", "none", "--bake"], check=True, timeout=600)
    before = {json.dumps(e["shape"]): e for e in store.read_file(str(path))["entries"]}
    assert len(before) == 2
    subprocess.run([*tune, "--effort", "retime", "--timing", "steady", "--compile-workers", "2", "--bake"],
                   check=True, timeout=600)
    after = {json.dumps(e["shape"]): e for e in store.read_file(str(path))["entries"]}
    assert after.keys() == before.keys()
    for key, entry in after.items():
        assert entry["config"] == before[key]["config"] and entry["timing"] == "steady"
        assert entry["tuned_at"] == before[key]["tuned_at"] and "retimed_at" in entry
        # Same kernel, same GPU, minutes apart: a memory-bound kernel's time moves little.
        assert 0.8 < entry["time_ms"] / before[key]["time_ms"] < 1.25, (entry, before[key])


def test_a_read_flush_empties_the_l2_like_a_write_flush() -> None:
    """``measure(flush="read")`` (the clean-flush experiment) must evict the L2 as the write flush
    does: a reduction over 16 MB (it fits the H100's 50 MB L2) then reads from DRAM, so it cannot
    beat the datasheet's DRAM bandwidth; a read flush leaves its buffer as it was."""
    from tilearena.bench.timing import L2Flusher, measure

    x = torch.randn(4 << 20, device="cuda")
    sink = torch.empty((), device="cuda")
    dram_floor_ms = x.numel() * 4 / 3.35e12 * 1e3

    def reduce() -> None:
        torch.sum(x, dim=0, out=sink)

    for flush in ("write", "read"):
        timing = measure(reduce, "cuda", repeats=30, flush=flush)
        assert timing.method == "cuda-events"
        assert timing.median_ms > 0.9 * dram_floor_ms, (flush, timing, dram_floor_ms)
    flusher = L2Flusher("cuda", "read")
    flusher()
    torch.cuda.synchronize()
    assert int(flusher.sink) == 0 and not flusher.buffer.any()
