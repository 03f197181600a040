"""The rules our Bicep must follow, checked offline, each also shown to catch a bad snippet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra import bicep
from tests.infra.bicep import BicepDoc
from tests.infra.conftest import INFRA, bicep_paths

# Type -> API versions we allow. Each one exists (checked against the ARM template reference);
# bump deliberately, never by accident.
PINNED_API_VERSIONS: dict[str, set[str]] = {
    "Microsoft.Resources/resourceGroups": {"2024-03-01"},
    "Microsoft.ManagedIdentity/userAssignedIdentities": {"2023-01-31"},
    "Microsoft.Storage/storageAccounts": {"2023-05-01"},
    "Microsoft.OperationalInsights/workspaces": {"2023-09-01"},
    "Microsoft.Insights/components": {"2020-02-02"},
    "Microsoft.KeyVault/vaults": {"2023-07-01"},
    "Microsoft.ContainerRegistry/registries": {"2023-07-01"},
    "Microsoft.Web/serverfarms": {"2024-04-01"},
    "Microsoft.Web/sites": {"2024-04-01"},
    "Microsoft.MachineLearningServices/workspaces": {"2024-10-01"},
    "Microsoft.MachineLearningServices/workspaces/computes": {"2024-10-01"},
    "Microsoft.MachineLearningServices/workspaces/environments": {"2024-10-01"},
    "Microsoft.MachineLearningServices/workspaces/environments/versions": {"2024-10-01"},
    "Microsoft.EventGrid/topics": {"2025-02-15"},
    "Microsoft.EventGrid/systemTopics": {"2025-02-15"},
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": {"2025-02-15"},
    "Microsoft.EventGrid/topics/eventSubscriptions": {"2025-02-15"},
    "Microsoft.Authorization/roleAssignments": {"2022-04-01"},
    "Microsoft.Insights/actionGroups": {"2023-01-01"},
    "Microsoft.Insights/scheduledQueryRules": {"2023-12-01"},
    "Microsoft.Insights/metricAlerts": {"2018-03-01"},
}

# The built-in roles we may grant: id -> its name in Azure (the same in every tenant).
PINNED_ROLES: dict[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "69566ab7-960f-475b-8e7c-b3118f30c6bd": "Storage File Data Privileged Contributor",
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",
    "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815": "AzureML Compute Operator",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
}

# Roles that are never granted: they can do (or grant) anything.
FORBIDDEN_ROLES: dict[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42ce-ab80-85409988b7fa": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}

# Files scanned for secrets: everything deployable or run, not the prose in README.md.
SECRET_SCAN = [p for p in sorted(INFRA.rglob("*")) if p.is_file() and p.suffix in {".bicep", ".json", ".sh", ".ps1"}]
SECRET_SCAN.append(INFRA.parent / "azure.yaml")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(INFRA.parent)) for p in paths]


def _role_assignment(
    name: str, scope: str, role: str, principal_type: str = "principalType: 'ServicePrincipal'"
) -> str:
    return f"""
param principalId string
var roles = {{
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}}
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {{
  name: 'st'
}}
resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {{
  name: {name}
  {scope}
  properties: {{
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', {role})
    principalId: principalId
    {principal_type}
  }}
}}
"""


GOOD_ASSIGNMENT = _role_assignment(
    "guid(storage.id, principalId, roles.storageBlobDataContributor)",
    "scope: storage",
    "roles.storageBlobDataContributor",
)


def _roles(text: str) -> list[str]:
    return bicep.role_assignment_problems(BicepDoc.parse(text), PINNED_ROLES, FORBIDDEN_ROLES)


# ---------------------------------------------------------------------- the tree-sitter subset


def test_there_is_bicep_to_check() -> None:
    names = {str(p.relative_to(INFRA)) for p in bicep_paths()}
    assert {"main.bicep", "wiring.bicep", "modules/rbac.bicep", "modules/ml.bicep"} <= names


@pytest.mark.parametrize("path", bicep_paths(), ids=_ids(bicep_paths()))
def test_every_bicep_file_parses_without_error_nodes(path: Path) -> None:
    assert bicep.syntax_errors(path.read_bytes(), str(path)) == []


def test_the_parse_check_catches_code_outside_the_subset() -> None:
    # The spread operator is valid Bicep but tree-sitter-bicep cannot parse it; neither can a typo.
    assert bicep.syntax_errors(b"var a = { ...b }\n")
    assert bicep.syntax_errors(b"resource r 'A/b@1' = {\n  name: 'x'\n")
    assert bicep.syntax_errors(b"var ok = { a: 1 }\n") == []


# ---------------------------------------------------------------------- API versions


def test_every_type_and_api_version_is_pinned(docs: dict[str, BicepDoc]) -> None:
    problems = [p for doc in docs.values() for p in bicep.api_version_problems(doc, PINNED_API_VERSIONS)]
    assert problems == []
    used = {r.type for doc in docs.values() for r in doc.resources if r.api_version}
    # The allow-list stays exactly what is used, so a stale pin cannot hide.
    assert used == set(PINNED_API_VERSIONS)


def test_the_api_version_rule_catches_an_unpinned_version() -> None:
    doc = BicepDoc.parse("resource s 'Microsoft.Storage/storageAccounts@2019-06-01' = {\n  name: 'x'\n}\n")
    assert "not a pinned version" in " ".join(bicep.api_version_problems(doc, PINNED_API_VERSIONS))
    doc = BicepDoc.parse("resource s 'Microsoft.Foo/bars@2024-01-01' = {\n  name: 'x'\n}\n")
    assert "not in the pinned allow-list" in " ".join(bicep.api_version_problems(doc, PINNED_API_VERSIONS))


# ---------------------------------------------------------------------- role assignments


def test_role_assignments_are_scoped_named_typed_and_pinned(docs: dict[str, BicepDoc]) -> None:
    problems = [p for doc in docs.values() for p in bicep.role_assignment_problems(doc, PINNED_ROLES, FORBIDDEN_ROLES)]
    assert problems == []
    count = sum(len(doc.resources_of(bicep.ROLE_ASSIGNMENT)) for doc in docs.values())
    assert count >= 10


def test_every_role_id_in_infra_is_a_pinned_builtin_under_its_own_name(docs: dict[str, BicepDoc]) -> None:
    problems = [p for doc in docs.values() for p in bicep.role_table_problems(doc, PINNED_ROLES, FORBIDDEN_ROLES)]
    assert problems == []


def test_no_role_assignment_at_subscription_or_resource_group_scope(docs: dict[str, BicepDoc]) -> None:
    for doc in docs.values():
        for r in doc.resources_of(bicep.ROLE_ASSIGNMENT):
            scope = r.get("scope")
            assert scope is not None, f"{doc.name}:{r.line}"
            assert "subscription()" not in bicep._text(scope)
            assert "resourceGroup()" not in bicep._text(scope)


def _granted(rbac: BicepDoc, principal: str, unconditional: bool = False) -> set[tuple[str, str]]:
    """(scope, role name) of every role assignment to ``principal`` (a parameter's name) in rbac.bicep."""
    return {
        (
            bicep._text(r.get("scope")),
            PINNED_ROLES[bicep._role_guid(rbac, r.get("properties.roleDefinitionId"))[0] or ""],
        )
        for r in rbac.resources_of(bicep.ROLE_ASSIGNMENT)
        if bicep._text(r.get("properties.principalId")) == principal and (r.condition is None or not unconditional)
    }


def test_the_app_identity_gets_what_the_design_needs_and_no_compute_write_by_default(docs: dict[str, BicepDoc]) -> None:
    granted = _granted(docs["modules/rbac.bicep"], "appPrincipalId", unconditional=True)
    assert {
        ("storage", "Storage Blob Data Owner"),
        ("storage", "Storage Queue Data Contributor"),
        ("storage", "Storage Table Data Contributor"),
        ("workspace", "AzureML Data Scientist"),
        ("workspace", "Monitoring Reader"),
        ("customTopic", "EventGrid Data Sender"),
    } <= granted
    assert not any(role.startswith("Key Vault") for _, role in granted), "the app reads no secret"
    # Compute Operator only behind a switch that is off by default.
    assert ("workspace", "AzureML Compute Operator") not in granted
    assert docs["modules/rbac.bicep"].param_default("appCanManageCompute") is False


def test_the_person_running_azd_may_write_new_batches_and_delayed_labels_and_nothing_else(
    docs: dict[str, BicepDoc],
) -> None:
    """docs/policy.md asks users to put labels in feedback/<model>/: without a role there, their upload is a 403
    and the live-accuracy gate runs without labels."""
    granted = _granted(docs["modules/rbac.bicep"], "uploaderPrincipalId")
    assert granted == {
        ("storage::blobService::landing", "Storage Blob Data Contributor"),
        ("storage::blobService::feedback", "Storage Blob Data Contributor"),
    }


def test_the_training_jobs_read_only_their_inputs_in_the_app_storage(docs: dict[str, BicepDoc]) -> None:
    """Jobs run third-party packages: they may read landing/ (the batches) and manifests/ (job manifest and
    contract), not the app's code package, the task hub or quarantined data elsewhere in the account."""
    granted = _granted(docs["modules/rbac.bicep"], "computePrincipalId")
    on_app_storage = {grant for grant in granted if grant[0] == "storage" or grant[0].startswith("storage::")}
    assert on_app_storage == {
        ("storage::blobService::landing", "Storage Blob Data Reader"),
        ("storage::blobService::manifests", "Storage Blob Data Reader"),
    }
    from shared.storage import MANIFESTS  # the container stage_azure writes the job manifest and contract into

    main = docs["main.bicep"]
    (module,) = [m for m in main.modules if m.symbol == "rbac"]
    assert main.value(bicep.get(module.body, "params.manifestsContainerName")) == MANIFESTS


def test_no_role_is_assigned_to_the_ml_workspace_s_own_identity(docs: dict[str, BicepDoc]) -> None:
    """Azure ML grants its system identity the data roles its identity-based datastores need when it creates the
    workspace, before rbac.bicep runs; an assignment of ours for the same principal, role and scope has another
    name, and Azure refuses it with RoleAssignmentExists: the first `azd up` would fail."""
    for doc in docs.values():
        for r in doc.resources_of(bicep.ROLE_ASSIGNMENT):
            principal = bicep._text(r.get("properties.principalId"))
            assert "workspace" not in principal.lower(), f"{doc.name}:{r.line} assigns a role to {principal}"
    assert not any(
        "workspace" in name.lower() and "principal" in name.lower() for name in docs["modules/rbac.bicep"].params
    )


def test_the_role_rules_accept_a_good_assignment() -> None:
    assert _roles(GOOD_ASSIGNMENT) == []


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        (  # no scope: lands on the deployment's resource group
            _role_assignment(
                "guid(storage.id, principalId, roles.storageBlobDataContributor)",
                "",
                "roles.storageBlobDataContributor",
            ),
            "has no scope",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, roles.storageBlobDataContributor)",
                "scope: resourceGroup()",
                "roles.storageBlobDataContributor",
            ),
            "not a resource declared",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, 'b24988ac-6180-42ce-ab80-85409988b7fa')",
                "scope: storage",
                "'b24988ac-6180-42ce-ab80-85409988b7fa'",
            ),
            "Contributor, which is never allowed",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, '8e3af657-a8ff-443c-a75c-2fe8c4bcb635')",
                "scope: storage",
                "'8e3af657-a8ff-443c-a75c-2fe8c4bcb635'",
            ),
            "Owner, which is never allowed",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9')",
                "scope: storage",
                "'18d7d88d-d35e-4fb5-a5c3-7773c20a72d9'",
            ),
            "User Access Administrator",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, '11111111-2222-3333-4444-555555555555')",
                "scope: storage",
                "'11111111-2222-3333-4444-555555555555'",
            ),
            "not one of the pinned",
        ),
        (
            _role_assignment("'fixed-name'", "scope: storage", "roles.storageBlobDataContributor"),
            "name must be guid(storage.id, principalId, roles.storageBlobDataContributor)",
        ),
        (
            _role_assignment(
                "guid(storage.id, principalId, roles.storageBlobDataContributor)",
                "scope: storage",
                "roles.storageBlobDataContributor",
                principal_type="",
            ),
            "principalType is missing",
        ),
    ],
    ids=[
        "no-scope",
        "resource-group-scope",
        "contributor",
        "owner",
        "uaa",
        "unknown-role",
        "fixed-name",
        "no-principal-type",
    ],
)
def test_the_role_rules_catch_a_bad_assignment(snippet: str, message: str) -> None:
    assert message in " ".join(_roles(snippet))


def test_the_role_table_rule_catches_a_misnamed_or_forbidden_id() -> None:
    misnamed = BicepDoc.parse("var roles = {\n  storageBlobDataReader: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'\n}\n")
    assert "is 'Storage Blob Data Contributor' but is named" in " ".join(
        bicep.role_table_problems(misnamed, PINNED_ROLES, FORBIDDEN_ROLES)
    )
    owner = BicepDoc.parse("var roles = {\n  owner: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'\n}\n")
    assert "never allowed" in " ".join(bicep.role_table_problems(owner, PINNED_ROLES, FORBIDDEN_ROLES))


# ---------------------------------------------------------------------- storage, secrets, compute


def test_storage_accounts_are_hardened(docs: dict[str, BicepDoc]) -> None:
    assert [p for doc in docs.values() for p in bicep.storage_hardening_problems(doc)] == []
    accounts = [r for doc in docs.values() for r in doc.resources_of("Microsoft.Storage/storageAccounts")]
    assert len(accounts) == 2  # the app's, and the Azure ML workspace's


@pytest.mark.parametrize(
    ("flag", "bad"),
    [
        ("allowSharedKeyAccess", "true"),
        ("allowBlobPublicAccess", "true"),
        ("minimumTlsVersion", "'TLS1_0'"),
        ("supportsHttpsTrafficOnly", "false"),
    ],
)
def test_the_storage_rule_catches_a_weak_flag(flag: str, bad: str) -> None:
    flags = {
        "allowSharedKeyAccess": "false",
        "allowBlobPublicAccess": "false",
        "minimumTlsVersion": "'TLS1_2'",
        "supportsHttpsTrafficOnly": "true",
    }
    flags[flag] = bad
    body = "\n".join(f"    {k}: {v}" for k, v in flags.items())
    doc = BicepDoc.parse(
        f"resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {{\n  name: 'st'\n  properties: {{\n{body}\n  }}\n}}\n"
    )
    problems = bicep.storage_hardening_problems(doc)
    assert len(problems) == 1
    assert flag in problems[0]


def test_the_storage_rule_catches_a_missing_flag_and_a_public_container() -> None:
    doc = BicepDoc.parse(
        "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'st'\n  properties: {}\n"
        "  resource b 'blobServices' = {\n    name: 'default'\n"
        "    resource c 'containers' = {\n      name: 'x'\n      properties: {\n        publicAccess: 'Blob'\n      }\n    }\n  }\n}\n"
    )
    problems = " ".join(bicep.storage_hardening_problems(doc))
    assert "allowSharedKeyAccess is '<missing>'" in problems
    assert "allows public access" in problems


@pytest.mark.parametrize("path", SECRET_SCAN, ids=_ids(SECRET_SCAN))
def test_no_secret_or_key_in_any_infra_file(path: Path) -> None:
    assert bicep.secret_problems(str(path), path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "line",
    [
        "output key string = storage.listKeys().keys[0].value",
        "value: 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc=='",
        "url: 'https://x.blob.core.windows.net/c?sv=2022&sig=AbCdEfGhIjKlMnOpQrSt%3D'",
        "adminPassword: 'Hunter2!x'",
        "key=$(az functionapp keys list -n app -g rg --query systemKeys.eventgrid_extension -o tsv)",
        "APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=0b1c2d3e-1111-2222-3333-444455556666'",
    ],
    ids=["listKeys", "account-key", "sas", "password", "function-key", "instrumentation-key"],
)
def test_the_secret_scan_catches_a_secret(line: str) -> None:
    assert bicep.secret_problems("snippet", line)


def test_secret_looking_parameters_are_secure(docs: dict[str, BicepDoc]) -> None:
    assert [p for doc in docs.values() for p in bicep.secure_param_problems(doc)] == []


def test_the_secure_param_rule_catches_a_plain_secret() -> None:
    doc = BicepDoc.parse(
        "@description('x')\nparam adminPassword string\n@secure()\nparam eventGridKey string\noutput sasToken string = 'x'\n"
    )
    problems = bicep.secure_param_problems(doc)
    assert len(problems) == 2
    assert "adminPassword" in problems[0]
    assert "sasToken" in problems[1]


def test_the_gpu_cluster_scales_to_zero(docs: dict[str, BicepDoc]) -> None:
    assert [p for doc in docs.values() for p in bicep.compute_problems(doc)] == []
    clusters = docs["modules/ml.bicep"].resources_of("Microsoft.MachineLearningServices/workspaces/computes")
    assert len(clusters) == 1


def test_the_compute_rule_catches_a_warm_cluster() -> None:
    doc = BicepDoc.parse(
        "resource c 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {\n  name: 'gpu'\n"
        "  properties: {\n    computeType: 'AmlCompute'\n    properties: {\n      scaleSettings: {\n"
        "        minNodeCount: 1\n        maxNodeCount: 4\n      }\n    }\n  }\n}\n"
    )
    problems = " ".join(bicep.compute_problems(doc))
    assert "minNodeCount is 1" in problems
    assert "nodeIdleTimeBeforeScaleDown is missing" in problems


# ---------------------------------------------------------------------- Event Grid delivery


def test_every_event_subscription_retries_and_dead_letters(docs: dict[str, BicepDoc]) -> None:
    subscriptions = [r for doc in docs.values() for r in bicep.event_subscriptions(doc)]
    assert len(subscriptions) == 3
    assert [p for doc in docs.values() for p in bicep.subscription_delivery_problems(doc)] == []


def test_the_delivery_rule_catches_a_subscription_without_retry_or_dead_letter() -> None:
    doc = BicepDoc.parse(
        "resource s 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {\n  name: 's'\n"
        "  properties: {\n    destination: {\n      endpointType: 'AzureFunction'\n    }\n  }\n}\n"
    )
    problems = " ".join(bicep.subscription_delivery_problems(doc))
    assert "retryPolicy" in problems
    assert "deadLetterWithResourceIdentity" in problems


def test_no_key_based_event_grid_or_workspace_access(docs: dict[str, BicepDoc]) -> None:
    # Topics take Entra ID only; the registry has no admin user. (Endpoints are the app's: aad_token in azureml.py.)
    eventgrid = docs["modules/eventgrid.bicep"]
    for topic in eventgrid.resources_of("Microsoft.EventGrid/topics"):
        assert eventgrid.value(topic.get("properties.disableLocalAuth")) is True
    ml = docs["modules/ml.bicep"]
    for registry in ml.resources_of("Microsoft.ContainerRegistry/registries"):
        assert ml.value(registry.get("properties.adminUserEnabled")) is False
    monitoring = docs["modules/monitoring.bicep"]
    for component in monitoring.resources_of("Microsoft.Insights/components"):
        assert monitoring.value(component.get("properties.DisableLocalAuth")) is True
    vault = docs["modules/keyvault.bicep"].resources_of("Microsoft.KeyVault/vaults")[0]
    assert docs["modules/keyvault.bicep"].value(vault.get("properties.enableRbacAuthorization")) is True
