"""`perennial feedback`: label files checked against the model, then put in feedback/<model>/ where the live checks
read them (Azurite here), and its refusals."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner, Result

from perennial_cli.main import app
from shared.settings import StorageSettings
from shared.spec import load_specs
from shared.storage import BlobStore

ROOT = Path(__file__).resolve().parents[2]
MODELS = str(ROOT / "models")


def perennial(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"AzureWebJobsStorage": None, "COLUMNS": "200", **env})


@pytest.fixture(autouse=True)
def no_storage_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported storage settings must not decide where these tests upload."""
    for name in list(os.environ):
        if name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)


@pytest.mark.azurite
def test_labels_go_where_the_live_checks_read_them(azurite_connection_string: str, tmp_path: Path) -> None:
    env = {"AzureWebJobsStorage": azurite_connection_string}
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    if not service.get_container_client("feedback").exists():
        service.create_container("feedback")
    labels = tmp_path / "chargebacks.csv"
    labels.write_text("request_id,label,row\nr1,1,0\nr1,0,1\n,1,0\nr2,true,\n")
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = perennial(env, "feedback", str(labels), "--model", "fraud", "--folder", "2026/12", "--models", MODELS)
    assert result.exit_code == 0, result.output
    assert (
        "3 label(s) (1 unreadable row(s) skipped: no request_id or label, or a bad row) → feedback/fraud/2026/12/"
        in (" ".join(result.output.split()))
    )
    store = BlobStore.from_settings(
        StorageSettings(azurite_connection_string, None, None, None, None), load_specs(ROOT / "models")
    )
    read = [
        (f.request_id, f.row, f.label)
        for f in store.iter_feedback("fraud", before, datetime.now(UTC) + timedelta(seconds=5))
    ]
    assert read == [("r1", 0, "1"), ("r1", 1, "0"), ("r2", 0, "true")]
    again = perennial(env, "feedback", str(labels), "--model", "fraud", "--folder", "2026/12", "--models", MODELS)
    assert again.exit_code == 1
    assert "feedback/fraud/2026/12/chargebacks.csv exists already" in again.output
    assert "--overwrite" in again.output
    replaced = perennial(
        env, "feedback", str(labels), "-m", "fraud", "--folder", "2026/12", "--overwrite", "--models", MODELS
    )
    assert replaced.exit_code == 0, replaced.output
    # Without --folder: the upload's UTC day, which lets the live checks skip older days' folders.
    dated = perennial(env, "feedback", str(labels), "-m", "fraud", "--overwrite", "--models", MODELS)
    assert dated.exit_code == 0, dated.output
    day = "by-upload-day/" + datetime.now(UTC).strftime("%Y-%m-%d")
    assert f"feedback/fraud/{day}/chargebacks.csv" in " ".join(dated.output.split())
    assert service.get_blob_client("feedback", f"fraud/{day}/chargebacks.csv").exists()


def test_labels_the_live_checks_would_miscount_are_refused_before_storage_is_touched(tmp_path: Path) -> None:
    nowhere = {"AzureWebJobsStorage": None}
    state = ["--state", str(tmp_path / "no-stack"), "--models", MODELS]
    spelt = tmp_path / "spelt.csv"
    spelt.write_text("request_id,label\n" + "".join(f"r{i},{'yes' if i % 3 else 'no'}\n" for i in range(9)))
    refused = perennial(nowhere, "feedback", str(spelt), "--model", "fraud", *state)
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "'yes' (6 row(s)): neither class of the label (1 or 0): counted as negative" in text
    assert "'no' (3 row(s))" in text
    assert "write the positive class as 1" in text
    headless = tmp_path / "headless.csv"
    headless.write_text("r1,1\nr2,0\n")
    no_header = perennial(nowhere, "feedback", str(headless), "--model", "fraud", *state)
    assert no_header.exit_code == 2
    assert "no request_id and label columns" in no_header.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"request_id": "r1"}\n')
    assert perennial(nowhere, "feedback", str(empty), "--model", "fraud", *state).exit_code == 2
    rows = tmp_path / "rows.csv"
    rows.write_text("request_id,label,row\nr1,1,abc\nr2,0,-3\n")  # labelled, but at no row of a request
    bad_rows = perennial(nowhere, "feedback", str(rows), "--model", "fraud", *state)
    assert bad_rows.exit_code == 2
    text = " ".join(bad_rows.output.split())
    assert "holds no label: all 2 row(s) are unreadable" in text
    assert "empty or a whole number from 0" in text, "the row column is named as a cause"
    (tmp_path / "labels.txt").write_text("request_id,label\nr1,1\n")
    wrong_kind = perennial(nowhere, "feedback", str(tmp_path / "labels.txt"), "--model", "fraud", *state)
    assert wrong_kind.exit_code == 2
    assert "not a .csv or .jsonl file" in wrong_kind.output
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("request_id,label\nticket 42,1\nok-1,0\n")
    unrecordable = perennial(nowhere, "feedback", str(spaced), "--model", "fraud", *state)
    assert unrecordable.exit_code == 2
    assert "1 request id(s) the endpoint cannot have recorded, e.g. 'ticket 42'" in " ".join(
        unrecordable.output.split()
    )
    unknown = perennial(nowhere, "feedback", str(spelt), "--model", "nope", *state)
    assert unknown.exit_code == 2
    assert "no model spec named 'nope'" in unknown.output
    good = tmp_path / "good.jsonl"
    good.write_text('{"request_id": "r1", "label": 1}\n{"request_id": "r2", "label": false}\n')
    no_storage = perennial(nowhere, "feedback", str(good), "--model", "fraud", *state)
    assert no_storage.exit_code == 1, "good labels get as far as looking for storage"
    assert "no storage to upload to" in no_storage.output


def test_a_multiclass_label_spelt_by_its_value_is_refused_with_each_class_index(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["task"] = "multiclass"
    document["data"].pop("positive_class", None)
    for column in document["data"]["columns"]:
        if column["name"] == document["data"]["label"]:
            column.clear()
            column.update({"name": "is_fraud", "type": "int", "nullable": False, "min": 0, "max": 10})
    models = tmp_path / "models"
    models.mkdir()
    (models / "fraud.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,2\nr2,11\n")
    refused = perennial(
        {}, "feedback", str(labels), "--model", "fraud", "--models", str(models), "--state", str(tmp_path)
    )
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "'11' (1 row(s)): no class has index 11 (11 classes)" in text
    assert "0=0, 1=1, 2=10, 3=2" in text  # indexes follow training's class order, not the values


def test_the_cli_and_the_scoring_script_agree_on_which_request_ids_are_kept() -> None:
    """`perennial score` and `perennial feedback` refuse the ids score.py would replace by a new one (it ships
    without perennial_cli/, so each keeps its rule), and the local scoring server keeps the same ones: a label
    `perennial feedback` refuses was once one the local endpoint had recorded (``a@b``)."""
    from perennial_cli.score import REQUEST_ID
    from shared.platform.scoring import valid_request_id
    from training_jobs.score import _REQUEST_ID

    candidates = ("ticket-42", "a.b:c_d", "x" * 128, "x" * 129, "ticket 42", "tïcket", "", "a/b", "a@b", "a+b=")
    for candidate in candidates:
        kept = bool(REQUEST_ID.fullmatch(candidate))
        assert kept == bool(_REQUEST_ID.match(candidate)), candidate
        assert kept == valid_request_id(candidate), candidate
