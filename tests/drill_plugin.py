"""A plugin backend for the autotuner's failure drill (``TILEARENA_PLUGINS=drill_plugin``).

``rmsnorm/drill`` is a real Triton RMSNorm with one tunable parameter, ``mode``, whose values
break it the ways a bad config breaks a kernel on a GPU: ``fault`` reads far outside any
allocation (an illegal memory access), ``hang`` spins on a flag that is never set, ``wrong``
drops the weight. Only ``ok`` is correct, so a tuning run must record the other three as failed
and still bake ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import triton
import triton.language as tl
from tilearena.kernels import registry

MODES = {"ok": 0, "fault": 1, "hang": 2, "wrong": 3}


@triton.jit
def _drill_rmsnorm(x_ptr, w_ptr, y_ptr, flag_ptr, N, stride, eps, MODE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(x_ptr + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    if MODE == 1:
        far = tl.full([BLOCK], 1 << 40, tl.int64)  # 2 TB past x: no allocation is there
        x += tl.load(x_ptr + far + cols, mask=mask, other=0.0).to(tl.float32)
    if MODE == 2:
        while tl.load(flag_ptr, volatile=True) == 0:
            pass
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    if MODE == 3:
        w = w * 0.0 + 1.0
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / N + eps)
    tl.store(y_ptr + row * stride + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


def drill_rmsnorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    mode = (config or {}).get("mode", "ok")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {sorted(MODES)}, got {mode!r}")
    n = x.shape[-1]
    if n > 16384:
        raise ValueError(f"x: the drill kernel keeps a row in one program; expected N <= 16384, got {n}")
    x2 = x.reshape(-1, n)
    y = torch.empty_like(x) if out is None else out
    flag = torch.zeros(1, device=x.device, dtype=torch.int32)
    if x2.shape[0]:
        _drill_rmsnorm[(x2.shape[0],)](
            x2, weight, y, flag, n, x2.stride(0), eps, MODE=MODES[mode], BLOCK=triton.next_power_of_2(n)
        )
    return y


registry.register_backend(
    registry.Backend(
        "rmsnorm",
        "drill",
        "triton",
        drill_rmsnorm,
        requires=("triton",),
        config_space={"mode": tuple(MODES)},
        default_config={"mode": "ok"},
    )
)
