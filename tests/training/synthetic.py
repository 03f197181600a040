"""A small generated binary problem for the training_jobs tests: 10 feature columns, ~1% positives.

The positive class depends on the features through a fixed logistic rule (numeric, boolean and
categorical terms, plus a nullable column with gaps), so a model can learn it and metrics mean
something; every test generates its own rows from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west", "central"]
CHANNELS = ["web", "app", "store"]
_REGION_RISK = {"north": -0.5, "south": 0.2, "east": 0.9, "west": -0.2, "central": 0.0}
_CHANNEL_RISK = {"web": 0.8, "app": 0.0, "store": -0.8}


def contract() -> dict[str, Any]:
    """What shared.spec.DataContract.model_dump(mode="json") writes for this problem."""
    columns: list[dict[str, Any]] = [
        {"name": "row_id", "type": "string", "nullable": False, "feature": False},
        *({"name": f"x{i}", "type": "float", "nullable": False, "min": -50.0, "max": 50.0} for i in range(5)),
        {"name": "gap", "type": "float", "nullable": True, "min": 0.0, "max": 1000.0},
        {"name": "count", "type": "int", "nullable": False, "min": 0, "max": 1000},
        {"name": "flag", "type": "bool", "nullable": False},
        {"name": "region", "type": "category", "nullable": False, "categories": REGIONS},
        {"name": "channel", "type": "string", "nullable": True, "categories": CHANNELS},
        {"name": "label", "type": "int", "nullable": False, "min": 0, "max": 1},
    ]
    full = []
    for column in columns:
        full.append({"nullable": True, "min": None, "max": None, "categories": None, "feature": True, **column})
    return {
        "columns": full,
        "label": "label",
        "positive_class": 1,
        "key": "row_id",
        "min_rows": 100,
        "max_missing_rate": 0.05,
        "min_label_share": 0.001,
        "severity": {},
    }


def frame(rows: int, seed: int, positive_rate: float = 0.01, signal: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    gap = rng.gamma(2.0, 20.0, size=rows)
    count = rng.poisson(4, size=rows)
    flag = rng.random(rows) < 0.3
    region = rng.choice(REGIONS, size=rows)
    channel = rng.choice(CHANNELS, size=rows)
    score = signal * (
        1.4 * x[:, 0]
        - 1.0 * x[:, 1]
        + 0.8 * x[:, 2] * x[:, 3]
        + 0.02 * gap
        + 0.15 * count
        + 1.0 * flag
        + np.vectorize(_REGION_RISK.__getitem__)(region)
        + np.vectorize(_CHANNEL_RISK.__getitem__)(channel)
    )
    # Pick the intercept so the expected share of positives is positive_rate.
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(score + mid)))) > positive_rate:
            high = mid
        else:
            low = mid
    label = (rng.random(rows) < 1 / (1 + np.exp(-(score + low)))).astype(int)
    data = pd.DataFrame(
        {
            "row_id": [f"r{seed}-{i}" for i in range(rows)],
            **{f"x{i}": np.round(x[:, i], 4) for i in range(5)},
            "gap": np.round(gap, 3),
            "count": count,
            "flag": flag,
            "region": region,
            "channel": channel,
            "label": label,
        }
    )
    data.loc[rng.random(rows) < 0.03, "gap"] = np.nan
    data.loc[rng.random(rows) < 0.01, "channel"] = None
    return data


def write_problem(
    folder: Path, rows: int, seed: int, files: int = 1, positive_rate: float = 0.01, fmt: str = "csv"
) -> tuple[Path, Path]:
    """(data folder, contract.json) with ``rows`` rows split over ``files`` files."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    full = frame(rows, seed, positive_rate)
    for i, part in enumerate(np.array_split(np.arange(rows), files)):
        chunk = full.iloc[part]
        if fmt == "parquet":
            chunk.to_parquet(data_dir / f"batch-{i:03d}.parquet", index=False)
        else:
            chunk.to_csv(data_dir / f"batch-{i:03d}.csv", index=False)
    contract_path = folder / "contract.json"
    contract_path.write_text(json.dumps(contract()), encoding="utf-8")
    return data_dir, contract_path
