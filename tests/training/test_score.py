"""score.py, as Azure ML and the local endpoint server use it: init() from AZUREML_MODEL_DIR, run(raw)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.training.conftest import ROOT
from training_jobs.bundle import Predictor
from training_jobs.errors import ModelBundleError

SCORE = ROOT / "training_jobs" / "score.py"


def load_score_module() -> ModuleType:
    """Load score.py by file path, the way an inference server does (a fresh module each time)."""
    spec = importlib.util.spec_from_file_location(f"score_under_test_{id(object())}", SCORE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def score(trained: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(trained))
    monkeypatch.delenv("AZUREML_MODEL_VERSION", raising=False)
    module = load_score_module()
    module.init()
    return module


def good_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "x0": 0.5, "x1": -1.0, "x2": 0.1, "x3": 0.2, "x4": 0.0, "gap": 12.5,
        "count": 3, "flag": True, "region": "east", "channel": "web",
    }  # fmt: skip
    row.update(changes)
    return row


def test_the_sample_input_scores_with_class_probability_and_version(score: ModuleType, trained: Path) -> None:
    raw = (trained / "sample_input.json").read_text()
    answer = score.run(raw)
    rows = json.loads(raw)["data"]
    assert len(answer["predictions"]) == len(rows)
    for prediction in answer["predictions"]:
        assert set(prediction) == {"class", "probability", "label"}
        assert prediction["class"] in (0, 1)
        assert prediction["label"] == ("0", "1")[prediction["class"]]  # the label value: (negative, positive)
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["class"] == int(prediction["probability"] >= 0.5)
    assert answer["model_version"] == "run-42"  # from the model card when the environment names none


def test_scores_match_the_predictor_used_by_evaluation(score: ModuleType, trained: Path, holdout: Any) -> None:
    frame = pd.read_csv(next(holdout.data.glob("*.csv")), dtype={"region": "string", "channel": "string"}).head(300)
    records = json.loads(frame.drop(columns=["row_id", "label"]).to_json(orient="records"))
    answer = score.run(json.dumps({"data": records}))
    expected = Predictor.load(trained).predict_proba(frame, len(frame))
    got = np.array([p["probability"] for p in answer["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_input_data_envelopes_and_the_split_orientation_are_accepted(score: ModuleType) -> None:
    rows = [good_row(), good_row(x0=3.0, region="somewhere-new", channel=None, gap=None)]
    by_records = score.run(json.dumps({"input_data": rows}))
    columns = list(rows[0])
    split = {"input_data": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}}
    assert score.run(json.dumps(split)) == by_records
    assert score.run({"data": rows}) == by_records  # an already-parsed body works too
    assert len(by_records["predictions"]) == 2


def test_the_model_version_comes_from_the_environment_first(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(trained))
    monkeypatch.setenv("AZUREML_MODEL_VERSION", "7")
    module = load_score_module()
    module.init()
    assert module.run(json.dumps({"data": [good_row()]}))["model_version"] == "7"


def test_the_model_may_sit_one_folder_below_the_model_dir(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = tmp_path / "azureml-models"
    shutil.copytree(trained, mount / "toy" / "INPUT_model", ignore=shutil.ignore_patterns("checkpoints"))
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(mount / "toy"))
    module = load_score_module()
    module.init()
    assert module.run(json.dumps({"data": [good_row()]}))["predictions"]


def test_init_explains_a_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_score_module()
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    with pytest.raises(ModelBundleError, match="AZUREML_MODEL_DIR is not set"):
        module.init()
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelBundleError, match=r"no model\.safetensors in"):
        module.init()
    with pytest.raises(RuntimeError, match="before init"):
        module.run("{}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "the body is not JSON"),
        ("[1, 2]", "the body must be a JSON object"),
        ('{"rows": []}', 'no "data" (or "input_data") key'),
        ('{"data": []}', '"data" is empty'),
        ('{"data": {"x0": 1}}', '"data" must be a list of row objects'),
        (json.dumps({"data": [good_row(), 5]}), "row 1: expected an object"),
        (
            json.dumps({"data": [good_row(), good_row(x0="1.5")]}),
            "row 1, column 'x0': expected a number, got \"1.5\" (str)",
        ),
        (json.dumps({"data": [good_row(count=2.5)]}), "row 0, column 'count': expected a whole number"),
        (
            json.dumps({"data": [good_row(), good_row(), good_row(count=-1)]}),
            "row 2, column 'count': -1 is below the minimum 0",
        ),
        (json.dumps({"data": [good_row(gap=5000)]}), "row 0, column 'gap': 5000 is above the maximum 1000"),
        (json.dumps({"data": [good_row(flag="maybe")]}), "row 0, column 'flag': expected true or false"),
        (json.dumps({"data": [good_row(region=[3])]}), "row 0, column 'region': expected a string"),
        (json.dumps({"data": [good_row(region=3.5)]}), "row 0, column 'region': expected a string or a whole number"),
        (json.dumps({"data": [good_row(channel=3)]}), "row 0, column 'channel': expected a string, got 3 (int)"),
        (json.dumps({"data": [good_row(region=None)]}), "row 0, column 'region': is required"),
        (json.dumps({"data": [{k: v for k, v in good_row().items() if k != "x4"}]}), "row 0, column 'x4': is missing"),
        (json.dumps({"data": [good_row(x1=True)]}), "row 0, column 'x1': expected a number, got true (bool)"),
        ('{"data": [{"x0": NaN}]}', "row 0, column 'x0': expected a finite number"),
        (
            json.dumps({"data": [good_row(), {**good_row(), "Gap": 1.0}]}),
            "row 1: key 'Gap' is not a column of the model's contract (did you mean 'gap'?)",
        ),
        (json.dumps({"data": [{**good_row(), "zzz": 1}]}), "key 'zzz' is not a column of the model's contract"),
        ('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}", "the body nests too deeply"),
        ('{"data": [{"count": 1' + "0" * 5000 + "}]}", "the body is not JSON"),
    ],
)
def test_malformed_payloads_are_rejected_naming_row_and_column(score: ModuleType, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        score.run(body)


def test_an_int_beyond_float_range_says_so(score: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"row 0, column 'count': .* \(int\) is too large for a number"):
        score.run(json.dumps({"data": [good_row(count=10**400)]}))


def test_a_body_over_the_size_limit_is_refused_before_parsing(score: ModuleType) -> None:
    with pytest.raises(ValueError, match="send at most 32 MiB per request"):
        score.run(b'{"data": [' + b"1," * (17 << 20) + b"1]}")


def test_the_contract_s_other_columns_may_be_sent_along(score: ModuleType) -> None:
    answer = score.run(json.dumps({"data": [good_row(row_id="r-1", label=1)]}))
    assert len(answer["predictions"]) == 1


def test_values_far_outside_the_training_range_still_score_to_a_finite_probability(trained: Path) -> None:
    # The contract's ranges are optional; without them a payload may carry any finite float.
    predictor = Predictor.load(trained)
    rows = [good_row(x0=x) for x in (1e30, 1e39, -1e300, 1.7e308)]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    probabilities = predictor.predict_proba(columns, len(rows))
    assert np.isfinite(probabilities).all()
    json.dumps(probabilities.tolist(), allow_nan=False)


def test_every_bad_cell_is_reported_up_to_a_limit(score: ModuleType) -> None:
    body = json.dumps({"data": [good_row(x0="bad") for _ in range(30)]})
    with pytest.raises(ValueError, match="30 invalid value") as error:
        score.run(body)
    assert "row 19, column 'x0'" in str(error.value)
    assert "and 10 more problem(s)" in str(error.value)


def test_the_model_folder_holds_no_pickle(trained: Path) -> None:
    # What a deployment loads is safetensors and JSON only (checkpoints are not part of the model).
    for path in trained.iterdir():
        if path.is_file():
            assert path.suffix in (".safetensors", ".json"), path.name


def test_mismatched_weights_are_refused_with_a_hint(trained: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((broken / "model_config.json").read_text())
    config["width"] += 1
    (broken / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelBundleError, match="re-train or re-register"):
        Predictor.load(broken)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([["x0"], "x1"], "\"input_data.columns[0]\" must be a column name (a string), got ['x0'] (list)"),
        (["x0", {"a": 1}], '"input_data.columns[1]" must be a column name (a string)'),
        (["x0", 3], '"input_data.columns[1]" must be a column name (a string), got 3 (int)'),
        (["x0", "x1", "x0"], "\"input_data.columns[2]\" repeats the column 'x0'"),
    ],
)
def test_split_columns_that_are_not_names_are_a_payload_error(
    score: ModuleType, columns: list[Any], message: str
) -> None:
    body = {"input_data": {"columns": columns, "data": [[1.0] * len(columns)]}}
    with pytest.raises(ValueError, match=re.escape(message)):
        score.run(json.dumps(body))


def test_an_unforeseen_failure_while_reading_the_payload_is_still_a_payload_error(
    score: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def surprise(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("something the checks did not foresee")

    monkeypatch.setattr(score, "validate_records", surprise)
    with pytest.raises(score.PayloadError, match=r"the body could not be read \(KeyError"):
        score.run(json.dumps({"data": [good_row()]}))


def test_a_failure_of_the_model_itself_is_not_turned_into_a_payload_error(
    score: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the model broke")

    monkeypatch.setattr(score._predictor, "predict_proba", broken)
    with pytest.raises(RuntimeError, match="the model broke"):
        score.run(json.dumps({"data": [good_row()]}))


def test_many_misspelt_keys_are_refused_about_as_fast_as_a_valid_payload_is_scored(score: ModuleType) -> None:
    good = json.dumps({"data": [good_row()] * 10_000})
    started = time.perf_counter()
    score.run(good)
    valid_s = time.perf_counter() - started
    bad = json.dumps({"data": [{**good_row(), **{f"regoin_{i}": 1 for i in range(40)}}] * 10_000})
    started = time.perf_counter()
    with pytest.raises(ValueError, match="400000 invalid value") as error:
        score.run(bad)
    refused_s = time.perf_counter() - started
    # "did you mean" is worked out once per key, and only for the problems listed (it took 21.7 s).
    assert refused_s < 3 * valid_s + 0.5, (refused_s, valid_s)
    assert "row 0: key 'regoin_0' is not a column of the model's contract (did you mean 'region'?)" in str(error.value)
    assert "and 399980 more problem(s)" in str(error.value)


def test_a_model_that_gives_non_finite_probabilities_is_refused_naming_it(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    diverged = tmp_path / "diverged-model"
    shutil.copytree(trained, diverged, ignore=shutil.ignore_patterns("checkpoints"))
    weights = load_file(str(diverged / "model.safetensors"))
    weights["head.bias"] = torch.full_like(weights["head.bias"], float("nan"))
    save_file(weights, str(diverged / "model.safetensors"))
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(diverged))
    module = load_score_module()
    module.init()
    with pytest.raises(ModelBundleError, match=r"model 'diverged-model' .* not finite for 1 of 1 row") as error:
        module.run(json.dumps({"data": [good_row()]}))
    assert not isinstance(error.value, ValueError)  # the model's fault: a 500, not the caller's 400
