"""``perennial validate``: tables for people, JSON for machines, exit codes for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from perennial_cli.main import app
from perennial_cli.synthetic import fraud_batch, write_csv
from tests.validation.conftest import REPO

runner = CliRunner()
SPEC = str(REPO / "models" / "fraud.yaml")


def test_clean_batch_passes_and_writes_a_profile_then_drift_is_reported(tmp_path: Path) -> None:
    reference_csv = write_csv(fraud_batch(5000, seed=1), tmp_path / "ref.csv")
    profile = tmp_path / "ref-profile.json"
    result = runner.invoke(app, ["validate", str(reference_csv), "--spec", SPEC, "--profile-out", str(profile)])
    assert result.exit_code == 0, result.output
    assert "passed" in result.output
    assert json.loads(profile.read_text())["rows"] == 5000

    drifted_csv = write_csv(fraud_batch(5000, seed=2, drift=1.0, start_id=10_000), tmp_path / "new.csv")
    result = runner.invoke(app, ["validate", str(drifted_csv), "--spec", SPEC, "--reference", str(profile), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["validation"]["ok"] is True
    assert document["drift"]["drifted"] is True
    assert "amount" in document["drift"]["drifted_columns"]


def test_failed_batch_exits_1_with_the_fix(tmp_path: Path) -> None:
    frame = fraud_batch(2000, seed=3)
    frame.loc[10, "amount"] = -5.0
    result = runner.invoke(app, ["validate", str(write_csv(frame, tmp_path / "bad.csv")), "--spec", SPEC])
    assert result.exit_code == 1
    assert "out_of_range" in result.output
    assert "fix out_of_range amount" in result.output


def test_a_missing_file_is_a_usage_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    # Wide enough for any tmp_path (pytest-xdist adds popen-gwN/): rich would wrap the path mid-name.
    result = runner.invoke(app, ["validate", str(missing), "--spec", SPEC], env={"COLUMNS": "400"})
    assert result.exit_code == 2  # not 1: there is no data that failed a check (tests/cli/test_first_use.py)
    assert f"{missing}: no such file" in result.output


def test_bad_spec_or_reference_exits_2(tmp_path: Path) -> None:
    data = write_csv(fraud_batch(10, seed=3), tmp_path / "d.csv")
    result = runner.invoke(app, ["validate", str(data), "--spec", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    result = runner.invoke(app, ["validate", str(data), "--spec", SPEC, "--reference", str(junk)])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_a_profile_path_that_cannot_be_written_exits_2_with_the_fix_not_a_traceback(tmp_path: Path) -> None:
    data = write_csv(fraud_batch(200, seed=4), tmp_path / "d.csv")
    wide = {"COLUMNS": "400"}
    # A directory is refused before the batch is read.
    result = runner.invoke(app, ["validate", str(data), "--spec", SPEC, "--profile-out", str(tmp_path)], env=wide)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "cannot write the profile (it is a directory; pass a file path such as profile.json)" in result.output
    # A folder that cannot be made: the report is still shown, and the exit code says the command did not finish.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "profile.json"
    result = runner.invoke(app, ["validate", str(data), "--spec", SPEC, "--profile-out", str(target)], env=wide)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "200 rows" in result.output, "the report is shown"
    assert f"{target}: cannot write the profile (" in result.output
    assert "pass --profile-out a writable file path" in result.output


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "perennial_cli.main", "validate", str(empty), "--spec", SPEC, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["validation"]["findings"]
    assert findings[0]["check"] == "corrupt_input"
    assert "empty" in findings[0]["message"]
