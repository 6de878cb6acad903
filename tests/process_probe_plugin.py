"""A plugin backend that says which process ran it (``TILEARENA_PLUGINS=process_probe_plugin``).

``rmsnorm/process_probe`` is the eager RMSNorm that appends "pid ppid" to the file named by
``PROCESS_PROBE_FILE`` on every call, so a test can tell the bench process's calls (the checks)
from a worker's (``bench --isolate``'s timing).  With ``PROCESS_PROBE_DIE_IN_WORKER=1`` a call
in a worker process ends that process at once, as a kernel's fatal CUDA error would.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from typing import Any

import torch
from tilearena.kernels import registry
from tilearena.kernels.rmsnorm.torch import rmsnorm_eager


def process_probe_rmsnorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    config: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    with open(os.environ["PROCESS_PROBE_FILE"], "a") as log:
        log.write(f"{os.getpid()} {os.getppid()}\n")
    if os.environ.get("PROCESS_PROBE_DIE_IN_WORKER") == "1" and multiprocessing.parent_process() is not None:
        os._exit(3)
    return rmsnorm_eager(x, weight, eps, out=out)


registry.register_backend(
    registry.Backend(
        "rmsnorm", "process_probe", "torch", process_probe_rmsnorm, devices=("cuda", "cpu"), writes_out=False
    )
)
