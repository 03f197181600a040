"""One check the Durable SDK lacks, installed by the engine: a task_any / task_all that re-uses a scheduled task.

When a task_any or task_all is given a task that an earlier yield already scheduled, the SDK leaves
that task out of the action it sends to the host, so the host does not schedule it twice
(``CompoundTask.__init__`` in ``azure/durable_functions/models/Task.py``: a child's action is added
only ``if not task._is_scheduled``; azure-functions-durable-python#446). The host's out-of-process
shim replays the actions in order and awaits each one (``OutOfProcOrchestrationShim.
ProcessAsyncActionsV2`` in azure-functions-durable-extension: ``await durableTask``, a WhenAny being
``Task.WhenAny(action.CompoundActions…)``), so in Azure a composite that mixes such a task with new
ones waits for the new ones only. When the re-used task decides it (it completes first, or had
already completed, for task_any; it fails, for task_all) the SDK's composite completes and the
orchestrator goes on, while the host still awaits the new tasks and schedules nothing it asks for
next: the orchestration stalls, for good if a new task is an event that never comes. A composite of
new tasks only, or of already-scheduled tasks only (sent as no action at all: #446's "reducing
task_any", e.g. waiting on a task_any's loser again), is safe; so is a task_all that re-uses a task
that has already succeeded.

devhost wraps ``task_any`` and ``task_all``: when a composite mixes the two, the action it sends
also lists the tasks it leaves out (under :data:`~devhost.durable.replay.REUSED_KEY`), and the
replay (:mod:`devhost.durable.replay`) fails the instance with what to change. Nothing else in the
SDK is touched, and the Functions host never sees the extra key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from azure.durable_functions.models.actions.Action import Action
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.models.Task import RetryAbleTask, TaskState, WhenAllTask

from devhost.durable.replay import REUSED_KEY

_INSTALLED = "_devhost_reuse_check"


class _ReusingComposite(Action):  # type: ignore[misc]  # the SDK ships no type information
    """The SDK's WhenAny / WhenAll action, plus the already-scheduled tasks it leaves out."""

    def __init__(self, action: Any, reused: list[dict[str, Any]]) -> None:
        self.action = action
        self.reused = reused

    @property
    def action_type(self) -> int:
        return int(self.action.action_type)

    def to_json(self) -> dict[str, Any]:
        return {**self.action.to_json(), REUSED_KEY: self.reused}


def _left_out(task: Any) -> dict[str, Any]:
    """A re-used task as the replay reports it: its task id (None for events and composites) and its action."""
    first = task.children[0] if isinstance(task, RetryAbleTask) else task  # a *_with_retry call: its first attempt
    task_id = first.id if isinstance(first.id, int) and first.id >= 0 else None
    action = task.action_repr
    return {"taskId": task_id, "action": action.to_json() if isinstance(action, Action) else {}}


def mark_reuse(task: Any) -> None:
    """If the composite ``task`` mixes already-scheduled and new children, make its action say so.

    A task_all may re-use a task that has already succeeded: it can no longer fail, so the host's WhenAll of
    the new tasks and the SDK's decide alike."""
    done = TaskState.SUCCEEDED if isinstance(task, WhenAllTask) else None
    scheduled = [child for child in task.children if child._is_scheduled]
    reused = [child for child in scheduled if child.state is not done]
    if reused and len(scheduled) < len(task.children) and isinstance(task.action_repr, Action):
        task.action_repr = _ReusingComposite(task.action_repr, [_left_out(child) for child in reused])


def _checked(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def composite(context: Any, activities: Any) -> Any:
        task = original(context, activities)
        mark_reuse(task)
        return task

    return composite


def install() -> None:
    if getattr(DurableOrchestrationContext, _INSTALLED, False):
        return
    for name in ("task_any", "task_all"):
        setattr(DurableOrchestrationContext, name, _checked(getattr(DurableOrchestrationContext, name)))
    setattr(DurableOrchestrationContext, _INSTALLED, True)
