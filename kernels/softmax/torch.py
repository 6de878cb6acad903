"""Softmax baselines a user would otherwise pick: eager PyTorch and torch.compile."""

from __future__ import annotations

import torch

from ..common import into
from ..registry import Backend


def _softmax_fp32(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.float(), dim=-1).to(x.dtype)


def softmax_eager(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    # torch.softmax on half types accumulates in float32 internally.
    return into(out, torch.softmax(x, dim=-1))


_compiled = torch.compile(_softmax_fp32, dynamic=False)


def softmax_compile(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return into(out, _compiled(x))


BACKENDS = [
    Backend("softmax", "eager", "torch", softmax_eager, devices=("cuda", "cpu"), writes_out=False),
    Backend("softmax", "compile", "torch", softmax_compile, devices=("cuda", "cpu"), writes_out=False),
]
