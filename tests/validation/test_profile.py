"""Profiles merge exactly (up to float rounding), associatively, and survive JSON."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.profile import (
    DatasetProfile,
    ProfileBuilder,
    ProfileError,
    ProfileMismatch,
    merge_profiles,
    quantile_edges,
)
from shared.spec import DataContract

CONTRACT = DataContract.model_validate(
    {
        "label": "y",
        "columns": [
            {"name": "x", "type": "float"},
            {"name": "c", "type": "category"},
            {"name": "y", "type": "int"},
        ],
    }
)
EDGES = {"x": [-10.0, -1.0, 0.0, 0.5, 3.0, 100.0], "y": [0.0, 1.0]}

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.none()
rows = st.lists(st.tuples(values, st.sampled_from(["a", "b", "c", None]), st.integers(0, 3)), max_size=60)


def profile_of(batch: list[tuple[float | None, str | None, int]], chunk: int = 7) -> DatasetProfile:
    """Profile through the builder, several record batches per profile like a real pass."""
    builder = ProfileBuilder(CONTRACT, edges=EDGES, sample_size=500)
    for start in range(0, len(batch), chunk):
        part = batch[start : start + chunk]
        builder.add_rows(len(part))
        builder.update("x", pa.array([r[0] for r in part], pa.float64()))
        builder.update("c", pa.array([r[1] for r in part], pa.string()))
        builder.update("y", pa.array([r[2] for r in part], pa.int64()))
    return builder.finish()


def assert_close(p: DatasetProfile, q: DatasetProfile) -> None:
    assert p.rows == q.rows
    assert p.columns.keys() == q.columns.keys()
    for name, a in p.columns.items():
        b = q.columns[name]
        assert (a.rows, a.nulls, a.kind) == (b.rows, b.nulls, b.kind)
        if a.numeric is not None and b.numeric is not None:
            x, z = a.numeric, b.numeric
            assert x.count == z.count
            assert (x.min, x.max) == (z.min, z.max)
            scale = max(1.0, abs(x.mean))
            assert math.isclose(x.mean, z.mean, rel_tol=1e-9, abs_tol=1e-9 * scale)
            assert math.isclose(x.m2, z.m2, rel_tol=1e-7, abs_tol=1e-6 * scale * scale)
            assert x.edges == z.edges
            assert list(x.histogram()) == list(z.histogram())
            assert sorted(x.sample.tolist()) == sorted(z.sample.tolist())  # whole data fits the sample
        if a.categorical is not None and b.categorical is not None:
            assert a.categorical.counts == b.categorical.counts
            assert a.categorical.other == b.categorical.other


@settings(max_examples=60, deadline=None)
@given(rows, rows, rows)
def test_merge_is_associative(a: list, b: list, c: list) -> None:  # type: ignore[type-arg]
    pa_, pb, pc_ = profile_of(a), profile_of(b), profile_of(c)
    assert_close(pa_.merge(pb).merge(pc_), pa_.merge(pb.merge(pc_)))


@settings(max_examples=60, deadline=None)
@given(rows, rows)
def test_profile_of_union_equals_merge_of_profiles(a: list, b: list) -> None:  # type: ignore[type-arg]
    assert_close(profile_of(a + b), profile_of(a).merge(profile_of(b)))


@settings(max_examples=30, deadline=None)
@given(rows)
def test_json_round_trip(a: list) -> None:  # type: ignore[type-arg]
    profile = profile_of(a)
    text = profile.to_json()
    assert_close(DatasetProfile.from_json(text), profile)
    assert DatasetProfile.from_json(text).to_json() == text


def test_moments_match_numpy_on_large_offsets() -> None:
    # A huge common offset is where naive sum-of-squares variance loses every digit.
    rng = np.random.default_rng(0)
    x = 1e9 + rng.normal(0, 1, 100_000)
    parts = [profile_of([(float(v), "a", 0) for v in chunk], chunk=4096) for chunk in np.array_split(x, 5)]
    merged = merge_profiles(parts).columns["x"].numeric
    assert merged is not None
    assert merged.mean == pytest.approx(x.mean(), rel=1e-12)
    assert merged.variance == pytest.approx(x.var(), rel=1e-6)


def test_sample_is_bounded_and_uniform() -> None:
    builder = ProfileBuilder(CONTRACT, sample_size=1000)
    x = np.arange(200_000, dtype=np.float64)
    for chunk in np.array_split(x, 20):
        builder.update("x", pa.array(chunk))
    numeric = builder.finish().columns["x"].numeric
    assert numeric is not None
    assert numeric.sample.size == 1000
    # A uniform sample of 0..199999: its mean is within a few standard errors of the true mean.
    assert abs(numeric.sample.mean() - x.mean()) < 5 * x.std() / math.sqrt(1000)
    assert len(numeric.edges or []) == 19  # quantile edges from the first record batch


def test_histograms_with_different_edges_do_not_merge() -> None:
    a = ProfileBuilder(CONTRACT, edges={"x": [0.0, 1.0]})
    b = ProfileBuilder(CONTRACT, edges={"x": [0.0, 2.0]})
    a.update("x", pa.array([0.5]))
    b.update("x", pa.array([0.5]))
    with pytest.raises(ProfileMismatch, match="same reference"):
        a.finish().merge(b.finish())


def test_top_k_keeps_the_most_frequent_values_and_an_other_bucket() -> None:
    builder = ProfileBuilder(CONTRACT, top_k=3)
    values = ["a"] * 50 + ["b"] * 40 + ["c"] * 30 + [f"rare{i}" for i in range(20)]
    builder.update("c", pa.array(values))
    categorical = builder.finish().columns["c"].categorical
    assert categorical is not None
    assert categorical.counts == {"a": 50, "b": 40, "c": 30}
    assert categorical.other == 20


def test_quantile_edges() -> None:
    assert quantile_edges(np.arange(101, dtype=float), bins=4) == [25.0, 50.0, 75.0]
    assert quantile_edges([1.0, 1.0, 1.0, 2.0], bins=4) == [1.0, 1.25]  # repeated quantiles collapse
    assert quantile_edges([float("nan")]) == []
    with pytest.raises(ValueError, match="bins"):
        quantile_edges([1.0], bins=0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"version": 99}', "version"),
        ('{"version": 1}', "not a perennial profile"),
        ('{"columns": [{"name": "amount"}], "label": "y"}', r"not a perennial profile \(it has no version\)"),
    ],
)
def test_bad_profile_json_says_what_to_do(text: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        DatasetProfile.from_json(text)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=300), st.integers(0, 2**40))
def test_small_integer_batches_profile_like_floats(values: list[int], offset: int) -> None:
    """Integers spanning few values are profiled from a bincount; the profile is the float one."""
    from shared.profile import NumericProfile

    x = np.asarray(values, dtype=np.int64) + offset
    edges = sorted({float(offset), offset + 0.5, offset - 3.0, offset + 250.0})
    by_counts, by_floats = NumericProfile(edges=edges), NumericProfile(edges=edges)
    by_counts.update(x, np.random.default_rng(0), 20, (float(x.min()), float(x.max())))
    by_floats.update(x.astype(np.float64), np.random.default_rng(0), 20)
    assert (by_counts.count, by_counts.min, by_counts.max) == (by_floats.count, by_floats.min, by_floats.max)
    assert by_counts.mean == pytest.approx(by_floats.mean, rel=1e-12)
    assert by_counts.m2 == pytest.approx(by_floats.m2, rel=1e-9, abs=1e-9)
    assert list(by_counts.histogram()) == list(by_floats.histogram())
    assert sorted(by_counts.sample.tolist()) == sorted(by_floats.sample.tolist())


@pytest.mark.parametrize("chunks", [1, 3, 20, 400])
def test_sample_is_uniform_whatever_the_batch_sizes(chunks: int) -> None:
    """Bottom-k with a cut: big first batches are keyed only below ~2k/n, and stay uniform."""
    builder = ProfileBuilder(CONTRACT, sample_size=2000)
    x = np.arange(400_000, dtype=np.float64)
    for chunk in np.array_split(x, chunks):
        builder.update("x", pa.array(chunk))
    numeric = builder.finish().columns["x"].numeric
    assert numeric is not None
    sample = numeric.sample
    assert sample.size == 2000
    assert len(np.unique(sample)) == 2000  # without replacement
    # Each tenth of the range holds ~200 of the 2000 (binomial sd ~13): a chi-square test.
    observed = np.bincount((sample // 40_000).astype(int), minlength=10)
    chi2 = float(((observed - 200) ** 2 / 200).sum())
    assert chi2 < 27.9, observed  # the 0.999 quantile of chi-square with 9 degrees of freedom


def test_a_dictionary_that_repeats_a_value_still_counts_it_once_per_row() -> None:
    import pyarrow as pa

    from shared.spec import DataContract
    from shared.validation import validate

    contract = DataContract.model_validate(
        {
            "label": "y",
            "min_rows": 1,
            "columns": [
                {"name": "c", "type": "category", "nullable": False, "categories": ["a", "b"]},
                {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
            ],
        }
    )
    # Arrow allows a dictionary with "a" twice (e.g. a table concatenated by a caller).
    column = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 0], pa.int32()), pa.array(["a", "b", "a"]))
    report = validate(pa.table({"c": column, "y": pa.array([0, 1, 0, 1])}), contract)
    assert report.profile is not None
    categorical = report.profile.columns["c"].categorical
    assert categorical is not None
    assert categorical.counts == {"a": 3, "b": 1}
