"""Pure decisions: retrain? promote? advance, hold or roll back a rollout?

Nothing here does I/O or reads a clock: time is an argument, inputs and outputs are frozen
dataclasses, and every decision carries human-readable reasons *with numbers* plus machine-readable
evidence, so the run record can say exactly why. ``docs/policy.md`` explains the rules for users.
The statistics of a canary bake live in ``shared/canary.py``; candidate planning in
``shared/planning.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.canary import CanaryVerdict
from shared.spec import (
    CLASS_METRICS,
    EVALUATION_METRICS,
    Guardrail,
    PromotionSpec,
    RolloutSpec,
    TriggerSpec,
    label_key,
)

EvidenceValue = float | int | str | bool | None

#: The metrics ``training_jobs/evaluate.py`` writes for each model in comparison.json.
METRICS = EVALUATION_METRICS  # what comparison.json reports for each model
#: Metrics where lower is better (expected calibration error); every other one: higher is better.
LOWER_IS_BETTER = frozenset({"ece"})
#: How closely a bootstrap CI's confidence must match 1 - significance for its bound to count.
_CONFIDENCE_MATCH = 1e-6
#: Slack for comparisons at a limit: 0.80 - 0.75 is 0.05000000000000004 in floating point, and a
#: regression of exactly max_regression is allowed.
_EPS = 1e-9


class PolicyInputError(ValueError):
    """An input to a decision is malformed or inconsistent; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


# --------------------------------------------------------------------------- comparison.json


@dataclass(frozen=True)
class ModelMetrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    pr_auc: float
    ece: float

    def value(self, metric: str) -> float:
        if metric not in METRICS:
            raise PolicyInputError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
        return float(getattr(self, metric))


@dataclass(frozen=True)
class Difference:
    """Bootstrap estimate of challenger minus champion on one metric (the primary, or a guardrail's), over the same
    holdout."""

    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    bootstrap_samples: int


@dataclass(frozen=True)
class ClassMetrics:
    """One class's one-vs-rest precision, recall and F1 on the holdout (from the model's predicted class), and its
    rows there; the three are None when the holdout has no row of the class."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int

    def value(self, metric: str) -> float | None:
        if metric not in CLASS_METRICS:
            raise PolicyInputError(f"unknown per-class metric {metric!r}", f"use one of {', '.join(CLASS_METRICS)}")
        value: float | None = getattr(self, metric)
        return value


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on the paired predictions: b = only the champion right, c = only the challenger."""

    b: int
    c: int
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Comparison:
    primary_metric: str
    n_holdout: int
    challenger: ModelMetrics
    champion: ModelMetrics | None
    difference: Difference | None
    mcnemar: McNemar | None
    #: Rows of the rarest class in the holdout (the positives, for a binary model); None in an older comparison.json.
    n_positive: int | None = None
    #: How the holdout was chosen (evaluate.py's record, kept for the run's evidence); None in an older one.
    holdout: Mapping[str, object] | None = None
    #: Why a champion was given but could not be loaded or scored (evaluate.py); None when it was scored, or
    #: there was none. With a reason, ``champion``, ``difference`` and ``mcnemar`` are None.
    champion_unscorable: str | None = None
    #: The same bootstrap for each guardrail metric evaluate.py was asked for (``--guardrail-metrics``); empty in an
    #: older comparison.json, whose guardrails are then judged on their point estimates alone.
    guardrail_differences: Mapping[str, Difference] = field(default_factory=dict)
    #: Each model's one-vs-rest values per class (evaluate.py's ``per_class``), by class name as the model spells
    #: it; None in an older comparison.json, and the champion's None when there is no (scored) champion.
    challenger_per_class: Mapping[str, ClassMetrics] | None = None
    champion_per_class: Mapping[str, ClassMetrics] | None = None
    #: The bootstrap of each per-class guardrail (``--class-guardrail``), by (metric, class); empty in an older
    #: comparison.json, and for a class the holdout has no row of.
    class_guardrail_differences: Mapping[tuple[str, str], Difference] = field(default_factory=dict)

    def class_values(self, metric: str, key: str) -> tuple[float | None, float | None] | None:
        """(challenger, champion) ``metric`` of the class whose ``label_key`` is ``key`` (classes are matched as
        training spells labels: "01" is 1), each None when the holdout has no row of it; None when comparison.json
        has no per-class values of that class for both models."""
        found: list[float | None] = []
        for values in (self.challenger_per_class, self.champion_per_class):
            match = None if values is None else next((m for c, m in values.items() if label_key(c) == key), None)
            if match is None:
                return None
            found.append(match.value(metric))
        return found[0], found[1]

    def class_difference(self, metric: str, key: str) -> Difference | None:
        """The bootstrap of ``metric`` on the class whose ``label_key`` is ``key``, if evaluate.py made one."""
        return next(
            (d for (m, c), d in self.class_guardrail_differences.items() if m == metric and label_key(c) == key), None
        )


_COMPARISON_HINT = "regenerate it with training_jobs/evaluate.py; the shape is documented in docs/policy.md"
#: An older evaluate.py wrote a champion it could not score (NaN probabilities) as null metrics; regenerating
#: with that version reproduces the file, so the hint says what is wrong and the ways out.
_UNSCORED_CHAMPION_HINT = (
    "the champion (the version now serving) could not be scored on the holdout: its probabilities are not "
    "finite or it gives no usable metrics, so every run will stop here. Roll out a good version by hand "
    "(POST /api/models/<model>/versions/<version>/rollout, or `perennial rollout MODEL VERSION`), or deploy a "
    "training_jobs/evaluate.py that records the champion as champion_unscorable so the challenger is judged on "
    "promotion.first_run_floor; see docs/policy.md"
)
#: champion_unscorable is a sentence for the run record, not a document.
MAX_UNSCORABLE_REASON_CHARS = 2000


def _bad(path: str, value: object, expected: str) -> PolicyInputError:
    return PolicyInputError(f"comparison.json: {path}={value!r} {expected}", _COMPARISON_HINT)


def _keys(document: object, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, object]:
    if not isinstance(document, Mapping):
        raise _bad(path, document, "must be a JSON object")
    missing = [k for k in required if k not in document]
    extra = sorted(set(document) - set(required) - set(optional))
    if missing:
        raise _bad(path, "{...}", f"is missing {', '.join(missing)}")
    if extra:
        expected = ", ".join([*required, *(f"{k} (optional)" for k in optional)])
        raise _bad(path, "{...}", f"has unknown keys {', '.join(map(str, extra))}; expected exactly {expected}")
    return document


def _number(document: Mapping[str, object], key: str, path: str, low: float, high: float) -> float:
    value = document[key]
    # bool is an int in Python but never a metric; NaN/inf would poison every comparison.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{path}.{key}", value, "must be a finite number")
    if not low <= value <= high:
        raise _bad(f"{path}.{key}", value, f"must be in [{low:g}, {high:g}]")
    return float(value)


def _count(document: Mapping[str, object], key: str, path: str, low: int = 0) -> int:
    value = document[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(f"{path}.{key}", value, f"must be a whole number >= {low}")
    return value


def _metrics(document: object, path: str) -> ModelMetrics:
    doc = _keys(document, path, METRICS)
    return ModelMetrics(**{m: _number(doc, m, path, 0.0, 1.0) for m in METRICS})


def _unscored(value: object) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _champion_metrics(document: object) -> ModelMetrics:
    """The champion's metrics; a null or non-finite one is a champion an older evaluate.py could not score."""
    doc = _keys(document, "champion", METRICS)
    unscored = [m for m in METRICS if _unscored(doc[m])]
    if unscored:
        raise PolicyInputError(
            f"comparison.json: champion.{unscored[0]}={doc[unscored[0]]!r}: the champion has no score for "
            f"{', '.join(unscored)}",
            _UNSCORED_CHAMPION_HINT,
        )
    return _metrics(doc, "champion")


def _unscorable_reason(document: Mapping[str, object]) -> str | None:
    reason = document.get("champion_unscorable")
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason.strip():
        raise _bad("champion_unscorable", reason, "must be a non-empty string (why the champion could not be scored)")
    if len(reason) > MAX_UNSCORABLE_REASON_CHARS:
        raise _bad(
            "champion_unscorable", reason[:40] + "…", f"must be at most {MAX_UNSCORABLE_REASON_CHARS} characters"
        )
    if any(document[k] is not None for k in ("champion", "difference", "mcnemar")):
        raise _bad("champion_unscorable", reason[:40] + "…", "must come with champion, difference and mcnemar null")
    return reason


def _difference(document: object, path: str, metric: str) -> Difference:
    d = _keys(document, path, ("metric", "estimate", "ci_low", "ci_high", "confidence", "p_value", "bootstrap_samples"))
    if d["metric"] != metric:
        expected = f"must equal primary_metric {metric!r}" if path == "difference" else f"must be {metric!r}"
        raise _bad(f"{path}.metric", d["metric"], expected)
    difference = Difference(
        metric=metric,
        estimate=_number(d, "estimate", path, -1.0, 1.0),
        ci_low=_number(d, "ci_low", path, -1.0, 1.0),
        ci_high=_number(d, "ci_high", path, -1.0, 1.0),
        confidence=_number(d, "confidence", path, 0.0, 1.0),
        p_value=_number(d, "p_value", path, 0.0, 1.0),
        bootstrap_samples=_count(d, "bootstrap_samples", path, low=1),
    )
    if not difference.ci_low <= difference.ci_high:
        raise _bad(f"{path}.ci_low", difference.ci_low, f"must not exceed ci_high={difference.ci_high}")
    return difference


def _guardrail_differences(document: Mapping[str, object]) -> dict[str, Difference]:
    value = document.get("guardrail_differences")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad("guardrail_differences", value, "must be a JSON object of metric -> difference")
    unknown = [m for m in value if m not in METRICS]
    if unknown:
        raise _bad("guardrail_differences", unknown[0], f"must name metrics among {', '.join(METRICS)}")
    if value and document["champion"] is None:
        raise _bad("guardrail_differences", "{...}", "must be empty when there is no champion")
    return {m: _difference(d, f"guardrail_differences.{m}", str(m)) for m, d in value.items()}


def _per_class(
    document: Mapping[str, object], champion: bool
) -> tuple[dict[str, ClassMetrics] | None, dict[str, ClassMetrics] | None]:
    """``per_class``: {"challenger": {class: {precision, recall, f1, support}}, "champion": {...} or null}."""
    value = document.get("per_class")
    if value is None:
        return None, None
    doc = _keys(value, "per_class", ("challenger", "champion"))
    if (doc["champion"] is None) == champion:
        expected = "must be an object of class -> values" if champion else "must be null without a (scored) champion"
        raise _bad("per_class.champion", "{...}" if doc["champion"] is not None else None, expected)
    models: list[dict[str, ClassMetrics] | None] = []
    for role in ("challenger", "champion"):
        classes = doc[role]
        if classes is None:
            models.append(None)
            continue
        if not isinstance(classes, Mapping) or not classes:
            raise _bad(f"per_class.{role}", classes, "must be a non-empty JSON object of class -> values")
        parsed: dict[str, ClassMetrics] = {}
        for name, raw in classes.items():
            path = f"per_class.{role}[{name!r}]"
            entry = _keys(raw, path, (*CLASS_METRICS, "support"))
            support = _count(entry, "support", path)
            numbers = {m: None if entry[m] is None else _number(entry, m, path, 0.0, 1.0) for m in CLASS_METRICS}
            nulls = sum(v is None for v in numbers.values())
            if nulls != (len(CLASS_METRICS) if support == 0 else 0):
                raise _bad(path, "{...}", "must have precision, recall and f1 null exactly when support is 0")
            parsed[str(name)] = ClassMetrics(**numbers, support=support)
        models.append(parsed)
    if models[1] is not None and set(models[1]) != set(models[0] or {}):
        raise _bad("per_class.champion", "{...}", "must name the same classes as per_class.challenger")
    return models[0], models[1]


def _class_guardrail_differences(
    document: Mapping[str, object], classes: Mapping[str, ClassMetrics] | None
) -> dict[tuple[str, str], Difference]:
    """``class_guardrail_differences``: a list of the Difference fields plus ``class``, one per (metric, class)."""
    value = document.get("class_guardrail_differences")
    if value is None:
        return {}
    if not isinstance(value, list):
        raise _bad("class_guardrail_differences", value, "must be a JSON list of {metric, class, estimate, ...}")
    if value and document["champion"] is None:
        raise _bad("class_guardrail_differences", "[...]", "must be empty when there is no champion")
    found: dict[tuple[str, str], Difference] = {}
    for i, raw in enumerate(value):
        path = f"class_guardrail_differences[{i}]"
        entry = _keys(
            raw,
            path,
            ("metric", "class", "estimate", "ci_low", "ci_high", "confidence", "p_value", "bootstrap_samples"),
        )
        metric, name = entry["metric"], entry["class"]
        if metric not in CLASS_METRICS:
            raise _bad(f"{path}.metric", metric, f"must be one of {', '.join(CLASS_METRICS)}")
        if not isinstance(name, str) or not name:
            raise _bad(f"{path}.class", name, "must be a non-empty string (a class of the model)")
        if classes is not None and name not in classes:
            raise _bad(f"{path}.class", name, "must be a class of per_class.challenger")
        if (str(metric), name) in found:
            raise _bad(path, f"{metric}:{name}", "repeats an earlier entry's metric and class")
        assert isinstance(metric, str)
        found[(metric, name)] = _difference({k: v for k, v in entry.items() if k != "class"}, path, metric)
    return found


def parse_comparison(document: object) -> Comparison:
    """Validate a parsed comparison.json; raise :class:`PolicyInputError` naming the bad field."""
    top = ("primary_metric", "n_holdout", "challenger", "champion", "difference", "mcnemar")
    optional = (
        "n_positive",
        "holdout",
        "champion_unscorable",
        "guardrail_differences",
        "per_class",
        "class_guardrail_differences",
    )
    doc = _keys(document, "(top level)", top, optional=optional)
    primary = doc["primary_metric"]
    if primary not in METRICS:
        raise _bad("primary_metric", primary, f"must be one of {', '.join(METRICS)}")
    assert isinstance(primary, str)
    challenger = _metrics(doc["challenger"], "challenger")
    champion = None if doc["champion"] is None else _champion_metrics(doc["champion"])
    difference = None if doc["difference"] is None else _difference(doc["difference"], "difference", primary)
    mcnemar = None
    if doc["mcnemar"] is not None:
        mc = _keys(doc["mcnemar"], "mcnemar", ("b", "c", "statistic", "p_value"))
        mcnemar = McNemar(
            b=_count(mc, "b", "mcnemar"),
            c=_count(mc, "c", "mcnemar"),
            statistic=_number(mc, "statistic", "mcnemar", 0.0, math.inf),
            p_value=_number(mc, "p_value", "mcnemar", 0.0, 1.0),
        )
    if champion is not None and difference is None:
        raise _bad("difference", None, "is required when there is a champion")
    unscorable = _unscorable_reason(doc)
    holdout = doc.get("holdout")
    if holdout is not None and not isinstance(holdout, Mapping):
        raise _bad("holdout", holdout, "must be a JSON object")
    challenger_classes, champion_classes = _per_class(doc, champion is not None)
    return Comparison(
        primary_metric=primary,
        n_holdout=_count(doc, "n_holdout", "(top level)", low=1),
        challenger=challenger,
        champion=champion,
        difference=difference,
        mcnemar=mcnemar,
        n_positive=None if doc.get("n_positive") is None else _count(doc, "n_positive", "(top level)"),
        holdout=holdout,
        champion_unscorable=unscorable,
        guardrail_differences=_guardrail_differences(doc),
        challenger_per_class=challenger_classes,
        champion_per_class=champion_classes,
        class_guardrail_differences=_class_guardrail_differences(doc, challenger_classes),
    )


def load_comparison(text: str | bytes) -> Comparison:
    """Parse the text of comparison.json."""
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyInputError(f"comparison.json is not valid JSON ({exc})", _COMPARISON_HINT) from None
    return parse_comparison(document)


# --------------------------------------------------------------------------- promotion


@dataclass(frozen=True)
class Check:
    """One rule of a decision: whether it passed, why (with numbers) and the numbers themselves."""

    name: str
    passed: bool
    reason: str
    evidence: Mapping[str, EvidenceValue]


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    first_run: bool
    summary: str
    checks: tuple[Check, ...]
    #: Promote only with a person's approval: a guardrail the holdout cannot settle, under
    #: ``promotion.review_uncertain_guardrails``.
    needs_review: bool = False

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.reason for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"reasons": list(self.reasons)}


def _direction(metric: str) -> str:
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def _floor_checks(comparison: Comparison, spec: PromotionSpec) -> list[Check]:
    """One check per ``first_run_floor`` metric: the challenger judged alone, with nothing to compare it with."""
    checks: list[Check] = []
    for metric, floor in sorted(spec.first_run_floor.items()):
        value = comparison.challenger.value(metric)
        # Floors are minimums, except for a lower-is-better metric (ece), where the floor is a ceiling.
        passed = value <= floor + _EPS if metric in LOWER_IS_BETTER else value >= floor - _EPS
        op = ("<=" if passed else ">") if metric in LOWER_IS_BETTER else (">=" if passed else "<")
        checks.append(
            Check(
                f"first_run_floor.{metric}",
                passed,
                f"{metric} {value:.4f} {op} first_run_floor {floor:.4f}",
                {"metric": metric, "value": value, "floor": floor},
            )
        )
    return checks


def _first_run(comparison: Comparison, spec: PromotionSpec) -> PromotionDecision:
    checks = _floor_checks(comparison, spec)
    if not checks:
        checks.append(Check("first_run_floor", True, "no first_run_floor set: the first model is promoted", {}))
    promote = all(c.passed for c in checks)
    failed = [c.reason for c in checks if not c.passed]
    summary = (
        "promote: first model, every first_run_floor met"
        if promote
        else "not promoted: first model below its floor: " + "; ".join(failed)
    )
    size = _holdout_size(comparison)
    if not size.passed:
        # A first model is not held back by a small holdout (there is nothing better to serve), but its floors were
        # measured on too few rows to mean much, and the run should say so where a person reads it.
        rows, rare = comparison.n_holdout, comparison.n_positive
        counted = f"{rows} rows" + ("" if rare is None else f", {rare} of the rarest class")
        note = (
            f"note: the floors were measured on a small holdout ({counted}; a comparison needs {MIN_HOLDOUT_ROWS} "
            f"rows and {MIN_HOLDOUT_POSITIVES} of the rarest class): they say little, and the next run compares its "
            "challenger with this model only once enough data has landed"
        )
        checks.append(Check("holdout_size", True, note, size.evidence))
        summary += " (on a small holdout)" if promote else ""
    return PromotionDecision(promote, True, summary, tuple(checks))


#: Where a person can ship a version when the policy cannot decide (docs/api.md).
_MANUAL_ROLLOUT = "POST /api/models/<model>/versions/<version>/rollout, or `perennial rollout MODEL VERSION`"


def _over_unscorable_champion(comparison: Comparison, spec: PromotionSpec, reason: str) -> PromotionDecision:
    """The champion could not be loaded or scored, so there is nothing to compare with: judge the challenger as a
    first model (every ``first_run_floor``), and on a holdout large enough for its metrics to mean something.

    Otherwise a broken champion would block every challenger for ever. Without a floor nothing says the challenger
    is good enough to replace a model that may still be serving (its registered files may be what broke), so it is
    not promoted blindly: the reason says how to get out. Approval follows the spec (``rollout.approval``) as for
    any promotion; the ``champion_unscorable`` check lets a caller ask for it in this case alone.
    """
    floors = _floor_checks(comparison, spec)
    evidence: dict[str, EvidenceValue] = {"champion_unscorable": reason, "floors": len(floors)}
    if not floors:
        check = Check(
            "champion_unscorable",
            False,
            f"the champion could not be scored ({reason}) and the spec sets no promotion.first_run_floor to judge "
            f"the challenger alone: set promotion.first_run_floor, or roll out a version by hand ({_MANUAL_ROLLOUT})",
            evidence,
        )
        return PromotionDecision(False, False, f"not promoted: {check.reason}", (check,))
    situation = Check(
        "champion_unscorable",
        True,
        f"the champion could not be scored ({reason}): the challenger is judged alone, on promotion.first_run_floor "
        "and the holdout size",
        evidence,
    )
    checks = (situation, *floors, _holdout_size(comparison))
    promote = all(c.passed for c in checks)
    summary = (
        "promote: the champion could not be scored; the challenger meets every first_run_floor"
        if promote
        else "not promoted: the champion could not be scored and the challenger was judged alone: "
        + "; ".join(c.reason for c in checks if not c.passed)
    )
    return PromotionDecision(promote, False, summary, checks)


def _significance(difference: Difference, spec: PromotionSpec) -> Check:
    """Significant improvement: estimate > 0 and the bootstrap's two-sided (1 - significance) interval above 0.

    The bootstrap's ``p_value`` is one-sided (the share of resamples with no gain), so the interval lies above 0
    exactly when p < significance / 2: that is the test, and a matching interval must agree with it. (Testing
    p < significance would be a 90 % interval's test while the run shows the 95 % one.)
    """
    alpha = spec.significance
    ci_matches = abs(difference.confidence - (1.0 - alpha)) <= _CONFIDENCE_MATCH
    by_p = difference.p_value < alpha / 2
    by_ci = difference.ci_low > 0 if ci_matches else True
    passed = difference.estimate > 0 and by_p and by_ci
    ci = f"{difference.confidence:.0%} CI [{difference.ci_low:+.4f}, {difference.ci_high:+.4f}]"
    p_text = f"one-sided p={difference.p_value:.3g}"
    if passed:
        how = f"{ci} above 0; {p_text} < significance/2 = {alpha / 2:g}"
        reason = f"{difference.metric} gain {difference.estimate:+.4f} is significant ({how})"
    elif difference.estimate <= 0:
        reason = f"{difference.metric} {difference.estimate:+.4f}: no gain to test ({ci})"
    else:
        ci_note = f"{ci} includes 0" if ci_matches else f"{ci} does not match 1-significance, not used"
        reason = (
            f"{difference.metric} gain {difference.estimate:+.4f} is not significant "
            f"({p_text} >= significance/2 = {alpha / 2:g}; {ci_note})"
        )
    return Check(
        "significance",
        passed,
        reason,
        {
            "estimate": difference.estimate,
            "p_value": difference.p_value,
            "significance": alpha,
            "ci_low": difference.ci_low,
            "ci_high": difference.ci_high,
            "ci_confidence": difference.confidence,
            "ci_used": ci_matches,
            "bootstrap_samples": difference.bootstrap_samples,
        },
    )


#: Below these, a bootstrap over the holdout says little: with 3-4 positives an equally good challenger won the
#: significance test in 9-13 % of simulated runs instead of 5 % (the schedule's performance check asks as many).
MIN_HOLDOUT_ROWS = 100
MIN_HOLDOUT_POSITIVES = 30


def _holdout_size(comparison: Comparison) -> Check:
    """Enough holdout rows, and of the rarest class, for the comparison to mean something."""
    rows, rare = comparison.n_holdout, comparison.n_positive
    passed = rows >= MIN_HOLDOUT_ROWS and (rare is None or rare >= MIN_HOLDOUT_POSITIVES)
    counted = f"{rows} rows" + ("" if rare is None else f", {rare} of the rarest class")
    if passed:
        reason = f"holdout of {counted} is large enough"
    else:
        reason = (
            f"holdout too small to compare the models: {counted} (at least {MIN_HOLDOUT_ROWS} rows and "
            f"{MIN_HOLDOUT_POSITIVES} of the rarest class are needed); let more data land before retraining, "
            "or raise the holdout fraction"
        )
    evidence: dict[str, EvidenceValue] = {
        "n_holdout": rows,
        "n_positive": rare,
        "min_rows": MIN_HOLDOUT_ROWS,
        "min_positives": MIN_HOLDOUT_POSITIVES,
    }
    return Check("holdout_size", passed, reason, evidence)


def decide_promotion(comparison: Comparison, spec: PromotionSpec) -> PromotionDecision:
    """Should the challenger replace the champion? Every rule is checked and recorded, pass or fail.

    First run (no champion): promote iff every ``first_run_floor`` metric is met. A champion that could not
    be scored (``champion_unscorable``): promote iff the spec sets floors, every one is met and the holdout is
    large enough. Otherwise promote iff the primary metric gains at least ``min_improvement``, the gain is
    significant, the holdout is large enough, and no guardrail metric regresses by more than its ``max_regression``.
    """
    if comparison.primary_metric != spec.primary_metric:
        raise PolicyInputError(
            f"comparison.json compares {comparison.primary_metric!r} but the spec's primary_metric is "
            f"{spec.primary_metric!r}",
            f"re-run the evaluation with --primary-metric {spec.primary_metric}",
        )
    for metric in list(spec.first_run_floor) + [g.metric for g in spec.guardrails]:
        if metric not in METRICS:
            raise PolicyInputError(
                f"the spec names metric {metric!r}, which the evaluation does not report",
                f"use one of {', '.join(METRICS)} in promotion.first_run_floor / guardrails",
            )
    for guardrail in spec.guardrails:
        if guardrail.class_name is not None and guardrail.metric not in CLASS_METRICS:
            raise PolicyInputError(
                f"the spec's guardrail on class {guardrail.class_name!r} names metric {guardrail.metric!r}",
                f"a per-class guardrail judges one of {', '.join(CLASS_METRICS)}",
            )
    champion = comparison.champion
    if champion is None and comparison.champion_unscorable is not None:
        return _over_unscorable_champion(comparison, spec, comparison.champion_unscorable)
    if champion is None:
        return _first_run(comparison, spec)
    difference = comparison.difference
    assert difference is not None  # parse_comparison guarantees it when there is a champion
    metric = spec.primary_metric
    new, old = comparison.challenger.value(metric), champion.value(metric)
    gain = difference.estimate
    checks: list[Check] = []
    improvement_ok = gain >= spec.min_improvement - _EPS
    if gain < 0:
        why = f"champion is better: {metric} {gain:+.4f} (challenger {new:.4f} vs champion {old:.4f})"
    else:
        op = ">=" if improvement_ok else "<"
        why = f"{metric} {gain:+.4f} {op} min_improvement {spec.min_improvement:g} (challenger {new:.4f} vs champion {old:.4f})"
    checks.append(
        Check(
            "min_improvement",
            improvement_ok,
            why,
            {
                "metric": metric,
                "estimate": gain,
                "min_improvement": spec.min_improvement,
                "challenger": new,
                "champion": old,
            },
        )
    )
    checks.append(_significance(difference, spec))
    checks.append(_holdout_size(comparison))
    guardrails = [_guardrail(comparison, champion, guardrail, spec) for guardrail in spec.guardrails]
    checks += [check for check, _ in guardrails]
    if comparison.mcnemar is not None:
        mc = comparison.mcnemar
        # Recorded, never gating: it tests disagreement on hard labels, not the primary metric.
        checks.append(
            Check(
                "mcnemar (information)",
                True,
                f"McNemar: only challenger right {mc.c}, only champion right {mc.b}, p={mc.p_value:.3g}",
                {"b": mc.b, "c": mc.c, "statistic": mc.statistic, "p_value": mc.p_value},
            )
        )
    promote = all(c.passed for c in checks)
    failed = [c.reason for c in checks if not c.passed]
    uncertain = [check.name.removeprefix("guardrail.") for check, unsettled in guardrails if unsettled]
    review = promote and spec.review_uncertain_guardrails and bool(uncertain)
    if review:
        summary = (
            f"promote after a person's approval: {metric} {gain:+.4f} on {comparison.n_holdout} holdout rows, "
            f"significant, but the holdout cannot settle guardrail {', '.join(uncertain)} "
            "(promotion.review_uncertain_guardrails)"
        )
    elif promote:
        summary = f"promote: {metric} {gain:+.4f} on {comparison.n_holdout} holdout rows, significant, guardrails held"
    else:
        summary = "not promoted: " + "; ".join(failed)
    return PromotionDecision(promote, False, summary, tuple(checks), needs_review=review)


def _guardrail(
    comparison: Comparison, champion: ModelMetrics, guardrail: Guardrail, spec: PromotionSpec
) -> tuple[Check, bool]:
    """One guardrail's check, and whether the holdout leaves it unsettled.

    The regression is the champion's value less the challenger's (the reverse for a lower-is-better metric). With
    evaluate.py's bootstrap of the metric's difference, the interval of the regression settles it within
    ``max_regression`` (its upper end at most that), beyond it (its lower end above), or not at all. Unsettled, it
    is judged on the point estimate, or passes for a person to decide under ``review_uncertain_guardrails``.
    A per-class guardrail (``class``) is judged the same way on that class's one-vs-rest metric (``per_class`` and
    ``class_guardrail_differences``)."""
    name, limit, cls = guardrail.metric, guardrail.max_regression, guardrail.class_name
    if cls is None:
        values: tuple[float | None, float | None] | None = (comparison.challenger.value(name), champion.value(name))
        difference = comparison.guardrail_differences.get(name)
        check, shown_name = f"guardrail.{name}", name
    else:
        values = comparison.class_values(name, label_key(cls))
        difference = comparison.class_difference(name, label_key(cls))
        check, shown_name = f"guardrail.{name}[{cls}]", f"{name} of class {cls!r}"
    evidence: dict[str, EvidenceValue] = {"metric": name}
    if cls is not None:
        evidence["class"] = cls
    g_new, g_old = (None, None) if values is None else values
    if g_new is None or g_old is None:
        return _uncomparable_class(check, shown_name, values, limit, evidence, spec)
    lower_is_better = name in LOWER_IS_BETTER
    regression = (g_new - g_old) if lower_is_better else (g_old - g_new)
    evidence |= {"challenger": g_new, "champion": g_old, "regression": regression, "max_regression": limit}
    shown = f"{shown_name} {g_old:.4f} → {g_new:.4f} (regression {regression:+.4f}"
    unsettled = False
    point_within = regression <= limit + _EPS
    beyond = not point_within  # without an interval, the point estimate decides
    if difference is not None:
        low, high = (
            (difference.ci_low, difference.ci_high) if lower_is_better else (-difference.ci_high, -difference.ci_low)
        )
        within, beyond = high <= limit + _EPS, low > limit + _EPS
        unsettled = not (within or beyond)
        evidence |= {"regression_ci_low": low, "regression_ci_high": high, "confidence": difference.confidence}
        shown += f", {difference.confidence * 100:.3g}% interval [{_signed(low)}, {_signed(high)}]"
    shown += f", {_direction(name)} is better)"
    if unsettled and spec.review_uncertain_guardrails:
        ok = True
        verdict = f"the holdout cannot settle it against max_regression {limit:g}: a person decides"
    elif unsettled:
        ok = point_within
        verdict = (
            f"{'within' if ok else 'exceeds'} max_regression {limit:g} on the point estimate (the holdout cannot "
            "settle it: the interval straddles the limit)"
        )
    else:
        ok = not beyond
        verdict = f"{'within' if ok else 'exceeds'} max_regression {limit:g}"
    evidence["settled"] = not unsettled
    return Check(check, ok, f"{shown} {verdict}", evidence), unsettled


def _signed(value: float) -> str:
    """A difference to 4 places with its sign, and no "-0.0000" for a value that rounds to zero."""
    text = f"{value:+.4f}"
    return "+0.0000" if text == "-0.0000" else text


def _uncomparable_class(
    check: str,
    shown_name: str,
    values: tuple[float | None, float | None] | None,
    limit: float,
    evidence: dict[str, EvidenceValue],
    spec: PromotionSpec,
) -> tuple[Check, bool]:
    """A per-class guardrail without both models' values. An older comparison.json (no ``per_class``, or not of
    this class) cannot judge it: it fails, saying to re-run the evaluation. A holdout with no row of the class has
    no point estimate to fall back on, so it is unsettled: a person decides under ``review_uncertain_guardrails``,
    else it fails (the safe side) and says how to get rows of the class into the holdout."""
    evidence |= {"max_regression": limit}
    if values is None:
        evidence["settled"] = True
        reason = (
            f"{shown_name}: comparison.json has no per-class values of this class (an evaluation from before "
            "per-class guardrails, or of a model without the class), so the guardrail cannot be judged: re-run the "
            "evaluation with this training_jobs/"
        )
        return Check(check, False, reason, evidence), False
    evidence["settled"] = False
    what = f"{shown_name}: the holdout has no row of this class, so the models cannot be compared on it"
    if spec.review_uncertain_guardrails:
        return Check(check, True, f"{what} against max_regression {limit:g}: a person decides", evidence), True
    reason = (
        f"{what}, and max_regression {limit:g} cannot be shown to hold (let more data of the class land, raise "
        "promotion.holdout_fraction, or set promotion.review_uncertain_guardrails to let a person decide)"
    )
    return Check(check, False, reason, evidence), True


# --------------------------------------------------------------------------- retrain


@dataclass(frozen=True)
class LivePerformance:
    """The live primary metric (from delayed labels) and the baseline it is judged against.

    ``upper`` is a one-sided ``confidence`` upper bound of the live metric (``shared/live.py`` computes it:
    Wilson for accuracy/precision/recall, a fixed-seed bootstrap for f1/roc_auc/pr_auc); None when none
    could be computed. ``positives`` counts the positive labels among ``labelled`` (binary models)."""

    metric: str
    value: float
    baseline: float
    labelled: int
    upper: float | None = None
    confidence: float = 0.95
    positives: int | None = None


@dataclass(frozen=True)
class LandingNews:
    """Whether ``landing/<model>/`` holds data that ``since_run`` (the newest run whose outcome judged the
    landing folder it trained on) did not train on: ``new_blobs`` blob versions (url, eTag) it lacks."""

    new_blobs: int
    since_run: str


@dataclass(frozen=True)
class DriftSummary:
    """The dataset-level result of comparing recent scoring inputs with the reference profile."""

    drifted: bool
    drifted_share: float
    drifted_columns: tuple[str, ...]
    columns_checked: int | None = None


RetrainKind = Literal["age", "performance", "drift"]


@dataclass(frozen=True)
class RetrainReason:
    kind: RetrainKind
    message: str
    evidence: Mapping[str, EvidenceValue]


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[RetrainReason, ...]
    #: Checks that could not run and why (no model yet, too few labels, no drift report).
    notes: tuple[str, ...]

    @property
    def summary(self) -> str:
        if not self.retrain:
            return "no retrain: " + ("; ".join(self.notes) if self.notes else "every check is within its threshold")
        return "retrain: " + "; ".join(r.message for r in self.reasons)

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"summary": self.summary}


#: Fewer live labels than this say too little about performance to trigger a retrain.
MIN_LABELS_FOR_PERFORMANCE = 100
#: Metrics about the positive class: their noise follows the number of positive labels, not of rows (at a 1.5 %
#: positive rate 100 labelled rows hold one or two positives), so they are judged only with this many.
MIN_POSITIVES_FOR_PERFORMANCE = 30
POSITIVE_CLASS_METRICS = frozenset({"pr_auc", "roc_auc", "recall", "f1"})


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PolicyInputError(f"{name}={value.isoformat()} has no time zone", "pass an aware UTC datetime")
    return value


def decide_retrain(
    *,
    now: datetime,
    triggers: TriggerSpec,
    registered_at: datetime | None,
    live: LivePerformance | None = None,
    drift: DriftSummary | None = None,
    landing: LandingNews | None = None,
    min_labels: int = MIN_LABELS_FOR_PERFORMANCE,
    min_positives: int = MIN_POSITIVES_FOR_PERFORMANCE,
) -> RetrainDecision:
    """Which of age, performance drop and drift call for a retrain (no reasons → no retrain).

    Age is not a reason when ``landing`` says no data landed since the newest judged run: every run trains on
    the whole landing folder, so it would retrain on the same data, not promote, and ask again a day later.
    A performance drop is a reason only when it is significant: the live metric's upper confidence bound is
    below ``baseline - performance_drop`` (a point estimate on a few hundred labels fires on noise alone)."""
    now = _aware(now, "now")
    reasons: list[RetrainReason] = []
    notes: list[str] = []

    if registered_at is None:
        notes.append("no registered model yet: age not checked (the first model trains when data lands)")
    elif triggers.max_model_age_days is None:
        notes.append("max_model_age_days is not set: age not checked")
    else:
        age = (now - _aware(registered_at, "registered_at")) / timedelta(days=1)
        if age > triggers.max_model_age_days:
            old = f"model is {age:.1f} days old > max_model_age_days {triggers.max_model_age_days:g}"
            if landing is not None and landing.new_blobs == 0:
                notes.append(
                    f"{old}, but no data landed since run {landing.since_run} trained on the landing folder: "
                    "age retrain skipped until new data lands (the same data would not promote)"
                )
            else:
                reasons.append(
                    RetrainReason("age", old, {"age_days": age, "max_model_age_days": triggers.max_model_age_days})
                )

    if live is None:
        notes.append("no live labels yet: performance not checked")
    elif live.labelled < min_labels:
        notes.append(f"only {live.labelled} < {min_labels} live labels: performance not checked")
    elif live.metric in POSITIVE_CLASS_METRICS and (live.positives or 0) < min_positives:
        notes.append(
            f"too few positives to judge ({live.positives or 0} < {min_positives} positive labels "
            f"in {live.labelled}): live {live.metric} not checked"
        )
    elif live.upper is None:
        notes.append(f"live {live.metric} has no confidence bound: performance not checked")
    else:
        drop = live.baseline - live.value
        limit = live.baseline - triggers.performance_drop
        of = f"{live.labelled} labels" + (f", {live.positives} positive" if live.positives is not None else "")
        bound = f"its {live.confidence:.0%} upper bound {live.upper:.4f}"
        if drop > triggers.performance_drop and live.upper < limit - _EPS:
            reasons.append(
                RetrainReason(
                    "performance",
                    f"live {live.metric} {live.value:.4f} is {drop:.4f} below baseline {live.baseline:.4f} "
                    f"> performance_drop {triggers.performance_drop:g}, significantly: {bound} < {limit:.4f} "
                    f"({of})",
                    {
                        "metric": live.metric,
                        "value": live.value,
                        "upper": live.upper,
                        "confidence": live.confidence,
                        "baseline": live.baseline,
                        "drop": drop,
                        "performance_drop": triggers.performance_drop,
                        "labelled": live.labelled,
                        "positives": live.positives,
                    },
                )
            )
        elif drop > triggers.performance_drop:
            notes.append(
                f"live {live.metric} {live.value:.4f} is {drop:.4f} below baseline {live.baseline:.4f}, but not "
                f"significantly: {bound} >= {limit:.4f} ({of})"
            )

    if drift is None:
        notes.append("no drift report: drift not checked")
    else:
        threshold = triggers.drift.drifted_share
        if drift.drifted or (drift.drifted_columns and drift.drifted_share >= threshold):  # a column must drift
            columns = ", ".join(drift.drifted_columns) or "none listed"
            of = f" of {drift.columns_checked}" if drift.columns_checked is not None else ""
            reasons.append(
                RetrainReason(
                    "drift",
                    f"{len(drift.drifted_columns)}{of} columns drifted (share {drift.drifted_share:.2f}, "
                    f"drifted_share {threshold:g}): {columns}",
                    {
                        "drifted": drift.drifted,
                        "drifted_share": drift.drifted_share,
                        "threshold": threshold,
                        "drifted_columns": columns,
                    },
                )
            )
    return RetrainDecision(bool(reasons), tuple(reasons), tuple(notes))


# --------------------------------------------------------------------------- traffic


class TrafficError(ValueError):
    """A traffic split that Azure ML would reject or that breaks the rollout's invariants."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


def _names(champion: str, challenger: str) -> None:
    if not champion or not challenger or champion == challenger:
        raise TrafficError(
            f"champion={champion!r} and challenger={challenger!r}", "pass two different, non-empty deployment names"
        )


def traffic_for_step(champion: str, challenger: str, percent: int) -> dict[str, int]:
    """The live traffic map with ``percent`` on the challenger and the rest on the champion."""
    _names(champion, challenger)
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise TrafficError(f"percent={percent!r}", "a rollout step is a whole percent 0-100")
    return {champion: 100 - percent, challenger: percent}


def mirror_for_shadow(challenger: str, live_traffic: Mapping[str, int], percent: int) -> dict[str, int]:
    """The mirror map of a shadow phase: Azure allows at most 50 %, and never to a live deployment."""
    if not 1 <= percent <= 50:
        raise TrafficError(f"mirror percent={percent}", "mirror 1-50 % (Azure ML's limit)")
    if live_traffic.get(challenger, 0) > 0:
        raise TrafficError(
            f"{challenger!r} takes {live_traffic[challenger]} % live traffic",
            "mirror only to a deployment with 0 % live",
        )
    return {challenger: percent}


#: Soft rollback steps when the spec's steps are not given: 50 → 10 → 0.
DEFAULT_ROLLBACK_LADDER = (50, 10)


def rollback_refusal(
    model: str, champion: str | None, previous: str | None, restored_by_rollback: str | None
) -> str | None:
    """Why ``POST /api/models/{model}/rollback`` has nothing to go back to, or None. ``restored_by_rollback``: the
    rollback run that made ``champion`` the champion, if one did; its "previous" version is then the one that
    rollback took away, and a second rollback must not ship it again."""
    if champion is None:
        return f"{model} has no previous version: it has no champion yet"
    if previous is None:
        return f"{model} has no previous version: version {champion} is its first champion"
    if restored_by_rollback is not None:
        return (
            f"version {champion} of {model} was restored by rollback {restored_by_rollback}, away from version "
            f"{previous}; a rollback goes back, not forward again. To ship version {previous} anyway: perennial "
            f"rollout {model} {previous} (POST /api/models/{model}/versions/{previous}/rollout)"
        )
    return None


def rollback_plan(
    current_traffic: Mapping[str, int],
    champion: str,
    challenger: str,
    hard: bool,
    steps: Sequence[int] | None = None,
) -> list[dict[str, int]]:
    """Traffic maps that bring the champion back to 100 %, each summing to 100.

    Hard failures go back in one move. Soft ones step down (e.g. 50 → 10 → 0 on the challenger) so a
    champion that was scaled down takes load gradually. Any other deployment still taking traffic is
    moved to the champion in the first map. Tolerant of a malformed current map on purpose: a
    rollback must always be possible.
    """
    _names(champion, challenger)
    others = sorted(name for name in current_traffic if name not in (champion, challenger))
    share = current_traffic.get(challenger, 0)
    share = min(max(share if isinstance(share, int) else 0, 0), 100)
    ladder = DEFAULT_ROLLBACK_LADDER if steps is None else tuple(sorted((s for s in steps if s < 100), reverse=True))
    shares = [] if hard else [s for s in ladder if 0 < s < share]
    plans: list[dict[str, int]] = []
    for s in [*shares, 0]:
        plan = {champion: 100 - s, challenger: s} | dict.fromkeys(others, 0)
        plans.append(plan)
    return plans


def live_map(live: Mapping[str, int], *involved: str | None) -> dict[str, int]:
    """A planned live map as the endpoint gets it: deployments at 0 % that the move does not involve are left
    out (Azure ML keeps them at 0 %; naming them would fail for one deleted meanwhile)."""
    return {name: int(share) for name, share in live.items() if share or name in involved}


@dataclass(frozen=True)
class TrafficMoves:
    """What one ``rollout_apply`` does to an endpoint, in this order: restore the champion's capacity, set
    ``mirror`` (None: leave it), apply the ``maps`` one after another, then delete the challenger."""

    mirror: dict[str, int] | None
    maps: tuple[dict[str, int], ...]
    restore_champion_capacity: bool
    remove_challenger: bool


def traffic_moves(
    champion: str | None,
    challenger: str,
    step_index: int,
    spec: RolloutSpec,
    action: Mapping[str, object] | None = None,
    plan_index: int | None = None,
) -> TrafficMoves:
    """The moves that set up rollout step ``step_index`` (``action`` None: -1 is the shadow phase; a first
    model, with no champion, takes all traffic at once) or carry out ``action`` (a
    :meth:`RolloutAction.to_dict`). A rollback paced by the orchestrator passes ``plan_index``: only that
    map is applied; the champion's capacity comes back with the first and the challenger goes after the last.
    A rollback with no champion to return to only removes the challenger."""
    mirror: dict[str, int] | None
    if action is None:
        if champion is None:
            plans, mirror = [{challenger: 100}], {}
        elif step_index == -1:
            plans, mirror = (
                [{champion: 100}],
                mirror_for_shadow(challenger, {champion: 100}, spec.shadow.mirror_percent),
            )
        else:
            plans, mirror = [traffic_for_step(champion, challenger, spec.steps[step_index])], {}
        return TrafficMoves(mirror, tuple(live_map(p, champion, challenger) for p in plans), False, False)
    raw_plans = action["traffic_plan"]
    raw_mirror = action["mirror"]
    if not isinstance(raw_plans, Sequence) or not (raw_mirror is None or isinstance(raw_mirror, Mapping)):
        raise PolicyInputError(f"action {action!r} is not a RolloutAction", "pass RolloutAction.to_dict()")
    plans = [dict(p) for p in raw_plans]
    mirror = None if raw_mirror is None else {str(k): int(v) for k, v in raw_mirror.items()}
    if action["kind"] != "rollback":
        return TrafficMoves(mirror, tuple(live_map(p, champion, challenger) for p in plans), False, False)
    if champion is None:
        plans = []  # no champion to return to: the challenger is removed
    first, last = plan_index in (None, 0), plan_index is None or plan_index >= len(plans) - 1
    if plan_index is not None:
        plans = plans[plan_index : plan_index + 1]
    return TrafficMoves(
        mirror,
        tuple(live_map(p, champion, challenger) for p in plans),
        restore_champion_capacity=first and champion is not None,
        remove_challenger=last,
    )


# --------------------------------------------------------------------------- rollout stepping


@dataclass(frozen=True)
class RolloutState:
    """Where a staged rollout stands after a bake. ``step_index`` -1 is the shadow phase."""

    champion: str
    challenger: str
    step_index: int
    traffic: Mapping[str, int]
    extensions_used: int = 0


RolloutActionKind = Literal["advance", "hold", "rollback", "complete"]


@dataclass(frozen=True)
class RolloutAction:
    """What to do next. Apply ``mirror`` (None: leave it) before the ``traffic_plan`` maps, in order."""

    kind: RolloutActionKind
    step_index: int
    percent: int
    traffic_plan: tuple[dict[str, int], ...]
    mirror: dict[str, int] | None
    bake_minutes: float
    extensions_used: int
    hard: bool
    reasons: tuple[str, ...]
    verdict: Mapping[str, object]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def next_rollout_action(state: RolloutState, verdict: CanaryVerdict, spec: RolloutSpec) -> RolloutAction:
    """Advance, hold (extend the bake), roll back or complete, given the verdict of the last bake.

    * fail → roll back: in one move when hard, stepped through the spec's lower steps when soft;
    * inconclusive or marginal → hold for another bake while ``max_bake_extensions`` allow, then a
      soft rollback (a change that cannot be shown healthy does not ship);
    * pass → the next step, or complete after the last (100 %).
    """
    _names(state.champion, state.challenger)
    steps = spec.steps
    if not -1 <= state.step_index < len(steps):
        raise PolicyInputError(
            f"step_index={state.step_index} is outside the {len(steps)} steps {steps}",
            "pass the index of the step just baked, or -1 for the shadow phase",
        )
    if state.step_index == -1 and not spec.shadow.enabled:
        raise PolicyInputError("step_index=-1 (shadow) but rollout.shadow.enabled is false", "start at step 0")
    shadow = state.step_index == -1
    where = "shadow phase" if shadow else f"step {state.step_index + 1}/{len(steps)} ({steps[state.step_index]} %)"
    current = 0 if shadow else steps[state.step_index]
    verdict_record = verdict.to_dict()
    lead = f"{where}: canary verdict {verdict.verdict}: {verdict.reasons[0] if verdict.reasons else ''}"

    def rollback(hard: bool, why: str) -> RolloutAction:
        plan = rollback_plan(state.traffic, state.champion, state.challenger, hard, steps)
        path = " → ".join(str(p[state.challenger]) for p in plan)
        return RolloutAction(
            "rollback",
            -1,
            0,
            tuple(plan),
            {},
            0.0,
            state.extensions_used,
            hard,
            (lead, f"{why}; {'hard' if hard else 'stepped'} rollback, challenger % {path}"),
            verdict_record,
        )

    if verdict.verdict == "fail":
        return rollback(verdict.hard_failure, "failed gate or score")
    if verdict.verdict in ("inconclusive", "marginal"):
        if state.extensions_used < spec.max_bake_extensions:
            bake = spec.shadow.bake_minutes if shadow else spec.bake_minutes
            used = state.extensions_used + 1
            return RolloutAction(
                "hold",
                state.step_index,
                current,
                (),
                None,
                bake,
                used,
                False,
                (lead, f"extend the bake by {bake:g} min (extension {used}/{spec.max_bake_extensions})"),
                verdict_record,
            )
        return rollback(
            False,
            f"still {verdict.verdict} after {state.extensions_used}/{spec.max_bake_extensions} bake extensions "
            "(raise bake_minutes or max_bake_extensions for low-traffic models)",
        )
    if state.step_index == len(steps) - 1:
        plan = traffic_for_step(state.champion, state.challenger, 100)
        return RolloutAction(
            "complete", state.step_index, 100, (plan,), {}, 0.0, 0, False, (lead, "every step passed"), verdict_record
        )
    nxt = state.step_index + 1
    plan = traffic_for_step(state.champion, state.challenger, steps[nxt])
    return RolloutAction(
        "advance",
        nxt,
        steps[nxt],
        (plan,),
        {},  # a deployment taking live traffic may not be mirrored to: the shadow mirror is cleared first
        spec.bake_minutes,
        0,
        False,
        (lead, f"advance to step {nxt + 1}/{len(steps)}: {steps[nxt]} % on {state.challenger}"),
        verdict_record,
    )


# --------------------------------------------------------------------------- repairing a left-over split


@dataclass(frozen=True)
class TrafficRepair:
    """The endpoint's traffic as it must be with no run in flight: the champion alone, no mirror."""

    live: dict[str, int]
    reason: str


def traffic_to_repair(
    *,
    live: Mapping[str, int],
    mirror: Mapping[str, int],
    champion: str | None,
    deployments: Sequence[str],
    run_in_progress: bool,
) -> TrafficRepair | None:
    """With no run in flight, only the champion takes traffic: a split or a mirror is what a rollout or
    rollback left when its compensation gave up (a platform outage longer than its retries). Put the champion
    back at 100 % and clear the mirror. Nothing while a run is in flight (it owns the traffic), without a
    champion (nothing to return to), when the champion's deployment is gone (the operator must act), or when
    a deployment that is not this model's takes traffic (``deployments`` are the model's own; one made by hand
    on the endpoint is the operator's, not ours to move; specs may not share an endpoint, see load_specs)."""
    if run_in_progress or champion is None or champion not in deployments:
        return None
    taking = {name: int(share) for name, share in live.items() if share}
    mirrored = {name: int(share) for name, share in mirror.items() if share}
    if any(name not in deployments for name in (*taking, *mirrored)):
        return None  # a deployment that is not this model's takes traffic: the operator's, not ours to move
    if taking == {champion: 100} and not mirrored:
        return None
    found = ", ".join(f"{name} {share} %" for name, share in sorted(taking.items())) or "no live traffic"
    if mirrored:
        found += "; mirror " + ", ".join(f"{name} {share} %" for name, share in sorted(mirrored.items()))
    return TrafficRepair(
        {champion: 100} | dict.fromkeys((n for n in taking if n != champion), 0),
        f"{found} with no run in flight: {champion} back at 100 %",
    )


# --------------------------------------------------------------------------- retiring old deployments


@dataclass(frozen=True)
class Retirement:
    deployment: str
    reason: str


def deployments_to_retire(
    *,
    now: datetime,
    deployments: Sequence[str],
    live: Mapping[str, int],
    mirror: Mapping[str, int],
    champion: str | None,
    previous: str | None,
    champion_since: datetime | None,
    retire_after_hours: float,
    run_in_progress: bool,
) -> list[Retirement]:
    """Which deployments of a model's endpoint can go: none that takes live or mirrored traffic, never the
    champion's; the previous champion's only once ``retire_after_hours`` have passed since the promotion
    (until then it is the one-command rollback); any other idle one (a leftover of a crash or a failed
    rollout) at once. Nothing while a run is in progress: its challenger or rollback target may be idle."""
    if run_in_progress:
        return []
    now = _aware(now, "now")
    out: list[Retirement] = []
    for name in sorted(deployments):
        if live.get(name, 0) or mirror.get(name, 0) or name == champion:
            continue
        if name == previous:
            if champion_since is None:
                continue
            age_hours = (now - _aware(champion_since, "champion_since")) / timedelta(hours=1)
            if age_hours < retire_after_hours:
                continue
            out.append(
                Retirement(
                    name,
                    f"the previous champion's deployment, idle for {age_hours:.1f} h "
                    f">= retire_after_hours {retire_after_hours:g}",
                )
            )
        else:
            out.append(Retirement(name, "idle, and neither the champion's nor the previous champion's deployment"))
    return out
