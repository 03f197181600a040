"""Features: fitted on the training split only, saved as preprocessing.json, applied identically at scoring.

Numeric (float, int, bool) columns: missing values are filled with the training median, a
0/1 missing-indicator column is added for nullable columns, then (x - mean) / std with the
training mean/std, limited to ±10^6 standard deviations (further out, float32 overflows inside the
model and a prediction would be NaN). Infinite values count as missing, and so do the values validation calls a
type_mismatch: a fraction in an int column, a bool cell that is not one of the spellings (a number other than 0 or 1). Categorical (category, string) columns become embedding indices: 0 is
"other" (unknown or missing), 1.. are the declared categories (or, when none are declared,
the most frequent training values). Values are compared as text spelt as the validator's Arrow cast spells
them (``data.as_text``: a float 2.0 is "2"), in training and at scoring alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training_jobs.contract import BOOL_FALSE, BOOL_TRUE, Column, Contract
from training_jobs.data import LabelSpace, as_text
from training_jobs.errors import ModelBundleError

FORMAT_VERSION = 1
#: Learned vocabularies (string columns without declared categories) keep at most this many values.
MAX_LEARNED_CATEGORIES = 1000
OTHER_INDEX = 0
#: |standardised value| cap: squares stay far inside float32 in LayerNorm; no real feature gets near it.
MAX_STANDARD_SCORE = 1e6
_TRUE, _FALSE = BOOL_TRUE, BOOL_FALSE  # a bool feature's spellings: the validator's (contract.py)


@dataclass(frozen=True)
class NumericFeature:
    name: str
    mean: float
    std: float
    fill: float
    missing_indicator: bool


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]

    @property
    def cardinality(self) -> int:
        return len(self.categories) + 1  # + "other"


def as_float(values: Sequence[Any] | pd.Series | npt.NDArray[Any], kind: str) -> npt.NDArray[np.float64]:
    """A column as float64 with NaN for missing, unparseable or infinite values."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype="object")
    if kind == "bool" and not pd.api.types.is_bool_dtype(series):

        def to_bool(v: Any) -> float:
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                return float("nan")
            if isinstance(v, bool | np.bool_):
                return float(v)
            if isinstance(v, int | float | np.integer | np.floating):
                # Only 0 and 1 are booleans (as validation and score.py read them); 2 is a bad value: missing.
                return float(v) if v in (0, 1) else float("nan")
            text = str(v).strip().lower()
            return 1.0 if text in _TRUE else 0.0 if text in _FALSE else float("nan")

        return np.array([to_bool(v) for v in series.tolist()], dtype=np.float64)
    converted = series if pd.api.types.is_bool_dtype(series) else pd.to_numeric(series, errors="coerce")
    result: npt.NDArray[np.float64] = converted.astype("float64").to_numpy(na_value=np.nan)
    # An infinity would make the training mean infinite (every row then -inf) or a score NaN; a fraction in an int
    # column is a bad value to validation (type_mismatch: "treated as missing"), so it is missing here too.
    bad = np.isinf(result) | ((result != np.floor(result)) if kind == "int" else False)
    return np.where(bad, np.nan, result)


@dataclass(frozen=True)
class Preprocessor:
    contract: Contract
    labels: LabelSpace
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    threshold: float = 0.5

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, frame: pd.DataFrame, contract: Contract, labels: LabelSpace) -> Preprocessor:
        """Fit on the training rows only: validation statistics must not leak into the model."""
        numeric: list[NumericFeature] = []
        categorical: list[CategoricalFeature] = []
        for column in contract.feature_columns:
            present = column.name in frame.columns
            if column.is_numeric:
                values = as_float(frame[column.name], column.type) if present else np.full(len(frame), np.nan)
                numeric.append(_fit_numeric(column, values))
            elif column.is_categorical:
                text: list[str | None] = as_text(frame[column.name]) if present else [None] * len(frame)
                categorical.append(_fit_categorical(column, text))
        return cls(contract=contract, labels=labels, numeric=tuple(numeric), categorical=tuple(categorical))

    # ------------------------------------------------------------------ applying

    @property
    def feature_names(self) -> list[str]:
        """Column order of the numeric matrix the model sees."""
        names = [f.name for f in self.numeric]
        return names + [f"{f.name}__missing" for f in self.numeric if f.missing_indicator]

    @property
    def cardinalities(self) -> list[int]:
        return [f.cardinality for f in self.categorical]

    def transform(
        self, columns: Mapping[str, Sequence[Any] | pd.Series | npt.NDArray[Any]] | pd.DataFrame, n_rows: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(numeric float32 [n, len(feature_names)], categorical int64 [n, len(categorical)])."""
        blocks: list[npt.NDArray[np.float64]] = []
        indicators: list[npt.NDArray[np.float64]] = []
        for feature in self.numeric:
            kind = self.contract.column(feature.name).type
            raw = as_float(columns[feature.name], kind) if feature.name in columns else np.full(n_rows, np.nan)
            missing = np.isnan(raw)
            filled = np.where(missing, feature.fill, raw)
            standard = (filled - feature.mean) / feature.std
            blocks.append(np.clip(standard, -MAX_STANDARD_SCORE, MAX_STANDARD_SCORE))
            if feature.missing_indicator:
                indicators.append(missing.astype(np.float64))
        numeric = np.stack(blocks + indicators, axis=1) if blocks else np.zeros((n_rows, 0))
        codes: list[npt.NDArray[np.int64]] = []
        for cat in self.categorical:
            index = {value: i + 1 for i, value in enumerate(cat.categories)}
            text = as_text(columns[cat.name]) if cat.name in columns else [None] * n_rows
            codes.append(np.array([index.get(v, OTHER_INDEX) if v is not None else OTHER_INDEX for v in text]))
        categorical = np.stack(codes, axis=1).astype(np.int64) if codes else np.zeros((n_rows, 0), dtype=np.int64)
        return numeric.astype(np.float32), categorical

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "contract": self.contract.to_json(),
            "labels": self.labels.to_json(),
            "feature_order": self.feature_names,
            "numeric": [vars(f) for f in self.numeric],
            "categorical": [{"name": f.name, "categories": list(f.categories)} for f in self.categorical],
            "other_index": OTHER_INDEX,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessor:
        from training_jobs.contract import parse_contract

        if data.get("format_version") != FORMAT_VERSION:
            raise ModelBundleError(
                f"preprocessing.json format_version={data.get('format_version')!r} is not {FORMAT_VERSION}",
                "score with the training_jobs version that trained the model",
            )
        return cls(
            contract=parse_contract(data["contract"], "preprocessing.json contract"),
            labels=LabelSpace.from_json(data["labels"]),
            numeric=tuple(NumericFeature(**f) for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(f["name"], tuple(f["categories"])) for f in data["categorical"]),
            threshold=float(data.get("threshold", 0.5)),
        )


def _fit_numeric(column: Column, values: npt.NDArray[np.float64]) -> NumericFeature:
    observed = values[~np.isnan(values)]
    fill = float(np.median(observed)) if observed.size else 0.0
    filled = np.where(np.isnan(values), fill, values)
    mean = float(filled.mean()) if filled.size else 0.0
    std = float(filled.std()) if filled.size else 1.0
    return NumericFeature(
        name=column.name,
        mean=mean,
        std=std if std > 1e-12 else 1.0,  # a constant column must not divide by zero
        fill=fill,
        missing_indicator=column.nullable or bool(np.isnan(values).any()),
    )


def _fit_categorical(column: Column, text: list[str | None]) -> CategoricalFeature:
    if column.categories is not None:
        return CategoricalFeature(column.name, column.categories)
    counts = Counter(v for v in text if v is not None)
    # Most frequent first, ties by value, so the vocabulary is the same on every rank and rerun.
    learned = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_LEARNED_CATEGORIES]
    return CategoricalFeature(column.name, tuple(learned))
