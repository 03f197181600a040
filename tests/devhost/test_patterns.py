"""Durable orchestration patterns end to end: real HTTP on loopback, the SDK's own client, SQLite histories."""

from __future__ import annotations

import pytest

from tests.devhost.conftest import Harness, event_types

TASK_FAILED, TIMER_CREATED, TIMER_FIRED = 6, 10, 11


def test_chaining_through_http_starter_and_status_url(patterns: Harness) -> None:
    response = patterns.http.post("/api/orchestrators/chaining", params={"code": patterns.key})
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert body["statusQueryGetUri"].startswith(patterns.host.base_url + "/runtime/webhooks/durabletask/instances/")

    status = patterns.wait(body["id"])
    assert status.runtime_status.value == "Completed"
    assert status.output == ["Hello Tokyo", "Hello Seattle", "Hello London"]
    assert status.custom_status == {"step": 3}
    # The public status URL works too, with the key it carries.
    public = patterns.http.get(body["statusQueryGetUri"])
    assert public.status_code == 200
    assert public.json()["output"] == status.output


def test_fan_out_fan_in_of_200_activities(patterns: Harness) -> None:
    instance = patterns.start("fan_out", 200)
    status = patterns.wait(instance)
    assert status.output == {"sum": 2 * sum(range(200)), "square": 49, "n": 201}
    scheduled = [e for e in patterns.history(instance) if e["EventType"] == 4]
    assert sorted(e["EventId"] for e in scheduled) == list(range(201))


def test_monitor_with_timers_over_48_simulated_hours(patterns: Harness) -> None:
    job = {"id": "monitor-48h", "hours": 72, "interval_minutes": 60, "polls_needed": 49}
    instance = patterns.start("monitor", job)
    before = patterns.host.clock.now()
    status = patterns.wait(instance, timeout=60, advance=3600)
    assert status.output["state"] == "done"
    assert status.output["polls"] == 49
    # 48 timers of one hour each fired on the virtual clock.
    assert patterns.host.clock.now() - before >= __import__("datetime").timedelta(hours=48)
    fired = [e for e in patterns.history(instance) if e["EventType"] == TIMER_FIRED]
    assert len(fired) == 48


def test_human_interaction_approved_by_external_event(patterns: Harness) -> None:
    instance = patterns.start("approval")
    patterns.idle()
    assert patterns.status(instance).runtime_status.value == "Running"
    patterns.call(patterns.sdk().raise_event(instance, "Approval", {"user": "ada"}))
    status = patterns.wait(instance)
    assert status.output == {"result": "approved", "by": {"user": "ada"}}


def test_human_interaction_times_out(patterns: Harness) -> None:
    instance = patterns.start("approval")
    patterns.idle()
    patterns.advance(23 * 3600)
    assert patterns.status(instance).runtime_status.value == "Running"
    patterns.advance(3600)
    assert patterns.wait(instance).output == {"result": "timed out"}
    # An event after completion is refused with 410, which the SDK surfaces.
    with pytest.raises(Exception, match="is gone"):
        patterns.call(patterns.sdk().raise_event(instance, "Approval", "late"))


def test_sub_orchestration_failure_is_an_exception_the_parent_catches(patterns: Harness) -> None:
    instance = patterns.start("parent")
    status = patterns.wait(instance)
    assert status.runtime_status.value == "Completed"
    assert status.output["ok"] == {"child": f"{instance}:0", "parent": instance, "doubled": 42}
    caught = status.output["caught"]
    assert "Orchestrator function 'child_fails' failed" in caught
    assert "cannot process bad batch" in caught


def test_retry_succeeds_on_third_attempt(patterns: Harness) -> None:
    instance = patterns.start("retrying", "succeeds")
    status = patterns.wait(instance, advance=1)
    assert status.output == {"result": "succeeds ok on attempt 3", "after": "Hello after retry"}
    history = patterns.history(instance)
    assert event_types(history).count(TASK_FAILED) == 2
    # Each failed attempt is followed by a retry timer, numbered as the SDK numbers them.
    assert [e["EventId"] for e in history if e["EventType"] == TIMER_CREATED] == [1, 3]
    assert [e["EventId"] for e in history if e["EventType"] == 4] == [0, 2, 4, 5]


def test_retry_that_exhausts_its_attempts_fails_after_the_trailing_timer(patterns: Harness) -> None:
    instance = patterns.start("retrying", "always-fails")
    status = patterns.wait(instance, advance=1)
    assert "attempt 3 of always-fails failed" in status.output["error"]
    assert "Activity function 'flaky' failed: ValueError" in status.output["error"]
    history = patterns.history(instance)
    assert event_types(history).count(TASK_FAILED) == 3
    assert event_types(history).count(TIMER_FIRED) == 3  # including the trailing one after the last attempt
    assert patterns.app.ATTEMPTS["always-fails"] == 3


def test_sub_orchestration_with_retry(patterns: Harness) -> None:
    instance = patterns.start("sub_retrying")
    status = patterns.wait(instance, advance=1)
    assert "cannot process sub retry" in status.output["error"]
    created = [e for e in patterns.history(instance) if e["EventType"] == 7]
    assert len(created) == 2
    assert created[0]["InstanceId"] != created[1]["InstanceId"]


def test_continue_as_new_carries_state_across_50_generations(patterns: Harness) -> None:
    instance = patterns.start("counter", {"generation": 0, "total": 1, "limit": 50})
    status = patterns.wait(instance, timeout=60)
    assert status.runtime_status.value == "Completed"
    expected = {"generation": 0, "total": 1, "limit": 50}
    for _ in range(50):
        expected = {
            **expected,
            "generation": expected["generation"] + 1,
            "total": expected["total"] + 2 * (expected["total"] % 7),
        }
    assert status.output == expected
    # Only the last generation's history is kept.
    assert event_types(patterns.history(instance)).count(0) == 1
    assert len(patterns.history(instance)) < 20


def test_terminate_then_purge(patterns: Harness) -> None:
    instance = patterns.start("waits_forever")
    patterns.idle()
    sdk = patterns.sdk()
    patterns.call(sdk.terminate(instance, "operator said stop"))
    status = patterns.wait(instance)
    assert status.runtime_status.value == "Terminated"
    assert status.output == "operator said stop"
    result = patterns.call(sdk.purge_instance_history(instance))
    assert result.instances_deleted == 1
    assert not patterns.status(instance)  # 404: gone
    assert patterns.call(sdk.purge_instance_history(instance)).instances_deleted == 0


def test_suspend_holds_events_until_resume(patterns: Harness) -> None:
    instance = patterns.start("waits_forever")
    patterns.idle()
    sdk = patterns.sdk()
    patterns.call(sdk.suspend(instance, "maintenance"))
    patterns.idle()
    assert patterns.status(instance).runtime_status.value == "Suspended"
    patterns.call(sdk.raise_event(instance, "never", 7))
    patterns.idle()
    assert patterns.status(instance).runtime_status.value == "Suspended"
    patterns.call(sdk.resume(instance, "done"))
    assert patterns.wait(instance).output == 7


def test_running_instance_id_is_refused_and_a_finished_one_restarts(patterns: Harness) -> None:
    patterns.start("waits_forever", instance_id="singleton")
    patterns.idle()
    with pytest.raises(Exception, match="already exists"):
        patterns.start("waits_forever", instance_id="singleton")
    patterns.call(patterns.sdk().terminate("singleton", "make room"))
    patterns.wait("singleton")
    patterns.start("chaining", instance_id="singleton")
    assert patterns.wait("singleton").output[0] == "Hello Tokyo"


def test_status_lists_and_filters(patterns: Harness) -> None:
    a = patterns.start("chaining", instance_id="list-a")
    patterns.wait(a)
    statuses = patterns.call(patterns.sdk().get_status_all())
    assert "list-a" in {s.instance_id for s in statuses}
    import azure.durable_functions as df

    completed = patterns.call(patterns.sdk().get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Completed]))
    assert completed
    assert all(s.runtime_status.value == "Completed" for s in completed)
    with_history = patterns.status(a, history=True)
    kinds = [e["EventType"] for e in with_history.historyEvents]
    assert kinds[:2] == ["OrchestratorStarted", "ExecutionStarted"]
    assert kinds[-1] == "ExecutionCompleted"


def test_non_deterministic_orchestrator_fails_with_a_clear_message(patterns: Harness) -> None:
    patterns.app.REPLAYS[0] = 0
    instance = patterns.start("nondeterministic")
    status = patterns.wait(instance)
    assert status.runtime_status.value == "Failed"
    assert "Non-deterministic orchestrator" in status.output
    assert "'activity say_hello'" in status.output
    assert "'activity double'" in status.output


def test_unknown_activity_and_orchestrator_fail_fast(patterns: Harness) -> None:
    instance = patterns.start("calls_missing")
    status = patterns.wait(instance, timeout=10)
    assert status.runtime_status.value == "Failed"
    assert "no_such_orchestrator" in status.output
    assert "doesn't exist" in status.output
    with pytest.raises(Exception, match="doesn't exist"):
        patterns.start("no_such_orchestrator")


def test_unknown_instance_is_404_for_every_operation(patterns: Harness) -> None:
    sdk = patterns.sdk()
    assert not patterns.status("nobody")
    with pytest.raises(Exception, match="No instance"):
        patterns.call(sdk.raise_event("nobody", "x", 1))
    response = patterns.http.post(
        "/runtime/webhooks/durabletask/instances/nobody/terminate", params={"code": patterns.key}
    )
    assert response.status_code == 404
    assert patterns.http.get("/runtime/webhooks/durabletask/instances/nobody").status_code == 401  # no key


def test_parallel_retries_are_numbered_as_the_sdk_numbers_them(patterns: Harness) -> None:
    instance = patterns.start("parallel_retries", "pr")
    status = patterns.wait(instance, advance=1)
    assert status.runtime_status.value == "Completed", status.output
    assert status.output == ["pr-left ok on attempt 3", "pr-right ok on attempt 3", "Hello middle", "Hello after"]
    ids = [e["EventId"] for e in patterns.history(instance) if e["EventType"] in (4, 10)]
    assert sorted(ids) == list(range(len(ids)))  # every id used once, none skipped
