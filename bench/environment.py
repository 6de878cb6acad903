"""What a results file records about the machine, and the ceilings measured on it."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import subprocess
from typing import Any

import torch

from ..autotune.store import measure_kwargs
from .timing import measure

#: Datasheet numbers, for comparison beside the measured ceilings (dense bf16, no sparsity).
DATASHEETS: dict[str, dict[str, Any]] = {
    "H100 SXM": {"name": "H100 SXM5 80GB", "copy_gbps": 3350.0, "matmul_bf16_tflops": 989.4},
    "H100 PCIe": {"name": "H100 PCIe 80GB", "copy_gbps": 2000.0, "matmul_bf16_tflops": 756.0},
    "H200": {"name": "H200 141GB", "copy_gbps": 4800.0, "matmul_bf16_tflops": 989.4},
}

_DISTRIBUTIONS = {
    "torch": "torch",
    "triton": "triton",
    "helion": "helion",
    "tilelang": "tilelang",
    "cutlass_dsl": "nvidia-cutlass-dsl",
    "quack": "quack-kernels",
    "liger": "liger-kernel",
}


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The commit measured; TILEARENA_COMMIT wins (the GPU machine gets a copy without .git)."""
    if os.environ.get("TILEARENA_COMMIT"):
        return os.environ["TILEARENA_COMMIT"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def datasheet_for(gpu_name: str) -> dict[str, Any] | None:
    name = gpu_name.upper()
    if "H200" in name:
        return DATASHEETS["H200"]
    if "H100" in name:
        return DATASHEETS["H100 PCIe" if "PCIE" in name else "H100 SXM"]
    return None


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "gpu": None,
        "sm_count": None,
        "cc": None,
        "driver": None,
        "cuda": torch.version.cuda,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, dist in _DISTRIBUTIONS.items():
        env[key] = package_version(dist)
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(
            gpu=props.name,
            sm_count=props.multi_processor_count,
            cc=f"{props.major}.{props.minor}",
            l2_bytes=getattr(props, "L2_cache_size", None),
            driver=_driver_version(),
            # Which card (lent machines differ from run to run): baked-check compares it with the
            # card a baked entry was tuned on.
            gpu_uuid=str(getattr(props, "uuid", "") or "") or None,
        )
    else:
        env["gpu"] = "cpu"
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def measure_ceilings(device: str, timing: str = "default") -> dict[str, Any]:
    """The speed of light measured on this GPU: device-to-device copy and a large bf16 GEMM,
    timed the way the run times its kernels (``timing``: ``autotune.store.TIMING_MODES``)."""
    measure_kwargs(timing)  # an unknown mode is refused on a CPU too
    if torch.device(device).type != "cuda":
        return {"copy_gbps": None, "matmul_bf16_tflops": None, "datasheet": None}
    gpu = torch.cuda.get_device_properties(torch.device(device)).name
    copy_gbps, copy = _copy_bandwidth(device, timing)
    tflops, gemm = _gemm_tflops(device, timing)
    torch.cuda.empty_cache()
    return {
        "copy_gbps": round(copy_gbps, 1),
        "matmul_bf16_tflops": round(tflops, 1),
        "copy_ms": copy.as_dict(),
        "matmul_ms": gemm.as_dict(),
        "datasheet": datasheet_for(gpu),
    }


def _copy_bandwidth(device: str, timing: str = "default") -> tuple[float, Any]:
    """Device-to-device copy of 1 GiB, counting bytes read plus written: far beyond the L2."""
    src = torch.randn(256 << 20, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    measured = measure(lambda: dst.copy_(src), device, **measure_kwargs(timing))
    return 2 * src.numel() * 4 / (measured.median_ms * 1e-3) / 1e9, measured


def _gemm_tflops(device: str, timing: str = "default") -> tuple[float, Any]:
    """cuBLAS bf16 8192^3 on random data (zeros run faster than real data)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    measured = measure(lambda: torch.mm(a, b), device, **measure_kwargs(timing))
    return 2 * 8192**3 / (measured.median_ms * 1e-3) / 1e12, measured
