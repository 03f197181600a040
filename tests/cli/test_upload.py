"""`perennial upload`: data files into landing/<model>/ of the app's storage (Azurite here), and its refusals."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner, Result

from perennial_cli.main import app
from tests.azurite import free_port

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


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    path = tmp_path / "batch 1.csv"
    path.write_text("transaction_id,amount\n1,3.5\n")
    return path


@pytest.mark.azurite
def test_a_file_lands_in_the_storage_azurewebjobsstorage_names(azurite_connection_string: str, batch: Path) -> None:
    env = {"AzureWebJobsStorage": azurite_connection_string}
    service = BlobServiceClient.from_connection_string(azurite_connection_string)
    if not service.get_container_client("landing").exists():
        service.create_container("landing")
    result = perennial(env, "upload", str(batch), "--model", "fraud", "--folder", "2026/11", "--models", MODELS)
    assert result.exit_code == 0, result.output
    blob = service.get_blob_client("landing", "fraud/2026/11/batch 1.csv")
    assert blob.download_blob().readall() == batch.read_bytes()
    assert blob.get_blob_properties().content_settings.content_type == "text/csv"
    assert "perennial runs fraud" in result.output


def test_what_cannot_be_uploaded_is_refused_before_storage_is_touched(tmp_path: Path, batch: Path) -> None:
    nowhere = {"AzureWebJobsStorage": None}
    unknown = perennial(nowhere, "upload", str(batch), "--model", "nope", "--models", MODELS)
    assert unknown.exit_code == 2
    assert "no model spec named 'nope'" in unknown.output
    assert "fraud" in unknown.output  # the known ones
    assert "--models DIR" in " ".join(unknown.output.split())  # a host started with specs of its own elsewhere
    no_models = perennial(nowhere, "upload", str(batch), "--model", "fraud", "--models", str(tmp_path / "nope"))
    assert no_models.exit_code == 2
    assert f"the models folder {tmp_path / 'nope'} does not exist" in " ".join(no_models.output.split())
    missing = perennial(nowhere, "upload", str(tmp_path / "gone.csv"), "--model", "fraud", "--models", MODELS)
    assert missing.exit_code == 2
    assert "no such file" in missing.output
    folder = perennial(nowhere, "upload", str(tmp_path), "--model", "fraud", "--models", MODELS)
    assert (folder.exit_code, f"{tmp_path}: is a directory" in folder.output) == (2, True)
    (tmp_path / "notes.txt").write_text("x")
    text = perennial(nowhere, "upload", str(tmp_path / "notes.txt"), "--model", "fraud", "--models", MODELS)
    assert text.exit_code == 2
    assert "not a .csv or .parquet file" in text.output
    (tmp_path / "empty.csv").write_bytes(b"")  # the app would skip it: no run, and no word of why
    empty = perennial(nowhere, "upload", str(tmp_path / "empty.csv"), "--model", "fraud", "--models", MODELS)
    assert (empty.exit_code, "empty.csv: the file is empty" in empty.output) == (2, True)
    unsafe = perennial(nowhere, "upload", str(batch), "--model", "fraud", "--folder", "../x", "--models", MODELS)
    assert unsafe.exit_code == 2
    assert "'..'" in unsafe.output
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / batch.name
    twin.write_text("transaction_id,amount\n2,4.5\n")
    both = perennial(nowhere, "upload", str(batch), str(twin), "--model", "fraud", "--models", MODELS)
    assert both.exit_code == 2, "the second would replace the first"
    assert "would both be landing/fraud/batch 1.csv" in both.output


def test_without_storage_it_says_where_it_looked(tmp_path: Path, batch: Path) -> None:
    result = perennial({}, "upload", str(batch), "--model", "fraud", "--models", MODELS, "--state", str(tmp_path))
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "AzureWebJobsStorage is not set" in text
    assert "perennial up" in text


def test_a_perennial_up_that_was_killed_is_not_waited_for(tmp_path: Path, batch: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    port = free_port()  # nothing listens: the `perennial up` that wrote the file is gone
    connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    (state / "storage-connection").write_text(connection + "\n")
    started = time.monotonic()
    result = perennial({}, "upload", str(batch), "--model", "fraud", "--models", MODELS, "--state", str(state))
    assert result.exit_code == 1
    assert "is gone (its Azurite does not answer)" in " ".join(result.output.split())
    assert time.monotonic() - started < 10, "no waiting through the storage SDK's retries"


def test_a_failure_with_storage_the_settings_name_says_to_check_those_settings() -> None:
    """Not "start perennial up" when AzureWebJobsStorage is set: its account, its key or the signed-in identity is
    what to check."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    from perennial_cli.upload import FROM_SETTINGS, START_HINT, storage_hint

    signed_out = storage_hint(ClientAuthenticationError("DefaultAzureCredential failed"), FROM_SETTINGS)
    assert "az login" in signed_out
    assert "Storage Blob Data Contributor" in signed_out
    unreachable = storage_hint(ServiceRequestError("name does not resolve"), FROM_SETTINGS)
    assert "check AzureWebJobsStorage" in unreachable
    assert storage_hint(ServiceRequestError("refused"), "the Azurite of `perennial up` (.perennial)") == START_HINT
