"""Careful timing of GPU work (and a plain CPU timer for machines without one).

The method (the device entry's METHOD.md, and ``triton.testing.do_bench``):
* warm up first, so compilation, module load and handle creation stay out of the numbers;
* time with CUDA events around the region only;
* flush the L2 before every timed run (write a buffer larger than L2), so every run reads its
  inputs from DRAM as a real model would, and the flush itself sits outside the events;
* the GPU is kept ahead of the CPU: a spin kernel (``torch.cuda._sleep``) is queued first, long
  enough for the CPU to enqueue the samples behind it (up to ``SPIN_COVERS_SAMPLES``: the launch
  queue holds no more), so the events time the GPU's work and
  not the Python launch path (a Triton launch with many arguments costs 30-90 us of CPU, more
  than many kernels it launches; measured on the H100 this made 16 us kernels read as 90 us),
  and event queries confirm that the GPU never waited for the CPU before or inside a sample;
  the GPU idles through that spin and its clocks rise, so ``hot_start`` queues a long kernel's
  settling runs behind the spin, right before the samples (measured on the H100: without it a
  compute-bound GEMM's samples start boosted, and a 100 ms window's deciles stray from its
  median by up to 13 %, 6.6 % in the median case);
* kernels under ~50 us of GPU time are timed as CUDA-graph replays of many launches; the graph
  rotates over several copies of the inputs whose total exceeds the L2, so replays do not read
  cached inputs;
* report the median and the interquartile range over >= 20 samples.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .gpu_state import StateSampler, nvml_for_current_device

#: Samples below this many microseconds are re-measured as CUDA-graph replays.
GRAPH_BELOW_US = 50.0
#: How ``time_cuda`` times a kernel: "auto" picks CUDA-graph replay under ``GRAPH_BELOW_US`` of
#: one call's estimated GPU time, event-timed windows above; the other two pin the method, so a
#: kernel near the line is timed the same way every time (the tuner records the method its final
#: used and the bench times a baked config by it: at 6b081a4 the two methods gave 1024x4096x4096
#: GEMMs times up to 6 % apart, and one tuner final mixed both).
TIMING_METHODS = ("auto", "cuda-graph", "cuda-events")

#: Graph replays rotate over input copies together this many times the L2, so a replay does
#: not find its inputs cached.  One rule for the bench and the tuner (until 300d443 the bench
#: used 2x and the tuner 3x: a kernel could be timed over 3 copies in one and 5 in the other).
ROTATION_L2_MULTIPLE = 3
#: At most this many copies (a tiny kernel's inputs would otherwise ask for thousands).
MAX_ROTATED_COPIES = 64


def l2_cache_bytes(device: torch.device | str) -> int:
    """The GPU's L2 size (64 MiB where torch does not say): what flushing and rotation outrun."""
    properties = torch.cuda.get_device_properties(torch.device(device))
    return getattr(properties, "L2_cache_size", 0) or 64 << 20


def rotated_copy_count(input_bytes: int, l2_bytes: int) -> int:
    """How many input copies CUDA-graph timing rotates over (the first is the call's own)."""
    return max(1, min(MAX_ROTATED_COPIES, math.ceil(ROTATION_L2_MULTIPLE * l2_bytes / max(1, input_bytes))))


@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    samples: int
    method: str  # "cuda-events" | "cuda-graph" | "cpu-timer"
    #: The GPU's SM clock, power and temperature while the samples ran (``gpu_state.summarise``),
    #: or None where NVML cannot be read.
    gpu_state: dict[str, Any] | None = None
    #: Every sample in the order it ran (ms), where ``measure(keep_series=True)`` asked for them.
    series_ms: tuple[float, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.series_ms is None:
            del out["series_ms"]  # rows and ceilings stay as they were without it
        return out


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 4:
        mid = statistics.median(values)
        return min(values), mid, max(values)
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _summary(
    samples_ms: Sequence[float],
    method: str,
    gpu_state: dict[str, Any] | None = None,
    keep_series: bool = False,
) -> Timing:
    q1, q2, q3 = _quartiles(samples_ms)
    series = tuple(samples_ms) if keep_series else None
    return Timing(q2, q3 - q1, len(samples_ms), method, gpu_state, series)


#: How ``L2Flusher`` evicts the L2: "write" zeroes its buffer, which leaves the L2 full of dirty
#: lines that the timed kernel may have to write back; "read" reads it, which leaves clean lines.
#: Suspected at 64c3713: a ~50 us memory-bound GEMM read ~10 us slower event-timed after a write
#: flush than as graph replays (NOTES.md, Session 8); "read" is the experiment, off by default.
FLUSH_MODES = ("write", "read")


class L2Flusher:
    """Touches a buffer twice the L2's size, evicting whatever the last run left cached."""

    def __init__(self, device: torch.device | str, mode: str = "write", l2_bytes: int | None = None) -> None:
        if mode not in FLUSH_MODES:
            raise ValueError(f"flush: expected one of {FLUSH_MODES}, got {mode!r}")
        if l2_bytes is None:
            l2_bytes = l2_cache_bytes(device)
        self.mode, self.l2_bytes = mode, l2_bytes
        self.buffer = torch.zeros(2 * l2_bytes // 4, dtype=torch.int32, device=device)
        # The read's one-value result: written in place, so flushing allocates nothing.
        self.sink = torch.zeros((), dtype=torch.int32, device=device)

    def __call__(self) -> None:
        if self.mode == "write":
            self.buffer.zero_()
        else:
            torch.sum(self.buffer, dim=0, dtype=torch.int32, out=self.sink)


def time_cpu(
    fn: Callable[[], Any], *, repeats: int = 20, warmup: int = 2, keep_series: bool = False
) -> Timing:
    """Wall-clock timing for CPU runs; these numbers say nothing about GPU performance."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return _summary(samples, "cpu-timer", keep_series=keep_series)


#: Hot start replays its settling runs from one CUDA graph once there are more than this many,
#: which saves the CPU thousands of Python launches.  It does not keep the stream's launch queue
#: short: on the H100 the 16 replays of a 0.05 ms GEMM's 4000 runs still blocked the CPU for
#: 330-370 ms behind the spin (NOTES.md, Session 20).  A blocked CPU is harmless (the GPU is
#: busy); what made every such measurement retry at 524746d and cef31a3 was the old check, which
#: took it for an idle GPU.
SETTLE_GRAPH_ABOVE = 64
#: The settling runs' graph is replayed at most this many times (a replay is one launch).
SETTLE_REPLAYS = 16

#: Hot start for a graph-timed kernel (under ``GRAPH_BELOW_US``): its samples, replays of a
#: graph of several rounds of every input copy, span this long together (or the window asked
#: for, if shorter).  Until session 25 such kernels got neither settling nor a window: 20 bare
#: replays (~4 ms) right behind an idle spin, at whatever clock the GPU came back with.  At
#: 3d09e87 a compute-bound 1024x4096x4096 GEMM (~50 us) read 1590-1980 MHz inside one tuner final
#: (median 1701) and 1980 in the bench an hour later, 0.0491 against 0.0473 ms.  This is the
#: default; a timing mode may ask for a longer window (``measure``'s ``graph_span_ms``): at e417ff3
#: the medians of such GEMMs at the power cap spread 1.3-3.5 % between 1000 ms windows against
#: 3.7-16 % between 100 ms ones (NOTES.md, Session 28).
GRAPH_SPAN_MS = 100.0
#: At most this many kernel calls in one captured graph (a settling or a sample graph).
MAX_GRAPH_CALLS = 2048

#: The first spin lets the CPU queue at most this many samples (four launches each: flush, two
#: events, kernel) before the GPU starts on them.  A stream's launch queue holds about a thousand
#: launches and the CPU blocks in the next one, so a longer spin cannot put more samples ahead;
#: it only idles the GPU (0.2 s a measurement for the 5000 samples of a 1 s window at 80 us a
#: launch).  Past these, the CPU keeps ahead only by queueing faster than the GPU runs, which
#: the event queries check (``_event_samples``).
SPIN_COVERS_SAMPLES = 200

#: A window longer than ``SPIN_COVERS_SAMPLES`` samples needs a CPU that queues a sample (its
#: flush, two events and the kernel) faster than the GPU runs it; where the CPU's cost per sample
#: is above this share of the GPU's, the window is cut to what the spin covers.  A Triton or
#: Helion launch costs 30-90 us of CPU: 0.05-0.09 ms GEMMs sampled 5000 times read 7-100 %
#: slow on the H100, the GPU waiting for launches in every attempt (NOTES.md, Session 21).
KEEP_PACE_SHARE = 0.75

#: ``torch.cuda._sleep`` counts clock cycles; 2 GHz is at or above any data-centre GPU's SM clock,
#: so the spin lasts at least the seconds asked for.
_SPIN_CYCLES_PER_S = 2.0e9


def _run_ahead(cpu_seconds: float) -> float:
    """Queue a GPU spin long enough for the CPU to enqueue ``cpu_seconds`` of launches behind it;
    returns the spin's length in seconds (at least)."""
    spin_s = cpu_seconds * 1.5 + 2e-4
    torch.cuda._sleep(int(spin_s * _SPIN_CYCLES_PER_S))
    return spin_s


def _capture_graph(step: Callable[[], Any], calls: int) -> Callable[[], None]:
    """``calls`` runs of ``step`` captured in one CUDA graph; returns its replay (warmed: the
    first replay uploads the graph, so it runs here, not behind the spin)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm up on the side stream, as graph capture requires
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            step()
    graph.replay()
    return graph.replay


def _settling_replays(runs: int, most_per_graph: int) -> tuple[int, int]:
    """``runs`` settling runs as replays of one graph: the runs one graph holds and the replays,
    ``SETTLE_REPLAYS`` of them unless that graph would hold more than ``most_per_graph`` runs."""
    per_graph = max(1, min(most_per_graph, math.ceil(runs / SETTLE_REPLAYS)))
    return per_graph, math.ceil(runs / per_graph)


def _settling(
    fn: Callable[[], Any], flusher: L2Flusher | None, settle_calls: int
) -> tuple[Callable[[], Any], int, int]:
    """How hot start queues ``settle_calls`` settling runs (each a flush, then ``fn``): returns
    one step to queue, how many times, and the runs that makes (at least ``settle_calls``).

    Few runs are queued one by one; more than ``SETTLE_GRAPH_ABOVE`` as replays of one graph
    of runs, which costs the CPU a replay's launch instead of each run's.  A kernel that cannot
    be captured in a graph settles run by run, with a warning."""

    def run() -> None:
        if flusher is not None:
            flusher()
        fn()

    if settle_calls <= SETTLE_GRAPH_ABOVE:
        return run, settle_calls, settle_calls
    calls_per_replay, replays = _settling_replays(settle_calls, settle_calls)
    try:
        replay = _capture_graph(run, calls_per_replay)
    except RuntimeError as error:
        warnings.warn(
            f"hot start: settling run by run, the kernel could not be captured in a CUDA graph ({error})",
            RuntimeWarning,
            stacklevel=3,
        )
        return run, settle_calls, settle_calls
    return replay, replays, replays * calls_per_replay


def _cpu_seconds_per_call(fn: Callable[[], Any], calls: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _check_method(method: str, graph_fns: Sequence[Callable[[], Any]] | None) -> None:
    if method not in TIMING_METHODS:
        raise ValueError(f"method: expected one of {TIMING_METHODS}, got {method!r}")
    if method == "cuda-graph" and not graph_fns:
        raise ValueError("method: 'cuda-graph' times replays of graph_fns; expected graph_fns, got none")


def time_cuda(
    fn: Callable[[], Any],
    *,
    repeats: int = 30,
    warmup_ms: float = 25.0,
    flush_l2: bool = True,
    graph_fns: Sequence[Callable[[], Any]] | None = None,
    max_total_ms: float = 2000.0,
    settle_ms: float = 0.0,
    span_ms: float = 0.0,
    flush: str = "write",
    hot_start: bool = False,
    max_span_samples: int = 200,
    graph_span_ms: float = GRAPH_SPAN_MS,
    keep_series: bool = False,
    method: str = "auto",
) -> Timing:
    """Median and IQR of ``fn`` on the current CUDA stream.

    ``graph_fns``, when given, are calls of the same kernel on distinct input copies (together
    larger than the L2); if one run of ``fn`` takes under ``GRAPH_BELOW_US``, they are captured
    in one CUDA graph and each sample is one replay divided by the number of calls.  ``method``
    (``TIMING_METHODS``) pins that choice: "cuda-graph" needs ``graph_fns``.

    An event-timed kernel runs ``settle_ms`` before its samples, then is sampled for at least
    ``span_ms`` (at most ``max_span_samples`` samples for that).  The settling runs go before
    the GPU spin that lets the CPU queue the samples, or, with ``hot_start``, behind it: queued
    right before the samples, each after an L2 flush as the samples are, so the GPU goes from
    settling to sampling with no idle gap in which its clocks could rise again (more than
    ``SETTLE_GRAPH_ABOVE`` of them as replays of a CUDA graph: ``_settling``).  A graph-timed
    kernel settles only with ``hot_start``: ``settle_ms`` of untimed replays right behind the
    spin, then samples that each replay several rounds of every input copy, together spanning
    ``min(span_ms, graph_span_ms)`` (``_graph_plan``); without it, ``repeats`` replays of one
    round each, as before.  Where the GPU
    says it waited for the CPU before or inside a sample (``_event_samples``), the samples are
    taken again behind a longer spin, up to three times (a warning says when all three waited).
    A window the spin cannot cover (more than ``SPIN_COVERS_SAMPLES`` samples) is kept only
    while the CPU queues a sample faster than the GPU runs it, flush included (``_keeps_pace``);
    otherwise, or once a sample past the spin finds the GPU waiting, it is cut to that many.
    """
    _check_method(method, graph_fns)
    device = torch.device("cuda", torch.cuda.current_device())
    flusher = L2Flusher(device, flush) if flush_l2 else None
    fn()
    torch.cuda.synchronize()
    cpu_s = _cpu_seconds_per_call(fn)
    torch.cuda.synchronize()
    # Estimate one run's GPU time (the GPU is held back until the three calls are queued), then
    # warm up for about warmup_ms.
    # The flush's own GPU time is read behind it: a sample keeps the GPU busy for both.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    flushed = torch.cuda.Event(enable_timing=True)
    _run_ahead(3 * cpu_s + (3e-4 if flusher is not None else 0.0))
    start.record()
    for _ in range(3):
        fn()
    end.record()
    if flusher is not None:
        for _ in range(3):
            flusher()
    flushed.record()
    torch.cuda.synchronize()
    estimate_ms = max(start.elapsed_time(end) / 3, 1e-4)
    flush_ms = end.elapsed_time(flushed) / 3 if flusher is not None else 0.0
    graphed = method == "cuda-graph" or (
        method == "auto" and bool(graph_fns) and estimate_ms * 1e3 < GRAPH_BELOW_US
    )
    # Settling runs of an event-timed kernel; a graph-timed one settles in ``_time_graph``.
    settle_calls = 0
    if hot_start and settle_ms and not graphed:
        # The settling runs are queued behind the spin (_event_samples); here only the warm-up.
        warm_ms = warmup_ms
        settle_calls = max(1, min(10_000, math.ceil(settle_ms / estimate_ms)))
    else:
        warm_ms = warmup_ms if graphed else max(warmup_ms, settle_ms)
    for _ in range(max(1, min(1000 if not settle_ms else 10_000, int(warm_ms / estimate_ms)))):
        fn()
    if span_ms and not graphed:
        repeats = max(repeats, min(max_span_samples, math.ceil(span_ms / estimate_ms)))
    repeats = max(20, min(repeats, int(max(max_total_ms, 1.5 * span_ms) / estimate_ms)))

    if graphed:
        if hot_start and settle_ms:
            rounds, settle_rounds = _graph_plan(
                estimate_ms, len(graph_fns), repeats, settle_ms, span_ms, graph_span_ms
            )
            return _time_graph(
                graph_fns,
                repeats,
                keep_series,
                rounds=rounds,
                settle_rounds=settle_rounds,
                settle_gpu_s=settle_rounds * len(graph_fns) * estimate_ms * 1e-3,
            )
        return _time_graph(graph_fns, repeats, keep_series)

    per_call_s = cpu_s + 2e-5
    covered = max(20, SPIN_COVERS_SAMPLES)  # the samples a window the CPU cannot keep pace with keeps
    if not _keeps_pace(per_call_s, (estimate_ms + flush_ms) * 1e-3):
        repeats = min(repeats, covered)
    settle_step, settle_steps, per_step_s = None, 0, per_call_s
    if settle_calls:
        settle_step, settle_steps, settle_calls = _settling(fn, flusher, settle_calls)
        if settle_steps < settle_calls:  # replays of a graph: what one costs the CPU to queue
            per_step_s = _cpu_seconds_per_call(settle_step, calls=1) + 2e-5
    # GPU time the settling runs keep the GPU busy while the CPU queues the samples; the spin
    # covers queueing the settling runs and whatever of the samples' queueing that does not, up
    # to SPIN_COVERS_SAMPLES of them (the launch queue holds no more).
    ahead_s = settle_calls * estimate_ms * 1e-3
    queued_s = min(repeats, SPIN_COVERS_SAMPLES) * per_call_s
    spin_for_s = settle_steps * per_step_s + max(0.0, queued_s - ahead_s)
    for _attempt in range(3):
        attempt = _event_samples(fn, flusher, repeats, spin_for_s, settle_step, settle_steps, ahead_s)
        if not (attempt.ran_dry or attempt.caught_up):
            break
        if attempt.caught_up and repeats > SPIN_COVERS_SAMPLES:
            # Past the samples the spin covers, no spin helps: the CPU fell behind the GPU
            # (``_keeps_pace`` misjudged it, or the CPU slowed), so sample only those, behind
            # twice the spin sized for them (what the long window took to queue is no guide).
            repeats = covered
            spin_for_s *= 2
            continue
        # The GPU ran out of queued work before a sample's kernel was queued (a stall in Python,
        # another process on the CPU, or a spin too short): again, behind a spin at least twice
        # as long, and long enough for what queueing actually took.
        took_s = attempt.enqueue_s - ahead_s if settle_steps else attempt.enqueue_s
        took_s = max(2 * attempt.settle_enqueue_s, took_s) if settle_steps else 2 * took_s
        spin_for_s = max(2 * spin_for_s, took_s)
    else:
        warnings.warn(
            f"timing: the GPU waited for the CPU in each of 3 attempts (the last of "
            f"{len(attempt.samples_ms)} samples); the samples may hold launch time, not only the kernel's",
            RuntimeWarning,
            stacklevel=2,
        )
    return _summary(attempt.samples_ms, "cuda-events", attempt.gpu_state, keep_series)


def _keeps_pace(cpu_per_sample_s: float, gpu_per_sample_s: float) -> bool:
    """Whether the CPU queues samples fast enough to stay ahead of the GPU past the spin."""
    return cpu_per_sample_s <= KEEP_PACE_SHARE * gpu_per_sample_s


@dataclass(frozen=True)
class _Attempt:
    """One try at a measurement's samples (``_event_samples``)."""

    samples_ms: list[float]
    spin_s: float
    #: Seconds the CPU took to queue the settling runs, and everything (settling and samples).
    settle_enqueue_s: float
    enqueue_s: float
    gpu_state: dict[str, Any] | None
    #: The GPU had finished the spin and the settling before the first sample was queued: it
    #: idled (and its clocks could rise) right before sampling.
    ran_dry: bool
    #: The GPU reached a sample's start before the CPU had queued that sample's kernel: the
    #: sample may hold the launch's CPU time, not only the kernel's.
    caught_up: bool


def _event_samples(
    fn: Callable[[], Any],
    flusher: L2Flusher | None,
    repeats: int,
    spin_for_s: float,
    settle_step: Callable[[], Any] | None = None,
    settle_steps: int = 0,
    settle_gpu_s: float = 0.0,
) -> _Attempt:
    """``repeats`` event-timed runs of ``fn`` queued behind a GPU spin sized for ``spin_for_s``
    of queueing, after ``settle_steps`` calls of ``settle_step`` (untimed runs of ``fn``, each
    after a flush like the samples, or replays of a graph of them: ``_settling``).

    Whether the GPU waited for the CPU is asked of the GPU itself: once the settling runs are
    queued, and once each sample's kernel is, the event just before it must still be pending.
    Timing the CPU's queueing against the spin instead (up to cef31a3) failed whenever
    a full launch queue blocked the CPU while the GPU was busy, and retried measurements that
    were sound (mid-sized GEMMs took 16-30 s a store entry to re-time hot; NOTES.md, Session 20)."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ready = torch.cuda.Event()
    caught_up = False
    torch.cuda.synchronize()
    with StateSampler(nvml_for_current_device()) as sampler:
        spin_s = _run_ahead(spin_for_s)
        begin = time.perf_counter()
        for _ in range(settle_steps):
            settle_step()
        ready.record()
        ran_dry = ready.query()
        settle_enqueue_s = time.perf_counter() - begin
        for i in range(repeats):
            if flusher is not None:
                flusher()
            starts[i].record()
            fn()
            caught_up = caught_up or starts[i].query()
            ends[i].record()
        enqueue_s = time.perf_counter() - begin
        torch.cuda.synchronize()
    # The GPU spins (at low power, clocks up) until about begin + spin_s, then settles for
    # about settle_gpu_s: read from there on.
    state = sampler.summary(from_s=begin + spin_s + settle_gpu_s)
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return _Attempt(samples, spin_s, settle_enqueue_s, enqueue_s, state, ran_dry, caught_up)


def _graph_plan(
    call_ms: float,
    copies: int,
    repeats: int,
    settle_ms: float,
    span_ms: float,
    graph_span_ms: float = GRAPH_SPAN_MS,
) -> tuple[int, int]:
    """Hot start of a graph-timed kernel: how many rounds of every input copy one sample's graph
    holds, so that ``repeats`` samples span ``min(span_ms, graph_span_ms)`` (one round without a
    window), and how many rounds settle it for ``settle_ms`` first (at most 10 000, as for
    event-timed settling).  ``call_ms`` is one call's estimated GPU time."""
    round_ms = max(call_ms, 1e-4) * copies
    most = max(1, MAX_GRAPH_CALLS // copies)
    window_ms = min(span_ms, graph_span_ms)
    rounds = min(most, max(1, math.ceil(window_ms / (repeats * round_ms)))) if window_ms > 0 else 1
    settle_rounds = max(1, min(10_000, math.ceil(settle_ms / round_ms)))
    return rounds, settle_rounds


def _time_graph(
    fns: Sequence[Callable[[], Any]],
    repeats: int,
    keep_series: bool = False,
    *,
    rounds: int = 1,
    settle_rounds: int = 0,
    settle_gpu_s: float = 0.0,
) -> Timing:
    """Each sample: one replay of a graph holding ``rounds`` rounds of every call in ``fns``,
    per call.  ``settle_rounds`` (hot start) more rounds run untimed first, queued right behind
    the spin as at most ``SETTLE_REPLAYS`` replays of a graph of their own (more only where that
    graph would exceed ``MAX_GRAPH_CALLS``), so the samples start at the clocks this kernel
    sustains, not the idle GPU's.  Where the GPU finished the settling before the first sample
    was queued, or reached a sample's start before the CPU began queueing its replay, the
    samples are taken again (twice at most; then a warning): a sample must hold the kernel's
    time, not a launch's."""

    def every_call() -> None:
        for f in fns:
            f()

    replay = _capture_graph(every_call, rounds)
    settle_replay, settle_replays = replay, 0
    if settle_rounds:
        per_replay, settle_replays = _settling_replays(settle_rounds, MAX_GRAPH_CALLS // len(fns))
        if per_replay != rounds:
            settle_replay = _capture_graph(every_call, per_replay)
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    settled = torch.cuda.Event()
    for _attempt in range(3):
        waited = False
        with StateSampler(nvml_for_current_device()) as sampler:
            # A replay's launch costs the CPU ~10 us; 30 us each covers it with room.
            spin_s = _run_ahead((settle_replays + repeats) * 3e-5)
            begin = time.perf_counter()
            for _ in range(settle_replays):
                settle_replay()
            if settle_replays:
                settled.record()
                waited = settled.query()
            for i in range(repeats):
                starts[i].record()
                # Asked before the replay is queued: a start already passed means the GPU idles
                # until the replay arrives, inside the sample.  Asked after, a replay longer than
                # the launch queue (it blocks the CPU while the GPU runs it) would find its start
                # passed with no gap at all.  Asked of every sample, so each attempt asks as often.
                if settle_replays:
                    waited = starts[i].query() or waited
                replay()
                ends[i].record()
            torch.cuda.synchronize()
        if not waited:
            break
    else:
        warnings.warn(
            "timing: the GPU waited for the CPU around a hot-started graph's samples in each of 3 "
            "attempts; the samples may hold launch time, not only the kernel's",
            RuntimeWarning,
            stacklevel=3,
        )
    per_call = [s.elapsed_time(e) / (len(fns) * rounds) for s, e in zip(starts, ends)]
    state = sampler.summary(from_s=begin + spin_s + settle_gpu_s)
    return _summary(per_call, "cuda-graph", state, keep_series)


#: ``steady`` timing (see :func:`measure`): kernels timed with events run this long before the
#: first sample, and the samples span at least this long (``triton.testing.do_bench``'s 100 ms).
STEADY_SETTLE_MS = 200.0
STEADY_SPAN_MS = 100.0


def measure(
    fn: Callable[[], Any],
    device: torch.device | str,
    *,
    graph_fns: Sequence[Callable[[], Any]] | None = None,
    repeats: int = 30,
    steady: bool = False,
    flush: str = "write",
    hot_start: bool = False,
    span_ms: float | None = None,
    max_samples: int | None = None,
    graph_span_ms: float | None = None,
    keep_series: bool = False,
    method: str = "auto",
) -> Timing:
    """Time ``fn`` with the right clock for ``device``.

    ``steady`` runs a long kernel (one timed with events, not a graph) for ``STEADY_SETTLE_MS``
    before sampling and samples it for at least ``STEADY_SPAN_MS``: a compute-bound GEMM draws
    the H100 to its power limit within milliseconds, so 20 samples right after another kernel
    catch the clocks on their way down (tuned and bench times of one config were 5-10 % apart
    at 34dc155 on such shapes).  ``tilearena timing-check`` measures whether it helps.
    ``flush`` is how the L2 is emptied before each event-timed sample (``FLUSH_MODES``).

    ``hot_start`` (with ``steady``) queues the settling runs behind the spin that lets the CPU
    get ahead, not before it: without it the GPU idles through the spin (tens of ms at low
    power) between settling and the first sample.  ``span_ms`` replaces steady's
    ``STEADY_SPAN_MS`` and lifts its 200-sample cap, so the samples really span that long, or
    as long as ``max_samples`` of them last (a short kernel's window stays short).
    ``graph_span_ms`` (with ``hot_start``) is how long a graph-timed kernel's samples span
    together (``GRAPH_SPAN_MS`` when not given; never longer than the event-timed span).
    ``keep_series`` returns every sample, in order, in ``Timing.series_ms``.
    ``method`` (``TIMING_METHODS``) pins CUDA-graph replay or event timing on a GPU; a CPU
    device has one timer and ignores it.
    """
    if method not in TIMING_METHODS:
        raise ValueError(f"method: expected one of {TIMING_METHODS}, got {method!r}")
    if flush not in FLUSH_MODES:
        raise ValueError(f"flush: expected one of {FLUSH_MODES}, got {flush!r}")
    if (hot_start or span_ms is not None) and not steady:
        raise ValueError("hot_start, span_ms: expected with steady=True (they shape its settling, sampling)")
    if span_ms is not None and (
        isinstance(span_ms, bool) or not (isinstance(span_ms, (int, float)) and 0 < span_ms <= 60_000)
    ):
        raise ValueError(f"span_ms: expected milliseconds in (0, 60000], got {span_ms!r}")
    if graph_span_ms is not None and (
        not hot_start
        or isinstance(graph_span_ms, bool)
        or not (isinstance(graph_span_ms, (int, float)) and 0 < graph_span_ms <= 60_000)
    ):
        raise ValueError(
            f"graph_span_ms: expected milliseconds in (0, 60000] with hot_start=True, got {graph_span_ms!r}"
        )
    whole = isinstance(max_samples, int) and not isinstance(max_samples, bool)
    if max_samples is not None and (span_ms is None or not whole or max_samples < 20):
        raise ValueError(f"max_samples: expected an int >= 20 with span_ms, got {max_samples!r}")
    if torch.device(device).type == "cuda":
        if steady:
            return time_cuda(
                fn,
                graph_fns=graph_fns,
                repeats=repeats,
                settle_ms=STEADY_SETTLE_MS,
                span_ms=STEADY_SPAN_MS if span_ms is None else float(span_ms),
                flush=flush,
                hot_start=hot_start,
                max_span_samples=200 if span_ms is None else max_samples or 100_000,
                graph_span_ms=GRAPH_SPAN_MS if graph_span_ms is None else float(graph_span_ms),
                keep_series=keep_series,
                method=method,
            )
        return time_cuda(
            fn, graph_fns=graph_fns, repeats=repeats, flush=flush, keep_series=keep_series, method=method
        )
    return time_cpu(fn, repeats=min(repeats, 5), warmup=1, keep_series=keep_series)


def noise_floor(*measurements: Timing) -> float:
    """Relative spread ((max - min) / min) of measurements of the same thing: differences below
    it are noise."""
    medians = [m.median_ms for m in measurements]
    low = min(medians)
    return (max(medians) - low) / low if low > 0 else 0.0
