"""A typed HTTP client for a running Perennial host (devhost locally, the Function App in Azure).

One method per API route (see functions/api.py). Answers are parsed into pydantic models that
ignore nothing they do not know about (``extra="allow"``), so a newer host still works with an
older client. Every failure is a :class:`ClientError` carrying a remediation ``hint``:

- :class:`BadArgument`     — an argument that cannot be sent (a key a header cannot carry, text that is not
                              UTF-8): found before any request, so the CLI exits 2 as for any usage error;
- :class:`HostUnreachable` — nothing answers at the URL (start a host, or fix ``--host``);
- :class:`Unauthorized`    — a 401: the function key is missing or wrong;
- :class:`ProblemError`    — any other 4xx/5xx, with its RFC 9457 problem (title, detail, field, …);
- :class:`UnexpectedResponse` — an answer that is not what a Perennial host sends.
"""

from __future__ import annotations

import getpass
import ipaddress
import math
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "DEFAULT_HOST_URL",
    "HOST_ENV",
    "KEY_ENV",
    "LOCAL_KEY_FILE",
    "Accepted",
    "BadArgument",
    "Candidate",
    "Champion",
    "ClientError",
    "HostUnreachable",
    "ModelInfo",
    "ModelVersion",
    "PerennialClient",
    "Problem",
    "ProblemError",
    "RetrainAccepted",
    "RolloutStep",
    "RunDetail",
    "RunSummary",
    "SeenBlob",
    "TriggerInfo",
    "Unauthorized",
    "UnexpectedResponse",
    "local_key",
    "normalise_url",
    "requested_by_default",
]

DEFAULT_HOST_URL = "http://127.0.0.1:7071"
HOST_ENV = "PERENNIAL_HOST_URL"
KEY_ENV = "PERENNIAL_FUNCTION_KEY"
#: Where ``perennial host`` (devhost) stores the function key it generates, relative to where it runs.
LOCAL_KEY_FILE = Path(".perennial") / "devhost" / "function_key"
KEY_HEADER = "x-functions-key"

START_HINT = "start one with `perennial up` (or `make demo`), or point --host / PERENNIAL_HOST_URL at a running host"
KEY_HINT = (
    "pass the host's function key with --key KEY or PERENNIAL_FUNCTION_KEY "
    f"(a local host prints it at start-up and stores it in {LOCAL_KEY_FILE})"
)


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Talking to the host failed; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class BadArgument(ClientError):
    """An argument cannot be sent as it is: a function key that is not printable ASCII (a header cannot carry it), or
    text that is not UTF-8 (a shell passes the bytes of a non-UTF-8 terminal as lone surrogates). Raised before any
    request, naming the option or argument; the CLI exits 2, as it does for any other bad argument."""


class HostUnreachable(ClientError):
    """Nothing answers at the host URL (connection refused, unknown name, or no answer in time)."""


class UnexpectedResponse(ClientError):
    """The answer is not one a Perennial host sends (not JSON, or not the documented shape)."""


class Problem(BaseModel):
    """An ``application/problem+json`` body (RFC 9457). Extra members (``run_id``, …) are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    field: str | None = None

    @property
    def extras(self) -> dict[str, Any]:
        """Members beyond the standard ones, e.g. the ``run_id`` of a 409 on retrain."""
        return dict(self.model_extra or {})


class ProblemError(ClientError):
    """The host answered with an error status; ``problem`` is its body (synthesised if it sent none)."""

    def __init__(self, status: int, problem: Problem, hint: str = "") -> None:
        self.status = status
        self.problem = problem
        message = f"{status} {problem.title}".strip() + (f": {problem.detail}" if problem.detail else "")
        super().__init__(message, hint)


class Unauthorized(ProblemError):
    """A 401: the route needs a function key and none (or a wrong one) was sent."""


# --------------------------------------------------------------------------- answers


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class TriggerInfo(_Body):
    kind: str = ""
    reason: str = ""
    event_id: str | None = None


class RunSummary(_Body):
    """One run as listed by ``GET /api/models/{model}/runs``."""

    run_id: str
    model: str
    status: str
    stage: str
    trigger: TriggerInfo = Field(default_factory=TriggerInfo)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    decision: str | None = None
    reasons: list[str] = Field(default_factory=list)
    registered_version: str | None = None
    ships_version: str | None = None  # registered, or shipped by a rollout or rollback (older hosts: absent)
    error: str | None = None


class Candidate(_Body):
    candidate_id: str
    status: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""
    job_name: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class SeenBlob(_Body):
    url: str
    blob_etag: str = ""
    size: int = 0


class ModelVersion(_Body):
    """A registered version and its lineage."""

    version: str
    run_id: str = ""
    candidate_id: str = ""
    manifest_url: str = ""
    manifest_sha256: str = ""
    data_files: int = 0
    data_bytes: int = 0
    data_hashes: dict[str, str] = Field(default_factory=dict)  # versions registered before 2026-11-30 only
    code_version: str = ""
    environment: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    registered_at: datetime | None = None


class RolloutStep(_Body):
    index: int
    step: str
    traffic: dict[str, int] = Field(default_factory=dict)
    mirror_traffic: dict[str, int] = Field(default_factory=dict)
    verdict: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None


class Difference(_Body):
    """The challenger's primary-metric gain over the champion on the holdout, with its paired-bootstrap interval."""

    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95
    p_value: float = 1.0


class Evaluation(_Body):
    """The holdout comparison a run's decision rests on (comparison.json) and the candidate it scored."""

    candidate: str | None = None
    primary_metric: str
    n_holdout: int = 0
    challenger: dict[str, float] = Field(default_factory=dict)
    champion: dict[str, float] | None = None
    difference: Difference | None = None
    #: {"challenger": {class: {precision, recall, f1, support}}, "champion": {...} or null}; absent before 2026-12-01.
    per_class: dict[str, dict[str, dict[str, float | None]] | None] | None = None


class JobState(_Body):
    """A job of a run that trains or evaluates, as its watcher last saw it: waiting for compute since
    ``waiting_since`` or running since ``running_since``, cancelled at ``deadline`` unless it ends first."""

    base_name: str
    job: str
    status: str = ""
    phase: str = ""
    attempt: int = 0
    waiting_since: datetime | None = None
    running_since: datetime | None = None
    ran_minutes_before: float = 0.0
    deadline: datetime | None = None


class ApprovalWait(_Body):
    """A run waiting for a person's approval: the version it would ship, and when the wait ends (null for a run
    that started waiting before the app recorded it)."""

    version: str | None = None
    until: datetime | None = None


class RunDetail(RunSummary):
    """One run in full, as ``GET /api/runs/{id}`` returns it."""

    manifest_url: str | None = None
    approval: ApprovalWait | None = None
    evaluation: Evaluation | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    jobs: list[JobState] = Field(default_factory=list)
    blobs: list[SeenBlob] = Field(default_factory=list)
    version: ModelVersion | None = None
    rollout: list[RolloutStep] = Field(default_factory=list)


class Champion(_Body):
    version: str
    run_id: str = ""
    deployment: str | None = None
    since: datetime | None = None
    previous_version: str | None = None


class Waiting(_Body):
    """Landed blobs a model's coordinator collects for its next run: it starts at ``starts_at`` unless another blob
    lands first, and by ``deadline``."""

    blobs: int = 0
    starts_at: datetime | None = None
    deadline: datetime | None = None


class ModelInfo(_Body):
    """One model as ``GET /api/models`` lists it."""

    model: str
    description: str = ""
    endpoint: str = ""
    champion: Champion | None = None
    latest_run: RunSummary | None = None
    waiting: Waiting | None = None  # null: no landed blobs being collected
    claim_failed: str | None = None  # why the coordinator could not start the next run (it tries again)
    unsent_events: int = 0  # events the topic could not take, waiting for the housekeeping timer
    refused_events: int = 0  # events the topic refused for good, kept in deadletter/<model>/events/


class RetrainAccepted(_Body):
    """The 202 of ``POST /api/models/{model}/retrain``; ``location`` is the Location header."""

    run_id: str
    model: str = ""
    reason: str = ""
    status_url: str | None = None
    location: str | None = None


class Accepted(_Body):
    """The 202 of an action (approve, reject, abort, rollback): whatever the host said, plus the run id."""

    run_id: str | None = None


B = TypeVar("B", bound=BaseModel)


# --------------------------------------------------------------------------- the client


def normalise_url(url: str) -> str:
    """``http://host:7071``, ``http://host:7071/`` and ``http://host:7071/api`` all mean the same host."""
    url = url.strip().rstrip("/")
    url = url.removesuffix("/api")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ClientError(f"--host {url!r} is not a valid URL ({exc})", f"use e.g. {DEFAULT_HOST_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--host {url!r} is not an http(s) URL", f"use e.g. {DEFAULT_HOST_URL}")
    try:
        httpx.URL(url)  # e.g. a host name that is not UTF-8, or not a valid IDNA name
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ClientError(f"--host {_shown(url)} is not a valid URL ({exc})", f"use e.g. {DEFAULT_HOST_URL}") from None
    return url


def _is_loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an IP address, or not a URL (normalise_url reports that)
        return False


def local_key(url: str, key_file: Path = LOCAL_KEY_FILE) -> str | None:
    """The key a local ``perennial host`` stored, when ``url`` is on this machine and the file exists."""
    if not _is_loopback(url):
        return None
    try:
        return key_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class PerennialClient:
    """Perennial's HTTP API. ``key`` is sent as ``x-functions-key``; ``transport`` is for tests."""

    def __init__(
        self,
        base_url: str = DEFAULT_HOST_URL,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_wait: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = normalise_url(base_url)
        self.timeout = timeout
        self._on_wait, self._sleep = on_wait, sleep
        headers = {"accept": "application/json, application/problem+json", "user-agent": "perennial-cli"}
        if key:
            headers[KEY_HEADER] = _checked_key(key)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PerennialClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- reads

    def models(self) -> list[ModelInfo]:
        """``GET /api/models``: every model with its champion and latest run."""
        body = self._json("GET", "/api/models")
        return [self._parse(ModelInfo, m, "a model") for m in self._list(body, "models")]

    def runs(self, model: str, limit: int = 20) -> list[RunSummary]:
        """``GET /api/models/{model}/runs?limit=N``: the model's runs, newest first."""
        return self.runs_page(model, limit)[0]

    def runs_page(self, model: str, limit: int = 20, after: str | None = None) -> tuple[list[RunSummary], str | None]:
        """One page of the model's runs, newest first (after run ``after``), and the run id to ask the next page
        after (None: no more)."""
        params = {"limit": str(limit)} | ({"after": _checked(after, "--after", RUN_ID_HINT)} if after else {})
        body = self._json("GET", f"/api/models/{_seg(model, 'MODEL')}/runs", params=params)
        runs = [self._parse(RunSummary, r, "a run") for r in self._list(body, "runs")]
        following = body.get("next") if isinstance(body, dict) else None
        return runs, following if isinstance(following, str) else None

    def run_document(self, run_id: str) -> dict[str, Any]:
        """``GET /api/runs/{id}`` exactly as the host sent it."""
        body = self._json("GET", f"/api/runs/{_seg(run_id, 'RUN_ID')}")
        if not isinstance(body, dict):
            raise self._unexpected("a run", "a JSON object")
        return body

    def run(self, run_id: str) -> RunDetail:
        """``GET /api/runs/{id}``: stage, candidates, decision, lineage and rollout steps."""
        return self._parse(RunDetail, self.run_document(run_id), "a run")

    # ----------------------------------------------------------------- actions

    def retrain(
        self, model: str, reason: str | None, requested_by: str | None, blobs: list[str] | None = None
    ) -> RetrainAccepted:
        """``POST /api/models/{model}/retrain``. A 409 (a run is already active) raises ProblemError with its run_id."""
        payload: dict[str, Any] = {}
        if reason:
            payload["reason"] = reason
        if requested_by:
            payload["requested_by"] = requested_by
        if blobs:
            payload["blobs"] = blobs
        response = self._send("POST", f"/api/models/{_seg(model, 'MODEL')}/retrain", json=payload, headers=_fresh_key())
        body = self._body(response)
        if not isinstance(body, dict):
            raise self._unexpected("a retrain answer", "a JSON object")
        return self._parse(RetrainAccepted, {"location": response.headers.get("location"), **body}, "a retrain answer")

    def approve(self, run_id: str, by: str | None, comment: str | None) -> Accepted:
        """``POST /api/runs/{id}/approve``: answer a run waiting at stage awaiting_approval."""
        return self._action(f"/api/runs/{_seg(run_id, 'RUN_ID')}/approve", _answer(by, comment))

    def reject(self, run_id: str, by: str | None, comment: str | None) -> Accepted:
        """``POST /api/runs/{id}/reject``: the champion stays."""
        return self._action(f"/api/runs/{_seg(run_id, 'RUN_ID')}/reject", _answer(by, comment))

    def abort(self, run_id: str, by: str | None = None, reason: str | None = None) -> Accepted:
        """``POST /api/runs/{id}/abort``: a cooperative stop (jobs cancelled at their next poll); ``by`` and
        ``reason`` end up in the run's reasons."""
        body = {k: v for k, v in (("by", by), ("reason", reason)) if v}
        return self._action(f"/api/runs/{_seg(run_id, 'RUN_ID')}/abort", body or None)

    def rollback(
        self, model: str, reason: str | None, requested_by: str | None = None, immediate: bool = False
    ) -> Accepted:
        """``POST /api/models/{model}/rollback``: put the previous champion back (in paced traffic steps, or in
        one move when ``immediate``)."""
        body: dict[str, Any] = {**_request(reason, requested_by), **({"immediate": True} if immediate else {})}
        return self._action(f"/api/models/{_seg(model, 'MODEL')}/rollback", body, _fresh_key())

    def rollout(self, model: str, version: str, reason: str | None, requested_by: str | None = None) -> Accepted:
        """``POST /api/models/{model}/versions/{version}/rollout``: ship a registered version in stages."""
        path = f"/api/models/{_seg(model, 'MODEL')}/versions/{_seg(version, 'VERSION')}/rollout"
        return self._action(path, _request(reason, requested_by), _fresh_key())

    # ----------------------------------------------------------------- plumbing

    def _action(self, path: str, payload: dict[str, Any] | None, headers: dict[str, str] | None = None) -> Accepted:
        body = self._json("POST", path, json=payload, headers=headers)
        if body is None:
            return Accepted()
        if not isinstance(body, dict):
            raise self._unexpected("an answer", "a JSON object")
        return self._parse(Accepted, body, "an answer")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._body(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a 503 that asks to be retried within ``BUSY_WAIT_SECONDS`` (a run record or the model's
        coordinator was busy) is sent again, at most ``BUSY_ATTEMPTS`` times. Every request may be repeated: reads
        and answers are idempotent, and a request that starts a run carries its own ``Idempotency-Key``. A JSON body
        with text that is not UTF-8 is refused (BadArgument) before anything is sent."""
        if isinstance(kwargs.get("json"), dict):
            _check_body(kwargs["json"])
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            response = self._send_once(method, path, **kwargs)
            wait = _retry_after(response)
            if response.status_code != 503 or wait is None or wait > BUSY_WAIT_SECONDS or attempt == BUSY_ATTEMPTS:
                break
            if self._on_wait is not None:
                problem = _problem_of(response)
                title = problem.title if problem is not None else "Service Unavailable"
                self._on_wait(f"the host answered 503 {title}; asking again in {wait:g} s ({attempt}/{BUSY_ATTEMPTS})")
            self._sleep(wait)
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise HostUnreachable(
                f"no Perennial host is running at {self.base_url} ({_reason(exc)})", START_HINT
            ) from None
        except httpx.TimeoutException:
            raise HostUnreachable(
                f"the host at {self.base_url} did not answer {method} {path} within {self.timeout:g} s",
                "check that it is running and not overloaded (its log says what it is doing)",
            ) from None
        except httpx.TransportError as exc:
            raise HostUnreachable(f"{method} {url} failed: {_reason(exc)}", START_HINT) from None
        return response

    def _error(self, response: httpx.Response) -> ProblemError:
        status = response.status_code
        problem = _problem_of(response) or Problem(
            title=response.reason_phrase or "Error",
            status=status,
            detail=_snippet(response.text),
        )
        if status == 401:
            return Unauthorized(status, problem, KEY_HINT)
        if status == 403:
            return ProblemError(status, problem, "the key was accepted but lacks access; use a function or host key")
        if status in (404, 405, 501) and _problem_of(response) is None:  # Perennial's routes answer problem+json
            hint = (
                f"{self.base_url} does not serve Perennial's API: check --host / {HOST_ENV} (`perennial up` prints it)"
            )
            return ProblemError(status, problem, hint)
        return ProblemError(status, problem, str(problem.extras.get("hint", "")))  # e.g. a 503's what-to-do

    def _body(self, response: httpx.Response) -> Any:
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url} answered {response.status_code} with "
                f"something that is not JSON: {_snippet(response.text)!r}",
                f"check that {self.base_url} is a Perennial host",
            ) from None

    def _list(self, body: Any, key: str) -> list[Any]:
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise self._unexpected(f"the {key}", f"a JSON object with a {key!r} list")
        return items

    def _parse(self, model: type[B], value: Any, what: str) -> B:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise UnexpectedResponse(
                f"the host sent {what} this client does not understand: {where}: {first['msg']}",
                "upgrade the perennial CLI to the host's version (GET /api/health says which)",
            ) from None

    def _unexpected(self, what: str, expected: str) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"the host sent {what} that is not {expected}",
            "upgrade the perennial CLI to the host's version (GET /api/health says which)",
        )


#: A 503 asking to be retried within this many seconds is retried by the client (a busy record or coordinator: the
#: host says 5 s); storage that cannot be reached asks for 30 s and is reported instead.
BUSY_WAIT_SECONDS = 10.0
BUSY_ATTEMPTS = 3


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def _fresh_key() -> dict[str, str]:
    """A request that starts a run is one run however often it is sent: its retries carry the same key."""
    return {"Idempotency-Key": f"cli-{uuid.uuid4()}"}


def _seg(value: str, name: str) -> str:
    """One URL path segment: ``a/b`` cannot reach another route. ``name`` is the CLI argument it came from (MODEL,
    RUN_ID, VERSION), for the message when it is not UTF-8."""
    return quote(_checked(value, name, SEGMENT_HINTS.get(name, "")), safe="")


RUN_ID_HINT = "give a run id as `perennial runs MODEL` lists it"
SEGMENT_HINTS = {
    "MODEL": "give the model's name as `perennial models` lists it, e.g. fraud",
    "RUN_ID": RUN_ID_HINT,
    "VERSION": "give a version as `perennial run RUN_ID` shows it, e.g. 4",
}
#: The CLI option each member of a request body comes from, for the message when its text is not UTF-8.
BODY_OPTIONS = {
    "reason": "--reason",
    "requested_by": "--requested-by",
    "by": "--by",
    "comment": "--comment",
    "blobs": "--blob",
}
NOT_UTF8_HINT = "the shell passed bytes that are not UTF-8: type it again in a UTF-8 terminal (e.g. LANG=C.UTF-8)"
TYPOGRAPHIC_QUOTES = "“”„‘’‚«»"


def _checked(value: str, name: str, hint: str) -> str:
    """``value`` when it is UTF-8 text; else BadArgument naming ``name`` and its first byte that is not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        fix = f"{hint}; {NOT_UTF8_HINT}" if hint else NOT_UTF8_HINT
        raise BadArgument(f"{name} {_shown(value)} is not UTF-8 text: {_char(value[exc.start])}", fix) from None
    return value


def _check_body(body: dict[str, Any]) -> None:
    """Every text in a request body must be UTF-8 (the host reads JSON as UTF-8); the option it came from is named."""
    for member, value in body.items():
        name = BODY_OPTIONS.get(member, member)
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # not echoed: a reason or comment may be long
                raise BadArgument(f"{name} is not UTF-8 text: {_char(text[exc.start])}", NOT_UTF8_HINT) from None


def _checked_key(key: str) -> str:
    """The function key as the ``x-functions-key`` header can carry it: printable ASCII, no spaces (as every function
    key is). Anything else, e.g. smart quotes pasted from a document or a line break, is a BadArgument."""
    for index, char in enumerate(key):
        if not "!" <= char <= "~":
            quotes = any(q in key for q in TYPOGRAPHIC_QUOTES)
            hint = (
                "remove the typographic quotes a document or chat put around it, and pass" if quotes else "pass"
            ) + f" the function key exactly as the portal shows it, or for a local host the one in {LOCAL_KEY_FILE}"
            raise BadArgument(
                f"--key / {KEY_ENV} must be printable ASCII with no spaces: character {index + 1} is {_char(char)}",
                hint,
            )
    return key


def _char(char: str) -> str:
    """One character for a message: a lone surrogate is the non-UTF-8 byte the shell passed."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"the byte 0x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate U+{code:04X}"
    if char.isprintable() and code > 0x7E:
        return f"{char!r} (U+{code:04X})"
    return repr(char)  # ' ', '\n', '\t', '\x00'


def _shown(value: str) -> str:
    """``value`` quoted, its non-UTF-8 bytes as ``\\xff`` (as a shell's $'…' writes them), never a lone surrogate."""
    try:
        return repr(value.encode("utf-8", "surrogateescape"))[1:]
    except UnicodeEncodeError:
        return ascii(value)


def _answer(by: str | None, comment: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if by:
        body["by"] = by
    if comment:
        body["comment"] = comment
    return body


def _problem_of(response: httpx.Response) -> Problem | None:
    """The problem+json body, or any JSON object that looks like one (some proxies drop the media type)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not ({"title", "detail"} & body.keys()):
        return None
    body.setdefault("status", response.status_code)
    try:
        return Problem.model_validate(body)
    except ValidationError:
        return Problem(
            title=str(body.get("title", "")), status=response.status_code, detail=str(body.get("detail", ""))
        )


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.removeprefix("[Errno 111] ").strip()


def _request(reason: str | None, requested_by: str | None) -> dict[str, str]:
    """The body of a request that starts a run: only what was given (the host fills in its defaults)."""
    return {k: v for k, v in (("reason", reason), ("requested_by", requested_by)) if v}


def requested_by_default() -> str:
    """Who is asking: the OS user (``USER`` / the password database), else ``cli``."""
    try:
        name = getpass.getuser() or "cli"
    except (OSError, KeyError):
        name = os.environ.get("USERNAME", "cli")
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # a user name that is not UTF-8: �
