"""Everything the exporter runs for one tenant: token provider, Graph client, trace pulls and
quota accounting. Rebuilt only when the tenant's configuration changes, so a reload that
touches probes alone keeps the trace cursor and the quota windows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.records import TraceRecord, to_quota_rows
from m365_smtp_exporter.graph.trace import TracePuller
from m365_smtp_exporter.quota.tenant import TenantQuota, selection_from_config

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
    ) -> None:
        self.name = name
        self.config = config
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
        result = await self.puller.pull()  # logs its own outcome
        self.refresh_quota()
        return result.ok

    def refresh_quota(self) -> bool:
        self.quota.refresh()
        self._on_change()
        return True

    async def close(self) -> None:
        if self.graph is not None:
            await self.graph.aclose()
        if self.tokens is not None:
            await self.tokens.close()
