"""Whole apps under ``python -m devhost`` in a subprocess: an independent sample app, and Perennial's own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.azurite import free_port
from tests.devhost.conftest import FIXTURES, ROOT


@contextmanager
def devhost_process(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", *args, "--port", str(port), "--parent-pid", str(os.getpid())],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"devhost exited with {process.returncode}:\n{process.stdout.read() if process.stdout else ''}"
                )
            try:
                if httpx.get(f"{base}/admin/host/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("devhost did not start within 60 s")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_independent_sample_app_runs_unmodified(tmp_path: Path) -> None:
    app_dir = tmp_path / "orders"
    shutil.copytree(FIXTURES / "sample_app", app_dir)
    # Core Tools reads local.settings.json beside the app; so does devhost.
    shutil.move(app_dir / "sample.settings.json", app_dir / "local.settings.json")
    with devhost_process(["--app", "function_app.py", "--state", str(tmp_path / "state")], app_dir, {}) as (
        base,
        process,
    ):
        order = {"items": [{"sku": "apple", "qty": 2}, {"sku": "plum", "qty": 5}]}
        assert httpx.post(f"{base}/api/orders", json=order).status_code == 401
        started = httpx.post(f"{base}/api/orders", json=order, headers={"x-functions-key": "sample-key"})
        assert started.status_code == 202
        status_url = started.json()["statusQueryGetUri"]
        assert "taskHub=SampleHub" in status_url
        deadline = time.monotonic() + 20
        while (status := httpx.get(status_url).json())["runtimeStatus"] != "Completed":
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["output"] == {"status": "fulfilled", "receipt": {"total": 160, "currency": "EUR"}}
        mine = httpx.get(f"{base}/api/orders/{started.json()['id']}", params={"code": "sample-key"})
        assert mine.json() == {"status": "Completed"}
        rejected = httpx.post(
            f"{base}/api/orders", json={"items": [{"sku": "kiwi", "qty": 1}]}, params={"code": "sample-key"}
        )
        rejected_url = rejected.json()["statusQueryGetUri"]
        while (status := httpx.get(rejected_url).json())["runtimeStatus"] != "Completed":
            time.sleep(0.05)
        assert status["output"] == {"status": "rejected", "reason": "unknown sku kiwi"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        output = process.stdout.read() if process.stdout else ""
    # Start-up lists the routes like Core Tools; Ctrl-C shuts down cleanly; each invocation is logged.
    assert f"place_order: [POST] {base}/api/orders" in output
    assert "fulfil_order: orchestrationTrigger" in output
    assert "Executed 'Functions.place_order' (Succeeded" in output
    # Orchestrator episodes and activities are logged per invocation too: function, instance id, duration, outcome.
    instance = started.json()["id"]
    for function in ("fulfil_order", "validate_order", "reserve_item", "charge"):
        assert re.search(
            rf"Executed 'Functions\.{function}' \(Succeeded, InstanceId={instance}, Duration=[0-9.]+ms", output
        ), f"no invocation log line for {function}"
    assert "devhost: shutting down" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_perennial_function_app_is_served(tmp_path: Path) -> None:
    env = {"PERENNIAL_PLATFORM": "local", "PERENNIAL_LOG_FORMAT": "text", "DEVHOST_FUNCTION_KEYS": "k"}
    args = ["--app", str(ROOT / "function_app.py"), "--state", str(tmp_path / "state")]
    with devhost_process(args, ROOT, env) as (base, _):
        health = httpx.get(f"{base}/api/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        webhook = f"{base}/runtime/webhooks/eventgrid"
        validation = [
            {
                "id": "1",
                "topic": "/subscriptions/x",
                "subject": "",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2026-01-01T00:00:00Z",
                "data": {"validationCode": "abc-123"},
                "dataVersion": "1",
            }
        ]
        params = {"functionName": "on_blob_created", "code": "k"}
        handshake = httpx.post(
            webhook, params=params, headers={"aeg-event-type": "SubscriptionValidation"}, json=validation
        )
        assert handshake.json() == {"validationResponse": "abc-123"}
        blob = {
            "id": "b1",
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
            "subject": "/blobServices/default/containers/landing/blobs/fraud/batch.csv",
            "eventType": "Microsoft.Storage.BlobCreated",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {"url": "http://127.0.0.1:10000/devstoreaccount1/landing/fraud/batch.csv", "eTag": "0x1"},
            "dataVersion": "1",
        }
        delivered = httpx.post(webhook, params=params, headers={"aeg-event-type": "Notification"}, json=[blob])
        assert delivered.status_code in (200, 202), delivered.text
