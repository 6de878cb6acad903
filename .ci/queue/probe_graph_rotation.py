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

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from tilearena.autotune.store import measure_kwargs
from tilearena.bench import timing
from tilearena.kernels import registry

from tilearena import dispatch

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


def _copies(spec: registry.OpSpec, shape: dict[str, int], count: int, seed: int) -> list[tuple]:
    return [spec.make_inputs(shape, torch.bfloat16, DEVICE, seed + i) for i in range(count)]


def _call(b: registry.Backend, args: tuple, out: torch.Tensor, config: Any) -> Callable[[], Any]:
    if config:
        return lambda: b.fn(*args, out=out, config=config)
    return lambda: b.fn(*args, out=out)


def probe_case(backend: str, shape: dict[str, int]) -> dict[str, Any]:
    spec = registry.spec("matmul")
    b = registry.backend("matmul", backend)
    first = spec.make_inputs(shape, torch.bfloat16, DEVICE, 0)
    reason = dispatch.why_not(b, first)
    if reason:
        return {"backend": backend, "shape": shape, "error": f"unavailable: {reason}"}
    config = dispatch.baked_config("matmul", b, first, shape)
    input_bytes = sum(a.numel() * a.element_size() for a in first if isinstance(a, torch.Tensor))
    l2_bytes = timing.l2_cache_bytes(DEVICE)
    runs: dict[str, list[dict[str, Any]]] = {str(m): [] for m in MULTIPLES}
    for alternation in range(ALTERNATIONS):
        for multiple in MULTIPLES:
            count = min(timing.MAX_ROTATED_COPIES, max(1, math.ceil(multiple * l2_bytes / input_bytes)))
            copies = _copies(spec, shape, count, 1000 * (alternation + 1) + multiple)
            outs = [spec.empty_output(*args) for args in copies]
            calls = [_call(b, args, out, config) for args, out in zip(copies, outs)]
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
            del copies, outs, calls
            torch.cuda.empty_cache()
    return {"backend": backend, "shape": shape, "config": config, "input_bytes": input_bytes, "runs": runs}


def main(out_path: str) -> None:
    results = []
    for backend, shape in CASES:
        try:
            results.append(probe_case(backend, dict(shape)))
        except Exception as exc:  # one case's failure must not lose the others'
            results.append({"backend": backend, "shape": shape, "error": f"{type(exc).__name__}: {exc}"})
        with open(out_path, "w") as f:  # written as it goes: a cut run keeps what it measured
            json.dump({"l2_bytes": timing.l2_cache_bytes(DEVICE), "cases": results}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: probe_graph_rotation.py OUT.json")
    main(sys.argv[1])
