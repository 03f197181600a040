"""The durable engine: runs orchestrator episodes through the SDK's handle and executes their actions.

An *episode* is what DurableTask.Core calls an orchestration work item: take the instance's
visible messages, append them to its history after an ``OrchestratorStarted`` event, replay
the whole history through the orchestrator function's ``Orchestrator.create(fn)`` handle
(exactly the JSON the host sends), number the returned actions (:mod:`replay`), and commit the
new history, the scheduled work and the messages to other instances in one SQLite
transaction. Activities run in a thread pool (coroutine activities on the loop) and each
completion is committed as a message for the next episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import json
import logging
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.app_loader import AppFunction, FunctionIndex
from devhost.components import Clock
from devhost.durable import history as h
from devhost.durable import sdk_checks, sdk_speedups
from devhost.durable.history import Event, EventType
from devhost.durable.replay import Scheduled, parse_actions, replay
from devhost.durable.store import InstanceRow, Message, NewMessage, Store, WorkItem
from devhost.errors import NonDeterminismError, UnknownFunctionError, UnsupportedActionError

logger = logging.getLogger("devhost.durable")

RUNNING_STATES = {"Pending", "Running", "Suspended", "ContinuedAsNew"}
TERMINAL_STATES = {"Completed", "Failed", "Terminated"}
_MARKER = "$OutOfProcData$:"
#: While other activities of an instance still run, its completions are delivered in batches at least this far
#: apart (and at least as far apart as its last episode took).
BATCH_SECONDS = 0.01


class InstanceExistsError(RuntimeError):
    """Starting an instance id that is still running (the host refuses it by default)."""


@dataclass
class _Cached:
    """An instance's current history, parsed and as JSON (so replays do not re-serialise it)."""

    execution_id: str
    events: list[Event] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def _played(event: Event) -> str:
    return json.dumps({**event, "IsPlayed": True})


def _split_error(error: Exception) -> tuple[str, dict[str, Any]]:
    """The orchestrator's message and state from the SDK's ``<message>\\n\\n$OutOfProcData$:<state>``."""
    text = str(error)
    if _MARKER in text:
        message, _, state = text.partition(_MARKER)
        with contextlib.suppress(json.JSONDecodeError):
            return message.strip(), json.loads(state)
        return message.strip(), {}
    return text, {}


class Engine:
    """Owns the durable state of one task hub. All methods run on the host's event loop."""

    def __init__(
        self,
        index: FunctionIndex,
        state_dir: Path,
        clock: Clock,
        activity_workers: int = 8,
        on_invocation: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        sdk_speedups.install()
        sdk_checks.install()
        self.index = index
        self.clock = clock
        self.store = Store(state_dir / "durable.sqlite3")
        self._activity_pool = ThreadPoolExecutor(max_workers=activity_workers, thread_name_prefix="activity")
        self._orchestrator_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator")
        self._activity_slots = asyncio.Semaphore(activity_workers)
        self._ready: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._timers: list[tuple[float, str]] = []
        self._timers_changed = asyncio.Event()
        self._cache: dict[str, _Cached] = {}
        self._busy_episode = False
        self._activities_in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._activity_tasks: set[asyncio.Task[None]] = set()
        self._last_time = 0.0
        self.episodes = 0
        self._on_invocation = on_invocation
        self._pending_work: list[WorkItem] = []
        self._instance_in_flight: defaultdict[str, int] = defaultdict(int)
        self._flush_scheduled: set[str] = set()
        self._episode_seconds: dict[str, float] = {}

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume what a previous run left: due messages, timers and activities in flight at a crash."""
        now = self._now_ts()
        for message in self.store.all_messages():
            if message.visible_at <= now:
                self._ready[message.instance_id] = None
            else:
                heapq.heappush(self._timers, (message.visible_at, message.instance_id))
        for item in self.store.work_items():
            self._spawn_activity(item)
        self._tasks = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._timer_loop())]
        self._wake.set()

    async def stop(self) -> None:
        for task in [*self._tasks, *self._activity_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._activity_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._activity_pool.shutdown(wait=False, cancel_futures=True)
        self._orchestrator_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def is_idle(self) -> bool:
        due = bool(self._timers) and self._timers[0][0] <= self._now_ts()
        return not self._ready and not self._busy_episode and self._activities_in_flight == 0 and not due

    async def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is runnable now (future timers do not count); False on timeout."""
        # Every state change (message queued, activity finished, episode committed) happens between two
        # awaits and updates the counters is_idle() reads, so one idle observation is conclusive.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_idle():
                return True
            await asyncio.sleep(0.001)
        return False

    def next_timer(self) -> datetime | None:
        """When the earliest pending durable timer fires (None when there is none)."""
        if not self._timers:
            return None
        return datetime.fromtimestamp(self._timers[0][0], self._now().tzinfo)

    # -- time ----------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.clock.now()

    def _now_ts(self) -> float:
        return self.clock.now().timestamp()

    def _stamp(self) -> datetime:
        """The episode time: the clock, but never earlier than the previous episode (timestamps must not go back)."""
        now = self.clock.now()
        if now.timestamp() < self._last_time:
            now = datetime.fromtimestamp(self._last_time, now.tzinfo)
        self._last_time = now.timestamp()
        return now

    # -- public operations (the management API calls these) --------------------------------------
    def orchestrator(self, name: str) -> AppFunction:
        fn = self.index.orchestrators.get(name)
        if fn is None:
            known = ", ".join(sorted(self.index.orchestrators)) or "none"
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function",
                f"known orchestrators: {known}",
            )
        return fn

    def start_new(
        self, name: str, instance_id: str | None, input_json: str | None, parent: dict[str, Any] | None = None
    ) -> str:
        self.orchestrator(name)
        instance_id = instance_id or uuid.uuid4().hex
        existing = self.store.instance(instance_id)
        if existing is not None and existing.status in RUNNING_STATES:
            raise InstanceExistsError(
                f"An Orchestration instance with the status {existing.status} already exists "
                f"(instance '{instance_id}'); terminate it or wait for it to finish, then start it again"
            )
        with self.store.transaction() as db:
            self._create(db, instance_id, name, input_json, parent)
        self._cache.pop(instance_id, None)
        self._mark_ready(instance_id)
        return instance_id

    def _create(
        self, db: Any, instance_id: str, name: str, input_json: str | None, parent: dict[str, Any] | None
    ) -> None:
        now = self._now()
        execution_id = uuid.uuid4().hex
        Store.clear_instance(db, instance_id)
        stamp = h.format_time(now)
        Store.put_instance(
            db, InstanceRow(instance_id, name, execution_id, "Pending", input_json, None, None, stamp, stamp, parent)
        )
        started = h.execution_started(now, name, input_json, parent)
        Store.add_messages(db, [NewMessage(instance_id, execution_id, "event", started)])

    def raise_event(self, instance_id: str, name: str, input_json: str | None) -> int:
        """202 accepted, 404 unknown instance, 410 finished (the host's status codes)."""
        row = self.store.instance(instance_id)
        if row is None:
            return 404
        if row.status in TERMINAL_STATES:
            return 410
        with self.store.transaction() as db:
            event = h.event_raised(self._now(), name, input_json)
            Store.add_messages(db, [NewMessage(instance_id, row.execution_id, "event", event)])
        self._mark_ready(instance_id)
        return 202

    def control(self, instance_id: str, kind: str, reason: str | None) -> int:
        """terminate / suspend / resume: 202 accepted, 404 unknown, 410 already finished."""
        row = self.store.instance(instance_id)
        if row is None:
            return 404
        if row.status in TERMINAL_STATES:
            return 410
        with self.store.transaction() as db:
            Store.add_messages(db, [NewMessage(instance_id, row.execution_id, kind, {"reason": reason})])
        self._mark_ready(instance_id)
        return 202

    def purge(self, instance_id: str) -> int:
        row = self.store.instance(instance_id)
        if row is None:
            return 0
        with self.store.transaction() as db:
            Store.delete_instance(db, instance_id)
        self._cache.pop(instance_id, None)
        return 1

    def history_events(self, instance_id: str) -> list[Event]:
        return [json.loads(text) for text in self.store.history(instance_id)]

    # -- scheduling ------------------------------------------------------------------------------
    def _mark_ready(self, instance_id: str) -> None:
        self._ready[instance_id] = None
        self._wake.set()

    def _add_timer(self, visible_at: float, instance_id: str) -> None:
        heapq.heappush(self._timers, (visible_at, instance_id))
        self._timers_changed.set()

    async def _timer_loop(self) -> None:
        while True:
            now = self._now_ts()
            while self._timers and self._timers[0][0] <= now:
                _, instance_id = heapq.heappop(self._timers)
                self._mark_ready(instance_id)
            self._timers_changed.clear()
            changed = asyncio.ensure_future(self._timers_changed.wait())
            waits: list[asyncio.Future[Any]] = [changed]
            if self._timers:
                when = datetime.fromtimestamp(self._timers[0][0], self._now().tzinfo)
                waits.append(asyncio.ensure_future(self.clock.sleep_until(when)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready:
                instance_id = next(iter(self._ready))
                del self._ready[instance_id]
                self._busy_episode = True
                try:
                    await self._episode(instance_id)
                except Exception:
                    logger.exception("devhost: episode of instance %s failed inside the engine", instance_id)
                finally:
                    self._busy_episode = False

    # -- episodes --------------------------------------------------------------------------------
    def _history(self, row: InstanceRow) -> _Cached:
        cached = self._cache.get(row.instance_id)
        if cached is None or cached.execution_id != row.execution_id:
            texts = self.store.history(row.instance_id)
            cached = _Cached(row.execution_id, [json.loads(t) for t in texts], texts)
            self._cache[row.instance_id] = cached
        return cached

    async def _episode(self, instance_id: str) -> None:
        row = self.store.instance(instance_id)
        messages = self.store.visible_messages(instance_id, self._now_ts())
        if not messages:
            return
        if row is None or row.status in TERMINAL_STATES:
            with self.store.transaction() as db:
                Store.delete_messages(db, [m.id for m in messages])
            return
        stale = [m for m in messages if m.execution_id != row.execution_id]
        current = [m for m in messages if m.execution_id == row.execution_id]
        controls = [m for m in current if m.kind != "event"]
        for control in controls:
            if control.kind == "terminate":
                self._terminate(row, [m.id for m in messages], control.body.get("reason"))
                return
        suspended = row.status == "Suspended"
        for control in controls:
            suspended = control.kind == "suspend"
        events = [m for m in current if m.kind == "event"]
        if suspended:
            row.status = "Suspended"
            row.last_updated_time = h.format_time(self._now())
            with self.store.transaction() as db:
                Store.delete_messages(db, [m.id for m in [*stale, *controls]])
                Store.put_instance(db, row)
            return  # events stay queued until resume
        if not events:
            if controls or stale:
                row.status = "Running" if row.status == "Suspended" else row.status
                with self.store.transaction() as db:
                    Store.delete_messages(db, [m.id for m in [*stale, *controls]])
                    Store.put_instance(db, row)
            return
        await self._run_orchestrator(row, events, [*stale, *controls])

    def _terminate(self, row: InstanceRow, message_ids: list[int], reason: str | None) -> None:
        now = self._now()
        cached = self._history(row)
        terminated = h.execution_terminated(now, reason)
        row.status, row.output = "Terminated", json.dumps(reason)
        row.last_updated_time = h.format_time(now)
        with self.store.transaction() as db:
            Store.delete_messages(db, message_ids)
            db.execute("DELETE FROM activities WHERE instance_id = ?", (row.instance_id,))
            db.execute("DELETE FROM messages WHERE instance_id = ?", (row.instance_id,))
            Store.append_history(db, row.instance_id, len(cached.texts), [_played(terminated)])
            Store.put_instance(db, row)
            message = f"Orchestration '{row.instance_id}' was terminated: {reason}"
            self._notify_parent(db, row, None, message, message)
        self._cache.pop(row.instance_id, None)
        logger.info("orchestration terminated", extra={"instance_id": row.instance_id, "reason": reason})

    def _context_json(self, row: InstanceRow, cached: _Cached, new_events: list[Event]) -> str:
        texts = [*cached.texts, *(json.dumps(e) for e in new_events)]
        started = next(
            (e for e in [*cached.events, *new_events] if e["EventType"] == EventType.EXECUTION_STARTED), None
        )
        parent = row.parent or {}
        rest = json.dumps(
            {
                "input": started.get("Input") if started else None,
                "instanceId": row.instance_id,
                "isReplaying": bool(cached.texts),
                "parentInstanceId": parent.get("instance_id"),
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
            }
        )
        return '{"history": [' + ",".join(texts) + "], " + rest[1:]

    async def _run_orchestrator(self, row: InstanceRow, messages: list[Message], discard: list[Message]) -> None:
        fn = self.orchestrator(row.name)
        cached = self._history(row)
        now = self._stamp()
        new_events = [h.orchestrator_started(now), *(m.body for m in messages)]
        context = self._context_json(row, cached, new_events)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        error: str | None = None
        try:
            state = json.loads(await loop.run_in_executor(self._orchestrator_pool, fn.user_function, context))
        except Exception as exc:
            error, state = _split_error(exc)
        self.episodes += 1
        all_events = [*cached.events, *new_events]
        result = replay(row.instance_id, all_events, parse_actions(state))
        recorded = {int(e["EventId"]) for e in all_events if e["EventType"] in (4, 7, 10)}
        if error is None and result.problems:
            error = str(
                NonDeterminismError(
                    "; ".join(result.problems), "restart the instance, or keep old code paths for in-flight instances"
                )
            )
        if error is None and result.reuses:
            error = str(
                NonDeterminismError(
                    "; ".join(result.reuses),
                    "create a fresh task for each task_any/task_all, or give it only tasks that were already "
                    "scheduled, as when waiting again on the loser of a task_any",
                )
            )
        if error is None and result.unsupported:
            error = str(
                UnsupportedActionError(
                    f"devhost does not implement {', '.join(sorted(set(result.unsupported)))}",
                    "use activities instead, or run this orchestration on the real Functions host",
                )
            )
        done = bool(state.get("isDone")) and error is None
        appended = [*new_events]
        out: list[NewMessage] = []
        starts: list[tuple[str, str, str | None, dict[str, Any]]] = []
        work: list[WorkItem] = []
        cancel_timers: list[int] = []
        if error is None:
            for item in result.scheduled:
                if item.task_id in recorded:
                    if item.kind == "timer" and item.canceled:
                        cancel_timers.append(item.task_id)
                    continue
                appended.append(self._schedule(row, item, now, out, work, starts))
        appended.append(h.orchestrator_completed(now))
        row.custom_status = json.dumps(state["customStatus"]) if "customStatus" in state else row.custom_status
        row.last_updated_time = h.format_time(now)
        cont = result.continue_as_new if done else None
        if error is not None:
            row.status = "Failed"
            row.output = json.dumps(f"Orchestrator function '{row.name}' failed: {error}")
            appended.append(h.execution_completed(now, "Failed", row.output))
        elif cont is not None:
            row.status = "Running"
        elif done:
            row.status = "Completed"
            row.output = json.dumps(state.get("output"))
            appended.append(h.execution_completed(now, "Completed", row.output))
        else:
            row.status = "Running"
        with self.store.transaction() as db:
            Store.delete_messages(db, [m.id for m in [*messages, *discard]])
            for task_id in cancel_timers:
                Store.delete_timer(db, row.instance_id, row.execution_id, task_id)
            if cont is not None:
                self._continue_as_new(db, row, cont.input, result.unconsumed_events, now)
            else:
                texts = [_played(e) for e in appended]
                Store.append_history(db, row.instance_id, len(cached.texts), texts)
                for work_item in work:
                    self._spawn_later(db, work_item)
                for child_id, child_name, child_input, parent in starts:
                    self._create(db, child_id, child_name, child_input, parent)
                    self._cache.pop(child_id, None)
                if row.status == "Failed":
                    self._notify_parent(db, row, None, f"Orchestrator function '{row.name}' failed: {error}", error)
                elif row.status == "Completed":
                    self._notify_parent(db, row, row.output, None, None)
            Store.add_messages(db, out)
            Store.put_instance(db, row)
        if cont is None:
            cached.events.extend(appended)
            cached.texts.extend(_played(e) for e in appended)
        else:
            self._cache.pop(row.instance_id, None)
        self._after_commit(out)
        for child_id, *_ in starts:
            self._mark_ready(child_id)
        self._episode_seconds[row.instance_id] = time.perf_counter() - started
        self._report(row, time.perf_counter() - started, error, len(all_events) + len(appended) - len(new_events))

    def _report(self, row: InstanceRow, seconds: float, error: str | None, history_events: int) -> None:
        outcome = "Failed" if error else ("Succeeded" if row.status != "Failed" else "Failed")
        record = {
            "function": row.name,
            "instance_id": row.instance_id,
            "history_events": history_events,
            "duration_ms": round(seconds * 1000, 2),
            "outcome": outcome,
            "runtime_status": row.status,
        }
        # One line per episode, as the host logs each orchestrator invocation.
        logger.log(
            logging.ERROR if error else logging.INFO,
            "Executed 'Functions.%s' (%s, InstanceId=%s, Duration=%sms, RuntimeStatus=%s)%s",
            row.name,
            outcome,
            row.instance_id,
            record["duration_ms"],
            row.status,
            f": orchestrator failed: {error}" if error else "",
            extra=record,
        )
        if self._on_invocation:
            self._on_invocation(record)

    def _schedule(
        self,
        row: InstanceRow,
        item: Scheduled,
        now: datetime,
        out: list[NewMessage],
        work: list[WorkItem],
        starts: list[tuple[str, str, str | None, dict[str, Any]]],
    ) -> Event:
        if item.kind == "timer":
            assert item.fire_at is not None
            if not item.canceled:
                fired = h.timer_fired(item.fire_at, item.task_id, item.fire_at)
                out.append(
                    NewMessage(
                        row.instance_id, row.execution_id, "event", fired, item.fire_at.timestamp(), item.task_id
                    )
                )
            return h.timer_created(now, item.task_id, item.fire_at)
        if item.kind == "activity":
            if item.name not in self.index.activities:
                known = ", ".join(sorted(self.index.activities)) or "none"
                reason = f"The function '{item.name}' doesn't exist, is disabled, or is not an activity function"
                failed = h.task_failed(now, item.task_id, reason, f"known activities: {known}")
                out.append(NewMessage(row.instance_id, row.execution_id, "event", failed))
            else:
                work.append(WorkItem(0, row.instance_id, row.execution_id, item.task_id, item.name, item.input))
            return h.task_scheduled(now, item.task_id, item.name, item.input)
        child_id = item.instance_id or f"{row.instance_id}:{item.task_id}"
        created = h.sub_created(now, item.task_id, item.name, child_id, item.input)
        problem: str | None = None
        if item.name not in self.index.orchestrators:
            known = ", ".join(sorted(self.index.orchestrators)) or "none"
            problem = f"The function '{item.name}' doesn't exist, is disabled, or is not an orchestrator function (known orchestrators: {known})"
        else:
            existing = self.store.instance(child_id)
            if existing is not None and existing.status in RUNNING_STATES:
                problem = f"An Orchestration instance with the status {existing.status} already exists (instance '{child_id}')"
        if problem is not None:
            failed = h.sub_failed(now, item.task_id, problem, problem)
            out.append(NewMessage(row.instance_id, row.execution_id, "event", failed))
            return created
        parent = {"instance_id": row.instance_id, "execution_id": row.execution_id, "task_id": item.task_id}
        starts.append((child_id, item.name, item.input, parent))
        return created

    def _spawn_later(self, db: Any, item: WorkItem) -> None:
        work_id = Store.add_work(db, item)
        self._pending_work.append(
            WorkItem(work_id, item.instance_id, item.execution_id, item.task_id, item.name, item.input)
        )

    def _after_commit(self, out: list[NewMessage]) -> None:
        pending, self._pending_work = self._pending_work, []
        for item in pending:
            self._spawn_activity(item)
        for message in out:
            if message.visible_at > self._now_ts():
                self._add_timer(message.visible_at, message.instance_id)
            else:
                self._mark_ready(message.instance_id)

    def _continue_as_new(
        self,
        db: Any,
        row: InstanceRow,
        input_json: str | None,
        unconsumed: dict[str, int],
        now: datetime,
    ) -> None:
        row.execution_id = uuid.uuid4().hex
        row.input = input_json
        Store.clear_instance(db, row.instance_id, keep_messages=True)
        # Messages not yet delivered to an episode go to the next generation, as queued messages do in Azure.
        Store.rekey_messages(db, row.instance_id, row.execution_id)
        # External events this generation received but did not consume are dropped, as the host does for a
        # Python orchestrator: its continue_as_new has no preserveUnprocessedEvents (azure-functions-durable-
        # python#331). An orchestrator must consume the events it cares about before it continues as new.
        for name, count in unconsumed.items():
            logger.warning(
                "%s continued as new with %d unconsumed %r event(s); they are dropped, as in Azure",
                row.instance_id,
                count,
                name,
            )
        started = h.execution_started(now, row.name, input_json, row.parent)
        Store.add_messages(db, [NewMessage(row.instance_id, row.execution_id, "event", started)])
        self._mark_ready(row.instance_id)

    def _notify_parent(
        self, db: Any, row: InstanceRow, result_json: str | None, failure: str | None, details: str | None
    ) -> None:
        """Tell the parent orchestration (if any) that this sub-orchestration completed or failed."""
        parent = row.parent
        if not parent:
            return
        now = self._now()
        task_id = int(parent["task_id"])
        if failure is None:
            body = h.sub_completed(now, task_id, result_json)
        else:
            body = h.sub_failed(now, task_id, failure, details or "")
        Store.add_messages(db, [NewMessage(parent["instance_id"], parent["execution_id"], "event", body)])
        self._ready[parent["instance_id"]] = None
        self._wake.set()

    # -- activities ------------------------------------------------------------------------------
    def _spawn_activity(self, item: WorkItem) -> None:
        self._activities_in_flight += 1
        self._instance_in_flight[item.instance_id] += 1
        task = asyncio.create_task(self._run_activity(item))
        self._activity_tasks.add(task)
        task.add_done_callback(self._activity_tasks.discard)

    async def _run_activity(self, item: WorkItem) -> None:
        try:
            async with self._activity_slots:
                event = await self._invoke_activity(item)
            with self.store.transaction() as db:
                if Store.finish_work(db, item.id):
                    Store.add_messages(db, [NewMessage(item.instance_id, item.execution_id, "event", event)])
        finally:
            self._activities_in_flight -= 1
            self._instance_in_flight[item.instance_id] -= 1
        self._completed(item.instance_id)

    def _completed(self, instance_id: str) -> None:
        """Wake the instance for its new result: now if nothing else of it runs, else batched every few ms.

        A fan-out of N activities would otherwise replay its (long) history N times; batching the
        completions, as DurableTask.Core's message batches do, keeps a fan-out near O(N).
        """
        if self._instance_in_flight[instance_id] <= 0:
            del self._instance_in_flight[instance_id]
            self._mark_ready(instance_id)
        elif instance_id not in self._flush_scheduled:
            self._flush_scheduled.add(instance_id)

            def flush() -> None:
                self._flush_scheduled.discard(instance_id)
                self._mark_ready(instance_id)

            # Wait at least as long as the instance's last replay took, so replays stay a bounded share.
            delay = max(BATCH_SECONDS, self._episode_seconds.get(instance_id, 0.0))
            asyncio.get_running_loop().call_later(delay, flush)

    async def _invoke_activity(self, item: WorkItem) -> Event:
        fn = self.index.activities.get(item.name)
        started = time.perf_counter()
        outcome, error = "Succeeded", None
        try:
            if fn is None:
                raise UnknownFunctionError(f"activity '{item.name}' is not defined by the app", "check the name")
            # The worker's own converters: df_loads on the way in, df_dumps on the way out.
            value = (
                None
                if item.input is None
                else ActivityTriggerConverter.decode(meta.Datum(item.input, "json"), trigger_metadata=None)
            )
            kwargs = {fn.trigger_arg: value}
            if inspect.iscoroutinefunction(fn.user_function):
                output = await fn.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                output = await loop.run_in_executor(self._activity_pool, lambda: fn.user_function(**kwargs))
            encoded = ActivityTriggerConverter.encode(output, expected_type=None)
            event = h.task_completed(self._now(), item.task_id, encoded.value if encoded is not None else None)
        except Exception as exc:
            outcome, error = "Failed", f"{type(exc).__name__}: {exc}"
            reason = f"Activity function '{item.name}' failed: {error}"
            event = h.task_failed(self._now(), item.task_id, reason, traceback.format_exc())
        record = {
            "function": item.name,
            "instance_id": item.instance_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "outcome": outcome,
        }
        # One line per activity invocation, as the host logs it (a failure is a warning: the orchestrator decides).
        logger.log(
            logging.WARNING if error else logging.INFO,
            "Executed 'Functions.%s' (%s, InstanceId=%s, Duration=%sms)%s",
            item.name,
            outcome,
            item.instance_id,
            record["duration_ms"],
            f": activity failed: {error}" if error else "",
            extra=record,
        )
        if self._on_invocation:
            self._on_invocation(record)
        return event
