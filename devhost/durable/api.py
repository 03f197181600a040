"""The durable HTTP management API and the durable client binding JSON.

Two mounts of the same handlers, as on the real host:

* ``/durabletask/`` — the ``rpcBaseUrl`` the SDK's ``DurableOrchestrationClient`` calls. The
  SDK JSON-encodes inputs and event payloads twice (a JSON string in a JSON body); this mount
  undoes that. No key: like the host's local RPC endpoint it is reachable from loopback only.
* ``/runtime/webhooks/durabletask/`` — the public webhooks behind ``statusQueryGetUri`` and
  friends. Bodies are plain JSON; a key is required (``code=`` or ``x-functions-key``).

Starting an instance id that is Pending, Running or Suspended is refused with 409 (the
host's default ``overridableExistingInstanceStates: NonRunningStates``); a Completed, Failed
or Terminated instance is replaced by the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devhost.durable.engine import RUNNING_STATES, Engine, InstanceExistsError
from devhost.durable.history import EventType, parse_time
from devhost.errors import UnknownFunctionError
from devhost.keys import key_matches

PUBLIC = "/runtime/webhooks/durabletask"
RPC = "/durabletask"
_ID = "INSTANCEID"


def client_binding(base_url: str, task_hub: str, key: str) -> dict[str, Any]:
    """The JSON the host hands to a ``durable_client_input`` parameter."""
    public = f"{base_url}{PUBLIC}"
    query = f"taskHub={quote(task_hub)}&connection=Storage&code={quote(key)}"
    instance = f"{public}/instances/{_ID}"
    return {
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{public}/orchestrators/{{functionName}}[/{{instanceId}}]?code={quote(key)}",
            "createAndWaitOnNewInstancePostUri": f"{public}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&code={quote(key)}",
        },
        "managementUrls": {
            "id": _ID,
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        },
        "baseUrl": public,
        "requiredQueryStringParameters": f"code={quote(key)}",
        "rpcBaseUrl": f"{base_url}{RPC}/",
        "httpBaseUrl": "",
    }


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _history_view(event: dict[str, Any], with_output: bool) -> dict[str, Any]:
    kind = EventType(event["EventType"]).name.title().replace("_", "")
    view: dict[str, Any] = {"EventType": kind, "Timestamp": event["Timestamp"]}
    for field in ("EventId", "Name", "InstanceId", "TaskScheduledId", "TimerId", "FireAt", "Reason"):
        if event.get(field) is not None and event.get(field) != -1:
            view["FunctionName" if field == "Name" else field] = event[field]
    if with_output:
        for field in ("Input", "Result", "Details"):
            if event.get(field) is not None:
                view[field] = event[field]
    return view


class ManagementApi:
    def __init__(self, engine: Engine, base_url: Callable[[], str], keys: Callable[[], list[str]]) -> None:
        self.engine = engine
        self.base_url = base_url
        self.keys = keys

    def routes(self) -> list[web.RouteDef]:
        defs: list[web.RouteDef] = []
        for prefix in (PUBLIC, RPC):
            defs += [
                web.post(prefix + "/orchestrators/{name}", self.start),
                web.post(prefix + "/orchestrators/{name}/{instance_id}", self.start),
                web.get(prefix + "/instances", self.list_instances),
                web.get(prefix + "/instances/", self.list_instances),
                web.delete(prefix + "/instances", self.purge_many),
                web.delete(prefix + "/instances/", self.purge_many),
                web.get(prefix + "/instances/{instance_id}", self.status),
                web.delete(prefix + "/instances/{instance_id}", self.purge),
                web.post(prefix + "/instances/{instance_id}/raiseEvent/{event}", self.raise_event),
                web.post(prefix + "/instances/{instance_id}/terminate", self.control),
                web.post(prefix + "/instances/{instance_id}/suspend", self.control),
                web.post(prefix + "/instances/{instance_id}/resume", self.control),
                web.post(prefix + "/instances/{instance_id}/restart", self.restart),
                web.post(prefix + "/instances/{instance_id}/rewind", self.rewind),
            ]
        return defs

    # -- helpers -----------------------------------------------------------------------------
    def _denied(self, request: web.Request) -> web.Response | None:
        if request.path.startswith(RPC + "/"):
            return None
        key = request.query.get("code") or request.headers.get("x-functions-key")
        if key_matches(key, self.keys()):
            return None
        return _error(401, "the durable webhooks need a key: add ?code=KEY (devhost prints it at start-up)")

    @staticmethod
    async def _payload(request: web.Request) -> str | None:
        """The JSON text of an input or event payload (undoing the SDK's double encoding on the RPC mount)."""
        text = await request.text()
        if not text.strip():
            return None
        value = json.loads(text)
        if request.path.startswith(RPC + "/"):
            if value is None:
                return None
            if isinstance(value, str):
                return value
        return json.dumps(value)

    def _management(self, instance_id: str) -> dict[str, str]:
        urls = client_binding(self.base_url(), self.engine.index.task_hub, self.keys()[0])["managementUrls"]
        return {k: v.replace(_ID, instance_id) for k, v in urls.items() if k != "id"}

    def _status(self, instance_id: str, request: web.Request) -> dict[str, Any] | None:
        row = self.engine.store.instance(instance_id)
        if row is None:
            return None
        q = request.query
        status: dict[str, Any] = {
            "name": row.name,
            "instanceId": row.instance_id,
            "runtimeStatus": row.status,
            "input": _json_or_none(row.input) if q.get("showInput", "true").lower() != "false" else None,
            "customStatus": _json_or_none(row.custom_status),
            "output": _json_or_none(row.output),
            "createdTime": row.created_time,
            "lastUpdatedTime": row.last_updated_time,
        }
        if q.get("showHistory", "false").lower() == "true":
            with_output = q.get("showHistoryOutput", "false").lower() == "true"
            status["historyEvents"] = [_history_view(e, with_output) for e in self.engine.history_events(instance_id)]
        return status

    # -- handlers ----------------------------------------------------------------------------
    async def start(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        try:
            payload = await self._payload(request)
        except json.JSONDecodeError as exc:
            return _error(400, f"the input is not JSON: {exc}")
        name = request.match_info["name"]
        try:
            instance_id = self.engine.start_new(name, request.match_info.get("instance_id"), payload)
        except UnknownFunctionError as exc:
            return _error(400, exc.message, hint=exc.hint)
        except InstanceExistsError as exc:
            return _error(409, str(exc))
        body = {"id": instance_id, **self._management(instance_id)}
        return web.json_response(body, status=202, headers={"Location": body["statusQueryGetUri"]})

    async def status(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        status = self._status(request.match_info["instance_id"], request)
        if status is None:
            return web.Response(status=404)
        code = 202 if status["runtimeStatus"] in RUNNING_STATES else 200
        return web.json_response(status, status=code)

    async def list_instances(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        q = request.query
        wanted = {s.strip().lower() for s in q.get("runtimeStatus", "").split(",") if s.strip()}
        since = parse_time(q["createdTimeFrom"]) if q.get("createdTimeFrom") else None
        until = parse_time(q["createdTimeTo"]) if q.get("createdTimeTo") else None
        prefix = q.get("instanceIdPrefix", "")
        top = int(q.get("top", "0") or 0)
        result = []
        for row in self.engine.store.instances():
            created = parse_time(row.created_time)
            if wanted and row.status.lower() not in wanted:
                continue
            if (since and created < since) or (until and created > until) or not row.instance_id.startswith(prefix):
                continue
            status = self._status(row.instance_id, request)
            if status is not None:
                result.append(status)
            if top and len(result) >= top:
                break
        return web.json_response(result)

    async def raise_event(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        try:
            payload = await self._payload(request)
        except json.JSONDecodeError:
            return _error(400, "Only application/json request content is supported")
        code = self.engine.raise_event(request.match_info["instance_id"], request.match_info["event"], payload)
        return web.Response(status=code)

    async def control(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        kind = request.path.rstrip("/").rsplit("/", 1)[-1]
        code = self.engine.control(request.match_info["instance_id"], kind, request.query.get("reason"))
        return web.Response(status=code)

    async def purge(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        deleted = self.engine.purge(request.match_info["instance_id"])
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def purge_many(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        q = request.query
        if not q.get("createdTimeFrom"):
            return _error(400, "createdTimeFrom is required to purge instances in bulk")
        since = parse_time(q["createdTimeFrom"])
        until = parse_time(q["createdTimeTo"]) if q.get("createdTimeTo") else None
        wanted = {s.strip().lower() for s in q.get("runtimeStatus", "").split(",") if s.strip()}
        deleted = 0
        for row in self.engine.store.instances():
            created = parse_time(row.created_time)
            if created < since or (until and created > until) or (wanted and row.status.lower() not in wanted):
                continue
            deleted += self.engine.purge(row.instance_id)
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def restart(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        row = self.engine.store.instance(request.match_info["instance_id"])
        if row is None:
            return web.Response(status=404)
        new_id = None if request.query.get("restartWithNewInstanceId", "true").lower() == "true" else row.instance_id
        try:
            instance_id = self.engine.start_new(row.name, new_id, row.input)
        except InstanceExistsError as exc:
            return _error(409, str(exc))
        return web.json_response({"id": instance_id, **self._management(instance_id)}, status=202)

    async def rewind(self, request: web.Request) -> web.Response:
        return _error(
            501,
            "devhost does not implement rewind",
            hint="restart the instance instead (POST .../restart), or use the real Functions host",
        )


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"Message": message, "ExceptionMessage": message}
    if hint:
        body["Hint"] = hint
    return web.json_response(body, status=status)
