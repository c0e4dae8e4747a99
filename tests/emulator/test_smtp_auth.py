"""Greeting, STARTTLS, AUTH (LOGIN, PLAIN, XOAUTH2) and send-as, over real sockets."""

from __future__ import annotations

import base64
import logging
import ssl
import warnings
from datetime import UTC, datetime
from email.utils import format_datetime

import aiosmtplib
import pytest

from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState
from m365_emulator.world import CONTOSO_CLIENT_ID, FABRIKAM_CLIENT_ID
from tests.support.clock import ManualClock
from tests.support.smtp_emulator import PASSWORD, connected, logged_in, smtp_client

OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


async def test_banner_names_the_frontend_and_the_time(
    emulator: SmtpEmulator, clock: ManualClock
) -> None:
    client = smtp_client(emulator, start_tls=False)
    greeting = await client.connect()
    await client.quit()
    stamp = format_datetime(datetime.fromtimestamp(clock(), tz=UTC))
    assert greeting.code == 220
    assert greeting.message == (
        f"XX0PR00CA0000.outlook.office365.com Microsoft ESMTP MAIL Service ready at {stamp}"
    )


async def test_auth_is_offered_only_after_starttls(emulator: SmtpEmulator) -> None:
    client = smtp_client(emulator, start_tls=False)
    await client.connect()
    await client.ehlo()
    assert client.supports_extension("starttls")
    assert not client.supports_extension("auth")
    auth = await client.execute_command(b"AUTH", b"LOGIN")
    mail = await client.execute_command(b"MAIL", b"FROM:<probe@contoso.com>")
    await client.starttls()
    await client.ehlo()
    mechanisms = client.esmtp_extensions["auth"].split()
    await client.quit()
    assert (auth.code, auth.message) == (504, "5.7.4 Unrecognized authentication type")
    assert (mail.code, mail.message) == (530, "5.7.57 Client not authenticated to send mail")
    assert sorted(mechanisms) == ["LOGIN", "PLAIN", "XOAUTH2"]
    assert not client.supports_extension("starttls")


async def test_mail_without_auth_after_tls_is_refused(emulator: SmtpEmulator) -> None:
    client = smtp_client(emulator)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail("probe@contoso.com")
    await client.quit()
    assert refused.value.code == 530
    assert refused.value.message == "5.7.57 Client not authenticated to send mail"


@pytest.mark.parametrize("mechanism", ["login", "plain"])
async def test_basic_auth_with_the_right_password(emulator: SmtpEmulator, mechanism: str) -> None:
    client = await connected(emulator)
    if mechanism == "login":
        response = await client.auth_login("probe@contoso.com", PASSWORD)
    else:
        response = await client.auth_plain("probe@contoso.com", PASSWORD)
    sender = await client.mail("probe@contoso.com")
    await client.quit()
    assert (response.code, response.message) == (235, "2.7.0 Authentication successful")
    assert (sender.code, sender.message) == (250, "2.1.0 Sender OK")


@pytest.mark.parametrize(
    ("user", "password", "code", "text"),
    [
        ("probe@contoso.com", "wrong", 535, "5.7.3 Authentication unsuccessful"),
        ("nobody@contoso.com", PASSWORD, 535, "5.7.3 Authentication unsuccessful"),
        (
            "smtp-disabled@contoso.com",
            PASSWORD,
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            "Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
        ),
        (
            "oauth-only@contoso.com",
            PASSWORD,
            550,
            "5.7.30 Basic authentication is not supported for Client Submission",
        ),
    ],
)
@pytest.mark.parametrize("mechanism", ["login", "plain"])
async def test_basic_auth_rejections(
    emulator: SmtpEmulator, mechanism: str, user: str, password: str, code: int, text: str
) -> None:
    client = await connected(emulator)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
        if mechanism == "login":
            await client.auth_login(user, password)
        else:
            await client.auth_plain(user, password)
    await client.quit()
    assert (failure.value.code, failure.value.message) == (code, text)


async def test_xoauth2_with_an_outlook_token(emulator: SmtpEmulator, state: EmulatorState) -> None:
    token = state.issue_token("contoso", CONTOSO_CLIENT_ID, OUTLOOK_SCOPE)
    client = smtp_client(emulator)
    await client.connect()
    # oauth-only has Basic auth disabled: OAuth must still work for it
    response = await client.auth_xoauth2("oauth-only@contoso.com", token)
    sender = await client.mail("oauth-only@contoso.com")
    await client.quit()
    assert (response.code, response.message) == (235, "2.7.0 Authentication successful")
    assert sender.code == 250


async def test_xoauth2_without_initial_response(
    emulator: SmtpEmulator, state: EmulatorState
) -> None:
    token = state.issue_token("contoso", CONTOSO_CLIENT_ID, OUTLOOK_SCOPE)
    sasl = base64.b64encode(f"user=probe@contoso.com\x01auth=Bearer {token}\x01\x01".encode())
    client = await connected(emulator)
    challenge = await client.execute_command(b"AUTH", b"XOAUTH2")
    response = await client.execute_command(sasl)
    await client.quit()
    assert challenge.code == 334
    assert response.code == 235


@pytest.mark.parametrize("problem", ["unknown", "expired", "graph scope", "other tenant"])
async def test_xoauth2_rejects_bad_tokens(
    emulator: SmtpEmulator, state: EmulatorState, clock: ManualClock, problem: str
) -> None:
    if problem == "unknown":
        token = "eyJ0eXAiOiJKV1QifQ.not-a-token-the-emulator-issued"
    elif problem == "expired":
        token = state.issue_token("contoso", CONTOSO_CLIENT_ID, OUTLOOK_SCOPE, lifetime=60)
        clock.advance(61)
    elif problem == "graph scope":
        token = state.issue_token(
            "contoso", CONTOSO_CLIENT_ID, "https://graph.microsoft.com/.default"
        )
    else:
        token = state.issue_token("fabrikam", FABRIKAM_CLIENT_ID, OUTLOOK_SCOPE)
    client = smtp_client(emulator)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
        await client.auth_xoauth2("probe@contoso.com", token)
    await client.quit()
    assert (failure.value.code, failure.value.message) == (
        535,
        "5.7.3 Authentication unsuccessful",
    )


async def test_xoauth2_respects_disabled_smtp_auth(
    emulator: SmtpEmulator, state: EmulatorState
) -> None:
    token = state.issue_token("contoso", CONTOSO_CLIENT_ID, OUTLOOK_SCOPE)
    client = smtp_client(emulator)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
        await client.auth_xoauth2("smtp-disabled@contoso.com", token)
    await client.quit()
    assert failure.value.code == 535
    assert failure.value.message.startswith("5.7.139 ")


async def test_secrets_stay_out_of_the_logs(
    emulator: SmtpEmulator, state: EmulatorState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = state.issue_token("contoso", CONTOSO_CLIENT_ID, OUTLOOK_SCOPE)
    client = await connected(emulator)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await client.auth_login("probe@contoso.com", "Wr0ng-Secret")
    await client.auth_xoauth2("probe@contoso.com", token)
    await client.quit()
    encoded = base64.b64encode(b"Wr0ng-Secret").decode()
    assert caplog.records, "the server should have logged the session"
    for secret in ("Wr0ng-Secret", encoded, token):
        assert secret not in caplog.text
    assert "login_data is deprecated" not in caplog.text  # no warning per login


async def test_send_as_needs_a_grant(emulator: SmtpEmulator, state: EmulatorState) -> None:
    probe = state.mailbox("probe@contoso.com")
    assert probe is not None
    probe.send_as.add("alerts@contoso.com")
    client = await logged_in(emulator)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail("someone-else@contoso.com")
    granted = await client.mail("alerts@contoso.com")
    await client.quit()
    assert (refused.value.code, refused.value.message) == (
        550,
        "5.7.60 SMTP; Client does not have permissions to send as this sender",
    )
    assert granted.code == 250


async def test_tls_below_1_2_is_refused(emulator: SmtpEmulator) -> None:
    """A TLS 1.1-only client cannot complete STARTTLS; a TLS 1.2 client can afterwards.

    The local OpenSSL can still offer TLS 1.1 at security level 0 (checked below), so the
    refusal comes from the server's minimum version: OpenSSL on the server side fails the
    handshake with UNSUPPORTED_PROTOCOL and the connection is closed, which the client
    sees as a reset while upgrading the transport.
    """
    assert ssl.HAS_TLSv1_1
    legacy = ssl.create_default_context(cafile=str(emulator.ca_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself
        legacy.minimum_version = ssl.TLSVersion.TLSv1_1
        legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    old = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=emulator.port, start_tls=False, tls_context=legacy
    )
    await old.connect()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await old.starttls()
    old.close()
    assert emulator.tls_failures == {"UNSUPPORTED_PROTOCOL": 1}

    modern = smtp_client(emulator)
    await modern.connect()
    sslobject = modern.get_transport_info("ssl_object")
    await modern.quit()
    assert sslobject.version() in ("TLSv1.2", "TLSv1.3")
