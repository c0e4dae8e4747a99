"""HTTP endpoints: /metrics, health, readiness and reload (the console adds `/` and /api/v1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from m365_smtp_exporter.exposition import CONTENT_TYPE, CachedExposition
from m365_smtp_exporter.store import ResultsStore

ReloadFunc = Callable[[], Awaitable[tuple[bool, list[str]]]]
ReadyFunc = Callable[[], bool]

EXPOSITION_KEY = web.AppKey("exposition", CachedExposition)
STORE_KEY = web.AppKey("store", ResultsStore)
RELOAD_KEY: web.AppKey[ReloadFunc] = web.AppKey("reload")
READY_KEY: web.AppKey[ReadyFunc] = web.AppKey("ready")


def create_web_app(
    exposition: CachedExposition,
    store: ResultsStore,
    reload: ReloadFunc,
    ready: ReadyFunc,
    middlewares: list[Middleware] | None = None,
) -> web.Application:
    app = web.Application(middlewares=middlewares or [])
    app[EXPOSITION_KEY] = exposition
    app[STORE_KEY] = store
    app[RELOAD_KEY] = reload
    app[READY_KEY] = ready
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_put("/-/reload", _reload)
    return app


async def _metrics(request: web.Request) -> web.Response:
    exposition = request.app[EXPOSITION_KEY]
    if "gzip" in request.headers.get("Accept-Encoding", ""):  # Prometheus always asks
        return web.Response(
            body=exposition.render_gzip(),
            headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"},
        )
    return web.Response(body=exposition.render(), headers={"Content-Type": CONTENT_TYPE})


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[READY_KEY]():
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def _reload(request: web.Request) -> web.Response:
    ok, errors = await request.app[RELOAD_KEY]()
    if ok:
        return web.Response(text="Configuration reloaded.\n")
    return web.Response(
        status=500,
        text="Reload failed, keeping the running configuration:\n" + "\n".join(errors) + "\n",
    )
