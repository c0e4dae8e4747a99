"""Hostile SMTP servers: every probe ends in time with a classified, safe, secret-free result."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Reason

from .promises import assert_classified, assert_no_secret, shown_texts
from .smtp_server import (
    LATIN1_BANNER,
    Script,
    close_mid_data,
    conversation,
    drip,
    echoing_auth,
    endless_reply,
    hostile_smtp,
    ordinary,
    oversized_line,
    random_enhanced_codes,
    rejecting_rcpt_with,
    silent,
)

PASSWORD = "canary-Pw-4417-hostile"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.canary-token-payload-8812.sig"
TIMEOUT = 2.0


def probe_config(port: int, **overrides: Any) -> ProbeConfig:
    values: dict[str, Any] = {
        "name": "hostile",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "allow_insecure_auth": True,
        "auth": {"mechanism": "plain", "username": "probe@contoso.test", "password": PASSWORD},
        "mail_from": "probe@contoso.test",
        "rcpt_to": ["a@contoso.test", "b@contoso.test", "c@contoso.test"],
        "timeout": TIMEOUT,
        "interval": 60.0,
    }
    values.update(overrides)
    return ProbeConfig.model_validate(values)


async def probe_against(script: Script, **overrides: Any) -> Any:
    async with hostile_smtp(script) as port:
        started = time.monotonic()
        provider = StaticTokenProvider(TOKEN)
        result = await asyncio.wait_for(
            run_probe(probe_config(port, **overrides), token_provider=provider),
            TIMEOUT + 5,
        )
        assert time.monotonic() - started < TIMEOUT + 3  # bounded by the probe's deadline
        return result


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        pytest.param(silent, Reason.BANNER_TIMEOUT, id="silence"),
        pytest.param(drip, Reason.BANNER_TIMEOUT, id="drip"),
        pytest.param(endless_reply, None, id="endless-multiline-reply"),
        pytest.param(oversized_line, None, id="oversized-line"),
        pytest.param(close_mid_data(), Reason.DISCONNECTED, id="close-mid-data"),
    ],
)
async def test_slow_endless_and_broken_servers_end_in_time(
    script: Script, reason: Reason | None
) -> None:
    result = await probe_against(script, auth={"mechanism": "none"})
    assert_classified(result)
    if reason is not None:
        assert result.reason is reason


async def test_latin1_banner_with_escape_sequences_is_shown_safely() -> None:
    script = conversation(LATIN1_BANNER, rejecting_rcpt_with(lambda: LATIN1_BANNER[:-2] + b"\r\n"))
    result = await probe_against(script, auth={"mechanism": "none"})
    assert_classified(result)
    banner = result.transcript[0].text
    assert "caf\ufffd" in banner  # decoded once, with replacement
    assert "\\x1b]52" in banner  # the clipboard write is shown, not executed


async def test_random_enhanced_codes_only_mint_closed_form_labels() -> None:
    seen: set[tuple[int, str, str]] = set()
    for seed in range(15):
        script = conversation(
            b"220 hostile.test\r\n", rejecting_rcpt_with(random_enhanced_codes(seed))
        )
        result = await probe_against(script, auth={"mechanism": "none"})
        assert_classified(result)
        seen |= {(r.reply.code, r.reply.enhanced_code, r.category) for r in result.rejections}
    # ASCII digits only: the Arabic-Indic, fullwidth and Thai ones never reach a label
    assert all(code.isascii() for _, code, _ in seen)
    assert {code for code, _, _ in seen} <= {0, 450, 550, 551, 554}


async def test_a_server_echoing_the_password_shows_no_secret() -> None:
    result = await probe_against(conversation(b"220 hostile.test\r\n", echoing_auth()))
    assert_classified(result)
    assert result.reason is Reason.AUTH_FAILED
    for text in shown_texts(result):
        assert_no_secret(text, PASSWORD)


async def test_a_server_echoing_the_xoauth2_token_shows_no_secret() -> None:
    result = await probe_against(
        conversation(b"220 hostile.test\r\n", echoing_auth()),
        auth={"mechanism": "xoauth2", "username": "probe@contoso.test"},
    )
    assert_classified(result)
    for text in shown_texts(result):
        assert_no_secret(text, TOKEN)


async def test_a_mail_from_that_cannot_be_built_still_reports() -> None:
    """A configuration that slipped past validation (built in code) must not crash the
    probe: the message is built inside the probe's error handling."""
    async with hostile_smtp(conversation(b"220 hostile.test\r\n", ordinary)) as port:
        config = probe_config(port, auth={"mechanism": "none"}).model_copy(
            update={"mail_from": "x@y.z\n\x00"}
        )
        result = await asyncio.wait_for(run_probe(config), TIMEOUT + 5)
    assert not result.success and result.reason is not None
