"""Every metric the dashboards and alert rules may query, with its labels.

This is the metric contract as the operational files see it. test_dashboards.py checks the
probe and exporter entries against collector.py; test_live_prometheus.py checks all of them
against what a running demo exporter exposes.
Names are the exposed family names: counters end in `_total`, histograms also expose
`_bucket` (with `le`), `_sum` and `_count`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class ExportedMetric:
    name: str
    kind: Kind
    labels: tuple[str, ...]

    def samples(self) -> dict[str, frozenset[str]]:
        """Sample names this metric exposes, each with the labels its samples carry."""
        labels = frozenset(self.labels)
        if self.kind is Kind.HISTOGRAM:
            return {
                f"{self.name}_bucket": labels | {"le"},
                f"{self.name}_sum": labels,
                f"{self.name}_count": labels,
            }
        return {self.name: labels}


# Labels Prometheus attaches to every scraped sample.
TARGET_LABELS = frozenset({"job", "instance"})
# An exporter label that collides with a target label arrives renamed (honor_labels: false).
RENAMED_LABELS = {"job": "exported_job", "instance": "exported_instance"}

_PROBE = ("tenant", "probe", "target")
_QUOTA = ("tenant", "sender", "limit")
_DELIVERY = ("tenant", "probe")

EXPORTED_METRICS: tuple[ExportedMetric, ...] = (
    # SMTP probes (collector.py)
    ExportedMetric("m365_smtp_probe_success", Kind.GAUGE, _PROBE),
    ExportedMetric("m365_smtp_probe_last_run_timestamp_seconds", Kind.GAUGE, _PROBE),
    ExportedMetric("m365_smtp_probe_last_success_timestamp_seconds", Kind.GAUGE, _PROBE),
    ExportedMetric("m365_smtp_probe_interval_seconds", Kind.GAUGE, _PROBE),
    ExportedMetric("m365_smtp_probe_phase_seconds", Kind.GAUGE, (*_PROBE, "phase")),
    ExportedMetric("m365_smtp_probe_duration_seconds", Kind.HISTOGRAM, _PROBE),
    ExportedMetric("m365_smtp_probes_total", Kind.COUNTER, (*_PROBE, "result")),
    ExportedMetric("m365_smtp_probe_failures_total", Kind.COUNTER, (*_PROBE, "phase", "reason")),
    ExportedMetric(
        "m365_smtp_replies_total",
        Kind.COUNTER,
        (*_PROBE, "phase", "code", "enhanced_code", "category"),
    ),
    ExportedMetric("m365_smtp_tls_info", Kind.GAUGE, (*_PROBE, "version", "cipher")),
    ExportedMetric("m365_smtp_tls_cert_expiry_timestamp_seconds", Kind.GAUGE, _PROBE),
    # the exporter itself (collector.py)
    ExportedMetric("m365_exporter_build_info", Kind.GAUGE, ("version", "python_version")),
    ExportedMetric("m365_exporter_config_last_reload_successful", Kind.GAUGE, ()),
    ExportedMetric("m365_exporter_config_last_reload_success_timestamp_seconds", Kind.GAUGE, ()),
    ExportedMetric("m365_exporter_job_runs_total", Kind.COUNTER, ("task", "outcome")),
    ExportedMetric("m365_exporter_job_duration_seconds", Kind.HISTOGRAM, ("task",)),
    ExportedMetric("m365_exporter_series_folded_total", Kind.COUNTER, ("family",)),
    # quota engine
    ExportedMetric("m365_quota_used", Kind.GAUGE, _QUOTA),
    ExportedMetric("m365_quota_limit", Kind.GAUGE, _QUOTA),
    ExportedMetric("m365_quota_utilization_ratio", Kind.GAUGE, _QUOTA),
    ExportedMetric("m365_quota_remaining", Kind.GAUGE, _QUOTA),
    ExportedMetric("m365_quota_recovery_seconds", Kind.GAUGE, _QUOTA),
    ExportedMetric("m365_quota_probe_recipients", Kind.GAUGE, ("tenant", "sender")),
    ExportedMetric("m365_quota_limit_enforced", Kind.GAUGE, ("tenant", "limit")),
    ExportedMetric("m365_quota_excluded_rows_total", Kind.COUNTER, ("tenant", "reason")),
    # message trace
    ExportedMetric("m365_trace_messages_total", Kind.COUNTER, ("tenant", "status", "direction")),
    ExportedMetric("m365_trace_pull_success", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_trace_last_success_timestamp_seconds", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_trace_lag_seconds", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_trace_pulls_total", Kind.COUNTER, ("tenant", "outcome")),
    ExportedMetric("m365_trace_rows_window", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_trace_backfill_progress_ratio", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_quota_state_rejected_total", Kind.COUNTER, ("tenant", "reason")),
    # Microsoft Graph
    ExportedMetric("m365_graph_requests_total", Kind.COUNTER, ("tenant", "endpoint", "code")),
    ExportedMetric("m365_graph_throttled_total", Kind.COUNTER, ("tenant", "endpoint")),
    ExportedMetric("m365_graph_foreign_throttled_total", Kind.COUNTER, ("tenant",)),
    ExportedMetric("m365_graph_budget_remaining", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_graph_budget_limit", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_graph_retry_after_clamped_total", Kind.COUNTER, ("tenant",)),
    ExportedMetric("m365_graph_requests_refused_total", Kind.COUNTER, ("tenant",)),
    ExportedMetric("m365_graph_responses_too_large_total", Kind.COUNTER, ("tenant",)),
    # delivery checks
    ExportedMetric("m365_delivery_success", Kind.GAUGE, _DELIVERY),
    ExportedMetric("m365_delivery_latency_seconds", Kind.HISTOGRAM, _DELIVERY),
    ExportedMetric("m365_delivery_pending", Kind.GAUGE, _DELIVERY),
    ExportedMetric("m365_delivery_outcomes_total", Kind.COUNTER, (*_DELIVERY, "outcome")),
    ExportedMetric("m365_delivery_lost_total", Kind.COUNTER, _DELIVERY),
    ExportedMetric("m365_delivery_junk_total", Kind.COUNTER, _DELIVERY),
    ExportedMetric("m365_delivery_auth_result", Kind.GAUGE, (*_DELIVERY, "check", "result")),
    ExportedMetric("m365_delivery_trace_status", Kind.GAUGE, (*_DELIVERY, "status")),
    ExportedMetric("m365_delivery_clock_skew_total", Kind.COUNTER, _DELIVERY),
    ExportedMetric("m365_delivery_cleanup_failures_total", Kind.COUNTER, _DELIVERY),
    ExportedMetric("m365_delivery_abandoned_total", Kind.COUNTER, _DELIVERY),
    ExportedMetric("m365_delivery_lookup_errors_total", Kind.COUNTER, (*_DELIVERY, "reason")),
    ExportedMetric("m365_delivery_budget_deferrals_total", Kind.COUNTER, ("tenant",)),
    ExportedMetric("m365_delivery_state_errors_total", Kind.COUNTER, ("operation",)),
    # send paths: authentication posture (probes/posture.py)
    ExportedMetric("m365_smtp_probe_info", Kind.GAUGE, (*_PROBE, "kind", "mode")),
    ExportedMetric("m365_smtp_probe_auth_info", Kind.GAUGE, (*_PROBE, "mechanism")),
    ExportedMetric("m365_smtp_basic_auth_accepted", Kind.GAUGE, ("tenant",)),
    # Microsoft service health (health/metrics.py)
    ExportedMetric("m365_service_health_status", Kind.GAUGE, ("tenant", "service", "status")),
    ExportedMetric(
        "m365_service_health_active_issues",
        Kind.GAUGE,
        ("tenant", "id", "classification", "feature"),
    ),
    ExportedMetric("m365_service_health_active_issues_dropped", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_service_health_pull_success", Kind.GAUGE, ("tenant",)),
    ExportedMetric("m365_service_health_last_success_timestamp_seconds", Kind.GAUGE, ("tenant",)),
    ExportedMetric(
        "m365_service_health_requests_total", Kind.COUNTER, ("tenant", "endpoint", "outcome")
    ),
    # sending-domain checks
    ExportedMetric("m365_domain_spf_valid", Kind.GAUGE, ("domain",)),
    ExportedMetric("m365_domain_spf_lookups", Kind.GAUGE, ("domain",)),
    ExportedMetric("m365_domain_dkim_enabled", Kind.GAUGE, ("domain", "selector")),
    ExportedMetric("m365_domain_dmarc_policy_info", Kind.GAUGE, ("domain", "policy")),
    ExportedMetric("m365_domain_check_success", Kind.GAUGE, ("domain", "check")),
    ExportedMetric("m365_domain_spf_void_lookups", Kind.GAUGE, ("domain",)),
    ExportedMetric("m365_domain_spf_includes_microsoft", Kind.GAUGE, ("domain",)),
    ExportedMetric("m365_domain_spf_all_qualifier_info", Kind.GAUGE, ("domain", "qualifier")),
    ExportedMetric("m365_domain_dkim_cname_info", Kind.GAUGE, ("domain", "selector", "target")),
    ExportedMetric("m365_domain_dmarc_pct", Kind.GAUGE, ("domain",)),
    ExportedMetric("m365_domain_last_check_timestamp_seconds", Kind.GAUGE, ("domain",)),
)

# Series Prometheus itself creates; None: any labels (ALERTS carries the alert's labels).
BUILTIN_SERIES: dict[str, frozenset[str] | None] = {
    "up": TARGET_LABELS,
    "ALERTS": None,
    "ALERTS_FOR_STATE": None,
}


def queryable_series() -> dict[str, frozenset[str] | None]:
    """Every series name a query may use, with the labels it may match or group on."""
    series: dict[str, frozenset[str] | None] = dict(BUILTIN_SERIES)
    for metric in EXPORTED_METRICS:
        for name, labels in metric.samples().items():
            renamed = {RENAMED_LABELS[label] for label in labels & TARGET_LABELS}
            series[name] = (labels - TARGET_LABELS) | renamed | TARGET_LABELS
    return series
