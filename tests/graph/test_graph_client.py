"""GraphClient against the emulator: the shared budget, wire counting, endpoints, tokens."""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pytest

from m365_emulator.state import EmulatorState, TraceRow
from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.endpoints import EndpointKind
from m365_smtp_exporter.graph.errors import (
    BudgetExhaustedError,
    ForeignRequestError,
    GraphAuthError,
)
from m365_smtp_exporter.graph.trace import GraphTracePages
from m365_smtp_exporter.graph.windows import PullWindow
from tests.support.clock import ManualClock
from tests.support.graph import PROBE, ClientFactory, EmulatorTokens, GraphService
from tests.support.trace import PullerFactory, Sink, add_rows, stored_message, trace_row

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.request_information import RequestInformation


def details_request(client: GraphClient, row: TraceRow) -> RequestInformation:
    traces = client.service.admin.exchange.tracing.message_traces
    item = traces.by_exchange_message_trace_id(row.id)
    info: RequestInformation = item.get_details_by_recipient_with_recipient_address(
        row.recipient
    ).to_get_request_information()
    return info


async def test_budget_is_shared_by_every_caller_and_never_exceeded(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(23)])
    budget_clock = ManualClock(0.0)
    budget = RequestBudget(limit=5, clock=budget_clock)
    client = make_client(budget=budget)
    other_client = make_client(budget=budget)  # e.g. a second component of the same tenant
    sink = Sink()
    puller = make_puller(client, sink, page_size=5)  # needs 5 pages

    details = orjson.loads(await client.get_bytes(details_request(client, rows[0])))
    starved = await puller.pull()
    with pytest.raises(BudgetExhaustedError):
        await other_client.get_bytes(details_request(other_client, rows[1]))
    seen_while_starved = service.traffic.responses()
    delivered_while_starved = len(sink.records)
    budget_clock.advance(300.0)
    fed = await puller.pull()

    assert [event["event"] for event in details["value"]] == ["Receive", "Send external"]
    # the four pages read are committed; the next pull continues with the fifth
    assert starved.outcome == "budget" and delivered_while_starved == 4 * 5
    assert seen_while_starved == {"trace.200": 5}  # the limit, not one more
    assert client.requests.count(EndpointKind.TRACE_DETAILS, 200) == 1
    # then the fifth page and the overlap's three pages (14 rows, all already delivered)
    assert client.requests.count(EndpointKind.TRACE, 200) == 4 + 1 + 3
    assert other_client.requests.requests == {}
    assert fed.ok and sink.id_counts() == {row.id: 1 for row in rows}
    assert service.traffic.responses() == {"trace.200": 9}
    assert budget.remaining() == 1 and budget.spent() == 4


async def test_requests_sent_through_the_typed_sdk_still_spend_budget(
    graph_state: EmulatorState, clock: ManualClock, make_client: ClientFactory
) -> None:
    add_rows(graph_state, [trace_row(clock() - 60)])
    client = make_client(budget=RequestBudget(limit=10, clock=ManualClock(0.0)))

    page = await client.service.admin.exchange.tracing.message_traces.get()

    assert page is not None and page.value is not None and len(page.value) == 1
    assert client.budget.spent() == 1
    assert client.requests.count(EndpointKind.TRACE, 200) == 1


async def test_mailbox_requests_are_counted_but_spend_no_trace_budget(
    graph_state: EmulatorState, clock: ManualClock, make_client: ClientFactory
) -> None:
    mailbox = graph_state.mailbox(PROBE)
    assert mailbox is not None
    mailbox.messages.append(stored_message(clock() - 30))
    client = make_client()

    body = orjson.loads(await client.get_bytes(_messages_request(client)))

    assert len(body["value"]) == 1
    assert client.requests.count(EndpointKind.MAIL, 200) == 1
    assert client.budget.spent() == 0


def _messages_request(client: GraphClient) -> RequestInformation:
    info: RequestInformation = client.service.users.by_user_id(
        PROBE
    ).messages.to_get_request_information()
    return info


async def test_graph_pages_parse_the_beta_capitalised_statuses(
    graph_state: EmulatorState, clock: ManualClock, make_client: ClientFactory
) -> None:
    statuses = ["delivered", "filteredAsSpam", "unknownFutureValue", "brandNewStatus"]
    add_rows(
        graph_state, [trace_row(clock() - 10 * i - 1, status=s) for i, s in enumerate(statuses)]
    )
    pages = GraphTracePages(make_client(version="beta"), ["contoso.com"])

    page = await pages.first_page(PullWindow(int(clock()) - 600, int(clock())), top=10)

    assert sorted(record.status for record in page.records) == sorted(
        ["delivered", "filteredasspam", "unknown", "unknown"]
    )
    assert page.next_link is None


async def test_a_foreign_next_link_gets_no_token(
    service: GraphService, tokens: EmulatorTokens, make_client: ClientFactory
) -> None:
    client = make_client()
    foreign = (
        service.base_url.replace("127.0.0.1", "localhost")
        + "/v1.0/admin/exchange/tracing/messageTraces"
    )

    with pytest.raises(ForeignRequestError):
        await client.get_bytes(GraphClient.request_for_url(foreign))

    assert tokens.issued == []  # the token provider was not even asked
    assert client.requests.requests == {}  # and nothing went on the wire
    assert client.requests.refused_requests == 1


async def test_plain_http_to_a_remote_host_is_refused_before_sending(
    tokens: EmulatorTokens, make_client: ClientFactory
) -> None:
    client = make_client(base_url="http://graph.invalid/v1.0")

    with pytest.raises(GraphAuthError, match="plain http"):
        await client.get_bytes(GraphClient.request_for_url("http://graph.invalid/v1.0/users"))

    assert client.requests.requests == {}


async def test_client_from_tenant_config_uses_its_base_url_scope_and_budget(
    service: GraphService, tokens: EmulatorTokens
) -> None:
    tenant = TenantConfig(
        tenant_id="t",
        client_id="c",
        graph_base_url=f"{service.base_url}/v1.0/",
        graph_budget=7,
    )
    options: dict[str, Any] = {"max_retries": 0}
    async with GraphClient.for_tenant("contoso", tenant, tokens, **options) as client:
        body = await client.get_bytes(_messages_request(client))

    assert client.base_url == f"{service.base_url}/v1.0"
    assert client.budget.limit == 7
    assert orjson.loads(body)["value"] == []
