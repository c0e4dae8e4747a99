"""The tenants subsystem: everything the exporter runs for each tenant (token provider, Graph
client, trace pulls, quota accounting), as `TenantServices`. A tenant's services are rebuilt
only when its configuration changes, so a reload that touches probes alone keeps the trace
cursor and the quota windows; new services are built (credentials loaded, certificates
parsed) before any running one is closed.

With `quota_state_file` set, the quota buckets, the trace de-dup keys and the cursor are
restored from it before the first pull (so a restart pulls only the gap), saved after a
pull that read pages at most every `save_interval` seconds, and saved on `close`.

Publishes `TraceRowsArrived`; subscribes to `ProbeFinished` (a probe's own send counts
against its sender at once; its trace rows replace it later).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import Config, TenantConfig
from m365_smtp_exporter.events import ProbeFinished, TraceRowsArrived
from m365_smtp_exporter.exposition import Chunk, Collect, Renderer
from m365_smtp_exporter.graph.metrics import GraphMetrics
from m365_smtp_exporter.graph.records import TraceRecord, to_quota_rows
from m365_smtp_exporter.graph.trace import PullerState, TracePuller
from m365_smtp_exporter.quota import state_file
from m365_smtp_exporter.quota.cardinality import Group, SenderSelection
from m365_smtp_exporter.quota.engine import EngineUsage
from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.metrics import (
    excluded_rows_metrics,
    quota_metrics,
    state_rejected_metrics,
)
from m365_smtp_exporter.quota.rows import RowFields
from m365_smtp_exporter.quota.tenant import TenantQuota, selection_from_config
from m365_smtp_exporter.quota_text import quota_text_parts
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.subsystem import Change, Context, SubsystemError

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from m365_smtp_exporter.graph.client import GraphClient

log = structlog.get_logger(__name__)
DEFAULT_SAVE_INTERVAL = 300.0

TraceSink = Callable[[str, Sequence[TraceRecord]], None]
# Recovery times shrink as the 24 h window rolls: re-take quota snapshots this often (s).
QUOTA_REFRESH = 30.0


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
        # The quota engine is touched by one party at a time: trace rows (during a pull) and
        # the refresh, which runs in a worker thread (a few ms: it touches only the senders
        # that changed or are due, see quota/engine.py; the first one reads every sender).
        # Probe sends that arrive meanwhile wait in `_held_sends`.
        self._quota_lock = asyncio.Lock()
        self._held_sends: list[tuple[str, str, list[str], float]] = []
        self.tokens: TokenProvider | None = None
        self.graph: GraphClient | None = None
        self.puller: TracePuller | None = None
        if config.has_credentials:
            from m365_smtp_exporter.graph.client import GraphClient  # the SDK: only when needed

            self.tokens = token_provider_factory(config)
            self.graph = GraphClient.for_tenant(name, config, self.tokens)
            if config.trace.enabled and pull_trace:
                # trace figures are rendered live; the quota changes when it is refreshed
                self.puller = TracePuller.for_tenant(
                    name, config, self.graph, self._on_rows, clock=clock
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
        async with self._quota_lock:
            result = await self.puller.pull()  # logs its own outcome
            await self._refresh_off_loop()
        self._release_sends()
        if result.pages and self._clock() - self._saved_at >= self._save_interval:
            await self.save_state()
        return result.ok

    async def ingest_rows(self, rows: Iterable[RowFields]) -> None:
        """Rows from elsewhere than the trace pull (imports, benchmarks), taken in turn."""
        async with self._quota_lock:
            self.quota.add_rows(rows)
        self._release_sends()

    async def load_state(self) -> bool:
        """Restore the saved state (once, before the first pull); False when there is none
        or it was reported and ignored."""
        self._state_loaded = True
        path = self.config.quota_state_file
        if path is None or self.puller is None:
            return False
        domains = self.quota.engine.limits.internal_domains
        now = self._clock()

        def read_and_check() -> tuple[PullerState | None, EngineUsage] | None:
            # reading, decoding and checking a big tenant's day take seconds: not on the loop
            document = state_file.read_state(
                path, tenant=self.name, tenant_id=self.config.tenant_id, now=now
            )
            if document is None:
                return None
            try:
                return state_file.puller_state(document), state_file.engine_usage(document, domains)
            except state_file.StateRejectedError as exc:
                state_file.report_rejected(path, self.name, exc)
                return None

        saved = await asyncio.to_thread(read_and_check)
        if saved is None:
            return False
        puller, usage = saved
        async with self._quota_lock:  # the engine is ours alone while the lock is held
            await asyncio.to_thread(self.quota.engine.restore_usage, usage)
            if puller is not None:
                self.puller.restore_state(puller)
            await self._refresh_off_loop()
        self._release_sends()
        log.info("quota state restored", tenant=self.name, senders=len(usage.senders))
        return True

    async def save_state(self) -> bool:
        """Write the state (copies taken now; encoding and writing in a worker thread)."""
        path = self.config.quota_state_file
        if path is None or self.puller is None:
            return False
        now = self._clock()
        async with self._quota_lock:  # a consistent copy: no pull or snapshot in between
            puller = self.puller.export_state()
            usage = await asyncio.to_thread(self.quota.engine.export_usage)

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
        """Snapshot on the caller's thread (tools, tests); the job uses `refresh_quota_async`."""
        self.quota.refresh()
        self._on_change()
        return True

    async def refresh_quota_async(self) -> bool:
        async with self._quota_lock:
            await self._refresh_off_loop()
        self._release_sends()
        return True

    async def _refresh_off_loop(self) -> None:
        await asyncio.to_thread(self.quota.refresh)
        self._on_change()

    def record_probe_send(
        self, sender: str, message_id: str, recipients: Sequence[str], at: float
    ) -> None:
        """A probe's own send counts against its sender at once (its trace rows replace it)."""
        if self._quota_lock.locked():
            self._held_sends.append((sender, message_id, list(recipients), at))
        else:
            self.quota.record_probe_send(sender, message_id, recipients, at)

    def _release_sends(self) -> None:
        if self._quota_lock.locked():
            return
        held, self._held_sends = self._held_sends, []
        for sender, message_id, recipients, at in held:
            self.quota.record_probe_send(sender, message_id, recipients, at)

    async def close(self) -> None:
        if self._state_loaded:  # never overwrite a saved state this process did not read
            await self.save_state()
        if self.graph is not None:
            await self.graph.aclose()
        if self.tokens is not None:
            await self.tokens.close()


@dataclass(frozen=True, slots=True)
class _QuotaView:
    """What the quota families read of a `TenantQuota`, captured on the event loop. Each
    attribute is replaced whole by `TenantQuota.refresh`, never mutated, so a worker thread
    can render this while the loop goes on."""

    name: str
    series: tuple[Group, ...]
    selection: SenderSelection
    probe_recipients: Mapping[str, int]
    limit_enforced: Mapping[LimitName, bool]


def _credential_error(name: str, exc: Exception) -> str:
    # Exception texts of credential libraries name files and reasons, not secret values;
    # the log redactor removes any that would slip through.
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"tenants.{name}: credentials unusable: {text}"


class TenantsSubsystem:
    name = "tenants"

    def __init__(self, context: Context) -> None:
        self._context = context
        self.services: dict[str, TenantServices] = {}
        self.graph_metrics = GraphMetrics()
        # Trace figures and request counters change inside the Graph client without notice,
        # and the budget left depends on the clock: rendered live, a few series per tenant.
        self.live: Sequence[Collect] = (
            self.graph_metrics,
            state_rejected_metrics(lambda: sorted(self.services)),
            excluded_rows_metrics(lambda: [s.quota for s in self.services.values()]),
        )
        self.quota_chunk = Chunk(
            "quota",
            quota_metrics(lambda: [s.quota for s in self.services.values()]),
            offload=True,  # 10,000 senders take ~0.1-1 s to render: never on the loop
            snapshot=self._quota_snapshot,
        )
        self.chunks: Sequence[Chunk] = (self.quota_chunk,)
        context.bus.subscribe(ProbeFinished, self._on_probe)

    def _quota_snapshot(self) -> Renderer:
        views = [
            _QuotaView(q.name, q.series, q.selection, q.probe_recipients, q.limit_enforced)
            for q in (s.quota for s in self.services.values())
        ]
        return lambda _fmt: quota_text_parts(views)

    async def sync(self, config: Config) -> Change:
        probes = self._context.active_probes(config)
        senders = {
            name: [p.mail_from for p in probes if p.tenant == name] for name in config.tenants
        }
        built: dict[str, TenantServices] = {}
        errors: list[str] = []
        for name, tenant in config.tenants.items():
            old = self.services.get(name)
            if old is not None and old.config == tenant:
                continue
            try:
                built[name] = await self._build(name, tenant, senders[name])
            except Exception as exc:
                errors.append(_credential_error(name, exc))
        if errors:
            for services in built.values():
                await services.close()
            raise SubsystemError(errors)

        async def commit() -> None:
            for name in list(self.services):
                if name not in config.tenants or name in built:
                    await self.services.pop(name).close()
                    self.graph_metrics.forget(name)
            for name, services in built.items():
                self.services[name] = services
                if services.graph is not None:
                    self.graph_metrics.track(services.graph, services.puller)
            for name, services in self.services.items():
                services.set_probe_senders(senders.get(name, []))
            directory = self._context.directory
            directory.graph_clients = {
                n: s.graph for n, s in self.services.items() if s.graph is not None
            }
            directory.token_providers = {
                n: s.tokens for n, s in self.services.items() if s.tokens is not None
            }
            self.quota_chunk.mark_changed()

        async def discard() -> None:
            for services in built.values():
                await services.close()

        return Change(commit, discard)

    async def _build(self, name: str, tenant: TenantConfig, senders: list[str]) -> TenantServices:
        tokens: TokenProvider | None = None
        if tenant.has_credentials:
            # Reads and parses the certificate (or fails) now, off the loop.
            tokens = await asyncio.to_thread(self._context.token_provider_factory, tenant)
        provided = tokens

        def factory(_: TenantConfig) -> TokenProvider:
            assert provided is not None
            return provided

        return TenantServices(
            name,
            tenant,
            token_provider_factory=factory,
            probe_senders=senders,
            pull_trace=self._context.shard.owns(name),
            trace_sinks=[self._publish_rows],
            on_change=self.quota_chunk.mark_changed,
            clock=self._context.clock,
        )

    def _publish_rows(self, tenant: str, records: Sequence[TraceRecord]) -> None:
        self._context.bus.publish(TraceRowsArrived(tenant, records))

    def _on_probe(self, event: ProbeFinished) -> None:
        result, probe = event.result, event.probe
        services = self.services.get(probe.tenant or "")
        # a session probe (or a basic-auth check) sends nothing: only accepted recipients count
        if result.success and result.recipients_accepted and services is not None:
            services.record_probe_send(
                probe.mail_from, result.message_id, probe.rcpt_to, result.started_at
            )

    def jobs(self) -> list[JobSpec]:
        specs: list[JobSpec] = []
        for name, services in sorted(self.services.items()):
            if services.puller is not None:
                interval = services.config.trace.interval
                specs.append(JobSpec(f"trace:{name}", services.pull_trace, interval, interval / 20))
            specs.append(JobSpec(f"quota:{name}", _quota_job(services), QUOTA_REFRESH, 0.0))
        return specs

    async def close(self) -> None:
        await self.quota_chunk.close()
        for services in self.services.values():
            await services.close()
        self.services.clear()
        self._context.directory.graph_clients = {}
        self._context.directory.token_providers = {}


def _quota_job(services: TenantServices) -> Callable[[], Awaitable[bool]]:
    async def job() -> bool:
        return await services.refresh_quota_async()

    return job
