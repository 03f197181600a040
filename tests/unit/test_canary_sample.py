"""The canary's view of a deployment counts positive predictions the way score.py records them: by class index
(1 is the positive class, whatever the label values), so the positive-rate gate works for any positive_class."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.activities import _sample
from shared.platform import DeploymentMetrics


@pytest.mark.parametrize("positive_class", [1, 0, True, "fraud"])
def test_positive_predictions_are_counted_by_class_index(positive_class: int | bool | str) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    metrics = DeploymentMetrics(
        "fraud-ep", "fraud-v2", now, now, requests=4, errors=0, p50_ms=5.0, p95_ms=9.0, p99_ms=9.0,
        predicted_classes=("1", "0", "0", "1"),
    )  # fmt: skip
    assert _sample(metrics, positive_class).predicted_positive == 2
