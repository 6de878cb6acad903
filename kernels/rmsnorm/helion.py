"""RMSNorm forward in Helion.

One ``hl.tile(m)`` loop over blocks of rows; each program reduces its rows over all N columns.
Whether a row sits in registers (x read once) or is walked in chunks (x read twice) is Helion's
``reduction_loops`` config, chosen per shape class in ``kernels/helion_configs.py``.  N is
specialised (a compile-time constant: no masks when N is a multiple of the chunk), M is not
(one compiled kernel serves every token count).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import helion
import helion.language as hl
import torch

from ..helion_configs import (
    HelionConfigSpace,
    helion_kernel,
    interpreting,
    merge_config,
    rowwise_config,
    run_kernel,
)
from ..registry import Backend


def _rmsnorm_rows(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    for tile_m in hl.tile(m):
        # fp32 straight after the load: the accumulation and the scaling are in fp32.
        rows = x[tile_m, :].to(torch.float32)
        rstd = torch.rsqrt(torch.sum(rows * rows, dim=-1) / n + eps)
        scaled = rows * rstd[:, None] * weight[None, :].to(torch.float32)
        out[tile_m, :] = scaled.to(out.dtype)
    return out


def shipped_config(x: torch.Tensor) -> dict[str, Any]:
    """The config a call on ``x`` uses when none is given."""
    return rowwise_config(x.shape[-1])


@lru_cache(maxsize=1024)
def _shipped_kernel(n: int, interpret: bool) -> helion.Kernel:
    # One look-up per call on the default path (``interpret`` only keys the cache).
    return helion_kernel(_rmsnorm_rows, rowwise_config(n), static_shapes=False)


def rmsnorm_helion(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | helion.Config | None = None,
) -> torch.Tensor:
    n = x.shape[-1]
    y = torch.empty_like(x) if out is None else out
    x2, y2 = x.view(-1, n), y.view(-1, n)
    if x2.shape[0] == 0:
        return y
    if config is None:
        kernel = _shipped_kernel(n, interpreting())
    else:
        kernel = helion_kernel(_rmsnorm_rows, merge_config(shipped_config(x), config), static_shapes=False)
    run_kernel(kernel, x2, weight, float(eps), y2)
    return y


def kernel_call(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None
) -> tuple[Any, tuple, bool, dict[str, Any]]:
    """(kernel function, its arguments, static_shapes, extra Settings) for these op arguments:
    what ``helion_configs`` binds to get Helion's ConfigSpec or to run Helion's autotuner."""
    n = x.shape[-1]
    y = torch.empty_like(x) if out is None else out
    return _rmsnorm_rows, (x.view(-1, n), weight, float(eps), y.view(-1, n)), False, {}


def meta_args(shape: Mapping[str, int], dtype: torch.dtype) -> tuple[Any, ...]:
    """Op arguments of this shape on the meta device (for the config space; no memory)."""
    x = torch.empty(shape["M"], shape["N"], dtype=dtype, device="meta")
    return x, torch.empty(shape["N"], dtype=dtype, device="meta"), 1e-6


BACKENDS = [
    Backend(
        "rmsnorm",
        "helion",
        "helion",
        rmsnorm_helion,
        requires=("helion",),
        devices=("cuda",),
        config_space=HelionConfigSpace("rmsnorm"),
    ),
]
