"""Kayenta-style statistical canary analysis: is the challenger deployment as healthy as the champion?

Pure and deterministic: the caller gathers one :class:`DeploymentSample` per deployment over a bake
window and :func:`analyse_canary` returns a :class:`CanaryVerdict` that keeps all its evidence
(counts, statistics, p-values, thresholds). ``docs/policy.md`` explains every rule for users.

Per metric there are two kinds of check:

* **gates** from ``spec.rollout.gates``. A gate is *breached* only when the challenger is beyond it
  *and* a one-sided test says so at ``gates.confidence``; this is what keeps noise from failing a
  healthy model. The absolute gates (``max_error_rate``, ``max_p95_latency_ms``) are exact binomial
  tests that are valid at any sample size, so a challenger that crashes on load fails after a few
  requests. Their breach is a *hard* failure (immediate rollback). The comparative gates
  (``max_latency_ratio``, ``max_positive_rate_shift``, ``max_accuracy_drop``) need the champion too. A multiclass
  model's positive rate is the share of the class that moved most (:class:`WatchedClass`), tested at alpha / K for
  the K classes it was picked from, so the choice does not make the gate more eager.
* a **comparison** with the champion (latency: a paired signed-rank test on per-window p95s, or Mann-Whitney
  U on trimmed per-request latencies when there are too few windows; Fisher's exact test for error rate,
  positive rate and accuracy). A metric that is significantly worse by more than its tolerance scores 0 in a
  weighted score → pass / marginal / fail.

Latencies that are mostly queueing are autocorrelated, so per-request tests treat a few busy periods as
thousands of independent observations. The challenger and the champion serve at the same time, so their
p95s over the same time window share the load; the latency comparison pairs them window by window and tests
the log-ratios with a Wilcoxon signed-rank test whose variance is inflated for the serial correlation that is
left (:func:`_signed_rank_greater`).

Statistical comparisons need ``gates.min_samples`` requests on both sides; with fewer on the
champion side (e.g. at 100 %, or for a first model) only the gates are judged; with fewer on the
challenger side the verdict is ``inconclusive`` unless a gate is already breached.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from scipy import stats

from shared.spec import Gates, ShadowSpec

Verdict = Literal["pass", "marginal", "fail", "inconclusive"]
MetricOutcome = Literal["pass", "worse", "breach", "nodata"]
AnalysisMode = Literal["full", "gates_only", "insufficient"]
EvidenceValue = float | int | str | bool | None

#: A p95 latency is, by definition, exceeded by 5 % of requests.
_P95_EXCEEDANCE = 0.05
#: A window's p95 of 0 ms (below the clock's resolution) is taken as 1 µs so that a log-ratio exists.
_MIN_WINDOW_P95_MS = 1e-3
#: The serial correlation credited to the paired windows is capped here (a variance inflation of at most 19).
_MAX_WINDOW_AUTOCORRELATION = 0.9
_NORMAL = statistics.NormalDist()


class CanaryInputError(ValueError):
    """A canary input is impossible (negative counts, more errors than requests, NaN latencies, ...)."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


@dataclass(frozen=True)
class WindowP95:
    """The p95 latency (ms) of one deployment's requests in one time window that starts at ``start``.
    ``requests``: how many requests the window held (None: the platform does not say)."""

    start: datetime
    p95_ms: float
    requests: int | None = None


@dataclass(frozen=True)
class DeploymentSample:
    """What one deployment served during a bake window.

    ``latencies_ms`` may be empty when the platform only reports aggregates; then give ``p50_ms`` /
    ``p95_ms`` / ``p99_ms``. ``predicted_positive`` counts positive predictions among the successful
    requests (``requests - errors``). ``labelled`` / ``correct`` count requests whose delayed label
    has arrived and how many of those the deployment got right. ``p95_windows`` is the p95 of each time
    window of the bake (Azure Monitor's per-minute p95s); the challenger's and the champion's windows with
    the same ``start`` are compared pairwise.
    """

    deployment: str
    requests: int
    errors: int
    latencies_ms: tuple[float, ...] = ()
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    predicted_positive: int = 0
    labelled: int = 0
    correct: int = 0
    p95_windows: tuple[WindowP95, ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence (a list from JSON) but store a tuple so the value stays immutable.
        object.__setattr__(self, "latencies_ms", tuple(float(x) for x in self.latencies_ms))
        object.__setattr__(self, "p95_windows", tuple(self.p95_windows))
        where = f"deployment {self.deployment!r}"
        for name in ("requests", "errors", "predicted_positive", "labelled", "correct"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CanaryInputError(f"{where}: {name}={value!r} is not a count", "pass a whole number >= 0")
        if self.errors > self.requests:
            raise CanaryInputError(
                f"{where}: errors={self.errors} exceeds requests={self.requests}", "count errors among the requests"
            )
        if self.predicted_positive > self.requests - self.errors:
            raise CanaryInputError(
                f"{where}: predicted_positive={self.predicted_positive} exceeds the {self.requests - self.errors} "
                "successful requests",
                "count positive predictions among successful requests only",
            )
        if self.correct > self.labelled:
            raise CanaryInputError(
                f"{where}: correct={self.correct} exceeds labelled={self.labelled}",
                "count correct predictions among the labelled requests",
            )
        if self.latencies_ms:
            values = np.asarray(self.latencies_ms)
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise CanaryInputError(
                    f"{where}: latencies_ms holds a negative, NaN or infinite value",
                    "drop requests without a measured latency",
                )
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise CanaryInputError(f"{where}: {name}={value!r} is not a latency", "pass milliseconds >= 0 or None")
        starts: set[datetime] = set()
        for window in self.p95_windows:
            if not math.isfinite(window.p95_ms) or window.p95_ms < 0:
                raise CanaryInputError(
                    f"{where}: the window at {window.start.isoformat()} has p95_ms={window.p95_ms!r}",
                    "pass milliseconds >= 0, or leave out a window without requests",
                )
            count = window.requests
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise CanaryInputError(
                    f"{where}: the window at {window.start.isoformat()} has requests={count!r}",
                    "pass a whole number >= 0 or None",
                )
            if window.start in starts:
                raise CanaryInputError(
                    f"{where}: two p95 windows start at {window.start.isoformat()}", "give one p95 per window"
                )
            starts.add(window.start)

    @property
    def successes(self) -> int:
        return self.requests - self.errors


@dataclass(frozen=True)
class WatchedClass:
    """The class a multiclass model's positive-rate gate counts (``predicted_positive`` on both samples), and how
    many classes it was chosen among after looking at both deployments' predictions (the one whose share moved
    most, :func:`shared.live.watched_prediction`). Picking the largest of ``among`` shifts and testing it as if it
    had been fixed in advance fails a healthy challenger up to ``among`` times too often, so the gate's test runs at
    alpha / ``among`` (Bonferroni over the classes)."""

    label: str
    among: int

    def __post_init__(self) -> None:
        if isinstance(self.among, bool) or not isinstance(self.among, int) or self.among < 1:
            raise CanaryInputError(
                f"watched class {self.label!r}: among={self.among!r} is not a number of classes",
                "pass how many classes the watched one was chosen among, >= 1",
            )


@dataclass(frozen=True)
class WatchedPrediction:
    """Which recorded predictions a deployment's ``predicted_positive`` counts (call it on a prediction), with the
    multiclass choice to pass to :func:`analyse_canary` (``chosen``: None for a binary model's positive class, fixed
    in advance, and while nothing is watched). :func:`shared.live.watched_prediction` builds it."""

    matches: Callable[[object], bool] = field(repr=False, compare=False)
    chosen: WatchedClass | None = None

    def __call__(self, predicted: object) -> bool:
        return self.matches(predicted)


@dataclass(frozen=True)
class ShadowAgreement:
    """Mirrored requests answered by both deployments, and on how many their predictions agreed."""

    compared: int
    agreed: int

    def __post_init__(self) -> None:
        if self.compared < 0 or not 0 <= self.agreed <= self.compared:
            raise CanaryInputError(
                f"shadow agreement {self.agreed}/{self.compared} is impossible",
                "agreed must be between 0 and compared",
            )


@dataclass(frozen=True)
class CanaryConfig:
    """The analysis' own knobs; the defaults are documented in docs/policy.md."""

    #: Latencies count as worse only if the challenger's are significantly more than 10 % slower.
    latency_tolerance: float = 0.10
    #: Share of the slowest latencies dropped from each side before Mann-Whitney (cold starts, GC pauses).
    trim_fraction: float = 0.01
    #: Paired p95 windows needed for the per-window latency test (else per-request tests, else the aggregates):
    #: at least this, and as many as the test needs to fail a challenger whose least-slowed window went the other
    #: way (``_windows_needed``: 12 at confidence 0.99, where the latency test runs at alpha = 0.0025).
    min_windows: int = 10
    #: A p95 taken from fewer requests is lower on average: the nearest-rank p95 of n requests sits, on average,
    #: at the ceil(0.95 n)/(n + 1) quantile (20 requests: the 90th percentile). With the challenger at 50 % or
    #: less that favours it; where its window held more requests than the champion's (a step above 50 %) the
    #: window's tolerance is raised by this log-spread times the gap between the two quantiles in standard normal
    #: units, so a healthy challenger is not judged slower for it. 0.5 is wider than most latency distributions'.
    window_log_spread: float = 0.5
    #: Tolerances of the comparisons, as a share of the matching gate.
    error_rate_tolerance_share: float = 0.25
    positive_rate_tolerance_share: float = 0.5
    accuracy_tolerance_share: float = 0.5
    #: Weights of the score (renormalised over the metrics that have data).
    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "error_rate": 0.45,
            "latency": 0.25,
            "positive_rate": 0.10,
            "accuracy": 0.20,
            "agreement": 0.45,  # shadow phase only
        }
    )
    pass_score: float = 0.95
    marginal_score: float = 0.60


#: An error rate above its gate with a binomial p-value below this (but not below the gate's alpha) holds the step
#: for another bake instead of advancing: 2 errors in 50 requests against a 1 % gate (p = 0.09) holds, 1 in 60 does
#: not. Traffic at the gate's rate or below rarely reaches it (A/A at 0.3 % errors: about 0.5 % of bakes).
HOLD_P_VALUE = 0.10


@dataclass(frozen=True)
class MetricResult:
    """One metric's judgement. ``unconfirmed_excess``: beyond a gate, but not significantly (yet); ``hold``: and
    likely enough (:data:`HOLD_P_VALUE`) that the step should bake longer before more users see it."""

    metric: str
    outcome: MetricOutcome
    hard: bool
    weight: float
    reason: str
    evidence: Mapping[str, EvidenceValue]
    unconfirmed_excess: bool = False
    hold: bool = False


@dataclass(frozen=True)
class CanaryVerdict:
    verdict: Verdict
    hard_failure: bool
    mode: AnalysisMode
    score: float | None
    metrics: tuple[MetricResult, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    confidence: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for the run record and the ``RolloutRolledBack`` event."""
        return asdict(self)


# --------------------------------------------------------------------------- statistics


def _p_at_least(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): how surprising k events are if the true rate is p0."""
    if k <= 0:
        return 1.0
    return float(stats.binom.sf(k - 1, n, p0))


def _p_at_most(k: int, n: int, p0: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p0)."""
    return float(stats.binom.cdf(k, n, p0))


def _fisher(a_hits: int, a_n: int, b_hits: int, b_n: int, alternative: str) -> float:
    """Fisher's exact test on [[a_hits, a_misses], [b_hits, b_misses]]; ``greater``: a's rate is higher."""
    table = [[a_hits, a_n - a_hits], [b_hits, b_n - b_hits]]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


def _trim_top(values: np.ndarray, fraction: float) -> np.ndarray:
    """Drop the slowest ``fraction`` of the samples (the same share from each side keeps A/A fair)."""
    drop = int(len(values) * fraction)
    return np.sort(values)[: len(values) - drop] if drop else values


@dataclass(frozen=True)
class _SignedRank:
    """A one-sided signed-rank test's result (see :func:`_signed_rank_greater`)."""

    n: int  # values that are not exactly 0
    statistic: float  # T+: the sum of the ranks of the positive values
    p_value: float  # the larger of the two below
    p_independent: float  # the exact (or, with ties, normal) p-value for independent values
    p_adjusted: float  # the normal p-value with the variance inflated for serial correlation
    autocorrelation: float  # the lag-1 autocorrelation credited, in [0, _MAX_WINDOW_AUTOCORRELATION]


def _signed_rank_greater(values: np.ndarray) -> _SignedRank:
    """Wilcoxon signed-rank test that ``values`` (in time order) are centred above 0, robust to serial correlation.

    Under H0 the signs of the ranked values are independent coin flips, so ``T+`` has variance sum(rank²)/4. When
    consecutive values are correlated (a slow period spans several windows) that variance is too small; it is
    inflated by the AR(1) long-run factor (1 + r) / (1 - r), r being the lag-1 autocorrelation of the signed
    ranks with the small-sample bias (about -(1 + 3r)/n, Marriott & Pope) added back, between 0 and 0.9. The
    p-value is the larger of that normal approximation and scipy's exact test, so it is never more liberal
    than the test for independent windows.
    """
    x = values[values != 0]  # the Wilcoxon convention: a value of exactly 0 carries no sign
    n = len(x)
    if n == 0:
        return _SignedRank(0, 0.0, 1.0, 1.0, 1.0, 0.0)
    ranks = stats.rankdata(np.abs(x))
    t_plus = float(np.sum(ranks[x > 0]))
    p_independent = float(stats.wilcoxon(x, alternative="greater").pvalue)
    scores = np.sign(x) * ranks
    centred = scores - scores.mean()
    denominator = float(np.sum(centred * centred))
    r = float(np.sum(centred[:-1] * centred[1:])) / denominator if denominator > 0 and n > 3 else 0.0
    if n > 3:
        r = (n * r + 1) / (n - 3)
    r = min(max(r, 0.0), _MAX_WINDOW_AUTOCORRELATION)
    p_adjusted = _signed_rank_normal_p(t_plus, ranks, r)
    return _SignedRank(n, t_plus, max(p_independent, p_adjusted), p_independent, p_adjusted, r)


def _signed_rank_normal_p(t_plus: float, ranks: np.ndarray, r: float) -> float:
    """Upper-tail normal p-value of ``T+`` with its variance inflated by (1 + r) / (1 - r), continuity-corrected."""
    n = len(ranks)
    variance = float(np.sum(ranks * ranks)) / 4 * (1 + r) / (1 - r)
    z = (t_plus - n * (n + 1) / 4 - 0.5) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2)) / 2  # the standard normal's upper tail, exact far out too


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


# --------------------------------------------------------------------------- metrics


def _error_rate(
    challenger: DeploymentSample,
    champion: DeploymentSample | None,
    gates: Gates,
    config: CanaryConfig,
    compare: bool,
    alpha: float,
) -> MetricResult:
    weight = config.weights["error_rate"]
    n1, e1 = challenger.requests, challenger.errors
    if n1 == 0:
        return MetricResult("error_rate", "nodata", False, weight, "error rate: no requests reached the challenger", {})
    r1 = e1 / n1
    p_gate = _p_at_least(e1, n1, gates.max_error_rate)
    breach = r1 > gates.max_error_rate and p_gate < alpha
    evidence: dict[str, EvidenceValue] = {
        "challenger_errors": e1,
        "challenger_requests": n1,
        "challenger_rate": r1,
        "max_error_rate": gates.max_error_rate,
        "gate_p_value": p_gate,
        "alpha": alpha,
    }
    parts = [f"error rate {_pct(r1)} ({e1}/{n1})"]
    worse = False
    if compare and champion is not None:
        n0, e0 = champion.requests, champion.errors
        r0 = e0 / n0
        tolerance = config.error_rate_tolerance_share * gates.max_error_rate
        p_cmp = _fisher(e1, n1, e0, n0, "greater")
        worse = p_cmp < alpha and r1 - r0 > tolerance
        evidence |= {
            "champion_errors": e0,
            "champion_requests": n0,
            "champion_rate": r0,
            "tolerance": tolerance,
            "fisher_p_value": p_cmp,
        }
        parts.append(f"vs champion {_pct(r0)} ({e0}/{n0}), Fisher p={p_cmp:.3g}, tolerance +{tolerance:.2%}")
    if breach:
        parts.append(f"breaches max_error_rate {_pct(gates.max_error_rate)} (binomial p={p_gate:.3g} < {alpha:.3g})")
        outcome: MetricOutcome = "breach"
    elif worse:
        parts.append("significantly worse than the champion")
        outcome = "worse"
    else:
        parts.append(f"within max_error_rate {_pct(gates.max_error_rate)}")
        outcome = "pass"
    unconfirmed = not breach and r1 > gates.max_error_rate
    hold = unconfirmed and p_gate < HOLD_P_VALUE
    if unconfirmed:
        parts[-1] = f"above max_error_rate {_pct(gates.max_error_rate)} but not significantly (p={p_gate:.3g})"
    return MetricResult("error_rate", outcome, breach, weight, "; ".join(parts), evidence, unconfirmed, hold)


def _p95(sample: DeploymentSample, min_samples: int) -> tuple[float | None, str]:
    """The p95 latency and where it came from: the samples when there are enough, else the aggregate, else the
    request-weighted mean of the windows' p95s (as Azure's adapter computes the aggregate)."""
    if len(sample.latencies_ms) >= min_samples or (sample.latencies_ms and sample.p95_ms is None):
        return float(np.quantile(np.asarray(sample.latencies_ms), 0.95)), "samples"
    if sample.p95_ms is not None:
        return sample.p95_ms, "aggregate"
    if sample.p95_windows:
        weights = [1 if w.requests is None else w.requests for w in sample.p95_windows]
        if sum(weights) > 0:
            return float(np.average([w.p95_ms for w in sample.p95_windows], weights=weights)), "aggregate"
    return None, "none"


def _latency(
    challenger: DeploymentSample,
    champion: DeploymentSample | None,
    gates: Gates,
    config: CanaryConfig,
    compare: bool,
    alpha: float,
) -> MetricResult:
    weight = config.weights["latency"]
    m = gates.min_samples
    p95_1, source_1 = _p95(challenger, m)
    if p95_1 is None:
        return MetricResult("latency", "nodata", False, weight, "latency: the challenger reported none", {})
    evidence: dict[str, EvidenceValue] = {
        "challenger_p95_ms": p95_1,
        "challenger_p95_source": source_1,
        "challenger_samples": len(challenger.latencies_ms),
        "max_p95_latency_ms": gates.max_p95_latency_ms,
        "alpha": alpha,
    }
    parts = [f"p95 latency {p95_1:.1f} ms ({source_1})"]

    # Absolute gate. With samples: are significantly more than 5 % of requests slower than the gate?
    if source_1 == "samples":
        over = int(np.sum(np.asarray(challenger.latencies_ms) > gates.max_p95_latency_ms))
        p_gate = _p_at_least(over, len(challenger.latencies_ms), _P95_EXCEEDANCE)
        evidence |= {"over_gate": over, "gate_p_value": p_gate}
        hard_breach = p95_1 > gates.max_p95_latency_ms and p_gate < alpha
    else:  # an aggregate cannot be tested; trust it once it covers enough requests
        p_gate = None
        hard_breach = p95_1 > gates.max_p95_latency_ms and challenger.requests >= m
    unconfirmed = p95_1 > gates.max_p95_latency_ms and not hard_breach

    ratio_breach = worse = False
    if compare and champion is not None:
        p95_0, source_0 = _p95(champion, m)
        if p95_0 is not None:
            ratio = p95_1 / p95_0 if p95_0 > 0 else math.inf
            evidence |= {"champion_p95_ms": p95_0, "champion_p95_source": source_0, "p95_ratio": ratio}
            evidence["max_latency_ratio"] = gates.max_latency_ratio
            parts.append(f"vs champion {p95_0:.1f} ms (ratio {ratio:.2f}, gate {gates.max_latency_ratio:.2f})")
            pairs = _paired_windows(challenger, champion, config.window_log_spread)
            needed = _windows_needed(config, alpha)
            evidence |= {
                "challenger_windows": len(challenger.p95_windows),
                "champion_windows": len(champion.p95_windows),
                "paired_windows": len(pairs),
                "min_windows": needed,
            }
            if 0 < len(pairs) < needed:
                parts.append(f"{len(pairs)} paired windows < {needed}: too few for the per-window test")
            if len(pairs) >= needed:
                evidence["latency_test"] = "paired_windows"
                ratio_breach, worse = _window_tests(pairs, gates, config, alpha, evidence, parts)
            elif len(challenger.latencies_ms) >= m and len(champion.latencies_ms) >= m:
                evidence["latency_test"] = "per_request"
                ratio_breach, worse = _latency_tests(
                    challenger, champion, p95_0, ratio, gates, config, alpha, evidence, parts
                )
            else:
                # Aggregates only: no test is possible, so the point values decide (documented).
                evidence["latency_test"] = "aggregates"
                ratio_breach = ratio > gates.max_latency_ratio
                worse = ratio > 1.0 + config.latency_tolerance
                parts.append("aggregates only: compared without a test")
    if hard_breach:
        parts.append(f"breaches max_p95_latency_ms {gates.max_p95_latency_ms:.0f}" + _p_text(p_gate, alpha))
        outcome: MetricOutcome = "breach"
    elif ratio_breach:
        parts.append(f"breaches max_latency_ratio {gates.max_latency_ratio:.2f}")
        outcome = "breach"
    elif worse:
        parts.append(f"significantly slower than the champion beyond the {config.latency_tolerance:.0%} tolerance")
        outcome = "worse"
    elif unconfirmed:
        parts.append(f"above max_p95_latency_ms {gates.max_p95_latency_ms:.0f} but not significantly")
        outcome = "pass"
    else:
        outcome = "pass"
        parts.append("within the gates")
    return MetricResult("latency", outcome, hard_breach, weight, "; ".join(parts), evidence, unconfirmed)


def _windows_needed(config: CanaryConfig, alpha: float) -> int:
    """Paired windows for the per-window test: ``min_windows``, and as many as it takes for the test (both its
    exact and its normal p-value, with no autocorrelation) to fail a challenger whose least-slowed window went
    the other way (see ``CanaryConfig.min_windows``): 11 at alpha = 0.0025."""
    n = config.min_windows
    while n < 64:
        ranks = np.arange(1.0, n + 1)
        t_plus = float(ranks.sum() - 1)  # every window slower but the one with the smallest difference
        exact = float(stats.wilcoxon(np.concatenate([[-1.0], ranks[1:]]), alternative="greater").pvalue)
        if max(exact, _signed_rank_normal_p(t_plus, ranks, 0.0)) < alpha:
            return n
        n += 1
    return n


@dataclass(frozen=True)
class _Pair:
    """One window both deployments served: log(challenger p95 / champion p95), and the allowance for the
    challenger's p95 having been taken from more requests (``CanaryConfig.window_log_spread``)."""

    log_ratio: float
    allowance: float
    requests: tuple[int | None, int | None]


def _p95_level(requests: int) -> float:
    """The quantile at which the nearest-rank p95 of ``requests`` values sits on average."""
    return math.ceil(0.95 * requests) / (requests + 1)


def _paired_windows(challenger: DeploymentSample, champion: DeploymentSample, log_spread: float) -> list[_Pair]:
    """Every window both served (the same start, requests on both sides), in time order."""
    theirs = {w.start: w for w in champion.p95_windows if w.requests != 0}
    pairs: list[_Pair] = []
    for window in sorted(challenger.p95_windows, key=lambda w: w.start):
        other = theirs.get(window.start)
        if window.requests == 0 or other is None:
            continue
        allowance = 0.0
        if window.requests is not None and other.requests is not None and window.requests > other.requests:
            gap = _NORMAL.inv_cdf(_p95_level(window.requests)) - _NORMAL.inv_cdf(_p95_level(other.requests))
            allowance = max(0.0, log_spread * gap)
        log_ratio = math.log(max(window.p95_ms, _MIN_WINDOW_P95_MS)) - math.log(max(other.p95_ms, _MIN_WINDOW_P95_MS))
        pairs.append(_Pair(log_ratio, allowance, (window.requests, other.requests)))
    return pairs


def _window_tests(
    pairs: Sequence[_Pair],
    gates: Gates,
    config: CanaryConfig,
    alpha: float,
    evidence: dict[str, EvidenceValue],
    parts: list[str],
) -> tuple[bool, bool]:
    """Paired per-window p95s → (ratio breach, worse).

    Worse: the signed-rank test says the window log-ratios (less their allowances) are centred above
    log(1 + tolerance). Ratio breach: worse, the median window ratio above ``max_latency_ratio``, and the same
    test against log(max_latency_ratio). A breach implies worse.

    The autocorrelation credited is estimated from the windows themselves, and a slowdown that drifts or steps
    up during the bake (a leak, a load-dependent slowdown) looks like strong serial correlation: credited as
    noise, it would let a challenger whose typical minute is beyond the gate pass. So when the median window
    ratio is beyond ``max_latency_ratio`` both tests use the p-value for independent windows. A healthy
    challenger's median minute is that far off only when most of its minutes are, which serial correlation
    between neighbouring minutes does not explain.
    """
    d = np.asarray([p.log_ratio for p in pairs])
    allowance = np.asarray([p.allowance for p in pairs])
    tolerance = math.log1p(config.latency_tolerance)
    worse_test = _signed_rank_greater(d - allowance - tolerance)
    gate_test = _signed_rank_greater(d - allowance - math.log(gates.max_latency_ratio))
    median_ratio = math.exp(float(np.median(d)))
    beyond_gate = median_ratio > gates.max_latency_ratio

    def decisive(test: _SignedRank) -> float:
        return test.p_independent if beyond_gate else test.p_value

    worse = decisive(worse_test) < alpha
    ratio_breach = worse and beyond_gate and decisive(gate_test) < alpha
    evidence |= {
        "challenger_window_requests": sum(p.requests[0] or 0 for p in pairs),
        "champion_window_requests": sum(p.requests[1] or 0 for p in pairs),
        "window_allowance_max": float(allowance.max()),
        "latency_tolerance": config.latency_tolerance,
        "window_p95_ratio_median": median_ratio,
        "windows_beyond_tolerance": int(np.sum(d > tolerance)),
        "windows_beyond_max_latency_ratio": int(np.sum(d > math.log(gates.max_latency_ratio))),
        "signed_rank_statistic": worse_test.statistic,
        "signed_rank_p_value": worse_test.p_value,
        "signed_rank_p_value_independent": worse_test.p_independent,
        "window_autocorrelation": worse_test.autocorrelation,
        "gate_signed_rank_p_value": gate_test.p_value,
        "gate_signed_rank_p_value_independent": gate_test.p_independent,
        "window_p_values_used": "independent" if beyond_gate else "adjusted",
    }
    parts.append(
        f"{len(d)} paired windows: median p95 ratio {median_ratio:.2f}, "
        f"{evidence['windows_beyond_tolerance']} beyond the {config.latency_tolerance:.0%} tolerance, "
        f"signed-rank p={worse_test.p_value:.3g} (autocorrelation {worse_test.autocorrelation:.2f}), "
        f"against max_latency_ratio p={gate_test.p_value:.3g}"
        + (
            "; the median window is beyond the gate, so the p-values for independent windows decide"
            if beyond_gate
            else ""
        )
    )
    return ratio_breach, worse


def _p_text(p: float | None, alpha: float) -> str:
    return "" if p is None else f" (binomial p={p:.3g} < {alpha:.3g})"


def _latency_tests(
    challenger: DeploymentSample,
    champion: DeploymentSample,
    p95_0: float,
    ratio: float,
    gates: Gates,
    config: CanaryConfig,
    alpha: float,
    evidence: dict[str, EvidenceValue],
    parts: list[str],
) -> tuple[bool, bool]:
    """Mann-Whitney U with a tolerance, and a tail test, behind the p95 ratio gate → (ratio breach, worse)."""
    x1 = np.asarray(challenger.latencies_ms)
    x0 = np.asarray(champion.latencies_ms)
    t1, t0 = _trim_top(x1, config.trim_fraction), _trim_top(x0, config.trim_fraction)
    # H1: the challenger's latencies, shrunk by the tolerance, are still stochastically larger.
    scale = 1.0 + config.latency_tolerance
    mwu = stats.mannwhitneyu(t1 / scale, t0, alternative="greater")
    p_mwu = float(mwu.pvalue)
    # Tail: do more of the challenger's requests than the champion's exceed the POOLED p95? With a
    # threshold taken from both sides together, Fisher's test is exact when the two are alike (A/A),
    # and it sees a slow tail that leaves the median — and so Mann-Whitney — untouched.
    pooled = float(np.quantile(np.concatenate([x1, x0]), 0.95))
    over1, over0 = int(np.sum(x1 > pooled)), int(np.sum(x0 > pooled))
    p_tail = _fisher(over1, len(x1), over0, len(x0), "greater")
    evidence |= {
        "trimmed_challenger": len(x1) - len(t1),
        "trimmed_champion": len(x0) - len(t0),
        "challenger_median_ms": float(np.median(t1)),
        "champion_median_ms": float(np.median(t0)),
        "mann_whitney_u": float(mwu.statistic),
        "mann_whitney_p_value": p_mwu,
        "latency_tolerance": config.latency_tolerance,
        "pooled_p95_ms": pooled,
        "challenger_over_pooled_p95": over1,
        "champion_over_pooled_p95": over0,
        "tail_p_value": p_tail,
    }
    parts.append(f"Mann-Whitney p={p_mwu:.3g} (tolerance {config.latency_tolerance:.0%}), tail p={p_tail:.3g}")
    # Two tests back the ratio gate, each at alpha/2 (Bonferroni) so its false-alarm rate stays <= alpha.
    ratio_breach = ratio > gates.max_latency_ratio and min(p_mwu, p_tail) < alpha / 2
    return ratio_breach, p_mwu < alpha


def _positive_rate(
    challenger: DeploymentSample,
    champion: DeploymentSample | None,
    gates: Gates,
    config: CanaryConfig,
    compare: bool,
    alpha: float,
    watched: WatchedClass | None,
) -> MetricResult:
    weight = config.weights["positive_rate"]
    m = gates.min_samples
    if not compare or champion is None or challenger.successes < m or champion.successes < m:
        return MetricResult(
            "positive_rate", "nodata", False, weight, f"positive rate: needs {m} predictions on both sides", {}
        )
    label, note = "positive rate", ""
    extra: dict[str, EvidenceValue] = {}
    if watched is not None:
        # Bonferroni over the classes the watched one was picked from: the metric keeps its alpha (a healthy
        # challenger's most-moved class is significant at alpha / K with probability <= alpha).
        label = f"class {watched.label!r} share (the most moved of {watched.among} classes)"
        note = f", tested at alpha/{watched.among} = {alpha / watched.among:.3g} (Bonferroni over the classes)"
        extra = {"watched_class": watched.label, "classes_compared": watched.among, "metric_alpha": alpha}
        alpha /= watched.among
    return _compare_proportions(
        _Proportions(
            metric="positive_rate",
            label=label,
            note=note,
            extra=extra,
            hits=(challenger.predicted_positive, champion.predicted_positive),
            totals=(challenger.successes, champion.successes),
            two_sided=True,
            gate_name="max_positive_rate_shift",
            gate=gates.max_positive_rate_shift,
            tolerance=config.positive_rate_tolerance_share * gates.max_positive_rate_shift,
        ),
        weight,
        alpha,
    )


def _accuracy(
    challenger: DeploymentSample,
    champion: DeploymentSample | None,
    gates: Gates,
    config: CanaryConfig,
    compare: bool,
    alpha: float,
) -> MetricResult:
    weight = config.weights["accuracy"]
    m = gates.min_samples
    if not compare or champion is None or challenger.labelled < m or champion.labelled < m:
        return MetricResult(
            "accuracy", "nodata", False, weight, f"live accuracy: needs {m} labelled requests on both sides", {}
        )
    return _compare_proportions(
        _Proportions(
            metric="accuracy",
            label="live accuracy",
            hits=(challenger.correct, champion.correct),
            totals=(challenger.labelled, champion.labelled),
            two_sided=False,
            gate_name="max_accuracy_drop",
            gate=gates.max_accuracy_drop,
            tolerance=config.accuracy_tolerance_share * gates.max_accuracy_drop,
        ),
        weight,
        alpha,
    )


@dataclass(frozen=True)
class _Proportions:
    """A challenger-vs-champion proportion. One-sided metrics are bad when the challenger's is LOWER."""

    metric: str
    label: str
    hits: tuple[int, int]  # (challenger, champion)
    totals: tuple[int, int]
    two_sided: bool
    gate_name: str
    gate: float
    tolerance: float
    #: Appended to the description, and added to the evidence (the positive rate's watched class, if any).
    note: str = ""
    extra: Mapping[str, EvidenceValue] = field(default_factory=dict)


def _compare_proportions(p: _Proportions, weight: float, alpha: float) -> MetricResult:
    (k1, k0), (n1, n0) = p.hits, p.totals
    r1, r0 = k1 / n1, k0 / n0
    if p.two_sided:
        effect = abs(r1 - r0)  # a shift either way
        p_diff = _fisher(k1, n1, k0, n0, "two-sided")
        shown = f"shift {r1 - r0:+.2%}"
    else:
        effect = r0 - r1  # the drop
        p_diff = _fisher(k1, n1, k0, n0, "less")
        shown = f"drop {effect:+.2%}"
    # Kayenta-style: the difference must be real (Fisher, p < alpha) AND larger than the gate (breach)
    # or than the tolerance (worse). A difference the data cannot tell from noise never fails a rollout.
    breach = effect > p.gate and p_diff < alpha
    worse = p_diff < alpha and effect > p.tolerance
    unconfirmed = effect > p.gate and not breach
    evidence: dict[str, EvidenceValue] = {
        "challenger_hits": k1,
        "challenger_total": n1,
        "champion_hits": k0,
        "champion_total": n0,
        "effect": effect,
        p.gate_name: p.gate,
        "tolerance": p.tolerance,
        "fisher_p_value": p_diff,
        "alpha": alpha,
        **p.extra,
    }
    text = (
        f"{p.label} {_pct(r1)} ({k1}/{n1}) vs champion {_pct(r0)} ({k0}/{n0}), {shown}, Fisher p={p_diff:.3g}" + p.note
    )
    if breach:
        return MetricResult(
            p.metric,
            "breach",
            False,
            weight,
            f"{text}; breaches {p.gate_name} {_pct(p.gate)} (p={p_diff:.3g} < {alpha:.3g})",
            evidence,
        )
    if worse:
        return MetricResult(
            p.metric, "worse", False, weight, f"{text}; significantly worse by more than {_pct(p.tolerance)}", evidence
        )
    if unconfirmed:
        suffix = f"beyond {p.gate_name} {_pct(p.gate)} but not significantly (p={p_diff:.3g} >= {alpha:.3g})"
    else:
        suffix = f"within {p.gate_name} {_pct(p.gate)}"
    return MetricResult(p.metric, "pass", False, weight, f"{text}; {suffix}", evidence, unconfirmed)


# --------------------------------------------------------------------------- verdicts


def _combine(
    metrics: Sequence[MetricResult], mode: AnalysisMode, gates: Gates, config: CanaryConfig, lead: str
) -> CanaryVerdict:
    """Gate breaches fail; too little data is inconclusive; otherwise the weighted score decides."""
    reasons = [lead] + [m.reason for m in metrics]
    breaches = [m for m in metrics if m.outcome == "breach"]
    scored = [m for m in metrics if m.outcome != "nodata"]
    total = sum(m.weight for m in scored)
    score = sum(m.weight for m in scored if m.outcome == "pass") / total if total else None
    if breaches:
        hard = any(m.hard for m in breaches)
        names = ", ".join(m.metric for m in breaches)
        reasons.insert(0, f"fail ({'hard' if hard else 'soft'}): gate breached on {names}")
        return _verdict("fail", hard, mode, score, metrics, reasons, gates)
    if mode == "insufficient" or score is None:
        reasons.insert(0, f"inconclusive: fewer than min_samples={gates.min_samples} requests to judge")
        return _verdict("inconclusive", False, mode, score, metrics, reasons, gates)
    worse = ", ".join(m.metric for m in metrics if m.outcome == "worse")
    verdict: Verdict
    if score < config.marginal_score:
        verdict = "fail"
        reasons.insert(
            0, f"fail (soft): score {score:.2f} < marginal_score {config.marginal_score:.2f}; worse: {worse}"
        )
    elif score < config.pass_score:
        verdict = "marginal"
        reasons.insert(0, f"marginal: score {score:.2f} < pass_score {config.pass_score:.2f}; worse: {worse}")
    elif held := [m.metric for m in metrics if m.hold]:
        # Likely beyond a gate, on too little traffic to be sure: advancing would show it to more users before
        # knowing (a 5 % error rate against a 1 % gate passed 198 of 300 simulated bakes of 50 requests). Holding bakes it
        # longer at this step; still unproven after the extensions, it rolls back.
        verdict = "marginal"
        reasons.insert(
            0,
            f"marginal: score {score:.2f}, but {', '.join(held)} likely beyond its gate (p < {HOLD_P_VALUE:g}), "
            "not significantly yet: bake longer to confirm or clear it",
        )
    else:
        verdict = "pass"
        reasons.insert(0, f"pass: score {score:.2f} >= pass_score {config.pass_score:.2f}")
    return _verdict(verdict, False, mode, score, metrics, reasons, gates)


def _verdict(
    verdict: Verdict,
    hard: bool,
    mode: AnalysisMode,
    score: float | None,
    metrics: Sequence[MetricResult],
    reasons: list[str],
    gates: Gates,
) -> CanaryVerdict:
    # An excess that is not significant is surfaced whatever the verdict, so a person reading the run sees it;
    # a likely one (``hold``) also keeps a passing verdict at "marginal" (see _combine).
    warnings = tuple(f"{m.metric}: beyond its gate, not significantly yet" for m in metrics if m.unconfirmed_excess)
    return CanaryVerdict(verdict, hard, mode, score, tuple(metrics), tuple(reasons), warnings, gates.confidence)


def analyse_canary(
    challenger: DeploymentSample,
    champion: DeploymentSample | None,
    gates: Gates,
    config: CanaryConfig | None = None,
    watched: WatchedClass | None = None,
) -> CanaryVerdict:
    """Judge the challenger's bake window against the champion's (None when there is no champion).

    ``watched``: for a multiclass model, the class both samples' ``predicted_positive`` counts and how many it was
    chosen among (its positive-rate test is Bonferroni-corrected for the choice); None for a binary model, whose
    ``predicted_positive`` counts its positive class."""
    config = config or CanaryConfig()
    m = gates.min_samples
    mode: AnalysisMode
    if challenger.requests < m:
        mode = "insufficient"
        lead = f"challenger served {challenger.requests} < min_samples={m} requests: only breaches can be judged"
    elif champion is None or champion.requests < m:
        mode = "gates_only"
        served = "no champion" if champion is None else f"champion served {champion.requests} < min_samples={m}"
        lead = f"{served}: comparisons skipped, absolute gates only"
    else:
        mode = "full"
        lead = f"challenger {challenger.requests} vs champion {champion.requests} requests at confidence {gates.confidence}"
    compare = mode == "full"
    # Bonferroni over the four metrics: a healthy challenger fails with probability <= 1 - confidence.
    alpha = (1.0 - gates.confidence) / 4
    metrics = [
        _error_rate(challenger, champion, gates, config, compare, alpha),
        _latency(challenger, champion, gates, config, compare, alpha),
        _positive_rate(challenger, champion, gates, config, compare, alpha, watched),
        _accuracy(challenger, champion, gates, config, compare, alpha),
    ]
    return _combine(metrics, mode, gates, config, lead)


def judge_shadow(
    agreement: ShadowAgreement,
    challenger_latencies_ms: Sequence[float],
    champion_latencies_ms: Sequence[float],
    shadow: ShadowSpec,
    gates: Gates,
    config: CanaryConfig | None = None,
) -> CanaryVerdict:
    """Judge the shadow phase: prediction agreement on mirrored requests, and their latencies."""
    config = config or CanaryConfig()
    alpha = (1.0 - gates.confidence) / 2  # Bonferroni over agreement and latency
    m = gates.min_samples
    challenger = DeploymentSample("challenger", len(challenger_latencies_ms), 0, tuple(challenger_latencies_ms))
    champion = DeploymentSample("champion", len(champion_latencies_ms), 0, tuple(champion_latencies_ms))
    n, k = agreement.compared, agreement.agreed
    rate = k / n if n else None
    # H1: the true agreement is below min_agreement (exact binomial, lower tail).
    p = _p_at_most(k, n, shadow.min_agreement) if n else 1.0
    breach = rate is not None and rate < shadow.min_agreement and p < alpha
    unconfirmed = rate is not None and rate < shadow.min_agreement and not breach
    text = f"prediction agreement {_pct(rate)} ({k}/{n}) vs min_agreement {_pct(shadow.min_agreement)}"
    if breach:
        text += f"; significantly below (binomial p={p:.3g} < {alpha:.3g})"
    elif unconfirmed:
        text += f"; below but not significantly (p={p:.3g})"
    agreement_result = MetricResult(
        "agreement",
        "nodata" if n == 0 else ("breach" if breach else "pass"),
        False,
        config.weights["agreement"],
        text,
        {"compared": n, "agreed": k, "rate": rate, "min_agreement": shadow.min_agreement, "p_value": p, "alpha": alpha},
        unconfirmed,
    )
    enough = n >= m and challenger.requests >= m
    mode: AnalysisMode = "full" if enough and champion.requests >= m else ("gates_only" if enough else "insufficient")
    latency = _latency(challenger, champion, gates, config, mode == "full", alpha)
    lead = f"shadow: {n} mirrored requests compared, mirror {shadow.mirror_percent}%"
    return _combine([agreement_result, latency], mode, gates, config, lead)
