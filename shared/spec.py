"""The per-model spec: one YAML file per model under ``models/``.

A spec says what good data looks like (the data contract), how to train
candidates, when a challenger may replace the champion, how to roll it out and
what should trigger a retrain. It is validated once, at start-up; every error
names the file, the field path, the bad value and the fix, e.g.::

    models/fraud.yaml: rollout.steps[2]=40 must be greater than 50 (steps must increase and end at 100)

Each field's ``description`` doubles as the fix hint shown when the field is wrong.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Azure ML names endpoints, deployments, models and computes with this pattern.
AZURE_ML_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*[a-zA-Z0-9]$")
AZURE_ML_NAME_HINT = "3-32 characters: a letter first, then letters, digits or '-', not ending in '-'"
#: Azure ML's longest endpoint (and model, deployment) name.
AZURE_ML_NAME_MAX = 32
#: In Azure the app appends '-<PERENNIAL_ENDPOINT_SUFFIX>' (at most 6 characters) to every endpoint name, since
#: Azure ML endpoint names are unique within a region across tenants: a spec's endpoint leaves room for it.
ENDPOINT_SUFFIX_MAX = 6
ENDPOINT_NAME_MAX = AZURE_ML_NAME_MAX - 1 - ENDPOINT_SUFFIX_MAX

ColumnType = Literal["float", "int", "bool", "string", "category", "timestamp"]
Severity = Literal["error", "warning"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

#: The metrics evaluate.py reports for each model in comparison.json (training_jobs/evaluate.py's METRICS):
#: the only names a guardrail or a first-run floor can be judged on.
EVALUATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece")
#: The metrics a guardrail can judge on one class (``class``): that class's one-vs-rest precision, recall and F1,
#: from the model's predicted class (training_jobs/metrics.py CLASS_METRICS).
CLASS_METRICS = ("precision", "recall", "f1")
#: The most classes an integer label's min..max may declare; shared/validation.py (MAX_LABEL_CLASSES) and
#: training_jobs/data.py (MAX_DECLARED_CLASSES) keep the same number.
MAX_DECLARED_CLASSES = 1000
#: What the job's command line substitutes (shared/platform: the port's placeholders, Azure ML's own): a guardrail's
#: class, passed to evaluate.py on it, cannot hold these.
_COMMAND_PLACEHOLDERS = ("{inputs.", "{outputs}", "${{")
#: promotion.holdout_fraction's default and range; training_jobs/holdout.py keeps the same numbers (the jobs
#: ship without shared/), so a job run by hand holds out what the platform's does. A test checks they agree.
HOLDOUT_FRACTION_DEFAULT = 0.1
HOLDOUT_FRACTION_MIN = 0.05
HOLDOUT_FRACTION_MAX = 0.5


class SpecError(ValueError):
    """A spec file is missing, unreadable or invalid. ``problems`` holds one line per fault."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- data contract


class ColumnSpec(_Strict):
    name: str = Field(description="a column name, unique within data.columns")
    type: ColumnType = Field(description="one of float, int, bool, string, category, timestamp")
    nullable: bool = Field(default=True, description="true if the column may hold missing values")
    min: float | None = Field(default=None, description="the smallest allowed value (numeric columns only)")
    max: float | None = Field(default=None, description="the largest allowed value (numeric columns only)")
    categories: list[str] | None = Field(
        default=None, description="the allowed values of a category column, e.g. [grocery, travel]"
    )
    feature: bool = Field(
        default=True,
        description="false for ids and other columns the model must not see (a timestamp column is never a feature: "
        "derive hour or weekday columns upstream)",
    )


class SeverityPolicy(_Strict):
    """Which findings stop a batch (error) and which are only reported (warning)."""

    missing_column: Severity = Field(default="error", description="error or warning")
    type_mismatch: Severity = Field(default="error", description="error or warning")
    null_in_required: Severity = Field(default="error", description="error or warning")
    missing_rate: Severity = Field(default="error", description="error or warning")
    out_of_range: Severity = Field(default="error", description="error or warning")
    unseen_category: Severity = Field(default="warning", description="error or warning")
    too_few_rows: Severity = Field(default="error", description="error or warning")
    duplicate_key: Severity = Field(default="warning", description="error or warning")
    label_imbalance: Severity = Field(default="warning", description="error or warning")


class DataContract(_Strict):
    columns: list[ColumnSpec] = Field(min_length=1, description="at least one column: name, type, ...")
    label: str = Field(description="the name of the label column; it must be one of data.columns")
    positive_class: str | int | bool = Field(
        default=1, description="the label value that counts as positive, e.g. 1 or 'fraud'"
    )
    key: str | None = Field(default=None, description="a column that identifies a row (duplicates are reported)")
    min_rows: int = Field(default=1, ge=1, description="the fewest rows a batch may have, e.g. 1000")
    max_missing_rate: Probability = Field(
        default=0.05, description="the largest share of missing values per column, in [0, 1], e.g. 0.05"
    )
    min_label_share: Probability = Field(
        default=0.0, description="the smallest share of the rarest label class, in [0, 1], e.g. 0.001"
    )
    severity: SeverityPolicy = Field(default_factory=SeverityPolicy, description="error/warning per check")

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.feature and c.name != self.label]


# --------------------------------------------------------------------------- training


class SearchDimension(_Strict):
    """Either a list of ``values`` or a ``min``/``max`` range (optionally ``log``-scaled)."""

    values: list[float | int | str] | None = Field(default=None, description="the values to try, e.g. [64, 128]")
    min: float | None = Field(default=None, description="the lower end of the range")
    max: float | None = Field(default=None, description="the upper end of the range")
    log: bool = Field(default=False, description="true to sample the range on a log scale (min must be > 0)")


class TrainingSpec(_Strict):
    entry: str = Field(
        default="training_jobs/train.py",
        description="the training script, relative to the repo (with the default, params and search_space keys "
        "are checked against its options). Another script is run with --data, --contract, --manifest, "
        "--output-dir, --holdout-fraction (it must leave those rows out: training_jobs/holdout.py) and its params, "
        "and evaluate.py is taken from the same folder",
    )
    compute: str = Field(
        default="gpu-cluster", description=f"an Azure ML compute name ({AZURE_ML_NAME_HINT.replace('32', '24')})"
    )
    instance_type: str = Field(
        default="Standard_NC4as_T4_v3",
        description="an Azure VM size, e.g. Standard_NC4as_T4_v3: the size of the compute cluster when Perennial "
        "creates it (jobs run on the cluster's own size; the app warns when the two differ)",
    )
    instance_count: int = Field(default=1, ge=1, le=64, description="nodes per job, 1-64")
    distribution: Literal["none", "pytorch"] = Field(default="none", description="none or pytorch (torchrun)")
    processes_per_instance: int = Field(default=1, ge=1, le=16, description="processes per node, 1-16")
    max_candidates: int = Field(default=4, ge=1, le=64, description="how many candidates to train, 1-64")
    timeout_minutes: int = Field(
        default=240,
        ge=1,
        le=60 * 24 * 7,
        description="minutes a job may run (its resumes and retries together; time queued not counted), 1-10080",
    )
    queue_timeout_minutes: int = Field(
        default=720,
        ge=1,
        le=60 * 24 * 7,
        description="minutes each attempt of a job may wait for compute before it starts running, 1-10080",
    )
    max_retries: int = Field(default=2, ge=0, le=10, description="retries of a failed job, 0-10")
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="fixed training options for every candidate, e.g. {epochs: 10}"
    )
    search_space: dict[str, SearchDimension] = Field(
        default_factory=dict, description="the options candidates vary, e.g. {lr: {min: 1e-4, max: 1e-2, log: true}}"
    )
    window_days: float | None = Field(
        default=None,
        gt=0.0,
        le=3650.0,
        description="train on the landing blobs written (Last-Modified) in the last N days, e.g. 90; null: the "
        "whole landing folder. Every run lists the blobs it trains on and checks each one (a batch is read when "
        "first judged, then its kept verdict is reused while it is kept), so bound it once the folder holds "
        "thousands of blobs",
    )

    def landed_since(self, now: datetime) -> datetime | None:
        """The oldest Last-Modified a blob may have to be trained on at ``now``; None: no bound."""
        return None if self.window_days is None else now - timedelta(days=self.window_days)


# --------------------------------------------------------------------------- promotion


class Guardrail(_Strict):
    """A metric that must not regress: over the whole holdout, or on one class of the label (``class``)."""

    # ``class`` is a Python keyword: the field is ``class_``, read and written (and in the JSON schema) as ``class``.
    model_config = ConfigDict(serialize_by_alias=True)

    metric: str = Field(
        description="a metric the evaluation reports: accuracy, precision, recall, f1, roc_auc, pr_auc or ece "
        "(with class: precision, recall or f1)"
    )
    max_regression: float = Field(ge=0.0, le=1.0, description="the largest allowed drop vs the champion, in [0, 1]")
    class_: str | int | float | bool | None = Field(
        default=None,
        alias="class",
        description="judge the metric on this class of the label alone (one-vs-rest, from "
        "the model's predicted class), e.g. {metric: recall, class: urgent, max_regression: 0.02}; a category "
        "label's category, an int label's value within its min..max, or for a binary model the positive class or "
        "the label's other declared class. Left out: the metric over the holdout (macro-averaged for multiclass, "
        "the positive class's for binary)",
    )

    @property
    def class_name(self) -> str | None:
        """The class as text, as evaluate.py is given it (true/false for a YAML boolean); None without one."""
        if isinstance(self.class_, bool):
            return "true" if self.class_ else "false"
        return None if self.class_ is None else str(self.class_)


class PromotionSpec(_Strict):
    primary_metric: Literal["pr_auc", "roc_auc", "f1", "accuracy", "precision", "recall"] = Field(
        default="pr_auc", description="one of pr_auc, roc_auc, f1, accuracy, precision, recall"
    )
    min_improvement: float = Field(
        default=0.0, ge=0.0, le=1.0, description="how much the challenger must gain, in [0, 1], e.g. 0.005"
    )
    significance: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="the significance level of the comparison, in (0, 1), e.g. 0.05"
    )
    guardrails: list[Guardrail] = Field(default_factory=list, description="metrics that must not regress")
    review_uncertain_guardrails: bool = Field(
        default=False,
        description="true: a guardrail the holdout cannot settle (the confidence interval of its regression "
        "straddles max_regression) holds a challenger that passes every other rule for a person's approval "
        "(rollout.approval.timeout_hours, then not shipped); false: such a guardrail is judged on its point estimate",
    )
    first_run_floor: dict[str, Probability] = Field(
        default_factory=dict,
        description="minimum holdout metrics for a first model, e.g. {pr_auc: 0.3}; keys: accuracy, precision, "
        "recall, f1, roc_auc, pr_auc, ece (a ceiling for ece)",
    )
    holdout_fraction: float = Field(
        default=HOLDOUT_FRACTION_DEFAULT,
        ge=HOLDOUT_FRACTION_MIN,
        le=HOLDOUT_FRACTION_MAX,
        description="the share of rows no training job uses, chosen by a stable hash of data.key (else of the "
        "row's values): the only rows the evaluation scores, in [0.05, 0.5], e.g. 0.1",
    )


# --------------------------------------------------------------------------- rollout

#: The longest a bake or a debounce may last. Bounded so that no spec that passes `perennial spec check` can make
#: an orchestrator's timer arithmetic overflow (timedelta's limit) and fail its coordinator on every run.
WEEK_MINUTES = 7 * 24 * 60.0
WEEK_SECONDS = WEEK_MINUTES * 60


class Gates(_Strict):
    max_error_rate: Probability = Field(default=0.01, description="largest error rate, in [0, 1], e.g. 0.01")
    max_p95_latency_ms: float = Field(default=500.0, gt=0.0, description="largest p95 latency in ms, e.g. 300")
    max_latency_ratio: float = Field(
        default=1.5, ge=1.0, description="largest challenger/champion p95 latency ratio, >= 1, e.g. 1.5"
    )
    max_positive_rate_shift: Probability = Field(
        default=0.05, description="largest change of the predicted-positive rate, in [0, 1], e.g. 0.05"
    )
    max_accuracy_drop: Probability = Field(
        default=0.02, description="largest drop of live accuracy once labels arrive, in [0, 1]"
    )
    min_samples: int = Field(default=50, ge=1, description="requests per deployment before a statistical test")
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0, description="test confidence in (0.5, 1), e.g. 0.99")


class ShadowSpec(_Strict):
    enabled: bool = Field(default=False, description="true to mirror traffic to the challenger first")
    mirror_percent: int = Field(default=10, ge=1, le=50, description="the mirrored share, 1-50 (Azure's limit)")
    bake_minutes: float = Field(
        default=15.0, gt=0.0, le=WEEK_MINUTES, description="minutes to mirror before judging, up to a week (10080)"
    )
    min_agreement: Probability = Field(default=0.95, description="the least prediction agreement, in [0, 1]")


class ApprovalSpec(_Strict):
    required: bool = Field(default=False, description="true to wait for a person's approval before rollout")
    timeout_hours: float = Field(
        default=24.0, gt=0.0, le=24.0 * 90, description="hours to wait before giving up, up to 90 days (2160)"
    )


class RolloutSpec(_Strict):
    endpoint: str | None = Field(
        default=None,
        description=(
            f"the online endpoint name ({AZURE_ML_NAME_HINT.replace('32', str(ENDPOINT_NAME_MAX))}), one model's "
            "alone; default <model>-ep. In Azure the app appends '-<PERENNIAL_ENDPOINT_SUFFIX>' (infra/ sets 6 "
            "characters of the deployment's token), since endpoint names are unique within a region"
        ),
    )
    instance_type: str = Field(default="Standard_DS3_v2", description="an Azure VM size for the deployment")
    instance_count: int = Field(default=1, ge=1, le=100, description="instances per deployment, 1-100")
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1, description="e.g. [10, 50, 100]")
    bake_minutes: float = Field(
        default=30.0, gt=0.0, le=WEEK_MINUTES, description="minutes at each step before judging, up to a week (10080)"
    )
    max_bake_extensions: int = Field(
        default=2, ge=0, le=10, description="extra bakes when inconclusive or marginal, 0-10; then a rollback"
    )
    rollback_step_minutes: float = Field(
        default=2.0,
        ge=0.0,
        le=60.0,
        description="minutes between the steps of a stepped (soft) rollback, so the champion takes its load "
        "back in stages, 0-60; 0: back to back",
    )
    probe_timeout_seconds: float = Field(
        default=30.0, gt=0.0, le=600.0, description="smoke-test timeout in seconds, up to 600"
    )
    retire_after_hours: float = Field(
        default=24.0, ge=0.0, le=24.0 * 365, description="hours before the old deployment goes, up to a year (8760)"
    )
    gates: Gates = Field(default_factory=Gates, description="health gates")
    shadow: ShadowSpec = Field(default_factory=ShadowSpec, description="optional shadow phase")
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec, description="optional approval wait")


# --------------------------------------------------------------------------- triggers


class DriftThresholds(_Strict):
    psi: float = Field(default=0.2, gt=0.0, description="population stability index threshold, > 0, e.g. 0.2")
    wasserstein: float = Field(default=0.1, gt=0.0, description="normalised Wasserstein threshold, > 0")
    jensen_shannon: Probability = Field(default=0.1, description="Jensen-Shannon distance threshold, in [0, 1]")
    ks_pvalue: Probability = Field(default=0.01, description="KS test p-value below which a column drifted")
    # > 0: a share of 0 would call every batch drifted, and ask for a retrain, with no drifted column.
    drifted_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of drifted columns that makes the dataset drifted, in (0, 1]; 0 is refused",
    )


class DebounceSpec(_Strict):
    quiet_seconds: float = Field(
        default=120.0, ge=0.0, le=WEEK_SECONDS, description="seconds without new blobs before training, up to a week"
    )
    max_wait_seconds: float = Field(
        default=900.0, gt=0.0, le=WEEK_SECONDS, description="the longest a burst may delay training, up to a week"
    )


class TriggerSpec(_Strict):
    max_model_age_days: float | None = Field(
        default=30.0,
        gt=0.0,
        le=3650.0,
        description="retrain a model older than this once new data has landed, up to 3650; null: no age check",
    )
    drift: DriftThresholds = Field(default_factory=DriftThresholds, description="drift thresholds")
    performance_drop: Probability = Field(
        default=0.05, description="retrain when live primary metric drops this much, in [0, 1]"
    )
    debounce: DebounceSpec = Field(default_factory=DebounceSpec, description="how blob bursts are grouped")
    on_validation_failure: Literal["skip_blob", "stop_run"] = Field(
        default="skip_blob", description="skip_blob (train on the good blobs) or stop_run"
    )
    cooldown_hours: float = Field(
        default=24.0,
        ge=0.0,
        le=24.0 * 365,
        description="hours after a run's creation in which the schedule and monitors' alerts leave the model alone "
        "(0: only a run in progress holds them back); a person's retrain is never held",
    )

    @property
    def cooldown(self) -> timedelta:
        return timedelta(hours=self.cooldown_hours)


# --------------------------------------------------------------------------- the spec


#: What a model predicts: one of two classes (with a positive one), or one of several.
Task = Literal["binary", "multiclass"]


class ModelSpec(_Strict):
    name: str = Field(description=f"the model name ({AZURE_ML_NAME_HINT}), e.g. fraud")
    description: str = Field(default="", description="one line saying what the model does")
    task: Task = Field(default="binary", description="binary or multiclass")
    data: DataContract = Field(description="the data contract: columns, label, min_rows, ...")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="how candidates are trained")
    promotion: PromotionSpec = Field(default_factory=PromotionSpec, description="when a challenger wins")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="how a winner is rolled out")
    triggers: TriggerSpec = Field(default_factory=TriggerSpec, description="what starts a retrain")

    @property
    def endpoint_name(self) -> str:
        return self.rollout.endpoint or f"{self.name}-ep"


# --------------------------------------------------------------------------- invariants


def _problem(path: str, value: Any, message: str, fix: str) -> str:
    return f"{path}={value!r} {message} ({fix})"


def _check_azure_name(path: str, value: str, max_length: int = AZURE_ML_NAME_MAX) -> list[str]:
    if 3 <= len(value) <= max_length and AZURE_ML_NAME.match(value):
        return []
    return [_problem(path, value, "is not a valid Azure ML name", AZURE_ML_NAME_HINT.replace("32", str(max_length)))]


def _check_endpoint_name(path: str, value: str) -> list[str]:
    """An Azure ML name with room for the '-<suffix>' the app appends in Azure."""
    if (problems := _check_azure_name(path, value)) or len(value) <= ENDPOINT_NAME_MAX:
        return problems
    return [
        _problem(
            path,
            value,
            f"is longer than {ENDPOINT_NAME_MAX} characters: in Azure the app appends '-<PERENNIAL_ENDPOINT_SUFFIX>' "
            f"(endpoint names are unique within a region) and Azure ML allows {AZURE_ML_NAME_MAX}",
            f"shorten it to at most {ENDPOINT_NAME_MAX} characters",
        )
    ]


#: Azure ML compute cluster names are shorter than endpoint names; both platform adapters refuse longer ones.
COMPUTE_NAME_MAX = 24


def _check_default_endpoint(spec: ModelSpec) -> list[str]:
    """Without rollout.endpoint the endpoint is '<name>-ep': a long model name makes an endpoint name Azure ML
    refuses, which the rollout would find only after training."""
    if spec.rollout.endpoint is not None or _check_azure_name("name", spec.name):
        return []  # an endpoint of its own, or a name already refused
    if not _check_azure_name("name", spec.endpoint_name, ENDPOINT_NAME_MAX):
        return []
    return [
        _problem(
            "name",
            spec.name,
            f"gives the default endpoint {spec.endpoint_name!r}, longer than {ENDPOINT_NAME_MAX} characters (Azure "
            f"ML's {AZURE_ML_NAME_MAX}, less the '-<suffix>' the app adds in Azure)",
            f"set rollout.endpoint to a name of 3-{ENDPOINT_NAME_MAX} characters, or shorten the model's name",
        )
    ]


def _check_columns(data: DataContract, task: str = "binary") -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    names = [c.name for c in data.columns]
    for i, column in enumerate(data.columns):
        path = f"data.columns[{i}]"
        if column.name in seen:
            problems.append(_problem(f"{path}.name", column.name, "is a duplicate", "column names must be unique"))
        seen.add(column.name)
        numeric = column.type in ("float", "int")
        if (column.min is not None or column.max is not None) and not numeric:
            problems.append(
                _problem(f"{path}.min", column.min, f"is set on a {column.type} column", "ranges apply to float/int")
            )
        if column.min is not None and column.max is not None and column.min > column.max:
            problems.append(_problem(f"{path}.max", column.max, f"is below min={column.min}", "max must be >= min"))
        if column.categories is not None and column.type not in ("category", "string"):
            problems.append(
                _problem(
                    f"{path}.categories",
                    column.categories,
                    f"is set on a {column.type} column",
                    "categories apply to category/string columns",
                )
            )
        if column.categories is not None and len(set(column.categories)) != len(column.categories):
            problems.append(
                _problem(f"{path}.categories", column.categories, "has duplicates", "list each category once")
            )
        if column.categories == []:
            problems.append(
                _problem(
                    f"{path}.categories",
                    column.categories,
                    "is empty: every value would be unseen",
                    "list the allowed values, or leave categories out to accept any",
                )
            )
    if data.label not in names:
        problems.append(_problem("data.label", data.label, "is not a declared column", f"use one of {names}"))
    if data.key is not None and data.key not in names:
        problems.append(_problem("data.key", data.key, "is not a declared column", f"use one of {names}"))
    if data.key is not None and data.key == data.label:
        problems.append(_problem("data.key", data.key, "is the label", "the key must identify rows"))
    # What train.py's contract takes as the model's inputs (training_jobs/contract.py feature_columns).
    if not [c for c in data.columns if c.feature and c.name != data.label and c.type != "timestamp"]:
        problems.append(
            _problem(
                "data.columns",
                names,
                "has no feature column: training would refuse every batch",
                "mark at least one column other than the label (and not a timestamp) feature: true",
            )
        )
    label = next((c for c in data.columns if c.name == data.label), None)
    binary = task == "binary"  # a multiclass model has no positive class (it defaults to 1 unused)
    if binary and label is not None and (why := _positive_class_problem(label, data.positive_class)) is not None:
        fix = BOOL_POSITIVE_HINT if label.type == "bool" else "use a value the label can take"
        problems.append(_problem("data.positive_class", data.positive_class, why, fix))
    return problems


def label_key(value: object) -> str:
    """One spelling per label value, as training compares them (training_jobs/contract.py canonical_label):
    1, 1.0, "1", True and "true" are the same class."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)  # exactly: float() would make 2**53 + 1 the class of 2**53
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return "1" if text.lower() == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def label_class(value: object, column_type: str) -> str:
    """The class training reads ``value`` as, in a label column of ``column_type`` (training_jobs/contract.py
    ``Contract.label_key``; a test holds the two equal). ``label_key``'s spelling, except that a text label's value
    with spaces around it is a class of its own (" yes" is not "yes", as validation reads text) and a ``bool``
    label reads every bool spelling (``yes`` is "1"). Validation counts a batch's classes with it, so a batch
    training would refuse for its labels fails validation instead of the training job."""
    if isinstance(value, str):
        if column_type in ("string", "category") and value != value.strip():
            return value
        lowered = value.strip().lower()
        if column_type == "bool" and (lowered in BOOL_TRUE or lowered in BOOL_FALSE):
            return "1" if lowered in BOOL_TRUE else "0"
    return label_key(value)


def declared_classes(label: ColumnSpec) -> list[str] | None:
    """The classes a label column declares, spelt as the spec spells them: its categories, or the whole numbers from
    its min to its max (at most MAX_DECLARED_CLASSES); None when it declares none. shared/validation.py and
    training_jobs/data.py read a multiclass label's classes the same way (a test keeps the three in agreement)."""
    if label.categories is not None:
        return list(label.categories)
    low, high = label.min, label.max
    if label.type == "int" and low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        first, last = math.ceil(low), math.floor(high)
        if 0 < last - first + 1 <= MAX_DECLARED_CLASSES:
            return [str(v) for v in range(first, last + 1)]
    return None


#: How a ``bool`` column spells true and false, in any case: the app's one definition (shared/typecast.py reads
#: the data with it, shared/feedback.py labels); training_jobs/contract.py keeps a copy, which a test holds equal.
BOOL_TRUE = frozenset({"true", "1", "t", "yes", "y"})
BOOL_FALSE = frozenset({"false", "0", "f", "no", "n"})
BOOL_POSITIVE_HINT = (
    "use true (the usual choice) or false; a bool label also reads 1/0, yes/no, y/n and t/f, in any case"
)


def _bool_spelling(value: str | int | bool) -> bool:
    """Whether ``value`` is one of the values a bool column holds, as its data may spell them."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value in (0, 1)
    return value.strip().lower() in BOOL_TRUE | BOOL_FALSE


def _positive_class_problem(label: ColumnSpec, positive: str | int | bool) -> str | None:
    """Why ``positive`` can never occur in ``label`` as declared (training would refuse every batch), or None."""
    if label.type == "bool" and not _bool_spelling(positive):
        return f"is not a value of the bool label {label.name!r}"
    key = label_key(positive)
    if label.categories and key not in {label_key(c) for c in label.categories}:
        return f"is not one of the label's categories {label.categories}"
    if label.type in ("int", "float"):
        try:
            number = float(key)
        except ValueError:
            return f"is not a number, and the label {label.name!r} is {label.type}"
        if (label.min is not None and number < label.min) or (label.max is not None and number > label.max):
            return f"is outside the label's range [{label.min}, {label.max}]"
    return None


def _check_rollout(rollout: RolloutSpec) -> list[str]:
    problems: list[str] = []
    for i, step in enumerate(rollout.steps):
        if not 1 <= step <= 100:
            problems.append(_problem(f"rollout.steps[{i}]", step, "is out of range", "each step is a percent 1-100"))
        if i > 0 and step <= rollout.steps[i - 1]:
            problems.append(
                _problem(
                    f"rollout.steps[{i}]",
                    step,
                    f"must be greater than {rollout.steps[i - 1]}",
                    "steps must increase and end at 100",
                )
            )
    if rollout.steps and rollout.steps[-1] != 100:
        problems.append(
            _problem(
                f"rollout.steps[{len(rollout.steps) - 1}]",
                rollout.steps[-1],
                "must be 100",
                "steps must increase and end at 100",
            )
        )
    if rollout.endpoint is not None:
        problems += _check_endpoint_name("rollout.endpoint", rollout.endpoint)
    return problems


def _check_search_space(training: TrainingSpec) -> list[str]:
    problems: list[str] = []
    for key, dim in training.search_space.items():
        path = f"training.search_space.{key}"
        has_values = dim.values is not None
        has_range = dim.min is not None or dim.max is not None
        if has_values == has_range:
            problems.append(
                _problem(
                    path,
                    dim.model_dump(exclude_none=True),
                    "needs either values or min/max",
                    "give values: [...] or min: and max:",
                )
            )
            continue
        if has_values and not dim.values:
            problems.append(_problem(f"{path}.values", dim.values, "is empty", "list at least one value"))
        if has_range:
            if dim.min is None or dim.max is None:
                problems.append(
                    _problem(path, dim.model_dump(exclude_none=True), "needs both min and max", "give min: and max:")
                )
            elif dim.min > dim.max:
                problems.append(_problem(f"{path}.max", dim.max, f"is below min={dim.min}", "max must be >= min"))
            elif dim.log and dim.min <= 0:
                problems.append(
                    _problem(f"{path}.min", dim.min, "must be > 0 on a log scale", "use a positive min or log: false")
                )
    if training.distribution == "none" and (training.instance_count > 1 or training.processes_per_instance > 1):
        problems.append(
            _problem(
                "training.distribution",
                training.distribution,
                "cannot run several processes",
                "set distribution: pytorch",
            )
        )
    problems += _check_azure_name("training.compute", training.compute, COMPUTE_NAME_MAX)
    return problems


def _unknown_metric(path: str, value: str) -> str:
    close = difflib.get_close_matches(value, EVALUATION_METRICS, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return _problem(
        path,
        value,
        "is not a metric the evaluation reports",
        f"{guess}use one of {', '.join(EVALUATION_METRICS)}",
    )


def _check_promotion(promotion: PromotionSpec, data: DataContract, task: str = "binary") -> list[str]:
    """Guardrails and floors name metrics comparison.json has, and a guardrail's class is one the model predicts: a
    typo would pass here and stop the run only after every candidate trained."""
    problems = [
        _unknown_metric(f"promotion.guardrails[{i}].metric", g.metric)
        for i, g in enumerate(promotion.guardrails)
        if g.metric not in EVALUATION_METRICS and g.class_ is None
    ]
    problems += [
        _unknown_metric(f"promotion.first_run_floor.{name}", name)
        for name in promotion.first_run_floor
        if name not in EVALUATION_METRICS
    ]
    return problems + _check_guardrail_classes(promotion.guardrails, data, task)


def _check_guardrail_classes(guardrails: Sequence[Guardrail], data: DataContract, task: str) -> list[str]:
    """A per-class guardrail (``class``) judges precision, recall or f1 of a class the label declares, once."""
    problems: list[str] = []
    label = next((c for c in data.columns if c.name == data.label), None)
    seen: dict[tuple[str, str], int] = {}
    for i, guardrail in enumerate(guardrails):
        name = guardrail.class_name
        if name is None:
            continue
        path = f"promotion.guardrails[{i}]"
        if guardrail.metric not in CLASS_METRICS:
            close = difflib.get_close_matches(guardrail.metric, CLASS_METRICS, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                _problem(
                    f"{path}.metric",
                    guardrail.metric,
                    "cannot be judged on one class",
                    f"{guess}with class, use one of {', '.join(CLASS_METRICS)} (the per-class metrics), or leave class "
                    f"out to judge {', '.join(EVALUATION_METRICS)} over the holdout",
                )
            )
        if any(mark in name for mark in _COMMAND_PLACEHOLDERS):
            problems.append(
                _problem(
                    f"{path}.class",
                    guardrail.class_,
                    f"holds {' or '.join(repr(m) for m in _COMMAND_PLACEHOLDERS)}, which the job's command line "
                    "substitutes",
                    "a guardrail cannot name this class; rename the category",
                )
            )
        elif label is not None and (why := _guardrail_class_problem(label, data, task, name, guardrail.class_)):
            problems.append(_problem(f"{path}.class", guardrail.class_, why[0], why[1]))
        key = (guardrail.metric, label_key(name))
        if key in seen:
            problems.append(
                _problem(
                    f"{path}.class",
                    guardrail.class_,
                    f"repeats promotion.guardrails[{seen[key]}] (the same metric {guardrail.metric} on the same class)",
                    "keep one guardrail per metric and class",
                )
            )
        else:
            seen[key] = i
    return problems


def _spelt(value: object, label: ColumnSpec) -> str:
    """A class as a person would write it in the spec: a number plain, a category quoted."""
    return str(value).lower() if isinstance(value, bool) or label.type in ("int", "bool") else repr(value)


def _guardrail_class_problem(
    label: ColumnSpec, data: DataContract, task: str, name: str, value: object
) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the class ``name`` (``value`` as the YAML gave it) is not a class the model
    predicts (compared as training spells labels, so 1, "1" and "1.0" are one class), or None."""
    if label.type == "bool":
        # evaluate.py names a bool label's classes 0 and 1, and the policy finds a guardrail's class among them as
        # training spells labels, which reads true/false and 1/0 (not yes/no): ask for one of those.
        if label_key(name) in ("0", "1"):
            return None
        return (
            f"is not a class of the bool label {label.name!r} as a guardrail names it",
            "use class: true or class: false (or 1 / 0)",
        )
    declared = declared_classes(label)
    key = label_key(name)
    if task == "binary":
        positive = label_key(data.positive_class)
        others = {label_key(c): c for c in declared or [] if label_key(c) != positive}
        if key == positive or (len(others) == 1 and key in others):
            return None
        shown = f"{_spelt(data.positive_class, label)} (the positive class)"
        if len(others) == 1:
            return (
                f"is not a class of the binary label {label.name!r}",
                f"use {shown} or {_spelt(next(iter(others.values())), label)}",
            )
        return (
            f"is not a class of the binary label {label.name!r}",
            f"use {shown}; to name the other class, declare the label's two values (its categories, or an int "
            "label's min and max)",
        )
    if declared is None:
        return (
            f"names a class of the label {label.name!r}, which declares none",
            "declare the label's classes (its categories, or an int label's min and max) so a guardrail can name one",
        )
    if key in {label_key(c) for c in declared}:
        return None
    if label.categories is not None:
        fix = f"use one of the label's categories {label.categories}"
        if isinstance(value, bool):
            fix += '; quote it, e.g. class: "no": YAML reads an unquoted yes, no, true or false as a boolean'
        elif isinstance(value, int | float):
            fix += '; quote a code as the data spells it, e.g. class: "01": YAML reads an unquoted 010 as 8'
        return f"is not a category of the label {label.name!r}", fix
    low, high = declared[0], declared[-1]
    return (
        f"is not a whole number in the range of the label {label.name!r}, [{low}, {high}]",
        f'use a class from {low} to {high}, e.g. {low} (or "{low}")',
    )


DEFAULT_ENTRY = "training_jobs/train.py"


@dataclass(frozen=True)
class OptionRule:
    """What train.py's parser accepts for one option (training_jobs/train.py ``_number``, ``_threshold`` and
    ``choices``): a whole or any number within bounds, one of ``choices``, or a probability or ``auto``."""

    kind: Literal["int", "float", "choice", "threshold"]
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None

    def problem(self, value: object, bounds_only: bool = False) -> str | None:
        """Why train.py would refuse ``value`` (as the job's command line spells it), or None. ``bounds_only``:
        a search range's end, which need not be whole (shared/planning.py draws a whole-number option's range as
        whole numbers)."""
        text = str(value)
        if self.kind == "choice":
            return None if text in (self.choices or ()) else f"is not one of {', '.join(self.choices or ())}"
        if self.kind == "threshold" and text.strip().lower() == "auto":
            return None
        try:
            number = float(text)
        except ValueError:
            return "is not a number" + (" (or auto)" if self.kind == "threshold" else "")
        if not math.isfinite(number):
            return "is not a finite number"
        if self.kind == "int" and not number.is_integer() and not bounds_only:
            return "is not a whole number"
        low_open = self.low_open or self.kind == "threshold"
        if self.low is not None and (number <= self.low if low_open else number < self.low):
            return f"must be {'>' if low_open else '>='} {self.low:g}"
        if self.kind == "threshold" and number >= 1:
            return "must be < 1 (or auto)"
        if self.high is not None and number > self.high:
            return f"must be <= {self.high:g}"
        return None


#: train.py's candidate options and the values it accepts; a test runs train.py's own parser on the same values.
TRAIN_PY_RULES: dict[str, OptionRule] = {
    "lr": OptionRule("float", 0, low_open=True),
    "width": OptionRule("int", 1),
    "depth": OptionRule("int", 0),
    "dropout": OptionRule("float", 0, 0.9),
    "weight_decay": OptionRule("float", 0),
    "batch_size": OptionRule("int", 1),
    "epochs": OptionRule("int", 1),
    "max_steps": OptionRule("int", 0),
    "seed": OptionRule("int", 0),
    "grad_accum": OptionRule("int", 1),
    "amp": OptionRule("choice", choices=("off", "bf16", "fp16")),
    "imbalance": OptionRule("choice", choices=("none", "class-weight", "resample")),
    "threshold": OptionRule("threshold", 0),
    "early_stopping_patience": OptionRule("int", 0),
    "val_fraction": OptionRule("float", 0, 0.9, low_open=True),
    "checkpoint_every_steps": OptionRule("int", 0),
    "checkpoint_every_minutes": OptionRule("float", 0),
}
#: The options of training_jobs/train.py a candidate may set (each ``params`` / ``search_space`` key becomes
#: ``--key``), with the values of those that take a choice.
TRAIN_PY_OPTIONS: dict[str, tuple[str, ...] | None] = {name: rule.choices for name, rule in TRAIN_PY_RULES.items()}


def _check_training_options(training: TrainingSpec) -> list[str]:
    """Options train.py would refuse (each one a failed, paid job per candidate), and the holdout fraction, which
    is the promotion's: a candidate that held out less would have trained on evaluation rows."""
    problems: list[str] = []
    default_entry = training.entry.replace("\\", "/").removeprefix("./") == DEFAULT_ENTRY
    for section, options in (("params", training.params), ("search_space", training.search_space)):
        for name, setting in options.items():
            path, option = f"training.{section}.{name}", name.replace("-", "_")
            shown = setting if section == "params" else "..."
            if option == "holdout_fraction":
                fix = "set promotion.holdout_fraction: every training job and the evaluation use it"
                problems.append(_problem(path, shown, "cannot be set per candidate", fix))
            elif default_entry and option not in TRAIN_PY_OPTIONS:
                close = difflib.get_close_matches(option, TRAIN_PY_OPTIONS, n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                known = ", ".join(TRAIN_PY_OPTIONS)
                problems.append(
                    _problem(path, shown, f"is not an option of {DEFAULT_ENTRY}", f"{guess}use one of {known}")
                )
            elif default_entry:
                problems += _option_value_problems(path, name, option, setting)
    return problems


def _option_value_problems(path: str, name: str, option: str, setting: object) -> list[str]:
    """The values of one params / search_space entry that train.py's parser would refuse (a refused value fails
    every job that draws it, after its compute was paid for)."""
    rule, flag = TRAIN_PY_RULES[option], f"--{name.replace('_', '-')}"
    in_space = isinstance(setting, SearchDimension)
    if isinstance(setting, SearchDimension) and setting.values is None:
        if rule.kind == "choice":
            return [_problem(path, "a min/max range", f"is not a choice of {flag}", _option_fix(rule, in_space))]
        ends = (("min", setting.min), ("max", setting.max))
        problems = [
            _problem(f"{path}.{end}", value, f"{why} for {flag}", _option_fix(rule, in_space))
            for end, value in ends
            if value is not None and (why := rule.problem(value, bounds_only=True))
        ]
        low, high = setting.min, setting.max
        # The planner draws a whole-number option's range as whole numbers: there must be one in it.
        empty = low is not None and high is not None and low <= high and math.ceil(low) > math.floor(high)
        if rule.kind == "int" and not problems and empty:
            problems.append(
                _problem(path, f"[{low:g}, {high:g}]", f"holds no whole number for {flag}", "widen the range")
            )
        return problems
    values: list[object] = list(setting.values or []) if isinstance(setting, SearchDimension) else [setting]
    problems = []
    for value in values:
        if (why := rule.problem(value)) is not None:
            what = f"is not a choice of {flag}" if rule.kind == "choice" else f"{why} for {flag}"
            problems.append(_problem(path, value, what, _option_fix(rule, in_space)))
    return problems


def _option_fix(rule: OptionRule, in_space: bool) -> str:
    if rule.kind == "choice":
        return f"use one of {', '.join(rule.choices or ())}" + (" as values: [...]" if in_space else "")
    if rule.kind == "threshold":
        return "use auto, or a probability between 0 and 1 such as 0.5"
    bounds = [
        f"{'>' if rule.low_open else '>='} {rule.low:g}" if rule.low is not None else "",
        f"<= {rule.high:g}" if rule.high is not None else "",
    ]
    kind = "a whole number" if rule.kind == "int" else "a number"
    return f"use {kind} " + " and ".join(b for b in bounds if b) + "; train.py --help lists every option"


def _check_triggers(triggers: TriggerSpec) -> list[str]:
    debounce = triggers.debounce
    if debounce.quiet_seconds > debounce.max_wait_seconds:
        return [
            _problem(
                "triggers.debounce.quiet_seconds",
                debounce.quiet_seconds,
                f"exceeds max_wait_seconds={debounce.max_wait_seconds}",
                "the quiet window must fit inside the max wait",
            )
        ]
    return []


def _invariant_problems(spec: ModelSpec) -> list[str]:
    return (
        _check_azure_name("name", spec.name)
        + _check_columns(spec.data, spec.task)
        + _check_search_space(spec.training)
        + _check_training_options(spec.training)
        + _check_promotion(spec.promotion, spec.data, spec.task)
        + _check_rollout(spec.rollout)
        + _check_triggers(spec.triggers)
        + _check_default_endpoint(spec)
    )


# --------------------------------------------------------------------------- pydantic errors, readable


def _loc_to_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _holds_dict(annotation: Any) -> bool:
    """Whether an annotation is ``dict[...]`` (or ``dict[...] | None``): the next part of a location is a user's key."""
    if get_origin(annotation) is dict:
        return True
    return any(get_origin(arg) is dict for arg in getattr(annotation, "__args__", ()))


def _walk(loc: Sequence[int | str]) -> tuple[Any, str | None, bool]:
    """Follow ``loc`` through the spec models: the model reached (None past the models), the last field's
    description (our fix hint) and whether every named part was found. List indexes and the user's own dict keys
    (``search_space.<name>``) are stepped over; so are pydantic's union tags (``float``, ``int`` …) past the models."""
    model: Any = ModelSpec
    hint: str | None = None
    key_next = False
    for part in loc:
        if isinstance(part, int):
            continue
        if key_next:
            key_next = False
            continue
        fields = getattr(model, "model_fields", None) if model is not None else None
        if fields is None:
            continue
        info = next((f for n, f in fields.items() if part in (n, f.alias)), None)  # errors name a field by its alias
        if info is None:
            return model, hint, False
        hint = info.description
        key_next = _holds_dict(info.annotation)
        model = inner_model(info.annotation)
    return model, hint, True


def _field_hint(loc: Sequence[int | str]) -> str | None:
    """The description of the field at ``loc`` (our fix hint), or None when ``loc`` names no field."""
    _, hint, found = _walk(loc)
    return hint if found else None


def inner_model(annotation: Any) -> Any:
    """The BaseModel class an annotation holds (through list[...] / dict[..., X] / X | None), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = inner_model(arg)
        if found is not None:
            return found
    return None


#: How pydantic tags the members of a union in an error's location, and what each means to a person.
_UNION_TAGS = {"float": "a number", "int": "a number", "str": "text", "bool": "true/false"}


def _readable_errors(errors: Sequence[Any]) -> list[str]:
    """One line per fault. A value that fits no member of a union (``params: {layers: [64, 32]}``) gets one
    line saying what it may be, not one per member with the member's type name in its path."""
    lines: list[str] = []
    unions: dict[tuple[int | str, ...], tuple[int, Any, list[str]]] = {}  # loc -> (line, value, kinds)
    for error in errors:
        loc = tuple(error["loc"])
        if loc and loc[-1] in _UNION_TAGS and _walk(loc[:-1])[0] is None:
            if loc[:-1] not in unions:
                unions[loc[:-1]] = (len(lines), error.get("input"), [])
                lines.append("")  # written below, where the union's first member was reported
            kinds = unions[loc[:-1]][2]
            if _UNION_TAGS[str(loc[-1])] not in kinds:
                kinds.append(_UNION_TAGS[str(loc[-1])])
            continue
        lines.append(_format_pydantic_error(error))
    for loc, (index, value, kinds) in unions.items():
        expected = f"{', '.join(kinds[:-1])} or {kinds[-1]}" if len(kinds) > 1 else kinds[0]
        lines[index] = (
            f"{_loc_to_path(loc)}={value!r} should be {expected} ({_field_hint(loc) or 'see docs/model-spec.md'})"
        )
    return lines


def _format_pydantic_error(error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    path = _loc_to_path(loc) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        hint = _field_hint(loc)
        return f"{path} is required ({'add it: ' + hint if hint else 'add it'})"
    if kind == "extra_forbidden":
        parent = inner_model_at(loc[:-1])
        known = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent is not None else []
        return f"{path} is not a known field (remove it or fix the spelling; known fields here: {', '.join(known)})"
    hint = _field_hint(loc) or "see docs/model-spec.md"
    message = str(error["msg"]).replace("Input should", "should")
    if kind == "string_type" and "categories" in loc and isinstance(error.get("input"), int | float):
        # YAML reads 1 as a number (and 010 as 8, an octal): the codes the data holds are text, quoted as written.
        hint = 'quote each code as the data spells it, e.g. ["01", "02"]: unquoted, YAML reads 010 as 8'
    return f"{path}={error.get('input')!r} {message[0].lower() + message[1:]} ({hint})"


def inner_model_at(loc: Sequence[int | str]) -> Any:
    model, _, found = _walk(loc)
    return model if found else None


#: What a cross-field problem reads besides the field it names (the path before its '='), by that path's prefix: a
#: default standing in for one of these may be all the problem is about (``_problems_past_faults``).
_PROBLEM_READS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data.label", ("data.columns",)),
    ("data.key", ("data.columns", "data.label")),
    ("data.columns", ("data.label",)),
    ("data.positive_class", ("task", "data.label", "data.columns")),
    ("training.params", ("training.entry",)),
    ("training.search_space", ("training.entry",)),
    ("training.distribution", ("training.instance_count", "training.processes_per_instance")),
    ("triggers.debounce", ("triggers.debounce",)),
    ("name", ("rollout.endpoint",)),
    ("promotion.guardrails[].class", ("task", "data.label", "data.columns", "data.positive_class")),
)


def _overlaps(a: str, b: str) -> bool:
    """Whether field paths ``a`` and ``b`` are the same field or one holds the other (``rollout.steps[2]``)."""
    return a == b or any(x.startswith(y) and x[len(y)] in ".[" for x, y in ((a, b), (b, a)) if len(x) > len(y))


def _problems_past_faults(document: dict[str, Any], errors: Sequence[Any]) -> list[str]:
    """The cross-field problems (``_invariant_problems``) a spec with faulty fields still has, so that one check
    names them all: judged on the document with each faulty field taken out, so that its default stands in. A
    problem that names or reads (``_PROBLEM_READS``) a field taken out is left out, since it may be about the
    stand-in; nothing is said when taking them out is not enough (a required field at fault)."""
    trimmed = copy.deepcopy(document)
    removed: list[str] = []
    for error in errors:
        node: Any = trimmed
        path, holder, held_at = "", None, ""
        for part in error["loc"]:  # down to the last mapping key on the fault's path that the document has
            if isinstance(node, dict) and part in node:
                path = f"{path}.{part}" if path else str(part)
                holder, held_at, node = (node, str(part)), path, node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                path, node = f"{path}[{part}]", node[part]
            else:
                break
        if holder is not None and holder[1] in holder[0]:
            del holder[0][holder[1]]
            removed.append(held_at)
    try:
        spec = ModelSpec.model_validate(trimmed)
    except ValidationError:
        return []

    def trusted(problem: str) -> bool:
        named = problem.split("=", 1)[0]
        listed = re.sub(r"\[\d+\]", "[]", named)  # _PROBLEM_READS names a list's items as [] (guardrails[].class)
        reads = [named, *(r for prefix, extra in _PROBLEM_READS if _overlaps(listed, prefix) for r in extra)]
        return not any(_overlaps(gone, read) for gone in removed for read in reads)

    return [p for p in _invariant_problems(spec) if trusted(p)]


# --------------------------------------------------------------------------- loading


def parse_spec(document: Any, source: str) -> ModelSpec:
    """Validate an already-parsed YAML document; ``source`` names it in errors."""
    if not isinstance(document, dict):
        kinds = {type(None): "an empty document", list: "a list", str: "a line of text", int: "a number"}
        got = kinds.get(type(document), type(document).__name__)
        raise SpecError([f"{source}: the spec must be a YAML mapping (name:, data:, ...), not {got}"])
    try:
        spec = ModelSpec.model_validate(document)
    except ValidationError as exc:
        faults = _readable_errors(exc.errors()) + _problems_past_faults(document, exc.errors())
        raise SpecError([f"{source}: {line}" for line in faults]) from None
    problems = _invariant_problems(spec)
    if problems:
        raise SpecError([f"{source}: {p}" for p in problems])
    return spec


def ignored_spec_file(path: Path) -> str:
    """Why the host passes over a spec file not named ``*.yaml``, and the fix (not a rename over another spec)."""
    beside = path.with_suffix(".yaml")
    fix = f"merge it into {beside.name} or delete it" if beside.exists() else f"rename it to {beside.name}"
    return f"{path}: specs are read from *.yaml files only, so this one would be ignored ({fix})"


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file, whose name must be the model's; raise :class:`SpecError` naming the
    file, field and fix."""
    path = Path(path)
    spec = read_spec(path)
    if spec.name != path.stem:
        raise SpecError(
            [
                f"{path}: name={spec.name!r} does not match the file name (rename the file to "
                f"{spec.name}.yaml or set name: {path.stem})"
            ]
        )
    return spec


def read_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file, whatever it is called (``load_spec`` also checks the name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file (pass the path of a models/<name>.yaml spec)"]) from None
    except IsADirectoryError:
        example = next(iter(sorted(path.glob("*.yaml"))), path / "<name>.yaml")
        raise SpecError(
            [
                f"{path}: is a directory, not a spec file; pass one of its YAML files, e.g. {example} "
                f"(perennial spec check {path} checks every *.yaml in it)"
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read it ({exc}); save it as UTF-8 text"]) from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(
            [f"{path}: is not valid YAML{where} ({getattr(exc, 'problem', exc)}); fix the syntax"]
        ) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise SpecError([f"{path}: nests lists or mappings too deeply to read; a spec is a few levels deep"]) from None
    return parse_spec(document, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key repeated in one mapping: PyYAML keeps the last one silently, so a second
    ``rollout:`` block would replace the first, endpoint, gates and all."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Only the keys written in this mapping count: what a merge key (<<: *anchor) brings in may be overridden.
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if id(key_node) not in own or not isinstance(key_node, yaml.ScalarNode):
                continue  # merged in, or a complex key (SafeConstructor refuses what cannot be a key)
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice (lines {seen[key]} and {line}): merge them into one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def endpoint_clashes(specs: Iterable[tuple[Path, ModelSpec]]) -> list[str]:
    """One problem per spec whose endpoint an earlier spec already has. A rollout sets the endpoint's whole traffic
    map from its own model's deployments, so a second model on the same endpoint would have its traffic taken away
    (or the endpoint left serving nothing). Names are compared without case, as Azure ML does."""
    owners: dict[str, tuple[str, Path]] = {}
    problems: list[str] = []
    for path, spec in specs:
        owner = owners.get(spec.endpoint_name.casefold())
        if owner is not None:
            problems.append(
                f"{path}: rollout.endpoint={spec.endpoint_name!r} is also {owner[0]}'s endpoint ({owner[1]}); "
                "give each model its own endpoint (set rollout.endpoint, or leave it out for '<name>-ep')"
            )
            continue
        owners[spec.endpoint_name.casefold()] = (spec.name, path)
    return problems


def load_specs(directory: str | Path) -> dict[str, ModelSpec]:
    """Load every ``*.yaml`` spec in ``directory``; all problems of all files are reported together."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError([f"{directory}: the models directory does not exist (set PERENNIAL_MODELS_DIR)"])
    loaded: list[tuple[Path, ModelSpec]] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            loaded.append((path, load_spec(path)))
        except SpecError as exc:
            problems += exc.problems
    problems += endpoint_clashes(loaded)
    problems += [
        ignored_spec_file(path)
        for path in sorted(directory.glob("*.yml"))
        if not path.name.startswith(".")  # a tool's dotfile is not a spec
    ]
    specs = {spec.name: spec for _, spec in loaded}  # names are unique: a spec's name is its file's
    if problems:
        raise SpecError(problems)
    return specs
