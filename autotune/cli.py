"""``tilearena tune``: tune (op, backend) over a shape set, log convergence, optionally bake.

tilearena tune --op rmsnorm --backend triton --shapes llama --effort quick --bake --out reports/tune
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kernels.registry import OpSpec

EFFORT_BUDGET_S = {"none": 30.0, "quick": 30.0, "full": 300.0, "retime": 0.0}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from .store import TIMING_MODES

    parser = subparsers.add_parser("tune", help="autotune kernels' configs and bake the winners for this GPU")
    parser.add_argument("--op", required=True, help="op to tune (e.g. rmsnorm)")
    parser.add_argument(
        "--backend",
        action="append",
        default=None,
        help="backend(s) to tune (repeat or comma-separate); default: every available one",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="shape set name (quick|llama|sweep|...), 'all', or explicit 'M=4096,N=8192;M=1,N=4096' "
        "(default: llama; with --effort retime, every baked shape)",
    )
    parser.add_argument("--dtype", default="bf16", help="bf16 | fp16 | fp32 (comma-separated for several)")
    parser.add_argument(
        "--effort",
        default="quick",
        choices=("none", "quick", "full", "retime"),
        help="search effort; 'retime' searches nothing: it re-checks and re-times each baked "
        "entry's winner (and --finalists - 1 runners-up) on this machine, and bakes the result",
    )
    parser.add_argument(
        "--timing",
        default="default",
        choices=TIMING_MODES,
        help="how the final is timed (bench.timing.measure): default; steady (long kernels timed at "
        "settled clocks); clean (steady, the L2 emptied by a read, leaving no dirty lines); hot "
        "(clean, settling queued right before the samples, with no idle gap); sustained (hot, sampled "
        "for 1 s in at most 5000 samples; graph-timed kernels as replays spanning 1 s). "
        "Compare with a bench run with the same --timing",
    )
    parser.add_argument(
        "--finalists",
        type=int,
        default=None,
        help="configs re-timed head to head in the final "
        "(default: 4; with --effort retime, 1: the baked winner)",
    )
    parser.add_argument("--final-rounds", type=int, default=5, help="interleaved rounds of the final")
    parser.add_argument(
        "--max-final-rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds the final may take in all while the winner's median is known less well "
        "than 1 %% (its standard error); default 3 x --final-rounds",
    )
    parser.add_argument(
        "--skip-retimed-since",
        default=None,
        metavar="ISO_TIME",
        help="with --effort retime: skip entries re-timed at or after this UTC time "
        "(e.g. 2026-12-06T11:00:00+00:00): resumes a re-time that was cut short",
    )
    parser.add_argument(
        "--faster-than",
        type=float,
        default=None,
        metavar="MS",
        help="with --effort retime: only entries whose baked time is under MS milliseconds "
        "(after a timer change that touches short kernels only, e.g. launch-bound ones)",
    )
    parser.add_argument(
        "--slower-than",
        type=float,
        default=None,
        metavar="MS",
        help="with --effort retime: only entries whose baked time is at least MS milliseconds "
        "(e.g. to leave out the kernels timed as CUDA graph replays, which a change to the "
        "event-timed path does not touch)",
    )
    parser.add_argument(
        "--noisier-than",
        type=float,
        default=None,
        metavar="NOISE",
        help="with --effort retime: only entries whose baked noise field exceeds NOISE (e.g. "
        "0.0283: a final whose median was known less well than 1 %%, which --max-final-rounds "
        "now re-times with more rounds)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="wall-clock seconds per (backend, shape) search (default: 30 quick, 300 full)",
    )
    parser.add_argument(
        "--bake", action="store_true", help="write the winners into the baked store for this GPU"
    )
    parser.add_argument(
        "--store", default=None, help="baked file to write (default: autotune/baked/<gpu>.json)"
    )
    parser.add_argument(
        "--skip-baked",
        action="store_true",
        help="skip (backend, shape, dtype) jobs whose shape bucket the store already holds: "
        "resumes a long --bake run that was cut short",
    )
    parser.add_argument("--out", default="reports/tune", help="folder for tuning.json (the convergence logs)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--compile-workers",
        type=int,
        default=0,
        help="processes compiling candidates ahead of the benchmark worker (0: none)",
    )
    parser.add_argument(
        "--candidate-timeout",
        type=float,
        default=None,
        help="seconds a candidate may take to compile and check, or to time, before it is "
        "recorded as a hang and its worker replaced (default: 180 to compile, 60 to time)",
    )
    parser.add_argument(
        "--external",
        action="store_true",
        help="also run the DSL's own autotuner (Helion) and let its pick compete",
    )
    parser.set_defaults(func=run)
    return parser


def parse_shapes(text: str, spec: OpSpec) -> list[dict[str, int]]:
    """``--shapes``: a shape set of ``spec``'s op, 'all' of them but the quick set, or explicit
    shapes ('M=4096,N=8192;M=1,N=4096'), each checked against the op's dimensions."""
    shape_sets = spec.shapes
    if text == "all":
        names = [n for n in shape_sets if n != "quick"]
        return [dict(s) for n in names for s in shape_sets[n]]
    if "=" in text:
        from ..kernels.shapes import parse_explicit_shapes

        shapes = parse_explicit_shapes(text)
        for shape in shapes:
            problem = spec.shape_problem(shape)
            if problem:
                raise ValueError(f"--shapes: {shape} is not a shape of {spec.name}: {problem}")
        return shapes
    if text not in shape_sets:
        raise ValueError(
            f"--shapes: expected one of {sorted(shape_sets)}, 'all' or 'DIM=N,...', got {text!r}"
        )
    return [dict(s) for s in shape_sets[text]]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..kernels import registry
    from . import store
    from .tuner import TuneRequest, tune
    from .worker import IsolatedWorker, WorkerPool

    console = Console(stderr=True)
    spec = registry.spec(args.op)
    retiming = args.effort == "retime"
    shapes_text = args.shapes or ("baked" if retiming else "llama")
    shapes = None if shapes_text == "baked" else parse_shapes(shapes_text, spec)
    if shapes is None and not retiming:
        raise ValueError("--shapes: 'baked' names the store's shapes, for --effort retime only")
    finalists = args.finalists if args.finalists is not None else (1 if retiming else 4)
    if finalists < 1:
        raise ValueError(f"--finalists: expected at least 1, got {finalists}")
    if args.budget is not None and not 0 < args.budget < math.inf:
        raise ValueError(f"--budget: expected seconds > 0, got {args.budget}")
    if args.compile_workers < 0:
        raise ValueError(f"--compile-workers: expected a count >= 0, got {args.compile_workers}")
    if args.final_rounds < 1:
        raise ValueError(f"--final-rounds: expected at least 1, got {args.final_rounds}")
    max_final_rounds = args.max_final_rounds if args.max_final_rounds is not None else 3 * args.final_rounds
    if max_final_rounds < args.final_rounds:
        raise ValueError(
            f"--max-final-rounds: expected at least --final-rounds ({args.final_rounds}), "
            f"got {max_final_rounds}"
        )
    # --effort retime's filters: (flag, its value, what it expects, the check, which entries pass).
    retime_filters = [
        given
        for given in (
            ("--faster-than", args.faster_than, "milliseconds > 0", lambda v: v > 0,
             lambda e, v: e["time_ms"] < v),
            ("--slower-than", args.slower_than, "milliseconds > 0", lambda v: v > 0,
             lambda e, v: e["time_ms"] >= v),
            ("--noisier-than", args.noisier_than, "a relative noise >= 0", lambda v: v >= 0,
             lambda e, v: e.get("noise", 0.0) > v),
        )
        if given[1] is not None
    ]
    for flag, value, expected, valid, _ in retime_filters:
        if not (retiming and math.isfinite(value) and valid(value)):
            raise ValueError(
                f"{flag}: expected {expected} with --effort retime, got {value}"
                + ("" if retiming else f" with --effort {args.effort}")
            )
    faster_than, slower_than = args.faster_than, args.slower_than
    if faster_than is not None and slower_than is not None and not slower_than < faster_than:
        raise ValueError(
            f"--slower-than: expected less than --faster-than ({faster_than} ms), got {slower_than}"
        )
    if retiming and args.skip_baked:
        raise ValueError("--skip-baked: not with --effort retime, which re-times the baked entries")
    dtypes = [store.normalise_dtype(d) for d in args.dtype.split(",")]
    names = [n for value in (args.backend or []) for n in value.split(",") if n] or registry.backend_names(
        args.op
    )
    backends = []
    for name in names:
        reason = registry.backend(args.op, name).unavailable_reason(args.device)
        if reason:
            console.print(f"[yellow]skip {args.op}/{name}: {reason}")
        else:
            backends.append(name)
    if args.candidate_timeout is not None and not args.candidate_timeout > 0:
        raise ValueError(f"--candidate-timeout: expected seconds > 0, got {args.candidate_timeout}")
    budget = args.budget if args.budget is not None else EFFORT_BUDGET_S[args.effort]
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "tuning.json")
    records: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    worker = IsolatedWorker()
    pool = WorkerPool(args.compile_workers) if args.compile_workers > 0 else None
    # The baked file is known before any tuning, so that each winner is baked as soon as it is
    # found: a run cut short (a device time limit) keeps every job it finished.
    needs_store = args.bake or retiming or args.skip_baked
    gpu = store.gpu_record(args.device) if args.bake or (needs_store and not args.store) else None
    store_path = args.store or (os.path.join(store.baked_dir(), f"{gpu['slug']}.json") if gpu else None)
    previous: dict[tuple[str, str, str], dict[str, Any]] = {}
    if retiming:
        entries_to_retime = retime_entries(store_path, args.op, backends, dtypes, shapes)
        if args.skip_retimed_since:
            since = _utc(args.skip_retimed_since, "--skip-retimed-since")
            entries_to_retime = [
                e
                for e in entries_to_retime
                if not ("retimed_at" in e and _utc(e["retimed_at"], "retimed_at") >= since)
            ]
        entries_to_retime = [
            e for e in entries_to_retime if all(keep(e, value) for _, value, _, _, keep in retime_filters)
        ]
        jobs = [(e["backend"], dict(e["shape"]), e["dtype"]) for e in entries_to_retime]
        previous = {job_key(*job): e for job, e in zip(jobs, entries_to_retime)}
        console.print(f"--effort retime: {len(jobs)} baked entries of {args.op} in {store_path}")
    else:
        jobs = [(b, s, d) for b in backends for s in shapes for d in dtypes]
    if args.bake and not retiming:
        # The store keeps one entry per shape bucket: of several shapes in one bucket only the
        # last tuned would stay, so tune the first and let the others look it up.
        jobs, merged = first_per_bucket(jobs)
        if merged:
            console.print(f"--bake: {merged} job(s) share a shape bucket with an earlier one, not tuned")
    if args.skip_baked and store_path:
        done = baked_jobs(store_path, args.op)
        skipped = [j for j in jobs if (j[0], store.normalise_dtype(j[2]), store.shape_bucket(j[1])) in done]
        jobs = [j for j in jobs if j not in skipped]
        console.print(f"--skip-baked: {len(skipped)} job(s) already in {store_path}, {len(jobs)} to tune")
    start = time.monotonic()
    try:
        if retiming and pool is not None:
            precompile(jobs, previous, finalists, pool, worker, args.device, console)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        ) as progress:
            overall = progress.add_task(f"tune {args.op}", total=len(jobs), status="")
            for name, shape, dtype in jobs:
                label = f"  {name} {','.join(f'{k}={v}' for k, v in shape.items())} {dtype}"
                job = progress.add_task(label, total=None, status="starting")

                def show(result: Any, job: Any = job) -> None:
                    best = result.log[-1]["best_ms"] if result.log else None
                    progress.update(
                        job,
                        completed=len(result.outcomes),
                        total=result.space_size,
                        status=f"tried {len(result.outcomes)}  failed {len(result.failures)}  best "
                        + (f"{best:.4f} ms" if best else "-"),
                    )

                request = TuneRequest(
                    args.op,
                    name,
                    shape,
                    dtype,
                    args.effort,
                    budget,
                    args.device,
                    args.external,
                    candidate_timeout_s=args.candidate_timeout,
                    timing=args.timing,
                    previous=previous.get(job_key(name, shape, dtype)),
                )
                try:
                    result = tune(
                        request,
                        worker,
                        compile_pool=pool,
                        on_progress=show,
                        finalists=finalists,
                        final_rounds=args.final_rounds,
                        max_final_rounds=max_final_rounds,
                    )
                except Exception as exc:  # one broken job must not end the run
                    console.print(f"[red]{label.strip()}: {type(exc).__name__}: {exc}")
                    records.append(
                        {
                            "op": args.op,
                            "backend": name,
                            "shape": shape,
                            "dtype": dtype,
                            "log": [],
                            "winner": None,
                            "evaluated": 0,
                            "failed": [],
                            "error": str(exc),
                        }
                    )
                    progress.update(job, status="[red]error")
                    progress.advance(overall)
                    continue
                records.append(result.log_record())
                # The log first: a winner the store refuses must not take the measurements with it.
                _write_log(log_path, records)
                if result.entry:
                    entries.append(result.entry)
                    status = f"[green]{result.entry['time_ms']:.4f} ms {json.dumps(result.entry['config'])}"
                    if args.bake and gpu is not None:
                        try:
                            store.bake([result.entry], gpu, store_path)
                        except ValueError as exc:
                            entries.pop()
                            records[-1]["error"] = f"not baked: {exc}"
                            status = f"[red]not baked: {exc}"
                    progress.update(job, status=status)
                else:
                    progress.update(job, status=f"[red]{result.error}")
                progress.advance(overall)
                _write_log(log_path, records)
    finally:
        worker.stop()
        if pool is not None:
            pool.stop()
    _write_log(log_path, records)
    console.print(
        f"{len(entries)}/{len(jobs)} jobs found a winner in {time.monotonic() - start:.0f} s; log: {log_path}"
    )
    if args.bake and entries:
        console.print(f"baked {len(entries)} entries into {store_path}")
    return 0 if entries or not jobs else 1


def first_per_bucket(
    jobs: Sequence[tuple[str, dict[str, int], str]],
) -> tuple[list[tuple[str, dict[str, int], str]], int]:
    """The first job of each (backend, dtype, shape bucket), in order, and how many were dropped."""
    from . import store

    seen: set[tuple[str, str, str]] = set()
    kept = []
    for backend, shape, dtype in jobs:
        key = (backend, store.normalise_dtype(dtype), store.shape_bucket(shape))
        if key not in seen:
            seen.add(key)
            kept.append((backend, shape, dtype))
    return kept, len(jobs) - len(kept)


def _utc(text: str, name: str) -> Any:
    import datetime as _dt

    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name}: expected an ISO time like 2026-12-06T11:00:00+00:00, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def job_key(backend: str, shape: dict[str, int], dtype: str) -> tuple[str, str, str]:
    from . import store

    return backend, store.normalise_dtype(dtype), json.dumps(dict(shape), sort_keys=True)


def retime_entries(
    path: str | None,
    op: str,
    backends: Sequence[str],
    dtypes: Sequence[str],
    shapes: Sequence[dict[str, int]] | None,
) -> list[dict[str, Any]]:
    """The baked entries of ``op`` for these backends and dtypes (and, when given, exactly
    these shapes), in the store's order: what ``--effort retime`` re-times."""
    from . import store

    data = store.read_file(path) if path and os.path.exists(path) else None
    if data is None:
        raise ValueError(f"--store: --effort retime needs a valid baked file, found none at {path}")
    wanted = None if shapes is None else {json.dumps(dict(s), sort_keys=True) for s in shapes}
    dtype_names = {store.normalise_dtype(d) for d in dtypes}
    return [
        e
        for e in data["entries"]
        if e["op"] == op
        and e["backend"] in backends
        and e["dtype"] in dtype_names
        and (wanted is None or json.dumps(dict(e["shape"]), sort_keys=True) in wanted)
    ]


def precompile(
    jobs: Sequence[tuple[str, dict[str, int], str]],
    previous: dict[tuple[str, str, str], dict[str, Any]],
    finalists: int,
    pool: Any,
    worker: Any,
    device: str,
    console: Any,
) -> None:
    """Compile every job's finalists side by side before any is timed: a re-time has one or two
    configs a job, too few to fill the pool job by job. Only DSLs that keep compiled kernels on
    disk gain (the benchmark worker then loads them); a failure here is left for the job's own
    check to record."""
    from ..kernels import registry
    from . import tasks
    from .tuner import compile_workers_that_fit

    calls = []
    for backend, shape, dtype in jobs:
        entry = previous[job_key(backend, shape, dtype)]
        if registry.backend(entry["op"], backend).dsl not in tasks.DISK_CACHED_DSLS:
            continue
        configs = [entry["config"]] + [r.get("config") for r in entry.get("runner_ups", [])]
        for config in [c for c in configs if c is not None][:finalists]:
            calls.append((entry["op"], backend, shape, dtype, device, config))
    if not calls:
        return
    reply = worker.call(tasks.device_context, device, calls[0][2], calls[0][3], timeout_s=180.0)
    memory = reply.value.get("device_memory_bytes") if reply.ok else None
    largest = max(tasks.argument_bytes(op, shape, dtype) for op, _, shape, dtype, _, _ in calls)
    parallel = compile_workers_that_fit(largest, memory)
    begin = time.monotonic()
    processes = min(pool.size, parallel or pool.size)
    with console.status(f"compiling {len(calls)} finalists in {processes} processes"):
        replies = pool.map(tasks.compile_candidate, calls, timeout_s=180.0, parallel=parallel)
    failed = sum(not r.ok for r in replies)
    seconds = time.monotonic() - begin
    console.print(f"precompiled {len(calls) - failed}/{len(calls)} finalists in {seconds:.0f} s")


def baked_jobs(path: str, op: str) -> set[tuple[str, str, str]]:
    """(backend, dtype, shape bucket) of every entry for ``op`` in the baked file at ``path``:
    the store's key, so a shape whose bucket is baked is covered by that entry."""
    from . import store

    data = store.read_file(path) if os.path.exists(path) else None
    entries = data["entries"] if data else []
    return {(e["backend"], e["dtype"], store.shape_bucket(e["shape"])) for e in entries if e["op"] == op}


def _write_log(path: str, records: list[dict[str, Any]]) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as out:
        json.dump(records, out, indent=1, default=str)
    os.replace(temp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilearena")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
