"""The domains subsystem: one `DomainChecker` (and one DNS resolver) per domains config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import dns.asyncresolver
from prometheus_client.core import Metric

from m365_smtp_exporter.config import Config, DomainChecksConfig
from m365_smtp_exporter.domains.checker import DomainChecker
from m365_smtp_exporter.domains.lookup import DnsLookupError, make_resolver
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.subsystem import Change, Context


def _resolver(config: DomainChecksConfig) -> dns.asyncresolver.Resolver | None:
    try:
        return make_resolver(config)
    except DnsLookupError:
        return None  # the checker tries again at its next run, and reports why


class DomainsSubsystem:
    name = "domains"

    def __init__(self, context: Context) -> None:
        self._context = context
        self.checker: DomainChecker | None = None
        self._config: DomainChecksConfig | None = None
        self.chunk = Chunk("domains", self._collect)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        self.live: Sequence[Collect] = ()

    def _collect(self) -> Iterator[Metric]:
        return self.checker.collect() if self.checker is not None else iter(())

    async def sync(self, config: Config) -> Change:
        wanted = config.domains
        checker = self.checker
        if not wanted.names:
            checker = None
        elif checker is None or self._config != wanted:
            # resolv.conf is read once per checker, off the loop
            resolver = await asyncio.to_thread(_resolver, wanted)
            checker = DomainChecker(
                wanted,
                resolver=resolver,
                clock=self._context.clock,
                on_change=self.chunk.mark_changed,
            )

        async def commit() -> None:
            self.checker = checker
            self._config = wanted
            self.chunk.mark_changed()

        return Change(commit)

    def jobs(self) -> list[JobSpec]:
        if self.checker is None or self._config is None:
            return []
        return [JobSpec("domains", self.checker.run, self._config.interval, 0.0)]

    async def close(self) -> None:
        return None
