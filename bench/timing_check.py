"""``tilearena timing-check``: does a kernel's time reproduce on this GPU, and does another
timing method (steady clocks, a clean L2 flush) change it?

Each (backend, shape) runs the config a bench would run (the baked one, else the kernel's
default) and is timed over several interleaved rounds: every job once per round, so each
measurement follows another kernel, as rows do in a bench and finalists in the tuner's final.
Odd rounds use the default method, even rounds the one named by ``--against`` (``steady``:
``measure(steady=True)``; ``clean-flush``: ``measure(flush="read")``), so both see the same GPU
over the same minutes.  ``--against override --override JSON`` instead times the baked config
with those keys changed, the same way (e.g. a kernel variant against the shipped one: ``{"variant":
"split_keep"}``; the kernel's own checks refuse a bad key).  Per job and method: the median of
the rounds, their spread (relative standard deviation: what a single measurement may be off by)
and the ratio to the time the tuner baked.

tilearena timing-check --op matmul --backend triton --shapes "M=4096,N=28672,K=4096,BT=1" --rounds 8
tilearena timing-check --op matmul --backend cute,cublas --shapes "M=1,N=8192,K=8192,BT=1"
    --against clean-flush   (one command)
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: ``bench.timing.measure``'s options per method name; "default" is what bench and tune use.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "steady": {"steady": True},
    "clean-flush": {"flush": "read"},
    # The default method on the baked config with the job's ``override`` keys.
    "override": {},
}


@dataclass
class Job:
    op: str
    backend: str
    shape: dict[str, int]
    dtype: str
    config: dict[str, Any] | None
    baked_ms: float | None
    against: str = "steady"
    override: dict[str, Any] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.against not in METHOD_OPTIONS or self.against == "default":
            raise ValueError(f"against: expected one of {sorted(set(METHOD_OPTIONS) - {'default'})}")
        if (self.against == "override") != bool(self.override):
            raise ValueError("override: a non-empty mapping with against='override', and only then")
        for method in ("default", self.against):
            self.samples.setdefault(method, [])

    def summary(self) -> dict[str, Any]:
        hidden = ("samples", "against", "override")
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in hidden}
        out["methods"] = ["default", self.against]
        if self.override:
            out["config_override"] = self.override
        for method, values in self.samples.items():
            median = statistics.median(values) if values else None
            spread = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else None
            out[method] = {
                "samples_ms": values,
                "median_ms": median,
                "spread": spread,
                "vs_baked": median / self.baked_ms if median and self.baked_ms else None,
            }
        return out


def run_rounds(
    jobs: Sequence[Job],
    timer: Callable[[Job, str], float],
    rounds: int,
    after_round: Callable[[int], None] = lambda r: None,
) -> None:
    """``rounds`` rounds, methods alternating (default, then each job's ``against``); within a
    round every job once, the starting job rotated so no job always follows the same one."""
    for r in range(rounds):
        for offset in range(len(jobs)):
            job = jobs[(offset + r // 2) % len(jobs)]
            method = job.against if r % 2 else "default"
            job.samples[method].append(timer(job, method))
        after_round(r)


def _gpu_timer(device: str) -> Callable[[Job, str], float]:
    """Times a job's call with ``bench.timing.measure``; inputs are built once per job."""
    from ..autotune.tasks import dtype_from_name
    from ..dispatch import baked_config
    from ..kernels import registry
    from .timing import measure

    calls: dict[tuple[int, bool], Callable[[], Any]] = {}

    def timer(job: Job, method: str) -> float:
        key = (id(job), method == "override")
        if key not in calls:
            spec = registry.spec(job.op)
            b = registry.backend(job.op, job.backend)
            args = spec.make_inputs(dict(job.shape), dtype_from_name(job.dtype), device, 0)
            out = spec.empty_output(*args)
            # The config a bench row or a user's call gets here (None: the kernel's default).
            job.config = config = baked_config(job.op, b, args, job.shape)
            if key[1]:
                config = {**(config or {}), **(job.override or {})}

            def call(args: tuple = args, out: Any = out, config: Any = config) -> Any:
                return b.fn(*args, out=out, config=config) if config else b.fn(*args, out=out)

            calls[key] = call
        return measure(calls[key], device, repeats=20, **METHOD_OPTIONS[method]).median_ms

    return timer


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "timing-check",
        help="time baked configs over interleaved rounds, default timing against another method",
    )
    parser.add_argument("--op", required=True)
    parser.add_argument("--backend", required=True, help="backend(s), comma-separated")
    parser.add_argument("--shapes", required=True, help="shape set name or 'DIM=N,...;...'")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--rounds", type=int, default=8, help="rounds in all (half of them --against)")
    parser.add_argument(
        "--against",
        default="steady",
        choices=("steady", "clean-flush", "override"),
        help="the method the default is compared with: steady (settled clocks, >= 100 ms of samples), "
        "clean-flush (the L2 emptied by reading a buffer instead of writing one) or override (the "
        "baked config with --override's keys)",
    )
    parser.add_argument("--override", default=None, help="JSON object of config keys, for --against override")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None, help="JSON file, rewritten after every round")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..autotune import store
    from ..autotune.cli import parse_shapes
    from ..kernels import registry
    from .results import atomic_write_json

    if args.rounds < 4 or args.rounds % 2:
        raise ValueError(
            f"--rounds: expected an even number >= 4 (half default, half {args.against}), got {args.rounds}"
        )
    override = None
    if args.against == "override" or args.override is not None:
        try:
            override = json.loads(args.override or "")
        except ValueError:
            override = None
        if args.against != "override" or not isinstance(override, dict) or not override:
            raise ValueError(
                "--override: expected a JSON object of config keys, given with --against override "
                f"(got --against {args.against}, --override {args.override!r})"
            )
    spec = registry.spec(args.op)
    shapes = parse_shapes(args.shapes, dict(spec.shapes))
    dtype = store.normalise_dtype(args.dtype)
    jobs = []
    for name in [n for n in args.backend.split(",") if n]:
        reason = registry.backend(args.op, name).unavailable_reason(args.device)
        if reason:
            raise ValueError(f"--backend: {args.op}/{name} cannot run here: {reason}")
        for shape in shapes:
            entry = store.lookup_entry(args.op, name, dtype, shape, device=args.device)
            exact = entry is not None and dict(entry["shape"]) == dict(shape)
            jobs.append(
                Job(
                    args.op,
                    name,
                    dict(shape),
                    dtype,
                    None,
                    float(entry["time_ms"]) if exact else None,
                    against=args.against,
                    override=override,
                )
            )

    def save(_round: int) -> None:
        if args.out:
            atomic_write_json(Path(args.out), [j.summary() for j in jobs])

    run_rounds(jobs, _gpu_timer(args.device), args.rounds, save)
    table = Table(title=f"{args.op}: {args.rounds} interleaved rounds (default / {args.against} timing)")
    for column in (
        "backend",
        "shape",
        "baked ms",
        "default ms",
        "spread",
        "/baked",
        f"{args.against} ms",
        "spread",
        "/baked",
    ):
        table.add_column(column)
    for job in jobs:
        summary = job.summary()
        cells = []
        for method in ("default", args.against):
            m = summary[method]
            cells += [
                f"{m['median_ms']:.4f}",
                f"{m['spread']:.1%}" if m["spread"] is not None else "-",
                f"{m['vs_baked']:.3f}" if m["vs_baked"] else "-",
            ]
        table.add_row(
            job.backend,
            "x".join(str(v) for v in job.shape.values()),
            f"{job.baked_ms:.4f}" if job.baked_ms else "-",
            *cells,
        )
    Console().print(table)
    return 0
