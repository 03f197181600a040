"""The Event Grid trigger webhook: ``POST /runtime/webhooks/eventgrid?functionName=NAME``.

As the host does: the ``aeg-event-type`` header selects the message kind —
``SubscriptionValidation`` answers ``{"validationResponse": <data.validationCode>}``,
``Notification`` invokes the function once per event (the body is an array or one object),
``Unsubscribe`` answers 202. Bodies with ``specversion`` are CloudEvents 1.0 and become
``func.CloudEvent``; others are Event Grid schema and become ``func.EventGridEvent``, built by
the worker's own converter. CloudEvents abuse-protection (``OPTIONS`` with
``WebHook-Request-Origin``) is answered too. Like the host's system webhooks, it needs a key
(``code=`` or ``x-functions-key``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from devhost.app_loader import AppFunction
from devhost.http_routes import problem, request_key
from devhost.keys import key_matches

logger = logging.getLogger("devhost")

_REQUIRED_EG = ("id", "eventType", "subject", "eventTime", "data")
_REQUIRED_CE = ("id", "source", "type", "specversion")


def _malformed(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "each event must be a JSON object"
    required = _REQUIRED_CE if "specversion" in event else _REQUIRED_EG
    missing = [name for name in required if name not in event]
    if missing:
        schema = "CloudEvents 1.0" if "specversion" in event else "Event Grid"
        return f"event {event.get('id', '?')!r} lacks {', '.join(missing)} required by the {schema} schema"
    return None


def to_trigger_value(event: dict[str, Any]) -> Any:
    """``func.EventGridEvent`` or ``func.CloudEvent``, exactly as the worker decodes the binding data."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata=None)


def undecodable(event: dict[str, Any]) -> str | None:
    """Why the Python worker cannot turn ``event`` into its trigger value (a time it cannot parse), or None."""
    try:
        to_trigger_value(event)
    except (ValueError, TypeError) as exc:
        return (
            f"event {str(event.get('id', '?'))[:64]!r} cannot be decoded by the Python worker ({exc}); "
            "times must be UTC ISO 8601, e.g. 2026-11-30T08:00:00Z"
        )
    return None


def make_handler(
    functions: Callable[[], dict[str, AppFunction]],
    keys: Callable[[], list[str]],
    invoke: Callable[[AppFunction, dict[str, Any], web.Request], Any],
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CloudEvents webhook validation
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})
        if not key_matches(request_key(request), keys()):
            return problem(
                401, "Unauthorized", "the Event Grid webhook needs a key: add ?code=KEY (printed at start-up)"
            )
        name = request.query.get("functionName", "")
        fn = functions().get(name)
        if fn is None:
            known = ", ".join(sorted(functions())) or "none"
            return problem(404, "Not Found", f"no Event Grid function named {name!r}; known: {known}")
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge as exc:  # as the HTTP routes answer it (Event Grid sends at most 1 MB)
            return problem(413, "Payload Too Large", f"the body is larger than devhost's limit: {exc.text}")
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested beyond reason
            return problem(400, "Bad Request", f"the body is not JSON: {exc}")
        events = body if isinstance(body, list) else [body]
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            first = events[0] if events and isinstance(events[0], dict) else {}
            code = (first.get("data") or {}).get("validationCode") if isinstance(first.get("data"), dict) else None
            if not code or not isinstance(code, str):
                return problem(
                    400, "Bad Request", "a SubscriptionValidation event needs data.validationCode (a string)"
                )
            return web.json_response({"validationResponse": code})
        if kind == "Unsubscribe":
            return web.Response(status=202)
        if kind != "Notification":
            return problem(
                400,
                "Bad Request",
                f"aeg-event-type {kind!r} is not one of SubscriptionValidation, Notification, Unsubscribe",
            )
        # Each event on its own: the good ones of a delivery run even when another is malformed. A malformed one
        # is answered 400 (after the good ones ran), which Event Grid dead-letters at once rather than retrying:
        # sending it again cannot help, and the dead letter keeps it.
        good: list[dict[str, Any]] = []
        refused: list[str] = []
        for event in events:
            reason = _malformed(event) or undecodable(event)
            if reason:
                logger.warning("Event Grid function '%s' refused an event: %s", name, reason)
                refused.append(reason)
            else:
                good.append(event)
        for event in good:
            try:
                await invoke(fn, {fn.trigger_arg: to_trigger_value(event)}, request)
            except Exception as exc:
                logger.exception("Event Grid function '%s' failed on event %s", name, event.get("id"))
                # Event Grid retries on a 5xx, as it would in Azure.
                return problem(500, "Internal Server Error", f"function '{name}' raised {type(exc).__name__}: {exc}")
        if refused:
            return problem(400, "Bad Request", "; ".join(refused))
        return web.Response(status=200)

    return handle
