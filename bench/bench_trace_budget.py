"""Simulation: how much of Microsoft's shared 100 message-trace requests per 5 minutes a busy
tenant's trace pulls use, with the real `TracePuller` (windows, overlap, paging, de-dup)
against an in-process page source and a simulated clock.

Assumptions (printed with the results): rows arrive at a steady rate (5M/day = 57.9 rows/s,
and a peak of 3x that for business hours), every row is visible at once, Graph pages hold
`--page` rows (5,000, the maximum `$top`), pulls run every `--interval` seconds and re-read
`--overlap` seconds. Each pull reads (interval + overlap) of rows, so it costs
ceil(rate * (interval + overlap) / page) requests. The back-fill of a first start is not
included (see bench_trace_pipeline.py and the resume tests: it spreads over budget windows).

    python bench/bench_trace_budget.py [--per-day 5000000] [--interval 300] [--overlap 900]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections import deque
from collections.abc import Sequence

from m365_smtp_exporter.config import TraceConfig
from m365_smtp_exporter.graph.records import TracePage, TraceRecord, TraceRows
from m365_smtp_exporter.graph.trace import TracePuller
from m365_smtp_exporter.graph.windows import PullWindow

SHARED_LIMIT = 100
WINDOW = 300.0
START = 1_769_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SimulatedGraph:
    """Rows at `rate` per second from START on, listed newest first in pages of `page`."""

    def __init__(self, rate: float, page: int, clock: Clock) -> None:
        self.rate, self.page, self.clock = rate, page, clock
        self.requests: list[float] = []
        self._listing: list[TraceRecord] = []

    def _rows(self, start: float, end: float) -> list[TraceRecord]:
        first = max(0, math.ceil((start - START) * self.rate))
        last = math.floor((min(end, self.clock()) - START) * self.rate)
        return [
            TraceRecord(
                str(i),
                "user@contoso.com",
                "someone@example.net",
                "",
                START + i / self.rate,
                "delivered",
                "outbound",
            )
            for i in range(last, first - 1, -1)  # newest first
        ]

    def _page(self, rows: list[TraceRecord], offset: int) -> TracePage:
        self.requests.append(self.clock())
        chunk = rows[offset : offset + self.page]
        more = offset + self.page < len(rows)
        return TracePage(
            TraceRows.from_records(chunk), f"{id(rows)}:{offset + self.page}" if more else None
        )

    async def first_page(self, window: PullWindow, top: int) -> TracePage:
        self._listing = self._rows(window.start, window.end)
        return self._page(self._listing, 0)

    async def next_page(self, link: str) -> TracePage:
        return self._page(self._listing, int(link.split(":")[1]))

    async def resume_page(self, window: PullWindow, top: int, link: str) -> TracePage:
        return await self.next_page(link)


def busiest_window(times: Sequence[float]) -> int:
    """Most requests in any rolling 5 minutes."""
    held: deque[float] = deque()
    most = 0
    for moment in times:
        held.append(moment)
        while held[0] <= moment - WINDOW:
            held.popleft()
        most = max(most, len(held))
    return most


async def simulate(
    per_day: float, interval: float, overlap: float, page: int, hours: float
) -> tuple[int, float, int, int]:
    clock = Clock(START + overlap + interval)
    graph = SimulatedGraph(per_day / 86_400, page, clock)
    delivered = 0

    def sink(records: Sequence[TraceRecord]) -> None:
        nonlocal delivered
        delivered += len(records)

    puller = TracePuller(
        "contoso",
        graph,
        sink,
        settings=TraceConfig(interval=interval, overlap=overlap, lookback=overlap + interval),
        clock=clock,
        end_margin=0.0,
    )
    pulls = int(hours * 3600 / interval)
    for _ in range(pulls):
        result = await puller.pull()
        assert result.ok
        clock.now += interval
    expected = math.floor((clock.now - interval - START) * graph.rate) + 1
    return busiest_window(graph.requests), len(graph.requests) / pulls, delivered, expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=float, default=5_000_000)
    parser.add_argument("--interval", type=float, default=300)
    parser.add_argument("--overlap", type=float, default=900)
    parser.add_argument("--page", type=int, default=5000)
    parser.add_argument("--hours", type=float, default=2)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    print(
        f"assumptions: pages of {args.page} rows, a pull every {args.interval:g}s re-reading "
        f"{args.overlap:g}s of overlap, steady arrival, {args.hours:g}h simulated"
    )
    print(
        f"{'rows/day':>12} {'rows/s':>8} | {'requests/pull':>13} {'busiest 5 min':>13} "
        f"{'of 100':>7} | {'rows delivered':>14} {'expected':>10}"
    )
    for factor, label in ((1.0, ""), (3.0, " (3x peak)")):
        per_day = args.per_day * factor
        most, per_pull, delivered, expected = asyncio.run(
            simulate(per_day, args.interval, args.overlap, args.page, args.hours)
        )
        print(
            f"{per_day:>12,.0f} {per_day / 86_400:>8.1f} | {per_pull:>13.1f} {most:>13} "
            f"{most / SHARED_LIMIT:>7.0%} | {delivered:>14,} {expected:>10,}{label}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
