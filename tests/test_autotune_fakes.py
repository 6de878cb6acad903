"""Fake candidate kernels for the worker tests: this module imports nothing heavy, so a
restarted worker that unpickles them starts in a fraction of a second (no torch)."""

from __future__ import annotations

import os
import time


def fake_kernel(behaviour: str, value: float = 1.0) -> float:
    """Stands in for a compiled candidate; each behaviour is one way a bad config breaks."""
    if behaviour == "exit":
        os._exit(139)  # as a segfaulting driver would
    if behaviour == "cuda":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    if behaviour == "misaligned":
        raise RuntimeError("CUDA error: misaligned address")
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "error":
        raise ValueError("BLOCK_N must divide N")
    return value * 2


def worker_pid() -> int:
    return os.getpid()


def test_fake_kernel_in_process():
    assert fake_kernel("ok", 2.0) == 4.0
