"""The results file (schema 1), written after every row so an interrupted run loses nothing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1
ROW_KEYS = (
    "op",
    "backend",
    "dsl",
    "shape",
    "dtype",
    "ms",
    "ms_iqr",
    "gbps",
    "tflops",
    "sol_pct",
    "rel_err",
    "max_abs_err",
    "ok",
    "error",
)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write to a temporary file beside ``path`` and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: they become null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class ResultsFile:
    """Accumulates rows and rewrites ``path`` after each one."""

    def __init__(self, path: Path, env: dict[str, Any], ceilings: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "env": env,
            "ceilings": ceilings,
            "rows": [],
            "agreement": [],
        }
        self.flush()

    def add_row(self, row: dict[str, Any]) -> None:
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row: missing keys {missing}")
        self.data["rows"].append(_finite(row))
        self.flush()

    def add_agreement(self, entry: dict[str, Any]) -> None:
        self.data["agreement"].append(_finite(entry))
        self.flush()

    def set_not_measured(self, entries: list[dict[str, Any]], reason: str) -> None:
        """The shapes a run stopped before (``run_bench``'s budget), and why."""
        self.data["not_measured"] = {"reason": reason, "shapes": entries}
        self.flush()

    def flush(self) -> None:
        atomic_write_json(self.path, self.data)


def read_json(path: str | os.PathLike[str], argument: str) -> Any:
    """A JSON file a command was given as ``argument``; an unreadable or malformed one is a
    ValueError naming the argument, the path and where the JSON broke."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{argument}: {path} is not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"{argument}: {path} is not JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise ValueError(f"{argument}: cannot read {path}: {exc.strerror or exc}") from None


def load(path: Path) -> dict[str, Any]:
    data = read_json(path, "results")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a tilearena results file of schema {SCHEMA}")
    return data
