"""HTTP endpoints: /metrics, health, readiness and reload (the console adds `/` and /api/v1).

The server defends itself: a connection must send its request within `header_timeout`
(aiohttp's keep-alive timer runs from the connection's start), at most `max_connections`
are open at once (more are closed on accept), and a TLS handshake has a deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from m365_smtp_exporter.exposition import Exposition, Format, PartsPayload, accepts_gzip
from m365_smtp_exporter.store import ResultsStore

ReloadFunc = Callable[[], Awaitable[tuple[bool, list[str]]]]
ReadyFunc = Callable[[], bool]

EXPOSITION_KEY = web.AppKey("exposition", Exposition)
STORE_KEY = web.AppKey("store", ResultsStore)
RELOAD_KEY: web.AppKey[ReloadFunc] = web.AppKey("reload")
READY_KEY: web.AppKey[ReadyFunc] = web.AppKey("ready")
LIFECYCLE_KEY = web.AppKey("lifecycle", bool)
DETAILS_KEY = web.AppKey("reload_details", bool)


@dataclass(frozen=True, slots=True)
class WebLimits:
    header_timeout: float = 15.0  # seconds to send a whole request; also the idle keep-alive
    max_connections: int = 256
    tls_handshake_timeout: float = 10.0


class _Refused(asyncio.Protocol):
    """What a connection over the cap gets: closed at once, nothing read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class _GuardedSite(web.TCPSite):
    """A TCPSite whose accepted connections past `max_connections` are closed at once."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
        limits: WebLimits,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self._limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        handler = self._runner.server
        assert handler is not None
        cap = self._limits.max_connections

        def factory() -> asyncio.BaseProtocol:
            if len(handler.connections) >= cap:
                return _Refused()
            return handler()

        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            reuse_address=True,
            ssl_handshake_timeout=(
                self._limits.tls_handshake_timeout if self._ssl_context else None
            ),
        )


async def serve(
    app: web.Application,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limits: WebLimits,
) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=limits.header_timeout
    )
    await runner.setup()
    try:
        await _GuardedSite(runner, host, port, ssl_context, limits).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def create_web_app(
    exposition: Exposition,
    store: ResultsStore,
    reload: ReloadFunc,
    ready: ReadyFunc,
    middlewares: list[Middleware] | None = None,
    *,
    enable_lifecycle: bool = False,
    reload_details: bool = False,
) -> web.Application:
    app = web.Application(middlewares=middlewares or [])
    app[EXPOSITION_KEY] = exposition
    app[STORE_KEY] = store
    app[RELOAD_KEY] = reload
    app[READY_KEY] = ready
    app[LIFECYCLE_KEY] = enable_lifecycle
    app[DETAILS_KEY] = reload_details
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_put("/-/reload", _reload)
    return app


async def _metrics(request: web.Request) -> web.Response:
    exposition = request.app[EXPOSITION_KEY]
    fmt = Format.negotiate(request.headers.get("Accept"))
    headers = {"Content-Type": fmt.content_type, "Vary": "Accept, Accept-Encoding"}
    compress = accepts_gzip(request.headers.get("Accept-Encoding"))  # Prometheus always asks
    if compress:
        headers["Content-Encoding"] = "gzip"
    parts = await exposition.scrape_parts(fmt, compress=compress)
    return web.Response(body=PartsPayload(parts, fmt.content_type), headers=headers)


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[READY_KEY]():
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def _reload(request: web.Request) -> web.Response:
    if not request.app[LIFECYCLE_KEY]:
        return web.Response(
            status=403, text="Lifecycle API is not enabled (--web.enable-lifecycle).\n"
        )
    ok, errors = await request.app[RELOAD_KEY]()
    if ok:
        return web.Response(text="Configuration reloaded.\n")
    if not request.app[DETAILS_KEY]:
        # Anyone may be asking: the reasons (file names, fields) go to the log only.
        text = "Reload failed, see the exporter log; keeping the running configuration.\n"
    else:
        text = "Reload failed, keeping the running configuration:\n" + "\n".join(errors) + "\n"
    return web.Response(status=500, text=text)
