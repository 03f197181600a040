"""Drift between a reference profile (what the model was trained on) and a current profile.

Per column, from the mergeable profiles of ``shared.profile`` — never from raw data, so a drift
check costs milliseconds whatever the batch size:

- **PSI** (population stability index) on the histogram bins (numeric) or the category
  counts: ``Σ (c - r) · ln(c / r)`` over bin shares, each share floored at ``PSI_EPSILON``
  (1e-4) so an empty bin counts as rare rather than infinitely surprising.
- **Normalised Wasserstein** (numeric): the 1-Wasserstein (earth mover's) distance between
  the two reservoir samples, divided by the reference's standard deviation (population std,
  ``ddof=0``) — "how many reference standard deviations the distribution moved". The same
  normalisation as Evidently's ``wasserstein`` test, so thresholds carry over (default 0.1).
  Without samples it falls back to the histograms (bin centres weighted by counts).
- **Jensen–Shannon distance** (categorical): the square root of the JS divergence with
  base-2 logarithms, so it lies in [0, 1]; categories missing on one side count as 0.
- **Two-sample KS** (numeric, when both profiles carry samples): ``scipy.stats.ks_2samp``.

Verdict per column: numeric columns drift when the normalised Wasserstein distance or the
PSI crosses its threshold; categorical ones when the JS distance or the PSI does. With few
current values (≤ ``SMALL_SAMPLE`` = 1000) the distances are noisy, so numeric columns use
the KS test's p-value instead (its false-alarm rate is the threshold itself), mirroring
Evidently's defaults.

Missing values are drift too (a broken upstream feed sends nulls, and values of the wrong type
are read as nulls): a column drifts when its missing rate rose by at least
``MISSING_RATE_RISE`` (10 percentage points) **and** a one-sided two-proportion z-test says
the rise is significant at the KS level (``ks_pvalue``); a feature with no values at all in
the current data while the reference has some drifts ("no values in the current data"). A
column without values in the reference has nothing to compare and is skipped.

Categorical columns keep at most ``top_k`` values per profile, the rest lumped into ``other``.
When the reference has an ``other`` they are compared over the reference's kept values plus
``other``, current values the reference did not keep folded into ``other``: a value the
reference lumped together has an unknown share there, not a share of 0. A reference value the
current profile lumped into its own ``other`` is estimated within what that profile allows
(at most its smallest kept count). Values the reference never had (it kept every value and
this one is not among them) are listed as ``new_values``, for information; they drift a column
only through the distances.

The dataset drifts when at least one column drifted and the share of drifted columns is at
least ``drifted_share``. Thresholds come from the spec (``triggers.drift``); defaults: PSI
0.2, Wasserstein 0.1, JS 0.1, KS p-value 0.01, drifted share 0.5.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shared.profile import (
    OTHER,
    CategoricalProfile,
    ColumnProfile,
    DatasetProfile,
    NumericProfile,
    bin_counts,
    finite_json,
)
from shared.spec import DriftThresholds

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
PSI_EPSILON = 1e-4
SMALL_SAMPLE = 1000
#: The smallest rise of a column's missing rate (current − reference) that counts as drift. A
#: significance test alone would flag a 1-point rise over a day of traffic; a feed that broke
#: moves far more than 10 points, and the data contract's ``max_missing_rate`` (5 % by default)
#: already rejects training batches that are that incomplete.
MISSING_RATE_RISE = 0.10


# --------------------------------------------------------------------------- metrics


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Population stability index of two count vectors over the same bins."""
    r = np.asarray(reference_counts, dtype=np.float64)
    c = np.asarray(current_counts, dtype=np.float64)
    if r.shape != c.shape or r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("psi needs two non-empty count vectors over the same bins")
    rp = np.maximum(r / r.sum(), PSI_EPSILON)
    cp = np.maximum(c / c.sum(), PSI_EPSILON)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def jensen_shannon(p_counts: npt.ArrayLike, q_counts: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) of two count vectors; equals scipy's ``jensenshannon(p, q, base=2)``."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("jensen_shannon needs two non-empty count vectors over the same categories")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0

    def kl(a: FloatArray) -> float:
        nonzero = a > 0
        return float(np.sum(a[nonzero] * np.log(a[nonzero] / m[nonzero])))

    divergence = (kl(p) + kl(q)) / 2.0 / math.log(2.0)
    return math.sqrt(max(divergence, 0.0))


def wasserstein(
    u_values: FloatArray,
    v_values: FloatArray,
    u_weights: FloatArray | None = None,
    v_weights: FloatArray | None = None,
) -> float:
    """1-Wasserstein distance of two 1-D distributions: ∫|F_u(x) − F_v(x)| dx over the merged support."""
    u = np.asarray(u_values, dtype=np.float64)
    v = np.asarray(v_values, dtype=np.float64)
    if u.size == 0 or v.size == 0:
        raise ValueError("wasserstein needs two non-empty samples")
    u_order, v_order = np.argsort(u), np.argsort(v)
    support = np.sort(np.concatenate([u, v]), kind="mergesort")
    widths = np.diff(support)
    u_cdf = _cdf(u[u_order], None if u_weights is None else np.asarray(u_weights, np.float64)[u_order], support[:-1])
    v_cdf = _cdf(v[v_order], None if v_weights is None else np.asarray(v_weights, np.float64)[v_order], support[:-1])
    return float(np.sum(np.abs(u_cdf - v_cdf) * widths))


def _cdf(sorted_values: FloatArray, sorted_weights: FloatArray | None, at: FloatArray) -> FloatArray:
    index = np.searchsorted(sorted_values, at, side="right")
    if sorted_weights is None:
        return index / sorted_values.size
    cumulative = np.concatenate([[0.0], np.cumsum(sorted_weights)])
    return np.asarray(cumulative[index] / cumulative[-1], dtype=np.float64)


def ks_test(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov (statistic, p-value), exactly ``scipy.stats.ks_2samp``."""
    from scipy.stats import ks_2samp  # scipy.stats is slow to import; only drift checks need it

    with warnings.catch_warnings():
        # For large samples scipy may fall back from the exact to the asymptotic p-value and warn.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


# --------------------------------------------------------------------------- reports


@dataclass
class ColumnDrift:
    column: str
    kind: Literal["numeric", "categorical"]
    drifted: bool
    method: str  # which test decided: "distance" (Wasserstein/JS + PSI), "ks", or "missing" (no current values)
    reasons: list[str]
    reference_count: int  # values (non-missing)
    current_count: int
    psi: float | None = None
    wasserstein: float | None = None  # normalised by the reference's std
    jensen_shannon: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    reference_missing_rate: float | None = None
    current_missing_rate: float | None = None
    missing_pvalue: float | None = None  # one-sided two-proportion z-test: did the missing rate rise?
    new_values: list[str] = field(default_factory=list)  # categories the reference never had (information)


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    drifted_share: float
    drifted: bool
    thresholds: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was not compared
    notes: list[str] = field(default_factory=list)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON values only: a distance that is not finite is None (null), never ``Infinity``."""
        return {
            "drifted": self.drifted,
            "drifted_share": self.drifted_share,
            "drifted_columns": self.drifted_columns,
            "thresholds": self.thresholds,
            "columns": [finite_json(asdict(c)) for c in self.columns],
            "skipped": self.skipped,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    def summary(self) -> str:
        verdict = "DRIFTED" if self.drifted else "no dataset drift"
        lines = [
            f"{verdict}: {len(self.drifted_columns)} of {len(self.columns)} column(s) drifted "
            f"({self.drifted_share:.0%}; dataset threshold {self.thresholds['drifted_share']:.0%})"
        ]
        lines += [f"  {c.column}: {'; '.join(c.reasons)}" for c in self.columns if c.drifted]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def compare(
    reference: DatasetProfile,
    current: DatasetProfile,
    thresholds: DriftThresholds | None = None,
    columns: Sequence[str] | None = None,
) -> DriftReport:
    """Per-column and dataset-level drift of ``current`` against ``reference``.

    ``columns`` limits the comparison (pass the contract's feature columns); by default every
    profiled column present in both is compared.
    """
    t = thresholds or DriftThresholds()
    names = list(columns) if columns is not None else [n for n in reference.columns if n in current.columns]
    results: list[ColumnDrift] = []
    skipped: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        ref, cur = reference.columns.get(name), current.columns.get(name)
        if ref is None or cur is None:
            skipped[name] = f"not in the {'reference' if ref is None else 'current'} profile"
            continue
        outcome = _column_drift(ref, cur, t, notes)
        if isinstance(outcome, str):
            skipped[name] = outcome
            continue
        if outcome.new_values and not outcome.drifted:
            notes.append(f"{name}: new values (information, not drift): {', '.join(outcome.new_values[:5])}")
        results.append(outcome)
    share = sum(c.drifted for c in results) / len(results) if results else 0.0
    return DriftReport(
        columns=results,
        drifted_share=share,
        # At least one drifted column: a share threshold of 0 must not call a batch without drift drifted.
        drifted=any(c.drifted for c in results) and share >= t.drifted_share,
        thresholds=t.model_dump(),
        skipped=skipped,
        notes=notes,
    )


def _column_drift(ref: ColumnProfile, cur: ColumnProfile, t: DriftThresholds, notes: list[str]) -> ColumnDrift | str:
    """One column's drift, or why it was not compared (the reason to list it as skipped)."""
    rn, cn, rc, cc = ref.numeric, cur.numeric, ref.categorical, cur.categorical
    outcome: ColumnDrift | str
    if rn is not None and cn is not None:
        outcome = _without_values(ref, "numeric", rn.count, cn.count) or _numeric_drift(ref, rn, cn, t, notes)
    elif rc is not None and cc is not None:
        outcome = _without_values(ref, "categorical", rc.total, cc.total) or _categorical_drift(ref, rc, cc, t)
    else:
        return "not profiled for drift (ids, timestamps and non-feature columns are not)"
    if isinstance(outcome, ColumnDrift):
        _missing_drift(outcome, ref, cur, t)
    return outcome


def _without_values(
    column: ColumnProfile, kind: Literal["numeric", "categorical"], reference_values: int, current_values: int
) -> ColumnDrift | str | None:
    """The verdict when a side has no values: skip (reference) or drifted (current); None when both have some."""
    if reference_values == 0:
        return "no values in the reference data: nothing to compare"
    if current_values == 0:
        # A feature that stopped arriving (or arrives unreadable) is the worst drift there is, not a gap.
        return ColumnDrift(column.name, kind, True, "missing", ["no values in the current data"], reference_values, 0)
    return None


def missing_rise_pvalue(reference_missing: int, reference_rows: int, current_missing: int, current_rows: int) -> float:
    """One-sided two-proportion z-test (pooled): the p-value of "the current missing rate is higher"."""
    if reference_rows <= 0 or current_rows <= 0:
        return 1.0
    pooled = (reference_missing + current_missing) / (reference_rows + current_rows)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0  # nothing missing anywhere, or everything missing everywhere: no rise to test
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / reference_rows + 1.0 / current_rows))
    z = (current_missing / current_rows - reference_missing / reference_rows) / se
    return 0.5 * math.erfc(z / math.sqrt(2.0))  # the standard normal's upper tail at z


def _missing_drift(result: ColumnDrift, ref: ColumnProfile, cur: ColumnProfile, t: DriftThresholds) -> None:
    """Record the missing rates; a rise that is both large and significant makes the column drift.

    Both conditions: the rise alone would flag noise on a few hundred rows, the test alone a
    meaningless 1-point rise over a day of traffic. The test uses the KS level (``ks_pvalue``).
    """
    result.reference_missing_rate, result.current_missing_rate = ref.missing_rate, cur.missing_rate
    result.missing_pvalue = missing_rise_pvalue(ref.nulls, ref.rows, cur.nulls, cur.rows)
    rise = cur.missing_rate - ref.missing_rate
    if rise >= MISSING_RATE_RISE and result.missing_pvalue < t.ks_pvalue:
        result.reasons.append(
            f"missing rate {cur.missing_rate:.1%} vs {ref.missing_rate:.1%} in the reference "
            f"(+{rise * 100:.1f} points >= {MISSING_RATE_RISE * 100:g}, p-value {result.missing_pvalue:.2g} < {t.ks_pvalue:g})"
        )
    result.drifted = bool(result.reasons)


def _numeric_drift(
    column: ColumnProfile, ref: NumericProfile, cur: NumericProfile, t: DriftThresholds, notes: list[str]
) -> ColumnDrift:
    """Distribution drift of a numeric column; both sides have values."""
    result = ColumnDrift(column.name, "numeric", False, "distance", [], ref.count, cur.count)
    ref_hist, cur_hist = ref.histogram(), cur.histogram()
    if ref.edges != cur.edges and cur.sample.size:
        # The current profile was built without the reference's edges: re-bin its sample.
        cur_hist = bin_counts(cur.sample, ref.edges or [])
        notes.append(f"{column.name}: PSI from the current sample re-binned on the reference edges")
    if ref_hist.size and ref_hist.size == cur_hist.size:
        result.psi = psi(ref_hist, cur_hist)
    scale = ref.std if ref.std > 0 else max(abs(ref.mean), 1.0) * 1e-9
    if ref.sample.size and cur.sample.size:
        result.wasserstein = wasserstein(ref.sample, cur.sample) / scale
        result.ks_statistic, result.ks_pvalue = ks_test(ref.sample, cur.sample)
    elif ref_hist.size and ref_hist.size == cur_hist.size and ref.edges is not None:
        centres = _bin_centres(ref.edges, min(ref.min, cur.min), max(ref.max, cur.max))
        result.wasserstein = wasserstein(centres, centres, ref_hist.astype(float), cur_hist.astype(float)) / scale
    if cur.count <= SMALL_SAMPLE and result.ks_pvalue is not None:
        result.method = "ks"
        if result.ks_pvalue < t.ks_pvalue:
            result.reasons.append(f"KS p-value {result.ks_pvalue:.2g} < {t.ks_pvalue:g}")
    else:
        if result.wasserstein is not None and result.wasserstein > t.wasserstein:
            result.reasons.append(f"Wasserstein {result.wasserstein:.3f} std > {t.wasserstein:g}")
        if result.psi is not None and result.psi > t.psi:
            result.reasons.append(f"PSI {result.psi:.3f} > {t.psi:g}")
    result.drifted = bool(result.reasons)
    return result


def _bin_centres(edges: Sequence[float], low: float, high: float) -> FloatArray:
    e = np.asarray(edges, dtype=np.float64)
    if e.size == 0:
        return np.asarray([(low + high) / 2.0])
    inner = (e[:-1] + e[1:]) / 2.0
    return np.concatenate([[(min(low, e[0]) + e[0]) / 2.0], inner, [(e[-1] + max(high, e[-1])) / 2.0]])


def _categorical_drift(
    column: ColumnProfile, ref: CategoricalProfile, cur: CategoricalProfile, t: DriftThresholds
) -> ColumnDrift:
    """Distribution drift of a categorical column; both sides have values."""
    r, c = _comparable_counts(ref, cur)
    result = ColumnDrift(column.name, "categorical", False, "distance", [], ref.total, cur.total)
    result.jensen_shannon = jensen_shannon(r, c)
    result.psi = psi(r, c)
    if result.jensen_shannon > t.jensen_shannon:
        result.reasons.append(f"Jensen-Shannon {result.jensen_shannon:.3f} > {t.jensen_shannon:g}")
    if result.psi > t.psi:
        result.reasons.append(f"PSI {result.psi:.3f} > {t.psi:g}")
    # A value is new only if the reference kept every value it saw (no ``other``) and not this one.
    if ref.other == 0:
        result.new_values = sorted(k for k in cur.counts if k not in ref.counts and k != OTHER)
    if result.new_values and result.reasons:
        result.reasons.append(f"new values: {', '.join(result.new_values[:5])}")
    result.drifted = bool(result.reasons)
    return result


def _comparable_counts(ref: CategoricalProfile, cur: CategoricalProfile) -> tuple[FloatArray, FloatArray]:
    """(reference, current) counts over the reference's kept values, each closed by an ``other`` bucket.

    A current value the reference lumped into its ``other`` is folded into ``other`` on the
    current side too: its reference count is unknown, not 0 (comparing it as 0, floored at 1e-4,
    made high-cardinality columns drift between two samples of the same distribution). When
    the reference has no ``other`` it knows every value, so a current value it lacks keeps its
    own bucket against 0: that is a real new value. Without ``other`` on either side this is
    the union of the values, exactly.
    """
    keys = sorted(set(ref.counts) | (set(cur.counts) if ref.other == 0 else set()))
    r = [ref.counts.get(k, 0) for k in keys]
    c = _current_counts(keys, ref, cur)
    r.append(ref.total - sum(r))
    c.append(max(cur.total - sum(c), 0.0))
    return np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)


def _current_counts(keys: Sequence[str], ref: CategoricalProfile, cur: CategoricalProfile) -> list[float]:
    """The current counts of ``keys``, estimating those the current profile lumped into its ``other``.

    Such a count is unknown but (about) at most the smallest count the current profile kept. It
    is taken as close to what the reference predicts as that bound allows, so the lumping
    itself adds no drift, while a reference value that became much rarer than the bound still
    shows. The estimates never take more than the current ``other`` holds.
    """
    if cur.other == 0:
        return [float(cur.counts.get(k, 0)) for k in keys]  # every current value kept: absent means 0
    bound = float(min(cur.counts.values(), default=cur.other))
    lumped = {k: min(ref.counts.get(k, 0) / ref.total * cur.total, bound) for k in keys if k not in cur.counts}
    scale = min(1.0, cur.other / sum(lumped.values())) if sum(lumped.values()) > 0 else 1.0
    return [float(cur.counts[k]) if k in cur.counts else lumped[k] * scale for k in keys]
