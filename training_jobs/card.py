"""Provenance for the model card: which code and which packages produced a model."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "safetensors", "mlflow")


def source_hash(directory: Path = HERE) -> str:
    """sha256 over the training_jobs sources (name + bytes), sorted: stable wherever the folder is copied."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")) + sorted(directory.glob("*.yml")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_version(directory: Path = HERE) -> str:
    """``git:<sha>``; with local edits in training_jobs, ``git:<sha>-dirty+sha256:<source hash>`` (two different
    edits of one commit are different code); else ``sha256:<source hash>``.

    Azure ML snapshots the code without .git, so the source hash is what a job on the compute records.
    """
    try:
        sha = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"sha256:{source_hash(directory)}"
    if not sha:
        return f"sha256:{source_hash(directory)}"
    return f"git:{sha}-dirty+sha256:{source_hash(directory)}" if dirty else f"git:{sha}"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
