"""RMSNorm from the peer libraries: quack (CuTe DSL) and Liger (Triton)."""

from __future__ import annotations

import torch

from ..common import into
from ..registry import Backend


def rmsnorm_quack(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None):
    from quack.rmsnorm import _rmsnorm_fwd  # the forward alone, without autograd bookkeeping

    x2 = x.view(-1, x.shape[-1])
    y = torch.empty_like(x2) if out is None else out.view(-1, x.shape[-1])
    _rmsnorm_fwd(x2, weight, y, eps=eps)
    return y.view(x.shape)


def rmsnorm_liger(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None):
    from liger_kernel.ops.rms_norm import rms_norm_forward

    # "llama" casting: accumulate in float32, as our spec does.
    y = rms_norm_forward(x, weight, eps, 0.0, "llama", None)[0]
    return into(out, y)


def _liger_supports(x: torch.Tensor, weight: torch.Tensor, eps: float) -> str | None:
    # Liger keeps a whole row in one Triton block; its block-size helper refuses rows over 65536.
    if x.shape[-1] > 65536:
        return "liger keeps a row in one block and supports N <= 65536"
    return None


def quack_supports(x: torch.Tensor, *rest: object) -> str | None:
    # quack's copies are 128-bit vectors without a scalar tail.
    vector = 16 // x.element_size()
    if x.shape[-1] % vector:
        return f"quack needs N divisible by {vector} (128-bit vectors) for {x.dtype}"
    return None


BACKENDS = [
    Backend(
        "rmsnorm",
        "quack",
        "quack",
        rmsnorm_quack,
        requires=("quack",),
        min_cc=(9, 0),
        supports=quack_supports,
    ),
    Backend(
        "rmsnorm",
        "liger",
        "liger",
        rmsnorm_liger,
        requires=("liger_kernel",),
        writes_out=False,
        supports=_liger_supports,
    ),
]
