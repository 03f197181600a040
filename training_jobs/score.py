"""Azure ML online-endpoint scoring script (``init()`` / ``run(raw)``); the local endpoint server uses it too.

``init()`` loads the model from ``AZUREML_MODEL_DIR`` (the files directly in it or one folder
down, as Azure ML mounts a registered model) — safetensors weights and JSON, never pickle.
``run(raw)`` accepts ``{"data": [{column: value, ...}, ...]}`` (or ``{"input_data": ...}``,
including the ``{"columns": [...], "data": [[...]]}`` split form), validates every row against
the contract saved with the model and answers::

    {"predictions": [{"class": 1, "probability": 0.97}, ...], "model_version": "3"}

Binary models: ``probability`` is P(positive class) and ``class`` is 1 when it reaches the
model's threshold. Multiclass: ``class`` is the index into the model's classes and
``probability`` that class's probability. A bad payload raises ``ValueError`` whose message
names the row index and the column (the local server answers it with a 400).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any


def _make_package_importable() -> None:
    """Loaded by file path (Azure ML, the local server): import siblings as a package."""
    if "training_jobs" in sys.modules:
        return
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(
        "training_jobs", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load training_jobs from {here}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["training_jobs"] = module
    spec.loader.exec_module(module)


if not __package__:
    _make_package_importable()

import numpy as np  # noqa: E402

from training_jobs.bundle import Predictor  # noqa: E402
from training_jobs.errors import ModelBundleError  # noqa: E402
from training_jobs.metrics import predict_classes  # noqa: E402
from training_jobs.payload import PayloadError, parse_records, validate_records  # noqa: E402

log = logging.getLogger("training_jobs.score")

_predictor: Predictor | None = None
_model_version = "unknown"


def init() -> None:
    """Load the model once per process."""
    global _predictor, _model_version
    root = os.environ.get("AZUREML_MODEL_DIR")
    if not root:
        raise ModelBundleError("AZUREML_MODEL_DIR is not set", "set it to the folder holding model.safetensors")
    _predictor = Predictor.load(root)
    _model_version = (
        os.environ.get("AZUREML_MODEL_VERSION")
        or str(_predictor.card.get("model_version") or "")
        or str(_predictor.card.get("run_id") or "")
        or "unknown"
    )
    log.info("loaded model %s (version %s) from %s", _predictor.directory.name, _model_version, _predictor.directory)


def run(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Score a request body; ValueError (PayloadError) names the bad row and column."""
    if _predictor is None:
        raise RuntimeError("score.run() was called before init(): call init() once when the process starts")
    rows = parse_records(raw)
    columns = validate_records(rows, _predictor.preprocessor.contract.feature_columns)
    probabilities = _predictor.predict_proba(columns, len(rows))
    classes = predict_classes(probabilities, _predictor.threshold)
    # Binary: P(positive); multiclass: the probability of the class predicted.
    chosen = probabilities[np.arange(len(rows)), classes] if probabilities.ndim == 2 else probabilities
    predictions = [{"class": int(c), "probability": round(float(p), 6)} for c, p in zip(classes, chosen, strict=True)]
    return {"predictions": predictions, "model_version": _model_version}


__all__ = ["PayloadError", "init", "run"]
