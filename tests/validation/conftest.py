"""Fixtures for the validation / profile / drift tests: small contracts and data written to tmp files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from shared.spec import DataContract, ModelSpec, load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fraud_spec() -> ModelSpec:
    return load_spec(REPO / "models" / "fraud.yaml")


def small_contract(**overrides: object) -> DataContract:
    """A contract with one column of each kind; ``overrides`` replace top-level fields."""
    document: dict[str, object] = {
        "label": "y",
        "key": "id",
        "min_rows": 1,
        "max_missing_rate": 0.5,
        "columns": [
            {"name": "id", "type": "string", "nullable": False, "feature": False},
            {"name": "x", "type": "float", "nullable": False, "min": 0, "max": 100},
            {"name": "n", "type": "int", "nullable": True, "min": 0, "max": 10},
            {"name": "c", "type": "category", "nullable": False, "categories": ["a", "b"]},
            {"name": "b", "type": "bool", "nullable": True},
            {"name": "ts", "type": "timestamp", "nullable": True, "feature": False},
            {"name": "y", "type": "int", "nullable": False, "min": 0, "max": 1},
        ],
    }
    document.update(overrides)
    return DataContract.model_validate(document)


def good_rows(count: int = 10) -> list[dict[str, object]]:
    return [
        {
            "id": f"r{i}",
            "x": float(i % 100),
            "n": i % 10,
            "c": "ab"[i % 2],
            "b": i % 3 == 0,
            "ts": f"2024-01-{1 + i % 28:02d}T10:00:00",
            "y": i % 2,
        }
        for i in range(count)
    ]


def write_csv_text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows_to_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    return path
