"""Every Graph and trace metric, rendered by the collector after real pulls."""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from m365_emulator.graph.faults import EndpointKind as EmulatorEndpoint
from m365_emulator.graph.faults import GraphFault
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.exposition import CachedExposition
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.metrics import GraphMetrics
from m365_smtp_exporter.store import ResultsStore
from tests.support.clock import ManualClock
from tests.support.graph import ClientFactory, GraphService
from tests.support.prom import promtool_check_metrics, samples
from tests.support.trace import PullerFactory, Sink, add_rows, trace_row

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def graph_samples(exposition: bytes) -> Samples:
    return {
        key: value
        for key, value in samples(exposition).items()
        if key[0].startswith(("m365_graph_", "m365_trace_"))
    }


def sample(name: str, value: float, **labels: str) -> Samples:
    return {(name, frozenset({"tenant": "contoso", **labels}.items())): value}


def pulls(**counts: float) -> Samples:
    outcomes = ["success", "throttled", "unavailable", "auth", "malformed", "budget"]
    outcomes += ["http_error", "timeout"]
    result: Samples = {}
    for outcome in outcomes:
        result |= sample("m365_trace_pulls_total", counts.get(outcome, 0.0), outcome=outcome)
    return result


def throttled(**counts: float) -> Samples:
    result: Samples = {}
    for endpoint in ("trace", "trace_details", "mail", "other"):
        result |= sample("m365_graph_throttled_total", counts.get(endpoint, 0.0), endpoint=endpoint)
    return result


async def test_metrics_after_a_successful_and_a_failed_pull(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    statuses = [
        ("delivered", "sender@contoso.com", "a@example.net"),
        ("delivered", "sender@contoso.com", "b@example.net"),
        ("filteredAsSpam", "sender@contoso.com", "colleague@contoso.com"),
        ("unknownFutureValue", "x@example.org", "sender@contoso.com"),
        ("somethingNew", "x@example.org", "y@example.net"),
    ]
    add_rows(
        graph_state,
        [
            trace_row(clock() - 30 - 10 * i, status=status, sender=sender, recipient=recipient)
            for i, (status, sender, recipient) in enumerate(statuses)
        ],
    )
    store = ResultsStore(clock=clock)
    client = make_client(version="beta", budget=RequestBudget(limit=50, clock=ManualClock(0.0)))
    puller = make_puller(client, Sink(), on_change=store.mark_changed)
    metrics = GraphMetrics()
    metrics.track(client, puller)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, [metrics]))
    exposition = CachedExposition(store, registry)
    version_before = store.version

    await puller.pull()
    finished_ok = clock()
    after_success = graph_samples(exposition.render())
    clock.advance(300)
    service.faults.inject(GraphFault.UNAVAILABLE, endpoint=EmulatorEndpoint.TRACE)
    await puller.pull()
    after_failure = graph_samples(exposition.render())

    assert store.version == version_before + 2  # on_change after each pull
    common = (
        sample("m365_trace_messages_total", 2, status="delivered", direction="outbound")
        | sample("m365_trace_messages_total", 1, status="filteredasspam", direction="internal")
        | sample("m365_trace_messages_total", 1, status="unknown", direction="inbound")
        | sample("m365_trace_messages_total", 1, status="unknown", direction="relay")
        | sample("m365_trace_last_success_timestamp_seconds", finished_ok)
        | sample("m365_trace_lag_seconds", 30.0)
        | sample("m365_trace_rows_window", 5)
        | sample("m365_trace_backfill_progress_ratio", 1.0)
        | sample("m365_graph_budget_limit", 50)
        | sample("m365_graph_retry_after_clamped_total", 0)
        | sample("m365_graph_requests_refused_total", 0)
        | sample("m365_graph_responses_too_large_total", 0)
        | sample("m365_graph_foreign_throttled_total", 0)
    )
    assert after_success == common | pulls(success=1) | throttled() | (
        sample("m365_trace_pull_success", 1)
        | sample("m365_graph_requests_total", 1, endpoint="trace", code="200")
        | sample("m365_graph_budget_remaining", 49)
    )
    assert after_failure == common | pulls(success=1, unavailable=1) | throttled() | (
        sample("m365_trace_pull_success", 0)
        | sample("m365_graph_requests_total", 1, endpoint="trace", code="200")
        | sample("m365_graph_requests_total", 1, endpoint="trace", code="503")
        | sample("m365_graph_budget_remaining", 48)
    )


async def test_throttling_shows_in_the_metrics_and_blocks_the_budget_gauge(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 60)])
    service.faults.inject(GraphFault.THROTTLED, endpoint=EmulatorEndpoint.TRACE, retry_after=120)
    budget_clock = ManualClock(0.0)
    client = make_client(budget=RequestBudget(limit=50, clock=budget_clock))
    puller = make_puller(client, Sink())
    metrics = GraphMetrics()
    metrics.track(client, puller)

    await puller.pull()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ResultsStore(), [metrics]))
    text = CachedExposition(ResultsStore(), registry).render()
    rendered = graph_samples(text)

    assert rendered[("m365_graph_budget_remaining", frozenset({("tenant", "contoso")}))] == 0
    assert throttled(trace=1).items() <= rendered.items()
    # one request of ours in the window: the 429 came from the tenant's other callers
    foreign = ("m365_graph_foreign_throttled_total", frozenset({("tenant", "contoso")}))
    assert rendered[foreign] == 1
    assert pulls(throttled=1).items() <= rendered.items()
    assert ("m365_trace_lag_seconds", frozenset({("tenant", "contoso")})) not in rendered
    budget_clock.advance(120)
    assert client.budget.remaining() == 49
    assert promtool_check_metrics(text) == ""


async def test_forgotten_tenants_disappear(make_client: ClientFactory) -> None:
    metrics = GraphMetrics()
    metrics.track(make_client())
    assert {family.name for family in metrics() if family.samples} == {
        "m365_graph_throttled",
        "m365_graph_foreign_throttled",
        "m365_graph_retry_after_clamped",
        "m365_graph_requests_refused",
        "m365_graph_responses_too_large",
        "m365_graph_budget_remaining",
        "m365_graph_budget_limit",
    }

    metrics.forget("contoso")

    assert [family.samples for family in metrics()] == [[]] * 15
