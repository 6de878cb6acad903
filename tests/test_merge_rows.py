"""``.ci/queue/merge_matmul_rows.py``: a matmul pass benched in parts becomes ``results.json``'s
matmul rows only as one run of one commit, one card and one timing mode."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "queue" / "merge_matmul_rows.py"


def _load():
    spec = importlib.util.spec_from_file_location("merge_matmul_rows_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(shapes: list[int], copy_gbps: float) -> dict:
    return {
        "schema": 1,
        "env": {"commit": "e417ff3" + "0" * 33, "gpu_uuid": "card-1", "timing": {"mode": "sustained"}},
        "ceilings": {"copy_gbps": copy_gbps},
        "rows": [
            {"op": "matmul", "backend": "triton", "shape": {"M": m}, "dtype": "bfloat16"} for m in shapes
        ],
        "agreement": [{"op": "matmul", "shape": {"M": m}} for m in shapes],
    }


def test_parts_of_one_pass_join_and_replace_the_matmul_rows() -> None:
    merge = _load()
    old = {
        "schema": 1,
        "env": {"commits": {"rmsnorm,softmax (--shapes sweep)": "cef31a3"}},
        "ceilings": {"copy_gbps": 1.0},
        "rows": [{"op": "rmsnorm", "backend": "triton"}, {"op": "matmul", "backend": "triton"}],
        "agreement": [{"op": "rmsnorm"}, {"op": "matmul"}],
    }
    joined = merge.join([_run([1, 16], 3042.2), _run([1024], 3042.4)])
    assert [r["shape"]["M"] for r in joined["rows"]] == [1, 16, 1024]
    assert joined["ceilings"] == {"copy_gbps": 3042.2}
    assert joined["ceilings_matmul_runs"] == [{"copy_gbps": 3042.2}, {"copy_gbps": 3042.4}]
    merged = merge.merge(old, joined, "28")
    assert [r["op"] for r in merged["rows"]] == ["rmsnorm", "matmul", "matmul", "matmul"]
    assert {r.get("commit") for r in merged["rows"][1:]} == {"e417ff3"}
    assert merged["env"]["commits"]["matmul (--shapes sweep,llama)"] == "e417ff3"
    assert len(merged["agreement"]) == 4 and merged["ceilings_matmul_runs"][1] == {"copy_gbps": 3042.4}
    assert merge.join([_run([1], 1.0)]) == _run([1], 1.0)  # one run stands as it is


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: run["env"].update(commit="other"), "env.commit differs"),
        (lambda run: run["env"].update(gpu_uuid="card-2"), "env.gpu_uuid differs"),
        (lambda run: run["env"].update(timing={"mode": "hot"}), "timing modes differ"),
        (lambda run: run["env"]["timing"].update(isolated=True), "some timed each backend in a worker"),
        (lambda run: run["rows"][0]["shape"].update(M=1), "is in more than one of them"),
    ],
)
def test_parts_of_different_passes_are_refused(change, message) -> None:
    merge = _load()
    second = _run([1024], 1.0)
    change(second)
    with pytest.raises(SystemExit, match=message):
        merge.join([copy.deepcopy(_run([1, 16], 1.0)), second])


def _older(shapes: list[int], backends: tuple[str, ...] = ("triton", "cublas")) -> dict:
    run = _run(shapes, 3000.0)
    run["env"].update(commit="abc1234" + "0" * 33, gpu_uuid="card-0")
    run["rows"] = [
        {"op": "matmul", "backend": b, "shape": {"M": m}, "dtype": "bfloat16"}
        for m in shapes
        for b in backends
    ]
    run["agreement"] = [{"op": "matmul", "shape": {"M": m}, "dtype": "bfloat16"} for m in shapes]
    return run


def test_shapes_a_pass_did_not_reach_keep_an_older_runs_rows_with_its_tags() -> None:
    merge = _load()
    new = _run([1, 16], 3042.2)
    for entry in new["agreement"]:
        entry["dtype"] = "bfloat16"
    filled = merge.fill(new, [_older([16, 1024]), _older([1024, 4096])])
    # Shape 16 is the new run's; 1024 comes whole (both backends) from the first older run that
    # has it, 4096 from the second; every older row carries its own run's commit and card.
    assert [(r["shape"]["M"], r["backend"], r.get("commit")) for r in filled["rows"]] == [
        (1, "triton", None), (16, "triton", None),
        (1024, "triton", "abc1234"), (1024, "cublas", "abc1234"),
        (4096, "triton", "abc1234"), (4096, "cublas", "abc1234"),
    ]
    assert {r.get("gpu_uuid") for r in filled["rows"][2:]} == {"card-0"}
    assert [a["shape"]["M"] for a in filled["agreement"]] == [1, 16, 1024, 4096]
    assert filled["filled_from"] == [
        {"commit": "abc1234", "gpu_uuid": "card-0", "shapes": 1},
        {"commit": "abc1234", "gpu_uuid": "card-0", "shapes": 1},
    ]
    assert [c["copy_gbps"] for c in filled["ceilings_matmul_runs"]] == [3042.2, 3000.0, 3000.0]
    old = {
        "schema": 1,
        "env": {"commits": {"rmsnorm,softmax (--shapes sweep)": "cef31a3"}},
        "ceilings": {},
        "rows": [{"op": "rmsnorm"}],
        "agreement": [],
    }
    merged = merge.merge(old, filled, "29")
    # The new run's rows get its tags; the filled rows keep theirs.
    assert [(r.get("commit"), r.get("gpu_uuid")) for r in merged["rows"][1:4]] == [
        ("e417ff3", "card-1"), ("e417ff3", "card-1"), ("abc1234", "card-0")
    ]
    assert merged["env"]["commits"]["matmul (1 shapes not rebenched at e417ff3)"] == "abc1234"
    assert "an earlier run's at abc1234 (card card-0)" in merged["env"]["note"]
    assert merged["matmul_filled_from"] == filled["filled_from"]
    assert merge.fill(new, [_older([1, 16])]) is new  # nothing to fill: the new run stands


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: run.update(schema=2), "schema"),
        (lambda run: run["rows"].append({"op": "rmsnorm", "shape": {}, "dtype": "x"}), "matmul rows only"),
        (lambda run: run["env"].update(timing={"mode": "hot"}), "timing mode"),
        (lambda run: run["env"]["timing"].update(isolated=True), "isolated .* True, the new run's False"),
        (lambda run: run["env"].update(commit=""), "env.commit is empty"),
    ],
)
def test_an_older_run_unlike_the_pass_is_refused(change, message) -> None:
    merge = _load()
    older = _older([1024])
    change(older)
    with pytest.raises(SystemExit, match=message):
        merge.fill(_run([1], 1.0), [older])
