"""The traffic invariants as pure functions (both adapters call these before any request)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.platform import Traffic, TrafficInvariantError
from shared.platform.traffic import check_deletable, check_traffic, check_traffic_shape

DEPLOYMENTS = ["blue", "green", "red"]


@st.composite
def valid_traffic(draw: st.DrawFn) -> Traffic:
    """Live shares over some deployments summing to 100; maybe a mirror (<= 50) to one without live traffic."""
    names = draw(st.lists(st.sampled_from(DEPLOYMENTS), min_size=1, max_size=3, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=len(names) - 1, max_size=len(names) - 1)))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    live = dict(zip(names, shares, strict=True))
    idle = [d for d in DEPLOYMENTS if live.get(d, 0) == 0]
    mirrored: bool = draw(st.booleans())
    mirror: dict[str, int] = {}
    if idle and mirrored:
        mirror[draw(st.sampled_from(idle))] = draw(st.integers(1, 50))
    return Traffic(live, mirror)


@given(valid_traffic())
def test_every_valid_split_is_accepted_and_zeros_are_stripped(traffic: Traffic) -> None:
    checked = check_traffic(traffic, DEPLOYMENTS)
    assert sum(checked.live.values()) == 100
    assert all(v > 0 for v in [*checked.live.values(), *checked.mirror.values()])
    assert {k: v for k, v in traffic.live.items() if v} == dict(checked.live)


@given(valid_traffic(), st.integers(1, 99))
def test_any_other_live_total_is_refused(traffic: Traffic, delta: int) -> None:
    name = next(iter(traffic.live))
    broken = Traffic({**traffic.live, name: traffic.live[name] + delta}, traffic.mirror)
    with pytest.raises(TrafficInvariantError, match=r"sums to|from 0 to 100"):
        check_traffic_shape(broken)


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        (Traffic({"blue": 100}, {"green": 51}), "at most 50"),
        (Traffic({"blue": 50, "green": 50}, {"green": 10}), "no live traffic"),
        (Traffic({"blue": 100}, {"green": 10, "red": 5}), "one deployment"),
        (Traffic({"blue": 100.0}), "whole percentage"),  # type: ignore[dict-item]
        (Traffic({"blue": True}), "whole percentage"),
        (Traffic({}, {"green": 10}), "no deployment takes live traffic"),
    ],
)
def test_shape_violations_name_the_fix(traffic: Traffic, message: str) -> None:
    with pytest.raises(TrafficInvariantError, match=message) as error:
        check_traffic_shape(traffic)
    assert error.value.hint


def test_zero_traffic_is_only_for_an_endpoint_without_deployments() -> None:
    assert check_traffic(Traffic(), []) == Traffic()
    with pytest.raises(TrafficInvariantError, match="sums to 0"):
        check_traffic(Traffic({"blue": 0}), ["blue"])


def test_an_endpoint_may_go_dark_only_when_asked_explicitly() -> None:
    # Taking a failed first model off an endpoint with no champion: the one legitimate zero.
    assert check_traffic(Traffic({"blue": 0}), ["blue"], allow_no_live_traffic=True) == Traffic()
    with pytest.raises(TrafficInvariantError, match="sums to 50"):
        check_traffic(Traffic({"blue": 50}), ["blue"], allow_no_live_traffic=True)


def test_only_existing_deployments_may_be_named() -> None:
    with pytest.raises(TrafficInvariantError, match="'purple' does not exist"):
        check_traffic(Traffic({"blue": 100}, {"purple": 10}), ["blue"])
    with pytest.raises(TrafficInvariantError, match="'purple' does not exist"):
        check_traffic(Traffic({"blue": 100, "purple": 0}), ["blue"])


def test_a_deployment_with_traffic_cannot_be_deleted() -> None:
    current = Traffic({"blue": 100}, {"green": 10})
    for name in ("blue", "green"):
        with pytest.raises(TrafficInvariantError, match="still takes"):
            check_deletable(name, current)
    check_deletable("red", current)  # no traffic: fine
