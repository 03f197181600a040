"""Fixtures for the infra/ checks: every Bicep file, parsed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import BicepDoc

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def bicep_paths() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@pytest.fixture(scope="session")
def docs() -> dict[str, BicepDoc]:
    """Every .bicep file under infra/, keyed by its path relative to infra/ (e.g. 'modules/ml.bicep')."""
    return {str(path.relative_to(INFRA)): BicepDoc.load(path) for path in bicep_paths()}
