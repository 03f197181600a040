"""Classification metrics in plain numpy (the compute environment stays small; no scikit-learn).

Binary inputs: ``y`` in {0, 1}, ``p`` = P(positive). Precision/recall/F1 are of the positive
(rare) class. PR-AUC is average precision (the step-wise area, as scikit-learn computes it).
Multiclass inputs: ``p`` is [n, K]; precision/recall/F1/ROC-AUC/PR-AUC are macro one-vs-rest.
An undefined metric (e.g. ROC-AUC with one class present) is ``None`` in JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing their average rank (what the Mann-Whitney U statistic needs)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(y: IntArray, p: FloatArray) -> float:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(p.astype(np.float64))
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: IntArray, p: FloatArray) -> float:
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-p, kind="mergesort")
    scores = p[order]
    hits = y[order]
    tps = np.cumsum(hits)
    fps = np.cumsum(1 - hits)
    # One operating point per distinct score: tied rows are admitted together.
    last_of_group = np.concatenate((np.flatnonzero(np.diff(scores)), [len(scores) - 1]))
    tps, fps = tps[last_of_group], fps[last_of_group]
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def expected_calibration_error(y: IntArray, p: FloatArray, bins: int = 10) -> float:
    """Binary: calibration of P(positive); multiclass: of the top-class confidence. Equal-width bins."""
    if p.ndim == 2:
        confidence = p.max(axis=1)
        outcome = (p.argmax(axis=1) == y).astype(np.float64)
    else:
        confidence, outcome = p, y.astype(np.float64)
    if len(y) == 0:
        return math.nan
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(outcome[mask].mean() - confidence[mask].mean())
    return float(total)


def predict_classes(p: FloatArray, threshold: float) -> IntArray:
    classes: IntArray = p.argmax(axis=1).astype(np.int64) if p.ndim == 2 else (p >= threshold).astype(np.int64)
    return classes


def classification_metrics(
    y: IntArray, p: FloatArray, threshold: float = 0.5, classes: list[str] | None = None
) -> dict[str, Any]:
    """accuracy, precision, recall, f1, roc_auc, pr_auc, ece and per-class precision/recall."""
    pred = predict_classes(p, threshold)
    k = p.shape[1] if p.ndim == 2 else 2
    names = classes or [str(i) for i in range(k)]
    per_class: dict[str, dict[str, float | int]] = {}
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        per_class[names[c]] = {
            "precision": _ratio(tp, int((pred == c).sum())),
            "recall": _ratio(tp, int((y == c).sum())),
            "support": int((y == c).sum()),
        }
    if p.ndim == 2:
        precision = float(np.mean([m["precision"] for m in per_class.values()]))
        recall = float(np.mean([m["recall"] for m in per_class.values()]))
        f1s = [_ratio(2 * m["precision"] * m["recall"], m["precision"] + m["recall"]) for m in per_class.values()]
        f1 = float(np.mean(f1s))
        aucs = [roc_auc((y == c).astype(np.int64), p[:, c]) for c in range(k)]
        aps = [average_precision((y == c).astype(np.int64), p[:, c]) for c in range(k)]
        roc = float(np.nanmean(aucs)) if not all(math.isnan(a) for a in aucs) else math.nan
        pr = float(np.nanmean(aps)) if not all(math.isnan(a) for a in aps) else math.nan
    else:
        positive = per_class[names[1]]
        precision, recall = float(positive["precision"]), float(positive["recall"])
        f1 = _ratio(2 * precision * recall, precision + recall)
        roc, pr = roc_auc(y, p), average_precision(y, p)
    return {
        "accuracy": float((pred == y).mean()) if len(y) else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc,
        "pr_auc": pr,
        "ece": expected_calibration_error(y, p),
        "per_class": per_class,
        "n": len(y),
        "threshold": threshold,
    }


def metric_value(name: str, y: IntArray, p: FloatArray, threshold: float = 0.5) -> float:
    """One metric, fast (used by the bootstrap and by early stopping)."""
    if name == "pr_auc" and p.ndim == 1:
        return average_precision(y, p)
    if name == "roc_auc" and p.ndim == 1:
        return roc_auc(y, p)
    if name == "accuracy":
        return float((predict_classes(p, threshold) == y).mean())
    value = classification_metrics(y, p, threshold)[name]
    return float(value) if value is not None else math.nan


def json_safe(value: Any) -> Any:
    """NaN/inf become null: JSON has no NaN and the policy engine must not parse one."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
