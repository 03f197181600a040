"""Mergeable per-column profiles: what a batch looked like, compact enough to keep forever.

A profile is built in the same streaming pass as validation, and the training reference is
the merge of the profiles of the batches it was trained on, so every part merges:

- counts, nulls, min and max add up or take the extreme;
- mean and variance use Chan et al.'s parallel update (``m2`` is the sum of squared
  deviations), which is numerically stable and associative up to float rounding;
- histograms count on fixed bin edges, so they add bin by bin. The edges come from the
  reference profile (``ProfileBuilder.from_reference``), from ``quantile_edges`` over a
  training sample, or — for a first batch with neither — from the quantiles of that batch's
  first record batch. Profiles with different edges do not merge (``ProfileMismatch``).
  Bins are ``(-inf, e0), [e0, e1), …, [e_last, +inf)``: every value lands in one;
- categorical columns keep exact counts of up to ``top_k`` values; past that, the rarest go
  to an ``other`` bucket (exact, and exactly mergeable, while a column has ≤ top_k values);
- numeric columns keep a uniform sample of at most ``sample_size`` values (bottom-k of random
  keys while building; a hypergeometric split when merging finished profiles) for KS and
  Wasserstein. The sample is serialised as base64 float64, the only bulky part of the JSON.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.spec import ColumnType, DataContract
from shared.typecast import numbers, value_counts

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
PROFILE_VERSION = 1
DEFAULT_BINS = 20
DEFAULT_SAMPLE_SIZE = 10_000
DEFAULT_TOP_K = 100
QUANTILE_SAMPLE = 16_384  # values the first batch's quantile edges are computed from, at most
INT_COUNTS_SPAN = 1 << 16  # integer batches spanning fewer values are profiled from a bincount
OTHER = "__other__"


class ProfileError(ValueError):
    """A profile cannot be read or merged; the message says what to do."""


class ProfileMismatch(ProfileError):
    """Two profiles describe different columns or use different histogram edges."""


def finite_json(value: Any) -> Any:
    """``value`` (dicts, lists and tuples of JSON values) with each NaN or infinity as None: JSON has no such
    numbers (Python would write ``Infinity``, which no JSON parser but Python's reads). A last defence; the cast
    (shared.typecast) keeps non-finite values out of profiles and drift in the first place."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def quantile_edges(values: Iterable[float] | FloatArray, bins: int = DEFAULT_BINS) -> list[float]:
    """Interior bin edges at the ``1/bins … (bins-1)/bins`` quantiles of ``values`` (NaNs ignored).

    Repeated quantiles (discrete columns) collapse, so a column with few values gets fewer bins.
    Compute these once at training time and keep them in the reference profile.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return []
    if bins == 1:
        return [float(array.min())]
    qs = np.quantile(array, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return [float(x) for x in np.unique(qs)]


def _b64(array: FloatArray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii")


def _unb64(text: str) -> FloatArray:
    return np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f8").astype(np.float64)


def _merge_moments(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Chan, Golub & LeVeque's pairwise update of (count, mean, sum of squared deviations)."""
    n = n_a + n_b
    if n == 0:
        return 0, 0.0, 0.0
    if n_a == 0:
        return n_b, mean_b, m2_b
    if n_b == 0:
        return n_a, mean_a, m2_a
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


# --------------------------------------------------------------------------- numeric


@dataclass
class NumericProfile:
    count: int = 0  # non-null values
    min: float = math.inf
    max: float = -math.inf
    mean: float = 0.0
    m2: float = 0.0
    edges: list[float] | None = None
    hist: list[int] | None = None  # len(edges) + 1 bins
    sample: FloatArray = field(default_factory=lambda: np.zeros(0))
    sample_size: int = DEFAULT_SAMPLE_SIZE
    # Random keys of the sample while it is being built (bottom-k); not serialised.
    _keys: FloatArray | None = field(default=None, repr=False, compare=False)
    _threshold: float = field(default=1.0, repr=False, compare=False)
    _hist: np.ndarray[Any, np.dtype[np.int64]] | None = field(default=None, repr=False, compare=False)

    @property
    def variance(self) -> float:
        """Population variance (ddof=0), like ``np.var``."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def histogram(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        if self._hist is not None:
            return self._hist
        return np.asarray(self.hist if self.hist is not None else [], dtype=np.int64)

    def update(
        self,
        x: np.ndarray[Any, Any],
        rng: np.random.Generator,
        bins: int,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        """Fold a batch of non-null values in (``bounds``: their min and max, if the caller has them).

        Integers spanning fewer than ``INT_COUNTS_SPAN`` values are counted once (a bincount), and
        moments and histogram come from the counts: ~2x cheaper than the float passes.
        """
        n = int(x.size)
        if n == 0:
            return
        low, high = bounds if bounds is not None else (float(x.min()), float(x.max()))
        counts: np.ndarray[Any, np.dtype[np.int64]] | None = None
        if x.dtype.kind in "iu" and high - low < INT_COUNTS_SPAN and abs(low) < 2**52:  # low is exact
            counts = np.bincount(x - x.dtype.type(low))
            # Deviations from the batch minimum are small exact integers: a stable, exact-ish sum.
            offsets = np.arange(len(counts), dtype=np.float64)
            batch_mean = low + float(counts @ offsets) / n
            deviations = offsets + (low - batch_mean)
            batch_m2 = float(counts @ (deviations * deviations))
        else:
            x = x.astype(np.float64, copy=False)
            batch_mean = float(x.sum()) / n
            # Two passes (mean, then squared deviations) are numerically stable; the deviations are
            # squared in place, and summed without BLAS (a dot product here would spin up threads).
            squares = x - batch_mean
            np.multiply(squares, squares, out=squares)
            batch_m2 = float(squares.sum())
        self.count, self.mean, self.m2 = _merge_moments(self.count, self.mean, self.m2, n, batch_mean, batch_m2)
        self.min = min(self.min, low)
        self.max = max(self.max, high)
        if self.edges is None:
            # No reference: edges from this first batch's quantiles, estimated on at most ~16k
            # evenly spaced values (exact quantiles of a sample are no worse as bin edges).
            self.edges = quantile_edges(x[:: max(1, n // QUANTILE_SAMPLE)], bins)
        if self._hist is None:
            self._hist = np.zeros(len(self.edges) + 1, dtype=np.int64)
        if counts is not None:
            self._hist += _bin_counts_of_counts(counts, low, self.edges)
        else:
            self._hist += bin_counts(x, self.edges)
        self._sample_update(x, rng)

    def _sample_update(self, x: np.ndarray[Any, Any], rng: np.random.Generator) -> None:
        """Bottom-k sampling: every value gets a uniform random key; the k smallest keys are kept.

        Keys are drawn only below a cut ``t`` (each value enters independently with probability
        ``t``, its key uniform below ``t``): once at least k keys lie below ``t``, no value keyed
        above it can be among the k smallest. Before the sample is full a large batch is cut at
        about 2k / n, so the first batch does not key (and partition) every one of its values.
        """
        if self._keys is None:
            self._keys = np.zeros(0)
            self._threshold = 1.0
        n, k = int(x.size), self.sample_size
        cut = self._threshold
        entering: int | None = None
        if self._keys.size >= k:
            entering = int(rng.binomial(n, cut))
        elif n > k:
            trial = min(cut, 2.0 * k / n)
            drawn = int(rng.binomial(n, trial))
            if drawn + int(np.count_nonzero(self._keys < trial)) >= k:  # else (never in practice) key all
                cut, entering = trial, drawn
        if entering is None:
            keys = rng.random(n) * cut
        else:
            if entering == 0:
                return
            x = x[rng.choice(n, size=entering, replace=False)]
            keys = rng.random(entering) * cut
        self._threshold = cut
        self._keys = np.concatenate([self._keys, keys])
        self.sample = np.concatenate([self.sample, x.astype(np.float64, copy=False)])
        # Compact to the k smallest keys only when the buffer has doubled: a stale (higher)
        # threshold lets a few extra candidates in but never keeps out one that belongs.
        if self._keys.size >= 2 * k:
            self._compact()

    def _compact(self) -> None:
        if self._keys is None or self._keys.size <= self.sample_size:
            return
        part = np.argpartition(self._keys, self.sample_size - 1)[: self.sample_size]
        self._keys, self.sample = self._keys[part], self.sample[part]
        self._threshold = float(self._keys.max())

    def finish(self) -> None:
        self._compact()
        if self._hist is not None:
            self.hist = [int(v) for v in self._hist]
        self._hist = None
        self._keys = None

    def merge(self, other: NumericProfile, column: str) -> NumericProfile:
        if self.count and other.count and self.edges != other.edges:
            raise ProfileMismatch(
                f"column {column!r}: the profiles use different histogram edges; build both with the same "
                "reference (ProfileBuilder.from_reference / validate(..., reference=...)) before merging"
            )
        count, mean, m2 = _merge_moments(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        edges = self.edges if self.count else other.edges
        hist_a, hist_b = self.histogram(), other.histogram()
        hist = hist_a + hist_b if hist_a.size and hist_b.size else (hist_a if hist_a.size else hist_b)
        size = max(self.sample_size, other.sample_size)
        merged = NumericProfile(
            count=count,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            mean=mean,
            m2=m2,
            edges=None if edges is None else list(edges),
            hist=[int(v) for v in hist] if hist.size else None,
            sample=_merge_samples(self.sample, self.count, other.sample, other.count, size),
            sample_size=size,
        )
        return merged

    def to_dict(self) -> dict[str, Any]:
        self.finish()
        return {
            "count": self.count,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "mean": self.mean,
            "m2": self.m2,
            "edges": self.edges,
            "hist": self.hist,
            "sample_size": self.sample_size,
            "sample": _b64(self.sample),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        count = int(data["count"])
        return cls(
            count=count,
            min=float(data["min"]) if count else math.inf,
            max=float(data["max"]) if count else -math.inf,
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            edges=None if data.get("edges") is None else [float(e) for e in data["edges"]],
            hist=None if data.get("hist") is None else [int(h) for h in data["hist"]],
            sample=_unb64(data.get("sample", "")),
            sample_size=int(data.get("sample_size", DEFAULT_SAMPLE_SIZE)),
        )


def bin_counts(x: FloatArray, edges: Sequence[float]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Counts per bin ``(-inf, e0), [e0, e1), …, [e_last, inf)``.

    With ~20 edges, one vectorised comparison per edge is ~10x faster than ``np.searchsorted``
    (a branchy binary search per value): ``at_or_above[j]`` = how many values are >= edges[j].
    The comparisons share one scratch mask (no allocation per edge).
    """
    scratch = np.empty(x.shape, dtype=np.bool_)
    counts = [x.size]
    for edge in edges:
        np.greater_equal(x, edge, out=scratch)
        counts.append(int(np.count_nonzero(scratch)))
    at_or_above = np.array([*counts, 0], dtype=np.int64)
    return at_or_above[:-1] - at_or_above[1:]


def _bin_counts_of_counts(
    counts: np.ndarray[Any, np.dtype[np.int64]], low: float, edges: Sequence[float]
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``bin_counts`` of integers given as counts of ``low``, ``low + 1``, …: from suffix sums."""
    at_or_above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])  # [i]: values >= low + i
    first = np.clip(np.ceil(np.asarray(edges, dtype=np.float64) - low), 0, len(counts)).astype(np.intp)
    total = int(at_or_above[0])
    cuts = np.concatenate([[total], at_or_above[first], [0]]).astype(np.int64)
    return cuts[:-1] - cuts[1:]


def _merge_samples(a: FloatArray, n_a: int, b: FloatArray, n_b: int, size: int) -> FloatArray:
    """A uniform sample of A ∪ B from uniform samples of A and B (exact union when both are whole)."""
    if a.size + b.size <= size and a.size == n_a and b.size == n_b:
        return np.concatenate([a, b])
    # How many of ``size`` draws from A ∪ B fall in A is hypergeometric; seeded by the counts so a
    # merge is reproducible.
    rng = np.random.default_rng([n_a, n_b, a.size, b.size])
    take = min(size, a.size + b.size)
    from_a = int(rng.hypergeometric(n_a, n_b, take)) if n_a and n_b else (take if n_a else 0)
    from_a = min(max(from_a, take - b.size), a.size)
    from_b = min(take - from_a, b.size)
    return np.concatenate(
        [rng.choice(a, size=from_a, replace=False), rng.choice(b, size=from_b, replace=False)]
    ).astype(np.float64)


# --------------------------------------------------------------------------- categorical


@dataclass
class CategoricalProfile:
    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0  # values beyond the top_k most frequent
    top_k: int = DEFAULT_TOP_K

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def update(self, counts: Mapping[str, int], other: int = 0) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.other += other
        if len(self.counts) > 4 * self.top_k:  # amortise the trim while building
            self._trim()

    def _trim(self) -> None:
        if len(self.counts) <= self.top_k:
            return
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.counts = dict(ranked[: self.top_k])
        self.other += sum(v for _, v in ranked[self.top_k :])

    def finish(self) -> None:
        self._trim()
        self.counts = dict(sorted(self.counts.items()))

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        merged = CategoricalProfile(counts=dict(self.counts), other=self.other, top_k=max(self.top_k, other.top_k))
        merged.update(other.counts, other.other)
        merged.finish()
        return merged

    def to_dict(self) -> dict[str, Any]:
        self.finish()
        return {"counts": self.counts, "other": self.other, "top_k": self.top_k}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            other=int(data.get("other", 0)),
            top_k=int(data.get("top_k", DEFAULT_TOP_K)),
        )


# --------------------------------------------------------------------------- columns and datasets


def _kind(column_type: ColumnType) -> str:
    if column_type in ("float", "int"):
        return "numeric"
    if column_type in ("bool", "category", "string"):
        return "categorical"
    return "count"  # timestamps: counts only (time always "drifts")


@dataclass
class ColumnProfile:
    name: str
    type: ColumnType
    rows: int = 0
    nulls: int = 0
    numeric: NumericProfile | None = None
    categorical: CategoricalProfile | None = None

    @property
    def kind(self) -> str:
        if self.numeric is not None:
            return "numeric"
        return "categorical" if self.categorical is not None else "count"

    @property
    def missing_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        if (self.type, self.kind) != (other.type, other.kind):
            raise ProfileMismatch(
                f"column {self.name!r} is {self.type}/{self.kind} in one profile and {other.type}/{other.kind} "
                "in the other; profile both batches with the same spec"
            )
        return ColumnProfile(
            name=self.name,
            type=self.type,
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            numeric=None
            if self.numeric is None or other.numeric is None
            else self.numeric.merge(other.numeric, self.name),
            categorical=None
            if self.categorical is None or other.categorical is None
            else self.categorical.merge(other.categorical),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "rows": self.rows, "nulls": self.nulls}
        if self.numeric is not None:
            out["numeric"] = self.numeric.to_dict()
        if self.categorical is not None:
            out["categorical"] = self.categorical.to_dict()
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ColumnProfile:
        return cls(
            name=name,
            type=data["type"],
            rows=int(data["rows"]),
            nulls=int(data["nulls"]),
            numeric=NumericProfile.from_dict(data["numeric"]) if data.get("numeric") is not None else None,
            categorical=CategoricalProfile.from_dict(data["categorical"])
            if data.get("categorical") is not None
            else None,
        )


@dataclass
class DatasetProfile:
    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    #: The label's classes as training spells them (``shared.spec.label_class``) and their rows, counted by
    #: validation; None when not counted (no label column, more classes than validation counts one by one, or a
    #: profile written before 2026-12-01). A numeric label's column profile keeps no values: this does.
    label_classes: dict[str, int] | None = None

    def merge(self, other: DatasetProfile) -> DatasetProfile:
        """The profile of both batches together; columns present in only one are kept as they are."""
        merged: dict[str, ColumnProfile] = {}
        for name in [*self.columns, *(n for n in other.columns if n not in self.columns)]:
            a, b = self.columns.get(name), other.columns.get(name)
            merged[name] = a.merge(b) if a is not None and b is not None else (a or b)  # type: ignore[assignment]
        classes = None
        if self.label_classes is not None and other.label_classes is not None:
            classes = dict(self.label_classes)
            for cls, rows in other.label_classes.items():
                classes[cls] = classes.get(cls, 0) + rows
        return DatasetProfile(rows=self.rows + other.rows, columns=merged, label_classes=classes)

    def edges(self) -> dict[str, list[float]]:
        """The histogram edges of each numeric column, to profile later batches on the same bins."""
        return {
            name: list(c.numeric.edges)
            for name, c in self.columns.items()
            if c.numeric is not None and c.numeric.edges is not None
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON values only: a non-finite number (which the cast keeps out) would be None, not ``Infinity``."""
        columns = {name: c.to_dict() for name, c in self.columns.items()}
        data: dict[str, Any] = {"version": PROFILE_VERSION, "rows": self.rows, "columns": finite_json(columns)}
        if self.label_classes is not None:  # absent when not counted: older readers see the profile they know
            data["label_classes"] = dict(self.label_classes)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        try:
            if "version" not in data:  # another JSON file (a contract, a report), not an old profile
                raise ProfileError(
                    "not a perennial profile (it has no version); pass a file written by "
                    "`perennial validate … --profile-out`"
                )
            if data.get("version") != PROFILE_VERSION:
                raise ProfileError(
                    f"profile version {data.get('version')!r} is not {PROFILE_VERSION}; rebuild the reference "
                    "profile with this version of perennial (perennial validate DATA --spec … --profile-out …)"
                )
            classes = data.get("label_classes")
            return cls(
                rows=int(data["rows"]),
                columns={name: ColumnProfile.from_dict(name, c) for name, c in data["columns"].items()},
                label_classes=None if classes is None else {str(k): int(v) for k, v in classes.items()},
            )
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(
                f"not a perennial profile ({type(exc).__name__}: {exc}); pass a file written by "
                "`perennial validate … --profile-out` or DatasetProfile.to_json()"
            ) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetProfile:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(f"the profile is not valid JSON ({exc}); regenerate it with --profile-out") from None
        if not isinstance(data, dict):
            raise ProfileError("the profile must be a JSON object; regenerate it with --profile-out")
        return cls.from_dict(data)


def edges_reference(edges: Mapping[str, Sequence[float]]) -> DatasetProfile:
    """A profile that carries only histogram edges: what validation needs to bin a batch like a run's others."""
    columns = {
        name: ColumnProfile(name=name, type="float", numeric=NumericProfile(edges=[float(e) for e in column_edges]))
        for name, column_edges in edges.items()
    }
    return DatasetProfile(columns=columns)


def merge_profiles(profiles: Iterable[DatasetProfile]) -> DatasetProfile:
    """Merge any number of batch profiles (the order does not matter beyond float rounding), one at a time: an
    iterator of them is never held whole."""
    result: DatasetProfile | None = None
    for profile in profiles:
        result = profile if result is None else result.merge(profile)
    return result if result is not None else DatasetProfile()


# --------------------------------------------------------------------------- building


class ProfileBuilder:
    """Accumulates a :class:`DatasetProfile` batch by batch, for the columns of a contract.

    Feature columns and the label are profiled in full; other columns (ids, timestamps) get
    only row and null counts.
    """

    def __init__(
        self,
        contract: DataContract,
        edges: Mapping[str, Sequence[float]] | None = None,
        bins: int = DEFAULT_BINS,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        self.bins = bins
        self.rows = 0
        self._rngs: dict[str, np.random.Generator] = {}
        self.columns: dict[str, ColumnProfile] = {}
        tracked = {c.name for c in contract.feature_columns} | {contract.label}
        for spec in contract.columns:
            profile = ColumnProfile(name=spec.name, type=spec.type)
            kind = _kind(spec.type) if spec.name in tracked else "count"
            if kind == "numeric":
                column_edges = None if edges is None or spec.name not in edges else [float(e) for e in edges[spec.name]]
                profile.numeric = NumericProfile(edges=column_edges, sample_size=sample_size)
                # Seeded by the column name: the same file always gives the same profile.
                self._rngs[spec.name] = np.random.default_rng(zlib.crc32(spec.name.encode()))
            elif kind == "categorical":
                profile.categorical = CategoricalProfile(top_k=top_k)
            self.columns[spec.name] = profile

    @classmethod
    def from_reference(cls, contract: DataContract, reference: DatasetProfile, **kwargs: Any) -> ProfileBuilder:
        """Profile on the reference's histogram edges, so the two compare (and merge) bin by bin."""
        return cls(contract, edges=reference.edges(), **kwargs)

    def add_rows(self, n: int) -> None:
        self.rows += n

    def update(
        self,
        name: str,
        values: pa.Array,
        value_counts: pa.StructArray | None = None,
        *,
        present: np.ndarray[Any, Any] | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        """Fold one record batch's values (already in the contract type) of column ``name`` in.

        What the caller has computed already saves recounting: ``value_counts``
        (``pc.value_counts`` of the non-null values), ``present`` (the non-null values as numpy,
        ``shared.typecast.numbers``) and ``bounds`` (their min and max).
        """
        profile = self.columns[name]
        profile.rows += len(values)
        profile.nulls += values.null_count
        if profile.numeric is not None:
            x = present if present is not None else numbers(values)
            profile.numeric.update(x, self._rngs[name], self.bins, bounds)
        elif profile.categorical is not None:
            profile.categorical.update(*_value_counts(values, profile.categorical.top_k, value_counts))

    def finish(self) -> DatasetProfile:
        for profile in self.columns.values():
            if profile.numeric is not None:
                profile.numeric.finish()
            if profile.categorical is not None:
                profile.categorical.finish()
        return DatasetProfile(rows=self.rows, columns=self.columns)


def _value_counts(values: pa.Array, top_k: int, counted: pa.StructArray | None) -> tuple[dict[str, int], int]:
    """Counts of the non-null values; beyond 2*top_k distinct values the rest is one 'other' count."""
    if counted is None:
        counted = value_counts(values)
    if len(counted) > 2 * top_k:
        # A high-cardinality column: keep the batch's most frequent values, lump the rest.
        counts = counted.field("counts")
        top = pc.select_k_unstable(counts, k=2 * top_k, sort_keys=[("dummy", "descending")])
        kept = counted.take(top)
        other = int(pc.sum(counts).as_py()) - int(pc.sum(kept.field("counts")).as_py())
        counted = kept
    else:
        other = 0
    keys = counted.field("values").to_pylist()
    numbers = counted.field("counts").to_pylist()
    result: dict[str, int] = {}
    for key, number in zip(keys, numbers, strict=True):  # a dictionary may repeat a value: add them up
        name = _category_key(key)
        result[name] = result.get(name, 0) + int(number)
    return result, other


def _category_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
