from __future__ import annotations

import json
import logging

import pytest

from shared.logs import JsonFormatter, configure_logging, correlated, correlation_id


def test_json_lines_carry_the_correlation_id_and_extras() -> None:
    formatter = JsonFormatter()
    with correlated("run-42") as cid:
        assert correlation_id() == "run-42" == cid
        record = logging.LogRecord("perennial", logging.INFO, __file__, 1, "trained %s", ("cand-1",), None)
        record.correlation_id = correlation_id()
        record.model = "fraud"
        line = json.loads(formatter.format(record))
    assert line["message"] == "trained cand-1"
    assert line["correlation_id"] == "run-42"
    assert line["model"] == "fraud"
    assert correlation_id() is None


class _WorkerHandler(logging.Handler):
    """What the Functions Python worker forwards to Application Insights: the message text, nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:
            self.handleError(record)  # as every logging handler does


def test_in_azure_the_context_is_written_into_the_forwarded_message(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    worker = _WorkerHandler()
    monkeypatch.setattr(root, "handlers", [worker])  # the worker's handler alone, as in Azure
    monkeypatch.setattr(logging.getLogger("azure"), "level", logging.NOTSET)
    configure_logging(in_azure=True)
    configure_logging(in_azure=True)  # a second call (a reload) must not write the context twice
    log = logging.getLogger("perennial.test")
    with correlated("c-1"):
        log.warning("run %s ended %s", "fraud-1", "failed", extra={"model": "fraud", "run_id": "fraud-1"})
    log.warning("no context")
    assert worker.messages == [
        "run fraud-1 ended failed [model=fraud run_id=fraud-1 correlation_id=c-1]",
        "no context",
    ]
    assert logging.getLogger("azure").level == logging.WARNING, "the SDKs' request lines stay out of App Insights"


def test_in_azure_a_bad_log_call_is_not_the_caller_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    worker = _WorkerHandler()
    monkeypatch.setattr(root, "handlers", [worker])
    monkeypatch.setattr(logging, "raiseExceptions", False)  # as in production: logging reports its own errors
    configure_logging(in_azure=True)
    with correlated("c-2"):
        logging.getLogger("perennial.test").warning("mismatch %s %s", "only-one", extra={"model": "fraud"})
    assert worker.messages == [], "logging dropped the bad record itself; the call did not raise"
