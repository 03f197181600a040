"""End to end on the local platform with the real training_jobs/ scripts: train → evaluate → register → deploy → score."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shared.platform import (
    ComputeSpec,
    DeploymentSpec,
    EndpointSpec,
    InvokeRequest,
    JobInput,
    JobSpec,
    JobState,
    LogsRequest,
    ModelRegistration,
    Traffic,
    TrafficUpdate,
    job_output_uri,
)
from shared.platform.local import LocalPlatform
from tests.platform.conftest import cleanup_local
from tests.training import synthetic

pytestmark = pytest.mark.slow
QUIET = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_real_scripts_train_evaluate_register_deploy_and_score(tmp_path: Path) -> None:
    data, contract = synthetic.write_problem(tmp_path / "problem", rows=3000, seed=3, files=1, positive_rate=0.1)
    platform = LocalPlatform(tmp_path / "state")  # code_root: the repository, code: training_jobs
    try:
        platform.ensure_compute(ComputeSpec("cpu-cluster", max_instances=2))
        inputs = {"data": JobInput(str(data)), "contract": JobInput(str(contract), "uri_file")}
        train = platform.submit_job(
            JobSpec(
                name="fraud-train-1",
                experiment_name="fraud",
                compute="cpu-cluster",
                script="train.py",
                args=(
                    "--data",
                    "{inputs.data}",
                    "--contract",
                    "{inputs.contract}",
                    "--output-dir",
                    "{outputs}",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "256",
                    "--width",
                    "16",
                ),
                inputs=inputs,
                environment_variables=QUIET,
            )
        )
        assert train.phase in ("queued", "running")
        done = _wait(platform, "fraud-train-1")
        assert done.status == "Completed", platform.job_logs(LogsRequest("fraud-train-1"))
        outputs = Path(done.local_outputs_path or "")
        assert (outputs / "model.safetensors").is_file()
        assert (outputs / "metrics.json").is_file()

        evaluation = platform.submit_job(
            JobSpec(
                name="fraud-eval-1",
                experiment_name="fraud",
                compute="cpu-cluster",
                script="evaluate.py",
                kind="evaluation",
                args=(
                    "--challenger",
                    "{inputs.challenger}",
                    "--data",
                    "{inputs.data}",
                    "--contract",
                    "{inputs.contract}",
                    "--output",
                    "{outputs}/comparison.json",
                    "--bootstrap",
                    "100",
                ),
                inputs={**inputs, "challenger": JobInput(job_output_uri("fraud-train-1"))},
                environment_variables=QUIET,
            )
        )
        assert evaluation.name == "fraud-eval-1"
        evaluated = _wait(platform, "fraud-eval-1")
        assert evaluated.status == "Completed"
        assert json.loads((Path(evaluated.local_outputs_path or "") / "comparison.json").read_text())

        model = platform.register_model(ModelRegistration("fraud", "fraud-train-1", properties={"trigger": "test"}))
        platform.ensure_endpoint(EndpointSpec("fraud-ep"))
        platform.create_or_update_deployment(DeploymentSpec("fraud-ep", "fraud-v1", "fraud", model.version))
        platform.set_traffic(TrafficUpdate("fraud-ep", Traffic({"fraud-v1": 100})))
        sample = json.loads((outputs / "sample_input.json").read_text())
        result = platform.invoke(InvokeRequest("fraud-ep", sample))
        assert result.status_code == 200, result.body
        assert len(result.body["predictions"]) == len(sample["data"])
        bad = platform.invoke(InvokeRequest("fraud-ep", {"data": [{"x0": "not a number"}]}))
        assert bad.status_code == 400  # score.py's ValueError, not a 500
    finally:
        cleanup_local(platform)


def _wait(platform: LocalPlatform, name: str, timeout: float = 240.0) -> JobState:
    deadline = time.monotonic() + timeout
    while not platform.get_job(name).terminal:
        assert time.monotonic() < deadline, f"{name} did not finish in {timeout}s"
        time.sleep(0.2)
    return platform.get_job(name)
