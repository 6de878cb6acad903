"""``tilearena timing-check``: interleaved rounds, default against steady timing."""

from __future__ import annotations

import json

import pytest
from tilearena.bench.timing_check import Job, run_rounds

from tilearena.cli import main


def test_rounds_alternate_methods_and_rotate_the_order() -> None:
    jobs = [Job("matmul", name, {"M": 1}, "bfloat16", None, 1.0) for name in ("a", "b", "c")]
    calls: list[tuple[str, str]] = []

    def timer(job: Job, method: str) -> float:
        calls.append((job.backend, method))
        return 1.0 + 0.1 * len(calls)

    run_rounds(jobs, timer, rounds=4)
    assert [m for _, m in calls] == ["default"] * 3 + ["steady"] * 3 + ["default"] * 3 + ["steady"] * 3
    # Each job once a round, and the first job of a default round changes from pair to pair.
    assert sorted(name for name, _ in calls[:3]) == ["a", "b", "c"]
    assert calls[0][0] != calls[6][0]
    summary = jobs[0].summary()
    assert summary["methods"] == ["default", "steady"]
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


def test_clean_flush_rounds_reach_measure_as_a_read_flush(monkeypatch) -> None:
    """--against clean-flush: the even rounds call measure(flush="read"); the odd the default."""
    from tilearena.bench import timing, timing_check
    from tilearena.bench.timing import Timing

    seen = []

    def fake_measure(fn, device, repeats=30, steady=False, flush="write", graph_fns=None):
        fn()
        seen.append((steady, flush))
        return Timing(1.0, 0.0, repeats, "cpu-timer")

    monkeypatch.setattr(timing, "measure", fake_measure)
    job = Job("rmsnorm", "eager", {"M": 2, "N": 32}, "float32", None, None, against="clean-flush")
    run_rounds([job], timing_check._gpu_timer("cpu"), rounds=4)
    assert seen == [(False, "write"), (False, "read")] * 2
    assert job.summary()["methods"] == ["default", "clean-flush"]
    with pytest.raises(ValueError, match="against"):
        Job("rmsnorm", "eager", {"M": 2, "N": 32}, "float32", None, None, against="default")


def test_measure_names_a_bad_flush() -> None:
    from tilearena.bench.timing import L2Flusher, measure

    with pytest.raises(ValueError, match="flush"):
        measure(lambda: None, "cpu", flush="scrub")
    flusher = L2Flusher("cpu", "read", l2_bytes=1 << 16)
    flusher()
    assert int(flusher.sink) == 0 and flusher.buffer.numel() * 4 == 2 << 16


def test_override_rounds_time_the_baked_config_with_the_keys_changed(monkeypatch, tmp_path, capsys) -> None:
    """--against override: odd rounds call the backend with its own config, even rounds with the
    override merged in; a missing or malformed --override is named."""
    from tilearena.kernels import registry

    seen = []
    b = registry.backend("softmax", "eager")
    real = b.fn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("config"))
        return real(*args, **{k: v for k, v in kwargs.items() if k != "config"})

    monkeypatch.setattr(b, "fn", spy)
    base = ["timing-check", "--op", "softmax", "--backend", "eager", "--shapes", "M=2,N=32"]
    base += ["--device", "cpu"]
    out = tmp_path / "o.json"
    assert main([*base, "--rounds", "4", "--against", "override", "--override", '{"variant": "x"}',
                 "--out", str(out)]) == 0
    assert {"variant": "x"} in seen and None in seen
    (row,) = json.loads(out.read_text())
    assert row["methods"] == ["default", "override"] and row["config_override"] == {"variant": "x"}
    for bad in (["--against", "override"], ["--against", "override", "--override", "[1]"],
                ["--override", '{"a": 1}']):
        assert main([*base, *bad]) != 0
        assert "--override" in capsys.readouterr().err
