"""Per-class guardrails end to end: the spec's ``promotion.guardrails[].class`` → evaluate.py's argv (shared/jobs.py)
→ evaluate.py's paired bootstrap of that class's one-vs-rest metric → comparison.json → the promotion policy.

A 4-class ticket router whose challenger is better overall (macro PR-AUC, significantly) but has all but stopped
predicting one class: only that class's guardrail can say no, and the run's reason names the class. Its name holds a
colon and a comma, which the argv must carry. The binary case checks that the positive class's per-class bootstrap is
the headline recall's, resample for resample.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from shared.jobs import StagedInputs, evaluation_job, job_contract
from shared.platform import JobInput
from shared.policy import decide_promotion, parse_comparison
from shared.spec import ModelSpec, PromotionSpec, parse_spec
from tests.training.conftest import Problem, train_in_process
from training_jobs import evaluate
from training_jobs.data import sha256_file

URGENT = "urgent: p1, now"  # a colon and a comma: a comma list or METRIC:CLASS split on the last ':' would break it
TOPICS = ["billing", "sales", URGENT, "abuse"]
INPUTS = StagedInputs(
    data=JobInput("/d", "uri_folder"),
    manifest=JobInput("/m.json", "uri_file"),
    contract=JobInput("/c.json", "uri_file"),
)


def _tickets(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    seen = x + rng.normal(scale=0.6, size=x.shape)
    topic = np.select([seen[:, 0] > 0.8, seen[:, 1] > 0.8, seen[:, 2] > 0.5], [URGENT, "abuse", "sales"], "billing")
    frame = pd.DataFrame({"ticket_id": [f"t{seed}-{i}" for i in range(rows)], "x0": x[:, 0], "x1": x[:, 1]})
    frame["x2"] = x[:, 2]
    frame["topic"] = topic
    return frame


def _spec(**promotion: Any) -> ModelSpec:
    columns: list[dict[str, Any]] = [
        {"name": "ticket_id", "type": "string", "nullable": False, "feature": False},
        *({"name": f"x{i}", "type": "float", "nullable": False} for i in range(3)),
        {"name": "topic", "type": "category", "nullable": False, "categories": TOPICS},
    ]
    document = {
        "name": "tickets",
        "task": "multiclass",
        "data": {"label": "topic", "key": "ticket_id", "columns": columns},
        "promotion": {"primary_metric": "pr_auc", **promotion},
    }
    return parse_spec(document, "tickets.yaml")


def _problem(folder: Path, frame: pd.DataFrame, spec: ModelSpec) -> Problem:
    (folder / "data").mkdir(parents=True)
    frame.to_parquet(folder / "data" / "tickets.parquet", index=False)
    (folder / "contract.json").write_text(job_contract(spec), encoding="utf-8")
    return Problem(folder / "data", folder / "contract.json", folder)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A champion trained on labels where most sales and abuse tickets are mislabelled (weaker overall, good at
    urgent); a challenger trained on clean labels whose urgent output is then pushed down (better overall, and it
    now misses most urgent tickets: shifting one logit keeps that class's ranking, so its PR-AUC holds)."""
    root = tmp_path_factory.mktemp("router")
    spec = _spec()
    clean = _tickets(6000, seed=1)
    noisy = clean.copy()
    rng = np.random.default_rng(5)
    flip = noisy["topic"].isin(["sales", "abuse"]).to_numpy() & (rng.random(len(noisy)) < 0.8)
    noisy.loc[flip, "topic"] = rng.choice(["sales", "abuse", "billing"], size=int(flip.sum()))
    data = _problem(root / "clean", clean, spec)
    options = ("--epochs", "3", "--batch-size", "128", "--lr", "0.01")
    assert train_in_process(_problem(root / "noisy", noisy, spec), root / "champion", *options) == 0
    assert train_in_process(data, root / "good", *options) == 0
    challenger = root / "challenger"
    shutil.copytree(root / "good", challenger)
    weights = load_file(str(challenger / "model.safetensors"))
    classes = json.loads((challenger / "preprocessing.json").read_text())["labels"]["classes"]
    weights["head.bias"][classes.index(URGENT)] -= 2.0
    save_file(weights, str(challenger / "model.safetensors"), metadata={"format": "pt"})
    manifest = root / "manifest.json"
    parquet = data.data / "tickets.parquet"
    files = [{"name": parquet.name, "sha256": sha256_file(parquet), "size": parquet.stat().st_size}]
    manifest.write_text(json.dumps({"model": "tickets", "run_id": "run-1", "files": files}), encoding="utf-8")
    return {
        "data": data.data,
        "contract": data.contract,
        "manifest": manifest,
        "champion": root / "champion",
        "challenger": challenger,
    }


def _platform_argv(spec: ModelSpec, router: dict[str, Path], output: Path) -> list[str]:
    """evaluate.py's argv as the platform builds it for ``spec``, its inputs in place of the placeholders."""
    job = evaluation_job(spec, "run-1-eval", INPUTS, "/challenger", "azureml:tickets:1", "run-1")
    places = {f"{{inputs.{name}}}": str(path) for name, path in router.items()}
    places["{outputs}/comparison.json"] = str(output)
    return [places.get(arg, arg) for arg in job.args]


def _flag(args: list[str] | tuple[str, ...], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_a_challenger_better_overall_but_worse_on_one_class_is_refused_naming_the_class(
    router: dict[str, Path], tmp_path: Path
) -> None:
    guardrails = [
        {"metric": "recall", "class": URGENT, "max_regression": 0.05},
        {"metric": "f1", "class": "billing", "max_regression": 0.1},
        {"metric": "f1", "max_regression": 0.1},
    ]
    spec = _spec(guardrails=guardrails)
    argv = _platform_argv(spec, router, tmp_path / "comparison.json")
    # Class-less guardrails keep their comma list; each per-class one is an option of its own, the class whole.
    assert _flag(argv, "--guardrail-metrics") == ["f1"]
    assert _flag(argv, "--class-guardrail") == [f"recall:{URGENT}", "f1:billing"]
    assert _flag(argv, "--guardrail-confidence") == [f"{1 - 0.05 / 3:.6g}"], "Bonferroni over all three"
    assert evaluate.main([*argv, "--bootstrap", "300"]) == 0

    written = json.loads((tmp_path / "comparison.json").read_text())
    per_class = written["per_class"]
    assert set(per_class["challenger"]) == set(per_class["champion"]) == set(TOPICS)
    urgent = {role: per_class[role][URGENT] for role in ("challenger", "champion")}
    assert urgent["challenger"]["support"] == urgent["champion"]["support"] > 30
    assert urgent["champion"]["recall"] - urgent["challenger"]["recall"] > 0.3
    [recall, billing] = written["class_guardrail_differences"]
    assert (recall["metric"], recall["class"], billing["metric"], billing["class"]) == (
        "recall",
        URGENT,
        "f1",
        "billing",
    )
    assert recall["estimate"] == pytest.approx(urgent["challenger"]["recall"] - urgent["champion"]["recall"])
    assert recall["ci_high"] < -0.05, "the holdout settles it: far beyond max_regression"
    assert recall["confidence"] == pytest.approx(1 - 0.05 / 3)
    assert recall["bootstrap_samples"] == 300

    decision = decide_promotion(parse_comparison(written), spec.promotion)
    checks = {c.name: c for c in decision.checks}
    # Better overall: the primary metric's gain is significant and the macro f1 guardrail holds.
    assert checks["min_improvement"].passed, decision.summary
    assert checks["significance"].passed, decision.summary
    assert checks["guardrail.f1"].passed
    assert decision.promote is False
    failed = checks[f"guardrail.recall[{URGENT}]"]
    assert failed.passed is False
    assert failed.reason.startswith(f"recall of class {URGENT!r} ")
    assert "exceeds max_regression 0.05" in failed.reason
    assert (failed.evidence["class"], failed.evidence["settled"]) == (URGENT, True)
    assert f"recall of class {URGENT!r}" in decision.summary

    # Without the per-class guardrail the same comparison promotes: only it saw the class go.
    without = spec.promotion.model_copy(update={"guardrails": spec.promotion.guardrails[1:]})
    assert decide_promotion(parse_comparison(written), without).promote is True


def test_a_class_the_model_does_not_predict_or_a_bad_option_is_bad_input(
    router: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--challenger", str(router["challenger"]), "--champion", str(router["champion"])]
    argv += ["--data", str(router["data"]), "--contract", str(router["contract"]), "--output", str(tmp_path / "c.json")]
    assert evaluate.main([*argv, "--class-guardrail", "recall:refunds"]) == 2
    err = capsys.readouterr().err
    assert "--class-guardrail recall:refunds names class 'refunds', which the challenger does not predict" in err
    assert "hint: " in err
    assert not (tmp_path / "c.json").exists()
    for bad, says in (("accuracy:billing", "'accuracy' is not a per-class metric"), ("recall", "is not METRIC:CLASS")):
        with pytest.raises(SystemExit) as refused:
            evaluate.main([*argv, "--class-guardrail", bad])
        assert refused.value.code == 2
        assert says in capsys.readouterr().err
    parsed = evaluate.build_parser().parse_args(
        [*argv, "--class-guardrail", f"f1:{URGENT}", "--class-guardrail", "f1:a:b"]
    )
    assert parsed.class_guardrails == [("f1", URGENT), ("f1", "a:b")], "the class is all after the first ':'"


def test_the_positive_class_bootstrap_is_the_binary_recall_bootstrap(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path
) -> None:
    """Binary: the positive class's one-vs-rest recall is the headline recall; drawn with the same seed, its paired
    bootstrap is the same, resample for resample. The negative class can be guarded too."""
    base = ["--challenger", str(trained), "--champion", str(weak), "--data", str(holdout.data)]
    base += ["--contract", str(holdout.contract), "--bootstrap", "200"]
    assert evaluate.main([*base, "--output", str(tmp_path / "a.json"), "--guardrail-metrics", "recall"]) == 0
    classes = ["--class-guardrail", "recall:1", "--class-guardrail", "precision:0"]
    assert evaluate.main([*base, "--output", str(tmp_path / "b.json"), *classes]) == 0
    by_metric, by_class = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    [recall, precision] = by_class["class_guardrail_differences"]
    assert {k: v for k, v in recall.items() if k != "class"} == by_metric["guardrail_differences"]["recall"]
    assert (recall["class"], precision["class"]) == ("1", "0")
    for role in ("challenger", "champion"):
        positive = by_class["per_class"][role]["1"]
        assert positive["recall"] == pytest.approx(by_class[role]["recall"])
        assert positive["support"] == by_class["n_positive"] == 26
    negative = by_class["per_class"]["challenger"]["0"]
    assert negative["support"] == by_class["n_holdout"] - 26
    assert precision["estimate"] == pytest.approx(
        negative["precision"] - by_class["per_class"]["champion"]["0"]["precision"]
    )

    promotion = PromotionSpec.model_validate(
        {
            "guardrails": [
                {"metric": "recall", "class": 1, "max_regression": 0.05},
                {"metric": "precision", "class": 0, "max_regression": 0.05},
            ]
        }
    )
    decision = decide_promotion(parse_comparison(by_class), promotion)
    names = [c.name for c in decision.checks if c.name.startswith("guardrail.")]
    assert names == ["guardrail.recall[1]", "guardrail.precision[0]"]
    assert all(c.evidence["settled"] is not None for c in decision.checks if c.name in names)
    # A champion-less run has the challenger's per-class values and nothing to bootstrap.
    assert evaluate.main([*base[:2], *base[4:], "--output", str(tmp_path / "first.json"), *classes]) == 0
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["per_class"]["champion"] is None
    assert "class_guardrail_differences" not in first
    assert parse_comparison(first).challenger_per_class is not None
