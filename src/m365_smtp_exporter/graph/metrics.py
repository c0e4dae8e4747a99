"""Graph and message-trace metrics of every tenant, as one metric source for the collector.

Register it once (`StoreCollector.add_source(metrics)`) and `track` each tenant's client and
puller; a family is rendered once with a series per tenant.

`m365_trace_lag_seconds` is the time from the newest `receivedDateTime` delivered so far to
the end of the last successful pull: Microsoft's trace delay plus any quiet period with no
mail. It is absent until a row has been seen.

`m365_trace_backfill_progress_ratio` (0..1) is the share of the span a puller set out to read
(the first back-fill, or a gap after a restart) that it has committed. Pages are committed
as they arrive, so quota figures exist from the first page on; while the ratio is below 1
they are partial (lower bounds). It is 1 once the span is read to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from m365_smtp_exporter.graph.endpoints import EndpointKind
from m365_smtp_exporter.graph.trace import PULL_OUTCOMES, TracePuller

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from m365_smtp_exporter.graph.client import GraphClient


@dataclass(frozen=True, slots=True)
class _Tenant:
    client: GraphClient
    puller: TracePuller | None


class GraphMetrics:
    """Callable metric source (`MetricSource`) over the tracked tenants."""

    def __init__(self) -> None:
        self._tenants: dict[str, _Tenant] = {}

    def track(self, client: GraphClient, puller: TracePuller | None = None) -> None:
        """Export `client`'s request counters and budget, and `puller`'s trace figures, under
        `client.tenant` (replacing what was tracked for that tenant before)."""
        self._tenants[client.tenant] = _Tenant(client, puller)

    def forget(self, tenant: str) -> None:
        self._tenants.pop(tenant, None)

    def __call__(self) -> Iterator[Metric]:
        tenants = sorted(self._tenants.items())
        yield from self._graph_metrics(tenants)
        yield from self._trace_metrics([(n, t.puller) for n, t in tenants if t.puller])

    @staticmethod
    def _graph_metrics(tenants: list[tuple[str, _Tenant]]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "m365_graph_requests",
            "Microsoft Graph requests on the wire (SDK retries included) by endpoint and "
            "HTTP status ('error' when no answer came).",
            labels=["tenant", "endpoint", "code"],
        )
        throttled = CounterMetricFamily(
            "m365_graph_throttled",
            "Microsoft Graph answers with status 429 (throttled), by endpoint.",
            labels=["tenant", "endpoint"],
        )
        foreign = CounterMetricFamily(
            "m365_graph_foreign_throttled",
            "Message-trace 429 answers received while the exporter's own requests in the "
            "rolling 5 minutes were well below Microsoft's 100 per tenant: the tenant's other "
            "callers (admins, other tools) spent the shared budget.",
            labels=["tenant"],
        )
        remaining = GaugeMetricFamily(
            "m365_graph_budget_remaining",
            "Message-trace requests the exporter may still send in the rolling 5 minutes "
            "(0 while a Retry-After runs).",
            labels=["tenant"],
        )
        limit = GaugeMetricFamily(
            "m365_graph_budget_limit",
            "Message-trace requests the exporter allows itself per rolling 5 minutes "
            "(Microsoft allows 100 per tenant).",
            labels=["tenant"],
        )
        clamped = CounterMetricFamily(
            "m365_graph_retry_after_clamped",
            "Retry-After values above the 10-minute ceiling or unreadable, replaced by the "
            "ceiling (or the default back-off).",
            labels=["tenant"],
        )
        refused = CounterMetricFamily(
            "m365_graph_requests_refused",
            "Requests never sent: a redirect or nextLink to another origin or path, a "
            "nextLink loop, or past the page cap of a pull.",
            labels=["tenant"],
        )
        oversized = CounterMetricFamily(
            "m365_graph_responses_too_large",
            "Answers abandoned past the body size cap (counted as malformed).",
            labels=["tenant"],
        )
        for name, tenant in tenants:
            stats = tenant.client.requests
            clamped.add_metric([name], float(stats.retry_after_clamped))
            refused.add_metric([name], float(stats.refused_requests))
            oversized.add_metric([name], float(stats.oversized_bodies))
            foreign.add_metric([name], float(stats.foreign_throttled))
            for (endpoint, code), count in sorted(stats.requests.items()):
                requests.add_metric([name, endpoint.value, code], float(count))
            for endpoint in EndpointKind:
                throttled.add_metric([name, endpoint.value], float(stats.throttled[endpoint]))
            remaining.add_metric([name], float(tenant.client.budget.remaining()))
            limit.add_metric([name], float(tenant.client.budget.limit))
        yield from (requests, throttled, foreign, remaining, limit, clamped, refused, oversized)

    @staticmethod
    def _trace_metrics(pullers: list[tuple[str, TracePuller]]) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "m365_trace_messages",
            "Message-trace rows seen (one per message and recipient, each counted once).",
            labels=["tenant", "status", "direction"],
        )
        success = GaugeMetricFamily(
            "m365_trace_pull_success",
            "Whether the last message-trace pull read all its pages (1) or not (0).",
            labels=["tenant"],
        )
        last_success = GaugeMetricFamily(
            "m365_trace_last_success_timestamp_seconds",
            "Unix time the last successful message-trace pull ended (0 if none since start).",
            labels=["tenant"],
        )
        lag = GaugeMetricFamily(
            "m365_trace_lag_seconds",
            "Seconds from the newest receivedDateTime seen to the last successful pull.",
            labels=["tenant"],
        )
        pulls = CounterMetricFamily(
            "m365_trace_pulls",
            "Message-trace pulls by outcome: success or the reason the pull failed.",
            labels=["tenant", "outcome"],
        )
        window = GaugeMetricFamily(
            "m365_trace_rows_window",
            "Trace rows remembered for de-duplication across overlapping pulls.",
            labels=["tenant"],
        )
        backfill = GaugeMetricFamily(
            "m365_trace_backfill_progress_ratio",
            "Share (0..1) of the trace back-fill read so far; below 1 the quota figures are "
            "partial (lower bounds).",
            labels=["tenant"],
        )
        for name, puller in pullers:
            backfill.add_metric([name], puller.backfill_progress)
            stats = puller.stats
            for (status, direction), count in sorted(stats.messages.items()):
                messages.add_metric([name, status, direction], float(count))
            if stats.last_pull_ok is not None:
                success.add_metric([name], 1.0 if stats.last_pull_ok else 0.0)
            last_success.add_metric([name], stats.last_success_at)
            if stats.lag_seconds is not None:
                lag.add_metric([name], stats.lag_seconds)
            for outcome in PULL_OUTCOMES:
                pulls.add_metric([name, outcome], float(stats.pulls[outcome]))
            window.add_metric([name], float(puller.rows_window))
        yield from (messages, success, last_success, lag, pulls, window, backfill)
