"""Azure ML online-endpoint scoring script (``init()`` / ``run(raw)``); the local endpoint server uses it too.

``init()`` loads the model from ``AZUREML_MODEL_DIR`` (the files directly in it or one folder
down, as Azure ML mounts a registered model) — safetensors weights and JSON, never pickle.
``run(raw)`` accepts ``{"data": [{column: value, ...}, ...]}`` (or ``{"input_data": ...}``,
including the ``{"columns": [...], "data": [[...]]}`` split form), validates every row against
the contract saved with the model and answers::

    {"predictions": [{"class": 1, "probability": 0.97, "label": "fraud"}, ...], "model_version": "3"}

In Azure, when ``azureml-ai-monitoring`` is installed (environment.yml), every request's input rows
and predictions are also handed to Azure ML's data collector (``model_inputs`` / ``model_outputs``),
each row tagged with the request id (the client's ``x-ms-client-request-id`` / ``x-request-id``, else
a new one), so Perennial can join delayed labels to predictions. Collection never fails a request.

Binary models: ``probability`` is P(positive class) and ``class`` is 1 when it reaches the
model's threshold. Multiclass: ``class`` is the index into the model's classes and
``probability`` that class's probability. ``label`` is the class's label value (binary: the positive
or the negative class's). A bad payload raises ``ValueError`` whose message
names the row index and the column (the local server answers it with a 400); under Azure ML's
inference server (``@rawhttp``) run() answers it itself, 400 with ``{"error": message}``, since
the server turns any exception into a 500 without the message. Any unforeseen failure while reading
the payload is a ``PayloadError`` too; a model whose probabilities are not finite raises
``ModelBundleError`` naming it (a 500: the model's fault, not the caller's), never a NaN answer.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable
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
#: Azure ML's data collectors (model_inputs, model_outputs), when azureml-ai-monitoring is installed.
_collectors: tuple[Any, Any] | None = None
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[Any], Any]  # run(): the answer as a dict, or (Azure, a bad payload) an AMLResponse


def _plain(function: Handler) -> Handler:
    return function


def _raise(error: PayloadError) -> Any:
    raise error


try:  # With @rawhttp the Azure ML inference server hands run() the request, headers included.
    from azureml.contrib.services.aml_request import rawhttp as _rawhttp  # type: ignore[import-not-found]
    from azureml.contrib.services.aml_response import AMLResponse  # type: ignore[import-not-found]

    def _bad_request(error: PayloadError) -> Any:
        # The inference server answers an exception from run() with a bare 500; this is the caller's mistake.
        return AMLResponse({"error": str(error)}, 400, json_str=True)

except ImportError:  # locally (and in tests) run() gets the body; the local server answers ValueError with a 400
    _rawhttp = _plain
    _bad_request = _raise
rawhttp: Callable[[Handler], Handler] = _rawhttp
bad_request: Callable[[PayloadError], Any] = _bad_request


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
    _start_data_collection()


def _start_data_collection() -> None:
    global _collectors
    try:
        from azureml.ai.monitoring import Collector  # type: ignore[import-not-found]
    except ImportError:
        _collectors = None
        return

    def on_error(exc: Exception) -> None:
        log.warning("data collection failed (scoring is unaffected): %s", exc)

    _collectors = (
        Collector(name="model_inputs", on_error=on_error),
        Collector(name="model_outputs", on_error=on_error),
    )


def _request_id(headers: Any) -> str:
    """The client's request id if it is a sane token, else a new one (as the local scoring server does)."""
    for name in ("x-ms-client-request-id", "x-request-id"):
        value = str((headers.get(name) if headers is not None else None) or "").strip()
        if _REQUEST_ID.match(value):
            return value
    return str(uuid.uuid4())


def _collect(request_id: str, rows: list[dict[str, Any]], classes: list[int], probabilities: list[float]) -> None:
    """Hand the request's rows and predictions to Azure ML's data collector, tagged with the request id."""
    if _collectors is None:
        return
    try:
        import pandas as pd
        from azureml.ai.monitoring.context import BasicCorrelationContext  # type: ignore[import-not-found]

        inputs, outputs = _collectors
        frame = pd.DataFrame(rows)
        frame["request_id"] = request_id
        context = inputs.collect(frame, BasicCorrelationContext(id=request_id))
        answers = {"request_id": [request_id] * len(classes), "class": classes, "probability": probabilities}
        outputs.collect(pd.DataFrame(answers), context)
    except Exception as exc:  # collection is best effort: never fail a scoring request for it
        log.warning("data collection failed for request %s: %s", request_id, exc)


@rawhttp
def run(raw: Any) -> Any:
    """Score a request body (or, in Azure, the request itself); ValueError (PayloadError) names the bad row
    and column."""
    if _predictor is None:
        raise RuntimeError("score.run() was called before init(): call init() once when the process starts")
    headers = None
    if hasattr(raw, "get_data"):  # the inference server's request object (@rawhttp)
        headers, raw = raw.headers, raw.get_data()
    try:
        return _score(_predictor, raw, headers)
    except PayloadError as error:
        return bad_request(error)


def _read_payload(predictor: Predictor, raw: Any) -> tuple[list[Any], dict[str, list[Any]]]:
    """The rows and the feature columns of a request; anything wrong with it is a PayloadError (a 400)."""
    contract = predictor.preprocessor.contract
    try:
        rows = parse_records(raw)
        return rows, validate_records(rows, contract.feature_columns, known={c.name for c in contract.columns})
    except (PayloadError, MemoryError):
        raise
    except Exception as exc:  # a shape the checks did not foresee: still the request's fault, not a 500
        log.warning("unreadable payload", exc_info=True)
        raise PayloadError(
            f'the body could not be read ({type(exc).__name__}: {exc}); send {{"data": [{{"column": value, ...}}]}}'
        ) from exc


def _score(predictor: Predictor, raw: Any, headers: Any) -> dict[str, Any]:
    rows, columns = _read_payload(predictor, raw)
    probabilities = predictor.predict_proba(columns, len(rows))
    if not np.isfinite(probabilities).all():
        # A diverged model: refuse rather than answer NaN (invalid JSON for most clients). A model error: a 500.
        bad = int((~np.isfinite(probabilities)).reshape(len(rows), -1).any(axis=1).sum())
        raise ModelBundleError(
            f"model {predictor.directory.name!r} (version {_model_version}) gave probabilities that are not finite "
            f"for {bad} of {len(rows)} row(s)",
            "its weights are unusable: roll back to the previous version and retrain (lower --lr or --amp off)",
        )
    classes = predict_classes(probabilities, predictor.threshold)
    # Binary: P(positive); multiclass: the probability of the class predicted.
    chosen = probabilities[np.arange(len(rows)), classes] if probabilities.ndim == 2 else probabilities
    names = predictor.preprocessor.labels.classes  # the label value of each class index, as training spelt it
    predictions = [
        {"class": int(c), "probability": round(float(p), 6), "label": names[int(c)]}
        for c, p in zip(classes, chosen, strict=True)
    ]
    if _collectors is not None:
        _collect(_request_id(headers), rows, [int(c) for c in classes], [round(float(p), 6) for p in chosen])
    return {"predictions": predictions, "model_version": _model_version}


__all__ = ["PayloadError", "init", "run"]
