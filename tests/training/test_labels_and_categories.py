"""The spec's task decides binary or multiclass; category values are spelt as the validator spells them.

A category column pandas wrote to Parquet as float64 (0.0, 1.0, 2.0) passed validation as "0", "1", "2" (Arrow's
cast): training and scoring read it the same way. contract.json carries the task: a binary label with a third value
is a data error, and a multiclass model's classes are the label's declared categories, so a batch without a rare
class still trains a model the champion can be compared with.
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.jobs import job_contract
from shared.policy import parse_comparison
from shared.spec import load_spec
from tests.training.conftest import ROOT, Problem, train_in_process
from tests.training.test_score import load_score_module
from training_jobs import evaluate
from training_jobs.bundle import Predictor
from training_jobs.contract import Column, load_contract, parse_contract
from training_jobs.data import encode_labels, infer_label_space, load_dataset, stratified_split
from training_jobs.errors import ContractError, DataError
from training_jobs.payload import PayloadError, validate_records
from training_jobs.preprocessing import Preprocessor, as_text

REGION = "région_code"  # NFC, as the spec spells it
TIERS = ["1", "2", "3", "4", "5"]
TOPICS = ["billing", "fraud_review", "shipping", "technical"]  # declared; fraud_review is rare


def _contract(task: str | None, label_categories: list[str] | None = TOPICS) -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "ticket_id", "type": "string", "nullable": False, "feature": False},
        {"name": "x0", "type": "float", "nullable": False},
        {"name": "x1", "type": "float", "nullable": False},
        {"name": REGION, "type": "category", "nullable": False, "categories": TIERS},
        {"name": "topic", "type": "category", "nullable": False, "categories": label_categories},
    ]
    document: dict[str, Any] = {
        "columns": [
            {"nullable": True, "min": None, "max": None, "categories": None, "feature": True, **c} for c in columns
        ],
        "label": "topic",
        "positive_class": 1,
        "key": "ticket_id",
    }
    if task is not None:
        document["task"] = task
    return document


def _tickets(rows: int, seed: int, rare: bool) -> pd.DataFrame:
    """Topic by thresholds of x0 and the tier; fraud_review (tier 5 and a high x1) only when ``rare``."""
    rng = np.random.default_rng(seed)
    x0, x1 = rng.normal(size=rows), rng.normal(size=rows)
    tier = rng.integers(1, 6, size=rows).astype(np.float64)  # a nullable int column, as pandas writes it
    topic = np.select([x0 > 0.5, tier <= 2.0], ["technical", "billing"], "shipping").astype(object)
    if rare:
        topic[(tier == 5.0) & (x1 > 1.5)] = "fraud_review"
    frame = pd.DataFrame({"ticket_id": [f"t{seed}-{i}" for i in range(rows)], "x0": x0, "x1": x1, REGION: tier})
    frame["topic"] = topic
    return frame


def _problem(folder: Path, frame: pd.DataFrame, task: str | None = "multiclass") -> Problem:
    (folder / "data").mkdir(parents=True)
    frame.to_parquet(folder / "data" / "tickets.parquet", index=False)
    (folder / "contract.json").write_text(json.dumps(_contract(task)), encoding="utf-8")
    return Problem(folder / "data", folder / "contract.json", folder)


def _train(problem: Problem, output: Path) -> Path:
    assert train_in_process(problem, output, "--epochs", "3", "--batch-size", "128", "--lr", "0.01") == 0
    return output


def _no_nan(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def tickets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A champion trained on a batch holding every topic, a challenger on one without fraud_review."""
    root = tmp_path_factory.mktemp("tickets")
    full = _problem(root / "full", _tickets(3000, seed=3, rare=True))
    thin = _problem(root / "thin", _tickets(3000, seed=4, rare=False))
    return {
        "full": full,
        "thin": thin,
        "champion": _train(full, root / "champion"),
        "challenger": _train(thin, root / "challenger"),
    }


# --------------------------------------------------------------------------- category values as text


def test_floats_are_spelt_as_arrows_cast_spells_them_and_ints_and_strings_stay() -> None:
    assert as_text([2.0, 2.5, 0.0, 5, "5", "2.0", None, math.nan, 1e20]) == [
        "2",
        "2.5",
        "0",
        "5",
        "5",
        "2.0",
        None,
        None,
        "1e+20",
    ]
    assert as_text(pd.Series([0.0, 1.0, None])) == ["0", "1", None]
    assert as_text(pd.Series([1, None], dtype="Int64")) == ["1", None]


def test_a_float64_category_column_in_parquet_maps_to_its_declared_categories(tmp_path: Path) -> None:
    problem = _problem(tmp_path, _tickets(200, seed=1, rare=True))
    contract = load_contract(problem.contract)
    frame = load_dataset(problem.data, contract).frame
    assert set(frame[REGION].dropna()) <= set(TIERS)
    preprocessor = Preprocessor.fit(frame, contract, infer_label_space(frame, contract))
    _, codes = preprocessor.transform(frame, len(frame))
    expected = frame[REGION].astype(int).to_numpy()  # "1" is index 1, ... (0 is "other")
    np.testing.assert_array_equal(codes[:, 0], expected)


def test_a_csv_int_category_column_still_maps_to_its_declared_categories(tmp_path: Path) -> None:
    problem = _problem(tmp_path, _tickets(200, seed=1, rare=True))
    frame = pd.read_parquet(problem.data / "tickets.parquet")
    frame[REGION] = frame[REGION].astype(int)
    (problem.data / "tickets.parquet").unlink()
    frame.to_csv(problem.data / "tickets.csv", index=False)
    contract = load_contract(problem.contract)
    read = load_dataset(problem.data, contract).frame
    _, codes = Preprocessor.fit(read, contract, infer_label_space(read, contract)).transform(read, len(read))
    np.testing.assert_array_equal(codes[:, 0], frame[REGION].to_numpy())


def test_a_category_payload_takes_whole_numbers_and_keys_match_in_nfc() -> None:
    columns = [Column(REGION, "category", nullable=False, categories=tuple(TIERS))]
    decomposed = unicodedata.normalize("NFD", REGION)
    assert decomposed != REGION
    got = validate_records([{decomposed: 5}, {REGION: 2.0}, {REGION: "3"}], columns, known={REGION, "topic"})
    assert got == {REGION: [5, 2.0, "3"]}
    assert as_text(got[REGION]) == ["5", "2", "3"]
    with pytest.raises(PayloadError, match=r"column 'région_code': expected a string or a whole number, got 2\.5"):
        validate_records([{REGION: 2.5}], columns)
    with pytest.raises(PayloadError, match="expected a string, got true"):
        validate_records([{REGION: True}], columns)
    with pytest.raises(PayloadError, match="sent twice, in two Unicode spellings"):
        validate_records([{REGION: "1", decomposed: "1"}], columns, known={REGION})
    string = [Column("note", "string")]
    with pytest.raises(PayloadError, match="expected a string, got 5"):
        validate_records([{"note": 5}], string)


def test_score_maps_a_number_as_training_did_and_answers_the_class_label(
    tickets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tickets["champion"]))
    score = load_score_module()
    score.init()
    decomposed = unicodedata.normalize("NFD", REGION)
    rows = [{"x0": 0.1, "x1": 2.0, REGION: tier} for tier in ("5", 5, 5.0)] + [{"x0": 0.1, "x1": 2.0, decomposed: 5}]
    answer = score.run(json.dumps({"data": rows}))["predictions"]
    assert len({json.dumps(p, sort_keys=True) for p in answer}) == 1, answer
    classes = Predictor.load(tickets["champion"]).preprocessor.labels.classes
    assert classes == tuple(TOPICS)
    for prediction in answer:
        assert set(prediction) == {"class", "probability", "label"}
        assert prediction["label"] == TOPICS[prediction["class"]]
    other = score.run(json.dumps({"data": [{"x0": 0.1, "x1": 2.0, REGION: "9"}]}))["predictions"][0]
    assert other["probability"] != answer[0]["probability"], "5 must not map to 'other'"


# --------------------------------------------------------------------------- the task in contract.json


def test_job_contract_carries_the_spec_task_beside_every_data_key() -> None:
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    document = json.loads(job_contract(spec))
    assert set(document) == set(spec.data.model_dump(mode="json")) | {"task"}
    assert document["task"] == spec.task == "binary"
    assert parse_contract(document).task == "binary"
    multiclass = spec.model_copy(update={"task": "multiclass"})
    assert parse_contract(json.loads(job_contract(multiclass))).task == "multiclass"


def test_a_contract_task_must_be_binary_or_multiclass() -> None:
    with pytest.raises(ContractError, match="task='regression' is unknown"):
        parse_contract(_contract("regression"))


def test_a_binary_label_holding_a_third_value_is_a_data_error_naming_it() -> None:
    contract = parse_contract({**_contract("binary", None), "positive_class": "defaulted"})
    frame = pd.DataFrame({"topic": ["paid"] * 5 + ["defaulted"] * 2 + ["written_off"]})
    with pytest.raises(DataError, match=r"holds 3 values but the task is binary.*\['written_off'\]") as raised:
        infer_label_space(frame, contract)
    assert "set task: multiclass" in raised.value.hint
    assert infer_label_space(frame.iloc[:7], contract).classes == ("paid", "defaulted")


def test_a_text_label_with_spaces_around_it_is_a_value_of_its_own_to_validation_and_training(tmp_path: Path) -> None:
    """Training stripped " yes" into "yes" and trained 50 extra positives on a batch validation had warned about
    as a value outside the declared categories; now both read " yes" as a class of its own, and refuse it (validation
    with an error, so the batch is quarantined before a training job is spent on it)."""
    from shared.spec import DataContract
    from shared.validation import validate

    document = {
        "label": "answer",
        "positive_class": "yes",
        "min_rows": 1,
        "columns": [
            {"name": "x", "type": "float", "nullable": True},
            {"name": "answer", "type": "category", "nullable": False, "categories": ["no", "yes"]},
        ],
    }
    path = tmp_path / "b.csv"
    path.write_text("x,answer\n" + "".join(f"{i},{v}\n" for i, v in enumerate(["no", "yes", "no", " yes"] * 5)))
    report = validate(path, DataContract.model_validate(document))
    [finding] = [f for f in report.findings if f.column == "answer"]
    assert (finding.check, finding.severity, finding.count, report.ok) == ("label_class", "error", 5, False)
    assert "' yes'×5" in finding.message
    assert [(e.row, e.value) for e in finding.examples] == [(3, " yes")]
    contract = parse_contract({**document, "task": "binary"})
    with pytest.raises(DataError, match=r"outside its declared categories: \[' yes'\]"):
        infer_label_space(load_dataset(path, contract).frame, contract)


def test_train_py_refuses_a_binary_batch_with_a_third_label_value(tmp_path: Path) -> None:
    frame = _tickets(400, seed=5, rare=True)
    problem = _problem(tmp_path, frame, task="binary")
    document = {**_contract("binary", None), "positive_class": "technical"}
    problem.contract.write_text(json.dumps(document), encoding="utf-8")
    assert train_in_process(problem, tmp_path / "out") == 2
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_multiclass_batch_of_two_classes_needs_no_positive_class() -> None:
    contract = parse_contract(_contract("multiclass", None))
    space = infer_label_space(pd.DataFrame({"topic": ["billing", "shipping", "billing"]}), contract)
    assert (space.task, space.classes, space.n_outputs) == ("multiclass", ("billing", "shipping"), 2)
    with pytest.raises(DataError, match="one class only"):
        infer_label_space(pd.DataFrame({"topic": ["billing"]}), contract)


def test_multiclass_classes_are_the_declared_categories_whatever_the_batch_holds() -> None:
    contract = parse_contract(_contract("multiclass"))
    frame = pd.DataFrame({"topic": ["technical", "billing", "shipping", "billing"]})
    space = infer_label_space(frame, contract)
    assert space.classes == tuple(sorted(TOPICS))
    assert encode_labels(frame, contract, space).tolist() == [3, 0, 2, 0]
    with pytest.raises(DataError, match=r"outside its declared classes: \['refund'\]"):
        infer_label_space(pd.DataFrame({"topic": ["billing", "refund"]}), contract)
    train, val = stratified_split(np.array([0, 0, 2, 2, 3, 3, 3, 3]), np.arange(8, dtype=np.uint64), 0.25)
    assert len(train) + len(val) == 8


def test_an_integer_multiclass_label_declares_its_classes_by_min_and_max() -> None:
    """Queues coded 0-3: a batch without queue 3 used to train a 3-class model, which evaluate.py could not
    compare with a 4-class champion (and class index 2 meant another queue if 1 was missing)."""
    document = _contract("multiclass", None)
    label = {"name": "topic", "type": "int", "nullable": False, "min": 0, "max": 3, "categories": None, "feature": True}
    document["columns"] = [c for c in document["columns"] if c["name"] != "topic"] + [label]
    contract = parse_contract(document)
    frame = pd.DataFrame({"topic": [0, 2, 1, 2]})
    space = infer_label_space(frame, contract)
    assert space.classes == ("0", "1", "2", "3")
    assert encode_labels(frame, contract, space).tolist() == [0, 2, 1, 2]
    with pytest.raises(DataError, match=r"outside its declared classes: \['7'\]"):
        infer_label_space(pd.DataFrame({"topic": [0, 7]}), contract)
    wide = parse_contract({**document, "columns": [*document["columns"][:-1], {**label, "max": 10**6}]})
    assert infer_label_space(frame, wide).classes == ("0", "1", "2"), "a range too wide to be classes: as present"


def test_a_contract_without_a_task_keeps_the_labels_present_deciding() -> None:
    contract = parse_contract(_contract(None))
    three = pd.DataFrame({"topic": ["technical", "billing", "shipping"]})
    assert infer_label_space(three, contract).classes == ("billing", "shipping", "technical")
    binary = parse_contract({**_contract(None, None), "positive_class": "billing"})
    assert infer_label_space(three.iloc[:2], binary).classes == ("technical", "billing")


def test_a_model_trained_without_a_rare_declared_class_has_its_output_and_honest_metrics(
    tickets: dict[str, Any],
) -> None:
    challenger = tickets["challenger"]
    predictor = Predictor.load(challenger)
    assert predictor.preprocessor.labels.classes == tuple(TOPICS)
    assert predictor.config.n_outputs == len(TOPICS)
    metrics = _no_nan((challenger / "metrics.json").read_text())
    card = _no_nan((challenger / "model_card.json").read_text())
    absent = metrics["per_class"]["fraud_review"]
    assert absent["support"] == 0
    assert absent["recall"] is None
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece"):
        assert isinstance(metrics[key], float), key
        assert card["metrics"][key] == metrics[key]


def test_a_challenger_without_a_rare_declared_class_is_compared_with_a_champion_that_had_it(
    tickets: dict[str, Any], tmp_path: Path
) -> None:
    thin: Problem = tickets["thin"]
    output = tmp_path / "comparison.json"
    argv = ["--challenger", str(tickets["challenger"]), "--champion", str(tickets["champion"])]
    argv += ["--data", str(thin.data), "--contract", str(thin.contract), "--output", str(output)]
    assert evaluate.main([*argv, "--bootstrap", "200"]) == 0
    comparison = _no_nan(output.read_text())
    assert comparison["n_positive"] > 0, "the rarest class present, not the declared one with no rows"
    assert comparison["champion"] is not None
    assert comparison["difference"]["bootstrap_samples"] > 0
    parse_comparison(comparison)
