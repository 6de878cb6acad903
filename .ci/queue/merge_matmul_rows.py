"""Replace the matmul rows of a committed results.json with a new matmul bench run's.

    python3 .ci/queue/merge_matmul_rows.py NEW_RESULTS [NEW_RESULTS ...]
        [--results reports/h100/results.json] [--out PATH] [--session N]

The committed file holds two runs on one GPU: the row-wise sweep (its ``env`` and ``ceilings``
are the file's) and the matmul sweep+llama (its ceilings under ``ceilings_matmul_run``).  This
keeps the row-wise rows and swaps the matmul rows, agreement entries and ceilings for the new
run's, tags every new row with its commit and rewrites ``env.commits`` and ``env.note``.  It
refuses a new run that is not matmul only, has no commit, or whose schema differs.  Several new
runs (a pass benched in parts, as session 28's two halves) are first joined into one: they must
share the commit, the card and the timing mode, and no (backend, shape, dtype) may appear twice;
the first one's env and ceilings stand for them, and ``ceilings_matmul_runs`` keeps each one's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def merge(old: dict, new: dict, session: str) -> dict:
    if new.get("schema") != old.get("schema"):
        raise SystemExit(f"schema: the new run has {new.get('schema')}, the results file {old.get('schema')}")
    ops = {row["op"] for row in new["rows"]}
    if ops != {"matmul"}:
        raise SystemExit(f"the new run: expected matmul rows only, found {sorted(ops)}")
    commit = (new["env"].get("commit") or "")[:7]
    if not commit:
        raise SystemExit("the new run: env.commit is empty")
    timing = (new["env"].get("timing") or {}).get("mode", "default")
    for row in new["rows"]:
        row["commit"] = commit
    kept = [row for row in old["rows"] if row["op"] != "matmul"]
    env = dict(old["env"])
    commits = {k: v for k, v in (env.get("commits") or {}).items() if not k.startswith("matmul")}
    commits["matmul (--shapes sweep,llama)"] = commit
    env["commits"] = commits
    rowwise = next((v for k, v in commits.items() if not k.startswith("matmul")), "?")
    env["note"] = (
        f"two tilearena bench runs on this GPU, both on main: the row-wise sweep at {rowwise} and the "
        f"matmul sweep+llama at {commit} (session {session}, --timing {timing}). Every row carries its "
        "commit; env and ceilings: the row-wise run's; ceilings_matmul_run: the matmul run's"
    )
    return {
        "schema": old["schema"],
        "env": env,
        "ceilings": old["ceilings"],
        "rows": kept + new["rows"],
        "agreement": [a for a in old["agreement"] if a["op"] != "matmul"] + new["agreement"],
        "ceilings_matmul_run": new["ceilings"],
        **({"ceilings_matmul_runs": new["ceilings_matmul_runs"]} if "ceilings_matmul_runs" in new else {}),
    }


def join(runs: list[dict]) -> dict:
    """One run from the parts of a pass benched in several calls (see the module's docstring)."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    for key in ("commit", "gpu_uuid"):
        values = {run["env"].get(key) for run in runs}
        if len(values) != 1:
            raise SystemExit(f"the new runs: env.{key} differs between them: {sorted(map(str, values))}")
    modes = {(run["env"].get("timing") or {}).get("mode", "default") for run in runs}
    if len(modes) != 1:
        raise SystemExit(f"the new runs: timing modes differ: {sorted(modes)}")
    seen: set[tuple] = set()
    for run in runs:
        for row in run["rows"]:
            key = (row["op"], row["backend"], json.dumps(row["shape"], sort_keys=True), row["dtype"])
            if key in seen:
                raise SystemExit(f"the new runs: {key} is in more than one of them")
            seen.add(key)
    return {
        **first,
        "rows": [row for run in runs for row in run["rows"]],
        "agreement": [a for run in runs for a in run["agreement"]],
        "ceilings_matmul_runs": [run["ceilings"] for run in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", type=Path, nargs="+", help="the new matmul run's results.json (or its parts')")
    parser.add_argument("--results", type=Path, default=Path("reports/h100/results.json"))
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: --results)")
    parser.add_argument("--session", default="?", help="the session that ran it, for env.note")
    args = parser.parse_args()
    new = join([json.loads(path.read_text()) for path in args.new])
    merged = merge(json.loads(args.results.read_text()), new, args.session)
    out = args.out or args.results
    out.write_text(json.dumps(merged, indent=1) + "\n")
    ops = sorted({row["op"] for row in merged["rows"]})
    agreement = len(merged["agreement"])
    print(f"{out}: {len(merged['rows'])} rows ({', '.join(ops)}), {agreement} agreement entries")


if __name__ == "__main__":
    main()
