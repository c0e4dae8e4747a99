"""`/metrics` with 10,000 tracked senders: scrape latency served from cache, over real HTTP.

Baseline measured in the same run: rendering the exposition on every scrape (what a plain
prometheus_client collector would do). Run: python bench/bench_scrape.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable

import aiohttp

from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import parse_config
from m365_smtp_exporter.quota import QuotaRow

SENDERS = 10_000
ROWS = 200_000
SCRAPES = 200
TARGET_MEDIAN_MS = 10.0
sizes: list[int] = []  # bytes on the wire per scrape

CONFIG = f"""
tenants:
  contoso:
    tenant_id: t
    client_id: c
    accepted_domains: [contoso.com]
    quota: {{top_senders: {SENDERS}}}
"""


def fill(exporter: Exporter) -> None:
    rng = random.Random(7)
    now = time.time()
    rows = [
        QuotaRow(
            sender=f"user{rng.randrange(SENDERS):05d}@contoso.com",
            recipient=f"r{i}@outside.example",
            message_id=f"<m{i}@contoso.com>",
            received_at=now - rng.uniform(0, 86_000),
            status="delivered",
        )
        for i in range(ROWS)
    ]
    tenant = exporter.tenants["contoso"]
    tenant.quota.add_rows(rows)
    tenant.refresh_quota()


async def time_scrapes(
    session: aiohttp.ClientSession, url: str, invalidate: Callable[[], None] | None
) -> list[float]:
    timings = []
    for _ in range(SCRAPES):
        if invalidate is not None:
            invalidate()  # every scrape renders
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status == 200 and body
        sizes.append(len(body))
    return timings


async def main() -> int:
    exporter = Exporter(parse_config(CONFIG, env={}), listen_address="127.0.0.1:0")
    await exporter.start()
    try:
        fill(exporter)
        url = f"http://127.0.0.1:{exporter.bound_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        senders = {
            line.split('sender="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("m365_quota_used{")
        }
        series = len(senders)
        # Like Prometheus: ask for gzip, time until the whole body has arrived (the
        # scraper's own decompression and parsing are not the exporter's latency).
        async with aiohttp.ClientSession(
            auto_decompress=False, headers={"Accept-Encoding": "gzip"}
        ) as session:
            cached = await time_scrapes(session, url, None)
            rendered = await time_scrapes(session, url, exporter.store.mark_changed)
    finally:
        await exporter.stop()
    size_kb = len(text.encode()) / 1024
    cached_median = statistics.median(cached)
    rendered_median = statistics.median(rendered)
    wire_kb = statistics.median(sizes) / 1024
    print(
        f"/metrics: {series} sender label values, {size_kb:.0f} KiB uncompressed, "
        f"{wire_kb:.0f} KiB gzip on the wire, {SCRAPES} scrapes each"
    )
    print(f"{'path':<34}{'median ms':>10}{'p95 ms':>10}")
    for name, timings in (
        ("served from cache", cached),
        ("baseline: render every scrape", rendered),
    ):
        p95 = statistics.quantiles(timings, n=20)[-1]
        print(f"{name:<34}{statistics.median(timings):>10.2f}{p95:>10.2f}")
    print(f"cache speed-up: {rendered_median / cached_median:.1f}x")
    ok = cached_median < TARGET_MEDIAN_MS and series >= SENDERS
    print(f"target median < {TARGET_MEDIAN_MS:g} ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
