"""``tilearena timing-check``: does a kernel's time reproduce on this GPU, and does another
timing method (steady clocks, a clean L2 flush) change it?

Each (backend, shape) runs the config a bench would run (the baked one, else the kernel's
default) and is timed over several interleaved rounds: every job once per round, so each
measurement follows another kernel, as rows do in a bench and finalists in the tuner's final.
Odd rounds use the default method, even rounds the one named by ``--against`` (``steady``:
``measure(steady=True)``; ``clean-flush``: ``measure(flush="read")``; ``fresh-inputs``: the same
call on a newly allocated copy of the inputs each round, the same values at a new address, every
earlier copy kept so none is reused; ``hot-start``: steady, with the settling runs queued behind
the GPU spin right before the samples, so the GPU never idles between them; ``long-window``:
steady, sampled for >= 1 s), so both see the same GPU over the same minutes.  Each round also
records its window's spread (the samples' IQR over their median), and ``--series N`` keeps the
samples themselves, in order, for each method's first N rounds.
``--timing`` is the bench's timing mode that every round starts from (default: ``default``), with
the ``--against`` method's options on top.  ``--against override --override JSON`` instead times
the baked config with those keys changed, the same way (e.g. a kernel variant against the
shipped one: ``{"variant": "split_keep"}``; the kernel's own checks refuse a bad key).  Per job
and method: the median of the rounds, their spread (relative standard deviation: what a single
measurement may be off by) and the ratio to the time the tuner baked.

``--adopt STORE_PATH`` (only with ``--against override``) bakes the override where it wins: after
the last round, a job whose override median is below the baked config's by more than the noise,

    override_median < default_median * (1 - max(MIN_GAIN, 2 * max(spread_default, spread_override)))

gets an entry in STORE_PATH for its (op, backend, dtype, shape bucket): the config exactly as
timed (the baked one with the override keys; only the override keys where the kernel's default
ran), the override's median as ``time_ms``, the previous config and its median as the runner-up,
the larger spread as ``noise``, ``timing: "default"``.  Other jobs leave the store as it was, and
so does a winner the store or the dispatcher would drop (a key outside the kernel's declared
space: the kernel may take it, but a lookup would never return it).
MIN_GAIN is ``--min-gain`` (default 1%): lower it only for a gain measured before, in rounds
quiet enough for the 2-spread rule to hold it.
Each job's JSON row gets ``adopted`` and ``adoption_reason``, and one line is printed per job.
STORE_PATH must be this GPU's baked file (or a new one): the bench reads
``autotune/baked/<gpu-slug>.json`` (or ``$TILEARENA_BAKED_DIR``), which is also where the baked
configs timed here come from.

tilearena timing-check --op matmul --backend triton --shapes "M=4096,N=28672,K=4096,BT=1" --rounds 8
tilearena timing-check --op matmul --backend cute,cublas --shapes "M=1,N=8192,K=8192,BT=1"
    --against clean-flush   (one command)
tilearena timing-check --op softmax --backend triton --shapes "M=4096,N=32768;M=32768,N=4096"
    --against override --override '{"keep_exp": true}' --adopt autotune/baked/h100-sxm.json
    --out keep_exp.json   (one command)
tilearena timing-check --op matmul --backend triton,cute --shapes "M=1024,N=8192,K=8192,BT=1"
    --timing clean --against fresh-inputs --rounds 12   (one command: does placement move it?)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
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
    # The default method on a new copy of the inputs (same seed, new allocation) every round.
    "fresh-inputs": {},
    # Steady settling queued right behind the GPU spin, so no idle gap precedes the samples.
    "hot-start": {"steady": True, "hot_start": True},
    # Steady, with samples spanning >= 1 s (not >= 100 ms, and no 200-sample cap).
    "long-window": {"steady": True, "span_ms": 1000.0},
}
#: ``--series N`` keeps a round's samples (ms) in the JSON rounded to this many decimals.
SERIES_DIGITS = 5

#: ``--adopt``: the smallest gain that bakes an override, however quiet the rounds were.  Below
#: about 1% a few rounds' medians are within a GPU's clock and thermal drift over minutes, and a
#: store entry churned for less is not worth a config nobody tuned.
ADOPT_MIN_GAIN = 0.01
#: ``--adopt``: the gain must also exceed this many times the larger spread (relative standard
#: deviation of one sample).  A median of a few samples is off by less than one spread, but
#: interleaved rounds share drift, so two spreads leaves room for both medians being off.
ADOPT_NOISE_FACTOR = 2.0


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
    #: The bench's timing mode (``autotune.store.TIMING_MODES``) every round starts from.
    timing: str = "default"
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: Per method, each round's within-window spread: the samples' IQR over their median.
    window_iqr: dict[str, list[float]] = field(default_factory=dict)
    #: Per method, the samples of its first rounds in the order they ran (``--series``).
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    #: Per method, each round's GPU state over its window (SM clock, power: ``Timing.gpu_state``).
    gpu_states: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    #: ``--adopt``'s verdict after the rounds (None: no --adopt, or not decided yet).
    adopted: bool | None = None
    adoption_reason: str | None = None

    def __post_init__(self) -> None:
        if self.against not in METHOD_OPTIONS or self.against == "default":
            raise ValueError(f"against: expected one of {sorted(set(METHOD_OPTIONS) - {'default'})}")
        if (self.against == "override") != bool(self.override):
            raise ValueError("override: a non-empty mapping with against='override', and only then")
        for method in ("default", self.against):
            self.samples.setdefault(method, [])

    def timed_config(self, method: str) -> dict[str, Any] | None:
        """The config ``method``'s rounds call the kernel with: the baked one (None: the
        kernel's default), with the override keys on top for "override".  One definition for
        the timer and for --adopt, so what is baked is exactly what was timed."""
        if method == "override":
            return {**(self.config or {}), **(self.override or {})}
        return self.config

    def summary(self) -> dict[str, Any]:
        hidden = ("samples", "against", "override", "adopted", "adoption_reason")
        hidden += ("window_iqr", "series", "gpu_states")
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in hidden}
        if self.adopted is not None:
            out["adopted"] = self.adopted
            out["adoption_reason"] = self.adoption_reason
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
            if self.window_iqr.get(method):
                out[method]["window_iqr"] = self.window_iqr[method]
            if self.series.get(method):
                out[method]["series_ms"] = self.series[method]
            if any(self.gpu_states.get(method, [])):
                out[method]["gpu_state"] = self.gpu_states[method]
        return out


@dataclass(frozen=True)
class Adoption:
    """``--adopt``'s verdict on one job: whether to bake the override, and why in one line."""

    adopt: bool
    reason: str
    #: The larger of the two spreads (the entry's ``noise``); None when one is unknown.
    noise: float | None = None


def decide_adoption(
    default_ms: float | None,
    override_ms: float | None,
    default_spread: float | None,
    override_spread: float | None,
    baseline: str = "baked",
    min_gain: float = ADOPT_MIN_GAIN,
) -> Adoption:
    """Adopt the override when its median beats the default's by more than the noise:
    ``override_ms < default_ms * (1 - max(min_gain, ADOPT_NOISE_FACTOR * noise))`` where
    ``noise`` is the larger spread.  Pure: no GPU, no store.  ``baseline`` names the default
    config in the reason ("baked", or "kernel default" where nothing was baked)."""
    default, override = _number(default_ms), _number(override_ms)
    if default is None or override is None:
        return Adoption(False, f"no usable median (override {override_ms}, {baseline} {default_ms})")
    spreads = _number(default_spread, zero=True), _number(override_spread, zero=True)
    if spreads[0] is None or spreads[1] is None:
        # One sample has no spread: a difference that cannot be told from noise is not adopted.
        return Adoption(False, f"spread unknown (override {override_spread}, {baseline} {default_spread})")
    noise = max(spreads[0], spreads[1])
    threshold = max(min_gain, ADOPT_NOISE_FACTOR * noise)
    gain = 1.0 - override / default
    verdict = f"{gain:.1%} faster" if gain >= 0 else f"{-gain:.1%} slower"
    reason = (
        f"override {override:.4f} ms vs {baseline} {default:.4f} ms: {verdict}, "
        f"noise {noise:.1%} (adopts beyond {threshold:.1%})"
    )
    return Adoption(override < default * (1.0 - threshold), reason, noise)


def _number(value: Any, zero: bool = False) -> float | None:
    """``value`` as a float if it is a finite number above 0 (or at 0 with ``zero``), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if value > 0 or (zero and value == 0) else None


def adoption_entry(job: Job, default_ms: float, override_ms: float, noise: float, now: str) -> dict[str, Any]:
    """The baked entry an adopted override becomes, with the fields the tuner's entries carry
    (``autotune.tuner.tune``) so ``store.validate_entry`` and ``--effort retime`` read it alike."""
    return {
        "op": job.op,
        "backend": job.backend,
        "dtype": job.dtype,
        "shape": dict(job.shape),
        "config": job.timed_config("override"),
        "time_ms": override_ms,
        "noise": min(noise, 100.0),
        # The config it displaces, so a later re-time measures both again ({}: the kernel's
        # default, as a re-time reads an empty config).
        "runner_ups": [{"config": dict(job.config or {}), "time_ms": default_ms}],
        "evaluated": 2,
        "failed": 0,
        "source": "timing-check",
        # Both medians came from bench.timing.measure's default method (METHOD_OPTIONS).
        "timing": "default",
        "tuned_at": now,
    }


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


def _float64_check(device: str) -> Callable[[Job], str | None]:
    """The override's config checked the way the tuner checks a candidate: fresh random inputs
    (a seed of its own), the output poisoned with NaN, compared with float64; why it fails, or None."""
    import random

    from ..autotune.tasks import dtype_from_name
    from .numerics import check_backend

    def check(job: Job) -> str | None:
        config = job.timed_config("override")
        seed = random.randrange(1 << 30)
        dtype = dtype_from_name(job.dtype)
        result = check_backend(job.op, job.backend, job.shape, dtype, device, seed, config)
        return None if result.ok else f"seed {seed}: {result}"

    return check


def _gpu_timer(device: str, timing: str = "default", series_rounds: int = 0) -> Callable[[Job, str], float]:
    """Times a job's call with ``bench.timing.measure`` in the bench's mode ``timing`` with the
    method's options on top; inputs are built once per job, except ``fresh-inputs``, whose k-th
    round uses the k-th fresh copy of its shape (shared by the shape's jobs, all kept alive so
    each lies at its own address).  Each round's within-window spread and GPU state (SM clock,
    power) go on the job, and its samples in order for a method's first ``series_rounds`` rounds."""
    from ..autotune.store import measure_kwargs
    from ..autotune.tasks import dtype_from_name
    from ..dispatch import baked_config
    from ..kernels import registry
    from .timing import measure

    base = dict(measure_kwargs(timing))
    calls: dict[tuple[int, bool], Callable[[], Any]] = {}
    fresh: dict[tuple[tuple[tuple[str, int], ...], str], list[tuple[tuple, Any]]] = {}

    def make_call(job: Job, method: str, args: tuple, out: Any) -> Callable[[], Any]:
        b = registry.backend(job.op, job.backend)
        # The config a bench row or a user's call gets here (None: the kernel's default).
        job.config = baked_config(job.op, b, args, job.shape)
        config = job.timed_config(method)

        def call(args: tuple = args, out: Any = out, config: Any = config) -> Any:
            return b.fn(*args, out=out, config=config) if config else b.fn(*args, out=out)

        return call

    def new_inputs(job: Job) -> tuple[tuple, Any]:
        spec = registry.spec(job.op)
        args = spec.make_inputs(dict(job.shape), dtype_from_name(job.dtype), device, 0)
        return args, spec.empty_output(*args)

    def timer(job: Job, method: str) -> float:
        if method == "fresh-inputs":
            copies = fresh.setdefault((tuple(sorted(job.shape.items())), job.dtype), [])
            index = len(job.samples[method])
            while len(copies) <= index:
                copies.append(new_inputs(job))
            call = make_call(job, method, *copies[index])
        else:
            key = (id(job), method == "override")
            if key not in calls:
                calls[key] = make_call(job, method, *new_inputs(job))
            call = calls[key]
        keep = len(job.series.get(method, [])) < series_rounds
        timed = measure(call, device, repeats=20, keep_series=keep, **{**base, **METHOD_OPTIONS[method]})
        if timed.median_ms > 0:
            job.window_iqr.setdefault(method, []).append(timed.iqr_ms / timed.median_ms)
        job.gpu_states.setdefault(method, []).append(timed.gpu_state)
        if keep and timed.series_ms is not None:
            job.series.setdefault(method, []).append([round(v, SERIES_DIGITS) for v in timed.series_ms])
        return timed.median_ms

    return timer


def _adopt_gpu(path: str, device: str) -> dict[str, Any]:
    """The ``gpu`` block to bake --adopt's entries with.  Checked before the rounds, not after
    minutes of them: ``store.bake`` rewrites the file's GPU block and keeps only the entries it
    can read, so another GPU's file, or one that does not parse, would be damaged."""
    from ..autotune import store

    if os.path.isdir(path):
        raise ValueError(f"--adopt: {path} is a directory; expected a baked store file")
    try:
        gpu = store.gpu_record(device)
    except RuntimeError as exc:
        raise ValueError(f"--adopt: {exc} (device {device})") from None
    if os.path.exists(path):
        data = store.read_file(path)
        if data is None:
            raise ValueError(f"--adopt: {path} is not a readable baked store; baking would replace it")
        if data["gpu"]["slug"] != gpu["slug"]:
            raise ValueError(
                f"--adopt: {path} is the store of a {data['gpu']['name']}, this GPU is a {gpu['name']}"
            )
    return gpu


def _unused_by_store(job: Job, config: dict[str, Any]) -> str | None:
    """Why the store (when it loads the entry) or the dispatcher (at this shape) would drop
    ``config``, or None.  The kernel ran it, but an entry either of them drops is a file change
    that no call ever sees: e.g. a key the kernel takes that its declared space lacks."""
    from ..autotune import store
    from ..autotune.tasks import dtype_from_name
    from ..dispatch import config_problem_here
    from ..kernels import registry

    reason = store.config_fits_kernel(job.op, job.backend, config)
    if reason:
        return reason
    backend = registry.backend(job.op, job.backend)
    return config_problem_here(backend, dtype_from_name(job.dtype), job.shape, config)


def adopt(
    jobs: Sequence[Job],
    path: str,
    gpu: dict[str, Any],
    check: Callable[[Job], str | None] | None = None,
    min_gain: float = ADOPT_MIN_GAIN,
) -> None:
    """--adopt after the rounds: bake each job's override that wins beyond the noise into
    ``path``, one entry per bake (each under the store's lock, atomic), and record the verdict
    on the job.  A job that loses, whose override ``check`` refuses (the reason it gives: a
    wrong answer must never be baked, however fast), or whose entry cannot be baked, leaves the
    store as it was."""
    from ..autotune import store

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    adopted_keys: dict[tuple[str, str, str, str], str] = {}
    for job in jobs:
        summary = job.summary()
        default, override = summary["default"], summary["override"]
        decision = decide_adoption(
            default["median_ms"],
            override["median_ms"],
            default["spread"],
            override["spread"],
            "baked" if job.config else "kernel default",
            min_gain,
        )
        job.adopted, job.adoption_reason = False, decision.reason
        if not decision.adopt or decision.noise is None:
            continue
        entry = adoption_entry(job, default["median_ms"], override["median_ms"], decision.noise, now)
        key = store.entry_key(entry)
        label = ",".join(f"{k}={v}" for k, v in job.shape.items())
        if key in adopted_keys:
            # The store keeps one entry per shape bucket: the first job's stays.
            job.adoption_reason = f"{decision.reason}; not baked: {adopted_keys[key]} took bucket {key[3]}"
            continue
        refusal = _unused_by_store(job, entry["config"])
        if refusal:
            config = json.dumps(entry["config"])
            job.adoption_reason = f"{decision.reason}; not baked, the store would not use {config}: {refusal}"
            continue
        failure = check(job) if check is not None else None
        if failure:
            job.adoption_reason = f"{decision.reason}; not baked, it fails the float64 check: {failure}"
            continue
        try:
            store.bake([entry], gpu, path)
        except (OSError, ValueError) as exc:
            job.adoption_reason = f"{decision.reason}; not baked: {exc}"
            continue
        adopted_keys[key] = label
        job.adopted = True


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..autotune.store import TIMING_MODES

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
        choices=("steady", "clean-flush", "override", "fresh-inputs", "hot-start", "long-window"),
        help="the method the default is compared with: steady (settled clocks, >= 100 ms of samples), "
        "hot-start (steady, the settling runs queued right before the samples, so the GPU does not "
        "idle between them), long-window (steady, sampled for >= 1 s with no cap on samples), "
        "clean-flush (the L2 emptied by reading a buffer instead of writing one), override (the "
        "baked config with --override's keys) or fresh-inputs (the same values newly allocated each "
        "round; every copy stays allocated until the end, so mind the memory: rounds / 2 copies of "
        "each shape's inputs and output)",
    )
    parser.add_argument(
        "--timing",
        default="default",
        choices=TIMING_MODES,
        help="the bench's timing mode every round starts from (the --against method's options on top)",
    )
    parser.add_argument("--override", default=None, help="JSON object of config keys, for --against override")
    parser.add_argument(
        "--adopt",
        default=None,
        metavar="STORE_PATH",
        help="with --against override: bake the override into this baked store file for every job "
        "where it is faster than the baked config by more than the noise",
    )
    parser.add_argument(
        "--min-gain",
        type=float,
        default=ADOPT_MIN_GAIN,
        metavar="FRACTION",
        help=f"with --adopt: the smallest gain that bakes an override (default {ADOPT_MIN_GAIN}); "
        "it must also exceed twice the noise",
    )
    parser.add_argument(
        "--series",
        type=int,
        default=0,
        metavar="N",
        help="keep every sample, in order, of each method's first N rounds (to see how a window evolves)",
    )
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
    if not 0 <= args.series <= args.rounds:
        raise ValueError(f"--series: expected a count in [0, --rounds={args.rounds}], got {args.series}")
    if not 0.0 <= args.min_gain < 0.5:
        raise ValueError(f"--min-gain: expected a fraction in [0, 0.5), got {args.min_gain}")
    if args.min_gain != ADOPT_MIN_GAIN and args.adopt is None:
        raise ValueError("--min-gain: only with --adopt (it sets the gain that bakes an override)")
    # Checked before any round: a refusal after minutes of timing would waste them.
    gpu = None
    if args.adopt is not None:
        if args.against != "override":
            raise ValueError(
                "--adopt: only with --against override (it bakes the override where it wins), "
                f"got --against {args.against}"
            )
        gpu = _adopt_gpu(args.adopt, args.device)
    spec = registry.spec(args.op)
    shapes = parse_shapes(args.shapes, spec)
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
                    timing=args.timing,
                )
            )

    def save(_round: int) -> None:
        if args.out:
            atomic_write_json(Path(args.out), [j.summary() for j in jobs])

    run_rounds(jobs, _gpu_timer(args.device, args.timing, args.series), args.rounds, save)
    if gpu is not None:
        adopt(jobs, args.adopt, gpu, _float64_check(args.device), args.min_gain)
        save(args.rounds)
    table = Table(
        title=f"{args.op}: {args.rounds} interleaved rounds (default / {args.against} timing, "
        f"both from --timing {args.timing})"
    )
    for column in (
        "backend",
        "shape",
        "baked ms",
        "default ms",
        "spread",
        "window IQR",
        "/baked",
        f"{args.against} ms",
        "spread",
        "window IQR",
        "/baked",
    ):
        table.add_column(column)
    for job in jobs:
        summary = job.summary()
        cells = []
        for method in ("default", args.against):
            m = summary[method]
            window = m.get("window_iqr")
            cells += [
                f"{m['median_ms']:.4f}",
                f"{m['spread']:.1%}" if m["spread"] is not None else "-",
                f"{statistics.median(window):.1%}" if window else "-",
                f"{m['vs_baked']:.3f}" if m["vs_baked"] else "-",
            ]
        table.add_row(
            job.backend,
            "x".join(str(v) for v in job.shape.values()),
            f"{job.baked_ms:.4f}" if job.baked_ms else "-",
            *cells,
        )
    console = Console()
    console.print(table)
    for job in jobs:
        if job.adopted is None:
            continue
        verdict = f"adopted into {args.adopt}" if job.adopted else "not adopted"
        label = ",".join(f"{k}={v}" for k, v in job.shape.items())
        # Plain text (a config's brackets are not rich markup), one line however wide: a log
        # grepped for "adopted" finds the whole verdict.
        line = f"{job.backend} {label}: {verdict}: {job.adoption_reason}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0
