"""train.py / evaluate.py ``--help`` shows every default, and a missing or bad contract.json says how to make one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.training.conftest import TRAIN, run_script
from training_jobs import evaluate, train

CONTRACT_COMMAND = "perennial spec contract models/<name>.yaml -o contract.json"
PARSERS = {"train.py": train.build_parser, "evaluate.py": evaluate.build_parser}


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())  # argparse wraps to the terminal's width


def _entries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's entry in --help (its lines joined), by its first flag."""
    entries: dict[str, str] = {}
    flag = ""
    for line in parser.format_help().splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = ""
        elif not line.startswith("    "):
            flag = ""  # a section heading or the epilog
        if flag:
            entries[flag] = " ".join([entries[flag], *line.split()]).strip()
    return entries


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_help_shows_every_default_and_no_none(script: str) -> None:
    parser = PARSERS[script]()
    entries = _entries(parser)
    options = [a for a in parser._actions if a.option_strings and a.default is not argparse.SUPPRESS]
    assert len(options) > 5
    for action in options:
        entry = entries[action.option_strings[0]]
        if action.default is None:
            assert "(default:" not in entry, entry
        else:
            assert entry.endswith(f"(default: {action.default})"), entry
    assert CONTRACT_COMMAND in entries["--contract"]


def test_train_help_reads_well() -> None:
    text = _help(train.build_parser())
    assert "--lr LR peak learning rate (AdamW) (default: 0.001)" in text
    assert "--batch-size BATCH_SIZE global rows per optimiser step (default: 512)" in text
    assert "--amp {off,bf16,fp16} autocast precision (default: off)" in text
    assert "--data PATH --contract contract.json" in text
    assert "--output-dir DIR" in text
    # the example is printed as written, one command a line
    assert "\n  perennial spec contract models/fraud.yaml -o contract.json\n" in train.build_parser().format_help()


def test_the_script_prints_its_help_with_defaults() -> None:
    done = run_script(TRAIN, ["--help"])
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps at the terminal's width
    assert "(default: 128)" in text
    assert "perennial spec contract" in text


def test_train_missing_or_bad_contract_hint_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    for contract in (tmp_path / "missing.json", bad):
        code = train.main(["--data", str(tmp_path), "--contract", str(contract), "--output-dir", str(tmp_path / "out")])
        assert code == 2
        err = capsys.readouterr().err
        assert f"error: {contract}" in err
        assert "hint: " in err
        assert CONTRACT_COMMAND in err


def test_evaluate_missing_contract_hint_names_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate.main(
        [
            "--challenger", str(tmp_path / "model"), "--data", str(tmp_path), "--contract", str(tmp_path / "c.json"),
            "--output", str(tmp_path / "comparison.json"),
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "no such file" in err
    assert CONTRACT_COMMAND in err


def test_other_errors_keep_their_own_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate.main(
        [
            "--challenger", str(tmp_path), "--data", str(tmp_path), "--contract", str(tmp_path / "c.json"),
            "--output", str(tmp_path / "comparison.json"), "--bootstrap", "5",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--bootstrap 5 is too few" in err
    assert "perennial spec contract" not in err
