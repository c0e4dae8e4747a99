"""Message trace over HTTP: shapes, filters, windows, paging, auth, throttling, details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from m365_emulator.graph.token import SMTP_SCOPE
from m365_emulator.state import EmulatorState, TraceRow
from tests.support.clock import ManualClock
from tests.support.graph import FABRIKAM, GraphService, fetch_token
from tests.support.trace import trace_row

TRACES = "/v1.0/admin/exchange/tracing/messageTraces"
HOUR = 3600.0


class Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


async def call(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None,
    params: dict[str, str] | None = None,
) -> Answer:
    headers = {"client-request-id": "c0ffee00-0000-4000-8000-000000000001"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.get(url, params=params, headers=headers) as response:
        return Answer(response.status, await response.json(), dict(response.headers))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(clock: ManualClock, hours: float, end_offset: float = 0) -> str:
    end = clock() - end_offset
    return f"receivedDateTime ge {iso(end - hours * HOUR)} and receivedDateTime le {iso(end)}"


async def test_list_answers_graph_shape_newest_first(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    older = trace_row(clock() - 2 * HOUR, status="failed")
    newer = trace_row(clock() - HOUR, recipient="colleague@contoso.com")
    for row in (newer, older):
        graph_state.add_trace_row(row)

    answer = await call(session, service.base_url + TRACES, token, {"$filter": window(clock, 3)})

    assert answer.status == 200
    assert answer.body == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces",
        "value": [newer.to_graph(), older.to_graph()],
    }
    assert answer.body["value"][0]["receivedDateTime"] == iso(clock() - HOUR)
    assert answer.headers["client-request-id"] == "c0ffee00-0000-4000-8000-000000000001"
    assert answer.headers["request-id"]


async def test_list_shows_only_the_callers_visible_rows(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    mine = trace_row(clock() - 600)
    graph_state.add_trace_row(mine)
    graph_state.add_trace_row(trace_row(clock() - 600, tenant=FABRIKAM.name))
    graph_state.add_trace_row(trace_row(clock() - 600, visible_at=clock() + 60))  # still lagging

    answer = await call(session, service.base_url + TRACES, token)

    assert [row["id"] for row in answer.body["value"]] == [mine.id]


async def test_without_filter_the_last_48_hours_are_searched(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    inside = trace_row(clock() - 47 * HOUR)
    graph_state.add_trace_row(inside)
    graph_state.add_trace_row(trace_row(clock() - 49 * HOUR))

    answer = await call(session, service.base_url + TRACES, token)

    assert [row["id"] for row in answer.body["value"]] == [inside.id]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("senderAddress eq 'BOSS@contoso.com'", {"boss"}),
        ("recipientAddress eq 'colleague@contoso.com'", {"internal"}),
        ("status eq 'failed'", {"failed"}),
        ("toIP eq '198.51.100.25'", {"boss", "failed", "plain"}),
        ("contains(subject,'urgent')", {"boss"}),
        ("startsWith(subject,'Weekly') and status eq 'delivered'", {"internal", "plain"}),
        ("endsWith(subject,'report')", {"failed", "internal", "plain"}),
        ("status eq 'failed' or status eq 'delivered'", {"boss", "failed", "internal", "plain"}),
    ],
)
async def test_filter_conditions(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
    condition: str,
    expected: set[str],
) -> None:
    rows = {
        "boss": trace_row(clock() - 60, sender="boss@contoso.com", subject="URGENT numbers"),
        "failed": trace_row(clock() - 120, status="failed"),
        "internal": trace_row(clock() - 180, recipient="colleague@contoso.com"),
        "plain": trace_row(clock() - 240),
    }
    for row in rows.values():
        graph_state.add_trace_row(row)
    names = {row.id: name for name, row in rows.items()}

    answer = await call(
        session,
        service.base_url + TRACES,
        token,
        {"$filter": f"{window(clock, 1)} and {condition}"},
    )

    assert answer.status == 200
    assert {names[row["id"]] for row in answer.body["value"]} == expected


async def test_paging_is_stable_while_rows_are_appended(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    original = [trace_row(clock() - 3000 + index * 60) for index in range(7)]
    for row in original:
        graph_state.add_trace_row(row)
    late_but_old = trace_row(clock() - 3500)  # appended later, sorts after the cursor
    brand_new = trace_row(clock() - 30)  # appended later, sorts before the cursor
    params = {"$filter": window(clock, 1), "$top": "3"}

    pages: list[list[str]] = []
    url: str | None = service.base_url + TRACES
    while url is not None:
        answer = await call(session, url, token, params if not pages else None)
        assert answer.status == 200
        pages.append([row["id"] for row in answer.body["value"]])
        url = answer.body.get("@odata.nextLink")
        if url is not None:
            assert url.startswith(f"{service.base_url}{TRACES}?$skiptoken=")
        if len(pages) == 1:
            graph_state.add_trace_row(late_but_old)
            graph_state.add_trace_row(brand_new)

    newest_first = [row.id for row in reversed(original)]
    assert pages == [newest_first[:3], newest_first[3:6], [newest_first[6], late_but_old.id]]


async def test_a_full_page_of_5000_is_allowed_and_5001_is_not(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    good = await call(session, service.base_url + TRACES, token, {"$top": "5000"})
    bad = [
        await call(session, service.base_url + TRACES, token, {"$top": top})
        for top in ("0", "5001", "ten")
    ]

    assert good.status == 200
    assert [answer.status for answer in bad] == [400, 400, 400]
    assert "from 1 to 5000" in bad[1].error["message"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$filter": "receivedDateTime ge"}, "Syntax error"),
        ({"$filter": "size eq 5"}, "Could not find a property named 'size'"),
        ({"$orderby": "receivedDateTime"}, "'$orderby' is not supported"),
        ({"$skiptoken": "garbage"}, "$skiptoken value is invalid"),
        ({"$filter": "receivedDateTime ge 2026-01-20T00:00:00Z"}, "Both 'receivedDateTime ge'"),
    ],
)
async def test_bad_queries_get_graph_bad_request(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    params: dict[str, str],
    fragment: str,
) -> None:
    answer = await call(session, service.base_url + TRACES, token, params)

    assert answer.status == 400
    assert answer.error["code"] == "BadRequest"
    assert fragment in answer.error["message"]
    inner = answer.error["innerError"]
    assert inner["client-request-id"] == "c0ffee00-0000-4000-8000-000000000001"
    assert inner["request-id"] == answer.headers["request-id"]
    assert inner["date"] == "2026-01-21T12:53:20"


@pytest.mark.parametrize(
    ("hours", "end_offset", "fragment"),
    [
        (241, 0, "must not span more than 10 days"),
        (24, 89.5 * 24 * HOUR, "within the last 90 days"),
        (1, -60, "must not be in the future"),
    ],
)
async def test_window_limits(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    clock: ManualClock,
    hours: float,
    end_offset: float,
    fragment: str,
) -> None:
    params = {"$filter": window(clock, hours, end_offset)}

    answer = await call(session, service.base_url + TRACES, token, params)

    assert answer.status == 400 and fragment in answer.error["message"]


async def test_requests_need_an_unexpired_graph_token(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    clock: ManualClock,
) -> None:
    smtp_token = await fetch_token(session, service.base_url, scope=SMTP_SCOPE)
    url = service.base_url + TRACES

    missing = await call(session, url, None)
    unknown = await call(session, url, "eyJ0eXAiOiJKV1QifQ.e30.c2ln")
    wrong_audience = await call(session, url, smtp_token)
    clock.advance(3600)
    expired = await call(session, url, token)

    answers = [missing, unknown, wrong_audience, expired]
    assert [answer.status for answer in answers] == [401] * 4
    assert {answer.error["code"] for answer in answers} == {"InvalidAuthenticationToken"}
    assert [answer.error["message"] for answer in answers] == [
        "Access token is empty.",
        "Access token validation failure.",
        "Invalid audience.",
        "Lifetime validation failed, the token is expired.",
    ]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer realm=")


async def test_throttled_at_request_101_per_tenant_until_the_window_rolls(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    row = trace_row(clock() - 60)
    graph_state.add_trace_row(row)
    details = f"{service.base_url}{TRACES}/{row.id}/getDetailsByRecipient(recipientAddress='x@y.z')"
    other_tenant = await fetch_token(session, service.base_url, tenant=FABRIKAM)

    statuses = []
    for index in range(100):
        answer = await call(session, details if index % 2 else service.base_url + TRACES, token)
        statuses.append(answer.status)
        if index == 49:
            clock.advance(100)
    throttled = await call(session, service.base_url + TRACES, token)
    neighbour = await call(session, service.base_url + TRACES, other_tenant)

    assert statuses == [200] * 100
    assert throttled.status == 429
    assert throttled.error["code"] == "TooManyRequests"
    assert throttled.headers["Retry-After"] == "200"  # the first 50 leave the window then
    assert neighbour.status == 200
    clock.advance(200)
    assert (await call(session, service.base_url + TRACES, token)).status == 200


@pytest.mark.parametrize(
    ("status", "recipient", "events"),
    [
        ("delivered", "colleague@contoso.com", ["Receive", "Deliver"]),
        ("delivered", "someone@example.net", ["Receive", "Send external"]),
        ("failed", "nobody@contoso.com", ["Receive", "Fail"]),
        ("filteredAsSpam", "colleague@contoso.com", ["Receive", "Deliver"]),
        ("pending", "someone@example.net", ["Receive", "Defer"]),
        ("quarantined", "someone@example.net", ["Receive", "Quarantine"]),
        ("gettingStatus", "someone@example.net", ["Receive"]),
    ],
)
async def test_details_by_recipient_follow_the_status(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
    status: str,
    recipient: str,
    events: list[str],
) -> None:
    row = trace_row(clock() - 60, status=status, recipient=recipient)
    graph_state.add_trace_row(row)
    address = recipient.upper().replace("@", "%40")
    url = f"{service.base_url}{TRACES}/{row.id}/getDetailsByRecipient(recipientAddress='{address}')"

    answer = await call(session, url, token)

    assert answer.status == 200
    assert answer.body["@odata.context"] == (
        "https://graph.microsoft.com/v1.0/$metadata"
        "#Collection(microsoft.graph.exchangeMessageTraceDetail)"
    )
    details = answer.body["value"]
    assert [detail["event"] for detail in details] == events
    assert details[0] == {
        "id": details[0]["id"],
        "messageId": row.message_id,
        "dateTime": iso(row.received_at),
        "event": "Receive",
        "action": "",
        "description": details[0]["description"],
        "data": '<root><MEP Name="ClientIP" String="203.0.113.7"/>'
        f'<MEP Name="ServerIP" String="{row.to_ip}"/></root>',
    }
    assert len({detail["id"] for detail in details}) == len(details)


async def test_details_for_unknown_traces_and_recipients(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    row = trace_row(clock() - 60)
    foreign = trace_row(clock() - 60, tenant=FABRIKAM.name)
    for each in (row, foreign):
        graph_state.add_trace_row(each)

    def url(trace: TraceRow, call_segment: str) -> str:
        return f"{service.base_url}{TRACES}/{trace.id}/{call_segment}"

    other_recipient = await call(
        session, url(row, "getDetailsByRecipient(recipientAddress='other@x.y')"), token
    )
    other_tenant = await call(
        session,
        url(foreign, f"getDetailsByRecipient(recipientAddress='{foreign.recipient}')"),
        token,
    )
    bad_segment = await call(session, url(row, "getDetails()"), token)

    assert (other_recipient.status, other_recipient.body["value"]) == (200, [])
    assert (other_tenant.status, other_tenant.error["code"]) == (404, "ResourceNotFound")
    assert bad_segment.status == 400
    assert bad_segment.error["message"] == "Resource not found for the segment 'getDetails()'."


async def test_beta_answers_with_capitalised_status(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    graph_state: EmulatorState,
    clock: ManualClock,
) -> None:
    graph_state.add_trace_row(trace_row(clock() - 60, status="filteredAsSpam"))

    answer = await call(
        session, f"{service.base_url}/beta/admin/exchange/tracing/messageTraces", token
    )

    assert answer.body["@odata.context"].startswith("https://graph.microsoft.com/beta/$metadata#")
    assert [row["status"] for row in answer.body["value"]] == ["FilteredAsSpam"]


async def test_unknown_graph_segments_are_bad_requests(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    answer = await call(session, f"{service.base_url}/v1.0/admin/exchange/tracing/nothing", token)

    assert answer.status == 400
    assert answer.error["message"] == "Resource not found for the segment 'nothing'."
