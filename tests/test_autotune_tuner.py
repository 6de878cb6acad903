"""``tune()`` end to end on a CPU: a fake backend with a known best config, one config that
gives a wrong answer, one that raises and one that crashes the (fake) CUDA timer.

What is real: ``tune`` itself, ``WorkerEvaluator`` (check-then-time, the batch-timing fallback),
``tasks.check_candidate`` with the default ``check_backend`` (float64 reference, NaN-poisoned
output), the exhaustive search, the head-to-head final, and ``store.bake`` / ``lookup_config``.
What is faked: the worker process (an in-process stand-in with the same reply contract), the two
tasks that need a GPU (``device_context`` and ``time_candidates``) and the current GPU's identity.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import pytest
import torch
from tilearena.autotune import store, tasks
from tilearena.autotune.space import canonical_json
from tilearena.autotune.tuner import TuneRequest, tune
from tilearena.autotune.worker import Reply, failure_kind_of
from tilearena.kernels import registry

OP, BACKEND = "rmsnorm", "fake-tuned"
SHAPE = {"M": 8, "N": 64}
GPU = store.GpuIdentity("NVIDIA H100 80GB HBM3", "h100-sxm", (9, 0))

BEST = {"BLOCK": 64, "num_warps": 4}
DEFAULT = {"BLOCK": 32, "num_warps": 4}
WRONG = {"BLOCK": 128, "num_warps": 8}  # runs, but its answer is off by 50 %
RAISES = {"BLOCK": 16, "num_warps": 2}  # the kernel raises a plain error
CRASHES = {"BLOCK": 128, "num_warps": 2}  # passes the check, then kills the CUDA context when timed
BROKEN = [WRONG, RAISES, CRASHES]

#: Fake kernel times (ms). The broken configs would be the fastest of all if they were ever timed
#: (or their crash ignored), so a leak in the accuracy gate makes one of them win.
TRAP_MS = 0.01


def fake_ms(config):
    if config in BROKEN:
        return TRAP_MS
    if config == BEST:
        return 1.0
    if config == DEFAULT:
        return 3.0
    if config == {"BLOCK": 16, "num_warps": 4}:
        return 2.0  # found in the first search batch: an improvement on the default
    # Everything else: slower than the best by well over the final's noise threshold.
    return 1.5 + 0.1 * [16, 32, 64, 128].index(config["BLOCK"]) + 0.01 * config["num_warps"]


def fake_rmsnorm(x, weight, eps, out=None, config=None):
    config = dict(config or DEFAULT)
    if config == RAISES:
        raise ValueError("BLOCK=16 with 2 warps overflows the registers")
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + eps) * weight.float()
    if config == WRONG:
        y = y * 1.5
    return y.to(x.dtype)


#: The fake GPU's card (its CUDA UUID): every entry the fake worker's tuning bakes records it.
CARD = "GPU-00000000-1111-2222-3333-444444444444"


class InProcessWorker:
    """Stands in for ``IsolatedWorker``: runs each task here and answers with a ``Reply`` the way
    the worker's ``_serve`` does (an exception becomes "fatal" or "error" by its message). The
    GPU-only tasks are replaced; any other task than the check is a test failure."""

    def __init__(self):
        self.calls = Counter()
        self.timed = []  # every batch passed to the timer
        self.timings = []  # how each batch was to be timed (a TIMING_MODES name)
        self.pinned = []  # each batch's pinned timing methods (None: the timer picks)

    def call(self, task, *args, timeout_s=60.0, **kwargs):
        self.calls[task.__name__] += 1
        fakes = {
            tasks.device_context: self.device_context,
            tasks.time_candidates: self.time_candidates,
            tasks.check_candidate: tasks.check_candidate,
        }
        if task not in fakes:
            pytest.fail(f"tune() sent an unexpected task to the worker: {task.__name__}")
        try:
            value = fakes[task](*args, **kwargs)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            return Reply(False, failure=failure_kind_of(message), detail=message)
        return Reply(True, value)

    @staticmethod
    def device_context(device, shape, dtype_name):
        return {
            "shape": dict(shape),
            "dtype_bytes": tasks.dtype_from_name(dtype_name).itemsize,
            "shared_memory_bytes": 227 * 1024,
            "sm_count": 132,
            "compute_capability": GPU.compute_capability,
            "gpu_name": GPU.name,
            "gpu_uuid": CARD,
        }

    def time_candidates(
        self,
        op,
        backend,
        shape,
        dtype_name,
        device,
        configs,
        rounds=2,
        repeats=20,
        timing="default",
        with_state=False,
        methods=None,
    ):
        assert (op, backend, shape) == (OP, BACKEND, SHAPE)
        self.timed.append([dict(c) for c in configs])
        self.timings.append(timing)
        self.pinned.append(methods)
        if CRASHES in configs:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        times = [[self.clock_factor * fake_ms(c)] * rounds for c in configs]
        if not with_state:
            return times
        # The final reports the SM clock it ran at (as bench.gpu_state.combine does) and, like
        # the real task, each round's method: the pinned one, else the fake timer's pick.
        used = [[m or self.picked_method] * rounds for m in (methods or [None] * len(configs))]
        return {
            "ms": times,
            "gpu_state": [{"sm_clock_mhz": self.sm_clock_mhz} for _ in configs],
            "methods": used,
        }

    #: The method the fake timer picks when none is pinned.
    picked_method = "cuda-graph"

    #: The fake's GPU: its SM clock in the final, and how much slower every config runs.
    sm_clock_mhz = 1755.0
    clock_factor = 1.0


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """The fake backend in the registry, an empty baked store in tmp_path, no real GPU lookups."""
    b = registry.Backend(
        OP,
        BACKEND,
        "triton",
        fake_rmsnorm,
        devices=("cuda", "cpu"),
        writes_out=False,
        config_space={"BLOCK": (16, 32, 64, 128), "num_warps": (2, 4, 8)},
        default_config=dict(DEFAULT),
    )
    monkeypatch.setitem(registry._BACKENDS, (OP, BACKEND), b)
    monkeypatch.setenv("TILEARENA_BAKED_DIR", str(tmp_path))
    monkeypatch.setattr(store, "current_gpu", lambda device=None: GPU)
    store.clear_cache()
    yield tmp_path
    store.clear_cache()


def _request(effort="quick"):
    # "bf16": the alias must reach the check (torch dtype) and the entry ("bfloat16") normalised.
    return TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", effort, budget_s=None, device="cpu")


def test_tune_picks_the_known_best_and_broken_configs_cannot_win(fake_backend):
    worker = InProcessWorker()
    result = tune(_request(), worker)

    assert result.error is None
    assert result.search.strategy == "exhaustive" and result.search.stopped_by == "done"
    # 12 configs, each checked once (the default seed is not measured twice).
    assert len(result.search.outcomes) == 12
    assert worker.calls["check_candidate"] == 12
    assert result.decision.winner == BEST
    assert result.entry["config"] == BEST
    assert result.entry["time_ms"] == pytest.approx(1.0)
    assert result.entry["dtype"] == "bfloat16" and result.entry["shape"] == SHAPE
    assert (result.entry["evaluated"], result.entry["failed"]) == (12, 3)
    # How the final timed the winner (the fake timer's pick) and the card, for the bench and
    # baked-check.
    assert result.entry["timing_method"] == "cuda-graph" and result.entry["gpu_uuid"] == CARD
    # A graph-timed final of a mode without hot start has no window to record; one with it does.
    assert "graph_window_ms" not in result.entry
    sustained = TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", "quick", budget_s=None, device="cpu",
                            timing="sustained")
    assert tune(sustained, InProcessWorker()).entry["graph_window_ms"] == 1000.0

    # Each broken config is recorded as failed, with its kind, and never got a time.
    failed = {canonical_json(o.config): o for o in result.search.failures}
    assert set(failed) == {canonical_json(c) for c in BROKEN}
    assert failed[canonical_json(WRONG)].failure == "wrong"
    assert "relative L2 error" in failed[canonical_json(WRONG)].detail
    assert failed[canonical_json(RAISES)].failure == "error"
    assert "overflows the registers" in failed[canonical_json(RAISES)].detail
    assert failed[canonical_json(CRASHES)].failure == "fatal"
    assert failed[canonical_json(CRASHES)].detail.startswith("timing: ")
    assert all(o.time_ms is None for o in failed.values())
    # Only the crashing config passed the check, so only it reached the timer; the others never.
    timed = [c for batch in worker.timed for c in batch]
    assert WRONG not in timed and RAISES not in timed and CRASHES in timed
    # The batch it crashed was re-timed one by one, so its neighbours still got times.
    assert [CRASHES] in worker.timed

    # Failed configs are not finalists, runner-ups, or successes.
    finalists = [c for c, _ in result.decision.standings]
    assert len(finalists) == 4 and not any(c in BROKEN for c in finalists)
    assert not any(r["config"] in BROKEN for r in result.entry["runner_ups"])
    assert not any(o.config in BROKEN for o in result.search.successes)
    runner_times = [r["time_ms"] for r in result.entry["runner_ups"]]
    assert runner_times == sorted(runner_times) and runner_times[0] > result.entry["time_ms"]

    # The kernel's default was measured first, as a seed.
    assert result.search.outcomes[0].config == DEFAULT and result.search.outcomes[0].source == "seed"

    record = result.log_record()
    assert record["winner"] == result.entry and record["evaluated"] == 12
    assert sorted((canonical_json(f["config"]), f["failure"]) for f in record["failed"]) == sorted(
        [
            (canonical_json(WRONG), "wrong"),
            (canonical_json(RAISES), "error"),
            (canonical_json(CRASHES), "fatal"),
        ]
    )
    json.dumps(record)  # the report writes it as JSON


def test_convergence_log_is_monotone(fake_backend):
    seen = []
    result = tune(_request(), InProcessWorker(), on_progress=lambda r: seen.append(len(r.outcomes)))
    log = result.search.log
    assert len(log) >= 3
    tried = [point["configs_tried"] for point in log]
    best = [point["best_ms"] for point in log]
    assert all(a < b for a, b in itertools.pairwise(tried)), tried
    assert tried[-1] == len(result.search.outcomes)
    assert all(b is not None and math.isfinite(b) for b in best), best
    assert all(b <= a for a, b in itertools.pairwise(best)), best
    # Not flat: the default (3 ms) first, then improvements down to the known best (1 ms), and
    # never below it, although the broken configs would have timed at TRAP_MS.
    assert best[0] == pytest.approx(3.0)
    assert len(set(best)) >= 3
    assert best[-1] == pytest.approx(1.0)
    assert min(best) > TRAP_MS
    assert all(point["t_s"] >= 0 for point in log)
    # on_progress saw each step of the log as it happened.
    assert seen == tried


def test_bake_reload_lookup_and_reuse_as_seed(fake_backend):
    directory = fake_backend
    assert store.lookup_config(OP, BACKEND, "bfloat16", SHAPE) is None  # nothing baked yet
    result = tune(_request(), InProcessWorker())
    assert result.entry is not None

    gpu = {
        "name": GPU.name,
        "slug": GPU.slug,
        "compute_capability": list(GPU.compute_capability),
        "driver": "580.0",
        "cuda": "12.8",
        "torch": torch.__version__,
        "dsl_versions": {},
    }
    path = str(directory / f"{GPU.slug}.json")
    assert store.bake([result.entry], gpu, path) == path

    with open(path) as handle:
        raw = json.load(handle)
    assert raw["schema"] == store.SCHEMA and len(raw["entries"]) == 1
    reloaded = store.read_file(path)
    assert reloaded is not None and len(reloaded["entries"]) == 1
    entry = reloaded["entries"][0]
    assert (entry["op"], entry["backend"], entry["dtype"], entry["shape"]) == (
        OP,
        BACKEND,
        "bfloat16",
        SHAPE,
    )
    assert entry["config"] == BEST and entry["time_ms"] == pytest.approx(1.0)

    store.clear_cache()
    assert store.lookup_config(OP, BACKEND, "bfloat16", SHAPE) == BEST
    assert store.lookup_config(OP, BACKEND, "bf16", SHAPE) == BEST
    assert store.lookup_config(OP, BACKEND, "float16", SHAPE) is None  # other dtype: not baked

    # A second run with no search budget measures only its first seed: the baked winner, found
    # through the GPU identity that tune() got from the worker (else it would be the default).
    worker = InProcessWorker()
    again = tune(_request(effort="none"), worker)
    assert [o.config for o in again.search.outcomes] == [BEST]
    assert worker.calls["check_candidate"] == 1
    assert again.entry["config"] == BEST


def test_no_winner_when_every_config_fails_the_check(fake_backend, monkeypatch):
    monkeypatch.setitem(
        registry._BACKENDS,
        (OP, BACKEND),
        registry.Backend(
            OP,
            BACKEND,
            "triton",
            lambda x, weight, eps, out=None, config=None: fake_rmsnorm(x, weight, eps, config=WRONG),
            devices=("cuda", "cpu"),
            writes_out=False,
            config_space={"BLOCK": (32, 64), "num_warps": (4,)},
            default_config=dict(DEFAULT),
        ),
    )
    worker = InProcessWorker()
    result = tune(_request(), worker)
    assert result.decision is None and result.entry is None
    assert result.error == "no candidate passed the accuracy check"
    assert [o.failure for o in result.search.outcomes] == ["wrong", "wrong"]
    assert worker.timed == []
    assert result.log_record()["winner"] is None


def test_searches_start_from_every_shape_class_of_the_triton_matmul() -> None:
    """A decode-shaped search measures the persistent kernel's tiles too, not only swap-AB's."""
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.autotune.tuner import seeds_for

    backend = registry.backend("matmul", "triton")
    space = space_for(backend)
    shape = {"M": 1, "N": 4096, "K": 14336, "BT": 1}
    context = TuneContext(
        shape=shape, dtype_bytes=2, shared_memory_bytes=227 * 1024, sm_count=132, compute_capability=(9, 0)
    )
    request = TuneRequest("matmul", "triton", shape)
    seeds = seeds_for(request, space, backend.default_config, None, context, backend.seed_configs)
    assert seeds[0] == dict(backend.default_config)
    launches = {space.effective_key(s, context) for s in seeds}
    assert len(launches) >= 4, launches
    assert any(s.get("swap_ab") for s in seeds)
    assert any(s.get("swap_ab") is False and s.get("NUM_SMS") == 0 for s in seeds)
    # Seeds are spelled out: none leaves swap_ab to the tuned shape's class default.
    assert all("swap_ab" in s and "path" in s for s in seeds[1:])


def test_the_triton_matmul_default_is_a_valid_seed_at_every_bench_shape() -> None:
    """Constraints judge a partial config as the kernel completes it (from the shape class),
    so the kernel's own default is never refused as a seed."""
    from tilearena.autotune.space import TuneContext, space_for

    backend = registry.backend("matmul", "triton")
    space = space_for(backend)
    spec = registry.spec("matmul")
    for shape in [*spec.shapes["sweep"], *spec.shapes["llama"]]:
        context = TuneContext(
            shape=dict(shape),
            dtype_bytes=2,
            shared_memory_bytes=227 * 1024,
            sm_count=132,
            compute_capability=(9, 0),
        )
        assert space.invalid_reason(backend.default_config, context) is None, shape
        reasons = [space.invalid_reason(s, context) for s in backend.seed_configs]
        assert reasons == [None] * len(reasons), (shape, reasons)


@pytest.mark.parametrize(
    ("op", "backend"), [("matmul", "tilelang"), ("rmsnorm", "tilelang"), ("matmul", "cute")]
)
def test_every_kernels_default_is_a_valid_seed(op: str, backend: str) -> None:
    """A default that leaves values to the kernel (None: derive from the shape) still seeds."""
    from tilearena.autotune.space import TuneContext, space_for
    from tilearena.autotune.tuner import seeds_for

    b = registry.backend(op, backend)
    if isinstance(b, registry.UnavailableBackend):
        pytest.skip(b.reason)
    shape = {"M": 16, "N": 4096, "K": 4096, "BT": 1} if op == "matmul" else {"M": 64, "N": 65536}
    context = TuneContext(shape=shape, dtype_bytes=2)
    seeds = seeds_for(TuneRequest(op, backend, shape), space_for(b), b.default_config, None, context)
    assert seeds, f"{op}/{backend}: default {b.default_config} was refused"


def test_cli_keeps_the_log_when_the_store_refuses_a_winner(fake_backend, monkeypatch, tmp_path):
    """A winner the baked store refuses (the 0d27b72 H100 tune: Helion's list-valued configs)
    becomes that job's error in tuning.json; the run goes on and writes its log."""
    from tilearena.autotune import cli, worker

    class StoppableWorker(InProcessWorker):
        def stop(self):
            pass

    monkeypatch.setattr(worker, "IsolatedWorker", StoppableWorker)
    monkeypatch.setattr(store, "gpu_record", lambda device=None: {"slug": GPU.slug})

    def refuse(entries, gpu, path=None):
        raise ValueError("refusing to bake a malformed entry: test")

    monkeypatch.setattr(store, "bake", refuse)
    out = tmp_path / "out"
    argv = ["tune", "--op", OP, "--backend", BACKEND, "--shapes", "M=8,N=64", "--dtype", "bf16",
            "--device", "cpu", "--effort", "quick", "--compile-workers", "0", "--bake", "--out", str(out)]
    assert cli.main(argv) == 1  # no winner was baked
    (record,) = json.loads((out / "tuning.json").read_text())
    assert record["winner"] is not None and record["error"].startswith("not baked: refusing")


class SlowerMachineWorker(InProcessWorker):
    """Another board: every config runs 7 % slower than where it was tuned, at a lower clock."""

    clock_factor = 1.07
    sm_clock_mhz = 1640.0


@pytest.mark.parametrize("timing", ["steady", "clean"])
def test_retime_rechecks_and_retimes_the_baked_winner_without_searching(fake_backend, timing):
    tuned = tune(_request(), InProcessWorker())
    previous = {**tuned.entry, "tuned_at": "2026-11-30T10:00:00+00:00"}
    assert previous["config"] == BEST and previous["timing"] == "default"

    worker = SlowerMachineWorker()
    request = TuneRequest(
        OP, BACKEND, dict(SHAPE), "bf16", "retime", device="cpu", timing=timing, previous=previous
    )
    result = tune(request, worker, finalists=1, final_rounds=3)
    # No search: one check, then one timing call, the final, timed the way asked.
    assert worker.calls["check_candidate"] == 1
    assert worker.timed == [[BEST]] and worker.timings == [timing]
    entry = result.entry
    assert entry["config"] == BEST and entry["time_ms"] == pytest.approx(1.07)
    assert entry["timing"] == timing and entry["runner_ups"] == []
    # The clock of this machine's final, not the tuning machine's (1755 MHz).
    assert previous["sm_clock_mhz"] == 1755.0 and entry["sm_clock_mhz"] == 1640.0
    # What the search found, and when, stays on record.
    assert (entry["evaluated"], entry["failed"], entry["source"]) == (
        previous["evaluated"],
        previous["failed"],
        previous["source"],
    )
    assert entry["tuned_at"] == previous["tuned_at"] and entry["retimed_at"] > previous["tuned_at"]
    assert store.validate_entry({**entry, "bucket": store.shape_bucket(SHAPE)}) is None
    assert result.log_record()["strategy"] == "retime"


class NoisyFinalWorker(InProcessWorker):
    """A board whose first final rounds spread 3 %, then settle; each call's SM clock differs."""

    def __init__(self):
        super().__init__()
        self.series = iter([0.97, 1.03, 1.00, 1.00, 1.00, 1.00])
        self.clocks = iter([1500.0, 1700.0])
        self.pinned = []  # the methods each call was asked to keep (None: the timer picks)

    def time_candidates(self, op, backend, shape, dtype_name, device, configs, rounds=2, repeats=20,
                        timing="default", with_state=False, methods=None):
        assert with_state and len(configs) == 1  # only the final is timed in a re-time
        self.timed.append([dict(c) for c in configs])
        self.pinned.append(methods)
        times = [[fake_ms(configs[0]) * next(self.series) for _ in range(rounds)]]
        # A kernel on the timer's CUDA-graph line: left to pick, the timer picks graph replay.
        used = (methods or [None])[0] or "cuda-graph"
        return {
            "ms": times,
            "gpu_state": [{"sm_clock_mhz": next(self.clocks), "sm_clock_range_mhz": [1, 2]}],
            "methods": [[used] * rounds],
        }


def test_a_noisy_retime_adds_rounds_and_records_them_and_the_clock_over_all(fake_backend):
    previous = {**tune(_request(), InProcessWorker()).entry, "tuned_at": "2026-11-30T10:00:00+00:00"}
    worker = NoisyFinalWorker()
    request = TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", "retime", device="cpu", previous=previous)
    result = tune(request, worker, finalists=1, final_rounds=3, max_final_rounds=9)
    # Three rounds spreading 3 % know the median to ~2 %: three more, and it is known to < 1 %.
    assert worker.timed == [[BEST], [BEST]]
    record = result.log_record()
    assert record["final_rounds"] == 6 and record["final_median_error"] < 0.01
    assert result.entry["time_ms"] == pytest.approx(fake_ms(BEST))
    assert result.entry["sm_clock_mhz"] == 1600.0  # both calls' clocks, not the last one's
    assert result.entry["gpu_uuid"] == CARD  # the card it was re-timed on
    assert record["final_gpu_state"]["sm_clock_mhz"] == 1600.0
    # The added rounds keep the method the final's first rounds used, and the entry records it
    # for the bench; the log counts every round's.
    assert worker.pinned == [[None], ["cuda-graph"]]
    assert record["final_timing_methods"] == {"cuda-graph": 6}
    assert result.entry["timing_method"] == "cuda-graph"


def test_time_candidates_times_every_config_by_the_first_method_or_the_pinned_one(
    fake_backend, monkeypatch
):
    """The worker's timing task: the call's first measurement picks the method and every later
    one keeps it (the timer's pick from its estimate can flip near the CUDA-graph line, and
    configs compared head to head must be timed alike); a pinned method is asked for throughout."""
    from tilearena.bench import timing as bench_timing

    asked: list[str] = []

    def fake_measure(fn, device, graph_fns=None, repeats=30, method="auto", **_):
        asked.append(method)
        # Left to pick, this timer picks events (a CPU run has no rotated copies to replay).
        return bench_timing.Timing(1.0, 0.0, repeats, "cuda-events" if method == "auto" else method)

    monkeypatch.setattr(bench_timing, "measure", fake_measure)
    final = tasks.time_candidates(
        OP, BACKEND, SHAPE, "bf16", "cpu", [BEST, DEFAULT], 3, 20, "default", with_state=True
    )
    assert final["methods"] == [["cuda-events"] * 3] * 2
    assert asked == ["auto"] + ["cuda-events"] * 5
    asked.clear()
    tasks.time_candidates(
        OP, BACKEND, SHAPE, "bf16", "cpu", [BEST, DEFAULT], 1, 20, "default", methods=["cuda-events", None]
    )
    assert asked == ["cuda-events", "cuda-events"]  # the unpinned config is timed alike
    # Graph replay pinned where there are no rotated copies to replay (one input set on the
    # CPU): the timer picks instead of failing.
    asked.clear()
    tasks.time_candidates(OP, BACKEND, SHAPE, "bf16", "cpu", [BEST], 1, 20, "default", methods=["cuda-graph"])
    assert asked == ["auto"]
    with pytest.raises(ValueError, match="methods: expected one per config"):
        tasks.time_candidates(
            OP, BACKEND, SHAPE, "bf16", "cpu", [BEST, DEFAULT], 1, 20, methods=["cuda-graph"]
        )


def test_retime_lets_a_runner_up_win_when_the_baked_winner_now_fails_the_check(fake_backend):
    previous = {
        "op": OP,
        "backend": BACKEND,
        "dtype": "bfloat16",
        "shape": dict(SHAPE),
        "config": WRONG,  # e.g. tuned under another compiler version; wrong here
        "time_ms": 0.5,
        "runner_ups": [{"config": BEST, "time_ms": 1.0}, {"config": DEFAULT, "time_ms": 3.0}],
        "evaluated": 40,
        "failed": 3,
    }
    worker = InProcessWorker()
    request = TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", "retime", device="cpu", previous=previous)
    result = tune(request, worker, finalists=3)
    assert result.entry["config"] == BEST
    assert [r["config"] for r in result.entry["runner_ups"]] == [DEFAULT]
    assert [o.failure for o in result.search.outcomes] == ["wrong", None, None]
    assert worker.timings == ["default"]  # the default timing unless asked


def test_retime_needs_the_entry_and_timing_names_a_method(fake_backend):
    with pytest.raises(ValueError, match="retime"):
        TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", "retime", device="cpu")
    with pytest.raises(ValueError, match="timing: expected one of"):
        TuneRequest(OP, BACKEND, dict(SHAPE), "bf16", "quick", device="cpu", timing="fast")


@pytest.mark.parametrize(
    "timing, asked",
    [
        ("default", (False, "write", False)),
        ("steady", (True, "write", False)),
        ("clean", (True, "read", False)),
        ("hot", (True, "read", True, 100.0)),
        ("sustained", (True, "read", True, 1000.0, 5000, 1000.0)),
    ],
)
def test_time_candidates_asks_measure_for_the_mode(fake_backend, monkeypatch, timing, asked):
    """The worker's timing task is where a mode becomes ``measure``'s keywords."""
    from tilearena.bench import timing as bench_timing

    seen = []

    def fake_measure(
        fn, device, graph_fns=None, repeats=30, steady=False, flush="write", hot_start=False, **rest
    ):
        assert rest.pop("method") == "auto"  # on the CPU nothing pins a method
        window = (rest.pop("span_ms"), rest.pop("max_samples")) if "span_ms" in rest else ()
        graph_window = (rest.pop("graph_span_ms"),) if "graph_span_ms" in rest else ()
        assert not rest, rest
        seen.append((steady, flush, hot_start, *window, *graph_window))
        return bench_timing.Timing(1.0, 0.0, repeats, "cpu-timer")

    monkeypatch.setattr(bench_timing, "measure", fake_measure)
    times = tasks.time_candidates(OP, BACKEND, SHAPE, "bf16", "cpu", [BEST, DEFAULT], 2, 20, timing)
    assert times == [[1.0, 1.0], [1.0, 1.0]] and seen == [asked] * 4
    # With the state, each round's timing method comes back too, per config.
    final = tasks.time_candidates(
        OP, BACKEND, SHAPE, "bf16", "cpu", [BEST, DEFAULT], 2, 20, timing, with_state=True
    )
    assert final["ms"] == times and final["methods"] == [["cpu-timer"] * 2] * 2
    with pytest.raises(ValueError, match="timing: expected one of"):
        tasks.time_candidates(OP, BACKEND, SHAPE, "bf16", "cpu", [BEST], 1, 20, "fast")


def test_cli_retime_rebakes_every_baked_entry_of_the_op(fake_backend, monkeypatch, tmp_path):
    from tilearena.autotune import cli, worker

    class StoppableWorker(SlowerMachineWorker):
        def stop(self):
            pass

    monkeypatch.setattr(worker, "IsolatedWorker", StoppableWorker)
    gpu = {
        "name": GPU.name,
        "slug": GPU.slug,
        "compute_capability": list(GPU.compute_capability),
        "driver": "580.0",
        "cuda": "13.0",
        "torch": torch.__version__,
        "dsl_versions": {},
    }
    monkeypatch.setattr(store, "gpu_record", lambda device=None: gpu)
    path = str(tmp_path / "store.json")
    other_shape = {"M": 4096, "N": 64}
    entries = [
        {"op": OP, "backend": BACKEND, "dtype": "bfloat16", "shape": dict(SHAPE), "config": BEST,
         "time_ms": 1.0, "runner_ups": [{"config": DEFAULT, "time_ms": 3.0}], "evaluated": 12, "failed": 2},
        {"op": OP, "backend": BACKEND, "dtype": "float16", "shape": other_shape, "config": DEFAULT,
         "time_ms": 2.0},
        {"op": "softmax", "backend": "triton", "dtype": "bfloat16", "shape": dict(SHAPE), "config": {},
         "time_ms": 1.0},
    ]
    store.bake(entries, gpu, path)
    out = tmp_path / "out"
    base = ["tune", "--op", OP, "--backend", BACKEND, "--device", "cpu", "--store", path, "--out", str(out)]
    assert cli.main([*base, "--effort", "retime", "--dtype", "bf16", "--timing", "steady", "--bake"]) == 0
    data = store.read_file(path)
    by_dtype = {e["dtype"]: e for e in data["entries"] if e["op"] == OP}
    retimed = by_dtype["bfloat16"]
    assert retimed["time_ms"] == pytest.approx(1.07) and retimed["timing"] == "steady"
    assert retimed["evaluated"] == 12 and "retimed_at" in retimed
    # Other dtypes and ops were not asked for: untouched.
    assert "retimed_at" not in by_dtype["float16"] and by_dtype["float16"]["time_ms"] == 2.0
    assert [e["time_ms"] for e in data["entries"] if e["op"] == "softmax"] == [1.0]
    (record,) = json.loads((out / "tuning.json").read_text())
    assert record["strategy"] == "retime" and record["evaluated"] == 1

    # Resuming: the entry just re-timed is skipped, so nothing is timed again.
    since = ["--effort", "retime", "--dtype", "bf16", "--skip-retimed-since", "2026-01-01T00:00:00"]
    before = store.read_file(path)["entries"]
    assert cli.main([*base, *since, "--bake"]) == 0
    assert store.read_file(path)["entries"] == before
    # --faster-than: of both dtypes, only the entry baked under 1.5 ms is re-timed.
    both = ["--effort", "retime", "--dtype", "bf16,fp16", "--faster-than", "1.5", "--bake"]
    assert cli.main([*base, *both]) == 0
    (record,) = json.loads((out / "tuning.json").read_text())
    assert record["dtype"] == "bfloat16"
    assert "retimed_at" not in next(e for e in store.read_file(path)["entries"] if e["dtype"] == "float16")
    # --slower-than: the bfloat16 entry (1.07 ms now) is re-timed from 1.0 ms up, not from 1.5 ms.
    slower = ["--effort", "retime", "--dtype", "bf16", "--slower-than"]
    assert cli.main([*base, *slower, "1.5", "--bake"]) == 0
    assert json.loads((out / "tuning.json").read_text()) == []
    assert cli.main([*base, *slower, "1.0", "--bake"]) == 0
    (record,) = json.loads((out / "tuning.json").read_text())
    assert record["dtype"] == "bfloat16"
    # Both bounds: a window with no entry in it re-times nothing.
    window = ["--effort", "retime", "--dtype", "bf16,fp16", "--slower-than", "1.2", "--faster-than", "1.9"]
    assert cli.main([*base, *window]) == 0
    assert json.loads((out / "tuning.json").read_text()) == []
    # --noisier-than: the bfloat16 entry's final was quiet (the 0.5 % noise floor).
    noisier = ["--effort", "retime", "--dtype", "bf16", "--noisier-than"]
    assert cli.main([*base, *noisier, "0.01", "--bake"]) == 0
    assert json.loads((out / "tuning.json").read_text()) == []
    assert cli.main([*base, *noisier, "0.001", "--bake"]) == 0
    (record,) = json.loads((out / "tuning.json").read_text())
    # Quiet (the fake times every round alike): the 5 rounds asked, none added, up to 15 allowed.
    assert record["dtype"] == "bfloat16" and record["final_rounds"] == 5
    expected = "--noisier-than: expected a relative noise >= 0 with --effort retime"
    for bad in (["--effort", "retime", "--noisier-than", "-1"],
                ["--effort", "quick", "--noisier-than", "0.1"]):
        with pytest.raises(ValueError, match=expected):
            cli.main([*base, *bad])
    for flag in ("--faster-than", "--slower-than"):
        for bad in (["--effort", "retime", flag, "0"], ["--effort", "retime", flag, "nan"],
                    ["--effort", "quick", flag, "1.0"]):
            with pytest.raises(ValueError, match=f"{flag}: expected milliseconds > 0 with --effort retime"):
                cli.main([*base, *bad])
    with pytest.raises(ValueError, match="--slower-than: expected less than --faster-than"):
        cli.main([*base, "--effort", "retime", "--slower-than", "2", "--faster-than", "1"])
    with pytest.raises(ValueError, match="--skip-retimed-since"):
        cli.main([*base, "--effort", "retime", "--skip-retimed-since", "yesterday"])
    with pytest.raises(ValueError, match="--skip-baked"):
        cli.main([*base, "--effort", "retime", "--skip-baked"])
    with pytest.raises(ValueError, match=r"--max-final-rounds: expected at least --final-rounds \(3\)"):
        cli.main([*base, "--effort", "retime", "--final-rounds", "3", "--max-final-rounds", "2"])
    with pytest.raises(ValueError, match="--shapes"):
        cli.main([*base, "--effort", "quick", "--shapes", "baked"])
    with pytest.raises(ValueError, match="--store"):
        missing = str(tmp_path / "none.json")
        cli.main([*base[:-4], "--store", missing, "--out", str(out), "--effort", "retime"])
