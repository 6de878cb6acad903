"""Softmax forward over the last dimension, accumulated in float32, output in x's dtype."""

from __future__ import annotations

import torch

from ..checks import FLOAT_DTYPES, check_tensor
from ..registry import Cost, OpSpec
from ..shapes import ROWWISE_SHAPES


def validate(x: torch.Tensor) -> dict[str, int]:
    check_tensor("x", x, min_ndim=1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("x: expected a non-empty last dimension (N >= 1)")
    return {"M": x.numel() // n, "N": n}


def make_inputs(shape: dict[str, int], dtype: torch.dtype, device: str, seed: int) -> tuple:
    gen = torch.Generator(device=device).manual_seed(seed)
    # Scaled so exp() spans several orders of magnitude: an unstabilised softmax overflows.
    x = 4.0 * torch.randn(shape["M"], shape["N"], generator=gen, device=device, dtype=torch.float32)
    return (x.to(dtype),)


def reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.double(), dim=-1)


def cost(shape: dict[str, int], dtype: torch.dtype) -> Cost:
    m, n = shape["M"], shape["N"]
    item = torch.tensor([], dtype=dtype).element_size()
    # max, subtract, exp, sum, scale.
    return Cost(bytes=2 * m * n * item, flops=5 * m * n)


def empty_output(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


SPEC = OpSpec(
    name="softmax",
    schema="(Tensor x, str? backend=None) -> Tensor",
    arg_names=("x",),
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
