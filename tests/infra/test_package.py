"""The Function App package azd deploys (the repository minus .funcignore) starts on its own in Azure mode."""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

# The settings infra/modules/function-app.bicep gives the app (values made up, shapes real).
AZURE_SETTINGS = {
    "PERENNIAL_PLATFORM": "azureml",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    "AzureWebJobsStorage__blobServiceUri": "https://stabc.blob.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://stabc.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://stabc.table.core.windows.net",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000002",
    "AZURE_RESOURCE_GROUP": "rg-perennial",
    "AZUREML_WORKSPACE_NAME": "mlw-abc",
    "PERENNIAL_EVENTGRID_ENDPOINT": "https://evgt-abc.westeurope-1.eventgrid.azure.net/api/events",
}

PROBE = """
import json, sys
sys.path.insert(0, ".")
import function_app
root, package = sys.argv[1], sys.argv[2]
# A module loaded from the repository but outside the package would be missing in Azure.
leaked = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(root + "/")
    and not (module.__file__ or "").startswith(root + "/.venv/")
)
print(json.dumps({"functions": [f.get_function_name() for f in function_app.app.get_functions()], "leaked": leaked}))
"""


def _patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        if pattern.endswith("/"):
            if is_dir and (fnmatch.fnmatch(relative, pattern[:-1]) or fnmatch.fnmatch(name, pattern[:-1])):
                return True
        elif fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern):
            return True
    return False


def _package(target: Path) -> None:
    patterns = _patterns()

    def ignore(directory: str, names: list[str]) -> list[str]:
        base = Path(directory).relative_to(ROOT).as_posix()
        out = []
        for name in names:
            relative = name if base == "." else f"{base}/{name}"
            if _ignored(relative, (Path(directory) / name).is_dir(), patterns):
                out.append(name)
        return out

    shutil.copytree(ROOT, target, ignore=ignore)


def test_funcignore_leaves_out_the_local_tools_and_keeps_the_app(tmp_path: Path) -> None:
    package = tmp_path / "package"
    _package(package)
    kept = {p.name for p in package.iterdir()}
    assert {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "functions",
        "shared",
        "models",
        "training_jobs",
    } <= kept
    assert not kept & {".venv", "node_modules", "tests", "devhost", ".perennial", "infra", ".git", "benchmarks"}


@pytest.mark.slow
def test_the_deployed_package_imports_function_app_in_azure_mode(tmp_path: Path) -> None:
    package = tmp_path / "package"
    _package(package)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **AZURE_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(ROOT), str(package)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["leaked"] == [], f"function_app needs modules .funcignore leaves out: {result['leaked']}"
    assert {"health", "on_blob_created", "on_alert_event"} <= set(result["functions"])


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-") for line in lines if line}


def _imported_distributions(*folders: str, files: tuple[str, ...] = ()) -> set[str]:
    """The distributions whose modules the code under ``folders`` imports (at the top or inside a function)."""
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    found: set[str] = set()
    own = {"shared", "functions", "devhost", "perennial_cli", "training_jobs", "function_app"}
    for path in [*(ROOT / f for f in files), *(p for folder in folders for p in (ROOT / folder).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in own:
                    continue
                # A namespace package (azure) is shared by many distributions: find the one of this module.
                dotted = [name.rsplit(".", n)[0] for n in range(name.count(".") + 1)]
                for candidate in dotted:
                    spec = importlib.util.find_spec(candidate)
                    origin = getattr(spec, "origin", None) if spec else None
                    if origin:
                        dist = _distribution_of(Path(origin))
                        if dist:
                            found.add(dist)
                            break
                else:
                    found.update(d.lower().replace("_", "-") for d in providers.get(top, []))
    return found


@functools.cache
def _owners() -> dict[str, str]:
    """Every installed file (resolved path) → the distribution that installed it, read once."""
    from importlib.metadata import distributions

    owners: dict[str, str] = {}
    for dist in distributions():
        name = str(dist.metadata["Name"]).lower().replace("_", "-")
        for entry in dist.files or ():
            if entry.suffix == ".py":
                owners[str(Path(str(dist.locate_file(entry))).resolve())] = name
    return owners


def _distribution_of(file: Path) -> str | None:
    return _owners().get(str(file.resolve()))


def test_requirements_txt_is_what_the_app_imports() -> None:
    """What Azure installs for the app: every distribution functions/ and shared/ import, and nothing only the CLI,
    devhost, the tests or the training jobs use (each one is built into every deploy and read on cold starts)."""
    wanted = _requirement_names(ROOT / "requirements.txt")
    imported = _imported_distributions("functions", "shared", files=("function_app.py",))
    assert imported - wanted == set(), "the app imports these: add them to requirements.txt"
    assert wanted - imported == set(), "the app never imports these: they belong in requirements-cli/-dev.txt"


def test_the_cli_and_devhost_have_what_they_import() -> None:
    """`pip install .` (both files) gives a `perennial` that starts: what perennial_cli/ and devhost/ import is in
    requirements.txt or requirements-cli.txt, not only in the test tools."""
    wanted = _requirement_names(ROOT / "requirements.txt") | _requirement_names(ROOT / "requirements-cli.txt")
    imported = _imported_distributions("perennial_cli", "devhost")
    # aiohttp, devhost's web server, comes with azure-functions-durable (which the app itself needs).
    assert imported - wanted - {"aiohttp"} == set(), "add them to requirements-cli.txt"
