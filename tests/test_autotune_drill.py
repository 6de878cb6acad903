"""The autotuner's failure drill: plugin backends reach the tuner's worker processes, and on a
GPU a tuning run over candidates that fault, hang and compute wrong values finishes, records
all three as failed and bakes the one correct config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def _plugin_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "TILEARENA_PLUGINS": "drill_plugin", "PYTHONPATH": path}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_plugins_register_backends_and_a_broken_plugin_only_warns() -> None:
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from tilearena.kernels import registry\n"
        "print(sorted(n for n in registry.backend_names('rmsnorm')))\n"
    )
    env = _plugin_env()
    listed = _python(code, env)
    assert listed.returncode == 0, listed.stderr
    assert "'drill'" in listed.stdout
    env["TILEARENA_PLUGINS"] = "drill_plugin,no_such_plugin_module"
    broken = _python(code, env)
    assert broken.returncode == 0, broken.stderr
    assert "'drill'" in broken.stdout and "'triton'" in broken.stdout
    assert "TILEARENA_PLUGINS: could not import 'no_such_plugin_module'" in broken.stderr


@pytest.mark.gpu
def test_tuning_records_fault_hang_and_wrong_candidates_as_failed(tmp_path: Path) -> None:
    store = tmp_path / "store.json"
    command = [
        sys.executable,
        "-c",
        "import sys; from tilearena.cli import main; sys.exit(main())",
        "tune",
        "--op",
        "rmsnorm",
        "--backend",
        "drill",
        "--shapes",
        "M=512,N=4096",
        "--effort",
        "full",
        "--candidate-timeout",
        "20",
        "--bake",
        "--store",
        str(store),
        "--out",
        str(tmp_path),
    ]
    run = subprocess.run(command, env=_plugin_env(), capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (record,) = json.loads((tmp_path / "tuning.json").read_text())
    failures = {f["config"]["mode"]: f["failure"] for f in record["failed"]}
    assert failures == {"fault": "fatal", "hang": "timeout", "wrong": "wrong"}, record["failed"]
    assert record["winner"]["config"] == {"mode": "ok"}
    (entry,) = json.loads(store.read_text())["entries"]
    assert (entry["backend"], entry["config"]) == ("drill", {"mode": "ok"})
