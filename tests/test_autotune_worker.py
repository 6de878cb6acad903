"""The isolated worker: a candidate that kills, poisons or hangs its process is recorded as
failed, the worker is replaced, and the run goes on with the next candidate."""

from __future__ import annotations

import time

import pytest
from test_autotune_fakes import fake_kernel, worker_pid
from tilearena.autotune.search import Outcome, search
from tilearena.autotune.space import DictConfigSpace, TuneContext
from tilearena.autotune.worker import IsolatedWorker, WorkerPool, failure_kind_of


@pytest.fixture(scope="module")
def worker():
    # One worker for the module: spawning (and importing) is the slow part on a shared CPU.
    with IsolatedWorker() as w:
        yield w


def test_failure_kinds():
    assert failure_kind_of("RuntimeError: CUDA error: an illegal memory access was encountered") == "fatal"
    assert failure_kind_of("RuntimeError: CUDA error: unspecified launch failure") == "fatal"
    assert failure_kind_of("ValueError: BLOCK_N must divide N") == "error"


def test_worker_survives_every_failure_and_is_reused(worker):
    first = worker.call(worker_pid)
    assert first.ok
    assert worker.call(fake_kernel, "ok", 2.0).value == 4.0
    # A plain exception keeps the worker.
    reply = worker.call(fake_kernel, "error")
    assert (reply.ok, reply.failure) == (False, "error") and "divide" in reply.detail
    assert worker.call(worker_pid).value == first.value
    # A fatal CUDA error replaces it.
    reply = worker.call(fake_kernel, "cuda")
    assert (reply.ok, reply.failure) == (False, "fatal") and "illegal memory access" in reply.detail
    second = worker.call(worker_pid)
    assert second.ok and second.value != first.value
    # A dead process is fatal too.
    reply = worker.call(fake_kernel, "exit")
    assert (reply.ok, reply.failure) == (False, "fatal") and "139" in reply.detail
    # A hang is killed at the timeout.
    start = time.monotonic()
    reply = worker.call(fake_kernel, "hang", timeout_s=2.0)
    assert (reply.ok, reply.failure) == (False, "timeout")
    assert time.monotonic() - start < 15
    assert worker.call(fake_kernel, "ok", 5.0).value == 10.0


class WorkerBackedEvaluator:
    """Runs every candidate in the isolated worker, as the real tuner does."""

    def __init__(self, worker):
        self.worker = worker

    def evaluate(self, configs):
        outcomes = []
        for config in configs:
            reply = self.worker.call(fake_kernel, config["behaviour"], config["size"], timeout_s=2.0)
            outcomes.append(Outcome(config, reply.value if reply.ok else None, reply.failure, reply.detail))
        return outcomes

    def retime(self, configs, rounds):
        return [[o.time_ms for o in self.evaluate([c])] * rounds for c in configs]


def test_a_tuning_run_records_broken_configs_and_goes_on(worker):
    space = DictConfigSpace({"behaviour": ("ok", "misaligned", "exit", "hang", "error"), "size": (3.0, 1.0)})
    result = search(space, WorkerBackedEvaluator(worker), TuneContext(), effort="full")
    assert result.strategy == "exhaustive" and len(result.outcomes) == 10
    kinds = {(o.config["behaviour"], o.failure) for o in result.outcomes}
    assert kinds == {
        ("ok", None),
        ("misaligned", "fatal"),
        ("exit", "fatal"),
        ("hang", "timeout"),
        ("error", "error"),
    }
    assert result.best()[0].config == {"behaviour": "ok", "size": 1.0}


def test_pool_maps_in_order_and_isolates_failures():
    with WorkerPool(2) as pool:
        replies = pool.map(
            fake_kernel, [("ok", 1.0), ("exit",), ("ok", 3.0), ("cuda",), ("ok", 4.0)], timeout_s=60
        )
    assert [r.value for r in replies] == [2.0, None, 6.0, None, 8.0]
    assert [r.failure for r in replies] == [None, "fatal", None, "fatal", None]


def test_pool_runs_no_more_tasks_at_once_than_allowed():
    """``parallel`` caps how many workers take tasks (the tuner's memory limit for GiB inputs)."""
    with WorkerPool(3) as pool:
        spread = {r.value for r in pool.map(worker_pid, [() for _ in range(6)], timeout_s=60)}
        capped = [r.value for r in pool.map(worker_pid, [() for _ in range(6)], timeout_s=60, parallel=1)]
        with pytest.raises(ValueError, match="parallel"):
            pool.map(worker_pid, [()], parallel=0)
    assert len(spread) == 3
    assert len(set(capped)) == 1 and len(capped) == 6


def test_compile_workers_are_capped_by_device_memory():
    from tilearena.autotune.tuner import compile_workers_that_fit

    gib = 1 << 30
    assert compile_workers_that_fit(4 * gib, 80 * gib) == 6  # 4096x262144 bf16 in and out
    assert compile_workers_that_fit(gib // 1000, 80 * gib) == 31
    assert compile_workers_that_fit(200 * gib, 80 * gib) == 1  # always one
    assert compile_workers_that_fit(4 * gib, None) is None  # unknown: no cap


def test_search_batches_match_the_compile_workers_that_may_run():
    from tilearena.autotune.tuner import batch_size_for

    assert batch_size_for(8, None) == 8
    assert batch_size_for(8, 31) == 8  # a small shape's memory cap is not a reason to queue more
    assert batch_size_for(8, 6) == 6  # 4 GiB inputs: six compile at once
    assert batch_size_for(0, None) == 4 and batch_size_for(8, 1) == 4
