"""``tilearena tune-efficiency``: pairing quick and reference winners, and the head-to-head."""

from __future__ import annotations

import json

import pytest
from tilearena.autotune.efficiency import compare, declared_size, pair_records

from tilearena.cli import main

SHAPE = {"M": 128, "N": 6144, "K": 4096, "BT": 1}


def record(config: dict, time_ms: float, shape: dict = SHAPE, evaluated: int = 100, **extra) -> dict:
    return {
        "op": "matmul",
        "backend": "triton",
        "dtype": "bfloat16",
        "shape": shape,
        "evaluated": evaluated,
        "seconds": 20.0,
        "strategy": "guided",
        "space_size": None,
        "winner": {"config": config, "time_ms": time_ms},
        **extra,
    }


def test_each_quick_winner_meets_the_fastest_reference_of_its_job() -> None:
    other = {**SHAPE, "M": 1}
    quick = [
        record({"a": 1}, 0.025),
        record({"a": 2}, 0.010, shape=other),
        {**record({}, 1.0), "winner": None},
    ]
    references = [
        record({"a": 3}, 0.0245, evaluated=450),
        record({"a": 4}, 0.0240, evaluated=500, dtype="bf16"),  # same job, faster in its run
        record({"a": 5}, 0.0100, shape={**SHAPE, "M": 16}),  # no quick record of this job
    ]
    pairs = pair_records(quick, references)
    assert [(q["winner"]["config"], r["winner"]["config"]) for q, r in pairs] == [({"a": 1}, {"a": 4})]


def test_the_ratio_comes_from_the_head_to_head_not_from_either_run() -> None:
    pairs = pair_records([record({"a": 1}, 0.0250)], [record({"a": 4}, 0.0240, evaluated=500)])
    asked = []

    def timer(job, configs):
        asked.append([dict(c) for c in configs])
        return [0.0245, 0.0243], None

    (row,) = compare(pairs, timer)
    assert asked == [[{"a": 1}, {"a": 4}]]
    assert row.ratio == pytest.approx(0.0245 / 0.0243)
    assert (row.quick_evaluated, row.reference_evaluated) == (100, 500)
    # The same config on both sides is timed once; a failed timing gives no ratio.
    (same,) = compare(
        pair_records([record({"a": 1}, 0.02)], [record({"a": 1}, 0.03)]), lambda j, c: ([0.02], None)
    )
    assert same.ratio == 1.0
    (failed,) = compare(pairs, lambda j, c: ([None, 0.024], "wrong: rel_err 0.5"))
    assert failed.ratio is None and failed.error


def test_the_space_size_is_the_listed_count_or_the_declared_product() -> None:
    assert declared_size(record({}, 1.0, space_size=256)) == 256
    triton = declared_size(record({}, 1.0))
    assert triton is not None and triton > 100_000  # the Triton matmul's declared product


def test_cli_refuses_logs_with_nothing_to_compare(tmp_path, capsys) -> None:
    quick, reference = tmp_path / "q.json", tmp_path / "r.json"
    quick.write_text(json.dumps([record({"a": 1}, 0.02)]))
    reference.write_text(json.dumps([record({"a": 1}, 0.02, shape={**SHAPE, "M": 2})]))
    assert main(["tune-efficiency", str(quick), str(reference)]) != 0
    assert "quick, reference: no job of the quick log" in capsys.readouterr().err
    assert main(["tune-efficiency", str(quick), str(reference), "--rounds", "1"]) != 0
    assert "--rounds: expected at least 3" in capsys.readouterr().err
