"""training_jobs/comparison.py at its boundaries, against independent ground truth.

McNemar against scipy.stats (the exact two-sided binomial test, the chi-square(1) survival function) on both sides
of the 25-discordant-row switch; the paired bootstrap against what a bootstrap of a mean must give (its spread is
the standard error sd(d) / sqrt(n) of the per-row differences d, whatever the seed), and at the edges the promotion
policy leans on: a model against itself, a resample without a positive row, each model's own threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import stats

from tests.training import synthetic
from training_jobs import evaluate, holdout
from training_jobs.comparison import mcnemar, paired_bootstrap, paired_class_bootstrap
from training_jobs.data import LabelSpace
from training_jobs.errors import TrainingJobError
from training_jobs.holdout import HoldoutRule
from training_jobs.metrics import class_metric, metric_value

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Each model's own threshold. The probabilities below are chosen so that the other model's threshold turns every
#: right answer into a wrong one and back: a threshold mix-up cannot go unseen.
NEW_THRESHOLD, OLD_THRESHOLD = 0.3, 0.7
NEW_P = {(1, True): 0.4, (1, False): 0.2, (0, True): 0.1, (0, False): 0.5}  # (label, right at 0.3) -> P(positive)
OLD_P = {(1, True): 0.8, (1, False): 0.6, (0, True): 0.6, (0, False): 0.75}  # (label, right at 0.7) -> P(positive)


def _models(b: int, c: int, both_right: int = 6, both_wrong: int = 4) -> tuple[IntArray, FloatArray, FloatArray]:
    """Rows where the champion alone is right (``b``), the challenger alone (``c``), both, neither; labels alternate."""
    outcomes = [(False, True)] * b + [(True, False)] * c + [(True, True)] * both_right + [(False, False)] * both_wrong
    y = np.array([i % 2 for i in range(len(outcomes))], dtype=np.int64)
    new = np.array([NEW_P[(int(label), right)] for label, (right, _) in zip(y, outcomes, strict=True)])
    old = np.array([OLD_P[(int(label), right)] for label, (_, right) in zip(y, outcomes, strict=True)])
    return y, new, old


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(("b", "c"), [(5, 10), (0, 7), (1, 23), (7, 17), (3, 3), (11, 13)])
def test_mcnemar_below_25_discordant_rows_is_the_exact_binomial_test(b: int, c: int) -> None:
    result = mcnemar(*_models(b, c), NEW_THRESHOLD, OLD_THRESHOLD)
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


@pytest.mark.parametrize(("b", "c"), [(10, 15), (12, 13), (5, 40), (40, 5), (30, 50)])
def test_mcnemar_from_25_discordant_rows_is_the_continuity_corrected_chi_square(b: int, c: int) -> None:
    result = mcnemar(*_models(b, c), NEW_THRESHOLD, OLD_THRESHOLD)
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    assert (result.b, result.c) == (b, c)
    assert result.statistic == pytest.approx(statistic)
    assert result.p_value == pytest.approx(stats.chi2.sf(statistic, df=1), rel=1e-9)


def test_mcnemar_switches_to_the_chi_square_at_exactly_25_discordant_rows() -> None:
    # At 24 the exact test (0.0639) and the chi-square (0.0783) differ by far more than rounding; at 25 likewise.
    at_24 = mcnemar(*_models(7, 17), NEW_THRESHOLD, OLD_THRESHOLD)
    assert at_24.p_value == pytest.approx(stats.binomtest(7, 24, 0.5).pvalue)
    assert at_24.p_value != pytest.approx(stats.chi2.sf(9**2 / 24, df=1), rel=1e-3)
    at_25 = mcnemar(*_models(7, 18), NEW_THRESHOLD, OLD_THRESHOLD)
    assert at_25.p_value == pytest.approx(stats.chi2.sf(10**2 / 25, df=1))
    assert at_25.p_value != pytest.approx(stats.binomtest(7, 25, 0.5).pvalue, rel=1e-3)


@pytest.mark.parametrize("discordant", [3, 15])
def test_mcnemar_with_as_many_discordant_rows_each_way_is_no_evidence(discordant: int) -> None:
    """b == c: the exact p-value is capped at 1 and the continuity correction never overshoots zero."""
    result = mcnemar(*_models(discordant, discordant), NEW_THRESHOLD, OLD_THRESHOLD)
    assert result.statistic == 0.0
    assert result.p_value == 1.0


def test_mcnemar_without_discordant_rows_is_no_evidence() -> None:
    assert mcnemar(*_models(0, 0), NEW_THRESHOLD, OLD_THRESHOLD).to_json() == {
        "b": 0,
        "c": 0,
        "statistic": 0.0,
        "p_value": 1.0,
    }


# --------------------------------------------------------------------------- the paired bootstrap


def _accuracy_pair(
    n: int = 2000, new_only: int = 100, old_only: int = 40, both_wrong: int = 200
) -> tuple[IntArray, FloatArray, FloatArray]:
    """All-positive rows; the two models share ``both_wrong`` errors (correlated, as real models are)."""
    y = np.ones(n, dtype=np.int64)
    new, old = np.ones(n), np.ones(n)
    new[:both_wrong] = old[:both_wrong] = 0.0
    old[both_wrong : both_wrong + new_only] = 0.0
    new[both_wrong + new_only : both_wrong + new_only + old_only] = 0.0
    return y, new, old


def test_the_interval_is_the_bootstrap_of_the_paired_differences() -> None:
    """The accuracy difference is the mean of d = right_new - right_old (+1 on 100 rows, -1 on 40): its bootstrap
    quantiles sit at estimate ± z * sd(d) / sqrt(n). Unpaired resamples would be ~1.8 times as wide (the two models'
    200 shared errors no longer cancel), a one-sided alpha or the wrong quantile ~15% off, half-size resamples ~40%."""
    y, new, old = _accuracy_pair()
    d = np.zeros(len(y))
    d[200:300], d[300:340] = 1.0, -1.0
    standard_error = d.std() / math.sqrt(len(y))
    z = stats.norm.ppf(0.975)
    result = paired_bootstrap("accuracy", y, new, old, 0.5, 0.5, samples=4000, confidence=0.95, seed=3)
    assert result.estimate == pytest.approx(0.03)
    assert result.bootstrap_samples == 4000
    assert result.estimate - result.ci_low == pytest.approx(z * standard_error, rel=0.07)
    assert result.ci_high - result.estimate == pytest.approx(z * standard_error, rel=0.07)
    assert result.p_value == pytest.approx(stats.norm.sf(0.03 / standard_error), abs=0.002)


def test_a_model_against_itself_has_a_zero_interval_and_is_not_better() -> None:
    """Paired resamples of one model against itself differ by exactly 0; 'not better' (difference <= 0) is every
    resample, so the p-value is 1, never 0 (which would read as a significant improvement)."""
    y, new, _ = _accuracy_pair(n=300, new_only=0, old_only=0, both_wrong=40)
    rng = np.random.default_rng(0)
    p = np.where(y == 1, rng.uniform(0.3, 1.0, len(y)), rng.uniform(0.0, 0.7, len(y)))
    y[::3] = 0
    for metric in ("accuracy", "f1", "pr_auc", "roc_auc"):
        result = paired_bootstrap(metric, y, p, p.copy(), 0.5, 0.5, samples=200, confidence=0.9, seed=1)
        assert (result.estimate, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0), metric
        assert result.bootstrap_samples == 200
    assert paired_bootstrap("accuracy", y, new, new.copy(), 0.5, 0.5, 100, 0.95, 0).p_value == 1.0


def test_resamples_without_a_positive_row_are_skipped_not_averaged_in() -> None:
    """One positive in 20 rows: a resample misses it with probability (19/20)**20 = 0.358 and its PR-AUC is
    undefined. Those are dropped; the interval is of the others. The positive is the last row, which every
    resample may draw."""
    y = np.zeros(20, dtype=np.int64)
    y[-1] = 1
    new = np.linspace(0.05, 0.6, 20)
    old = new[::-1].copy()
    samples = 1000
    result = paired_bootstrap("pr_auc", y, new, old, 0.5, 0.5, samples, 0.95, seed=7)
    expected = samples * (1 - (19 / 20) ** 20)  # 642, binomial sd 15
    assert expected - 60 < result.bootstrap_samples < expected + 60
    assert math.isfinite(result.ci_low)
    assert math.isfinite(result.ci_high)
    assert result.ci_low <= result.estimate <= result.ci_high
    assert 0.0 <= result.p_value <= 1.0


def test_each_model_is_judged_at_its_own_threshold_in_every_resample() -> None:
    y, new, old = _models(b=10, c=40, both_right=30, both_wrong=5)
    expected = (40 + 30) / 85 - (10 + 30) / 85  # accuracy at 0.3 and at 0.7
    assert metric_value("accuracy", y, new, NEW_THRESHOLD) - metric_value(
        "accuracy", y, old, OLD_THRESHOLD
    ) == pytest.approx(expected)
    result = paired_bootstrap("accuracy", y, new, old, NEW_THRESHOLD, OLD_THRESHOLD, 500, 0.95, seed=2)
    assert result.estimate == pytest.approx(expected)
    assert 0.0 < result.ci_low < result.estimate < result.ci_high
    assert result.p_value < 0.01


# --------------------------------------------------------------------------- the per-class paired bootstrap


def test_the_class_bootstrap_of_identical_predictions_is_zero_and_not_better() -> None:
    y = np.array([0, 1, 2] * 30, dtype=np.int64)
    predicted = np.array([0, 1, 1] * 30, dtype=np.int64)
    result = paired_class_bootstrap("recall", 2, y, predicted, predicted.copy(), 300, 0.95, seed=4)
    assert (result.estimate, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.bootstrap_samples == 300


def test_the_class_bootstrap_is_challenger_minus_champion() -> None:
    y = np.array([2, 2, 2, 2, 0, 1, 0, 1] * 10, dtype=np.int64)
    challenger = np.array([2, 2, 2, 0, 0, 1, 0, 1] * 10, dtype=np.int64)  # recall of class 2: 3/4
    champion = np.array([2, 0, 0, 0, 0, 1, 0, 1] * 10, dtype=np.int64)  # 1/4
    result = paired_class_bootstrap("recall", 2, y, challenger, champion, 300, 0.95, seed=5)
    assert result.estimate == pytest.approx(0.5)
    assert 0.0 < result.ci_low < 0.5 < result.ci_high
    assert result.p_value == 0.0


def test_class_resamples_without_a_row_of_the_class_are_skipped() -> None:
    y = np.zeros(20, dtype=np.int64)
    y[-1] = 1  # one row of class 1, the last
    challenger = y.copy()
    champion = np.zeros(20, dtype=np.int64)
    assert class_metric("recall", 1, y, challenger) - class_metric("recall", 1, y, champion) == 1.0
    result = paired_class_bootstrap("recall", 1, y, challenger, champion, 1000, 0.95, seed=6)
    expected = 1000 * (1 - (19 / 20) ** 20)
    assert expected - 60 < result.bootstrap_samples < expected + 60
    assert (result.ci_low, result.ci_high, result.p_value) == (1.0, 1.0, 0.0)


# --------------------------------------------------------------------------- evaluate.compare, with stand-in models

FRACTION = 0.5


@dataclass
class _Model:
    """What evaluate.compare uses of a Predictor: its classes, threshold, card and probabilities."""

    labels: LabelSpace
    threshold: float
    score: Callable[[pd.DataFrame], FloatArray]
    card: dict[str, Any] = field(
        default_factory=lambda: {"data": {"holdout": {"identity": "key:row_id", "fraction": FRACTION}}}
    )

    @property
    def preprocessor(self) -> SimpleNamespace:
        return SimpleNamespace(labels=self.labels, threshold=self.threshold)

    def predict_proba(self, frame: pd.DataFrame, batch_size: int) -> FloatArray:
        return self.score(frame)


def _binary_new(frame: pd.DataFrame) -> FloatArray:
    label, x0 = frame["label"].to_numpy(dtype=np.float64), frame["x0"].to_numpy(dtype=np.float64)
    return np.asarray(np.clip(0.3 + 0.3 * label + 0.2 * np.tanh(x0), 0.0, 1.0), dtype=np.float64)


def _binary_old(frame: pd.DataFrame) -> FloatArray:
    label, x1 = frame["label"].to_numpy(dtype=np.float64), frame["x1"].to_numpy(dtype=np.float64)
    return np.asarray(np.clip(0.35 + 0.2 * label + 0.3 * np.tanh(x1), 0.0, 1.0), dtype=np.float64)


def _compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, _Model], frame: pd.DataFrame, *extra: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """compare() on ``frame`` with the stand-ins for --challenger new and --champion old; also the holdout rows."""
    contract = synthetic.contract()
    if models["new"].labels.task == "multiclass":
        contract["columns"][-1]["max"] = len(models["new"].labels.classes) - 1
    (tmp_path / "contract.json").write_text(json.dumps(contract), encoding="utf-8")
    frame.to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.setattr(evaluate, "Predictor", SimpleNamespace(load=lambda path, *_: models[Path(path).name]))
    argv = ["--challenger", str(tmp_path / "new"), "--champion", str(tmp_path / "old"), "--data"]
    argv += [str(tmp_path / "rows.csv"), "--contract", str(tmp_path / "contract.json"), "--output", "unused.json"]
    argv += ["--holdout-fraction", str(FRACTION), "--bootstrap", "200", *extra]
    result = evaluate.compare(evaluate.build_parser().parse_args(argv))
    rule = HoldoutRule(FRACTION, "row_id", tuple(c["name"] for c in contract["columns"]))
    return result, frame.loc[rule.mask(frame)].reset_index(drop=True)


def test_compare_judges_each_model_at_its_own_threshold_and_orients_mcnemar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b counts the rows the champion alone gets right, c the challenger's; each model predicts with the threshold
    in its own preprocessing.json (0.45 and 0.6 here), in McNemar, per_class and every guardrail's estimate."""
    space = LabelSpace("binary", ("0", "1"))
    models = {"new": _Model(space, 0.45, _binary_new), "old": _Model(space, 0.6, _binary_old)}
    frame = synthetic.frame(800, seed=11, positive_rate=0.3)
    extra = [
        "--guardrail-metrics",
        "recall,precision",
        "--class-guardrail",
        "recall:1",
        "--guardrail-confidence",
        "0.9",
    ]
    result, rows = _compare(tmp_path, monkeypatch, models, frame, *extra)
    y = rows["label"].to_numpy()
    new, old = (_binary_new(rows) >= 0.45).astype(int), (_binary_old(rows) >= 0.6).astype(int)
    assert result["n_holdout"] == len(rows)
    assert result["n_positive"] == min(int(y.sum()), int((1 - y).sum()))
    right_new, right_old = new == y, old == y
    assert result["mcnemar"]["b"] == int((right_old & ~right_new).sum())
    assert result["mcnemar"]["c"] == int((right_new & ~right_old).sum())
    assert result["mcnemar"]["b"] != result["mcnemar"]["c"]

    def recall(predicted: npt.NDArray[np.int64]) -> float:
        return float((predicted[y == 1] == 1).mean())

    def precision(predicted: npt.NDArray[np.int64]) -> float:
        return float((y[predicted == 1] == 1).mean())

    assert result["per_class"]["challenger"]["1"]["recall"] == pytest.approx(recall(new))
    assert result["per_class"]["champion"]["1"]["recall"] == pytest.approx(recall(old))
    guardrails = result["guardrail_differences"]
    assert guardrails["recall"]["estimate"] == pytest.approx(recall(new) - recall(old))
    assert guardrails["precision"]["estimate"] == pytest.approx(precision(new) - precision(old))
    assert {d["confidence"] for d in guardrails.values()} == {0.9}, "--guardrail-confidence, not --confidence"
    [per_class] = result["class_guardrail_differences"]
    assert (per_class["class"], per_class["confidence"]) == ("1", 0.9)
    assert per_class["estimate"] == pytest.approx(recall(new) - recall(old))
    assert result["difference"]["confidence"] == 0.95


def test_compare_counts_the_rarest_class_present_and_skips_a_class_without_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declared class with no holdout row: n_positive is the rarest class present (not 0), its per_class entry
    is undefined and its guardrail is left out (there is nothing to compare)."""
    space = LabelSpace("multiclass", ("0", "1", "2"))

    def scores(frame: pd.DataFrame) -> FloatArray:
        first = np.clip(0.7 - 0.4 * frame["label"].to_numpy() + 0.1 * np.tanh(frame["x0"].to_numpy()), 0.05, 0.9)
        return np.column_stack([first, 0.95 - first, np.full(len(frame), 0.05)])

    models = {"new": _Model(space, 0.5, scores), "old": _Model(space, 0.5, scores)}
    frame = synthetic.frame(600, seed=12, positive_rate=0.2)
    result, rows = _compare(tmp_path, monkeypatch, models, frame, "--class-guardrail", "recall:2")
    counts = np.bincount(rows["label"].to_numpy(), minlength=3)
    assert counts[2] == 0
    assert result["n_positive"] == int(counts[:2].min()) > 0
    assert result["per_class"]["challenger"]["2"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert result["class_guardrail_differences"] == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("--confidence", "1.0"), ("--confidence", "0.5"), ("--guardrail-confidence", "0.5"), ("--bootstrap", "99")],
)
def test_compare_refuses_an_interval_it_cannot_compute_before_reading_anything(
    option: str, value: str, tmp_path: Path
) -> None:
    argv = ["--challenger", str(tmp_path / "missing"), "--data", str(tmp_path), "--contract", str(tmp_path / "c.json")]
    args = evaluate.build_parser().parse_args([*argv, "--output", "x.json", option, value])
    with pytest.raises(TrainingJobError, match=option):
        evaluate.compare(args)


# --------------------------------------------------------------------------- the holdout both models are scored on


def _blake2b_64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def test_a_row_without_a_key_is_hashed_by_its_documented_value_identity() -> None:
    """holdout.py: each value as ``<length>:<text>`` (``~`` where missing), joined with ``|``, in contract order;
    an empty text is not a missing value; a column absent from the frame is missing; a missing key column reads as
    no key at all."""
    rule = HoldoutRule(0.3, "id", ("name", "size", "flag", "gone"))
    frame = pd.DataFrame({"name": ["ab", "", None], "size": [42.0, 0.5, np.nan], "flag": [True, False, np.True_]})
    frame["flag"] = frame["flag"].astype(object)
    expected = ["2:ab|2:42|1:1|~", "0:|3:0.5|1:0|~", "~|~|1:1|~"]
    assert rule.hashes(frame).tolist() == [_blake2b_64(text) for text in expected]
    assert HoldoutRule(0.3, None, ("size", "name", "flag", "gone")).identity == "values:size,name,flag,gone"


def test_canonical_text_is_the_same_for_every_dtype_a_value_can_arrive_in() -> None:
    as_object = pd.Series([42.0, np.True_, "x", 2.0**63, None], dtype=object)
    assert holdout.canonical_texts(as_object) == ["42", "1", "x", repr(2.0**63), None]
    assert holdout.canonical_texts(pd.Series([2.0**63, -3.0, 1.5])) == [repr(2.0**63), "-3", "1.5"]
    assert holdout.canonical_texts(pd.Series(["a", None, ""], dtype="string")) == ["a", None, ""]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_holdout_fraction_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        holdout.threshold(fraction)
