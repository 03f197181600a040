"""Drift check of 1M rows × 20 columns against a precomputed reference profile vs Evidently.

Same generated data for both (reference and current batches written once to Parquet under
.perennial/bench/; the current batch has planted drift in three columns). Perennial: profile
the current batch (the full validation pass, checks included) on the reference's edges and
compare with the stored reference profile. Evidently: ``Report([DataDriftPreset(columns=…)])``
on the two DataFrames (loading them is not timed for either side). Both use their default
thresholds (Wasserstein/std 0.1, Jensen–Shannon 0.1) and must flag the same columns.

Evidently 0.7.23 does not import under the project's pandas 3, so it runs in its own venv,
``.perennial/venv-evidently`` (pandas 2.3.3), created on first use from the pins below.
Run: ``python -m benchmarks bench_drift``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".perennial" / "venv-evidently"
PEER_PINS = [
    "evidently==0.7.23",
    "pandas==2.3.3",
    "numpy==2.4.6",
    "pyarrow==26.0.1",
    "scipy==1.17.1",
    "pydantic==2.14.3",
]
PLANTED = ("f3", "i1", "channel")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

PEER = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference, current, columns = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2]), sys.argv[3].split(",")
started = time.perf_counter()
snapshot = Report([DataDriftPreset(columns=columns)]).run(current_data=current, reference_data=reference)
seconds = time.perf_counter() - started
drifted = []
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        p_value = "p_value" in config["method"]
        value, threshold = metric["value"], config["threshold"]
        if (value < threshold) if p_value else (value >= threshold):
            drifted.append(config["column"])
print(json.dumps({"seconds": seconds, "drifted": sorted(drifted)}))
"""


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} for Evidently (once)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PINS], check=True)
    return python


def main() -> int:
    import pyarrow.parquet as pq

    from benchmarks.bench_validation import CONTRACT, ensure_file
    from shared.drift import compare
    from shared.validation import validate

    reference_path = ensure_file("drift_reference.parquet", seed=1)
    current_path = ensure_file("drift_current.parquet", seed=7, drifted=PLANTED)
    columns = [c.name for c in CONTRACT.feature_columns] + [CONTRACT.label]
    reference_table, current_table = pq.read_table(reference_path), pq.read_table(current_path)
    reference = validate(reference_table, CONTRACT).profile  # precomputed at training time: not timed
    assert reference is not None

    python = ensure_peer_venv()

    def perennial() -> tuple[float, float, list[str]]:
        started = time.perf_counter()
        current = validate(current_table, CONTRACT, reference=reference).profile
        assert current is not None
        compare_started = time.perf_counter()
        report = compare(reference, current, columns=columns)
        done = time.perf_counter()
        return done - started, done - compare_started, sorted(report.drifted_columns)

    def evidently() -> tuple[float, list[str]]:
        peer = subprocess.run(
            [str(python), "-c", PEER, str(reference_path), str(current_path), ",".join(columns)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        result = json.loads(peer.stdout.strip().splitlines()[-1])
        return float(result["seconds"]), list(result["drifted"])

    # Alternated (ours, Evidently, ours, …) so load from other processes hits both alike.
    ours_runs: list[tuple[float, float, list[str]]] = []
    peer_runs: list[tuple[float, list[str]]] = []
    for _ in range(ROUNDS):
        ours_runs.append(perennial())
        peer_runs.append(evidently())
    ours, compare_only, flagged = min(ours_runs)
    theirs = {"seconds": min(r[0] for r in peer_runs), "drifted": peer_runs[0][1]}
    median = statistics.median(p[0] / o[0] for p, o in zip(peer_runs, ours_runs, strict=True))
    report_columns = flagged
    ratio = theirs["seconds"] / ours
    same = report_columns == theirs["drifted"] and all(r[2] == report_columns for r in ours_runs)
    one, five, _ = os.getloadavg()
    print(
        f"data: 1,000,000 rows × 20 columns per batch; {len(columns)} columns compared; planted drift in {', '.join(PLANTED)}"
    )
    print(
        f"{ROUNDS} rounds, ours and Evidently alternated; load average {one:.1f} / {five:.1f} at the end (a shared "
        "machine: timings are noisy, the ratio is what is measured side by side)"
    )
    print(
        f"perennial profile + compare {ours:6.2f} s (compare alone {compare_only * 1000:.0f} ms) flags {report_columns}"
    )
    print(f"Evidently DataDriftPreset   {theirs['seconds']:6.2f} s flags {theirs['drifted']}")
    print(f"ratio {ratio:.1f}× best, {median:.1f}× median of rounds (target ≥ 20×); same columns flagged: {same}")
    return 0 if ratio >= 20 and same else 1
