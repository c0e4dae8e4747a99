"""The exporter's own metrics: build info, reloads, job runs, folded series, process."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.collector import exporter_metrics
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.subsystem import Change, Context


class ExporterSubsystem:
    name = "exporter"

    def __init__(self, context: Context) -> None:
        store = context.store
        self.chunk = Chunk("exporter", lambda: exporter_metrics(store))
        store.on_exporter_change = self.chunk.mark_changed
        process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=process)
        PlatformCollector(registry=process)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        self.live: Sequence[Collect] = (process.collect,)  # CPU, memory: change on their own

    async def sync(self, config: Config) -> Change:
        return Change()

    def jobs(self) -> list[JobSpec]:
        return []

    async def close(self) -> None:
        return None
