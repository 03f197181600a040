"""Challenger vs champion on one holdout: paired bootstrap of the primary metric (and of each guardrail's, a
per-class one's included), McNemar on accuracy."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from training_jobs.metrics import class_metric, metric_value, predict_classes

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Difference:
    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    bootstrap_samples: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class McNemar:
    b: int  # champion right, challenger wrong
    c: int  # challenger right, champion wrong
    statistic: float
    p_value: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def paired_bootstrap(
    metric: str,
    y: IntArray,
    challenger: FloatArray,
    champion: FloatArray,
    challenger_threshold: float,
    champion_threshold: float,
    samples: int,
    confidence: float,
    seed: int,
) -> Difference:
    """challenger − champion, resampling rows (both models see the same resample each time).

    ``p_value`` is one-sided: the share of resamples where the challenger is not better
    (difference ≤ 0). Resamples where the metric is undefined (no positive drawn) are skipped
    and not counted in ``bootstrap_samples``.
    """
    estimate = metric_value(metric, y, challenger, challenger_threshold) - metric_value(
        metric, y, champion, champion_threshold
    )
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs: list[float] = []
    for _ in range(samples):
        rows = rng.integers(0, n, size=n)
        d = metric_value(metric, y[rows], challenger[rows], challenger_threshold) - metric_value(
            metric, y[rows], champion[rows], champion_threshold
        )
        if math.isfinite(d):
            diffs.append(d)
    return _summarise(metric, estimate, diffs, confidence)


def paired_class_bootstrap(
    metric: str,
    cls: int,
    y: IntArray,
    challenger: IntArray,
    champion: IntArray,
    samples: int,
    confidence: float,
    seed: int,
) -> Difference:
    """The same paired bootstrap for one class's one-vs-rest ``metric`` (precision, recall or f1), from each model's
    predicted classes (``predict_classes``: the argmax, or its threshold for a binary model). Resamples are drawn as
    in :func:`paired_bootstrap`; one without a row of the class (the metric undefined) is skipped."""
    estimate = class_metric(metric, cls, y, challenger) - class_metric(metric, cls, y, champion)
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs: list[float] = []
    for _ in range(samples):
        rows = rng.integers(0, n, size=n)
        d = class_metric(metric, cls, y[rows], challenger[rows]) - class_metric(metric, cls, y[rows], champion[rows])
        if math.isfinite(d):
            diffs.append(d)
    return _summarise(metric, estimate, diffs, confidence)


def _summarise(metric: str, estimate: float, diffs: list[float], confidence: float) -> Difference:
    """The percentile interval and one-sided p-value of the resampled differences (none: NaN, 0 samples)."""
    if not diffs:
        return Difference(metric, estimate, math.nan, math.nan, confidence, math.nan, 0)
    values = np.asarray(diffs)
    alpha = (1.0 - confidence) / 2.0
    return Difference(
        metric=metric,
        estimate=float(estimate),
        ci_low=float(np.quantile(values, alpha)),
        ci_high=float(np.quantile(values, 1.0 - alpha)),
        confidence=confidence,
        p_value=float(np.mean(values <= 0.0)),
        bootstrap_samples=len(diffs),
    )


def mcnemar(
    y: IntArray, challenger: FloatArray, champion: FloatArray, challenger_threshold: float, champion_threshold: float
) -> McNemar:
    """McNemar's test on per-row correctness. Exact binomial p-value below 25 discordant rows,
    else the continuity-corrected chi-square (1 degree of freedom)."""
    right_new = predict_classes(challenger, challenger_threshold) == y
    right_old = predict_classes(champion, champion_threshold) == y
    b = int((right_old & ~right_new).sum())
    c = int((right_new & ~right_old).sum())
    n = b + c
    if n == 0:
        return McNemar(b, c, 0.0, 1.0)
    statistic = (abs(b - c) - 1.0) ** 2 / n if abs(b - c) >= 1 else 0.0
    if n < 25:
        tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0**n
        p_value = min(1.0, 2.0 * tail)
    else:
        p_value = math.erfc(math.sqrt(statistic / 2.0))  # chi-square(1) survival function
    return McNemar(b, c, float(statistic), float(p_value))
