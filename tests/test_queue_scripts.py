"""The device queue's shell scripts (.ci/queue), run on the CPU with a fake step.

What matters is that ``stop.sh`` leaves nothing of a queue running: twice a stopped queue's step
ran on beside the next one on the GPU and voided its timings (sessions 18 and 19, NOTES.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

QUEUE_SCRIPTS = Path(__file__).resolve().parents[1] / ".ci" / "queue"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "setsid", "ps", "pgrep", "pkill", "timeout")),
    reason="needs bash, setsid, ps, pgrep, pkill and timeout (procps, coreutils, util-linux)",
)


def _session_alive(sid: int) -> bool:
    """Whether a live process (not a zombie) is left in session ``sid``."""
    states = subprocess.run(["ps", "-o", "stat=", "-s", str(sid)], capture_output=True, text=True).stdout
    return any(not state.startswith("Z") for state in states.split())


def _stop(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(QUEUE_SCRIPTS / "stop.sh")], env=env, capture_output=True, text=True)


def _wait_for(condition, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _start_queue(tmp_path: Path, steps: str) -> tuple[dict[str, str], int]:
    """start.sh's way of starting run.sh (setsid, pid recorded), on a queue in tmp_path."""
    queue, tree = tmp_path / "queue", tmp_path / "tree"
    queue.mkdir()
    tree.mkdir()
    (queue / "steps.txt").write_text(steps)
    env = {**os.environ, "QUEUE_DIR": str(queue), "QUEUE_TREE": str(tree)}
    log = open(queue / "queue.log", "w")  # noqa: SIM115 - the daemon keeps writing to it
    daemon = subprocess.Popen(
        ["setsid", "bash", str(QUEUE_SCRIPTS / "run.sh"), "c0ffee", str(queue / "steps.txt")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    (queue / "run.pid").write_text(f"{daemon.pid}\n")
    return env, daemon.pid


def test_stop_ends_a_step_that_timeout_runs_in_a_process_group_of_its_own(tmp_path) -> None:
    """``timeout`` (which wraps the queue's benches) moves itself and its command into a new
    process group: ending run.sh's group left that bench running; stop.sh ends the session."""
    env, sid = _start_queue(tmp_path, 'long timeout 300 bash -c "sleep 297; echo never"\n')
    step = ["pgrep", "-f", "sleep 297"]
    assert _wait_for(lambda: subprocess.run(step, capture_output=True).returncode == 0)
    groups = subprocess.run(["ps", "-o", "pgid=", "-s", str(sid)], capture_output=True, text=True)
    assert len(set(groups.stdout.split())) >= 2  # the step runs outside run.sh's process group
    stopped = _stop(env)
    assert stopped.returncode == 0 and f"queue {sid} stopped" in stopped.stdout, stopped
    assert _wait_for(lambda: not _session_alive(sid))
    assert subprocess.run(step, capture_output=True).returncode == 1
    assert "never" not in (tmp_path / "queue" / "queue.log").read_text()


def test_stop_says_when_there_is_nothing_to_stop(tmp_path) -> None:
    env, sid = _start_queue(tmp_path, "quick true\n")
    assert _wait_for(lambda: "QUEUE-DONE" in (tmp_path / "queue" / "queue.log").read_text())
    assert _wait_for(lambda: not _session_alive(sid))
    stopped = _stop(env)
    assert stopped.returncode == 0 and "already ended" in stopped.stdout
    (tmp_path / "queue" / "run.pid").unlink()
    stopped = _stop(env)
    assert "no queue started here" in stopped.stdout


def test_run_marks_steps_done_and_skips_them_on_a_rerun(tmp_path) -> None:
    env, _ = _start_queue(tmp_path, "first echo one\nsecond false\n")
    queue = tmp_path / "queue"
    assert _wait_for(lambda: "QUEUE-DONE" in (queue / "queue.log").read_text())
    assert (queue / ".done-first").exists() and not (queue / ".done-second").exists()
    assert (queue / "log-first.txt").read_text() == "one\n"
    rerun = subprocess.run(
        ["bash", str(QUEUE_SCRIPTS / "run.sh"), "c0ffee", str(queue / "steps.txt")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "=== first" not in rerun.stdout and "=== second start" in rerun.stdout
