"""APScheduler wiring: one job per probe (and later per tenant pull), interval plus jitter.

`max_instances=1` and coalescing keep a slow or hung job from piling up runs: a run that would
overlap is skipped and counted, never queued (each probe run spends real sending quota).

A reload that changes a job's interval keeps its phase: the next run is no earlier than the
last run's start plus the new interval (a job that never ran keeps its planned first run),
so no storm of reloads can make a probe send more often than its interval says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from m365_smtp_exporter.store import ResultsStore

log = structlog.get_logger(__name__)

JobFunc = Callable[[], Awaitable[bool]]  # returns True on success


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_id: str  # e.g. "probe:submission"; also the `job` label
    func: JobFunc
    interval: float
    jitter: float
    first_delay: float = 0.0


class JobScheduler:
    def __init__(
        self,
        store: ResultsStore,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._monotonic = monotonic
        self._clock = clock
        self._last_start: dict[str, float] = {}  # job id -> wall time its last run started
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._specs: dict[str, JobSpec] = {}
        self._running: set[asyncio.Task[object]] = set()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def sync(self, specs: list[JobSpec]) -> None:
        """Make the scheduled jobs exactly `specs`; unchanged jobs keep their timing."""
        wanted = {spec.job_id: spec for spec in specs}
        for job_id in list(self._specs):
            if job_id not in wanted:
                self._scheduler.remove_job(job_id)
                del self._specs[job_id]
                self._last_start.pop(job_id, None)
                self._store.forget_job(job_id)
        for job_id, spec in wanted.items():
            old = self._specs.get(job_id)
            if old is not None and (old.interval, old.jitter) == (spec.interval, spec.jitter):
                self._specs[job_id] = spec
                self._scheduler.modify_job(job_id, args=(spec,))
                continue
            self._specs[job_id] = spec
            first = self._next_run(job_id, spec) if old is not None else None
            if first is None:
                first = self._clock() + spec.first_delay
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=spec.interval, jitter=spec.jitter or None),
                args=(spec,),
                id=job_id,
                name=job_id,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(spec.interval / 2)),
                next_run_time=datetime.fromtimestamp(first, UTC),
            )

    def next_run_at(self, job_id: str) -> float | None:
        """Wall time of the job's next planned run (None: not scheduled)."""
        job = self._scheduler.get_job(job_id)
        when: datetime | None = getattr(job, "next_run_time", None) if job else None
        return when.timestamp() if when is not None else None

    def _next_run(self, job_id: str, spec: JobSpec) -> float | None:
        """For a job whose timing changed: keep its phase (see the module docstring)."""
        last = self._last_start.get(job_id)
        if last is None:
            return self.next_run_at(job_id)
        return max(self._clock(), last + spec.interval)

    async def run_now(self, job_id: str) -> bool:
        spec = self._specs[job_id]
        return await self._run(spec)

    async def _run(self, spec: JobSpec) -> bool:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        started = self._monotonic()
        self._last_start[spec.job_id] = self._clock()
        ok = False
        try:
            ok = await spec.func()
        except asyncio.CancelledError:
            # Only `stop()` cancels jobs: end quietly instead of a scheduler error line.
            log.debug("job cancelled at shutdown", job=spec.job_id)
            return False
        except Exception:
            # A job must never take the scheduler down; the failure is counted and logged.
            log.exception("job crashed", job=spec.job_id)
        finally:
            if task is not None:
                self._running.discard(task)
        self._store.record_job(
            spec.job_id, "success" if ok else "failure", self._monotonic() - started
        )
        return ok

    def _on_skipped(self, event: JobExecutionEvent) -> None:
        if event.job_id in self._specs:
            self._store.record_job(event.job_id, "skipped", None)
            log.warning("job run skipped, previous run still in progress", job=event.job_id)
