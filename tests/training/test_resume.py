"""Preemption and resume: a run stopped by SIGTERM and resumed ends with exactly the same weights.

Settings: CPU, torch.use_deterministic_algorithms(True), fixed seeds; dropout stays on (its draws
are seeded from (seed, rank, step)), so exactness covers the model, optimiser, schedule, data order
and random draws together. Equality is bit-for-bit (``torch.equal``), no tolerance.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import ROOT, TRAIN, Problem, script_env, train_in_process
from training_jobs.errors import EXIT_BAD_INPUT, EXIT_PREEMPTED
from training_jobs.train import SIGTERM_AT_STEP_ENV

# 60 steps over 1.2 epochs (6,400 training rows / 128): an epoch boundary with evaluation and
# early-stopping bookkeeping falls between the preemption and the end.
RUN = ("--batch-size", "128", "--max-steps", "60", "--dropout", "0.2", "--checkpoint-every-steps", "20")


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def straight(problem: Problem, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("straight")
    assert train_in_process(problem, output, *RUN) == 0
    return output


def test_sigterm_then_resume_gives_identical_weights(
    problem: Problem, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "resumed"
    monkeypatch.setenv(SIGTERM_AT_STEP_ENV, "33")  # a real SIGTERM, delivered after optimiser step 33
    assert train_in_process(problem, output, *RUN) == EXIT_PREEMPTED
    assert json.loads((output / "preempted.json").read_text())["step"] == 33
    assert (output / "checkpoints" / "ckpt-000000033.pt").is_file()
    assert not (output / "model.safetensors").exists()
    monkeypatch.delenv(SIGTERM_AT_STEP_ENV)

    assert train_in_process(problem, output, *RUN, "--resume", "auto") == 0
    assert same_weights(straight, output)
    assert not (output / "preempted.json").exists()
    straight_metrics = json.loads((straight / "metrics.json").read_text())
    resumed_metrics = json.loads((output / "metrics.json").read_text())
    assert resumed_metrics["history"] == straight_metrics["history"]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    problem: Problem, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "resumed"
    monkeypatch.setenv(SIGTERM_AT_STEP_ENV, "45")
    assert train_in_process(problem, output, *RUN) == EXIT_PREEMPTED
    monkeypatch.delenv(SIGTERM_AT_STEP_ENV)
    newest = output / "checkpoints" / "ckpt-000000045.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write on a bad disk

    with caplog.at_level("INFO"):
        assert train_in_process(problem, output, *RUN) == 0
    assert "skipping unreadable checkpoint" in caplog.text
    assert "ckpt-000000040.pt at step 40" in caplog.text
    assert same_weights(straight, output)


def test_resume_never_ignores_checkpoints_and_moves_them_aside(
    problem: Problem, straight: Path, tmp_path: Path
) -> None:
    output = tmp_path / "again"
    shutil.copytree(straight / "checkpoints", output / "checkpoints")
    kept = sorted(p.name for p in (output / "checkpoints").iterdir())
    # The final checkpoint of a finished run would make "auto" a no-op; "never" trains again from step 0.
    assert train_in_process(problem, output, *RUN, "--resume", "never") == 0
    assert same_weights(straight, output)
    assert json.loads((output / "metrics.json").read_text())["steps"] == 60
    assert sorted(p.name for p in (output / "checkpoints.superseded-1").iterdir()) == kept  # not deleted


def test_a_new_configuration_in_a_used_folder_resumes_from_its_own_checkpoint(
    problem: Problem, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder holds another run's later checkpoints (steps 40 and 60): pruning by step number must not
    delete this run's step-5 checkpoint, and the resume must start there, not from step 0."""
    output = tmp_path / "reused"
    shutil.copytree(straight / "checkpoints", output / "checkpoints")
    monkeypatch.setenv(SIGTERM_AT_STEP_ENV, "5")
    assert train_in_process(problem, output, *RUN, "--lr", "0.002") == EXIT_PREEMPTED
    monkeypatch.delenv(SIGTERM_AT_STEP_ENV)
    assert [p.name for p in (output / "checkpoints").iterdir()] == ["ckpt-000000005.pt"]
    with caplog.at_level("INFO"):
        assert train_in_process(problem, output, *RUN, "--lr", "0.002") == 0
    assert "ckpt-000000005.pt at step 5" in caplog.text


def test_resuming_from_an_older_checkpoint_of_the_folder_starts_a_new_line(
    problem: Problem, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Back to step 40 while step 60 is there: after a preemption at 45, auto must resume at 45, not 60."""
    output = tmp_path / "branch"
    shutil.copytree(straight / "checkpoints", output / "checkpoints")
    older = output / "checkpoints" / "ckpt-000000040.pt"
    monkeypatch.setenv(SIGTERM_AT_STEP_ENV, "45")
    assert train_in_process(problem, output, *RUN, "--resume", str(older)) == EXIT_PREEMPTED
    monkeypatch.delenv(SIGTERM_AT_STEP_ENV)
    assert [p.name for p in (output / "checkpoints").iterdir()] == ["ckpt-000000045.pt"]
    assert (output / "checkpoints.superseded-1" / "ckpt-000000060.pt").is_file()
    with caplog.at_level("INFO"):
        assert train_in_process(problem, output, *RUN) == 0
    assert "ckpt-000000045.pt at step 45" in caplog.text
    assert same_weights(straight, output)


def test_a_checkpoint_for_another_contract_is_not_loaded_even_in_part(
    problem: Problem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One more category changes one embedding's shape; every other tensor would still fit. Resuming must
    start truly fresh (no half-loaded weights): the same weights as a run in an empty folder."""
    contract = json.loads(problem.contract.read_text())
    for column in contract["columns"]:
        if column["name"] == "region":
            column["categories"] = [*column["categories"], "antarctica"]
    widened = Problem(problem.data, tmp_path / "contract.json", problem.folder)
    widened.contract.write_text(json.dumps(contract))
    output = tmp_path / "shared"
    monkeypatch.setenv(SIGTERM_AT_STEP_ENV, "20")
    assert train_in_process(problem, output, *RUN) == EXIT_PREEMPTED
    monkeypatch.delenv(SIGTERM_AT_STEP_ENV)

    assert train_in_process(widened, output, *RUN) == 0
    assert train_in_process(widened, tmp_path / "fresh", *RUN) == 0
    assert same_weights(tmp_path / "fresh", output)


def test_an_explicit_checkpoint_that_does_not_fit_names_the_tensor(
    problem: Problem, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = straight / "checkpoints" / "ckpt-000000060.pt"
    code = train_in_process(problem, tmp_path / "wider", *RUN, "--width", "48", "--resume", str(checkpoint))
    assert code == EXIT_BAD_INPUT
    assert "does not fit this model (body.0.weight is (" in capsys.readouterr().err


def test_the_script_exits_75_on_an_external_sigterm_and_resumes_exactly(problem: Problem, tmp_path: Path) -> None:
    """The real script, a real signal from outside at whatever step it lands on."""
    long_run = ("--batch-size", "64", "--max-steps", "250", "--checkpoint-every-steps", "1000")
    straight = tmp_path / "straight"
    output = tmp_path / "preempted"
    args = [sys.executable, str(TRAIN), *problem.args(output, *long_run)]
    # One thread, as in this process (conftest), where the straight and resumed runs happen: CPU
    # kernels split work by thread, so bit-exactness holds for one machine and one thread count.
    env = script_env()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("progress "):  # the handler is installed and training is under way
            process.send_signal(signal.SIGTERM)
            break
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    out, err = process.communicate(timeout=5)
    assert process.returncode == EXIT_PREEMPTED, err
    step = json.loads((output / "preempted.json").read_text())["step"]
    assert 0 < step < 250
    assert f"preempted step={step}" in out

    assert train_in_process(problem, output, *long_run) == 0
    assert train_in_process(problem, straight, *long_run) == 0
    assert same_weights(straight, output)
