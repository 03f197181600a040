"""HTTP helpers shared by the API functions: JSON and RFC 9457 problem+json responses."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json", headers=headers
    )


def problem(status: int, title: str, detail: str, field: str | None = None, **extra: Any) -> func.HttpResponse:
    """An ``application/problem+json`` error: what went wrong, which field, and what to do."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/problem+json")
