"""``tilearena timing-check``: interleaved rounds, default against steady timing."""

from __future__ import annotations

import json

from tilearena.bench.timing_check import Job, run_rounds

from tilearena.cli import main


def test_rounds_alternate_methods_and_rotate_the_order() -> None:
    jobs = [Job("matmul", name, {"M": 1}, "bfloat16", None, 1.0) for name in ("a", "b", "c")]
    calls: list[tuple[str, bool]] = []

    def timer(job: Job, steady: bool) -> float:
        calls.append((job.backend, steady))
        return 1.0 + 0.1 * len(calls)

    run_rounds(jobs, timer, rounds=4)
    assert [steady for _, steady in calls] == [False] * 3 + [True] * 3 + [False] * 3 + [True] * 3
    # Each job once a round, and the first job of a default round changes from pair to pair.
    assert sorted(name for name, _ in calls[:3]) == ["a", "b", "c"]
    assert calls[0][0] != calls[6][0]
    summary = jobs[0].summary()
    assert len(summary["default"]["samples_ms"]) == len(summary["steady"]["samples_ms"]) == 2
    assert summary["default"]["spread"] > 0 and summary["default"]["vs_baked"] > 1


def test_cli_times_a_real_backend_and_writes_every_round(tmp_path, capsys) -> None:
    out = tmp_path / "check.json"
    args = ["timing-check", "--op", "rmsnorm", "--backend", "eager", "--shapes", "M=4,N=64;M=2,N=32"]
    assert main([*args, "--rounds", "4", "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["shape"] for r in rows] == [{"M": 4, "N": 64}, {"M": 2, "N": 32}]
    assert all(
        len(r[m]["samples_ms"]) == 2 and r[m]["median_ms"] > 0 for r in rows for m in ("default", "steady")
    )
    assert main([*args, "--rounds", "3", "--device", "cpu"]) != 0
    assert "--rounds: expected an even number" in capsys.readouterr().err
