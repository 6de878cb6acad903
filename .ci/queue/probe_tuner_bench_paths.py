"""Is it the tuner's code path or the bench's process that reads a kernel differently? (session 30)

At 7c42e99 (reports/h100/NOTES.md, Session 30) CuTe 1x6144x4096 read 0.0303-0.0304 ms in three
tuner re-times, 0.0295 in three benches of two backends and 0.0290 in three benches of five, each
tight to 0.2 % and each a fresh process; TileLang 16384x8192x28672 read 3.2-3.5 % slower benched
than tuned, on two cards.  The earlier rotation probe, in a process of its own, read the CuTe
kernel as the tuner does (0.0305).  Here one process times each case four ways, in turn, for a
few cycles:

  tuner-worker    ``autotune.tasks.time_candidates`` in an ``IsolatedWorker`` (the tuner's route)
  tuner-here      the same function in this process (the tuner's inputs: seeds 0.., copies first)
  bench-alone     ``bench.runner.bench_shape`` with this backend only (the bench's inputs)
  bench-five      ``bench_shape`` with the five backends the matmul pass benches

If tuner-here reads as tuner-worker and bench-alone as the benches did, the code path (inputs,
their order, the checks before timing) makes the difference; if tuner-here reads as the bench
paths, it is the process (what else it holds), and the worker is what differs.  Needs the project
installed and ``TILEARENA_BAKED_DIR`` at the store to probe (the CuTe and TileLang cases need the
devkit):
    python3 .ci/queue/probe_tuner_bench_paths.py OUT.json
A CPU smoke run: ``PROBE_DEVICE=cpu PROBE_CASES='[["cublas", {"BT": 1, "M": 4, "N": 8, "K": 16}, 1]]'
PROBE_FIVE=cublas,eager python3 .ci/queue/probe_tuner_bench_paths.py OUT.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from probe_cases import baked_case, run_cases, tuner_request
from tilearena.autotune import tasks
from tilearena.autotune.worker import IsolatedWorker
from tilearena.bench import results, runner
from tilearena.kernels import registry

DEVICE = os.environ.get("PROBE_DEVICE", "cuda")
#: (backend, shape, cycles): the two context-dependent misses of 7c42e99, and the bimodal Triton
#: kernel, whose bench rows now take the tuner's median rule (a check of that change).
CASES: list[tuple[str, dict[str, int], int]] = [
    tuple(case) for case in json.loads(os.environ.get("PROBE_CASES", "null") or "null")
] or [
    ("cute", {"BT": 1, "M": 1, "N": 6144, "K": 4096}, 3),
    ("triton", {"BT": 1, "M": 128, "N": 4096, "K": 4096}, 3),
    ("tilelang", {"BT": 1, "M": 16384, "N": 8192, "K": 28672}, 2),
]
FIVE = os.environ.get("PROBE_FIVE", "triton,helion,cute,tilelang,cublas").split(",")
TIMING = "sustained"
WORKER = IsolatedWorker()


def _tuner_reading(value: dict[str, Any]) -> dict[str, Any]:
    state = (value.get("gpu_state") or [None])[0] or {}
    return {"ms": value["ms"][0][0], "method": value["methods"][0][0], "sm_mhz": state.get("sm_clock_mhz")}


def _bench_reading(backends: list[str], backend: str, shape: dict[str, int], scratch: Path) -> dict[str, Any]:
    path = scratch / f"bench-{len(backends)}.json"
    path.unlink(missing_ok=True)
    out = results.ResultsFile(path, {"gpu": DEVICE}, {})
    spec = registry.spec("matmul")
    runner.bench_shape(
        spec, backends, shape, torch.bfloat16, DEVICE, {}, out, advance=lambda label: None, timing=TIMING
    )
    row = next(r for r in json.loads(path.read_text())["rows"] if r["backend"] == backend)
    if not row.get("ms"):
        return {"error": row.get("error") or "not timed"}
    state = row.get("gpu_state") or {}
    return {
        "ms": row["ms"],
        "method": row.get("timing_method"),
        "measurements": row.get("measurements"),
        "noise": row.get("noise"),
        "sm_mhz": state.get("sm_clock_mhz"),
    }


def probe_case(backend: str, shape: dict[str, int], cycles: int = 2) -> dict[str, Any]:
    case = baked_case(backend, shape, DEVICE)
    if isinstance(case, str):
        return {"backend": backend, "shape": shape, "error": case}
    method, request, options = tuner_request(case, DEVICE, TIMING)
    variants = ("tuner-worker", "tuner-here", "bench-alone", "bench-five")
    readings: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for cycle in range(cycles):
            reply = WORKER.call(tasks.time_candidates, *request, timeout_s=300.0, **options)
            failed = {"error": f"{reply.failure}: {reply.detail[-300:]}"}
            readings["tuner-worker"].append(_tuner_reading(reply.value) if reply.ok else failed)
            readings["tuner-here"].append(_tuner_reading(tasks.time_candidates(*request, **options)))
            tasks._INPUTS.clear()  # as the tuner's worker moving on: the bench paths make their own
            readings["bench-alone"].append(_bench_reading([backend], backend, shape, Path(scratch)))
            readings["bench-five"].append(_bench_reading(FIVE, backend, shape, Path(scratch)))
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
            line = ", ".join(f"{k} {v[-1].get('ms', v[-1].get('error'))}" for k, v in readings.items())
            print(backend, shape, f"cycle {cycle + 1}:", line, flush=True)
    return {"backend": backend, "shape": shape, "config": case.config, "method": method, "readings": readings}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: probe_tuner_bench_paths.py OUT.json")
    cycles = {(b, json.dumps(s, sort_keys=True)): n for b, s, n in CASES}
    try:
        run_cases(
            [(b, s) for b, s, _ in CASES],
            lambda b, s: probe_case(b, s, cycles[(b, json.dumps(s, sort_keys=True))]),
            sys.argv[1],
            {"timing": TIMING, "five": FIVE, "baked_dir": os.environ.get("TILEARENA_BAKED_DIR")},
        )
    finally:
        WORKER.stop()
