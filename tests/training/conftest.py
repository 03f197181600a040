"""Fixtures for the training_jobs tests: generated problems and models trained once per session.

Most runs call ``train.main([...])`` in this process (no interpreter start-up, no torch import
per run); the tests about exit codes, signals, torchrun and shipping the folder alone run the
real script in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.training import synthetic
from training_jobs import train

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "training_jobs" / "train.py"
EVALUATE = ROOT / "training_jobs" / "evaluate.py"


@dataclass(frozen=True)
class Problem:
    data: Path
    contract: Path
    folder: Path

    def args(self, output: Path, *extra: str) -> list[str]:
        return ["--data", str(self.data), "--contract", str(self.contract), "--output-dir", str(output), *extra]


def script_env(single_thread: bool = True, **extra: str) -> dict[str, str]:
    """The subprocess environment; ``single_thread=False`` keeps this process's threading settings."""
    env = dict(os.environ)
    if single_thread:  # a fixed thread count keeps CPU reductions reproducible and leaves a core free
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def run_script(script: Path, args: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env=script_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def train_in_process(problem: Problem, output: Path, *extra: str) -> int:
    return train.main(problem.args(output, *extra))


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process runs use one thread, like the subprocess runs (OMP/MKL_NUM_THREADS=1): reproducible
    across the two, and much faster than two threads fighting other work for 2 cores. train.py also
    switches on deterministic algorithms (without filling new memory); all are put back for the rest of the session."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]


@pytest.fixture(scope="package")
def problem(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    """8,000 rows over two CSV files, 5% positives: enough signal for quick, stable runs."""
    folder = tmp_path_factory.mktemp("problem")
    data, contract = synthetic.write_problem(folder, rows=8000, seed=1, files=2, positive_rate=0.05)
    return Problem(data, contract, folder)


@pytest.fixture(scope="package")
def rare_problem(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    """20,000 rows with 1% positives: the class-imbalance case."""
    folder = tmp_path_factory.mktemp("rare")
    data, contract = synthetic.write_problem(folder, rows=20000, seed=1, files=1, positive_rate=0.01)
    return Problem(data, contract, folder)


@pytest.fixture(scope="package")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    folder = tmp_path_factory.mktemp("holdout")
    data, contract = synthetic.write_problem(folder, rows=5000, seed=99, files=1, positive_rate=0.05)
    return Problem(data, contract, folder)


def write_manifest(problem: Problem, path: Path) -> Path:
    from training_jobs.data import sha256_file

    files = [
        {"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in sorted(problem.data.glob("*.csv"))
    ]
    path.write_text(json.dumps({"model": "toy", "run_id": "run-42", "files": files}), encoding="utf-8")
    return path


@pytest.fixture(scope="package")
def trained(problem: Problem, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once with a manifest (4 epochs): used by the output, score and evaluate tests."""
    output = tmp_path_factory.mktemp("trained")
    manifest = write_manifest(problem, output.parent / "trained-manifest.json")
    code = train_in_process(
        problem, output, "--manifest", str(manifest), "--epochs", "4", "--batch-size", "128", "--lr", "0.003"
    )
    assert code == 0
    return output


@pytest.fixture(scope="package")
def weak(problem: Problem, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A barely trained model (3 steps): the champion a real challenger must beat."""
    output = tmp_path_factory.mktemp("weak")
    code = train_in_process(problem, output, "--max-steps", "3", "--batch-size", "128", "--lr", "0.0001")
    assert code == 0
    return output
