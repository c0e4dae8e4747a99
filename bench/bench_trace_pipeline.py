"""The whole trace path through a running exporter, against the same bytes read bare.

Three processes: a Graph stand-in (bench/trace_standin.py: Microsoft's exact JSON shape,
pages of 5,000, newest first), the exporter (`Exporter` from app.py with its scheduler,
web server, tenant services, puller and quota engine; a static token instead of Entra ID)
and this one, which starts them, waits and reports. For each size (rows, senders) and each
run, a fresh exporter back-fills the last 24 h once; it reports, from inside:

- wall and CPU from the end of start-up (the first pull is scheduled, not yet run) to the
  quota figures published (the pull, de-dup, engine and the snapshot after it),
- its RSS before the pull, its peak RSS (VmHWM) and RSS after,
- the longest event-loop stall seen by a 5 ms ticker during the pull (on a loaded machine
  this includes the time the process waits for a core), and the longest single event-loop
  step in CPU time of the loop's thread (what the exporter's own code holds the loop for;
  a worker thread holding the GIL shows in the first figure only).

In the same run, this process reads the same pages (a) with httpx + orjson + a dict count
of (sender, status), (b) with aiohttp + orjson + the same count and (c) bare: `orjson.loads`
+ the dict count over the bytes already in memory. Ratios are bare wall / full path wall
(1.0: the exporter keeps up with the bare parser). Medians of `--runs` runs, with min and
max. With `--before SRC` (e.g. the `src` of a checkout of an earlier commit) each run also
starts an exporter from that code, alternating with this one, so both are measured under
the same load.

The exporter's request budget is lifted for this benchmark (Microsoft's 100 requests per
5 minutes would make a 1M-row back-fill take 10 minutes); bench_trace_budget.py covers it.

    python bench/bench_trace_pipeline.py [--runs 3] [--sizes 10000:1000,100000:10000,...]
        [--before /tmp/base/src]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import trace_standin

DEFAULT_SIZES = "10000:1000,100000:10000,1000000:100000"


def _proc_status(field: str) -> int:
    """A `kB` line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# ---- the exporter, in a child process ---------------------------------------------------


def run_exporter(base_url: str, rows: int, src: str | None, conn: Connection) -> None:
    if src is not None:  # the exporter from another checkout
        sys.path.insert(0, src)
    asyncio.run(_run_exporter(base_url, rows, conn))


async def _run_exporter(base_url: str, rows: int, conn: Connection) -> None:
    import gc

    from m365_smtp_exporter.app import Exporter
    from m365_smtp_exporter.auth import StaticTokenProvider
    from m365_smtp_exporter.config import parse_config

    config = parse_config(trace_standin.tenant_config(base_url))
    tenant = config.tenants["contoso"]
    # the budget is lifted for a speed measurement (the config caps it at Microsoft's 100)
    config.tenants["contoso"] = tenant.model_copy(update={"graph_budget": 1_000_000})
    exporter = Exporter(
        config,
        listen_address="127.0.0.1:0",
        token_provider_factory=lambda _: StaticTokenProvider("bench-token"),
    )
    gc.collect()
    rss_before = _proc_status("VmRSS")
    stall = 0.0
    loop = asyncio.get_running_loop()

    async def ticker() -> None:
        nonlocal stall
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            stall = max(stall, loop.time() - before - 0.005)

    gc_pauses: list[float] = []  # garbage collections stop the loop too: the longest one
    gc_started = 0.0

    def gc_callback(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_started
        if phase == "start":
            gc_started = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_started)

    held = 0.0  # the longest loop step, in the loop thread's CPU time
    run_step = asyncio.events.Handle._run

    def timed_step(handle: asyncio.events.Handle) -> None:
        nonlocal held
        started = time.thread_time()
        run_step(handle)
        held = max(held, time.thread_time() - started)

    await exporter.start()  # the first pull is scheduled here; it runs at the next await
    # as serve_forever does once started: start-up objects out of every later collection
    gc.collect()
    gc.freeze()
    gc.callbacks.append(gc_callback)
    wall0, cpu0 = time.perf_counter(), time.process_time()  # the pull, not the start-up
    tick = asyncio.create_task(ticker())
    asyncio.events.Handle._run = timed_step  # type: ignore[method-assign,assignment]
    services = exporter.tenants["contoso"]
    while not (services.puller and services.puller.stats.last_pull_ok and services.quota.figures):  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    asyncio.events.Handle._run = run_step  # type: ignore[method-assign]
    tick.cancel()
    gc.callbacks.remove(gc_callback)
    assert services.puller is not None
    delivered = sum(services.puller.stats.messages.values())
    gc.collect()
    conn.send(
        {
            "wall": wall,
            "cpu": cpu,
            "rows": delivered,
            "rss_before": rss_before,
            "rss_peak": _proc_status("VmHWM"),
            "rss_after": _proc_status("VmRSS"),
            "stall": stall,
            "loop_step": held,
            "gc_max": max(gc_pauses, default=0.0),
        }
    )
    await exporter.stop()


# ---- baselines, in this process ---------------------------------------------------------


def count(document: object, counts: dict[tuple[str, str], int]) -> int:
    assert isinstance(document, dict)
    values = document["value"]
    for row in values:
        key = (row["senderAddress"], row["status"])
        counts[key] = counts.get(key, 0) + 1
    return len(values)


async def httpx_baseline(base_url: str) -> tuple[float, float, list[bytes]]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    counts: dict[tuple[str, str], int] = {}
    bodies: list[bytes] = []
    url: str | None = f"{base_url}/v1.0/admin/exchange/tracing/messageTraces"
    async with httpx.AsyncClient() as client:
        while url is not None:
            body = (await client.get(url)).content
            document = orjson.loads(body)
            count(document, counts)
            bodies.append(body)
            url = document.get("@odata.nextLink")
    return time.perf_counter() - wall0, time.process_time() - cpu0, bodies


async def aiohttp_baseline(base_url: str) -> tuple[float, float]:
    import aiohttp

    wall0, cpu0 = time.perf_counter(), time.process_time()
    counts: dict[tuple[str, str], int] = {}
    url: str | None = f"{base_url}/v1.0/admin/exchange/tracing/messageTraces"
    async with aiohttp.ClientSession() as session:
        while url is not None:
            async with session.get(url) as response:
                body = await response.read()
            document = orjson.loads(body)
            count(document, counts)
            url = document.get("@odata.nextLink")
    return time.perf_counter() - wall0, time.process_time() - cpu0


def bare_baseline(bodies: Sequence[bytes]) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    counts: dict[tuple[str, str], int] = {}
    for body in bodies:
        count(orjson.loads(body), counts)
    return time.perf_counter() - wall0, time.process_time() - cpu0


# ---- the run ----------------------------------------------------------------------------


def in_child(target: Callable[..., None], *args: object) -> tuple[Connection, object]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child))
    process.start()
    return parent, process


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med * scale:,.{digits}f} [{low * scale:,.{digits}f}-{high * scale:,.{digits}f}]"


def exporter_sample(base_url: str, rows: int, src: str | None) -> dict[str, float]:
    conn, exporter = in_child(run_exporter, base_url, rows, src)
    report: dict[str, float] = conn.recv()
    exporter.join(timeout=60)  # type: ignore[attr-defined]
    assert report["rows"] == rows, report
    return report


def measure(rows: int, senders: int, runs: int, before: str | None) -> dict[str, list[float]]:
    conn, standin = in_child(trace_standin.serve, rows, senders, 5000)
    base_url, _ = conn.recv()
    results: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    try:
        for _ in range(runs):
            variants = {"after": None} if before is None else {"before": before, "after": None}
            reports = {name: exporter_sample(base_url, rows, src) for name, src in variants.items()}
            wall, cpu, bodies = asyncio.run(httpx_baseline(base_url))
            aio_wall, aio_cpu = asyncio.run(aiohttp_baseline(base_url))
            bare_wall, bare_cpu = bare_baseline(bodies)
            del bodies
            for name, report in reports.items():
                for key in ("wall", "cpu", "rss_before", "rss_peak", "rss_after", "stall"):
                    note(f"{name}_{key}", report[key])
                note(f"{name}_gc_max", report["gc_max"])
                note(f"{name}_loop_step", report["loop_step"])
                note(f"{name}_ratio_bare", bare_wall / report["wall"])
                note(f"{name}_ratio_httpx", wall / report["wall"])
                note(f"{name}_ratio_aiohttp", aio_wall / report["wall"])
            for key, value in {
                "httpx_wall": wall,
                "httpx_cpu": cpu,
                "aiohttp_wall": aio_wall,
                "aiohttp_cpu": aio_cpu,
                "bare_wall": bare_wall,
                "bare_cpu": bare_cpu,
            }.items():
                note(key, value)
    finally:
        conn.send("stop")
        standin.join(timeout=30)  # type: ignore[attr-defined]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="rows:senders,...")
    parser.add_argument("--before", help="src directory of an earlier checkout to compare")
    args = parser.parse_args()
    sizes = [tuple(int(part) for part in size.split(":")) for size in args.sizes.split(",")]
    print(f"trace path through a running exporter, {args.runs} runs: median [min-max]")
    with open("/proc/loadavg") as load:
        print(f"load average at start: {load.read().split()[:3]}")
    header = (
        f"{'rows':>9} {'senders':>8} {'code':>6} | {'exporter rows/s (wall)':>28} "
        f"{'CPU s':>18} | {'x bare':>17} {'x httpx':>17} {'x aiohttp':>17} | "
        f"{'RSS before/peak/after MB':>24} | {'stall ms':>18} | {'loop step CPU ms':>17} | "
        f"{'GC max ms':>16}"
    )
    print(header)
    mb = 1 / 2**20
    for rows, senders in sizes:
        r = measure(rows, senders, args.runs, args.before)
        names = ["after"] if args.before is None else ["before", "after"]
        for name in names:
            rate = [rows / wall for wall in r[f"{name}_wall"]]
            memory = (
                f"{statistics.median(r[f'{name}_rss_before']) * mb:.0f}/"
                f"{statistics.median(r[f'{name}_rss_peak']) * mb:.0f}/"
                f"{statistics.median(r[f'{name}_rss_after']) * mb:.0f}"
            )
            print(
                f"{rows:>9,} {senders:>8,} {name:>6} | {spread(rate):>28} "
                f"{spread(r[f'{name}_cpu'], 1, 2):>18} | "
                f"{spread(r[f'{name}_ratio_bare'], 1, 2):>17} "
                f"{spread(r[f'{name}_ratio_httpx'], 1, 2):>17} "
                f"{spread(r[f'{name}_ratio_aiohttp'], 1, 2):>17} | {memory:>24} | "
                f"{spread(r[f'{name}_stall'], 1000, 1):>18} | "
                f"{spread(r[f'{name}_loop_step'], 1000, 1):>17} | "
                f"{spread(r[f'{name}_gc_max'], 1000, 1):>16}",
                flush=True,
            )
        bare = [rows / wall for wall in r["bare_wall"]]
        httpx_rate = [rows / wall for wall in r["httpx_wall"]]
        aio_rate = [rows / wall for wall in r["aiohttp_wall"]]
        print(
            f"{'':>26} baselines rows/s: bare orjson {spread(bare)}, httpx+orjson "
            f"{spread(httpx_rate)}, aiohttp+orjson {spread(aio_rate)}; bare CPU s "
            f"{spread(r['bare_cpu'], 1, 2)}; peak RSS MB {spread(r['after_rss_peak'], mb)}",
            flush=True,
        )
    with open("/proc/loadavg") as load:
        print(f"load average at end: {load.read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
