"""How long ``ml_job`` lets a job wait for compute and how long it lets it run, driven generation by generation
the way the Durable SDK drives it (each yielded task answered; ``continue_as_new`` starts the next generation).

``training.timeout_minutes`` counts time running, as Azure ML's own ``limits.timeout`` does: before, a job that
waited hours for GPU nodes ended ``timed_out`` having hardly run. Time queued has its own limit,
``training.queue_timeout_minutes``, per attempt. A request recorded before that field existed keeps its old
deadline, so an instance in flight replays as it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions import clients, orchestrators
from perennial_cli.synthetic import fraud_batch
from shared.registry import Run
from shared.storage import LANDING
from shared.workflow import MAX_PREEMPTIONS, BlobItem
from tests.unit.test_rollout_orchestration import DrivenContext

START = datetime(2030, 1, 1, tzinfo=UTC)
JOB = {"model": "fraud", "run_id": "fraud-00000000000000f1", "base_name": "fraud-00000000000000f1-c0", "kind": "train"}

#: The platform's answer at a moment: (phase, Azure ML status) by minutes since the first submission.
Timeline = Callable[[float, int], tuple[str, str]]


class Generation(DrivenContext):
    def __init__(self, given: dict[str, Any], now: datetime) -> None:
        super().__init__(given)
        self.current_utc_datetime = now
        self.next_input: dict[str, Any] | None = None

    def continue_as_new(self, given: Any) -> None:
        super().continue_as_new(given)
        self.next_input = given


def _run_job(given: dict[str, Any], timeline: Timeline) -> tuple[dict[str, Any], list[str], float]:
    """Drive ``ml_job`` to its result: (result, the activities it called, minutes from start to the result)."""
    now, activities = START, []
    for _ in range(500):
        context = Generation(given, now)
        function = orchestrators.ml_job._function.get_user_function().orchestrator_function
        generator: Generator[Any, Any, Any] = function(context)
        result = None
        try:
            task = next(generator)
            while True:
                if isinstance(task, tuple) and task[:2] == ("activity", "job_status"):
                    minutes = (context.current_utc_datetime - START).total_seconds() / 60
                    phase, status = timeline(minutes, task[2]["attempt"])
                    answer: Any = {"name": task[2]["base_name"], "phase": phase, "status": status}
                else:
                    answer = None
                task = generator.send(answer)
        except StopIteration as done:
            result = done.value
        activities += [name for kind, name, _ in context.calls if kind == "activity"]
        now = context.current_utc_datetime
        if result is not None:
            return result, activities, (now - START).total_seconds() / 60
        assert context.next_input is not None, "a generation ended without a result or continue_as_new"
        given = context.next_input
    raise AssertionError("the job never ended")


def _phases(*spans: tuple[float, str]) -> Callable[[float], tuple[str, str]]:
    """Statuses by time: each (until_minute, status) holds up to that minute; the last holds for ever."""
    phases = {"Queued": "queued", "Running": "running", "Completed": "completed"}

    def at(minutes: float) -> tuple[str, str]:
        for until, status in spans:
            if minutes < until:
                return phases[status], status
        status = spans[-1][1]
        return phases[status], status

    return at


def test_hours_queued_for_compute_do_not_count_against_the_training_time() -> None:
    """Ten hours waiting for GPU nodes, then three hours of training within a 4-hour limit: completed."""
    timeline = _phases((600, "Queued"), (780, "Running"), (10_000, "Completed"))
    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, _ = _run_job(given, lambda minutes, attempt: timeline(minutes))
    assert result["outcome"] == "completed", result
    assert "cancel_job" not in activities


def test_a_job_that_never_gets_compute_is_canceled_at_the_queue_limit() -> None:
    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, lambda minutes, attempt: ("queued", "Queued"))
    assert result["outcome"] == "timed_out"
    assert "waited 720 minutes for compute without starting" in result["error"]
    assert "training.queue_timeout_minutes" in result["error"]
    assert activities[-1] == "cancel_job"
    assert ended_at == 720  # the timer is cut at the deadline, not left to the next 5-minute poll


def test_a_job_that_runs_too_long_is_canceled_after_its_running_time() -> None:
    """Queued two hours, then running for ever: canceled 240 minutes after a poll first saw it running."""
    timeline = _phases((120, "Queued"), (10_000, "Running"))
    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, lambda minutes, attempt: timeline(minutes))
    assert result["outcome"] == "timed_out"
    assert "ran 240 minutes without finishing" in result["error"]
    assert activities[-1] == "cancel_job"
    # Seen running at the first poll at or after minute 120 (polls are at most 5 minutes apart).
    assert 120 + 240 <= ended_at <= 125 + 240


def test_a_preempted_job_keeps_the_time_it_ran_and_waits_for_compute_again() -> None:
    """Attempt 0 runs 200 minutes and is preempted; attempt 1 queues 5 hours, then runs: it has 40 minutes left."""

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        if attempt == 0:
            return ("running", "Running") if minutes < 200 else ("preempted", "Failed")
        return ("queued", "Queued") if minutes < 200 + 300 else ("running", "Running")

    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, timeline)
    assert result["outcome"] == "timed_out", result
    assert result["attempts"] == 2
    assert "ran 240 minutes" in result["error"]
    assert activities.count("submit_job") == 2
    # Preemption seen at most a poll after minute 200; attempt 1 seen running at most a poll after minute 500.
    ran_before = 200 + 5
    assert 500 + (240 - ran_before) <= ended_at <= 505 + 40


def test_a_job_requested_before_the_queue_limit_existed_keeps_one_deadline_from_submission() -> None:
    """Replay safety: an ml_job in flight across this change has no queue_timeout_minutes in its input, and must
    make the calls its history holds: queued time still counts, as it did when that history was written."""
    timeline = _phases((600, "Queued"), (780, "Running"), (10_000, "Completed"))
    given = {**JOB, "timeout_minutes": 240}
    result, activities, ended_at = _run_job(given, lambda minutes, attempt: timeline(minutes))
    assert result["outcome"] == "timed_out"
    assert result["error"].endswith("did not finish within 240 minutes; canceled")
    assert activities[-1] == "cancel_job"
    assert ended_at == 240


def test_a_job_preempted_at_every_start_up_ends_failed_after_its_last_resume() -> None:
    """Each attempt queues 30 minutes, then is preempted before any poll saw it running, so it adds no running
    minutes and every resume waits on a fresh queue clock: before, it was resubmitted for ever, holding the model's
    coordinator. Each such preemption uses one of the MAX_PREEMPTIONS resumes; the one after ends the job."""
    submitted: dict[int, float] = {}

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        since = minutes - submitted.setdefault(attempt, minutes)
        return ("queued", "Queued") if since < 30 else ("preempted", "Failed")

    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, timeline)
    assert result["outcome"] == "failed", result
    assert result["attempts"] == MAX_PREEMPTIONS + 1
    assert f"preempted {MAX_PREEMPTIONS + 1} times" in result["error"]
    assert "dedicated (not low-priority) nodes" in result["error"]
    assert activities.count("submit_job") == MAX_PREEMPTIONS + 1
    assert "cancel_job" not in activities  # every attempt had ended
    # Each attempt: 30 minutes queued, preemption seen at most a poll (5 minutes) later.
    assert (MAX_PREEMPTIONS + 1) * 30 <= ended_at <= (MAX_PREEMPTIONS + 1) * 35


@pytest.mark.parametrize("phase", ["preempted", "failed"])
def test_a_job_that_has_run_its_time_is_not_resubmitted(phase: str) -> None:
    """Seen running at once, then preempted (or failed, retryable) at the poll that falls on its running deadline:
    it has no running minutes left, so it ends timed_out there instead of waiting for compute again (up to 720
    minutes) only to be cancelled at its first running poll."""

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        if attempt > 0:
            return ("queued", "Queued") if minutes < 600 else ("running", "Running")
        return ("running", "Running") if minutes < 240 else (phase, "Failed")

    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, timeline)
    assert result["outcome"] == "timed_out", result
    assert result["attempts"] == 1
    assert "had run 240 of its 240 minutes; not resubmitted (training.timeout_minutes" in result["error"]
    assert f"{phase} (Failed)" in result["error"]
    assert activities.count("submit_job") == 1
    assert "cancel_job" not in activities
    assert ended_at == 240


def test_a_job_out_of_running_minutes_from_earlier_attempts_is_not_resubmitted() -> None:
    """Attempt 0 runs 200 minutes (and up to a poll more) and is preempted; attempt 1 runs what is left, up to
    minute 240, and fails at the poll that falls on its deadline: not retried, although max_retries would allow
    it (before, attempt 2 was submitted and cancelled at its first poll)."""

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        if attempt == 0:
            return ("running", "Running") if minutes < 200 else ("preempted", "Failed")
        if attempt == 1:
            return ("running", "Running") if minutes < 240 else ("failed", "Failed")
        return ("running", "Running")

    given = {**JOB, "timeout_minutes": 240, "queue_timeout_minutes": 720}
    result, activities, ended_at = _run_job(given, timeline)
    assert result["outcome"] == "timed_out", result
    assert result["attempts"] == 2
    assert "not resubmitted (training.timeout_minutes" in result["error"]
    assert activities.count("submit_job") == 2
    assert "cancel_job" not in activities
    assert ended_at == 240


def test_a_job_that_waits_and_is_evicted_at_every_attempt_ends_within_its_bound() -> None:
    """The worst case: every attempt waits almost its whole queue limit, runs ten minutes and is lost (the first
    max_retries to retryable failures, then to preemptions). The job still ends, after 1 + max_retries +
    MAX_PREEMPTIONS attempts, within (1 + max_retries + MAX_PREEMPTIONS) * queue_timeout + timeout minutes."""
    submitted: dict[int, float] = {}
    max_retries, queue, timeout = 2, 720, 240

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        since = minutes - submitted.setdefault(attempt, minutes)
        if since < queue - 10:
            return ("queued", "Queued")
        if since < queue:
            return ("running", "Running")
        return ("failed" if attempt < max_retries else "preempted", "Failed")

    given = {**JOB, "timeout_minutes": timeout, "queue_timeout_minutes": queue, "max_retries": max_retries}
    result, activities, ended_at = _run_job(given, timeline)
    attempts = 1 + max_retries + MAX_PREEMPTIONS
    assert result["outcome"] == "failed", result
    assert result["attempts"] == attempts
    assert activities.count("submit_job") == attempts
    assert ended_at <= attempts * queue + timeout


def test_a_job_requested_before_the_queue_limit_existed_is_resumed_as_before() -> None:
    """Replay safety: an ml_job in flight without queue_timeout_minutes is resumed after every preemption, as its
    history was written (no cap): its one deadline, started_at + timeout_minutes, bounds all its attempts."""
    submitted: dict[int, float] = {}

    def timeline(minutes: float, attempt: int) -> tuple[str, str]:
        since = minutes - submitted.setdefault(attempt, minutes)
        return ("queued", "Queued") if since < 30 else ("preempted", "Failed")

    given = {**JOB, "timeout_minutes": 600}
    result, activities, ended_at = _run_job(given, timeline)
    assert result["outcome"] == "timed_out", result
    assert result["error"].endswith("did not finish within 600 minutes; canceled")
    assert result["attempts"] > MAX_PREEMPTIONS + 1
    assert activities[-1] == "cancel_job"
    assert ended_at == 600


@pytest.mark.azurite
def test_the_spec_limits_are_the_ones_the_jobs_get(activity: Any) -> None:
    """prepare_training answers both limits from the spec (fraud: 120 minutes running, the 720-minute default
    wait), and continuous_training hands them to every ml_job it starts."""
    run_id = "fraud-00000000000000d1"
    clients.registry().create_run(Run("fraud", run_id, "manual", "t", run_id, status="running", stage="validating"))
    store = clients.store()
    store.container(LANDING).upload_blob(f"fraud/{run_id}.csv", fraud_batch(1200, seed=5).to_csv(index=False).encode())
    ref = store.ref(LANDING, f"fraud/{run_id}.csv")
    blob = BlobItem(url=ref.url, container=ref.container, name=ref.name, etag=ref.etag, size=ref.size)
    outcome = activity("validate_blob", {"model": "fraud", "run_id": run_id, "blob": blob.dump()})
    prepared = activity("prepare_training", {"model": "fraud", "run_id": run_id, "blobs": [outcome["blob"]]})
    assert (prepared["timeout_minutes"], prepared["queue_timeout_minutes"]) == (120, 720)
