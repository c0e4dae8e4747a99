"""Injected Graph and token-endpoint faults, delays, counters and the HTTP control API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from m365_emulator.graph.api import GraphSettings
from m365_emulator.graph.faults import (
    EndpointKind,
    GraphFault,
    GraphFaults,
    InjectedFault,
)
from m365_emulator.graph.http_common import GRAPH_SCOPE
from tests.support.clock import ManualClock
from tests.support.graph import CONTOSO, PROBE, GraphService, graph_service, new_state

TRACES = "/v1.0/admin/exchange/tracing/messageTraces"
MESSAGES = f"/v1.0/users/{quote(PROBE)}/messages"


class RecordingSleep:
    """Stands in for asyncio.sleep and remembers how long the app wanted to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def service(clock: ManualClock, sleep: RecordingSleep) -> AsyncIterator[GraphService]:
    settings = GraphSettings(trace_requests_per_window=3)
    async with graph_service(new_state(clock), settings=settings, sleep=sleep) as running:
        yield running


async def get(
    session: aiohttp.ClientSession, service: GraphService, path: str, token: str
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(service.base_url + path, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


async def post_token(
    session: aiohttp.ClientSession, service: GraphService
) -> tuple[int, bytes, dict[str, str]]:
    form = {
        "grant_type": "client_credentials",
        "client_id": CONTOSO.client_id,
        "client_secret": CONTOSO.client_secret,
        "scope": GRAPH_SCOPE,
    }
    url = f"{service.base_url}/{CONTOSO.tenant_id}/oauth2/v2.0/token"
    async with session.post(url, data=form) as response:
        return response.status, await response.read(), dict(response.headers)


# -- the Python API


def test_faults_are_taken_in_arming_order_by_matching_endpoint() -> None:
    faults = GraphFaults(default_retry_after=7)
    faults.inject(GraphFault.THROTTLED, 2, endpoint=EndpointKind.MAIL, retry_after=30)
    faults.inject("unavailable")

    assert faults.take_fault(EndpointKind.TRACE) == InjectedFault(GraphFault.UNAVAILABLE, 7)
    assert faults.take_fault(EndpointKind.TRACE) is None
    assert faults.take_fault(EndpointKind.MAIL) == InjectedFault(GraphFault.THROTTLED, 30)
    assert faults.take_fault(EndpointKind.MAIL) == InjectedFault(GraphFault.THROTTLED, 30)
    assert faults.take_fault(EndpointKind.MAIL) is None
    assert faults.injected() == {"trace.unavailable": 1, "mail.throttled": 2}


def test_delays_count_down_or_last_until_reset() -> None:
    faults = GraphFaults()
    faults.slow_down(0.5, 1, endpoint="trace")
    faults.slow_down(2.0)

    assert [faults.take_delay(EndpointKind.TRACE) for _ in range(3)] == [0.5, 2.0, 2.0]
    faults.reset()
    assert faults.take_delay(EndpointKind.TRACE) == 0.0
    assert faults.injected() == {"trace.delayed": 3}
    faults.reset_counters()
    assert faults.injected() == {}


@pytest.mark.parametrize(
    "arm",
    [
        lambda faults: faults.inject(GraphFault.UNAVAILABLE, 0),
        lambda faults: faults.inject("exploded"),
        lambda faults: faults.inject(GraphFault.UNAVAILABLE, endpoint="smtp"),
        lambda faults: faults.inject(GraphFault.THROTTLED, retry_after=-1),
        lambda faults: faults.slow_down(-1.0),
    ],
)
def test_invalid_arming_is_refused(arm: Any) -> None:
    with pytest.raises(ValueError):
        arm(GraphFaults())


# -- what clients see


async def test_unavailable_then_recovered(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.UNAVAILABLE, 2, endpoint=EndpointKind.TRACE, retry_after=5)

    answers = [await get(session, service, TRACES, token) for _ in range(3)]

    assert [status for status, _, _ in answers] == [503, 503, 200]
    _, body, headers = answers[0]
    assert headers["Retry-After"] == "5" and headers["request-id"]
    assert json.loads(body)["error"]["code"] == "ServiceUnavailable"
    assert service.faults.injected() == {"trace.unavailable": 2}
    assert service.traffic.responses() == {"token.200": 1, "trace.503": 2, "trace.200": 1}


async def test_throttled_answers_per_endpoint_kind(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.THROTTLED, 2)

    trace = await get(session, service, TRACES, token)
    mail = await get(session, service, MESSAGES, token)

    assert (trace[0], json.loads(trace[1])["error"]["code"]) == (429, "TooManyRequests")
    assert (mail[0], json.loads(mail[1])["error"]["code"]) == (429, "ApplicationThrottled")
    assert trace[2]["Retry-After"] == mail[2]["Retry-After"] == "1"


async def test_expired_token_is_reported_even_for_a_valid_token(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.EXPIRED_TOKEN, endpoint=EndpointKind.MAIL)

    status, body, headers = await get(session, service, MESSAGES, token)

    assert status == 401
    assert json.loads(body)["error"] == {
        "code": "InvalidAuthenticationToken",
        "message": "Lifetime validation failed, the token is expired.",
        "innerError": json.loads(body)["error"]["innerError"],
    }
    assert "WWW-Authenticate" in headers
    assert (await get(session, service, MESSAGES, token))[0] == 200


async def test_malformed_json_is_a_truncated_200(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.MALFORMED_JSON, endpoint=EndpointKind.TRACE)

    status, body, headers = await get(session, service, TRACES, token)
    _, complete, _ = await get(session, service, TRACES, token)

    assert status == 200 and headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert body and complete.startswith(body[: len(body) - 2])


@pytest.mark.parametrize(
    ("fault", "status", "error", "code"),
    [
        (GraphFault.UNAVAILABLE, 503, "temporarily_unavailable", 90033),
        (GraphFault.THROTTLED, 429, "temporarily_unavailable", 90055),
        (GraphFault.EXPIRED_TOKEN, 401, "invalid_client", 7000222),
    ],
)
async def test_token_endpoint_faults_speak_entra_id(
    session: aiohttp.ClientSession,
    service: GraphService,
    fault: GraphFault,
    status: int,
    error: str,
    code: int,
) -> None:
    service.faults.inject(fault, endpoint=EndpointKind.TOKEN, retry_after=3)

    answered, body, headers = await post_token(session, service)

    document = json.loads(body)
    assert (answered, document["error"], document["error_codes"]) == (status, error, [code])
    if fault is not GraphFault.EXPIRED_TOKEN:
        assert headers["Retry-After"] == "3"
    assert (await post_token(session, service))[0] == 200


async def test_token_endpoint_malformed_answer(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    service.faults.inject(GraphFault.MALFORMED_JSON, endpoint=EndpointKind.TOKEN)

    status, body, _ = await post_token(session, service)

    assert status == 200 and body.startswith(b'{"token_type"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_injected_faults_do_not_use_the_throttle_budget(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.UNAVAILABLE, 3, endpoint=EndpointKind.TRACE)

    statuses = [(await get(session, service, TRACES, token))[0] for _ in range(7)]

    assert statuses == [503, 503, 503, 200, 200, 200, 429]  # the budget is 3 here


async def test_delays_hold_back_only_their_endpoint(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    sleep: RecordingSleep,
) -> None:
    service.faults.slow_down(2.5, 1, endpoint=EndpointKind.MAIL)

    await get(session, service, TRACES, token)
    await get(session, service, MESSAGES, token)
    await get(session, service, MESSAGES, token)

    assert sleep.waits == [2.5]
    assert service.faults.injected() == {"mail.delayed": 1}


# -- HTTP control API


async def control(
    session: aiohttp.ClientSession,
    service: GraphService,
    method: str,
    body: object | None = None,
    query: str = "",
) -> tuple[int, Any]:
    url = f"{service.control_url}/faults{query}"
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json()


async def test_control_api_arms_reports_and_resets(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    armed = await control(
        session,
        service,
        "PUT",
        {"faults": [{"fault": "throttled", "count": 2, "endpoint": "trace"}]},
    )
    delayed = await control(
        session, service, "PUT", {"delays": [{"seconds": 0.25, "endpoint": "mail"}]}
    )
    await get(session, service, TRACES, token)
    await get(session, service, MESSAGES, token)
    _, state = await control(session, service, "GET")
    reset = await control(session, service, "DELETE", query="?counters=true")

    assert armed[0] == delayed[0] == 200
    assert armed[1]["armed"] == [
        {"fault": "throttled", "remaining": 2, "endpoint": "trace", "retry_after": 1}
    ]
    assert delayed[1]["armed"] == armed[1]["armed"]  # a list left out is kept
    assert state["armed"][0]["remaining"] == 1
    assert state["delays"] == [{"seconds": 0.25, "remaining": None, "endpoint": "mail"}]
    assert state["injected"] == {"trace.throttled": 1, "mail.delayed": 1}
    assert state["responses"] == {"token.200": 1, "trace.429": 1, "mail.200": 1}
    assert reset == (
        200,
        {"armed": [], "delays": [], "injected": {}, "responses": {}},
    )
    assert (await get(session, service, TRACES, token))[0] == 200


async def test_put_replaces_the_armed_list(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    await control(session, service, "PUT", {"faults": [{"fault": "unavailable", "count": 3}]})
    status, state = await control(session, service, "PUT", {"faults": []})
    assert status == 200 and state["armed"] == []


async def test_delete_without_query_keeps_counters(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    service.faults.inject(GraphFault.UNAVAILABLE, endpoint=EndpointKind.TRACE)
    await get(session, service, TRACES, token)
    service.faults.inject(GraphFault.UNAVAILABLE)

    status, state = await control(session, service, "DELETE")

    assert status == 200
    assert state["armed"] == [] and state["injected"] == {"trace.unavailable": 1}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"faults": [{"fault": "exploded"}]}, "faults.0.fault"),
        ({"faults": [{"fault": "throttled", "count": 0}]}, "faults.0.count"),
        ({"faults": [{"fault": "throttled", "endpoint": "smtp"}]}, "faults.0.endpoint"),
        ({"faults": [{"fault": "throttled", "colour": "red"}]}, "faults.0.colour"),
        ({"fault": "throttled"}, "fault"),
        ({"delays": [{"count": 1}]}, "delays.0.seconds"),
        ([1, 2], "body"),
    ],
)
async def test_control_api_rejects_bad_documents_naming_the_field(
    session: aiohttp.ClientSession,
    service: GraphService,
    body: object,
    fragment: str,
) -> None:
    status, answer = await control(session, service, "PUT", body)

    assert status == 400 and answer["error"].startswith(f"{fragment}:"), answer
    assert "faults" in answer["expected_body"]
    assert service.faults.snapshot()["armed"] == []


async def test_wrong_method_names_the_allowed_ones_and_the_body(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    async with session.post(
        service.control_url + "/faults", json={"fault": "throttled"}
    ) as response:
        answer = await response.json()
        allow = response.headers["Allow"]
    status, bad_query = await control(session, service, "DELETE", query="?counters=yes")

    assert response.status == 405 and allow == "GET, PUT, DELETE"
    assert answer["expected_body"]["PUT"]["faults"][0]["count"] == 1
    assert (status, bad_query["error"]) == (400, "counters: must be true or false")
    assert service.faults.snapshot()["armed"] == []
