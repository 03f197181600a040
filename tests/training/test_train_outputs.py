"""train.py writes a complete, honest model folder, and refuses bad input with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from tests.training.conftest import TRAIN, Problem, run_script, train_in_process, write_manifest
from training_jobs.contract import load_contract
from training_jobs.data import encode_labels, infer_label_space, stratified_split
from training_jobs.holdout import HoldoutRule, in_holdout

MODEL_FILES = (
    "model.safetensors",
    "preprocessing.json",
    "model_config.json",
    "metrics.json",
    "model_card.json",
    "sample_input.json",
)


def _training_rows(problem: Problem) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows train.py splits into training and validation (every row but the holdout's) and their identities."""
    frame = pd.concat([pd.read_csv(p) for p in sorted(problem.data.glob("*.csv"))], ignore_index=True)
    hashes = HoldoutRule.for_contract(load_contract(problem.contract), 0.1).hashes(frame)
    held = in_holdout(hashes, 0.1)
    return frame.loc[~held].reset_index(drop=True), hashes[~held]


def test_the_model_folder_holds_every_file_with_validation_metrics(trained: Path) -> None:
    for name in MODEL_FILES:
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "n_val", "threshold"):
        assert key in metrics, key
    assert set(metrics["per_class"]) == {"0", "1"}
    assert {"precision", "recall"} <= set(metrics["per_class"]["1"])
    assert metrics["n_val"] == 1432  # 20% of the 8,000 rows less the 838 of the holdout
    assert metrics["threshold"] == 0.5
    # The generated rule is learnable: a trained model ranks far better than chance.
    assert metrics["roc_auc"] > 0.85
    assert metrics["pr_auc"] > 0.25  # 5x the base rate; ~70 validation positives, so it varies with the split
    weights = load_file(str(trained / "model.safetensors"))  # safetensors: no pickle involved
    assert weights
    assert all(t.dtype.is_floating_point for t in weights.values())
    checkpoints = sorted((trained / "checkpoints").glob("ckpt-*.pt"))
    assert checkpoints, "the final checkpoint is kept so --resume auto after completion is a no-op"


def test_the_model_card_records_data_code_packages_and_seed(trained: Path, problem: Problem) -> None:
    card = json.loads((trained / "model_card.json").read_text())
    manifest = json.loads((trained.parent / "trained-manifest.json").read_text())
    assert card["model"] == "toy"
    assert card["run_id"] == "run-42"
    assert len(card["data"]["manifest_hash"]) == 64
    assert sorted(f["sha256"] for f in card["data"]["files"]) == sorted(f["sha256"] for f in manifest["files"])
    assert card["code_version"].startswith(("git:", "sha256:"))
    assert {"python", "torch", "numpy", "safetensors"} <= set(card["packages"])
    assert card["seed"] == 0
    assert card["params"]["lr"] == 0.003
    assert card["params"]["epochs"] == 4
    assert card["metrics"]["pr_auc"] == json.loads((trained / "metrics.json").read_text())["pr_auc"]


def test_normalisation_is_fitted_on_the_training_split_only(trained: Path, problem: Problem) -> None:
    contract = load_contract(problem.contract)
    frame, identities = _training_rows(problem)
    y = encode_labels(frame, contract, infer_label_space(frame, contract))
    train_rows, _val_rows = stratified_split(y, identities, 0.2)
    stats = {f["name"]: f for f in json.loads((trained / "preprocessing.json").read_text())["numeric"]}
    x0 = frame["x0"].to_numpy()
    assert stats["x0"]["mean"] == pytest.approx(x0[train_rows].mean(), abs=1e-9)
    assert stats["x0"]["std"] == pytest.approx(x0[train_rows].std(), abs=1e-9)
    assert abs(stats["x0"]["mean"] - x0.mean()) > 1e-6, "the mean over all rows would mean validation leaked in"
    gap = frame["gap"].to_numpy()[train_rows]
    assert stats["gap"]["fill"] == pytest.approx(np.nanmedian(gap))
    assert stats["gap"]["missing_indicator"] is True
    preprocessing = json.loads((trained / "preprocessing.json").read_text())
    assert "gap__missing" in preprocessing["feature_order"]
    assert [c["name"] for c in preprocessing["categorical"]] == ["region", "channel"]


def test_sample_input_is_a_scoring_payload_of_feature_columns(trained: Path) -> None:
    sample = json.loads((trained / "sample_input.json").read_text())
    assert 1 <= len(sample["data"]) <= 5
    row = sample["data"][0]
    assert set(row) == {"x0", "x1", "x2", "x3", "x4", "gap", "count", "flag", "region", "channel"}
    assert isinstance(row["flag"], bool)
    assert isinstance(row["count"], int)


def test_progress_lines_carry_step_loss_val_metric_and_throughput(
    problem: Problem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_in_process(problem, tmp_path / "out", "--max-steps", "20", "--batch-size", "256") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("progress ")]
    assert lines
    fields = dict(token.split("=", 1) for token in lines[-1].split()[1:])
    assert fields["step"] == "20/20"
    assert float(fields["loss"]) > 0
    assert 0 <= float(fields["val_pr_auc"]) <= 1
    assert float(fields["samples_per_s"]) > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
        (["--epoch", "3"], "unrecognized arguments: --epoch"),  # no abbreviations: a typo must not pass
        (["--amp", "fp8"], "invalid choice: 'fp8'"),
        (["--batch-size", "0"], "must be >= 1"),
        (["--lr", "nan"], "'nan' is not a finite number"),  # nan passes every bound check
        (["--lr", "inf"], "'inf' is not a finite number"),
        (["--checkpoint-every-minutes", "inf"], "'inf' is not a finite number"),
        (["--weight-decay", "NaN"], "'NaN' is not a finite number"),
    ],
)
def test_unknown_or_bad_options_exit_2(
    problem: Problem, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from training_jobs import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(problem.args(tmp_path / "out", *extra))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_script_exits_2_with_a_hint_when_the_manifest_does_not_match(problem: Problem, tmp_path: Path) -> None:
    manifest = write_manifest(problem, tmp_path / "manifest.json")
    document = json.loads(manifest.read_text())
    document["files"][1]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(document))
    done = run_script(TRAIN, problem.args(tmp_path / "out", "--manifest", str(manifest)))
    assert done.returncode == 2
    assert "batch-001.csv: sha256" in done.stderr
    assert "hint: the file changed after the manifest was written" in done.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_manifest_file_and_missing_label_column_exit_2(problem: Problem, tmp_path: Path) -> None:
    manifest = write_manifest(problem, tmp_path / "manifest.json")
    document = json.loads(manifest.read_text())
    document["files"].append({"name": "batch-009.csv", "sha256": "a" * 64, "size": 1})
    manifest.write_text(json.dumps(document))
    assert train_in_process(problem, tmp_path / "a", "--manifest", str(manifest)) == 2

    no_label = tmp_path / "nolabel"
    no_label.mkdir()
    pd.read_csv(next(problem.data.glob("*.csv"))).drop(columns=["label"]).to_csv(no_label / "b.csv", index=False)
    bad = Problem(no_label, problem.contract, tmp_path)
    assert train_in_process(bad, tmp_path / "b") == 2


def test_a_batch_that_does_not_split_into_micro_batches_exits_2(problem: Problem, tmp_path: Path) -> None:
    assert train_in_process(problem, tmp_path / "out", "--batch-size", "100", "--grad-accum", "3") == 2


def test_parquet_data_trains_like_csv(tmp_path: Path) -> None:
    from tests.training import synthetic

    data, contract = synthetic.write_problem(tmp_path, rows=3000, seed=5, files=2, positive_rate=0.05, fmt="parquet")
    code = train_in_process(Problem(data, contract, tmp_path), tmp_path / "out", "--max-steps", "10")
    assert code == 0
    assert (
        json.loads((tmp_path / "out" / "metrics.json").read_text())["n_val"] == 541
    )  # 20% of the 2,702 rows not held out


def test_amp_bf16_runs_on_cpu_and_reports_the_metrics_of_the_fp32_model_served(
    problem: Problem, tmp_path: Path
) -> None:
    from training_jobs.bundle import Predictor
    from training_jobs.metrics import classification_metrics

    code = train_in_process(problem, tmp_path / "out", "--amp", "bf16", "--epochs", "2", "--batch-size", "128")
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["roc_auc"] > 0.8
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["params"]["amp"] == "bf16"
    # Validation runs in fp32, as score.py and evaluate.py do: metrics and early stopping judge what ships.
    contract = load_contract(problem.contract)
    frame, identities = _training_rows(problem)
    y = encode_labels(frame, contract, infer_label_space(frame, contract))
    _, val_rows = stratified_split(y, identities, 0.2)
    val = frame.iloc[val_rows].reset_index(drop=True)
    served = classification_metrics(y[val_rows], Predictor.load(tmp_path / "out").predict_proba(val, len(val)), 0.5)
    for name in ("roc_auc", "pr_auc", "ece"):
        assert metrics[name] == pytest.approx(served[name], abs=1e-6), name


def test_a_corrupt_or_foreign_checkpoint_is_skipped_with_a_warning(
    problem: Problem, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "out"
    (output / "checkpoints").mkdir(parents=True)
    (output / "checkpoints" / "ckpt-000000900.pt").write_bytes(b"not a checkpoint at all")
    with caplog.at_level("WARNING"):
        assert train_in_process(problem, output, "--max-steps", "10") == 0
    assert "skipping unreadable checkpoint" in caplog.text
    assert (output / "model.safetensors").is_file()

    # A checkpoint from a different configuration (here: another learning rate) is not resumed either.
    other = tmp_path / "other"
    shutil.copytree(output / "checkpoints", other / "checkpoints")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert train_in_process(problem, other, "--max-steps", "10", "--lr", "0.01") == 0
    assert "written by a different configuration (lr: 0.001 -> 0.01)" in caplog.text


def test_resume_from_an_explicit_missing_path_is_a_usage_error(problem: Problem, tmp_path: Path) -> None:
    assert train_in_process(problem, tmp_path / "out", "--resume", str(tmp_path / "nope.pt")) == 2


def test_a_three_class_label_trains_a_multiclass_model_that_scores(tmp_path: Path) -> None:
    from tests.training import synthetic
    from training_jobs.bundle import Predictor

    data, contract_path = synthetic.write_problem(tmp_path, rows=3000, seed=7, positive_rate=0.05)
    csv = next(data.glob("*.csv"))
    frame = pd.read_csv(csv)
    frame["label"] = np.select([frame["x0"] > 0.5, frame["x1"] > 0.5], ["high", "mid"], "low")
    frame.to_csv(csv, index=False)
    contract = json.loads(contract_path.read_text())
    contract["columns"][-1] = {**contract["columns"][-1], "type": "category", "min": None, "max": None}
    contract["positive_class"] = "high"
    contract_path.write_text(json.dumps(contract))
    assert (
        train_in_process(
            Problem(data, contract_path, tmp_path),
            tmp_path / "out",
            "--epochs",
            "4",
            "--batch-size",
            "64",
            "--lr",
            "0.005",
        )
        == 0
    )
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass"
    assert set(metrics["per_class"]) == {"high", "low", "mid"}
    assert metrics["accuracy"] > 0.9  # the classes are simple thresholds of two features
    predictor = Predictor.load(tmp_path / "out")
    probabilities = predictor.predict_proba(frame, len(frame))
    assert probabilities.shape == (3000, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_binary_holdout_label_outside_the_two_classes_is_an_error_not_a_negative(problem: Problem) -> None:
    from training_jobs.errors import DataError

    contract = load_contract(problem.contract)
    frame = pd.DataFrame({"label": [1, 0, 0, 1]})
    space = infer_label_space(frame, contract)
    assert encode_labels(frame, contract, space).tolist() == [1, 0, 0, 1]
    dirty = pd.DataFrame({"label": [1, 0, 2, "yes"]})
    with pytest.raises(DataError, match=r"classes the model never saw: \['2', 'yes'\]"):
        encode_labels(dirty, contract, space)


def test_an_infinite_training_value_counts_as_missing_not_as_the_mean(problem: Problem) -> None:
    from training_jobs.preprocessing import Preprocessor

    contract = load_contract(problem.contract)
    frame = next(pd.read_csv(p) for p in sorted(problem.data.glob("*.csv")))
    frame.loc[0, "x0"] = np.inf
    space = infer_label_space(frame, contract)
    preprocessor = Preprocessor.fit(frame, contract, space)
    x0 = next(f for f in preprocessor.numeric if f.name == "x0")
    assert np.isfinite(x0.mean)
    assert np.isfinite(x0.std)
    assert x0.missing_indicator
    numeric, _ = preprocessor.transform(frame, len(frame))
    assert np.isfinite(numeric).all()
    assert numeric[0, preprocessor.feature_names.index("x0__missing")] == 1.0


def test_ranks_draw_different_dropout_masks_and_a_step_always_draws_the_same() -> None:
    import torch

    from training_jobs.train import _seed_step

    draws = {}
    for rank, step in ((0, 7), (1, 7), (0, 8), (0, 7)):
        _seed_step(0, rank, step, torch.device("cpu"))
        draws.setdefault((rank, step), []).append(torch.rand(4))
    assert torch.equal(*draws[(0, 7)])
    assert not torch.equal(draws[(0, 7)][0], draws[(1, 7)][0])
    assert not torch.equal(draws[(0, 7)][0], draws[(0, 8)][0])
