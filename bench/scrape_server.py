"""The exporter under load, driven by bench_scrape.py (run in its own process).

Holds N senders in one tenant's quota, changes its stores every second (a probe result, a
job run, new trace rows and a quota refresh), and measures its own event-loop lag with a
10 ms ticker. Prints one JSON line with its port when ready, one with the lag figures when
the duration is over.

    python bench/scrape_server.py --senders 10000 --mode subsystems --duration 20

--mode baseline serves the former path: one store version for everything, the whole
exposition re-rendered on the event loop after any change, the quota snapshot on the loop.
--mode floor serves the same bytes from a bare aiohttp handler, rendered once, nothing
changing: what moving a body of that size to the scraper costs on this machine.

The lag figures count from the first scrape: the scraper process starting up (its imports,
on the same cores) is not the exporter's doing. `lag_max_all_ms` includes that start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.app import GIL_SWITCH_INTERVAL, Exporter, freeze_long_lived_objects
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.config import parse_config
from m365_smtp_exporter.exposition import CachedExposition, Format
from m365_smtp_exporter.quota import QuotaRow
from m365_smtp_exporter.quota.metrics import quota_metrics
from m365_smtp_exporter.smtp.result import Phase, ProbeResult
from m365_smtp_exporter.tenants import TenantServices, TenantsSubsystem

TICK = 0.010


def config_text(senders: int, top_senders: int | None = None) -> str:
    """Every sender exported by default (the largest /metrics); `top_senders` as configured."""
    top = min(senders, 10_000) if top_senders is None else top_senders
    return f"""
tenants:
  contoso:
    tenant_id: t
    client_id: c
    client_secret: bench
    accepted_domains: [contoso.com]
    trace: {{enabled: false}}
    quota: {{top_senders: {top}}}
"""


def rows(senders: int, count: int, rng: random.Random, now: float) -> list[QuotaRow]:
    return [
        QuotaRow(
            sender=f"user{rng.randrange(senders):06d}@contoso.com",
            recipient=f"r{rng.randrange(10**9)}@outside.example",
            message_id=f"<m{rng.randrange(10**12)}@contoso.com>",
            received_at=now - rng.uniform(0, 86_000),
            status="delivered",
        )
        for _ in range(count)
    ]


def probe_result(now: float) -> ProbeResult:
    return ProbeResult(
        probe="bench",
        target="smtp.example:587",
        started_at=now,
        success=True,
        duration=0.8,
        phases={Phase.CONNECT: 0.05, Phase.DATA: 0.75},
    )


def use_baseline(exporter: Exporter) -> None:
    """Serve /metrics the way the exporter did before per-source exposition."""
    tenants = exporter.subsystem(TenantsSubsystem)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StoreCollector(
            exporter.store,
            [
                tenants.graph_metrics,
                quota_metrics(lambda: [s.quota for s in tenants.services.values()]),
            ],
        )
    )
    live = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=live)
    PlatformCollector(registry=live)
    legacy = CachedExposition(exporter.store, registry, live)

    async def scrape_parts(fmt: Format, *, compress: bool) -> list[bytes]:
        return [legacy.render_gzip() if compress else legacy.render()]

    # what the web handler calls (a patch of `scrape` alone would leave it on the new path)
    exporter.exposition.scrape_parts = scrape_parts  # type: ignore[method-assign]


async def change_every_second(
    exporter: Exporter, services: TenantServices, senders: int, baseline: bool
) -> None:
    rng = random.Random(11)
    while True:
        await asyncio.sleep(1.0)
        now = time.time()
        exporter.store.record_probe(probe_result(now))
        exporter.store.record_job("probe:bench", "success", 0.8)
        new = rows(senders, 20, rng, now)
        if baseline:
            services.quota.add_rows(new)
            services.refresh_quota()  # on the loop, as the quota job did
        else:
            await services.ingest_rows(new)
            await services.refresh_quota_async()


class GcPauses:
    """Longest garbage-collection pauses: they stop every thread, the loop included."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)


class FirstScrape:
    """Middleware noting when the scraper's first request came in (loop time)."""

    def __init__(self) -> None:
        self.at: float | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.at is None:
            self.at = asyncio.get_running_loop().time()
        return await handler(request)


async def tick(lags: list[tuple[float, float]]) -> None:
    """(when, lag) of a 10 ms ticker, in loop time."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(TICK)
        now = loop.time()
        lags.append((now, max(0.0, now - started - TICK)))


async def serve_floor(exporter: Exporter, first: FirstScrape) -> web.AppRunner:
    """The exporter's current body, plain and gzip, served as fixed bytes by bare aiohttp."""
    plain = exporter.exposition.render()
    compressed = exporter.exposition.render_gzip()

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=compressed, headers={"Content-Encoding": "gzip"})
        return web.Response(body=plain)

    app = web.Application(middlewares=[first.middleware])
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--mode", choices=("subsystems", "baseline", "floor"), default="subsystems")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="a running exporter's policies: gc.freeze() after the fill, its GIL switch interval",
    )
    parser.add_argument("--switch", type=float, default=None, help="sys.setswitchinterval")
    parser.add_argument("--top-senders", type=int, default=None, help="default: every sender")
    args = parser.parse_args()
    if args.freeze:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)  # what `serve_forever` sets
    if args.switch:
        sys.setswitchinterval(args.switch)
    first = FirstScrape()
    exporter = Exporter(
        parse_config(config_text(args.senders, args.top_senders), env={}),
        listen_address="127.0.0.1:0",
        token_provider_factory=lambda _: StaticTokenProvider("bench-token"),
        middlewares=[first.middleware],
    )
    await exporter.start()
    exporter.store.sync_probes([("", "bench", "smtp.example:587")])
    services = exporter.tenants["contoso"]
    rng = random.Random(7)
    now = time.time()
    for _ in range(2):  # two rows per sender on average, in batches like pulls
        services.quota.add_rows(rows(args.senders, args.senders, rng, now))
    services.refresh_quota()
    if args.freeze:
        # what `serve_forever` does after start-up and its freezer then does every minute:
        # the held senders are long-lived state, out of every later full collection
        gc.collect()
        gc.freeze()
    baseline = args.mode == "baseline"
    if baseline:
        use_baseline(exporter)
    exposition_bytes = len(exporter.exposition.render())
    floor = await serve_floor(exporter, first) if args.mode == "floor" else None
    port = floor.addresses[0][1] if floor is not None else exporter.bound_port
    print("BENCH", json.dumps({"port": port, "bytes": exposition_bytes}), flush=True)
    lags: list[tuple[float, float]] = []
    gc_pauses = GcPauses()
    tasks = [asyncio.create_task(tick(lags))]
    if floor is None:
        tasks.append(
            asyncio.create_task(change_every_second(exporter, services, args.senders, baseline))
        )
    if args.freeze:  # the exporter's policy (app.py), every 5 s here instead of every minute
        tasks.append(asyncio.create_task(freeze_long_lived_objects(interval=5.0)))
    await asyncio.sleep(args.duration)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if floor is not None:
        await floor.cleanup()
    await exporter.stop()
    since = first.at if first.at is not None else 0.0
    ms = sorted(lag * 1000 for when, lag in lags if when >= since)
    print(
        "BENCH",
        json.dumps(
            {
                "lag_p50_ms": statistics.median(ms),
                "lag_p99_ms": ms[int(0.99 * (len(ms) - 1))],
                "lag_max_ms": ms[-1],
                "lag_max_all_ms": max(lag * 1000 for _, lag in lags),
                "ticks": len(ms),
                "gc_max_ms": max(gc_pauses.pauses, default=0.0),
                "gc_total_ms": sum(gc_pauses.pauses),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
