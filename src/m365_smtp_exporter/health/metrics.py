"""Service-health metrics of every monitored tenant, bounded by construction.

`m365_service_health_status{tenant,service,status}` is a state set over Graph's status enum
(1 for the current status); `m365_service_health_active_issues{tenant,id,classification,feature}`
has one series per active Exchange Online issue up to `max_issues`, the rest counted in
`m365_service_health_active_issues_dropped`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from m365_smtp_exporter.health.model import EXCHANGE_ONLINE, STATUSES
from m365_smtp_exporter.health.monitor import ServiceHealthMonitor


def collect_health(monitors: Iterable[ServiceHealthMonitor]) -> Iterable[Metric]:
    status = GaugeMetricFamily(
        "m365_service_health_status",
        "Microsoft's status of the service for the tenant (1 for the current status).",
        labels=["tenant", "service", "status"],
    )
    issues = GaugeMetricFamily(
        "m365_service_health_active_issues",
        "Active (unresolved) Exchange Online issues Microsoft reports for the tenant.",
        labels=["tenant", "id", "classification", "feature"],
    )
    dropped = GaugeMetricFamily(
        "m365_service_health_active_issues_dropped",
        "Active issues not exported as series because of max_issues.",
        labels=["tenant"],
    )
    success = GaugeMetricFamily(
        "m365_service_health_pull_success",
        "1 if the last service-health pull read both answers.",
        labels=["tenant"],
    )
    last = GaugeMetricFamily(
        "m365_service_health_last_success_timestamp_seconds",
        "When service health was last read successfully.",
        labels=["tenant"],
    )
    requests = CounterMetricFamily(
        "m365_service_health_requests",
        "Service-health requests by endpoint and outcome (not the message-trace budget).",
        labels=["tenant", "endpoint", "outcome"],
    )
    for monitor in sorted(monitors, key=lambda m: m.tenant):
        tenant, snapshot = monitor.tenant, monitor.snapshot
        if snapshot.status is not None:
            for name in STATUSES:
                status.add_metric(
                    [tenant, EXCHANGE_ONLINE, name], 1.0 if name == snapshot.status else 0.0
                )
        seen: set[tuple[str, str, str]] = set()
        for issue in snapshot.issues:
            key = (issue.id, issue.classification, issue.feature)
            if key in seen or len(seen) >= monitor.config.max_issues:
                continue
            seen.add(key)
            issues.add_metric([tenant, *key], 1.0)
        if snapshot.pull_success is not None:
            dropped.add_metric([tenant], float(len(snapshot.issues) - len(seen)))
            success.add_metric([tenant], 1.0 if snapshot.pull_success else 0.0)
        if snapshot.last_success is not None:
            last.add_metric([tenant], snapshot.last_success)
        for (endpoint, outcome), count in sorted(monitor.requests.items()):
            requests.add_metric([tenant, endpoint, outcome], float(count))
    yield from (status, issues, dropped, success, last, requests)
