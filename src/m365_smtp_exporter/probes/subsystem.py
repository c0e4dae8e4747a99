"""The probes subsystem: one scheduled probe per configured probe (any kind, through the
dispatch table), results in the store's probe part, the authentication posture metrics, and
a `ProbeFinished` event for whoever else cares (delivery, quota)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from m365_smtp_exporter.collector import probe_metrics
from m365_smtp_exporter.config import Config, ProbeConfig
from m365_smtp_exporter.events import ProbeFinished
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.probes.paths import ProbePaths
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.smtp.probe import SMTP_SCOPE
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.subsystem import Change, Context

log = structlog.get_logger(__name__)

# Probes start half a second apart at start-up, so they do not all connect at once.
START_SPREAD = 0.5


def probe_tenant_label(probe: ProbeConfig) -> str:
    return probe.tenant or ""


class ProbesSubsystem:
    name = "probes"

    def __init__(self, context: Context) -> None:
        self._context = context
        self._config = Config()
        self._probes: list[ProbeConfig] = []
        store = context.store
        self.chunk = Chunk("probes", lambda: probe_metrics(store))
        store.on_probes_change = self.chunk.mark_changed
        # dispatch to the probe kinds; each tenant's Graph client for graph_sendmail
        self.paths = ProbePaths(context.directory.graph_client)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        # a few series per probe, changed by every run: cheaper to render than to track
        self.live: Sequence[Collect] = (self.paths.collect,)

    async def sync(self, config: Config) -> Change:
        probes = self._context.active_probes(config)

        async def commit() -> None:
            self._config = config
            self._probes = probes
            self._context.store.series_cap = config.max_series_per_family
            self._context.store.probe_intervals = {p.name: p.interval for p in probes}
            self.paths.configure(probes)
            self._context.store.sync_probes(
                [(probe_tenant_label(p), p.name, p.target) for p in probes]
            )

        return Change(commit)

    def jobs(self) -> list[JobSpec]:
        return [
            JobSpec(
                job_id=f"probe:{probe.name}",
                func=self._job(probe.name),
                interval=probe.interval,
                jitter=probe.jitter,
                first_delay=min(index * START_SPREAD, probe.interval / 2),
            )
            for index, probe in enumerate(self._probes)
        ]

    def _job(self, name: str) -> Callable[[], Awaitable[bool]]:
        async def job() -> bool:
            probe = self._config.probe(name)  # the configuration of the moment it runs
            if probe is None:
                return False
            return (await self.run(probe)).success

        return job

    async def run(self, probe: ProbeConfig) -> ProbeResult:
        provider = None
        scope = SMTP_SCOPE
        if probe.auth.mechanism == "xoauth2" and probe.tenant is not None:
            provider = self._context.directory.token_provider(probe.tenant)
            scope = self._config.tenants[probe.tenant].smtp_scope
        runner = self._context.probe_runner or self.paths.run_probe
        result = await runner(probe, token_provider=provider, token_scope=scope)
        self._context.store.record_probe(result)
        self._context.bus.publish(ProbeFinished(result, probe))
        _log_result(result)
        return result

    async def close(self) -> None:
        return None


def _log_result(result: ProbeResult) -> None:
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
