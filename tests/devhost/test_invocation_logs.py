"""One log line per invocation (function, instance id, duration, outcome), and failures logged with their reason."""

from __future__ import annotations

import logging

import pytest

from tests.devhost.conftest import Harness


def test_every_activity_and_orchestrator_invocation_is_logged(
    patterns: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        instance = patterns.start("chaining")
        patterns.wait(instance)
        patterns.idle()
    mine = [r for r in caplog.records if getattr(r, "instance_id", None) == instance]
    activities = [r for r in mine if r.__dict__.get("function") == "say_hello"]
    episodes = [r for r in mine if r.__dict__.get("function") == "chaining"]
    assert len(activities) == 3
    assert len(episodes) == 4  # start + one episode per activity result
    for record in activities + episodes:
        assert record.levelno == logging.INFO
        assert record.__dict__["outcome"] == "Succeeded"
        assert record.__dict__["duration_ms"] >= 0
        assert f"InstanceId={instance}" in record.getMessage()
        assert record.getMessage().startswith(f"Executed 'Functions.{record.__dict__['function']}' (Succeeded")


def test_a_failing_activity_is_logged_as_a_warning_with_the_error(
    patterns: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        instance = patterns.start("parent")
        patterns.wait(instance)
        patterns.idle()
    failed = [
        r for r in caplog.records if r.__dict__.get("function") == "fail" and r.__dict__.get("outcome") == "Failed"
    ]
    assert failed
    assert failed[0].levelno == logging.WARNING
    assert "ValueError: cannot process bad batch" in failed[0].getMessage()


def test_http_handler_exception_is_logged_with_its_traceback(
    patterns: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devhost"):
        assert patterns.http.get("/api/boom").status_code == 500
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR and "boom" in r.getMessage()]
    assert error.exc_info is not None
    assert "handler exploded" in str(error.exc_info[1])
    assert any("Executed 'Functions.boom' (Failed" in r.getMessage() for r in caplog.records)
