"""The data contract as the compute sees it: contract.json, written from ``shared.spec.DataContract``.

This is a deliberately small, dependency-free reader (the compute does not ship ``shared/``):
it keeps the fields training, evaluation and scoring need (the columns, the label, the positive class,
the key that identifies a row for the holdout, training_jobs/holdout.py, and the model's task) and ignores
the rest (severity, min_rows, ...) so the spec may grow without breaking jobs already running.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training_jobs.errors import ContractError

NUMERIC_TYPES = ("float", "int", "bool")
CATEGORICAL_TYPES = ("category", "string")
COLUMN_TYPES = (*NUMERIC_TYPES, *CATEGORICAL_TYPES, "timestamp")
TASKS = ("binary", "multiclass")
#: How a ``bool`` column spells true and false, in any case: validation reads a bool column so (shared.typecast,
#: copied here because the jobs ship without shared/; a test keeps the copies in agreement). Training reads a bool
#: label and bool features with them, and scoring takes them for a bool feature.
BOOL_TRUE = frozenset({"true", "1", "t", "yes", "y"})
BOOL_FALSE = frozenset({"false", "0", "f", "no", "n"})


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    feature: bool = True

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    @property
    def is_categorical(self) -> bool:
        return self.type in CATEGORICAL_TYPES

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data


@dataclass(frozen=True)
class Contract:
    columns: tuple[Column, ...]
    label: str
    positive_class: str | int | bool = 1
    #: The column that identifies a row (``data.key``): the holdout is chosen by its hash. None: by the row's values.
    key: str | None = None
    #: The spec's ``task``. None: a contract.json written before it carried one; the labels present decide.
    task: str | None = None

    @property
    def feature_columns(self) -> list[Column]:
        """Columns the model sees: feature=true, not the label, and not timestamps (see README)."""
        return [c for c in self.columns if c.feature and c.name != self.label and c.type != "timestamp"]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def label_key(self, value: Any) -> str:
        """A label value (or the positive class) as training spells the label's classes: ``canonical_label``,
        reading every bool spelling (``yes``, ``N``, ...) when the label column is ``bool``. A text label's value
        with spaces around it is a value of its own, as the validator reads it (" yes" is not "yes")."""
        kind = self.column(self.label).type
        if kind in CATEGORICAL_TYPES and isinstance(value, str) and value != value.strip():
            return value
        return canonical_label(value, as_bool=kind == "bool")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "columns": [c.to_json() for c in self.columns],
            "label": self.label,
            "positive_class": self.positive_class,
            "key": self.key,
        }
        if self.task is not None:  # absent as before, so models and checkpoints written without one read the same
            data["task"] = self.task
        return data


def canonical_label(value: Any, as_bool: bool = False) -> str:
    """One spelling per label value, so 1, 1.0, "1", True and "true" name the same class.

    ``as_bool``: the value is from a ``bool`` column, which also spells true and false as the validator reads them
    (BOOL_TRUE / BOOL_FALSE, any case: ``yes`` is "1", ``N`` is "0"); anything else is spelt as without it."""
    if as_bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in BOOL_TRUE or lowered in BOOL_FALSE:
            return "1" if lowered in BOOL_TRUE else "0"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return "1" if lowered == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def _column(raw: Any, index: int) -> Column:
    where = f"columns[{index}]"
    if not isinstance(raw, dict):
        raise ContractError(f"contract {where} is not an object", "each column is {name, type, ...}")
    name = raw.get("name")
    kind = raw.get("type")
    if not isinstance(name, str) or not name:
        raise ContractError(f"contract {where}.name is missing", "give every column a name")
    if kind not in COLUMN_TYPES:
        raise ContractError(f"contract {where}.type={kind!r} is unknown", f"use one of {', '.join(COLUMN_TYPES)}")
    categories = raw.get("categories")
    if categories is not None and not (isinstance(categories, list) and all(isinstance(c, str) for c in categories)):
        raise ContractError(f"contract {where}.categories is not a list of strings", "e.g. [grocery, travel]")
    return Column(
        name=name,
        type=str(kind),
        nullable=bool(raw.get("nullable", True)),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        categories=tuple(categories) if categories is not None else None,
        feature=bool(raw.get("feature", True)),
    )


def parse_contract(document: Any, source: str = "contract.json") -> Contract:
    if not isinstance(document, dict):
        raise ContractError(f"{source} is not a JSON object", "write it with DataContract.model_dump(mode='json')")
    raw_columns = document.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise ContractError(f"{source} has no columns", "list the data's columns under 'columns'")
    columns = tuple(_column(raw, i) for i, raw in enumerate(raw_columns))
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractError(f"{source} lists columns twice: {', '.join(duplicates)}", "column names must be unique")
    label = document.get("label")
    if label not in names:
        raise ContractError(f"{source}: label={label!r} is not one of the columns", "set label to a column name")
    positive = document.get("positive_class", 1)
    if not isinstance(positive, str | int | bool):
        raise ContractError(f"{source}: positive_class={positive!r} is not a scalar", "e.g. 1 or 'fraud'")
    key = document.get("key")
    if key is not None and key not in names:
        raise ContractError(
            f"{source}: key={key!r} is not one of the columns", "set key to a column name, or leave it out"
        )
    task = document.get("task")
    if task is not None and task not in TASKS:
        raise ContractError(f"{source}: task={task!r} is unknown", f"use one of {', '.join(TASKS)}")
    contract = Contract(
        columns=columns,
        label=str(label),
        positive_class=positive,
        key=None if key is None else str(key),
        task=None if task is None else str(task),
    )
    if not contract.feature_columns:
        raise ContractError(f"{source} has no feature columns", "mark at least one non-label column feature: true")
    return contract


def load_contract(path: str | Path) -> Contract:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError(
            f"{path}: no such file", "pass --contract with the contract.json written from the spec"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{path}: cannot read it as JSON ({exc})", "write it with json.dump") from None
    return parse_contract(document, str(path))
