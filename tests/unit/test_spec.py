"""The model spec: the example specs load, and each broken spec fails with a message naming field and fix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.spec import SpecError, load_spec, load_specs, parse_spec

ROOT = Path(__file__).resolve().parents[2]
BROKEN = sorted((ROOT / "tests" / "specs" / "broken").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


def test_fraud_spec_loads_with_its_contract() -> None:
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    assert spec.name == "fraud"
    assert spec.data.label == "is_fraud"
    assert spec.rollout.steps[-1] == 100
    assert spec.endpoint_name == "fraud-ep"
    assert "transaction_id" not in {c.name for c in spec.data.feature_columns}
    assert "is_fraud" not in {c.name for c in spec.data.feature_columns}


def test_every_example_spec_in_models_loads() -> None:
    assert "fraud" in load_specs(ROOT / "models")


def test_there_are_at_least_ten_broken_specs() -> None:
    assert len(BROKEN) >= 10


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_spec_names_file_field_and_fix(path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    # The whole line is asserted: file, field path (with the bad value) and the fix.
    assert caught.value.problems == [f"{path}: {_expected(path)}"]
    field, _, rest = _expected(path).partition(" ")
    assert field, "the message names a field first"
    assert rest
    assert re.search(r"\(.+\)$|; fix the syntax$", rest), f"no fix hint in {rest!r}"


def test_all_problems_of_a_spec_are_reported_together(tmp_path: Path) -> None:
    bad = tmp_path / "two-faults.yaml"
    bad.write_text(
        "name: two-faults\n"
        "data: {label: y, columns: [{name: y, type: int}]}\n"
        "rollout: {steps: [50, 20]}\n"
        "promotion: {significance: 0}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as caught:
        load_spec(bad)
    # pydantic errors come first; our invariants run only on a structurally valid spec
    assert any("promotion.significance=0" in p for p in caught.value.problems)


def test_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_check_cli_exit_codes() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "perennial_cli.main", "spec", "check", "models/fraud.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "fraud" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "perennial_cli.main", "spec", "check", "models/fraud.yaml", str(BROKEN[0])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert _expected(BROKEN[0]) in " ".join(bad.stderr.split())


def test_docs_model_spec_md_matches_the_code() -> None:
    from perennial_cli.spec import reference_markdown

    current = (ROOT / "docs" / "model-spec.md").read_text(encoding="utf-8")
    assert current == reference_markdown(), "regenerate it: perennial spec docs > docs/model-spec.md"


def test_fix_hints_point_at_documents_that_exist() -> None:
    source = (ROOT / "shared" / "spec.py").read_text(encoding="utf-8")
    referenced = re.findall(r"see ([\w/.-]+\.md)", source)
    assert referenced
    for document in referenced:
        assert (ROOT / document).is_file(), f"a spec error hint points at {document}, which does not exist"


def test_two_models_may_not_share_an_endpoint(tmp_path: Path) -> None:
    """A rollout sets its endpoint's whole traffic map: a second model there would lose its traffic."""
    fraud = (ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8")
    (tmp_path / "fraud.yaml").write_text(fraud, encoding="utf-8")
    own_endpoint = fraud.replace("name: fraud", "name: cards", 1).replace("endpoint: fraud-ep", "endpoint: cards-ep")
    (tmp_path / "cards.yaml").write_text(own_endpoint, encoding="utf-8")
    loans = fraud.replace("name: fraud", "name: loans", 1).replace("endpoint: fraud-ep", "endpoint: Fraud-EP")
    (tmp_path / "loans.yaml").write_text(loans, encoding="utf-8")  # Azure ML names ignore case
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    assert caught.value.problems == [
        f"{tmp_path / 'loans.yaml'}: rollout.endpoint='Fraud-EP' is also fraud's endpoint ({tmp_path / 'fraud.yaml'}); "
        "give each model its own endpoint (set rollout.endpoint, or leave it out for '<name>-ep')"
    ]


def test_a_yml_spec_the_host_would_ignore_is_named(tmp_path: Path) -> None:
    (tmp_path / "fraud.yml").write_text((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    assert caught.value.problems == [
        f"{tmp_path / 'fraud.yml'}: specs are read from *.yaml files only, so this one would be ignored "
        "(rename it to fraud.yaml)"
    ]


def test_the_train_py_options_a_spec_may_set_are_train_pys_own() -> None:
    """shared/spec.py keeps train.py's candidate options (train.py imports torch); they must not drift apart."""
    from shared.spec import TRAIN_PY_OPTIONS
    from training_jobs.train import build_parser

    infrastructure = {"help", "data", "contract", "manifest", "output_dir", "resume", "holdout_fraction"}
    parsed = {a.dest: a.choices for a in build_parser()._actions if a.dest not in infrastructure}
    assert {name: tuple(choices) if choices else None for name, choices in parsed.items()} == TRAIN_PY_OPTIONS


@pytest.mark.parametrize(
    "value",
    ["three", "", "-1", "0", "0.5", "0.9", "0.95", "1", "2", "2.5", "1e9", "nan", "inf", "auto", "AUTO", "True"],
)
def test_the_spec_refuses_the_option_values_train_py_refuses(value: str) -> None:
    """A params value train.py's parser refuses fails every candidate's paid job: `perennial spec check` refuses
    exactly those (shared/spec.py TRAIN_PY_RULES mirrors train.py's types and bounds)."""
    import argparse

    from shared.spec import TRAIN_PY_RULES
    from training_jobs.train import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    for name, rule in TRAIN_PY_RULES.items():
        action = actions[name]
        try:
            if action.choices is not None:
                accepted = value in action.choices
            else:
                assert callable(action.type)
                action.type(value)
                accepted = True
        except argparse.ArgumentTypeError:
            accepted = False
        assert (rule.problem(value) is None) == accepted, (name, value, rule.problem(value))


def test_spec_check_names_a_bad_option_value_and_its_fix() -> None:
    document = _fraud_with()
    document["training"]["params"] = {"threshold": "automatic", "epochs": "three", "dropout": 0.95}
    document["training"]["search_space"] = {"lr": {"min": 0, "max": 0.1}, "width": {"values": [32, 64.5]}}
    with pytest.raises(SpecError) as refused:
        parse_spec(document, "fraud.yaml")
    assert sorted(refused.value.problems) == [
        "fraud.yaml: training.params.dropout=0.95 must be <= 0.9 for --dropout (use a number >= 0 and <= 0.9; "
        "train.py --help lists every option)",
        "fraud.yaml: training.params.epochs='three' is not a number for --epochs (use a whole number >= 1; train.py "
        "--help lists every option)",
        "fraud.yaml: training.params.threshold='automatic' is not a number (or auto) for --threshold (use auto, or "
        "a probability between 0 and 1 such as 0.5)",
        "fraud.yaml: training.search_space.lr.min=0.0 must be > 0 for --lr (use a number > 0; train.py --help lists "
        "every option)",
        "fraud.yaml: training.search_space.width=64.5 is not a whole number for --width (use a whole number >= 1; "
        "train.py --help lists every option)",
    ]


def _fraud_with(**data: Any) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["data"].update(data)
    return dict(document)


@pytest.mark.parametrize(
    ("task", "label", "positive"),
    [
        ("multiclass", {"type": "category", "categories": ["cat", "dog", "bird"]}, None),  # no positive class
        ("multiclass", {"type": "int", "min": 2, "max": 6}, None),
        ("binary", {"type": "category", "categories": ["False", "True"]}, True),  # as pandas writes booleans
        ("binary", {"type": "category", "categories": ["0.0", "1.0"]}, 1),
        ("binary", {"type": "int", "min": 0, "max": 1}, "true"),
    ],
)
def test_a_positive_class_training_would_accept_is_accepted(task: str, label: dict[str, Any], positive: Any) -> None:
    """The check compares classes as training does (1, 1.0, "1", True and "true" are one class), binary only."""
    document = _fraud_with()
    document["task"] = task
    document["data"]["columns"] = [
        c if c["name"] != document["data"]["label"] else {"name": c["name"], **label}
        for c in document["data"]["columns"]
    ]
    if positive is None:
        document["data"].pop("positive_class", None)
    else:
        document["data"]["positive_class"] = positive
    parse_spec(document, "fraud.yaml")


def test_yaml_merge_keys_still_work_and_a_repeated_key_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8")
    merged = text.replace("    depth: {values: [2, 3]}", "    depth: &d {values: [2, 3]}\n    grad_accum: {<<: *d}")
    (tmp_path / "fraud.yaml").write_text(merged, encoding="utf-8")
    assert load_spec(tmp_path / "fraud.yaml").training.search_space["grad_accum"].values == [2, 3]
    (tmp_path / ".fraud.yml").write_text("tool: settings\n", encoding="utf-8")  # a dotfile is not a spec
    assert list(load_specs(tmp_path)) == ["fraud"]


def test_the_spec_reads_label_values_as_training_does() -> None:
    """shared/spec.py keeps its own copy of training_jobs' label spelling (the jobs ship without shared/): the
    positive_class check must agree with what training will accept."""
    from shared.spec import label_key
    from training_jobs.contract import canonical_label

    values: list[object] = [1, 0, 1.0, 2.5, "1", "1.0", " 1 ", True, False, "true", "False", "fraud", " yes "]
    values += ["nan", "1e3", 2**53 + 1]
    for value in values:
        assert label_key(value) == canonical_label(value), value


def test_validation_counts_label_classes_as_training_reads_them() -> None:
    """shared.spec.label_class (validation's reading of a batch's label classes) is a copy of training's
    Contract.label_key, for every label type: a batch validation passes must be one training can take."""
    from shared.spec import label_class
    from training_jobs.contract import parse_contract

    values: list[object] = [1, 0, 1.0, 2.5, "1", "1.0", "01", " 1 ", True, False, "true", "False", "yes", " yes"]
    values += ["N", "maybe", "nan", "1e3", "", "Ja", 2**53 + 1, -(2**53) - 1, float(2**60)]
    for kind in ("string", "category", "bool", "int", "float"):
        columns = [{"name": "x", "type": "float"}, {"name": "y", "type": kind}]
        contract = parse_contract({"columns": columns, "label": "y", "positive_class": 1, "key": None})
        for value in values:
            assert label_class(value, kind) == contract.label_key(value), (kind, value)


def test_unquoted_category_codes_are_refused_with_how_to_quote_them() -> None:
    """YAML reads [010, 011] as 8 and 9 (octal) and [01, 02] as 1 and 2: taking the numbers as the codes would
    turn the data's "01" into an unseen category, so the spec asks for the codes as the data spells them."""
    document = _fraud_with()
    merchant = next(c for c in document["data"]["columns"] if c["name"] == "merchant_category")
    merchant["categories"] = yaml.safe_load("[010, 011]")
    with pytest.raises(SpecError) as refused:
        parse_spec(document, "fraud.yaml")
    assert "categories[0]=8 should be a valid string" in str(refused.value)
    assert 'quote each code as the data spells it, e.g. ["01", "02"]' in str(refused.value)


def test_validation_and_training_declare_the_same_multiclass_classes() -> None:
    """Both read a multiclass label's classes from the spec (the jobs ship without shared/, so each has its own
    copy): validation reports a declared class missing from a batch, training gives it an output. They must agree,
    and with the spec's own reading, which says what a per-class guardrail may name (promotion.guardrails[].class)."""
    from shared.spec import ColumnSpec, declared_classes, label_key
    from shared.validation import _declared_classes as validated
    from training_jobs.contract import parse_contract
    from training_jobs.data import _declared_classes as trained

    for label in (
        {"type": "category", "categories": ["billing", "sales", "abuse"]},
        {"type": "int", "min": 0, "max": 3},
        {"type": "int", "min": 2, "max": 9},
        {"type": "int", "min": 0, "max": 10**6},  # too many to be classes: neither declares any
        {"type": "int", "min": None, "max": 5},
        {"type": "float", "min": 0, "max": 1},
    ):
        column = {
            "name": "y",
            "nullable": False,
            "feature": True,
            "min": None,
            "max": None,
            "categories": None,
            **label,
        }
        spec_column = ColumnSpec.model_validate({k: v for k, v in column.items() if v is not None})
        feature = {"name": "x", "type": "float", "nullable": True, "feature": True, "min": None, "max": None}
        job_column = parse_contract({"columns": [feature, column], "label": "y"}).column("y")
        assert set(validated(spec_column)) == set(trained(job_column) or []), label
        assert {label_key(c) for c in declared_classes(spec_column) or []} == set(trained(job_column) or []), label


@pytest.mark.parametrize(("text", "says"), [("", "an empty document"), ("- a\n- b\n", "a list"), ("fraud\n", "a line")])
def test_a_spec_that_is_not_a_mapping_says_what_it_is_in_words(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=f"must be a YAML mapping \\(name:, data:, ...\\), not {says}"):
        load_spec(tmp_path / "fraud.yaml")
