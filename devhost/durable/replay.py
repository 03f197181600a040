"""Turn the SDK's replayed actions into task ids, the way DurableTask.Core numbers them.

The Python SDK numbers its tasks with a counter as the generator yields them (compound
``task_all``/``task_any`` children in order) and, for ``*_with_retry`` calls, takes two more
numbers after each failed attempt (the retry timer, then the next attempt) at the moment the
failure is replayed. The host must assign the very same ids, so this module re-enacts that
sequence: it walks the history in order, "yields" the next top-level action whenever the
previous one has completed, and numbers leaves and retry steps as it goes.

It also does what the SDK does not: it compares each numbered action with the event the
history recorded under that id (type and name), and reports a mismatch as non-determinism; and it
reports a task_any / task_all that re-uses a task an earlier yield scheduled (marked by
:mod:`devhost.durable.sdk_checks`), which Azure's host may never complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from devhost.durable.history import Event, EventType, parse_time

LeafKind = Literal["activity", "sub", "timer", "event", "continue_as_new", "unsupported"]

_ACTIVITY, _ACTIVITY_RETRY, _SUB, _SUB_RETRY, _CONTINUE, _TIMER, _EVENT = 0, 1, 2, 3, 4, 5, 6
_WHEN_ANY, _WHEN_ALL = 11, 12
_UNSUPPORTED = {7: "call_entity", 8: "call_http", 9: "signal_entity"}
#: Where :mod:`devhost.durable.sdk_checks` lists the already-scheduled tasks a compound action leaves out.
REUSED_KEY = "devhostReusedTasks"


@dataclass(frozen=True)
class RetryPolicy:
    first_interval: timedelta
    max_attempts: int


@dataclass
class Leaf:
    kind: LeafKind
    name: str = ""
    input: str | None = None
    retry: RetryPolicy | None = None
    fire_at: datetime | None = None
    canceled: bool = False
    instance_id: str | None = None
    action_type: int = -1


@dataclass
class Compound:
    kind: Literal["all", "any"]
    children: list[Node]
    reused: list[str] = field(default_factory=list)  # already-scheduled tasks the SDK left out, described


Node = Leaf | Compound


def parse_action(action: dict[str, Any]) -> Node:
    kind = int(action.get("actionType", -1))
    if kind in (_WHEN_ALL, _WHEN_ANY):
        children = [parse_action(child) for child in action.get("compoundActions", [])]
        reused = [_describe_reused(entry) for entry in action.get(REUSED_KEY, [])]
        return Compound("all" if kind == _WHEN_ALL else "any", children, reused)
    retry = None
    if kind in (_ACTIVITY_RETRY, _SUB_RETRY):
        options = action.get("retryOptions") or {}
        retry = RetryPolicy(
            timedelta(milliseconds=int(options.get("firstRetryIntervalInMilliseconds", 0))),
            max(1, int(options.get("maxNumberOfAttempts", 1))),
        )
    if kind in (_ACTIVITY, _ACTIVITY_RETRY):
        return Leaf("activity", str(action.get("functionName")), action.get("input"), retry, action_type=kind)
    if kind in (_SUB, _SUB_RETRY):
        return Leaf(
            "sub", str(action.get("functionName")), action.get("input"), retry,
            instance_id=action.get("instanceId"), action_type=kind,
        )  # fmt: skip
    if kind == _TIMER:
        fire_at = parse_time(str(action["fireAt"]))
        return Leaf("timer", fire_at=fire_at, canceled=bool(action.get("isCanceled")), action_type=kind)
    if kind == _EVENT:
        return Leaf("event", str(action.get("externalEventName")), action_type=kind)
    if kind == _CONTINUE:
        return Leaf("continue_as_new", input=action.get("input"), action_type=kind)
    return Leaf("unsupported", _UNSUPPORTED.get(kind, f"actionType {kind}"), action_type=kind)


def _what(node: Node) -> str:
    """'activity say_hello', 'timer', 'event approval', 'task_any(…)', as the problems name them."""
    if isinstance(node, Leaf):
        return f"{node.kind} {node.name}".strip()
    if len(node.children) == 1 and isinstance(node.children[0], Leaf) and node.children[0].retry:
        return _what(node.children[0])  # the SDK sends a *_with_retry call as a WhenAll of one
    return f"task_{node.kind}({', '.join(_what(child) for child in node.children)})"


def _describe_reused(entry: dict[str, Any]) -> str:
    what = _what(parse_action(entry.get("action") or {}))
    task_id = entry.get("taskId")
    return f"'{what}'" if task_id is None else f"task {task_id} ('{what}')"


def parse_actions(state: dict[str, Any]) -> list[Node]:
    """The top-level actions (one per yield) from the handle's state; V1 lists are flattened too."""
    nodes: list[Node] = []
    for group in state.get("actions", []) or []:
        nodes.extend(parse_action(a) for a in group)
    return nodes


@dataclass
class Scheduled:
    """Something numbered by the replay: an activity, a sub-orchestration or a timer."""

    task_id: int
    kind: Literal["activity", "sub", "timer"]
    name: str = ""
    input: str | None = None
    fire_at: datetime | None = None
    instance_id: str | None = None
    canceled: bool = False
    retry_timer: bool = False


@dataclass
class _Task:
    leaf: Leaf | None
    compound: Compound | None = None
    parent: _Task | None = None
    children: list[_Task] = field(default_factory=list)
    done: bool = False
    failed: bool = False
    attempts: int = 0
    attempt_id: int = -1
    timer_id: int = -1


@dataclass
class ReplayResult:
    scheduled: list[Scheduled]
    problems: list[str]
    reuses: list[str]
    unsupported: list[str]
    unconsumed_events: dict[str, int]
    continue_as_new: Leaf | None


_SCHEDULED_TYPES = {
    EventType.TASK_SCHEDULED: "activity",
    EventType.SUB_ORCHESTRATION_CREATED: "sub",
    EventType.TIMER_CREATED: "timer",
}


class _Replay:
    def __init__(self, instance_id: str, history: list[Event]) -> None:
        self.instance_id = instance_id
        self.counter = 0
        self.by_id: dict[int, _Task] = {}
        self.scheduled: dict[int, Scheduled] = {}
        self.waiting: dict[str, list[_Task]] = {}
        self.buffered: dict[str, int] = {}
        self.problems: list[str] = []
        self.reuses: list[str] = []
        self.unsupported: list[str] = []
        self.continue_as_new: Leaf | None = None
        self.now: datetime | None = None
        self.recorded: dict[int, Event] = {
            int(e["EventId"]): e for e in history if e["EventType"] in _SCHEDULED_TYPES and int(e["EventId"]) >= 0
        }

    # -- numbering ---------------------------------------------------------------------------
    def _take(self) -> int:
        task_id = self.counter
        self.counter += 1
        return task_id

    def _record(self, item: Scheduled) -> None:
        self.scheduled[item.task_id] = item
        seen = self.recorded.get(item.task_id)
        if seen is None:
            return
        seen_kind = _SCHEDULED_TYPES[EventType(seen["EventType"])]
        if seen_kind != item.kind or (item.kind != "timer" and seen.get("Name") != item.name):
            what = f"{seen_kind} {seen.get('Name') or ''}".strip()
            now = f"{item.kind} {item.name}".strip()
            self.problems.append(
                f"Non-deterministic orchestrator: task {item.task_id} was '{what}' in the recorded history "
                f"but the replayed code now schedules '{now}'"
            )

    def _schedule_attempt(self, task: _Task) -> None:
        leaf = task.leaf
        assert leaf is not None
        task.attempts += 1
        task.attempt_id = self._take()
        self.by_id[task.attempt_id] = task
        kind: Literal["activity", "sub"] = "activity" if leaf.kind == "activity" else "sub"
        instance = leaf.instance_id or f"{self.instance_id}:{task.attempt_id}"
        self._record(Scheduled(task.attempt_id, kind, leaf.name, leaf.input, instance_id=instance))

    def schedule(self, node: Node, parent: _Task | None) -> _Task:
        if isinstance(node, Compound):
            if node.reused:
                self._report_reuse(node)
            task = _Task(None, node, parent)
            task.children = [self.schedule(child, task) for child in node.children]
            if not task.children or self._compound_done(task):
                self._finish(task, failed=any(c.failed for c in task.children), notify=False)
            return task
        task = _Task(node, parent=parent)
        if node.kind in ("activity", "sub"):
            self._schedule_attempt(task)
        elif node.kind == "timer":
            task.timer_id = self._take()
            self.by_id[task.timer_id] = task
            self._record(Scheduled(task.timer_id, "timer", fire_at=node.fire_at, canceled=node.canceled))
        elif node.kind == "event":
            if self.buffered.get(node.name, 0) > 0:
                self.buffered[node.name] -= 1
                task.done = True
            else:
                self.waiting.setdefault(node.name, []).append(task)
        elif node.kind == "continue_as_new":
            self._take()  # the SDK counts it as a fire-and-forget task
            self.continue_as_new = node
            task.done = True
        else:
            self.unsupported.append(node.name)
        return task

    def _report_reuse(self, node: Compound) -> None:
        api = f"task_{node.kind}"
        decides = "completes first (or already has)" if node.kind == "any" else "fails"
        self.reuses.append(
            f"{api} re-uses {', '.join(node.reused)}, which an earlier yield already scheduled, beside new tasks "
            f"({', '.join(_what(child) for child in node.children)}): the SDK leaves a scheduled task out of the "
            f"{api} it sends (azure-functions-durable-python#446) and Azure's host awaits only the new ones, so when "
            f"the re-used task {decides} the orchestrator goes on but the host stalls"
        )

    # -- completion --------------------------------------------------------------------------
    @staticmethod
    def _compound_done(task: _Task) -> bool:
        assert task.compound is not None
        if task.compound.kind == "any":
            return any(c.done for c in task.children)
        return all(c.done for c in task.children) or any(c.failed for c in task.children)

    def _finish(self, task: _Task, failed: bool, notify: bool = True) -> None:
        if task.done:
            return
        task.done, task.failed = True, failed
        parent = task.parent
        if notify and parent is not None and not parent.done and self._compound_done(parent):
            self._finish(parent, failed=parent.compound is not None and parent.compound.kind == "all" and failed)

    def complete(self, event: Event) -> None:
        kind = EventType(event["EventType"])
        if kind == EventType.EVENT_RAISED:
            name = str(event.get("Name"))
            waiters = self.waiting.get(name)
            if waiters:
                self._finish(waiters.pop(), failed=False)  # the SDK hands an event to the newest waiter
            else:
                self.buffered[name] = self.buffered.get(name, 0) + 1
            return
        task_id = int(event["TimerId"] if kind == EventType.TIMER_FIRED else event["TaskScheduledId"])
        task = self.by_id.get(task_id)
        if task is None or task.done or task.leaf is None:
            return  # a late completion (e.g. the loser of task_any); the SDK ignores it too
        leaf = task.leaf
        if kind == EventType.TIMER_FIRED:
            if leaf.kind == "timer":
                self._finish(task, failed=False)
            elif task.timer_id == task_id:  # a retry timer: try again, or give up after the last attempt
                assert leaf.retry is not None
                if task.attempts >= leaf.retry.max_attempts:
                    self._finish(task, failed=True)
                else:
                    self._schedule_attempt(task)
            return
        success = kind in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_COMPLETED)
        if success or leaf.retry is None:
            self._finish(task, failed=not success)
            return
        # A failed attempt with retry: the SDK waits on a timer, even after the last attempt.
        task.timer_id = self._take()
        self.by_id[task.timer_id] = task
        assert self.now is not None
        fire_at = self.now + leaf.retry.first_interval
        self._record(Scheduled(task.timer_id, "timer", fire_at=fire_at, retry_timer=True))


_COMPLETIONS = {
    EventType.TASK_COMPLETED,
    EventType.TASK_FAILED,
    EventType.SUB_ORCHESTRATION_COMPLETED,
    EventType.SUB_ORCHESTRATION_FAILED,
    EventType.TIMER_FIRED,
    EventType.EVENT_RAISED,
}


def replay(instance_id: str, history: list[Event], actions: list[Node]) -> ReplayResult:
    """Number ``actions`` against ``history`` (the events the orchestrator just saw, new ones included)."""
    sim = _Replay(instance_id, history)
    position = 0
    current: _Task | None = None

    def pump() -> None:
        nonlocal position, current
        while (current is None or current.done) and position < len(actions):
            current = sim.schedule(actions[position], None)
            position += 1

    for item in history:
        kind = item["EventType"]
        if kind == EventType.ORCHESTRATOR_STARTED:
            sim.now = parse_time(str(item["Timestamp"]))
        elif kind == EventType.EXECUTION_STARTED:
            pump()
        elif kind in _COMPLETIONS:
            sim.complete(item)
            pump()
    # The SDK yielded more than we could follow (e.g. it re-awaited an older task): keep its order.
    while position < len(actions):
        sim.schedule(actions[position], None)
        position += 1
    for task_id, seen in sim.recorded.items():
        if task_id not in sim.scheduled:
            sim.problems.append(
                f"Non-deterministic orchestrator: the recorded history has task {task_id} "
                f"('{seen.get('Name') or 'timer'}') but the replayed code never schedules it"
            )
    unique_problems = list(dict.fromkeys(sim.problems))
    return ReplayResult(
        scheduled=[sim.scheduled[k] for k in sorted(sim.scheduled)],
        problems=unique_problems,
        reuses=list(dict.fromkeys(sim.reuses)),
        unsupported=sim.unsupported,
        unconsumed_events={k: v for k, v in sim.buffered.items() if v > 0},
        continue_as_new=sim.continue_as_new,
    )
