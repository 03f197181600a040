"""Duplicate keys are found exactly within the bound and estimated, in bounded memory, beyond it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shared.keyset import KeySet, hash_keys


def test_string_hashes_are_distinct_and_stable() -> None:
    keys = pa.array([f"t{i:09d}" for i in range(200_000)] + ["", "a", "ab", "ba"])
    hashes = hash_keys(keys)
    assert len(np.unique(hashes)) == len(keys)
    assert np.array_equal(hashes, hash_keys(keys))
    # Offsets into a sliced array are honoured: the same strings hash the same.
    assert np.array_equal(hash_keys(keys.slice(10, 5)), hashes[10:15])
    assert hash_keys(pa.array(["x", None, "x"])).tolist() == [hashes[0] * 0 + hash_keys(pa.array(["x"]))[0]] * 2


def test_int_keys() -> None:
    assert len(np.unique(hash_keys(pa.array(np.arange(100_000))))) == 100_000


def test_duplicates_within_and_across_batches() -> None:
    keyset = KeySet(max_keys=10_000)
    first = keyset.add(hash_keys(pa.array(["a", "b", "a", "c"])))
    assert first.tolist() == [False, False, True, False]
    second = keyset.add(hash_keys(pa.array(["d", "c", "e", "d"])))
    assert second.tolist() == [False, True, False, True]
    assert keyset.tracked == 5
    assert keyset.coverage == 1.0


def test_memory_stays_bounded_and_duplicates_are_estimated() -> None:
    keyset = KeySet(max_keys=20_000)
    rng = np.random.default_rng(0)
    for batch in range(20):
        keys = np.arange(batch * 10_000, (batch + 1) * 10_000)
        # 500 rows per batch repeat a key from an earlier batch.
        repeats = rng.choice(batch * 10_000, 500, replace=False) if batch else np.array([], int)
        keyset.add(hash_keys(pa.array(np.concatenate([keys, repeats]))))
        assert keyset.tracked <= 20_000
    assert keyset.coverage < 1.0
    assert keyset.estimated_duplicates == pytest.approx(19 * 500, rel=0.2)


def test_max_keys_has_a_floor() -> None:
    with pytest.raises(ValueError, match="at least"):
        KeySet(max_keys=10)
