"""RMSNorm forward in Helion.

One ``hl.tile(m)`` loop over blocks of rows; each program reduces its rows over all N columns.
Whether a row sits in registers (x read once) or is walked in chunks (x read twice) is Helion's
``reduction_loops`` config, chosen per shape class in ``kernels/helion_configs.py``.  N is
specialised (a compile-time constant: no masks when N is a multiple of the chunk), M is not
(one compiled kernel serves every token count).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import helion
import helion.language as hl
import torch

from ..helion_configs import helion_config_space, helion_kernel, merge_config, rowwise_config, run_kernel
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
    kernel = helion_kernel(_rmsnorm_rows, merge_config(shipped_config(x), config), static_shapes=False)
    run_kernel(kernel, x2, weight, float(eps), y2)
    return y


def rmsnorm_config_space(x: torch.Tensor, weight: torch.Tensor, eps: float) -> Any:
    """Helion's ConfigSpec for RMSNorm on these arguments (see ``helion_configs``)."""
    n = x.shape[-1]
    x2 = x.view(-1, n)
    return helion_config_space(_rmsnorm_rows, (x2, weight, float(eps), torch.empty_like(x2)),
                               static_shapes=False)


BACKENDS = [
    Backend("rmsnorm", "helion", "helion", rmsnorm_helion, requires=("helion",), devices=("cuda",),
            config_space=rmsnorm_config_space),
]
