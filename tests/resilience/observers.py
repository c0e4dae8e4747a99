"""What the resilience run watches: every probe run and trace pull with its time span,
/metrics latency, file descriptors and memory, and errors reaching the event loop.

Records are small tuples of plain values (no `ProbeResult` with its transcript is kept),
so watching does not itself grow the memory the run measures.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.graph.trace import TracePuller
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.store import ResultsStore
from tests.resilience.faults import DAY, ProbeOutcome

Clock = Callable[[], float]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProbeRun:
    probe: str
    started: float  # monotonic
    ended: float
    outcome: ProbeOutcome


def probe_outcome(result: ProbeResult, now: float) -> ProbeOutcome:
    """What is classified of a probe result; `now` (unix seconds) for the certificate."""
    not_after = result.tls.cert_not_after if result.tls is not None else None
    rejection = result.last_rejection
    return ProbeOutcome(
        success=result.success,
        failed_phase=result.failed_phase,
        reason=result.reason,
        category=rejection.category if rejection is not None else None,
        cert_days_left=None if not_after is None else (not_after - now) / DAY,
    )


class ProbeLog:
    """The exporter's probe runner: runs the real probe and records each run's span."""

    def __init__(self, clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self.runs: list[ProbeRun] = []
        self._clock = clock
        self._wall_clock = wall_clock
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, probe: ProbeConfig, **options: Any) -> ProbeResult:
        self._in_flight += 1
        self._idle.clear()
        started = self._clock()
        try:
            result = await run_probe(probe, **options)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        outcome = probe_outcome(result, self._wall_clock())
        self.runs.append(ProbeRun(probe.name, started, self._clock(), outcome))
        return result

    async def wait_idle(self, at_most: float) -> None:
        """Until no probe is running, or `at_most` seconds have passed."""
        try:
            async with asyncio.timeout(at_most):
                await self._idle.wait()
        except TimeoutError:
            pass


@dataclass(frozen=True, slots=True)
class PullRun:
    started: float  # monotonic; earliest the pull can have started
    ended: float  # latest it can have ended
    outcome: str  # a trace pull outcome, or "crashed"


CRASHED = "crashed"  # the job ended without the puller counting an outcome


class PullWatch:
    """Trace pulls of the scheduled job, seen by looking at its counters every `every` s.

    The scheduler records each run's duration right after the puller counts its outcome,
    with no await in between, so one look sees both or neither.
    """

    def __init__(
        self,
        store: ResultsStore,
        job_id: str,
        puller: TracePuller,
        *,
        every: float = 0.05,
        clock: Clock = time.monotonic,
    ) -> None:
        self.runs: list[PullRun] = []
        self._store = store
        self._job_id = job_id
        self._puller = puller
        self._every = every
        self._clock = clock
        self._seen_runs = 0
        self._seen_seconds = 0.0
        self._seen_outcomes: Counter[str] = Counter()

    def look(self) -> None:
        series = self._store.jobs.get(self._job_id)
        if series is None:
            return
        runs = series.runs["success"] + series.runs["failure"]
        if runs == self._seen_runs:
            return
        now = self._clock()
        outcomes = list((self._puller.stats.pulls - self._seen_outcomes).elements())
        outcomes += [CRASHED] * (runs - self._seen_runs - len(outcomes))
        # Two pulls can end within one look (a long one, then one refused at once by the
        # spent budget): each gets the span of both, which is only more conservative.
        started = now - (series.duration.sum - self._seen_seconds) - self._every
        self.runs += [PullRun(started, now, outcome) for outcome in outcomes]
        self._seen_runs = runs
        self._seen_seconds = series.duration.sum
        self._seen_outcomes = Counter(self._puller.stats.pulls)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.look()
            await _pause(stop, self._every)
        self.look()


@dataclass(slots=True)
class ScrapeLog:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def scrape_metrics(
    session: aiohttp.ClientSession,
    url: str,
    stop: asyncio.Event,
    log: ScrapeLog,
    *,
    every: float = 0.2,
    clock: Clock = time.monotonic,
) -> None:
    """GET `url` every `every` s as Prometheus would; record each answer's latency."""
    timeout = aiohttp.ClientTimeout(total=10.0)
    while not stop.is_set():
        started = clock()
        try:
            async with session.get(url, timeout=timeout) as response:
                body = await response.read()
                if response.status != 200 or b"m365_" not in body:
                    log.failures.append(f"HTTP {response.status}, {len(body)} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.failures.append(f"{type(exc).__name__}: {exc}")
        elapsed = clock() - started
        log.latencies.append(elapsed)
        await _pause(stop, max(0.0, every - elapsed))


@dataclass(frozen=True, slots=True)
class ResourceSample:
    at: float  # monotonic
    fds: int
    rss: int  # bytes


def resource_sample(clock: Clock = time.monotonic) -> ResourceSample:
    fds = len(os.listdir("/proc/self/fd"))
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return ResourceSample(clock(), fds, resident_pages * PAGE_SIZE)


async def sample_resources(
    stop: asyncio.Event, samples: list[ResourceSample], *, every: float = 0.5
) -> None:
    while not stop.is_set():
        samples.append(resource_sample())
        await _pause(stop, every)


class LoopErrors:
    """Collects what reaches the loop's exception handler (unretrieved task errors...)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        detail = f"{type(exception).__name__}: {exception}" if exception is not None else ""
        self.messages.append(f"{context.get('message', '')} {detail}".strip())


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
