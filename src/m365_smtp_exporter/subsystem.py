"""The one small protocol every capability implements, and what the composition root gives it.

A reload is all-or-nothing: `sync(config)` builds and validates everything the new config
needs (credentials loaded, certificates parsed, files read) without touching the running
state, and returns a `Change`. Only when every subsystem's `sync` succeeded are all changes
committed; otherwise each is discarded and the old state keeps running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from m365_smtp_exporter.config import Config, ProbeConfig
from m365_smtp_exporter.events import EventBus
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.sharding import ALL, Shard
from m365_smtp_exporter.store import ResultsStore

if TYPE_CHECKING:
    from m365_smtp_exporter.auth import TokenProvider
    from m365_smtp_exporter.config import TenantConfig
    from m365_smtp_exporter.graph.client import GraphClient
    from m365_smtp_exporter.smtp.result import ProbeResult

TokenProviderFactory = Callable[["TenantConfig"], "TokenProvider"]
ProbeRunner = Callable[..., Awaitable["ProbeResult"]]


class SubsystemError(Exception):
    """A new configuration cannot be applied; `errors` are one line each, naming the field."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


async def _nothing() -> None:
    return None


@dataclass(slots=True)
class Change:
    """A validated, not yet applied configuration change. `commit` cannot fail; `discard`
    releases what `sync` built."""

    commit: Callable[[], Awaitable[None]] = _nothing
    discard: Callable[[], Awaitable[None]] = _nothing


@dataclass(slots=True)
class Directory:
    """Per-tenant services other subsystems look up (filled by the tenants subsystem)."""

    graph_clients: dict[str, GraphClient] = field(default_factory=dict)
    token_providers: dict[str, TokenProvider] = field(default_factory=dict)

    def graph_client(self, tenant: str) -> GraphClient | None:
        return self.graph_clients.get(tenant)

    def token_provider(self, tenant: str | None) -> TokenProvider | None:
        return self.token_providers.get(tenant or "")


@dataclass(slots=True)
class Context:
    """Everything the composition root shares with subsystems."""

    store: ResultsStore
    bus: EventBus
    clock: Callable[[], float]
    token_provider_factory: TokenProviderFactory
    probe_runner: ProbeRunner | None  # None: the probe kinds' own dispatch
    shard: Shard = ALL
    directory: Directory = field(default_factory=Directory)
    # check-config: build what proves the config usable, but write nothing (state files)
    validate_only: bool = False

    def active_probes(self, config: Config) -> list[ProbeConfig]:
        """The probes this replica runs (all of them unless `--shard` splits them)."""
        return [p for p in config.probes if self.shard.owns(p.name)]


class Subsystem(Protocol):
    name: str
    chunks: Sequence[Chunk]  # cached exposition, each re-rendered only when it changed
    live: Sequence[Collect]  # small, clock-dependent families rendered at every scrape

    async def sync(self, config: Config) -> Change:
        """Build and validate the state for `config`; raise `SubsystemError` if unusable."""
        ...

    def jobs(self) -> list[JobSpec]:
        """The scheduled jobs of the committed state."""
        ...

    async def close(self) -> None: ...


SubsystemFactory = Callable[[Context], Subsystem]
