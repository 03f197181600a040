"""``drifted_share`` must be above 0: a share of 0 asked for a retrain with no drifted column."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.live import input_drift
from shared.spec import DriftThresholds, ModelSpec, TriggerSpec
from tests.live.test_drift import reference_profile, scored


@pytest.mark.parametrize("share", [0, 0.0, -0.1, 1.5])
def test_a_drifted_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValidationError, match="drifted_share"):
        TriggerSpec.model_validate({"drift": {"drifted_share": share}})


def test_a_drifted_share_of_one_is_allowed() -> None:
    assert DriftThresholds(drifted_share=1.0).drifted_share == 1.0


def test_no_drifted_column_is_never_dataset_drift(fraud_spec: ModelSpec) -> None:
    """Even with thresholds that skipped validation (``model_copy(update=...)``), drift needs a drifted column."""
    thresholds = fraud_spec.triggers.drift.model_copy(update={"drifted_share": 0.0})
    spec = fraud_spec.model_copy(update={"triggers": fraud_spec.triggers.model_copy(update={"drift": thresholds})})
    summary, report, _ = input_drift(scored(1500, seed=2), spec, reference_profile(fraud_spec))
    assert summary is not None
    assert report is not None
    assert summary.drifted_columns == ()
    assert not summary.drifted, report.summary()
