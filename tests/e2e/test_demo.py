"""`perennial demo` (what `make demo` runs) as a person runs it: a subprocess, into a temporary state folder.

The full scenario must pass every stage's checks and exit 0; a stage that does not do what it claims
must exit non-zero naming the stage; Ctrl-C must stop cleanly. Whatever happens, nothing the demo
started (Azurite, devhost, scoring servers, training jobs) may outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.azurite import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.azurite]

STAGE_TITLES = {
    1: "the first batch lands → the first model ships",
    2: "traffic flows; the world drifts → retrain → staged rollout",
    3: "a corrupt batch lands → quarantined",
    4: "a challenger that fails under load → rolled back",
    5: "summary",
}


def _command(state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "perennial_cli.main",
        "demo",
        "--state",
        str(state),
        "--port",
        str(free_port()),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}


def _leftovers(state: Path) -> list[str]:
    """Command lines of live processes that mention the demo's state folder (devhost, Azurite, routers, jobs)."""
    found = []
    marker = str(state.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if marker in cmdline and "\nState:\tZ" not in status:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def _assert_nothing_left(state: Path) -> None:
    deadline = time.monotonic() + 20  # scoring workers exit on their own once their router is gone
    while (left := _leftovers(state)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, "the demo left processes running:\n" + "\n".join(left)


def _cheap_spec(path: Path, **promotion: object) -> Path:
    """models/fraud.yaml with one quick candidate (and the given promotion overrides)."""
    spec = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    spec["training"].update(max_candidates=1, params={"epochs": 1, "batch_size": 512, "imbalance": "class-weight"})
    spec["promotion"].update(promotion)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.timeout(900)
def test_the_demo_plays_every_stage_checks_it_and_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    started = time.monotonic()
    result = subprocess.run(
        _command(state), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=840, check=False
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for stage in STAGE_TITLES:
        assert f"✓ stage {stage} check:" in output, f"no check line for stage {stage}:\n{output[-4000:]}"
    assert "FAILED" not in output.replace("FAILED: landing/", ""), output[-4000:]  # (the corrupt batch's summary)
    assert "✓ every stage did what it claims" in output
    # The stages' own claims, in their words.
    for claim in (
        "clears the first-run floor",
        "drift detected against the champion's training data",
        "the challenger beats the champion on pr_auc",
        "the staged rollout passed every step: deploy → smoke → shadow → traffic-10 → traffic-50 → traffic-100",
        "stopped before training (no_valid_data)",
        "the report names both problems",
        "it failed at its first step after the smoke test (shadow)",
        "the evidence: its error rate breached the gate",
        "4 runs recorded, one per stage",
    ):
        assert claim in output, claim
    assert (state / "logs" / "host.log").exists()
    assert (state / "data" / "batch-001.csv").exists()
    _assert_nothing_left(state)
    assert seconds < 600, f"the demo took {seconds:.0f} s"


@pytest.mark.timeout(300)
def test_a_stage_that_fails_its_check_exits_non_zero_naming_the_stage(tmp_path: Path) -> None:
    # A first-run floor no model can reach: stage 1's run ends not_promoted, so its first check fails.
    spec = _cheap_spec(tmp_path / "fraud.yaml", first_run_floor={"pr_auc": 0.99})
    state = tmp_path / "demo"
    result = subprocess.run(
        _command(state, "--spec", str(spec), "--rows", "4000"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert f"✗ stage 1 ({STAGE_TITLES[1]}) FAILED" in output, output[-4000:]
    assert "it ended not_promoted" in output
    assert "✓ stage 2 check" not in output
    _assert_nothing_left(state)


def _with_ctrl_c_ignored_and_blocked() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.timeout(300)
def test_ctrl_c_mid_training_stops_everything(tmp_path: Path) -> None:
    spec = _cheap_spec(tmp_path / "fraud.yaml")
    state = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        # Its own process group, like a shell's foreground job: Ctrl-C signals the whole group. Started with
        # SIGINT ignored and blocked, as a parent may hand them down (CI saw a demo that never heard Ctrl-C).
        process = subprocess.Popen(
            _command(state, "--spec", str(spec), "--rows", "4000"),
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_with_ctrl_c_ignored_and_blocked,
        )
        try:
            deadline = time.monotonic() + 180
            while "run fraud-" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGINT)
            code = process.wait(120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 130, output[-4000:]
    assert "interrupted after" in output
    _assert_nothing_left(state)
