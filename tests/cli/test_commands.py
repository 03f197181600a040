"""The `perennial` commands that talk to a host, run for real against devhost + Azurite over loopback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner, Result

from perennial_cli.client import ModelVersion
from perennial_cli.main import app
from perennial_cli.runs import _data_line
from shared.publish import RunCompleted, make_event
from tests.cli.conftest import CANDIDATE_ERROR, NOT_PROMOTED, PROMOTED, RUNNING
from tests.e2e.harness import KEY, PerennialHost

pytestmark = [pytest.mark.slow, pytest.mark.azurite]


def perennial(host: PerennialHost, *args: str, key: str = KEY) -> Result:
    """Run the CLI in-process with the host and key from the environment, as a user would set them."""
    env = {"PERENNIAL_HOST_URL": host.base_url, "PERENNIAL_FUNCTION_KEY": key, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def test_models_shows_each_champion_and_latest_run(host: PerennialHost) -> None:
    result = perennial(host, "models")
    assert result.exit_code == 0, result.output
    fraud = next(line for line in result.output.splitlines() if "│ fraud " in line)
    assert "│ 3 " in fraud
    assert RUNNING in fraud
    assert "training" in fraud
    lending = next(line for line in result.output.splitlines() if "│ lending " in line)
    assert "none yet" in lending
    assert "no runs" in lending


def test_models_says_when_events_wait_to_be_sent(host: PerennialHost) -> None:
    event = make_event(RunCompleted(model="lending", run_id="lending-r1", status="failed"), event_id="lending-r1:x")
    host.store.put_json("manifests", "lending/unsent/cli-test.json", {"event": event.to_dict()})
    try:
        result = perennial(host, "models")
    finally:
        host.store.delete("manifests", "lending/unsent/cli-test.json")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "lending: 1 event(s) the event topic could not take wait in manifests/lending/unsent/" in text
    assert "PERENNIAL_EVENTGRID_ENDPOINT" in text  # what to check
    assert "fraud: " not in text
    assert "refused for good" not in text


def test_models_says_when_the_topic_refused_events_for_good(host: PerennialHost) -> None:
    event = make_event(RunCompleted(model="lending", run_id="lending-r2", status="failed"), event_id="lending-r2:x")
    letter = {"event": event.to_dict(), "refused_at": "2026-11-30T08:00:00+00:00", "error": "(400) too large"}
    host.store.put_json("deadletter", "lending/events/cli-test.json", letter)
    try:
        result = perennial(host, "models")
    finally:
        host.store.delete("deadletter", "lending/events/cli-test.json")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "lending: 1 event(s) the event topic refused for good are in deadletter/lending/events/" in text
    assert "move an event back to manifests/lending/unsent/" in text  # what to do
    assert "could not take" not in text


def test_an_80_column_terminal_gets_whole_cells_not_cut_ones(host: PerennialHost) -> None:
    env = {"PERENNIAL_HOST_URL": host.base_url, "PERENNIAL_FUNCTION_KEY": KEY, "COLUMNS": "80"}
    runs = CliRunner().invoke(app, ["runs", "fraud"], env=env)
    assert runs.exit_code == 0, runs.output
    assert "…" not in runs.output, runs.output
    assert all(len(line) <= 80 for line in runs.output.splitlines()), runs.output
    promoted = next(line for line in runs.output.splitlines() if PROMOTED in line)
    for cell in ("manual", "promoted", " 3 ", "03-01 09:00"):
        assert cell in promoted, promoted
    assert "training" in next(line for line in runs.output.splitlines() if RUNNING in line)  # its stage
    models = CliRunner().invoke(app, ["models"], env=env)
    assert models.exit_code == 0, models.output
    assert "…" not in models.output
    assert all(len(line) <= 80 for line in models.output.splitlines()), models.output
    assert RUNNING in next(line for line in models.output.splitlines() if "fraud " in line), models.output


def test_runs_is_a_table_newest_first(host: PerennialHost) -> None:
    result = perennial(host, "runs", "fraud")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index(RUNNING) < out.index(NOT_PROMOTED) < out.index(PROMOTED)
    promoted = next(line for line in out.splitlines() if PROMOTED in line)
    for cell in ("manual", "promoted", "done", "promote", "│ 3 ", "2025-03-01 09:00:00"):
        assert cell in promoted
    assert "drift" in next(line for line in out.splitlines() if NOT_PROMOTED in line)

    newest = perennial(host, "runs", "fraud", "--limit", "1")
    assert newest.exit_code == 0
    assert RUNNING in newest.output
    assert PROMOTED not in newest.output
    # Older runs page by page, each page saying how to get the next one.
    assert f"older runs: perennial runs fraud --limit 1 --after {RUNNING}" in newest.output
    second = perennial(host, "runs", "fraud", "--limit", "1", "--after", RUNNING)
    assert second.exit_code == 0, second.output
    assert NOT_PROMOTED in second.output
    assert RUNNING not in second.output.split("older runs:")[0]
    last = perennial(host, "runs", "fraud", "--limit", "5", "--after", NOT_PROMOTED)
    assert PROMOTED in last.output
    assert "older runs:" not in last.output
    unknown = perennial(host, "runs", "fraud", "--after", "fraud-nope")
    assert unknown.exit_code != 0
    assert "no run 'fraud-nope'" in unknown.output


def test_run_shows_candidates_decision_lineage_and_rollout(host: PerennialHost) -> None:
    result = perennial(host, "run", PROMOTED)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "promoted at stage done" in out
    assert "manual: quarterly refresh" in out
    assert "c0" in out
    assert "pr_auc=0.412" in out
    assert "lr=0.003, width=32" in out
    assert "pr_auc=0.377" in out
    # A failed candidate says why, log tail included, below the table.
    assert "c2 failed: fraud-00000000000000a1-c2-a0: failed (job exited 1" in out
    assert "DivergedError: the loss is not finite at step 120; lower --lr" in out
    assert "Decision: promote" in out
    assert "beats the champion's 0.388" in out
    # The holdout numbers the decision rests on, not only the candidates' validation metrics.
    holdout = out[out.index("Holdout evaluation") : out.index("Decision")]
    assert "of candidate c0 on 4,000 rows" in holdout
    assert "pr_auc: challenger 0.3980, champion 0.3740; gain +0.0240, 95% CI [+0.0080, +0.0410], p=0.003" in holdout
    assert "recall=0.44" in holdout
    assert "3 (candidate c0)" in out
    assert "manifests/fraud/fraud-00000000000000a1.json" in out
    assert "5e" * 32 in out, "the manifest's sha256, which lineage pins"
    assert "2 blob(s), 2,048 bytes, each pinned by sha256 in the manifest" in out
    rollout = out[out.index("Rollout") :]
    assert "traffic-50" in rollout
    assert "fraud-v2=50, fraud-v3=50" in rollout
    assert "pass" in rollout

    raw = perennial(host, "run", PROMOTED, "--json")
    assert raw.exit_code == 0, raw.output
    document = json.loads(raw.stdout)
    assert document["run_id"] == PROMOTED
    assert document["version"]["version"] == "3"
    assert len(document["rollout"]) == 3
    assert document["evaluation"]["candidate"] == "c0"
    assert [c.get("error") for c in document["candidates"]] == [None, None, CANDIDATE_ERROR]
    assert document["evaluation"]["difference"]["p_value"] == 0.003


def test_a_version_registered_before_manifest_pinning_counts_its_recorded_hashes() -> None:
    legacy = ModelVersion(version="2", data_hashes={"landing/fraud/a.csv": "ab" * 32, "landing/fraud/b.csv": "cd" * 32})
    assert _data_line(legacy, claimed=2) == "2 blob hash(es) recorded; 2 blob(s) claimed by this run"
    assert _data_line(None, claimed=0) == "0 blob(s) claimed by this run"


def test_retrain_is_accepted_then_refused_while_it_runs(host: PerennialHost) -> None:
    # With no data a run ends in well under a second; to hold it in the queue deterministically, the model's
    # coordinator (idle, waiting for work) is suspended first, so the accepted request stays pending.
    durable = "/runtime/webhooks/durabletask"
    started = host.http.post(f"{durable}/orchestrators/model_coordinator/model-lending", json={"model": "lending"})
    assert started.status_code == 202, started.text
    host.wait_for("the idle coordinator", lambda: _idle(host), timeout=30, advance=0)
    assert host.http.post(f"{durable}/instances/model-lending/suspend?reason=test").status_code == 202

    first = perennial(host, "retrain", "lending", "--reason", "cli test", "--requested-by", "tester")
    assert first.exit_code == 0, first.output
    run_id = next(word for word in first.output.split() if word.startswith("lending-"))
    assert f"{host.base_url}/api/runs/{run_id}" in first.output
    assert "reason: cli test" in first.output

    second = perennial(host, "retrain", "lending")
    assert second.exit_code == 1, second.output
    assert f"already in progress: run {run_id}" in second.output
    assert f"perennial abort {run_id}" in second.output
    run = host.registry.get_run("lending", run_id)
    assert run is not None
    assert run.trigger_reason == "cli test"
    assert run.status == "pending"
    host.http.post(f"{durable}/instances/model-lending/resume?reason=test")


def _idle(host: PerennialHost) -> bool:
    status = host.http.get("/runtime/webhooks/durabletask/instances/model-lending")
    return status.status_code in (200, 202) and (status.json().get("customStatus") or {}).get("stage") == "idle"


def test_approve_on_a_finished_run_prints_the_409(host: PerennialHost) -> None:
    result = perennial(host, "approve", PROMOTED, "--comment", "looks good")
    assert result.exit_code == 1
    assert "409 Run is not awaiting approval" in result.output
    assert "only a run at stage awaiting_approval" in result.output
    assert "Traceback" not in result.output


def test_abort_asks_a_running_run_to_stop(host: PerennialHost) -> None:
    result = perennial(host, "abort", RUNNING, "--reason", "wrong export", "--by", "dana")
    assert result.exit_code == 0, result.output
    assert f"run_id: {RUNNING}" in result.output
    assert "abort: requested" in result.output
    run = host.registry.get_run("fraud", RUNNING)
    assert run is not None
    assert run.abort_requested
    assert run.abort_reason() == "aborted on request by dana (wrong export)"

    finished = perennial(host, "abort", PROMOTED)
    assert finished.exit_code == 1
    assert "409 Run is not running" in finished.output


def test_rollout_of_the_champion_or_an_unknown_version_is_refused(host: PerennialHost) -> None:
    champion = perennial(host, "rollout", "fraud", "3")
    assert champion.exit_code == 1
    assert "409 Already the champion" in champion.output
    unknown = perennial(host, "rollout", "fraud", "99")
    assert unknown.exit_code == 1
    assert "404 Unknown version" in unknown.output
    assert "field: version" in unknown.output


def test_unknown_model_and_run_name_the_field(host: PerennialHost) -> None:
    result = perennial(host, "runs", "nope")
    assert result.exit_code == 1
    assert "404 Unknown model" in result.output
    assert "known models: fraud, lending" in result.output
    assert "field: model" in result.output

    run = perennial(host, "run", "nope-123")
    assert run.exit_code == 1
    assert "field: id" in run.output


def test_a_wrong_key_says_how_to_pass_one(host: PerennialHost) -> None:
    result = perennial(host, "models", key="not-the-key")
    assert result.exit_code == 1
    assert "401 Unauthorized" in result.output
    assert "--key KEY or PERENNIAL_FUNCTION_KEY" in result.output
