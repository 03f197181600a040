"""A virtual clock survives a host restart: durable timers set before a crash fire when they would have."""

from __future__ import annotations

from pathlib import Path

from devhost.clock import VirtualClock


def test_a_restarted_virtual_clock_resumes_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state" / "virtual-clock.txt"
    first = VirtualClock.persistent(path)
    reached = first.advance(48 * 3600)
    again = VirtualClock.persistent(path)
    assert again.now() == reached
    assert again.advance(1) > reached


def test_an_unreadable_clock_file_starts_at_the_present(tmp_path: Path) -> None:
    path = tmp_path / "virtual-clock.txt"
    path.write_text("not a time")
    clock = VirtualClock.persistent(path)
    assert abs((clock.now() - VirtualClock().now()).total_seconds()) < 5
