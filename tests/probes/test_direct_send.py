"""Kind `direct_send`: port 25 to the tenant MX, STARTTLS, no AUTH, through real sockets."""

from __future__ import annotations

import aiohttp

from m365_emulator.service import Emulator
from m365_smtp_exporter.probes import run_probe
from m365_smtp_exporter.smtp.result import Phase, Reason
from tests.support.send_paths import INBOX, probe


async def _put(control: aiohttp.ClientSession, path: str, body: object) -> None:
    async with control.put(f"/_emulator/paths{path}", json=body) as answer:
        assert answer.status == 200, await answer.text()


async def test_direct_send_delivers_to_an_internal_mailbox(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "direct_send"))
    assert result.success, result.detail
    assert result.tls is not None  # STARTTLS
    sent = [line.text for line in result.transcript if line.direction == "C"]
    assert not any(text.startswith("AUTH") for text in sent)
    assert emulator.mx_rules.accepted == 1
    assert [r.recipient for r in emulator.smtp.delivery.records] == [INBOX]


async def test_reject_direct_send_answers_5_7_68(
    emulator: Emulator, control: aiohttp.ClientSession
) -> None:
    await _put(control, "/mx/reject-direct-send", {"tenant": "contoso", "enabled": True})
    result = await run_probe(probe(emulator, "direct_send"))
    assert (result.failed_phase, result.reason) == (Phase.RCPT, Reason.DIRECT_SEND_REJECTED)
    rejection = result.last_rejection
    assert rejection is not None and rejection.reply.enhanced_code == "5.7.68"
    assert rejection.category == "policy" and "TenantInboundAttribution" in rejection.reply.text
    assert "RejectDirectSend" in result.detail
    # mail from another organisation is not direct send: still accepted
    other = await run_probe(probe(emulator, "direct_send", mail_from="probe@fabrikam.com"))
    assert other.success, other.detail
    await _put(control, "/mx/reject-direct-send", {"tenant": "contoso", "enabled": False})
    assert (await run_probe(probe(emulator, "direct_send"))).success


async def test_banned_sending_ip_is_blocked(
    emulator: Emulator, control: aiohttp.ClientSession
) -> None:
    await _put(control, "/mx/banned-ips", {"ip": "127.0.0.1", "banned": True})
    result = await run_probe(probe(emulator, "direct_send"))
    assert (result.failed_phase, result.reason) == (Phase.MAIL, Reason.BLOCKED)
    rejection = result.last_rejection
    assert rejection is not None and rejection.reply.enhanced_code == "5.7.606"
    assert rejection.category == "blocked" and "sender.office.com" in result.detail


async def test_throttling_4_7_500(emulator: Emulator, control: aiohttp.ClientSession) -> None:
    reply = {"reply": "451 4.7.500 Server busy. Please try again later from [127.0.0.1].",
             "command": "MAIL"}  # fmt: skip
    async with control.post("/_emulator/paths/mx/replies", json=reply) as answer:
        assert answer.status == 200
    result = await run_probe(probe(emulator, "direct_send"))
    assert (result.failed_phase, result.reason) == (Phase.MAIL, Reason.THROTTLED)
    rejection = result.last_rejection
    assert rejection is not None and (rejection.category, rejection.recoverable) == (
        "throttle",
        True,
    )


async def test_external_recipient_cannot_be_relayed(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "direct_send", rcpt_to=["someone@example.net"]))
    assert (result.failed_phase, result.reason) == (Phase.RCPT, Reason.RCPT_REJECTED)
    rejection = result.last_rejection
    assert rejection is not None and rejection.reply.enhanced_code == "5.7.54"


async def test_unknown_internal_recipient(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "direct_send", rcpt_to=["nobody@contoso.com"]))
    assert result.reason is Reason.RCPT_REJECTED
    assert result.last_rejection is not None
    assert result.last_rejection.reply.enhanced_code == "5.1.10"


async def test_port_25_refused_is_told_from_timeout(emulator: Emulator, closed_port: int) -> None:
    result = await run_probe(probe(emulator, "direct_send", port=closed_port))
    assert (result.failed_phase, result.reason) == (Phase.CONNECT, Reason.CONNECT_REFUSED)
    assert "actively refused" in result.detail


async def test_port_25_dropped_times_out(emulator: Emulator, silent_port: int) -> None:
    result = await run_probe(probe(emulator, "direct_send", port=silent_port, timeout=1))
    assert (result.failed_phase, result.reason) == (Phase.CONNECT, Reason.CONNECT_TIMEOUT)
    assert "drops outbound port 25" in result.detail


async def test_session_mode_checks_port_25_without_sending(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "direct_send", mode="session"))
    assert result.success, result.detail
    assert result.tls is not None and emulator.mx_rules.accepted == 0
