"""Crash safety: a subprocess host is killed with SIGKILL mid-orchestration and restarted on the same state."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.azurite import free_port
from tests.devhost.conftest import FIXTURES, ROOT

KEY = "crash-test-key"
RUNS = 10


class HostProcess:
    def __init__(self, state: Path, side_effects: Path, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "DEVHOST_FUNCTION_KEYS": KEY, "CRASH_SIDE_EFFECTS": str(side_effects)}
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--app",
                str(FIXTURES / "crash_app.py"),
                "--port",
                str(self.port),
                "--state",
                str(state),
                "--parent-pid",  # gone with the test session, even a killed one
                str(os.getpid()),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.base}/admin/host/status", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("devhost did not start in 30 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0  # a clean shutdown exits 0
        self.log.close()


def recorded_completions(state: Path, instance: str) -> set[int]:
    """Task ids whose completion is committed (in the history, or queued for the next episode)."""
    db = sqlite3.connect(state / "durable.sqlite3")
    try:
        events = [json.loads(r[0]) for r in db.execute("SELECT event FROM history WHERE instance_id = ?", (instance,))]
        events += [json.loads(r[0]) for r in db.execute("SELECT body FROM messages WHERE instance_id = ?", (instance,))]
    finally:
        db.close()
    return {int(e["TaskScheduledId"]) for e in events if e["EventType"] == 5}


@pytest.mark.slow
def test_sigkill_at_random_points_never_reruns_recorded_activities(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    state, side_effects, log = tmp_path / "state", tmp_path / "side_effects.log", tmp_path / "host.log"
    side_effects.touch()
    host = HostProcess(state, side_effects, log)
    duplicates_seen = 0
    progress: list[int] = []
    try:
        for run in range(RUNS):
            instance = f"crash-{run}"
            started = httpx.post(
                f"{host.base}/runtime/webhooks/durabletask/orchestrators/thirty_steps/{instance}", params={"code": KEY}
            )
            assert started.status_code == 202, started.text
            time.sleep(rng.uniform(0.05, 0.6))
            killed_pid = host.process.pid
            host.kill()
            recorded = recorded_completions(state, instance)
            assert len(recorded) < 30, "the kill must land mid-orchestration"
            progress.append(len(recorded))

            host = HostProcess(state, side_effects, log)
            deadline = time.monotonic() + 30
            while True:
                status = httpx.get(
                    f"{host.base}/runtime/webhooks/durabletask/instances/{instance}", params={"code": KEY}
                ).json()
                if status["runtimeStatus"] in ("Completed", "Failed") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"] == [i * i for i in range(30)]

            runs: dict[int, list[int]] = defaultdict(list)
            for line in side_effects.read_text().splitlines():
                name, step, pid = line.split()
                if name == instance:
                    runs[int(step)].append(int(pid))
            assert sorted(runs) == list(range(30))
            for step, pids in runs.items():
                if step in recorded:
                    # Completed and recorded before the kill: never executed by the restarted host.
                    assert pids == [killed_pid], (run, step, pids)
                elif len(pids) > 1:
                    # Only the activity in flight at the kill may run twice (at-least-once, as in Azure).
                    assert pids[:-1] == [killed_pid], (run, step, pids)
                    assert pids[-1] == host.process.pid, (run, step, pids)
            twice = [s for s, pids in runs.items() if len(pids) > 1]
            assert len(twice) <= 1, (run, twice)  # a sequential chain has at most one activity in flight
            duplicates_seen += len(twice)
    finally:
        host.stop()
    assert max(progress) > 0  # some kills landed after steps had completed and been recorded
    print(f"{RUNS} kills after {progress} recorded steps; {duplicates_seen} in-flight activities re-ran")
