"""Classification metrics in plain numpy (the compute environment stays small; no scikit-learn).

Binary inputs: ``y`` in {0, 1}, ``p`` = P(positive). Precision/recall/F1 are of the positive
(rare) class. PR-AUC is average precision (the step-wise area, as scikit-learn computes it).
Multiclass inputs: ``p`` is [n, K]; precision/recall/F1/ROC-AUC/PR-AUC are macro one-vs-rest, averaged
over the classes present (in the labels or the predictions, as scikit-learn's ``labels`` default does):
a class absent from the evaluation rows is not counted as a zero.
An undefined metric (e.g. ROC-AUC with one class present; a class's precision when nothing was predicted
as that class, its recall when it has no rows) is ``None`` in JSON.
Per-class guardrail metrics (``class_metrics``, ``class_metric``) are one class's one-vs-rest precision, recall
and F1 from the predicted class (the argmax, or the threshold for binary): defined when the class has rows, where a
class the model never predicts has precision 0 (scikit-learn's zero_division=0, as the macro average counts it);
undefined (``None``) when it has none, so a bootstrap resample without the class is skipped. Probabilities that are not finite (a
diverged model) make every metric undefined, never a number.
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


def _finite(p: FloatArray) -> bool:
    return bool(np.isfinite(p).all())


def non_finite_rows(p: FloatArray) -> int:
    """Rows with a probability that is NaN or infinite (any class's, for multiclass): a broken model's mark."""
    finite = np.isfinite(p)
    return int(np.count_nonzero(~finite.all(axis=1) if p.ndim == 2 else ~finite))


def roc_auc(y: IntArray, p: FloatArray) -> float:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0 or not _finite(p):
        return math.nan
    ranks = _average_ranks(p.astype(np.float64))
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: IntArray, p: FloatArray) -> float:
    n_pos = int(y.sum())
    if n_pos == 0 or not _finite(p):
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


def _defined_ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def expected_calibration_error(y: IntArray, p: FloatArray, bins: int = 10) -> float:
    """Binary: calibration of P(positive); multiclass: of the top-class confidence. Equal-width bins."""
    if p.ndim == 2:
        confidence = p.max(axis=1)
        outcome = (p.argmax(axis=1) == y).astype(np.float64)
    else:
        confidence, outcome = p, y.astype(np.float64)
    if len(y) == 0 or not _finite(p):  # a NaN confidence would fall out of every bin and read as calibrated
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


def f1_threshold(y: IntArray, p: FloatArray) -> float | None:
    """The probability from which a binary model best predicts positive: the one that maximises the positive
    class's F1 on (``y``, ``p``), predicting positive when p >= it (of equal F1, the highest: fewer alerts). None
    when no row is positive or a probability is not finite: there is nothing to choose by."""
    if p.ndim != 1 or not _finite(p) or not (y == 1).any():
        return None
    order = np.argsort(-p, kind="stable")
    ranked, hits = p[order], (y[order] == 1).astype(np.float64)
    true_positives = np.cumsum(hits)
    last = np.r_[ranked[1:] != ranked[:-1], True]  # a cut between rows of different probability (ties go together)
    flagged = np.arange(1, len(ranked) + 1, dtype=np.float64)[last]
    tp = true_positives[last]
    f1 = 2 * tp / (flagged + hits.sum())
    best = np.flatnonzero(f1 == f1.max())[0]  # the first cut: the highest probability of the best F1
    return float(ranked[last][best])


def classification_metrics(
    y: IntArray,
    p: FloatArray,
    threshold: float = 0.5,
    classes: list[str] | None = None,
    predictions: IntArray | None = None,
) -> dict[str, Any]:
    """accuracy, precision, recall, f1, roc_auc, pr_auc, ece and per-class precision/recall/support. The
    threshold-dependent ones judge ``predictions`` when given (train.py's cross-fitted predictions), else the
    classes ``p`` and ``threshold`` predict."""
    k = p.shape[1] if p.ndim == 2 else 2
    names = classes or [str(i) for i in range(k)]
    if not _finite(p):
        undefined: dict[str, Any] = {"precision": None, "recall": None}
        return {
            **dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece"), math.nan),
            "per_class": {names[c]: {**undefined, "support": int((y == c).sum())} for c in range(k)},
            "n": len(y),
            "threshold": threshold,
        }
    pred = predict_classes(p, threshold) if predictions is None else predictions
    per_class: dict[str, dict[str, float | int | None]] = {}
    present: list[tuple[float, float]] = []  # (precision, recall) of each class in the labels or predictions
    for c in range(k):
        tp, predicted, support = int(((pred == c) & (y == c)).sum()), int((pred == c).sum()), int((y == c).sum())
        per_class[names[c]] = {
            "precision": _defined_ratio(tp, predicted),
            "recall": _defined_ratio(tp, support),
            "support": support,
        }
        if predicted or support:  # present: an undefined half counts as 0, as in scikit-learn
            present.append((_ratio(tp, predicted), _ratio(tp, support)))
    if p.ndim == 2:
        precision = float(np.mean([pr for pr, _ in present])) if present else math.nan
        recall = float(np.mean([rc for _, rc in present])) if present else math.nan
        f1 = float(np.mean([_ratio(2 * pr * rc, pr + rc) for pr, rc in present])) if present else math.nan
        aucs = [roc_auc((y == c).astype(np.int64), p[:, c]) for c in range(k)]
        aps = [average_precision((y == c).astype(np.int64), p[:, c]) for c in range(k)]
        roc = float(np.nanmean(aucs)) if not all(math.isnan(a) for a in aucs) else math.nan
        pr = float(np.nanmean(aps)) if not all(math.isnan(a) for a in aps) else math.nan
    else:
        tp = int(((pred == 1) & (y == 1)).sum())
        precision, recall = _ratio(tp, int((pred == 1).sum())), _ratio(tp, int((y == 1).sum()))
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


#: The metrics a guardrail can judge on one class (one-vs-rest, from the predicted class).
CLASS_METRICS = ("precision", "recall", "f1")


def _one_class(tp: int, predicted: int, support: int) -> dict[str, float | None]:
    """One class's precision, recall and F1 from its counts; all None when the class has no rows."""
    if not support:
        return dict.fromkeys(CLASS_METRICS)
    return {"precision": _ratio(tp, predicted), "recall": tp / support, "f1": 2 * tp / (predicted + support)}


def class_metrics(y: IntArray, predicted: IntArray, classes: list[str]) -> dict[str, dict[str, float | int | None]]:
    """Each class's one-vs-rest precision, recall, F1 (see the module's note) and support, by class name."""
    result: dict[str, dict[str, float | int | None]] = {}
    for c, name in enumerate(classes):
        hit, flagged = y == c, predicted == c
        support = int(hit.sum())
        result[name] = {**_one_class(int((hit & flagged).sum()), int(flagged.sum()), support), "support": support}
    return result


def class_metric(name: str, c: int, y: IntArray, predicted: IntArray) -> float:
    """One class's one-vs-rest ``name`` (precision, recall or f1); NaN when the class has no row in ``y``."""
    hit, flagged = y == c, predicted == c
    value = _one_class(int((hit & flagged).sum()), int(flagged.sum()), int(hit.sum()))[name]
    return math.nan if value is None else value


def metric_value(name: str, y: IntArray, p: FloatArray, threshold: float = 0.5) -> float:
    """One metric, fast (used by the bootstrap and by early stopping)."""
    if not _finite(p):
        return math.nan
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
