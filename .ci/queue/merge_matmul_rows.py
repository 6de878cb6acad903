"""Replace the matmul rows of a committed results.json with a new matmul bench run's.

    python3 .ci/queue/merge_matmul_rows.py NEW_RESULTS [NEW_RESULTS ...]
        [--results reports/h100/results.json] [--out PATH] [--session N]

The committed file holds two runs on one GPU: the row-wise sweep (its ``env`` and ``ceilings``
are the file's) and the matmul sweep+llama (its ceilings under ``ceilings_matmul_run``).  This
keeps the row-wise rows and swaps the matmul rows, agreement entries and ceilings for the new
run's, tags every new row with its commit and rewrites ``env.commits`` and ``env.note``.  It
refuses a new run that is not matmul only, has no commit, or whose schema differs.  Several new
runs (a pass benched in parts, as session 28's two halves) are first joined into one: they must
share the commit, the card, the timing mode and whether each backend was timed in a worker of
its own (``--isolate``), and no (backend, shape, dtype) may appear twice; the first one's env and
ceilings stand for them, and ``ceilings_matmul_runs`` keeps each one's.

A pass that could not bench every shape (one session's device time holds about 1.5 of the two
halves) is completed with ``--fill-from OLDER_RUN ...``: each shape the new runs lack takes all
its rows (so a shape's ratios to cuBLAS stay within one run) from the first older run that has
it, which must be matmul only, of the same schema, timing mode and isolation.  Every row is
tagged with its own run's commit and card (``gpu_uuid``), and ``--joined-out`` writes the
joined, filled matmul run alone (``tilearena baked-check`` then counts each row against its own
card's entries).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def tag_rows(run: dict) -> None:
    """Tag ``run``'s rows with its commit and card; rows filled from an older run keep theirs."""
    for row in run["rows"]:
        row.setdefault("commit", (run["env"].get("commit") or "")[:7])
        row.setdefault("gpu_uuid", run["env"].get("gpu_uuid"))


def isolated(run: dict) -> bool:
    """Whether ``run`` timed each backend in a worker process of its own (``bench --isolate``;
    runs from before it are not)."""
    return bool((run["env"].get("timing") or {}).get("isolated", False))


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
    tag_rows(new)
    kept = [row for row in old["rows"] if row["op"] != "matmul"]
    env = dict(old["env"])
    commits = {k: v for k, v in (env.get("commits") or {}).items() if not k.startswith("matmul")}
    commits["matmul (--shapes sweep,llama)"] = commit
    filled = new.get("filled_from") or []
    for part in filled:
        commits[f"matmul ({part['shapes']} shapes not rebenched at {commit})"] = part["commit"]
    env["commits"] = commits
    rowwise = next((v for k, v in commits.items() if not k.startswith("matmul")), "?")
    older = "".join(
        f"; {part['shapes']} of its shapes' rows are an earlier run's at {part['commit']} (card "
        f"{str(part['gpu_uuid'])[:8]})"
        for part in filled
    )
    env["note"] = (
        f"tilearena bench runs on this GPU, all on main: the row-wise sweep at {rowwise} and the "
        f"matmul sweep+llama at {commit} (session {session}, --timing {timing}){older}. Every row carries "
        "its commit (matmul rows their card too); env and ceilings: the row-wise run's; "
        "ceilings_matmul_run: the matmul run's"
    )
    return {
        "schema": old["schema"],
        "env": env,
        "ceilings": old["ceilings"],
        "rows": kept + new["rows"],
        "agreement": [a for a in old["agreement"] if a["op"] != "matmul"] + new["agreement"],
        "ceilings_matmul_run": new["ceilings"],
        **({"ceilings_matmul_runs": new["ceilings_matmul_runs"]} if "ceilings_matmul_runs" in new else {}),
        **({"matmul_filled_from": filled} if filled else {}),
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
    if len({isolated(run) for run in runs}) != 1:
        raise SystemExit("the new runs: some timed each backend in a worker of its own (--isolate), some not")
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


def _shape_key(entry: dict) -> str:
    return json.dumps([entry["op"], entry["shape"], entry["dtype"]], sort_keys=True)


def fill(new: dict, older: list[dict]) -> dict:
    """``new`` with, for each shape it lacks, every row of the first ``older`` run that has it."""
    timing = (new["env"].get("timing") or {}).get("mode", "default")
    have = {_shape_key(row) for row in new["rows"]}
    rows, agreement, ceilings, filled = list(new["rows"]), list(new["agreement"]), [], []
    for index, run in enumerate(older):
        where = f"--fill-from run {index + 1}"
        if run.get("schema") != new.get("schema"):
            raise SystemExit(f"{where}: schema {run.get('schema')}, the new run's {new.get('schema')}")
        if {row["op"] for row in run["rows"]} != {"matmul"}:
            raise SystemExit(f"{where}: expected matmul rows only")
        if (run["env"].get("timing") or {}).get("mode", "default") != timing:
            raise SystemExit(f"{where}: its timing mode is not the new run's ({timing})")
        if isolated(run) != isolated(new):
            # A kernel's time can depend on what else its process holds (NOTES.md, Session 30).
            raise SystemExit(
                f"{where}: isolated (--isolate) {isolated(run)}, the new run's {isolated(new)}: "
                "not timed alike"
            )
        commit = (run["env"].get("commit") or "")[:7]
        if not commit:
            raise SystemExit(f"{where}: env.commit is empty")
        taken = {_shape_key(row) for row in run["rows"]} - have
        if not taken:
            continue
        for row in run["rows"]:
            if _shape_key(row) in taken:
                rows.append({**row, "commit": commit, "gpu_uuid": run["env"].get("gpu_uuid")})
        agreement += [a for a in run["agreement"] if _shape_key(a) in taken]
        ceilings.append(run["ceilings"])
        filled.append({"commit": commit, "gpu_uuid": run["env"].get("gpu_uuid"), "shapes": len(taken)})
        have |= taken
    if not filled:
        return new
    return {
        **new,
        "rows": rows,
        "agreement": agreement,
        "ceilings_matmul_runs": new.get("ceilings_matmul_runs", [new["ceilings"]]) + ceilings,
        "filled_from": filled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", type=Path, nargs="+", help="the new matmul run's results.json (or its parts')")
    parser.add_argument("--results", type=Path, default=Path("reports/h100/results.json"))
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: --results)")
    parser.add_argument("--session", default="?", help="the session that ran it, for env.note")
    parser.add_argument(
        "--fill-from", type=Path, nargs="+", default=[], help="older matmul runs for the shapes the new lack"
    )
    parser.add_argument("--joined-out", type=Path, default=None, help="also write the joined matmul run")
    args = parser.parse_args()
    new = join([json.loads(path.read_text()) for path in args.new])
    new = fill(new, [json.loads(path.read_text()) for path in args.fill_from])
    if args.joined_out:
        tag_rows(new)  # so baked-check sees each row's own card
        args.joined_out.write_text(json.dumps(new, indent=1) + "\n")
    merged = merge(json.loads(args.results.read_text()), new, args.session)
    out = args.out or args.results
    out.write_text(json.dumps(merged, indent=1) + "\n")
    ops = sorted({row["op"] for row in merged["rows"]})
    agreement = len(merged["agreement"])
    print(f"{out}: {len(merged['rows'])} rows ({', '.join(ops)}), {agreement} agreement entries")


if __name__ == "__main__":
    main()
