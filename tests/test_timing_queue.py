"""``bench.timing.time_cuda``'s queue, on a CPU: what the GPU would be given, in order.

The CUDA calls are replaced by stand-ins that write to one log, so the tests read the exact
order of spins, flushes, kernel calls and event records that a GPU would run."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tilearena.bench import timing

#: What one kernel call "takes" on the stand-in GPU (ms): long enough to be event-timed.
KERNEL_MS = 1.0


class _Log(list):
    queries = 0
    done: frozenset[int] = frozenset()
    spin_cycles: list[int]

    def cut_at_last(self, name: str) -> list[str]:
        """Everything after the last ``name`` (the measurement's final attempt)."""
        last = max(i for i, item in enumerate(self) if item == name)
        return self[last + 1 :]


@pytest.fixture
def gpu_log(monkeypatch) -> _Log:
    log = _Log()
    log.spin_cycles = []

    def spin(cycles: int) -> None:
        log.spin_cycles.append(cycles)
        log.append("spin")

    class Event:
        """Records where in the log it stands; the time between two is their kernels'.  The
        stand-in GPU is always behind the CPU (an event queried is pending) unless a test says
        which queries find it done (``log.done``: the indexes of the queries, in order)."""

        def __init__(self, enable_timing: bool = False) -> None:
            self.at = -1

        def record(self) -> None:
            self.at = len(log)
            log.append("record")

        def elapsed_time(self, other: Event) -> float:
            return log[self.at : other.at].count("kernel") * KERNEL_MS

        def query(self) -> bool:
            log.queries += 1
            return log.queries - 1 in log.done

    class Flusher:
        def __init__(self, device, mode: str = "write", l2_bytes: int | None = None) -> None:
            self.mode = mode

        def __call__(self) -> None:
            log.append("flush")

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: log.append("sync"))
    monkeypatch.setattr(torch.cuda, "_sleep", spin)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(timing, "L2Flusher", Flusher)
    monkeypatch.setattr(timing, "nvml_for_current_device", lambda: None)
    monkeypatch.setattr(timing, "_capture_graph", _graph_stand_in(log))
    return log


def _graph_stand_in(log: _Log):
    """``_capture_graph``'s stand-in: capture logs nothing (a captured kernel does not run);
    each replay logs "graph", then every captured call's work."""

    def capture(step, calls: int):
        before = len(log)
        for _ in range(calls):
            step()
        captured = log[before:]
        del log[before:]

        def replay() -> None:
            log.append("graph")
            log.extend(captured)

        return replay

    return capture


def _kernel(log: _Log):
    return lambda: log.append("kernel")


def test_hot_start_queues_the_settling_runs_right_before_the_samples(gpu_log) -> None:
    """hot_start: the last spin is followed by settle_ms / KERNEL_MS settling runs, each after a
    flush as the samples are, then the samples; nothing lets the GPU idle between them.  200
    runs are more than SETTLE_GRAPH_ABOVE: they are queued as SETTLE_REPLAYS replays of a graph
    of 13 runs (208 in all), not as 400 launches."""
    timed = timing.time_cuda(
        _kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True, keep_series=True
    )
    after_spin = gpu_log.cut_at_last("spin")
    replays, runs_per_replay = timing.SETTLE_REPLAYS, 13
    settle = (["graph"] + ["flush", "kernel"] * runs_per_replay) * replays
    sample = ["flush", "record", "kernel", "record"]
    assert replays * runs_per_replay >= 200 > replays * (runs_per_replay - 1)
    assert after_spin[: len(settle)] == settle
    assert after_spin[len(settle) :] == ["record"] + sample * timed.samples + ["sync"]
    assert timed.samples == 100 and timed.series_ms == (KERNEL_MS,) * 100
    assert gpu_log.count("spin") == 2  # the estimate's and the samples': queued in time, once
    # Before the spin only the short warm-up ran (25 ms) and one replay whose queueing was
    # timed (the CPU's cost of a replay sizes the spin), not the 200 ms of settling.
    before = gpu_log[: len(gpu_log) - len(after_spin)]
    assert before.count("graph") == 1
    assert before.count("kernel") < 40 + runs_per_replay


def test_a_few_settling_runs_are_queued_one_by_one(gpu_log) -> None:
    """Up to SETTLE_GRAPH_ABOVE settling runs (a long kernel's) need no graph."""
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=float(timing.SETTLE_GRAPH_ABOVE), hot_start=True)
    after_spin = gpu_log.cut_at_last("spin")
    settle = ["flush", "kernel"] * timing.SETTLE_GRAPH_ABOVE
    assert "graph" not in gpu_log
    sample = ["flush", "record", "kernel", "record"]
    assert after_spin == settle + ["record"] + sample * timed.samples + ["sync"]


def test_a_kernel_a_graph_cannot_capture_settles_run_by_run(gpu_log, monkeypatch) -> None:
    def refuse(step, calls):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(timing, "_capture_graph", refuse)
    with pytest.warns(RuntimeWarning, match="settling run by run.*not permitted when stream is capturing"):
        timed = timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True)
    after_spin = gpu_log.cut_at_last("spin")
    settle = ["flush", "kernel"] * 200
    sample = ["flush", "record", "kernel", "record"]
    assert after_spin == settle + ["record"] + sample * timed.samples + ["sync"]


def test_the_settling_graph_costs_the_cpu_at_most_sixteen_launches(gpu_log) -> None:
    """A 0.1 ms kernel: 2000 settling runs (10_000 at most) are queued behind the spin by at
    most SETTLE_REPLAYS launches from the CPU, beside the samples' four launches each (the GPU's
    queue still holds every run's work: NOTES.md, Session 20)."""
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=2000.0, span_ms=100.0, hot_start=True)
    after_spin = gpu_log.cut_at_last("spin")
    assert after_spin.count("graph") <= timing.SETTLE_REPLAYS
    launches = after_spin.count("graph") + 4 * timed.samples
    assert launches <= timing.SETTLE_REPLAYS + 4 * 200
    assert after_spin[after_spin.index("record") :].count("kernel") == timed.samples
    assert after_spin.count("kernel") - timed.samples >= 2000


def test_a_gpu_that_ran_dry_before_the_samples_is_measured_again_with_a_longer_spin(gpu_log) -> None:
    """The first query (the event after the settling runs) finds the GPU done: it idled before
    sampling, so the samples are taken again behind a longer spin; the second attempt's count."""
    gpu_log.done = frozenset({0})
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert gpu_log.count("spin") == 3 and gpu_log.spin_cycles[2] > gpu_log.spin_cycles[1]
    after_spin = gpu_log.cut_at_last("spin")
    assert after_spin.count("kernel") == 200 + 8 + timed.samples  # 16 replays of 13 runs, then the samples
    assert gpu_log.queries == 2 * (1 + timed.samples)


def test_a_gpu_that_caught_up_with_a_sample_is_measured_again(gpu_log) -> None:
    """A sample's start event already done once its kernel is queued: the GPU waited for the
    CPU inside that sample (a stall in Python), so the samples are taken again."""
    gpu_log.done = frozenset({5})
    timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert gpu_log.count("spin") == 3


def test_a_cpu_blocked_by_a_full_launch_queue_measures_once(gpu_log, monkeypatch) -> None:
    """Behind the spin, each settling replay blocks the CPU (a full launch queue: the GPU is
    busy), so queueing takes far longer than the spin.  The GPU never waited, so one attempt:
    at cef31a3 the timer compared the CPU's queueing with the spin and retried every such
    measurement twice (16-30 s a store entry to re-time mid-sized GEMMs hot)."""
    capture = _graph_stand_in(gpu_log)

    def behind_the_spin() -> bool:
        last = {name: i for i, name in enumerate(gpu_log) if name in ("spin", "sync")}
        return last.get("spin", -1) > last.get("sync", -1)

    def blocking_capture(step, calls: int):
        replay = capture(step, calls)

        def blocked_replay() -> None:
            if behind_the_spin():
                time.sleep(0.01)
            replay()

        return blocked_replay

    monkeypatch.setattr(timing, "_capture_graph", blocking_capture)
    attempts = []
    event_samples = timing._event_samples

    def counted(*args, **kwargs):
        attempts.append(event_samples(*args, **kwargs))
        return attempts[-1]

    monkeypatch.setattr(timing, "_event_samples", counted)
    timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert len(attempts) == 1 and gpu_log.count("spin") == 2
    assert attempts[0].settle_enqueue_s > 0.1 > attempts[0].spin_s  # what the old check retried


def test_a_short_kernel_is_timed_as_replays_of_one_graph_of_every_input_copy(gpu_log, monkeypatch) -> None:
    """Without hot start a graph-timed kernel is not settled, even in a steady mode."""
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 0.01)  # under GRAPH_BELOW_US
    copies = [_kernel(gpu_log)] * 3
    timed = timing.time_cuda(copies[0], graph_fns=copies, settle_ms=200.0, span_ms=100.0)
    after_spin = gpu_log.cut_at_last("spin")
    replay = ["record", "graph", "kernel", "kernel", "kernel", "record"]
    assert after_spin == replay * timed.samples + ["sync"]
    assert timed.method == "cuda-graph" and timed.median_ms == pytest.approx(0.01)


@pytest.mark.parametrize("span_ms", [100.0, 1000.0])
def test_hot_start_settles_a_graph_timed_kernel_and_its_samples_span_the_graph_window(
    gpu_log, monkeypatch, span_ms: float
) -> None:
    """A 10 us kernel over 3 input copies (a round is 0.03 ms): 200 ms of settling is 6667
    rounds, queued right behind the spin as 16 replays of a graph of 417 rounds; then 30 samples,
    each a replay of 112 rounds (30 x 112 x 0.03 ms >= 100 ms: GRAPH_SPAN_MS, also for a 1 s
    window); the time is per call."""
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 0.01)
    copies = [_kernel(gpu_log)] * 3
    timed = timing.time_cuda(copies[0], graph_fns=copies, settle_ms=200.0, span_ms=span_ms, hot_start=True)
    after_spin = gpu_log.cut_at_last("spin")
    settle = (["graph"] + ["kernel"] * 3 * 417) * 16
    sample = ["record", "graph"] + ["kernel"] * 3 * 112 + ["record"]
    assert 16 * 417 >= 200.0 / 0.03 > 16 * 416 and timing.GRAPH_SPAN_MS <= 30 * 112 * 0.03
    assert after_spin == settle + ["record"] + sample * 30 + ["sync"]
    assert timed.method == "cuda-graph" and timed.samples == 30
    assert timed.median_ms == pytest.approx(0.01)
    assert gpu_log.count("spin") == 2  # the estimate's and the samples': no retry


def test_a_hot_graph_measurement_is_taken_again_when_the_gpu_waited(gpu_log, monkeypatch) -> None:
    """The settling's end found done when the samples are queued (the GPU ran dry), or a
    sample's start reached before its replay was queued: the attempt is repeated; after three
    such attempts a warning says so."""
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 0.01)
    copies = [_kernel(gpu_log)] * 3
    gpu_log.done = frozenset({0})  # the first attempt's settling check: the GPU ran dry
    timing.time_cuda(copies[0], graph_fns=copies, settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert gpu_log.count("spin") == 3
    gpu_log.clear()
    gpu_log.queries = 0
    # Each attempt asks 31 times (the settling, then each of 30 samples): a sample of each.
    gpu_log.done = frozenset({5, 31 + 7, 62 + 30})
    with pytest.warns(RuntimeWarning, match="hot-started graph"):
        timing.time_cuda(copies[0], graph_fns=copies, settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert gpu_log.count("spin") == 4


@given(
    call_ms=st.floats(min_value=1e-5, max_value=0.05),
    copies=st.integers(min_value=1, max_value=timing.MAX_ROTATED_COPIES),
    repeats=st.integers(min_value=20, max_value=200),
    settle_ms=st.floats(min_value=0.5, max_value=1000.0),
    span_ms=st.sampled_from([0.0, 50.0, 100.0, 1000.0]),
    graph_span_ms=st.sampled_from([timing.GRAPH_SPAN_MS, 1000.0]),
)
def test_a_graph_plan_spans_its_window_within_the_graph_size_cap(
    call_ms: float, copies: int, repeats: int, settle_ms: float, span_ms: float, graph_span_ms: float
) -> None:
    rounds, settle_rounds = timing._graph_plan(call_ms, copies, repeats, settle_ms, span_ms, graph_span_ms)
    round_ms = max(call_ms, 1e-4) * copies
    assert rounds >= 1 and rounds * copies <= max(copies, timing.MAX_GRAPH_CALLS)
    window_ms = min(span_ms, graph_span_ms)
    if window_ms == 0:
        assert rounds == 1
    elif rounds * copies + copies <= timing.MAX_GRAPH_CALLS:  # not held back by the cap
        assert repeats * rounds * round_ms >= window_ms * (1 - 1e-9)
        assert rounds == 1 or repeats * (rounds - 1) * round_ms < window_ms
    assert 1 <= settle_rounds <= 10_000
    assert settle_rounds == 10_000 or settle_rounds * round_ms >= settle_ms * (1 - 1e-9)


def test_without_hot_start_the_settling_runs_before_the_spin(gpu_log) -> None:
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0)
    after_spin = gpu_log.cut_at_last("spin")
    assert after_spin == ["record"] + ["flush", "record", "kernel", "record"] * timed.samples + ["sync"]
    assert gpu_log.count("kernel") >= 200 + timed.samples
    assert timed.series_ms is None and "series_ms" not in timed.as_dict()


def test_a_long_window_lifts_the_sample_cap(gpu_log) -> None:
    """measure's span_ms: samples for that long, past steady's 200-sample cap."""
    capped = timing.time_cuda(_kernel(gpu_log), settle_ms=1.0, span_ms=1000.0)
    long = timing.time_cuda(_kernel(gpu_log), settle_ms=1.0, span_ms=1000.0, max_span_samples=100_000)
    assert capped.samples == 200 and long.samples == 1000


def test_the_sustained_mode_samples_a_second_in_at_most_5000_samples(gpu_log, monkeypatch) -> None:
    """``--timing sustained``'s keywords through ``measure``: a 1 ms kernel is sampled for 1 s
    (1000 samples), a 0.1 ms one for 5000 samples (0.5 s), not 10_000."""
    from tilearena.autotune.store import measure_kwargs

    sustained = measure_kwargs("sustained")
    long = timing.measure(_kernel(gpu_log), "cuda", **sustained)
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 0.1)
    short = timing.measure(_kernel(gpu_log), "cuda", **sustained)
    assert (long.samples, short.samples) == (1000, 5000)


def test_a_long_window_spins_only_for_what_the_launch_queue_holds(gpu_log, monkeypatch) -> None:
    """5000 samples of a 2 ms kernel at 1 ms of CPU each (the CPU keeps pace): the spin covers
    queueing SPIN_COVERS_SAMPLES of them (0.2 s), not 5 s the GPU would idle while the CPU waits
    on a full launch queue anyway."""
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 2.0)
    monkeypatch.setattr(timing, "_cpu_seconds_per_call", lambda fn, calls=3: 1e-3)
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=1.0, span_ms=10_000.0, max_span_samples=5000)
    covered_s = timing.SPIN_COVERS_SAMPLES * (1e-3 + 2e-5)
    assert timed.samples == 5000
    assert gpu_log.spin_cycles[-1] == int((1.5 * covered_s + 2e-4) * timing._SPIN_CYCLES_PER_S)


def test_a_window_the_cpu_cannot_keep_pace_with_is_cut_to_what_the_spin_covers(gpu_log, monkeypatch) -> None:
    """A 0.1 ms kernel at 0.1 ms of CPU a launch (a Triton GEMM's): past the spin the GPU
    would wait for every launch, so a 1 s window is cut to SPIN_COVERS_SAMPLES samples, all of
    them queued within the spin, and taken once."""
    monkeypatch.setattr(sys.modules[__name__], "KERNEL_MS", 0.1)
    monkeypatch.setattr(timing, "_cpu_seconds_per_call", lambda fn, calls=3: 1e-4)
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=1.0, span_ms=1000.0, max_span_samples=5000)
    assert timed.samples == timing.SPIN_COVERS_SAMPLES
    assert gpu_log.count("spin") == 2
    covered_s = timing.SPIN_COVERS_SAMPLES * (1e-4 + 2e-5)
    assert gpu_log.spin_cycles[-1] == int((1.5 * covered_s + 2e-4) * timing._SPIN_CYCLES_PER_S)


def test_keeping_pace_counts_the_flush_as_gpu_time() -> None:
    """A sample keeps the GPU busy for its flush and its kernel; the CPU must queue it in at
    most KEEP_PACE_SHARE of that."""
    assert timing._keeps_pace(0.07e-3, (0.06 + 0.04) * 1e-3)
    assert not timing._keeps_pace(0.08e-3, (0.06 + 0.04) * 1e-3)
    assert not timing._keeps_pace(0.07e-3, 0.06e-3)


def test_a_long_window_that_finds_the_gpu_waiting_is_cut(gpu_log, monkeypatch) -> None:
    """The CPU looked fast enough, but a sample's start was done once its kernel was queued
    (query 300: the first attempt's 300th sample, past what the spin covers): the second
    attempt samples only SPIN_COVERS_SAMPLES, behind twice the first spin."""
    gpu_log.done = frozenset({300})
    timed = timing.time_cuda(_kernel(gpu_log), settle_ms=1.0, span_ms=1000.0, max_span_samples=5000)
    assert gpu_log.count("spin") == 3
    # Twice the spin sized for SPIN_COVERS_SAMPLES (the spin's fixed 0.2 ms aside), not one
    # sized for queueing 1000 samples.
    first_s, second_s = (c / timing._SPIN_CYCLES_PER_S - 2e-4 for c in gpu_log.spin_cycles[1:])
    assert second_s == pytest.approx(2 * first_s, rel=1e-3)
    assert timed.samples == timing.SPIN_COVERS_SAMPLES
    assert gpu_log.cut_at_last("spin").count("kernel") == timing.SPIN_COVERS_SAMPLES


def test_a_gpu_that_waited_in_every_attempt_is_reported(gpu_log) -> None:
    """Three attempts, each finding the GPU idle before its samples: the samples are returned
    with a warning, not passed off as clean."""
    gpu_log.done = frozenset(range(100_000))
    with pytest.warns(RuntimeWarning, match="GPU waited for the CPU in each of 3 attempts"):
        timing.time_cuda(_kernel(gpu_log), settle_ms=200.0, span_ms=100.0, hot_start=True)
    assert gpu_log.count("spin") == 4  # the estimate's, then three attempts'


def test_measure_refuses_hot_start_or_a_window_without_steady() -> None:
    with pytest.raises(ValueError, match="hot_start, span_ms: expected with steady=True"):
        timing.measure(lambda: None, "cpu", hot_start=True)
    with pytest.raises(ValueError, match="hot_start, span_ms: expected with steady=True"):
        timing.measure(lambda: None, "cpu", span_ms=500.0)
    for bad in (0.0, -1.0, 1e9, float("nan"), True):
        with pytest.raises(ValueError, match="span_ms: expected milliseconds"):
            timing.measure(lambda: None, "cpu", steady=True, span_ms=bad)
    for bad in (0, 19, 2000.0, True, "2000"):
        with pytest.raises(ValueError, match="max_samples: expected an int >= 20 with span_ms"):
            timing.measure(lambda: None, "cpu", steady=True, span_ms=500.0, max_samples=bad)
    with pytest.raises(ValueError, match="max_samples: expected an int >= 20 with span_ms"):
        timing.measure(lambda: None, "cpu", steady=True, max_samples=2000)
    for bad in (0.0, -1.0, 1e9, float("nan"), True, "1000"):
        with pytest.raises(ValueError, match="graph_span_ms: expected milliseconds"):
            timing.measure(lambda: None, "cpu", steady=True, hot_start=True, graph_span_ms=bad)
    with pytest.raises(ValueError, match=r"graph_span_ms: expected .* with hot_start=True"):
        timing.measure(lambda: None, "cpu", steady=True, graph_span_ms=1000.0)  # bare replays: no window


def test_measure_keeps_the_series_when_asked() -> None:
    kept = timing.measure(lambda: sum(range(100)), "cpu", keep_series=True)
    assert kept.series_ms is not None and len(kept.series_ms) == kept.samples
    assert list(kept.as_dict()["series_ms"]) == list(kept.series_ms)
