"""A run's batches that each pass validation but together cannot train a binary model end the run before a job.

The profiles are the real ones validation builds from small CSV files, and every case is checked against what the
training job does with the same files taken together (training_jobs/data.py infer_label_space).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from shared.profile import DatasetProfile
from shared.run_labels import batch_label_classes, binary_label_problem
from shared.spec import DataContract, Task
from shared.validation import validate
from training_jobs.contract import parse_contract
from training_jobs.data import infer_label_space, load_dataset
from training_jobs.errors import DataError


def _document(label: dict[str, Any], positive: str | int | bool) -> dict[str, Any]:
    return {
        "label": "y",
        "positive_class": positive,
        "min_rows": 1,
        "max_missing_rate": 0.5,  # some batches hold unlabelled rows
        "columns": [{"name": "x", "type": "float"}, {"name": "y", "nullable": True, **label}],
    }


def _batches(tmp_path: Path, **labels: list[str]) -> dict[str, Path]:
    paths = {}
    for name, values in labels.items():
        folder = tmp_path / name
        folder.mkdir()
        paths[name] = folder / f"{name}.csv"
        paths[name].write_text("x,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)), encoding="utf-8")
    return paths


def _problem(tmp_path: Path, document: dict[str, Any], task: Task, **labels: list[str]) -> str | None:
    """What prepare_training would say of these batches; each must pass validation on its own."""
    contract = DataContract.model_validate(document)
    classes = {}
    for name, path in _batches(tmp_path, **labels).items():
        report = validate(path, contract, task=task)
        assert report.ok, report.summary()
        assert report.profile is not None
        classes[name] = batch_label_classes(contract, report.profile)
    return binary_label_problem(contract, task, classes)


def _training_refuses(tmp_path: Path, document: dict[str, Any], task: Task) -> bool:
    """Whether train.py's label reading stops on every batch under ``tmp_path`` taken together."""
    contract = parse_contract(json.loads(json.dumps({**document, "task": task})))
    frames = [load_dataset(path.parent, contract).frame for path in sorted(tmp_path.glob("*/*.csv"))]
    try:
        infer_label_space(pd.concat(frames, ignore_index=True), contract)
    except DataError:
        return True
    return False


def test_two_batches_of_a_text_label_holding_three_classes_are_named_with_their_batches(tmp_path: Path) -> None:
    document = _document({"type": "string"}, "yes")
    problem = _problem(tmp_path, document, "binary", a=["yes", "no", "no"], b=["yes", "maybe"], c=["no", "yes"])
    assert problem is not None
    assert "together hold 3 classes of the binary label 'y' ('maybe' in b; 'no' in a, c; 'yes' in a, b, c)" in problem
    assert "set task: multiclass" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_batches_that_agree_pass(tmp_path: Path) -> None:
    document = _document({"type": "string"}, "yes")
    assert _problem(tmp_path, document, "binary", a=["yes", "no"], b=["no", "no"], c=["yes", "NA"]) is None
    assert not _training_refuses(tmp_path, document, "binary")


def test_int_batches_without_a_positive_row_end_the_run(tmp_path: Path) -> None:
    """The labelling pipeline stopped sending positives: each batch only warned (label_imbalance), and the run's
    training job would have stopped on "positive_class=1 never occurs"."""
    document = _document({"type": "int", "min": 0, "max": 1}, 1)
    problem = _problem(tmp_path, document, "binary", a=["0", "0"], b=["0", ""])
    assert problem is not None
    assert "hold no row of the positive class '1' of 'y' ('0' in a, b)" in problem
    assert "data.positive_class" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_int_batches_whose_spans_hide_a_third_class_end_the_run(tmp_path: Path) -> None:
    """Each batch holds two classes and passes alone (0 and 5; 0 and 1): a numeric profile's min and max cannot
    tell which, validation's class counts (the profile's label_classes) can."""
    document = _document({"type": "int"}, 1)
    problem = _problem(tmp_path, document, "binary", a=["0", "5", "0"], b=["0", "1"])
    assert problem is not None
    assert "together hold 3 classes of the binary label 'y' ('0' in a, b; '1' in b; '5' in a)" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_a_profile_without_class_counts_is_read_from_its_summary_or_left_to_training(tmp_path: Path) -> None:
    """A kept verdict's profile written before the counts existed: an int label's min and max tell 0/1 apart, a
    wider span is not known (training judges it)."""
    document = _document({"type": "int"}, 1)
    contract = DataContract.model_validate(document)
    spans = _batches(tmp_path, wide=["0", "5", "0"], usual=["0", "1", ""])
    older = {}
    for name, path in spans.items():
        report = validate(path, contract)
        assert report.profile is not None
        stored = report.profile.to_dict()
        assert stored["label_classes"] == {"wide": {"0": 2, "5": 1}, "usual": {"0": 1, "1": 1}}[name]
        del stored["label_classes"]
        older[name] = DatasetProfile.from_dict(stored)
    assert batch_label_classes(contract, older["wide"]) is None
    assert batch_label_classes(contract, older["usual"]) == {"0", "1"}
    assert binary_label_problem(contract, "binary", {"a": None, "b": frozenset({"2"})}) is None


def test_class_counts_add_up_across_batches_and_are_lost_with_any_batch_without_them() -> None:
    a = DatasetProfile(rows=3, label_classes={"0": 2, "1": 1})
    b = DatasetProfile(rows=2, label_classes={"1": 1, "5": 1})
    assert a.merge(b).label_classes == {"0": 2, "1": 2, "5": 1}
    assert DatasetProfile.from_dict(a.merge(b).to_dict()).label_classes == {"0": 2, "1": 2, "5": 1}
    assert a.merge(DatasetProfile(rows=1)).label_classes is None


def test_a_bool_label_of_false_only_has_no_positive_class(tmp_path: Path) -> None:
    document = _document({"type": "bool"}, True)
    problem = _problem(tmp_path, document, "binary", a=["no", "false", "N"], b=["0"])
    assert problem is not None
    assert "no row of the positive class '1'" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_a_label_of_one_class_only_says_so(tmp_path: Path) -> None:
    document = _document({"type": "category", "categories": ["no", "yes"]}, "yes")
    problem = _problem(tmp_path, document, "binary", a=["yes"], b=["yes", "yes"])
    assert problem is not None
    assert "hold one class of 'y' only ('yes' in a, b)" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_a_binary_label_declaring_three_categories_is_judged_on_the_classes_present(tmp_path: Path) -> None:
    document = _document({"type": "category", "categories": ["no", "yes", "maybe"]}, "yes")
    problem = _problem(tmp_path, document, "binary", a=["yes", "no"], b=["yes", "maybe"])
    assert problem is not None
    assert "hold 3 classes" in problem
    assert _training_refuses(tmp_path, document, "binary")


def test_multiclass_labels_are_not_judged_here(tmp_path: Path) -> None:
    """A multiclass model's classes are the declared ones whatever a run holds: training judges them."""
    document = _document({"type": "string"}, 1)
    assert _problem(tmp_path, document, "multiclass", a=["yes", "no"], b=["yes", "maybe"]) is None


def test_int_labels_past_two_to_the_53_are_left_to_training(tmp_path: Path) -> None:
    """A profile keeps min and max as floats, which cannot tell 2**53 from 2**53 + 1: read as one class, the run
    would end although training (which reads the ints exactly) trains on two."""
    document = _document({"type": "int"}, 2**53 + 1)
    assert _problem(tmp_path, document, "binary", a=[str(2**53), str(2**53 + 1)]) is None
    assert not _training_refuses(tmp_path, document, "binary")
