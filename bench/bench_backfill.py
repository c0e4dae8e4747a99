"""A back-fill larger than the request budget, then a restart, through a running exporter.

Three processes: a Graph stand-in that honours the `receivedDateTime` bounds of `$filter`,
`$top` and keyset `$skiptoken` paging (rows newest first, Microsoft's JSON shape), the
exporter (`Exporter` with its scheduler, web server, tenant services, puller, quota engine
and `quota_state_file`; a static token instead of Entra ID) and this one, which starts them
and prints what the exporter reports.

The stand-in holds `rows` trace rows from `senders` senders over the 23 hours before it
started, plus `gap_rows` rows over the 30 minutes after: those appear as the exporter's
clock moves on. The exporter's clock is the wall clock plus a shift this benchmark moves,
so a budget window (5 minutes) passes between pulls without waiting for it.

Phase 1, the back-fill, with `graph_budget` (50 by default, Microsoft's shared-budget-safe
figure): the first pull is the one the scheduler starts; after each pull the clock moves on
5 minutes and the next pull runs, until one pull ends with the back-fill complete. After
every pull: the requests the stand-in served, the rows the sink received, the partial mark
(`m365_trace_backfill_progress_ratio`), the pull's wall time, and the engine's figures
checked against a brute-force recount of the rows up to the puller's cursor: while partial,
no sender may be over its true count (lower bounds); once complete, every sender's
recipients in 24 h and the tenant's external recipients must be equal.

Phase 2, the restart: the exporter stops (it writes its quota state), the clock moves on
10 minutes, and a new exporter starts from the state file. Its first pull reads only the
gap: the requests it sent are counted, and its figures are checked exactly again.

    python bench/bench_backfill.py [--rows 1000000] [--senders 10000] [--budget 50]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import random
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import trace_standin

HOUR = 3600
PAGE_SIZE = 5000
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces"
STATUSES = ("Delivered",) * 8 + ("Failed", "Pending", "FilteredAsSpam", "Quarantined")
_BOUNDS = re.compile(
    r"receivedDateTime ge (?P<ge>[0-9TZ:.-]+) and receivedDateTime le (?P<le>[0-9TZ:.-]+)"
)


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the stand-in -------------------------------------------------------------------------


class TraceRows:
    """Rows as compact tuples, newest first; pages are serialised when asked for."""

    def __init__(self, rows: int, gap_rows: int, senders: int, now: int, seed: int = 11) -> None:
        rng = random.Random(seed)
        self.senders = [f"user{i}@contoso.com" for i in range(senders)]
        self.recipients = [f"person{i}@example.net" for i in range(4000)] + [
            f"user{i}@contoso.com" for i in range(min(senders, 500))
        ]
        self.internal = len(self.recipients) - min(senders, 500)  # index of the first ours
        stamps = [now - 23 * HOUR + (23 * HOUR * i) // rows for i in range(rows)]
        stamps += [now + 1 + (30 * 60 - 1) * i // max(gap_rows, 1) for i in range(gap_rows)]
        # (received, sender, recipient, number): one message has 1-3 recipients
        self.rows: list[tuple[int, int, int, int]] = []
        message_sender = 0
        remaining = 0
        for number, stamp in enumerate(stamps):
            if remaining == 0:
                message_sender, remaining = rng.randrange(senders), rng.choice((1, 1, 1, 2, 3))
            remaining -= 1
            self.rows.append((stamp, message_sender, rng.randrange(len(self.recipients)), number))
        self.rows.reverse()
        self.keys = [-row[0] for row in self.rows]  # ascending, for bisect

    def span(self, ge: int, le: int) -> tuple[int, int]:
        """Index range of the rows with ge <= received <= le (newest first)."""
        return bisect.bisect_left(self.keys, -le), bisect.bisect_right(self.keys, -ge)

    def page(self, start: int, stop: int) -> list[dict[str, object]]:
        values = []
        for received, sender, recipient, number in self.rows[start:stop]:
            address = self.recipients[recipient]
            values.append(
                {
                    "id": f"{number:08x}-0000-4000-8000-{number:012x}",
                    "senderAddress": self.senders[sender],
                    "recipientAddress": address,
                    "messageId": f"<m{number - (number % 3)}@contoso.com>",
                    "receivedDateTime": _stamp(received),
                    "subject": "weekly report",
                    "size": 4321,
                    "fromIP": "192.0.2.10",
                    "toIP": None if recipient >= self.internal else "198.51.100.25",
                    "status": STATUSES[number % len(STATUSES)],
                }
            )
        return values

    def expected(self, le: int) -> tuple[Counter[str], int]:
        """Recipients per sender and external recipients of the rows up to `le`."""
        per_sender: Counter[str] = Counter()
        external = 0
        for _received, sender, recipient, _ in self.rows[bisect.bisect_left(self.keys, -le) :]:
            per_sender[self.senders[sender]] += 1
            external += recipient < self.internal
        return per_sender, external


def serve(rows: int, gap_rows: int, senders: int, conn: Connection) -> None:
    asyncio.run(_serve(rows, gap_rows, senders, conn))


async def _serve(rows: int, gap_rows: int, senders: int, conn: Connection) -> None:
    data = TraceRows(rows, gap_rows, senders, int(time.time()))
    served = [0]

    async def traces(request: web.Request) -> web.Response:
        served[0] += 1
        token = request.query.get("$skiptoken")
        if token is None:
            bounds = _BOUNDS.fullmatch(request.query.get("$filter", ""))
            if bounds is None:
                return web.json_response({"error": {"code": "BadRequest"}}, status=400)
            ge, le = _epoch(bounds["ge"]), _epoch(bounds["le"])
            top, offset = int(request.query.get("$top", "1000")), 0
        else:
            ge, le, top, offset = (int(part) for part in token.split("."))
        start, stop = data.span(ge, le)
        first = start + offset
        last = min(first + top, stop)
        document: dict[str, object] = {"@odata.context": CONTEXT}
        if last < stop:
            document["@odata.nextLink"] = (
                f"{request.url.origin()}{request.path}?$skiptoken={ge}.{le}.{top}.{offset + top}"
            )
        document["value"] = data.page(first, last)
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": served[0]})

    async def expected(request: web.Request) -> web.Response:
        per_sender, external = data.expected(int(request.query["le"]))
        return web.json_response({"senders": per_sender, "external": external})

    routes = {trace_standin.TRACES_PATH: traces, "/stats": stats, "/expected": expected}
    async with trace_standin.listening(routes) as base_url:
        conn.send(base_url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop


# ---- the exporter, in a child process ---------------------------------------------------


def run_exporter(
    base_url: str, budget: int, state_path: str, restart_at: float | None, conn: Connection
) -> None:
    """Phase 1 (`restart_at` None) or phase 2, each in a process of its own, as a restart is."""
    asyncio.run(_run_exporter(base_url, budget, state_path, restart_at, conn))


async def _run_exporter(
    base_url: str, budget: int, state_path: str, restart_at: float | None, conn: Connection
) -> None:
    import httpx

    from m365_smtp_exporter.app import Exporter
    from m365_smtp_exporter.auth import StaticTokenProvider
    from m365_smtp_exporter.config import parse_config
    from m365_smtp_exporter.quota.limits import LimitName
    from m365_smtp_exporter.tenants import TenantServices

    config = parse_config(
        trace_standin.tenant_config(
            base_url, f"    graph_budget: {budget}\n    quota_state_file: {state_path}\n"
        )
    )
    shift = [0.0]

    def clock() -> float:
        return time.time() + shift[0]

    def budget_clock() -> float:
        return time.monotonic() + shift[0]

    http = httpx.AsyncClient(base_url=base_url)

    async def served() -> int:
        return int((await http.get("/stats")).json()["requests"])

    async def check(services: TenantServices) -> dict[str, Any]:
        """The engine's figures against a brute-force recount up to the puller's cursor."""
        assert services.puller is not None
        cursor = services.puller.cursor
        resume = services.puller.resume_point
        async with services._quota_lock:  # a consistent view
            snapshot = await asyncio.to_thread(services.quota.engine.snapshot, clock())
        # rows read so far: up to the cursor, or down to the oldest committed row of the
        # window in progress; either way the recount up to the newest bound is an upper bound
        upper = resume.window.end if resume is not None else cursor
        expected = (await http.get("/expected", params={"le": upper or 0})).json()
        over = under = 0
        for sender, count in expected["senders"].items():
            used = snapshot.figure(sender, LimitName.RECIPIENTS_PER_DAY).used
            over += used > count
            under += used < count
        external = snapshot.figure("", LimitName.EXTERNAL_RECIPIENTS_PER_DAY).used
        return {
            "senders": len(expected["senders"]),
            "over": over,
            "under": under,
            "external": external,
            "external_expected": expected["external"],
        }

    async def started(at_shift: float) -> tuple[Exporter, TenantServices]:
        shift[0] = at_shift
        exporter = Exporter(
            config,
            listen_address="127.0.0.1:0",
            token_provider_factory=lambda _: StaticTokenProvider("bench-token"),
            clock=clock,
        )
        await exporter.start()  # the first pull is scheduled; it runs at the next await
        services = exporter.tenants["contoso"]
        assert services.graph is not None and services.puller is not None
        services.graph.budget._clock = budget_clock  # 5 minutes pass on demand
        return exporter, services

    async def first_pull(services: TenantServices) -> None:
        assert services.puller is not None
        while not services.puller.stats.pulls or services._quota_lock.locked():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def pull_report(services: TenantServices, requests: int, wall: float) -> dict[str, Any]:
        assert services.puller is not None
        return {
            "requests": requests,
            "wall": wall,
            "ok": services.puller.stats.last_pull_ok,
            "progress": services.puller.backfill_progress,
            "rows": sum(services.puller.stats.messages.values()),
            "rss": _proc_status("VmRSS"),
        }

    if restart_at is not None:
        # phase 2: a restart 10 minutes after phase 1 stopped reads the gap only
        before = await served()
        wall0 = time.perf_counter()
        exporter, services = await started(restart_at)
        # the scheduler times its first run by the shifted clock, i.e. in the future: run it now
        await services.pull_trace()
        report = pull_report(services, await served() - before, time.perf_counter() - wall0)
        report["check"] = await check(services)
        report["peak_rss"] = _proc_status("VmHWM")
        conn.send(("restart", report))
        await exporter.stop()
        await http.aclose()
        return

    # phase 1: the back-fill, one pull per budget window
    before = await served()
    wall0 = time.perf_counter()
    exporter, services = await started(0.0)
    await first_pull(services)
    pulls = []
    while True:
        after = await served()
        report = pull_report(services, after - before, time.perf_counter() - wall0)
        report["check"] = await check(services)
        pulls.append(report)
        conn.send(("pull", report))
        if report["ok"] and report["progress"] == 1.0:
            break
        shift[0] += 300  # the next budget window
        before, wall0 = after, time.perf_counter()
        await services.pull_trace()
    await exporter.stop()  # writes the quota state
    await http.aclose()
    conn.send(("done", {"shift": shift[0], "peak_rss": _proc_status("VmHWM")}))


# ---- the run ----------------------------------------------------------------------------


def in_child(target: Any, *args: object) -> tuple[Connection, Any]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child))
    process.start()
    return parent, process


def describe(kind: str, number: int, report: dict[str, Any]) -> str:
    check = report["check"]
    exact = (
        check["over"] == 0
        and check["under"] == 0
        and check["external"] == check["external_expected"]
    )
    verdict = (
        "exact"
        if exact
        else ("partial, lower bounds" if check["over"] == 0 else "OVER THE TRUE COUNT")
    )
    return (
        f"{kind} {number:>2}: {report['requests']:>3} requests, {report['rows']:>9,} rows so far, "
        f"progress {report['progress']:.3f}, ok {report['ok']}, {report['wall']:.1f} s, "
        f"RSS {report['rss'] / 2**20:.0f} MB | figures vs recount: {verdict} "
        f"({check['under']:,} of {check['senders']:,} senders below; external "
        f"{check['external']:,} of {check['external_expected']:,})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--gap-rows", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=50)
    args = parser.parse_args()
    print(
        f"back-fill of {args.rows:,} rows from {args.senders:,} senders with graph_budget "
        f"{args.budget} (pages of {PAGE_SIZE:,}), then a restart with {args.gap_rows:,} "
        "new rows over the next 30 minutes",
        flush=True,
    )
    conn, standin = in_child(serve, args.rows, args.gap_rows, args.senders)
    base_url = conn.recv()
    failed = False
    number = 0
    try:
        with tempfile.TemporaryDirectory() as directory:
            state_path = str(Path(directory) / "quota-state.json")
            restart_at: float | None = None
            for _phase in ("back-fill", "restart"):
                econn, exporter = in_child(
                    run_exporter, base_url, args.budget, state_path, restart_at
                )
                while True:
                    kind, report = econn.recv()
                    if kind == "done":
                        restart_at = report["shift"] + 600
                        print(f"back-fill process peak RSS {report['peak_rss'] / 2**20:.0f} MB")
                        break
                    number += 1
                    print(describe(kind, number, report), flush=True)
                    failed |= report["check"]["over"] > 0
                    if kind == "restart":
                        check = report["check"]
                        failed |= check["under"] > 0
                        failed |= check["external"] != check["external_expected"]
                        print(f"restarted process peak RSS {report['peak_rss'] / 2**20:.0f} MB")
                        break
                exporter.join(timeout=120)
    finally:
        conn.send("stop")
        standin.join(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
