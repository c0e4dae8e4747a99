"""Microsoft's 2025 rules for busy mailboxes, through real SMTP sessions.

Over 30 messages a minute submission is delayed, never refused; only the concurrent
connection limit answers 432 4.3.2, and only the daily recipient limit answers 554 5.2.0.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState
from tests.support.clock import ManualClock
from tests.support.poll import eventually
from tests.support.smtp_emulator import PASSWORD, connected, logged_in, message

INBOX = "probe-inbox@contoso.com"
SENDER = "probe@contoso.com"


async def test_thirty_first_message_in_a_minute_is_delayed_not_refused(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    client = await logged_in(emulator)
    mail = message(SENDER, [INBOX])
    for _ in range(30):
        errors, reply = await client.sendmail(SENDER, [INBOX], mail)
        assert errors == {} and reply.startswith("2.0.0 OK")
    held = asyncio.create_task(client.sendmail(SENDER, [INBOX], mail))
    await eventually(lambda: emulator.held_submissions[SENDER] == 1)
    still_waiting = not held.done()
    # the next free slot: once the first second of the full minute has left the window
    wait = emulator.ledger.message_slot(SENDER, 30) - clock()
    clock.advance(61)
    errors, reply = await asyncio.wait_for(held, 10.0)
    await client.quit()
    assert still_waiting
    assert wait == 61.0
    assert errors == {}
    assert reply.startswith("2.0.0 OK")
    assert emulator.delayed_submissions[SENDER] == 1
    assert not emulator.held_submissions
    assert not [key for key in emulator.replies if key.startswith(("4", "5"))]


async def test_held_messages_queue_in_order_across_connections(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    emulator.ledger.record_history(SENDER, [INBOX] * 1, clock())
    for _ in range(29):
        emulator.ledger.record_history(SENDER, [INBOX], clock())
    clients = [await logged_in(emulator) for _ in range(2)]
    mail = message(SENDER, [INBOX])
    first = asyncio.create_task(clients[0].sendmail(SENDER, [INBOX], mail))
    await eventually(lambda: emulator.held_submissions[SENDER] == 1)
    second = asyncio.create_task(clients[1].sendmail(SENDER, [INBOX], mail))
    await eventually(lambda: emulator.held_submissions[SENDER] == 2)
    clock.advance(61)  # one slot frees for both: they were queued in the same second
    await asyncio.wait_for(asyncio.gather(first, second), 10.0)
    for client in clients:
        await client.quit()
    assert emulator.delayed_submissions[SENDER] == 2
    assert emulator.ledger.messages_last_minute(SENDER) == 2


async def test_lower_per_minute_limit_of_a_mailbox_is_honoured(
    emulator: SmtpEmulator, state: EmulatorState, clock: ManualClock
) -> None:
    mailbox = state.mailbox(SENDER)
    assert mailbox is not None
    mailbox.messages_per_minute = 2
    client = await logged_in(emulator)
    mail = message(SENDER, [INBOX])
    for _ in range(2):
        await client.sendmail(SENDER, [INBOX], mail)
    held = asyncio.create_task(client.sendmail(SENDER, [INBOX], mail))
    await eventually(lambda: emulator.held_submissions[SENDER] == 1)
    clock.advance(61)
    await asyncio.wait_for(held, 10.0)
    await client.quit()
    assert emulator.delayed_submissions[SENDER] == 1


async def test_fourth_concurrent_connection_answers_microsofts_text(
    emulator: SmtpEmulator,
) -> None:
    clients = [await logged_in(emulator) for _ in range(4)]
    other = await logged_in(emulator, "user001@contoso.com")
    first_three = [(await client.mail(SENDER)).code for client in clients[:3]]
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await clients[3].mail(SENDER)
    other_mailbox = await other.mail("user001@contoso.com")
    await clients[0].quit()  # frees a slot
    after_quit = await clients[3].mail(SENDER)
    for client in [*clients[1:], other]:
        await client.quit()
    assert first_three == [250, 250, 250]
    assert (refused.value.code, refused.value.message) == (
        432,
        "4.3.2 Concurrent connections limit exceeded",
    )
    assert other_mailbox.code == 250
    assert after_quit.code == 250
    assert emulator.replies["432 4.3.2"] == 1


async def test_connection_limit_can_answer_the_sender_thread_text(
    emulator: SmtpEmulator,
) -> None:
    emulator.faults.connection_limit_text = "sender_thread"
    clients = [await logged_in(emulator) for _ in range(4)]
    for client in clients[:3]:
        await client.mail(SENDER)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await clients[3].mail(SENDER)
    for client in clients:
        await client.quit()
    assert (refused.value.code, refused.value.message) == (
        432,
        "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
    )


async def test_daily_limit_is_the_only_554_5_2_0(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    emulator.ledger.record_history(SENDER, [f"r{n}@contoso.com" for n in range(9_999)], clock())
    client = await logged_in(emulator)
    within, _ = await client.sendmail(SENDER, [INBOX], message(SENDER, [INBOX]))
    with pytest.raises(aiosmtplib.SMTPDataError) as over:
        await client.sendmail(SENDER, [INBOX], message(SENDER, [INBOX]))
    await client.quit()
    assert within == {}
    assert (over.value.code, over.value.message.split(";")[0]) == (
        554,
        "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    )
    assert emulator.ledger.recipients_last_day(SENDER) == 10_000


@pytest.mark.parametrize("mechanism", ["login", "plain"])
async def test_tenant_with_basic_auth_off_refuses_passwords(
    emulator: SmtpEmulator, state: EmulatorState, mechanism: str
) -> None:
    state.tenants["contoso"].basic_auth_enabled = False
    client = await connected(emulator)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        if mechanism == "login":
            await client.auth_login(SENDER, PASSWORD)
        else:
            await client.auth_plain(SENDER, PASSWORD)
    await client.quit()
    assert (refused.value.code, refused.value.message) == (
        550,
        "5.7.30 Basic authentication is not supported for Client Submission",
    )
    assert emulator.replies["550 5.7.30"] == 1


async def test_client_that_hangs_up_while_held_frees_the_hold(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    for _ in range(30):
        emulator.ledger.record_history(SENDER, [INBOX], clock())
    client = await logged_in(emulator)
    held = asyncio.create_task(client.sendmail(SENDER, [INBOX], message(SENDER, [INBOX])))
    await eventually(lambda: emulator.held_submissions[SENDER] == 1)
    client.close()
    await eventually(lambda: not emulator.held_submissions)
    with pytest.raises(aiosmtplib.SMTPException):
        await held
    assert emulator.delayed_submissions[SENDER] == 1
    assert not emulator.delivery.records  # never accepted, never delivered
