"""Rollout stepping: advance / hold / roll back / complete, and traffic plans that keep the invariants."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from shared.canary import CanaryVerdict, DeploymentSample, analyse_canary
from shared.policy import (
    PolicyInputError,
    RolloutState,
    TrafficError,
    TrafficMoves,
    live_map,
    mirror_for_shadow,
    next_rollout_action,
    rollback_plan,
    traffic_for_step,
    traffic_moves,
)
from shared.spec import RolloutSpec, ShadowSpec

SPEC = RolloutSpec(
    steps=[10, 50, 100], bake_minutes=30, max_bake_extensions=2, shadow=ShadowSpec(enabled=True, bake_minutes=15)
)
CH, NEW = "fraud-v1", "fraud-v2"


def _verdict(kind: str, hard: bool = False) -> CanaryVerdict:
    return CanaryVerdict(kind, hard, "full", None, (), (f"{kind}: test",), (), 0.99)  # type: ignore[arg-type]


def _state(step: int, extensions: int = 0, traffic: Mapping[str, int] | None = None) -> RolloutState:
    percent = 0 if step < 0 else SPEC.steps[step]
    return RolloutState(CH, NEW, step, traffic or {CH: 100 - percent, NEW: percent}, extensions)


def _assert_valid(plan: Mapping[str, int]) -> None:
    assert sum(plan.values()) == 100
    assert all(0 <= v <= 100 for v in plan.values())


@pytest.mark.parametrize(
    ("step", "verdict", "extensions", "kind", "percent", "challenger_path"),
    [
        (0, "pass", 0, "advance", 50, [50]),
        (1, "pass", 1, "advance", 100, [100]),
        (2, "pass", 0, "complete", 100, [100]),
        (-1, "pass", 0, "advance", 10, [10]),
        (0, "inconclusive", 0, "hold", 10, []),
        (1, "marginal", 1, "hold", 50, []),
        (1, "inconclusive", 2, "rollback", 0, [10, 0]),
        (1, "marginal", 2, "rollback", 0, [10, 0]),
        (1, "fail", 0, "rollback", 0, [10, 0]),
        (2, "fail", 0, "rollback", 0, [50, 10, 0]),
        (0, "fail", 0, "rollback", 0, [0]),
        (-1, "fail", 0, "rollback", 0, [0]),
    ],
)
def test_next_action(
    step: int, verdict: str, extensions: int, kind: str, percent: int, challenger_path: list[int]
) -> None:
    action = next_rollout_action(_state(step, extensions), _verdict(verdict), SPEC)
    assert action.kind == kind
    assert action.percent == percent
    assert [p[NEW] for p in action.traffic_plan] == challenger_path
    for plan in action.traffic_plan:
        _assert_valid(plan)
    if kind == "rollback":
        assert action.traffic_plan[-1] == {CH: 100, NEW: 0}
        assert action.mirror == {}
    assert action.reasons
    assert verdict in action.reasons[0]


def test_hard_failure_rolls_back_in_one_move() -> None:
    action = next_rollout_action(_state(2), _verdict("fail", hard=True), SPEC)
    assert action.hard
    assert action.traffic_plan == ({CH: 100, NEW: 0},)
    assert "hard rollback" in action.reasons[1]


def test_hold_counts_extensions_and_bakes_again() -> None:
    action = next_rollout_action(_state(0, 1), _verdict("inconclusive"), SPEC)
    assert (action.kind, action.extensions_used, action.bake_minutes) == ("hold", 2, 30)
    assert action.traffic_plan == ()
    assert action.mirror is None  # leave traffic as it is
    assert "extension 2/2" in action.reasons[1]


def test_shadow_hold_bakes_for_the_shadow_time() -> None:
    assert next_rollout_action(_state(-1), _verdict("inconclusive"), SPEC).bake_minutes == 15


def test_advance_resets_extensions_and_clears_the_mirror() -> None:
    action = next_rollout_action(_state(-1, 2), _verdict("pass"), SPEC)
    assert action.extensions_used == 0
    assert action.mirror == {}
    assert action.traffic_plan == ({CH: 90, NEW: 10},)


def test_exhausted_extensions_say_what_to_change() -> None:
    action = next_rollout_action(_state(0, 2), _verdict("inconclusive"), SPEC)
    assert "raise bake_minutes or max_bake_extensions" in action.reasons[1]


def test_bad_states_are_refused() -> None:
    with pytest.raises(PolicyInputError, match="step_index=3"):
        next_rollout_action(RolloutState(CH, NEW, 3, {CH: 100}), _verdict("pass"), SPEC)
    no_shadow = RolloutSpec(steps=[10, 100])
    with pytest.raises(PolicyInputError, match="shadow"):
        next_rollout_action(RolloutState(CH, NEW, -1, {CH: 100}), _verdict("pass"), no_shadow)
    with pytest.raises(TrafficError):
        next_rollout_action(RolloutState(CH, CH, 0, {CH: 100}), _verdict("pass"), SPEC)


@pytest.mark.parametrize(
    ("current", "hard", "path"),
    [
        ({CH: 0, NEW: 100}, False, [50, 10, 0]),
        ({CH: 50, NEW: 50}, False, [10, 0]),
        ({CH: 90, NEW: 10}, False, [0]),
        ({CH: 0, NEW: 100}, True, [0]),
        ({CH: 100, NEW: 0}, False, [0]),  # already back: one idempotent map
        ({}, False, [0]),
        ({CH: 30, NEW: 200}, False, [50, 10, 0]),  # malformed: still ends with the champion at 100
    ],
)
def test_rollback_plan(current: dict[str, int], hard: bool, path: list[int]) -> None:
    plans = rollback_plan(current, CH, NEW, hard)
    assert [p[NEW] for p in plans] == path
    for plan in plans:
        _assert_valid(plan)
    assert plans[-1][CH] == 100


def test_rollback_moves_a_third_deployment_to_the_champion() -> None:
    plans = rollback_plan({CH: 40, NEW: 50, "fraud-v0": 10}, CH, NEW, hard=False)
    assert plans == [{CH: 90, NEW: 10, "fraud-v0": 0}, {CH: 100, NEW: 0, "fraud-v0": 0}]


def test_rollback_follows_the_spec_steps_when_given() -> None:
    assert [p[NEW] for p in rollback_plan({CH: 0, NEW: 100}, CH, NEW, False, steps=[5, 25, 100])] == [25, 5, 0]


def test_traffic_for_step() -> None:
    assert traffic_for_step(CH, NEW, 10) == {CH: 90, NEW: 10}
    assert traffic_for_step(CH, NEW, 100) == {CH: 0, NEW: 100}
    with pytest.raises(TrafficError, match="percent=101"):
        traffic_for_step(CH, NEW, 101)
    with pytest.raises(TrafficError):
        traffic_for_step(CH, CH, 10)


def test_mirror_for_shadow_respects_azure_limits() -> None:
    assert mirror_for_shadow(NEW, {CH: 100}, 20) == {NEW: 20}
    with pytest.raises(TrafficError, match="1-50"):
        mirror_for_shadow(NEW, {CH: 100}, 60)
    with pytest.raises(TrafficError, match="live traffic"):
        mirror_for_shadow(NEW, {CH: 90, NEW: 10}, 20)


# --------------------------------------------------------------------------- whole rollouts on synthetic traffic


def _bake(
    rng: np.random.Generator, name: str, n: int, *, error_rate: float, scale: float = 1.0, accuracy: float = 0.95
) -> DeploymentSample:
    errors = int(rng.binomial(n, error_rate))
    ok = n - errors
    return DeploymentSample(
        name,
        n,
        errors,
        tuple(rng.lognormal(np.log(40.0), 0.4, n) * scale),
        predicted_positive=int(rng.binomial(ok, 0.02)),
        labelled=ok,
        correct=int(rng.binomial(ok, accuracy)),
    )


def _run(seed: int, **challenger: float) -> tuple[str, int, list[dict[str, int]]]:
    """Drive a rollout to its end: 2,000 requests per bake split by the traffic; returns (end, step, maps)."""
    rng = np.random.default_rng(seed)
    state = RolloutState(CH, NEW, 0, traffic_for_step(CH, NEW, SPEC.steps[0]))
    maps = [dict(state.traffic)]
    while True:
        share = state.traffic[NEW]
        ch = _bake(rng, NEW, 2000 * share // 100, **{"error_rate": 0.003} | challenger)
        cp = _bake(rng, CH, 2000 * (100 - share) // 100, error_rate=0.003)
        action = next_rollout_action(state, analyse_canary(ch, cp, SPEC.gates), SPEC)
        maps += list(action.traffic_plan)
        if action.kind in ("rollback", "complete"):
            return action.kind, state.step_index, maps
        state = RolloutState(
            CH,
            NEW,
            action.step_index,
            action.traffic_plan[-1] if action.traffic_plan else state.traffic,
            action.extensions_used,
        )


@pytest.mark.parametrize(
    ("name", "challenger", "end", "step"),
    [
        ("healthy", {}, "complete", 2),
        ("error spike", {"error_rate": 0.08}, "rollback", 0),
        ("2x latency", {"scale": 2.0}, "rollback", 0),
        ("silently worse", {"accuracy": 0.85}, "rollback", 0),
    ],
)
def test_whole_rollout(name: str, challenger: dict[str, float], end: str, step: int) -> None:
    outcome, at, maps = _run(7, **challenger)
    assert (outcome, at) == (end, step)
    for plan in maps:
        _assert_valid(plan)
    assert maps[-1][CH if end == "rollback" else NEW] == 100


# --------------------------------------------------------------------------- what one rollout_apply does


def _rollback(state: RolloutState) -> dict[str, object]:
    return next_rollout_action(state, _verdict("fail"), SPEC).to_dict()


def test_moves_that_set_up_a_step() -> None:
    step = traffic_moves(CH, NEW, 1, SPEC)
    assert step == TrafficMoves({}, ({CH: 50, NEW: 50},), restore_champion_capacity=False, remove_challenger=False)
    shadow = traffic_moves(CH, NEW, -1, SPEC)
    assert shadow.mirror == {NEW: 10}, "the spec's mirror percent, to the challenger"
    assert shadow.maps == ({CH: 100},), "all live traffic stays on the champion"
    first_model = traffic_moves(None, NEW, 0, SPEC)
    assert first_model.maps == ({NEW: 100},), "no champion: all traffic at once"


def test_moves_of_an_advance_apply_its_mirror_and_maps() -> None:
    action = next_rollout_action(_state(0), _verdict("pass"), SPEC).to_dict()
    moves = traffic_moves(CH, NEW, 0, SPEC, action)
    assert moves.maps == ({CH: 50, NEW: 50},)
    assert moves.mirror == {}
    assert not moves.restore_champion_capacity
    assert not moves.remove_challenger


def test_a_rollback_in_one_call_restores_capacity_first_and_removes_the_challenger_last() -> None:
    action = _rollback(_state(2, traffic={CH: 0, NEW: 100, "fraud-v0": 0}))
    moves = traffic_moves(CH, NEW, 2, SPEC, action)
    assert [m[NEW] for m in moves.maps] == [50, 10, 0]
    assert all("fraud-v0" not in m for m in moves.maps), "a third deployment at 0 % is left alone"
    assert moves.restore_champion_capacity
    assert moves.remove_challenger


@pytest.mark.parametrize(
    ("index", "restore", "remove", "share"), [(0, True, False, 50), (1, False, False, 10), (2, False, True, 0)]
)
def test_a_paced_rollback_moves_one_map_per_call(index: int, restore: bool, remove: bool, share: int) -> None:
    action = _rollback(_state(2))
    moves = traffic_moves(CH, NEW, 2, SPEC, action, plan_index=index)
    assert [m[NEW] for m in moves.maps] == [share]
    assert (moves.restore_champion_capacity, moves.remove_challenger) == (restore, remove)


def test_a_rollback_with_no_champion_only_removes_the_challenger() -> None:
    action = _rollback(_state(0))
    moves = traffic_moves(None, NEW, 0, SPEC, action, plan_index=0)
    assert moves.maps == ()
    assert moves.remove_challenger
    assert not moves.restore_champion_capacity


def test_live_map_leaves_out_idle_deployments_the_move_does_not_involve() -> None:
    assert live_map({CH: 100, NEW: 0, "old": 0}, CH, NEW) == {CH: 100, NEW: 0}
    assert live_map({CH: 90, "old": 10}, CH, None) == {CH: 90, "old": 10}


def test_moves_refuse_an_action_that_is_not_one() -> None:
    with pytest.raises(PolicyInputError, match="RolloutAction"):
        traffic_moves(CH, NEW, 0, SPEC, {"kind": "rollback", "traffic_plan": 5, "mirror": None})


def test_a_rollback_goes_back_never_forward_again() -> None:
    from shared.policy import rollback_refusal

    assert rollback_refusal("fraud", None, None, None) == "fraud has no previous version: it has no champion yet"
    assert "version 1 is its first champion" in str(rollback_refusal("fraud", "1", None, None))
    assert rollback_refusal("fraud", "2", "1", None) is None
    # v3 rolled back to v2: v2's "previous" is v3, the version just taken away.
    refused = str(rollback_refusal("fraud", "2", "3", "fraud-00000000000000b7"))
    assert "restored by rollback fraud-00000000000000b7, away from version 3" in refused
    assert "perennial rollout fraud 3" in refused
