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


def _recording_measure(seen: list[tuple[bool, str]]):
    """A stand-in for ``bench.timing.measure``: runs the call once, records (steady, flush)."""
    from tilearena.bench.timing import Timing

    def fake_measure(fn, device, repeats=30, steady=False, flush="write", graph_fns=None, **extra):
        fn()
        seen.append((steady, flush))
        assert set(extra) <= {"hot_start", "span_ms", "keep_series"}, extra
        return Timing(1.0, 0.0, repeats, "cpu-timer")

    return fake_measure


def test_clean_flush_rounds_reach_measure_as_a_read_flush(monkeypatch) -> None:
    """--against clean-flush: the even rounds call measure(flush="read"); the odd the default."""
    from tilearena.bench import timing, timing_check

    seen: list[tuple[bool, str]] = []
    monkeypatch.setattr(timing, "measure", _recording_measure(seen))
    job = Job("rmsnorm", "eager", {"M": 2, "N": 32}, "float32", None, None, against="clean-flush")
    run_rounds([job], timing_check._gpu_timer("cpu"), rounds=4)
    assert seen == [(False, "write"), (False, "read")] * 2
    assert job.summary()["methods"] == ["default", "clean-flush"]
    with pytest.raises(ValueError, match="against"):
        Job("rmsnorm", "eager", {"M": 2, "N": 32}, "float32", None, None, against="default")


def test_fresh_input_rounds_time_new_copies_of_the_same_values(monkeypatch) -> None:
    """--against fresh-inputs: the default rounds reuse one allocation; each fresh round gets a
    new one (the same seed, so the same values), shared by the shape's jobs and kept alive so
    no later copy lands on a freed one."""
    from tilearena.bench import timing, timing_check
    from tilearena.kernels import registry

    calls: list[tuple[int, float]] = []  # (address, sum) of x, per kernel call

    b = registry.backend("rmsnorm", "eager")
    real = b.fn

    def spy(*args, **kwargs):
        calls.append((args[0].data_ptr(), float(args[0].sum())))
        return real(*args, **kwargs)

    monkeypatch.setattr(b, "fn", spy)
    monkeypatch.setattr(timing, "measure", _recording_measure([]))
    shape = {"M": 4, "N": 64}
    jobs = [Job("rmsnorm", "eager", shape, "float32", None, None, against="fresh-inputs") for _ in range(2)]
    timer = timing_check._gpu_timer("cpu", "clean")
    asked: list[tuple[int, str]] = []

    def recording_timer(job: Job, method: str) -> float:
        asked.append((next(i for i, j in enumerate(jobs) if j is job), method))  # equal, not the same
        return timer(job, method)

    run_rounds(jobs, recording_timer, rounds=6)
    assert len(asked) == len(calls) == 12
    by_call = {}
    for (job, method), (address, total) in zip(asked, calls):
        by_call.setdefault((job, method), []).append((address, total))
    for job in (0, 1):
        default = {a for a, _ in by_call[(job, "default")]}
        fresh = [a for a, _ in by_call[(job, "fresh-inputs")]]
        assert len(default) == 1  # one allocation for the default rounds
        assert len(set(fresh)) == 3 and not set(fresh) & default
    assert len({total for _, total in calls}) == 1  # the same values throughout
    # The shape's two jobs share each round's fresh copy (k-th fresh round, k-th copy).
    assert [a for a, _ in by_call[(0, "fresh-inputs")]] == [a for a, _ in by_call[(1, "fresh-inputs")]]
    assert jobs[0].summary()["methods"] == ["default", "fresh-inputs"]


def test_timing_mode_is_where_every_round_starts(monkeypatch, tmp_path) -> None:
    """--timing steady: the default rounds ask measure for steady's keywords, the --against rounds
    for steady's with the method's on top; the JSON rows record the mode."""
    from tilearena.bench import timing

    seen: list[tuple[bool, str]] = []
    monkeypatch.setattr(timing, "measure", _recording_measure(seen))
    out = tmp_path / "o.json"
    args = ["timing-check", "--op", "rmsnorm", "--backend", "eager", "--shapes", "M=2,N=32"]
    args += ["--device", "cpu", "--rounds", "4"]
    assert main([*args, "--timing", "steady", "--against", "clean-flush", "--out", str(out)]) == 0
    assert seen == [(True, "write"), (True, "read")] * 2
    (row,) = json.loads(out.read_text())
    assert row["timing"] == "steady"
    seen.clear()
    assert main([*args, "--out", str(out)]) == 0
    assert seen == [(False, "write"), (True, "write")] * 2
    with pytest.raises(SystemExit):
        main([*args, "--timing", "fast"])


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


# --- --adopt ---------------------------------------------------------------------------------

#: The ``gpu`` block ``store.gpu_record`` would give on an H100 (the tests have no GPU).
FAKE_GPU = {
    "name": "NVIDIA H100 80GB HBM3",
    "slug": "h100-sxm",
    "compute_capability": [9, 0],
    "driver": None,
    "cuda": None,
    "torch": "test",
    "dsl_versions": {},
}


def test_adoption_needs_a_gain_beyond_the_noise() -> None:
    """Adopt only when override < default * (1 - max(1%, 2 * the larger spread)), strictly."""
    from tilearena.bench.timing_check import decide_adoption

    faster = decide_adoption(1.0, 0.9, 0.01, 0.02)
    assert faster.adopt and faster.noise == 0.02
    assert faster.reason == (
        "override 0.9000 ms vs baked 1.0000 ms: 10.0% faster, noise 2.0% (adopts beyond 4.0%)"
    )
    # Faster, but inside twice the noise (4%).
    assert not decide_adoption(1.0, 0.97, 0.02, 0.005).adopt
    # At the threshold exactly (values exact in binary): not beyond it.
    assert not decide_adoption(1.0, 0.75, 0.125, 0.0).adopt
    assert decide_adoption(1.0, 0.7499, 0.125, 0.0).adopt
    # Quiet rounds: the 1% floor still applies.
    assert not decide_adoption(1.0, 0.995, 0.0, 0.0).adopt
    assert decide_adoption(1.0, 0.985, 0.0, 0.001).adopt
    slower = decide_adoption(1.0, 1.05, 0.001, 0.001, baseline="kernel default")
    assert not slower.adopt and "5.0% slower" in slower.reason and "kernel default 1.0000 ms" in slower.reason
    # No spread (one sample) or no median: never adopted.
    assert not decide_adoption(1.0, 0.5, None, 0.01).adopt
    assert not decide_adoption(None, 0.5, 0.01, 0.01).adopt
    assert not decide_adoption(1.0, float("nan"), 0.01, 0.01).adopt
    # --min-gain lowers the floor, not the noise rule: 0.6 % in quiet rounds is adopted at 0.4 %,
    # not where twice the noise (0.8 %) covers it, and the reason names the threshold used.
    quiet = decide_adoption(1.0, 0.994, 0.001, 0.0, min_gain=0.004)
    assert quiet.adopt and "(adopts beyond 0.4%)" in quiet.reason
    assert not decide_adoption(1.0, 0.994, 0.004, 0.0, min_gain=0.004).adopt
    assert not decide_adoption(1.0, 0.994, 0.001, 0.0).adopt


def _fake_timer(ms: dict[str, dict[str, float]], baked: dict[str, dict]):
    """Stands in for ``_gpu_timer``: sets the job's baked config as it does (None: the kernel's
    default) and gives each shape's method its time, +-0.5% on alternate samples."""
    counts: dict[tuple[str, str], int] = {}

    def timer(job: Job, method: str) -> float:
        label = ",".join(f"{k}={v}" for k, v in job.shape.items())
        job.config = baked.get(label)
        n = counts[label, method] = counts.get((label, method), 0) + 1
        return ms[label][method] * (1.005 if n % 2 else 0.995)

    return timer


def test_adopt_bakes_winning_overrides_into_the_store(monkeypatch, tmp_path, capsys) -> None:
    """--adopt with a fake timer: the two shapes where the override wins beyond the noise get
    valid entries holding the config as timed (baked + override, or the override alone where the
    kernel's default ran); the shape inside the noise gets none; each row says which and why."""
    from tilearena.autotune import store
    from tilearena.bench import timing_check

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the Triton backend is "available" on the CPU
    # The store written is the directory's file the dispatcher reads (no lookup before: no GPU).
    baked_dir = tmp_path / "baked"
    monkeypatch.setenv("TILEARENA_BAKED_DIR", str(baked_dir))
    monkeypatch.setattr(store, "gpu_record", lambda device=None: dict(FAKE_GPU))
    ms = {
        "M=64,N=1024": {"default": 1.0, "override": 0.8},
        "M=256,N=4096": {"default": 0.5, "override": 0.45},
        "M=1024,N=16384": {"default": 2.0, "override": 1.99},
    }
    baked = {"M=64,N=1024": {"num_warps": 4, "chunk": 8192}}
    monkeypatch.setattr(timing_check, "_gpu_timer", lambda device, *_: _fake_timer(ms, baked))
    path, out = baked_dir / "h100-sxm.json", tmp_path / "check.json"
    args = ["timing-check", "--op", "softmax", "--backend", "triton", "--shapes", ";".join(ms)]
    args += ["--device", "cpu", "--rounds", "4", "--against", "override", "--override", '{"keep_exp": true}']
    assert main([*args, "--adopt", str(path), "--out", str(out)]) == 0

    data = json.loads(path.read_text())
    assert data["gpu"] == FAKE_GPU
    entries = {store.shape_bucket(e["shape"]): e for e in data["entries"]}
    assert sorted(entries) == ["M=256,N=4096", "M=64,N=1024"]
    assert all(store.validate_entry(e) is None for e in data["entries"])
    first, second = entries["M=64,N=1024"], entries["M=256,N=4096"]
    assert first["config"] == {"num_warps": 4, "chunk": 8192, "keep_exp": True}
    assert second["config"] == {"keep_exp": True}
    assert first["runner_ups"] == [{"config": {"num_warps": 4, "chunk": 8192}, "time_ms": 1.0}]
    assert second["runner_ups"] == [{"config": {}, "time_ms": 0.5}]
    assert first["time_ms"] == pytest.approx(0.8) and second["time_ms"] == pytest.approx(0.45)
    assert first["timing"] == "default" and first["tuned_at"] and first["dtype"] == "bfloat16"
    assert first["noise"] == pytest.approx(0.005 * 2**0.5)
    # What a lookup on this GPU returns now: the adopted config.
    gpu = store.GpuIdentity(FAKE_GPU["name"], FAKE_GPU["slug"], (9, 0))
    found = store.lookup_entry("softmax", "triton", "bf16", {"M": 64, "N": 1024}, gpu=gpu)
    assert found is not None and found["config"] == first["config"]

    rows = {",".join(f"{k}={v}" for k, v in r["shape"].items()): r for r in json.loads(out.read_text())}
    assert [rows[s]["adopted"] for s in ms] == [True, True, False]
    assert rows["M=64,N=1024"]["adoption_reason"].startswith(
        "override 0.8000 ms vs baked 1.0000 ms: 20.0% faster"
    )
    assert "vs kernel default 0.5000 ms" in rows["M=256,N=4096"]["adoption_reason"]
    assert "0.5% faster" in rows["M=1024,N=16384"]["adoption_reason"]
    printed = capsys.readouterr().out
    assert f"triton M=64,N=1024: adopted into {path}: override" in printed
    assert "triton M=1024,N=16384: not adopted: override" in printed

    # Nothing beyond the noise: the store is not written at all.
    ms["M=64,N=1024"]["override"] = ms["M=256,N=4096"]["override"] = 2.0
    before = path.read_bytes()
    assert main([*args, "--adopt", str(path)]) == 0
    assert path.read_bytes() == before
    assert main([*args, "--adopt", str(tmp_path / "new.json")]) == 0
    assert not (tmp_path / "new.json").exists()


def test_adopt_bakes_nothing_the_store_would_drop(monkeypatch, tmp_path, capsys) -> None:
    """A winning override the kernel takes but its declared space does not (here: a backend with
    no config space) is reported, not baked: a lookup would drop the entry."""
    from tilearena.autotune import store
    from tilearena.bench import timing_check

    monkeypatch.setattr(store, "gpu_record", lambda device=None: dict(FAKE_GPU))
    ms = {"M=2,N=32": {"default": 1.0, "override": 0.5}}
    monkeypatch.setattr(timing_check, "_gpu_timer", lambda device, *_: _fake_timer(ms, {}))
    path, out = tmp_path / "h100-sxm.json", tmp_path / "check.json"
    args = ["timing-check", "--op", "softmax", "--backend", "eager", "--shapes", "M=2,N=32"]
    args += ["--device", "cpu", "--rounds", "4", "--against", "override", "--override", '{"variant": "x"}']
    assert main([*args, "--adopt", str(path), "--out", str(out)]) == 0
    assert not path.exists()
    (row,) = json.loads(out.read_text())
    assert row["adopted"] is False
    assert "50.0% faster" in row["adoption_reason"]
    assert "not baked, the store would not use" in row["adoption_reason"]
    assert "not adopted" in capsys.readouterr().out


def test_adopt_bakes_no_override_that_fails_float64(monkeypatch, tmp_path) -> None:
    """However much faster, an override whose output disagrees with float64 is not baked."""
    from tilearena.autotune import store
    from tilearena.bench import timing_check

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(store, "gpu_record", lambda device=None: dict(FAKE_GPU))
    ms = {"M=64,N=1024": {"default": 1.0, "override": 0.5}}
    monkeypatch.setattr(timing_check, "_gpu_timer", lambda device, *_: _fake_timer(ms, {}))
    checked = []

    def wrong_answers(device: str):
        def check(job):
            checked.append(job.timed_config("override"))
            return "rel_err 0.5 > tol 0.01"

        return check

    monkeypatch.setattr(timing_check, "_float64_check", wrong_answers)
    path, out = tmp_path / "h100-sxm.json", tmp_path / "check.json"
    args = ["timing-check", "--op", "softmax", "--backend", "triton", "--shapes", "M=64,N=1024"]
    args += ["--device", "cpu", "--rounds", "4", "--against", "override", "--override", '{"keep_exp": true}']
    assert main([*args, "--adopt", str(path), "--out", str(out)]) == 0
    assert checked == [{"keep_exp": True}]
    assert not path.exists()
    (row,) = json.loads(out.read_text())
    assert row["adopted"] is False and "fails the float64 check: rel_err 0.5" in row["adoption_reason"]


def test_adopt_is_refused_before_any_round(monkeypatch, tmp_path, capsys) -> None:
    """--adopt needs --against override, and a store file it would not damage (another GPU's is
    refused); both are checked before the first round."""
    from tilearena.autotune import store
    from tilearena.bench import timing_check

    def no_rounds(device, timing="default"):
        raise AssertionError("timed before refusing")

    monkeypatch.setattr(timing_check, "_gpu_timer", no_rounds)
    monkeypatch.setattr(store, "gpu_record", lambda device=None: dict(FAKE_GPU))
    path = tmp_path / "h100-sxm.json"
    base = ["timing-check", "--op", "softmax", "--backend", "eager", "--shapes", "M=2,N=32"]
    base += ["--device", "cpu"]
    for against in ([], ["--against", "steady"], ["--against", "clean-flush"]):
        assert main([*base, *against, "--adopt", str(path)]) != 0
        err = capsys.readouterr().err
        assert "--adopt: only with --against override" in err
    other = {**FAKE_GPU, "name": "NVIDIA H200", "slug": "h200"}
    store.write_atomic(str(path), {"schema": store.SCHEMA, "gpu": other, "entries": []})
    override = ["--against", "override", "--override", '{"variant": "x"}']
    assert main([*base, *override, "--adopt", str(path)]) != 0
    assert "--adopt: " in capsys.readouterr().err and "H200" in path.read_text()
    path.write_text("{not json")
    with pytest.warns(store.BakedStoreWarning):
        assert main([*base, *override, "--adopt", str(path)]) != 0
    assert "not a readable baked store" in capsys.readouterr().err
    # --min-gain: a fraction below one half, and only where something is adopted.
    for bad in ("-0.01", "0.5", "nan"):
        assert main([*base, *override, "--adopt", str(tmp_path / "new.json"), "--min-gain", bad]) != 0
        assert "--min-gain: expected a fraction in [0, 0.5)" in capsys.readouterr().err
    assert main([*base, *override, "--min-gain", "0.004"]) != 0
    assert "--min-gain: only with --adopt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "against, extra", [("hot-start", {"hot_start": True}), ("long-window", {"span_ms": 1000.0})]
)
def test_window_methods_reach_measure_and_rounds_keep_their_windows(against, extra, tmp_path) -> None:
    """--against hot-start / long-window on a real (CPU) measure: the JSON keeps each round's
    within-window spread, and --series 1 the first round's samples of each method."""
    from tilearena.bench import timing_check

    assert timing_check.METHOD_OPTIONS[against] == {"steady": True, **extra}
    out = tmp_path / "w.json"
    args = ["timing-check", "--op", "rmsnorm", "--backend", "eager", "--shapes", "M=4,N=64"]
    args += ["--rounds", "4", "--device", "cpu"]
    assert main([*args, "--against", against, "--series", "1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    for method in ("default", against):
        assert len(row[method]["window_iqr"]) == 2 and all(v >= 0 for v in row[method]["window_iqr"])
        (series,) = row[method]["series_ms"]
        assert len(series) == 5 and all(v > 0 for v in series)  # the CPU timer's 5 samples
    assert main([*args, "--series", "5"]) != 0


def test_rounds_keep_each_window_s_gpu_state_and_spread(monkeypatch) -> None:
    """Each round's SM clock and power (``Timing.gpu_state``) and IQR / median reach the JSON."""
    from tilearena.bench import timing, timing_check

    clocks = iter([1980.0, 1500.0, 1410.0, 1440.0])

    def fake_measure(fn, device, repeats=30, graph_fns=None, **options):
        fn()
        return timing.Timing(2.0, 0.1, repeats, "cuda-events", {"sm_clock_mhz": next(clocks)})

    monkeypatch.setattr(timing, "measure", fake_measure)
    job = Job("rmsnorm", "eager", {"M": 2, "N": 32}, "float32", None, None, against="hot-start")
    run_rounds([job], timing_check._gpu_timer("cpu", "clean"), rounds=4)
    summary = job.summary()
    assert [s["sm_clock_mhz"] for s in summary["default"]["gpu_state"]] == [1980.0, 1410.0]
    assert [s["sm_clock_mhz"] for s in summary["hot-start"]["gpu_state"]] == [1500.0, 1440.0]
    assert summary["default"]["window_iqr"] == [0.05, 0.05]
    assert "gpu_states" not in summary and "series_ms" not in summary["default"]
