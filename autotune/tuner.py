"""One tuning job: (op, backend, shape, dtype) -> a verified, head-to-head winner and its log.

The parent process never touches CUDA: every candidate is compiled (optionally in a pool of
workers, filling the DSL's disk cache), checked against float64 and timed in an
:class:`~.worker.IsolatedWorker`, which is restarted after a fatal CUDA error or a hang, so the
run goes on and the config is recorded as failed.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import store, tasks
from .search import Decision, Outcome, SearchResult, decide, search
from .space import Config, ConfigSpace, TuneContext, space_for
from .worker import IsolatedWorker, WorkerPool

#: A DSL's own autotuner, by DSL: a module-level task run in the isolated worker as
#: task(op, backend, shape, dtype_name, device, effort) -> config dict. Its pick is then checked
#: and timed by our harness like any candidate, competes in the final, and is recorded in our
#: store with source "<dsl>-autotuner".
EXTERNAL_AUTOTUNERS: dict[str, Callable[..., Mapping[str, Any]]] = {"helion": tasks.helion_autotune_task}


def register_external_autotuner(dsl: str, task: Callable[..., Mapping[str, Any]]) -> None:
    EXTERNAL_AUTOTUNERS[dsl] = task


@dataclass
class TuneRequest:
    op: str
    backend: str
    shape: dict[str, int]
    dtype: str = "bfloat16"
    effort: str = "quick"  # "none" | "quick" | "full" (search) | "retime" (no search)
    budget_s: float | None = None
    device: str = "cuda"
    use_external: bool = False
    #: Longest a candidate may take to compile and check, or to time: a hang costs no more.
    candidate_timeout_s: float | None = None
    #: How the final is timed: one of ``store.TIMING_MODES`` (``store.measure_kwargs``); the search
    #: itself always uses the default (short) measurement. A bench compared with the baked
    #: times must use the same method (``tilearena bench --timing``).
    timing: str = "default"
    #: effort "retime": the baked entry whose configs are re-timed (no search): its winner and
    #: up to ``finalists - 1`` of its runners-up (``tune``'s argument), checked again and timed
    #: head to head on this machine.
    previous: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        store.measure_kwargs(self.timing)  # refuses an unknown mode here, not in the worker
        if self.effort == "retime" and not self.previous:
            raise ValueError("effort 'retime' needs the baked entry to re-time (previous)")


@dataclass
class TuneResult:
    request: TuneRequest
    search: SearchResult | None
    decision: Decision | None
    entry: dict[str, Any] | None
    error: str | None = None
    seconds: float = 0.0
    extra_outcomes: list[Outcome] = field(default_factory=list)
    #: The GPU's state over the winner's final (``bench.gpu_state``), where the timer read one.
    final_gpu_state: dict[str, Any] | None = None
    #: How many of the winner's final rounds each timing method timed ("cuda-graph": 4, ...).
    final_timing_methods: dict[str, int] | None = None

    def log_record(self) -> dict[str, Any]:
        """The convergence record the HTML report plots (one element of ``tuning.json``)."""
        outcomes = (self.search.outcomes if self.search else []) + self.extra_outcomes
        return {
            "op": self.request.op,
            "backend": self.request.backend,
            "shape": self.request.shape,
            "dtype": self.request.dtype,
            "effort": self.request.effort,
            "strategy": self.search.strategy if self.search else None,
            "space_size": self.search.space_size if self.search else None,
            "stopped_by": self.search.stopped_by if self.search else None,
            "log": self.search.log if self.search else [],
            "winner": self.entry,
            "evaluated": len(outcomes),
            "failed": [o.as_dict() for o in outcomes if not o.ok],
            "error": self.error,
            "seconds": round(self.seconds, 3),
            # How many rounds the final took (more than asked where the winner was noisy).
            "final_rounds": self.decision.rounds if self.decision else None,
            "final_median_error": round(self.decision.median_error, 5) if self.decision else None,
            # The GPU's state over the winner's final (SM clock, power, temperature): a bench that
            # reads another time at another state can be compared with it.
            "final_gpu_state": self.final_gpu_state,
            # A final whose rounds were timed by two methods (a kernel near the timer's CUDA-graph
            # line) may read between the two; the bench may time it by either.
            "final_timing_methods": self.final_timing_methods,
        }


class WorkerEvaluator:
    """Checks, then times, candidates in the isolated worker."""

    def __init__(
        self,
        worker: IsolatedWorker,
        request: TuneRequest,
        *,
        check: Callable[..., Any] = tasks.default_check,
        compile_pool: WorkerPool | None = None,
        timeout_s: float = 60.0,
        compile_timeout_s: float = 180.0,
        repeats: int = 20,
        time_candidates: bool = True,
    ) -> None:
        self.worker, self.request, self.check = worker, request, check
        #: False: ``evaluate`` only compiles and checks (a passing config gets time 0.0); the
        #: re-time path times its finalists in ``retime`` alone.
        self.time_candidates = time_candidates
        self.compile_pool, self.timeout_s, self.compile_timeout_s = compile_pool, timeout_s, compile_timeout_s
        self.repeats = repeats
        #: How many compile workers may run at once (see ``compile_workers_that_fit``).
        self.compile_parallel: int | None = None
        #: The final's GPU state (SM clock, power; ``bench.gpu_state``) per config's store_key.
        self.final_states: dict[str, dict[str, Any] | None] = {}
        #: The final's timing method of every round so far, per config's store_key.
        self.final_methods: dict[str, list[str]] = {}

    def _common(self) -> tuple:
        r = self.request
        return (r.op, r.backend, r.shape, r.dtype, r.device)

    def evaluate(self, configs: Sequence[Config]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        if self.compile_pool is not None and len(configs) > 1:
            replies = self.compile_pool.map(
                tasks.compile_candidate,
                [(*self._common(), c) for c in configs],
                timeout_s=self.compile_timeout_s,
                parallel=self.compile_parallel,
            )
            for i, reply in enumerate(replies):
                if not reply.ok:
                    outcomes[i] = Outcome(configs[i], None, reply.failure, "compile: " + reply.detail)
        passed: list[int] = []
        for i, config in enumerate(configs):
            if i in outcomes:
                continue
            reply = self.worker.call(
                tasks.check_candidate,
                *self._common(),
                config,
                check=self.check,
                timeout_s=self.compile_timeout_s,
            )
            if not reply.ok:
                outcomes[i] = Outcome(config, None, reply.failure, reply.detail)
            elif not reply.value["ok"]:
                outcomes[i] = Outcome(config, None, "wrong", str(reply.value.get("error")))
            else:
                passed.append(i)
        if passed and not self.time_candidates:
            for i in passed:
                outcomes[i] = Outcome(configs[i], 0.0)
        elif passed:
            times = self._time([configs[i] for i in passed], rounds=1)
            for i, samples in zip(passed, times):
                if isinstance(samples, Outcome):
                    outcomes[i] = samples
                else:
                    outcomes[i] = Outcome(configs[i], statistics.median(samples))
        return [outcomes[i] for i in range(len(configs))]

    def _time(
        self, configs: Sequence[Config], rounds: int, timing: str = "default", with_state: bool = False
    ) -> list[list[float] | Outcome]:
        # A final's later rounds (``retime`` called again) keep the method its first round used
        # (one for all its configs: ``tasks.time_candidates``).
        pinned = None
        if with_state:
            first = next((methods[0] for methods in self.final_methods.values() if methods), None)
            pinned = [first] * len(configs)
        reply = self.worker.call(
            tasks.time_candidates,
            *self._common(),
            list(configs),
            rounds,
            self.repeats,
            timing,
            with_state=with_state,
            methods=pinned,
            timeout_s=self.timeout_s * len(configs) * rounds,
        )
        if reply.ok:
            if not with_state:
                return reply.value
            for config, state in zip(configs, reply.value["gpu_state"]):
                self.final_states[store_key(config)] = state
            for config, methods in zip(configs, reply.value.get("methods") or []):
                self.final_methods.setdefault(store_key(config), []).extend(methods)
            return reply.value["ms"]
        if len(configs) == 1:
            return [Outcome(configs[0], None, reply.failure, "timing: " + reply.detail)]
        # One of the batch broke the worker: time them one by one to find which.
        return [self._time([c], rounds, timing, with_state)[0] for c in configs]

    def retime(self, configs: Sequence[Config], rounds: int) -> list[list[float | None]]:
        """The final's head-to-head rounds, timed the request's way (``TuneRequest.timing``);
        each config's GPU state over them lands in ``final_states``."""
        from ..bench.gpu_state import combine

        before = {store_key(c): self.final_states.get(store_key(c)) for c in configs}
        results = self._time(configs, rounds, self.request.timing, with_state=True)
        # A final that adds rounds calls this again: its state is then the calls' combined
        # (``combine``: the mean of their median clocks, the union of the rest).
        for key, state in before.items():
            if state and key in self.final_states:
                self.final_states[key] = combine([state, self.final_states[key]])
        return [[None] * rounds if isinstance(r, Outcome) else list(r) for r in results]


#: Share of device memory the compile workers may fill together; the rest is the benchmark
#: worker's (its timing inputs and the float64 reference of the accuracy check).
COMPILE_MEMORY_SHARE = 0.4
#: What a worker holds besides the call's tensors (CUDA context, the kernel's workspace).
WORKER_OVERHEAD_BYTES = 1 << 30


def compile_workers_that_fit(argument_bytes: int, device_memory_bytes: int | None) -> int | None:
    """How many compile workers may each hold one call's tensors at once, or None (no limit
    known).  Each compile runs the candidate once on full-size inputs: at 4096x262144 (4 GiB a
    call) twelve of them ran the H100 out of memory."""
    if not device_memory_bytes:
        return None
    return max(1, int(COMPILE_MEMORY_SHARE * device_memory_bytes // (argument_bytes + WORKER_OVERHEAD_BYTES)))


def batch_size_for(pool_size: int, compile_parallel: int | None, smallest: int = 4) -> int:
    """Candidates per search batch: a batch is compiled side by side, so as many as there are
    compile workers allowed to run (never more: the rest would wait for a second round), and
    at least ``smallest`` so the search still compares several at a time."""
    running = pool_size if compile_parallel is None else min(pool_size, compile_parallel)
    return max(smallest, running)


def _context(
    worker: IsolatedWorker, request: TuneRequest
) -> tuple[TuneContext, store.GpuIdentity | None, str | None]:
    """The config spaces' facts about the device, its identity for the store, and the card's UUID."""
    reply = worker.call(tasks.device_context, request.device, request.shape, request.dtype, timeout_s=180.0)
    if not reply.ok:
        raise RuntimeError(f"could not query the device: {reply.detail}")
    facts = dict(reply.value)
    gpu_name = facts.pop("gpu_name", None)
    card = facts.pop("gpu_uuid", None)
    cc = facts.get("compute_capability")
    gpu = store.GpuIdentity(gpu_name, store.gpu_slug(gpu_name), tuple(cc)) if gpu_name and cc else None
    return TuneContext(**facts), gpu, card if isinstance(card, str) else None


def seeds_for(
    request: TuneRequest,
    space: ConfigSpace | None,
    default: Mapping[str, Any] | None,
    gpu: store.GpuIdentity | None,
    context: TuneContext,
    extra: Sequence[Mapping[str, Any]] = (),
) -> list[Config]:
    """The baked winner of the nearest shape (if it fits this shape), the kernel's default, then
    the kernel's other seed configs; those that are invalid for this shape are dropped."""
    seeds: list[Config] = []
    if gpu is not None:
        try:
            entry = store.lookup_entry(request.op, request.backend, request.dtype, request.shape, gpu=gpu)
        except Exception:
            entry = None
        if entry and entry["config"]:
            seeds.append(dict(entry["config"]))
    if default:
        # A None value means "the kernel derives it from the shape" (TileLang's defaults): the
        # same as leaving the key out, which the space accepts.
        seeds.append({name: value for name, value in default.items() if value is not None})
    seeds.extend(dict(config) for config in extra)
    if space is None:
        return []
    # Seeds that depend on the shape (Helion's shipped config per row length or GEMM class).
    shape_seeds = getattr(space, "seeds", None)
    if shape_seeds is not None:
        # A seed is a head start, never a reason to fail the job.
        with contextlib.suppress(Exception):
            seeds.extend(dict(config) for config in shape_seeds(context))
    return [s for s in seeds if space.invalid_reason(s, context) is None]


def tune(
    request: TuneRequest,
    worker: IsolatedWorker,
    *,
    check: Callable[..., Any] = tasks.default_check,
    compile_pool: WorkerPool | None = None,
    on_progress: Callable[[SearchResult], None] | None = None,
    finalists: int = 4,
    final_rounds: int = 5,
    max_final_rounds: int | None = None,
) -> TuneResult:
    from ..kernels import registry

    start = time.monotonic()
    b = registry.backend(request.op, request.backend)
    reason = getattr(b, "reason", None)
    if reason:
        return TuneResult(request, None, None, None, error=f"unavailable: {reason}")
    space = space_for(b)
    context, gpu, card = _context(worker, request)
    limits = {}
    if request.candidate_timeout_s:
        limits = {"timeout_s": request.candidate_timeout_s, "compile_timeout_s": request.candidate_timeout_s}
    evaluator = WorkerEvaluator(worker, request, check=check, compile_pool=compile_pool, **limits)
    if compile_pool is not None:
        evaluator.compile_parallel = compile_workers_that_fit(
            tasks.argument_bytes(request.op, request.shape, request.dtype), context.device_memory_bytes
        )
    if request.effort == "retime":
        evaluator.time_candidates = False  # the final below is the only timing
        result = retime_candidates(request, evaluator, space, context, finalists)
        extra: list[Outcome] = []
    else:
        result, extra = _search(request, evaluator, space, context, gpu, b, compile_pool, on_progress)
    candidates = sorted(
        [o for o in result.successes + extra if o.ok], key=lambda o: (o.time_ms, store_key(o.config))
    )
    unique: list[Outcome] = []
    for o in candidates:
        if all(store_key(o.config) != store_key(u.config) for u in unique):
            unique.append(o)
    decision = (
        decide(
            [o.config for o in unique[:finalists]],
            evaluator,
            rounds=final_rounds,
            max_rounds=max_final_rounds,
        )
        if unique
        else None
    )
    entry = None
    final_state = evaluator.final_states.get(store_key(decision.winner)) if decision is not None else None
    if decision is not None:
        sources = {store_key(o.config): o.source for o in unique}
        failed = sum(1 for o in result.outcomes + extra if not o.ok)
        entry = {
            "op": request.op,
            "backend": request.backend,
            "dtype": store.normalise_dtype(request.dtype),
            "shape": dict(request.shape),
            "config": decision.winner,
            "time_ms": decision.time_ms,
            "noise": min(decision.noise, 100.0),
            "runner_ups": [
                {"config": c, "time_ms": t} for c, t in decision.standings[1:] if math.isfinite(t)
            ],
            "evaluated": len(result.outcomes) + len(extra),
            "failed": failed,
            "source": sources.get(store_key(decision.winner), "search"),
            "timing": request.timing,
        }
        # The SM clock the winner's final ran at: a later bench at another clock explains a
        # compute-bound kernel's different time (tilearena baked-check shows both).
        if (final_state or {}).get("sm_clock_mhz"):
            entry["sm_clock_mhz"] = float(final_state["sm_clock_mhz"])
        if card and store.validate_entry({**entry, "gpu_uuid": card}) is None:
            entry["gpu_uuid"] = card  # baked-check tells a bench on another card apart
        # How the final timed the winner (every round alike: ``WorkerEvaluator._time``): the
        # bench times the baked config the same way, so a kernel near the CUDA-graph line is
        # not tuned with one method and benched with the other.
        winner_methods = evaluator.final_methods.get(store_key(decision.winner)) or []
        if winner_methods and winner_methods[0] in store.PINNED_TIMING_METHODS:
            entry["timing_method"] = winner_methods[0]
            # ... and over how long a window, for a graph-timed one (baked-check compares it).
            window = store.graph_window_ms(request.timing)
            if winner_methods[0] == "cuda-graph" and window is not None:
                entry["graph_window_ms"] = window
        if request.effort == "retime" and request.previous:
            # Re-timed, not re-searched: what the search found and when stays on record.
            previous = request.previous
            entry.update(
                evaluated=previous.get("evaluated", entry["evaluated"]),
                failed=previous.get("failed", entry["failed"]),
                source=previous.get("source", "search"),
                retimed_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            )
            if "tuned_at" in previous:
                entry["tuned_at"] = previous["tuned_at"]
    error = None if decision else "no candidate passed the accuracy check"
    final_methods = evaluator.final_methods.get(store_key(decision.winner)) if decision is not None else None
    method_counts = dict(sorted(collections.Counter(final_methods).items())) if final_methods else None
    return TuneResult(
        request, result, decision, entry, error, time.monotonic() - start, extra, final_state, method_counts
    )


def _search(
    request: TuneRequest,
    evaluator: WorkerEvaluator,
    space: ConfigSpace | None,
    context: TuneContext,
    gpu: store.GpuIdentity | None,
    b: Any,
    compile_pool: WorkerPool | None,
    on_progress: Callable[[SearchResult], None] | None,
) -> tuple[SearchResult, list[Outcome]]:
    """The search from seeds, then (when asked) the DSL's own autotuner's pick as one more
    candidate."""
    worker = evaluator.worker
    seeds = seeds_for(request, space, b.default_config, gpu, context, getattr(b, "seed_configs", ()))
    result = search(
        space,
        evaluator,
        context,
        effort=request.effort,
        budget_s=request.budget_s,
        seeds=seeds,
        on_progress=on_progress,
        batch_size=batch_size_for(compile_pool.size if compile_pool else 0, evaluator.compile_parallel),
    )
    extra: list[Outcome] = []
    external = EXTERNAL_AUTOTUNERS.get(b.dsl) if request.use_external else None
    if external is not None:
        reply = worker.call(
            external,
            request.op,
            request.backend,
            request.shape,
            request.dtype,
            request.device,
            request.effort,
            timeout_s=max(600.0, request.budget_s or 0.0),
        )
        if reply.ok and reply.value:
            outcome = evaluator.evaluate([dict(reply.value)])[0]
        else:
            outcome = Outcome({}, None, reply.failure or "error", f"{b.dsl} autotuner: {reply.detail}")
        outcome.source = f"{b.dsl}-autotuner"
        extra.append(outcome)
    return result, extra


def retime_candidates(
    request: TuneRequest,
    evaluator: WorkerEvaluator,
    space: ConfigSpace | None,
    context: TuneContext,
    finalists: int,
) -> SearchResult:
    """The baked winner and up to ``finalists - 1`` runners-up, checked against float64 again
    (a config valid where it was tuned may not be on this machine's software)."""
    previous = request.previous or {}
    configs: list[Config] = []
    for config in [previous.get("config")] + [r.get("config") for r in previous.get("runner_ups", [])]:
        if config is None or any(store_key(config) == store_key(c) for c in configs):
            continue
        if space is not None and config and space.invalid_reason(config, context) is not None:
            continue
        configs.append(dict(config))
    configs = configs[:finalists]
    outcomes = evaluator.evaluate(configs) if configs else []
    return SearchResult("retime", outcomes, [], None)


def store_key(config: Mapping[str, Any]) -> str:
    from .space import canonical_json

    return canonical_json(config)
