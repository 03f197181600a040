"""Perennial end to end: devhost (a subprocess, virtual clock) + the local Event Grid + Azurite + local ML.

The host runs function_app.py unmodified, as `perennial host` would, on free loopback ports;
tests talk to it over real HTTP and land blobs in Azurite like a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from perennial_cli.localstack import StackError, perennial_environment, start_devhost, wait_until_healthy
from perennial_cli.traffic import ScoringTraffic as _ScoringTraffic
from shared.registry import Registry
from shared.settings import load_settings
from shared.storage import BlobStore
from tests.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-function-key"
T = TypeVar("T")


def fast_fraud_spec(directory: Path, **overrides: Any) -> Path:
    """models/fraud.yaml, made quick for tests: tiny training, short debounce and bakes."""
    spec = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    spec["data"]["min_rows"] = 200
    spec["training"].update(
        max_candidates=2,
        timeout_minutes=10080,
        # Enough steps to learn something: the holdout the evaluation scores is rows no candidate trained on.
        params={"epochs": 12, "batch_size": 256, "imbalance": "class-weight", "checkpoint-every-minutes": 0},
        search_space={"lr": {"values": [0.003, 0.01]}, "width": {"values": [32]}, "depth": {"values": [1]}},
    )
    spec["promotion"].update(first_run_floor={"pr_auc": 0.05}, min_improvement=0.0)
    spec["rollout"].update(steps=[50, 100], bake_minutes=1, max_bake_extensions=0)
    spec["rollout"]["shadow"]["enabled"] = False
    spec["triggers"]["debounce"] = {"quiet_seconds": 30, "max_wait_seconds": 120}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        spec[section][field] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fraud.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class PerennialHost:
    """A devhost subprocess serving Perennial, plus the clients a user has (HTTP API, blob storage)."""

    def __init__(self, workdir: Path, connection_string: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = perennial_environment(
            connection_string=connection_string,
            models=workdir / "models",
            state=workdir / "state",
            base_url=self.base_url,
            function_key=KEY,
            topic_key="e2e-topic-key",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=60, headers={"x-functions-key": KEY})
        settings = load_settings(self.env)
        from shared.spec import load_specs

        self.store = BlobStore.from_settings(settings.storage, load_specs(workdir / "models").keys())
        self.registry = Registry.from_settings(settings.storage, self.store)
        self.store.ensure_containers()
        self.registry.ensure_tables()

    # ----------------------------------------------------------------- process

    def start(self) -> None:
        self.process = start_devhost(self.port, self.workdir / "state" / "devhost", self.env, self.workdir / "host.log")
        try:
            wait_until_healthy(self.process, self.base_url, timeout=90)
        except StackError as exc:
            self.kill()  # its whole process group: a fixture whose start failed never reaches its stop()
            raise RuntimeError(f"{exc}:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crashed worker."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.http.close()

    def log_tail(self, lines: int = 80) -> str:
        """The host log's last lines, without the test's own polling (it would hide what went wrong)."""
        path = self.workdir / "host.log"
        if not path.exists():
            return ""
        noise = ("'Functions.list_runs'", "'Functions.get_run'", "'Functions.list_models'", "/admin/clock")
        kept = [line for line in path.read_text(errors="replace").splitlines() if not any(n in line for n in noise)]
        return "\n".join(kept[-lines:])

    # ----------------------------------------------------------------- clients

    def advance(self, seconds: float) -> None:
        response = self.http.post("/admin/clock", json={"advance_seconds": seconds})
        assert response.status_code == 200, response.text

    def land(self, name: str, data: bytes) -> None:
        """Upload ``landing/fraud/<name>`` as a producer would."""
        self.store.container("landing").upload_blob(f"fraud/{name}", data, overwrite=True)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 240, advance: float = 15) -> T:
        """Poll ``probe`` until it returns something, moving the virtual clock ``advance`` s each round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"devhost died while waiting for {what}:\n{self.log_tail()}")
            if advance:
                self.advance(advance)
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def runs(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/models/fraud/runs")
        assert response.status_code == 200, response.text
        return list(response.json()["runs"])

    def finished_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs() if r["status"] not in ("pending", "running")]

    def platform(self) -> Any:
        """The local ML platform on the host's state folder (endpoints, deployments, faults), as the host sees it."""
        from shared.platform.local import LocalPlatform

        return LocalPlatform(self.workdir / "state")

    def traffic(self, endpoint: str = "fraud-ep") -> dict[str, int]:
        return dict(self.platform().get_traffic(endpoint).live)

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


# --------------------------------------------------------------------------- rollouts


ACTIVE = ("pending", "running")


class ScoringTraffic(_ScoringTraffic):
    """A client of the model's online endpoint, as the bank's authorisation service would be: it scores
    single transactions concurrently and remembers who answered each (and the true label, for feedback)."""

    def __init__(self, host: PerennialHost, endpoint: str = "fraud-ep", seed: int = 11) -> None:
        from perennial_cli.synthetic import fraud_batch

        self.host = host
        self.endpoint = endpoint
        frame = fraud_batch(4000, seed=seed, start_id=9_000_000)
        super().__init__(lambda: host.platform().scoring_address(endpoint), frame)


def rollout_status(host: PerennialHost, run_id: str) -> dict[str, Any] | None:
    """The staged_rollout instance's custom status (None until it exists)."""
    return custom_status(host, f"{run_id}-rollout")


def custom_status(host: PerennialHost, instance_id: str) -> dict[str, Any] | None:
    """A running orchestration's custom status (None when it does not exist or has ended)."""
    response = host.http.get(f"/runtime/webhooks/durabletask/instances/{instance_id}")
    if response.status_code not in (200, 202):  # 202 while it runs, as the real host answers
        return None
    body = response.json()
    if body.get("runtimeStatus") not in ("Running", "Pending"):
        return None
    status = body.get("customStatus")
    return status if isinstance(status, dict) else None


def drive_rollout(
    host: PerennialHost,
    run_id: str,
    traffic: ScoringTraffic,
    bake_minutes: float,
    requests_per_bake: int = 240,
    on_bake: Callable[[ScoringTraffic], None] | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """Play a rollout to its end: at every new bake window, send scoring traffic (real time, while the
    virtual clock stands still, so the window holds it), then move the clock past the bake."""
    deadline = time.monotonic() + timeout
    baked: set[tuple[int, int]] = set()
    while time.monotonic() < deadline:
        detail = host.run(run_id)
        if detail["status"] not in ACTIVE:
            return detail
        if host.process is not None and host.process.poll() is not None:
            raise AssertionError(f"devhost died during the rollout:\n{host.log_tail()}")
        status = rollout_status(host, run_id)
        if status and status.get("stage") == "stepping_back":  # a pause between two moves of a stepped rollback
            host.advance(float(status["pause_minutes"]) * 60 + 1)
        elif status and status.get("stage") == "baking":
            key = (int(status["step_index"]), int(status["bake"]))
            if key not in baked:
                baked.add(key)
                # Two clients, not eight: the local scoring server answers one request at a time per
                # deployment, so with many clients the latencies measure queue lengths, which drift apart
                # between two identical deployments and make a healthy challenger look slower.
                traffic.send(requests_per_bake, workers=2)
                if on_bake is not None:
                    on_bake(traffic)
                host.advance(bake_minutes * 60 + 1)
                continue
        elif detail["stage"] in ("queued", "created", "validating", "planning", "training", "evaluating"):
            host.advance(15)  # the run has not reached its rollout yet: let its timers fire
        time.sleep(0.3)
    raise AssertionError(f"the rollout of {run_id} did not finish in {timeout:.0f} s:\n{host.log_tail()}")
