"""Process settings: defaults for local runs, and start-up errors that name the setting and an example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import SETTINGS, SettingsError, apply_local_settings, load_settings

GUID = "11111111-2222-3333-4444-555555555555"


def test_local_defaults_use_azurite() -> None:
    settings = load_settings({})
    assert settings.platform == "local"
    assert settings.storage.is_azurite
    assert settings.eventgrid is None
    assert settings.azureml is None


def test_azureml_needs_workspace_settings_and_names_each_one() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PERENNIAL_PLATFORM": "azureml", "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    text = str(caught.value)
    for name in (
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZUREML_WORKSPACE_NAME",
        "PERENNIAL_EVENTGRID_ENDPOINT",
    ):
        assert f"{name} is required" in text
        assert f"example: {name}=" in text


def test_identity_based_storage_from_account_name() -> None:
    settings = load_settings(
        {
            "PERENNIAL_PLATFORM": "azureml",
            "AzureWebJobsStorage__accountName": "stperennial",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": GUID,
            "AZURE_SUBSCRIPTION_ID": GUID,
            "AZURE_RESOURCE_GROUP": "rg",
            "AZUREML_WORKSPACE_NAME": "ws",
            "PERENNIAL_EVENTGRID_ENDPOINT": "https://topic.westeurope-1.eventgrid.azure.net/api/events",
        }
    )
    assert settings.storage.uses_identity
    assert settings.storage.blob_uri == "https://stperennial.blob.core.windows.net"
    assert settings.storage.table_uri == "https://stperennial.table.core.windows.net"
    assert settings.azureml is not None
    assert settings.azureml.workspace_name == "ws"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PERENNIAL_PLATFORM": "sagemaker"}, "PERENNIAL_PLATFORM='sagemaker' must be 'local' or 'azureml'"),
        (
            {"PERENNIAL_EVENTGRID_ENDPOINT": "topic.example"},
            "PERENNIAL_EVENTGRID_ENDPOINT='topic.example' is not an http(s) URL",
        ),
        ({"AzureWebJobsStorage": "nonsense"}, "AzureWebJobsStorage is not a storage connection string"),
        ({"PERENNIAL_LOG_FORMAT": "xml"}, "PERENNIAL_LOG_FORMAT='xml' must be 'json' or 'text'"),
        ({"AzureWebJobsStorage__clientId": "me"}, "AzureWebJobsStorage__clientId='me' is not a GUID"),
        (
            {"PERENNIAL_RETRAIN_SCHEDULE": "0 99 * * * *"},
            "PERENNIAL_RETRAIN_SCHEDULE='0 99 * * * *': the minute field '99' is outside 0-59",
        ),
        ({"PERENNIAL_RETRAIN_SCHEDULE": "0 0 8-25 * * *"}, "the hour field '8-25' is outside 0-23"),
        ({"PERENNIAL_RETRAIN_SCHEDULE": "0 */0 * * * *"}, "(a step must be at least 1)"),
        (
            {"PERENNIAL_ENDPOINT_SUFFIX": "Prod-1"},
            "PERENNIAL_ENDPOINT_SUFFIX='Prod-1' must be 1-6 lowercase letters or digits",
        ),
        ({"PERENNIAL_ENDPOINT_SUFFIX": "abcdefg"}, "PERENNIAL_ENDPOINT_SUFFIX='abcdefg' must be 1-6"),
    ],
)
def test_malformed_setting_is_named_with_an_example(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert fragment in str(caught.value)
    assert "(example: " in str(caught.value)


@pytest.mark.parametrize("schedule", ["0 0 * * * *", "0 */15 9-17 * * MON-FRI", "30 5 2 1,15 JAN-DEC 0"])
def test_a_valid_retrain_schedule_is_kept(schedule: str) -> None:
    assert load_settings({"PERENNIAL_RETRAIN_SCHEDULE": schedule}).retrain_schedule == schedule


def test_the_endpoint_suffix_makes_every_endpoint_name_this_deployments_own() -> None:
    """Azure ML endpoint names are unique within a region across tenants: 'fraud-ep' may be taken by a stranger
    or by the same app's other environment, so in Azure each endpoint carries the deployment's suffix."""
    from shared.runtime import with_endpoint_suffix
    from shared.spec import AZURE_ML_NAME, AZURE_ML_NAME_MAX, ENDPOINT_NAME_MAX, load_specs

    specs = load_specs(Path(__file__).resolve().parents[2] / "models")
    suffix = load_settings({"PERENNIAL_ENDPOINT_SUFFIX": "k3x9q2"}).endpoint_suffix
    assert suffix == "k3x9q2"
    renamed = with_endpoint_suffix(specs, suffix)
    assert renamed["fraud"].endpoint_name == "fraud-ep-k3x9q2"
    assert renamed["fraud"].rollout.steps == specs["fraud"].rollout.steps, "nothing else changes"
    assert with_endpoint_suffix(specs, load_settings({}).endpoint_suffix) == specs, "locally: the spec's names"
    # The longest endpoint a spec may name still makes a valid Azure ML name with the longest suffix.
    longest = "e" * ENDPOINT_NAME_MAX + "-" + "9" * 6
    assert len(longest) == AZURE_ML_NAME_MAX
    assert AZURE_ML_NAME.match(longest)


def test_the_app_loads_its_specs_with_the_endpoint_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    """What every function sees (get_runtime), not only the helper: /api/health, rollouts, alerts by endpoint."""
    from shared.runtime import get_runtime

    monkeypatch.setenv("PERENNIAL_ENDPOINT_SUFFIX", "k3x9q2")
    get_runtime.cache_clear()
    try:
        assert get_runtime().spec("fraud").endpoint_name == "fraud-ep-k3x9q2"
    finally:
        monkeypatch.delenv("PERENNIAL_ENDPOINT_SUFFIX")
        get_runtime.cache_clear()


def test_local_settings_json_fills_the_environment_without_overriding(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"PERENNIAL_PLATFORM": "azureml", "X": "1"}}))
    env = {"PERENNIAL_PLATFORM": "local"}
    apply_local_settings(path, env)
    assert env == {"PERENNIAL_PLATFORM": "local", "X": "1"}


def test_example_local_settings_lists_every_setting() -> None:
    example = json.loads((Path(__file__).resolve().parents[2] / "local.settings.json.example").read_text())
    assert set(SETTINGS) <= set(example["Values"])
