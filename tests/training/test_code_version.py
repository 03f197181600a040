"""A model card's code version tells apart every version of the training code that produced a model."""

from __future__ import annotations

import subprocess
from pathlib import Path

from training_jobs.card import code_version, source_hash


def _git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *identity, "-C", str(folder), *args], check=True, capture_output=True)


def test_two_different_uncommitted_edits_have_different_code_versions(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("LR = 0.01\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    clean = code_version(tmp_path)
    assert clean.startswith("git:")
    assert "dirty" not in clean

    versions = []
    for edit in ("LR = 0.1\n", "LR = 0.5\n"):
        (tmp_path / "train.py").write_text(edit)
        versions.append(code_version(tmp_path))
    assert versions[0] != versions[1], "both were git:<sha>-dirty"
    assert versions[1] == f"{clean}-dirty+sha256:{source_hash(tmp_path)}"


def test_without_git_the_code_version_is_the_source_hash(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("LR = 0.01\n")
    assert code_version(tmp_path) == f"sha256:{source_hash(tmp_path)}"
