"""Probe timing fidelity: the duration the exporter reports for a probe, against a bare
aiosmtplib session doing the same phases against the same server, with and without load.

Processes: an aiosmtpd server with STARTTLS (trustme CA); this process, an exporter whose
probe runs through the real path (`ProbesSubsystem.run`: dispatch, shared TLS context,
message, transcript, store, event, log line); a bare client in another process (its own
idle event loop); under load, a scraper process fetching /metrics (gzip and plain, every
50 ms, as bench_scrape.py does).

Load: the exporter holds `--senders` senders in one tenant's quota and its stores change every
second (a probe result, a job run, trace rows, a quota refresh: bench/scrape_server.py's
change), the GC freeze policy of `serve_forever` runs, and /metrics is scraped. Idle: an
exporter with the probe only, nothing else running.

For each of `--probes` rounds, one after the other in a random order: an exporter probe, a
bare session in this process (same event loop: the probe path's own cost), a bare session in
the other process (an idle loop: what an outside client sees). Phases: connect (resolve, TCP,
greeting), EHLO (both), STARTTLS, MAIL, RCPT, DATA, QUIT; totals include QUIT, as the
probe's do.
Prints median, p90 and max of (reported - bare) per mode, per-phase medians, and the loop lag.

    python bench/bench_probe_fidelity.py [--probes 200] [--senders 10000]
    PYTHONPATH=/path/to/other/checkout/src python bench/bench_probe_fidelity.py  # a baseline
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import multiprocessing
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import bench_probe_rate, bench_scrape, scrape_server

from m365_smtp_exporter.app import GIL_SWITCH_INTERVAL, Exporter, freeze_long_lived_objects
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig, parse_config
from m365_smtp_exporter.probes.subsystem import ProbesSubsystem
from m365_smtp_exporter.smtp.message import build_probe_message
from m365_smtp_exporter.smtp.result import Phase, ProbeResult

PHASES = ("connect", "ehlo", "starttls", "mail", "rcpt", "data", "quit", "total")
# the probe's phases, summed into the bare session's steps
PROBE_PHASES = {
    "connect": (Phase.RESOLVE, Phase.CONNECT, Phase.BANNER),
    "ehlo": (Phase.EHLO,),
    "starttls": (Phase.STARTTLS,),
    "mail": (Phase.MAIL,),
    "rcpt": (Phase.RCPT,),
    "data": (Phase.DATA,),
    "quit": (Phase.QUIT,),
}
MAIL_FROM, RCPT_TO = "probe@contoso.test", "inbox@contoso.test"
Timings = dict[str, float]


def probe_yaml(port: int, ca_file: str) -> str:
    return f"""
probes:
  - name: fidelity
    host: 127.0.0.1
    port: {port}
    tls: starttls
    ca_file: {ca_file}
    auth: {{mechanism: none}}
    mail_from: {MAIL_FROM}
    rcpt_to: [{RCPT_TO}]
    interval: 1h
    timeout: 10s
"""


def probe_message(config: ProbeConfig) -> bytes:
    """A message of the probe's size for the bare session (built once, outside timing)."""
    message, _ = build_probe_message(config, now=time.time(), token="0" * 32)
    return message


async def bare_session(port: int, context: ssl.SSLContext, message: bytes) -> Timings:
    """The probe's phases with aiosmtplib's client, each timed."""
    marks = [time.perf_counter()]
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, tls_context=context, timeout=10
    )
    await client.connect()  # resolve, TCP, greeting
    marks.append(time.perf_counter())
    await client.ehlo()
    marks.append(time.perf_counter())
    await client.starttls()
    marks.append(time.perf_counter())
    await client.ehlo()
    marks.append(time.perf_counter())
    await client.mail(MAIL_FROM)
    marks.append(time.perf_counter())
    await client.rcpt(RCPT_TO)
    marks.append(time.perf_counter())
    await client.data(message)
    marks.append(time.perf_counter())
    await client.quit()
    marks.append(time.perf_counter())
    step = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "connect": step[0],
        "ehlo": step[1] + step[3],
        "starttls": step[2],
        "mail": step[4],
        "rcpt": step[5],
        "data": step[6],
        "quit": step[7],
        "total": marks[-1] - marks[0],
    }


def probe_timings(result: ProbeResult) -> Timings:
    timings = {
        name: sum(result.phases.get(phase, 0.0) for phase in phases)
        for name, phases in PROBE_PHASES.items()
    }
    timings["total"] = result.duration
    return timings


def bare_client(port: int, ca_file: str, message: bytes, conn: Connection) -> None:
    """The other process: one bare session per request, on its own idle event loop."""

    async def serve() -> None:
        context = ssl.create_default_context(cafile=ca_file)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) == "go":
            conn.send(await bare_session(port, context, message))

    asyncio.run(serve())


def scraper(url: str, duration: float) -> None:
    asyncio.run(bench_scrape.client(url, duration))


@contextmanager
def process(target: Callable[..., None], *args: Any) -> Iterator[None]:
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    try:
        yield
    finally:
        child.terminate()
        child.join(timeout=10)


async def measure(
    mode: str, port: int, ca_file: str, clean: Connection, args: argparse.Namespace
) -> dict[str, Any]:
    loaded = mode == "load"
    text = probe_yaml(port, ca_file)
    if loaded:
        text = scrape_server.config_text(args.senders) + text
    config = parse_config(text, env={})
    probe = config.probes[0]
    message = probe_message(probe)
    exporter = Exporter(
        config,
        listen_address="127.0.0.1:0",
        token_provider_factory=lambda _: StaticTokenProvider("bench-token"),
    )
    await exporter.start()
    probes = exporter.subsystem(ProbesSubsystem)
    context = ssl.create_default_context(cafile=ca_file)
    loop = asyncio.get_running_loop()
    lags: list[tuple[float, float]] = []  # (when, lag)
    tasks = [asyncio.create_task(scrape_server.tick(lags))]
    with contextmanager_if(
        loaded,
        lambda: process(scraper, f"http://127.0.0.1:{exporter.bound_port}/metrics", 3600.0),
    ):
        if loaded:
            services = exporter.tenants["contoso"]
            rng, now = random.Random(7), time.time()
            for _ in range(2):  # two rows per sender on average, as scrape_server.py
                services.quota.add_rows(scrape_server.rows(args.senders, args.senders, rng, now))
            services.refresh_quota()
            gc.collect()  # what serve_forever does after start-up
            gc.freeze()
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)  # and before it
            tasks.append(
                asyncio.create_task(
                    scrape_server.change_every_second(exporter, services, args.senders, False)
                )
            )
            tasks.append(asyncio.create_task(freeze_long_lived_objects()))
        samples: dict[str, list[Timings]] = {"probe": [], "same": [], "clean": []}
        walls: list[float] = []
        failures = 0

        async def exporter_probe() -> tuple[str, Any]:
            started = time.perf_counter()
            result = await probes.run(probe)
            return "probe", (result, time.perf_counter() - started)

        async def same_loop() -> tuple[str, Any]:
            return "same", await bare_session(port, context, message)

        async def other_process() -> tuple[str, Any]:
            clean.send("go")
            return "clean", await loop.run_in_executor(None, clean.recv)

        order = random.Random(3)
        steps = [exporter_probe, same_loop, other_process]
        for index in range(args.warmup + args.probes):
            # a random order each round: none of the three always runs first after the pause
            order.shuffle(steps)
            taken = dict([await step() for step in steps])
            if index >= args.warmup:
                result, wall = taken["probe"]
                failures += not result.success
                samples["probe"].append(probe_timings(result))
                samples["same"].append(taken["same"])
                samples["clean"].append(taken["clean"])
                walls.append(wall)
            await asyncio.sleep(args.pause)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await exporter.stop()
    gc.unfreeze()
    return {"samples": samples, "walls": walls, "failures": failures, "lags": lags}


@contextmanager
def contextmanager_if(condition: bool, factory: Callable[[], Any]) -> Iterator[None]:
    if not condition:
        yield
        return
    with factory():
        yield


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def report(mode: str, figures: dict[str, Any]) -> None:
    samples = figures["samples"]
    probe, n = samples["probe"], len(samples["probe"])
    lags = [lag * 1000 for _, lag in figures["lags"]]
    print(
        f"\n{mode}: {n} rounds, {figures['failures']} probe failures; loop lag p99 "
        f"{quantile(lags, 0.99):.1f} ms, max {max(lags):.1f} ms"
    )
    print(f"{'reported - bare total, ms':>34} {'median':>8} {'p90':>8} {'max':>8} {'min':>8}")
    for other, label in (("same", "bare, same loop"), ("clean", "bare, other process")):
        diffs = [
            (p["total"] - b["total"]) * 1000 for p, b in zip(probe, samples[other], strict=True)
        ]
        print(
            f"{label:>34} {statistics.median(diffs):>8.2f} {quantile(diffs, 0.9):>8.2f} "
            f"{max(diffs):>8.2f} {min(diffs):>8.2f}"
        )
    overhead = [(w - p["total"]) * 1000 for w, p in zip(figures["walls"], probe, strict=True)]
    print(
        f"{'probe call wall - reported (untimed)':>34} {statistics.median(overhead):>8.2f} "
        f"{quantile(overhead, 0.9):>8.2f} {max(overhead):>8.2f} {min(overhead):>8.2f}"
    )
    print(f"{'median per phase, ms':>34} " + " ".join(f"{p:>8}" for p in PHASES))
    for name, label in (
        ("probe", "exporter probe (reported)"),
        ("same", "bare, same loop"),
        ("clean", "bare, other process"),
    ):
        medians = [statistics.median(t[p] for t in samples[name]) * 1000 for p in PHASES]
        print(f"{label:>34} " + " ".join(f"{m:>8.2f}" for m in medians))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between rounds")
    parser.add_argument("--modes", nargs="*", default=["idle", "load"], choices=["idle", "load"])
    parser.add_argument(
        "--switch", type=float, default=None, help="sys.setswitchinterval of the exporter"
    )
    args = parser.parse_args()
    if args.switch:  # how soon the loop gets the GIL back from a worker thread
        sys.setswitchinterval(args.switch)
    print(f"load average before: {os.getloadavg()}; switch interval {sys.getswitchinterval()}")
    with tempfile.TemporaryDirectory() as ca_dir:
        parent, child = multiprocessing.Pipe()
        with process(bench_probe_rate.serve, ca_dir, child):
            port, ca_file = parent.recv()
            config = parse_config(probe_yaml(port, ca_file), env={})
            mine, theirs = multiprocessing.Pipe()
            with process(bare_client, port, ca_file, probe_message(config.probes[0]), theirs):
                results = {
                    mode: asyncio.run(measure(mode, port, ca_file, mine, args))
                    for mode in args.modes
                }
                mine.send("stop")
            parent.send("stop")
    for mode, figures in results.items():
        report(mode, figures)
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
