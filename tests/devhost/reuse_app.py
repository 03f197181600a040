"""A tiny Durable app for the engine's task-reuse check (test fixture, not Perennial).

The ``reuses_*`` orchestrators hand task_any / task_all a task that an earlier yield already
scheduled, beside a new one: the SDK sends only the new one to the host, so in Azure they can
stall. ``legal`` uses the patterns that are safe.
"""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.activity_trigger(input_name="name")
def say(name: str) -> str:
    return f"Hello {name}"


@app.orchestration_trigger(context_name="context")
def reuses_yielded_activity(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    hello = context.call_activity("say", "once")
    yield hello
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    winner = yield context.task_any([hello, timer])  # unsafe: hello was yielded (and finished) before
    return "hello" if winner == hello else "timer"


@app.orchestration_trigger(context_name="context")
def reuses_pending_loser(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    # The coordinator's old loop: a task that lost one task_any raced again against a new task.
    go = context.wait_for_external_event("go")
    yield context.task_any([go, context.call_activity("say", "quick")])
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    winner = yield context.task_any([go, timer])  # unsafe: go is still pending from the first task_any
    return "go" if winner == go else "timer"


@app.orchestration_trigger(context_name="context")
def reuses_in_task_all(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    # A task still pending (it lost a task_any) in a task_all beside a new one: if it fails, the SDK's
    # task_all fails while the host waits for the new one only.
    go = context.wait_for_external_event("go")
    yield context.task_any([go, context.call_activity("say", "quick")])
    return (yield context.task_all([go, context.call_activity("say", "second")]))  # unsafe


@app.orchestration_trigger(context_name="context")
def legal(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    # task_any over fresh tasks; the timer that lost is cancelled.
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    fresh = context.call_activity("say", "fresh")
    winner = yield context.task_any([fresh, timer])
    if winner == fresh:
        timer.cancel()
    # The loser of a task_any left pending for good: an event that never comes.
    never = context.wait_for_external_event("never")
    yield context.task_any([never, context.call_activity("say", "quick")])
    # Tasks scheduled together, then awaited again on their own: only already-scheduled tasks
    # (the SDK's "reducing task_any", azure-functions-durable-python#446), so nothing new is sent.
    left, right = context.call_activity("say", "left"), context.call_activity("say", "right")
    first = yield context.task_any([left, right])
    second = yield context.task_any([right if first == left else left])
    both = yield context.task_all([context.call_activity("say", "x"), context.call_activity("say", "y")])
    # A task_all may re-use a task that has already succeeded: it cannot fail any more.
    done = context.call_activity("say", "done")
    yield done
    again = yield context.task_all([done, context.call_activity("say", "z")])
    return {"fresh": fresh.result, "pair": sorted([first.result, second.result]), "both": both, "again": again}
