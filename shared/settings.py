"""Process settings, read from the environment once at start-up.

In Azure they are Function App settings (set by ``infra/``); locally they come
from the environment or from ``local.settings.json``'s ``Values`` (the same file
Core Tools reads; ``local.settings.json.example`` lists every one). A missing or
malformed setting fails at start-up with its name and an example value.

Storage follows the Functions convention for ``AzureWebJobsStorage``: either a
connection string (``UseDevelopmentStorage=true`` for Azurite) or identity-based
``AzureWebJobsStorage__blobServiceUri`` / ``__tableServiceUri`` / ``__queueServiceUri``
(or ``__accountName``) with ``__credential=managedidentity`` and ``__clientId``.
Perennial keeps its own containers and tables in that same account.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

Platform = Literal["local", "azureml"]

#: Every setting the code reads, with an example value. infra/ must set the same names
#: (tests/infra checks both directions); local.settings.json.example lists them too.
SETTINGS: dict[str, str] = {
    "PERENNIAL_PLATFORM": "local",
    "PERENNIAL_MODELS_DIR": "models",
    "PERENNIAL_STATE_DIR": ".perennial",
    "PERENNIAL_LOG_FORMAT": "json",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AzureWebJobsStorage__accountName": "stperennialabc123",
    "AzureWebJobsStorage__blobServiceUri": "https://stperennialabc123.blob.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://stperennialabc123.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://stperennialabc123.table.core.windows.net",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000000",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-perennial-dev",
    "AZUREML_WORKSPACE_NAME": "mlw-perennial-dev",
    "PERENNIAL_EVENTGRID_ENDPOINT": "https://evgt-perennial.westeurope-1.eventgrid.azure.net/api/events",
    "PERENNIAL_EVENTGRID_KEY": "(local only; Azure uses the managed identity)",
    # When the schedule timer checks every model's age, live performance and input drift (NCRONTAB with
    # seconds, UTC): hourly by default. It asks for at most one retrain per model per hour.
    "PERENNIAL_RETRAIN_SCHEDULE": "0 0 * * * *",
    # Appended to every model's online endpoint name as '-<suffix>' (1-6 lowercase letters or digits). Azure ML
    # endpoint names are unique within a region across every tenant (the scoring URL is <name>.<region>...), so
    # infra/ sets a piece of the deployment's resource token: two environments, or a stranger's 'fraud-ep', never
    # clash. Unset (locally): the spec's names as they are.
    "PERENNIAL_ENDPOINT_SUFFIX": "k3x9q2",
}

#: The schedule timer's default NCRONTAB (hourly, on the hour).
DEFAULT_RETRAIN_SCHEDULE = "0 0 * * * *"
_NCRONTAB_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")
_NCRONTAB_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")
_NCRONTAB_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))

#: Settings that only make sense on a laptop; infra/ does not set them in Azure.
LOCAL_ONLY: frozenset[str] = frozenset(
    {"PERENNIAL_EVENTGRID_KEY", "PERENNIAL_STATE_DIR", "PERENNIAL_LOG_FORMAT", "AzureWebJobsStorage"}
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_AZURITE = "UseDevelopmentStorage=true"
_ENDPOINT_SUFFIX = re.compile(r"^[a-z0-9]{1,6}$")  # shared.spec.ENDPOINT_SUFFIX_MAX: spec endpoints leave room


class SettingsError(RuntimeError):
    """One or more settings are missing or malformed; each problem names the setting and an example."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


def _problem(name: str, what: str) -> str:
    sep = "" if what.startswith("=") else " "
    return f"{name}{sep}{what} (example: {name}={SETTINGS[name]})"


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: a connection string, or service URIs + a credential."""

    connection_string: str | None
    blob_uri: str | None
    table_uri: str | None
    queue_uri: str | None
    client_id: str | None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    @property
    def is_azurite(self) -> bool:
        cs = self.connection_string or ""
        return cs.strip().rstrip(";") == _AZURITE or "127.0.0.1" in cs or "localhost" in cs


@dataclass(frozen=True)
class AzureMLSettings:
    subscription_id: str
    resource_group: str
    workspace_name: str
    client_id: str | None


@dataclass(frozen=True)
class EventGridSettings:
    endpoint: str
    key: str | None


@dataclass(frozen=True)
class Settings:
    platform: Platform
    models_dir: Path
    state_dir: Path
    log_format: Literal["json", "text"]
    storage: StorageSettings
    azureml: AzureMLSettings | None
    eventgrid: EventGridSettings | None
    in_azure: bool
    retrain_schedule: str = DEFAULT_RETRAIN_SCHEDULE
    endpoint_suffix: str | None = None

    def describe(self) -> dict[str, object]:
        """A secret-free summary for /api/health and logs."""
        return {
            "platform": self.platform,
            "models_dir": str(self.models_dir),
            "storage": "identity"
            if self.storage.uses_identity
            else ("azurite" if self.storage.is_azurite else "connection-string"),
            "azureml_workspace": self.azureml.workspace_name if self.azureml else None,
            "eventgrid": "configured" if self.eventgrid else "local",
        }


def load_local_settings(path: str | Path = "local.settings.json") -> dict[str, str]:
    """The ``Values`` of a Core Tools ``local.settings.json`` (empty when the file is absent)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError([f"{path}: is not valid JSON ({exc}); compare with local.settings.json.example"]) from None
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise SettingsError(
            [f"{path}: 'Values' must be an object of string settings (see local.settings.json.example)"]
        )
    return dict(values)


def apply_local_settings(path: str | Path = "local.settings.json", env: dict[str, str] | None = None) -> None:
    """Copy ``local.settings.json`` values into the environment without overriding what is set (as Core Tools does)."""
    target = os.environ if env is None else env
    for name, value in load_local_settings(path).items():
        target.setdefault(name, value)


def _url(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        problems.append(_problem(name, f"={value!r} is not an http(s) URL"))
        return None
    return value.rstrip("/")


def _storage(env: Mapping[str, str], platform: Platform, problems: list[str]) -> StorageSettings:
    prefix = "AzureWebJobsStorage"
    connection = env.get(prefix, "").strip() or None
    client_id = env.get(f"{prefix}__clientId", "").strip() or None
    if client_id is not None and not _GUID.match(client_id):
        problems.append(_problem(f"{prefix}__clientId", f"={client_id!r} is not a GUID"))
    account = env.get(f"{prefix}__accountName", "").strip()
    uris = {
        kind: _url(env, f"{prefix}__{kind}ServiceUri", problems)
        or (f"https://{account}.{kind}.core.windows.net" if account else None)
        for kind in ("blob", "table", "queue")
    }
    if connection is not None:
        if connection != _AZURITE and "AccountName=" not in connection and "BlobEndpoint=" not in connection:
            problems.append(_problem(prefix, "is not a storage connection string"))
        return StorageSettings(connection, None, None, None, client_id)
    if uris["blob"] and uris["table"]:
        return StorageSettings(None, uris["blob"], uris["table"], uris["queue"], client_id)
    if platform == "local":
        # Local runs default to Azurite on its standard ports.
        return StorageSettings(_AZURITE, None, None, None, None)
    problems.append(_problem(prefix, "is not set, nor are AzureWebJobsStorage__blobServiceUri/__tableServiceUri"))
    return StorageSettings(None, None, None, None, None)


def storage_settings(env: Mapping[str, str]) -> StorageSettings:
    """The storage account ``AzureWebJobsStorage`` names (Azurite when it is unset), for tools outside the app
    such as ``perennial upload``; raise :class:`SettingsError` on a fault."""
    problems: list[str] = []
    storage = _storage(env, "local", problems)
    if problems:
        raise SettingsError(problems)
    return storage


def _azureml(env: Mapping[str, str], problems: list[str]) -> AzureMLSettings:
    values = {
        name: env.get(name, "").strip()
        for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")
    }
    for name, value in values.items():
        if not value:
            problems.append(_problem(name, "is required when PERENNIAL_PLATFORM=azureml"))
    subscription = values["AZURE_SUBSCRIPTION_ID"]
    if subscription and not _GUID.match(subscription):
        problems.append(_problem("AZURE_SUBSCRIPTION_ID", f"={subscription!r} is not a GUID"))
    client_id = env.get("AZURE_CLIENT_ID", "").strip() or None
    if client_id is not None and not _GUID.match(client_id):
        problems.append(_problem("AZURE_CLIENT_ID", f"={client_id!r} is not a GUID"))
    return AzureMLSettings(subscription, values["AZURE_RESOURCE_GROUP"], values["AZUREML_WORKSPACE_NAME"], client_id)


def _schedule(env: Mapping[str, str], problems: list[str]) -> str:
    """The retrain timer's NCRONTAB: six fields (second minute hour day month day-of-week)."""
    value = " ".join(env.get("PERENNIAL_RETRAIN_SCHEDULE", "").split()) or DEFAULT_RETRAIN_SCHEDULE
    fields = value.split(" ")
    if len(fields) != 6 or not all(_NCRONTAB_FIELD.match(f) for f in fields):
        problems.append(
            _problem(
                "PERENNIAL_RETRAIN_SCHEDULE",
                f"={value!r} is not a six-field NCRONTAB expression (second minute hour day month day-of-week; "
                "TimeSpan values are not supported on Flex Consumption)",
            )
        )
        return DEFAULT_RETRAIN_SCHEDULE
    for name, (low, high), field in zip(_NCRONTAB_NAMES, _NCRONTAB_RANGES, fields, strict=True):
        numbers = [int(n) for n in re.findall(r"\d+", field)]
        steps = [int(n) for n in re.findall(r"/(\d+)", field)]
        values = [n for n in numbers if n not in steps] if steps else numbers
        if any(not low <= n <= high for n in values) or any(n == 0 for n in steps):
            problems.append(
                _problem(
                    "PERENNIAL_RETRAIN_SCHEDULE",
                    f"={value!r}: the {name} field {field!r} is outside {low}-{high}"
                    + (" (a step must be at least 1)" if any(n == 0 for n in steps) else ""),
                )
            )
            return DEFAULT_RETRAIN_SCHEDULE
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``); raise :class:`SettingsError` on any fault."""
    env = os.environ if env is None else env
    problems: list[str] = []

    platform_value = env.get("PERENNIAL_PLATFORM", "local").strip().lower() or "local"
    if platform_value not in ("local", "azureml"):
        problems.append(_problem("PERENNIAL_PLATFORM", f"={platform_value!r} must be 'local' or 'azureml'"))
        platform_value = "local"
    platform: Platform = "azureml" if platform_value == "azureml" else "local"

    log_format = env.get("PERENNIAL_LOG_FORMAT", "json").strip().lower() or "json"
    if log_format not in ("json", "text"):
        problems.append(_problem("PERENNIAL_LOG_FORMAT", f"={log_format!r} must be 'json' or 'text'"))
        log_format = "json"

    storage = _storage(env, platform, problems)
    azureml = _azureml(env, problems) if platform == "azureml" else None

    endpoint = _url(env, "PERENNIAL_EVENTGRID_ENDPOINT", problems)
    key = env.get("PERENNIAL_EVENTGRID_KEY", "").strip() or None
    eventgrid = EventGridSettings(endpoint, key) if endpoint else None
    if platform == "azureml" and eventgrid is None:
        problems.append(_problem("PERENNIAL_EVENTGRID_ENDPOINT", "is required when PERENNIAL_PLATFORM=azureml"))
    retrain_schedule = _schedule(env, problems)
    endpoint_suffix = env.get("PERENNIAL_ENDPOINT_SUFFIX", "").strip() or None
    if endpoint_suffix is not None and not _ENDPOINT_SUFFIX.match(endpoint_suffix):
        problems.append(
            _problem("PERENNIAL_ENDPOINT_SUFFIX", f"={endpoint_suffix!r} must be 1-6 lowercase letters or digits")
        )

    if problems:
        raise SettingsError(problems)
    return Settings(
        platform=platform,
        models_dir=Path(env.get("PERENNIAL_MODELS_DIR", "models") or "models"),
        state_dir=Path(env.get("PERENNIAL_STATE_DIR", ".perennial") or ".perennial"),
        log_format="text" if log_format == "text" else "json",
        storage=storage,
        azureml=azureml,
        eventgrid=eventgrid,
        # App Service sets both on every plan; either alone says "in Azure" (Flex's set is not documented).
        in_azure=bool(env.get("WEBSITE_INSTANCE_ID") or env.get("WEBSITE_SITE_NAME")),
        retrain_schedule=retrain_schedule,
        endpoint_suffix=endpoint_suffix,
    )
