"""Matmul in Helion: C[M, N] = A[M, K] @ B, B as [K, N] or (``transpose_b``) [N, K].

``hl.tile([m, n])`` gives each program a [BLOCK_M, BLOCK_N] tile of C; an ``hl.tile(k)`` loop
accumulates ``torch.addmm`` (a ``tl.dot``) into a float32 accumulator, cast to A's dtype on the
store.  The transposed layout has its own kernel that loads [BLOCK_N, BLOCK_K] tiles of B and
transposes them in registers, so B keeps a unit last stride and tensor descriptors (TMA) apply
to both layouts.  Shapes are static (one compile per (M, N, K)): the tile edges then need no
run-time masks where the sizes divide, which is the common case for LLM shapes.  fp32 inputs
(accepted for tests) are multiplied in IEEE fp32, not TF32, as the spec requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import helion
import helion.language as hl
import torch

from ..helion_configs import helion_config_space, helion_kernel, matmul_config, merge_config, run_kernel
from ..registry import Backend


def _matmul_kn(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, k = a.size()
    n = b.size(1)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, a[tile_m, tile_k], b[tile_k, tile_n])
        out[tile_m, tile_n] = acc.to(out.dtype)
    return out


def _matmul_nk(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, k = a.size()
    n = b.size(0)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, a[tile_m, tile_k], b[tile_n, tile_k].T)
        out[tile_m, tile_n] = acc.to(out.dtype)
    return out


def _settings(dtype: torch.dtype) -> dict[str, Any]:
    # Helion's default dot precision is TF32; the spec checks fp32 at 1e-4, which TF32 misses.
    return {"dot_precision": "ieee"} if dtype == torch.float32 else {}


def shipped_config(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> dict[str, Any]:
    """The config a call on these arguments uses when none is given."""
    m, k = a.shape
    n = b.shape[0] if transpose_b else b.shape[1]
    return matmul_config(m, n, k)


def matmul_helion(
    a: torch.Tensor,
    b: torch.Tensor,
    transpose_b: bool = False,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | helion.Config | None = None,
) -> torch.Tensor:
    m = a.shape[0]
    n = b.shape[0] if transpose_b else b.shape[1]
    c = torch.empty(m, n, dtype=a.dtype, device=a.device) if out is None else out
    if m == 0 or n == 0:
        return c
    fn = _matmul_nk if transpose_b else _matmul_kn
    kernel = helion_kernel(fn, merge_config(shipped_config(a, b, transpose_b), config), static_shapes=True,
                           **_settings(a.dtype))
    run_kernel(kernel, a, b, c)
    return c


def matmul_config_space(a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False) -> Any:
    """Helion's ConfigSpec for the matmul kernel of this B layout on these arguments."""
    n = b.shape[0] if transpose_b else b.shape[1]
    c = torch.empty(a.shape[0], n, dtype=a.dtype, device=a.device)
    return helion_config_space(_matmul_nk if transpose_b else _matmul_kn, (a, b, c), static_shapes=True,
                               **_settings(a.dtype))


BACKENDS = [
    Backend("matmul", "helion", "helion", matmul_helion, requires=("helion",), devices=("cuda",),
            config_space=matmul_config_space),
]
