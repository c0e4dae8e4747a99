"""The exporter's probe against the emulator: every emulated Microsoft 365 condition is
reported with the right reason and category, through real sockets."""

from __future__ import annotations

import ssl
import time
import warnings
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from m365_emulator.service import Emulator
from m365_emulator.world import DEMO_PASSWORD
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason
from tests.support.smtp_emulator import probe_config


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    running = Emulator()
    await running.start()
    yield running
    await running.stop()


def assert_failure(result: ProbeResult, phase: Phase, reason: Reason, category: str) -> None:
    assert not result.success, result
    assert (result.failed_phase, result.reason) == (phase, reason), result.detail
    if category:
        last = result.last_rejection
        assert last is not None and last.category == category, result.rejections


async def test_success_with_xoauth2_token(emulator: Emulator) -> None:
    token = emulator.state.issue_token("contoso", "app", "https://outlook.office365.com/.default")
    config = probe_config(emulator, auth={"mechanism": "xoauth2", "username": "probe@contoso.com"})
    result = await run_probe(config, token_provider=StaticTokenProvider(token))
    assert result.success, result.detail
    assert result.tls is not None and result.tls.version in ("TLSv1.2", "TLSv1.3")


async def test_smtp_auth_disabled_5_7_139(emulator: Emulator) -> None:
    result = await run_probe(probe_config(emulator, sender="smtp-disabled@contoso.com"))
    assert_failure(result, Phase.AUTH, Reason.AUTH_DISABLED, "auth")
    assert result.last_rejection and result.last_rejection.reply.enhanced_code == "5.7.139"


async def test_wrong_password_5_7_3(emulator: Emulator) -> None:
    config = probe_config(
        emulator,
        auth={"mechanism": "login", "username": "probe@contoso.com", "password": "nope"},
    )
    result = await run_probe(config)
    assert_failure(result, Phase.AUTH, Reason.AUTH_FAILED, "auth")


async def test_expired_xoauth2_token_5_7_3(emulator: Emulator) -> None:
    config = probe_config(emulator, auth={"mechanism": "xoauth2", "username": "probe@contoso.com"})
    result = await run_probe(config, token_provider=StaticTokenProvider("eyJunknown.token"))
    assert_failure(result, Phase.AUTH, Reason.AUTH_FAILED, "auth")


async def test_basic_auth_off_5_7_30(emulator: Emulator) -> None:
    result = await run_probe(probe_config(emulator, sender="oauth-only@contoso.com"))
    assert_failure(result, Phase.AUTH, Reason.AUTH_DISABLED, "auth")
    assert result.last_rejection and result.last_rejection.reply.enhanced_code == "5.7.30"


async def test_send_as_violation_5_7_60(emulator: Emulator) -> None:
    result = await run_probe(probe_config(emulator, mail_from="campaign@contoso.com"))
    assert_failure(result, Phase.MAIL, Reason.SEND_AS_DENIED, "policy")


async def test_concurrent_connections_4_3_2(emulator: Emulator) -> None:
    held: list[aiosmtplib.SMTP] = []
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    try:
        for _ in range(3):
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=emulator.smtp_port, tls_context=context
            )
            await client.connect()
            await client.ehlo()
            await client.login("probe@contoso.com", DEMO_PASSWORD)
            await client.mail("probe@contoso.com")
            held.append(client)
        result = await run_probe(probe_config(emulator))
    finally:
        for client in held:
            client.close()
    assert_failure(result, Phase.MAIL, Reason.THROTTLED, "throttle")
    assert result.last_rejection and result.last_rejection.reply.code == 432


async def test_thirty_messages_per_minute_delays_instead_of_refusing(emulator: Emulator) -> None:
    # a full minute whose messages leave the window within about two seconds
    now = time.time()
    for _ in range(30):
        emulator.smtp.ledger.record("probe@contoso.com", ["x@contoso.com"], at=now - 59)
    result = await run_probe(probe_config(emulator))
    assert result.success, result.detail
    assert emulator.smtp.delayed_submissions["probe@contoso.com"] == 1


async def test_too_many_recipients_per_message(emulator: Emulator) -> None:
    recipients = [f"r{i}@fabrikam.example" for i in range(501)]
    config = probe_config(emulator).model_copy(update={"rcpt_to": recipients})
    result = await run_probe(config)
    # the first 500 are accepted, the 501st refused: the message still goes out
    assert result.recipients_accepted == 500
    assert result.rejections and result.rejections[-1].reply.code == 452


async def test_daily_recipient_quota_5_2_0(emulator: Emulator) -> None:
    emulator.smtp.ledger.record_history(
        "probe@contoso.com", [f"r{i}@contoso.com" for i in range(10_000)], at=time.time() - 3600
    )
    result = await run_probe(probe_config(emulator))
    assert_failure(result, Phase.DATA, Reason.QUOTA_EXCEEDED, "quota")
    assert result.last_rejection and result.last_rejection.reply.enhanced_code == "5.2.0"


async def test_tenant_external_recipient_limit_5_7_232(emulator: Emulator) -> None:
    tenant = emulator.state.tenants["contoso"]
    per_sender = 5_000
    for n in range(tenant.terrl // per_sender + 1):
        emulator.smtp.ledger.record_history(
            f"user{n + 1:03d}@contoso.com",
            [f"r{i}@outside.example" for i in range(per_sender)],
            at=time.time() - 3600,
        )
    config = probe_config(emulator, rcpt_to=["someone@outside.example"])
    result = await run_probe(config)
    assert_failure(result, Phase.DATA, Reason.QUOTA_EXCEEDED, "quota")
    assert result.last_rejection and result.last_rejection.reply.enhanced_code == "5.7.232"


async def test_tls_below_1_2_is_refused(emulator: Emulator) -> None:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1 itself; this client offers them on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    result = await run_probe(probe_config(emulator), ssl_context=context)
    assert not result.success
    assert result.failed_phase == Phase.STARTTLS
    assert result.reason in (Reason.TLS_HANDSHAKE, Reason.TLS_VERSION)


async def test_outage_refuse_and_recovery(emulator: Emulator) -> None:
    await emulator.smtp.set_outage("refuse")
    result = await run_probe(probe_config(emulator))
    assert_failure(result, Phase.CONNECT, Reason.CONNECT_REFUSED, "")
    await emulator.smtp.set_outage("none")
    assert (await run_probe(probe_config(emulator))).success


async def test_outage_black_hole(emulator: Emulator) -> None:
    await emulator.smtp.set_outage("blackhole")
    result = await run_probe(probe_config(emulator, timeout=1))
    assert_failure(result, Phase.BANNER, Reason.BANNER_TIMEOUT, "")


async def test_slow_phase_hits_the_deadline(emulator: Emulator) -> None:
    emulator.smtp.faults.set_latency("data", 3.0)
    result = await run_probe(probe_config(emulator, timeout=1))
    assert not result.success and result.reason == Reason.TIMEOUT
    assert result.failed_phase == Phase.DATA


@pytest.mark.parametrize(
    ("reply", "command", "phase", "reason", "category"),
    [
        (
            "451 4.7.500 Access denied, please try again later",
            "MAIL",
            Phase.MAIL,
            Reason.THROTTLED,
            "throttle",
        ),
        (
            "421 4.3.2 Service not available, closing transmission channel",
            "RCPT",
            Phase.RCPT,
            Reason.SERVICE_UNAVAILABLE,
            "transient",
        ),
        (
            "550 5.1.8 Access denied, bad outbound sender",
            "MAIL",
            Phase.MAIL,
            Reason.BLOCKED,
            "blocked",
        ),
        (
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
            "RCPT",
            Phase.RCPT,
            Reason.RCPT_REJECTED,
            "recipient",
        ),
    ],
)
async def test_scripted_replies(
    emulator: Emulator, reply: str, command: str, phase: Phase, reason: Reason, category: str
) -> None:
    emulator.smtp.faults.script_reply(reply, count=1, command=command)
    result = await run_probe(probe_config(emulator))
    assert_failure(result, phase, reason, category)


async def test_disconnect_during_data(emulator: Emulator) -> None:
    emulator.smtp.faults.drop_next_data()
    result = await run_probe(probe_config(emulator))
    assert_failure(result, Phase.DATA, Reason.DISCONNECTED, "")


async def test_certificate_close_to_expiry(emulator: Emulator) -> None:
    not_after = emulator.smtp.use_certificate(days_left=3)
    result = await run_probe(probe_config(emulator))
    assert result.success
    assert result.tls is not None and result.tls.cert_not_after == not_after.timestamp()
