"""``tilearena bench --isolate``: every backend timed in a worker process of its own, checked in
the bench process, and a worker that dies costs only its backend's rows.  Run through the CLI
with a plugin backend (``process_probe_plugin``) that logs which process called it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def _bench(tmp_path: Path, *extra: str, die_in_worker: bool = False) -> tuple[dict, list[tuple[int, int]]]:
    """The results of a bench of eager and the probe backend (on a CPU: RMSNorm's quick shapes),
    and the probe's calls as (pid, ppid)."""
    calls = tmp_path / "calls.txt"
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env = {
        **os.environ,
        "TILEARENA_PLUGINS": "process_probe_plugin",
        "PYTHONPATH": path,
        "PROCESS_PROBE_FILE": str(calls),
        "PROCESS_PROBE_DIE_IN_WORKER": "1" if die_in_worker else "0",
    }
    command = [sys.executable, "-m", "tilearena.cli", "bench", "--op", "rmsnorm", "--backend",
               "eager,process_probe", "--dtype", "fp32", "--out", str(tmp_path), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    pairs = [tuple(int(v) for v in line.split()) for line in calls.read_text().splitlines()]
    return json.loads((tmp_path / "results.json").read_text()), pairs


def _bench_pid(pairs: list[tuple[int, int]]) -> int:
    """The bench process: the one whose parent is this test (its calls are the checks)."""
    bench = {pid for pid, ppid in pairs if ppid == os.getpid()}
    assert len(bench) == 1, pairs
    return bench.pop()


def test_isolated_bench_times_each_backend_in_a_worker_and_checks_in_the_bench(tmp_path: Path) -> None:
    data, pairs = _bench(tmp_path, "--isolate")
    bench = _bench_pid(pairs)
    by_process = Counter(pid for pid, _ in pairs)
    workers = {pid for pid, ppid in pairs if ppid == bench}
    rows = data["rows"]
    shapes = len(rows) // 2
    assert shapes >= 2 and all(r["ok"] and r["ms"] > 0 and r["isolated"] is True for r in rows), rows
    assert all(2 <= r["measurements"] <= 6 for r in rows)
    # One check a shape in the bench process; every timed call in one worker, a child of the bench.
    assert by_process[bench] == shapes
    assert len(workers) == 1 and sum(by_process[w] for w in workers) >= 2 * shapes
    assert set(by_process) == {bench} | workers
    assert data["env"]["timing"]["isolated"] is True
    assert "worker process of its own" in data["env"]["timing"]["isolation"]
    # The checks stayed in the bench process, so the cross-backend agreement is still there.
    assert len(data["agreement"]) == shapes


def test_in_process_bench_times_where_it_checks(tmp_path: Path) -> None:
    data, pairs = _bench(tmp_path)
    bench = _bench_pid(pairs)
    assert {pid for pid, _ in pairs} == {bench} and len(pairs) > len(data["rows"])
    assert all(r["ok"] and r["isolated"] is False for r in data["rows"])
    assert data["env"]["timing"]["isolated"] is False
    assert "side by side" in data["env"]["timing"]["isolation"]


def test_a_worker_that_dies_costs_only_its_backends_rows(tmp_path: Path) -> None:
    data, pairs = _bench(tmp_path, "--isolate", die_in_worker=True)
    bench = _bench_pid(pairs)
    rows = {(r["backend"], tuple(r["shape"].values())): r for r in data["rows"]}
    shapes = {shape for _, shape in rows}
    assert len(shapes) >= 2
    for shape in shapes:
        probe, eager = rows[("process_probe", shape)], rows[("eager", shape)]
        assert not probe["ok"] and probe["ms"] is None, probe
        assert probe["error"].startswith("timing failed") and "fatal" in probe["error"], probe["error"]
        # Its numerics were checked in the bench process before the worker died.
        assert probe["rel_err"] is not None and probe["rel_err"] < probe["tol"]
        assert eager["ok"] and eager["ms"] > 0
    # A fresh worker came up for each shape, and died the same way.
    assert len({pid for pid, ppid in pairs if ppid == bench}) == len(shapes)


@pytest.mark.gpu
def test_isolated_bench_times_real_gemms_in_their_workers(tmp_path: Path) -> None:
    """On the GPU: a decode GEMM (graph-timed) and a square one (event-timed), each backend in
    its worker under the sustained mode the matmul pass uses; every row checked and timed."""
    command = [sys.executable, "-m", "tilearena.cli", "bench", "--op", "matmul", "--backend", "triton,cublas",
               "--shapes", "M=1,N=4096,K=4096,BT=1;M=4096,N=4096,K=4096,BT=1", "--timing", "sustained",
               "--isolate", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 4 and all(r["ok"] and r["isolated"] is True and r["ms"] > 0 for r in rows), rows
    methods = {m: {r["timing_method"] for r in rows if r["shape"]["M"] == m} for m in (1, 4096)}
    assert "cuda-graph" in methods[1] and methods[4096] == {"cuda-events"}, methods
