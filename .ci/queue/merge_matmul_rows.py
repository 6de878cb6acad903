"""Replace the matmul rows of a committed results.json with a new matmul bench run's.

    python3 .ci/queue/merge_matmul_rows.py NEW_RESULTS [--results reports/h100/results.json]
        [--out PATH] [--session N]

The committed file holds two runs on one GPU: the row-wise sweep (its ``env`` and ``ceilings``
are the file's) and the matmul sweep+llama (its ceilings under ``ceilings_matmul_run``).  This
keeps the row-wise rows and swaps the matmul rows, agreement entries and ceilings for the new
run's, tags every new row with its commit and rewrites ``env.commits`` and ``env.note``.  It
refuses a new run that is not matmul only, has no commit, or whose schema differs.
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", type=Path, help="the new matmul run's results.json")
    parser.add_argument("--results", type=Path, default=Path("reports/h100/results.json"))
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: --results)")
    parser.add_argument("--session", default="?", help="the session that ran it, for env.note")
    args = parser.parse_args()
    merged = merge(json.loads(args.results.read_text()), json.loads(args.new.read_text()), args.session)
    out = args.out or args.results
    out.write_text(json.dumps(merged, indent=1) + "\n")
    ops = sorted({row["op"] for row in merged["rows"]})
    agreement = len(merged["agreement"])
    print(f"{out}: {len(merged['rows'])} rows ({', '.join(ops)}), {agreement} agreement entries")


if __name__ == "__main__":
    main()
