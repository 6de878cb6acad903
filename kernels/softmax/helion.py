"""Softmax forward in Helion: two kernels, chosen by row length.

``_softmax_rows`` (N <= 32768): a program holds its rows in registers; max, exp, sum and scale
in one pass over x.  ``_softmax_online`` (longer rows): the two-pass online softmax, a running
(max, sum of exp) per row updated chunk by chunk, then a second pass writes exp(x - max) * (1 / sum);
x is read twice.  (Helion's ``reduction_loops`` could roll ``_softmax_rows`` over chunks too,
but its max and sum are then separate loops: x would be read three times.)  The config key
``"variant"`` ("rows" or "online") overrides the choice; the rest are Helion config keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import helion
import helion.language as hl
import torch

from ..helion_configs import (
    MAX_ROW_IN_REGISTERS,
    HelionConfigSpace,
    helion_kernel,
    interpreting,
    merge_config,
    next_power_of_2,
    rowwise_config,
    run_kernel,
    softmax_online_config,
)
from ..registry import Backend

VARIANTS = ("rows", "online")


def _softmax_rows(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    for tile_m in hl.tile(m):
        rows = x[tile_m, :].to(torch.float32)
        row_max = torch.amax(rows, dim=-1, keepdim=True)
        e = torch.exp(rows - row_max)
        # One division per row, then a multiply per element.
        out[tile_m, :] = (e * (1.0 / torch.sum(e, dim=-1, keepdim=True))).to(out.dtype)
    return out


def _softmax_online(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    n = hl.specialize(n)
    block_m = hl.register_block_size(m)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m, block_size=block_m):
        run_max = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        run_sum = hl.zeros([tile_m], dtype=torch.float32)
        for tile_n in hl.tile(n, block_size=block_n):
            chunk = x[tile_m, tile_n].to(torch.float32)
            new_max = torch.maximum(run_max, torch.amax(chunk, dim=-1))
            # While every column so far is -inf (masked scores) the max is -inf: exponentiate
            # against 0 instead, so those columns add 0 rather than NaN.
            safe_max = torch.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * torch.exp(run_max - safe_max) + torch.sum(
                torch.exp(chunk - safe_max[:, None]), dim=-1
            )
            run_max = new_max
        inv_sum = 1.0 / run_sum  # one division per row, then a multiply per element
        for tile_n in hl.tile(n, block_size=block_n):
            chunk = x[tile_m, tile_n].to(torch.float32)
            out[tile_m, tile_n] = (torch.exp(chunk - run_max[:, None]) * inv_sum[:, None]).to(out.dtype)
    return out


def shipped_variant(n: int) -> str:
    return "rows" if next_power_of_2(n) <= MAX_ROW_IN_REGISTERS else "online"


def _plan(n: int, config: Mapping[str, Any] | helion.Config | None) -> tuple[Any, dict[str, Any]]:
    """(kernel function, full Helion config) for rows of ``n`` columns."""
    if isinstance(config, helion.Config):
        config = dict(config.config)
    variant = (config or {}).get("variant", shipped_variant(n))
    if variant not in VARIANTS:
        raise ValueError(f"config: 'variant' must be one of {VARIANTS}, got {variant!r}")
    overrides = {k: v for k, v in (config or {}).items() if k != "variant"}
    if variant == "rows":
        return _softmax_rows, merge_config(rowwise_config(n), overrides)
    return _softmax_online, merge_config(softmax_online_config(n), overrides)


def _kernel(n: int, config: Mapping[str, Any] | helion.Config | None) -> helion.Kernel:
    fn, full_config = _plan(n, config)
    return helion_kernel(fn, full_config, static_shapes=False)


@lru_cache(maxsize=1024)
def _shipped_kernel(n: int, interpret: bool) -> helion.Kernel:
    # One look-up per call on the default path (``interpret`` only keys the cache).
    return _kernel(n, None)


def shipped_config(x: torch.Tensor) -> dict[str, Any]:
    """The config (with its ``variant``) a call on ``x`` uses when none is given."""
    n = x.shape[-1]
    return {"variant": shipped_variant(n), **_plan(n, None)[1]}


def softmax_helion(
    x: torch.Tensor, out: torch.Tensor | None = None, config: Mapping[str, Any] | helion.Config | None = None
) -> torch.Tensor:
    n = x.shape[-1]
    y = torch.empty_like(x) if out is None else out
    x2, y2 = x.view(-1, n), y.view(-1, n)
    if x2.shape[0] == 0:
        return y
    run_kernel(_shipped_kernel(n, interpreting()) if config is None else _kernel(n, config), x2, y2)
    return y


def kernel_call(
    x: torch.Tensor, out: torch.Tensor | None = None, variant: str | None = None
) -> tuple[Any, tuple, bool, dict[str, Any]]:
    """(kernel function, its arguments, static_shapes, extra Settings) for these op arguments
    and kernel ``variant`` (default: the one x's N selects); see ``helion_configs``."""
    n = x.shape[-1]
    fn, _ = _plan(n, None if variant is None else {"variant": variant})
    y = torch.empty_like(x) if out is None else out
    return fn, (x.view(-1, n), y.view(-1, n)), False, {}


def meta_args(shape: Mapping[str, int], dtype: torch.dtype) -> tuple[Any, ...]:
    """Op arguments of this shape on the meta device (for the config space; no memory)."""
    return (torch.empty(shape["M"], shape["N"], dtype=dtype, device="meta"),)


BACKENDS = [
    Backend(
        "softmax",
        "helion",
        "helion",
        softmax_helion,
        requires=("helion",),
        devices=("cuda",),
        config_space=HelionConfigSpace("softmax"),
    ),
]
