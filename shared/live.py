"""Live signals: how a deployed model does on delayed labels, whether its inputs drifted, and the schedule.

Three parts, pure where they can be:

- **Labels ⨝ predictions.** Every scored request has a request id (:mod:`shared.platform.scoring`); label
  producers drop ``request_id,label[,row]`` files under ``feedback/<model>/`` (:meth:`BlobStore.iter_feedback`).
  :func:`join_labels` matches them row by row with a deployment's :class:`ScoringRecord` s and counts
  ``labelled`` / ``correct`` rows, plus the confusion counts and scores the live metrics need.
  :meth:`LiveCounts.metrics` computes, from labels alone: ``accuracy`` always; for binary models
  ``precision``, ``recall`` and ``f1`` of the positive class, and ``roc_auc`` / ``pr_auc`` (average
  precision, as ``training_jobs/metrics.py`` computes them) when the records carry P(positive).
  :func:`live_counts` is what the rollout calls for a canary's ``labelled`` / ``correct``.
- **Input drift.** :func:`scoring_profile` profiles the recorded inputs on the champion's reference edges
  (``ProfileBuilder.from_reference``) and :func:`input_drift` compares with ``shared.drift.compare`` →
  :class:`~shared.policy.DriftSummary`.
- **The schedule.** :func:`check_model` gathers age, live performance and input drift for one model with a
  champion, asks :func:`shared.policy.decide_retrain`, and publishes ``Perennial.RetrainRequested`` with
  the reasons under a deterministic event id (model + hour slot). A model whose run is in progress, or
  that ran recently (the spec's ``triggers.cooldown_hours``), is left alone; a slot already requested is claimed
  once (a create-once blob), so a redelivered timer does not ask twice.

Binary labels are compared by meaning, not spelling: a label is positive when it equals the spec's
``positive_class`` (``1``, ``1.0``, ``"1"`` and ``true`` are one value, as are ``0`` and ``false``). A
prediction is score.py's class *index* (1 = the positive class, 0 = the negative one, whatever the label
values: with ``positive_class: 0`` a predicted ``1`` means label 0); only a prediction spelt as a name is
compared with ``positive_class``. Multiclass labels must be spelt as score.py answers (the class index);
labels spelt otherwise are reported, not counted.

The schedule asks for a retrain on performance only when the drop is significant (:func:`upper_bound`, judged
in ``decide_retrain``), and on age only when data landed that the newest judged run did not train on
(:func:`landing_news`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from scipy.stats import binomtest

from shared.blobpaths import BlobNameError
from shared.canary import WatchedClass, WatchedPrediction
from shared.drift import DriftReport, compare
from shared.feedback import FeedbackLabel, binary_spelling
from shared.platform import (
    MLPlatform,
    NotFoundError,
    PlatformError,
    ScoringQuery,
    ScoringRecord,
)
from shared.platform.scoring import class_text
from shared.policy import DriftSummary, LandingNews, LivePerformance, RetrainDecision, decide_retrain
from shared.profile import DatasetProfile, ProfileBuilder
from shared.publish import EventPublisher, OutboundEvent, PublishError, RetrainRequested, make_event
from shared.registry import ACTIVE_RUN_STATUSES, Champion, ModelVersion, Registry, Run, bad_upload
from shared.spec import DataContract, ModelSpec
from shared.storage import MANIFESTS, BlobMissingError, BlobStore, StorageError
from shared.typecast import conform

logger = logging.getLogger("perennial.live")

#: Metrics computable from labels and recorded predictions.
LIVE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
#: Resamples of the bootstrap behind a live metric's upper confidence bound (f1, roc_auc, pr_auc).
BOOTSTRAP_SAMPLES = 500
#: Rows a rank metric's bootstrap resamples at most: beyond, a fixed-seed subsample of this many (cost stays
#: bounded; the bound of a subsample is wider, so never a false alarm, and at 100k rows already tight).
MAX_BOOTSTRAP_ROWS = 100_000
_BOOTSTRAP_SEED = 20250301  # fixed: the same labels give the same bound, so a re-run decides the same


def reference_profile_name(model: str, run_id: str) -> str:
    """Where a run's merged training profile is kept in ``manifests/`` (the reference for drift)."""
    return f"{model}/{run_id}/profile.json"


# =========================================================================== labels ⨝ predictions


@dataclass(frozen=True)
class LiveCounts:
    """One deployment's scored rows that have a delayed label, and how many it got right.

    ``labelled`` / ``correct`` count rows (a multi-row request contributes one per labelled row).
    ``scores`` / ``outcomes`` are P(positive) and the label (1 positive) of the labelled rows, kept only when
    every labelled row has a probability (binary models), so rank metrics use all of them or none."""

    deployment: str
    requests: int = 0  # successfully scored requests in the window
    labels_read: int = 0  # feedback rows read for the model in the label window
    labelled: int = 0
    correct: int = 0
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0
    task: Literal["binary", "multiclass"] = "binary"
    scores: tuple[float, ...] = ()
    outcomes: tuple[int, ...] = ()
    #: Multiclass rows whose label and prediction are spelt differently (a name vs score.py's class index).
    unmatched_spelling: int = 0
    truncated: bool = False  # the scoring query hit its limit: counts are over a uniform sample of the window

    def metrics(self) -> dict[str, float]:
        """The live metrics these counts support (see the module docstring); an undefined one is left out."""
        out: dict[str, float] = {}
        if self.labelled == 0:
            return out
        if self.task == "multiclass" and self.unmatched_spelling * 2 > self.labelled:
            return out  # mostly names vs indices: accuracy would be meaningless
        out["accuracy"] = self.correct / self.labelled
        if self.task != "binary":
            return out
        predicted, actual = self.true_positive + self.false_positive, self.true_positive + self.false_negative
        if predicted:
            out["precision"] = self.true_positive / predicted
        if actual:
            out["recall"] = self.true_positive / actual
        if "precision" in out and "recall" in out:
            total = out["precision"] + out["recall"]
            out["f1"] = 2 * out["precision"] * out["recall"] / total if total else 0.0
        if self.scores and len(self.scores) == self.labelled:
            y = np.asarray(self.outcomes, dtype=np.int64)
            p = np.asarray(self.scores, dtype=np.float64)
            roc, pr = _roc_auc(y, p), _average_precision(y, p)
            if not math.isnan(roc):
                out["roc_auc"] = roc
            if not math.isnan(pr):
                out["pr_auc"] = pr
        return out


def _ranked(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Outcomes sorted by score, highest first, and the index of the last row of each group of tied scores."""
    order = np.argsort(-p, kind="mergesort")
    scores = p[order]
    return y[order], np.concatenate((np.flatnonzero(np.diff(scores)), [len(scores) - 1]))


def _rank_metric(metric: str, y: np.ndarray[Any, Any], ends: np.ndarray[Any, Any], w: np.ndarray[Any, Any]) -> float:
    """roc_auc or pr_auc of ranked outcomes ``y`` where row i counts ``w[i]`` times (all ones: the plain metric;
    bootstrap counts: one resample, with no re-sort). Tied scores are admitted together, as
    training_jobs/metrics.py does; NaN when undefined (no positive; for roc_auc also no negative)."""
    pos = np.cumsum(w * y)[ends]  # positives (negatives) scored at or above each tie group
    neg = np.cumsum(w * (1 - y))[ends]
    n_pos, n_neg = float(pos[-1]), float(neg[-1])
    if n_pos == 0 or (metric == "roc_auc" and n_neg == 0):
        return math.nan
    pos_in = np.diff(pos, prepend=0)
    if metric == "pr_auc":  # average precision: precision at each group, weighted by the recall it adds
        return float(np.sum(pos_in * (pos / np.maximum(pos + neg, 1))) / n_pos)
    # Mann-Whitney: each positive beats the negatives scored below it and half of those tied with it.
    return float(np.sum(pos_in * ((n_neg - neg) + 0.5 * np.diff(neg, prepend=0))) / (n_pos * n_neg))


def _roc_auc(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> float:
    ranked, ends = _ranked(y, p)
    return _rank_metric("roc_auc", ranked, ends, np.ones(len(y), dtype=np.int64))


def _average_precision(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> float:
    """Average precision with tied scores admitted together (training_jobs/metrics.py's definition)."""
    ranked, ends = _ranked(y, p)
    return _rank_metric("pr_auc", ranked, ends, np.ones(len(y), dtype=np.int64))


def upper_bound(counts: LiveCounts, metric: str, confidence: float) -> float | None:
    """A one-sided ``confidence`` upper bound of the live ``metric``: the true value is below it with that
    confidence, so a bound under ``baseline - performance_drop`` is a real drop, not sampling noise.

    accuracy / precision / recall are proportions: the Wilson score bound. f1 (a ratio of confusion counts):
    a bootstrap of the four counts. roc_auc / pr_auc: a bootstrap of the labelled rows. Both bootstraps use a
    fixed seed and :data:`BOOTSTRAP_SAMPLES` resamples. None when the metric is undefined here."""
    tp, fp, fn = counts.true_positive, counts.false_positive, counts.false_negative
    proportions = {
        "accuracy": (counts.correct, counts.labelled),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
    }
    if metric in proportions:
        k, n = proportions[metric]
        if n == 0:
            return None
        test = binomtest(k, n, alternative="less")  # one-sided: its interval is [0, upper]
        return float(test.proportion_ci(confidence_level=confidence, method="wilson").high)
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    if metric == "f1" and counts.task == "binary" and counts.labelled:
        cells = np.array([tp, fp, fn, counts.true_negative], dtype=np.float64)
        draws = rng.multinomial(int(cells.sum()), cells / cells.sum(), size=BOOTSTRAP_SAMPLES)
        d_tp, d_fp, d_fn = draws[:, 0], draws[:, 1], draws[:, 2]
        defined = (d_tp + d_fp > 0) & (d_tp + d_fn > 0)  # as metrics(): f1 needs precision and recall
        values = 2 * d_tp[defined] / (2 * d_tp[defined] + d_fp[defined] + d_fn[defined])
    elif metric in ("roc_auc", "pr_auc") and counts.scores and len(counts.scores) == counts.labelled:
        y = np.asarray(counts.outcomes, dtype=np.int64)
        p = np.asarray(counts.scores, dtype=np.float64)
        if len(y) > MAX_BOOTSTRAP_ROWS:
            keep = rng.choice(len(y), MAX_BOOTSTRAP_ROWS, replace=False)
            y, p = y[keep], p[keep]
        ranked, ends = _ranked(y, p)
        n = len(ranked)
        values = np.array(
            [
                _rank_metric(metric, ranked, ends, np.bincount(rng.integers(0, n, n), minlength=n))
                for _ in range(BOOTSTRAP_SAMPLES)
            ]
        )
        values = values[~np.isnan(values)]  # a resample without a positive (or negative) has no value
    else:
        return None
    return float(np.quantile(values, confidence)) if len(values) else None


def _positive(text: str, positive: str, bool_label: bool = False) -> bool:
    return binary_spelling(text, bool_label) == binary_spelling(positive, bool_label)


def predicts_positive(predicted: str, positive_class: str | int | bool) -> bool:
    """Whether a binary model's recorded prediction is the positive class.

    score.py answers the class *index*: 1 for the positive class and 0 for the negative one, whatever the label
    values are (training encodes ``(negative, positive)`` as ``(0, 1)``). So an integer-like prediction is an
    index even when ``positive_class`` is 0 (label 0 = default); only a prediction spelt as a name (a scoring
    script that answers ``"fraud"``) is compared with ``positive_class``."""
    predicted = class_text(predicted)
    if _integer_like(predicted) or predicted in ("0", "1", "false", "true"):
        return binary_spelling(predicted) == "1"
    return _positive(predicted, class_text(positive_class))


def watched_prediction(
    task: Literal["binary", "multiclass"],
    positive_class: str | int | bool,
    challenger: Sequence[object],
    champion: Sequence[object],
) -> WatchedPrediction:
    """Which recorded predictions the canary's ``max_positive_rate_shift`` gate counts on both deployments.

    Binary: the positive class. Multiclass has none, so the gate watches the class whose share of the predictions
    moved most between the two deployments (the one a shifted model shows first), chosen among the K classes
    either deployment predicted: the canary tests it at alpha / K, since the largest of K shifts is tested after
    looking. With one side empty, nothing is watched and the gate waits for data."""
    if task == "binary":
        return WatchedPrediction(lambda predicted: predicts_positive(str(predicted), positive_class))
    if not challenger or not champion:
        return WatchedPrediction(lambda predicted: False)
    ours, theirs = Counter(class_text(p) for p in challenger), Counter(class_text(p) for p in champion)
    classes = sorted(ours.keys() | theirs.keys())
    moved = max(classes, key=lambda c: abs(ours[c] / len(challenger) - theirs[c] / len(champion)))
    return WatchedPrediction(lambda predicted: class_text(predicted) == moved, WatchedClass(moved, len(classes)))


def _integer_like(text: str) -> bool:
    return text.lstrip("-").isdigit()


def join_labels(
    records: Iterable[ScoringRecord],
    labels: Iterable[FeedbackLabel],
    *,
    deployment: str,
    task: Literal["binary", "multiclass"] = "binary",
    positive_class: str | int | bool = 1,
    bool_label: bool = False,
    truncated: bool = False,
) -> LiveCounts:
    """Match labels to recorded predictions by (request id, row) and count. Only successfully scored
    requests count; a request id recorded twice (a client retry) keeps its latest answer, and a row
    labelled twice its latest label (feedback blobs are read oldest first)."""
    predictions: dict[tuple[str, int], tuple[str, float | None]] = {}
    requests = 0
    for record in records:
        if not record.ok or not record.predictions:
            continue
        requests += 1
        for row, predicted in enumerate(record.predictions):
            probability = record.probabilities[row] if row < len(record.probabilities) else None
            predictions[(record.request_id, row)] = (predicted, probability)
    joined: dict[tuple[str, int], str] = {}
    read = 0
    for label in labels:
        read += 1
        key = (label.request_id, label.row)
        if key in predictions:
            joined[key] = label.label
    positive = class_text(positive_class)
    correct = tp = fp = fn = tn = unmatched = 0
    scores: list[float] = []
    outcomes: list[int] = []
    all_scored = True
    for key, label_text in joined.items():
        predicted, probability = predictions[key]
        truth = class_text(label_text)
        if task == "binary":
            predicted_positive = predicts_positive(predicted, positive)
            actual_positive = _positive(truth, positive, bool_label)
            correct += predicted_positive == actual_positive
            tp += predicted_positive and actual_positive
            fp += predicted_positive and not actual_positive
            fn += actual_positive and not predicted_positive
            tn += not predicted_positive and not actual_positive
            if probability is None:
                all_scored = False
            else:
                scores.append(probability)
                outcomes.append(int(actual_positive))
        else:
            correct += predicted == truth
            unmatched += _integer_like(predicted) != _integer_like(truth)
    keep_scores = task == "binary" and all_scored and bool(joined)
    return LiveCounts(
        deployment=deployment,
        requests=requests,
        labels_read=read,
        labelled=len(joined),
        correct=correct,
        true_positive=tp,
        false_positive=fp,
        false_negative=fn,
        true_negative=tn,
        task=task,
        scores=tuple(scores) if keep_scores else (),
        outcomes=tuple(outcomes) if keep_scores else (),
        unmatched_spelling=unmatched,
        truncated=truncated,
    )


def deployment_live_counts(
    platform: MLPlatform,
    store: BlobStore,
    spec: ModelSpec,
    endpoint: str,
    deployment: str,
    start: datetime,
    end: datetime,
    *,
    labels_until: datetime | None = None,
    include_mirrored: bool = False,
    limit: int = 50_000,
) -> LiveCounts:
    """Read one deployment's scoring records for ``[start, end)`` and the model's feedback blobs modified in
    ``[start, labels_until or end)`` (labels arrive after the requests they label), and join them."""
    records = platform.scoring_records(
        ScoringQuery(
            endpoint, deployment, start, end, include_mirrored=include_mirrored, include_inputs=False, limit=limit
        )
    )
    labels = store.iter_feedback(spec.name, start, labels_until or end)
    return join_labels(
        records.records,
        labels,
        deployment=deployment,
        task=spec.task,
        positive_class=spec.data.positive_class,
        bool_label=spec.data.column(spec.data.label).type == "bool",
        truncated=records.truncated,
    )


def live_counts(
    platform: MLPlatform,
    store: BlobStore,
    model: str,
    endpoint: str,
    deployment: str,
    start: datetime,
    end: datetime,
    *,
    spec: ModelSpec | None = None,
    include_mirrored: bool = False,
) -> tuple[int, int]:
    """``(labelled, correct)`` rows of ``deployment`` for requests scored in ``[start, end)`` with labels
    that landed by ``end``: the canary's ``DeploymentSample.labelled`` / ``correct``. ``spec`` defaults to
    the running app's spec of ``model`` (for the positive class); pass ``include_mirrored=True`` in the
    shadow phase."""
    if spec is None:
        from shared.runtime import get_runtime

        spec = get_runtime().spec(model)
    counts = deployment_live_counts(
        platform, store, spec, endpoint, deployment, start, end, include_mirrored=include_mirrored
    )
    return counts.labelled, counts.correct


def live_performance(
    counts: LiveCounts, primary_metric: str, baseline_metrics: Mapping[str, float], *, confidence: float = 0.95
) -> tuple[LivePerformance | None, list[str]]:
    """The live value of the primary metric, its one-sided ``confidence`` upper bound (:func:`upper_bound`) and
    the registered baseline, for ``decide_retrain``.

    When the primary metric cannot be computed from labels (e.g. ``pr_auc`` without recorded
    probabilities) accuracy stands in, judged against the baseline's accuracy, and a note says so."""
    notes: list[str] = []
    if counts.labelled == 0:
        return None, notes
    live = counts.metrics()
    if counts.truncated:
        notes.append("more scoring records than the query limit: live metrics use a uniform sample of them")
    if not live:
        notes.append(
            f"{counts.unmatched_spelling} of {counts.labelled} labels are spelt unlike score.py's classes "
            "(send multiclass labels as class indices): performance not checked"
        )
        return None, notes
    metric = primary_metric
    if metric not in live or metric not in baseline_metrics:
        fallback = "accuracy"
        why = "has no baseline" if metric in live else "cannot be computed from the labels"
        if fallback not in baseline_metrics:
            notes.append(f"live {metric} {why} and the model has no accuracy baseline: performance not checked")
            return None, notes
        notes.append(f"live {metric} {why}: judged on accuracy instead")
        metric = fallback
    positives = counts.true_positive + counts.false_negative if counts.task == "binary" else None
    return (
        LivePerformance(
            metric,
            live[metric],
            float(baseline_metrics[metric]),
            counts.labelled,
            upper=upper_bound(counts, metric, confidence),
            confidence=confidence,
            positives=positives,
        ),
        notes,
    )


def baseline_metrics(version: ModelVersion) -> tuple[dict[str, float], str]:
    """What live metrics are judged against, and where it came from.

    The version's holdout evaluation (``evaluation["challenger"]``: comparison.json's metrics of this model on the
    run's holdout) where it has them; else its validation metrics, which chose the best candidate and so are
    optimistic (a healthy model would look like it dropped)."""
    holdout = version.evaluation.get("challenger") if isinstance(version.evaluation, Mapping) else None
    values = {
        k: float(v)
        for k, v in (holdout.items() if isinstance(holdout, Mapping) else ())
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if values:
        return {**version.metrics, **values}, "holdout"
    return dict(version.metrics), "validation"


# =========================================================================== input drift

#: Fewer recent input rows than this say too little about drift.
MIN_DRIFT_ROWS = 200
#: At most this many recent input rows are profiled (a profile of 100k rows is as good as one of millions).
MAX_DRIFT_ROWS = 100_000
_PROFILE_BATCH = 5_000


def _column_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: let the contract's parser decide per value
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def scoring_profile(
    records: Iterable[ScoringRecord],
    contract: DataContract,
    reference: DatasetProfile,
    max_rows: int = MAX_DRIFT_ROWS,
) -> DatasetProfile:
    """Profile the recorded input rows (of live, not mirrored, requests; at most ``max_rows``) on the
    reference's histogram edges, so the two compare bin by bin. A value the contract's type cannot hold
    counts as missing."""
    builder = ProfileBuilder.from_reference(contract, reference)
    batch: list[Mapping[str, Any]] = []
    taken = 0

    def flush() -> None:
        if not batch:
            return
        builder.add_rows(len(batch))
        for column in contract.columns:
            array = _column_array([row.get(column.name) for row in batch])
            builder.update(column.name, conform(array, column.type).values)
        batch.clear()

    for record in records:
        if record.mirrored:
            continue
        for row in record.inputs:
            if taken >= max_rows:
                break
            batch.append(row)
            taken += 1
            if len(batch) >= _PROFILE_BATCH:
                flush()
    flush()
    return builder.finish()


def input_drift(
    records: Iterable[ScoringRecord],
    spec: ModelSpec,
    reference: DatasetProfile,
    min_rows: int = MIN_DRIFT_ROWS,
) -> tuple[DriftSummary | None, DriftReport | None, list[str]]:
    """Drift of recent scoring inputs against the reference profile, as ``decide_retrain`` wants it."""
    current = scoring_profile(records, spec.data, reference)
    if current.rows < min_rows:
        return None, None, [f"only {current.rows} < {min_rows} recent input rows: drift not checked"]
    report = compare(reference, current, spec.triggers.drift, columns=[c.name for c in spec.data.feature_columns])
    summary = DriftSummary(
        drifted=report.drifted,
        drifted_share=report.drifted_share,
        drifted_columns=tuple(report.drifted_columns),
        columns_checked=len(report.columns),
    )
    return summary, report, []


# =========================================================================== the schedule


@dataclass(frozen=True)
class ScheduleWindows:
    """How far back the schedule looks (how long it leaves a model alone after a run is the spec's
    ``triggers.cooldown_hours``)."""

    performance: timedelta = timedelta(days=7)  # requests whose delayed labels count
    drift: timedelta = timedelta(hours=24)  # recent inputs compared with the reference
    min_drift_rows: int = MIN_DRIFT_ROWS
    record_limit: int = 50_000  # scoring records read for live performance (ids and predictions only)
    drift_record_limit: int = 5_000  # scoring records read for drift (with up to 100 input rows each)


def schedule_slot(now: datetime) -> str:
    """The hour slot of a schedule tick (UTC), e.g. ``20250301T14``: at most one request per model per slot,
    and a redelivered or past-due tick in the same hour finds the same slot."""
    if now.tzinfo is None:
        raise ValueError("the schedule's time must be timezone-aware (UTC)")
    return f"{now.astimezone(UTC):%Y%m%dT%H}"


def schedule_event_id(model: str, slot: str) -> str:
    """The deterministic id of the schedule's RetrainRequested (and so of the run alerts starts for it)."""
    return f"schedule-{model}-{slot}"


def schedule_marker_name(model: str, slot: str) -> str:
    """The create-once blob (in ``manifests/``) that claims a slot's request."""
    return f"{model}/schedule/{slot}.json"


def blocking_run(runs: Sequence[Run], now: datetime, cooldown: timedelta) -> str | None:
    """Why the schedule leaves a model alone (a run in progress, or one created within ``cooldown``), or None."""
    for run in runs:
        if run.status in ACTIVE_RUN_STATUSES:
            return f"run {run.run_id} is {run.status} ({run.stage}): nothing to ask"
    if runs and cooldown > timedelta(0):
        newest = max(runs, key=lambda r: r.created_at)
        if now - newest.created_at < cooldown:
            until = newest.created_at + cooldown
            return (
                f"run {newest.run_id} ({newest.status}) was created at {newest.created_at:%Y-%m-%d %H:%M} UTC: "
                f"cooling down until {until:%Y-%m-%d %H:%M} UTC"
            )
    return None


def retrain_event(model: str, slot: str, decision: RetrainDecision, notes: Sequence[str] = ()) -> OutboundEvent:
    """``Perennial.RetrainRequested`` for a schedule decision, with the reasons and their evidence."""
    data = RetrainRequested(
        model=model,
        reason="schedule: " + "; ".join(r.message for r in decision.reasons),
        requested_by="schedule",
        details={
            "slot": slot,
            "reasons": [{"kind": r.kind, "message": r.message, "evidence": dict(r.evidence)} for r in decision.reasons],
            "notes": [*decision.notes, *notes],
        },
    )
    return make_event(data, event_id=schedule_event_id(model, slot))


Action = Literal["requested", "no_retrain", "skipped", "already_requested", "failed"]


@dataclass(frozen=True)
class ModelCheck:
    """What the schedule did for one model in one slot, and why."""

    model: str
    slot: str
    action: Action
    summary: str
    decision: RetrainDecision | None = None
    event_id: str | None = None
    notes: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "slot": self.slot,
            "action": self.action,
            "summary": self.summary,
            "decision": self.decision.to_dict() if self.decision else None,
            "event_id": self.event_id,
            "notes": list(self.notes),
            "evidence": dict(self.evidence),
        }


def _champion_deployment(platform: MLPlatform, spec: ModelSpec, champion: Champion) -> str | None:
    if champion.deployment:
        return champion.deployment
    try:
        deployments = platform.list_deployments(spec.endpoint_name)
    except NotFoundError:
        return None
    serving = [d.name for d in deployments if d.model_name == spec.name and d.model_version == champion.version]
    return serving[0] if serving else None


def champion_reference(store: BlobStore, registry: Registry, champion: Champion) -> DatasetProfile | None:
    """The champion's training profile: the reference for drift and for histogram edges, or None.

    It is stored under the run that *trained* the version. A champion put back by a rollback or shipped
    by a version rollout became champion in another run, so the version's lineage names the run to read.
    """
    version = registry.version(champion.model, champion.version)
    run_id = version.run_id if version is not None else champion.run_id
    try:
        return DatasetProfile.from_dict(store.get_json(MANIFESTS, reference_profile_name(champion.model, run_id)))
    except BlobMissingError:
        return None


#: Run outcomes that judged the data they trained on (every run trains on the whole landing folder): a new run on
#: the same data would be judged the same way. Failed, aborted and merged runs judged nothing.
JUDGED_RUN_STATUSES = frozenset({"promoted", "not_promoted", "rejected", "rolled_back"})


def landing_news(
    store: BlobStore, model: str, runs: Sequence[Run], trained_by: str | None, landed_since: datetime | None = None
) -> tuple[LandingNews | None, list[str]]:
    """How many blob versions in ``landing/<model>/`` (written since ``landed_since``: the training window) the
    newest judged run (else the champion's training run ``trained_by``) did not train on, by its manifest's
    (url, eTag); None when no such manifest is readable."""
    candidates = [r.run_id for r in runs if r.status in JUDGED_RUN_STATUSES]
    for run_id in dict.fromkeys([*candidates, *([trained_by] if trained_by else [])]):
        try:
            manifest = store.read_manifest(model, run_id)
        except BlobMissingError:
            continue
        trained = {(b.url, b.etag) for b in manifest.blobs}
        new = sum((ref.url, ref.etag) not in trained for ref in store.list_landing(model, landed_since))
        return LandingNews(new_blobs=new, since_run=run_id), []
    return None, ["no manifest of a judged run: age judged without knowing whether new data landed"]


def check_model(
    spec: ModelSpec,
    now: datetime,
    *,
    registry: Registry,
    store: BlobStore,
    platform: MLPlatform,
    publisher: EventPublisher,
    windows: ScheduleWindows = ScheduleWindows(),
) -> ModelCheck:
    """Evaluate the retraining policy for one model and publish ``RetrainRequested`` when it says so."""
    model = spec.name
    slot = schedule_slot(now)
    marker = schedule_marker_name(model, slot)

    def result(action: Action, summary: str, **extra: Any) -> ModelCheck:
        return ModelCheck(model=model, slot=slot, action=action, summary=summary, **extra)

    champion = registry.champion(model)
    if champion is None:
        return result("skipped", "no champion yet: the first model trains when data lands")
    try:
        store.get_json(MANIFESTS, marker)
    except BlobMissingError:
        pass
    else:
        return result(
            "already_requested",
            f"a retrain was already requested in slot {slot}",
            event_id=schedule_event_id(model, slot),
        )
    runs = registry.runs(model, limit=50)
    # Every run counts, a request that never ran included (an aborted schedule request must not come back the
    # next hour), but a bad upload, which says nothing of the model.
    blocked = blocking_run([r for r in runs if not bad_upload(r)], now, spec.triggers.cooldown)
    if blocked is not None:
        return result("skipped", blocked)

    notes: list[str] = []
    evidence: dict[str, Any] = {"champion_version": champion.version}
    version = registry.version(model, champion.version)
    registered_at = version.registered_at if version is not None else champion.since
    baseline, baseline_source = baseline_metrics(version) if version is not None else ({}, "none")
    evidence["baseline"] = baseline_source
    landing: LandingNews | None = None
    max_age = spec.triggers.max_model_age_days
    if max_age is not None and now - registered_at > timedelta(days=max_age):  # only then does it matter
        try:
            trained_by = version.run_id if version is not None else champion.run_id
            landing, landing_notes = landing_news(store, model, runs, trained_by, spec.training.landed_since(now))
            notes += landing_notes
        except (StorageError, BlobNameError) as exc:
            notes.append(f"landing folder unreadable ({exc}): age judged without knowing whether new data landed")
        if landing is not None:
            evidence["landing"] = {"new_blobs": landing.new_blobs, "since_run": landing.since_run}
    deployment = _champion_deployment(platform, spec, champion)
    live: LivePerformance | None = None
    drift: DriftSummary | None = None
    if deployment is None:
        notes.append(f"no deployment of version {champion.version} on {spec.endpoint_name}: live checks skipped")
    else:
        evidence["deployment"] = deployment
        try:
            counts = deployment_live_counts(
                platform,
                store,
                spec,
                spec.endpoint_name,
                deployment,
                now - windows.performance,
                now,
                limit=windows.record_limit,
            )
            live, live_notes = live_performance(
                counts, spec.promotion.primary_metric, baseline, confidence=1 - spec.promotion.significance
            )
            notes += live_notes
            evidence["live"] = {
                "requests": counts.requests,
                "labels_read": counts.labels_read,
                "labelled": counts.labelled,
                "correct": counts.correct,
                **counts.metrics(),
                **({"upper": live.upper, "positives": live.positives} if live is not None else {}),
            }
            reference = champion_reference(store, registry, champion)
            if reference is None:
                notes.append(f"no training profile for version {champion.version}: drift not checked")
            else:
                records = platform.scoring_records(
                    ScoringQuery(
                        spec.endpoint_name, deployment, now - windows.drift, now, limit=windows.drift_record_limit
                    )
                )
                drift, report, drift_notes = input_drift(records.records, spec, reference, windows.min_drift_rows)
                notes += drift_notes
                if records.truncated:
                    notes.append(
                        f"more scoring records in the drift window than {windows.drift_record_limit}: "
                        "drift uses a uniform sample of them"
                    )
                if report is not None:
                    evidence["drift"] = {
                        "drifted": report.drifted,
                        "drifted_share": report.drifted_share,
                        "drifted_columns": report.drifted_columns,
                        "rows": sum(len(r.inputs) for r in records.records if not r.mirrored),
                    }
        except (PlatformError, StorageError) as exc:
            notes.append(f"live checks failed: {exc}")

    decision = decide_retrain(
        now=now, triggers=spec.triggers, registered_at=registered_at, live=live, drift=drift, landing=landing
    )
    all_notes = (*decision.notes, *notes)
    if not decision.retrain:
        return result("no_retrain", decision.summary, decision=decision, notes=tuple(notes), evidence=evidence)

    event = retrain_event(model, slot, decision, notes)
    claim = {"event_id": event.id, "requested_at": now.isoformat(), "decision": decision.to_dict(), "notes": all_notes}
    if not store.put_json_once(MANIFESTS, marker, claim):
        return result("already_requested", f"a retrain was already requested in slot {slot}", event_id=event.id)
    try:
        publisher.publish([event])
    except PublishError as exc:
        store.delete(MANIFESTS, marker)  # let the next tick (or a retry of this one) ask again
        return result(
            "failed",
            f"publishing RetrainRequested failed: {exc}",
            decision=decision,
            notes=tuple(notes),
            evidence=evidence,
        )
    return result(
        "requested", decision.summary, decision=decision, event_id=event.id, notes=tuple(notes), evidence=evidence
    )


def run_schedule(
    specs: Iterable[ModelSpec],
    now: datetime,
    *,
    registry: Registry,
    store: BlobStore,
    platform: MLPlatform,
    publisher: EventPublisher,
    windows: ScheduleWindows = ScheduleWindows(),
    on_error: Callable[[ModelSpec, Exception], None] | None = None,
) -> list[ModelCheck]:
    """:func:`check_model` for every model; one model's failure does not stop the others."""
    checks: list[ModelCheck] = []
    for spec in specs:
        try:
            checks.append(
                check_model(
                    spec, now, registry=registry, store=store, platform=platform, publisher=publisher, windows=windows
                )
            )
        except Exception as exc:
            if on_error is not None:
                on_error(spec, exc)
            checks.append(ModelCheck(spec.name, schedule_slot(now), "failed", f"{type(exc).__name__}: {exc}"))
    return checks


__all__ = [
    "BOOTSTRAP_SAMPLES",
    "JUDGED_RUN_STATUSES",
    "LIVE_METRICS",
    "MAX_BOOTSTRAP_ROWS",
    "MAX_DRIFT_ROWS",
    "MIN_DRIFT_ROWS",
    "LiveCounts",
    "ModelCheck",
    "ScheduleWindows",
    "baseline_metrics",
    "blocking_run",
    "check_model",
    "deployment_live_counts",
    "input_drift",
    "join_labels",
    "landing_news",
    "live_counts",
    "live_performance",
    "predicts_positive",
    "reference_profile_name",
    "retrain_event",
    "run_schedule",
    "schedule_event_id",
    "schedule_marker_name",
    "schedule_slot",
    "scoring_profile",
    "upper_bound",
    "watched_prediction",
]
