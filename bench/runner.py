"""``tilearena bench``: every (op, backend, shape, dtype) checked against float64, then timed.

For each op, shape and dtype: one set of fresh random inputs (a new seed per run, recorded),
one float64 reference; each backend runs once into a NaN-poisoned output (numerics), the
backends' outputs are compared pairwise (cross-DSL agreement), then every backend that passed is
timed in rounds interleaved across the backends, 2 to ``MAX_MEASUREMENTS`` times, until the
median of its measurements is known to the tuner's ``FINAL_MEDIAN_ERROR`` (their spread is the
row's noise floor). A shape's rows are written as soon as it finishes.  With ``--isolate`` the
timing runs in a worker process per backend (``bench.isolated``), the checks stay here.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..autotune.search import FINAL_MEDIAN_ERROR, median_error, relative_spread
from ..autotune.store import PINNED_TIMING_METHODS, graph_window_ms, measure_kwargs
from ..dispatch import baked_config, baked_timing_method, why_not
from ..kernels import registry
from . import numerics
from .environment import environment, measure_ceilings
from .gpu_state import combine as combine_gpu_states
from .results import ResultsFile
from .timing import (
    GRAPH_SPAN_MS,
    SETTLE_GRAPH_ABOVE,
    STEADY_SETTLE_MS,
    STEADY_SPAN_MS,
    Timing,
    l2_cache_bytes,
    measure,
    noise_floor,
    rotated_copy_count,
)

if TYPE_CHECKING:
    from .isolated import BackendWorkers

DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def parse_dtype(text: str) -> torch.dtype:
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"--dtype: expected one of {sorted(DTYPES)}, got {text!r}")
    return DTYPES[text]


def _input_bytes(args: Sequence[Any]) -> int:
    return sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor))


def _rotated_calls(
    op_spec: registry.OpSpec,
    b: registry.Backend,
    args: Sequence[Any],
    shape: dict,
    dtype: torch.dtype,
    device: str,
    seed: int,
    config: Any = None,
) -> list[Callable[[], Any]]:
    """Calls on distinct input copies whose total exceeds the L2 (``rotated_copy_count``), for
    graph replay."""
    copies = rotated_copy_count(_input_bytes(args), l2_cache_bytes(device))
    calls = []
    for i in range(copies):
        copy_args = args if i == 0 else op_spec.make_inputs(shape, dtype, device, seed + 1000 + i)
        calls.append(_timed_call(op_spec, b, copy_args, config))
    return calls


def _timed_call(
    op_spec: registry.OpSpec, b: registry.Backend, args: Sequence[Any], config: Any = None
) -> Callable[[], Any]:
    # Our kernels write a preallocated output; the rest allocate theirs as a user's call would.
    kwargs = {"config": config} if config else {}
    if b.writes_out:
        out = op_spec.empty_output(*args)
        return lambda: b.fn(*args, out=out, **kwargs)
    return lambda: b.fn(*args, **kwargs)


def _row(op_spec: registry.OpSpec, b: registry.Backend, shape: dict, dtype: torch.dtype) -> dict[str, Any]:
    return {
        "op": op_spec.name,
        "backend": b.name,
        "dsl": b.dsl,
        "ours": b.ours,
        "shape": dict(shape),
        "dtype": DTYPE_NAMES[dtype],
        "ms": None,
        "ms_iqr": None,
        "gbps": None,
        "tflops": None,
        "sol_pct": None,
        "rel_err": None,
        "max_abs_err": None,
        "tol": None,
        "ok": False,
        "error": None,
    }


def bench_shape(
    op_spec: registry.OpSpec,
    backend_names: Sequence[str],
    shape: dict,
    dtype: torch.dtype,
    device: str,
    ceilings: dict[str, Any],
    results: ResultsFile,
    advance: Callable[[str], None],
    time_it: bool = True,
    timing: str = "default",
    log: Callable[[str], None] | None = None,
    workers: BackendWorkers | None = None,
) -> None:
    """Check every backend on one shape against float64, then time those that pass.  ``log``
    gets one line of where the shape's seconds went (a bench cut by a time limit at f4be60c
    took ~19 s a matmul shape where its timing windows account for ~10).  With ``workers``
    (``bench --isolate``) each backend is timed in its own worker process (``bench.isolated``),
    after this process has freed the shape's inputs, outputs and reference."""
    began = time.perf_counter()
    seed = random.SystemRandom().randrange(1 << 31)
    args = op_spec.make_inputs(shape, dtype, device, seed)
    ref = numerics.reference_on(op_spec, args)
    reference_s = time.perf_counter() - began
    cost = op_spec.cost(shape, dtype)
    outputs: dict[str, torch.Tensor | str] = {}
    # How long a graph-timed row's samples span under this mode (None: bare replays, no window).
    graph_window = graph_window_ms(timing)
    rows: list[dict[str, Any]] = []
    timers: dict[str, RowMeasurements] = {}
    #: The rows an isolated bench times once every check is done: (backend, config, method).
    to_time: dict[str, tuple[registry.Backend, Any, str | None]] = {}
    for name in backend_names:
        b = registry.backend(op_spec.name, name)
        row = _row(op_spec, b, shape, dtype)
        row.update(bytes=cost.bytes, flops=cost.flops, seed=seed)
        advance(f"{op_spec.name} {name} {shape}")
        reason = why_not(b, args)
        if reason:
            row["error"] = f"unavailable: {reason}"
            rows.append(row)
            continue
        # The autotuner's baked config for this GPU and shape, as a user's call would get it.
        config = baked_config(op_spec.name, b, args, shape)
        row["config"] = config
        # Timed the way the tuner timed this baked config (None: the timer picks by its estimate).
        method = baked_timing_method(op_spec.name, b.name, args, shape, config)
        try:
            out = numerics.run_into(b, args, numerics.poisoned_output(op_spec, args), config)
            if device != "cpu":
                torch.cuda.synchronize()
            check = numerics.compare(out, ref, op_spec.tolerance[dtype])
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            rows.append(row)
            continue
        row.update(
            rel_err=check.rel_err,
            max_abs_err=check.max_abs_err,
            tol=check.tol,
            ok=check.ok,
            error=check.error,
        )
        outputs[name] = out
        if check.ok and time_it and workers is not None:
            to_time[name] = (b, config, method)
        elif check.ok and time_it:
            try:
                timers[name] = _RowTimer(
                    op_spec, b, args, shape, dtype, device, seed, config, timing, method=method
                )
            except Exception as exc:
                row["ok"] = False
                row["error"] = f"timing failed: {type(exc).__name__}: {str(exc)[:300]}"
        rows.append(row)
    if workers is not None:
        from .isolated import IsolatedRowTimer

        # The agreement needs the outputs, which this process frees before the workers time.
        _add_agreement(results, op_spec, shape, dtype, outputs)
        outputs.clear()
        del ref, args
        if device != "cpu":
            torch.cuda.empty_cache()
        for name, (b, config, method) in to_time.items():
            try:
                timers[name] = IsolatedRowTimer(
                    workers[name], op_spec, b, shape, dtype, device, seed, config, timing, method=method
                )
            except Exception as exc:
                row = next(r for r in rows if r["backend"] == name)
                row["ok"] = False
                row["error"] = f"timing failed: {type(exc).__name__}: {str(exc)[:300]}"
    checked = time.perf_counter()
    # Timed after every backend's numerics, in interleaved rounds (A B C, then C B A, ...): a
    # drift of the GPU's clocks or power state over the shape's run (several percent on long
    # compute-bound GEMMs) falls on every backend alike instead of on whichever ran last.
    outcomes = _time_interleaved(timers)
    timed = time.perf_counter()
    if log is not None:
        log(
            f"{op_spec.name} {DTYPE_NAMES[dtype]} {shape}: {timed - began:.1f} s (inputs and reference "
            f"{reference_s:.1f}, checks of {len(backend_names)} backends and timer setup "
            f"{checked - began - reference_s:.1f}, timing {len(timers)} rows {timed - checked:.1f})"
        )
    for name, outcome in outcomes.items():
        row = next(r for r in rows if r["backend"] == name)
        if isinstance(outcome, Exception):
            row["ok"] = False
            row["error"] = f"timing failed: {type(outcome).__name__}: {str(outcome)[:300]}"
            continue
        measured, noise = outcome
        row.update(_speed(measured, cost, op_spec.bound, ceilings))
        row["noise"] = noise
        row["measurements"] = len(timers[name].measurements)
        row["timing_method"] = measured.method
        row["timing_method_from"] = timers[name].method_from
        # Where it was timed: its own worker process (--isolate) or the bench's, beside the
        # shape's other backends.
        row["isolated"] = workers is not None
        if measured.method == "cuda-graph" and graph_window is not None:
            row["graph_window_ms"] = graph_window
    for row in rows:
        results.add_row(row)
    if workers is None:
        _add_agreement(results, op_spec, shape, dtype, outputs)
        del ref, args
    else:
        workers.release()
    del outputs
    if device != "cpu":
        torch.cuda.empty_cache()


def _add_agreement(
    results: ResultsFile,
    op_spec: registry.OpSpec,
    shape: dict,
    dtype: torch.dtype,
    outputs: dict[str, torch.Tensor | str],
) -> None:
    """Every pair of the shape's checked outputs compared (cross-DSL agreement)."""
    if len(outputs) > 1:
        names, matrix = numerics.agreement_matrix(outputs)
        results.add_agreement(
            {
                "op": op_spec.name,
                "shape": dict(shape),
                "dtype": DTYPE_NAMES[dtype],
                "backends": names,
                "matrix": matrix,
            }
        )


#: A row is measured until the median of its measurements is known as well as the tuner's final
#: knows a winner's (``autotune.search.FINAL_MEDIAN_ERROR``, judged by the same rule), at most
#: this many times, and the row's time is that median: the statistic the store promises.  Until
#: session 30 the bench took two measurements (a third when they lay over 5 % apart) and kept the
#: mean of the two that agreed best, which for a kernel whose 1 s windows read one of two levels
#: picks a level while the tuner's median of 2-6 rounds lies between them: at 7c42e99 Triton
#: 128x4096x4096 (split-K 4) read 0.0181-0.0183 or 0.0193 ms in six benches, its tuner 0.0186-0.0188
#: in three re-times whose rounds spread 4.7-5.2 % (reports/h100/NOTES.md, Session 30).
MAX_MEASUREMENTS = 6


class RowMeasurements:
    """A row's measurements and the rule for when its median is known (``_time_interleaved``
    asks ``needs_more`` each round); subclasses say how one measurement is taken."""

    def __init__(self, method: str | None = None) -> None:
        #: The timing method every measurement uses: the baked entry's (``method``) or, when
        #: that is None, the first measurement's pick, kept for the rest (the two methods read
        #: a kernel near the CUDA-graph line differently; a row's rounds must not mix them).
        self.method = method or "auto"
        self.method_from = "baked" if method else "estimate"
        self.measurements: list[Timing] = []

    def measure_once(self) -> None:
        raise NotImplementedError

    def needs_more(self) -> bool:
        """Its median is not yet known to ``FINAL_MEDIAN_ERROR`` and ``MAX_MEASUREMENTS`` allow more."""
        medians = [m.median_ms for m in self.measurements]
        if not 2 <= len(medians) < MAX_MEASUREMENTS:
            return len(medians) < 2
        return median_error(relative_spread(medians), len(medians)) > FINAL_MEDIAN_ERROR

    def result(self) -> tuple[Timing, float]:
        """The median of the measurements' medians, and their spread ((max - min) / min), the
        row's noise floor."""
        medians = [m.median_ms for m in self.measurements]
        combined = Timing(
            statistics.median(medians),
            max(m.iqr_ms for m in self.measurements),
            sum(m.samples for m in self.measurements),
            self.measurements[0].method,
            combine_gpu_states([m.gpu_state for m in self.measurements]),
        )
        return combined, noise_floor(*self.measurements)


class _RowTimer(RowMeasurements):
    """One backend's timed call on one shape, in this process, measured once per round (see
    ``_time_interleaved``)."""

    def __init__(
        self,
        op_spec: registry.OpSpec,
        b: registry.Backend,
        args: Sequence[Any],
        shape: dict,
        dtype: torch.dtype,
        device: str,
        seed: int,
        config: Any = None,
        timing: str = "default",
        method: str | None = None,
    ) -> None:
        super().__init__(method)
        self.device, self.timing_kwargs = device, measure_kwargs(timing)
        self.call = _timed_call(op_spec, b, args, config)
        self.graph_calls = (
            _rotated_calls(op_spec, b, args, shape, dtype, device, seed, config) if device != "cpu" else None
        )

    def measure_once(self) -> None:
        method = self.method if self.graph_calls or self.method != "cuda-graph" else "cuda-events"
        try:
            timing = measure(
                self.call,
                self.device,
                graph_fns=self.graph_calls,
                repeats=20,
                method=method,
                **self.timing_kwargs,
            )
        except RuntimeError as exc:
            if self.graph_calls is None or "graph" not in str(exc).lower():
                raise
            # Some libraries cannot be captured in a CUDA graph: time them with events instead.
            torch.cuda.synchronize()
            self.graph_calls = None
            timing = measure(self.call, self.device, repeats=20, method="cuda-events", **self.timing_kwargs)
        if self.method == "auto" and timing.method in PINNED_TIMING_METHODS:
            self.method = timing.method
        self.measurements.append(timing)


def _time_interleaved(timers: dict[str, RowMeasurements]) -> dict[str, tuple[Timing, float] | Exception]:
    """Rounds over every timer, each in the reverse order of the one before, until every row's
    median is known to ``FINAL_MEDIAN_ERROR`` (two rounds at least, ``MAX_MEASUREMENTS`` at most):
    a drift of the GPU's clocks or power state falls on every backend alike, and only the rows
    still unsettled are measured again.  A timer that raises is reported, and the others go on."""
    failed: dict[str, Exception] = {}

    def round_of(names: Sequence[str]) -> None:
        for name in names:
            if name in failed:
                continue
            try:
                timers[name].measure_once()
            except Exception as exc:  # one backend's failure must not cost the others their rows
                failed[name] = exc

    order = list(timers)
    while True:
        pending = [name for name in order if name not in failed and timers[name].needs_more()]
        if not pending:
            break
        round_of(pending)
        order.reverse()
    return {name: failed[name] if name in failed else timers[name].result() for name in timers}


def _time_alone(
    op_spec: registry.OpSpec,
    b: registry.Backend,
    args: Sequence[Any],
    shape: dict,
    dtype: torch.dtype,
    device: str,
    seed: int,
    config: Any = None,
) -> tuple[Timing, float]:
    """One backend alone, measured as a bench row is (``_time_interleaved``); the time and noise floor."""
    timer = _RowTimer(op_spec, b, args, shape, dtype, device, seed, config)
    outcome = _time_interleaved({b.name: timer})[b.name]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _speed(timing: Timing, cost: registry.Cost, bound: str, ceilings: dict[str, Any]) -> dict[str, Any]:
    """Achieved rates, and the share of the speed of light: the roofline floor over the time.

    The floor is the larger of bytes / measured copy bandwidth and flops / measured GEMM rate,
    so a decode-shaped matmul is judged against memory and a large one against the tensor cores,
    whatever the op's usual ``bound``.
    """
    seconds = timing.median_ms * 1e-3
    gbps = cost.bytes / seconds / 1e9 if seconds > 0 else None
    tflops = cost.flops / seconds / 1e12 if seconds > 0 else None
    copy, gemm = ceilings.get("copy_gbps"), ceilings.get("matmul_bf16_tflops")
    floors = {}
    if copy:
        floors["memory"] = cost.bytes / (copy * 1e9)
    if gemm and bound == "compute":
        floors["compute"] = cost.flops / (gemm * 1e12)
    limit = max(floors, key=floors.get) if floors else None
    sol = 100.0 * floors[limit] / seconds if limit and seconds > 0 else None
    return {
        "ms": timing.median_ms,
        "ms_iqr": timing.iqr_ms,
        "gbps": gbps,
        "tflops": tflops,
        "sol_pct": sol,
        "sol_bound": limit,
        # The SM clock over the samples: a compute-bound row's time moves with it.
        "gpu_state": timing.gpu_state,
    }


def _warm_one(task: tuple[str, str, dict, str]) -> str | None:
    """Run one backend once in a worker process, so its compiled kernel lands in the DSL's disk cache."""
    op, name, shape, dtype_name = task
    try:
        op_spec = registry.spec(op)
        b = registry.backend(op, name)
        args = op_spec.make_inputs(shape, DTYPES[dtype_name], "cuda", 0)
        if why_not(b, args):
            return None
        b.fn(*args)
        torch.cuda.synchronize()
    except Exception as exc:
        return f"{op} {name} {shape}: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def warm_compile_caches(plan: Sequence[tuple], workers: int, console: Console) -> None:
    """Compile every (op, backend, shape) in parallel worker processes before timing anything.

    Triton, Helion (through Triton) and TileLang keep compiled kernels on disk, so the timed
    process then loads instead of compiling: on a fresh GPU machine this turns many serial
    compiles into a few parallel ones.
    """
    import concurrent.futures
    import multiprocessing

    tasks = [
        (op_spec.name, name, shape, DTYPE_NAMES[dtype])
        for op_spec, names, shape, dtype in plan
        for name in names
        if name not in ("eager", "cublas")
    ]
    context = multiprocessing.get_context("spawn")
    with (
        console.status(f"compiling {len(tasks)} kernels in {workers} processes"),
        concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        for problem in pool.map(_warm_one, tasks):
            if problem:
                console.print(f"[yellow]warm-up: {problem}[/]")


def _shape_sets_text(shape_sets: Sequence[str | dict[str, int]]) -> str:
    return ";".join(
        ",".join(f"{k}={v}" for k, v in entry.items()) if isinstance(entry, dict) else entry
        for entry in shape_sets
    )


def check_request(
    ops: Sequence[str],
    backends: Sequence[str] | None,
    shape_sets: Sequence[str | dict[str, int]],
    dtypes: Sequence[torch.dtype],
) -> None:
    """Refuse, before any work, a bench that would measure less than it was asked to with no
    word of why: a backend, shape set, explicit shape or dtype that none of ``ops`` has.  One
    that only some of them have is skipped for the others (``run_bench`` says so): ``--op
    rmsnorm,matmul --backend quack`` benches quack's RMSNorm."""
    specs = [registry.spec(op) for op in ops]
    where = ops[0] if len(ops) == 1 else f"any of {', '.join(ops)}"
    for name in backends or ():
        if not any(name in registry.backend_names(s.name) for s in specs):
            known = sorted({n for s in specs for n in registry.backend_names(s.name)})
            raise ValueError(f"--backend: {where} has no backend {name!r}; expected one of {known}")
    for entry in shape_sets:
        if isinstance(entry, dict):
            problems = [s.shape_problem(entry) for s in specs]
            if all(problems):
                raise ValueError(f"--shapes: {entry} is not a shape of {where}: {'; '.join(problems)}")
        elif not any(entry in s.shapes for s in specs):
            known = sorted({n for s in specs for n in s.shapes})
            raise ValueError(f"--shapes: {where} has no shape set {entry!r}; expected one of {known}")
    for dtype in dtypes:
        if not any(dtype in s.dtypes for s in specs):
            known = sorted({DTYPE_NAMES[d] for s in specs for d in s.dtypes})
            raise ValueError(f"--dtype: {where} does not take {DTYPE_NAMES[dtype]}; expected one of {known}")


def run_bench(
    ops: Sequence[str],
    backends: Sequence[str] | None,
    shape_sets: Sequence[str | dict[str, int]],
    dtypes: Sequence[torch.dtype],
    out_dir: Path,
    console: Console,
    write_report: bool = False,
    warm_workers: int = 0,
    timing: str = "default",
    budget_s: float | None = None,
    isolate: bool = False,
) -> dict[str, Any]:
    """Check every (op, backend, shape, dtype) against float64 and time it; rows are written
    to ``out_dir/results.json`` as they are measured. ``timing`` is one of
    ``autotune.store.TIMING_MODES`` (``measure_kwargs``): compare with baked times tuned with the
    same ``--timing``.

    ``budget_s`` bounds the run's wall clock: no shape is started that the slowest shape so far
    would carry past it.  The shapes left are listed in the file's ``not_measured`` (a run cut
    from outside, by a signal or a time limit, keeps its rows but cannot say what it missed).

    ``isolate`` times each backend in a worker process of its own (``bench.isolated``), with
    the rounds still interleaved across the shape's backends; the checks stay in this process."""
    started = time.perf_counter()
    timing_kwargs = measure_kwargs(timing)  # refuses an unknown mode before any work
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and 0 < budget_s < math.inf):
        raise ValueError(f"budget: expected seconds > 0, got {budget_s!r}")
    if warm_workers < 0:
        raise ValueError(f"--warm-workers: expected a count >= 0, got {warm_workers}")
    check_request(ops, backends, shape_sets, dtypes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        console.print(
            "[yellow]No CUDA GPU: running what runs on the CPU (eager, torch.compile, the Triton "
            "interpreter) on the quick shapes. CPU timings say nothing about GPU performance.[/]"
        )
        if shape_sets != ["quick"]:
            asked = _shape_sets_text(shape_sets)
            console.print(f"[yellow]--shapes {asked}: not on a CPU, which runs the quick set[/]")
        shape_sets = ["quick"]
    env = environment(device)
    env["timing"] = {
        "method": "cuda-events queued behind a GPU spin (GPU time, not launch cost), L2 flushed; "
        "cuda-graph replay over rotated inputs under 50 us of GPU time"
        if device == "cuda"
        else "cpu-timer",
        "repeats": "20 a measurement; a row's time is the median of its measurements' medians, "
        f"2 to {MAX_MEASUREMENTS} of them, taken until that median's standard error is under "
        f"{FINAL_MEDIAN_ERROR:.0%} (the tuner's final rule), in rounds interleaved across a shape's "
        "backends (A B C, then C B A, ...)",
        "l2": "flushed" if device == "cuda" else "n/a",
        # "write" zeroes a buffer (dirty lines left in the L2), "read" sums one (clean lines).
        "flush": timing_kwargs["flush"] if device == "cuda" else "n/a",
        "mode": timing,
        "isolated": isolate,
        "isolation": "each backend timed in a worker process of its own, holding only its inputs "
        "(rows: isolated)"
        if isolate
        else "every backend of a shape timed in the bench process, side by side",
    }
    if timing_kwargs["steady"] and device == "cuda":
        env["timing"]["steady"] = (
            f"event-timed kernels run {STEADY_SETTLE_MS:.0f} ms before sampling and are sampled for "
            f">= {STEADY_SPAN_MS:.0f} ms (clocks settled at the power limit)"
            + ("" if timing_kwargs["hot_start"] else "; graph-timed ones as default")
        )
        if timing_kwargs["hot_start"]:
            env["timing"]["steady"] += (
                "; the settling runs are queued behind the GPU spin, right before the samples (no idle gap), "
                f"replayed from a CUDA graph past {SETTLE_GRAPH_ABOVE} runs; graph-timed kernels settle "
                f"too ({STEADY_SETTLE_MS:.0f} ms of replays), and their samples, replays of several rounds "
                f"of every input copy, span {timing_kwargs.get('graph_span_ms', GRAPH_SPAN_MS):.0f} ms "
                "together (at most, for kernels whose copies fill a graph's node limit first)"
            )
            env["timing"]["graph_window_ms"] = timing_kwargs.get("graph_span_ms", GRAPH_SPAN_MS)
        if "span_ms" in timing_kwargs:
            env["timing"]["steady"] += (
                f"; sampled for {timing_kwargs['span_ms']:.0f} ms, not {STEADY_SPAN_MS:.0f}, in at most "
                f"{timing_kwargs.get('max_samples', 100_000)} samples"
            )
    with console.status("measuring this machine's ceilings (copy bandwidth, bf16 GEMM)"):
        ceilings = measure_ceilings(device, timing=timing)
    results = ResultsFile(out_dir / "results.json", env, ceilings)
    plan = []
    for op in ops:
        op_spec = registry.spec(op)
        names = [n for n in (backends or registry.backend_names(op)) if n in registry.backend_names(op)]
        if backends and not names:
            console.print(f"[yellow]{op}: skipped; none of the backends asked for is one of its own[/]")
            continue
        for set_name in shape_sets:
            if isinstance(set_name, dict):  # an explicit shape
                problem = op_spec.shape_problem(set_name)
                if problem:
                    console.print(f"[yellow]{op}: shape {set_name} skipped; {problem}[/]")
                    continue
                chosen = [set_name]
            elif set_name not in op_spec.shapes:
                console.print(f"[yellow]{op}: no shape set {set_name!r}; has {sorted(op_spec.shapes)}[/]")
                continue
            else:
                chosen = op_spec.shapes[set_name]
            for shape in chosen:
                for dtype in dtypes:
                    if dtype in op_spec.dtypes:
                        plan.append((op_spec, names, dict(shape), dtype))
    if warm_workers > 0 and device == "cuda":
        warm_compile_caches(plan, warm_workers, console)
    workers = None
    if isolate:
        from .isolated import BackendWorkers

        workers = BackendWorkers()
        with console.status("starting a timing worker per backend"):
            for problem in workers.start([name for _, names, _, _ in plan for name in names]):
                console.print(f"[yellow]--isolate: worker did not start: {problem}[/]")
    try:
        _bench_plan(plan, device, ceilings, results, console, timing, budget_s, started, workers)
    finally:
        if workers is not None:
            workers.stop()
    print_tables(results.data, console)
    if write_report:
        from .report import write_report as build

        build([results.path], out_dir)
    console.print(f"results: {results.path}")
    return results.data


def _bench_plan(
    plan: Sequence[tuple[registry.OpSpec, list[str], dict, torch.dtype]],
    device: str,
    ceilings: dict[str, Any],
    results: ResultsFile,
    console: Console,
    timing: str,
    budget_s: float | None,
    started: float,
    workers: BackendWorkers | None,
) -> None:
    """Each planned shape checked and timed, with a progress bar, until ``budget_s`` runs out."""
    total = sum(len(p[1]) for p in plan)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("bench", total=total)

        def advance(label: str) -> None:
            progress.update(task, advance=1, description=label)

        slowest_s = 0.0
        for index, (op_spec, names, shape, dtype) in enumerate(plan):
            if budget_s is not None and time.perf_counter() - started + slowest_s > budget_s:
                left = plan[index:]
                results.set_not_measured(
                    [{"op": o.name, "shape": dict(sh), "dtype": DTYPE_NAMES[dt], "backends": list(n)}
                     for o, n, sh, dt in left],
                    f"--budget {budget_s:g} s: stopped after {time.perf_counter() - started:.0f} s",
                )
                console.print(
                    f"[yellow]--budget {budget_s:g} s: {len(left)} of {len(plan)} shapes not measured "
                    f"(listed in results.json's not_measured)[/]"
                )
                break
            shape_began = time.perf_counter()
            bench_shape(
                op_spec, names, shape, dtype, device, ceilings, results, advance,
                timing=timing, log=progress.console.print, workers=workers,
            )
            slowest_s = max(slowest_s, time.perf_counter() - shape_began)


def print_tables(data: dict[str, Any], console: Console) -> None:
    rows = data["rows"]
    ceilings = data.get("ceilings") or {}
    if ceilings.get("copy_gbps"):
        console.print(
            f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, bf16 GEMM "
            f"{ceilings['matmul_bf16_tflops']:.0f} TFLOP/s ({data['env'].get('gpu')})"
        )
    for op in dict.fromkeys(r["op"] for r in rows):
        table = Table(title=op, show_lines=False)
        for column in (
            "shape",
            "dtype",
            "backend",
            "ms",
            "GB/s",
            "TFLOP/s",
            "% SOL",
            "vs eager",
            "rel err",
            "ok",
        ):
            table.add_column(column, justify="right" if column not in ("backend", "shape") else "left")
        op_rows = [r for r in rows if r["op"] == op]
        for r in op_rows:
            eager = next(
                (
                    e
                    for e in op_rows
                    if e["backend"] == "eager"
                    and e["shape"] == r["shape"]
                    and e["dtype"] == r["dtype"]
                    and e["ms"]
                ),
                None,
            )
            speedup = f"{eager['ms'] / r['ms']:.2f}x" if eager and r["ms"] else ""
            table.add_row(
                "x".join(str(v) for v in r["shape"].values()),
                r["dtype"].replace("float", "f"),
                r["backend"],
                _fmt(r["ms"], ".4f"),
                _fmt(r["gbps"], ".0f"),
                _fmt(r["tflops"], ".1f"),
                _fmt(r["sol_pct"], ".1f"),
                speedup,
                _fmt(r["rel_err"], ".1e"),
                "[green]ok[/]" if r["ok"] else _short_error(r["error"]),
            )
        console.print(table)


def _short_error(error: str | None) -> str:
    if error and error.startswith("unavailable"):
        return "[yellow]unavailable[/]"
    return f"[red]{(error or 'fail')[:40]}[/]"


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
