"""``tilearena bench --isolate``: each backend's rows timed in a worker process of its own.

In-process, a shape's backends are timed side by side in one process, which holds every
backend's input copies and outputs at once, and a kernel's time can depend on that: at 7c42e99
the CuTe 1x6144x4096 GEMM read 0.0304 ms in the tuner's worker (one backend's inputs), 0.0295 in
a bench process timing two backends and 0.0290 in one timing five, three runs each, each tight
to 0.2 % (reports/h100/NOTES.md, Session 30).  Here the parent checks numerics as before and
keeps the rounds interleaved across backends (A B C, then C B A, ...), but each backend's timer
lives in its own ``autotune.worker.IsolatedWorker``: that process holds only that backend's
inputs (the same seeds, so the same values as the checked run) and its rotated copies, as the
tuner's worker holds only its candidates'.  A timed kernel that faults or hangs costs its own
row, not the rest of the run: its worker is replaced for the next shape.

The worker side is the module-level functions below (they must pickle by name); the parent
side is ``IsolatedRowTimer``.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from ..autotune.worker import IsolatedWorker, Reply
from ..kernels import registry
from . import runner
from .timing import Timing

#: Preparing a row imports the DSL and loads (or compiles) its kernel in a fresh worker.
PREPARE_TIMEOUT_S = 600.0
#: One measurement: a settle and a 1 s window at most under ``--timing sustained``, ~1.3 s.
MEASURE_TIMEOUT_S = 180.0

# --- worker side --------------------------------------------------------------------------------

#: The row this worker times now (one at a time: a worker serves one backend, shape after shape).
_PREPARED: dict[str, Any] = {}


def prepare_row(
    op: str,
    backend: str,
    shape: dict[str, int],
    dtype_name: str,
    device: str,
    seed: int,
    config: Any,
    timing: str,
    method: str | None,
) -> str:
    """Build this backend's timer on fresh inputs from ``seed`` (the parent's checked inputs'
    values), after freeing the previous shape's, and run it once; returns the timer's method so
    far."""
    release_row()
    op_spec = registry.spec(op)
    b = registry.backend(op, backend)
    dtype = runner.DTYPES[dtype_name]
    args = op_spec.make_inputs(dict(shape), dtype, device, seed)
    timer = runner._RowTimer(op_spec, b, args, dict(shape), dtype, device, seed, config, timing, method)
    _PREPARED["timer"] = timer
    # Compile (or load) the kernel now, as the bench process's check did before it timed in-process:
    # the first measurement then starts on a loaded kernel, not on a compile.
    timer.call()
    if device != "cpu":
        torch.cuda.synchronize()
    return timer.method


def measure_row() -> tuple[Timing, str]:
    """One measurement of the prepared row, and the method its later ones keep."""
    timer = _PREPARED.get("timer")
    if timer is None:
        raise RuntimeError("no row prepared in this worker (it was restarted after a failure)")
    timer.measure_once()
    return timer.measurements[-1], timer.method


def release_row() -> None:
    """Free the prepared row's inputs and outputs, and hand their memory back to the device."""
    _PREPARED.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def ready() -> str:
    """Nothing but the imports a row needs (run on every worker at once, before the first shape)."""
    return torch.__version__


# --- parent side --------------------------------------------------------------------------------


class IsolatedRowTimer(runner.RowMeasurements):
    """A ``runner._RowTimer`` that runs in ``worker``: the same measurements, asked for one at a
    time, so the parent still decides the rounds and when a row's median is known."""

    def __init__(
        self,
        worker: IsolatedWorker,
        op_spec: registry.OpSpec,
        b: registry.Backend,
        shape: dict,
        dtype: torch.dtype,
        device: str,
        seed: int,
        config: Any = None,
        timing: str = "default",
        method: str | None = None,
    ) -> None:
        super().__init__(method)
        self.worker = worker
        reply = worker.call(
            prepare_row,
            op_spec.name,
            b.name,
            dict(shape),
            runner.DTYPE_NAMES[dtype],
            device,
            seed,
            config,
            timing,
            method,
            timeout_s=PREPARE_TIMEOUT_S,
        )
        self.method = _value(reply, "preparing the row")

    def measure_once(self) -> None:
        timing, self.method = _value(self.worker.call(measure_row, timeout_s=MEASURE_TIMEOUT_S), "measuring")
        self.measurements.append(timing)


def _value(reply: Reply, doing: str) -> Any:
    if reply.ok:
        return reply.value
    detail = reply.detail.strip().splitlines()
    raise RuntimeError(f"isolated worker, {doing}: {reply.failure}: {detail[0] if detail else ''}")


class BackendWorkers:
    """One ``IsolatedWorker`` per backend name, started on first use and kept across shapes."""

    def __init__(self) -> None:
        self.workers: dict[str, IsolatedWorker] = {}

    def __getitem__(self, backend: str) -> IsolatedWorker:
        if backend not in self.workers:
            self.workers[backend] = IsolatedWorker()
        return self.workers[backend]

    def start(self, backends: list[str]) -> list[str]:
        """Start the workers of ``backends`` side by side (each imports torch: seconds); the
        backends whose worker did not come up, with why."""
        from concurrent.futures import ThreadPoolExecutor

        workers = {name: self[name] for name in backends}  # created here, not in the threads

        def start_one(worker: IsolatedWorker) -> Reply:
            return worker.call(ready, timeout_s=PREPARE_TIMEOUT_S)

        with ThreadPoolExecutor(max(1, len(workers))) as threads:
            replies = list(threads.map(start_one, workers.values()))
        names = list(workers)
        return [f"{name}: {r.failure}: {r.detail[:200]}" for name, r in zip(names, replies) if not r.ok]

    def release(self) -> None:
        """Free every worker's prepared row (between shapes; the workers stay up)."""
        for worker in self.workers.values():
            if worker.alive():
                worker.call(release_row, timeout_s=MEASURE_TIMEOUT_S)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def __enter__(self) -> BackendWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
