"""The validation split follows row identity, as the holdout does, and the threshold's metrics are out-of-fold.

Copies of one row (a batch exported twice, the same key in two files) must sit on one side of the split: a
model that memorises a training row would otherwise be "validated" on its copy, and early stopping, a sweep's
winner and ``--threshold auto`` would all feed on the leak. Before, the split was by row position: on the
no-signal batch exported twice below, validation read ROC-AUC 0.85 / PR-AUC 0.73 (base rate 0.10) where the
holdout read 0.44 / 0.11 (now validation reads 0.54 / 0.12). Neither the split nor the weights may depend on
the order a manifest lists its files in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from tests.training import synthetic
from tests.training.conftest import Problem, train_in_process
from training_jobs import train
from training_jobs.bundle import Predictor
from training_jobs.contract import load_contract, parse_contract
from training_jobs.data import (
    drop_unlabelled,
    encode_labels,
    infer_label_space,
    load_dataset,
    load_manifest,
    sha256_file,
    stratified_split,
)
from training_jobs.holdout import HoldoutRule
from training_jobs.metrics import classification_metrics, f1_threshold

# --------------------------------------------------------------------------- the split itself


def test_copies_of_an_identity_never_straddle_the_split_and_row_order_plays_no_part() -> None:
    rng = np.random.default_rng(0)
    identities = rng.integers(0, 2**63, size=600, dtype=np.uint64)
    y = (rng.random(600) < 0.05).astype(np.int64)
    rows = np.r_[np.arange(600), rng.integers(0, 600, size=400)]  # 400 copies of random rows
    ids, labels = identities[rows], y[rows]
    train_rows, val_rows = stratified_split(labels, ids, 0.2)
    assert not set(ids[train_rows]) & set(ids[val_rows])
    assert sorted(np.r_[train_rows, val_rows].tolist()) == list(range(len(rows)))
    assert abs(len(set(ids[val_rows])) - 0.2 * 600) <= 2, "a fifth of the identities, not of the rows"
    assert (labels[val_rows] == 1).any(), "the rare class reaches validation"
    assert (labels[train_rows] == 1).any()

    shuffled = rng.permutation(len(rows))
    _, val_shuffled = stratified_split(labels[shuffled], ids[shuffled], 0.2)
    assert set(ids[shuffled][val_shuffled]) == set(ids[val_rows]), "the same identities, whatever the order"


@pytest.mark.parametrize("val_fraction", [0.2, 0.6, 0.9])
def test_a_class_of_one_identity_trains_whatever_the_validation_fraction(val_fraction: float) -> None:
    """Every positive row under one key: with --val-fraction above 0.5 the class went to validation whole, and the
    model trained without a single positive row."""
    y = np.array([0] * 30 + [1] * 5, dtype=np.int64)
    identities = np.r_[np.arange(1, 31), np.full(5, 99)].astype(np.uint64)
    train_rows, val_rows = stratified_split(y, identities, val_fraction)
    assert (y[train_rows] == 1).sum() == 5, "every positive row trains"
    assert 0 < len(val_rows) < 30


def test_a_batch_whose_rows_share_one_key_is_a_data_error_naming_the_key(tmp_path: Path) -> None:
    """A key that does not tell rows apart leaves no row for validation: exit 2 naming data.key, not a model whose
    metrics.json reports precision 0.0 on no rows."""
    data_dir, contract_path = synthetic.write_problem(tmp_path, rows=600, seed=3, positive_rate=0.1)
    batch = data_dir / "batch-000.csv"
    frame = pd.read_csv(batch)
    frame["row_id"] = "same"
    frame.to_csv(batch, index=False)
    assert train_in_process(Problem(data_dir, contract_path, tmp_path), tmp_path / "out", "--max-steps", "5") == 2
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_an_identity_with_two_labels_goes_with_its_majority_label_and_keeps_every_class_in_validation() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=np.int64)
    ids = np.array([7, 7, 7, 8, 9, 1, 2, 3, 4, 5], dtype=np.uint64)  # identity 7: labels 0, 0, 1
    train_rows, val_rows = stratified_split(y, ids, 0.25)
    assert len({row in val_rows for row in (0, 1, 2)}) == 1, "identity 7's rows are on one side"
    assert set(y[val_rows]) == {0, 1}  # class 1 has two identities of its own (8 and 9): one reaches validation
    assert set(y[train_rows]) == {0, 1}
    one_each = stratified_split(np.array([0, 0, 1, 1]), np.array([1, 2, 3, 4], dtype=np.uint64), 0.1)
    assert [len(part) for part in one_each] == [2, 2], "each class with 2+ identities reaches both sides"


# --------------------------------------------------------------------------- end to end


def _no_signal(folder: Path, rows: int, seed: int, positive_rate: float) -> pd.DataFrame:
    """Labels drawn independently of the features: no model can beat chance on rows it did not train on."""
    frame = synthetic.frame(rows, seed, positive_rate=positive_rate, signal=0.0)
    (folder / "data").mkdir(parents=True)
    (folder / "contract.json").write_text(json.dumps(synthetic.contract()), encoding="utf-8")
    return frame


def test_a_batch_exported_twice_does_not_leak_into_validation(tmp_path: Path) -> None:
    """Every row twice (same key, same values): validation must read chance, as the holdout does."""
    frame = _no_signal(tmp_path, rows=1500, seed=11, positive_rate=0.10)
    frame.to_csv(tmp_path / "data" / "export-a.csv", index=False)
    frame.to_csv(tmp_path / "data" / "export-b.csv", index=False)
    problem = Problem(tmp_path / "data", tmp_path / "contract.json", tmp_path)
    run = ("--epochs", "25", "--batch-size", "128", "--lr", "0.01", "--width", "128", "--dropout", "0")
    assert train_in_process(problem, tmp_path / "out", *run, "--early-stopping-patience", "0") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # ~270 validation rows, ~27 positives: chance is ROC-AUC 0.5 (sd ~0.06) and PR-AUC ~0.10 (sd ~0.03).
    assert 0.3 < metrics["roc_auc"] < 0.7, metrics["roc_auc"]
    assert metrics["pr_auc"] < 0.25, metrics["pr_auc"]


def test_reversing_the_manifest_gives_the_same_split_and_weights(tmp_path: Path) -> None:
    data, contract = synthetic.write_problem(tmp_path, rows=3000, seed=4, files=3, positive_rate=0.05)
    names = sorted(p.name for p in data.glob("*.csv"))
    entries = [{"name": n, "sha256": sha256_file(data / n), "size": (data / n).stat().st_size} for n in names]
    problem = Problem(data, contract, tmp_path)
    outputs = []
    for order, listed in (("forward", entries), ("reversed", entries[::-1])):
        manifest = tmp_path / f"{order}.json"
        manifest.write_text(json.dumps({"model": "toy", "run_id": "r", "files": listed}), encoding="utf-8")
        out = tmp_path / order
        assert train_in_process(problem, out, "--manifest", str(manifest), "--max-steps", "12") == 0
        outputs.append(out)
    forward, backward = (json.loads((o / "metrics.json").read_text()) for o in outputs)
    assert (forward["n_val"], forward["pr_auc"], forward["roc_auc"]) == (
        backward["n_val"],
        backward["pr_auc"],
        backward["roc_auc"],
    )
    assert (outputs[0] / "sample_input.json").read_text() == (outputs[1] / "sample_input.json").read_text()
    weights = [load_file(str(o / "model.safetensors")) for o in outputs]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert bool((weights[0][name] == weights[1][name]).all()), name


# --------------------------------------------------------------------------- --threshold auto, cross-fitted


def test_cross_fitting_reports_chance_where_the_in_sample_threshold_flatters() -> None:
    """Scores without signal: the threshold tuned on the same rows finds a lucky cut (F1 above chance's); the
    out-of-fold predictions do not."""
    rng = np.random.default_rng(3)
    flattered, honest = [], []
    for _ in range(40):
        y = (rng.random(400) < 0.05).astype(np.int64)
        p = rng.random(400)
        fold = np.zeros(400, dtype=np.int64)
        fold[rng.permutation(400)[:200]] = 1
        tuned = f1_threshold(y, p)
        assert tuned is not None
        flattered.append(classification_metrics(y, p, tuned)["precision"])
        honest.append(train._cross_fit({"y": y, "p": p, "fold": fold}, ("0", "1"))["precision"])
    assert np.mean(flattered) > 0.08  # well above the 0.05 base rate
    assert abs(np.mean(honest) - 0.05) < 0.015


def test_an_auto_threshold_reports_out_of_fold_metrics_on_a_no_signal_batch(tmp_path: Path) -> None:
    """metrics.json's precision, recall and F1 are each validation fold's predictions at the threshold tuned on the
    other fold (recomputed here from the served model); the shipped threshold is the one tuned on every row.
    Before, they were the shipped threshold's on the rows it was tuned on."""
    frame = _no_signal(tmp_path, rows=6000, seed=21, positive_rate=0.05)
    frame.to_csv(tmp_path / "data" / "batch.csv", index=False)
    problem = Problem(tmp_path / "data", tmp_path / "contract.json", tmp_path)
    assert train_in_process(problem, tmp_path / "out", "--max-steps", "40", "--threshold", "auto") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())

    contract = load_contract(problem.contract)
    rows, identities, _ = train._without_holdout(
        drop_unlabelled(load_dataset(problem.data, contract).frame, contract), HoldoutRule.for_contract(contract, 0.1)
    )
    y = encode_labels(rows, contract, infer_label_space(rows, contract))
    _, val_rows = stratified_split(y, identities, 0.2)
    val = rows.iloc[val_rows].reset_index(drop=True)
    y, p = y[val_rows], Predictor.load(tmp_path / "out").predict_proba(val, len(val))
    fold = train._threshold_folds(y, identities[val_rows])
    predicted = np.zeros(len(y), dtype=np.int64)
    for k in (0, 1):
        tuned = f1_threshold(y[fold != k], p[fold != k])
        assert tuned == pytest.approx(metrics["threshold_cross_fit"]["thresholds"][k], abs=1e-6)
        predicted[fold == k] = p[fold == k] >= tuned
    assert metrics["threshold"] == pytest.approx(f1_threshold(y, p), abs=1e-6)
    assert metrics["threshold"] == json.loads((tmp_path / "out" / "preprocessing.json").read_text())["threshold"]
    out_of_fold = classification_metrics(y, p, predictions=predicted)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert metrics[name] == pytest.approx(out_of_fold[name], abs=1e-9), name
    # No signal: chance's precision is the base rate, and its best F1 that of flagging everything (0.095).
    assert metrics["precision"] < 0.075, metrics["precision"]
    assert metrics["f1"] < 0.115, metrics["f1"]


@pytest.mark.parametrize("listed", [["export-a.csv", "export-b.csv"], ["export-b.csv", "export-a.csv"]])
def test_files_are_read_in_name_order_whatever_the_manifest_lists(tmp_path: Path, listed: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    synthetic.frame(3, seed=1).to_csv(data / "export-a.csv", index=False)
    synthetic.frame(3, seed=2).to_csv(data / "export-b.csv", index=False)
    files = [{"name": n, "sha256": sha256_file(data / n), "size": (data / n).stat().st_size} for n in listed]
    (tmp_path / "m.json").write_text(json.dumps({"files": files}), encoding="utf-8")
    dataset = load_dataset(data, parse_contract(synthetic.contract()), load_manifest(tmp_path / "m.json"))
    assert dataset.frame["row_id"].tolist() == ["r1-0", "r1-1", "r1-2", "r2-0", "r2-1", "r2-2"]
