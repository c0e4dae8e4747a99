"""Service health behind the subsystem protocol: one monitor per tenant that enables it, a
scheduled pull each, and its metrics as one cached chunk re-rendered after each pull."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from m365_smtp_exporter.config import Config
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.health import ServiceHealth
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.subsystem import Change, Context


class HealthSubsystem:
    name = "service_health"

    def __init__(self, context: Context) -> None:
        self._context = context
        self.health = ServiceHealth(context.directory.graph_client, clock=context.clock)
        self.chunk = Chunk("service_health", self.health.collect)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        self.live: Sequence[Collect] = ()

    async def sync(self, config: Config) -> Change:
        owned = {n: t for n, t in config.tenants.items() if self._context.shard.owns(n)}

        async def commit() -> None:
            self.health.configure(owned)
            self.chunk.mark_changed()

        return Change(commit)

    def jobs(self) -> list[JobSpec]:
        return [
            JobSpec(job_id, self._marking(job), every, every / 20)
            for job_id, job, every in self.health.jobs()
        ]

    def _marking(self, job: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            try:
                return await job()
            finally:
                self.chunk.mark_changed()

        return run

    async def close(self) -> None:
        return None
