"""The canary's view of a deployment counts the predictions its positive-rate gate watches the way score.py records
them: by class index (1 is a binary model's positive class, whatever the label values), so the gate works for any
positive_class; a multiclass model has no positive class, so the gate watches the class whose share moved most, and
says how many classes it was chosen among (the canary tests it at alpha / K for that choice)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from functions.activities import _sample
from shared.live import watched_prediction
from shared.platform import DeploymentMetrics


def _metrics(deployment: str, predicted: Sequence[str]) -> DeploymentMetrics:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return DeploymentMetrics(
        "ep", deployment, now, now, requests=len(predicted), errors=0, p50_ms=5.0, p95_ms=9.0, p99_ms=9.0,
        predicted_classes=tuple(predicted),
    )  # fmt: skip


@pytest.mark.parametrize("positive_class", [1, 0, True, "fraud"])
def test_positive_predictions_are_counted_by_class_index(positive_class: int | bool | str) -> None:
    metrics = _metrics("fraud-v2", ("1", "0", "0", "1"))
    watched = watched_prediction("binary", positive_class, metrics.predicted_classes, ("0",))
    assert _sample(metrics, watched).predicted_positive == 2


def test_a_multiclass_canary_watches_the_class_whose_share_moved_most() -> None:
    """Before, it counted class index 1 (the binary positive class): a challenger that sent half of class 3's
    tickets to class 0 passed the gate, both deployments predicting class 1 as often."""
    champion = _metrics("tickets-v1", ["0"] * 20 + ["1"] * 30 + ["2"] * 10 + ["3"] * 40)
    challenger = _metrics("tickets-v2", ["0"] * 40 + ["1"] * 30 + ["2"] * 10 + ["3"] * 20)
    watched = watched_prediction("multiclass", 1, challenger.predicted_classes, champion.predicted_classes)
    counted = (_sample(challenger, watched).predicted_positive, _sample(champion, watched).predicted_positive)
    assert counted in ((40, 20), (20, 40))  # class 0 or class 3: both moved by 20 points
    assert watched("0") != watched("1")
    # Chosen among the 4 classes predicted: the canary tests it at alpha / 4 (analyse_canary's ``watched``).
    assert watched.chosen is not None
    assert (watched.chosen.label, watched.chosen.among) == ("0", 4)


def test_the_classes_counted_are_those_either_deployment_predicted() -> None:
    watched = watched_prediction("multiclass", 1, ["0", "1", "1"], ["2", "3", "3", "4"])
    assert watched.chosen is not None
    assert watched.chosen.among == 5


def test_a_multiclass_canary_with_one_side_silent_watches_nothing() -> None:
    challenger = _metrics("tickets-v2", ["0", "1", "2"])
    watched = watched_prediction("multiclass", 1, challenger.predicted_classes, ())
    assert _sample(challenger, watched).predicted_positive == 0
    assert watched.chosen is None


@pytest.mark.parametrize("positive_class", [1, "fraud"])
def test_a_binary_canary_watches_its_positive_class_without_a_correction(positive_class: int | str) -> None:
    assert watched_prediction("binary", positive_class, ["0", "1"], ["1"]).chosen is None
