"""High-cardinality categorical features: profiles keep the top values and lump the rest into ``other``.

A value the reference lumped into ``other`` has an unknown share there, not a share of 0, so two
samples of the same distribution must not drift; a real shift still must.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shared.drift import compare
from shared.profile import DatasetProfile
from shared.spec import DataContract, DriftThresholds
from shared.validation import validate

MERCHANTS = 2000
CONTRACT = DataContract.model_validate(
    {
        "label": "y",
        "columns": [{"name": "merchant_id", "type": "string"}, {"name": "y", "type": "int", "min": 0, "max": 1}],
    }
)
# Zipf-like popularity: the top 100 merchants (what a profile keeps) hold under half of the rows.
POPULARITY = 1.0 / np.arange(1, MERCHANTS + 1) ** 0.8
POPULARITY /= POPULARITY.sum()
THRESHOLDS = DriftThresholds(psi=0.2, jensen_shannon=0.1)  # the fraud spec's


def merchants(rows: int, seed: int, popularity: np.ndarray = POPULARITY) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = [f"m{i:05d}" for i in rng.choice(MERCHANTS, rows, p=popularity)]
    return pa.table({"merchant_id": ids, "y": np.zeros(rows, dtype=np.int64)})


def profile_of(table: pa.Table, reference: DatasetProfile | None = None) -> DatasetProfile:
    report = validate(table, CONTRACT, reference=reference)
    assert report.profile is not None
    return report.profile


@pytest.fixture(scope="module")
def reference() -> DatasetProfile:
    profile = profile_of(merchants(100_000, seed=1))
    merchant = profile.columns["merchant_id"].categorical
    assert merchant is not None
    assert merchant.other > merchant.total / 2  # most rows are in the reference's ``other``
    return profile


@pytest.mark.parametrize("seed", range(7, 12))
@pytest.mark.parametrize("rows", [3000, 30_000])
def test_the_same_distribution_does_not_drift(reference: DatasetProfile, rows: int, seed: int) -> None:
    current = profile_of(merchants(rows, seed), reference)
    column = compare(reference, current, THRESHOLDS, columns=["merchant_id"]).columns[0]
    assert not column.drifted, column.reasons
    assert column.new_values == []  # the reference has ``other``: no value can be called new


def test_traffic_moving_to_the_merchants_the_reference_lumped_together_drifts(reference: DatasetProfile) -> None:
    shifted = POPULARITY.copy()
    shifted[:100] *= 0.5  # half of the popular merchants' traffic goes to the long tail
    shifted[100:] *= (1 - shifted[:100].sum()) / shifted[100:].sum()
    report = compare(reference, profile_of(merchants(3000, 7, shifted), reference), THRESHOLDS, ["merchant_id"])
    assert report.columns[0].drifted, report.summary()


def test_reshuffled_popularity_drifts(reference: DatasetProfile) -> None:
    shuffled = np.random.default_rng(0).permutation(POPULARITY)
    report = compare(reference, profile_of(merchants(3000, 7, shuffled), reference), THRESHOLDS, ["merchant_id"])
    assert report.columns[0].drifted, report.summary()


def test_new_values_are_information_not_drift() -> None:
    """The reference kept every value it saw, so an unseen one is new: listed, and a note, but no drift."""
    rng = np.random.default_rng(5)
    letters = ["a", "b", "c", "d"]
    reference = profile_of(pa.table({"merchant_id": rng.choice(letters, 5000).tolist(), "y": np.zeros(5000, int)}))
    values = [*rng.choice(letters, 4990).tolist(), *["zz"] * 10]
    current = profile_of(pa.table({"merchant_id": values, "y": np.zeros(5000, int)}), reference)
    report = compare(reference, current, THRESHOLDS, ["merchant_id"])
    column = report.columns[0]
    assert column.new_values == ["zz"]
    assert not column.drifted, column.reasons
    assert report.notes == ["merchant_id: new values (information, not drift): zz"]
