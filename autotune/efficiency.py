"""``tilearena tune-efficiency``: how close a quick search comes to a reference, timed head to head.

A quick search's winner and a reference's winner (an exhaustive search, or the best config
known) are each timed in their own tuning run; for short kernels two runs differ by 2-4 %, as
much as the 2 % the comparison asks about.  This re-times both winners in one worker,
interleaved over several rounds (the tuner's own final), after checking each against float64,
and reports their ratio beside what each search cost (configs evaluated, wall-clock).

tilearena tune-efficiency quick/tuning.json full/tuning.json --out efficiency.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..bench.results import read_json
from .store import JobId

#: Largest quick / reference time that counts as "within 2 %".
DEFAULT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Comparison(JobId):
    quick_config: dict[str, Any]
    reference_config: dict[str, Any]
    quick_evaluated: int
    quick_seconds: float | None
    reference_evaluated: int
    reference_strategy: str | None
    #: Distinct configs of the space when it could be listed, else the declared product.
    space_size: int | None
    quick_ms: float | None
    reference_ms: float | None
    #: What the timing said when it did not produce both times.
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.quick_ms is None or self.reference_ms is None or self.reference_ms <= 0:
            return None
        return self.quick_ms / self.reference_ms

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _job_key(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    from .store import normalise_dtype

    shape = json.dumps(dict(record["shape"]), sort_keys=True)
    return record["op"], record["backend"], normalise_dtype(record["dtype"]), shape


def pair_records(
    quick: Iterable[Mapping[str, Any]], references: Iterable[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Each quick record with a winner, beside the reference record of the same job whose
    winner was fastest in its own run (several reference logs may cover one job)."""
    best: dict[tuple, Mapping[str, Any]] = {}
    for record in references:
        winner = record.get("winner")
        if not winner:
            continue
        key = _job_key(record)
        if key not in best or winner["time_ms"] < best[key]["winner"]["time_ms"]:
            best[key] = record
    return [(q, best[_job_key(q)]) for q in quick if q.get("winner") and _job_key(q) in best]


HeadToHead = Callable[
    [Mapping[str, Any], Sequence[Mapping[str, Any]]], "tuple[list[float | None], str | None]"
]


def compare(
    pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    head_to_head: HeadToHead,
    space_size: Callable[[Mapping[str, Any]], int | None] = lambda record: record.get("space_size"),
) -> Iterable[Comparison]:
    """One :class:`Comparison` per pair; ``head_to_head(record, configs)`` times the configs
    of ``record``'s job against each other and returns their medians (None: failed)."""
    for quick, reference in pairs:
        q_config, r_config = dict(quick["winner"]["config"]), dict(reference["winner"]["config"])
        if q_config == r_config:
            # The same config: one timing, ratio 1 by construction.
            times, error = head_to_head(quick, [q_config])
            times = times * 2
        else:
            times, error = head_to_head(quick, [q_config, r_config])
        yield Comparison(
            op=quick["op"],
            backend=quick["backend"],
            dtype=quick["dtype"],
            shape=dict(quick["shape"]),
            quick_config=q_config,
            reference_config=r_config,
            quick_evaluated=int(quick.get("evaluated") or 0),
            quick_seconds=quick.get("seconds"),
            reference_evaluated=int(reference.get("evaluated") or 0),
            reference_strategy=reference.get("strategy"),
            space_size=space_size(reference) or space_size(quick),
            quick_ms=times[0],
            reference_ms=times[1],
            error=error,
        )


def worker_head_to_head(device: str, rounds: int) -> tuple[HeadToHead, Callable[[], None]]:
    """Checks each config against float64, then times them interleaved in an isolated worker
    (``decide``'s rounds); returns the timer and a function that stops the worker."""
    from .search import decide
    from .space import canonical_json
    from .tuner import TuneRequest, WorkerEvaluator
    from .worker import IsolatedWorker

    worker = IsolatedWorker()

    def timer(
        record: Mapping[str, Any], configs: Sequence[Mapping[str, Any]]
    ) -> tuple[list[float | None], str | None]:
        request = TuneRequest(
            record["op"], record["backend"], dict(record["shape"]), record["dtype"], device=device
        )
        evaluator = WorkerEvaluator(worker, request)
        checked = evaluator.evaluate([dict(c) for c in configs])
        failed = [f"{o.failure}: {o.detail}" for o in checked if not o.ok]
        passing = [dict(o.config) for o in checked if o.ok]
        decision = decide(passing, evaluator, rounds=rounds) if passing else None
        medians = {canonical_json(c): t for c, t in decision.standings} if decision else {}
        times = [medians.get(canonical_json(c)) for c in configs]
        return times, "; ".join(failed) or None

    return timer, worker.stop


def declared_size(record: Mapping[str, Any]) -> int | None:
    """The space's distinct configs when the search listed them, else its declared product."""
    if record.get("space_size"):
        return int(record["space_size"])
    from ..kernels import registry
    from .space import space_for

    try:
        space = space_for(registry.backend(record["op"], record["backend"]))
    except Exception:
        return None
    return space.size() if space is not None else None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune-efficiency",
        help="time a quick search's winners against a reference search's head to head",
    )
    parser.add_argument("quick", help="tuning.json of the quick search")
    parser.add_argument("reference", nargs="+", help="tuning.json of the reference search(es)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (median)")
    parser.add_argument(
        "--tolerance", type=float, default=DEFAULT_TOLERANCE, help="largest quick/reference - 1"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None, help="JSON file for the comparisons (written as they come)")
    parser.set_defaults(func=run)
    return parser


def _read_log(path: str) -> list[dict[str, Any]]:
    records = read_json(path, "tuning log")
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a tuning.json (a list of tuning records)")
    return records


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..bench.results import atomic_write_json

    if args.rounds < 3:
        raise ValueError(f"--rounds: expected at least 3 (a median of rounds), got {args.rounds}")
    if not 0 < args.tolerance < 1:
        raise ValueError(f"--tolerance: expected a fraction in (0, 1), got {args.tolerance}")
    pairs = pair_records(_read_log(args.quick), [r for path in args.reference for r in _read_log(path)])
    if not pairs:
        raise ValueError("quick, reference: no job of the quick log has a winner in a reference log")
    console = Console()
    timer, stop = worker_head_to_head(args.device, args.rounds)
    rows: list[Comparison] = []
    try:
        for comparison in compare(pairs, timer, declared_size):
            rows.append(comparison)
            if args.out:
                atomic_write_json(Path(args.out), [r.as_dict() for r in rows])
    finally:
        stop()
    table = Table(
        title=f"quick ({args.quick}) against reference, timed head to head over {args.rounds} rounds"
    )
    for column in (
        "backend",
        "shape",
        "quick evals",
        "quick s",
        "ref evals",
        "space",
        "quick ms",
        "ref ms",
        "ratio",
    ):
        table.add_column(column)
    within = 0
    for r in rows:
        ratio = r.ratio
        good = ratio is not None and ratio <= 1 + args.tolerance
        within += good
        table.add_row(
            r.backend,
            "x".join(str(v) for v in r.shape.values()),
            str(r.quick_evaluated),
            f"{r.quick_seconds:.0f}" if r.quick_seconds is not None else "-",
            f"{r.reference_evaluated} ({r.reference_strategy})",
            str(r.space_size or "-"),
            f"{r.quick_ms:.5f}" if r.quick_ms else "-",
            f"{r.reference_ms:.5f}" if r.reference_ms else "-",
            f"[{'green' if good else 'red'}]{ratio:.3f}[/]" if ratio else f"[red]{r.error}[/]",
        )
    console.print(table)
    console.print(f"{within}/{len(rows)} quick winners within {args.tolerance:.0%} of the reference's")
    return 0 if within == len(rows) else 1
