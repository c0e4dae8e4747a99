"""Passwords and tokens never leave the probe: not in the result, its detail or transcript."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason
from tests.support.smtp_servers import SENDER, SmtpServers

MakeConfig = Callable[..., ProbeConfig]

CANARY_PASSWORD = "canary-pw-5d1e0c"
CANARY_TOKEN = "canary-tok-9b27fa"


def forms(secret: str) -> list[str]:
    """The secret and every encoding of it the probe puts on the wire."""
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{SENDER}\0{secret}".encode()).decode(),
        base64.b64encode(f"user={SENDER}\x01auth=Bearer {secret}\x01\x01".encode()).decode(),
    ]


def assert_nowhere(result: ProbeResult, secret: str) -> None:
    texts = [repr(result), str(result), result.detail, *(line.text for line in result.transcript)]
    for form in forms(secret):
        for text in texts:
            assert form not in text


@pytest.mark.parametrize("mechanism", ["login", "plain"])
@pytest.mark.parametrize("accepted", [True, False])
async def test_password_stays_secret(
    smtp_servers: SmtpServers, make_config: MakeConfig, mechanism: str, accepted: bool
) -> None:
    server = await smtp_servers.start(users={SENDER: CANARY_PASSWORD if accepted else "other"})
    auth = {"mechanism": mechanism, "username": SENDER, "password": CANARY_PASSWORD}
    result = await run_probe(make_config(server.port, auth=auth))

    assert result.success is accepted
    assert server.recorder.auth_attempts == [(mechanism.upper(), SENDER)]
    assert_nowhere(result, CANARY_PASSWORD)


@pytest.mark.parametrize("accepted", [True, False])
async def test_token_stays_secret(
    smtp_servers: SmtpServers, make_config: MakeConfig, accepted: bool
) -> None:
    server = await smtp_servers.start(tokens={SENDER: CANARY_TOKEN if accepted else "other"})
    config = make_config(server.port, auth={"mechanism": "xoauth2", "username": SENDER})
    result = await run_probe(config, token_provider=StaticTokenProvider(CANARY_TOKEN))

    assert result.success is accepted
    assert server.recorder.xoauth2_strings  # the token really was sent
    assert_nowhere(result, CANARY_TOKEN)


async def test_password_stays_secret_when_auth_times_out(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    port = await smtp_servers.raw(
        b"220 slow.example ESMTP\r\n",
        replies={"EHLO": b"250-slow.example\r\n250 AUTH PLAIN LOGIN\r\n"},
    )
    auth = {"mechanism": "plain", "username": SENDER, "password": CANARY_PASSWORD}
    config = make_config(port, tls="none", allow_insecure_auth=True, auth=auth, timeout=0.5)
    result = await run_probe(config)

    assert (result.failed_phase, result.reason) == (Phase.AUTH, Reason.TIMEOUT)
    assert_nowhere(result, CANARY_PASSWORD)


async def test_token_stays_secret_when_the_server_hangs_up(
    smtp_servers: SmtpServers, make_config: MakeConfig
) -> None:
    port = await smtp_servers.raw(
        b"220 flaky.example ESMTP\r\n",
        replies={"EHLO": b"250-flaky.example\r\n250 AUTH XOAUTH2\r\n"},
        hang_up_on="AUTH",
    )
    auth = {"mechanism": "xoauth2", "username": SENDER}
    config = make_config(port, tls="none", allow_insecure_auth=True, auth=auth)
    result = await run_probe(config, token_provider=StaticTokenProvider(CANARY_TOKEN))

    assert (result.failed_phase, result.reason) == (Phase.AUTH, Reason.DISCONNECTED)
    assert_nowhere(result, CANARY_TOKEN)
