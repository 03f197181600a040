"""Staged rollouts end to end: devhost + Azurite + the local scoring server with injected faults.

One host for the module: the first landed batch trains and ships v1; each test then registers a
copy of the champion's weights as a new version, injects a fault into its deployment-to-be (or
none), ships it with ``POST /api/models/fraud/versions/{v}/rollout`` and plays real scoring
traffic through every bake window. Whatever happens, traffic must sum to 100 and a failed gate must
leave the champion at 100 % with the challenger's deployment gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial_cli.synthetic import fraud_batch
from shared.housekeeping import repair_traffic, retire_idle_deployments
from shared.platform import DeploymentRef, ModelRegistration, ScoringQuery, Traffic, TrafficUpdate
from shared.platform.local import FaultSpec
from shared.spec import load_specs
from shared.workflow import deployment_name
from tests.azurite import start_azurite
from tests.e2e.harness import PerennialHost, ScoringTraffic, custom_status, drive_rollout, fast_fraud_spec

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(900)]

BAKE_MINUTES = 1.0
ENDPOINT = "fraud-ep"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerennialHost]:
    """A host whose first batch has trained and shipped v1 (the champion every test starts from)."""
    workdir = tmp_path_factory.mktemp("rollout")
    azurite = start_azurite()
    # Two steps, short bakes, one extension; gates as in models/fraud.yaml except the positive-rate shift,
    # which is left wide so that a silently worse model has to be caught by live accuracy.
    fast_fraud_spec(
        workdir / "models",
        rollout__steps=[50, 100],
        rollout__bake_minutes=BAKE_MINUTES,
        rollout__max_bake_extensions=1,
        rollout__gates={
            "max_error_rate": 0.02,
            "max_p95_latency_ms": 300,
            "max_latency_ratio": 1.5,
            "max_positive_rate_shift": 1.0,
            "max_accuracy_drop": 0.05,
            "min_samples": 40,
            "confidence": 0.99,
        },
    )
    host = PerennialHost(workdir, azurite.connection_string)
    host.start()
    try:
        host.land("batch-001.csv", fraud_batch(3000, seed=1).to_csv(index=False).encode())
        run = host.wait_for("the first model to ship", lambda: (host.finished_runs() or [None])[0])
        assert run["status"] == "promoted", host.run(run["run_id"])
        yield host
    finally:
        host.stop()
        azurite.stop()


def _register_copy_of_champion(host: PerennialHost) -> str:
    """Register the champion's weights again as a new version (a challenger that is exactly as good)."""
    platform = host.platform()
    champion = host.registry.champion("fraud")
    assert champion is not None
    source = platform.get_model("fraud", champion.version)
    job = source.job_name or source.properties["perennial.job"]
    new = platform.register_model(ModelRegistration(name="fraud", job_name=job, description="rollout test copy"))
    record = host.registry.require_version("fraud", champion.version)
    host.registry.register_version(replace(record, version=new.version, etag=None))
    return str(new.version)


def _ship(host: PerennialHost, faults: FaultSpec | None = None, **drive: Any) -> tuple[str, dict[str, Any]]:
    """Register a challenger, inject ``faults`` into its deployment-to-be, roll it out and play traffic."""
    version = _register_copy_of_champion(host)
    if faults is not None:
        host.platform().inject_faults(DeploymentRef(ENDPOINT, deployment_name("fraud", version)), faults)
    response = host.http.post(f"/api/models/fraud/versions/{version}/rollout", json={"reason": "rollout test"})
    assert response.status_code == 202, response.text
    detail = drive_rollout(host, response.json()["run_id"], ScoringTraffic(host), BAKE_MINUTES, **drive)
    return version, detail


def _verdicts(detail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["step"], step["verdict"]) for step in detail["rollout"]]


def _assert_champion_alone_at_100(host: PerennialHost, champion_before: str, challenger: str) -> None:
    champion = host.registry.champion("fraud")
    assert champion is not None
    assert champion.version == champion_before
    assert host.traffic(ENDPOINT) == {champion.deployment: 100}
    names = [d.name for d in host.platform().list_deployments(ENDPOINT)]
    assert deployment_name("fraud", challenger) not in names, names


def _why(detail: dict[str, Any]) -> str:
    """A run's outcome with its reasons and each step's verdict and evidence: what a flaky failure needs."""
    steps = [(s["step"], s["verdict"], s.get("evidence")) for s in detail.get("rollout") or []]
    return f"{detail['status']}: {detail.get('reasons')}; steps: {steps}"


def _first_failure(detail: dict[str, Any]) -> dict[str, Any]:
    return next(step for step in detail["rollout"] if step["verdict"] == "fail")


def _failed_metrics(step: dict[str, Any]) -> list[str]:
    """The canary metrics that judged the challenger worse or beyond a gate at this step."""
    return [m["metric"] for m in step["evidence"]["verdict"]["metrics"] if m["outcome"] in ("worse", "breach")]


def test_a_healthy_challenger_goes_through_every_step_to_100(shipped: PerennialHost) -> None:
    previous = shipped.registry.champion("fraud")
    assert previous is not None
    version, detail = _ship(shipped)
    assert detail["status"] == "promoted", _why(detail)
    steps = _verdicts(detail)
    assert steps[:2] == [("deploy", "pass"), ("smoke", "pass")]
    assert [s for s, v in steps[2:] if v == "pass"][-2:] == ["traffic-50", "traffic-100"], steps
    champion = shipped.registry.champion("fraud")
    assert champion is not None
    assert champion.version == version
    assert champion.previous_version == previous.version
    assert shipped.traffic(ENDPOINT) == {deployment_name("fraud", version): 100}
    # The previous champion stays deployed (idle) for a one-command rollback until retire_after_hours.
    assert previous.deployment in [d.name for d in shipped.platform().list_deployments(ENDPOINT)]


@pytest.mark.parametrize(
    ("faults", "evidence"),
    [
        (FaultSpec(error_rate=0.3), "error_rate"),
        (FaultSpec(added_latency_ms=400), "latency"),
    ],
    ids=["error-spike", "latency-regression"],
)
def test_an_unhealthy_challenger_rolls_back_at_the_first_step(
    shipped: PerennialHost, faults: FaultSpec, evidence: str
) -> None:
    before = shipped.registry.champion("fraud")
    assert before is not None
    version, detail = _ship(shipped, faults)
    assert detail["status"] == "rolled_back", detail
    failed = _first_failure(detail)
    if failed["step"] == "smoke":  # the smoke test's one request can already hit an injected error: fine
        assert evidence == "error_rate"
        assert "HTTP 500" in failed["evidence"]["result"], failed["evidence"]
    else:
        assert failed["step"] == "traffic-50", _verdicts(detail)
        assert evidence in _failed_metrics(failed), failed["evidence"]["reasons"]
    assert not any(step["step"] == "traffic-100" for step in detail["rollout"])
    _assert_champion_alone_at_100(shipped, before.version, version)
    announced = shipped.wait_for(
        "RolloutRolledBack published",
        lambda: [
            d
            for d in shipped.http.get("/eventgrid/deliveries").json()
            if d["event_type"] == "Perennial.RolloutRolledBack" and d["event_id"] == f"{detail['run_id']}:rolled-back"
        ],
        advance=0,
    )
    assert announced, "subscribers learn of the rollback"


def test_a_challenger_that_crashes_on_load_never_takes_traffic(shipped: PerennialHost) -> None:
    before = shipped.registry.champion("fraud")
    assert before is not None
    version, detail = _ship(shipped, FaultSpec(crash_on_load=True))
    assert detail["status"] == "rolled_back", detail
    assert ("deploy", "fail") in _verdicts(detail) or ("smoke", "fail") in _verdicts(detail), _verdicts(detail)
    assert not any(step["step"].startswith("traffic-") for step in detail["rollout"])
    _assert_champion_alone_at_100(shipped, before.version, version)

    # Asking again, in the same words, is a new attempt (not the finished run answered again).
    shipped.platform().inject_faults(
        DeploymentRef(ENDPOINT, deployment_name("fraud", version)), FaultSpec(crash_on_load=True)
    )
    again = shipped.http.post(f"/api/models/fraud/versions/{version}/rollout", json={"reason": "rollout test"})
    assert again.status_code == 202, again.text
    assert again.json()["run_id"] != detail["run_id"]
    retried = drive_rollout(shipped, again.json()["run_id"], ScoringTraffic(shipped), BAKE_MINUTES)
    assert retried["status"] == "rolled_back", retried
    _assert_champion_alone_at_100(shipped, before.version, version)


def test_the_retired_previous_version_is_redeployed_by_a_manual_rollback(shipped: PerennialHost) -> None:
    champion = shipped.registry.champion("fraud")
    assert champion is not None
    assert champion.previous_version is not None
    previous = deployment_name("fraud", champion.previous_version)
    # A day later the housekeeping timer retires the previous champion's idle deployment.
    spec = load_specs(shipped.workdir / "models")["fraud"]
    later = datetime.now(UTC) + timedelta(hours=spec.rollout.retire_after_hours + 1)
    retired = retire_idle_deployments("fraud", spec, shipped.platform(), shipped.registry, later)
    assert [r.deployment for r in retired] == [previous]
    assert [d.name for d in shipped.platform().list_deployments(ENDPOINT)] == [champion.deployment]

    response = shipped.http.post("/api/models/fraud/rollback", json={"reason": "bad reviews", "requested_by": "ana"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["from_version"], body["to_version"]) == (champion.version, champion.previous_version)
    # Not immediate: the restored version takes its load back in stages (50 → 90 → 100), each held for the
    # spec's rollback_step_minutes on the virtual clock, which moves only when a pause is seen.
    held: list[dict[str, int]] = []

    def finished() -> dict[str, Any] | None:
        status = custom_status(shipped, body["run_id"]) or {}
        if status.get("stage") == "stepping_back" and len(held) < int(status["move"]) - 1:
            held.append(shipped.traffic(ENDPOINT))
            shipped.advance(float(status["pause_minutes"]) * 60 + 1)
        detail = shipped.run(body["run_id"])
        return detail if detail["status"] not in ("pending", "running") else None

    shipping = shipped.run(body["run_id"])
    assert shipping["ships_version"] == champion.previous_version, "the runs list shows the version it brings back"
    detail = shipped.wait_for("the rollback", finished, advance=0)
    assert held == [{previous: 50, champion.deployment: 50}, {previous: 90, champion.deployment: 10}]
    assert detail["status"] == "rolled_back", detail
    assert detail["trigger"]["kind"] == "rollback"
    # Each paced move is a step, so the rollback shows while it runs.
    steps = ["deploy", "smoke", "rollback-50", "rollback-90", "rollback-100", "rollback"]
    assert [s["step"] for s in detail["rollout"]] == steps
    restored = shipped.registry.champion("fraud")
    assert restored is not None
    assert restored.version == champion.previous_version
    assert restored.previous_version == champion.version
    assert shipped.traffic(ENDPOINT) == {previous: 100}
    # Its "previous" version is the one just rolled away from: a second rollback must not ship it again.
    again = shipped.http.post("/api/models/fraud/rollback", json={"reason": "again"})
    assert again.status_code == 409, again.text
    assert f"perennial rollout fraud {champion.version}" in again.json()["detail"]
    # A malformed body is a 400 naming the field.
    bad = shipped.http.post("/api/models/fraud/rollback", json={"immediate": "yes"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "immediate"


def test_rollout_requests_for_unknown_or_current_versions_are_4xx(shipped: PerennialHost) -> None:
    champion = shipped.registry.champion("fraud")
    assert champion is not None
    assert shipped.http.post("/api/models/fraud/versions/999/rollout", json={}).status_code == 404
    assert shipped.http.post("/api/models/fraud/versions/abc/rollout", json={}).status_code == 400
    current = shipped.http.post(f"/api/models/fraud/versions/{champion.version}/rollout", json={})
    assert current.status_code == 409
    assert current.json()["field"] == "version"


def test_a_silently_worse_model_rolls_back_on_live_accuracy(shipped: PerennialHost) -> None:
    """No errors, no extra latency: the challenger just answers wrongly more often. Delayed labels land as
    feedback blobs keyed by request id during the bake, and the live-accuracy comparison catches it."""
    before = shipped.registry.champion("fraud")
    assert before is not None

    def label_feedback(traffic: ScoringTraffic) -> None:
        lines = ["request_id,label", *(f"{rid},{label}" for rid, _, status, label in traffic.answers if status == 200)]
        shipped.store.upload_feedback("fraud", f"labels-{traffic.sent}.csv", ("\n".join(lines) + "\n").encode())

    version, detail = _ship(shipped, FaultSpec(flip_rate=0.5), on_bake=label_feedback, requests_per_bake=600)
    assert detail["status"] == "rolled_back", [s["evidence"] for s in detail["rollout"]]
    failed = _first_failure(detail)
    assert failed["step"] == "traffic-50", _verdicts(detail)
    # Live accuracy gives it away (no errors injected, and the positive-rate gate is wide here). On a
    # loaded machine latency may also test worse by chance; the accuracy verdict is what must be there.
    assert "accuracy" in _failed_metrics(failed), failed["evidence"]["verdict"]
    assert "error_rate" not in _failed_metrics(failed), failed["evidence"]["verdict"]
    _assert_champion_alone_at_100(shipped, before.version, version)


def test_an_abort_mid_rollout_rolls_back_at_once(shipped: PerennialHost) -> None:
    before = shipped.registry.champion("fraud")
    assert before is not None
    version = _register_copy_of_champion(shipped)
    response = shipped.http.post(f"/api/models/fraud/versions/{version}/rollout", json={"reason": "abort test"})
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    def abort(_: ScoringTraffic) -> None:
        answer = shipped.http.post(f"/api/runs/{run_id}/abort", json={"by": "oncall", "reason": "pager"})
        assert answer.status_code == 202, answer.text

    # The bake is 1 min of virtual time, but the abort wakes it: the run ends without the clock moving.
    detail = drive_rollout(shipped, run_id, ScoringTraffic(shipped), BAKE_MINUTES, requests_per_bake=20, on_bake=abort)
    assert detail["status"] == "rolled_back", detail
    reason = "aborted on request by oncall (pager): rolled back to the champion"
    assert any(reason in r for r in detail["reasons"]), detail["reasons"]
    assert "aborted" in [verdict for _, verdict in _verdicts(detail)], _verdicts(detail)  # not the canary's pass
    _assert_champion_alone_at_100(shipped, before.version, version)


def test_a_host_killed_mid_rollout_resumes_and_leaves_no_orphans(shipped: PerennialHost) -> None:
    before = shipped.registry.champion("fraud")
    assert before is not None
    version = _register_copy_of_champion(shipped)
    response = shipped.http.post(f"/api/models/fraud/versions/{version}/rollout", json={"reason": "crash test"})
    assert response.status_code == 202, response.text
    kills: list[dict[str, int]] = []

    def crash(_: ScoringTraffic) -> None:
        if not kills:  # at the first step (50/50), with the bake's traffic already served
            kills.append(shipped.traffic(ENDPOINT))
            shipped.kill()
            shipped.start()

    detail = drive_rollout(shipped, response.json()["run_id"], ScoringTraffic(shipped), BAKE_MINUTES, on_bake=crash)
    assert kills, "the host was never killed"
    assert sorted(kills[0].values()) == [50, 50]
    assert detail["status"] == "promoted", _why(detail)
    assert [s["step"] for s in detail["rollout"]].count("deploy") == 1  # resumed, not restarted
    new = deployment_name("fraud", version)
    assert shipped.traffic(ENDPOINT) == {new: 100}
    # No orphans: the new champion and the previous one (kept for rollback), nothing else.
    assert sorted(d.name for d in shipped.platform().list_deployments(ENDPOINT)) == sorted([new, before.deployment])


def test_between_runs_housekeeping_puts_a_left_over_split_right(shipped: PerennialHost) -> None:
    champion = shipped.registry.champion("fraud")
    assert champion is not None
    assert champion.previous_version is not None
    previous = deployment_name("fraud", champion.previous_version)
    platform = shipped.platform()
    # What a rollback leaves when its moves failed past their retries: half the traffic on the old version.
    platform.set_traffic(TrafficUpdate(ENDPOINT, Traffic(live={champion.deployment: 50, previous: 50})))
    spec = load_specs(shipped.workdir / "models")["fraud"]
    repaired = repair_traffic("fraud", spec, platform, shipped.registry)
    assert repaired is not None
    assert repaired.reason.endswith(f"with no run in flight: {champion.deployment} back at 100 %")
    assert shipped.traffic(ENDPOINT) == {champion.deployment: 100}
    assert repair_traffic("fraud", spec, platform, shipped.registry) is None, "once put right, left alone"


def test_perennial_score_answers_with_the_request_id_a_label_names(
    shipped: PerennialHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`perennial score` plays the client application against the running stack: the endpoint records the request
    under the id it sent, which is what a delayed label names."""
    from typer.testing import CliRunner

    from perennial_cli.main import app

    (shipped.workdir / "storage-connection").write_text("UseDevelopmentStorage=true")  # as `perennial up` leaves it
    row = fraud_batch(1, seed=5).drop(columns=["is_fraud"]).iloc[0].to_dict()
    payload = tmp_path_factory.mktemp("score") / "request.json"
    payload.write_text(json.dumps({"data": [row]}, default=str))
    before = datetime.now(UTC)
    args = ["score", str(payload), "--model", "fraud", "--request-id", "order-7"]
    where = ["--state", str(shipped.workdir), "--models", str(shipped.workdir / "models")]
    result = CliRunner().invoke(app, [*args, *where], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "request id order-7" in result.output
    assert '"predictions"' in result.output
    assert "perennial feedback FILE --model fraud" in " ".join(result.output.split())
    champion = shipped.registry.champion("fraud")
    assert champion is not None
    assert champion.deployment is not None
    records = shipped.platform().scoring_records(
        ScoringQuery(ENDPOINT, champion.deployment, before, datetime.now(UTC) + timedelta(seconds=5))
    )
    assert [r.request_id for r in records.records] == ["order-7"]
    spaced = CliRunner().invoke(app, [*args[:-1], "ticket 42", *where])
    assert spaced.exit_code == 2, "the endpoint would record another id, which no label could name"
    assert "is not an id the endpoint records" in spaced.output
    bad = CliRunner().invoke(app, ["score", "-", "--model", "fraud", *where], input="{not json")
    assert bad.exit_code == 2
    assert "is not JSON" in bad.output
