"""What happens to accepted mail: trace rows, delivery into mailboxes, lost mail."""

from __future__ import annotations

import asyncio

import pytest

from m365_emulator.smtp.delivery import (
    EXTERNAL_TO_IP,
    AcceptedMessage,
    DeliveryAgent,
    DeliveryBehaviour,
)
from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState, StoredMessage
from tests.support.clock import START, ManualClock
from tests.support.smtp_emulator import EmulatorFactory, logged_in, message

INBOX = "probe-inbox@contoso.com"


async def send(emulator: SmtpEmulator, recipients: list[str], content: bytes | None = None) -> str:
    client = await logged_in(emulator)
    try:
        errors, reply = await client.sendmail(
            "probe@contoso.com", recipients, content or message("probe@contoso.com", recipients)
        )
    finally:
        await client.quit()
    assert errors == {}
    return reply


def stored(state: EmulatorState, address: str) -> list[StoredMessage]:
    mailbox = state.mailbox(address)
    assert mailbox is not None
    return mailbox.messages


async def settle(agent: DeliveryAgent) -> None:
    await asyncio.wait_for(agent.wait_idle(), 10)


async def test_delivery_into_the_inbox_with_authentication_results(
    make_emulator: EmulatorFactory, state: EmulatorState, clock: ManualClock
) -> None:
    emulator = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.05))
    reply = await send(emulator, [INBOX])
    await settle(emulator.delivery)
    [delivered] = stored(state, INBOX)
    [record] = emulator.delivery.records
    headers = dict(delivered.headers)
    assert reply.startswith("2.0.0 OK <probe@probe-host> [Hostname=")
    assert delivered.folder == "inbox"
    assert delivered.internet_message_id == "<probe@probe-host>"
    assert delivered.subject == "probe"
    assert delivered.sender == "probe@contoso.com"
    assert delivered.body.strip() == "body of probe"
    assert delivered.headers[0][0] == "Authentication-Results"
    assert headers["Authentication-Results"] == (
        "spf=pass (sender IP is 127.0.0.1) smtp.mailfrom=contoso.com; "
        "dkim=pass (signature was verified) header.d=contoso.com;"
        "dmarc=pass action=none header.from=contoso.com;compauth=pass reason=100"
    )
    assert headers["To"] == INBOX
    assert (record.outcome, record.delay, record.stored_id) == ("inbox", 0.05, delivered.id)
    assert record.delivered_at == clock()


async def test_trace_row_appears_after_the_lag_and_turns_delivered(
    make_emulator: EmulatorFactory, state: EmulatorState, clock: ManualClock
) -> None:
    emulator = await make_emulator(
        delivery=DeliveryBehaviour(delay_seconds=0.05, trace_lag_seconds=300)
    )
    await send(emulator, [INBOX])
    [row] = state.all_trace_rows()
    visible_before_lag = state.trace_rows("contoso", START - 60, START + 60)
    await settle(emulator.delivery)
    clock.advance(299)
    still_hidden = state.trace_rows("contoso", START - 60, START + 60)
    clock.advance(1)
    visible = state.trace_rows("contoso", START - 60, START + 60)
    assert visible_before_lag == [] and still_hidden == []
    assert visible == [row]
    assert (row.sender, row.recipient, row.message_id) == (
        "probe@contoso.com",
        INBOX,
        "<probe@probe-host>",
    )
    assert (row.received_at, row.from_ip, row.to_ip, row.subject) == (
        START,
        "127.0.0.1",
        "",
        "probe",
    )
    assert row.status == "delivered"
    assert row.size > 0


async def test_pending_until_delivered_and_cancelled_on_stop(
    make_emulator: EmulatorFactory, state: EmulatorState
) -> None:
    emulator = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=600))
    await send(emulator, [INBOX])
    [row] = state.all_trace_rows()
    pending_before = (row.status, emulator.delivery.pending, len(stored(state, INBOX)))
    await emulator.stop()
    assert pending_before == ("pending", 1, 0)
    assert emulator.delivery.pending == 0
    assert row.status == "pending"
    assert stored(state, INBOX) == []


async def test_delay_range_is_drawn_per_message(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(
        delivery=DeliveryBehaviour(delay_seconds=0.01, delay_max_seconds=0.08, seed=3)
    )
    for _ in range(4):
        await send(emulator, [INBOX])
    await settle(emulator.delivery)
    delays = [record.delay for record in emulator.delivery.records]
    assert all(delay is not None and 0.01 <= delay <= 0.08 for delay in delays)
    assert len(set(delays)) == 4


async def test_junk_and_lost_mail(make_emulator: EmulatorFactory, state: EmulatorState) -> None:
    junk = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.01, junk_probability=1))
    await send(junk, [INBOX])
    await settle(junk.delivery)
    lost = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.01, drop_probability=1))
    await send(lost, ["probe@fabrikam.com"])
    await settle(lost.delivery)
    [junk_record] = junk.delivery.records
    [lost_record] = lost.delivery.records
    assert [m.folder for m in stored(state, INBOX)] == ["junkemail"]
    assert junk_record.outcome == "junkemail"
    assert stored(state, "probe@fabrikam.com") == []
    assert (lost_record.outcome, lost_record.delivered_at) == ("dropped", None)
    lost_rows = [row for row in state.all_trace_rows() if row.recipient == "probe@fabrikam.com"]
    assert {row.status for row in lost_rows} == {"pending"}


@pytest.mark.parametrize(
    ("behaviour", "status", "folders"),
    [
        ({"failed_probability": 1}, "failed", []),
        ({"quarantined_probability": 1}, "quarantined", []),
        ({"spam_probability": 1}, "filteredAsSpam", ["junkemail"]),
    ],
)
async def test_filtering_outcomes(
    make_emulator: EmulatorFactory,
    state: EmulatorState,
    behaviour: dict[str, float],
    status: str,
    folders: list[str],
) -> None:
    emulator = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.01, **behaviour))
    await send(emulator, [INBOX])
    await settle(emulator.delivery)
    [row] = state.all_trace_rows()
    assert row.status == status
    assert [m.folder for m in stored(state, INBOX)] == folders


async def test_external_unknown_and_cross_tenant_recipients(
    make_emulator: EmulatorFactory, state: EmulatorState
) -> None:
    emulator = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.01))
    await send(emulator, ["someone@example.org", "nobody@contoso.com", "probe@fabrikam.com"])
    await settle(emulator.delivery)
    rows = {(row.tenant, row.recipient): row for row in state.all_trace_rows()}
    outcomes = {record.recipient: record.outcome for record in emulator.delivery.records}
    assert outcomes == {
        "someone@example.org": "external",
        "nobody@contoso.com": "failed",
        "probe@fabrikam.com": "inbox",
    }
    assert set(rows) == {
        ("contoso", "someone@example.org"),
        ("contoso", "nobody@contoso.com"),
        ("contoso", "probe@fabrikam.com"),
        ("fabrikam", "probe@fabrikam.com"),
    }
    assert rows["contoso", "someone@example.org"].status == "delivered"
    assert rows["contoso", "someone@example.org"].to_ip == EXTERNAL_TO_IP
    assert rows["contoso", "nobody@contoso.com"].status == "failed"
    assert rows["fabrikam", "probe@fabrikam.com"].status == "delivered"
    assert rows["fabrikam", "probe@fabrikam.com"].to_ip == ""
    assert len(stored(state, "probe@fabrikam.com")) == 1


async def test_missing_message_id_is_stamped(
    make_emulator: EmulatorFactory, state: EmulatorState
) -> None:
    emulator = await make_emulator(delivery=DeliveryBehaviour(delay_seconds=0.01))
    content = b"From: probe@contoso.com\r\nSubject: no id\r\n\r\nhello\r\n"
    reply = await send(emulator, [INBOX], content)
    await settle(emulator.delivery)
    [delivered] = stored(state, INBOX)
    assert delivered.internet_message_id.startswith("<")
    assert reply.startswith(f"2.0.0 OK {delivered.internet_message_id} ")
    assert ("Message-ID", delivered.internet_message_id) in delivered.headers


def _accepted(state: EmulatorState, n: int) -> AcceptedMessage:
    content = message("probe@contoso.com", [INBOX], subject=f"m{n}")
    return AcceptedMessage("probe@contoso.com", [INBOX], content, "192.0.2.7", state.clock())


async def test_seeded_outcomes_repeat(state: EmulatorState) -> None:
    behaviour = DeliveryBehaviour(
        delay_seconds=0.0, junk_probability=0.5, spf_fail_probability=0.5, seed=11
    )
    runs = []
    for _ in range(2):
        agent = DeliveryAgent(state, behaviour)
        for n in range(20):
            agent.accept(_accepted(state, n))
        await settle(agent)
        runs.append([record.outcome for record in agent.records])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"inbox", "junkemail"}
    results = {dict(m.headers)["Authentication-Results"][:8] for m in stored(state, INBOX)}
    assert results == {"spf=pass", "spf=fail"}


async def test_authentication_failures(state: EmulatorState) -> None:
    agent = DeliveryAgent(
        state, DeliveryBehaviour(delay_seconds=0.0, spf_fail_probability=1, dkim_fail_probability=1)
    )
    agent.accept(_accepted(state, 1))
    await settle(agent)
    [delivered] = stored(state, INBOX)
    assert dict(delivered.headers)["Authentication-Results"] == (
        "spf=fail (sender IP is 192.0.2.7) smtp.mailfrom=contoso.com; "
        "dkim=fail (body hash did not verify) header.d=contoso.com;"
        "dmarc=fail action=none header.from=contoso.com;compauth=fail reason=000"
    )
