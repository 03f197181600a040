"""Every spec duration an orchestrator turns into a timer has an upper bound: 99999999999999 passed `spec check`
once, and the coordinator then failed on every run (timedelta overflow) with its request queued for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
HUGE = 99_999_999_999_999

#: (path in the spec, the unit the orchestrators read it in, the largest value accepted)
DURATIONS = [
    (("triggers", "debounce", "max_wait_seconds"), "seconds", 7 * 24 * 3600),
    (("triggers", "debounce", "quiet_seconds"), "seconds", 7 * 24 * 3600),
    (("triggers", "max_model_age_days"), "days", 3650),
    (("rollout", "bake_minutes"), "minutes", 7 * 24 * 60),
    (("rollout", "shadow", "bake_minutes"), "minutes", 7 * 24 * 60),
    (("rollout", "approval", "timeout_hours"), "hours", 90 * 24),
    (("rollout", "retire_after_hours"), "hours", 365 * 24),
    (("rollout", "probe_timeout_seconds"), "seconds", 600),
]


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return document


@pytest.mark.parametrize(("path", "unit", "largest"), DURATIONS, ids=[".".join(d[0]) for d in DURATIONS])
def test_a_duration_past_its_bound_is_refused_naming_the_field(path: tuple[str, ...], unit: str, largest: int) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_with(path, HUGE), "fraud.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith(f"fraud.yaml: {'.'.join(path)}="), problem
    document = _with(path, largest)
    if path[-1] == "quiet_seconds":  # the quiet window must fit inside the max wait
        document["triggers"]["debounce"]["max_wait_seconds"] = largest
    spec = parse_spec(document, "fraud.yaml")  # the bound itself is accepted ...
    # ... and an orchestrator's timer arithmetic on it stays within datetime's range.
    assert datetime(2030, 1, 1, tzinfo=UTC) + timedelta(**{unit: float(largest)}) > datetime(2030, 1, 1, tzinfo=UTC)
    assert spec.name == "fraud"
