"""`m365_quota_*` metric families for every tenant (one family per name across tenants)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from m365_smtp_exporter.quota import state_file
from m365_smtp_exporter.quota.cardinality import hash_sender
from m365_smtp_exporter.quota.rows import ExcludedReason
from m365_smtp_exporter.quota.tenant import TenantQuota

LABELS = ["tenant", "sender", "limit"]
# (name, help) of the per-figure families, in exposition order; quota_text.py writes the same
# families as plain text from this one table.
FAMILIES = (
    (
        "m365_quota_used",
        "Recipients or messages counted against a sending limit in its rolling window.",
    ),
    (
        "m365_quota_limit",
        "The sending limit the usage is measured against. limit=messages_per_minute is "
        "pacing: messages over it will be delayed by Microsoft 365, not refused.",
    ),
    ("m365_quota_utilization_ratio", "Usage divided by the limit."),
    ("m365_quota_remaining", "What is left before the limit (never negative)."),
    (
        "m365_quota_recovery_seconds",
        "Seconds until enough usage ages out of the window to be back under the recovery "
        "threshold (0 when already under it).",
    ),
)
ENFORCED_FAMILY = (
    "m365_quota_limit_enforced",
    "Whether Microsoft enforces the tenant-wide limit for this tenant (1) or not (0): the "
    "tenant external recipient limit is paused for tenants over 500 licences.",
)
PROBE_FAMILY = (
    "m365_quota_probe_recipients",
    "Recipients the exporter's own probes sent in the last 24 hours.",
)


def quota_metrics(tenants: Callable[[], Iterable[TenantQuota]]) -> Callable[[], Iterator[Metric]]:
    def collect() -> Iterator[Metric]:
        used, limit, ratio, remaining, recovery = (
            GaugeMetricFamily(name, help_text, labels=LABELS) for name, help_text in FAMILIES
        )
        probe = GaugeMetricFamily(*PROBE_FAMILY, labels=["tenant", "sender"])
        enforced = GaugeMetricFamily(*ENFORCED_FAMILY, labels=["tenant", "limit"])
        for tenant in tenants():
            for limit_name, on in sorted(tenant.limit_enforced.items()):
                enforced.add_metric([tenant.name, limit_name.value], 1.0 if on else 0.0)
            for figure in tenant.figures:
                labels = [tenant.name, figure.sender, figure.limit_name.value]
                used.add_metric(labels, float(figure.used))
                limit.add_metric(labels, float(figure.limit))
                ratio.add_metric(labels, figure.utilization)
                remaining.add_metric(labels, float(figure.remaining))
                recovery.add_metric(labels, figure.recovery_seconds)
            selection = tenant.selection
            for sender, count in sorted(tenant.probe_recipients.items()):
                label = (
                    hash_sender(sender, selection.hash_salt) if selection.hash_senders else sender
                )
                probe.add_metric([tenant.name, label], float(count))
        yield from (used, limit, ratio, remaining, recovery, probe, enforced)

    return collect


def state_rejected_metrics(tenants: Callable[[], Iterable[str]]) -> Callable[[], Iterator[Metric]]:
    """Saved quota state files ignored at start: a handful of series per tenant, rendered at
    every scrape (apart from the large, cached quota families)."""

    def collect() -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            "m365_quota_state_rejected",
            "Saved quota state files ignored at start, by reason (unreadable, too_big, corrupt, "
            "foreign, version, too_old): the day was pulled from Graph again.",
            labels=["tenant", "reason"],
        )
        for tenant in tenants():
            for reason in state_file.REASONS:
                count = state_file.REJECTED[(tenant, reason)]
                rejected.add_metric([tenant, reason], float(count))
        yield rejected

    return collect


def excluded_rows_metrics(
    tenants: Callable[[], Iterable[TenantQuota]],
) -> Callable[[], Iterator[Metric]]:
    """Trace rows left out of quota counting (system senders), by reason: a few series per
    tenant, rendered at every scrape."""

    def collect() -> Iterator[Metric]:
        excluded = CounterMetricFamily(
            "m365_quota_excluded_rows",
            "Message-trace rows not counted against any sending limit because a system sent "
            "them (null sender, postmaster, Exchange's MicrosoftExchange... NDR mailboxes), "
            "by reason.",
            labels=["tenant", "reason"],
        )
        for tenant in tenants():
            for reason in ExcludedReason:
                excluded.add_metric(
                    [tenant.name, reason.value], float(tenant.excluded_rows[reason])
                )
        yield excluded

    return collect
