"""train.py does not ship a model that says less than the truth: divergence stops the run, the recorded
step is the one whose weights ship, an undefined validation metric is not a bad epoch, and the metrics are
those of the fp32 model that is served."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.training import synthetic
from tests.training.conftest import ROOT, TRAIN, Problem, script_env, train_in_process
from training_jobs import train
from training_jobs.errors import EXIT_BAD_INPUT, EXIT_PREEMPTED
from training_jobs.model import ModelConfig, TabularMLP

DIVERGING = ("--lr", "1e6", "--batch-size", "128", "--max-steps", "30")


def test_a_diverging_run_stops_with_a_hint_and_writes_no_model(
    problem: Problem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    # A marker left by an earlier, preempted attempt must not outlive this attempt's failure: the
    # orchestrator would read it as a preemption and resubmit the same diverging job.
    (output / "preempted.json").write_text('{"step": 3, "resume": "--resume auto"}')
    code = train_in_process(problem, output, *DIVERGING)
    assert code == EXIT_BAD_INPUT
    assert code != EXIT_PREEMPTED
    err = capsys.readouterr().err
    assert "error: training diverged at step " in err
    assert "(loss is nan/inf)" in err
    assert "hint: lower --lr" in err
    assert "--amp off" in err
    for name in ("model.safetensors", "metrics.json", "model_card.json", "preempted.json"):
        assert not (output / name).exists(), name
    assert not list((output / "checkpoints").glob("ckpt-*.pt"))  # no checkpoint of diverged weights either


@pytest.mark.slow
def test_under_torchrun_every_rank_stops_at_the_divergence(problem: Problem, tmp_path: Path) -> None:
    output = tmp_path / "double"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(TRAIN)]
    done = subprocess.run(
        [*launcher, *problem.args(output, *DIVERGING)],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    # Both ranks stopped on their own (neither hangs in a collective the other never joins) and said why.
    assert done.stderr.count("error: training diverged at step ") == 2, done.stderr
    assert "exitcode  : 75" not in done.stderr
    assert not (output / "preempted.json").exists()
    assert not (output / "model.safetensors").exists()


def test_fp16_with_its_gradient_scaler_is_not_mistaken_for_divergence(problem: Problem, tmp_path: Path) -> None:
    # The scaler starts at 2**16 and skips the first steps whose gradients overflow: normal, not divergence.
    assert train_in_process(problem, tmp_path / "out", "--amp", "fp16", "--max-steps", "12", "--batch-size", "256") == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.fixture
def falling_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every evaluation is worse than the one before: the first epoch is the best."""
    values = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    monkeypatch.setattr(train, "metric_value", lambda *args, **kwargs: next(values))


def read(output: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((output / name).read_text())
    return document


@pytest.mark.usefixtures("falling_metric")
def test_without_early_stopping_the_recorded_step_is_the_last_whose_weights_ship(
    problem: Problem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    assert (
        train_in_process(problem, output, "--epochs", "3", "--batch-size", "256", "--early-stopping-patience", "0") == 0
    )
    metrics, card = read(output, "metrics.json"), read(output, "model_card.json")
    # 22 steps an epoch: 80% of the 8,000 rows less the holdout, 256 a step
    assert [h["step"] for h in metrics["history"]] == [22, 44, 66]
    assert metrics["best_step"] == metrics["weights_step"] == metrics["steps"] == 66  # the last weights ship
    assert card["training"]["best_step"] == card["training"]["weights_step"] == 66
    assert card["training"]["stopped_early"] is False
    assert "done steps=66 best_step=66 " in capsys.readouterr().out


@pytest.mark.usefixtures("falling_metric")
def test_a_run_that_reaches_its_last_step_did_not_stop_early(
    problem: Problem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Patience 2 runs out at the last evaluation: the run still trained every step it was asked to.
    output = tmp_path / "out"
    assert (
        train_in_process(problem, output, "--epochs", "3", "--batch-size", "256", "--early-stopping-patience", "2") == 0
    )
    metrics, card = read(output, "metrics.json"), read(output, "model_card.json")
    assert metrics["steps"] == 66
    assert metrics["best_step"] == metrics["weights_step"] == 22  # the best epoch's weights ship
    assert card["training"]["stopped_early"] is False
    out = capsys.readouterr().out
    assert "done steps=66 best_step=22 " in out
    assert "stopped_early=False" in out


@pytest.mark.usefixtures("falling_metric")
def test_a_run_that_runs_out_of_patience_before_its_last_step_stopped_early(problem: Problem, tmp_path: Path) -> None:
    output = tmp_path / "out"
    assert (
        train_in_process(problem, output, "--epochs", "5", "--batch-size", "256", "--early-stopping-patience", "2") == 0
    )
    card = read(output, "model_card.json")
    assert card["training"]["steps"] == 66
    assert card["training"]["best_step"] == 22
    assert card["training"]["stopped_early"] is True


@pytest.fixture(scope="module")
def one_positive(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    """1,000 rows with a single positive: the stratified split keeps it in training, so the validation
    split holds one class and PR-AUC is undefined there."""
    folder = tmp_path_factory.mktemp("one-positive")
    frame = synthetic.frame(1000, 3, 0.05)
    frame["label"] = 0
    frame.loc[7, "label"] = 1
    data = folder / "data"
    data.mkdir()
    frame.to_csv(data / "a.csv", index=False)
    (folder / "contract.json").write_text(json.dumps(synthetic.contract()))
    return Problem(data, folder / "contract.json", folder)


def test_an_undefined_validation_metric_is_not_a_bad_epoch_and_is_named_once(
    one_positive: Problem, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "out"
    with caplog.at_level("WARNING"):
        code = train_in_process(
            one_positive, output, "--epochs", "4", "--batch-size", "64", "--early-stopping-patience", "1"
        )
    assert code == 0
    metrics, card = read(output, "metrics.json"), read(output, "model_card.json")
    assert [h["pr_auc"] for h in metrics["history"]] == [None] * 4  # every epoch ran: none counted as bad
    assert (
        metrics["steps"] == metrics["best_step"] == metrics["weights_step"] == 44
    )  # the last weights ship (holdout left out: 11 steps an epoch)
    assert card["training"]["stopped_early"] is False
    warning = "the validation split holds one class: pr_auc is undefined; early stopping is off for this run"
    assert caplog.text.count(warning) == 1


def test_an_unseen_category_gets_a_neutral_embedding(trained: Path) -> None:
    # Row 0 ("other") starts at zero ...
    state = TabularMLP(ModelConfig(n_numeric=3, cardinalities=[6, 4])).state_dict()
    for name in ("embeddings.0.weight", "embeddings.1.weight"):
        assert torch.count_nonzero(state[name][0]) == 0
        assert torch.count_nonzero(state[name][1:]) > 0
    # ... and stays there when training never sees an unknown value (region: declared, never missing),
    # so a category the model never saw adds nothing instead of a random vector.
    weights = load_file(str(trained / "model.safetensors"))
    region = weights["embeddings.0.weight"]
    assert torch.count_nonzero(region[0]) == 0
    assert torch.count_nonzero(region[1:]) > 0
