"""Isolated workers: candidate kernels run in a child process that may die.

A bad config can corrupt the CUDA context (illegal memory access, misaligned address, launch
failure) or hang (a split kernel waiting for programs that are never resident). Either would
end a tuning run done in-process, so each candidate runs in a worker process started with the
``spawn`` context (a fork would inherit the parent's CUDA state), one request at a time:

    parent --(task, args)--> worker       the task is a module-level function (picklable)
    parent <--("ok", value) | ("error", kind, message)-- worker

The parent waits at most ``timeout_s`` per request. A worker that died (``os._exit``, a
segfault) is reported as ``fatal``; one that did not answer in time is killed and reported as
``timeout``; a task that raised a CUDA error whose context cannot be trusted afterwards is
reported as ``fatal`` and its worker restarted; any other exception is ``error`` and the worker
is kept. Restarting is lazy: the next request starts a fresh worker, so a healthy worker is
reused across requests (starting one, with torch imported, takes seconds).

This module imports no torch: the worker imports what its tasks need.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import runpy
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Messages after which a CUDA context is unusable (the process must be replaced).
FATAL_CUDA_MESSAGES = (
    "illegal memory access",
    "misaligned address",
    "unspecified launch failure",
    "launch failure",
    "device-side assert",
    "illegal instruction",
    "cuda error: unknown error",
    "cudaErrorLaunchTimeout",
    "hardware stack error",
)


_CHILD_RUN_NAME = "__tilearena_autotune_worker__"


def failure_kind_of(message: str) -> str:
    lowered = message.lower()
    return "fatal" if any(m.lower() in lowered for m in FATAL_CUDA_MESSAGES) else "error"


@dataclass
class Reply:
    ok: bool
    value: Any = None
    #: None when ok, else "fatal" | "timeout" | "error".
    failure: str | None = None
    detail: str = ""
    seconds: float = 0.0


def _serve(connection: multiprocessing.connection.Connection, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    while True:
        try:
            request = connection.recv()  # unpickling imports the task's module: not timed
        except (EOFError, OSError):
            return
        except Exception as exc:  # the task could not be unpickled
            connection.send(("started",))
            connection.send(("error", "error", f"could not load the task: {type(exc).__name__}: {exc}"))
            continue
        if request is None:
            return
        task, args, kwargs = request
        # The per-request timeout starts now, so a slow start (spawn, imports) is not a hang.
        connection.send(("started",))
        try:
            value = task(*args, **kwargs)
            connection.send(("ok", value))
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            kind = failure_kind_of(message)
            tail = traceback.format_exc(limit=6)[-2000:]
            try:
                connection.send(("error", kind, f"{message}\n{tail}"))
            except Exception:
                return
            if kind == "fatal":
                return  # the context is poisoned: leave, and let the parent start a fresh worker


class IsolatedWorker:
    """One child process serving requests; restarted after a fatal error or a hang."""

    def __init__(self, environment: dict[str, str] | None = None, start_timeout_s: float = 120.0) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.environment = dict(environment or {})
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: multiprocessing.connection.Connection | None = None
        self.starts = 0
        self.start_timeout_s = start_timeout_s

    def _start(self) -> None:
        parent_end, child_end = self.context.Pipe(duplex=True)
        # The child runs this file by path rather than importing tilearena.autotune.worker:
        # importing the package imports torch, seconds per restart that a task may not need.
        process = self.context.Process(
            target=runpy.run_path,
            args=(os.path.abspath(__file__),),
            daemon=True,
            name="tilearena-autotune-worker",
            kwargs={
                "run_name": _CHILD_RUN_NAME,
                "init_globals": {"WORKER_CONNECTION": child_end, "WORKER_ENVIRONMENT": self.environment},
            },
        )
        process.start()
        child_end.close()
        self.process, self.connection = process, parent_end
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def call(self, task: Callable[..., Any], *args: Any, timeout_s: float = 60.0, **kwargs: Any) -> Reply:
        """Run ``task(*args, **kwargs)`` in the worker; never raises for the task's failures."""
        if not self.alive():
            self.stop()
            self._start()
        assert self.connection is not None and self.process is not None
        start = time.monotonic()
        try:
            self.connection.send((task, args, kwargs))
        except (BrokenPipeError, OSError) as exc:
            self.stop()
            return Reply(False, failure="fatal", detail=f"worker gone before the request: {exc}")
        if not self.connection.poll(self.start_timeout_s) or not self._started():
            exitcode = self._reap()
            return Reply(
                False,
                failure="fatal",
                detail=f"worker did not start the task (exit code {exitcode})",
                seconds=time.monotonic() - start,
            )
        if not self.connection.poll(timeout_s):
            self.stop()
            return Reply(
                False,
                failure="timeout",
                detail=f"no answer within {timeout_s:.0f} s; worker killed",
                seconds=time.monotonic() - start,
            )
        try:
            message = self.connection.recv()
        except (EOFError, OSError):
            exitcode = self._reap()
            return Reply(
                False,
                failure="fatal",
                detail=f"worker died (exit code {exitcode})",
                seconds=time.monotonic() - start,
            )
        seconds = time.monotonic() - start
        if message[0] == "ok":
            return Reply(True, message[1], seconds=seconds)
        _, kind, detail = message
        if kind == "fatal":
            self._reap()
        return Reply(False, failure=kind, detail=detail, seconds=seconds)

    def _started(self) -> bool:
        assert self.connection is not None
        try:
            return self.connection.recv() == ("started",)
        except (EOFError, OSError):
            return False

    def _reap(self) -> int | None:
        process = self.process
        if process is None:
            return None
        process.join(timeout=5)
        exitcode = process.exitcode
        self.stop()
        return exitcode

    def stop(self) -> None:
        """End the worker (politely, then by force)."""
        process, connection = self.process, self.connection
        self.process = self.connection = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.send(None)
            connection.close()
        if process is not None:
            process.join(timeout=0.5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def __enter__(self) -> IsolatedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerPool:
    """A few isolated workers for work that may run side by side (compiling candidates)."""

    def __init__(self, size: int, environment: dict[str, str] | None = None) -> None:
        self.workers = [IsolatedWorker(environment) for _ in range(max(1, size))]

    @property
    def size(self) -> int:
        return len(self.workers)

    def map(
        self,
        task: Callable[..., Any],
        argument_lists: Sequence[Sequence[Any]],
        timeout_s: float = 120.0,
        parallel: int | None = None,
    ) -> list[Reply]:
        """``task(*args)`` for each entry, spread over at most ``parallel`` of the workers (all by
        default), replies in input order."""
        from concurrent.futures import ThreadPoolExecutor

        if parallel is not None and parallel < 1:
            raise ValueError(f"parallel: expected at least 1 worker, got {parallel}")
        used = self.workers[: min(len(self.workers), parallel or len(self.workers))]
        replies: list[Reply | None] = [None] * len(argument_lists)

        def drain(worker_index: int) -> None:
            for i in range(worker_index, len(argument_lists), len(used)):
                replies[i] = used[worker_index].call(task, *argument_lists[i], timeout_s=timeout_s)

        with ThreadPoolExecutor(len(used)) as threads:
            list(threads.map(drain, range(len(used))))
        return [r if r is not None else Reply(False, failure="error", detail="not run") for r in replies]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == _CHILD_RUN_NAME:
    _serve(globals()["WORKER_CONNECTION"], globals()["WORKER_ENVIRONMENT"])
