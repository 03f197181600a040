"""Drift metrics agree with scipy, and the verdicts find planted drift without false alarms."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from shared.drift import compare, jensen_shannon, ks_test, psi, wasserstein
from shared.profile import DatasetProfile
from shared.spec import DataContract, DriftThresholds
from shared.validation import validate

TOL = 1e-6


# --------------------------------------------------------------------------- metrics vs scipy


@pytest.mark.parametrize("seed", range(5))
def test_wasserstein_agrees_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    u, v = rng.normal(0, 1, 700), rng.standard_t(3, 900) + 0.3
    assert wasserstein(u, v) == pytest.approx(wasserstein_distance(u, v), abs=TOL)
    uw, vw = rng.random(700), rng.random(900)
    assert wasserstein(u, v, uw, vw) == pytest.approx(wasserstein_distance(u, v, uw, vw), abs=TOL)
    ints = rng.integers(0, 5, 300).astype(float)  # ties
    assert wasserstein(ints, ints[::-1] + 1) == pytest.approx(wasserstein_distance(ints, ints[::-1] + 1), abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_agrees_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 50, 8).astype(float), rng.integers(0, 50, 8).astype(float)
    q[0] = 0.0  # a category absent on one side
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=TOL)
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=TOL)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0, abs=TOL)  # disjoint: the maximum


def test_ks_agrees_with_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.1, 1, 3000)
    statistic, pvalue = ks_test(a, b)
    expected = ks_2samp(a, b)
    assert statistic == pytest.approx(expected.statistic, abs=TOL)
    assert pvalue == pytest.approx(expected.pvalue, abs=TOL)


def test_psi_matches_its_definition() -> None:
    r, c = np.array([50.0, 30.0, 20.0]), np.array([30.0, 30.0, 40.0])
    rp, cp = r / r.sum(), c / c.sum()
    assert psi(r, c) == pytest.approx(float(np.sum((cp - rp) * np.log(cp / rp))), abs=1e-12)
    assert psi(r, r) == 0.0
    assert psi([10, 0], [0, 10]) == pytest.approx(2 * (1 - 1e-4) * np.log(1 / 1e-4))  # 0 floored to 1e-4
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- profiles vs scipy on raw data

SMALL = DataContract.model_validate(
    {
        "label": "y",
        "columns": [{"name": "x", "type": "float"}, {"name": "c", "type": "category"}, {"name": "y", "type": "int"}],
    }
)


def test_profile_metrics_equal_scipy_on_the_raw_data() -> None:
    """When the sample holds every value, drift from profiles is exactly scipy on the raw columns."""
    rng = np.random.default_rng(7)
    ref_x, cur_x = rng.normal(5, 2, 3000), rng.normal(5.4, 2.5, 4000)
    ref_c = rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])
    cur_c = rng.choice(["a", "b", "c", "d"], 4000, p=[0.4, 0.3, 0.2, 0.1])
    reference = validate(pa.table({"x": ref_x, "c": ref_c, "y": np.zeros(3000, int)}), SMALL).profile
    assert reference is not None
    current = validate(pa.table({"x": cur_x, "c": cur_c, "y": np.zeros(4000, int)}), SMALL, reference=reference).profile
    assert current is not None
    report = compare(reference, current, columns=["x", "c"])
    x, c = report.columns
    assert x.wasserstein == pytest.approx(wasserstein_distance(ref_x, cur_x) / np.std(ref_x), abs=TOL)
    assert x.ks_pvalue == pytest.approx(ks_2samp(ref_x, cur_x).pvalue, abs=TOL)
    assert x.ks_statistic == pytest.approx(ks_2samp(ref_x, cur_x).statistic, abs=TOL)
    keys = ["a", "b", "c", "d"]
    p = [float(np.sum(ref_c == k)) for k in keys]
    q = [float(np.sum(cur_c == k)) for k in keys]
    assert c.jensen_shannon == pytest.approx(jensenshannon(p, q, base=2), abs=TOL)
    assert x.drifted
    assert c.drifted
    assert "new values: d" in c.reasons[-1]


# --------------------------------------------------------------------------- verdicts at scale

N = 1_000_000
NUMERIC = [f"x{i}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
WIDE = DataContract.model_validate(
    {
        "label": "x0",
        "columns": [{"name": n, "type": "float"} for n in NUMERIC]
        + [{"name": n, "type": "category"} for n in CATEGORICAL],
    }
)
FEATURES = NUMERIC[1:] + CATEGORICAL + ["x0"]


def wide_table(seed: int, drifted: tuple[str, ...] = ()) -> pa.Table:
    """20 columns of assorted shapes; ``drifted`` columns move by a modest, realistic amount."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(NUMERIC):
        shape = i % 4
        x = (
            rng.normal(10, 3, N)
            if shape == 0
            else rng.lognormal(2, 0.7, N)
            if shape == 1
            else rng.exponential(5, N)
            if shape == 2
            else rng.integers(0, 24, N).astype(float)
        )
        if name in drifted:
            x = x * 1.3 + 0.2 * x.std()
        columns[name] = pa.array(x)
    letters = pa.array(["a", "b", "c", "d", "e"])
    for name in CATEGORICAL:
        weights = np.array([0.4, 0.25, 0.15, 0.15, 0.05])
        if name in drifted:
            weights = np.array([0.25, 0.25, 0.15, 0.15, 0.20])
        codes = rng.choice(5, N, p=weights).astype(np.int32)
        columns[name] = pa.DictionaryArray.from_arrays(codes, letters)
    return pa.table(columns)


@pytest.fixture(scope="module")
def reference_profile() -> DatasetProfile:
    report = validate(wide_table(seed=1), WIDE)
    assert report.profile is not None
    return report.profile


def test_no_column_flagged_on_two_samples_of_the_same_distribution(reference_profile: DatasetProfile) -> None:
    current = validate(wide_table(seed=2), WIDE, reference=reference_profile).profile
    assert current is not None
    report = compare(reference_profile, current, DriftThresholds(), columns=FEATURES)
    assert len(report.columns) == 20
    assert report.drifted_columns == [], report.summary()
    assert not report.drifted
    # Not merely under the thresholds: far under them.
    assert max(c.wasserstein or 0 for c in report.columns) < 0.05
    assert max(c.psi or 0 for c in report.columns) < 0.01


def test_planted_drift_in_3_of_20_columns_is_found(reference_profile: DatasetProfile) -> None:
    planted = ("x3", "x6", "c2")
    current = validate(wide_table(seed=3, drifted=planted), WIDE, reference=reference_profile).profile
    assert current is not None
    report = compare(reference_profile, current, DriftThresholds(), columns=FEATURES)
    assert sorted(report.drifted_columns) == sorted(planted), report.summary()
    assert report.drifted_share == pytest.approx(3 / 20)
    assert not report.drifted  # 15% < the default 50% dataset threshold
    assert compare(reference_profile, current, DriftThresholds(drifted_share=0.1), columns=FEATURES).drifted


def test_small_batches_use_the_ks_test(reference_profile: DatasetProfile) -> None:
    rng = np.random.default_rng(11)
    same = {n: pa.array(rng.normal(10, 3, 400)) for n in NUMERIC}
    shifted = {n: pa.array(rng.normal(12, 3, 400)) for n in NUMERIC}
    for values, expect in ((same, False), (shifted, True)):
        table = pa.table({**values, **{c: pa.array(["a"] * 400) for c in CATEGORICAL}})
        current = validate(table, WIDE, reference=reference_profile).profile
        assert current is not None
        column = compare(reference_profile, current, columns=["x4"]).columns[0]
        assert column.method == "ks"
        assert column.drifted is expect
