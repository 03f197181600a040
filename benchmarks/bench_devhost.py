"""devhost's durable engine: per-instance activity throughput persisted to SQLite, cost per step vs
history length, and the history size of a 72 h / 60 s job monitor written the DESIGN.md way.

Peer: the Durable Functions Azure Storage provider, whose documented per-instance figures are
about 5 sequential activities/s and about 100 fan-out activities/s (Durable Functions
performance and scale docs). The peer needs Azure and cannot run on this machine, so its
documented numbers are the baseline; devhost runs the same shapes here, unmodified Durable SDK,
every step committed to SQLite (WAL) before the next one is scheduled.

Run: ``python -m benchmarks bench_devhost``. Timings on a shared 2-core machine are noisy;
the ratios are what to compare.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devhost.clock import VirtualClock  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from devhost.threaded import ThreadedHost  # noqa: E402

PEER_SEQUENTIAL = 5.0  # activities/s per instance, Azure Storage provider (documented)
PEER_FAN_OUT = 100.0
TARGET_SEQUENTIAL, TARGET_FAN_OUT, TARGET_HISTORY = 100.0, 500.0, 500
SEQUENTIAL_STEPS, LONG_CHAIN, FAN_OUT_WIDTH = 100, 500, 1000
MONITOR_HOURS, MONITOR_INTERVAL_S, POLLS_PER_GENERATION = 72, 60, 50

APP = """
from datetime import timedelta
import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="n")
def noop(n):
    return n


@app.orchestration_trigger(context_name="context")
def sequential(context):
    total = 0
    for i in range(context.get_input()):
        total += yield context.call_activity("noop", i)
    return total


@app.orchestration_trigger(context_name="context")
def fan_out(context):
    results = yield context.task_all([context.call_activity("noop", i) for i in range(context.get_input())])
    return sum(results)


@app.activity_trigger(input_name="job")
def poll_job(job):
    return "running"


@app.orchestration_trigger(context_name="context")
def job_monitor(context):
    # DESIGN.md rule 1: a long polling loop keeps its history bounded with continue_as_new.
    state = context.get_input()
    for _ in range(state["per_generation"]):
        if state["polls"] >= state["total"]:
            return state
        yield context.call_activity("poll_job", state["job"])
        state["polls"] += 1
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=state["interval"]))
    context.continue_as_new(state)
"""


class Run:
    def __init__(self, clock: Any = "real") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-devhost-"))
        (self.dir / "bench_app.py").write_text(APP, encoding="utf-8")
        self.records: list[dict[str, Any]] = []
        self.host = DevHost(self.dir / "bench_app.py", port=0, state_dir=self.dir / "state", clock=clock)
        self.threaded = ThreadedHost(self.host)
        assert self.host.engine is not None
        self.engine = self.host.engine
        self.engine._on_invocation = self.records.append

    def call(self, coro: Any, timeout: float = 600) -> Any:
        return self.threaded.call(coro, timeout)

    def run(self, name: str, payload: Any, advance_clock: bool = False) -> tuple[float, Any]:
        engine = self.engine

        async def go() -> tuple[float, Any]:
            started = time.perf_counter()
            instance = engine.start_new(name, None, __import__("json").dumps(payload))
            while True:
                await engine.wait_idle(600)
                row = engine.store.instance(instance)
                assert row is not None
                if row.status in ("Completed", "Failed", "Terminated"):
                    assert row.status == "Completed", row.output
                    return time.perf_counter() - started, row.output
                when = engine.next_timer()
                if not advance_clock or when is None:
                    raise RuntimeError(f"{name} stalled in status {row.status}")
                assert isinstance(self.host.clock, VirtualClock)
                self.host.clock.set(when)

        return self.call(go())

    def close(self) -> None:
        self.threaded.stop()


def _cost_by_history(records: list[dict[str, Any]], bucket: int) -> list[tuple[int, float]]:
    groups: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if "history_events" in r and r["function"] == "sequential":
            groups[r["history_events"] // bucket * bucket].append(r["duration_ms"])
    return [(k, statistics.median(v)) for k, v in sorted(groups.items())]


def main() -> int:
    logging.getLogger("devhost").setLevel(logging.WARNING)
    failed = 0

    run = Run()
    try:
        run.run("sequential", 5)  # warm up imports and the SDK session
        run.records.clear()
        seconds, _ = run.run("sequential", SEQUENTIAL_STEPS)
        sequential = SEQUENTIAL_STEPS / seconds
        run.records.clear()
        seconds, _ = run.run("sequential", LONG_CHAIN)
        long_chain = LONG_CHAIN / seconds
        cost = _cost_by_history(run.records, 400)
        seconds, _ = run.run("fan_out", FAN_OUT_WIDTH)
        fan_out = FAN_OUT_WIDTH / seconds
        fan_out_episodes = sum(1 for r in run.records if r["function"] == "fan_out")
    finally:
        run.close()

    monitor = Run(VirtualClock())
    try:
        total = MONITOR_HOURS * 3600 // MONITOR_INTERVAL_S
        job = {
            "job": "train-42",
            "polls": 0,
            "total": total,
            "interval": MONITOR_INTERVAL_S,
            "per_generation": POLLS_PER_GENERATION,
        }
        seconds, output = monitor.run("job_monitor", job, advance_clock=True)
        episodes = [r for r in monitor.records if r["function"] == "job_monitor"]
        largest_history = max(r["history_events"] for r in episodes)
    finally:
        monitor.close()

    print(
        f"sequential: a {SEQUENTIAL_STEPS}-step chain in one instance: {sequential:,.0f}/s "
        f"(target >= {TARGET_SEQUENTIAL:.0f}/s; Azure Storage provider ~{PEER_SEQUENTIAL:.0f}/s: "
        f"ratio {sequential / PEER_SEQUENTIAL:,.1f}x)"
    )
    print(
        f"fan-out:    {FAN_OUT_WIDTH} activities in one task_all: {fan_out:,.0f}/s in {fan_out_episodes} episodes "
        f"(target >= {TARGET_FAN_OUT:.0f}/s; Azure Storage provider ~{PEER_FAN_OUT:.0f}/s: ratio {fan_out / PEER_FAN_OUT:,.1f}x)"
    )
    print(
        f"cost per step vs history length, one {LONG_CHAIN}-step chain ({long_chain:,.0f} activities/s overall; "
        "median episode = replay through the SDK + numbering + SQLite commit):"
    )
    for start, ms in cost:
        print(f"    history {start:>5}-{start + 399:<5} events: {ms:6.2f} ms per step")
    print(
        f"job monitor: {MONITOR_HOURS} h at {MONITOR_INTERVAL_S} s = {output and __import__('json').loads(output)['polls']} polls, "
        f"{len(episodes)} episodes, continue_as_new every {POLLS_PER_GENERATION} polls, run in {seconds:.1f} s on the virtual clock; "
        f"largest history {largest_history} events (target <= {TARGET_HISTORY})"
    )
    if sequential < TARGET_SEQUENTIAL:
        print("FAIL: sequential throughput below target")
        failed = 1
    if fan_out < TARGET_FAN_OUT:
        print("FAIL: fan-out throughput below target")
        failed = 1
    if largest_history > TARGET_HISTORY:
        print("FAIL: monitor history above target")
        failed = 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
