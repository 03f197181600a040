"""A multiclass model's positive-rate gate watches the class whose share moved most (``shared.live.watched_prediction``).
Picking the largest of K shifts and testing it at the metric's alpha made the gate about K times too eager (K=10,
300 rows a side: 2 % of A/A bakes failed at confidence 0.99, whose stated bound is 1 %); it is tested at alpha / K."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from shared.canary import CanaryInputError, CanaryVerdict, DeploymentSample, MetricResult, WatchedClass, analyse_canary
from shared.live import watched_prediction
from shared.spec import Gates
from tests.policy.synthetic import GATES

K = 10


def _sample(name: str, predicted: Sequence[str], watched: object) -> DeploymentSample:
    assert callable(watched)
    positives = sum(1 for p in predicted if watched(p))
    return DeploymentSample(
        name, len(predicted), 0, p50_ms=20.0, p95_ms=40.0, p99_ms=50.0, predicted_positive=positives
    )


def _judge(new: Sequence[str], old: Sequence[str], gates: Gates) -> CanaryVerdict:
    """What rollout_analyse does: watch the most-moved class, count it on both sides, pass the choice on."""
    watched = watched_prediction("multiclass", 1, new, old)
    return analyse_canary(_sample("new", new, watched), _sample("old", old, watched), gates, watched=watched.chosen)


def _positive_rate(verdict: CanaryVerdict) -> MetricResult:
    return next(m for m in verdict.metrics if m.metric == "positive_rate")


def _classes(rng: np.random.Generator, n: int, shares: Sequence[float]) -> list[str]:
    return [str(c) for c in rng.choice(len(shares), size=n, p=np.asarray(shares))]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_healthy_multiclass_challenger_fails_no_more_often_than_stated(seed: int) -> None:
    """A/A: the same 10-class model on both sides, 300 rows each. At confidence 0.8 (so that a few hundred bakes
    measure it) the positive-rate metric's budget is alpha/4 = 5 %, and a verdict may fail with probability <= 20 %.
    Watching the most-moved class at alpha flagged ~31 % of these bakes; at alpha/10, ~3 %. The 2-point margin is
    binomial noise over 400 bakes (seeds 0-9 measured 2.0-4.5 %; without the correction 30-33 %)."""
    gates = Gates(max_positive_rate_shift=0.02, min_samples=50, confidence=0.8)
    rng = np.random.default_rng(seed)
    bakes, flagged, failed = 400, 0, 0
    uniform = [1 / K] * K
    for _ in range(bakes):
        verdict = _judge(_classes(rng, 300, uniform), _classes(rng, 300, uniform), gates)
        flagged += _positive_rate(verdict).outcome in ("breach", "worse")
        failed += verdict.verdict == "fail"
    alpha = (1 - gates.confidence) / 4
    assert flagged / bakes <= alpha + 0.02
    assert failed / bakes <= 1 - gates.confidence


def test_a_real_shift_of_one_class_is_still_caught() -> None:
    """The challenger sends 8 points of traffic from class 0 to class 3: caught at alpha/10 in every bake."""
    rng = np.random.default_rng(7)
    before = [0.18] + [0.82 / (K - 1)] * (K - 1)
    after = list(before)
    after[0] -= 0.08
    after[3] += 0.08
    for _ in range(20):
        verdict = _judge(_classes(rng, 1000, after), _classes(rng, 1000, before), GATES)
        metric = _positive_rate(verdict)
        assert (verdict.verdict, metric.outcome) == ("fail", "breach")
        assert metric.evidence["watched_class"] in ("0", "3")


def test_the_evidence_names_the_watched_class_and_the_corrected_alpha() -> None:
    old = ["0"] * 200 + ["1"] * 300 + ["2"] * 100 + ["3"] * 400
    new = ["0"] * 400 + ["1"] * 300 + ["2"] * 100 + ["3"] * 200
    verdict = _judge(new, old, GATES)
    metric = _positive_rate(verdict)
    alpha = (1 - GATES.confidence) / 4
    assert metric.outcome == "breach"
    assert metric.evidence["watched_class"] == "0"  # class 0 and 3 both moved 20 points: the first in order
    assert metric.evidence["classes_compared"] == 4
    assert metric.evidence["metric_alpha"] == pytest.approx(alpha)
    assert metric.evidence["alpha"] == pytest.approx(alpha / 4)
    assert metric.reason.startswith(
        "class '0' share (the most moved of 4 classes) 40.00% (400/1000) vs champion 20.00%"
    )
    assert f"tested at alpha/4 = {alpha / 4:.3g} (Bonferroni over the classes)" in metric.reason
    assert f"< {alpha / 4:.3g})" in metric.reason


def test_a_binary_positive_rate_is_judged_as_before() -> None:
    """A binary model's positive class is fixed in advance: no correction, no extra evidence."""
    watched = watched_prediction("binary", 1, ["1", "0"], ["0"])
    assert watched.chosen is None
    new = DeploymentSample("new", 1000, 0, p50_ms=20.0, p95_ms=40.0, p99_ms=50.0, predicted_positive=120)
    old = DeploymentSample("old", 1000, 0, p50_ms=20.0, p95_ms=40.0, p99_ms=50.0, predicted_positive=20)
    metric = _positive_rate(analyse_canary(new, old, GATES, watched=watched.chosen))
    assert metric.outcome == "breach"
    assert metric.evidence["alpha"] == pytest.approx((1 - GATES.confidence) / 4)
    assert not {"watched_class", "classes_compared", "metric_alpha"} & set(metric.evidence)
    assert metric.reason.startswith("positive rate 12.00% (120/1000) vs champion 2.00% (20/1000)")
    assert "Bonferroni" not in metric.reason


@pytest.mark.parametrize("among", [0, -1, True])
def test_a_watched_class_is_chosen_among_at_least_one(among: int) -> None:
    with pytest.raises(CanaryInputError, match="is not a number of classes"):
        WatchedClass("3", among)
