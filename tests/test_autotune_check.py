"""``tilearena baked-check``: bench rows against the times the autotuner baked."""

from __future__ import annotations

import json

from tilearena.autotune import store
from tilearena.autotune.check import compare_with_baked

from tilearena.cli import main

GPU = {
    "name": "NVIDIA H100 80GB HBM3",
    "slug": "h100-sxm",
    "compute_capability": [9, 0],
    "driver": "580.0",
    "cuda": "13.0",
    "torch": "2.11",
    "dsl_versions": {"triton": "3.6.0"},
}


def baked_entry(shape: dict, time_ms: float, config: dict, backend: str = "triton") -> dict:
    return {
        "op": "rmsnorm",
        "backend": backend,
        "dtype": "bfloat16",
        "shape": shape,
        "config": config,
        "time_ms": time_ms,
        "noise": 0.01,
        "runner_ups": [],
    }


def bench_row(shape: dict, ms: float, config: dict | None, backend: str = "triton", ok: bool = True) -> dict:
    return {"op": "rmsnorm", "backend": backend, "dtype": "bfloat16", "shape": shape, "ms": ms,
            "config": config, "ok": ok, "commit": "abc1234"}


def test_rows_meet_the_entry_of_their_exact_shape_only() -> None:
    entries = [baked_entry({"M": 4096, "N": 8192}, 0.100, {"num_warps": 8})]
    rows = [
        bench_row({"M": 4096, "N": 8192}, 0.102, {"num_warps": 8}),
        bench_row({"M": 4096, "N": 8192}, 0.150, {"num_warps": 8}, backend="cute"),  # no entry
        bench_row({"M": 4096, "N": 8193}, 0.101, {"num_warps": 8}),  # same bucket, other shape
        bench_row({"M": 4096, "N": 8192}, 0.100, {"num_warps": 8}, ok=False),  # failed numerics
    ]
    (found,) = compare_with_baked(rows, entries)
    assert found.config_in_use and abs(found.ratio - 1.02) < 1e-9
    assert found.within(0.03) and not found.within(0.01)


def test_a_row_that_ran_another_config_is_not_counted_as_reproduced(tmp_path, capsys) -> None:
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [
            baked_entry({"M": 4096, "N": 8192}, 0.100, {"num_warps": 8}),
            baked_entry({"M": 8192, "N": 8192}, 0.200, {"num_warps": 8}),
        ],
        GPU,
        path,
    )
    results = tmp_path / "results.json"
    rows = [bench_row({"M": 4096, "N": 8192}, 0.101, {"num_warps": 8}),
            bench_row({"M": 8192, "N": 8192}, 0.300, {"num_warps": 4})]
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows}))
    # Only the first row ran its baked config, and it reproduces: the check passes.
    assert main(["baked-check", str(results), "--store", path]) == 0
    assert "1/1 rows running their baked config" in capsys.readouterr().out
    # A bench that stopped at its --budget before a shape cannot pass, and says why.
    left = {"reason": "--budget 60 s: stopped after 58 s",
            "shapes": [{"op": "rmsnorm", "shape": {"M": 1, "N": 8192}, "dtype": "bfloat16"}]}
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows, "not_measured": left}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    assert "1 bench shape(s) not measured (--budget 60 s: stopped after 58 s)" in capsys.readouterr().out
    assert main(["baked-check", str(results), "--store", path, "--op", "rmsnorm"]) == 1
    left["shapes"][0]["op"] = "softmax"  # another op's shape: not this check's business
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows, "not_measured": left}))
    assert main(["baked-check", str(results), "--store", path, "--op", "rmsnorm"]) == 0
    capsys.readouterr()
    rows[1]["config"] = {"num_warps": 8}  # now the slow row ran the baked config too
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    assert "1/2 rows" in capsys.readouterr().out


def test_bad_arguments_are_named(tmp_path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": []}))
    assert main(["baked-check", str(results), "--store", str(tmp_path / "missing.json")]) == 2
    assert "--store" in capsys.readouterr().err
    results.write_text(json.dumps([1, 2]))
    assert main(["baked-check", str(results), "--store", str(tmp_path / "missing.json")]) == 2
    assert "results" in capsys.readouterr().err
    assert main(["baked-check", str(results), "--tolerance", "0"]) == 2


def test_coverage_counts_bench_shapes_by_bucket_for_tunable_backends_only() -> None:
    from tilearena.autotune.check import coverage

    entries = [baked_entry({"M": 4096, "N": 8192}, 0.1, {"num_warps": 8})]
    rows = [
        bench_row({"M": 4096, "N": 8192}, 0.1, None),
        bench_row({"M": 4500, "N": 8192}, 0.1, None),  # same bucket: covered
        bench_row({"M": 4096, "N": 8192}, 0.1, None, ok=False),  # the same shape again
        bench_row({"M": 262144, "N": 256}, 0.1, None),  # not baked
        bench_row({"M": 4096, "N": 8192}, 0.1, None, backend="cute"),  # nothing baked for cute
        bench_row({"M": 4096, "N": 8192}, 0.1, None, backend="eager"),  # nothing to tune
    ]
    report = coverage(rows, entries, lambda op, backend: backend != "eager")
    assert report == {
        ("rmsnorm", "cute", "bfloat16"): (0, [{"M": 4096, "N": 8192}]),
        ("rmsnorm", "triton", "bfloat16"): (2, [{"M": 262144, "N": 256}]),
    }


def test_an_empty_baked_config_is_the_kernels_own_which_a_row_records_as_none() -> None:
    """TileLang's baked winner is often {} (the kernel's per-shape choice); the dispatcher passes
    no config then, and the row's config is None: the same kernel, so the row counts."""
    entries = [baked_entry({"M": 4096, "N": 8192}, 0.100, {}, backend="tilelang")]
    rows = [bench_row({"M": 4096, "N": 8192}, 0.1005, None, backend="tilelang")]
    (found,) = compare_with_baked(rows, entries)
    assert found.config_in_use
    other = [bench_row({"M": 4096, "N": 8192}, 0.1005, {"block_m": 64}, backend="tilelang")]
    (found,) = compare_with_baked(other, entries)
    assert not found.config_in_use


def test_rows_tuned_with_another_timing_mode_are_flagged(tmp_path, capsys) -> None:
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [
            {**baked_entry({"M": 4096, "N": 8192}, 0.100, {"num_warps": 8}), "timing": "clean"},
            baked_entry({"M": 8192, "N": 8192}, 0.200, {"num_warps": 8}),
        ],
        GPU,
        path,
    )
    (found_clean, found_default) = sorted(
        compare_with_baked(
            [bench_row({"M": 4096, "N": 8192}, 0.1, {"num_warps": 8}),
             bench_row({"M": 8192, "N": 8192}, 0.2, {"num_warps": 8})],
            store.read_file(path)["entries"],
        ),
        key=lambda r: r.shape["M"],
    )
    assert (found_clean.tuned_timing, found_default.tuned_timing) == ("clean", "default")
    results = tmp_path / "results.json"
    rows = [bench_row({"M": 4096, "N": 8192}, 0.101, {"num_warps": 8}),
            bench_row({"M": 8192, "N": 8192}, 0.201, {"num_warps": 8})]
    results.write_text(json.dumps({"env": {"gpu": GPU["name"], "timing": {"mode": "clean"}}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 0
    out = capsys.readouterr().out
    assert "1 of those rows were tuned with another --timing than this bench's (clean)" in out


def test_a_miss_at_another_sm_clock_is_told_apart_in_cycles(tmp_path, capsys, monkeypatch) -> None:
    """Both clocks recorded: the table shows them, and a miss explained by the clock alone (the
    same cycles) is counted as such; the bar itself stays on the time (exit code 1)."""
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps a narrow table's cells
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [
            {**baked_entry({"M": 4096, "N": 8192}, 1.000, {"num_warps": 8}), "sm_clock_mhz": 1800.0},
            {**baked_entry({"M": 8192, "N": 8192}, 2.000, {"num_warps": 8}), "sm_clock_mhz": 1800.0},
            baked_entry({"M": 16384, "N": 8192}, 4.000, {"num_warps": 8}),  # tuned before clocks were kept
        ],
        GPU,
        path,
    )
    rows = [
        # 6 % slower at a 6 % lower clock: the same cycles.
        {**bench_row({"M": 4096, "N": 8192}, 1.06, {"num_warps": 8}), "gpu_state": {"sm_clock_mhz": 1698.1}},
        # 6 % slower at the same clock: the kernel did more work.
        {**bench_row({"M": 8192, "N": 8192}, 2.12, {"num_warps": 8}), "gpu_state": {"sm_clock_mhz": 1800.0}},
        {**bench_row({"M": 16384, "N": 8192}, 4.4, {"num_warps": 8}), "gpu_state": {"sm_clock_mhz": 1800.0}},
    ]
    found = sorted(compare_with_baked(rows, store.read_file(path)["entries"]), key=lambda r: r.shape["M"])
    assert abs(found[0].cycles_ratio - 1.0) < 1e-3 and abs(found[1].cycles_ratio - 1.06) < 1e-9
    assert found[2].clock_ratio is None and found[2].cycles_ratio is None
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    out = capsys.readouterr().out
    assert "0/3 rows running their baked config within 3%" in out
    assert "1800/1698" in out
    assert "of the 2 rows outside 3% with both SM clocks recorded, 1 are within it in SM cycles" in out


def test_rows_timed_by_another_method_than_their_final_are_flagged(tmp_path, capsys, monkeypatch) -> None:
    """An entry records how its final was timed; a row timed the other way (graph replay against
    events) is shown and counted, and one with no method on record is not."""
    monkeypatch.setenv("COLUMNS", "240")
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [
            {**baked_entry({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}), "timing_method": "cuda-events"},
            {**baked_entry({"M": 8192, "N": 8192}, 0.020, {"num_warps": 8}), "timing_method": "cuda-graph"},
            baked_entry({"M": 16384, "N": 8192}, 0.100, {"num_warps": 8}),  # no method on record
        ],
        GPU,
        path,
    )
    rows = [
        {**bench_row({"M": 4096, "N": 8192}, 0.053, {"num_warps": 8}), "timing_method": "cuda-graph"},
        {**bench_row({"M": 8192, "N": 8192}, 0.020, {"num_warps": 8}), "timing_method": "cuda-graph"},
        {**bench_row({"M": 16384, "N": 8192}, 0.100, {"num_warps": 8}), "timing_method": "cuda-events"},
    ]
    found = sorted(compare_with_baked(rows, store.read_file(path)["entries"]), key=lambda r: r.shape["M"])
    assert [(r.tuned_method, r.bench_method) for r in found] == [
        ("cuda-events", "cuda-graph"), ("cuda-graph", "cuda-graph"), (None, "cuda-events")
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    out = capsys.readouterr().out
    assert "events/graph" in out and "graph/graph" in out and "?/events" in out
    assert "1 of those rows were timed by another method than their tuner's final (CUDA graph / events); " \
        "0 of them within 3%" in out


def test_rows_benched_on_another_card_than_their_entry_are_counted(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps a narrow console's lines
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [
            {**baked_entry({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}), "gpu_uuid": "GPU-aaaa"},
            {**baked_entry({"M": 8192, "N": 8192}, 0.100, {"num_warps": 8}), "gpu_uuid": "GPU-bbbb"},
            baked_entry({"M": 16384, "N": 8192}, 0.200, {"num_warps": 8}),  # card not on record
        ],
        GPU,
        path,
    )
    rows = [
        bench_row({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}),
        bench_row({"M": 8192, "N": 8192}, 0.110, {"num_warps": 8}),
        bench_row({"M": 16384, "N": 8192}, 0.200, {"num_warps": 8}),
    ]
    found = compare_with_baked(rows, store.read_file(path)["entries"], "GPU-aaaa")
    assert sorted((r.shape["M"], r.other_card) for r in found) == [
        (4096, False), (8192, True), (16384, False)
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"env": {"gpu": GPU["name"], "gpu_uuid": "GPU-aaaa"}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    assert (
        "entries timed on: 1 on the card this bench ran on (1 within 3%); 1 on another card (0 within 3%); "
        "1 on a card the entry does not record (1 within 3%)"
    ) in capsys.readouterr().out


def test_a_row_that_names_its_card_is_judged_by_it() -> None:
    """A results file joined from runs on several cards tags each row with its own card; that
    tag, not the file's env, decides whether the row's entry was timed on the bench's card."""
    entries = [
        {**baked_entry({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}), "gpu_uuid": "GPU-aaaa"},
        {**baked_entry({"M": 8192, "N": 8192}, 0.100, {"num_warps": 8}), "gpu_uuid": "GPU-bbbb"},
    ]
    rows = [
        bench_row({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}),  # ran where the file's env says
        {**bench_row({"M": 8192, "N": 8192}, 0.100, {"num_warps": 8}), "gpu_uuid": "GPU-bbbb"},
    ]
    found = compare_with_baked(rows, entries, "GPU-aaaa")
    assert sorted((r.shape["M"], r.bench_card, r.other_card) for r in found) == [
        (4096, "GPU-aaaa", False), (8192, "GPU-bbbb", False)
    ]


def test_rows_graph_timed_over_another_window_are_flagged(tmp_path, capsys, monkeypatch) -> None:
    """A graph-timed entry baked before entries kept their window was sampled over 100 ms; a
    --timing sustained bench (1 s graph windows since session 28) is not like for like with it,
    and baked-check says so; an entry that records 1 s, and event-timed rows, are not flagged."""
    monkeypatch.setenv("COLUMNS", "240")
    path = str(tmp_path / "h100-sxm.json")
    graph = {"timing": "sustained", "timing_method": "cuda-graph"}
    store.bake(
        [
            {**baked_entry({"M": 1024, "N": 8192}, 0.020, {"num_warps": 8}), **graph},  # before: 100 ms
            {**baked_entry({"M": 2048, "N": 8192}, 0.030, {"num_warps": 8}), **graph,
             "graph_window_ms": 1000.0},
            {**baked_entry({"M": 4096, "N": 8192}, 0.100, {"num_warps": 8}), "timing": "sustained",
             "timing_method": "cuda-events"},
        ],
        GPU,
        path,
    )
    rows = [
        {**bench_row({"M": 1024, "N": 8192}, 0.0201, {"num_warps": 8}), "timing_method": "cuda-graph",
         "graph_window_ms": 1000.0},
        {**bench_row({"M": 2048, "N": 8192}, 0.0301, {"num_warps": 8}), "timing_method": "cuda-graph",
         "graph_window_ms": 1000.0},
        {**bench_row({"M": 4096, "N": 8192}, 0.1001, {"num_warps": 8}), "timing_method": "cuda-events"},
    ]
    found = sorted(
        compare_with_baked(rows, store.read_file(path)["entries"], bench_timing="sustained"),
        key=lambda r: r.shape["M"],
    )
    assert [(r.tuned_window_ms, r.bench_window_ms, r.other_window) for r in found] == [
        (100.0, 1000.0, True), (1000.0, 1000.0, False), (None, None, False),
    ]
    # A row of a bench that ran before rows recorded their window: 100 ms, as that bench's were.
    (legacy,) = compare_with_baked(
        [{**rows[1], "graph_window_ms": None}], store.read_file(path)["entries"], bench_timing="sustained"
    )
    assert (legacy.tuned_window_ms, legacy.bench_window_ms, legacy.other_window) == (1000.0, 100.0, True)
    # A mode with no hot start gives graph replays no window at all.
    (bare,) = compare_with_baked([rows[0]], store.read_file(path)["entries"], bench_timing="steady")
    assert bare.bench_window_ms is None and not bare.other_window
    results = tmp_path / "results.json"
    env = {"gpu": GPU["name"], "timing": {"mode": "sustained"}}
    results.write_text(json.dumps({"env": env, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 0
    out = capsys.readouterr().out
    assert "1 of those rows were graph-timed over another window than their tuner's final" in out
    assert "graph/graph 100/1000 ms" in out


def test_rows_timed_in_a_worker_of_their_own_are_counted_apart(tmp_path, capsys, monkeypatch) -> None:
    """A row of ``bench --isolate`` records ``isolated``; baked-check counts those rows and how
    many of them reproduce, and a row without the field (older files) counts as in-process."""
    monkeypatch.setenv("COLUMNS", "240")
    path = str(tmp_path / "h100-sxm.json")
    store.bake(
        [baked_entry({"M": m, "N": 8192}, 0.050, {"num_warps": 8}) for m in (1024, 2048, 4096)], GPU, path
    )
    rows = [
        {**bench_row({"M": 1024, "N": 8192}, 0.050, {"num_warps": 8}), "isolated": True},
        {**bench_row({"M": 2048, "N": 8192}, 0.048, {"num_warps": 8}), "isolated": True},
        bench_row({"M": 4096, "N": 8192}, 0.050, {"num_warps": 8}),
    ]
    found = sorted(compare_with_baked(rows, store.read_file(path)["entries"]), key=lambda r: r.shape["M"])
    assert [r.bench_isolated for r in found] == [True, True, False]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"env": {"gpu": GPU["name"]}, "rows": rows}))
    assert main(["baked-check", str(results), "--store", path]) == 1
    assert (
        "2 of those rows were timed in a worker process of their own (bench --isolate), 1 in the bench "
        "process; 1 of the isolated within 3%"
    ) in capsys.readouterr().out
