"""A trained model on disk (model.safetensors + model_config.json + preprocessing.json) and its predictor.

Weights are safetensors: loading them executes nothing, unlike a pickled ``torch.save``.
Azure ML mounts a registered model either directly in ``AZUREML_MODEL_DIR`` or one folder
down (``<dir>/<model-name>/``), so :func:`find_bundle_dir` accepts both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from safetensors.torch import load_file, save

from training_jobs.errors import ModelBundleError
from training_jobs.files import write_atomically
from training_jobs.model import ModelConfig, TabularMLP, probabilities
from training_jobs.preprocessing import Preprocessor

WEIGHTS = "model.safetensors"
CONFIG = "model_config.json"
PREPROCESSING = "preprocessing.json"
CARD = "model_card.json"
METRICS = "metrics.json"
SCORE_BATCH_ROWS = 8192


def find_bundle_dir(root: str | Path) -> Path:
    root = Path(root)
    if (root / WEIGHTS).is_file():
        return root
    if root.is_dir():
        below = sorted(p for p in root.iterdir() if p.is_dir() and (p / WEIGHTS).is_file())
        if len(below) == 1:
            return below[0]
        if len(below) > 1:
            raise ModelBundleError(
                f"{root} holds several models: {', '.join(p.name for p in below)}", "point at one model's folder"
            )
    raise ModelBundleError(
        f"no {WEIGHTS} in {root} or one folder below it",
        "pass the output folder of train.py (or register that folder as the model)",
    )


def write_bundle(directory: Path, model: TabularMLP, config: ModelConfig, preprocessor: Preprocessor) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    """Each file is replaced whole (a kill mid-write leaves the old file, never half a new one); train.py
    writes metrics.json and the card after these, so a folder with a card is a complete model."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(directory / WEIGHTS, save(weights, metadata={"format": "pt"}))
    for name, document in ((CONFIG, asdict(config)), (PREPROCESSING, preprocessor.to_json())):
        write_atomically(directory / name, json.dumps(document, indent=2).encode("utf-8"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelBundleError(f"{path} is missing", "the model folder must hold every file train.py wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{path}: cannot read it as JSON ({exc})", "re-train or re-register the model") from None
    if not isinstance(data, dict):
        raise ModelBundleError(f"{path} is not a JSON object", "re-train or re-register the model")
    return data


@dataclass
class Predictor:
    directory: Path
    config: ModelConfig
    preprocessor: Preprocessor
    model: TabularMLP
    card: dict[str, Any]
    metrics: dict[str, Any]
    device: torch.device

    @classmethod
    def load(cls, root: str | Path, device: torch.device | None = None) -> Predictor:
        directory = find_bundle_dir(root)
        config = ModelConfig.from_json(_read_json(directory / CONFIG))
        preprocessor = Preprocessor.from_json(_read_json(directory / PREPROCESSING))
        device = device or torch.device("cpu")
        model = TabularMLP(config)
        try:
            weights = load_file(str(directory / WEIGHTS))
            model.load_state_dict(weights, strict=True)
        except Exception as exc:  # safetensors raises its own types; all mean "not these weights"
            raise ModelBundleError(
                f"{directory / WEIGHTS} does not fit {CONFIG} ({type(exc).__name__}: {exc})",
                "the folder mixes files of different models; re-train or re-register it",
            ) from exc
        model.to(device).eval()
        card = _read_json(directory / CARD) if (directory / CARD).is_file() else {}
        metrics = _read_json(directory / METRICS) if (directory / METRICS).is_file() else {}
        return cls(directory, config, preprocessor, model, card, metrics, device)

    @property
    def threshold(self) -> float:
        return self.preprocessor.threshold

    def predict_proba(
        self, columns: Mapping[str, Sequence[Any] | pd.Series | npt.NDArray[Any]] | pd.DataFrame, n_rows: int
    ) -> npt.NDArray[np.float64]:
        """Binary: P(positive) per row, shape [n]; multiclass: [n, K]."""
        numeric, categorical = self.preprocessor.transform(columns, n_rows)
        out: list[npt.NDArray[np.float64]] = []
        with torch.inference_mode():
            for start in range(0, n_rows, SCORE_BATCH_ROWS):
                num = torch.from_numpy(numeric[start : start + SCORE_BATCH_ROWS]).to(self.device)
                cat = torch.from_numpy(categorical[start : start + SCORE_BATCH_ROWS]).to(self.device)
                probs = probabilities(self.model(num, cat), self.config.n_outputs)
                out.append(probs.cpu().double().numpy())
        if not out:
            shape = (0,) if self.config.n_outputs == 1 else (0, self.config.n_outputs)
            return np.zeros(shape, dtype=np.float64)
        return np.concatenate(out)
