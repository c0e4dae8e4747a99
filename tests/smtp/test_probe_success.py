"""Probes that get their message accepted, against a real aiosmtpd server."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime

import pytest
from cryptography import x509

from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Phase, ProbeResult
from tests.support.smtp_servers import (
    CERT_NOT_AFTER,
    PASSWORD,
    RECIPIENTS,
    SENDER,
    SERVER_NAME,
    TOKEN,
    Pki,
    SmtpServers,
)

MakeConfig = Callable[..., ProbeConfig]

FULL_PHASES = [
    Phase.RESOLVE,
    Phase.CONNECT,
    Phase.BANNER,
    Phase.EHLO,
    Phase.STARTTLS,
    Phase.AUTH,
    Phase.MAIL,
    Phase.RCPT,
    Phase.DATA,
    Phase.QUIT,
]


def assert_succeeded(result: ProbeResult) -> None:
    assert result.success, (result.reason, result.detail)
    assert result.failed_phase is None
    assert result.reason is None


def client_lines(result: ProbeResult) -> list[str]:
    return [line.text for line in result.transcript if line.direction == "C"]


@pytest.mark.parametrize(
    ("mechanism", "server_name"),
    [("login", "LOGIN"), ("plain", "PLAIN"), ("xoauth2", "XOAUTH2")],
)
async def test_starttls_and_auth_deliver_the_probe(
    smtp_servers: SmtpServers, make_config: MakeConfig, mechanism: str, server_name: str
) -> None:
    server = await smtp_servers.start()
    auth = {"mechanism": mechanism, "username": SENDER}
    if mechanism != "xoauth2":
        auth["password"] = PASSWORD
    result = await run_probe(
        make_config(server.port, auth=auth), token_provider=StaticTokenProvider(TOKEN)
    )

    assert_succeeded(result)
    assert server.recorder.auth_attempts == [(server_name, SENDER)]
    assert result.recipients_accepted == len(RECIPIENTS)
    assert result.rejections == []
    [received] = server.recorder.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == RECIPIENTS
    message = message_from_bytes(received.content, policy=policy.default)
    assert message["Message-ID"] == result.message_id
    assert message["X-M365-Probe-Token"] == result.probe_token
    assert message["X-M365-Probe-Name"] == "test-probe"


async def test_xoauth2_sends_the_sasl_string_of_the_reference(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    config = make_config(server.port, auth={"mechanism": "xoauth2", "username": SENDER})
    result = await run_probe(config, token_provider=StaticTokenProvider(TOKEN))

    assert_succeeded(result)
    assert server.recorder.xoauth2_strings == [
        f"user={SENDER}\x01auth=Bearer {TOKEN}\x01\x01".encode()
    ]


async def test_phases_run_in_order_and_add_up_to_the_duration(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port))

    assert_succeeded(result)
    assert list(result.phases) == FULL_PHASES
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert sum(result.phases.values()) == pytest.approx(result.duration, rel=0.01)
    assert 0 < result.duration < 2.0  # the probe's own deadline


async def test_injected_clocks_drive_timestamps_and_phases(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    ticks = iter(range(1000))
    result = await run_probe(
        make_config(server.port),
        monotonic=lambda: float(next(ticks)),
        wall_clock=lambda: 1_767_225_600.0,
    )

    assert_succeeded(result)
    assert result.started_at == 1_767_225_600.0
    # each reading of the fake clock advances it by one second
    assert result.duration == sum(result.phases.values())
    assert all(seconds == int(seconds) and seconds >= 1 for seconds in result.phases.values())
    [received] = server.recorder.messages
    date = message_from_bytes(received.content, policy=policy.default)["Date"]
    assert parsedate_to_datetime(date).timestamp() == 1_767_225_600.0


async def test_tls_facts_match_the_negotiated_session(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port))

    assert_succeeded(result)
    assert result.tls is not None
    [(version, cipher)] = server.recorder.tls_sessions
    assert result.tls.version == version
    assert result.tls.cipher == cipher
    assert result.tls.cert_not_after == CERT_NOT_AFTER.timestamp()


async def test_tls_facts_without_verification(
    smtp_servers: SmtpServers, make_config: MakeConfig, pki: Pki
) -> None:
    server = await smtp_servers.start(cert="untrusted")
    result = await run_probe(make_config(server.port, tls_verify=False))

    assert_succeeded(result)
    assert result.tls is not None
    presented = x509.load_pem_x509_certificate(pki.untrusted_cert.cert_chain_pems[0].bytes())
    assert result.tls.cert_not_after == presented.not_valid_after_utc.timestamp()


async def test_server_name_overrides_the_name_checked(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(cert="name_only")
    result = await run_probe(make_config(server.port, server_name=SERVER_NAME))
    assert_succeeded(result)


async def test_minimum_tls_version_is_honoured(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port, min_version="TLSv1.3"))
    assert_succeeded(result)
    assert result.tls is not None
    assert result.tls.version == "TLSv1.3"


async def test_implicit_tls(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start(implicit_tls=True)
    result = await run_probe(make_config(server.port, tls="implicit"))

    assert_succeeded(result)
    assert list(result.phases) == [
        Phase.RESOLVE,
        Phase.CONNECT,
        Phase.STARTTLS,  # the handshake, before the greeting
        Phase.BANNER,
        Phase.EHLO,
        Phase.AUTH,
        Phase.MAIL,
        Phase.RCPT,
        Phase.DATA,
        Phase.QUIT,
    ]
    assert "STARTTLS" not in client_lines(result)
    assert result.tls is not None
    assert result.tls.cert_not_after == CERT_NOT_AFTER.timestamp()
    assert len(server.recorder.messages) == 1


async def test_ssl_context_argument_replaces_the_configured_one(
    smtp_servers: SmtpServers, make_config: MakeConfig, pki: Pki
) -> None:
    server = await smtp_servers.start()
    config = make_config(server.port, ca_file=None)  # system CAs do not know the test CA
    context = ssl.create_default_context()
    pki.ca.configure_trust(context)

    result = await run_probe(config, ssl_context=context)
    assert_succeeded(result)


async def test_unauthenticated_probe_without_tls(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(starttls=False)
    result = await run_probe(make_config(server.port, tls="none", auth={"mechanism": "none"}))

    assert_succeeded(result)
    assert result.tls is None
    assert Phase.STARTTLS not in result.phases
    assert Phase.AUTH not in result.phases
    assert server.recorder.auth_attempts == []


async def test_some_recipients_rejected_still_sends(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    refusal = (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
    )
    server = await smtp_servers.start(rcpt_replies={RECIPIENTS[1]: refusal})
    result = await run_probe(make_config(server.port))

    assert_succeeded(result)
    assert result.recipients_accepted == 1
    [rejection] = result.rejections
    assert rejection.phase is Phase.RCPT
    assert (rejection.reply.code, rejection.reply.enhanced_code) == (550, "5.1.10")
    assert rejection.category == "recipient"
    assert not rejection.recoverable
    assert "1 of 2 recipients rejected" in result.detail
    assert server.recorder.messages[0].rcpt_tos == RECIPIENTS[:1]


async def test_helo_fallback_when_ehlo_is_refused(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(
        starttls=False, ehlo_reply="502 5.5.1 Command not implemented"
    )
    result = await run_probe(make_config(server.port, tls="none", auth={"mechanism": "none"}))

    assert_succeeded(result)
    assert client_lines(result)[:2] == ["EHLO prober.contoso.test", "HELO prober.contoso.test"]
    [rejection] = result.rejections
    assert (rejection.phase, rejection.reply.code) == (Phase.EHLO, 502)
    assert len(server.recorder.messages) == 1


async def test_transcript_shows_the_conversation(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port))

    assert_succeeded(result)
    lines = [f"{line.direction}: {line.text}" for line in result.transcript]
    assert lines[0].startswith("S: 220 ")
    size = len(server.recorder.messages[0].content)
    for expected in (
        "C: EHLO prober.contoso.test",
        "C: STARTTLS",
        "S: 220 Ready to start TLS",
        "C: AUTH LOGIN",
        "S: 334 <redacted>",
        "C: <redacted>",
        "S: 235 2.7.0 Authentication successful",
        f"C: MAIL FROM:<{SENDER}> SIZE={size}",
        f"C: RCPT TO:<{RECIPIENTS[0]}>",
        "C: DATA",
        f"C: <message: {size} bytes>",
        "C: QUIT",
        "S: 221 2.0.0 Service closing transmission channel",
    ):
        assert expected in lines
    elapsed = [line.elapsed for line in result.transcript]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] <= result.duration


async def test_failing_quit_does_not_fail_a_sent_probe(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(quit_reply="554 5.3.0 Something odd")
    result = await run_probe(make_config(server.port))

    assert_succeeded(result)
    [rejection] = result.rejections
    assert (rejection.phase, rejection.reply.code) == (Phase.QUIT, 554)
    assert len(server.recorder.messages) == 1
