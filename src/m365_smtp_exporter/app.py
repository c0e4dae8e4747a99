"""Wiring: config -> scheduler -> probes -> store -> /metrics; start, reload, shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.auth import AzureTokenProvider, TokenProvider
from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.config import (
    Config,
    ConfigError,
    DomainChecksConfig,
    ProbeConfig,
    TenantConfig,
    load_config,
)
from m365_smtp_exporter.console import ExporterPlanner, add_console_routes, exporter_sources
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.domains import DomainChecker
from m365_smtp_exporter.exposition import CachedExposition
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.metrics import GraphMetrics
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.logs import Redactor
from m365_smtp_exporter.quota.metrics import quota_metrics
from m365_smtp_exporter.scheduler import JobScheduler, JobSpec
from m365_smtp_exporter.sharding import ALL as ALL_SHARDS
from m365_smtp_exporter.sharding import Shard
from m365_smtp_exporter.smtp.probe import SMTP_SCOPE, run_probe
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.store import ResultsStore
from m365_smtp_exporter.tenants import TenantServices
from m365_smtp_exporter.web import create_web_app

log = structlog.get_logger(__name__)

TokenProviderFactory = Callable[[TenantConfig], TokenProvider]
# Recovery times shrink as the 24 h window rolls: re-take quota snapshots this often (s).
QUOTA_REFRESH = 30.0
# How often pending delivery checks are looked at (each has its own back-off schedule).
DELIVERY_POLL = 5.0
ProbeRunner = Callable[..., Awaitable[ProbeResult]]


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """':9587' -> (None, 9587) meaning every interface; '127.0.0.1:0'; '[::1]:9587'."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected [host]:port")
    host = host.strip("[]")
    return (host or None), int(port)


def config_secrets(config: Config) -> list[str]:
    """Every secret value in a configuration, for the log redactor."""
    secrets = [
        t.client_secret.get_secret_value()
        for t in config.tenants.values()
        if t.client_secret is not None
    ]
    secrets += [
        t.certificate_password.get_secret_value()
        for t in config.tenants.values()
        if t.certificate_password is not None
    ]
    secrets += [
        p.auth.password.get_secret_value() for p in config.probes if p.auth.password is not None
    ]
    return secrets


def probe_tenant_label(probe: ProbeConfig) -> str:
    return probe.tenant or ""


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        listen_address: str = ":9587",
        redactor: Redactor | None = None,
        token_provider_factory: TokenProviderFactory = AzureTokenProvider,
        probe_runner: ProbeRunner = run_probe,
        middlewares: list[Middleware] | None = None,
        shard: Shard = ALL_SHARDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.shard = shard
        self.config_path = config_path
        self.listen_address = listen_address
        self.redactor = redactor or Redactor()
        self.store = ResultsStore()
        self.scheduler = JobScheduler(self.store)
        self.collector = StoreCollector(self.store)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        live = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=live)
        PlatformCollector(registry=live)
        self.exposition = CachedExposition(self.store, registry, live)
        self._token_provider_factory = token_provider_factory
        self.tenants: dict[str, TenantServices] = {}
        self.graph_metrics = GraphMetrics()
        self.collector.add_source(self.graph_metrics)
        self.collector.add_source(quota_metrics(lambda: [t.quota for t in self.tenants.values()]))
        self.domains: DomainChecker | None = None
        self._domains_config: DomainChecksConfig | None = None
        self.delivery: DeliveryTracker | None = None
        self.collector.add_source(lambda: self.delivery.collect() if self.delivery else iter(()))
        self.collector.add_source(lambda: self.domains.collect() if self.domains else iter(()))
        self._probe_runner = probe_runner
        self._middlewares = middlewares
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[object]] = set()
        self.bound_port: int | None = None

    # lifecycle
    async def start(self) -> None:
        # Listen first: a taken port must fail before any probe spends quota.
        app = create_web_app(
            self.exposition, self.store, self.reload, self.ready, self._middlewares
        )
        add_console_routes(app, exporter_sources(self), ExporterPlanner(self))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = parse_listen_address(self.listen_address)
        site = web.TCPSite(
            self._runner, host, port, reuse_address=True, ssl_context=self._ssl_context
        )
        await site.start()
        address = self._runner.addresses[0]
        self.bound_port = int(address[1])
        await self._apply(self.config)
        self.scheduler.start()
        log.info(
            "exporter listening",
            address=f"{host or '*'}:{self.bound_port}",
            scheme=self.scheme,
            probes=len(self.active_probes()),
            shard=str(self.shard),
            tenants=len(self.config.tenants),
        )

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.delivery is not None:
            await self.delivery.close()
        for services in self.tenants.values():
            await services.close()
        self.tenants.clear()

    @property
    def scheme(self) -> str:
        return "https" if self._ssl_context is not None else "http"

    def ready(self) -> bool:
        return self.scheduler.running

    async def serve_forever(self, stop: asyncio.Event | None = None) -> None:
        """Run until SIGINT/SIGTERM (or `stop` is set); SIGHUP reloads the configuration."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        await self.start()
        # Start-up objects (msgraph-sdk's generated modules alone are ~78,000) never become
        # garbage: keep them out of every later collection, which trace pulls make frequent.
        gc.collect()
        gc.freeze()
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("shutting down")
            await self.stop()

    def _reload_in_background(self) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # configuration
    async def reload(self) -> tuple[bool, list[str]]:
        """Re-read the config file; a bad file keeps the running configuration."""
        async with self._reload_lock:
            if self.config_path is None:
                return True, []
            try:
                config = load_config(self.config_path)
            except ConfigError as exc:
                self.store.record_reload(False)
                log.error(
                    "config reload failed, keeping the running configuration", errors=exc.errors
                )
                return False, exc.errors
            self.config = config
            await self._apply(config)
            log.info("config reloaded", probes=len(config.probes), tenants=len(config.tenants))
            return True, []

    def active_probes(self, config: Config | None = None) -> list[ProbeConfig]:
        """The probes this replica runs (all of them unless `--shard` splits them)."""
        return [p for p in (config or self.config).probes if self.shard.owns(p.name)]

    async def _apply(self, config: Config) -> None:
        self.redactor.add(config_secrets(config))
        probes = self.active_probes(config)
        self.store.sync_probes([(probe_tenant_label(p), p.name, p.target) for p in probes])
        await self._sync_tenants(config)
        self._sync_domains(config)
        self._sync_delivery(config)
        self.store.record_reload(True)
        specs = [
            JobSpec(
                job_id=f"probe:{probe.name}",
                func=self._probe_job(probe.name),
                interval=probe.interval,
                jitter=probe.jitter,
                first_delay=min(index * 0.5, probe.interval / 2),
            )
            for index, probe in enumerate(probes)
        ]
        for name, services in sorted(self.tenants.items()):
            if services.puller is not None:
                interval = services.config.trace.interval
                specs.append(JobSpec(f"trace:{name}", services.pull_trace, interval, interval / 20))
            specs.append(JobSpec(f"quota:{name}", self._quota_job(services), QUOTA_REFRESH, 0.0))
        if self.domains is not None:
            domains = self.domains
            specs.append(JobSpec("domains", domains.run, config.domains.interval, 0.0))
        if self.delivery is not None and any(p.delivery for p in probes):
            specs.append(JobSpec("delivery", self.delivery.poll, DELIVERY_POLL, 0.0, 1.0))
        self.scheduler.sync(specs)

    async def _sync_tenants(self, config: Config) -> None:
        """Keep the services of unchanged tenants (their trace cursor and quota windows)."""
        for name in list(self.tenants):
            if config.tenants.get(name) != self.tenants[name].config:
                await self.tenants.pop(name).close()
                self.graph_metrics.forget(name)
        for name, tenant in config.tenants.items():
            senders = [p.mail_from for p in self.active_probes(config) if p.tenant == name]
            if name in self.tenants:
                self.tenants[name].set_probe_senders(senders)
                continue
            services = TenantServices(
                name,
                tenant,
                token_provider_factory=self._token_provider_factory,
                probe_senders=senders,
                pull_trace=self.shard.owns(name),
                trace_sinks=[self._trace_rows_for_delivery],
                on_change=self.store.mark_changed,
            )
            self.tenants[name] = services
            if services.graph is not None:
                self.graph_metrics.track(services.graph, services.puller)

    def _trace_rows_for_delivery(self, tenant: str, records: Sequence[TraceRecord]) -> None:
        if self.delivery is not None:
            self.delivery.on_trace_rows(tenant, records)

    def _graph_client(self, tenant: str) -> GraphClient | None:
        services = self.tenants.get(tenant)
        return services.graph if services is not None else None

    def _sync_delivery(self, config: Config) -> None:
        if self.delivery is None:
            # the state file is read once, at start: pending checks survive restarts
            self.delivery = DeliveryTracker(
                self._graph_client,
                self.active_probes(config),
                state_file=config.state_file,
                on_change=self.store.mark_changed,
            )
        else:
            self.delivery.configure(self.active_probes(config))

    def _sync_domains(self, config: Config) -> None:
        if not config.domains.names:
            self.domains = None
        elif self.domains is None or self._domains_config != config.domains:
            self.domains = DomainChecker(config.domains, on_change=self.store.mark_changed)
        self._domains_config = config.domains

    def token_provider(self, tenant: str | None) -> TokenProvider | None:
        services = self.tenants.get(tenant or "")
        return services.tokens if services is not None else None

    # jobs
    def _probe_job(self, name: str) -> Callable[[], Awaitable[bool]]:
        async def job() -> bool:
            probe = self.config.probe(name)
            if probe is None:
                return False
            return (await self.run_probe(probe)).success

        return job

    @staticmethod
    def _quota_job(services: TenantServices) -> Callable[[], Awaitable[bool]]:
        async def job() -> bool:
            return services.refresh_quota()

        return job

    async def run_probe(self, probe: ProbeConfig) -> ProbeResult:
        provider = None
        scope = SMTP_SCOPE
        if probe.auth.mechanism == "xoauth2" and probe.tenant is not None:
            provider = self.token_provider(probe.tenant)
            scope = self.config.tenants[probe.tenant].smtp_scope
        result = await self._probe_runner(probe, token_provider=provider, token_scope=scope)
        self.store.record_probe(result)
        if probe.delivery is not None and self.delivery is not None:
            self.delivery.track(probe, probe_tenant_label(probe), result)
        services = self.tenants.get(probe.tenant or "")
        if result.success and services is not None:
            # the probe's own send counts against its sender at once; its trace rows replace it
            services.quota.record_probe_send(
                probe.mail_from, result.message_id, probe.rcpt_to, result.started_at
            )
        rejection = result.last_rejection
        log.log(
            20 if result.success else 30,
            "probe finished",
            probe=result.probe,
            target=result.target,
            success=result.success,
            reason=result.reason.value if result.reason else None,
            phase=result.failed_phase.value if result.failed_phase else None,
            detail=result.detail or None,
            code=rejection.reply.code if rejection else None,
            enhanced_code=rejection.reply.enhanced_code if rejection else None,
            duration=round(result.duration, 4),
            phases={phase.value: round(sec, 4) for phase, sec in result.phases.items()},
        )
        return result
