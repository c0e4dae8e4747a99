"""Microsoft 365 service health as a subsystem: per tenant, a scheduled pull and its metrics.

Wiring (composition root): `health.configure(config.tenants)` on every (re)load, schedule
each of `health.jobs()` (job id, coroutine function, interval), and add `health.collect` to
the metrics sources. Tenants without `service_health.enabled` or app credentials are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric

from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.health.metrics import collect_health
from m365_smtp_exporter.health.monitor import ServiceHealthMonitor

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from m365_smtp_exporter.graph.client import GraphClient

__all__ = ["ServiceHealth", "ServiceHealthMonitor"]

Job = tuple[str, Callable[[], Awaitable[bool]], float]


class ServiceHealth:
    def __init__(
        self,
        graph_client_for: Callable[[str], GraphClient | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._graph_client_for = graph_client_for
        self._clock = clock
        self.monitors: dict[str, ServiceHealthMonitor] = {}

    def configure(self, tenants: Mapping[str, TenantConfig]) -> None:
        """Keep monitors (and their last snapshot) of tenants whose settings did not change."""
        wanted = {
            name: tenant.service_health
            for name, tenant in tenants.items()
            if tenant.service_health.enabled and tenant.has_credentials
        }
        for name in list(self.monitors):
            if self.monitors[name].config != wanted.get(name):
                del self.monitors[name]
        for name, settings in wanted.items():
            if name not in self.monitors:
                self.monitors[name] = ServiceHealthMonitor(
                    name, settings, self._client_of(name), clock=self._clock
                )

    def jobs(self) -> list[Job]:
        return [
            (f"health:{name}", monitor.run, monitor.config.interval)
            for name, monitor in sorted(self.monitors.items())
        ]

    def collect(self) -> Iterable[Metric]:
        return collect_health(list(self.monitors.values()))

    def _client_of(self, tenant: str) -> Callable[[], GraphClient | None]:
        return lambda: self._graph_client_for(tenant)
