"""Does a graph-timed decode GEMM read part of its weight from the L2? (session 25's probe)

Graph replays do not flush the L2; they rotate over input copies that together hold
``ROTATION_L2_MULTIPLE`` (3) x the L2.  A weight about the L2's size (1x6144x4096 is 50.3 MB,
the H100's L2 50 MiB) then has 4 copies, and whatever lines of a copy survive the three others
make its next read faster.  Which lines survive depends on where the copies sit in physical
memory, so it would differ from process to process: CuTe 1x6144x4096 read 0.0312 ms in two tuner
finals and 0.0278-0.0305 ms in 13 benches; CuTe 1x4096x4096 read 0.0180 ms once and 0.0210-0.0214
in every other run.

For each case this times the baked config as graph replays, the way ``--timing sustained`` does
(hot start), over copies for 3 x and 8 x the L2, alternating, each time on freshly allocated
copies.  If the 3 x rows spread (or read faster) and the 8 x rows do not, the rotation is too
short.  Needs the project installed (the CuTe and TileLang cases need the devkit):
    python3 .ci/queue/probe_graph_rotation.py OUT.json
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
from probe_cases import baked_case, run_cases
from tilearena.autotune.store import measure_kwargs
from tilearena.bench import timing

CASES = [
    ("cute", {"BT": 1, "M": 1, "N": 6144, "K": 4096}),
    ("cute", {"BT": 1, "M": 1, "N": 4096, "K": 4096}),
    ("tilelang", {"BT": 1, "M": 1, "N": 6144, "K": 4096}),
    ("triton", {"BT": 1, "M": 1, "N": 4096, "K": 4096}),
    ("triton", {"BT": 1, "M": 128, "N": 4096, "K": 4096}),
]
#: Where the copies live (a CPU smoke run of this script sets "cpu").
DEVICE = "cuda"
MULTIPLES = (3, 8)
ALTERNATIONS = 3


def probe_case(backend: str, shape: dict[str, int]) -> dict[str, Any]:
    case = baked_case(backend, shape, DEVICE)
    if isinstance(case, str):
        return {"backend": backend, "shape": shape, "error": case}
    l2_bytes = timing.l2_cache_bytes(DEVICE)
    runs: dict[str, list[dict[str, Any]]] = {str(m): [] for m in MULTIPLES}
    for alternation in range(ALTERNATIONS):
        for multiple in MULTIPLES:
            count = min(timing.MAX_ROTATED_COPIES, max(1, math.ceil(multiple * l2_bytes / case.input_bytes)))
            calls = case.calls(case.fresh_copies(count, 1000 * (alternation + 1) + multiple, DEVICE))
            sustained = measure_kwargs("sustained")
            measured = timing.measure(
                calls[0], DEVICE, graph_fns=calls, repeats=20, method="cuda-graph", **sustained
            )
            state = measured.gpu_state or {}
            runs[str(multiple)].append(
                {
                    "copies": count,
                    "ms": measured.median_ms,
                    "iqr_ms": measured.iqr_ms,
                    "sm_mhz": state.get("sm_clock_mhz"),
                }
            )
            label = f"{multiple}x L2 ({count} copies)"
            print(backend, shape, label, f"{measured.median_ms:.5f} ms", flush=True)
            del calls
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    return {
        "backend": backend,
        "shape": shape,
        "config": case.config,
        "input_bytes": case.input_bytes,
        "runs": runs,
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: probe_graph_rotation.py OUT.json")
    run_cases(CASES, probe_case, sys.argv[1], {"l2_bytes": timing.l2_cache_bytes(DEVICE)})
