"""Every failure reason, produced by how a real server (or the network) behaves."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator

import pytest

from m365_smtp_exporter.auth import StaticTokenProvider, TokenError
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason
from tests.support.smtp_servers import RECIPIENTS, SENDER, TOKEN, SmtpServers

MakeConfig = Callable[..., ProbeConfig]
XOAUTH2 = {"mechanism": "xoauth2", "username": SENDER}


def assert_failed(result: ProbeResult, phase: Phase, reason: Reason) -> None:
    assert not result.success
    assert (result.failed_phase, result.reason) == (phase, reason), result.detail
    assert result.detail
    assert sum(result.phases.values()) == pytest.approx(result.duration, rel=0.01)
    assert list(result.phases)[-1] in (phase, Phase.QUIT)


def client_lines(result: ProbeResult) -> list[str]:
    return [line.text for line in result.transcript if line.direction == "C"]


class FailingTokenProvider:
    async def get_token(self, scope: str) -> str:
        raise TokenError("AADSTS7000215: Invalid client secret provided.")

    async def close(self) -> None:
        return None


# -- before SMTP: DNS and TCP ----------------------------------------------------------


async def test_dns_failure(make_config: MakeConfig) -> None:
    result = await run_probe(make_config(25, host="no-such-host.invalid"))
    assert_failed(result, Phase.RESOLVE, Reason.DNS)
    assert "no-such-host.invalid" in result.detail
    assert result.transcript == []


async def test_connection_refused(make_config: MakeConfig, closed_port: int) -> None:
    result = await run_probe(make_config(closed_port))
    assert_failed(result, Phase.CONNECT, Reason.CONNECT_REFUSED)
    assert f"127.0.0.1 port {closed_port}: Connection refused" in result.detail


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full, so new connections hang in SYN."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        filler.connect(("127.0.0.1", port))
        yield port


async def test_connect_timeout(make_config: MakeConfig, full_backlog: int) -> None:
    result = await run_probe(make_config(full_backlog, timeout=0.5))
    assert_failed(result, Phase.CONNECT, Reason.CONNECT_TIMEOUT)


# -- greeting ----------------------------------------------------------------------------


async def test_silent_server_is_a_banner_timeout(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    port = await smtp_servers.raw()
    result = await run_probe(make_config(port, timeout=0.5))
    assert_failed(result, Phase.BANNER, Reason.BANNER_TIMEOUT)
    assert result.transcript == []


async def test_421_greeting(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    port = await smtp_servers.raw(b"421 4.3.2 Service not available, closing channel\r\n")
    result = await run_probe(make_config(port))
    assert_failed(result, Phase.BANNER, Reason.SERVICE_UNAVAILABLE)
    [rejection] = result.rejections
    assert (rejection.phase, rejection.reply.code, rejection.category) == (
        Phase.BANNER,
        421,
        "transient",
    )
    assert rejection.recoverable
    assert client_lines(result) == []  # no QUIT to a server that is hanging up


async def test_refusing_greeting(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    port = await smtp_servers.raw(b"554 5.3.2 No SMTP service here\r\n")
    result = await run_probe(make_config(port, timeout=0.5))
    assert_failed(result, Phase.BANNER, Reason.BANNER_REJECTED)


async def test_garbage_greeting_is_a_protocol_error(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    port = await smtp_servers.raw(b"SSH-2.0-OpenSSH_9.6\r\n")
    result = await run_probe(make_config(port))
    assert_failed(result, Phase.BANNER, Reason.PROTOCOL_ERROR)


async def test_overall_deadline_after_the_greeting(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    port = await smtp_servers.raw(b"220 slow.example ESMTP\r\n")
    result = await run_probe(make_config(port, timeout=0.5))
    assert_failed(result, Phase.EHLO, Reason.TIMEOUT)
    assert result.duration < 1.5  # bounded by the deadline, with room for a slow machine


# -- TLS ----------------------------------------------------------------------------------


async def test_starttls_not_offered(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start(starttls=False)
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.STARTTLS, Reason.STARTTLS_UNSUPPORTED)
    assert "STARTTLS" not in client_lines(result)
    assert client_lines(result)[-1] == "QUIT"  # the connection was still usable
    assert server.recorder.auth_attempts == []


async def test_untrusted_certificate(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start(cert="untrusted")
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_VERIFY)
    assert "certificate" in result.detail
    assert result.tls is None
    assert server.recorder.auth_attempts == []


async def test_certificate_for_another_name(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(cert="name_only")
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_VERIFY)


async def test_untrusted_certificate_with_implicit_tls(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(implicit_tls=True, cert="untrusted")
    result = await run_probe(make_config(server.port, tls="implicit"))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_VERIFY)
    assert result.transcript == []


# a fatal TLS alert record: content type 21, TLS 1.2, length 2, level fatal, protocol_version
PROTOCOL_VERSION_ALERT = bytes([21, 3, 3, 0, 2, 2, 70])


async def test_no_common_tls_version(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    port = await smtp_servers.raw(
        b"220 old.example ESMTP\r\n",
        replies={"EHLO": b"250-old.example\r\n250 STARTTLS\r\n", "STARTTLS": b"220 Go ahead\r\n"},
        tls_alert=PROTOCOL_VERSION_ALERT,
    )
    result = await run_probe(make_config(port, min_version="TLSv1.3"))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_VERSION)
    assert "TLS version" in result.detail


async def test_server_hanging_up_during_the_handshake(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    # asyncio's TLS server closes without sending its protocol_version alert
    server = await smtp_servers.start(tls_maximum_version=ssl.TLSVersion.TLSv1_2)
    result = await run_probe(make_config(server.port, min_version="TLSv1.3"))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_HANDSHAKE)


async def test_implicit_tls_against_a_plain_server(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port, tls="implicit"))
    assert_failed(result, Phase.STARTTLS, Reason.TLS_HANDSHAKE)


# -- AUTH -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason", "category", "recoverable"),
    [
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
            "for the Tenant.",
            Reason.AUTH_DISABLED,
            "auth",
            False,
        ),
        ("535 5.7.3 Authentication unsuccessful", Reason.AUTH_FAILED, "auth", False),
        (
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            Reason.THROTTLED,
            "throttle",
            True,
        ),
    ],
)
@pytest.mark.parametrize("mechanism", ["login", "xoauth2"])
async def test_auth_refusals_are_classified(
    smtp_servers: SmtpServers,
    make_config: MakeConfig,
    mechanism: str,
    reply: str,
    reason: Reason,
    category: str,
    recoverable: bool,
) -> None:
    server = await smtp_servers.start(auth_reply=reply)
    config = (
        make_config(server.port) if mechanism == "login" else make_config(server.port, auth=XOAUTH2)
    )
    result = await run_probe(config, token_provider=StaticTokenProvider(TOKEN))

    assert_failed(result, Phase.AUTH, reason)
    [rejection] = result.rejections
    assert rejection.phase is Phase.AUTH
    code_and_status = " ".join(reply.split()[:2])
    assert f"{rejection.reply.code} {rejection.reply.enhanced_code}" == code_and_status
    assert (rejection.category, rejection.recoverable) == (category, recoverable)
    assert code_and_status in result.detail
    assert "MAIL FROM" not in " ".join(client_lines(result))
    assert client_lines(result)[-1] == "QUIT"


async def test_wrong_password(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start()
    auth = {"mechanism": "plain", "username": SENDER, "password": "not-the-password"}
    result = await run_probe(make_config(server.port, auth=auth))
    assert_failed(result, Phase.AUTH, Reason.AUTH_FAILED)
    assert server.recorder.auth_attempts == [("PLAIN", SENDER)]


async def test_refused_token_goes_through_the_error_challenge(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(
        make_config(server.port, auth=XOAUTH2), token_provider=StaticTokenProvider("expired")
    )
    assert_failed(result, Phase.AUTH, Reason.AUTH_FAILED)
    lines = [f"{line.direction}: {line.text}" for line in result.transcript]
    challenge = lines.index("S: 334 <redacted>")
    assert lines[challenge - 1] == "C: AUTH XOAUTH2 <redacted>"
    assert lines[challenge + 1] == "C: "  # the empty line that ends the exchange
    assert lines[challenge + 2] == "S: 535 5.7.3 Authentication unsuccessful"


async def test_token_provider_failure(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start()
    result = await run_probe(
        make_config(server.port, auth=XOAUTH2), token_provider=FailingTokenProvider()
    )
    assert_failed(result, Phase.AUTH, Reason.AUTH_TOKEN)
    assert "AADSTS7000215" in result.detail
    assert server.recorder.auth_attempts == []


async def test_xoauth2_without_token_provider(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start()
    result = await run_probe(make_config(server.port, auth=XOAUTH2))
    assert_failed(result, Phase.AUTH, Reason.AUTH_TOKEN)


async def test_mechanism_not_offered(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start(exclude_auth=("XOAUTH2",))
    result = await run_probe(
        make_config(server.port, auth=XOAUTH2), token_provider=StaticTokenProvider(TOKEN)
    )
    assert_failed(result, Phase.AUTH, Reason.AUTH_UNSUPPORTED)
    assert "LOGIN PLAIN" in result.detail
    assert server.recorder.auth_attempts == []


async def test_auth_over_plain_text_is_refused_before_sending(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(starttls=False, auth_require_tls=False)
    allowed = make_config(server.port, tls="none", allow_insecure_auth=True)
    # the config model refuses this combination; the probe must refuse it on its own too
    refused = allowed.model_copy(update={"allow_insecure_auth": False})

    result = await run_probe(refused)
    assert_failed(result, Phase.AUTH, Reason.AUTH_INSECURE)
    assert not any(line.startswith("AUTH") for line in client_lines(result))
    assert server.recorder.auth_attempts == []


async def test_allow_insecure_auth_lets_it_through(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(starttls=False, auth_require_tls=False)
    result = await run_probe(make_config(server.port, tls="none", allow_insecure_auth=True))
    assert result.success, result.detail
    assert result.tls is None
    assert server.recorder.auth_attempts == [("LOGIN", SENDER)]


# -- envelope and message ------------------------------------------------------------------


async def test_send_as_denied_at_mail_from(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    reply = (
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
        "[AM0PR01MB1234.eurprd01.prod.exchangelabs.com]"
    )
    server = await smtp_servers.start(mail_reply=reply)
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.MAIL, Reason.SEND_AS_DENIED)
    [rejection] = result.rejections
    assert (rejection.phase, rejection.reply.enhanced_code, rejection.category) == (
        Phase.MAIL,
        "5.7.60",
        "policy",
    )


async def test_unknown_mail_from_refusal_uses_the_phase_default(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(mail_reply="553 5.1.7 The address is not valid")
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.MAIL, Reason.MAIL_FROM_REJECTED)
    assert result.rejections[0].category == "permanent_address"


async def test_all_recipients_rejected(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    refusal = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found"
    server = await smtp_servers.start(rcpt_replies=dict.fromkeys(RECIPIENTS, refusal))
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.RCPT, Reason.RCPT_REJECTED)
    assert result.recipients_accepted == 0
    assert [rejection.phase for rejection in result.rejections] == [Phase.RCPT, Phase.RCPT]
    assert "DATA" not in client_lines(result)


async def test_quota_exceeded_at_data(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    reply = (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
        "Failed to process message due to a permanent exception"
    )
    server = await smtp_servers.start(data_reply=reply)
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.DATA, Reason.QUOTA_EXCEEDED)
    [rejection] = result.rejections
    assert (rejection.category, rejection.recoverable) == ("quota", True)
    assert "SubmissionQuotaExceededException" in result.detail


async def test_other_data_refusal_uses_the_phase_default(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    server = await smtp_servers.start(data_reply="554 5.6.0 Message content rejected")
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.DATA, Reason.DATA_REJECTED)


async def test_disconnect_during_data(smtp_servers: SmtpServers, make_config: MakeConfig) -> None:
    server = await smtp_servers.start(drop_on_data=True)
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.DATA, Reason.DISCONNECTED)
    assert client_lines(result)[-1].startswith("<message:")  # no QUIT on a dead connection


async def test_421_at_rcpt_stops_the_transaction(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    reply = "421 4.7.0 Too many errors on this connection, closing transmission channel"
    server = await smtp_servers.start(rcpt_replies={RECIPIENTS[0]: reply})
    result = await run_probe(make_config(server.port))
    assert_failed(result, Phase.RCPT, Reason.SERVICE_UNAVAILABLE)
    assert client_lines(result)[-1] == f"RCPT TO:<{RECIPIENTS[0]}>"  # neither more RCPT nor QUIT
