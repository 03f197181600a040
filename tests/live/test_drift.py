"""Drift of recorded scoring inputs against the champion's reference profile."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from perennial_cli.synthetic import fraud_batch
from shared.live import input_drift, scoring_profile
from shared.platform import ScoringRecord
from shared.profile import DatasetProfile
from shared.spec import ModelSpec
from shared.validation import validate

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def reference_profile(spec: ModelSpec, rows: int = 3000, seed: int = 1) -> DatasetProfile:
    report = validate(pa.Table.from_pandas(fraud_batch(rows, seed=seed), preserve_index=False), spec.data)
    assert report.profile is not None
    return report.profile


def scored(
    rows: int, seed: int, drift: float = 0.0, per_request: int = 10, mirrored: bool = False
) -> list[ScoringRecord]:
    """Requests as the scoring server records them: JSON values, the label column absent."""
    frame = fraud_batch(rows, seed=seed, drift=drift).drop(columns=["is_fraud"])
    values: list[dict[str, Any]] = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    return [
        ScoringRecord(
            request_id=f"r{seed}-{i}",
            time=T0 + timedelta(seconds=i),
            deployment="blue",
            rows=len(values[i : i + per_request]),
            predictions=("0",) * len(values[i : i + per_request]),
            inputs=tuple(values[i : i + per_request]),
            mirrored=mirrored,
        )
        for i in range(0, rows, per_request)
    ]


def test_inputs_from_the_reference_world_do_not_drift(fraud_spec: ModelSpec) -> None:
    reference = reference_profile(fraud_spec)
    summary, report, notes = input_drift(scored(1500, seed=2), fraud_spec, reference)
    assert notes == []
    assert summary is not None
    assert report is not None
    assert not summary.drifted, report.summary()
    assert summary.columns_checked == len(fraud_spec.data.feature_columns)


def test_inputs_from_a_shifted_world_drift(fraud_spec: ModelSpec) -> None:
    reference = reference_profile(fraud_spec)
    summary, report, _ = input_drift(scored(1500, seed=3, drift=1.0), fraud_spec, reference)
    assert summary is not None
    assert report is not None
    assert summary.drifted, report.summary()
    assert "amount" in summary.drifted_columns
    assert summary.drifted_share >= fraud_spec.triggers.drift.drifted_share


def test_too_few_rows_say_too_little(fraud_spec: ModelSpec) -> None:
    summary, report, notes = input_drift(scored(150, seed=4), fraud_spec, reference_profile(fraud_spec))
    assert (summary, report) == (None, None)
    assert notes == ["only 150 < 200 recent input rows: drift not checked"]


def test_mirrored_copies_and_values_of_the_wrong_type_are_not_inputs(fraud_spec: ModelSpec) -> None:
    reference = reference_profile(fraud_spec)
    records = [
        *scored(300, seed=5),
        *scored(300, seed=6, mirrored=True),
        ScoringRecord(
            request_id="odd",
            time=T0,
            deployment="blue",
            inputs=({"amount": "lots", "hour": 3, "merchant_category": 7, "card_present": "yes"},),
        ),
    ]
    profile = scoring_profile(records, fraud_spec.data, reference)
    assert profile.rows == 301
    assert profile.columns["amount"].nulls == 1  # "lots" is not a float: counted missing
    assert profile.columns["merchant_category"].categorical is not None
    assert profile.columns["merchant_category"].categorical.counts.get("7") == 1
    # Same edges as the reference, so the two compare bin by bin.
    amount_edges = profile.columns["amount"].numeric.edges if profile.columns["amount"].numeric else None
    assert amount_edges == pytest.approx(reference.edges()["amount"])


def test_the_profile_is_bounded(fraud_spec: ModelSpec) -> None:
    profile = scoring_profile(scored(300, seed=7), fraud_spec.data, reference_profile(fraud_spec), max_rows=55)
    assert profile.rows == 55
