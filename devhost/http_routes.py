"""HTTP triggers at ``/api/<route>``: route templates, methods, auth levels, ``func.HttpRequest``/``HttpResponse``.

Route templates follow ASP.NET's syntax as the host does: ``{name}``, optional ``{name?}``,
constraints ``{id:int}`` / ``{id:alpha}`` / ``{id:guid}`` and catch-all ``{*rest}``; matching
is case-insensitive. ``FUNCTION`` and ``ADMIN`` functions need a key (``code=`` query
parameter or ``x-functions-key`` header); ``ANONYMOUS`` ones are open.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.app_loader import AppFunction
from devhost.keys import key_matches

logger = logging.getLogger("devhost")

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "bool": r"(?i:true|false)",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")


def compile_route(template: str) -> re.Pattern[str]:
    """A regex for an ASP.NET-style route template (without the ``api/`` prefix)."""
    pattern = ""
    segments = template.strip("/").split("/")
    for i, segment in enumerate(segments):
        match = _PARAM.fullmatch(segment)
        sep = "/" if i else ""
        if match:
            star, name, constraint, optional = match.groups()
            body = ".*" if star else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            group = f"(?P<{name}>{body})"
            pattern += f"(?:{sep}{group})?" if (optional or star) else f"{sep}{group}"
            continue
        # Literal text with embedded parameters, e.g. "files/{name}.csv"
        pos, piece = 0, ""
        for inner in _PARAM.finditer(segment):
            piece += re.escape(segment[pos : inner.start()])
            star, name, constraint, _ = inner.groups()
            piece += f"(?P<{name}>{'.*' if star else _CONSTRAINTS.get((constraint or '').lower(), r'[^/]+?')})"
            pos = inner.end()
        piece += re.escape(segment[pos:])
        pattern += sep + piece
    return re.compile(f"^{pattern}/?$", re.IGNORECASE)


@dataclass(frozen=True)
class HttpRoute:
    fn: AppFunction
    pattern: re.Pattern[str]

    def allows(self, method: str) -> bool:
        return not self.fn.methods or method.upper() in self.fn.methods


def build_routes(functions: list[AppFunction]) -> list[HttpRoute]:
    # Literal routes first so "runs/latest" wins over "runs/{id}", as ASP.NET orders them.
    ordered = sorted(functions, key=lambda f: (f.route.count("{"), -len(f.route)))
    return [HttpRoute(fn, compile_route(fn.route)) for fn in ordered]


def request_key(request: web.Request) -> str | None:
    return request.query.get("code") or request.headers.get("x-functions-key")


def to_response(value: Any) -> web.Response:
    """Convert what an HTTP function returned into an aiohttp response, as the worker does."""
    if isinstance(value, func.HttpResponse):
        headers = {k: v for k, v in value.headers.items() if k.lower() != "content-type"}
        content_type = value.headers.get("Content-Type") or value.mimetype or "text/plain"
        if ";" in content_type:
            content_type = content_type.split(";", 1)[0]
        return web.Response(
            status=value.status_code,
            body=value.get_body(),
            headers=headers,
            content_type=content_type,
            charset=value.charset if content_type.startswith("text/") or "json" in content_type else None,
        )
    if value is None:
        return web.Response(status=204)
    if isinstance(value, bytes):
        return web.Response(body=value, content_type="application/octet-stream")
    if isinstance(value, str):
        return web.Response(text=value, content_type="text/plain")
    return web.Response(text=json.dumps(value, default=str), content_type="application/json")


def problem(status: int, title: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json")


async def to_http_request(request: web.Request, route_params: dict[str, str]) -> func.HttpRequest:
    body = await request.read()
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        params=dict(request.query),
        route_params=route_params,
        body=body,
    )


def make_handler(
    routes: list[HttpRoute],
    keys: Callable[[], list[str]],
    invoke: Callable[[AppFunction, dict[str, Any], web.Request], Any],
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        matched = [(r, m) for r in routes if (m := r.pattern.match(tail))]
        if not matched:
            return problem(404, "Not Found", f"no HTTP function serves /api/{tail}")
        allowed = [(r, m) for r, m in matched if r.allows(request.method)]
        if not allowed:
            methods = sorted({x for r, _ in matched for x in r.fn.methods})
            return problem(405, "Method Not Allowed", f"/api/{tail} accepts {', '.join(methods)}")
        route, match = allowed[0]
        if route.fn.auth_level != "anonymous" and not key_matches(request_key(request), keys()):
            return problem(
                401,
                "Unauthorized",
                f"function '{route.fn.name}' has auth level {route.fn.auth_level.upper()}: "
                "send a function key as ?code=KEY or the x-functions-key header (devhost prints it at start-up)",
            )
        params = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            http_request = await to_http_request(request, params)
        except web.HTTPRequestEntityTooLarge as exc:  # Azure's front end answers 413 too (its limit is 100 MB)
            return problem(413, "Payload Too Large", f"the body is larger than devhost's limit: {exc.text}")
        try:
            arguments: dict[str, Any] = {route.fn.trigger_arg: http_request}
            result = await invoke(route.fn, arguments, request)
            return to_response(result)
        except Exception as exc:
            logger.exception("HTTP function '%s' failed", route.fn.name)
            return problem(
                500, "Internal Server Error", f"function '{route.fn.name}' raised {type(exc).__name__}: {exc}"
            )

    return handle
