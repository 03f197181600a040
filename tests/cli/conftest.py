"""One real host per test module: devhost serving function_app.py against its own Azurite.

Runs are seeded straight into the registry (no training needed). Two models: ``fraud`` holds
the seeded runs (one of them active), ``lending`` has none, so a retrain of it is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from shared.registry import Candidate, Champion, ModelVersion, RolloutStep, Run
from tests.azurite import start_azurite
from tests.e2e.harness import PerennialHost, fast_fraud_spec

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PROMOTED = "fraud-00000000000000a1"
NOT_PROMOTED = "fraud-00000000000000a2"
RUNNING = "fraud-00000000000000b1"
MANIFEST = "http://127.0.0.1/devstoreaccount1/manifests/fraud/fraud-00000000000000a1.json"
_METRICS = {"accuracy": 0.991, "precision": 0.61, "recall": 0.44, "f1": 0.51, "roc_auc": 0.93, "ece": 0.004}
#: The promoted run's comparison.json, as the evaluation job writes it.
COMPARISON = {
    "primary_metric": "pr_auc",
    "n_holdout": 4000,
    "challenger": {**_METRICS, "pr_auc": 0.398},
    "champion": {**_METRICS, "pr_auc": 0.374},
    "difference": {
        "metric": "pr_auc", "estimate": 0.024, "ci_low": 0.008, "ci_high": 0.041, "confidence": 0.95,
        "p_value": 0.003, "bootstrap_samples": 1000,
    },
    "mcnemar": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerennialHost]:
    workdir = tmp_path_factory.mktemp("cli-host")
    spec = yaml.safe_load(fast_fraud_spec(workdir / "models").read_text())
    spec["name"], spec["rollout"]["endpoint"] = "lending", "lending-ep"
    (workdir / "models" / "lending.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    azurite = start_azurite()
    try:
        server = PerennialHost(workdir, azurite.connection_string)
        seed(server)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        azurite.stop()


#: What a failed candidate's job left: its error and the last lines of its log.
CANDIDATE_ERROR = (
    "fraud-00000000000000a1-c2-a0: failed (job exited 1; last lines of its log:\n"
    "step 120 loss nan\nDivergedError: the loss is not finite at step 120; lower --lr)"
)


def seed(host: PerennialHost) -> None:
    registry = host.registry
    registry.create_run(
        Run(
            "fraud", PROMOTED, "manual", "quarterly refresh", "ev-1", status="promoted", stage="done",
            created_at=T0, manifest_url=MANIFEST, decision="promote", registered_version="3",
            decision_reasons=["pr_auc 0.412 beats the champion's 0.388 by 0.024 (p=0.003)"],
            details={"evaluated_candidate": "c0", "evaluation": COMPARISON},
        )
    )  # fmt: skip
    registry.save_candidates(
        [
            Candidate(
                "fraud", PROMOTED, "c0", {"lr": 0.003, "width": 32}, status="completed", metrics={"pr_auc": 0.412}
            ),
            Candidate(
                "fraud", PROMOTED, "c1", {"lr": 0.01, "width": 32}, status="completed", metrics={"pr_auc": 0.377}
            ),
            Candidate("fraud", PROMOTED, "c2", {"lr": 0.1, "width": 32}, status="failed", error=CANDIDATE_ERROR),
        ]
    )
    registry.register_version(
        ModelVersion(
            "fraud", "3", PROMOTED, "c0", "manual", "quarterly refresh", "ev-1", MANIFEST,
            manifest_sha256="5e" * 32, data_files=2, data_bytes=2048,
            params={"lr": 0.003, "width": 32}, metrics={"pr_auc": 0.412},
        )
    )  # fmt: skip
    for index, (step, traffic, verdict) in enumerate(
        [("deploy", {"fraud-v2": 100}, "pass"), ("traffic-50", {"fraud-v2": 50, "fraud-v3": 50}, "pass"),
         ("traffic-100", {"fraud-v3": 100}, "pass")]
    ):  # fmt: skip
        registry.record_rollout_step(RolloutStep("fraud", PROMOTED, index, step, traffic, verdict=verdict))
    registry.set_champion(Champion("fraud", "3", PROMOTED, deployment="fraud-v3", previous_version="2"))
    registry.create_run(
        Run(
            "fraud", NOT_PROMOTED, "drift", "amount drifted (PSI 0.31)", "ev-2", status="not_promoted", stage="done",
            created_at=T0 + timedelta(days=1), decision="reject", decision_reasons=["pr_auc gain 0.001 < 0.005"],
        )
    )  # fmt: skip
    registry.create_run(
        Run("fraud", RUNNING, "schedule", "model older than 30 days", "ev-3", status="running", stage="training",
            created_at=T0 + timedelta(days=2))
    )  # fmt: skip
