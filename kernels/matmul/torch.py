"""Matmul baselines: cuBLAS through torch (what a user gets by default) and torch.compile.

``cublas`` and ``eager`` run the same call; ``eager`` exists so every op has an eager row, and
``cublas`` names the vendor library that Triton/CuTe/TileLang kernels must beat.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ..common import into
from ..registry import Backend


def _matmul(a: torch.Tensor, b: torch.Tensor, transpose_b: bool) -> torch.Tensor:
    # b.t() is a view: cuBLAS reads the [N, K] weight transposed in place, with no copy.
    return torch.mm(a, b.t() if transpose_b else b)


def matmul_cublas(
    a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    if out is not None and a.device.type == "cuda":
        # cuBLAS writes straight into out; no copy, so the timed call is the library call.
        return torch.mm(a, b.t() if transpose_b else b, out=out)
    return into(out, _matmul(a, b, transpose_b))


def matmul_eager(
    a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    return into(out, _matmul(a, b, transpose_b))


@functools.cache
def _compiled() -> Callable[..., torch.Tensor]:
    # Built on first use: torch.compile imports dynamo, which costs seconds at module import.
    # Shapes are fixed per benchmark row, so dynamic=False lets max-autotune pick per shape;
    # no CUDA graphs, so its timing is comparable with the other backends' launches.
    return torch.compile(_matmul, mode="max-autotune-no-cudagraphs", dynamic=False)


def matmul_compile(
    a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    return into(out, _compiled()(a, b, transpose_b))


BACKENDS = [
    Backend("matmul", "cublas", "cublas", matmul_cublas, devices=("cuda", "cpu")),
    Backend("matmul", "eager", "torch", matmul_eager, devices=("cuda", "cpu"), writes_out=False),
    Backend("matmul", "compile", "torch", matmul_compile, devices=("cuda", "cpu"), writes_out=False),
]
