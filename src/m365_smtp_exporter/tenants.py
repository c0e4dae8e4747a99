"""Everything the exporter runs for one tenant: token provider, Graph client, trace pulls and
quota accounting. Rebuilt only when the tenant's configuration changes, so a reload that
touches probes alone keeps the trace cursor and the quota windows.

With `quota_state_file` set, the quota buckets, the trace de-dup keys and the cursor are
restored from it before the first pull (so a restart pulls only the gap), saved after a
pull that read pages at most every `save_interval` seconds, and saved on `close`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.records import TraceRecord, to_quota_rows
from m365_smtp_exporter.graph.trace import TracePuller
from m365_smtp_exporter.quota import state_file
from m365_smtp_exporter.quota.tenant import TenantQuota, selection_from_config

log = structlog.get_logger(__name__)
DEFAULT_SAVE_INTERVAL = 300.0

TraceSink = Callable[[str, Sequence[TraceRecord]], None]


class TenantServices:
    def __init__(
        self,
        name: str,
        config: TenantConfig,
        *,
        token_provider_factory: Callable[[TenantConfig], TokenProvider],
        probe_senders: Iterable[str] = (),
        pull_trace: bool = True,
        trace_sinks: Sequence[TraceSink] = (),
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._save_interval = save_interval
        self._state_loaded = False
        self._saved_at = float("-inf")
        self._on_change = on_change
        self._trace_sinks = list(trace_sinks)
        self.quota = TenantQuota(name, config, probe_senders, clock)
        self.tokens: TokenProvider | None = None
        self.graph: GraphClient | None = None
        self.puller: TracePuller | None = None
        if config.has_credentials:
            self.tokens = token_provider_factory(config)
            self.graph = GraphClient.for_tenant(name, config, self.tokens)
            if config.trace.enabled and pull_trace:
                self.puller = TracePuller.for_tenant(
                    name, config, self.graph, self._on_rows, clock=clock, on_change=on_change
                )

    def set_probe_senders(self, senders: Iterable[str]) -> None:
        self.quota.selection = selection_from_config(self.config, senders)

    def _on_rows(self, records: Sequence[TraceRecord]) -> None:
        self.quota.add_rows(to_quota_rows(records))
        for sink in self._trace_sinks:
            sink(self.name, records)

    async def pull_trace(self) -> bool:
        if self.puller is None:
            return False
        if not self._state_loaded:
            await self.load_state()
        result = await self.puller.pull()  # logs its own outcome
        self.refresh_quota()
        if result.pages and self._clock() - self._saved_at >= self._save_interval:
            await self.save_state()
        return result.ok

    async def load_state(self) -> bool:
        """Restore the saved state (once, before the first pull); False when there is none
        or it was reported and ignored."""
        self._state_loaded = True
        path = self.config.quota_state_file
        if path is None or self.puller is None:
            return False
        document = await asyncio.to_thread(
            state_file.read_state,
            path,
            tenant=self.name,
            tenant_id=self.config.tenant_id,
            now=self._clock(),
        )
        if document is None:
            return False
        try:
            puller = state_file.puller_state(document)
            usage = state_file.engine_usage(document, self.quota.engine.limits.internal_domains)
        except state_file.StateRejectedError as exc:
            state_file.report_rejected(path, self.name, exc)
            return False
        self.quota.engine.restore_usage(usage)
        if puller is not None:
            self.puller.restore_state(puller)
        log.info("quota state restored", tenant=self.name, senders=len(usage.senders))
        self.refresh_quota()
        return True

    async def save_state(self) -> bool:
        """Write the state (copies taken now; encoding and writing in a worker thread)."""
        path = self.config.quota_state_file
        if path is None or self.puller is None:
            return False
        now = self._clock()
        puller, usage = self.puller.export_state(), self.quota.engine.export_usage()

        def encode_and_write() -> None:
            data = state_file.encode_state(
                tenant=self.name,
                tenant_id=self.config.tenant_id,
                saved_at=now,
                puller=puller,
                engine=usage,
            )
            state_file.write_atomically(path, data)

        try:
            await asyncio.to_thread(encode_and_write)
        except OSError as exc:
            log.warning("quota state not saved", tenant=self.name, error=str(exc))
            return False
        self._saved_at = now
        return True

    def refresh_quota(self) -> bool:
        self.quota.refresh()
        self._on_change()
        return True

    async def close(self) -> None:
        if self._state_loaded:  # never overwrite a saved state this process did not read
            await self.save_state()
        if self.graph is not None:
            await self.graph.aclose()
        if self.tokens is not None:
            await self.tokens.close()
