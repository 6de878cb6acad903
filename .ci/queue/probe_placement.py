"""Does where a decode GEMM's inputs sit in memory set its time? (session 31's probe)

CuTe 1x6144x4096 reads 0.0304 ms in the tuner's worker and 0.0290-0.0295 ms in benches, each
context tight to 0.2 % and repeatable across processes (reports/h100/NOTES.md, Session 30); more
input copies did not change it (session 25's rotation probe).  The kernel reads its 50 MB weight
at 1.65 TB/s, half the copy ceiling, in 128-byte rows 8 KiB apart: DRAM-row and channel
conflicts, so the physical pages behind the copies, could set its pace.  Here the tuner's own
``time_candidates`` times it, in this one process, on inputs allocated after a pad of 0 to
1024 MiB (the pad moves the copies to other physical memory; nothing else changes), for a few
cycles.  If the pads spread the CuTe rows by several percent and the Triton control (2.7 TB/s
on the same shape, 1.000 tuner against bench) stays put, placement is the cause, and no code
path can promise 3 % for this kernel until it reads its weight in longer runs.
    python3 .ci/queue/probe_placement.py OUT.json
A CPU smoke run: ``PROBE_DEVICE=cpu PROBE_CASES='[["cublas", {"BT": 1, "M": 4, "N": 8, "K": 16}]]'
PROBE_PADS_MIB=0,1 PROBE_CYCLES=1 python3 .ci/queue/probe_placement.py OUT.json``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch
from probe_cases import baked_case, run_cases, tuner_request
from tilearena.autotune import tasks

DEVICE = os.environ.get("PROBE_DEVICE", "cuda")
CASES: list[tuple[str, dict[str, int]]] = [
    tuple(case) for case in json.loads(os.environ.get("PROBE_CASES", "null") or "null")
] or [
    ("cute", {"BT": 1, "M": 1, "N": 6144, "K": 4096}),
    ("triton", {"BT": 1, "M": 1, "N": 6144, "K": 4096}),
    ("cute", {"BT": 1, "M": 1, "N": 4096, "K": 4096}),
]
PADS_MIB = [int(p) for p in os.environ.get("PROBE_PADS_MIB", "0,6,64,256,1024").split(",")]
CYCLES = int(os.environ.get("PROBE_CYCLES", "2"))
TIMING = "sustained"


def probe_case(backend: str, shape: dict[str, int]) -> dict[str, Any]:
    case = baked_case(backend, shape, DEVICE)
    if isinstance(case, str):
        return {"backend": backend, "shape": shape, "error": case}
    method, request, options = tuner_request(case, DEVICE, TIMING)
    readings: dict[str, list[dict[str, Any]]] = {str(p): [] for p in PADS_MIB}
    for cycle in range(CYCLES):
        for pad_mib in PADS_MIB:
            tasks._INPUTS.clear()  # the next call allocates its copies afresh, after the pad
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
            pad = torch.empty(pad_mib << 20, dtype=torch.uint8, device=DEVICE) if pad_mib else None
            value = tasks.time_candidates(*request, **options)
            state = (value.get("gpu_state") or [None])[0] or {}
            reading = {"ms": value["ms"][0][0], "method": value["methods"][0][0]}
            readings[str(pad_mib)].append({**reading, "sm_mhz": state.get("sm_clock_mhz")})
            del pad
        line = ", ".join(f"pad {p} MiB {v[-1]['ms']:.5f}" for p, v in readings.items())
        print(backend, shape, f"cycle {cycle + 1}:", line, flush=True)
    tasks._INPUTS.clear()
    return {"backend": backend, "shape": shape, "config": case.config, "method": method, "readings": readings}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: probe_placement.py OUT.json")
    run_cases(CASES, probe_case, sys.argv[1], {"timing": TIMING, "pads_mib": PADS_MIB, "cycles": CYCLES})
