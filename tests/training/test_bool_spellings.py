"""A ``bool`` column spelt as validation reads it (true/false, 1/0, yes/no, y/n, t/f, any case) trains and scores.

Validation (shared/typecast.py) reads every one of those spellings; training_jobs ships without shared/, so it keeps
its own copy (training_jobs/contract.py BOOL_TRUE / BOOL_FALSE) of shared/spec.py's: the
copies must agree, or a batch that passes ``perennial validate`` fails training (a label ``yes``/``no`` once did:
``positive_class=True never occurs in defaulted (values: ['no', 'yes'])``), and a request spelling a bool feature as
its data does is refused by score.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from shared.jobs import job_contract
from shared.spec import ModelSpec, parse_spec
from shared.validation import validate
from tests.training.conftest import ROOT, Problem, train_in_process
from tests.training.test_score import load_score_module
from training_jobs.contract import canonical_label, load_contract
from training_jobs.data import infer_label_space, load_dataset
from training_jobs.payload import PayloadError, validate_records
from training_jobs.preprocessing import as_float

TRUE_SPELLINGS = ["true", "TRUE", "True", "1", "t", "T", "yes", "Yes", "YES", "y", "Y", " yes "]
FALSE_SPELLINGS = ["false", "FALSE", "False", "0", "f", "F", "no", "No", "NO", "n", "N", " no "]


def test_every_copy_of_the_bool_spellings_is_validations() -> None:
    """shared/typecast.py decides what a bool column may hold; every other reader keeps a copy of its spellings."""
    import shared.feedback
    import shared.spec
    import training_jobs.contract
    import training_jobs.payload
    import training_jobs.preprocessing
    from shared.typecast import _FALSE, _TRUE

    copies = {
        "training_jobs/contract.py": (training_jobs.contract.BOOL_TRUE, training_jobs.contract.BOOL_FALSE),
        "training_jobs/preprocessing.py": (training_jobs.preprocessing._TRUE, training_jobs.preprocessing._FALSE),
        "shared/spec.py": (shared.spec.BOOL_TRUE, shared.spec.BOOL_FALSE),
        "shared/feedback.py": (shared.feedback.BOOL_TRUE, shared.feedback.BOOL_FALSE),
    }
    for where, (true, false) in copies.items():
        assert (set(true), set(false)) == (set(_TRUE), set(_FALSE)), where
    assert training_jobs.payload.BOOL_SPELLINGS == _TRUE | _FALSE


@pytest.mark.parametrize(
    ("text", "truth"), [*((t, True) for t in TRUE_SPELLINGS), *((f, False) for f in FALSE_SPELLINGS)]
)
def test_each_spelling_reads_the_same_in_validation_training_and_scoring(text: str, truth: bool) -> None:
    from shared.typecast import _parse_bool
    from shared.validation import _label_key

    assert _parse_bool(text) is truth  # what validation casts the cell to
    assert _label_key(text, as_bool=True) == str(truth).lower()  # validation's positive class
    assert canonical_label(text, as_bool=True) == ("1" if truth else "0")  # training's label
    if text.strip().lower() not in ("true", "false", "1", "0"):  # only a bool label reads yes/no/y/n/t/f so:
        assert canonical_label(text) == text.strip()  # a category label ["no", "yes"] keeps its class names
    assert as_float([text], "bool").tolist() == [1.0 if truth else 0.0]  # training's (and scoring's) feature
    assert _check_bool(text) is None  # scoring's payload check


@pytest.mark.parametrize("text", ["maybe", "2", "oui", "yess", "-1"])
def test_what_validation_refuses_is_not_a_bool_in_training_or_scoring_either(text: str) -> None:
    from shared.typecast import _parse_bool

    with pytest.raises(ValueError, match="is not a boolean"):
        _parse_bool(text)
    assert canonical_label(text, as_bool=True) not in ("0", "1")
    assert np.isnan(as_float([text], "bool")).all()
    assert _check_bool(text) is not None


def _check_bool(value: Any) -> str | None:
    from training_jobs.contract import Column

    try:
        validate_records([{"b": value}], [Column("b", "bool", nullable=False)])
    except PayloadError as error:
        return str(error)
    return None


# --------------------------------------------------------------------------- a bool label and feature, end to end


def _spec(positive_class: Any) -> ModelSpec:
    """models/fraud.yaml with a loans contract: a bool label ``defaulted`` and a bool feature ``has_mortgage``."""
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    document["name"] = "loans"
    document["rollout"]["endpoint"] = "loans-ep"
    document["data"] = {
        "label": "defaulted",
        "positive_class": positive_class,
        "key": "loan_id",
        "min_rows": 100,
        "min_label_share": 0.01,
        "columns": [
            {"name": "loan_id", "type": "string", "nullable": False, "feature": False},
            {"name": "income", "type": "float", "nullable": False},
            {"name": "has_mortgage", "type": "bool", "nullable": False},
            {"name": "defaulted", "type": "bool", "nullable": False},
        ],
    }
    return parse_spec(document, "loans.yaml")


def _loans(rows: int, seed: int) -> pd.DataFrame:
    """Defaults follow income and the mortgage; both bool columns spelt every way a bool column may be."""
    rng = np.random.default_rng(seed)
    income = rng.normal(size=rows)
    mortgage = rng.random(rows) < 0.5
    defaulted = (1.5 * income - 2.0 * mortgage + rng.normal(scale=0.5, size=rows)) > 0.0
    spell = rng.integers(0, len(TRUE_SPELLINGS), size=rows)
    return pd.DataFrame(
        {
            "loan_id": [f"l{seed}-{i}" for i in range(rows)],
            "income": np.round(income, 4),
            "has_mortgage": [
                (TRUE_SPELLINGS if m else FALSE_SPELLINGS)[s].strip() for m, s in zip(mortgage, spell, strict=True)
            ],
            "defaulted": ["yes" if d else "no" for d in defaulted],
        }
    )


def _problem(folder: Path, spec: ModelSpec, frame: pd.DataFrame) -> Problem:
    (folder / "data").mkdir(parents=True)
    frame.to_csv(folder / "data" / "loans.csv", index=False)
    (folder / "contract.json").write_text(job_contract(spec), encoding="utf-8")
    return Problem(folder / "data", folder / "contract.json", folder)


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Problem, Path]:
    """A batch that passes validation, and the model train.py trains on it (positive_class: true, the default 1's
    bool spelling as the spec would say it)."""
    spec = _spec(True)
    problem = _problem(tmp_path_factory.mktemp("loans"), spec, _loans(1200, seed=7))
    report = validate(problem.data / "loans.csv", spec.data, task=spec.task)
    assert report.ok, report.summary()
    assert not report.findings, report.summary()
    output = problem.folder / "model"
    assert train_in_process(problem, output, "--epochs", "3", "--batch-size", "64", "--lr", "0.01") == 0
    return problem, output


def test_a_bool_label_spelt_yes_no_trains_as_validation_read_it(loans: tuple[Problem, Path]) -> None:
    _, model = loans
    preprocessing = json.loads((model / "preprocessing.json").read_text(encoding="utf-8"))
    assert preprocessing["labels"] == {"task": "binary", "classes": ["0", "1"]}  # (false, true): true is positive
    mortgage = next(f for f in preprocessing["numeric"] if f["name"] == "has_mortgage")
    assert 0.35 < mortgage["mean"] < 0.65  # every spelling read, none lost as missing
    assert not mortgage["missing_indicator"]


@pytest.mark.parametrize(
    ("positive_class", "classes"),
    [("yes", ("0", "1")), ("Y", ("0", "1")), (1, ("0", "1")), ("no", ("1", "0")), (False, ("1", "0"))],
)
def test_any_bool_spelling_of_the_positive_class_names_the_same_class(
    loans: tuple[Problem, Path], tmp_path: Path, positive_class: Any, classes: tuple[str, str]
) -> None:
    problem, _ = loans
    spec = _spec(positive_class)
    (tmp_path / "contract.json").write_text(job_contract(spec), encoding="utf-8")
    contract = load_contract(tmp_path / "contract.json")
    frame = load_dataset(problem.data, contract).frame
    assert infer_label_space(frame, contract).classes == classes


@pytest.fixture(scope="module")
def loan_score(loans: tuple[Problem, Path]) -> Iterator[ModuleType]:
    _, model = loans
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AZUREML_MODEL_DIR", str(model))
        patch.delenv("AZUREML_MODEL_VERSION", raising=False)
        module = load_score_module()
        module.init()
        yield module


def _probability(score: ModuleType, mortgage: Any) -> float:
    answer = score.run(json.dumps({"data": [{"loan_id": "l-1", "income": 0.3, "has_mortgage": mortgage}]}))
    return float(answer["predictions"][0]["probability"])


@pytest.mark.parametrize(
    ("spelt", "truth"),
    [("yes", True), (" No ", False), ("Y", True), ("f", False), (1, True), (0.0, False), ("TRUE", True)],
)
def test_score_py_takes_a_bool_feature_spelt_as_its_data_is(loan_score: ModuleType, spelt: Any, truth: bool) -> None:
    assert _probability(loan_score, spelt) == _probability(loan_score, truth)


@pytest.mark.parametrize("spelt", ["maybe", 2, 0.5, "2", [True]])
def test_score_py_refuses_anything_else_listing_the_spellings(loan_score: ModuleType, spelt: Any) -> None:
    with pytest.raises(ValueError, match="row 0, column 'has_mortgage': expected true or false") as refused:
        _probability(loan_score, spelt)
    for spelling in ("0/1", '"true"/"false"', '"1"/"0"', '"yes"/"no"', '"y"/"n"', '"t"/"f"', "any case"):
        assert spelling in str(refused.value)
