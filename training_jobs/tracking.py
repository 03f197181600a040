"""MLflow logging when MLFLOW_TRACKING_URI is set (Azure ML sets it for every job); silent otherwise.

mlflow is imported lazily and only here: it is in environment.yml for the compute, not in the
local dev environment, and a job must never fail because tracking is unavailable.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("training_jobs.tracking")


class Tracker:
    def __init__(self, enabled: bool) -> None:
        self._mlflow: Any = None
        if not enabled or not os.environ.get("MLFLOW_TRACKING_URI"):
            return
        try:
            import mlflow  # type: ignore[import-not-found, unused-ignore]

            mlflow.start_run()  # Azure ML provides MLFLOW_RUN_ID: this attaches to the job's own run
            self._mlflow = mlflow
        except Exception as exc:  # tracking is best-effort: report and keep training
            log.warning("MLflow logging is off: %s: %s (install mlflow to enable it)", type(exc).__name__, exc)

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, name)(*args, **kwargs)
        except Exception as exc:  # a flaky tracking server must not kill a multi-day job
            log.warning("MLflow %s failed: %s: %s", name, type(exc).__name__, exc)

    def params(self, params: dict[str, Any]) -> None:
        self._call("log_params", {k: str(v) for k, v in params.items()})

    def metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        self._call("log_metrics", numbers, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:  # the model files only: checkpoints would double the upload for nothing
            self._call("log_artifact", str(path))

    def finish(self) -> None:
        self._call("end_run")
