"""Which idle deployments may go: never one with traffic or the champion's; the previous champion's after its grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.policy import PolicyInputError, TrafficRepair, deployments_to_retire, traffic_to_repair

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


# --------------------------------------------------------------------------- a left-over split between runs


def _repair(**overrides: object) -> TrafficRepair | None:
    args: dict[str, object] = {
        "live": {"fraud-v3": 50, "fraud-v2": 50},
        "mirror": {},
        "champion": "fraud-v3",
        "deployments": ["fraud-v2", "fraud-v3"],
        "run_in_progress": False,
    }
    args.update(overrides)
    return traffic_to_repair(**args)  # type: ignore[arg-type]


def test_a_split_left_between_runs_goes_back_to_the_champion() -> None:
    repair = _repair()
    assert repair is not None
    assert repair.live == {"fraud-v3": 100, "fraud-v2": 0}
    assert repair.reason == "fraud-v2 50 %, fraud-v3 50 % with no run in flight: fraud-v3 back at 100 %"
    mirrored = _repair(live={"fraud-v3": 100}, mirror={"fraud-v2": 10})
    assert mirrored is not None
    assert mirrored.live == {"fraud-v3": 100}
    assert "mirror fraud-v2 10 %" in mirrored.reason


@pytest.mark.parametrize(
    "overrides",
    [
        {"live": {"fraud-v3": 100}},  # as it should be
        {"live": {"fraud-v3": 100, "fraud-v2": 0}},  # an idle deployment at 0 % is fine
        {"run_in_progress": True},  # the run owns the traffic
        {"champion": None},  # nothing to return to
        {"deployments": ["fraud-v2"]},  # the champion's deployment is gone: for the operator
        {"live": {"fraud-v3": 50, "credit-v1": 50}},  # a deployment made by hand takes traffic
        {"live": {"fraud-v3": 100}, "mirror": {"credit-v1": 10}},  # a hand-made shadow
    ],
)
def test_traffic_is_left_alone(overrides: dict[str, object]) -> None:
    assert _repair(**overrides) is None
