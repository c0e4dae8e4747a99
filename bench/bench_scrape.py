"""`/metrics` latency and event-loop lag of a running exporter holding many senders.

For each case, starts bench/scrape_server.py (the exporter, in its own process: N senders,
its stores changing every second, a 10 ms loop ticker inside) and scrapes it from ANOTHER
process, like Prometheus (gzip and plain, text format, one scrape every 50 ms; curl by default,
a compiled client as Prometheus is, or `--scraper aiohttp`). The baseline
(`--mode baseline`: one store version, everything re-rendered on the loop after any change)
is measured in the same run, on the same machine, with the same load.

    python bench/bench_scrape.py [--duration 20] [--senders 10000] [--large 100000]
    python bench/bench_scrape.py --before /tmp/base/src --rounds 3 --freeze-only

`--before SRC` measures another version of the exporter (its `src` directory, e.g. a
`git worktree` of the commit to compare with) in the same run: every case runs `--rounds`
times, alternating before and after, and a summary gives the median with min and max of
each figure over the rounds.

The floor case serves the same bytes from a bare aiohttp handler, rendered once, nothing
changing: what moving a body that size to this scraper costs here. Loop lag counts from the
first scrape (the scraper's own start-up on the same cores is not the exporter's doing);
`lag max all` includes it.

Prints a table; exits 1 when a target is missed (loop lag max < 20 ms at 10,000 senders and
< 50 ms at 100,000; /metrics p99 < 15 ms, gzip and plain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

HERE = Path(__file__).resolve().parent
INTERVAL = 0.05
TARGETS = {10_000: 20.0, 100_000: 50.0}  # loop lag max, ms
SCRAPE_P99_MS = 15.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


async def client(url: str, duration: float) -> dict[str, list[float]]:
    """The scraper process: alternate gzip and plain, time until the whole body is in."""
    timings: dict[str, list[float]] = {"gzip": [], "plain": []}
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        while loop.time() < end:
            for encoding in ("gzip", "plain"):
                headers = {"Accept-Encoding": "gzip" if encoding == "gzip" else "identity"}
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        body = await response.read()
                except aiohttp.ClientConnectionError:
                    return timings  # the exporter's run is over
                timings[encoding].append((time.perf_counter() - started) * 1000)
                assert response.status == 200 and body
                await asyncio.sleep(INTERVAL)
    return timings


def curl_client(url: str, duration: float) -> dict[str, list[float]]:
    """The scraper as one curl process (a compiled client, like Prometheus' own): the same
    alternation and pace as `client`, on one kept-alive connection, bodies not decoded."""
    pairs = max(1, int(duration / (2 * INTERVAL)))
    command = ["curl", "--silent", "--rate", f"{round(1 / INTERVAL)}/s"]
    for index in range(pairs * 2):
        encoding = "gzip" if index % 2 == 0 else "identity"
        command += [
            *(["--next"] if index else []),
            "--output", "/dev/null",
            "--header", f"Accept-Encoding: {encoding}",
            "--write-out", "%{http_code} %{size_download} %{time_total}\\n",
            url,
        ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    timings: dict[str, list[float]] = {"gzip": [], "plain": []}
    for index, line in enumerate(done.stdout.splitlines()):
        status, size, total = line.split()
        if status != "200":  # the exporter's run is over
            break
        assert int(size) > 0
        timings["gzip" if index % 2 == 0 else "plain"].append(float(total) * 1000)
    return timings


@dataclass
class Case:
    senders: int
    mode: str
    exposition_kib: float
    lag: dict[str, float]
    scrapes: dict[str, list[float]]


def bench_line(stream: IO[str]) -> dict[str, float]:
    """The server's next `BENCH {json}` line (its log lines are skipped)."""
    for line in stream:
        if line.startswith("BENCH "):
            return dict(json.loads(line.removeprefix("BENCH ")))
    raise RuntimeError("the exporter process ended without its figures")


def run_case(
    senders: int,
    mode: str,
    duration: float,
    freeze: bool = False,
    source: str | None = None,
    top_senders: int | None = None,
    scraper: str = "curl",
    switch: float | None = None,
) -> Case:
    """One exporter process (the code under `source` when given) and one scraper process."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    server = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "scrape_server.py"),
            "--senders",
            str(senders),
            "--mode",
            mode,
            "--duration",
            str(duration),
            *(["--freeze"] if freeze else []),
            *(["--top-senders", str(top_senders)] if top_senders is not None else []),
            *(["--switch", str(switch)] if switch is not None else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    try:
        ready = bench_line(server.stdout)
        url = f"http://127.0.0.1:{ready['port']}/metrics"
        if scraper == "curl":
            scrapes = curl_client(url, duration - 5.0)
        else:
            done = subprocess.run(
                [sys.executable, __file__, "--client", url, "--duration", str(duration - 5.0)],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            scrapes = json.loads(done.stdout)
        lag = bench_line(server.stdout)
        server.wait(60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    label = ("before:" if source is not None else "") + mode + ("+frz" if freeze else "")
    return Case(senders, label, ready["bytes"] / 1024, lag, scrapes)


def header() -> None:
    print(
        f"{'senders':>8} {'path':<14} {'KiB':>6} | {'loop lag ms p50/p99/max':>24} | "
        f"{'gzip ms p50/p99/max':>22} | {'plain ms p50/p99/max':>22} | gc max ms | "
        "lag max all | scrapes",
        flush=True,
    )


def row(case: Case) -> bool:
    """Print the case; False when it is a new-path case that misses a target."""
    cells = []
    for encoding in ("gzip", "plain"):
        t = case.scrapes[encoding]
        cells.append(f"{statistics.median(t):6.1f}/{quantile(t, 0.99):6.1f}/{max(t):7.1f}")
    lag = case.lag
    print(
        f"{case.senders:>8} {case.mode:<14} {case.exposition_kib:>6.0f} | "
        f"{lag['lag_p50_ms']:6.1f}/{lag['lag_p99_ms']:7.1f}/{lag['lag_max_ms']:8.1f} | "
        f"{cells[0]:>22} | {cells[1]:>22} | {lag['gc_max_ms']:9.1f} | "
        f"{lag['lag_max_all_ms']:11.1f} | {len(case.scrapes['gzip'])}x2",
        flush=True,
    )
    if not case.mode.startswith("subsystems"):  # a baseline, the floor or the code before
        return True
    target = TARGETS.get(case.senders)
    ok = target is None or lag["lag_max_ms"] < target
    if case.senders <= 10_000:
        ok = ok and all(quantile(case.scrapes[e], 0.99) < SCRAPE_P99_MS for e in case.scrapes)
    return ok


def figures(case: Case) -> dict[str, float]:
    return {
        "lag p99": case.lag["lag_p99_ms"],
        "lag max": case.lag["lag_max_ms"],
        "lag max all": case.lag["lag_max_all_ms"],
        "gzip p99": quantile(case.scrapes["gzip"], 0.99),
        "plain p99": quantile(case.scrapes["plain"], 0.99),
        "gzip p50": statistics.median(case.scrapes["gzip"]),
        "plain p50": statistics.median(case.scrapes["plain"]),
    }


def summary(cases: list[Case]) -> None:
    """Median [min-max] of each figure over the rounds, per case."""
    groups: dict[tuple[int, str], list[dict[str, float]]] = {}
    for case in cases:
        groups.setdefault((case.senders, case.mode), []).append(figures(case))
    names = list(figures(cases[0]))
    print(
        f"\nmedian [min-max] over rounds, ms\n{'senders':>8} {'path':<22}"
        + "".join(f" {name:>20}" for name in names)
    )
    for (senders, mode), rows in groups.items():
        cells = []
        for name in names:
            values = [row[name] for row in rows]
            cells.append(f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]")
        print(f"{senders:>8} {mode:<22}" + "".join(f" {cell:>20}" for cell in cells))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="0: skip the large case")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--before", help="src directory of the version to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--freeze-only", action="store_true", help="only the +frz cases")
    parser.add_argument(
        "--top-senders", type=int, help="quota.top_senders (default: every sender is exported)"
    )
    parser.add_argument(
        "--scraper",
        choices=("curl", "aiohttp"),
        default="curl" if shutil.which("curl") else "aiohttp",
        help="curl (a compiled client, like Prometheus) or a Python aiohttp client",
    )
    parser.add_argument(
        "--switch", type=float, help="the exporter's GIL switch interval, s (default: its own)"
    )
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client(args.client, args.duration))))
        return 0
    plan = [] if args.no_baseline or args.before else [(args.senders, "baseline", False)]
    # the floor: the same bytes served fixed by bare aiohttp, what the transfer itself costs
    plan += [(args.senders, "floor", False)]
    # "+frz": the held senders frozen out of full garbage collections (gc.freeze after the
    # fill), to show how much of the lag is the collector walking the quota engine's objects
    freezes = [True] if args.freeze_only else [False, True]
    plan += [(args.senders, "subsystems", freeze) for freeze in freezes]
    if args.large:
        plan += [(args.large, "subsystems", freeze) for freeze in freezes]
    sources: list[str | None] = [args.before, None] if args.before else [None]
    print(f"scraper: {args.scraper}")
    header()
    ok = True
    cases: list[Case] = []
    for _ in range(args.rounds):
        for senders, mode, freeze in plan:
            for source in sources:  # before and after alternate, case by case
                case = run_case(
                    senders,
                    mode,
                    args.duration,
                    freeze,
                    source,
                    args.top_senders,
                    args.scraper,
                    args.switch,
                )
                cases.append(case)
                ok = row(case) and ok
    if args.rounds > 1:
        summary(cases)
    print(
        f"targets: loop lag max < {TARGETS[10_000]:g} ms at 10,000 senders, "
        f"< {TARGETS[100_000]:g} ms at 100,000; /metrics p99 < {SCRAPE_P99_MS:g} ms: "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
