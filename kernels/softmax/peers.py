"""Softmax from the peer libraries: quack (CuTe DSL) and Liger (Triton)."""

from __future__ import annotations

import torch

from ..common import into
from ..registry import Backend
from ..rmsnorm.peers import quack_supports


def softmax_quack(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    from quack.softmax import _softmax_fwd  # the forward alone, without autograd bookkeeping

    x2 = x.view(-1, x.shape[-1])
    y = torch.empty_like(x2) if out is None else out.view(-1, x.shape[-1])
    _softmax_fwd(x2, y)
    return y.view(x.shape)


def softmax_liger(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    from liger_kernel.ops.softmax import _softmax_forward

    return into(out, _softmax_forward(x)[0])


def _liger_supports(x: torch.Tensor) -> str | None:
    if x.shape[-1] > 65536:
        return "liger's softmax launches one block per row and refuses N > 65536"
    return None


BACKENDS = [
    Backend(
        "softmax",
        "quack",
        "quack",
        softmax_quack,
        requires=("quack",),
        min_cc=(9, 0),
        supports=quack_supports,
    ),
    Backend(
        "softmax",
        "liger",
        "liger",
        softmax_liger,
        requires=("liger_kernel",),
        writes_out=False,
        supports=_liger_supports,
    ),
]
