"""RMSNorm forward: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.

Accumulation is in float32 whatever the input dtype; the output has x's dtype.
"""

from __future__ import annotations

import torch

from ..checks import FLOAT_DTYPES, check_finite_scalar, check_same_device, check_tensor
from ..registry import Cost, OpSpec
from ..shapes import ROWWISE_SHAPES


def validate(x: torch.Tensor, weight: torch.Tensor, eps: float) -> dict[str, int]:
    check_tensor("x", x, min_ndim=1)
    check_tensor("weight", weight, ndim=1)
    check_finite_scalar("eps", eps, minimum=0.0)
    check_same_device(x=x, weight=weight)
    n = x.shape[-1]
    if weight.shape[0] != n:
        raise ValueError(
            f"weight: expected shape ({n},) to match x's last dimension, got {tuple(weight.shape)}"
        )
    if weight.dtype not in (x.dtype, torch.float32):
        raise TypeError(f"weight: expected dtype {x.dtype} (x's) or float32, got {weight.dtype}")
    if n == 0:
        raise ValueError("x: expected a non-empty last dimension (N >= 1)")
    return {"M": x.numel() // n, "N": n}


def make_inputs(shape: dict[str, int], dtype: torch.dtype, device: str, seed: int) -> tuple:
    gen = torch.Generator(device=device).manual_seed(seed)
    m, n = shape["M"], shape["N"]
    x = torch.randn(m, n, generator=gen, device=device, dtype=torch.float32).to(dtype)
    # A weight near 1 but not 1, so a kernel that ignores it fails.
    weight = (1.0 + 0.5 * torch.randn(n, generator=gen, device=device, dtype=torch.float32)).to(dtype)
    return x, weight, 1e-6


def reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x64 = x.double()
    rstd = torch.rsqrt(x64.square().mean(dim=-1, keepdim=True) + eps)
    return x64 * rstd * weight.double()


def cost(shape: dict[str, int], dtype: torch.dtype) -> Cost:
    m, n = shape["M"], shape["N"]
    item = torch.tensor([], dtype=dtype).element_size()
    # x read once, weight read once, y written once; square, add, scale by rstd, scale by weight.
    return Cost(bytes=2 * m * n * item + n * item, flops=4 * m * n)


def empty_output(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.empty_like(x)


SPEC = OpSpec(
    name="rmsnorm",
    schema="(Tensor x, Tensor weight, float eps, str? backend=None) -> Tensor",
    arg_names=("x", "weight", "eps"),
    shapes=ROWWISE_SHAPES,
    dtypes=FLOAT_DTYPES,
    make_inputs=make_inputs,
    reference=reference,
    cost=cost,
    validate=validate,
    empty_output=empty_output,
    tolerance={torch.bfloat16: 8e-3, torch.float16: 1e-3, torch.float32: 1e-5},
    bound="memory",
    preference=("cute", "triton", "quack", "tilelang", "helion", "liger", "eager"),
    backend_modules={
        "eager": ("torch", "torch"),
        "compile": ("torch", "torch"),
        "triton": ("triton", "triton"),
        "helion": ("helion", "helion"),
        "cute": ("cute", "cute"),
        "tilelang": ("tilelang", "tilelang"),
        "quack": ("peers", "quack"),
        "liger": ("peers", "liger"),
    },
)
