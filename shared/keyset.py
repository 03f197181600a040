"""Duplicate-key detection in bounded memory: 64-bit key hashes in sorted runs behind a bitmap.

Each key is hashed to 64 bits (FNV-1a over the UTF-8 bytes, vectorised over the Arrow
buffers, then a splitmix64 finaliser so the high bits are uniform). Seen hashes live in
sorted numpy runs, one per batch, plus a bitmap indexed by their leading bits. A batch is
sorted once (which also finds its own repeats); only the few keys whose bit is already set —
possible repeats, mostly false alarms — are binary-searched in the runs, so a batch costs about
one sort whatever the number of runs. Past ``MAX_RUNS`` runs the two shortest are merged
(a linear timsort merge), which keeps the merge work at O(n log(n / MAX_RUNS)).

Bound: at most ``max_keys`` hashes (8 bytes each: the default 2M keys = 16 MB, ~32 MB at peak while
runs merge) and a bitmap of 8 bytes per allowed key (16 MB by default). Past that, the set keeps
only the hashes below a threshold that halves each time the set fills again ("hash-space
sampling"): a key whose hash is kept is still checked exactly, so a duplicate key is found with
probability ``coverage`` and each one found counts 1 / coverage (at the time) towards the estimate.
Two distinct keys collide with probability ~n²/2⁶⁵ (1e-8 for a million keys), which could only
ever over-report a duplicate, never hide one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

U64 = np.dtype(np.uint64)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
MAX_RUNS = 24  # sorted runs of seen hashes kept before the two shortest are merged

HashArray = np.ndarray[Any, np.dtype[np.uint64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
IndexArray = np.ndarray[Any, np.dtype[np.intp]]


def _splitmix64(h: HashArray) -> HashArray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def hash_keys(array: pa.Array) -> HashArray:
    """64-bit hashes of the non-null values of ``array`` (nulls are dropped first)."""
    if array.null_count:
        array = array.drop_null()
    if pa.types.is_integer(array.type) or pa.types.is_timestamp(array.type) or pa.types.is_boolean(array.type):
        ints = array.cast(pa.int64()).to_numpy(zero_copy_only=False).view(U64)
        return _splitmix64(ints.copy())
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type) or pa.types.is_binary(array.type)):
        array = pc.cast(array, pa.string())
    return _hash_strings(array)


def _hash_strings(array: pa.Array) -> HashArray:
    n = len(array)
    offsets_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    buffers = array.buffers()
    offsets: np.ndarray[Any, Any] = np.frombuffer(
        buffers[1], dtype=offsets_type, count=n + 1, offset=array.offset * np.dtype(offsets_type).itemsize
    )
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    h = np.full(n, _FNV_OFFSET, dtype=U64)
    if n == 0:
        return h
    # FNV-1a one byte position at a time across all keys: keys are short (ids), so this is a
    # handful of vectorised passes rather than a Python loop per key.
    longest = int(lengths.max())
    shortest = int(lengths.min())
    position = starts.astype(np.intp)  # of byte j of every key
    for j in range(longest):
        if j < shortest:
            h ^= data[position]  # uint8 widens to uint64 inside the ufunc: no temporary copy
            h *= _FNV_PRIME
        else:
            active = np.flatnonzero(lengths > j)
            h[active] = (h[active] ^ data[position[active]]) * _FNV_PRIME
        position += 1
    h ^= lengths.astype(U64)
    return _splitmix64(h)


@dataclass
class KeySetStats:
    tracked: int
    max_keys: int
    coverage: float


class KeySet:
    """A set of 64-bit key hashes that reports, per batch, which keys it has seen before."""

    def __init__(self, max_keys: int = 2_000_000) -> None:
        if max_keys < 1024:
            raise ValueError("max_keys must be at least 1024")
        self.max_keys = max_keys
        self._runs: list[HashArray] = []
        # A bitmap of the stored hashes' leading bits (at least 64 bits per allowed key: 16 MB for
        # 2M): a batch searches the runs only for the keys whose bit is set — at max_keys under 2%
        # of new keys, fewer before — not for every key in every run. The batch is sorted, so its
        # lookups walk the bitmap in order (cache-friendly), unlike a second hash would.
        self._bits = max(16, (64 * max_keys - 1).bit_length())
        self._marks = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
        self._limit: np.uint64 | None = None  # keep only hashes below this (None: keep all)
        self._level = 0
        #: Duplicates found, each scaled by the coverage when it was found (the unbiased estimate).
        self.estimated_duplicates = 0.0

    @property
    def coverage(self) -> float:
        """The share of the key space that is checked exactly (1.0 until max_keys is reached)."""
        return 1.0 / (1 << self._level)

    @property
    def tracked(self) -> int:
        return sum(len(r) for r in self._runs)

    def stats(self) -> KeySetStats:
        return KeySetStats(tracked=self.tracked, max_keys=self.max_keys, coverage=self.coverage)

    def add(self, hashes: HashArray) -> BoolArray:
        """Add a batch of hashes; True where that key was seen before (earlier in the batch or before it)."""
        duplicate = np.zeros(len(hashes), dtype=np.bool_)
        if len(hashes) == 0:
            return duplicate
        if self._limit is None:
            idx: IndexArray | None = None
            sub = hashes
        else:
            idx = np.flatnonzero(hashes < self._limit)
            sub = hashes[idx]
        # Fast path (no duplicates, the common case): a plain sort is ~3x cheaper than argsort.
        ordered = np.sort(sub)
        repeat, seen = self._flags(ordered)
        if repeat.any() or seen.any():
            # Rare path: redo with argsort to map the duplicates back to their rows.
            order = np.argsort(sub, kind="stable")
            ordered = sub[order]
            repeat, seen = self._flags(ordered)
            rows = order if idx is None else idx[order]
            duplicate[rows] = repeat | seen
            self.estimated_duplicates += int(duplicate.sum()) / self.coverage
            ordered = ordered[~(repeat | seen)]
        if len(ordered):
            self._push(ordered)
        return duplicate

    def _flags(self, ordered: HashArray) -> tuple[BoolArray, BoolArray]:
        """(repeat of the previous value in this sorted batch, already in a stored run)."""
        repeat = np.zeros(len(ordered), dtype=np.bool_)
        repeat[1:] = ordered[1:] == ordered[:-1]
        seen = np.zeros(len(ordered), dtype=np.bool_)
        if not self._runs:
            return repeat, seen
        slot = self._slots(ordered)
        marked = self._marks[slot >> 3] & np.left_shift(np.uint8(1), (slot & 7).astype(np.uint8))
        candidates = np.flatnonzero(marked)
        if len(candidates):
            wanted = ordered[candidates]
            hit = np.zeros(len(candidates), dtype=np.bool_)
            for run in self._runs:
                pos = np.searchsorted(run, wanted)
                pos[pos == len(run)] = 0
                hit |= run[pos] == wanted
            seen[candidates] = hit
        return repeat, seen

    def _slots(self, hashes: HashArray) -> IndexArray:
        """Bitmap slots: the leading bits of each hash below the sampling limit (whose top
        ``level`` bits are 0, so they are shifted out first)."""
        if self._level:
            hashes = hashes << np.uint64(self._level)
        # After a right shift by at least one bit every value fits an int64: a view, not a copy.
        return (hashes >> np.uint64(64 - self._bits)).view(np.int64)

    def _mark(self, ordered: HashArray) -> None:
        """Set the bits of sorted hashes."""
        slot = self._slots(ordered)
        byte = slot >> 3
        bits = np.left_shift(np.uint8(1), (slot & 7).astype(np.uint8))
        self._marks[byte] |= bits  # where hashes share a byte, only the last one's bit lands…
        shared = np.flatnonzero(byte[1:] == byte[:-1])
        if len(shared):  # …so OR those few in one by one (ufunc.at applies repeated indices in turn)
            both = np.union1d(shared, shared + 1)
            np.bitwise_or.at(self._marks, byte[both], bits[both])

    def _push(self, run: HashArray) -> None:
        self._mark(run)
        self._runs.append(run)
        # Candidates are few, so many runs cost little to search: merge only past MAX_RUNS, and
        # then the two shortest (a linear timsort merge of two sorted runs; Huffman order keeps the
        # total merge work at O(n log(n / MAX_RUNS))).
        while len(self._runs) > MAX_RUNS:
            a, b = sorted(range(len(self._runs)), key=lambda i: len(self._runs[i]))[:2]
            merged = np.sort(np.concatenate([self._runs[a], self._runs[b]]), kind="stable")
            self._runs = [r for i, r in enumerate(self._runs) if i not in (a, b)] + [merged]
        if self.tracked > self.max_keys:
            while self.tracked > self.max_keys:
                self._level += 1
                self._limit = np.uint64((1 << (64 - self._level)) - 1)
                limit = self._limit
                self._runs = [kept for r in self._runs if len(kept := r[: np.searchsorted(r, limit)])]
            self._marks[:] = 0
            for r in self._runs:
                self._mark(r)
