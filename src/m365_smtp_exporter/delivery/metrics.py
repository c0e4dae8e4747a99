"""`m365_delivery_*` metric families: counters per probe and the rendering of all of them.

Counters live in memory and start from zero after a restart (Prometheus handles counter
resets); the gauges come from each probe's `ProbeView`, which the state file keeps. Every
probe with delivery tracking exports all its outcome counters and its histogram from the
start, at zero, so alert expressions over `increase()` have a series to work on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from m365_smtp_exporter.delivery.checks import Outcome, ProbeView
from m365_smtp_exporter.graph.errors import FailureReason
from m365_smtp_exporter.store import Histogram

# Seconds from SMTP submission to arrival: healthy Exchange Online delivers within seconds,
# queueing shows as minutes; the default timeout (lost) is 10 minutes, late up to 30.
LATENCY_BUCKETS: tuple[float, ...] = (
    1.0,
    2.0,
    5.0,
    10.0,
    15.0,
    30.0,
    60.0,
    120.0,
    180.0,
    300.0,
    450.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
)
LABELS = ["tenant", "probe"]
STATE_OPERATIONS = ("load", "save")
# A spent budget is not an error: it defers the round (`m365_delivery_budget_deferrals_total`).
LOOKUP_ERROR_REASONS = tuple(
    reason for reason in FailureReason if reason is not FailureReason.BUDGET
)


@dataclass(slots=True)
class DeliveryStats:
    """Counters of one probe since the exporter started."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    clock_skew: int = 0
    cleanup_failures: int = 0
    abandoned: int = 0
    lookup_errors: Counter[str] = field(default_factory=Counter)  # FailureReason value


@dataclass(frozen=True, slots=True)
class ProbeSeries:
    """What one probe's series are rendered from."""

    probe: str
    tenant: str
    stats: DeliveryStats
    view: ProbeView
    pending: int


def render(
    probes: Iterable[ProbeSeries],
    budget_deferrals: Mapping[str, int],
    state_errors: Mapping[str, int],
) -> Iterator[Metric]:
    """Every delivery family, one series per probe (or tenant, or state operation)."""
    fam = _Families()
    for series in sorted(probes, key=lambda s: s.probe):
        fam.add(series)
    deferrals = CounterMetricFamily(
        "m365_delivery_budget_deferrals",
        "Polling rounds in which a tenant's mailbox look-ups waited because the shared Graph "
        "request budget (kept for message trace) was low.",
        labels=["tenant"],
    )
    for tenant, count in sorted(budget_deferrals.items()):
        deferrals.add_metric([tenant], float(count))
    errors = CounterMetricFamily(
        "m365_delivery_state_errors",
        "State file reads (load) or writes (save) that failed; the exporter continues.",
        labels=["operation"],
    )
    for operation in STATE_OPERATIONS:
        errors.add_metric([operation], float(state_errors.get(operation, 0)))
    yield from fam.all()
    yield from (deferrals, errors)


class _Families:
    def __init__(self) -> None:
        self.success = GaugeMetricFamily(
            "m365_delivery_success",
            "Whether the newest probe mail with a known fate arrived in a non-junk folder in "
            "time (1) or landed in Junk Email or was lost (0).",
            labels=LABELS,
        )
        self.latency = HistogramMetricFamily(
            "m365_delivery_latency_seconds",
            "Time from the end of the SMTP submission (exporter clock) to receivedDateTime in "
            "the recipient mailbox (server clock), for mails found (delivered, junk, late).",
            labels=LABELS,
        )
        self.pending = GaugeMetricFamily(
            "m365_delivery_pending",
            "Probe mails sent and not yet found, still within their timeout.",
            labels=LABELS,
        )
        self.outcomes = CounterMetricFamily(
            "m365_delivery_outcomes",
            "Probe mails by outcome: delivered, junk, lost (not found by the timeout) and late "
            "(found after being counted lost).",
            labels=[*LABELS, "outcome"],
        )
        self.lost = CounterMetricFamily(
            "m365_delivery_lost",
            "Probe mails not found in the recipient mailbox by the timeout.",
            labels=LABELS,
        )
        self.junk = CounterMetricFamily(
            "m365_delivery_junk",
            "Probe mails found in time in the Junk Email folder.",
            labels=LABELS,
        )
        self.auth = GaugeMetricFamily(
            "m365_delivery_auth_result",
            "SPF, DKIM, DMARC and compauth verdicts in the Authentication-Results header of "
            "the newest probe mail found.",
            labels=[*LABELS, "check", "result"],
        )
        self.trace = GaugeMetricFamily(
            "m365_delivery_trace_status",
            "Message-trace status of the newest probe mail seen in the trace.",
            labels=[*LABELS, "status"],
        )
        self.skew = CounterMetricFamily(
            "m365_delivery_clock_skew",
            "Probe mails received (mailbox clock) before they were sent (exporter clock) by "
            "more than the 1 s precision of receivedDateTime; their latency counts as 0.",
            labels=LABELS,
        )
        self.cleanup_failures = CounterMetricFamily(
            "m365_delivery_cleanup_failures",
            "Found probe mails that could not be deleted from the mailbox.",
            labels=LABELS,
        )
        self.abandoned = CounterMetricFamily(
            "m365_delivery_abandoned",
            "Probe mails given up on without an outcome: no look-up succeeded between their "
            "timeout and the end of the grace period.",
            labels=LABELS,
        )
        self.lookup_errors = CounterMetricFamily(
            "m365_delivery_lookup_errors",
            "Failed mailbox requests (look-ups, folder reads) by reason.",
            labels=[*LABELS, "reason"],
        )

    def add(self, series: ProbeSeries) -> None:
        labels = [series.tenant, series.probe]
        stats, view = series.stats, series.view
        if view.success is not None:
            self.success.add_metric(labels, view.success)
        self.latency.add_metric(labels, stats.latency.buckets(), stats.latency.sum)
        self.pending.add_metric(labels, float(series.pending))
        for outcome in Outcome:
            self.outcomes.add_metric([*labels, outcome.value], float(stats.outcomes[outcome]))
        self.lost.add_metric(labels, float(stats.outcomes[Outcome.LOST]))
        self.junk.add_metric(labels, float(stats.outcomes[Outcome.JUNK]))
        for check, result in sorted(view.auth.items()):
            self.auth.add_metric([*labels, check, result], 1.0)
        if view.trace_status is not None:
            self.trace.add_metric([*labels, view.trace_status], 1.0)
        self.skew.add_metric(labels, float(stats.clock_skew))
        self.cleanup_failures.add_metric(labels, float(stats.cleanup_failures))
        self.abandoned.add_metric(labels, float(stats.abandoned))
        for reason in LOOKUP_ERROR_REASONS:
            count = stats.lookup_errors[reason.value]
            self.lookup_errors.add_metric([*labels, reason.value], float(count))

    def all(self) -> tuple[Metric, ...]:
        return (
            self.success,
            self.latency,
            self.pending,
            self.outcomes,
            self.lost,
            self.junk,
            self.auth,
            self.trace,
            self.skew,
            self.cleanup_failures,
            self.abandoned,
            self.lookup_errors,
        )
