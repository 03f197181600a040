"""The rollout orchestrators' control flow around aborts and finishing steps, driven the way the Durable SDK
drives a generator: each yielded task is answered by sending its result back.

- an abort requested before a rollout took traffic stops it there, not after a full bake at 10 %
  (rollout_prepare and deployment_provisioned honour it; tests/unit/test_activity_outcomes.py);
- the steps that record an outcome once it is decided are retried (MUST_FINISH), so a blip after the last
  gate passed cannot throw the new champion away; so is the coordinator's claim.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions import orchestrators
from functions.orchestrators import MUST_FINISH

RUN_ID = "fraud-00000000000000f1"
PLAN = {
    "endpoint": "fraud-ep",
    "champion": "fraud-v1",
    "challenger": "fraud-v2",
    "steps": [10, 50, 100],
    "bake_minutes": 30,
    "shadow": False,
    "shadow_bake_minutes": 15,
    "rollback_step_minutes": 2,
}


class DrivenContext:
    """The context calls an orchestrator makes, recorded in order as (kind, name, retried)."""

    current_utc_datetime = datetime(2030, 1, 1, tzinfo=UTC)

    def __init__(self, given: dict[str, Any]) -> None:
        self.given = given
        self.calls: list[tuple[str, str, bool]] = []
        self.sub_inputs: list[tuple[str, Any]] = []  # each sub-orchestration started, with its input

    def get_input(self) -> dict[str, Any]:
        return self.given

    def set_custom_status(self, status: Any) -> None:
        pass

    def call_activity(self, name: str, payload: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        self.calls.append(("activity", name, False))
        return ("activity", name, payload)

    def call_activity_with_retry(self, name: str, retry: Any, payload: dict[str, Any]) -> tuple[str, str, Any]:
        self.calls.append(("activity", name, retry is MUST_FINISH))
        return ("activity", name, payload)

    def call_sub_orchestrator(self, name: str, payload: Any, instance_id: str | None = None) -> tuple[str, str]:
        self.calls.append(("sub", name, False))
        self.sub_inputs.append((name, payload))
        return ("sub", name)

    # A timer fires when it is due (the clock moves there); a bake's abort event never comes.
    def create_timer(self, when: datetime) -> BakeTimer:
        self.current_utc_datetime = max(self.current_utc_datetime, when)
        self.calls.append(("timer", "", False))
        return BakeTimer()

    def wait_for_external_event(self, name: str) -> tuple[str, str]:
        return ("event", name)

    def continue_as_new(self, given: Any) -> None:
        self.calls.append(("continue_as_new", "", False))

    def task_any(self, tasks: list[Any]) -> BakeTimer:
        return next(t for t in tasks if isinstance(t, BakeTimer))

    def task_all(self, tasks: list[Any]) -> tuple[str, list[Any]]:
        return ("all", tasks)


class BakeTimer:
    def cancel(self) -> None:
        pass


def _drive(
    orchestrator: Any,
    given: dict[str, Any],
    answer: Callable[[tuple[Any, ...]], Any],
    context: DrivenContext | None = None,
) -> tuple[Any, list[tuple[str, str, bool]]]:
    context = context or DrivenContext(given)
    context.given = given
    generator: Generator[Any, Any, Any] = orchestrator._function.get_user_function().orchestrator_function(context)
    try:
        task = next(generator)
        while True:
            task = generator.send(answer(task))
    except StopIteration as done:
        return done.value, context.calls


def test_a_version_rollout_replays_as_it_did_before_aborts_were_read_there() -> None:
    """Instances in flight recorded a sub-orchestration after record_stage whatever it said: a replay must make
    the same call (rollout_prepare honours the abort and deploys nothing)."""
    given = {
        "model": "fraud",
        "run_id": RUN_ID,
        "trigger": {"kind": "rollout", "reason": "r", "source_event_id": RUN_ID, "details": {"version": "2"}},
        "blobs": [],
    }

    def answer(task: Any) -> Any:
        return {"abort": True} if task[1] == "record_stage" else {"outcome": "rolled_back", "reasons": ["aborted"]}

    result, calls = _drive(orchestrators.version_rollout, given, answer)
    assert calls[:2] == [("activity", "record_stage", False), ("sub", "staged_rollout", False)]
    assert result["status"] == "rolled_back"


def test_the_coordinator_claims_with_retries() -> None:
    """claim_run writes the blob claims, then the run: without a retry, a blip between the two left the blobs
    claimed by a run that never existed, and they never trained."""
    trigger = {"kind": "manual", "reason": "r", "source_event_id": RUN_ID, "details": {}}
    given = {"model": "fraud", "first_work": {"kind": "retrain", "run_id": RUN_ID, "trigger": trigger}}
    answers = {"coordinator_settings": {"max_wait_seconds": 60, "quiet_seconds": 5}, "claim_run": None}
    _, calls = _drive(orchestrators.model_coordinator, given, lambda task: answers.get(task[1]))
    assert ("activity", "claim_run", True) in calls
    assert calls[-1] == ("continue_as_new", "", False)


@pytest.mark.parametrize(("retryable", "retried"), [(True, True), (False, False)])
def test_a_job_that_says_its_input_is_bad_is_not_retried(retryable: bool, retried: bool) -> None:
    """train.py exits 2 for bad arguments or data (and a diverged run): the same job would fail the same way, so
    it ends at once instead of using the spec's retries (each a paid compute job)."""
    job = {"model": "fraud", "run_id": RUN_ID, "base_name": "fraud-c0", "kind": "train", "max_retries": 2}
    failed = {"name": "fraud-c0-a0", "phase": "failed", "status": "Failed", "error": "exit 2", "retryable": retryable}
    result, calls = _drive(orchestrators.ml_job, job, lambda task: failed if task[1] == "job_status" else None)
    assert (("continue_as_new", "", False) in calls) is retried
    if not retried:
        assert result["outcome"] == "failed"
        assert result["attempts"] == 1
        assert "not retried: the job exited 2 (bad arguments or data)" in result["error"]


def test_an_abort_during_the_deployment_removes_the_challenger_before_it_takes_traffic() -> None:
    reason = "aborted on request by dana: fraud-v2 was removed before it took traffic"
    answers = {"rollout_prepare": PLAN, "rollout_smoke": {"ok": True, "reason": "HTTP 200", "abort": reason}}
    result, calls = _drive(orchestrators.staged_rollout, {"model": "fraud", "run_id": RUN_ID, "version": "2"},
                           lambda task: answers.get(task[1], {}))  # fmt: skip
    assert [name for _, name, _ in calls] == ["rollout_prepare", "rollout_smoke", "rollout_finish"]
    assert calls[-1] == ("activity", "rollout_finish", True)
    assert result == {"outcome": "rolled_back", "reasons": [reason]}


def test_the_last_gate_passing_is_recorded_with_retries() -> None:
    complete = {"kind": "complete", "reasons": ["every gate passed"], "traffic_plan": [], "mirror": None}
    answers = {
        "rollout_prepare": PLAN,
        "rollout_smoke": {"ok": True, "reason": "HTTP 200"},
        "rollout_apply": {"live": {"fraud-v2": 100}, "mirror": {}, "applied_at": "2030-01-01T00:00:00+00:00"},
        "rollout_analyse": complete,
    }
    result, calls = _drive(orchestrators.staged_rollout, {"model": "fraud", "run_id": RUN_ID, "version": "2"},
                           lambda task: answers.get(task[1], {}) if isinstance(task, tuple) else task)  # fmt: skip
    assert result == {"outcome": "completed", "reasons": ["every gate passed"]}
    assert calls[-1] == ("activity", "rollout_finish", True)


def test_a_deployment_that_takes_minutes_to_provision_is_polled_on_durable_timers() -> None:
    """Azure provisions a deployment for many minutes: no activity waits for it (the host would stop it after
    its function timeout); the orchestrator polls, and smoke-tests once the deployment serves."""
    states = iter([{"provisioning": True}, {"provisioning": True}, {"provisioning": False, "state": "Succeeded"}])
    answers = {"rollout_prepare": {**PLAN, "provisioning": True}, "rollout_smoke": {"ok": False, "reason": "HTTP 500"}}

    def answer(task: Any) -> Any:
        if not isinstance(task, tuple):
            return task  # a timer
        return next(states) if task[1] == "deployment_provisioned" else answers.get(task[1], {})

    result, calls = _drive(orchestrators.staged_rollout, {"model": "fraud", "run_id": RUN_ID, "version": "2"}, answer)
    assert [(kind, name) for kind, name, _ in calls][:8] == [
        ("activity", "rollout_prepare"),
        ("timer", ""),
        ("activity", "deployment_provisioned"),
        ("timer", ""),
        ("activity", "deployment_provisioned"),
        ("timer", ""),
        ("activity", "deployment_provisioned"),
        ("activity", "rollout_smoke"),
    ]
    assert result["reasons"] == ["smoke test failed: HTTP 500"]


def test_a_deployment_still_provisioning_after_an_hour_is_rolled_back() -> None:
    answers = {"rollout_prepare": {**PLAN, "provisioning": True}, "deployment_provisioned": {"provisioning": True}}
    result, calls = _drive(orchestrators.staged_rollout, {"model": "fraud", "run_id": RUN_ID, "version": "2"},
                           lambda task: answers.get(task[1], {}) if isinstance(task, tuple) else task)  # fmt: skip
    assert result == {
        "outcome": "rolled_back",
        "reasons": [
            "deployment fraud-v2 was still provisioning after 60 minutes (check the instance type's quota and the "
            "deployment's events in the studio)"
        ],
    }
    polls = sum(1 for _, name, _ in calls if name == "deployment_provisioned")
    assert 10 <= polls <= 20, f"{polls} polls in an hour: backing off to 5 minutes keeps the history short"
    assert calls[-1] == ("activity", "rollout_finish", True), "the half-made deployment is removed"


def _training_run(
    decision: dict[str, Any], approval_required: bool, context: DrivenContext | None = None
) -> tuple[Any, list[tuple[str, str, bool]]]:
    """continuous_training from its first stage to its outcome, the activities answering as for one valid blob,
    one candidate and the given promotion decision; no person ever answers an approval (the timer fires)."""
    blob = {"url": "http://s/landing/fraud/b1.csv", "container": "landing", "name": "fraud/b1.csv", "etag": "e1"}
    given = {
        "model": "fraud",
        "run_id": RUN_ID,
        "trigger": {"kind": "manual", "reason": "r", "source_event_id": RUN_ID, "details": {}},
        "blobs": [],
    }
    job = {"base_name": f"{RUN_ID}-c0", "job_name": f"{RUN_ID}-c0-a0", "outcome": "completed", "attempts": 1}
    answers: dict[str, Any] = {
        "resolve_run_blobs": {"blobs": [blob], "edges": {"amount": [0.0, 1.0]}},
        "validate_blob": {"blob": blob, "ok": True, "summary": "ok", "rows": 500},
        "prepare_training": {
            "candidates": [{"index": 0, "params": {"lr": 0.01}, "why": "the default"}],
            "job_args": {},
            "timeout_minutes": 60,
            "queue_timeout_minutes": 90,
            "max_retries": 0,
            "primary_metric": "pr_auc",
            "approval_required": approval_required,
            "approval_timeout_hours": 24,
        },
        "ml_job": {**job, "outputs": "/out", "metrics": {"pr_auc": 0.4}},
        "decide_promotion": decision,
        "register_model": {"version": "2"},
    }

    def answer(task: Any) -> Any:
        if isinstance(task, BakeTimer):  # task_any's winner: the approval's timer
            return task
        if task[0] == "all":
            return [answer(t) for t in task[1]]
        if task[1] == "staged_rollout" or task[1] == "version_rollout":
            return {"outcome": "completed", "reasons": ["every gate passed"]}
        return answers.get(task[1])

    return _drive(orchestrators.continuous_training, given, answer, context)


def test_every_job_of_a_run_gets_the_spec_limits_on_waiting_and_running() -> None:
    """prepare_training answers the spec's training.timeout_minutes and queue_timeout_minutes (60 and 90 here):
    the candidates' and the evaluation's ml_job must enforce those, not the message defaults."""
    context = DrivenContext({})
    _training_run({"promote": True, "review": False, "reasons": ["promote"]}, False, context)
    jobs = [given for name, given in context.sub_inputs if name == "ml_job"]
    assert [job["kind"] for job in jobs] == ["train", "evaluate"]
    assert all((job["timeout_minutes"], job["queue_timeout_minutes"]) == (60, 90) for job in jobs)


@pytest.mark.parametrize(
    ("decision", "approval_required", "waits"),
    [
        ({"promote": True, "review": True, "reasons": ["promote after a person's approval"]}, False, True),
        ({"promote": True, "review": False, "reasons": ["promote"]}, False, False),
        ({"promote": True, "reasons": ["promote"]}, False, False),  # a decision recorded before "review" existed
        ({"promote": True, "review": False, "reasons": ["promote"]}, True, True),
    ],
    ids=["unsettled-guardrail", "settled", "older-decision", "spec-asks-approval"],
)
def test_a_decision_that_needs_a_persons_review_waits_for_approval_like_the_spec_setting(
    decision: dict[str, Any], approval_required: bool, waits: bool
) -> None:
    result, calls = _training_run(decision, approval_required)
    if waits:
        assert result["status"] == "approval_timed_out", result
        assert ("timer", "", False) in calls
        assert not any(name in ("staged_rollout", "version_rollout") for _, name, _ in calls), "nothing shipped"
    else:
        assert result["status"] == "promoted", result


def test_a_claim_that_keeps_failing_does_not_end_the_coordinator() -> None:
    """A work item the registry cannot take (or storage down past the retries) once failed the coordinator, and
    nothing ran for the model again until another event restarted it. Now it pauses, then starts a fresh
    generation that finds the real work in storage (pending_work) and leaves the bad item behind."""
    blob = {"url": "http://127.0.0.1/devstoreaccount1/landing/fraud/a.csv", "container": "landing",
            "name": "fraud/a.csv", "etag": '"0x1"', "size": 10}  # fmt: skip
    context = DrivenContext({"model": "fraud", "first_work": {"kind": "blobs", "blobs": [blob]}, "ready": True})
    continued: list[Any] = []
    context.continue_as_new = continued.append  # type: ignore[method-assign]
    generator = orchestrators.model_coordinator._function.get_user_function().orchestrator_function(context)

    def step(task: Any) -> Any:
        name = task[1] if isinstance(task, tuple) else None  # a timer is answered with None
        if name == "claim_run":
            return generator.throw(Exception("TableLimitError: property 'size' does not fit in int64"))
        return generator.send({"max_wait_seconds": 60, "quiet_seconds": 5} if name else None)

    task = next(generator)
    ended = False
    while not ended:
        try:
            task = step(task)
        except StopIteration:
            ended = True
    assert ("activity", "claim_run", True) in context.calls
    assert ("timer", "", False) in context.calls[context.calls.index(("activity", "claim_run", True)) :]
    assert continued == [{"model": "fraud"}], "a fresh generation, carrying nothing it could not claim"


def test_a_coordinator_started_again_while_its_run_goes_on_waits_for_it_with_its_work() -> None:
    """claim_run answers busy while another run of the model runs (the coordinator that ran it ended and a blob
    started a new one): no second run starts; the work is kept, and tried again after a pause without a debounce."""
    blob = {"url": "http://127.0.0.1/devstoreaccount1/landing/fraud/a.csv", "container": "landing",
            "name": "fraud/a.csv", "etag": '"0x1"', "size": 10}  # fmt: skip
    context = DrivenContext({"model": "fraud", "first_work": {"kind": "blobs", "blobs": [blob]}, "ready": True})
    continued: list[Any] = []
    context.continue_as_new = continued.append  # type: ignore[method-assign]
    answers = {"coordinator_settings": {"max_wait_seconds": 60, "quiet_seconds": 5}, "claim_run": {"busy": RUN_ID}}
    _drive(
        orchestrators.model_coordinator,
        context.given,
        lambda t: answers.get(t[1]) if isinstance(t, tuple) else None,
        context,
    )
    assert not [c for c in context.calls if c[0] == "sub"], "no second run"
    claimed_at = context.calls.index(("activity", "claim_run", True))
    assert ("timer", "", False) in context.calls[claimed_at:]
    assert continued == [{"model": "fraud", "ready": True, "blobs": [blob], "requests": []}]


def test_a_first_model_stops_between_two_blob_validations_when_asked_to_abort() -> None:
    """A first model validates its blobs one by one; an abort used to wait for all of them (3,000 selected, say)."""
    blobs = [
        {"url": f"http://127.0.0.1/devstoreaccount1/landing/fraud/{i}.csv", "container": "landing",
         "name": f"fraud/{i}.csv", "etag": f'"0x{i}"', "size": 10}
        for i in range(3)
    ]  # fmt: skip
    given = {"model": "fraud", "run_id": RUN_ID, "blobs": blobs,
             "trigger": {"kind": "manual", "reason": "r", "source_event_id": RUN_ID, "details": {}}}  # fmt: skip
    finished: list[dict[str, Any]] = []

    def answer(task: Any) -> Any:
        name, payload = task[1], task[2]
        if name == "resolve_run_blobs":
            return {"blobs": blobs, "edges": None}
        if name == "validate_blob":
            return {"blob": payload["blob"], "ok": False, "summary": "bad", "run_aborted": True}
        if name == "finish_run":
            finished.append(payload)
        return {}

    result, calls = _drive(orchestrators.continuous_training, given, answer)
    assert [c for c in calls if c[1] == "validate_blob"] == [("activity", "validate_blob", True)], "one, not three"
    assert result["status"] == finished[0]["status"] == "aborted"
