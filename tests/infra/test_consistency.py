"""infra/ agrees with the code: settings, functions, containers, tables, endpoints, compute, azd."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from tree_sitter import Node

from shared import settings as app_settings
from shared.spec import load_specs
from tests.infra import bicep
from tests.infra.bicep import BicepDoc, Unresolved
from tests.infra.conftest import INFRA, ROOT

# App settings Bicep may set that the code does not read: the Functions host reads them.
HOST_SETTINGS = frozenset(
    {
        "APPLICATIONINSIGHTS_CONNECTION_STRING",  # where the host sends telemetry
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # ...with the app identity's Entra ID token
    }
)
# Settings Flex Consumption rejects or that would bring keys back.
NEVER_IN_AZURE = frozenset({"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AzureWebJobsStorage"})

STORAGE = "AzureWebJobsStorage"
STORAGE_IDENTITY = (f"{STORAGE}__credential", f"{STORAGE}__clientId")
STORAGE_URIS = tuple(f"{STORAGE}__{kind}ServiceUri" for kind in ("blob", "queue", "table"))
STORAGE_ACCOUNT = f"{STORAGE}__accountName"


def app_settings_problems(
    infra: Mapping[str, Any], code: Mapping[str, str], local_only: frozenset[str], host: frozenset[str]
) -> list[str]:
    """Both directions: every non-local setting the code reads is set, and nothing else is."""
    problems = []
    storage_alternatives = {*STORAGE_URIS, STORAGE_ACCOUNT}
    for name in sorted(set(code) - local_only - storage_alternatives):
        if name not in infra:
            problems.append(f"{name} is read by shared/settings.py but infra/ does not set it")
    # Identity-based storage: the credential and client id, plus all three service URIs (Durable
    # Functions needs queues and tables) or the account name they derive from.
    for name in STORAGE_IDENTITY:
        if name not in infra:
            problems.append(f"{name} is not set: identity-based AzureWebJobsStorage needs it")
    if STORAGE_ACCOUNT not in infra and not all(uri in infra for uri in STORAGE_URIS):
        missing = [uri for uri in STORAGE_URIS if uri not in infra]
        problems.append(f"identity-based storage is incomplete: set {', '.join(missing)} (or {STORAGE_ACCOUNT})")
    if infra.get(f"{STORAGE}__credential") not in (None, "managedidentity"):
        problems.append(f"{STORAGE}__credential must be 'managedidentity'")
    for name in sorted(infra):
        if name in local_only or name in NEVER_IN_AZURE:
            problems.append(f"{name} must not be set in Azure (laptop-only, or rejected by Flex Consumption)")
        elif name not in code and name not in host:
            problems.append(
                f"{name} is set by infra/ but no code reads it (remove it, or document it as a host setting)"
            )
    if infra.get("PERENNIAL_PLATFORM") != "azureml":
        problems.append(f"PERENNIAL_PLATFORM is {infra.get('PERENNIAL_PLATFORM')!r}; Azure runs the azureml adapter")
    return problems


@pytest.fixture(scope="module")
def infra_settings(docs: dict[str, BicepDoc]) -> dict[str, Any]:
    doc = docs["modules/function-app.bicep"]
    configs = [r for r in doc.resources_of("Microsoft.Web/sites/config") if doc.value(r.get("name")) == "appsettings"]
    assert len(configs) == 1, "app settings must be set in exactly one sites/config 'appsettings' resource"
    values = doc.value(configs[0].get("properties"))
    assert isinstance(values, dict)
    return values


# ---------------------------------------------------------------------- app settings


def test_app_settings_match_what_the_code_reads(infra_settings: dict[str, Any]) -> None:
    assert app_settings_problems(infra_settings, app_settings.SETTINGS, app_settings.LOCAL_ONLY, HOST_SETTINGS) == []


def test_the_app_settings_bicep_sets_start_the_app_in_azureml_mode(infra_settings: dict[str, Any]) -> None:
    # Feed the settings to the real loader; values only known at deploy time get the example.
    env = {
        name: app_settings.SETTINGS.get(name, "x") if isinstance(value, Unresolved) else value
        for name, value in infra_settings.items()
    }
    loaded = app_settings.load_settings(env)
    assert loaded.platform == "azureml"
    assert loaded.storage.uses_identity
    assert loaded.storage.queue_uri is not None  # Durable Functions' task hub
    assert loaded.azureml is not None
    assert loaded.azureml.client_id is not None
    assert loaded.eventgrid is not None
    assert loaded.eventgrid.key is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("AZUREML_WORKSPACE_NAME"), "AZUREML_WORKSPACE_NAME is read by shared/settings.py"),
        (lambda s: s.pop("AzureWebJobsStorage__queueServiceUri"), "identity-based storage is incomplete"),
        (lambda s: s.pop("AzureWebJobsStorage__clientId"), "AzureWebJobsStorage__clientId is not set"),
        (lambda s: s.update(PERENNIAL_EVENTGRID_KEY="k"), "PERENNIAL_EVENTGRID_KEY must not be set in Azure"),
        (lambda s: s.update(FUNCTIONS_WORKER_RUNTIME="python"), "FUNCTIONS_WORKER_RUNTIME must not be set"),
        (lambda s: s.update(PERENNIAL_TYPO="1"), "PERENNIAL_TYPO is set by infra/ but no code reads it"),
        (lambda s: s.update(PERENNIAL_PLATFORM="local"), "Azure runs the azureml adapter"),
    ],
    ids=["missing", "partial-storage", "no-client-id", "local-only", "flex-rejects", "unknown", "local-platform"],
)
def test_the_settings_check_catches_a_drift(infra_settings: dict[str, Any], change: Any, message: str) -> None:
    changed = dict(infra_settings)
    change(changed)
    problems = app_settings_problems(changed, app_settings.SETTINGS, app_settings.LOCAL_ONLY, HOST_SETTINGS)
    assert message in " ".join(problems)


def test_the_account_name_alone_is_a_complete_storage_setting() -> None:
    code = {"AzureWebJobsStorage__accountName": "x", "PERENNIAL_PLATFORM": "local", **dict.fromkeys(STORAGE_URIS, "x")}
    infra = {"AzureWebJobsStorage__accountName": "st", "PERENNIAL_PLATFORM": "azureml"}
    infra.update({"AzureWebJobsStorage__credential": "managedidentity", "AzureWebJobsStorage__clientId": "id"})
    code.update(dict.fromkeys(STORAGE_IDENTITY, "x"))
    assert app_settings_problems(infra, code, frozenset(), frozenset()) == []


# ---------------------------------------------------------------------- Event Grid -> functions


def _event_grid_functions(app_functions: dict[str, Any]) -> set[str]:
    return {
        name
        for name, fn in app_functions.items()
        if fn.get_trigger() is not None and fn.get_trigger().get_binding_name() == "eventGridTrigger"
    }


def test_every_subscription_targets_an_event_grid_function_of_function_app(
    docs: dict[str, BicepDoc], app_functions: dict[str, Any]
) -> None:
    targets = {symbol: name for doc in docs.values() for symbol, name in bicep.function_destinations(doc).items()}
    assert targets == {
        "blobCreated": "on_blob_created",
        "customEvents": "on_alert_event",
        "workspaceEvents": "on_alert_event",
    }
    event_grid = _event_grid_functions(app_functions)
    missing = {name for name in targets.values() if name not in event_grid}
    assert not missing, (
        f"wiring.bicep names functions function_app.py does not register as Event Grid triggers: {missing}"
    )


def test_the_function_check_catches_a_misspelt_function(app_functions: dict[str, Any]) -> None:
    doc = BicepDoc.parse(
        "var fn = 'on_blob_create'\nresource s 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {\n"
        "  name: 's'\n  properties: {\n    destination: {\n      endpointType: 'AzureFunction'\n"
        "      properties: {\n        resourceId: '${app.id}/functions/${fn}'\n      }\n    }\n  }\n}\n"
    )
    assert bicep.function_destinations(doc) == {"s": "on_blob_create"}
    assert "on_blob_create" not in _event_grid_functions(app_functions)


def test_the_postdeploy_hooks_wait_for_the_functions_wiring_names(docs: dict[str, BicepDoc]) -> None:
    wired = set(bicep.function_destinations(docs["wiring.bicep"]).values())
    shell = (INFRA / "hooks" / "postdeploy.sh").read_text(encoding="utf-8")
    match = re.search(r'^FUNCTIONS="([^"]+)"', shell, re.MULTILINE)
    assert match is not None
    assert set(match.group(1).split()) == wired
    pwsh = (INFRA / "hooks" / "postdeploy.ps1").read_text(encoding="utf-8")
    match = re.search(r"^\$functions = @\(([^)]+)\)", pwsh, re.MULTILINE)
    assert match is not None
    assert set(re.findall(r"'([^']+)'", match.group(1))) == wired


# ---------------------------------------------------------------------- containers, tables, filter


def test_containers_match_shared_storage(docs: dict[str, BicepDoc]) -> None:
    from shared.storage import CONTAINERS, DEADLETTER, LANDING

    storage = docs["modules/storage.bicep"]
    assert set(storage.value(storage.variables["containerNames"])) == set(CONTAINERS)
    wiring = docs["wiring.bicep"]
    assert wiring.value(wiring.variables["deadLetterContainerName"]) == DEADLETTER
    assert wiring.value(wiring.variables["landingContainerName"]) == LANDING
    main = docs["main.bicep"]
    (rbac,) = [m for m in main.modules if m.symbol == "rbac"]
    assert main.value(bicep.get(rbac.body, "params.landingContainerName")) == LANDING
    assert main.value(bicep.get(rbac.body, "params.deadLetterContainerName")) == DEADLETTER


def test_kept_verdicts_expire_by_a_lifecycle_rule_on_their_own_container_only(docs: dict[str, BicepDoc]) -> None:
    """Verdicts are a cache (a deleted one costs one more read of its blob) that grows by a blob's worth a day; a rule
    that reached manifests/ would delete run manifests, which are lineage."""
    from shared.storage import VERDICTS

    storage = docs["modules/storage.bicep"]
    assert bicep.lifecycle_problems(storage, VERDICTS, "verdictRetentionDays") == []
    assert VERDICTS in storage.value(storage.variables["containerNames"])
    # ...after the number of days main.bicep passes, whose default outlasts every model's training window: a run
    # never finds one of its window's verdicts gone (a verdict is never older than its blob).
    main = docs["main.bicep"]
    (module,) = [m for m in main.modules if m.symbol == "storage"]
    assert bicep._text(bicep.get(module.body, "params.verdictRetentionDays")) == "verdictRetentionDays"
    days = main.param_default("verdictRetentionDays")
    windows = [s.training.window_days for s in load_specs(ROOT / "models").values() if s.training.window_days]
    assert windows
    assert isinstance(days, int)
    assert days >= 2 * max(windows), (days, windows)
    assert "minValue" in main.params["verdictRetentionDays"].decorators


def _lifecycle_snippet(
    *,
    name: str = "'default'",
    prefixes: str = "'verdicts/'",
    blob_types: str = "'blockBlob'",
    action: str = "delete: {\n daysAfterModificationGreaterThan: days\n }",
    enabled: str = "true",
    extra_rule: str = "",
) -> str:
    prefix_match = f"prefixMatch: [\n {prefixes}\n ]" if prefixes else ""
    return f"""
param days int
resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {{
  name: 'st'
  resource lifecycle 'managementPolicies' = {{
    name: {name}
    properties: {{
      policy: {{
        rules: [
          {{
            name: 'expire'
            enabled: {enabled}
            type: 'Lifecycle'
            definition: {{
              filters: {{
                blobTypes: [
                  {blob_types}
                ]
                {prefix_match}
              }}
              actions: {{
                baseBlob: {{
                  {action}
                }}
              }}
            }}
          }}
          {extra_rule}
        ]
      }}
    }}
  }}
}}
"""


def test_the_lifecycle_rule_accepts_a_good_policy() -> None:
    doc = BicepDoc.parse(_lifecycle_snippet())
    assert bicep.syntax_errors(doc.source) == []
    assert bicep.lifecycle_problems(doc, "verdicts", "days") == []
    interpolated = BicepDoc.parse("var c = 'verdicts'\n" + _lifecycle_snippet(prefixes="'${c}/'"))
    assert bicep.lifecycle_problems(interpolated, "verdicts", "days") == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "'expire-verdicts'"}, "name must be 'default'"),
        ({"prefixes": "'manifests/'"}, "prefixMatch 'manifests/' reaches beyond the 'verdicts' container"),
        ({"prefixes": "'verdicts/'\n 'manifests/fraud/'"}, "prefixMatch 'manifests/fraud/' reaches beyond"),
        ({"prefixes": "'verdicts'"}, "prefixMatch 'verdicts' reaches beyond"),  # also verdicts-old/
        ({"prefixes": "''"}, "prefixMatch '' reaches beyond"),
        ({"prefixes": ""}, "no filters.prefixMatch, so it reaches every container"),
        ({"blob_types": "'appendBlob'"}, "filters.blobTypes must be ['blockBlob']"),
        (
            {"action": "delete: {\n daysAfterModificationGreaterThan: 30\n }"},
            "must be {daysAfterModificationGreaterThan: days}",
        ),
        (
            {"action": "delete: {\n daysAfterCreationGreaterThan: days\n }"},
            "must be {daysAfterModificationGreaterThan: days}",
        ),
        (
            {"action": "tierToCool: {\n daysAfterModificationGreaterThan: days\n }"},
            "its only action must be baseBlob.delete",
        ),
        ({"enabled": "false"}, "no enabled rule deletes"),
        (
            {
                "extra_rule": "{\n name: 'old'\n enabled: false\n type: 'Lifecycle'\n definition: {\n filters: {\n"
                " blobTypes: [\n 'blockBlob'\n ]\n prefixMatch: [\n 'manifests/'\n ]\n }\n actions: {\n"
                " baseBlob: {\n delete: {\n daysAfterModificationGreaterThan: days\n }\n }\n }\n }\n }"
            },
            "rule 'old': prefixMatch 'manifests/' reaches beyond",
        ),
    ],
    ids=[
        "not-default",
        "manifests",
        "manifests-too",
        "no-slash",
        "empty-prefix",
        "no-prefix",
        "append-blobs",
        "fixed-days",
        "creation-days",
        "tier-not-delete",
        "disabled",
        "a-disabled-rule-on-manifests",
    ],
)
def test_the_lifecycle_rule_catches_a_policy_that_reaches_too_far_or_keeps_for_ever(
    changes: dict[str, str], message: str
) -> None:
    doc = BicepDoc.parse(_lifecycle_snippet(**changes))
    assert bicep.syntax_errors(doc.source) == []
    assert message in " ".join(bicep.lifecycle_problems(doc, "verdicts", "days"))


def test_the_lifecycle_rule_catches_a_missing_policy() -> None:
    doc = BicepDoc.parse("resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'st'\n}\n")
    assert "needs exactly one Microsoft.Storage/storageAccounts/managementPolicies" in " ".join(
        bicep.lifecycle_problems(doc, "verdicts", "days")
    )


def test_tables_match_shared_registry(docs: dict[str, BicepDoc]) -> None:
    from shared.registry import TABLES

    storage = docs["modules/storage.bicep"]
    assert set(storage.value(storage.variables["tableNames"])) == set(TABLES)


def test_the_blob_subscription_filters_to_the_landing_container(docs: dict[str, BicepDoc]) -> None:
    from shared.storage import LANDING

    wiring = docs["wiring.bicep"]
    (blob,) = [r for r in bicep.event_subscriptions(wiring) if r.symbol == "blobCreated"]
    subject = wiring.template(blob.get("properties.filter.subjectBeginsWith"))
    # The trailing slash matters: without it 'landing' would also match 'landing-old'.
    assert subject == f"/blobServices/default/containers/{LANDING}/"
    assert wiring.value(blob.get("properties.filter.includedEventTypes")) == ["Microsoft.Storage.BlobCreated"]
    # ...on the storage account's system topic.
    assert blob.parent is None
    assert bicep._text(blob.get("parent")) == "storageSystemTopic"
    topics = docs["modules/eventgrid.bicep"].resources_of("Microsoft.EventGrid/systemTopics")
    storage_topics = [
        t
        for t in topics
        if docs["modules/eventgrid.bicep"].value(t.get("properties.topicType")) == "Microsoft.Storage.StorageAccounts"
    ]
    assert len(storage_topics) == 1


def test_the_workspace_subscription_takes_the_drift_events_alerts_acts_on(docs: dict[str, BicepDoc]) -> None:
    wiring = docs["wiring.bicep"]
    (workspace,) = [r for r in bicep.event_subscriptions(wiring) if r.symbol == "workspaceEvents"]
    assert set(wiring.value(workspace.get("properties.filter.includedEventTypes"))) == {
        "Microsoft.MachineLearningServices.DatasetDriftDetected",
    }, "not RunStatusChanged: every status change of every job would be an invocation that only logs a line"


# ---------------------------------------------------------------------- Azure ML vs model specs


def test_compute_defaults_to_what_the_model_specs_use(docs: dict[str, BicepDoc]) -> None:
    specs = load_specs(ROOT / "models")
    main = docs["main.bicep"]
    assert {s.training.compute for s in specs.values()} == {main.param_default("computeName")}
    assert main.param_default("computeVmSize") in {s.training.instance_type for s in specs.values()}


def test_bicep_declares_no_online_endpoints_or_deployments(docs: dict[str, BicepDoc]) -> None:
    """The app owns endpoints and their traffic: a declared endpoint is PUT again by every `azd provision`
    without a traffic map, which zeroes the live split (the champion stops serving)."""
    types = {r.type for doc in docs.values() for r in doc.resources}
    assert not any(t.startswith("Microsoft.MachineLearningServices/workspaces/onlineEndpoints") for t in types)
    assert b"endpointNames" not in docs["main.bicep"].source


# ---------------------------------------------------------------------- Azure ML environments vs the adapter

ENVIRONMENT = "Microsoft.MachineLearningServices/workspaces/environments"
ENVIRONMENT_VERSION = f"{ENVIRONMENT}/versions"
CONDA_FILE = ROOT / "training_jobs" / "environment.yml"


def _loaded_file(doc: BicepDoc, node: Node | None, base: Path) -> Path | None:
    """The file a ``loadTextContent('<path>')`` expression (directly or through a variable) reads."""
    if node is not None and node.type == "identifier" and bicep._text(node) in doc.variables:
        node = doc.variables[bicep._text(node)]
    if node is None or node.type != "call_expression":
        return None
    function = node.child_by_field_name("function")
    arguments = node.child_by_field_name("arguments")
    if bicep._text(function) != "loadTextContent" or arguments is None or not arguments.named_children:
        return None
    path = doc.value(arguments.named_children[0])
    return (base / path).resolve() if isinstance(path, str) else None


def environment_problems(doc: BicepDoc, wanted: Mapping[str, Path], base: Path) -> list[str]:
    """Each wanted Azure ML environment is declared, with a Linux version on an image whose condaFile
    is loadTextContent of the wanted file and whose version name hashes it (so @latest follows edits)."""
    containers = {r.symbol: r for r in doc.resources_of(ENVIRONMENT)}
    versions: dict[str, list[bicep.Resource]] = {}
    for r in doc.resources_of(ENVIRONMENT_VERSION):
        parent = r.parent.symbol if r.parent is not None else bicep._text(r.get("parent"))
        name = doc.value(containers[parent].get("name")) if parent in containers else None
        if isinstance(name, str):
            versions.setdefault(name, []).append(r)
    declared = {doc.value(c.get("name")) for c in containers.values()}
    problems = []
    for name, conda in sorted(wanted.items()):
        where = f"{doc.name}: environment {name!r}"
        if name not in declared:
            problems.append(f"{where} is used by the azureml adapter but infra/ does not declare it")
            continue
        if len(versions.get(name, [])) != 1:
            problems.append(
                f"{where} needs exactly one environments/versions resource, not {len(versions.get(name, []))}"
            )
            continue
        (version,) = versions[name]
        conda_node = version.get("properties.condaFile")
        loaded = _loaded_file(doc, conda_node, base)
        if loaded != conda.resolve():
            problems.append(f"{where}: condaFile must be loadTextContent of {conda}, not {bicep._text(conda_node)!r}")
        if doc.value(version.get("properties.osType")) != "Linux":
            problems.append(f"{where}: osType must be 'Linux'")
        image = doc.value(version.get("properties.image"))
        if not isinstance(image, str) or not image.startswith("mcr.microsoft.com/azureml/"):
            problems.append(
                f"{where}: image must be an Azure ML base image (mcr.microsoft.com/azureml/...), not {image!r}"
            )
        version_name = bicep._text(version.get("name"))
        if "uniqueString(" not in version_name or bicep._text(conda_node) not in version_name:
            problems.append(
                f"{where}: the version name {version_name!r} must be a uniqueString() of the conda file, "
                "so a changed file becomes a new version and name@latest picks it up"
            )
    return problems


def _adapter_environments() -> dict[str, Path]:
    from shared.platform.azureml import DEFAULT_SCORING_ENVIRONMENT, DEFAULT_TRAINING_ENVIRONMENT

    wanted = {}
    for reference in (DEFAULT_TRAINING_ENVIRONMENT, DEFAULT_SCORING_ENVIRONMENT):
        name, label = reference.split("@", 1)
        assert label == "latest", reference
        wanted[name] = CONDA_FILE
    return wanted


def test_infra_declares_the_environments_the_azureml_adapter_uses(docs: dict[str, BicepDoc]) -> None:
    # Every job and every online deployment names one of these; Azure ML answers "Asset ... does
    # not exist" for an environment nobody created.
    ml = docs["modules/ml.bicep"]
    assert environment_problems(ml, _adapter_environments(), INFRA / "modules") == []


def test_the_environment_check_catches_a_missing_or_unhashed_environment() -> None:
    wanted = {"perennial-train": CONDA_FILE, "perennial-score": CONDA_FILE}
    doc = BicepDoc.parse(
        "var conda = loadTextContent('../../training_jobs/requirements.txt')\n"
        "resource env 'Microsoft.MachineLearningServices/workspaces/environments@2024-10-01' = {\n"
        "  name: 'perennial-train'\n  properties: {}\n}\n"
        "resource v 'Microsoft.MachineLearningServices/workspaces/environments/versions@2024-10-01' = {\n"
        "  parent: env\n  name: '1'\n  properties: {\n    condaFile: conda\n"
        "    image: 'python:3.11'\n  }\n}\n"
    )
    problems = " ".join(environment_problems(doc, wanted, INFRA / "modules"))
    assert "'perennial-score' is used by the azureml adapter but infra/ does not declare it" in problems
    assert "condaFile must be loadTextContent of" in problems
    assert "osType must be 'Linux'" in problems
    assert "image must be an Azure ML base image" in problems
    assert "must be a uniqueString() of the conda file" in problems


# ---------------------------------------------------------------------- azd and module wiring


def test_azure_yaml_deploys_this_repo_as_the_tagged_function_app(docs: dict[str, BicepDoc]) -> None:
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    (service_name, service) = next(iter(azure["services"].items()))
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert docs["main.bicep"].value(docs["main.bicep"].variables["serviceName"]) == service_name
    for platform in ("posix", "windows"):
        script = azure["hooks"]["postdeploy"][platform]["run"]
        assert (ROOT / script).is_file(), script
    assert docs["main.bicep"].target_scope == "subscription"


def test_main_parameters_name_real_parameters(docs: dict[str, BicepDoc]) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    main = docs["main.bicep"]
    assert set(parameters) <= set(main.params)
    required = {name for name, p in main.params.items() if p.default is None}
    assert required <= set(parameters)


def test_modules_get_exactly_the_parameters_they_declare(docs: dict[str, BicepDoc]) -> None:
    # What the Bicep compiler would reject: a misspelt or missing module parameter.
    problems = []
    for doc_name, doc in docs.items():
        for module in doc.modules:
            target = str((INFRA / doc_name).parent.joinpath(module.path).resolve().relative_to(INFRA))
            assert target in docs, f"{doc_name}: module {module.symbol} points at missing {module.path}"
            declared = docs[target].params
            given = set(bicep.keys(bicep.get(module.body, "params")))
            required = {n for n, p in declared.items() if p.default is None}
            problems += [f"{doc_name}: {module.symbol} passes unknown {n}" for n in sorted(given - set(declared))]
            problems += [f"{doc_name}: {module.symbol} lacks {n}" for n in sorted(required - given)]
    assert problems == []


def test_main_outputs_everything_the_hook_and_wiring_need(docs: dict[str, BicepDoc]) -> None:
    outputs = set(docs["main.bicep"].outputs)
    shell = (INFRA / "hooks" / "postdeploy.sh").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{?((?:AZURE|EVENTGRID)_[A-Z_]+)", shell)) - {"AZURE_SUBSCRIPTION_ID"}
    assert used
    assert used <= outputs, used - outputs
    wiring = docs["wiring.bicep"].params
    passed = set(re.findall(r"^\s+([a-z]\w+)=\"\$", shell.split("--parameters", 1)[1], re.MULTILINE))
    assert {n for n, p in wiring.items() if p.default is None} <= passed <= set(wiring)


def test_abbreviations_cover_every_prefix_main_uses(docs: dict[str, BicepDoc]) -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    used = set(re.findall(r"abbrs\.(\w+)", docs["main.bicep"].source.decode()))
    assert used
    assert used <= set(abbreviations)


# ---------------------------------------------------------------------- devhost's Event Grid vs wiring.bicep


def _devhost_view(doc: BicepDoc, r: bicep.Resource, function: str) -> dict[str, Any]:
    """One wiring.bicep subscription in devhost/eventgrid/subscriptions.json's terms."""
    flt = doc.value(r.get("properties.filter")) or {}
    begins = r.get("properties.filter.subjectBeginsWith")
    subject = bicep._text(begins).strip("'").replace("${landingContainerName}", "landing") if begins else None
    retry = {  # the policy's values are parameters: their defaults are what is deployed
        key: doc.param_default(value.text) if isinstance(value, Unresolved) else value
        for key, value in (doc.value(r.get("properties.retryPolicy")) or {}).items()
    }
    return {
        "name": doc.value(r.get("name")),
        "function": function,
        "includedEventTypes": flt.get("includedEventTypes") if isinstance(flt, dict) else None,
        "subjectBeginsWith": subject,
        "advancedFilters": [
            {"operatorType": f["operatorType"], "key": f["key"], "values": f["values"]}
            for f in (doc.value(r.get("properties.filter.advancedFilters")) or [])
        ],
        "retryPolicy": retry,
    }


def test_devhost_subscriptions_mirror_wiring_field_by_field(docs: dict[str, BicepDoc]) -> None:
    """Locally, devhost's Event Grid routes by subscriptions.json; in Azure, wiring.bicep does. A filter that
    differs (an operator, an api value, a prefix, a retry policy) would pass every local test and fail in Azure."""
    wiring = docs["wiring.bicep"]
    functions = bicep.function_destinations(wiring)
    infra = {
        view["name"]: view
        for view in (_devhost_view(wiring, r, functions[r.symbol]) for r in bicep.event_subscriptions(wiring))
    }
    local = json.loads((ROOT / "devhost" / "eventgrid" / "subscriptions.json").read_text())["subscriptions"]
    mirrored = {
        s["name"]: {
            "name": s["name"],
            "function": s["function"],
            "includedEventTypes": s["filter"].get("includedEventTypes"),
            "subjectBeginsWith": s["filter"].get("subjectBeginsWith"),
            "advancedFilters": s["filter"].get("advancedFilters", []),
            "retryPolicy": s["retryPolicy"],
        }
        for s in local
    }
    assert mirrored == infra


def test_the_landing_subscription_passes_exactly_the_writes_the_parser_treats_as_complete(
    docs: dict[str, BicepDoc],
) -> None:
    from shared.events import COMPLETE_BLOB_APIS

    wiring = docs["wiring.bicep"]
    (landing,) = [r for r in bicep.event_subscriptions(wiring) if r.symbol == "blobCreated"]
    (api_filter,) = [
        f for f in wiring.value(landing.get("properties.filter.advancedFilters")) if f["key"] == "data.api"
    ]
    assert api_filter["operatorType"] == "StringIn"
    assert set(api_filter["values"]) == COMPLETE_BLOB_APIS
