"""HTTP helpers shared by the API functions: JSON and RFC 9457 problem+json responses."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import azure.functions as func
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from functions.coordination import CoordinatorUnreachable
from shared.housekeeping import HOUSEKEEPING_EVERY, STRANDED_GRACE
from shared.profile import finite_json
from shared.tables import ConcurrencyError

logger = logging.getLogger("perennial.api")

#: What a client should wait before asking again when storage cannot be reached.
STORAGE_RETRY_AFTER_SECONDS = 30
#: What a client should wait before asking again when a record or the coordinator was busy.
BUSY_RETRY_AFTER_SECONDS = 5
#: Within how long the housekeeping timer hands over a request the coordinator never got.
HANDOVER_MINUTES = (STRANDED_GRACE + HOUSEKEEPING_EVERY).seconds // 60
STORAGE_HINT = (
    "retry later; locally, start Azurite (`perennial up` starts it with the app); in Azure, check the "
    "storage account's network rules and that the app's identity can reach it"
)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """``body`` as JSON. A NaN or infinity anywhere in it (a stored drift distance, say) is null: Python would
    write ``Infinity``, which is not JSON and which clients' parsers refuse."""
    return func.HttpResponse(
        json.dumps(finite_json(body), default=str), status_code=status, mimetype="application/json", headers=headers
    )


def problem(
    status: int,
    title: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> func.HttpResponse:
    """An ``application/problem+json`` error: what went wrong, which field, and what to do."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/problem+json", headers=headers
    )


def storage_unavailable(exc: ServiceRequestError | ServiceResponseError) -> func.HttpResponse:
    """503 for an account that could not be reached (the SDK already retried). A request that never connected
    changed nothing; one whose connection broke mid-answer may have been applied: retried with the same
    ``Idempotency-Key`` it gets the run it started (without one, a retry is a new request, answered 409 if the first
    did start a run)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    logger.warning("storage unreachable, answering 503: %s", reason)
    outcome = (
        "nothing was changed"
        if isinstance(exc, ServiceRequestError)
        else "the request may have been applied; retry it with the same Idempotency-Key to get the run it started"
    )
    return problem(
        503,
        "Storage unavailable",
        f"the storage account could not be reached ({reason}); {outcome}",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
        hint=STORAGE_HINT,
    )


def run_busy(exc: ConcurrencyError) -> func.HttpResponse:
    """503 for a record other writers kept changing while this request tried to change it (conditional writes
    gave up after their retries): nothing was written, and asking again a moment later is enough."""
    logger.warning("a record kept changing under this request, answering 503: %s", exc)
    return problem(
        503,
        "Busy",
        f"{exc}; nothing was changed",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        hint="send the same request again in a few seconds",
    )


def coordinator_unreachable(exc: CoordinatorUnreachable) -> func.HttpResponse:
    """503 for a request recorded as a pending run whose work could not be handed to the model's coordinator. It
    is not lost: a retry with the same ``Idempotency-Key`` sends it again, and housekeeping delivers it anyway."""
    logger.warning("could not reach the coordinator, answering 503: %s", exc)
    recorded = f"the request is recorded as run {exc.run_id}" if exc.run_id else "nothing is lost"
    return problem(
        503,
        "Coordinator unavailable",
        f"the model's coordinator ({exc.instance}) could not be reached; {recorded}, and the housekeeping timer "
        f"hands it over within about {HANDOVER_MINUTES} minutes if nothing else does",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        hint="retry with the same Idempotency-Key to follow the run it started",
        **({"run_id": exc.run_id} if exc.run_id else {}),
    )


def _unavailable(
    exc: ServiceRequestError | ServiceResponseError | ConcurrencyError | CoordinatorUnreachable,
) -> func.HttpResponse:
    """The 503 for a failure that asking again later fixes."""
    if isinstance(exc, ConcurrencyError):
        return run_busy(exc)
    if isinstance(exc, CoordinatorUnreachable):
        return coordinator_unreachable(exc)
    return storage_unavailable(exc)


def answers_503_when_unavailable(handler: Handler) -> Handler:
    """Wrap an HTTP function (sync or async) so that what a later retry fixes (storage unreachable, a record
    other writers kept changing, a coordinator that could not be reached) is a 503 with ``Retry-After`` and a
    hint, not the host's bare 500. Put it directly above ``def``: the bindings read the signature, which
    ``functools.wraps`` keeps."""
    transient = (ServiceRequestError, ServiceResponseError, ConcurrencyError, CoordinatorUnreachable)
    if inspect.iscoroutinefunction(handler):
        async_handler = cast(Callable[..., Awaitable[Any]], handler)

        @functools.wraps(handler)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await async_handler(*args, **kwargs)
            except transient as exc:
                return _unavailable(exc)

        return cast(Handler, guarded_async)

    @functools.wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except transient as exc:
            return _unavailable(exc)

    return cast(Handler, guarded)
