"""A stepped rollback's traffic moves are paced by durable timers (functions/orchestrators._paced_moves).

The generator is driven the way the Durable SDK drives it: each yielded task is answered by sending
its result back. The end-to-end pacing (traffic held at each intermediate split while the virtual clock
stands) is in tests/e2e/test_rollout.py::test_the_retired_previous_version_is_redeployed_by_a_manual_rollback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.orchestrators import MUST_FINISH, _paced_moves


class RecordingContext:
    """The context calls _paced_moves makes, recorded in order."""

    current_utc_datetime = datetime(2030, 1, 1, tzinfo=UTC)

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_custom_status(self, status: dict[str, Any]) -> None:
        self.calls.append(("status", status["stage"]))

    def create_timer(self, when: datetime) -> str:
        self.calls.append(("timer", when - self.current_utc_datetime))
        return "timer"

    def call_activity_with_retry(self, name: str, retry: Any, payload: dict[str, Any]) -> str:
        # Each move must finish once begun: a platform blip is retried, not left as a half-moved split.
        assert retry is MUST_FINISH
        self.calls.append((name, payload["move"]))
        return "activity"


def _drive(pause: float, moves: int) -> list[tuple[str, Any]]:
    context = RecordingContext()
    generator = _paced_moves(context, "run-1", pause, "rollback_shift", [{"move": i} for i in range(moves)])  # type: ignore[arg-type]
    try:
        task = next(generator)
        while True:
            task = generator.send(f"{task} done")
    except StopIteration:
        pass
    return context.calls


def test_a_pause_separates_each_move_from_the_next_but_none_comes_first() -> None:
    two_minutes = timedelta(minutes=2)
    assert _drive(2.0, 3) == [
        ("rollback_shift", 0),
        ("status", "stepping_back"),
        ("timer", two_minutes),
        ("rollback_shift", 1),
        ("status", "stepping_back"),
        ("timer", two_minutes),
        ("rollback_shift", 2),
    ]


def test_a_hard_rollback_or_a_zero_pause_moves_at_once() -> None:
    assert _drive(2.0, 1) == [("rollback_shift", 0)]
    assert _drive(0.0, 3) == [("rollback_shift", 0), ("rollback_shift", 1), ("rollback_shift", 2)]
