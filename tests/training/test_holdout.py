"""The holdout: a stable, key-based split that train.py never trains or validates on and evaluate.py alone scores."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.training import synthetic
from tests.training.conftest import ROOT, Problem, script_env, train_in_process
from training_jobs import evaluate, holdout, train
from training_jobs.contract import Contract, parse_contract
from training_jobs.data import load_dataset
from training_jobs.holdout import HoldoutRule


def _contract(key: str | None = "row_id") -> Contract:
    return parse_contract({**synthetic.contract(), "key": key})


def _keys_held_out(frame: pd.DataFrame, fraction: float, key: str | None = "row_id") -> set[str]:
    mask = HoldoutRule.for_contract(_contract(key), fraction).mask(frame)
    return set(frame.loc[mask, "row_id"])


# --------------------------------------------------------------------------- the rule itself

#: blake2b-64 of the key, pinned: a change of hash, encoding or threshold moves rows between training and the
#: holdout (the champion would then be scored on rows it trained on), so it must break this test.
FIXED_KEYS = [f"k{i}" for i in range(40)]
FIXED_HOLDOUT_AT_QUARTER = {"k7", "k8", "k9", "k10", "k13", "k20", "k29", "k30", "k37"}


def test_the_key_rule_picks_a_fixed_set_of_rows() -> None:
    frame = pd.DataFrame({"row_id": FIXED_KEYS, "x0": 0.0, "label": 0})
    assert _keys_held_out(frame, 0.25) == FIXED_HOLDOUT_AT_QUARTER
    assert int(holdout.stable_hashes(["k0"])[0]) == int.from_bytes(
        hashlib.blake2b(b"k0", digest_size=8).digest(), "big"
    )


def test_without_a_key_the_row_values_pick_a_fixed_set_of_rows() -> None:
    frame = synthetic.frame(30, seed=5)
    mask = HoldoutRule.for_contract(_contract(None), 0.3).mask(frame)
    assert np.flatnonzero(mask).tolist() == [0, 2, 3, 17, 18, 28, 29]


def test_the_holdout_is_nested_in_the_fraction_and_about_that_share() -> None:
    frame = synthetic.frame(20000, seed=3)
    small, large = _keys_held_out(frame, 0.1), _keys_held_out(frame, 0.2)
    assert small < large
    assert 0.09 < len(small) / len(frame) < 0.11
    assert 0.19 < len(large) / len(frame) < 0.21


def test_a_value_reads_the_same_from_csv_and_parquet_whatever_its_dtype(tmp_path: Path) -> None:
    # The same rows, but int keys, a float column with a gap (so whole numbers come back as floats) and bools.
    frame = synthetic.frame(500, seed=8).assign(row_id=range(500))
    frame.loc[3, "count"] = None  # int column with a gap: float64 after reading
    contract = parse_contract({**synthetic.contract(), "key": None})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    rule = HoldoutRule.for_contract(contract, 0.3)
    from_csv = rule.mask(load_dataset(tmp_path / "a.csv", contract).frame)
    from_parquet = rule.mask(load_dataset(tmp_path / "a.parquet", contract).frame)
    assert from_csv.tolist() == from_parquet.tolist()
    assert holdout.canonical_texts(pd.Series([42, 7])) == holdout.canonical_texts(pd.Series([42.0, 7.0]))
    assert holdout.canonical_texts(pd.Series([True, False])) == ["1", "0"]
    assert holdout.canonical_texts(pd.Series([0.1, None, "x"], dtype=object)) == ["0.1", None, "x"]


def test_a_missing_key_falls_back_to_the_row_values() -> None:
    frame = synthetic.frame(2000, seed=4).astype({"row_id": object})
    frame.loc[::2, "row_id"] = None
    keyed = HoldoutRule.for_contract(_contract(), 0.2).mask(frame)
    by_values = HoldoutRule.for_contract(_contract(None), 0.2).mask(frame)
    assert keyed[::2].tolist() == by_values[::2].tolist()


def test_the_split_is_the_same_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    frame = synthetic.frame(3000, seed=6)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "contract.json").write_text(json.dumps(synthetic.contract()), encoding="utf-8")
    here = HoldoutRule.for_contract(_contract(), 0.1).mask(load_dataset(tmp_path / "rows.csv", _contract()).frame)
    code = (
        "import sys, json; from training_jobs.contract import load_contract; from training_jobs.data import "
        "load_dataset; from training_jobs.holdout import HoldoutRule; c = load_contract(sys.argv[1]); "
        "print(json.dumps(HoldoutRule.for_contract(c, 0.1).mask(load_dataset(sys.argv[2], c).frame).tolist()))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "contract.json"), str(tmp_path / "rows.csv")],
        cwd=ROOT,
        env=script_env(PYTHONHASHSEED="12345"),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(there.stdout) == here.tolist()


def test_the_jobs_and_the_spec_agree_on_the_fraction_and_the_metrics() -> None:
    from shared import spec

    assert spec.HOLDOUT_FRACTION_DEFAULT == holdout.DEFAULT_FRACTION
    assert (spec.HOLDOUT_FRACTION_MIN, spec.HOLDOUT_FRACTION_MAX) == (holdout.MIN_FRACTION, holdout.MAX_FRACTION)
    assert spec.PromotionSpec().holdout_fraction == holdout.DEFAULT_FRACTION
    assert set(spec.EVALUATION_METRICS) == set(evaluate.METRICS)
    assert (
        train.build_parser().parse_args(["--data", "d", "--contract", "c", "--output-dir", "o"]).holdout_fraction == 0.1
    )
    parsed = evaluate.build_parser().parse_args(
        ["--challenger", "m", "--data", "d", "--contract", "c", "--output", "o"]
    )
    assert parsed.holdout_fraction == 0.1


# --------------------------------------------------------------------------- train.py and evaluate.py


def _capture(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, seen: list[pd.DataFrame]) -> None:
    original = getattr(module, name)

    def spy(frame: pd.DataFrame, *args: Any) -> Any:
        seen.append(frame.copy())
        return original(frame, *args)

    monkeypatch.setattr(module, name, spy)


def test_train_never_sees_a_holdout_row_and_evaluate_scores_only_them(
    problem: Problem, trained: Path, weak: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    everything = load_dataset(problem.data, _contract()).frame
    expected = _keys_held_out(everything, 0.1)
    assert 700 < len(expected) < 900

    # train.py: the frame its split, preprocessing and labels come from (train and validation rows alike)
    seen_by_train: list[pd.DataFrame] = []
    _capture(monkeypatch, train, "infer_label_space", seen_by_train)
    out = tmp_path / "model"
    assert train_in_process(problem, out, "--max-steps", "2", "--batch-size", "128") == 0
    (trained_on,) = seen_by_train
    used = set(trained_on["row_id"])
    assert used.isdisjoint(expected)
    assert used | expected == set(everything["row_id"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == len(everything) - len(expected)
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["holdout"]["fraction"] == 0.1
    assert card["data"]["holdout"]["rows"] == len(expected)
    assert card["data"]["holdout"]["identity"] == "key:row_id"

    # evaluate.py on the same data: exactly the rows train.py left out
    seen_by_evaluate: list[pd.DataFrame] = []
    _capture(monkeypatch, evaluate, "encode_labels", seen_by_evaluate)
    argv = ["--challenger", str(trained), "--champion", str(weak), "--data", str(problem.data)]
    argv += ["--contract", str(problem.contract), "--output", str(tmp_path / "c.json"), "--bootstrap", "100"]
    assert evaluate.main(argv) == 0
    (scored,) = seen_by_evaluate
    assert set(scored["row_id"]) == expected
    comparison = json.loads((tmp_path / "c.json").read_text())
    assert comparison["n_holdout"] == len(expected)
    assert comparison["n_positive"] == int(scored["label"].sum())
    assert comparison["holdout"] == {"fraction": 0.1, "rule": "blake2b-64(the key row_id (the row's values "
                                     "where the key is missing)) / 2**64 < 0.1"}  # fmt: skip


def test_a_champion_that_held_out_less_is_scored_only_on_rows_it_never_saw(
    problem: Problem, trained: Path, weak: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Both fixtures held out 0.1; asked for 0.2, the rows between 0.1 and 0.2 were training rows for both.
    seen: list[pd.DataFrame] = []
    _capture(monkeypatch, evaluate, "encode_labels", seen)
    argv = ["--challenger", str(trained), "--champion", str(weak), "--data", str(problem.data), "--bootstrap", "100"]
    argv += ["--contract", str(problem.contract), "--output", str(tmp_path / "c.json"), "--holdout-fraction", "0.2"]
    assert evaluate.main(argv) == 0
    everything = load_dataset(problem.data, _contract()).frame
    assert set(seen[0]["row_id"]) == _keys_held_out(everything, 0.1)
    assert json.loads((tmp_path / "c.json").read_text())["holdout"]["fraction"] == 0.1


def test_an_empty_or_one_class_holdout_is_refused_saying_what_to_do(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps(synthetic.contract()), encoding="utf-8")
    frame = synthetic.frame(400, seed=11, positive_rate=0.05)
    rule = HoldoutRule.for_contract(_contract(), 0.1)
    mask = rule.mask(frame)
    frame.loc[~mask].to_csv(tmp_path / "none-held.csv", index=False)
    one_class = frame.loc[mask].assign(label=0)
    pd.concat([one_class, frame.loc[~mask]]).to_csv(tmp_path / "one-class.csv", index=False)
    for data, message in (("none-held.csv", "none of the"), ("one-class.csv", "hold one class only")):
        argv = ["--challenger", str(trained), "--data", str(tmp_path / data), "--contract", str(contract)]
        assert evaluate.main([*argv, "--output", str(tmp_path / "c.json")]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert "promotion.holdout_fraction" in err
