"""Which idle deployments may go: never one with traffic or the champion's; the previous champion's after its grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.policy import PolicyInputError, deployments_to_retire

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _plan(**overrides: object) -> list[str]:
    args: dict[str, object] = {
        "now": NOW,
        "deployments": ["fraud-v1", "fraud-v2", "fraud-v3"],
        "live": {"fraud-v3": 100},
        "mirror": {},
        "champion": "fraud-v3",
        "previous": "fraud-v2",
        "champion_since": NOW - timedelta(hours=2),
        "retire_after_hours": 24.0,
        "run_in_progress": False,
    }
    args.update(overrides)
    return [r.deployment for r in deployments_to_retire(**args)]  # type: ignore[arg-type]


def test_the_previous_champion_stays_for_its_grace_period_and_leftovers_go() -> None:
    assert _plan() == ["fraud-v1"]


def test_the_previous_champion_goes_once_the_grace_period_has_passed() -> None:
    assert _plan(champion_since=NOW - timedelta(hours=24)) == ["fraud-v1", "fraud-v2"]
    assert _plan(retire_after_hours=0.0) == ["fraud-v1", "fraud-v2"]


@pytest.mark.parametrize(
    ("live", "mirror"),
    [({"fraud-v3": 90, "fraud-v1": 10}, {}), ({"fraud-v3": 100}, {"fraud-v1": 10})],
)
def test_a_deployment_with_live_or_mirrored_traffic_never_goes(live: dict[str, int], mirror: dict[str, int]) -> None:
    assert "fraud-v1" not in _plan(live=live, mirror=mirror)


def test_the_champion_never_goes_even_without_traffic() -> None:
    assert _plan(live={}, champion="fraud-v1", previous=None) == ["fraud-v2", "fraud-v3"]


def test_nothing_goes_while_a_run_is_in_progress() -> None:
    assert _plan(run_in_progress=True) == []


def test_times_must_be_aware() -> None:
    with pytest.raises(PolicyInputError, match="time zone"):
        _plan(now=datetime(2026, 11, 29, 12, 0))
