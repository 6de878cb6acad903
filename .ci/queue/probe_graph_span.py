"""Does a longer window steady a graph-timed GEMM at the power cap? (session 26's probe)

Under ``--timing sustained`` an event-timed kernel is sampled for 1 s, but a graph-timed one
(under 50 us) for ``bench.timing.GRAPH_SPAN_MS`` (100 ms) after 200 ms of settling.  At 22689c6
the ~50 us compute-bound GEMMs at the power cap read their SM clock anywhere in 1095-1575 MHz
inside one 9-round tuner final (CuTe 1024x4096x4096: noise 7.7 %; TileLang's 7.0 %), and missed
the bench by 4.6-6.7 %.  Event-timed entries at the power cap spread less (median 1.6 %).

For each case this times the baked config as graph replays the way ``--timing sustained`` does,
with samples spanning 100 ms and 1000 ms, alternating, ``ALTERNATIONS`` times each.  If the
1000 ms medians spread clearly less than the 100 ms ones, the graph window should follow the
mode's span.  (Run at e417ff3, session 28: they did, 1.3-3.5 % against 3.7-16 % at the power
cap, and since then --timing sustained samples graph-timed kernels for 1 s too; the probe passes
each window as ``measure``'s ``graph_span_ms``.)  Needs the project installed (CuTe and TileLang
need the devkit):
    python3 .ci/queue/probe_graph_span.py OUT.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from typing import Any

from probe_cases import baked_case, run_cases
from tilearena.autotune.store import measure_kwargs
from tilearena.bench import timing

SHAPES_AT_THE_POWER_CAP = [
    ("cute", {"BT": 1, "M": 1024, "N": 4096, "K": 4096}),
    ("tilelang", {"BT": 1, "M": 1024, "N": 4096, "K": 4096}),
    ("triton", {"BT": 1, "M": 1024, "N": 4096, "K": 4096}),
    ("cute", {"BT": 0, "M": 2048, "N": 2048, "K": 2048}),
    ("tilelang", {"BT": 1, "M": 128, "N": 4096, "K": 4096}),
]
SPANS_MS = (100.0, 1000.0)
ALTERNATIONS = 4
#: Where the copies live (a CPU smoke run of this script sets "cpu").
DEVICE = "cuda"


def probe_case(backend: str, shape: dict[str, int]) -> dict[str, Any]:
    case = baked_case(backend, shape, DEVICE)
    if isinstance(case, str):
        return {"backend": backend, "shape": shape, "error": case}
    count = timing.rotated_copy_count(case.input_bytes, timing.l2_cache_bytes(DEVICE))
    calls = case.calls([case.first, *case.fresh_copies(count - 1, 1, DEVICE)])
    runs: dict[str, list[dict[str, Any]]] = {str(int(s)): [] for s in SPANS_MS}
    for _ in range(ALTERNATIONS):
        for span in SPANS_MS:
            measured = timing.measure(
                calls[0], DEVICE, graph_fns=calls, repeats=20, method="cuda-graph",
                **{**measure_kwargs("sustained"), "graph_span_ms": span},
            )
            state = measured.gpu_state or {}
            runs[str(int(span))].append(
                {
                    "ms": measured.median_ms,
                    "iqr_ms": measured.iqr_ms,
                    "sm_mhz": state.get("sm_clock_mhz"),
                    "sm_mhz_range": state.get("sm_clock_range_mhz"),
                }
            )
            print(backend, shape, f"{span:.0f} ms span", f"{measured.median_ms:.5f} ms",
                  state.get("sm_clock_range_mhz"), flush=True)
    # Each span's spread: (largest - smallest median) / the median of its medians.
    spread = {
        span: (max(r["ms"] for r in rs) - min(r["ms"] for r in rs)) / statistics.median(r["ms"] for r in rs)
        for span, rs in runs.items()
        if rs and all(math.isfinite(r["ms"]) for r in rs)
    }
    summary = {"backend": backend, "shape": shape, "spread": spread}
    print(json.dumps(summary), flush=True)
    return {**summary, "config": case.config, "copies": count, "runs": runs}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: probe_graph_span.py OUT.json")
    run_cases(SHAPES_AT_THE_POWER_CAP, probe_case, sys.argv[1], {"spans_ms": SPANS_MS})
