"""The harness: timing statistics, the results file, numerics, and a CPU bench run end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from tilearena.bench import numerics, results, runner, timing
from tilearena.kernels import registry


def test_cpu_timer_reports_median_and_iqr() -> None:
    t = timing.time_cpu(lambda: time.sleep(0.002), repeats=8, warmup=1)
    assert t.method == "cpu-timer" and t.samples == 8
    assert 1.5 < t.median_ms < 50
    assert t.iqr_ms >= 0


def test_quartiles_of_known_samples() -> None:
    t = timing._summary([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], "cpu-timer")
    assert t.median_ms == 5.0
    assert t.iqr_ms == pytest.approx(4.0)


def test_noise_floor_is_relative_spread() -> None:
    a = timing.Timing(1.0, 0.0, 20, "cuda-events")
    b = timing.Timing(1.05, 0.0, 20, "cuda-events")
    assert timing.noise_floor(a, b) == pytest.approx(0.05)


def test_compare_catches_nan_inf_and_error() -> None:
    ref = torch.ones(4, 4, dtype=torch.float64)
    good = numerics.compare(torch.ones(4, 4), ref, 1e-6)
    assert good.ok and good.rel_err == 0.0
    poisoned = torch.ones(4, 4)
    poisoned[3, 2] = float("nan")
    bad = numerics.compare(poisoned, ref, 1e-6)
    assert not bad.ok and "1 non-finite" in bad.error and "14" in bad.error
    off = numerics.compare(torch.full((4, 4), 1.1), ref, 1e-3)
    assert not off.ok and off.rel_err == pytest.approx(0.1, rel=1e-5)
    assert numerics.compare(torch.ones(3), ref, 1e-3).error.startswith("shape")


def test_compare_in_chunks_matches_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numerics, "_CHUNK", 7)
    ref = torch.randn(10, 13, dtype=torch.float64)
    out = (ref + 1e-3 * torch.randn_like(ref)).float()
    chunked = numerics.compare(out, ref, 1.0)
    direct = float(torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref))
    assert chunked.rel_err == pytest.approx(direct, rel=1e-9)


def test_agreement_matrix_is_pairwise_relative_difference() -> None:
    a = torch.ones(8)
    names, matrix = numerics.agreement_matrix({"a": a, "b": a * 1.01, "broken": "RuntimeError: x"})
    assert names == ["a", "b", "broken"]
    assert matrix[0][0] == 0.0
    assert matrix[0][1] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert matrix[0][2] is None and matrix[2][2] is None


def test_results_file_is_rewritten_after_every_row(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    f = results.ResultsFile(path, {"gpu": "cpu", "commit": "abc"}, {"copy_gbps": None})
    assert json.loads(path.read_text())["rows"] == []
    row = {k: None for k in results.ROW_KEYS} | {
        "op": "softmax",
        "backend": "x",
        "ok": True,
        "ms": float("nan"),
    }
    f.add_row(row)
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == 1 and len(on_disk["rows"]) == 1
    assert on_disk["rows"][0]["ms"] is None  # NaN is not JSON: it becomes null
    with pytest.raises(ValueError, match="row: missing keys"):
        f.add_row({"op": "softmax"})
    assert results.load(path)["env"]["commit"] == "abc"
    assert not list(path.parent.glob("*.tmp"))


def test_bench_on_cpu_end_to_end(tmp_path: Path) -> None:
    """eager and the Triton interpreter on one quick shape; an unavailable backend is a row, not a crash."""
    op_spec = registry.spec("softmax")
    shape = dict(op_spec.shapes["quick"][2])
    plan_args = (op_spec, ["eager", "triton", "quack"], shape, torch.float32)
    out = results.ResultsFile(tmp_path / "results.json", {"gpu": "cpu"}, {})
    lines: list[str] = []
    runner.bench_shape(*plan_args, "cpu", {}, out, advance=lambda label: None, log=lines.append)
    rows = {r["backend"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    # One line says where the shape's seconds went: 3 backends checked, the 2 available timed.
    (line,) = lines
    assert line.startswith(f"softmax float32 {shape}: ") and "checks of 3 backends" in line
    assert "timing 2 rows" in line
    assert rows["eager"]["ok"] and rows["eager"]["ms"] > 0
    assert rows["triton"]["ok"] and rows["triton"]["rel_err"] < op_spec.tolerance[torch.float32]
    # Each timed row says how many measurements its median came from (2 to MAX_MEASUREMENTS).
    assert all(2 <= rows[name]["measurements"] <= runner.MAX_MEASUREMENTS for name in ("eager", "triton"))
    assert not rows["quack"]["ok"] and rows["quack"]["error"].startswith("unavailable")
    agreement = json.loads((tmp_path / "results.json").read_text())["agreement"]
    assert agreement and set(agreement[0]["backends"]) == {"eager", "triton"}
    console = Console(record=True, width=160)
    runner.print_tables(json.loads((tmp_path / "results.json").read_text()), console)
    assert "softmax" in console.export_text()


def test_speed_uses_the_right_ceiling() -> None:
    t = timing.Timing(1.0, 0.0, 20, "cuda-events")
    cost = registry.Cost(bytes=3 * 10**9, flops=10**12)
    memory = runner._speed(t, cost, "memory", {"copy_gbps": 3000.0, "matmul_bf16_tflops": 800.0})
    assert memory["gbps"] == pytest.approx(3000.0) and memory["sol_pct"] == pytest.approx(100.0)
    compute = runner._speed(t, cost, "compute", {"copy_gbps": 3000.0, "matmul_bf16_tflops": 800.0})
    assert compute["tflops"] == pytest.approx(1000.0) and compute["sol_pct"] == pytest.approx(125.0)
    assert compute["sol_bound"] == "compute"
    # A decode-shaped matmul moves many bytes for few flops: memory is its floor.
    decode = runner._speed(t, registry.Cost(bytes=3 * 10**9, flops=10**9), "compute",
                           {"copy_gbps": 3000.0, "matmul_bf16_tflops": 800.0})
    assert decode["sol_bound"] == "memory" and decode["sol_pct"] == pytest.approx(100.0)


def test_cli_bench_writes_results_on_cpu(tmp_path: Path) -> None:
    from tilearena.cli import main

    assert main(["bench", "--op", "softmax", "--backend", "eager", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["env"]["gpu"] == "cpu" and all(r["ok"] for r in data["rows"])
    assert len(data["rows"]) == len(registry.spec("softmax").shapes["quick"])
    assert main(["bench", "--op", "no-such-op", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--op", "matmul", "--backend", "tritn"], "--backend: matmul has no backend 'tritn'; expected"),
        (["--op", "matmul", "--shapes", "nonsense"], "--shapes: matmul has no shape set 'nonsense'"),
        (["--op", "matmul", "--shapes", "M=1,N=8"], "is not a shape of matmul: matmul takes the dimensions"),
        (["--op", "matmul", "--shapes", "M=1,N=8,K=0,BT=0"], "K is a size, at least 1, got 0"),
        (["--op", "matmul", "--shapes", "M=1,N=8,K=8,BT=3"], "BT is a switch, 0 or 1, got 3"),
        (["--op", "rmsnorm,softmax", "--shapes", "M=1,N=8,K=8,BT=0"], "not a shape of any of rmsnorm,"),
        (["--op", "softmax", "--warm-workers", "-1"], "--warm-workers: expected a count >= 0, got -1"),
        (["--op", ","], "--op: expected comma-separated op names, got ','"),
    ],
)
def test_cli_bench_refuses_what_it_would_not_measure(tmp_path: Path, capsys, arguments, message) -> None:
    """A backend, shape set, shape or count the bench cannot honour is an error naming the
    argument, before any work (no results file), on a CPU too: a bench must not measure less
    than it was asked to without a word (a misspelt backend once ran no backend at all)."""
    from tilearena.cli import main

    assert main(["bench", *arguments, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_cli_bench_skips_only_what_some_ops_lack(tmp_path: Path) -> None:
    """With several ops, a backend or shape that only some of them have runs on those."""
    from tilearena.cli import main

    assert main(["bench", "--op", "softmax,matmul", "--backend", "eager", "--shapes", "M=3,N=8",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows and {r["op"] for r in rows} == {"softmax", "matmul"}  # the CPU runs the quick set
    assert main(["bench", "--op", "matmul,softmax", "--backend", "liger", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows and {(r["op"], r["backend"]) for r in rows} == {("softmax", "liger")}


@pytest.mark.parametrize("command", [["baked-check"], ["report", "-o", "OUT"], ["tune-efficiency", "OTHER"]])
def test_cli_names_a_file_it_cannot_read(tmp_path: Path, capsys, command) -> None:
    """A missing or malformed JSON file given to a command is an error naming the file and where
    the JSON broke, not a traceback."""
    from tilearena.cli import main

    broken = tmp_path / "broken.json"
    broken.write_text('{"rows": [1,')
    missing = tmp_path / "missing.json"

    def argv(path: Path) -> list[str]:
        head, *rest = command
        rest = [str(tmp_path / "out") if a == "OUT" else str(broken) if a == "OTHER" else a for a in rest]
        return [head, str(path), *rest]

    assert main(argv(missing)) == 2
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err
    assert main(argv(broken)) == 2
    assert f"{broken} is not JSON (Expecting value, line 1 column 13)" in capsys.readouterr().err


def _time_alone_with(monkeypatch, medians: list[float]) -> tuple[timing.Timing, float, int]:
    """``runner._time_alone`` on a CPU row whose measurements read ``medians`` in turn (one more
    measurement than given would raise): the combined timing, its noise floor and how many
    measurements were taken."""
    from tilearena.kernels import registry

    remaining = iter(medians)
    calls = []

    def fake_measure(fn, device, graph_fns=None, repeats=30, steady=False, flush="write", **_):
        calls.append(device)
        return timing.Timing(next(remaining), 0.01, repeats, "cpu-timer")

    monkeypatch.setattr(runner, "measure", fake_measure)
    spec = registry.spec("softmax")
    b = registry.backend("softmax", "eager")
    args = spec.make_inputs({"M": 2, "N": 8}, torch.float32, "cpu", 0)
    combined, noise = runner._time_alone(spec, b, args, {"M": 2, "N": 8}, torch.float32, "cpu", 0)
    return combined, noise, len(calls)


def test_a_disturbed_measurement_is_outvoted_by_the_median(monkeypatch) -> None:
    """Two measurements 100% apart leave the median unknown: the row is measured until its
    median's standard error is under the tuner's FINAL_MEDIAN_ERROR or MAX_MEASUREMENTS are
    taken, and the one disturbed measurement does not move the median of the rest."""
    medians = [1.0, 2.0, 1.02, 1.01, 1.0, 1.01]
    timing, noise, calls = _time_alone_with(monkeypatch, medians)
    assert calls == runner.MAX_MEASUREMENTS == len(medians)
    assert timing.median_ms == pytest.approx(1.01)
    assert noise == pytest.approx(1.0)  # (max - min) / min: the disturbance stays on record


def test_a_bimodal_kernel_reads_the_median_of_its_levels_as_the_tuner_does(monkeypatch) -> None:
    """A kernel whose windows read one of two levels 6 % apart (Triton 128x4096x4096 at 7c42e99):
    the pair rule kept one level; the median of six reads what the tuner's final reads, the
    same rule's median of the same rounds."""
    from tilearena.autotune.search import FINAL_MEDIAN_ERROR, median_error, relative_spread

    levels = [0.0193, 0.0182, 0.0193, 0.0182, 0.0182, 0.0193]
    timing, _, calls = _time_alone_with(monkeypatch, levels)
    assert calls == 6 and median_error(relative_spread(levels), 6) > FINAL_MEDIAN_ERROR
    assert timing.median_ms == pytest.approx(0.01875)


def test_measurements_are_added_one_round_at_a_time_until_the_median_is_known(monkeypatch) -> None:
    """3 % apart: a median of two is known to ~1.9 %, over the 1 % the tuner's finals hold their
    winners to; a third leaves it at ~1.1 %, a fourth that agrees settles it (~0.8 %), and no
    more are taken (one more than given would raise)."""
    timing, noise, calls = _time_alone_with(monkeypatch, [1.0, 1.03, 1.01, 1.01])
    assert calls == 4
    assert timing.median_ms == pytest.approx(1.01) and noise == pytest.approx(0.03)


def test_agreeing_measurements_are_not_retimed(monkeypatch) -> None:
    timing, noise, calls = _time_alone_with(monkeypatch, [1.0, 1.01])
    assert calls == 2
    assert abs(timing.median_ms - 1.005) < 1e-9 and abs(noise - 0.01) < 1e-9


#: What each --timing mode must ask of ``bench.timing.measure``: (steady, flush, hot_start,
#: span_ms, max_samples, graph_span_ms).
MEASURE_ASKED = {
    "default": (False, "write", False, None, None, None),
    "steady": (True, "write", False, None, None, None),
    "clean": (True, "read", False, None, None, None),
    "hot": (True, "read", True, None, None, 100.0),
    "sustained": (True, "read", True, 1000.0, 5000, 1000.0),
}
Asked = tuple[bool, str, bool, "float | None", "int | None", "float | None"]


def _recording_measure(asked: list[Asked]):
    """A stand-in for ``bench.timing.measure`` that runs the call once and records the
    (steady, flush, hot_start, span_ms, max_samples, graph_span_ms) it was asked for."""
    from tilearena.bench.timing import Timing

    def fake_measure(
        fn, device, graph_fns=None, repeats=30, steady=False, flush="write", hot_start=False,
        span_ms=None, max_samples=None, graph_span_ms=None, method="auto",
    ):
        fn()
        assert method == "auto"  # nothing baked for these rows: the timer picks its method
        asked.append((steady, flush, hot_start, span_ms, max_samples, graph_span_ms))
        return Timing(1.0, 0.0, 20, "cpu-timer")

    return fake_measure


@pytest.mark.parametrize("timing", list(MEASURE_ASKED))
def test_bench_times_every_row_the_way_it_was_asked(monkeypatch, tmp_path, timing) -> None:
    """--timing reaches every measurement, the ceilings' too, and the run's env records it."""
    from rich.console import Console
    from tilearena.bench import environment, runner

    asked: list[Asked] = []
    fake_measure = _recording_measure(asked)

    monkeypatch.setattr(runner, "measure", fake_measure)
    ceilings = []
    monkeypatch.setattr(
        runner, "measure_ceilings", lambda device, timing="default": ceilings.append(timing) or {}
    )
    data = runner.run_bench(
        ["softmax"], ["eager"], ["quick"], [torch.float32], tmp_path, Console(quiet=True), timing=timing
    )
    assert asked and set(asked) == {MEASURE_ASKED[timing]} and ceilings == [timing]
    assert data["env"]["timing"]["mode"] == timing
    assert data["env"]["timing"]["flush"] == "n/a"  # a CPU run flushes nothing
    with pytest.raises(ValueError, match="timing: expected one of"):
        runner.run_bench(
            ["softmax"], ["eager"], ["quick"], [torch.float32], tmp_path, Console(quiet=True), timing="x"
        )
    assert environment.measure_ceilings("cpu", timing=timing)["copy_gbps"] is None
    with pytest.raises(ValueError, match="timing: expected one of"):
        environment.measure_ceilings("cpu", timing="fast")


@pytest.mark.parametrize("timing", list(MEASURE_ASKED))
def test_ceilings_are_timed_the_way_the_run_is(monkeypatch, timing) -> None:
    """The copy and GEMM ceilings ask ``measure`` for the run's mode (on tiny stand-in tensors:
    the real ones are 1 GiB and 8192^2)."""
    from tilearena.bench import environment

    asked: list[Asked] = []
    fake_measure = _recording_measure(asked)

    monkeypatch.setattr(environment, "measure", fake_measure)
    monkeypatch.setattr(torch, "randn", lambda *shape, device=None, dtype=None: torch.ones(2, 2, dtype=dtype))
    environment._copy_bandwidth("cpu", timing)
    environment._gemm_tflops("cpu", timing)
    assert asked == [MEASURE_ASKED[timing]] * 2


@pytest.mark.parametrize("timing", list(MEASURE_ASKED))
def test_a_graph_timed_row_records_its_window(monkeypatch, tmp_path, timing) -> None:
    """A row timed by CUDA graph records how long its samples spanned (the mode's graph window;
    none without hot start), so baked-check can tell a final sampled over another window."""
    from rich.console import Console
    from tilearena.bench import runner
    from tilearena.bench.timing import Timing

    def graph_measure(fn, device, **kwargs):
        fn()
        return Timing(0.02, 0.0, 20, "cuda-graph")

    monkeypatch.setattr(runner, "measure", graph_measure)
    monkeypatch.setattr(runner, "measure_ceilings", lambda device, timing="default": {})
    data = runner.run_bench(
        ["softmax"], ["eager"], ["quick"], [torch.float32], tmp_path, Console(quiet=True), timing=timing
    )
    windows = {row.get("graph_window_ms") for row in data["rows"]}
    assert windows == {MEASURE_ASKED[timing][5]}, windows


@pytest.mark.parametrize("command", ["bench", "tune"])
def test_cli_timing_choices_are_the_timing_modes(command, capsys) -> None:
    from tilearena.cli import build_parser

    parser = build_parser()
    base = ["bench"] if command == "bench" else ["tune", "--op", "rmsnorm"]
    for mode in MEASURE_ASKED:
        assert parser.parse_args([*base, "--timing", mode]).timing == mode
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--timing", "fast"])
    assert "--timing" in capsys.readouterr().err


def test_bench_takes_named_sets_or_explicit_shapes() -> None:
    from tilearena.cli import _shape_sets

    assert _shape_sets("quick,sweep") == ["quick", "sweep"]
    assert _shape_sets("M=16,N=4096,K=4096,BT=1;M=1,N=8,K=8,BT=0") == [
        {"M": 16, "N": 4096, "K": 4096, "BT": 1},
        {"M": 1, "N": 8, "K": 8, "BT": 0},
    ]
    with pytest.raises(ValueError, match="--shapes: expected DIM=INT"):
        _shape_sets("M=16,N=big")


def test_backends_are_timed_in_interleaved_rounds(monkeypatch, tmp_path: Path) -> None:
    """Every backend's numerics first, then timing rounds A B C / C B A, so a drifting clock
    falls on all backends alike; a backend that fails to time keeps the others' rows."""
    from tilearena.bench import runner
    from tilearena.bench.timing import Timing

    order: list[str] = []
    timers: dict[int, str] = {}
    real_init = runner._RowTimer.__init__

    def init(self, op_spec, b, *rest, **kw):
        real_init(self, op_spec, b, *rest, **kw)
        timers[id(self)] = b.name

    def measure_once(self):
        name = timers[id(self)]
        order.append(name)
        if name == "compile":
            raise RuntimeError("boom")
        self.measurements.append(Timing(1.0, 0.0, 20, "cpu-timer"))

    monkeypatch.setattr(runner._RowTimer, "__init__", init)
    monkeypatch.setattr(runner._RowTimer, "measure_once", measure_once)
    op_spec = registry.spec("softmax")
    out = results.ResultsFile(tmp_path / "results.json", {"gpu": "cpu"}, {})
    names = ["eager", "compile", "triton"]
    shape = {"M": 4, "N": 64}
    runner.bench_shape(op_spec, names, shape, torch.float32, "cpu", {}, out, advance=lambda label: None)
    assert order == ["eager", "compile", "triton", "triton", "eager"]
    rows = {r["backend"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert rows["eager"]["ok"] and rows["triton"]["ok"] and rows["eager"]["ms"] == 1.0
    assert not rows["compile"]["ok"] and "boom" in rows["compile"]["error"]


def test_the_bench_asks_for_the_baked_method_even_when_the_baked_config_is_the_default(
    monkeypatch, tmp_path: Path
) -> None:
    """A baked entry whose config is empty (the kernel's default won) runs as config=None; the
    bench still times it by that entry's method (it skipped the question for such rows until
    session 25, and benched a graph-tuned TileLang GEMM with events)."""
    from tilearena.bench import runner
    from tilearena.bench.timing import Timing

    asked: list[tuple[str, object]] = []

    def baked_method(op, backend, args, shape, config):
        asked.append((backend, config))
        return "cuda-events"

    monkeypatch.setattr(runner, "baked_config", lambda *a: None)
    monkeypatch.setattr(runner, "baked_timing_method", baked_method)
    monkeypatch.setattr(
        runner._RowTimer,
        "measure_once",
        lambda self: self.measurements.append(Timing(1.0, 0.0, 20, "cuda-events")),
    )
    out = results.ResultsFile(tmp_path / "results.json", {"gpu": "cpu"}, {})
    shape = {"M": 4, "N": 64}
    spec = registry.spec("softmax")
    runner.bench_shape(spec, ["triton"], shape, torch.float32, "cpu", {}, out, advance=lambda label: None)
    assert asked == [("triton", None)]
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["ok"] and row["timing_method_from"] == "baked"


def test_a_bench_budget_starts_no_shape_the_slowest_so_far_would_carry_past_it(monkeypatch, tmp_path) -> None:
    """Each shape "takes" 10 s of a fake clock: with --budget 25 the first two run (0 + 10 and
    10 + 10 are within 25), the third would end at 30, so it and the rest are listed as not
    measured, with the reason; a bad budget is refused before any work."""
    import types

    from rich.console import Console
    from tilearena.bench import runner

    clock = [0.0]
    measured: list[dict] = []

    def fake_bench_shape(op_spec, names, shape, dtype, *args, **kwargs) -> None:
        measured.append(dict(shape))
        clock[0] += 10.0

    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(runner, "bench_shape", fake_bench_shape)
    monkeypatch.setattr(runner, "measure_ceilings", lambda device, timing="default": {})
    # A machine without a GPU benches the quick shapes, whatever it is asked for.
    shapes = [dict(s) for s in registry.spec("softmax").shapes["quick"]]
    assert len(shapes) >= 3
    plan = (["softmax"], ["eager"], ["quick"], [torch.float32], tmp_path, Console(quiet=True))
    data = runner.run_bench(*plan, budget_s=25.0)
    assert measured == shapes[:2]
    left = data["not_measured"]
    assert [s["shape"] for s in left["shapes"]] == shapes[2:] and left["reason"].startswith("--budget 25 s")
    assert json.loads((tmp_path / "results.json").read_text())["not_measured"] == left
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="budget: expected seconds > 0"):
            runner.run_bench(*plan, budget_s=bad)


@given(
    input_bytes=st.integers(min_value=0, max_value=1 << 36),
    l2_bytes=st.integers(min_value=1 << 20, max_value=1 << 28),
)
def test_graph_timing_rotates_over_just_enough_copies_to_outrun_the_l2(
    input_bytes: int, l2_bytes: int
) -> None:
    """One rule for the bench's and the tuner's graph timing: the fewest copies whose total is
    at least ROTATION_L2_MULTIPLE x the L2, within [1, MAX_ROTATED_COPIES]."""
    from tilearena.bench.timing import MAX_ROTATED_COPIES, ROTATION_L2_MULTIPLE, rotated_copy_count

    copies = rotated_copy_count(input_bytes, l2_bytes)
    assert 1 <= copies <= MAX_ROTATED_COPIES
    target = ROTATION_L2_MULTIPLE * l2_bytes
    if copies < MAX_ROTATED_COPIES:
        assert copies * max(1, input_bytes) >= target
    if copies > 1:
        assert (copies - 1) * max(1, input_bytes) < target


def test_a_timing_method_is_checked_before_anything_is_timed() -> None:
    with pytest.raises(ValueError, match="method: expected one of"):
        timing.measure(lambda: None, "cpu", method="graph")
    # Graph replay needs the rotated calls to replay; the check comes before any CUDA call.
    with pytest.raises(ValueError, match="method: 'cuda-graph' times replays of graph_fns"):
        timing.time_cuda(lambda: None, method="cuda-graph")
    with pytest.raises(ValueError, match="method: expected one of"):
        timing.time_cuda(lambda: None, method="events")


def test_a_row_keeps_one_timing_method_the_baked_one_or_its_first_pick(monkeypatch) -> None:
    """Every measurement of a row uses one method: the baked entry's where there is one (the
    way the tuner timed that config), else the timer's first pick; graph replay pinned where
    there is nothing to replay (no rotated copies) falls back to events."""
    spec = registry.spec("softmax")
    backend = registry.backend("softmax", "eager")
    args = spec.make_inputs({"M": 4, "N": 32}, torch.float32, "cpu", 0)
    asked: list[str] = []

    def fake_measure(fn, device, graph_fns=None, repeats=30, method="auto", **_):
        fn()
        asked.append(method)
        return timing.Timing(1.0, 0.0, repeats, "cuda-events" if method == "auto" else method)

    monkeypatch.setattr(runner, "measure", fake_measure)

    def two_rounds(method: str | None) -> runner._RowTimer:
        shape = {"M": 4, "N": 32}
        timer = runner._RowTimer(spec, backend, args, shape, torch.float32, "cpu", 0, method=method)
        timer.measure_once()
        timer.measure_once()
        return timer

    assert two_rounds(None).method_from == "estimate" and asked == ["auto", "cuda-events"]
    asked.clear()
    assert two_rounds("cuda-events").method_from == "baked" and asked == ["cuda-events"] * 2
    asked.clear()
    two_rounds("cuda-graph")
    assert asked == ["cuda-events"] * 2


def test_only_an_entry_of_this_very_bucket_and_config_pins_the_benchs_timing_method(monkeypatch) -> None:
    from tilearena.autotune import store

    from tilearena import dispatch

    args = (torch.ones(4, 32),)
    shape = {"M": 4, "N": 32}
    config = {"BLOCK_N": 32, "num_warps": 4}
    entry = {
        "shape": dict(shape),
        "bucket": store.shape_bucket(shape),
        "config": dict(config),
        "timing_method": "cuda-graph",
    }
    monkeypatch.setattr(dispatch, "_device_of", lambda args: torch.device("cuda", 0))
    monkeypatch.setattr(store, "lookup_entry", lambda *a, **k: entry)

    def asked(config: dict | None) -> str | None:
        return dispatch.baked_timing_method("softmax", "triton", args, shape, config)

    assert asked(config) == "cuda-graph"
    # The call runs another config (the baked one failed its check here): its time is not the
    # entry's, so neither is its method.
    assert asked(None) is None and asked({"BLOCK_N": 64, "num_warps": 4}) is None
    # An entry that baked the kernel's default (an empty config) is run as config=None.
    entry["config"] = {}
    assert asked(None) == "cuda-graph" and asked(config) is None
    entry["config"] = dict(config)
    # The nearest entry is another bucket's: its method was for another shape's time.
    neighbour = {"M": 4096, "N": 32}
    entry.update(shape=neighbour, bucket=store.shape_bucket(neighbour))
    assert asked(config) is None
    # An entry that does not say, and a lookup that fails, pin nothing.
    entry.update(shape=dict(shape), bucket=store.shape_bucket(shape))
    del entry["timing_method"]
    assert asked(config) is None
    monkeypatch.setattr(store, "lookup_entry", lambda *a, **k: 1 / 0)
    assert asked(config) is None
