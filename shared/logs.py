"""Structured logging with a correlation id per trigger.

Locally every record is one JSON line on stderr (``PERENNIAL_LOG_FORMAT=text``
for plain lines). In Azure the Functions worker already forwards the root logger
to Application Insights, but the message text only (not a record's ``extra``
fields: azure-functions-python-worker #1327), so the correlation id and every
extra (``model``, ``run_id``, …) are written into the message itself, where a
query can find them: ``… [model=fraud run_id=fraud-3f2a… correlation_id=…]``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("perennial_correlation_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is worth printing.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "correlation_id"}


def correlation_id() -> str | None:
    """The correlation id of the trigger being handled, if any."""
    return _correlation.get()


@contextmanager
def correlated(value: str | None = None) -> Iterator[str]:
    """Tag every log record inside the block with ``value`` (a new id when None)."""
    token = _correlation.set(value or uuid.uuid4().hex)
    try:
        yield _correlation.get() or ""
    finally:
        _correlation.reset(token)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """What was passed with ``extra=`` (and the correlation id), in the order it was given."""
    found = {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}
    cid = getattr(record, "correlation_id", None)
    return {**found, "correlation_id": cid} if cid else found


class _ContextInMessage(logging.Filter):
    """Azure: append the record's extras and correlation id to its message, the only part the worker forwards."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation.get()
        if getattr(record, "_perennial_context", False):  # already written (a second handler)
            return True
        record._perennial_context = True
        extras = _extras(record)
        if extras:
            try:
                fields = " ".join(f"{key}={str(value)[:200]}" for key, value in extras.items())
                record.msg, record.args = f"{record.getMessage()} [{fields}]", None
            except Exception:  # a bad log call is logging's to report (as it does), never an error of the caller's
                return True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(fmt: str = "json", level: int = logging.INFO, in_azure: bool = False) -> None:
    """Install our handler on the root logger once; in Azure write the context into the worker's messages."""
    root = logging.getLogger()
    # The Azure SDKs log every HTTP request at INFO; that drowns our own lines (and, in Azure, costs ingestion).
    logging.getLogger("azure").setLevel(logging.WARNING)
    for handler in root.handlers:
        if getattr(handler, "_perennial", False):
            return
    if in_azure:
        for handler in root.handlers:
            if not any(isinstance(f, _ContextInMessage) for f in handler.filters):
                handler.addFilter(_ContextInMessage())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._perennial = True  # type: ignore[attr-defined]
    handler.addFilter(_CorrelationFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
