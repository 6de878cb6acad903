"""tilearena: LLM ops in Triton, Helion, CuTe DSL and TileLang behind one interface.

>>> import tilearena
>>> tilearena.ops()                      # ['matmul', 'rmsnorm', 'softmax']
>>> tilearena.backends("rmsnorm")        # ['eager', 'compile', 'triton', ...]
>>> y = tilearena.rmsnorm(x, w, 1e-6)    # the best backend known for this GPU
>>> with tilearena.use("triton"):
...     y = tilearena.rmsnorm(x, w, 1e-6)
>>> torch.ops.tilearena.rmsnorm(x, w, 1e-6)   # the same op, through torch.library
"""

from __future__ import annotations

import torch

from .dispatch import use
from .kernels import registry
from .library import register_all

__version__ = "0.1.0"
__all__ = ["available_backends", "backends", "matmul", "ops", "rmsnorm", "softmax", "use"]

register_all()


def ops() -> list[str]:
    """Names of every op."""
    return registry.ops()


def backends(op: str) -> list[str]:
    """Names of every backend of ``op`` (installed or not)."""
    return registry.backend_names(op)


def available_backends(op: str, device: str = "cuda") -> dict[str, str | None]:
    """Backend name -> None if it can run on ``device`` here, else the reason it cannot."""
    return {b.name: b.unavailable_reason(device) for b in registry.backends(op)}


def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, backend: str | None = None
) -> torch.Tensor:
    """y = x / sqrt(mean(x^2, -1) + eps) * weight, accumulated in float32."""
    return torch.ops.tilearena.rmsnorm(x, weight, eps, backend)


def softmax(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Softmax over the last dimension, accumulated in float32."""
    return torch.ops.tilearena.softmax(x, backend)


def matmul(
    a: torch.Tensor, b: torch.Tensor, transpose_b: bool = False, backend: str | None = None
) -> torch.Tensor:
    """C = a @ b (b is [K, N], or [N, K] with transpose_b, nn.Linear's weight layout)."""
    return torch.ops.tilearena.matmul(a, b, transpose_b, backend)
