"""The delivery subsystem: wires one `DeliveryTracker` to the probes (ProbeFinished), the trace
pipeline (TraceRowsArrived) and the tenants' Graph clients (the shared directory)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from m365_smtp_exporter.config import Config
from m365_smtp_exporter.delivery.tracker import DeliveryTracker
from m365_smtp_exporter.events import ProbeFinished, TraceRowsArrived
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.subsystem import Change, Context

# How often pending delivery checks are looked at (each has its own back-off schedule).
DELIVERY_POLL = 5.0


class DeliverySubsystem:
    name = "delivery"

    def __init__(self, context: Context) -> None:
        self._context = context
        self.tracker: DeliveryTracker | None = None
        self._polling = False
        self.chunk = Chunk("delivery", self._collect)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        self.live: Sequence[Collect] = ()
        context.bus.subscribe(ProbeFinished, self._on_probe)
        context.bus.subscribe(TraceRowsArrived, self._on_rows)

    def _collect(self) -> Iterator[Metric]:
        return self.tracker.collect() if self.tracker is not None else iter(())

    async def sync(self, config: Config) -> Change:
        probes = self._context.active_probes(config)
        polling = any(p.delivery for p in probes)
        if self._context.validate_only:
            return Change()  # the tracker would read and rewrite the state file
        if self.tracker is None:
            # The state file is read once, at start (pending checks survive restarts),
            # in a worker thread: reading and fsyncing it must not hold the loop.
            tracker = await asyncio.to_thread(
                DeliveryTracker,
                self._context.directory.graph_client,
                probes,
                state_file=config.state_file,
                clock=self._context.clock,
                on_change=self.chunk.mark_changed,
            )

            async def install() -> None:
                self.tracker = tracker
                self._polling = polling
                self.chunk.mark_changed()

            return Change(install, tracker.flush)

        running = self.tracker

        async def reconfigure() -> None:
            running.configure(probes)
            self._polling = polling

        return Change(reconfigure)

    def jobs(self) -> list[JobSpec]:
        if self.tracker is None or not self._polling:
            return []
        return [JobSpec("delivery", self.tracker.poll, DELIVERY_POLL, 0.0, 1.0)]

    def _on_probe(self, event: ProbeFinished) -> None:
        if self.tracker is not None and event.probe.delivery is not None:
            self.tracker.track(event.probe, event.probe.tenant or "", event.result)

    def _on_rows(self, event: TraceRowsArrived) -> None:
        if self.tracker is not None:
            self.tracker.on_trace_rows(event.tenant, event.records)

    async def close(self) -> None:
        if self.tracker is not None:
            await self.tracker.close()
