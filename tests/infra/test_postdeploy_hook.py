"""The azd postdeploy hook, run for real against a stand-in `az` that records what it is asked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA

HOOK = INFRA / "hooks" / "postdeploy.sh"

ENV = {
    "AZURE_RESOURCE_GROUP": "rg-perennial-dev",
    "AZURE_FUNCTION_APP_NAME": "func-abc",
    "AZURE_STORAGE_ACCOUNT_NAME": "stabc",
    "EVENTGRID_STORAGE_TOPIC_NAME": "evgs-storage-abc",
    "EVENTGRID_CUSTOM_TOPIC_NAME": "evgt-abc",
    "EVENTGRID_WORKSPACE_TOPIC_NAME": "evgs-ml-abc",
    "EVENTGRID_IDENTITY_NAME": "id-eventgrid-abc",
}

# A stand-in for the Azure CLI: logs each call; `functionapp function list` reports the
# functions as the host indexes them (one more per call), `deployment group create` exits
# with $FAKE_AZ_DEPLOY_RC.
FAKE_AZ = r"""#!/bin/sh
echo "$*" >> "$FAKE_AZ_LOG"
case "$1 $2 $3" in
  "functionapp function list")
    calls=$(grep -c "^functionapp function list" "$FAKE_AZ_LOG")
    n=0
    for fn in $FAKE_AZ_FUNCTIONS; do
      n=$((n + 1))
      [ "$n" -lt "$calls" ] && echo "$AZURE_FUNCTION_APP_NAME/$fn"
    done
    exit 0 ;;
  "deployment group create")
    exit "${FAKE_AZ_DEPLOY_RC:-0}" ;;
esac
exit 0
"""


def _run(
    tmp_path: Path, *, env: dict[str, str] | None = None, with_az: bool = True, **extra: str
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # Only the tools the hook needs, so "az is missing" can be tested for real.
    for tool in ("dirname", "grep", "sleep"):
        found = shutil.which(tool)
        assert found is not None
        link = bin_dir / tool
        if not link.exists():
            link.symlink_to(found)
    if with_az:
        az = bin_dir / "az"
        az.write_text(FAKE_AZ)
        az.chmod(0o755)
    full = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "FAKE_AZ_LOG": str(tmp_path / "az.log"),
        "FAKE_AZ_FUNCTIONS": "on_blob_created on_alert_event health",
        "PERENNIAL_WIRING_POLL_SECONDS": "0",
        **(ENV if env is None else env),
        **extra,
    }
    sh = shutil.which("sh") or "/bin/sh"
    return subprocess.run([sh, str(HOOK)], env=full, capture_output=True, text=True, timeout=60, check=False)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "az.log"
    return log.read_text().splitlines() if log.exists() else []


def test_waits_for_both_functions_then_deploys_the_wiring(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    lists = [c for c in calls if c.startswith("functionapp function list")]
    # Indexed one at a time: absent, blob only, both (the third listing lets it go on).
    assert len(lists) == 3
    (deploy,) = [c for c in calls if c.startswith("deployment group create")]
    assert f"--template-file {HOOK.parent}/../wiring.bicep" in deploy
    assert "--resource-group rg-perennial-dev" in deploy
    for expected in (
        "functionAppName=func-abc",
        "storageAccountName=stabc",
        "storageSystemTopicName=evgs-storage-abc",
        "customTopicName=evgt-abc",
        "workspaceSystemTopicName=evgs-ml-abc",
        "eventGridIdentityName=id-eventgrid-abc",
    ):
        assert expected in deploy.split()
    assert "Event Grid now delivers" in done.stdout


def test_missing_environment_values_name_themselves_and_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k not in ("AZURE_FUNCTION_APP_NAME", "EVENTGRID_IDENTITY_NAME")}
    done = _run(tmp_path, env=env)
    assert done.returncode == 1
    assert "AZURE_FUNCTION_APP_NAME" in done.stderr
    assert "EVENTGRID_IDENTITY_NAME" in done.stderr
    assert "azd provision" in done.stderr
    assert _calls(tmp_path) == []


def test_gives_up_with_a_hint_when_a_function_never_appears(tmp_path: Path) -> None:
    done = _run(tmp_path, FAKE_AZ_FUNCTIONS="on_blob_created", PERENNIAL_WIRING_WAIT_SECONDS="5")
    assert done.returncode == 1
    assert "functions not found after 5s: on_alert_event" in done.stderr
    # It kept looking for the whole wait: 5s at 1s intervals is six listings.
    assert len([c for c in _calls(tmp_path) if c.startswith("functionapp function list")]) == 6
    assert "azd hooks run postdeploy" in done.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith("deployment")]


def test_a_failed_wiring_deployment_fails_the_hook(tmp_path: Path) -> None:
    done = _run(tmp_path, FAKE_AZ_DEPLOY_RC="3")
    assert done.returncode == 1
    assert "wiring deployment failed" in done.stderr


def test_without_the_azure_cli_it_says_how_to_get_it(tmp_path: Path) -> None:
    done = _run(tmp_path, with_az=False)
    assert done.returncode == 1
    assert "Azure CLI (az) is not installed" in done.stderr


def test_the_subscription_is_selected_when_azd_knows_it(tmp_path: Path) -> None:
    done = _run(tmp_path, AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001")
    assert done.returncode == 0, done.stderr
    assert _calls(tmp_path)[0] == "account set --subscription 00000000-0000-0000-0000-000000000001"


@pytest.mark.skipif(os.name == "nt", reason="the posix hook")
def test_the_hook_is_executable() -> None:
    assert os.access(HOOK, os.X_OK)
