"""The audit's scenario (s1c): a memorising challenger trained on batches A+B against a regularised champion
trained on A. Scored on rows the challenger trained on it looked far better (PR-AUC 0.80 vs 0.11) and was
promoted; on the holdout neither model trained on it is no better, and it is not promoted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from shared.policy import PolicyInputError, decide_promotion, parse_comparison
from shared.spec import PromotionSpec
from tests.training import synthetic
from tests.training.conftest import ROOT
from training_jobs import evaluate, train

MEMORISE = ["--epochs", "25", "--width", "256", "--depth", "3", "--dropout", "0", "--weight-decay", "0"]
MEMORISE += ["--batch-size", "128", "--lr", "0.003", "--early-stopping-patience", "0"]


def _write(path: Path, rows: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic.frame(rows, seed, positive_rate=0.05, signal=0.5).to_csv(path, index=False)  # noisy: memorisable


def _decide(document: dict[str, Any], spec: PromotionSpec) -> Any:
    try:
        comparison = parse_comparison(document)
    except PolicyInputError:  # a policy that does not read n_positive / holdout yet (a separate change)
        comparison = parse_comparison({k: v for k, v in document.items() if k not in ("n_positive", "holdout")})
    return decide_promotion(comparison, spec)


def test_a_memorising_challenger_is_not_promoted_on_the_real_holdout(tmp_path: Path) -> None:
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps(synthetic.contract()), encoding="utf-8")
    _write(tmp_path / "landing_A" / "a.csv", 2500, 1)
    _write(tmp_path / "landing_AB" / "a.csv", 2500, 1)
    _write(tmp_path / "landing_AB" / "b.csv", 2500, 2)
    holdout = ["--holdout-fraction", "0.2"]
    common = ["--contract", str(contract), "--checkpoint-every-steps", "0", *holdout]
    champion, challenger = tmp_path / "champion", tmp_path / "challenger"
    assert train.main(["--data", str(tmp_path / "landing_A"), "--output-dir", str(champion), *common]) == 0
    assert (
        train.main(["--data", str(tmp_path / "landing_AB"), "--output-dir", str(challenger), *common, *MEMORISE]) == 0
    )

    output = tmp_path / "comparison.json"
    argv = ["--challenger", str(challenger), "--champion", str(champion), "--data", str(tmp_path / "landing_AB")]
    assert evaluate.main([*argv, "--contract", str(contract), "--output", str(output), *holdout]) == 0
    document = json.loads(output.read_text())
    fraud = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    decision = _decide(document, PromotionSpec.model_validate(fraud["promotion"]))

    assert not decision.promote, decision.reasons
    assert document["difference"]["estimate"] < 0.1  # on its own training rows it led by ~0.7
    assert 800 < document["n_holdout"] < 1200
