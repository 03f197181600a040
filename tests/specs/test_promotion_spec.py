"""promotion: guardrails and first-run floors name metrics the evaluation reports; the holdout fraction reaches
every job the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.jobs import StagedInputs, evaluation_job, training_job
from shared.platform import JobInput
from shared.spec import EVALUATION_METRICS, ModelSpec, SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _fraud(**promotion: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["promotion"].update(promotion)
    return document


def _refused(document: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "fraud.yaml")
    (problem,) = caught.value.problems
    return problem


def test_a_guardrail_on_a_metric_the_evaluation_does_not_report_is_refused() -> None:
    problem = _refused(_fraud(guardrails=[{"metric": "log_loss", "max_regression": 0.05}]))
    assert problem.startswith("fraud.yaml: promotion.guardrails[0].metric='log_loss' is not a metric")
    assert "accuracy, precision, recall, f1, roc_auc, pr_auc, ece" in problem


def test_a_misspelt_first_run_floor_is_refused_with_a_suggestion() -> None:
    problem = _refused(_fraud(first_run_floor={"prauc": 0.3}))
    assert problem.startswith("fraud.yaml: promotion.first_run_floor.prauc='prauc' is not a metric")
    assert "did you mean 'pr_auc'?" in problem


def test_every_reported_metric_is_accepted() -> None:
    guardrails = [{"metric": m, "max_regression": 0.1} for m in EVALUATION_METRICS]
    spec = parse_spec(_fraud(guardrails=guardrails, first_run_floor=dict.fromkeys(EVALUATION_METRICS, 0.1)), "x")
    assert [g.metric for g in spec.promotion.guardrails] == list(EVALUATION_METRICS)


def test_the_holdout_fraction_is_range_checked() -> None:
    assert "promotion.holdout_fraction=0.01" in _refused(_fraud(holdout_fraction=0.01))
    assert parse_spec(_fraud(holdout_fraction=0.25), "x").promotion.holdout_fraction == 0.25


def _flag(args: tuple[str, ...], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_training_and_evaluation_jobs_hold_out_the_same_fraction() -> None:
    spec = ModelSpec.model_validate(_fraud(holdout_fraction=0.2))
    inputs = StagedInputs(
        data=JobInput("/d", "uri_folder"),
        manifest=JobInput("/m.json", "uri_file"),
        contract=JobInput("/c.json", "uri_file"),
    )
    train = training_job(spec, "run-c0", inputs, {"lr": 0.001, "width": 64}, "run")
    evaluate = evaluation_job(spec, "run-eval", inputs, "/challenger", "azureml:fraud:3", "run")
    assert _flag(train.args, "--holdout-fraction") == ["0.2"]
    assert _flag(evaluate.args, "--holdout-fraction") == ["0.2"]
    # the same data: the holdout is a fixed part of it, which the evaluation alone reads
    assert _flag(train.args, "--data") == _flag(evaluate.args, "--data")


def test_the_evaluation_bootstraps_every_guardrail_metric_the_policy_will_judge() -> None:
    inputs = StagedInputs(
        data=JobInput("/d", "uri_folder"),
        manifest=JobInput("/m.json", "uri_file"),
        contract=JobInput("/c.json", "uri_file"),
    )
    spec = ModelSpec.model_validate(_fraud())
    evaluate = evaluation_job(spec, "run-eval", inputs, "/challenger", "azureml:fraud:3", "run")
    assert spec.promotion.guardrails, "models/fraud.yaml has guardrails"
    assert _flag(evaluate.args, "--guardrail-metrics") == [",".join(g.metric for g in spec.promotion.guardrails)]
    # Bonferroni over fraud's two guardrails at significance 0.05: each interval at 97.5 %.
    assert _flag(evaluate.args, "--guardrail-confidence") == ["0.975"]
    bare = ModelSpec.model_validate({**_fraud(), "promotion": {"primary_metric": "pr_auc"}})
    assert "--guardrail-metrics" not in evaluation_job(bare, "e", inputs, "/c", None, "run").args
