"""The composition root: config -> subsystems -> scheduler and /metrics; start, reload, stop.

Nothing here knows a capability: each lives behind the `Subsystem` protocol and is one line
of `SUBSYSTEMS`. Facts between them travel on the event bus; per-tenant services they share
are looked up in the context's directory.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from m365_smtp_exporter.auth import AzureTokenProvider, TokenProvider
from m365_smtp_exporter.config import Config, ConfigError, ProbeConfig, load_config
from m365_smtp_exporter.console import ExporterPlanner, add_console_routes, exporter_sources
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.delivery.subsystem import DeliverySubsystem
from m365_smtp_exporter.domains import DomainChecker
from m365_smtp_exporter.domains.subsystem import DomainsSubsystem
from m365_smtp_exporter.events import EventBus
from m365_smtp_exporter.exposition import Exposition
from m365_smtp_exporter.health import ServiceHealth
from m365_smtp_exporter.health.subsystem import HealthSubsystem
from m365_smtp_exporter.logs import Redactor
from m365_smtp_exporter.own_metrics import ExporterSubsystem
from m365_smtp_exporter.probes.subsystem import ProbesSubsystem, probe_tenant_label
from m365_smtp_exporter.scheduler import JobScheduler
from m365_smtp_exporter.sharding import ALL as ALL_SHARDS
from m365_smtp_exporter.sharding import Shard
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.smtp.tls import clear_ssl_contexts
from m365_smtp_exporter.store import ResultsStore
from m365_smtp_exporter.subsystem import (
    Change,
    Context,
    ProbeRunner,
    Subsystem,
    SubsystemError,
    SubsystemFactory,
    TokenProviderFactory,
)
from m365_smtp_exporter.tenants import TenantServices, TenantsSubsystem
from m365_smtp_exporter.web import WebLimits, create_web_app, serve

log = structlog.get_logger(__name__)

__all__ = ["SUBSYSTEMS", "Exporter", "ReloadError", "probe_tenant_label"]

# Every capability, in exposition order. A new one: its package, and one line here.
SUBSYSTEMS: tuple[SubsystemFactory, ...] = (
    ProbesSubsystem,
    ExporterSubsystem,
    TenantsSubsystem,
    DeliverySubsystem,
    DomainsSubsystem,
    HealthSubsystem,
)
S = TypeVar("S")


class ReloadError(Exception):
    """A configuration that cannot be applied; `errors` name the fields, one line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


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


async def validate(
    config: Config, token_provider_factory: TokenProviderFactory = AzureTokenProvider
) -> None:
    """Build everything `config` needs, as a start or reload would, then throw it away:
    `check-config` and the running exporter accept exactly the same files."""
    subsystems = _build(
        SUBSYSTEMS,
        Context(
            ResultsStore(),
            EventBus(),
            time.time,
            token_provider_factory,
            None,
            validate_only=True,
        ),
    )
    changes = await _sync_all(subsystems, config)
    for change in changes:
        await change.discard()


def _build(factories: Sequence[SubsystemFactory], context: Context) -> list[Subsystem]:
    return [factory(context) for factory in factories]


async def _sync_all(subsystems: Sequence[Subsystem], config: Config) -> list[Change]:
    """Every subsystem's validated change, or ReloadError after discarding the ones built."""
    changes: list[Change] = []
    errors: list[str] = []
    for subsystem in subsystems:
        try:
            changes.append(await subsystem.sync(config))
        except SubsystemError as exc:
            errors += exc.errors
        except Exception as exc:  # a bug must not half-apply a config either
            log.exception("subsystem failed to prepare a config", subsystem=subsystem.name)
            errors.append(f"{subsystem.name}: {type(exc).__name__}")
    if errors:
        for change in changes:
            await change.discard()
        raise ReloadError(errors)
    return changes


# Garbage-collection policy. A full collection walks every tracked object and stops every
# thread, the event loop included: with the quota engine holding 100,000 senders that is
# hundreds of milliseconds. What survives a minute (engine state, caches, figures) almost
# never becomes cyclic garbage, so it is frozen out of later collections; objects freed by
# reference count are still freed. Cyclic garbage that happened to be frozen is reclaimed
# by thawing once an hour (the next full collection then sees everything, once).
GC_FREEZE_INTERVAL = 60.0
GC_THAW_EVERY = 60  # freezes

# How long a thread may keep the GIL while another waits for it (CPython's default: 5 ms).
# Large renders run in worker threads; at 1 ms the event loop (scrapes, probe timings) gets
# it back sooner. With 10,000 senders exported: loop lag max 24 -> 12 ms, plain /metrics
# p99 30 -> 16 ms (bench/bench_scrape.py, 4 rounds each).
GIL_SWITCH_INTERVAL = 0.001


async def freeze_long_lived_objects(
    interval: float = GC_FREEZE_INTERVAL, thaw_every: int = GC_THAW_EVERY
) -> None:
    """Run forever (cancel to stop): collect the young generations, then freeze."""
    freezes = 0
    while True:
        await asyncio.sleep(interval)
        freezes += 1
        if freezes % thaw_every == 0:
            gc.unfreeze()
            continue
        gc.collect(1)  # young cycles only: cheap, and they are not frozen
        gc.freeze()


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        listen_address: str = ":9587",
        redactor: Redactor | None = None,
        token_provider_factory: TokenProviderFactory = AzureTokenProvider,
        probe_runner: ProbeRunner | None = None,
        middlewares: list[Middleware] | None = None,
        shard: Shard = ALL_SHARDS,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        subsystems: Sequence[SubsystemFactory] = SUBSYSTEMS,
        enable_lifecycle: bool = False,
        reload_details: bool = False,
        web_limits: WebLimits | None = None,
    ) -> None:
        """`enable_lifecycle`: answer POST /-/reload (the command line makes it opt-in);
        `reload_details`: say why a reload failed in its answer (only to callers the web
        config authenticates; the log always has the details)."""
        self.config = config
        self.shard = shard
        self.config_path = config_path
        self.listen_address = listen_address
        self.redactor = redactor or Redactor()
        self.clock = clock
        self.store = ResultsStore(clock, series_cap=config.max_series_per_family)
        self.bus = EventBus()
        self.context = Context(
            self.store, self.bus, clock, token_provider_factory, probe_runner, shard
        )
        self.subsystems = _build(subsystems, self.context)
        self.exposition = Exposition(
            [chunk for s in self.subsystems for chunk in s.chunks],
            [source for s in self.subsystems for source in s.live],
        )
        self.scheduler = JobScheduler(self.store, clock=clock)
        self._middlewares = middlewares
        self._ssl_context = ssl_context
        self._enable_lifecycle = enable_lifecycle
        self._reload_details = reload_details
        self._web_limits = web_limits or WebLimits()
        self._runner: web.AppRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[object]] = set()
        self.bound_port: int | None = None

    # lifecycle
    async def start(self) -> None:
        """Listen, then apply the configuration; an unusable one raises ReloadError."""
        # Listen first: a taken port must fail before any probe spends quota.
        app = create_web_app(
            self.exposition,
            self.store,
            self.reload,
            self.ready,
            self._middlewares,
            enable_lifecycle=self._enable_lifecycle,
            reload_details=self._reload_details,
        )
        add_console_routes(app, exporter_sources(self), ExporterPlanner(self))
        host, port = parse_listen_address(self.listen_address)
        self._runner, self.bound_port = await serve(
            app, host, port, self._ssl_context, self._web_limits
        )
        try:
            await self._apply(self.config)
        except ReloadError:
            self.store.record_reload(False)
            await self.stop()
            raise
        self.store.record_reload(True)
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
        await self.exposition.close()
        for subsystem in reversed(self.subsystems):
            await subsystem.close()

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
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        try:
            await self.start()
            # Start-up objects (msgraph-sdk's generated modules alone are ~78,000) never
            # become garbage: keep them out of every later collection.
            gc.collect()
            gc.freeze()
            freezer = asyncio.ensure_future(freeze_long_lived_objects())
            try:
                await stop.wait()
            finally:
                freezer.cancel()
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
        """Re-read the config file and apply it whole, or keep the running one whole."""
        async with self._reload_lock:
            if self.config_path is None:
                return True, []
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
                # a reload re-reads CA files even when their names did not change
                clear_ssl_contexts()
                await self._apply(config)
            except (ConfigError, ReloadError) as exc:
                self.store.record_reload(False)
                log.error(
                    "config reload failed, keeping the running configuration", errors=exc.errors
                )
                return False, exc.errors
            self.config = config
            self.store.record_reload(True)
            log.info("config reloaded", probes=len(config.probes), tenants=len(config.tenants))
            return True, []

    async def _apply(self, config: Config) -> None:
        changes = await _sync_all(self.subsystems, config)
        self.redactor.add(config_secrets(config))
        for change in changes:
            await change.commit()
        self.scheduler.sync([spec for s in self.subsystems for spec in s.jobs()])

    def active_probes(self, config: Config | None = None) -> list[ProbeConfig]:
        return self.context.active_probes(config or self.config)

    # lookups for tools and tests (the subsystems do not use these)
    def subsystem(self, kind: type[S]) -> S:
        for subsystem in self.subsystems:
            if isinstance(subsystem, kind):
                return subsystem
        raise LookupError(kind.__name__)

    @property
    def tenants(self) -> dict[str, TenantServices]:
        return self.subsystem(TenantsSubsystem).services

    @property
    def delivery(self) -> DeliveryTracker | None:
        return self.subsystem(DeliverySubsystem).tracker

    @property
    def domains(self) -> DomainChecker | None:
        return self.subsystem(DomainsSubsystem).checker

    @property
    def service_health(self) -> ServiceHealth:
        return self.subsystem(HealthSubsystem).health

    def token_provider(self, tenant: str | None) -> TokenProvider | None:
        return self.context.directory.token_provider(tenant)

    async def run_probe(self, probe: ProbeConfig) -> ProbeResult:
        return await self.subsystem(ProbesSubsystem).run(probe)
