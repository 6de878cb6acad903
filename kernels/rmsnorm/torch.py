"""RMSNorm baselines a user would otherwise pick: eager PyTorch and torch.compile."""

from __future__ import annotations

import torch

from ..common import into
from ..registry import Backend


def _rmsnorm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    rstd = torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + eps)
    return (x32 * rstd * weight.float()).to(x.dtype)


def rmsnorm_eager(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None):
    # torch's fused rms_norm accumulates in float32 for low-precision inputs.
    y = torch.nn.functional.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)
    return into(out, y)


_compiled = torch.compile(_rmsnorm_fp32, dynamic=False)


def rmsnorm_compile(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None):
    return into(out, _compiled(x, weight, eps))


BACKENDS = [
    Backend("rmsnorm", "eager", "torch", rmsnorm_eager, devices=("cuda", "cpu"), writes_out=False),
    Backend("rmsnorm", "compile", "torch", rmsnorm_compile, devices=("cuda", "cpu"), writes_out=False),
]
