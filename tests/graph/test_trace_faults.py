"""Failed pulls: each fault fails the whole pull, is counted, and the next pull catches up."""

from __future__ import annotations

import socket

import httpx
from structlog.testing import capture_logs

from m365_emulator.graph.faults import EndpointKind as EmulatorEndpoint
from m365_emulator.graph.faults import GraphFault
from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.auth import StaticTokenProvider, TokenError
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.endpoints import EndpointKind
from tests.support.clock import ManualClock
from tests.support.graph import CONTOSO, ClientFactory, GraphService, HookTransport
from tests.support.trace import PullerFactory, Sink, add_rows, trace_row


def arm_on_request(service: GraphService, number: int, fault: GraphFault) -> HookTransport:
    """A transport that arms `fault` just before the `number`-th trace request goes out."""
    seen = 0

    def before(request: httpx.Request) -> None:
        nonlocal seen
        if "messageTraces" in request.url.path:
            seen += 1
            if seen == number:
                service.faults.inject(fault, endpoint=EmulatorEndpoint.TRACE)

    return HookTransport(before)


async def test_one_429_is_survived_by_the_sdk_retry(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(4)])
    service.faults.inject(GraphFault.THROTTLED, endpoint=EmulatorEndpoint.TRACE, retry_after=1)
    client = make_client(max_retries=2)
    sink = Sink()

    result = await make_puller(client, sink, page_size=2).pull()

    assert result.ok
    assert sink.id_counts() == {row.id: 1 for row in rows}
    assert service.traffic.responses() == {"trace.429": 1, "trace.200": 2}
    assert client.requests.count(EndpointKind.TRACE, 429) == 1
    assert client.requests.count(EndpointKind.TRACE, 200) == 2
    assert client.requests.throttled[EndpointKind.TRACE] == 1
    assert client.budget.spent() == 3  # the retry spent budget too


async def test_persistent_429_fails_the_pull_and_blocks_the_budget(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60)])
    service.faults.inject(
        GraphFault.THROTTLED, count=2, endpoint=EmulatorEndpoint.TRACE, retry_after=1
    )
    budget_clock = ManualClock(0.0)
    client = make_client(max_retries=1, budget=RequestBudget(limit=10, clock=budget_clock))
    sink = Sink()
    puller = make_puller(client, sink)

    failed = await puller.pull()
    blocked = await puller.pull()
    budget_clock.advance(1.0)  # Retry-After has passed
    recovered = await puller.pull()

    assert (failed.outcome, blocked.outcome, recovered.outcome) == (
        "throttled",
        "budget",
        "success",
    )
    assert service.traffic.responses() == {"trace.429": 2, "trace.200": 1}
    assert client.requests.throttled[EndpointKind.TRACE] == 2
    assert puller.stats.pulls == {"throttled": 1, "budget": 1, "success": 1}
    assert sink.id_counts() == {rows[0].id: 1}


async def test_503_fails_the_pull_and_the_next_one_catches_up(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(3)])
    service.faults.inject(GraphFault.UNAVAILABLE, endpoint=EmulatorEndpoint.TRACE)
    sink = Sink()
    puller = make_puller(make_client(), sink)

    failed = await puller.pull()
    clock.advance(300)
    later = add_rows(graph_state, [trace_row(clock() - 10)])
    recovered = await puller.pull()

    assert failed.outcome == "unavailable" and failed.rows == 0
    assert puller.stats.pulls["unavailable"] == 1
    assert recovered.ok
    assert sink.id_counts() == {row.id: 1 for row in rows + later}


async def test_expired_token_is_an_auth_failure(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 60)])
    token = graph_state.issue_token(CONTOSO.name, CONTOSO.client_id, GRAPH_SCOPE, lifetime=60)
    client = make_client(tokens=StaticTokenProvider(token))
    puller = make_puller(client, Sink())
    clock.advance(120)  # the token has expired; the stale provider still hands it out

    with capture_logs() as logs:
        result = await puller.pull()

    assert result.outcome == "auth"
    assert result.error is not None and "expired" in result.error
    assert service.traffic.responses() == {"trace.401": 1}
    assert client.requests.count(EndpointKind.TRACE, 401) == 1
    assert puller.cursor is None
    failure = next(entry for entry in logs if entry["event"] == "trace pull failed")
    assert failure["reason"] == "auth" and failure["tenant"] == CONTOSO.name
    assert token not in repr(logs)


async def test_a_token_that_cannot_be_had_sends_nothing_and_spends_no_budget(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    class NoTokens:
        async def get_token(self, scope: str) -> str:
            raise TokenError("AADSTS7000222: the client secret has expired")

        async def close(self) -> None:
            return None

    client = make_client(tokens=NoTokens())

    result = await make_puller(client, Sink()).pull()

    assert result.outcome == "auth" and result.error is not None
    assert "AADSTS7000222" in result.error
    assert service.traffic.responses() == {}
    assert client.budget.spent() == 0


async def test_malformed_page_in_the_middle_fails_the_pull_without_gaps_or_doubles(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(11)])
    client = make_client(transport=arm_on_request(service, 3, GraphFault.MALFORMED_JSON))
    sink = Sink()
    puller = make_puller(client, sink, page_size=3)

    failed = await puller.pull()
    clock.advance(300)
    arrived = add_rows(graph_state, [trace_row(clock() - 20), trace_row(clock() - 10)])
    caught_up = await puller.pull()

    # the two pages before the broken one are committed; the next pull goes on from there
    assert failed.outcome == "malformed" and failed.rows == 2 * 3
    assert service.faults.injected() == {"trace.malformed_json": 1}
    assert puller.stats.pulls["malformed"] == 1
    assert caught_up.ok and caught_up.rows == 11 - 6 + 2
    assert sink.id_counts() == {row.id: 1 for row in rows + arrived}
    # 3 (the third broken), then the third and fourth pages again by the saved link, then
    # the overlap (13 rows: 5 pages)
    assert service.traffic.responses() == {"trace.200": 3 + 2 + 5}


async def test_malformed_page_after_the_cursor_is_set_rereads_only_that_window(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    first = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(4)])
    client = make_client(transport=arm_on_request(service, 3, GraphFault.MALFORMED_JSON))
    sink = Sink()
    puller = make_puller(client, sink, page_size=2, overlap="10m")
    await puller.pull()  # requests 1 and 2
    cursor = puller.cursor
    clock.advance(300)
    second = add_rows(graph_state, [trace_row(clock() - 5 * i - 1) for i in range(3)])

    failed = await puller.pull()  # request 3 is cut in half
    cursor_after_failure = puller.cursor
    retried = await puller.pull()

    assert failed.outcome == "malformed" and cursor_after_failure == cursor
    assert retried.ok and retried.rows == 3
    assert sink.id_counts() == {row.id: 1 for row in first + second}


async def test_timeout_fails_the_pull(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 60)])
    service.faults.slow_down(1.0, count=1, endpoint=EmulatorEndpoint.TRACE)
    sink = Sink()
    puller = make_puller(make_client(), sink, timeout=0.2)

    result = await puller.pull()

    assert result.outcome == "timeout"
    assert puller.stats.pulls["timeout"] == 1 and sink.records == []


async def test_request_timeout_of_the_client_is_a_timeout(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 60)])
    service.faults.slow_down(1.0, count=1, endpoint=EmulatorEndpoint.TRACE)
    client = make_client(request_timeout=0.2)

    result = await make_puller(client, Sink()).pull()

    assert result.outcome == "timeout"
    assert client.requests.count(EndpointKind.TRACE, "error") == 1


async def test_connection_refused_is_unavailable(
    make_client: ClientFactory, make_puller: PullerFactory
) -> None:
    with socket.socket() as unused:  # a port that was free a moment ago: nobody listens
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1.0")

    result = await make_puller(client, Sink()).pull()

    assert result.outcome == "unavailable"
    assert client.requests.count(EndpointKind.TRACE, "error") == 1


async def test_a_request_graph_refuses_is_an_http_error(
    service: GraphService, make_client: ClientFactory, make_puller: PullerFactory
) -> None:
    # an 11-day window breaks Graph's 10-day rule: 400 BadRequest
    puller = make_puller(make_client(), Sink(), lookback="11d", max_window=11 * 86_400)

    result = await puller.pull()

    assert result.outcome == "http_error"
    assert result.error is not None and "400" in result.error and "10 days" in result.error
    assert service.traffic.responses() == {"trace.400": 1}


async def test_an_unexpected_transport_failure_is_still_a_counted_failure(
    make_client: ClientFactory, make_puller: PullerFactory
) -> None:
    def explode(request: httpx.Request) -> None:
        raise RuntimeError("socket layer bug")

    client = make_client(transport=HookTransport(explode))
    puller = make_puller(client, Sink())

    result = await puller.pull()

    assert result.outcome == "http_error" and result.error is not None
    assert "RuntimeError" in result.error
    assert client.requests.count(EndpointKind.TRACE, "error") == 1
    assert puller.stats.last_pull_ok is False
