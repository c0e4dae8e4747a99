"""Kind `graph_sendmail`: Graph `POST /users/{id}/sendMail` against the emulated Graph."""

from __future__ import annotations

import asyncio

import aiohttp

from m365_emulator.service import Emulator
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.endpoints import EndpointKind
from m365_smtp_exporter.probes import run_probe
from m365_smtp_exporter.probes.paths import ProbePaths
from m365_smtp_exporter.smtp.message import TOKEN_HEADER
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason
from tests.support.send_paths import INBOX, probe


def assert_refused(result: ProbeResult, reason: Reason, status: int, category: str) -> None:
    assert not result.success, result
    assert (result.failed_phase, result.reason) == (Phase.DATA, reason), result.detail
    rejection = result.last_rejection
    assert rejection is not None
    assert (rejection.reply.code, rejection.category) == (status, category), rejection


async def _switch(control: aiohttp.ClientSession, path: str, body: object) -> None:
    async with control.put(f"/_emulator/paths/sendmail{path}", json=body) as answer:
        assert answer.status == 200, await answer.text()


async def _delivered(emulator: Emulator, message_id: str) -> bool:
    inbox = emulator.state.mailbox(INBOX)
    assert inbox is not None
    async with asyncio.timeout(5):
        await emulator.smtp.delivery.wait_idle()
    return any(m.internet_message_id == message_id for m in inbox.messages)


async def test_sendmail_202_and_the_mail_arrives_with_the_probe_identity(
    emulator: Emulator, graph: GraphClient
) -> None:
    result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=graph)
    assert result.success, result.detail
    assert result.recipients_accepted == 1 and result.duration > 0
    assert result.target == "graph.microsoft.com:443"
    assert await _delivered(emulator, result.message_id)
    inbox = emulator.state.mailbox(INBOX)
    assert inbox is not None
    stored = next(m for m in inbox.messages if m.internet_message_id == result.message_id)
    assert (TOKEN_HEADER, result.probe_token) in stored.headers
    assert emulator.smtp.ledger.recipients_last_day("probe@contoso.com") == 1
    # counted as a mailbox request, and it spends nothing of the message-trace budget
    assert graph.requests.total(EndpointKind.MAIL) == 1
    assert graph.budget.spent() == 0


async def test_the_dispatcher_hands_graph_probes_their_tenants_client(
    emulator: Emulator, graph: GraphClient
) -> None:
    asked: list[str] = []

    def client_for(tenant: str) -> GraphClient:
        asked.append(tenant)
        return graph

    result = await ProbePaths(client_for).run_probe(probe(emulator, "graph_sendmail"))
    assert result.success, result.detail
    assert asked == ["contoso"]


async def test_send_as_denied(
    emulator: Emulator, graph: GraphClient, control: aiohttp.ClientSession
) -> None:
    await _switch(control, "/send-as-denied", {"mailbox": "probe@contoso.com", "enabled": True})
    result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=graph)
    assert_refused(result, Reason.SEND_AS_DENIED, 403, "policy")
    assert "ErrorSendAsDenied" in result.detail


async def test_mailbox_not_enabled_for_rest(
    emulator: Emulator, graph: GraphClient, control: aiohttp.ClientSession
) -> None:
    await _switch(control, "/rest-disabled", {"mailbox": "probe@contoso.com", "enabled": True})
    result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=graph)
    assert_refused(result, Reason.MAILBOX_NOT_ENABLED, 404, "policy")


async def test_quota_exceeded(emulator: Emulator, graph: GraphClient) -> None:
    mailbox = emulator.state.mailbox("probe@contoso.com")
    assert mailbox is not None
    mailbox.recipients_per_day = 0
    result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=graph)
    assert_refused(result, Reason.QUOTA_EXCEEDED, 403, "quota")


async def test_more_than_4_concurrent_requests_are_throttled(
    emulator: Emulator, graph: GraphClient, control: aiohttp.ClientSession
) -> None:
    await _switch(control, "/processing", {"seconds": 1.0})
    config = probe(emulator, "graph_sendmail")
    results = await asyncio.gather(*(run_probe(config, graph_client=graph) for _ in range(5)))
    throttled = [r for r in results if not r.success]
    assert sum(r.success for r in results) == 4
    assert len(throttled) == 1
    assert_refused(throttled[0], Reason.THROTTLED, 429, "throttle")
    assert "MailboxConcurrency" in throttled[0].detail


async def test_an_invalid_token_is_an_auth_failure(emulator: Emulator) -> None:
    client = GraphClient(
        "contoso",
        base_url=emulator.graph_base_url,
        scope="https://graph.microsoft.com/.default",
        tokens=StaticTokenProvider("not-a-token"),
        budget=RequestBudget(),
        ca_file=emulator.ca_file,
    )
    async with client:
        result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=client)
    assert_refused(result, Reason.AUTH_FAILED, 401, "auth")


async def test_without_a_graph_client_the_probe_fails_cleanly(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "graph_sendmail"))
    assert (result.success, result.reason) == (False, Reason.AUTH_TOKEN)


async def test_graph_unreachable_is_a_connect_error(emulator: Emulator, closed_port: int) -> None:
    client = GraphClient(
        "contoso",
        base_url=f"https://127.0.0.1:{closed_port}/v1.0",
        scope="https://graph.microsoft.com/.default",
        tokens=StaticTokenProvider("token"),
        budget=RequestBudget(),
        ca_file=emulator.ca_file,
    )
    async with client:
        result = await run_probe(probe(emulator, "graph_sendmail"), graph_client=client)
    assert (result.success, result.reason) == (False, Reason.CONNECT_ERROR), result.detail


async def test_the_mailbox_request_limit_answers_429_with_retry_after(
    emulator: Emulator, graph: GraphClient
) -> None:
    # a small limit stands in for 10,000 requests per 10 minutes
    emulator.sendmail.rules.requests_per_window = 2
    config = probe(emulator, "graph_sendmail")
    first, second, third = [await run_probe(config, graph_client=graph) for _ in range(3)]
    assert first.success and second.success, (first.detail, second.detail)
    assert_refused(third, Reason.THROTTLED, 429, "throttle")
    assert "MailboxRequests" in third.detail
