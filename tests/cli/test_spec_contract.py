"""``perennial spec contract`` writes the contract.json jobs read; ``perennial spec check`` takes a directory."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from perennial_cli.spec import app
from shared.jobs import stage_azure, stage_local
from shared.spec import load_spec
from shared.storage import Manifest
from training_jobs.contract import parse_contract

ROOT = Path(__file__).resolve().parents[2]
FRAUD = ROOT / "models" / "fraud.yaml"
runner = CliRunner()


class RecordingStore:
    """Just what ``stage_azure`` calls: JSON documents are kept, not uploaded."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}

    def put_json(self, container: str, name: str, document: Any) -> str:
        self.documents[name] = document
        return f"https://blob.example/{container}/{name}"

    def container(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(url=f"https://blob.example/{name}")


def test_contract_prints_exactly_what_the_platform_stages_for_a_job(tmp_path: Path) -> None:
    result = runner.invoke(app, ["contract", str(FRAUD)])
    assert result.exit_code == 0, result.output
    spec = load_spec(FRAUD)
    manifest = Manifest(model="fraud", run_id="fraud-0000000000000001", blobs=())

    staged = stage_local(RecordingStore(), manifest, spec, tmp_path)  # type: ignore[arg-type]  # no blobs to read
    assert result.stdout == Path(staged.contract.path).read_text(encoding="utf-8") + "\n"

    store = RecordingStore()
    stage_azure(store, manifest, spec)  # type: ignore[arg-type]
    (uploaded,) = [doc for name, doc in store.documents.items() if name.endswith(".contract.json")]
    assert json.loads(result.stdout) == json.loads(json.dumps(uploaded, default=str))


def test_contract_output_file_is_what_train_py_reads(tmp_path: Path) -> None:
    target = tmp_path / "contract.json"
    result = runner.invoke(app, ["contract", str(FRAUD), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote {target}" in " ".join(result.stderr.split())
    contract = parse_contract(json.loads(target.read_text(encoding="utf-8")), str(target))
    assert contract.label == "is_fraud"
    assert {c.name for c in contract.feature_columns} == {c.name for c in load_spec(FRAUD).data.feature_columns}


def test_contract_of_a_bad_spec_or_to_an_unwritable_file_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["contract", str(tmp_path / "missing.yaml")], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "no such file" in result.stderr
    result = runner.invoke(app, ["contract", str(FRAUD), "-o", str(tmp_path / "no" / "dir" / "c.json")])
    assert result.exit_code == 1
    assert "cannot write it" in result.stderr


def test_contract_help_gives_an_example() -> None:
    result = runner.invoke(app, ["contract", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "perennial spec contract models/fraud.yaml -o contract.json" in result.output
    assert "--output" in result.output
    assert "-o" in result.output


def test_check_accepts_a_directory_and_checks_every_yaml_in_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(ROOT / "models")], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "fraud.yaml: model 'fraud'" in result.stdout

    (tmp_path / "fraud.yaml").write_text(FRAUD.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("name: broken\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "fraud.yaml: model 'fraud'" in result.stdout
    assert "broken.yaml" in result.stderr


def test_check_refuses_two_models_on_one_endpoint_as_the_host_does(tmp_path: Path) -> None:
    text = FRAUD.read_text(encoding="utf-8")
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "fraud2.yaml").write_text(text.replace("name: fraud\n", "name: fraud2\n", 1), encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert "fraud2.yaml: rollout.endpoint='fraud-ep' is also fraud's endpoint" in result.stderr
    assert "give each model its own endpoint" in result.stderr


def test_check_refuses_a_yml_spec_as_the_host_does(tmp_path: Path) -> None:
    """The host reads *.yaml only and refuses to start beside a *.yml: a check that passed one sent people round."""
    (tmp_path / "fraud.yml").write_text(FRAUD.read_text(encoding="utf-8"), encoding="utf-8")
    refusal = f"{tmp_path / 'fraud.yml'}: specs are read from *.yaml files only, so this one would be ignored"
    for target in (tmp_path / "fraud.yml", tmp_path):
        result = runner.invoke(app, ["check", str(target)], env={"COLUMNS": "400"})
        assert result.exit_code == 1, result.output
        assert refusal in result.stderr
        assert "(rename it to fraud.yaml)" in result.stderr


def test_check_of_a_mistyped_path_says_it_is_not_there_and_a_yml_beside_its_yaml_is_not_to_be_renamed(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "modles")], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "no such file" in result.stderr
    assert "rename" not in result.stderr
    (tmp_path / "fraud.yaml").write_text(FRAUD.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "fraud.yml").write_text(FRAUD.read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "400"})
    assert "(merge it into fraud.yaml or delete it)" in result.stderr, "a rename would overwrite the real spec"


def test_check_names_the_cross_field_problems_beside_the_field_faults(tmp_path: Path) -> None:
    """One check names every problem: a label that is no column, or steps that do not rise, are not held back until
    a wrong value elsewhere (here in the same sections) is fixed."""
    text = FRAUD.read_text(encoding="utf-8")
    for good, bad in [("  min_rows: 1000", "  min_rows: -5"), ("  primary_metric: pr_auc", "  primary_metric: prauc"),
                      ("\n  bake_minutes: 30", "\n  bake_minutse: 30"), ("  label: is_fraud\n", "  label: is_fraudd\n"),
                      ("  steps: [10, 50, 100]", "  steps: [10, 50, 40]")]:  # fmt: skip
        assert good in text
        text = text.replace(good, bad, 1)
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path / "fraud.yaml")], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    problems = [line.split(": ", 1)[1] for line in result.stderr.splitlines()]
    assert [p.split("=", 1)[0].split(" ", 1)[0] for p in problems] == [
        "data.min_rows",
        "promotion.primary_metric",
        "rollout.bake_minutse",
        "data.label",
        "rollout.steps[2]",
        "rollout.steps[2]",
    ], problems


def test_check_says_nothing_of_a_value_that_only_stands_in_for_a_faulty_one(tmp_path: Path) -> None:
    """A faulty field is judged past with its default standing in: a cross-field problem about that stand-in would
    be false, so one that names the field is not said."""
    text = FRAUD.read_text(encoding="utf-8")
    for good, bad in [("    quiet_seconds: 120", "    quiet_seconds: 1000"),  # fits the spec's own max wait…
                      ("    max_wait_seconds: 900", "    max_wait_seconds: 1200s")]:  # …which is at fault  # fmt: skip
        assert good in text
        text = text.replace(good, bad, 1)
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path / "fraud.yaml")], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "triggers.debounce.max_wait_seconds='1200s'" in result.stderr
    assert "exceeds max_wait_seconds=900" not in result.stderr, "the default standing in is not the user's value"


@pytest.mark.parametrize(
    ("changes", "said", "not_said"),
    [
        # A mistyped task lets the binary default stand in: the positive class is no problem of the user's.
        ([("task: binary", "task: multiclas"), ("  positive_class: 1\n", "  positive_class: 7\n")],
         "task='multiclas'", "data.positive_class"),
        # A faulty entry lets the default train.py stand in: whether it knows the options is not the question.
        ([("  entry: training_jobs/train.py", "  entry: [my_train.py]"), ("    epochs: 8", "    my_opt: 8")],
         "training.entry=['my_train.py']", "training.params.my_opt"),
    ],
    ids=["task", "entry"],
)  # fmt: skip
def test_check_leaves_out_a_problem_that_reads_a_faulty_field(
    tmp_path: Path, changes: list[tuple[str, str]], said: str, not_said: str
) -> None:
    text = FRAUD.read_text(encoding="utf-8")
    for good, bad in changes:
        assert good in text
        text = text.replace(good, bad, 1)
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path / "fraud.yaml")], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert said in result.stderr
    assert not_said not in result.stderr, result.stderr


def test_check_names_a_problem_beside_a_fault_in_a_neighbouring_field(tmp_path: Path) -> None:
    """A fault in search_space.lr.max says nothing of dropout's own range: both are named."""
    text = FRAUD.read_text(encoding="utf-8")
    for good, bad in [("    lr: {min: 0.0003, max: 0.01, log: true}", "    lr: {min: 0.0003, max: lots, log: true}"),
                      ("    dropout: {values: [0.0, 0.1]}", "    dropout: {min: 0.3, max: 0.1}")]:  # fmt: skip
        assert good in text
        text = text.replace(good, bad, 1)
    (tmp_path / "fraud.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path / "fraud.yaml")], env={"COLUMNS": "400"})
    assert "training.search_space.lr.max='lots'" in result.stderr
    assert "training.search_space.dropout.max=0.1 is below min=0.3" in result.stderr


def test_check_of_a_directory_without_specs_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert f"{tmp_path}: no *.yaml spec in this directory" in result.stderr


def test_check_help_says_a_directory_is_accepted() -> None:
    result = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    assert "a directory checks every *.yaml in it" in " ".join(result.output.split())
