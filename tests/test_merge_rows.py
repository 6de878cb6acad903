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
        (lambda run: run["rows"][0]["shape"].update(M=1), "is in more than one of them"),
    ],
)
def test_parts_of_different_passes_are_refused(change, message) -> None:
    merge = _load()
    second = _run([1024], 1.0)
    change(second)
    with pytest.raises(SystemExit, match=message):
        merge.join([copy.deepcopy(_run([1, 16], 1.0)), second])
