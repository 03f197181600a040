"""Missing values are drift: a feed that stops sending a feature must not look like a quiet day."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import norm

from shared import drift
from shared.drift import compare
from shared.live import input_drift
from shared.profile import DatasetProfile
from shared.spec import DataContract, ModelSpec
from shared.validation import validate
from tests.live.test_drift import reference_profile, scored

Row = dict[str, Any]


def mutated(rows: int, seed: int, mutate: Callable[[int, Row], Row]) -> list[Any]:
    """Scoring records from the reference world, each input row passed through ``mutate(index, row)``."""
    records, index = [], 0
    for record in scored(rows, seed=seed):
        inputs = []
        for row in record.inputs:
            inputs.append(mutate(index, dict(row)))
            index += 1
        records.append(replace(record, inputs=tuple(inputs)))
    return records


def blank(*names: str, keep_every: int = 0) -> Callable[[int, Row], Row]:
    """Set ``names`` to None, except on every ``keep_every``-th row (0: on every row)."""

    def mutate(index: int, row: Row) -> Row:
        if not keep_every or index % keep_every:
            row.update(dict.fromkeys(names))
        return row

    return mutate


def test_a_feature_mostly_missing_drifts(fraud_spec: ModelSpec) -> None:
    broken = ("amount", "merchant_category", "txn_count_24h")
    records = mutated(3000, 11, blank(*broken, keep_every=10))  # 90 % missing
    summary, report, _ = input_drift(records, fraud_spec, reference_profile(fraud_spec))
    assert summary is not None
    assert report is not None
    assert set(summary.drifted_columns) == set(broken), report.summary()
    assert summary.drifted, report.summary()
    amount = next(c for c in report.columns if c.column == "amount")
    assert amount.current_missing_rate == pytest.approx(0.9)
    assert amount.reference_missing_rate == 0.0
    assert any(r.startswith("missing rate 90.0% vs 0.0% in the reference") for r in amount.reasons), amount.reasons


def test_a_feature_with_no_values_drifts_instead_of_being_skipped(fraud_spec: ModelSpec) -> None:
    gone = ("amount", "merchant_category", "txn_count_24h", "distance_from_home_km")
    summary, report, _ = input_drift(mutated(3000, 11, blank(*gone)), fraud_spec, reference_profile(fraud_spec))
    assert summary is not None
    assert report is not None
    assert report.skipped == {}
    assert summary.columns_checked == len(fraud_spec.data.feature_columns)
    assert set(summary.drifted_columns) == set(gone)
    assert summary.drifted
    for column in (c for c in report.columns if c.column in gone):
        assert column.reasons[0] == "no values in the current data"
        assert column.current_count == 0
        assert column.method == "missing"


def test_values_of_the_wrong_type_count_as_missing_and_drift(fraud_spec: ModelSpec) -> None:
    def garble(_: int, row: Row) -> Row:
        row.update(amount=f"{row['amount']} EUR", txn_count_24h="n/a", account_age_days="unknown")
        return row

    summary, report, _ = input_drift(mutated(3000, 11, garble), fraud_spec, reference_profile(fraud_spec))
    assert summary is not None
    assert report is not None
    assert set(summary.drifted_columns) == {"amount", "txn_count_24h", "account_age_days"}
    assert summary.drifted


def test_a_small_rise_of_the_missing_rate_is_not_drift(fraud_spec: ModelSpec) -> None:
    """5 % of one nullable feature missing (vs ~0.7 % in training) is below the 10-point rise."""

    def one_in_twenty(index: int, row: Row) -> Row:
        if index % 20 == 0:
            row["distance_from_home_km"] = None
        return row

    records = mutated(3000, 11, one_in_twenty)
    summary, report, _ = input_drift(records, fraud_spec, reference_profile(fraud_spec))
    assert summary is not None
    assert report is not None
    column = next(c for c in report.columns if c.column == "distance_from_home_km")
    assert column.current_missing_rate is not None
    assert column.current_missing_rate > 0.04
    assert not column.drifted, column.reasons
    assert not summary.drifted


XY = DataContract.model_validate(
    {"label": "y", "columns": [{"name": "x", "type": "float", "nullable": True}, {"name": "y", "type": "int"}]}
)


def profile(values: list[float | None]) -> DatasetProfile:
    report = validate(pa.table({"x": pa.array(values, pa.float64()), "y": [0] * len(values)}), XY)
    assert report.profile is not None
    return report.profile


def test_a_large_but_insignificant_rise_is_not_drift() -> None:
    """10 % → 20 % missing over 50 rows a side: a 10-point rise, but p ≈ 0.08, noise at this size."""
    rng = np.random.default_rng(3)
    ref = [None if i < 5 else float(v) for i, v in enumerate(rng.normal(0, 1, 50))]
    cur = [None if i < 10 else float(v) for i, v in enumerate(rng.normal(0, 1, 50))]
    column = compare(profile(ref), profile(cur), columns=["x"]).columns[0]
    assert column.current_missing_rate == pytest.approx(0.1 + drift.MISSING_RATE_RISE)
    assert column.missing_pvalue is not None
    assert column.missing_pvalue > 0.01
    assert not column.drifted


def test_a_column_without_reference_values_is_skipped() -> None:
    report = compare(profile([None] * 300), profile([1.0] * 300), columns=["x"])
    assert report.columns == []
    assert report.skipped == {"x": "no values in the reference data: nothing to compare"}
    assert not report.drifted


@pytest.mark.parametrize(("ref", "cur"), [((5, 300), (60, 300)), ((0, 3000), (3, 20)), ((150, 3000), (30, 200))])
def test_the_missing_rate_test_is_the_pooled_two_proportion_z_test(ref: tuple[int, int], cur: tuple[int, int]) -> None:
    pooled = (ref[0] + cur[0]) / (ref[1] + cur[1])
    z = (cur[0] / cur[1] - ref[0] / ref[1]) / math.sqrt(pooled * (1 - pooled) * (1 / ref[1] + 1 / cur[1]))
    assert drift.missing_rise_pvalue(ref[0], ref[1], cur[0], cur[1]) == pytest.approx(float(norm.sf(z)), rel=1e-9)
    assert drift.missing_rise_pvalue(0, 100, 0, 100) == 1.0  # nothing missing: nothing rose
