"""429s the exporter did not cause: the tenant's other callers share Microsoft's 100 requests.

The emulator's Graph applies Microsoft's limit (100 message-trace requests per rolling 5
minutes per tenant) to every caller with a token of the tenant; here a second caller (an
admin's script, say) spends part of it over a real socket before the exporter's client asks.
"""

from __future__ import annotations

import warnings

import aiohttp
import pytest

from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.endpoints import EndpointKind
from m365_smtp_exporter.graph.errors import GraphThrottledError
from tests.support.clock import ManualClock
from tests.support.graph import ClientFactory, GraphService

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.request_information import RequestInformation

TRACES = "v1.0/admin/exchange/tracing/messageTraces"


async def other_caller_spends(
    session: aiohttp.ClientSession, service: GraphService, token: str, requests: int
) -> None:
    for _ in range(requests):
        async with session.get(
            f"{service.base_url}/{TRACES}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200


def list_request(client: GraphClient) -> RequestInformation:
    info: RequestInformation = (
        client.service.admin.exchange.tracing.message_traces.to_get_request_information()
    )
    return info


async def send_until_throttled(client: GraphClient, limit: int) -> int:
    """Trace requests until one is answered 429; how many were answered 200 before."""
    for answered in range(limit):
        try:
            await client.get_bytes(list_request(client))
        except GraphThrottledError:
            return answered
    raise AssertionError("never throttled")


async def test_a_429_while_our_own_spend_is_low_counts_as_foreign(
    service: GraphService,
    session: aiohttp.ClientSession,
    token: str,
    make_client: ClientFactory,
) -> None:
    await other_caller_spends(session, service, token, 96)
    client = make_client(budget=RequestBudget(limit=50, clock=ManualClock(0.0)))

    answered = await send_until_throttled(client, 50)

    assert answered == 4  # the tenant's 100 are spent: 96 by the other caller, 4 by us
    assert client.requests.throttled[EndpointKind.TRACE] == 1
    assert client.requests.foreign_throttled == 1
    assert service.traffic.responses() == {"token.200": 1, "trace.200": 100, "trace.429": 1}


async def test_a_429_after_we_spent_nearly_all_of_it_ourselves_is_not_foreign(
    service: GraphService,
    session: aiohttp.ClientSession,
    token: str,
    make_client: ClientFactory,
) -> None:
    await other_caller_spends(session, service, token, 5)
    client = make_client(budget=RequestBudget(limit=100, clock=ManualClock(0.0)))

    answered = await send_until_throttled(client, 100)

    assert answered == 95
    assert client.requests.throttled[EndpointKind.TRACE] == 1
    assert client.requests.foreign_throttled == 0


@pytest.mark.parametrize(("own", "foreign"), [(90, True), (91, False)])
def test_the_margin_below_microsofts_limit(own: int, foreign: bool) -> None:
    budget = RequestBudget(limit=100, clock=ManualClock(0.0))
    for _ in range(own):
        budget.record_extra()

    assert budget.throttled_by_others() is foreign


def test_the_default_budget_leaves_half_to_the_tenants_other_callers() -> None:
    assert RequestBudget().limit == 50
