"""Console and `/api/v1/*` routes, added to the exporter's web app (its auth/TLS apply)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Protocol

import orjson
from aiohttp import web

from m365_smtp_exporter.console.page import render_page
from m365_smtp_exporter.console.status import StatusSource, build_status
from m365_smtp_exporter.planner import Plan, PlanInputError, PlanRequest, plan_to_json
from m365_smtp_exporter.planner.request import parse_plan_request

# Scripts and styles from this origin only, no inline code, nothing from anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
MAX_QUERY_LENGTH = 2048


class PlannerFace(Protocol):
    def tenants(self) -> list[str]: ...

    async def plan(self, request: PlanRequest, now: float) -> Plan: ...


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        content_type="application/json",
        headers=SECURITY_HEADERS,
    )


def _static_files() -> dict[str, bytes]:
    folder = resources.files("m365_smtp_exporter.console") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


def add_console_routes(
    app: web.Application,
    sources: Sequence[StatusSource],
    planner: PlannerFace,
    clock: Callable[[], float] = time.time,
) -> None:
    """The console at `/`, `/api/v1/status`, `/api/v1/plan` and the console's static files."""
    files = _static_files()

    async def page(request: web.Request) -> web.Response:
        status = build_status(sources, clock())
        return web.Response(
            text=render_page(status, planner.tenants()),
            content_type="text/html",
            headers=SECURITY_HEADERS,
        )

    async def status(request: web.Request) -> web.Response:
        return _json(build_status(sources, clock()))

    async def plan(request: web.Request) -> web.Response:
        if len(request.query_string) > MAX_QUERY_LENGTH:
            return _json({"error": "query string too long", "field": None}, 400)
        try:
            query: dict[str, str] = {}
            for key, value in request.query.items():
                if key in query:
                    raise PlanInputError(key, "given more than once")
                query[key] = value
            answer = await planner.plan(parse_plan_request(query), clock())
        except PlanInputError as error:
            return _json({"error": str(error), "field": error.field}, 400)
        return _json(plan_to_json(answer))

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(
            body=files[name],
            content_type=STATIC[name],
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    app.router.add_get("/", page)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/plan", plan)
    app.router.add_get("/static/{name}", static)
