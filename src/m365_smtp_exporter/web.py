"""HTTP endpoints: /metrics, health, readiness, reload and a small status page."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Middleware

from m365_smtp_exporter import __version__
from m365_smtp_exporter.exposition import CONTENT_TYPE, CachedExposition
from m365_smtp_exporter.store import ProbeSeries, ResultsStore

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
    app.router.add_get("/", _landing)
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


def _time(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _probe_row(series: ProbeSeries) -> str:
    last = series.last
    e = html.escape
    if last is None:
        status, detail, when, took = "pending", "", "never", ""
    else:
        status = "ok" if last.success else f"FAILED: {last.reason or 'unknown'}"
        detail = last.detail
        when = _time(last.started_at)
        took = f"{last.duration:.3f} s"
    return (
        f"<tr><td><a href='#{e(series.probe)}'>{e(series.probe)}</a></td>"
        f"<td>{e(series.tenant)}</td><td>{e(series.target)}</td>"
        f"<td class='{'ok' if status == 'ok' else 'bad'}'>{e(status)}</td>"
        f"<td>{e(when)}</td><td>{e(took)}</td><td>{e(detail)}</td></tr>"
    )


def _transcript(series: ProbeSeries) -> str:
    last = series.last
    if last is None:
        return ""
    lines = "\n".join(
        f"{line.elapsed:8.3f}  {line.direction}: {line.text}" for line in last.transcript
    )
    return (
        f"<h3 id='{html.escape(series.probe)}'>{html.escape(series.probe)}</h3>"
        f"<pre>{html.escape(lines)}</pre>"
    )


async def _landing(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    series = sorted(store.probes.values(), key=lambda s: s.probe)
    rows = "".join(_probe_row(s) for s in series)
    transcripts = "".join(_transcript(s) for s in series)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>m365-smtp-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
.ok{{color:#1a7f37}}.bad{{color:#cf222e;font-weight:bold}}pre{{background:#f6f8fa;padding:1em}}
</style></head><body>
<h1>m365-smtp-exporter {html.escape(__version__)}</h1>
<p><a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a>
&middot; <a href="/-/ready">Readiness</a></p>
<h2>Probes</h2>
<table><tr><th>probe</th><th>tenant</th><th>target</th><th>last result</th><th>at</th>
<th>took</th><th>detail</th></tr>{rows}</table>
<h2>Last transcripts</h2>{transcripts}
</body></html>
"""
    return web.Response(text=page, content_type="text/html")
