"""Print the placement and paths probes' readings from a queue's output folder, one line a
reading set (session 31; the probes are ``probe_placement.py`` and ``probe_tuner_bench_paths.py``):
    python3 .ci/queue/read_probes.py QUEUE_DIR/out
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / min(values) * 100 if values and min(values) > 0 else float("nan")


def _cell(reading: dict) -> str:
    if "ms" not in reading:
        return reading.get("error", "?")[:60]
    return f"{reading['ms']:.5f} ({reading.get('sm_mhz')} MHz, {reading.get('measurements') or 1} meas.)"


def _measured_cases(cases: list[dict]) -> Iterator[tuple[str, dict]]:
    """Each case that has readings, with its label; a case that failed is printed instead."""
    for case in cases:
        label = f"{case['backend']} {case['shape']['M']}x{case['shape']['N']}x{case['shape']['K']}"
        if "error" in case:
            print(f"{label}: {case['error']}")
        else:
            yield label, case


def placement(path: Path) -> None:
    data = json.loads(path.read_text())
    print(f"== placement ({path.name}): pads {data['pads_mib']} MiB, {data['cycles']} cycles")
    for label, case in _measured_cases(data["cases"]):
        every = []
        for pad, readings in case["readings"].items():
            ms = [r["ms"] for r in readings]
            every += ms
            clocks = [r["sm_mhz"] for r in readings]
            print(f"{label} pad {pad:>5} MiB: " + " ".join(f"{m:.5f}" for m in ms) + f"  (MHz {clocks})")
        print(f"{label}: spread over every pad and cycle {_spread(every):.1f} %")


def paths(path: Path) -> None:
    data = json.loads(path.read_text())
    print(f"== paths ({path.name}): bench of five = {data.get('five')}")
    for label, case in _measured_cases(data["cases"]):
        for way, readings in case["readings"].items():
            cells = [_cell(r) for r in readings]
            print(f"{label} {way:12} " + "; ".join(cells))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: read_probes.py QUEUE_DIR/out")
    folder = Path(sys.argv[1])
    for name, reader in (("probe-placement.json", placement), ("probe-paths.json", paths)):
        if (folder / name).exists():
            reader(folder / name)
        else:
            print(f"== {name}: not there")
