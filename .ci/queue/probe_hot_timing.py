"""Hot timing's attempts on mid-sized GEMMs, read from the timer (session 20's probe).

For each kernel: three ``measure(steady=True, hot_start=True, flush="read")`` and one clean,
with every attempt's queueing times, whether the GPU-side checks found it waited (``ran_dry``,
``caught_up``), and what the check before b993706 would have said (``old_check_ok``: the CPU
queued the settling within the spin and everything within the spin plus the settling's
kernel time).  Needs only torch and Triton (no devkit):
    python3 .ci/queue/probe_hot_timing.py   (writes $OUT/probe-hot.json)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from tilearena.bench import timing
from tilearena.kernels import registry

CASES = [
    ("torch", {"BT": 0, "M": 1024, "N": 4096, "K": 4096}),
    ("triton", {"BT": 0, "M": 1024, "N": 4096, "K": 4096}),
    ("triton", {"BT": 0, "M": 1, "N": 8192, "K": 8192}),
    ("triton", {"BT": 0, "M": 16, "N": 8192, "K": 28672}),
    ("triton", {"BT": 0, "M": 4096, "N": 6144, "K": 4096}),
    ("triton", {"BT": 0, "M": 4096, "N": 4096, "K": 14336}),
]
MODES = ("hot", "hot", "hot", "clean")


def _recording(attempts: list[dict[str, Any]]) -> Callable[..., Any]:
    event_samples = timing._event_samples

    def record(fn, flusher, repeats, spin_for_s, settle_step=None, settle_steps=0, settle_gpu_s=0.0):
        began = time.perf_counter()
        attempt = event_samples(fn, flusher, repeats, spin_for_s, settle_step, settle_steps, settle_gpu_s)
        old_check_ok = (
            attempt.settle_enqueue_s <= attempt.spin_s and attempt.enqueue_s <= attempt.spin_s + settle_gpu_s
        )
        attempts.append(
            {
                "spin_s": attempt.spin_s,
                "settle_enqueue_s": attempt.settle_enqueue_s,
                "enqueue_s": attempt.enqueue_s,
                "ahead_s": settle_gpu_s,
                "settle_steps": settle_steps,
                "repeats": repeats,
                "ran_dry": attempt.ran_dry,
                "caught_up": attempt.caught_up,
                "old_check_ok": old_check_ok,
                "wall_s": time.perf_counter() - began,
            }
        )
        return attempt

    return record


def _call(backend: str, args: tuple, out: torch.Tensor) -> Callable[[], Any]:
    if backend == "torch":
        return lambda: torch.matmul(args[0], args[1], out=out)
    kernel = registry.backend("matmul", backend)
    return lambda: kernel.fn(*args, out=out)


def main() -> None:
    spec = registry.spec("matmul")
    rows = []
    for backend, shape in CASES:
        args = spec.make_inputs(shape, torch.bfloat16, "cuda", 0)
        call = _call(backend, args, spec.empty_output(*args))
        for mode in MODES:
            attempts: list[dict[str, Any]] = []
            timing._event_samples = _recording(attempts)
            began = time.perf_counter()
            timed = timing.measure(call, "cuda", steady=True, flush="read", hot_start=mode == "hot")
            row = {
                "backend": backend,
                "shape": shape,
                "mode": mode,
                "seconds": time.perf_counter() - began,
                "median_ms": timed.median_ms,
                "iqr_pct": 100 * timed.iqr_ms / timed.median_ms,
                "samples": timed.samples,
                "attempts": attempts,
            }
            rows.append(row)
            verdicts = [(a["old_check_ok"], a["ran_dry"], a["caught_up"]) for a in attempts]
            took = f"{row['seconds']:.2f} s, {timed.median_ms:.5f} ms"
            print(backend, shape, mode, took, verdicts, flush=True)
    with open(os.path.join(os.environ.get("OUT", "."), "probe-hot.json"), "w") as handle:
        json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
