"""Matrix multiply: C[M, N] = A[M, K] @ B.

B is [K, N] by default, or [N, K] when ``transpose_b=True`` (the ``nn.Linear`` weight layout,
so ``C = A @ W.T``).  Inputs are bf16 or fp16 (fp32 is accepted too, for correctness tests,
and must be computed without TF32); accumulation is in float32; C has A's dtype.

Shape dicts are int-only: ``{"M", "N", "K", "BT"}`` where ``BT`` is 1 for the transposed
(nn.Linear) layout of B and 0 otherwise, so a layout can be part of a shape-set entry.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_same_device, check_tensor
from ..registry import Cost, OpSpec

#: Input dtypes of the op.  float32 is accepted by ``validate`` (and has a tolerance) so the
#: Triton interpreter can be tested in full precision, but it is not benchmarked.
MATMUL_DTYPES = (torch.bfloat16, torch.float16)
ACCEPTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def b_dims(b: torch.Tensor, transpose_b: bool) -> tuple[int, int]:
    """(K, N) of B in either layout."""
    return (b.shape[1], b.shape[0]) if transpose_b else (b.shape[0], b.shape[1])


def validate(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> dict[str, int]:
    check_tensor("a", a, dtypes=ACCEPTED_DTYPES, ndim=2)
    check_tensor("b", b, dtypes=ACCEPTED_DTYPES, ndim=2)
    if not isinstance(transpose_b, bool):
        raise TypeError(f"transpose_b: expected a bool, got {type(transpose_b).__name__}")
    check_same_device(a=a, b=b)
    if b.dtype != a.dtype:
        raise TypeError(f"b: expected dtype {a.dtype} (a's), got {b.dtype}")
    m, k = a.shape
    b_k, n = b_dims(b, transpose_b)
    if k == 0:
        raise ValueError(f"a: expected K >= 1 (a non-empty second dimension), got shape {tuple(a.shape)}")
    if b_k != k:
        layout = "[N, K] (transpose_b=True)" if transpose_b else "[K, N]"
        raise ValueError(
            f"b: expected layout {layout} with K={k} to match a {tuple(a.shape)}, got shape {tuple(b.shape)}"
        )
    return {"M": m, "N": n, "K": k, "BT": int(transpose_b)}


def make_inputs(shape: dict[str, int], dtype: torch.dtype, device: str, seed: int) -> tuple:
    gen = torch.Generator(device=device).manual_seed(seed)
    m, n, k = shape["M"], shape["N"], shape["K"]
    transpose_b = bool(shape.get("BT", 0))
    a = torch.randn(m, k, generator=gen, device=device, dtype=torch.float32).to(dtype)
    # Unit-variance A times B of variance 1/K gives outputs of variance ~1 for any K, so the
    # relative tolerance means the same thing at K=16 and K=28672 and nothing overflows fp16.
    b_shape = (n, k) if transpose_b else (k, n)
    b = (torch.randn(*b_shape, generator=gen, device=device, dtype=torch.float32) / math.sqrt(k)).to(dtype)
    return a, b, transpose_b


def reference(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> torch.Tensor:
    b64 = b.double()
    return a.double() @ (b64.t() if transpose_b else b64)


def cost(shape: dict[str, int], dtype: torch.dtype) -> Cost:
    m, n, k = shape["M"], shape["N"], shape["K"]
    item = torch.tensor([], dtype=dtype).element_size()
    # A and B read once, C written once; one multiply and one add per (m, n, k).
    return Cost(bytes=(m * k + k * n + m * n) * item, flops=2 * m * n * k)


def empty_output(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> torch.Tensor:
    _, n = b_dims(b, transpose_b)
    return torch.empty(a.shape[0], n, dtype=a.dtype, device=a.device)


def _shape(m: int, n: int, k: int, bt: int) -> dict[str, int]:
    return {"M": m, "N": n, "K": k, "BT": bt}


# Tiny shapes the Triton interpreter runs in seconds; ragged M, N and K on purpose (K=65 and
# K=40 leave a K tail in any power-of-two BLOCK_K; M=1 is the decode extreme).
MATMUL_QUICK = tuple(
    _shape(m, n, k, bt)
    for (m, n, k) in ((1, 8, 16), (17, 33, 65), (64, 64, 64), (5, 128, 40))
    for bt in (0, 1)
)

# Square compute-bound shapes (even 1024 is ~2 GFLOP), and one in nn.Linear layout.
MATMUL_SWEEP = (
    *(_shape(s, s, s, 0) for s in (1024, 2048, 4096, 8192)),
    _shape(4096, 4096, 4096, 1),
)

#: (N, K) of the four projections of a Llama-3 layer: fused qkv, o, fused gate_up, down.
LLAMA3_8B_PROJECTIONS = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
LLAMA3_70B_PROJECTIONS = ((10240, 8192), (8192, 8192), (57344, 8192), (8192, 28672))
LLAMA_TOKENS = (1, 16, 128, 1024, 4096, 16384)

# Token counts from decode (M=1, memory-bound on the weight) to long prefill, against the
# weights as nn.Linear stores them (BT=1).
MATMUL_LLAMA = tuple(
    _shape(m, n, k, 1) for (n, k) in (*LLAMA3_8B_PROJECTIONS, *LLAMA3_70B_PROJECTIONS) for m in LLAMA_TOKENS
)

# What fits the device budget: decode, a mid batch and prefill against the 8B projections.
MATMUL_LLAMA_SMALL = tuple(_shape(m, n, k, 1) for (n, k) in LLAMA3_8B_PROJECTIONS for m in (1, 128, 4096))

SPEC = OpSpec(
    name="matmul",
    schema="(Tensor a, Tensor b, bool transpose_b=False, str? backend=None) -> Tensor",
    arg_names=("a", "b", "transpose_b"),
    shapes={
        "quick": MATMUL_QUICK,
        "sweep": MATMUL_SWEEP,
        "llama": MATMUL_LLAMA,
        "llama_small": MATMUL_LLAMA_SMALL,
    },
    dtypes=MATMUL_DTYPES,
    make_inputs=make_inputs,
    reference=reference,
    cost=cost,
    validate=validate,
    empty_output=empty_output,
    # fp32 must be accumulated without TF32 (whose 10-bit mantissa gives ~1e-3).
    tolerance={torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-4},
    bound="compute",
    flags=("BT",),
    preference=("cublas", "triton", "cute", "tilelang", "helion", "eager"),
    backend_modules={
        "eager": ("torch", "torch"),
        "cublas": ("torch", "cublas"),
        "compile": ("torch", "torch"),
        "triton": ("triton", "triton"),
        "helion": ("helion", "helion"),
        "cute": ("cute", "cute"),
        "tilelang": ("tilelang", "tilelang"),
    },
)
