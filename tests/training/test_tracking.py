"""MLflow logging when MLFLOW_TRACKING_URI is set; silence without it; never a failed job because of it.

mlflow is not installed here (it is in environment.yml for the compute), so a stand-in module
records the calls train.py makes through mlflow's public functions.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import Problem, train_in_process


class FakeMlflow(types.ModuleType):
    def __init__(self, fail: bool = False) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    def _record(self, name: str, value: Any) -> None:
        if self.fail and name != "start_run":
            raise ConnectionError("tracking server unreachable")
        self.calls.append((name, value))

    def start_run(self) -> None:
        self._record("start_run", None)

    def log_params(self, params: dict[str, str]) -> None:
        self._record("log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._record("log_metrics", (metrics, step))

    def log_artifact(self, path: str) -> None:
        self._record("log_artifact", Path(path).name)

    def end_run(self) -> None:
        self._record("end_run", None)


def test_params_metrics_and_model_files_go_to_mlflow(
    problem: Problem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://example")
    assert train_in_process(problem, tmp_path / "out", "--epochs", "2", "--batch-size", "256") == 0
    names = [name for name, _ in fake.calls]
    assert names[0] == "start_run"
    assert names[-1] == "end_run"
    params = next(value for name, value in fake.calls if name == "log_params")
    assert params["lr"] == "0.001"
    assert params["batch_size"] == "256"
    metric_names = {k for name, value in fake.calls if name == "log_metrics" for k in value[0]}
    assert {"train_loss", "samples_per_s", "val_pr_auc", "pr_auc", "roc_auc", "recall"} <= metric_names
    artifacts = {value for name, value in fake.calls if name == "log_artifact"}
    assert {"model.safetensors", "metrics.json", "model_card.json", "preprocessing.json"} <= artifacts


def test_a_failing_tracking_server_only_warns(
    problem: Problem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", FakeMlflow(fail=True))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://example")
    with caplog.at_level("WARNING"):
        assert train_in_process(problem, tmp_path / "out", "--max-steps", "5") == 0
    assert "MLflow log_metrics failed: ConnectionError" in caplog.text
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 5


def test_without_a_tracking_uri_mlflow_is_not_imported(
    problem: Problem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train_in_process(problem, tmp_path / "out", "--max-steps", "5") == 0
    assert fake.calls == []
