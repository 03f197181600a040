"""The Function App entry point: cheap to import, and /api/health answers without a key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_importing_function_app_loads_neither_torch_nor_azure_ai_ml() -> None:
    # A fresh interpreter: other tests may already have imported torch into this one.
    probe = (
        "import sys, function_app\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')"
        " or m == 'azure.ai.ml' or m.startswith('azure.ai.ml.'))\n"
        "print(len(function_app.app.get_functions()), heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    count, heavy = done.stdout.strip().split(" ", 1)
    assert int(count) >= 1
    assert heavy == "[]", f"function_app imported heavy modules: {heavy}"


def test_health_is_anonymous_and_says_only_that_it_is_up_and_its_version(app_functions: dict[str, Any]) -> None:
    import azure.functions as func

    health = app_functions["health"]
    trigger = health.get_trigger()
    assert trigger.auth_level == func.AuthLevel.ANONYMOUS
    response = health.get_user_function()(func.HttpRequest("GET", "/api/health", body=b""))
    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert set(body) == {"status", "version"}, "settings and endpoint names are not for anyone to read"
    assert body["version"]


def test_status_behind_the_key_reports_platform_settings_and_models(app_functions: dict[str, Any]) -> None:
    import azure.functions as func

    status = app_functions["status"]
    assert status.get_trigger().auth_level in (func.AuthLevel.FUNCTION, None)
    body = json.loads(status.get_user_function()(func.HttpRequest("GET", "/api/status", body=b"")).get_body())
    assert body["platform"] == "local"
    assert body["models"]["fraud"]["endpoint"] == "fraud-ep"
    assert body["settings"]["storage"] in ("azurite", "connection-string", "identity")


def test_every_other_http_route_needs_a_function_key(app_functions: dict[str, Any]) -> None:
    import azure.functions as func

    for function in app_functions.values():
        trigger = function.get_trigger()
        if trigger.type == "httpTrigger" and function.get_function_name() != "health":
            assert trigger.auth_level in (func.AuthLevel.FUNCTION, func.AuthLevel.ADMIN, None)
